//! `meshctl controlplane`: the local mesh's control plane process, run by
//! `up` inside the fabric network namespace. It is the operator in file
//! mode (the run directory's config directory and inventory, watched) with
//! the [`LocalLauncher`] starting a waypoint process per waypoint Gateway.

use super::launcher::LocalLauncher;
use super::state::State;
use crate::context::{RunDir, write_atomic};
use operator::run::{CommonConfig, FileModeConfig, start_file_mode};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Written to `operator/ready.json` once the control plane serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ready {
    /// Push / CA address (15012).
    pub push: SocketAddr,
    /// Debug / metrics address (15014).
    pub debug: Option<SocketAddr>,
    /// Pid.
    pub pid: u32,
}

/// Run until SIGTERM/SIGINT.
pub async fn run(
    rd: RunDir,
    waypoint_bin: PathBuf,
    filters_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let st = State::load(&rd)?;
    let plan = st.plan.clone();
    let mut common = CommonConfig::new(rd.operator_dir());
    common.listen = SocketAddr::from((plan.operator_ip(), 15012));
    common.debug_listen = Some(SocketAddr::from((plan.operator_ip(), 15014)));
    common.tls = true;
    common.require_client_cert = false;
    common.first_party_dir = filters_dir;
    let launcher = Arc::new(LocalLauncher::new(rd.clone(), plan, waypoint_bin));
    let cfg = FileModeConfig {
        config_dir: rd.config_dir(),
        inventory: Some(rd.inventory_file()),
        common,
    };
    let running = start_file_mode(cfg, Some(launcher)).await?;
    write_atomic(&rd.roots_file(), running.roots_pem.as_bytes())?;
    let ready = Ready {
        push: running.push_addr,
        debug: running.debug_addr,
        pid: std::process::id(),
    };
    write_atomic(&rd.ready_file(), &serde_json::to_vec_pretty(&ready)?)?;
    tracing::info!(push = %running.push_addr, "local mesh control plane ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping: waypoints first");
    running.stop().await;
    let _ = std::fs::remove_file(rd.ready_file());
    Ok(())
}
