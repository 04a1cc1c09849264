//! `meshctl`: an istioctl-shaped CLI for the mesh and a one-command local
//! mesh (`meshctl up`) that runs the seed guide's walkthrough on one
//! machine. See `meshctl --help` and examples/README.md.

mod admin;
mod analyze;
mod app;
mod authz;
mod cluster;
mod cmd;
mod context;
mod filter;
mod get;
mod install;
mod jsonpath;
mod jwt;
mod kubectl;
mod mesh;
mod output;
mod prom;
mod proxy_config;
mod verify;
mod waypoint;
mod ztunnel_config;

use clap::Parser;
use cmd::{Cli, Cmd};
use context::RunDir;

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESHCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let long_running = matches!(cli.cmd, Cmd::Controlplane(_) | Cmd::App(_));
    init_tracing(if long_running { "info" } else { "warn" });
    if let Cmd::Controlplane(cmd::ControlplaneArgs {
        netns: Some(ns), ..
    }) = &cli.cmd
    {
        // Before the runtime starts its threads: they inherit the namespace.
        if let Err(e) = mesh::net::enter_netns(ns) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// Run one command; the exit code.
async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let rd = RunDir::resolve(cli.run_dir.as_deref());
    let bin_dir = cli.bin_dir.clone();
    match cli.cmd {
        Cmd::Up(a) => mesh::up::up(&rd, bin_dir.as_deref(), a).await,
        Cmd::Down(a) => mesh::down::down(&rd, a).map(|_| 0),
        Cmd::Verify(a) => verify::verify(&rd, &a).await,
        Cmd::Install(a) => install::install(&a).map(|_| 0),
        Cmd::Waypoint(c) => waypoint::run(&rd, c).await,
        Cmd::ZtunnelConfig(c) => ztunnel_config::run(&rd, c).await,
        Cmd::ProxyConfig(c) => proxy_config::run(&rd, c).await,
        Cmd::Analyze(a) => analyze::run(&rd, &a).await,
        Cmd::Authz(cmd::AuthzCmd::Check(a)) => authz::check(&rd, &a).await,
        Cmd::Filter(c) => filter::run(&rd, c).await,
        Cmd::Apply(a) => kubectl::apply(&rd, &a).map(|_| 0),
        Cmd::Delete(a) => kubectl::delete(&rd, &a).map(|_| 0),
        Cmd::Get(a) => kubectl::get(&rd, &a).await,
        Cmd::Describe(mut a) => {
            a.output = "yaml".into();
            kubectl::get(&rd, &a).await
        }
        Cmd::Label(a) => kubectl::label(&rd, &a).map(|_| 0),
        Cmd::Exec(a) => kubectl::exec(&rd, &a),
        Cmd::Logs(a) => kubectl::logs(&rd, &a).map(|_| 0),
        Cmd::Run(a) => kubectl::run(&rd, &a).await,
        Cmd::Rollout(cmd::RolloutCmd::Restart(a)) => {
            let target = a.target.trim_start_matches("deployments/");
            let target = target
                .trim_start_matches("deployment/")
                .trim_start_matches("deploy/");
            if target != "istiod" || a.namespace != "istio-system" {
                anyhow::bail!(
                    "only the control plane can be restarted in the local mesh: `meshctl rollout restart deployment/istiod -n istio-system` (got {} in {})",
                    a.target,
                    a.namespace
                );
            }
            mesh::up::restart_controlplane(&rd, std::time::Duration::from_secs(a.timeout))
                .await
                .map(|_| 0)
        }
        Cmd::Jwt(cmd::JwtCmd::Mint(a)) => jwt::mint(&a).map(|_| 0),
        Cmd::App(a) => {
            let info = app::AppInfo {
                pod: a.pod,
                namespace: a.namespace,
                app: a.app,
                version: a.version,
            };
            app::serve(a.listen, info).await.map(|_| 0)
        }
        Cmd::Controlplane(a) => mesh::controlplane::run(rd, a.waypoint_bin, a.filters_dir)
            .await
            .map(|_| 0),
    }
}
