//! DestinationRule → resolved per-(port, subset) traffic policies (§5).

use crate::config::ConfigSet;
use crate::crd::DestinationRule;
use crate::crd::networking::{
    ConnectionPoolSettings, LoadBalancerSettings, OutlierDetection as DrOutlier, PortTrafficPolicy,
    TrafficPolicy as DrPolicy,
};
use crate::validate::parse_duration_nanos;
use mesh_common::model::{
    ConnectionPool, ConsistentHash, HashKey, LoadBalancer, OutlierDetection, Subset, TrafficPolicy,
};
use std::time::Duration;

fn dur(s: &Option<String>) -> Option<Duration> {
    s.as_deref()
        .and_then(parse_duration_nanos)
        .map(|n| Duration::from_nanos(n as u64))
}

/// Resolve a host written in a resource of namespace `ns` to an FQDN, as
/// istiod's `ResolveShortnameToFQDN`: only a name without a dot is short
/// (`reviews` → `reviews.<ns>.svc.<domain>`); anything with a dot, `name.ns`
/// included, is taken as written, and so does not name the service
/// `name.ns.svc.<domain>`.
pub fn fqdn(cs: &ConfigSet, host: &str, ns: &str) -> String {
    if host.contains('.') || host.contains('*') || host.parse::<std::net::IpAddr>().is_ok() {
        host.to_string()
    } else {
        format!("{host}.{ns}.svc.{}", cs.mesh.domain_suffix)
    }
}

/// Istio's host matching: `*.suffix` matches any host ending in `.suffix`,
/// anything else only itself.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix),
        None => pattern == host,
    }
}

/// Where a DestinationRule is visible (istiod's `setDestinationRules`):
/// in its own namespace unless exported only elsewhere; to another
/// namespace when its `exportTo` is empty, `*` or names it.
fn visible(d: &DestinationRule, client_ns: &str) -> bool {
    let own = d.metadata.namespace.as_deref().unwrap_or("");
    let e = &d.spec.export_to;
    if client_ns == own {
        e.is_empty() || e.iter().any(|x| x == "*" || x == "." || x == own)
    } else {
        e.is_empty() || e.iter().any(|x| x == "*" || x == client_ns)
    }
}

/// The DestinationRule for `host` (service in `svc_ns`) as a proxy in
/// `proxy_ns` sees it (istiod's `destinationRule`): the rules of the
/// proxy's own namespace first, then those the service's namespace exports
/// to it, then those the root namespace exports to it; exact host beats
/// wildcard. Several rules for the same host in one namespace are merged as
/// Istio does: oldest first, subsets appended (first definition of a name
/// wins), the first `trafficPolicy` set wins.
pub fn find(cs: &ConfigSet, host: &str, svc_ns: &str, proxy_ns: &str) -> Option<DestinationRule> {
    let root = cs.mesh.root_namespace.as_str();
    for ns in [proxy_ns, svc_ns, root] {
        let mut candidates: Vec<&DestinationRule> = cs
            .resources
            .destination_rules
            .iter()
            .filter(|d| {
                d.metadata.namespace.as_deref() == Some(ns) && d.spec.workload_selector.is_none()
            })
            .filter(|d| visible(d, proxy_ns) && host_matches(&fqdn(cs, &d.spec.host, ns), host))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let exact = candidates.iter().any(|d| !d.spec.host.contains('*'));
        if exact {
            candidates.retain(|d| !d.spec.host.contains('*'));
        }
        candidates.sort_by(|a, b| {
            let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ta.cmp(&tb)
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let mut merged = candidates[0].clone();
        for d in &candidates[1..] {
            for s in &d.spec.subsets {
                if !merged.spec.subsets.iter().any(|x| x.name == s.name) {
                    merged.spec.subsets.push(s.clone());
                }
            }
            if merged.spec.traffic_policy.is_none() {
                merged.spec.traffic_policy = d.spec.traffic_policy.clone();
            }
        }
        if candidates.len() > 1 {
            merged.metadata.name = Some(
                candidates
                    .iter()
                    .filter_map(|d| d.metadata.name.clone())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        return Some(merged);
    }
    None
}

/// The four port-scoped blocks of a policy.
#[derive(Debug, Clone, Default)]
struct Blocks {
    lb: Option<LoadBalancerSettings>,
    pool: Option<ConnectionPoolSettings>,
    outlier: Option<DrOutlier>,
}

fn port_entry(p: &DrPolicy, port: u16) -> Option<&PortTrafficPolicy> {
    p.port_level_settings
        .iter()
        .find(|pl| pl.port.is_some_and(|x| x.number == u32::from(port)))
}

/// Top-level blocks with port-level replacement (wholesale).
fn resolve_port(p: Option<&DrPolicy>, port: u16) -> Blocks {
    let Some(p) = p else { return Blocks::default() };
    match port_entry(p, port) {
        Some(pl) => Blocks {
            lb: pl.load_balancer.clone(),
            pool: pl.connection_pool.clone(),
            outlier: pl.outlier_detection.clone(),
        },
        None => Blocks {
            lb: p.load_balancer.clone(),
            pool: p.connection_pool.clone(),
            outlier: p.outlier_detection.clone(),
        },
    }
}

/// Subset merge: each block set in the subset replaces the parent's; a
/// subset port-level entry replaces all blocks, even with nil.
fn merge_subset(parent: Blocks, subset: Option<&DrPolicy>, port: u16) -> Blocks {
    let Some(s) = subset else { return parent };
    if let Some(pl) = port_entry(s, port) {
        return Blocks {
            lb: pl.load_balancer.clone(),
            pool: pl.connection_pool.clone(),
            outlier: pl.outlier_detection.clone(),
        };
    }
    Blocks {
        lb: s.load_balancer.clone().or(parent.lb),
        pool: s.connection_pool.clone().or(parent.pool),
        outlier: s.outlier_detection.clone().or(parent.outlier),
    }
}

fn load_balancer(lb: Option<&LoadBalancerSettings>) -> LoadBalancer {
    let Some(lb) = lb else {
        return LoadBalancer::LeastRequest;
    };
    if let Some(ch) = &lb.consistent_hash {
        let key = if let Some(h) = &ch.http_header_name {
            HashKey::HttpHeaderName(h.clone())
        } else if let Some(c) = &ch.http_cookie {
            HashKey::HttpCookie {
                name: c.name.clone(),
                path: c.path.clone(),
                ttl: dur(&c.ttl),
            }
        } else if let Some(q) = &ch.http_query_parameter_name {
            HashKey::HttpQueryParameterName(q.clone())
        } else {
            HashKey::UseSourceIp
        };
        let maglev = ch.maglev.as_ref().map(|m| m.table_size.unwrap_or(65537));
        let ring = if maglev.is_some() {
            None
        } else {
            Some(
                ch.ring_hash
                    .as_ref()
                    .and_then(|r| r.minimum_ring_size)
                    .or(ch.minimum_ring_size)
                    .unwrap_or(1024),
            )
        };
        return LoadBalancer::ConsistentHash(ConsistentHash {
            key,
            minimum_ring_size: ring,
            maglev_table_size: maglev,
        });
    }
    match lb.simple.as_deref() {
        Some("ROUND_ROBIN") => LoadBalancer::RoundRobin,
        Some("RANDOM") => LoadBalancer::Random,
        Some("PASSTHROUGH") => LoadBalancer::Passthrough,
        _ => LoadBalancer::LeastRequest,
    }
}

/// Zero is "unset" for the numeric pool fields (Istio).
fn pos(v: Option<i32>) -> Option<u32> {
    v.filter(|x| *x > 0).map(|x| x as u32)
}

fn pool(p: Option<&ConnectionPoolSettings>) -> ConnectionPool {
    let Some(p) = p else {
        return ConnectionPool::default();
    };
    let tcp = p.tcp.clone().unwrap_or_default();
    let http = p.http.clone().unwrap_or_default();
    ConnectionPool {
        max_connections: pos(tcp.max_connections),
        connect_timeout: dur(&tcp.connect_timeout),
        max_connection_duration: dur(&tcp.max_connection_duration),
        tcp_idle_timeout: dur(&tcp.idle_timeout),
        http1_max_pending_requests: pos(http.http1_max_pending_requests),
        http2_max_requests: pos(http.http2_max_requests),
        max_requests_per_connection: pos(http.max_requests_per_connection),
        max_retries: pos(http.max_retries),
        idle_timeout: dur(&http.idle_timeout),
        max_concurrent_streams: pos(http.max_concurrent_streams),
    }
}

/// Envoy's effective outlier detection for an Istio block.
pub fn outlier(o: &DrOutlier) -> OutlierDetection {
    let d = OutlierDetection::default();
    let base = dur(&o.base_ejection_time).unwrap_or(d.base_ejection_time);
    // consecutive5xxErrors set (even 0) replaces Envoy's default 5. The
    // deprecated consecutiveErrors is ignored, as istiod's
    // `applyOutlierDetection` ignores it (validation warns).
    let c5xx = o.consecutive_5xx_errors.unwrap_or(d.consecutive_5xx_errors);
    let gw = o.consecutive_gateway_errors.unwrap_or(0);
    OutlierDetection {
        consecutive_5xx_errors: c5xx,
        consecutive_gateway_errors: gw,
        consecutive_local_origin_failures: o.consecutive_local_origin_failures.unwrap_or(0),
        split_external_local_origin_errors: o.split_external_local_origin_errors.unwrap_or(false),
        interval: dur(&o.interval).unwrap_or(d.interval),
        base_ejection_time: base,
        max_ejection_time: base.max(Duration::from_secs(300)),
        max_ejection_percent: o
            .max_ejection_percent
            .filter(|p| *p > 0)
            .map(|p| p as u32)
            .unwrap_or(d.max_ejection_percent),
        min_health_percent: o
            .min_health_percent
            .filter(|p| *p > 0)
            .map(|p| p as u32)
            .unwrap_or(0),
        http_error_codes: o
            .outlier_detection_http_error_codes
            .iter()
            .flatten()
            .filter_map(|c| u16::try_from(*c).ok())
            .collect(),
    }
}

/// Resolved policies and subsets of one service.
pub fn resolve(dr: &DestinationRule, ports: &[u16]) -> (Vec<Subset>, Vec<TrafficPolicy>) {
    let subsets: Vec<Subset> = dr
        .spec
        .subsets
        .iter()
        .map(|s| Subset {
            name: s.name.clone(),
            labels: s.labels.clone(),
        })
        .collect();
    let mut policies = Vec::new();
    for &port in ports {
        let top = resolve_port(dr.spec.traffic_policy.as_ref(), port);
        let mut variants: Vec<(Option<String>, Blocks)> = vec![(None, top.clone())];
        for s in &dr.spec.subsets {
            variants.push((
                Some(s.name.clone()),
                merge_subset(top.clone(), s.traffic_policy.as_ref(), port),
            ));
        }
        for (subset, b) in variants {
            policies.push(TrafficPolicy {
                port,
                subset,
                load_balancer: load_balancer(b.lb.as_ref()),
                connection_pool: pool(b.pool.as_ref()),
                outlier_detection: b.outlier.as_ref().map(outlier),
            });
        }
    }
    (subsets, policies)
}
