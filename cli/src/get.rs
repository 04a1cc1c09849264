//! `meshctl get`: kubectl's `get` over the local mesh — pods (with the
//! `ambient.istio.io/redirection` annotation once ztunnel captured them),
//! namespaces, services, workloads, the ztunnel DaemonSet, CRDs and every
//! Istio / Gateway API kind (Gateways with their status conditions).

use crate::cluster::store::load_objects;
use crate::cluster::{Cluster, Pod, REDIRECTION_ANNOTATION};
use crate::cmd::GetArgs;
use crate::context::RunDir;
use crate::kubectl::normalize_kind;
use crate::mesh::launcher::WaypointRecord;
use crate::mesh::{Mesh, ObjectStatus, conditions_of};
use crate::output::Table;
use anyhow::bail;
use operator::config::Kind;
use serde_json::{Value, json};

fn pod_value(p: &Pod, captured: bool) -> Value {
    let mut ann = p.annotations.clone();
    if captured {
        ann.insert(REDIRECTION_ANNOTATION.into(), "enabled".into());
    }
    let containers: Vec<Value> = if p.ports.is_empty() {
        vec![json!({"name": p.name, "image": "meshctl/sleep"})]
    } else {
        vec![
            json!({"name": p.name, "image": "meshctl/app", "ports": p.ports.iter().map(|c| json!({"name": c.name, "containerPort": c.port})).collect::<Vec<_>>()}),
        ]
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": p.name, "namespace": p.namespace, "labels": p.labels, "annotations": ann,
                     "ownerReferences": p.owner.as_ref().map(|o| vec![json!({"kind": o.kind, "name": o.name})])},
        "spec": {"serviceAccountName": p.service_account, "nodeName": p.node, "containers": containers},
        "status": {"phase": "Running", "podIP": p.ip.map(|i| i.to_string())},
    })
}

fn waypoint_pod_value(w: &WaypointRecord) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{}-0", w.name), "namespace": w.namespace,
                     "labels": {"gateway.networking.k8s.io/gateway-name": w.name, "istio.io/dataplane-mode": "none", "gateway.istio.io/managed": "istio.io-mesh-controller"},
                     "ownerReferences": [{"kind": "Deployment", "name": w.name}]},
        "spec": {"serviceAccountName": w.name, "nodeName": w.node, "containers": [{"name": "istio-proxy", "image": "waypoint"}]},
        "status": {"phase": if w.proc.alive() { "Running" } else { "Failed" }, "podIP": w.ip.to_string()},
    })
}

fn istio_kind(k: &str) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .find(|x| x.as_str().eq_ignore_ascii_case(k))
}

/// Every object of the kind, as JSON, in the namespace (None = all).
async fn objects(
    mesh: &Mesh,
    cluster: &Cluster,
    kind: &str,
    ns: Option<&str>,
    statuses: &[ObjectStatus],
) -> anyhow::Result<Vec<Value>> {
    let in_ns = |n: &str| ns.is_none_or(|x| x == n);
    let mut out = Vec::new();
    match kind {
        "pod" => {
            let mut captured: Vec<String> = Vec::new();
            for node in mesh.nodes() {
                if let Ok(d) = crate::ztunnel_config::dump(mesh, Some(node)).await {
                    captured.extend(d.enrolled);
                }
            }
            for p in cluster.pods.iter().filter(|p| in_ns(&p.namespace)) {
                let suffix = format!("/{}/{}", p.namespace, p.name);
                out.push(pod_value(p, captured.iter().any(|u| u.ends_with(&suffix))));
            }
            for w in mesh.waypoints().iter().filter(|w| in_ns(&w.namespace)) {
                out.push(waypoint_pod_value(w));
            }
            if in_ns("istio-system") {
                if let Some(cp) = &mesh.state.controlplane {
                    out.push(json!({"kind": "Pod", "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "mesh-operator"}},
                        "spec": {"nodeName": "fabric"}, "status": {"phase": if cp.alive() { "Running" } else { "Failed" }, "podIP": mesh.state.plan.operator_ip().to_string()}}));
                }
                for (node, p) in &mesh.state.ztunnels {
                    let n = mesh.state.plan.node_index(node).unwrap_or(1);
                    out.push(json!({"kind": "Pod", "metadata": {"name": format!("ztunnel-{node}"), "namespace": "istio-system", "labels": {"app": "ztunnel"}},
                        "spec": {"nodeName": node}, "status": {"phase": if p.alive() { "Running" } else { "Failed" }, "podIP": mesh.state.plan.node_ip(n).to_string()}}));
                }
            }
        }
        "namespace" => {
            for (n, l) in &cluster.namespaces {
                out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": l}, "status": {"phase": "Active"}}));
            }
        }
        "service" => {
            for s in cluster.services.iter().filter(|s| in_ns(&s.namespace)) {
                out.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": s.name, "namespace": s.namespace, "labels": s.labels},
                    "spec": {"clusterIP": if s.headless { "None".to_string() } else { s.cluster_ip.map(|i| i.to_string()).unwrap_or_default() }, "selector": s.selector,
                    "ports": s.ports.iter().map(|p| json!({"name": p.name, "port": p.port, "targetPort": p.target_port, "appProtocol": p.app_protocol})).collect::<Vec<_>>()}}));
            }
        }
        "deployment" | "statefulset" => {
            let k = if kind == "deployment" {
                "Deployment"
            } else {
                "StatefulSet"
            };
            for w in cluster
                .workloads
                .iter()
                .filter(|w| w.kind == k && in_ns(&w.namespace))
            {
                let ready = cluster
                    .pods
                    .iter()
                    .filter(|p| {
                        p.namespace == w.namespace
                            && p.owner
                                .as_ref()
                                .is_some_and(|o| o.name == w.name && o.kind == k)
                            && p.ip.is_some()
                    })
                    .count();
                out.push(json!({"apiVersion": "apps/v1", "kind": k, "metadata": {"name": w.name, "namespace": w.namespace, "labels": w.labels},
                    "spec": {"replicas": w.replicas, "template": {"metadata": {"labels": w.template.labels}}}, "status": {"readyReplicas": ready, "replicas": w.replicas}}));
            }
            if kind == "deployment" {
                for w in mesh.waypoints().iter().filter(|w| in_ns(&w.namespace)) {
                    let ready = usize::from(w.proc.alive());
                    out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": w.name, "namespace": w.namespace, "labels": {"gateway.networking.k8s.io/gateway-name": w.name}},
                        "spec": {"replicas": 1}, "status": {"readyReplicas": ready, "replicas": 1}}));
                }
            }
        }
        "daemonset" => {
            if in_ns("istio-system") {
                let ready = mesh.state.ztunnels.values().filter(|p| p.alive()).count();
                out.push(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ztunnel", "namespace": "istio-system"},
                    "status": {"desiredNumberScheduled": mesh.nodes().len(), "numberReady": ready}}));
            }
        }
        "customresourcedefinition" => {
            let text = operator::crd::crdgen()?;
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let v: Value = serde::Deserialize::deserialize(doc)?;
                if !v.is_null() {
                    out.push(v);
                }
            }
        }
        other => {
            let Some(k) = istio_kind(other) else {
                bail!(
                    "the server doesn't have a resource type {other:?} (pods, namespaces, services, deployments, statefulsets, daemonsets, crds, or an Istio / Gateway API kind)"
                );
            };
            for o in load_objects(&mesh.rd)?
                .into_iter()
                .filter(|o| o.kind() == k)
            {
                let key = o.key();
                if !k.cluster_scoped() && !in_ns(&key.namespace) {
                    continue;
                }
                let mut v = o.to_value();
                let conds: Vec<Value> = conditions_of(statuses, k.as_str(), &key.namespace, &key.name)
                    .iter()
                    .map(|c| json!({"type": c.type_, "status": c.status_str(), "reason": c.reason, "message": c.message}))
                    .collect();
                if !conds.is_empty() {
                    v["status"] = json!({"conditions": conds});
                }
                if k == Kind::Gateway
                    && let Some(w) = mesh
                        .waypoints()
                        .iter()
                        .find(|w| w.name == key.name && w.namespace == key.namespace)
                {
                    v["status"]["addresses"] =
                        json!([{"type": "IPAddress", "value": w.ip.to_string()}]);
                }
                out.push(v);
            }
        }
    }
    Ok(out)
}

fn s(v: &Value, p: &str) -> String {
    match v.pointer(p) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(x) => x.to_string(),
    }
}

fn labels_str(v: &Value) -> String {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "<none>".into())
}

fn table(kind: &str, items: &[Value], all_ns: bool, show_labels: bool, wide: bool) -> Table {
    let (mut header, rows): (Vec<&str>, Vec<Vec<String>>) = match kind {
        "pod" => (
            if wide {
                vec!["NAME", "READY", "STATUS", "IP", "NODE"]
            } else {
                vec!["NAME", "READY", "STATUS"]
            },
            items
                .iter()
                .map(|v| {
                    let running = s(v, "/status/phase") == "Running";
                    let mut r = vec![
                        s(v, "/metadata/name"),
                        if running { "1/1".into() } else { "0/1".into() },
                        s(v, "/status/phase"),
                    ];
                    if wide {
                        r.extend([s(v, "/status/podIP"), s(v, "/spec/nodeName")]);
                    }
                    r
                })
                .collect(),
        ),
        "namespace" => (
            vec!["NAME", "STATUS"],
            items
                .iter()
                .map(|v| vec![s(v, "/metadata/name"), "Active".into()])
                .collect(),
        ),
        "service" => (
            vec!["NAME", "TYPE", "CLUSTER-IP", "PORT(S)"],
            items
                .iter()
                .map(|v| {
                    let ports = v
                        .pointer("/spec/ports")
                        .and_then(Value::as_array)
                        .map(|ps| {
                            ps.iter()
                                .map(|p| format!("{}/TCP", s(p, "/port")))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    vec![
                        s(v, "/metadata/name"),
                        "ClusterIP".into(),
                        s(v, "/spec/clusterIP"),
                        ports,
                    ]
                })
                .collect(),
        ),
        "deployment" | "statefulset" => (
            vec!["NAME", "READY"],
            items
                .iter()
                .map(|v| {
                    vec![
                        s(v, "/metadata/name"),
                        format!(
                            "{}/{}",
                            s(v, "/status/readyReplicas"),
                            s(v, "/status/replicas")
                        ),
                    ]
                })
                .collect(),
        ),
        "daemonset" => (
            vec!["NAME", "DESIRED", "READY"],
            items
                .iter()
                .map(|v| {
                    vec![
                        s(v, "/metadata/name"),
                        s(v, "/status/desiredNumberScheduled"),
                        s(v, "/status/numberReady"),
                    ]
                })
                .collect(),
        ),
        "customresourcedefinition" => (
            vec!["NAME"],
            items.iter().map(|v| vec![s(v, "/metadata/name")]).collect(),
        ),
        "gateway" => (
            vec!["NAME", "CLASS", "ADDRESS", "PROGRAMMED"],
            items
                .iter()
                .map(|v| {
                    let prog = v
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .and_then(|c| {
                            c.iter().find(|c| {
                                c.get("type").and_then(Value::as_str) == Some("Programmed")
                            })
                        })
                        .map(|c| s(c, "/status"))
                        .unwrap_or_else(|| "Unknown".into());
                    vec![
                        s(v, "/metadata/name"),
                        s(v, "/spec/gatewayClassName"),
                        s(v, "/status/addresses/0/value"),
                        prog,
                    ]
                })
                .collect(),
        ),
        _ => (
            vec!["NAME"],
            items.iter().map(|v| vec![s(v, "/metadata/name")]).collect(),
        ),
    };
    let mut rows = rows;
    if all_ns {
        header.insert(0, "NAMESPACE");
        for (r, v) in rows.iter_mut().zip(items) {
            r.insert(0, s(v, "/metadata/namespace"));
        }
    }
    if show_labels {
        header.push("LABELS");
        for (r, v) in rows.iter_mut().zip(items) {
            r.push(labels_str(v));
        }
    }
    let mut t = Table::new(&header);
    for r in rows {
        t.row(r);
    }
    t
}

/// `get`.
pub async fn get(rd: &RunDir, a: &GetArgs) -> anyhow::Result<i32> {
    let mesh = Mesh::open(rd)?;
    let cluster = mesh.cluster()?;
    let kind = normalize_kind(&a.kind);
    let statuses = mesh.statuses().await.unwrap_or_default();
    let ns = if a.all_namespaces || kind == "namespace" || kind == "customresourcedefinition" {
        None
    } else {
        Some(a.ns.namespace.as_str())
    };
    let mut items = objects(&mesh, &cluster, &kind, ns, &statuses).await?;
    if !a.names.is_empty() {
        items.retain(|v| a.names.iter().any(|n| &s(v, "/metadata/name") == n));
        if items.is_empty() {
            bail!(
                "{kind} \"{}\" not found{}",
                a.names.join(","),
                ns.map(|n| format!(" in namespace {n}")).unwrap_or_default()
            );
        }
    }
    let single = a.names.len() == 1 && items.len() == 1;
    let doc = if single {
        items[0].clone()
    } else {
        json!({"apiVersion": "v1", "kind": "List", "items": items})
    };
    match a.output.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&doc)?),
        "yaml" => print!("{}", serde_yaml::to_string(&doc)?),
        o if o.starts_with("jsonpath=") => print!(
            "{}",
            crate::jsonpath::render(o.trim_start_matches("jsonpath="), &doc)?
        ),
        "name" => {
            for v in &items {
                println!("{kind}/{}", s(v, "/metadata/name"));
            }
        }
        o => {
            if items.is_empty() {
                eprintln!(
                    "No resources found{}.",
                    ns.map(|n| format!(" in {n} namespace")).unwrap_or_default()
                );
            } else {
                table(&kind, &items, a.all_namespaces, a.show_labels, o == "wide").print();
            }
        }
    }
    Ok(0)
}
