//! Starting the operator: file mode ([`start_file_mode`]) and Kubernetes
//! mode ([`crate::source::kube::start`]). Both serve the same two ports and
//! run the same background tasks (JWKS, modules, rollouts, waypoint
//! lifecycle).

use crate::ca::{CaService, NodeTokenAuth, load_or_create};
use crate::controller::{Controller, LogSink};
use crate::lifecycle::WaypointLauncher;
use crate::modules::ModuleStore;
use crate::server::{PushServices, debug_handler, push_handler, tls_config};
use mesh_common::xds::server::XdsServer;
use mesh_common::xds::store::ConfigStore;
use mesh_common::xds::transport;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Default push/CA port address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:15012";
/// Default metrics/debug address.
pub const DEFAULT_DEBUG_LISTEN: &str = "0.0.0.0:15014";

/// Bind `addr`, retrying for a few seconds while it is still in use: a
/// restarted operator may start while the previous process is still
/// exiting (its threads hold the listening socket until the last one is
/// gone).
async fn bind_retrying(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(%addr, "address in use (previous operator still exiting?); retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            r => return r,
        }
    }
}

/// Startup errors.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Port in use etc.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// CA state.
    #[error(transparent)]
    Ca(#[from] crate::ca::CaServiceError),
    /// TLS.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// Config directory.
    #[error(transparent)]
    File(#[from] crate::source::file::FileSourceError),
    /// Kubernetes.
    #[error("kubernetes: {0}")]
    Kube(String),
}

/// Settings shared by both modes.
#[derive(Clone)]
pub struct CommonConfig {
    /// CA state and module cache.
    pub state_dir: PathBuf,
    /// Push/CA address (15012).
    pub listen: SocketAddr,
    /// Metrics/debug address (15014); `None` disables it.
    pub debug_listen: Option<SocketAddr>,
    /// Serve 15012 with TLS (default) or cleartext HTTP/2 (development).
    pub tls: bool,
    /// Names in the serving certificate besides `localhost`, `operator`.
    pub server_names: Vec<String>,
    /// Refuse the push stream without a mesh client certificate.
    pub require_client_cert: bool,
    /// Directory with `jwt.wasm`, `authz.wasm`, … (first-party filters).
    pub first_party_dir: Option<PathBuf>,
    /// Extra PEM roots trusted for JWKS and module downloads.
    pub extra_roots_pem: Option<String>,
    /// Canary check interval.
    pub rollout_interval: Duration,
    /// JWKS timing.
    pub jwks_timing: crate::jwks::JwksTiming,
}

impl std::fmt::Debug for CommonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommonConfig")
            .field("state_dir", &self.state_dir)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl CommonConfig {
    /// Defaults with a state directory.
    pub fn new(state_dir: PathBuf) -> Self {
        CommonConfig {
            state_dir,
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 15012))),
            debug_listen: DEFAULT_DEBUG_LISTEN.parse().ok(),
            tls: true,
            server_names: Vec::new(),
            require_client_cert: false,
            first_party_dir: None,
            extra_roots_pem: None,
            rollout_interval: Duration::from_secs(5),
            jwks_timing: Default::default(),
        }
    }
}

/// File mode settings.
#[derive(Clone, Debug)]
pub struct FileModeConfig {
    /// Directory of YAML.
    pub config_dir: PathBuf,
    /// Inventory file.
    pub inventory: Option<PathBuf>,
    /// Shared settings.
    pub common: CommonConfig,
}

/// A running operator.
pub struct Running {
    /// Bound push/CA address.
    pub push_addr: SocketAddr,
    /// Bound debug address.
    pub debug_addr: Option<SocketAddr>,
    /// The controller.
    pub controller: Arc<Controller>,
    /// The push server.
    pub xds: Arc<XdsServer>,
    /// Mesh root certificates (PEM) clients verify 15012 with.
    pub roots_pem: String,
    /// Module store.
    pub modules: Arc<ModuleStore>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("push_addr", &self.push_addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Stop every task and listener.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    /// Cancellation token of this instance.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Start listeners and background tasks around a controller whose source
/// is already running. `auth` authenticates CSRs.
pub(crate) async fn start_common(
    common: &CommonConfig,
    controller: Arc<Controller>,
    auth: Arc<dyn crate::ca::Authenticator>,
    launcher: Option<Arc<dyn WaypointLauncher>>,
    shutdown: CancellationToken,
    mut tasks: Vec<JoinHandle<()>>,
) -> Result<Running, RunError> {
    let trust_domain = controller
        .config()
        .map(|c| c.mesh.trust_domain.clone())
        .unwrap_or_else(|| "cluster.local".into());
    let ca = load_or_create(&common.state_dir.join("ca"), &trust_domain)?;
    let roots_pem = ca.roots_pem().to_string();
    let modules = ModuleStore::new(Some(common.state_dir.join("modules")));
    if let Some(d) = &common.first_party_dir {
        let fp = modules.load_first_party(d);
        let _ = controller.update_context(|c| c.first_party = fp);
    }
    let tls = if common.tls {
        let mut names = vec![
            "localhost".to_string(),
            "operator".to_string(),
            "istiod".to_string(),
        ];
        names.extend(common.server_names.iter().cloned());
        let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])];
        if !common.listen.ip().is_unspecified() {
            ips.push(common.listen.ip());
        }
        Some(tls_config(&ca, &names, &ips)?)
    } else {
        None
    };
    let xds = XdsServer::new(controller.store().clone());
    let services = Arc::new(PushServices {
        xds: xds.clone(),
        ca: Some(Arc::new(CaService::new(ca, auth, controller.clone()))),
        modules: modules.clone(),
        require_client_cert: common.require_client_cert,
    });
    let listener = bind_retrying(common.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: common.listen,
            source,
        })?;
    let push_addr = listener.local_addr().map_err(|source| RunError::Listen {
        addr: common.listen,
        source,
    })?;
    tasks.push(tokio::spawn({
        let s = shutdown.clone();
        async move {
            if let Err(e) = transport::serve(listener, tls, push_handler(services), s).await {
                tracing::error!("push listener: {e}");
            }
        }
    }));
    let mut debug_addr = None;
    if let Some(d) = common.debug_listen {
        let l = bind_retrying(d)
            .await
            .map_err(|source| RunError::Listen { addr: d, source })?;
        debug_addr = l.local_addr().ok();
        let h = debug_handler(controller.clone(), xds.clone());
        let s = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let _ = transport::serve(l, None, h, s).await;
        }));
    }
    let fetch_tls = crate::fetch::client_config(common.extra_roots_pem.as_deref());
    tasks.push(tokio::spawn(crate::jwks::run(
        controller.clone(),
        fetch_tls.clone(),
        common.jwks_timing,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::modules::run(
        controller.clone(),
        modules.clone(),
        fetch_tls,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::rollout::run(
        controller.clone(),
        common.rollout_interval,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::lifecycle::run(
        controller.clone(),
        xds.clone(),
        launcher,
        shutdown.clone(),
    )));
    tracing::info!(%push_addr, ?debug_addr, tls = common.tls, "operator serving");
    Ok(Running {
        push_addr,
        debug_addr,
        controller,
        xds,
        roots_pem,
        modules,
        shutdown,
        tasks,
    })
}

/// Start in file mode: load the directory (the first translation is
/// published before this returns), watch it, serve.
pub async fn start_file_mode(
    cfg: FileModeConfig,
    launcher: Option<Arc<dyn WaypointLauncher>>,
) -> Result<Running, RunError> {
    let shutdown = CancellationToken::new();
    let store = ConfigStore::new();
    let controller = Controller::new(store);
    controller.add_sink(Arc::new(LogSink::default()));
    let watch = crate::source::file::watch(
        controller.clone(),
        cfg.config_dir.clone(),
        cfg.inventory.clone(),
        shutdown.clone(),
    )
    .await?;
    let auth = Arc::new(NodeTokenAuth::new(controller.clone()));
    start_common(
        &cfg.common,
        controller,
        auth,
        launcher,
        shutdown,
        vec![watch],
    )
    .await
}
