//! The kubectl verbs the guide uses, against the local mesh: `apply`,
//! `delete`, `label`, `exec`, `logs`, `run` (and `get` in [`crate::get`]).

use crate::cluster::Pod;
use crate::cluster::manifest::{self, Doc};
use crate::cluster::store::{Store, load_cluster};
use crate::cmd::{ApplyArgs, DeleteArgs, ExecArgs, LabelArgs, LogsArgs, RunArgs};
use crate::context::RunDir;
use crate::mesh::Mesh;
use crate::mesh::launcher::WaypointRecord;
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::get::get;

/// Normalize a kind name (`svc`, `deploy`, `gateways.gateway.networking.k8s.io`).
pub fn normalize_kind(kind: &str) -> String {
    let k = kind.split('.').next().unwrap_or(kind).to_ascii_lowercase();
    let k = match k.as_str() {
        "po" | "pods" => "pod",
        "ns" | "namespaces" => "namespace",
        "svc" | "services" => "service",
        "deploy" | "deployments" => "deployment",
        "sts" | "statefulsets" => "statefulset",
        "ds" | "daemonsets" => "daemonset",
        "crd" | "crds" | "customresourcedefinitions" => "customresourcedefinition",
        "gtw" | "gateways" => "gateway",
        "ap" | "authorizationpolicies" => "authorizationpolicy",
        "pa" | "peerauthentications" => "peerauthentication",
        "ra" | "requestauthentications" => "requestauthentication",
        "vs" | "virtualservices" => "virtualservice",
        "dr" | "destinationrules" => "destinationrule",
        "telemetries" => "telemetry",
        "wasmplugins" => "wasmplugin",
        "httproutes" => "httproute",
        "gatewayclasses" => "gatewayclass",
        other => other,
    };
    k.to_string()
}

/// `apply -f`.
pub fn apply(rd: &RunDir, a: &ApplyArgs) -> anyhow::Result<()> {
    let mut docs = Vec::new();
    for f in &a.files {
        docs.extend(manifest::load(f, &a.namespace)?);
    }
    let mut store = Store::open(rd)?;
    let lines = store.apply(docs)?;
    store.commit()?;
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// `delete -f` / `delete KIND NAME…`.
pub fn delete(rd: &RunDir, a: &DeleteArgs) -> anyhow::Result<()> {
    let mut store = Store::open(rd)?;
    let mut lines = Vec::new();
    if !a.files.is_empty() {
        let mut docs: Vec<Doc> = Vec::new();
        for f in &a.files {
            docs.extend(manifest::load(f, &a.ns.namespace)?);
        }
        lines.extend(store.delete_docs(&docs)?);
    } else {
        let (kind, names) = a
            .args
            .split_first()
            .context("give -f <file> or KIND NAME...")?;
        if names.is_empty() {
            bail!("give the name(s) of the {kind} to delete");
        }
        let k = normalize_kind(kind);
        for n in names {
            lines.push(match store.delete(&k, &a.ns.namespace, n) {
                Ok(()) => format!("{k} \"{n}\" deleted"),
                Err(e) => format!("Error from server (NotFound): {e}"),
            });
        }
    }
    store.commit()?;
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// `label`.
pub fn label(rd: &RunDir, a: &LabelArgs) -> anyhow::Result<()> {
    let mut store = Store::open(rd)?;
    let line = store.label(
        &normalize_kind(&a.kind),
        &a.ns.namespace,
        &a.name,
        &a.changes,
        a.overwrite,
    )?;
    store.commit()?;
    println!("{line}");
    Ok(())
}

/// Where a target of `exec`/`logs` lives: netns and log file.
pub fn locate(mesh: &Mesh, target: &str, ns: &str) -> anyhow::Result<(String, PathBuf)> {
    let (netns, log) = locate_in(mesh, target, ns)?;
    // Loopback mode: everything runs in the host's network namespace.
    Ok((
        if mesh.state.plan.loopback {
            String::new()
        } else {
            netns
        },
        log,
    ))
}

fn locate_in(mesh: &Mesh, target: &str, ns: &str) -> anyhow::Result<(String, PathBuf)> {
    let plan = &mesh.state.plan;
    let (kind, name) = match target.split_once('/') {
        Some((k, n)) => (normalize_kind(k), n.to_string()),
        None => ("pod".to_string(), target.to_string()),
    };
    if kind == "daemonset" || name.starts_with("ztunnel") {
        let node = match name.strip_prefix("ztunnel-") {
            Some(n) => mesh.ztunnel_node(n)?,
            None => mesh.nodes().first().cloned().unwrap_or_default(),
        };
        let n = plan.node_index(&node).unwrap_or(1);
        return Ok((
            plan.node_netns(n),
            mesh.rd.log_file(&format!("ztunnel-{node}")),
        ));
    }
    if name == "istiod" || name == "operator" || name == "mesh-operator" {
        return Ok((plan.fabric_netns(), mesh.rd.log_file("operator")));
    }
    let wp_name = if kind == "deployment" {
        Some(name.as_str())
    } else {
        name.strip_suffix("-0")
    };
    if let Some(w) = wp_name.and_then(|n| {
        WaypointRecord::all(&mesh.rd)
            .into_iter()
            .find(|w| w.name == n && w.namespace == ns)
    }) {
        return Ok((w.netns.clone(), w.proc.log.clone()));
    }
    let cluster = mesh.cluster()?;
    let pod: &Pod = match kind.as_str() {
        "deployment" | "statefulset" => cluster
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.owner.as_ref().is_some_and(|o| o.name == name))
            .with_context(|| format!("no {kind} {name:?} with pods in namespace {ns}"))?,
        _ => cluster.pod(ns, &name).with_context(|| {
            format!("pods \"{name}\" not found in namespace {ns} (see `meshctl get pods -n {ns}`)")
        })?,
    };
    let netns = plan.pod_netns(&pod.namespace, &pod.name);
    Ok((
        netns,
        mesh.rd
            .log_file(&format!("app-{}-{}", pod.namespace, pod.name)),
    ))
}

/// `exec … -- cmd`.
pub fn exec(rd: &RunDir, a: &ExecArgs) -> anyhow::Result<i32> {
    let mesh = Mesh::open(rd)?;
    let (netns, _) = locate(&mesh, &a.target, &a.ns.namespace)?;
    match pilot_agent_request(&a.command) {
        Some(curl) => run_in(&netns, &curl),
        None => run_in(&netns, &a.command),
    }
}

/// `pilot-agent request METHOD PATH`, the guide's way into a waypoint's
/// Envoy admin: there is no `pilot-agent` here, so it becomes the same
/// request with curl to the proxy's own ports (`stats/prometheus` on the
/// metrics port 15020, anything else on the admin port 15000).
fn pilot_agent_request(command: &[String]) -> Option<Vec<String>> {
    if command.first()? != "pilot-agent" || command.get(1)? != "request" {
        return None;
    }
    let method = command.get(2)?.to_ascii_uppercase();
    let path = command.get(3)?.trim_start_matches('/');
    let port = if path.starts_with("stats/prometheus") || path == "metrics" {
        15020
    } else {
        15000
    };
    Some(vec![
        "curl".into(),
        "-sS".into(),
        "-X".into(),
        method,
        format!("http://127.0.0.1:{port}/{path}"),
    ])
}

/// Run `command` in `netns` (the host's namespace when empty: loopback
/// mode); its exit code.
pub fn run_in(netns: &str, command: &[String]) -> anyhow::Result<i32> {
    let mut cmd = if netns.is_empty() {
        eprintln!("note: loopback mode — running in the host's network namespace (no capture)");
        let mut c = std::process::Command::new(&command[0]);
        c.args(&command[1..]);
        c
    } else {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", netns]).args(command);
        c
    };
    let status = cmd
        .status()
        .with_context(|| format!("running {command:?} in {netns}"))?;
    Ok(status.code().unwrap_or(1))
}

/// `logs`.
pub fn logs(rd: &RunDir, a: &LogsArgs) -> anyhow::Result<()> {
    let mesh = Mesh::open(rd)?;
    let (_, log) = locate(&mesh, &a.target, &a.ns.namespace)?;
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let start = a.tail.map(|n| lines.len().saturating_sub(n)).unwrap_or(0);
    for l in &lines[start..] {
        println!("{l}");
    }
    Ok(())
}

/// Wait until the pod's ztunnel has captured it (when it is enrolled).
pub async fn wait_captured(
    mesh: &Mesh,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let cluster = mesh.cluster()?;
    let pod = cluster
        .pod(ns, name)
        .with_context(|| format!("pod {ns}/{name} vanished"))?;
    if !cluster.enrolled(pod) {
        return Ok(false);
    }
    let suffix = format!("/{ns}/{name}");
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(d) = crate::ztunnel_config::dump(mesh, Some(&pod.node)).await
            && d.enrolled.iter().any(|u| u.ends_with(&suffix))
        {
            return Ok(true);
        }
        if Instant::now() > deadline {
            bail!(
                "pod {ns}/{name} was not captured by ztunnel-{} within {timeout:?}",
                pod.node
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `run NAME [--rm] -- cmd`.
pub async fn run(rd: &RunDir, a: &RunArgs) -> anyhow::Result<i32> {
    let ns = a.ns.namespace.clone();
    let labels = a
        .labels
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--labels {kv:?}: use k=v"))
        })
        .collect::<anyhow::Result<_>>()?;
    let pod = Pod {
        name: a.name.clone(),
        namespace: ns.clone(),
        labels: if a.labels.is_none() {
            [("run".to_string(), a.name.clone())].into()
        } else {
            labels
        },
        service_account: a.serviceaccount.clone(),
        node: a.node.clone().unwrap_or_default(),
        ..Default::default()
    };
    {
        let mut store = Store::open(rd)?;
        if load_cluster(rd)?.pod(&ns, &a.name).is_some() {
            bail!("pods \"{}\" already exists in namespace {ns}", a.name);
        }
        store.apply(vec![Doc::Pod(pod)])?;
        store.commit()?;
    }
    let mesh = Mesh::open(rd)?;
    let result = async {
        wait_captured(&mesh, &ns, &a.name, Duration::from_secs(30)).await?;
        if a.command.is_empty() {
            println!("pod/{} created", a.name);
            return anyhow::Ok(0);
        }
        let (netns, _) = locate(&mesh, &a.name, &ns)?;
        run_in(&netns, &a.command)
    }
    .await;
    if a.rm {
        let mut store = Store::open(rd)?;
        store.delete("pod", &ns, &a.name)?;
        store.commit()?;
        eprintln!("pod \"{}\" deleted", a.name);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::pilot_agent_request;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn pilot_agent_requests_become_curl_to_the_proxy_ports() {
        assert_eq!(
            pilot_agent_request(&v(&["pilot-agent", "request", "GET", "stats/prometheus"])),
            Some(v(&[
                "curl",
                "-sS",
                "-X",
                "GET",
                "http://127.0.0.1:15020/stats/prometheus"
            ]))
        );
        assert_eq!(
            pilot_agent_request(&v(&["pilot-agent", "request", "get", "/clusters"])),
            Some(v(&[
                "curl",
                "-sS",
                "-X",
                "GET",
                "http://127.0.0.1:15000/clusters"
            ]))
        );
        assert_eq!(pilot_agent_request(&v(&["curl", "-s", "x"])), None);
    }
}
