//! Pods of the local mesh: scheduling (node, address, service VIPs) and
//! reconciliation (a network namespace on the node's bridge per pod, the
//! sample app started in it, `/etc/hosts` with the cluster's names).

use super::net::{self, NetError};
use super::state::{PodRuntime, Proc, State};
use crate::cluster::{Cluster, Pod};
use crate::context::RunDir;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// First host number of pod addresses on a node (10.x.n.10).
pub const FIRST_POD_HOST: u8 = 10;
/// Last host number of pod addresses (waypoints use 200+).
pub const LAST_POD_HOST: u8 = 199;
/// DNS suffix of services.
pub const DOMAIN: &str = "cluster.local";

/// Pod runtime errors.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// Network setup.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Process start.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Address pool exhausted.
    #[error("node {0} has no free pod address left")]
    Exhausted(String),
}

/// Assign nodes and addresses to new pods and VIPs to new services.
pub fn schedule(c: &mut Cluster, st: &mut State) {
    let nodes = st.plan.nodes.clone();
    for i in 0..c.pods.len() {
        if c.pods[i].node.is_empty() || !nodes.contains(&c.pods[i].node) {
            let load = |n: &String| c.pods.iter().filter(|p| &p.node == n).count();
            if let Some(n) = nodes.iter().min_by_key(|n| load(n)).cloned() {
                c.pods[i].node = n;
            }
        }
        if c.pods[i].ip.is_none() {
            let node = c.pods[i].node.clone();
            let Some(n) = st.plan.node_index(&node) else {
                continue;
            };
            let used: Vec<std::net::IpAddr> = c.pods.iter().filter_map(|p| p.ip).collect();
            let next = st.next_host.entry(node).or_insert(FIRST_POD_HOST);
            let mut tries = 0;
            while used.contains(&std::net::IpAddr::V4(st.plan.pod_ip(n, *next))) && tries < 256 {
                *next = if *next >= LAST_POD_HOST {
                    FIRST_POD_HOST
                } else {
                    *next + 1
                };
                tries += 1;
            }
            c.pods[i].ip = Some(std::net::IpAddr::V4(st.plan.pod_ip(n, *next)));
            *next = if *next >= LAST_POD_HOST {
                FIRST_POD_HOST
            } else {
                *next + 1
            };
        }
    }
    for s in c
        .services
        .iter_mut()
        .filter(|s| !s.headless && s.cluster_ip.is_none())
    {
        s.cluster_ip = Some(st.plan.vip(st.next_vip));
        st.next_vip += 1;
    }
}

/// Start a process in a network namespace, in its own process group (so a
/// terminal's Ctrl-C does not reach it), logging to `log`.
pub fn spawn_in(
    netns: Option<&str>,
    program: &Path,
    args: &[String],
    log: &Path,
) -> Result<Proc, PodError> {
    let what = program.display().to_string();
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d).map_err(|source| PodError::Spawn {
            what: what.clone(),
            source,
        })?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| PodError::Spawn {
            what: what.clone(),
            source,
        })?;
    let f2 = f.try_clone().map_err(|source| PodError::Spawn {
        what: what.clone(),
        source,
    })?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    };
    use std::os::unix::process::CommandExt;
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(f2)
        .process_group(0)
        .spawn()
        .map_err(|source| PodError::Spawn { what, source })?;
    Ok(Proc {
        pid: child.id(),
        netns: netns.map(str::to_string),
        log: log.to_path_buf(),
    })
}

/// Stop a process: SIGTERM, then SIGKILL after `grace`.
pub fn stop(p: &Proc, grace: Duration) {
    use nix::sys::signal::{Signal, kill};
    let pid = nix::unistd::Pid::from_raw(p.pid as i32);
    if !p.alive() {
        return;
    }
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while p.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        // Reap when it is our child.
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
    if p.alive() {
        let _ = kill(pid, Signal::SIGKILL);
    }
}

fn app_args(p: &Pod, ip: &str) -> Vec<String> {
    let mut a = vec!["app".to_string()];
    for port in &p.ports {
        a.push("--listen".into());
        a.push(format!("{ip}:{}", port.port));
    }
    a.extend([
        "--pod".into(),
        p.name.clone(),
        "--namespace".into(),
        p.namespace.clone(),
    ]);
    if let Some(app) = p.labels.get("app") {
        a.extend(["--app".into(), app.clone()]);
    }
    if let Some(v) = p.labels.get("version") {
        a.extend(["--version".into(), v.clone()]);
    }
    a
}

/// Create the network namespace of a pod and start its app.
fn start_pod(rd: &RunDir, st: &mut State, p: &Pod) -> Result<PodRuntime, PodError> {
    let plan = st.plan.clone();
    let n = plan
        .node_index(&p.node)
        .ok_or_else(|| PodError::Exhausted(p.node.clone()))?;
    let Some(std::net::IpAddr::V4(ip)) = p.ip else {
        return Err(PodError::Exhausted(p.node.clone()));
    };
    let exe = std::env::current_exe().map_err(|source| PodError::Spawn {
        what: "meshctl".into(),
        source,
    })?;
    let log = rd.log_file(&format!("app-{}-{}", p.namespace, p.name));
    if plan.loopback {
        // No namespace: the app listens on the pod's loopback address.
        let app = match p.ports.is_empty() {
            true => None,
            false => Some(spawn_in(None, &exe, &app_args(p, &ip.to_string()), &log)?),
        };
        return Ok(PodRuntime {
            netns: String::new(),
            link: String::new(),
            app,
        });
    }
    let ns = plan.pod_netns(&p.namespace, &p.name);
    let link = format!("m{}p{}", plan.id, st.next_link);
    st.next_link += 1;
    net::add_netns(&ns)?;
    net::attach(
        &plan.node_netns(n),
        &ns,
        &link,
        ip,
        Some(plan.pod_gateway(n)),
    )?;
    let app = match p.ports.is_empty() {
        true => None,
        false => Some(spawn_in(Some(&ns), &exe, &app_args(p, "0.0.0.0"), &log)?),
    };
    Ok(PodRuntime {
        netns: ns,
        link,
        app,
    })
}

/// Stop a pod's app and remove its network namespace.
pub fn stop_pod(rt: &PodRuntime) {
    if let Some(a) = &rt.app {
        stop(a, Duration::from_secs(2));
    }
    if !rt.netns.is_empty() {
        let _ = net::del_netns(&rt.netns);
    }
}

/// Make the running pods match the cluster.
pub fn reconcile(rd: &RunDir, c: &Cluster, st: &mut State) -> Result<(), PodError> {
    let desired: Vec<&Pod> = c.pods.iter().filter(|p| p.ip.is_some()).collect();
    let gone: Vec<String> = st
        .pods
        .keys()
        .filter(|k| !desired.iter().any(|p| &p.key() == *k))
        .cloned()
        .collect();
    for k in gone {
        if let Some(rt) = st.pods.remove(&k) {
            stop_pod(&rt);
        }
    }
    for p in desired {
        if st.pods.contains_key(&p.key()) {
            continue;
        }
        let rt = start_pod(rd, st, p)?;
        st.pods.insert(p.key(), rt);
    }
    for p in &c.pods {
        if let Some(rt) = st.pods.get(&p.key()).filter(|rt| !rt.netns.is_empty()) {
            net::write_hosts(&rt.netns, &c.hosts_for(&p.namespace, DOMAIN)).map_err(|source| {
                PodError::Spawn {
                    what: format!("/etc/netns/{}/hosts", rt.netns),
                    source,
                }
            })?;
        }
    }
    Ok(())
}
