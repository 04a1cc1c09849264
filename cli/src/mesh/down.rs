//! `meshctl down`: stop every process the mesh started (control plane
//! first, which stops its waypoints; then ztunnels, which remove their
//! capture rules; then the apps), delete every network namespace (the
//! capture rules inside go with them) and the run directory.

use super::launcher::{WaypointRecord, remove_record};
use super::net;
use super::pods::{stop, stop_pod};
use super::state::State;
use crate::cmd::DownArgs;
use crate::context::RunDir;
use std::time::Duration;

/// `down`.
pub fn down(rd: &RunDir, a: DownArgs) -> anyhow::Result<()> {
    if !rd.state_file().exists() {
        if a.force {
            let prefix = format!("mesh{}", a.net_id);
            let left = net::list_netns(&prefix);
            // Processes still running inside them (control plane, ztunnels,
            // waypoints, apps): stop them before their namespaces go.
            let pids = net::pids_in_netns(&left);
            for pid in &pids {
                let p = super::state::Proc {
                    pid: *pid,
                    netns: None,
                    log: Default::default(),
                };
                stop(&p, Duration::from_secs(3));
            }
            for ns in &left {
                net::del_netns(ns)?;
            }
            let _ = std::fs::remove_dir_all(&rd.root);
            println!(
                "removed {} leftover network namespaces ({prefix}-*) and stopped {} processes in them",
                left.len(),
                pids.len()
            );
            return Ok(());
        }
        anyhow::bail!(
            "no local mesh in {} (nothing to do; `meshctl down --force` stops the processes and removes the network namespaces left by network id)",
            rd.root.display()
        );
    }
    let summary = teardown(rd, !a.keep_logs, true)?;
    println!("{summary}");
    Ok(())
}

/// Remove everything a mesh in `rd` created; returns a summary line.
pub fn teardown(rd: &RunDir, remove_logs: bool, verbose: bool) -> anyhow::Result<String> {
    let say = |m: &str| {
        if verbose {
            eprintln!("==> {m}");
        }
    };
    let st = State::load(rd)?;
    let mut stopped = 0;
    if let Some(cp) = &st.controlplane {
        say("stopping the control plane and its waypoints");
        stop(cp, Duration::from_secs(15));
        stopped += 1;
    }
    for w in WaypointRecord::all(rd) {
        remove_record(rd, &w);
        stopped += 1;
    }
    say("stopping ztunnels (removing capture rules)");
    for p in st.ztunnels.values() {
        stop(p, Duration::from_secs(5));
        stopped += 1;
    }
    say("stopping pods");
    for rt in st.pods.values() {
        stop_pod(rt);
        stopped += usize::from(rt.app.is_some());
    }
    if !st.plan.loopback {
        say("removing network namespaces");
    }
    let left = net::list_netns(&st.plan.prefix());
    for ns in &left {
        net::del_netns(ns)?;
    }
    if remove_logs {
        std::fs::remove_dir_all(&rd.root)?;
    } else {
        for entry in std::fs::read_dir(&rd.root)?.filter_map(Result::ok) {
            if entry.file_name() != "logs" {
                let p = entry.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
    Ok(format!(
        "local mesh removed: {stopped} processes stopped, {} network namespaces deleted{}",
        left.len() + st.pods.values().filter(|p| !p.netns.is_empty()).count(),
        if remove_logs {
            String::new()
        } else {
            format!(", logs kept in {}", rd.logs_dir().display())
        }
    ))
}
