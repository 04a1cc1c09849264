//! The services a waypoint knows: those bound to it, which it serves, and
//! the other services its routes send to (istiod's extra waypoint
//! services), which it only forwards to.

use super::workloads::{self, PodIndex};
use super::{destination, endpoint};
use crate::config::{ConfigSet, ServiceInfo};
use filter_model::routing::RoutingConfig;
use mesh_common::model::{Service, WaypointService};
use std::collections::BTreeSet;

/// The waypoint's view of one service: endpoints, ports, and the subsets
/// and policies of the DestinationRule a proxy in `waypoint_ns` sees. `route_only` marks a service
/// the waypoint forwards to without serving it.
pub fn waypoint_service(
    cs: &ConfigSet,
    s: &ServiceInfo,
    by_ip: &PodIndex,
    services: &[Service],
    waypoint_ns: &str,
    route_only: bool,
) -> WaypointService {
    let host = workloads::hostname(cs, &s.name, &s.namespace);
    let endpoints = workloads::service_pods(cs, s, by_ip)
        .into_iter()
        .map(|p| endpoint(cs, p, Some(s)))
        .collect();
    let ports: Vec<u16> = s.ports.iter().map(|p| p.port).collect();
    let (subsets, traffic_policies, destination_rule) =
        match destination::find(cs, &host, &s.namespace, waypoint_ns) {
            Some(dr) => {
                let (a, b) = destination::resolve(&dr, &ports);
                let name = format!(
                    "{}/{}",
                    dr.metadata.namespace.as_deref().unwrap_or(""),
                    dr.metadata.name.as_deref().unwrap_or("")
                );
                (a, b, Some(name))
            }
            None => (Vec::new(), Vec::new(), None),
        };
    WaypointService {
        name: s.name.clone(),
        namespace: s.namespace.clone(),
        vips: s.vips.clone(),
        ports: services
            .iter()
            .find(|x| x.hostname == host)
            .map(|x| x.ports.clone())
            .unwrap_or_default(),
        endpoints,
        subsets,
        traffic_policies,
        destination_rule,
        route_only,
        hostname: host,
    }
}

/// Every service host the routing configuration sends requests or
/// mirrors to (VirtualService destinations and mirrors, HTTPRoute
/// backends and mirrors, `tcp` routes).
pub fn route_destinations(cfg: &RoutingConfig) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for svc in &cfg.services {
        for vs in &svc.virtual_services {
            for r in &vs.http {
                out.extend(r.route.iter().map(|d| d.destination.host.clone()));
                out.extend(r.mirrors.iter().map(|m| m.destination.host.clone()));
            }
            for t in &vs.tcp {
                out.extend(t.route.iter().map(|d| d.destination.host.clone()));
            }
        }
        for hr in &svc.http_routes {
            for rule in &hr.rules {
                out.extend(rule.backend_refs.iter().filter_map(|b| b.host.clone()));
                out.extend(
                    rule.filters
                        .iter()
                        .filter_map(|f| f.request_mirror.as_ref()?.host.clone()),
                );
            }
        }
    }
    out
}
