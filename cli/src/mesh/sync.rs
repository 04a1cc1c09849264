//! "Has the operator loaded the run directory, and has every proxy applied
//! the operator's latest configuration?" — compares the run directory with
//! the operator's effective configuration (`/debug/resources`), then the
//! operator's translation (`/debug/snapshot`) with what each ztunnel and
//! waypoint reports serving (`/config_dump`), resource by resource. `up`,
//! `verify` and `meshctl … --wait` use it so no check races a push.

use super::{Mesh, MeshError};
use crate::admin;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn keyed(list: Option<&Value>, key: impl Fn(&Value) -> String) -> BTreeMap<String, Value> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| (key(v), v.clone()))
        .collect()
}

fn uid(v: &Value) -> String {
    v.get("uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn ns_name(v: &Value) -> String {
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    format!("{}/{}/{}", s("namespace"), s("name"), s("hostname"))
}

/// Proxies whose configuration differs from the operator's (empty = synced).
pub async fn pending(mesh: &Mesh) -> Result<Vec<String>, MeshError> {
    let snap = admin::get_json(&mesh.operator_debug(), "/debug/snapshot").await?;
    let mut out = Vec::new();
    for w in mesh.waypoints() {
        let want = snap
            .get("waypoints")
            .and_then(Value::as_array)
            .and_then(|l| {
                l.iter().find(|c| {
                    c.get("name").and_then(Value::as_str) == Some(w.name.as_str())
                        && c.get("namespace").and_then(Value::as_str) == Some(w.namespace.as_str())
                })
            });
        let got = admin::get_json(&Mesh::waypoint(&w, 15000), "/config_dump")
            .await
            .ok();
        if want != got.as_ref().and_then(|g| g.get("config")) {
            out.push(format!("waypoint {}/{}", w.namespace, w.name));
        }
    }
    for node in mesh.nodes() {
        let synced = match mesh.ztunnel_dump(node).await {
            Ok(d) => {
                keyed(d.get("workloads"), uid) == keyed(snap.get("workloads"), uid)
                    && keyed(d.get("services"), ns_name) == keyed(snap.get("services"), ns_name)
                    && keyed(d.get("policies"), ns_name)
                        == keyed(snap.get("authorizations"), ns_name)
            }
            Err(_) => false,
        };
        if !synced {
            out.push(format!("ztunnel-{node}"));
        }
    }
    Ok(out)
}

type Entry = (String, String, BTreeMap<String, String>);

fn entries(v: Option<&Value>) -> Vec<Entry> {
    let mut out: Vec<Entry> = v
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let labels = e
                .get("labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            (s("namespace"), s("name"), labels)
        })
        .collect();
    out.sort();
    out
}

/// Has the operator loaded what the run directory holds (objects,
/// namespaces, pods, services and their labels)? Returns what differs.
pub async fn not_loaded(mesh: &Mesh) -> Result<Vec<String>, MeshError> {
    let v = admin::get_json(&mesh.operator_debug(), "/debug/resources").await?;
    let cluster = mesh.cluster()?;
    let mut want_keys: Vec<String> = crate::cluster::store::load_objects(&mesh.rd)?
        .iter()
        .map(|o| o.key().to_string())
        .collect();
    want_keys.sort();
    let mut got_keys: Vec<String> = v
        .get("resources")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default();
    got_keys.sort();
    let mut out = Vec::new();
    if want_keys != got_keys {
        out.push("Istio resources".to_string());
    }
    let mut ns: Vec<Entry> = cluster
        .namespaces
        .iter()
        .map(|(n, l)| (String::new(), n.clone(), l.clone()))
        .collect();
    ns.sort();
    let got_ns: Vec<Entry> = entries(v.get("namespaces"))
        .into_iter()
        .map(|(_, n, l)| (String::new(), n, l))
        .collect();
    if ns != got_ns {
        out.push("namespaces".into());
    }
    let mut pods: Vec<Entry> = cluster
        .pods
        .iter()
        .filter(|p| p.ip.is_some())
        .map(|p| (p.namespace.clone(), p.name.clone(), p.labels.clone()))
        .collect();
    pods.sort();
    if pods != entries(v.get("pods")) {
        out.push("pods".into());
    }
    let mut svcs: Vec<Entry> = cluster
        .services
        .iter()
        .map(|s| (s.namespace.clone(), s.name.clone(), s.labels.clone()))
        .collect();
    svcs.sort();
    if svcs != entries(v.get("services")) {
        out.push("services".into());
    }
    Ok(out)
}

/// Wait until the operator loaded the run directory and every proxy serves
/// the operator's latest configuration.
pub async fn wait_synced(mesh: &Mesh, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut p: Vec<String> = not_loaded(mesh)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|x| format!("operator ({x})"))
            .collect();
        if p.is_empty() {
            p = pending(mesh).await.map_err(|e| e.to_string())?;
        }
        if p.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not in sync with the operator after {timeout:?}: {}",
                p.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
