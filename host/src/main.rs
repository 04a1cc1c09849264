//! `waypoint`: parses flags and runs [`waypoint::waypoint::Waypoint`] until
//! SIGTERM or SIGINT, then drains.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use waypoint::cli::{Args, watch_cert};
use waypoint::waypoint::Waypoint;

fn main() -> anyhow::Result<()> {
    // Child of the out-of-process filter compiler: compile and exit. Its
    // stderr is the parent's error message, so one line, no backtrace.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv
        .get(1)
        .is_some_and(|a| a == waypoint::cli::COMPILE_SUBCOMMAND)
    {
        let r = match &argv[..] {
            [_, _, input, output] => waypoint::filter::compile_to_file(
                &waypoint::filter::RuntimeConfig::default(),
                std::path::Path::new(input),
                std::path::Path::new(output),
            ),
            _ => Err(anyhow::anyhow!(
                "usage: waypoint {} <component.wasm> <output.cwasm>",
                waypoint::cli::COMPILE_SUBCOMMAND
            )),
        };
        if let Err(e) = r {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let args = Args::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&args.log_level));
    let (filter, reload) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let stale = waypoint::cli::remove_stale_compile_dirs(&std::env::temp_dir());
    if stale > 0 {
        tracing::info!("removed {stale} compile directories left by killed waypoints");
    }
    // The control plane (config source, applier, admin endpoints) runs on
    // this thread; the proxy listeners run on their own worker threads
    // (`waypoint::workers`).
    let r = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args, reload));
    // The out-of-process compiler's directory (empty by now).
    let _ = std::fs::remove_dir(
        std::env::temp_dir().join(format!("waypoint-{}-compile", std::process::id())),
    );
    r
}

async fn run(
    args: Args,
    reload: tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
) -> anyhow::Result<()> {
    let (mut opts, source) = args.resolve().map_err(anyhow::Error::msg)?;
    opts.log = Some(Arc::new(move |level: &str| {
        let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        reload.reload(f).map_err(|e| e.to_string())
    }));
    if let (Some(cert), Some(c), Some(k), Some(r)) =
        (&opts.cert, &args.cert_chain, &args.key, &args.roots)
    {
        watch_cert(
            cert.clone(),
            c.clone(),
            k.clone(),
            r.clone(),
            Duration::from_secs(30),
        );
    }
    let w = Waypoint::start(opts, source)
        .await
        .context("starting the waypoint")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    w.shutdown().await;
    Ok(())
}
