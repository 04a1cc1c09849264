//! `operator`: the mesh control plane.
//!
//! ```text
//! operator run --config-dir examples/ --inventory inventory.yaml   # file mode
//! operator kube                                                     # in a cluster
//! operator crdgen > operator/crds/crds.yaml
//! operator analyze examples/ --inventory inventory.yaml [-n shop]
//! operator translate examples/ --inventory inventory.yaml          # JSON snapshot
//! ```

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "operator",
    about = "Control plane of the mesh (Istio-compatible configuration)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Serve {
    /// State directory (CA, module cache).
    #[arg(
        long,
        default_value = "/var/lib/mesh-operator",
        env = "OPERATOR_STATE_DIR"
    )]
    state_dir: PathBuf,
    /// Push / CA listen address.
    #[arg(long, default_value = operator::run::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Metrics / debug listen address.
    #[arg(long, default_value = operator::run::DEFAULT_DEBUG_LISTEN)]
    debug_listen: SocketAddr,
    /// Serve the push port in cleartext HTTP/2 (development only).
    #[arg(long)]
    plaintext: bool,
    /// Extra DNS names for the serving certificate.
    #[arg(long)]
    server_name: Vec<String>,
    /// Refuse the push stream without a mesh client certificate.
    #[arg(long)]
    require_client_cert: bool,
    /// Directory holding the first-party filter components (jwt.wasm, …).
    #[arg(long, env = "OPERATOR_FILTERS_DIR")]
    filters_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// File mode: serve the configuration in a directory.
    Run {
        /// Directory of YAML resources.
        #[arg(long)]
        config_dir: PathBuf,
        /// Inventory file (nodes, namespaces, workloads, services).
        #[arg(long)]
        inventory: Option<PathBuf>,
        #[command(flatten)]
        serve: Serve,
    },
    /// Kubernetes mode: watch the API server.
    Kube {
        #[command(flatten)]
        serve: Serve,
    },
    /// Print the CRDs of every resource the operator reads.
    Crdgen,
    /// Print Istio analyzer messages for a directory.
    Analyze {
        /// Directory of YAML resources.
        dir: PathBuf,
        /// Inventory file.
        #[arg(long)]
        inventory: Option<PathBuf>,
        /// Only this namespace.
        #[arg(short, long)]
        namespace: Option<String>,
        /// Output format.
        #[arg(short, long, default_value = "text")]
        output: String,
    },
    /// Print the translated snapshots (JSON).
    Translate {
        /// Directory of YAML resources.
        dir: PathBuf,
        /// Inventory file.
        #[arg(long)]
        inventory: Option<PathBuf>,
    },
}

fn common(s: Serve) -> operator::run::CommonConfig {
    let mut c = operator::run::CommonConfig::new(s.state_dir);
    c.listen = s.listen;
    c.debug_listen = Some(s.debug_listen);
    c.tls = !s.plaintext;
    c.server_names = s.server_name;
    c.require_client_cert = s.require_client_cert;
    c.first_party_dir = s.filters_dir;
    c
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().cmd {
        Cmd::Crdgen => print!("{}", operator::crd::crdgen()?),
        Cmd::Analyze {
            dir,
            inventory,
            namespace,
            output,
        } => {
            let snap = operator::source::file::load(&dir, inventory.as_deref())?;
            for e in &snap.parse_errors {
                eprintln!("error: {e}");
            }
            let mut cs = snap.base;
            for o in snap.objects {
                cs.resources.push(o.object);
            }
            let msgs = operator::analyze::analyze(&cs, namespace.as_deref());
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&msgs)?);
            } else if msgs.is_empty() {
                println!(
                    "\u{2714} No validation issues found when analyzing {}.",
                    dir.display()
                );
            } else {
                for m in &msgs {
                    println!("{m}");
                }
            }
            if !snap.parse_errors.is_empty()
                || msgs
                    .iter()
                    .any(|m| m.level == operator::analyze::Level::Error)
            {
                std::process::exit(79);
            }
        }
        Cmd::Translate { dir, inventory } => {
            let snap = operator::source::file::load(&dir, inventory.as_deref())?;
            let store = mesh_common::xds::store::ConfigStore::new();
            let c = operator::controller::Controller::new(store);
            for d in c.apply(snap)? {
                eprintln!("{d}");
            }
            let t = c.translation().context("no translation")?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "workloads": t.workloads, "services": t.services,
                    "authorizations": t.authorizations, "waypoints": t.waypoints,
                    "statuses": t.statuses.0.iter().map(|(k, v)| serde_json::json!({"target": k, "conditions": v})).collect::<Vec<_>>(),
                }))?
            );
        }
        Cmd::Run {
            config_dir,
            inventory,
            serve,
        } => {
            let running = operator::run::start_file_mode(
                operator::run::FileModeConfig {
                    config_dir,
                    inventory,
                    common: common(serve),
                },
                None,
            )
            .await?;
            tokio::signal::ctrl_c().await?;
            running.stop().await;
        }
        Cmd::Kube { serve } => {
            let running = operator::source::kube::start(common(serve)).await?;
            tokio::signal::ctrl_c().await?;
            running.stop().await;
        }
    }
    Ok(())
}
