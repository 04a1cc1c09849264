//! ztunnel binary: parses flags and starts [`ztunnel::Ztunnel`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use mesh_common::ca::CertificateAuthority;
use mesh_common::xds::transport::Endpoint;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;
use ztunnel::admin::LogControl;
use ztunnel::certs::{CaClient, LocalCa};
use ztunnel::config::{ConfigInputs, construct_config};
use ztunnel::source::{ConfigSource, FileSource};
use ztunnel::xds::{OperatorCa, XdsSource};

/// Per-node L4 proxy: HBONE mTLS, L4 authorization, waypoint steering and
/// in-pod traffic capture.
#[derive(Debug, Parser)]
#[command(name = "ztunnel", version)]
struct Args {
    /// This node's name; workloads whose `node` equals it are served here.
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// Load workloads/services/policies from a YAML or JSON file (reloaded on change).
    #[arg(long, env = "ZTUNNEL_CONFIG_FILE", conflicts_with = "xds_address")]
    config_file: Option<PathBuf>,
    /// Operator push endpoint (`http://host:15012` or `https://host:15012`).
    #[arg(long, env = "XDS_ADDRESS")]
    xds_address: Option<String>,
    /// Roots (PEM) to verify an `https` operator endpoint.
    #[arg(long)]
    xds_root_cert: Option<PathBuf>,
    /// File holding this node's bootstrap token for the operator's CA.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// `inpod` (enter each pod's network namespace; needs root) or `shared`.
    #[arg(long, default_value = "inpod")]
    capture: String,
    /// Where a pod's network namespace lives; {name}, {namespace}, {uid} are substituted.
    #[arg(long, default_value = ztunnel::config::DEFAULT_NETNS_TEMPLATE)]
    netns_template: String,
    /// CA certificate (PEM) used to sign workload CSRs locally (file mode).
    #[arg(long, requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// CA private key (PEM) for --ca-cert.
    #[arg(long, requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// Roots to trust (PEM); defaults to --ca-cert.
    #[arg(long)]
    ca_roots: Option<PathBuf>,
    /// Trust domain of the local CA.
    #[arg(long, default_value = mesh_common::model::DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// Admin endpoint (config dump, log level), or "off".
    #[arg(long, default_value = ztunnel::config::DEFAULT_ADMIN_ADDR)]
    admin_addr: String,
    /// Prometheus endpoint, or "off".
    #[arg(long, default_value = ztunnel::config::DEFAULT_METRICS_ADDR)]
    metrics_addr: String,
    /// Readiness endpoint, or "off".
    #[arg(long, default_value = ztunnel::config::DEFAULT_READINESS_ADDR)]
    readiness_addr: String,
    /// Workload certificate lifetime (e.g. 24h, 10m).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    cert_ttl: std::time::Duration,
    /// Log filter (tracing EnvFilter syntax); changeable at runtime via POST /logging.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
    /// Threads serving traffic: 1 runs everything on one current-thread
    /// runtime; more use Tokio's work-stealing runtime.
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
}

struct ReloadLog(reload::Handle<EnvFilter, tracing_subscriber::Registry>);

impl LogControl for ReloadLog {
    fn get(&self) -> String {
        self.0
            .with_current(|f| f.to_string())
            .unwrap_or_else(|e| format!("unknown ({e})"))
    }
    fn set(&self, filter: &str) -> Result<(), String> {
        let f = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
        self.0.reload(f).map_err(|e| e.to_string())
    }
}

/// Keeps glibc from returning large freed buffers (HTTP/2 frames up to
/// 1 MiB, copy buffers) to the kernel after every use: without this each
/// buffer is a fresh `mmap` whose pages fault in on first touch, which cost
/// ~20% of the data path's CPU in profiles.
#[allow(unsafe_code)]
fn tune_malloc() {
    // SAFETY: mallopt only changes allocator parameters; it is called once,
    // before any other thread exists, with valid parameter constants.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> Result<()> {
    tune_malloc();
    let args = Args::parse();
    let (filter, handle) =
        reload::Layer::new(EnvFilter::try_new(&args.log_level).context("invalid --log-level")?);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer())
        .init();
    // One worker: a current-thread runtime (I/O polling and every task on
    // one thread, no work-stealing queues or wake-ups of idle siblings).
    let rt = if args.worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.worker_threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run(args, Arc::new(ReloadLog(handle))))
}

async fn run(args: Args, log: Arc<dyn LogControl>) -> Result<()> {
    let cfg = construct_config(ConfigInputs {
        node: args.node.clone(),
        capture: Some(args.capture.clone()),
        netns_template: Some(args.netns_template.clone()),
        admin_addr: Some(args.admin_addr.clone()),
        metrics_addr: Some(args.metrics_addr.clone()),
        readiness_addr: Some(args.readiness_addr.clone()),
        cert_ttl: Some(args.cert_ttl),
        config_file: args.config_file.clone(),
        hbone_port: None,
    })?;
    let endpoint = match &args.xds_address {
        Some(addr) => Some(endpoint(addr, args.xds_root_cert.as_deref())?),
        None => None,
    };
    let source: Box<dyn ConfigSource> = match (&args.config_file, &endpoint) {
        (Some(path), _) => Box::new(FileSource::new(path)),
        (None, Some(ep)) => Box::new(XdsSource {
            endpoint: ep.clone(),
            node: args.node.clone(),
        }),
        (None, None) => bail!("no configuration source: pass --config-file or --xds-address"),
    };
    let ca: Arc<dyn CaClient> = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => {
            let cert_pem = std::fs::read_to_string(cert)
                .with_context(|| format!("reading {}", cert.display()))?;
            let key_pem = std::fs::read_to_string(key)
                .with_context(|| format!("reading {}", key.display()))?;
            let roots = match &args.ca_roots {
                Some(r) => std::fs::read_to_string(r)
                    .with_context(|| format!("reading {}", r.display()))?,
                None => cert_pem.clone(),
            };
            let ca = CertificateAuthority::from_pem(
                &args.trust_domain,
                &cert_pem,
                &key_pem,
                "",
                &roots,
            )?;
            Arc::new(LocalCa(Arc::new(ca)))
        }
        _ => match &endpoint {
            Some(ep) => {
                let token = match &args.token_file {
                    Some(f) => Some(
                        std::fs::read_to_string(f)
                            .with_context(|| format!("reading {}", f.display()))?
                            .trim()
                            .to_string(),
                    ),
                    None => None,
                };
                Arc::new(OperatorCa {
                    endpoint: ep.clone(),
                    node: args.node.clone(),
                    token,
                })
            }
            None => bail!("no CA: pass --ca-cert and --ca-key, or --xds-address"),
        },
    };
    let zt = ztunnel::Ztunnel::start(cfg, source, ca, Some(log)).await?;
    let token = zt.shutdown_token();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm() => {}
        _ = token.cancelled() => {}
    }
    tracing::info!("shutting down: removing capture rules");
    zt.shutdown().await;
    Ok(())
}

/// The operator endpoint for `addr` (`http://` or `https://` with `roots`).
fn endpoint(addr: &str, roots: Option<&std::path::Path>) -> Result<Endpoint> {
    let uri: http::Uri = addr
        .parse()
        .with_context(|| format!("invalid --xds-address {addr:?}"))?;
    let tls = match (uri.scheme_str(), roots) {
        (Some("https"), Some(path)) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut store = rustls::RootCertStore::empty();
            for c in mesh_common::ca::certs_from_pem(&pem)? {
                store.add(c)?;
            }
            let cfg = rustls::ClientConfig::builder_with_provider(mesh_common::tls::provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(store)
                .with_no_client_auth();
            Some(Arc::new(cfg))
        }
        (Some("https"), None) => bail!("--xds-address is https: pass --xds-root-cert"),
        _ => None,
    };
    Ok(Endpoint {
        uri,
        tls,
        server_name: None,
    })
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
