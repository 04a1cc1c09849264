//! Pods → [`Workload`]s and Services → [`Service`]s for ztunnel.

use super::status::{StatusTarget, Statuses};
use super::waypoints::{BindFor, DATAPLANE_MODE, GATEWAY_NAME_LABEL, WaypointInfo, resolve};
use crate::config::{ConfigSet, PodInfo, ServiceInfo, TargetPort};
use mesh_common::model::{Endpoint, HealthStatus, Service, ServicePort, TunnelProtocol, Workload};
use std::collections::{BTreeMap, HashMap};

use std::net::IpAddr;

/// Istio's workload uid.
pub fn workload_uid(ns: &str, name: &str) -> String {
    format!("Kubernetes//Pod/{ns}/{name}")
}

/// Annotation the sidecar injector sets on the pods it injected.
pub const SIDECAR_STATUS: &str = "sidecar.istio.io/status";

/// Enrolled in ambient? Gateway pods and sidecar-injected pods never are
/// (istio-cni does not redirect a pod that has a sidecar).
pub fn is_enrolled(cs: &ConfigSet, pod: &PodInfo) -> bool {
    if pod.labels.contains_key(GATEWAY_NAME_LABEL) || pod.annotations.contains_key(SIDECAR_STATUS) {
        return false;
    }
    match pod.labels.get(DATAPLANE_MODE).map(String::as_str) {
        Some("ambient") => true,
        Some("none") => false,
        _ => {
            cs.namespace_labels(&pod.namespace)
                .get(DATAPLANE_MODE)
                .map(String::as_str)
                == Some("ambient")
        }
    }
}

/// Canonical service name (`service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`, workload).
pub fn canonical_name(pod: &PodInfo) -> String {
    [
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ]
    .iter()
    .find_map(|k| pod.labels.get(*k).cloned())
    .unwrap_or_else(|| workload_name(pod))
}

/// Canonical revision (`service.istio.io/canonical-revision`, `app.kubernetes.io/version`, `version`, `latest`).
pub fn canonical_revision(pod: &PodInfo) -> String {
    [
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ]
    .iter()
    .find_map(|k| pod.labels.get(*k).cloned())
    .unwrap_or_else(|| "latest".into())
}

/// Owning workload name.
pub fn workload_name(pod: &PodInfo) -> String {
    pod.workload_name
        .clone()
        .unwrap_or_else(|| pod.name.clone())
}

/// Target port of `port` on `pod`.
pub fn resolve_target(port: &TargetPort, pod: &PodInfo) -> Option<u16> {
    match port {
        TargetPort::Number(n) => Some(*n),
        TargetPort::Name(n) => pod.named_ports.get(n).copied(),
    }
}

/// Pods indexed by IP and by namespace.
#[derive(Debug, Default)]
pub struct PodIndex {
    by_ip: HashMap<IpAddr, usize>,
    by_ns: HashMap<String, Vec<usize>>,
}

/// Pods selected by a service (live, with IPs).
pub fn service_pods<'a>(cs: &'a ConfigSet, svc: &ServiceInfo, idx: &PodIndex) -> Vec<&'a PodInfo> {
    match &svc.selector {
        Some(sel) if !sel.is_empty() => idx
            .by_ns
            .get(&svc.namespace)
            .into_iter()
            .flatten()
            .map(|i| &cs.pods[*i])
            .filter(|p| {
                !p.terminated
                    && !p.ips.is_empty()
                    && sel.iter().all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .collect(),
        _ => svc
            .endpoint_ips
            .iter()
            .filter_map(|ip| idx.by_ip.get(ip).map(|i| &cs.pods[*i]))
            .collect(),
    }
}

/// Index pods.
pub fn pods_by_ip(cs: &ConfigSet) -> PodIndex {
    let mut idx = PodIndex::default();
    for (i, p) in cs.pods.iter().enumerate() {
        for ip in &p.ips {
            idx.by_ip.insert(*ip, i);
        }
        idx.by_ns.entry(p.namespace.clone()).or_default().push(i);
    }
    idx
}

/// Is `svc` the Service of a waypoint (never bound to a waypoint itself)?
fn is_waypoint_service(svc: &ServiceInfo, waypoints: &BTreeMap<String, WaypointInfo>) -> bool {
    svc.labels.contains_key("gateway.istio.io/managed")
        || svc.labels.contains_key(GATEWAY_NAME_LABEL)
        || waypoints.contains_key(&format!("{}/{}", svc.namespace, svc.name))
}

/// Translate workloads.
pub fn workloads(
    cs: &ConfigSet,
    waypoints: &BTreeMap<String, WaypointInfo>,
    statuses: &mut Statuses,
) -> Vec<Workload> {
    let td = &cs.mesh.trust_domain;
    let pidx = super::authz::PolicyIndex::new(cs);
    cs.pods
        .iter()
        .filter(|p| !p.terminated && !p.ips.is_empty())
        .map(|p| {
            let waypoint = if p.labels.contains_key(GATEWAY_NAME_LABEL) {
                None
            } else {
                resolve(
                    cs,
                    waypoints,
                    &p.labels,
                    &p.namespace,
                    BindFor::Workload,
                    None,
                    statuses,
                )
                .and_then(|k| waypoints.get(&k))
                .map(|w| w.binding(td))
            };
            Workload {
                uid: workload_uid(&p.namespace, &p.name),
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                service_account: p.service_account.clone(),
                node: p.node.clone(),
                addresses: p.ips.clone(),
                protocol: if is_enrolled(cs, p) {
                    TunnelProtocol::Hbone
                } else {
                    TunnelProtocol::Tcp
                },
                labels: p.labels.clone(),
                workload_name: workload_name(p),
                canonical_name: canonical_name(p),
                canonical_revision: canonical_revision(p),
                trust_domain: td.clone(),
                waypoint,
                status: if p.ready {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Unhealthy
                },
                authorization_policies: pidx.keys_for(cs, &p.namespace, &p.labels),
            }
        })
        .collect()
}

/// Hostname of a service.
pub fn hostname(cs: &ConfigSet, name: &str, ns: &str) -> String {
    format!("{name}.{ns}.svc.{}", cs.mesh.domain_suffix)
}

/// Translate services; returns the services and, per waypoint key, the
/// hostnames bound to it.
pub fn services(
    cs: &ConfigSet,
    waypoints: &BTreeMap<String, WaypointInfo>,
    statuses: &mut Statuses,
) -> (Vec<Service>, BTreeMap<String, Vec<String>>) {
    let by_ip = pods_by_ip(cs);
    let mut bound: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let td = &cs.mesh.trust_domain;
    let out = cs
        .services
        .iter()
        .map(|s| {
            let host = hostname(cs, &s.name, &s.namespace);
            let waypoint = if is_waypoint_service(s, waypoints) {
                None
            } else {
                let target = StatusTarget::new("Service", &s.namespace, &s.name);
                resolve(
                    cs,
                    waypoints,
                    &s.labels,
                    &s.namespace,
                    BindFor::Service,
                    Some(target),
                    statuses,
                )
            };
            if let Some(k) = &waypoint {
                bound.entry(k.clone()).or_default().push(host.clone());
            }
            let endpoints = service_pods(cs, s, &by_ip)
                .into_iter()
                .map(|p| Endpoint {
                    workload_uid: workload_uid(&p.namespace, &p.name),
                    ports: s
                        .ports
                        .iter()
                        .filter_map(|sp| Some((sp.port, resolve_target(&sp.target_port, p)?)))
                        .collect(),
                })
                .collect();
            Service {
                name: s.name.clone(),
                namespace: s.namespace.clone(),
                hostname: host,
                vips: s.vips.clone(),
                ports: s
                    .ports
                    .iter()
                    .map(|p| ServicePort {
                        port: p.port,
                        target_port: match p.target_port {
                            TargetPort::Number(n) => n,
                            TargetPort::Name(_) => 0,
                        },
                        name: p.name.clone(),
                        app_protocol: p.app_protocol.clone(),
                    })
                    .collect(),
                endpoints,
                waypoint: waypoint
                    .and_then(|k| waypoints.get(&k))
                    .map(|w| w.binding(td)),
                labels: s.labels.clone(),
            }
        })
        .collect();
    (out, bound)
}
