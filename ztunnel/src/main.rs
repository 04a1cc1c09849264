//! ztunnel binary: parses flags and starts [`ztunnel::Ztunnel`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use mesh_common::ca::CertificateAuthority;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;
use ztunnel::admin::LogControl;
use ztunnel::certs::{CaClient, LocalCa};
use ztunnel::config::{ConfigInputs, construct_config};
use ztunnel::source::{ConfigSource, FileSource};

/// Per-node L4 proxy: HBONE mTLS, L4 authorization, waypoint steering and
/// in-pod traffic capture.
#[derive(Debug, Parser)]
#[command(name = "ztunnel", version)]
struct Args {
    /// This node's name; workloads whose `node` equals it are served here.
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// Load workloads/services/policies from a YAML or JSON file (reloaded on change).
    #[arg(long, env = "ZTUNNEL_CONFIG_FILE")]
    config_file: Option<PathBuf>,
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
    /// Tokio worker threads.
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

fn main() -> Result<()> {
    let args = Args::parse();
    let (filter, handle) =
        reload::Layer::new(EnvFilter::try_new(&args.log_level).context("invalid --log-level")?);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer())
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads.max(1))
        .enable_all()
        .build()?;
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
    let source: Box<dyn ConfigSource> = match &args.config_file {
        Some(path) => Box::new(FileSource::new(path)),
        None => bail!("no configuration source: pass --config-file"),
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
        _ => bail!("no CA: pass --ca-cert and --ca-key"),
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

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
