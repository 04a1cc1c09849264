//! Telemetry resources → a waypoint's telemetry settings (§8.1).

use super::waypoints::WaypointInfo;
use crate::config::ConfigSet;
use crate::crd::Telemetry;
use mesh_common::model::{MetricOverride, TelemetryConfig};

fn applies(cs: &ConfigSet, t: &Telemetry, wp: &WaypointInfo) -> Option<u8> {
    let ns = t.metadata.namespace.as_deref().unwrap_or("");
    let refs = t.spec.all_target_refs();
    if !refs.is_empty() {
        let hit = refs.iter().any(|r| {
            (r.kind == "Gateway" && r.name == wp.name && ns == wp.namespace)
                || (r.kind == "GatewayClass"
                    && r.name == super::waypoints::WAYPOINT_CLASS
                    && ns == cs.mesh.root_namespace)
        });
        return hit.then_some(2);
    }
    if t.spec.selector.is_some() {
        return None;
    }
    if ns == cs.mesh.root_namespace {
        Some(0)
    } else if ns == wp.namespace {
        Some(1)
    } else {
        None
    }
}

/// Does `t` target the Service `ns/name` (`targetRefs` kind Service, in
/// the Telemetry's own namespace)?
fn targets_service(t: &Telemetry, ns: &str, name: &str) -> bool {
    t.metadata.namespace.as_deref() == Some(ns)
        && t.spec.all_target_refs().iter().any(|r| {
            r.kind == "Service" && r.group.as_deref().unwrap_or("").is_empty() && r.name == name
        })
}

/// Effective telemetry of a waypoint: mesh → namespace → targetRefs to the
/// waypoint; plus, per service `(hostname, namespace, name)` that a
/// Telemetry targets, the same with that Telemetry on top.
pub fn telemetry_for(
    cs: &ConfigSet,
    wp: &WaypointInfo,
    services: &[(&str, &str, &str)],
) -> TelemetryConfig {
    let mut ts: Vec<(u8, &Telemetry)> = cs
        .resources
        .telemetries
        .iter()
        .filter_map(|t| applies(cs, t, wp).map(|l| (l, t)))
        .collect();
    ts.sort_by_key(|(l, t)| (*l, t.metadata.name.clone()));
    let mut out = effective(cs, &ts);
    for (host, ns, name) in services {
        let mut extra: Vec<(u8, &Telemetry)> = cs
            .resources
            .telemetries
            .iter()
            .filter(|t| targets_service(t, ns, name))
            .map(|t| (3, t))
            .collect();
        if extra.is_empty() {
            continue;
        }
        extra.sort_by_key(|(_, t)| t.metadata.name.clone());
        let mut all = ts.clone();
        all.extend(extra);
        out.services
            .insert((*host).to_string(), effective(cs, &all));
    }
    out
}

/// The OTLP endpoint of an `opentelemetry` extension provider: OTLP/HTTP
/// when the provider has an `http` section, OTLP/gRPC (Istio's default)
/// otherwise. `None` for an unknown or other kind of provider.
fn otlp_endpoint(cs: &ConfigSet, provider: &str) -> Option<String> {
    let o = cs
        .mesh
        .extension_providers
        .get(provider)?
        .opentelemetry
        .as_ref()?;
    Some(match &o.http {
        Some(h) => {
            let path = h
                .get("path")
                .and_then(|p| p.as_str())
                .unwrap_or("/v1/traces");
            format!("http://{}:{}{}", o.service, o.port, path)
        }
        None => format!("grpc://{}:{}", o.service, o.port),
    })
}

/// Does an entry with this `match` apply to a waypoint (a server-side
/// proxy)? Unset and `CLIENT_AND_SERVER` do, `SERVER` does, `CLIENT` does
/// not (istiod's `matchWorkloadMode`).
fn serves(m: Option<&crate::crd::telemetry::WorkloadModeSelector>) -> bool {
    !matches!(m.and_then(|m| m.mode.as_deref()), Some("CLIENT"))
}

/// Applies Telemetries in order (parents first).
fn effective(cs: &ConfigSet, ts: &[(u8, &Telemetry)]) -> TelemetryConfig {
    let mut out = TelemetryConfig::default();
    out.tracing.sampling_percentage = cs.mesh.trace_sampling();
    // `meshConfig.defaultProviders.tracing` traces every proxy, Telemetry
    // or not.
    out.tracing.otlp_endpoint = cs
        .mesh
        .default_providers
        .tracing
        .first()
        .and_then(|name| otlp_endpoint(cs, name));
    // No Telemetry in scope configures access logging: the mesh's default
    // providers log (istiod's `mergeLogs`).
    let configured = ts.iter().any(|(_, t)| {
        t.spec
            .access_logging
            .as_ref()
            .is_some_and(|a| !a.is_empty())
    });
    if !configured && !cs.mesh.default_providers.access_logging.is_empty() {
        out.access_log.enabled = true;
        out.access_log
            .providers
            .clone_from(&cs.mesh.default_providers.access_logging);
    }
    for (_, t) in ts.iter().copied() {
        // Every entry whose `match.mode` covers the waypoint, a server-side
        // proxy (istiod builds its chains as inbound listeners); a later
        // entry overrides an earlier one.
        for a in t
            .spec
            .access_logging
            .iter()
            .flatten()
            .filter(|a| serves(a.r#match.as_ref()))
        {
            let disabled = a.disabled.unwrap_or(false);
            let mut providers: Vec<String> = a
                .providers
                .iter()
                .flatten()
                .map(|p| p.name.clone())
                .collect();
            if providers.is_empty() {
                providers.clone_from(&cs.mesh.default_providers.access_logging);
            }
            // No provider named and no default provider: Istio ignores the
            // entry (`istioctl analyze` says so, IST0157); `disabled` still
            // turns the parent's logging off.
            if providers.is_empty() && !disabled {
                continue;
            }
            out.access_log.enabled = !disabled;
            out.access_log.providers = providers;
            out.access_log.filter = a.filter.as_ref().and_then(|f| f.expression.clone());
        }
        for tr in t
            .spec
            .tracing
            .iter()
            .flatten()
            .filter(|tr| serves(tr.r#match.as_ref()))
        {
            if let Some(p) = tr.random_sampling_percentage {
                out.tracing.sampling_percentage = p;
            }
            if let Some(d) = tr.disable_span_reporting {
                out.tracing.disable_span_reporting = d;
            }
            if let Some(tags) = &tr.custom_tags {
                // A child's customTags replace the parent's entirely.
                out.tracing.custom_tags = tags
                    .iter()
                    .filter_map(|(k, v)| v.literal.as_ref().map(|l| (k.clone(), l.value.clone())))
                    .collect();
                let source = |s: &crate::crd::telemetry::TagSource| mesh_common::model::TagSource {
                    name: s.name.clone(),
                    default_value: s.default_value.clone(),
                };
                out.tracing.header_tags = tags
                    .iter()
                    .filter_map(|(k, v)| v.header.as_ref().map(|h| (k.clone(), source(h))))
                    .collect();
                out.tracing.environment_tags = tags
                    .iter()
                    .filter_map(|(k, v)| v.environment.as_ref().map(|e| (k.clone(), source(e))))
                    .collect();
            }
            // No provider named: the parent's (or the mesh default) stays.
            if let Some(p) = tr.providers.iter().flatten().next() {
                out.tracing.otlp_endpoint = otlp_endpoint(cs, &p.name);
            }
        }
        for m in t.spec.metrics.iter().flatten() {
            for o in m.overrides.iter().flatten() {
                let sel = o.r#match.clone().unwrap_or_default();
                out.metrics.push(MetricOverride {
                    metric: sel
                        .custom_metric
                        .or(sel.metric)
                        .unwrap_or_else(|| "ALL_METRICS".into()),
                    mode: sel.mode.unwrap_or_else(|| "CLIENT_AND_SERVER".into()),
                    disabled: o.disabled,
                    tag_overrides: o
                        .tag_overrides
                        .iter()
                        .flatten()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                if v.operation.as_deref() == Some("REMOVE") {
                                    None
                                } else {
                                    v.value.clone()
                                },
                            )
                        })
                        .collect(),
                });
            }
        }
    }
    out
}
