//! Wiring: config source → registry → node agent (workload proxies), policy
//! re-checks, admin/metrics/readiness endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::admin::{self, AdminState, LogControl};
use crate::authz::ConnTracker;
use crate::certs::{CaClient, CertManager};
use crate::config::Config;
use crate::manager::Manager;
use crate::metrics::Metrics;
use crate::proxy::ProxyInputs;
use crate::registry::Registry;
use crate::source::ConfigSource;

/// Errors starting ztunnel.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An endpoint could not be bound.
    #[error("cannot bind {what} on {addr}: {source} (is another ztunnel running?)")]
    Bind {
        /// Which endpoint.
        what: &'static str,
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// A running ztunnel.
pub struct Ztunnel {
    /// Mesh state.
    pub registry: Arc<Registry>,
    /// Node agent / enrolment.
    pub manager: Arc<Manager>,
    /// Certificates.
    pub certs: Arc<CertManager>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Live inbound connections.
    pub tracker: Arc<ConnTracker>,
    /// Bound admin address.
    pub admin_addr: Option<SocketAddr>,
    /// Bound metrics address.
    pub metrics_addr: Option<SocketAddr>,
    /// Bound readiness address.
    pub readiness_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Ztunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ztunnel")
            .field("admin_addr", &self.admin_addr)
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

impl Ztunnel {
    /// Starts every component.
    pub async fn start(
        cfg: Config,
        source: Box<dyn ConfigSource>,
        ca: Arc<dyn CaClient>,
        log: Option<Arc<dyn LogControl>>,
    ) -> Result<Self, StartError> {
        let shutdown = CancellationToken::new();
        let registry = Registry::new();
        let certs = CertManager::new(ca, cfg.cert_ttl);
        let metrics = Metrics::new();
        let tracker = ConnTracker::new();
        let node = cfg.node.clone();
        let (admin_addr, metrics_addr, readiness_addr) =
            (cfg.admin_addr, cfg.metrics_addr, cfg.readiness_addr);
        let inputs = Arc::new(ProxyInputs {
            cfg,
            registry: registry.clone(),
            certs: certs.clone(),
            metrics: metrics.clone(),
            tracker: tracker.clone(),
        });
        let manager = Manager::new(inputs);
        let state = AdminState {
            registry: registry.clone(),
            manager: manager.clone(),
            certs: certs.clone(),
            metrics: metrics.clone(),
            tracker: tracker.clone(),
            log,
            node,
        };
        let mut tasks = Vec::new();
        let mut bound = [None, None, None];
        let endpoints: [(&'static str, Option<SocketAddr>, admin::Route); 3] = [
            ("admin", admin_addr, admin::admin),
            ("metrics", metrics_addr, admin::metrics),
            ("readiness", readiness_addr, admin::readiness),
        ];
        for (i, (what, addr, route)) in endpoints.into_iter().enumerate() {
            let Some(addr) = addr else { continue };
            let l = admin::bind(addr).await.map_err(|source| StartError::Bind {
                what,
                addr,
                source,
            })?;
            bound[i] = l.local_addr().ok();
            tasks.push(tokio::spawn(admin::serve(
                l,
                state.clone(),
                route,
                shutdown.clone(),
            )));
        }
        {
            let (registry, shutdown) = (registry.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = source.run(registry, shutdown).await {
                    error!(error = %e, "configuration source failed");
                }
            }));
        }
        tasks.push(tokio::spawn(manager.clone().run(shutdown.clone())));
        tasks.push(tokio::spawn(recheck_on_policy_change(
            registry.clone(),
            tracker.clone(),
            shutdown.clone(),
        )));
        info!(admin = ?bound[0], metrics = ?bound[1], readiness = ?bound[2], "ztunnel started");
        Ok(Self {
            registry,
            manager,
            certs,
            metrics,
            tracker,
            admin_addr: bound[0],
            metrics_addr: bound[1],
            readiness_addr: bound[2],
            shutdown,
            tasks,
        })
    }

    /// Waits until config is synced and all local workloads are enrolled.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.registry.is_synced() && self.manager.is_ready() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A token cancelled on shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops everything (removes capture rules) and waits for the tasks.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn recheck_on_policy_change(
    registry: Arc<Registry>,
    tracker: Arc<ConnTracker>,
    shutdown: CancellationToken,
) {
    let mut rx = registry.subscribe();
    let mut last = rx.borrow().policy;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
        let policy = rx.borrow_and_update().policy;
        if policy != last {
            last = policy;
            let closed = tracker.recheck(&registry.read());
            if closed > 0 {
                info!(closed, "policy change closed live connections");
            }
        }
    }
}
