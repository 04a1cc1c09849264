//! `meshctl up`: network, control plane, one ztunnel per node, the sample
//! workloads, the examples applied, waypoints programmed — with a progress
//! line per step — and optionally `verify`.

use super::net::{self, NetPlan};
use super::pods::spawn_in;
use super::state::State;
use super::{Mesh, conditions_of};
use crate::cluster::manifest::{self, Doc};
use crate::cluster::store::Store;
use crate::cmd::UpArgs;
use crate::context::{RunDir, find_binary, write_atomic};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// First-party filter components the waypoint chain needs (`authz-ext`:
/// the authz filter with ext-authz support, for CUSTOM policies).
pub const FIRST_PARTY: [&str; 6] = ["jwt", "authz", "authz-ext", "routing", "fault", "retry"];

/// The seed sample built into meshctl (used when ./examples/shop is absent).
const EMBEDDED: [(&str, &str); 13] = [
    (
        "00-namespace.yaml",
        include_str!("../../../examples/shop/00-namespace.yaml"),
    ),
    (
        "01-workloads.yaml",
        include_str!("../../../examples/shop/01-workloads.yaml"),
    ),
    (
        "10-peer-authentication.yaml",
        include_str!("../../../examples/shop/10-peer-authentication.yaml"),
    ),
    (
        "11-deny-all.yaml",
        include_str!("../../../examples/shop/11-deny-all.yaml"),
    ),
    (
        "12-orders-allow-web.yaml",
        include_str!("../../../examples/shop/12-orders-allow-web.yaml"),
    ),
    (
        "13-orders-allow-waypoint.yaml",
        include_str!("../../../examples/shop/13-orders-allow-waypoint.yaml"),
    ),
    (
        "20-waypoint.yaml",
        include_str!("../../../examples/shop/20-waypoint.yaml"),
    ),
    (
        "30-destination-rule.yaml",
        include_str!("../../../examples/shop/30-destination-rule.yaml"),
    ),
    (
        "31-virtual-service.yaml",
        include_str!("../../../examples/shop/31-virtual-service.yaml"),
    ),
    (
        "40-orders-l7.yaml",
        include_str!("../../../examples/shop/40-orders-l7.yaml"),
    ),
    (
        "41-request-authentication.yaml",
        include_str!("../../../examples/shop/41-request-authentication.yaml"),
    ),
    (
        "42-orders-require-jwt.yaml",
        include_str!("../../../examples/shop/42-orders-require-jwt.yaml"),
    ),
    (
        "50-telemetry.yaml",
        include_str!("../../../examples/shop/50-telemetry.yaml"),
    ),
];

/// A progress line (`==>` step, `  …` detail) on stderr.
pub fn step(msg: &str) {
    eprintln!("==> {msg}");
}

/// A detail line.
pub fn detail(msg: &str) {
    eprintln!("    {msg}");
}

/// The sample manifests: `--manifests`, ./examples/shop, or the built-in copy.
pub fn sample_docs(manifests: Option<&Path>) -> anyhow::Result<(String, Vec<Doc>)> {
    let dir = match manifests {
        Some(d) => Some(d.to_path_buf()),
        None => {
            Some(PathBuf::from("examples/shop")).filter(|d| d.join("01-workloads.yaml").is_file())
        }
    };
    match dir {
        Some(d) => Ok((d.display().to_string(), manifest::load(&d, "default")?)),
        None => {
            let mut docs = Vec::new();
            for (name, text) in EMBEDDED {
                docs.extend(manifest::parse_text(
                    text,
                    &format!("examples/shop/{name}"),
                    "default",
                )?);
            }
            Ok(("examples/shop (built into meshctl)".into(), docs))
        }
    }
}

/// The guest build's output directory.
pub fn default_filters_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MESH_GUEST_CACHE") {
        return PathBuf::from(d).join("out");
    }
    let cache = std::env::var_os("MESH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/ambient-mesh")
        });
    cache.join("guests/out")
}

fn check_tools(loopback: bool) -> anyhow::Result<()> {
    let tools: &[&str] = if loopback {
        &["curl"]
    } else {
        &["ip", "iptables", "curl"]
    };
    for tool in tools.iter().copied() {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            bail!("`{tool}` is not installed: run scripts/setup.sh (apt: iproute2 iptables curl)");
        }
    }
    Ok(())
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {timeout:?} waiting for {what}{}",
                if last.is_empty() {
                    String::new()
                } else {
                    format!(": {last}")
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Apply documents to the run directory (lock, apply, commit); prints the lines.
pub fn apply_docs(rd: &RunDir, docs: Vec<Doc>, quiet: bool) -> anyhow::Result<()> {
    let mut store = Store::open(rd)?;
    let lines = store.apply(docs)?;
    store.commit()?;
    if !quiet {
        for l in lines {
            detail(&l);
        }
    }
    Ok(())
}

/// `up`.
pub async fn up(rd: &RunDir, bin_dir: Option<&Path>, a: UpArgs) -> anyhow::Result<i32> {
    let t0 = Instant::now();
    let loopback = a.loopback || !net::is_root();
    if loopback {
        eprintln!(
            "note: {}loopback mode — no network namespaces and no traffic capture: the operator, ztunnels (shared mode), \
             waypoints and apps run on their own 127.{}.x.x addresses; the checks that need captured traffic are skipped. \
             Run as root (sudo) for the full mesh.",
            if net::is_root() { "" } else { "not root: " },
            200 + a.net_id
        );
    }
    if rd.state_file().exists() {
        let st = State::load(rd).ok();
        if st
            .as_ref()
            .and_then(|s| s.controlplane.as_ref())
            .is_some_and(|p| p.alive())
        {
            bail!(
                "a local mesh is already running in {}: `meshctl down` first (or pass --run-dir)",
                rd.root.display()
            );
        }
        step("removing the leftovers of a previous mesh");
        super::down::teardown(rd, true, false)?;
    }
    check_tools(loopback)?;
    let ztunnel = find_binary("ztunnel", "ztunnel", bin_dir)?;
    let waypoint = find_binary("waypoint", "waypoint", bin_dir)?;
    let filters = a.filters_dir.clone().unwrap_or_else(default_filters_dir);
    let missing: Vec<&str> = FIRST_PARTY
        .iter()
        .copied()
        .filter(|f| !filters.join(format!("{f}.wasm")).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "first-party filter components missing in {}: {} (build them with scripts/build-guests.sh, or pass --filters-dir)",
            filters.display(),
            missing
                .iter()
                .map(|m| format!("{m}.wasm"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (source, docs) = sample_docs(a.manifests.as_deref())?;
    let exe = std::env::current_exe().context("locating meshctl")?;

    std::fs::create_dir_all(rd.logs_dir())
        .with_context(|| format!("creating {}", rd.root.display()))?;
    std::fs::create_dir_all(rd.config_dir())?;
    let mut plan = NetPlan::new(a.net_id, a.nodes.max(1));
    plan.loopback = loopback;
    let mut st = State::new(plan.clone());
    for n in &plan.nodes {
        st.node_tokens
            .insert(n.clone(), hex::encode(rand::random::<[u8; 16]>()));
    }
    st.filters_dir = Some(filters.clone());
    st.save(rd)?;

    let result = async {
        if loopback {
            step(&format!(
                "network: {} nodes on loopback addresses 127.{}.x.x",
                plan.nodes.len(),
                200 + plan.id
            ));
        } else {
            step(&format!(
                "network: fabric + {} nodes in network namespaces {}-*",
                plan.nodes.len(),
                plan.prefix()
            ));
        }
        net::build(&plan)?;
        // An empty cluster: the operator starts from it.
        {
            let store = Store::open(rd)?;
            store.commit()?;
        }
        step(&format!(
            "control plane (operator, file mode) on {}",
            plan.operator_url()
        ));
        let mut args: Vec<String> = vec![
            "--run-dir".into(),
            rd.root.display().to_string(),
            "controlplane".into(),
            "--waypoint-bin".into(),
            waypoint.display().to_string(),
            "--filters-dir".into(),
            filters.display().to_string(),
        ];
        if !loopback {
            args.extend(["--netns".into(), plan.fabric_netns()]);
        }
        let cp = spawn_in(None, &exe, &args, &rd.log_file("operator"))?;
        st = State::load(rd)?;
        st.controlplane = Some(cp.clone());
        st.controlplane_args = args.clone();
        st.save(rd)?;
        wait_until(
            "the control plane",
            Duration::from_secs(a.timeout),
            || async {
                if !cp.alive() {
                    return Err(format!("it exited; see {}", cp.log.display()));
                }
                Ok(rd.ready_file().is_file())
            },
        )
        .await?;
        for (i, node) in plan.nodes.iter().enumerate() {
            step(&format!(
                "ztunnel on {node} ({})",
                if loopback {
                    "shared mode, no capture"
                } else {
                    "in-pod capture"
                }
            ));
            let token = rd.root.join(format!("{node}.token"));
            write_atomic(
                &token,
                st.node_tokens
                    .get(node)
                    .map(String::as_bytes)
                    .unwrap_or_default(),
            )?;
            let node_ip = plan.node_ip(i + 1).to_string();
            let (capture, local, any) = if loopback {
                ("shared", node_ip.as_str(), node_ip.as_str())
            } else {
                ("inpod", "127.0.0.1", "0.0.0.0")
            };
            let (admin, metrics, ready) = (
                format!("{local}:15000"),
                format!("{any}:15020"),
                format!("{any}:15021"),
            );
            let args: Vec<String> = [
                "--node",
                node,
                "--capture",
                capture,
                "--netns-template",
                &plan.netns_template(),
                "--xds-address",
                &plan.operator_url(),
                "--xds-root-cert",
                &rd.roots_file().display().to_string(),
                "--token-file",
                &token.display().to_string(),
                "--admin-addr",
                &admin,
                "--metrics-addr",
                &metrics,
                "--readiness-addr",
                &ready,
                "--worker-threads",
                "1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let node_ns = plan.node_netns(i + 1);
            let p = spawn_in(
                (!loopback).then_some(node_ns.as_str()),
                &ztunnel,
                &args,
                &rd.log_file(&format!("ztunnel-{node}")),
            )?;
            st = State::load(rd)?;
            st.ztunnels.insert(node.clone(), p);
            st.save(rd)?;
        }
        let (core, istio): (Vec<Doc>, Vec<Doc>) =
            docs.into_iter().partition(|d| !matches!(d, Doc::Istio(_)));
        let core: Vec<Doc> = if a.bare {
            core.into_iter()
                .map(|d| match d {
                    Doc::Namespace(n, _) => Doc::Namespace(n, Default::default()),
                    d => d,
                })
                .collect()
        } else {
            core
        };
        step(&format!("sample workloads from {source}"));
        apply_docs(rd, core, false)?;
        let mesh = Mesh::open(rd)?;
        wait_ztunnels(&mesh, Duration::from_secs(a.timeout)).await?;
        if !a.bare {
            step(&format!("Istio resources from {source}"));
            apply_docs(rd, istio, false)?;
            wait_waypoints(&mesh, Duration::from_secs(a.timeout)).await?;
        }
        step("waiting for every proxy to apply the operator's configuration");
        super::sync::wait_synced(&mesh, Duration::from_secs(a.timeout))
            .await
            .map_err(anyhow::Error::msg)?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        eprintln!("logs: {}", rd.logs_dir().display());
        eprintln!("the partial mesh is left running for inspection: `meshctl down` removes it");
        return Ok(1);
    }
    step(&format!(
        "local mesh up in {:.1}s (run dir {})",
        t0.elapsed().as_secs_f64(),
        rd.root.display()
    ));
    detail("try: meshctl ztunnel-config workloads --workload-namespace shop");
    detail("     meshctl exec -n shop deploy/web -- curl -s http://orders/api/health");
    detail("     meshctl verify        meshctl down");
    if a.verify {
        return crate::verify::verify(
            rd,
            &crate::cmd::VerifyArgs {
                namespace: "shop".into(),
                requests: 1000,
            },
        )
        .await;
    }
    Ok(0)
}

/// Wait until every ztunnel is ready (synced, every local pod enrolled).
pub async fn wait_ztunnels(mesh: &Mesh, timeout: Duration) -> anyhow::Result<()> {
    for node in mesh.nodes() {
        let t = mesh.ztunnel(node, 15021);
        let p = mesh.state.ztunnels.get(node).cloned();
        wait_until(&format!("ztunnel on {node} to be ready"), timeout, || {
            let t = t.clone();
            let p = p.clone();
            async move {
                if p.as_ref().is_some_and(|p| !p.alive()) {
                    return Err(format!(
                        "it exited; see {}",
                        p.map(|p| p.log.display().to_string()).unwrap_or_default()
                    ));
                }
                match crate::admin::request(&t, http::Method::GET, "/healthz/ready").await {
                    Ok((200, _)) => Ok(true),
                    Ok((s, b)) => Err(format!("HTTP {s} {}", b.trim())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await?;
        detail(&format!("ztunnel-{node} ready"));
    }
    Ok(())
}

/// Wait until every waypoint Gateway is `Programmed=True`.
pub async fn wait_waypoints(mesh: &Mesh, timeout: Duration) -> anyhow::Result<()> {
    let objects = crate::cluster::store::load_objects(&mesh.rd)?;
    let gws: Vec<(String, String)> = objects
        .iter()
        .filter_map(|o| match o {
            operator::config::IstioObject::Gateway(g)
                if g.spec.gateway_class_name == "istio-waypoint" =>
            {
                Some((
                    g.metadata.namespace.clone().unwrap_or_default(),
                    g.metadata.name.clone().unwrap_or_default(),
                ))
            }
            _ => None,
        })
        .collect();
    for (ns, name) in gws {
        step(&format!(
            "waypoint {ns}/{name}: waiting for Programmed=True"
        ));
        let last = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
        wait_until(&format!("waypoint {ns}/{name}"), timeout, || {
            let (ns, name) = (ns.clone(), name.clone());
            let last = last.clone();
            async move {
                let all = mesh.statuses().await.map_err(|e| e.to_string())?;
                let c = conditions_of(&all, "Gateway", &ns, &name)
                    .iter()
                    .find(|c| c.type_ == "Programmed")
                    .cloned();
                match c {
                    Some(c) if c.status => Ok(true),
                    Some(c) => {
                        let m =
                            format!("Programmed={} {}: {}", c.status_str(), c.reason, c.message);
                        let mut last = last.lock();
                        if *last != m {
                            detail(&m);
                            *last = m.clone();
                        }
                        Err(m)
                    }
                    None => Ok(false),
                }
            }
        })
        .await?;
        detail(&format!("{ns}/{name} Programmed=True"));
    }
    Ok(())
}

/// `meshctl rollout restart deployment/istiod -n istio-system`: replace the
/// control plane process the way a restarted istiod pod is replaced. The old
/// process is killed outright (as a crash or an evicted pod would be); the
/// ztunnels and waypoints keep serving their last good configuration,
/// reconnect to the new process and resynchronise; the new process adopts
/// the running waypoints instead of starting new ones, and the CA keeps its
/// root (persisted in the run directory).
pub async fn restart_controlplane(rd: &RunDir, timeout: Duration) -> anyhow::Result<()> {
    use nix::sys::signal::{Signal, kill};
    let mut st = State::load(rd)?;
    let Some(old) = st.controlplane.clone() else {
        bail!(
            "no local mesh control plane in {}: run `meshctl up` first",
            rd.root.display()
        );
    };
    if st.controlplane_args.is_empty() {
        bail!(
            "the mesh in {} was started by an older meshctl that did not record how: `meshctl down && meshctl up`",
            rd.root.display()
        );
    }
    if old.alive() {
        let pid = nix::unistd::Pid::from_raw(old.pid as i32);
        let _ = kill(pid, Signal::SIGKILL);
        wait_until("the old control plane to exit", timeout, || async {
            let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
            Ok(!old.alive())
        })
        .await?;
    }
    let _ = std::fs::remove_file(rd.ready_file());
    let exe = std::env::current_exe().context("locating meshctl")?;
    let cp = spawn_in(None, &exe, &st.controlplane_args, &rd.log_file("operator"))?;
    st.controlplane = Some(cp.clone());
    st.save(rd)?;
    wait_until("the new control plane", timeout, || async {
        if !cp.alive() {
            return Err(format!("it exited; see {}", cp.log.display()));
        }
        Ok(rd.ready_file().is_file())
    })
    .await?;
    println!(
        "deployment.apps/istiod restarted (control plane pid {} -> {})",
        old.pid, cp.pid
    );
    Ok(())
}
