//! Telemetry resources → a waypoint's telemetry settings (§8.1).

use super::waypoints::WaypointInfo;
use crate::config::ConfigSet;
use crate::crd::Telemetry;
use mesh_common::model::{MetricOverride, TelemetryConfig};

/// The namespace-wide Telemetry of `ns` (no selector, no `targetRefs`):
/// the oldest one, as istiod's `namespaceWideTelemetryConfig` takes the
/// first of the namespace's Telemetries in creation order (several are an
/// error, IST0160).
fn namespace_wide<'a>(cs: &'a ConfigSet, ns: &str) -> Option<&'a Telemetry> {
    cs.resources
        .telemetries
        .iter()
        .filter(|t| {
            t.metadata.namespace.as_deref() == Some(ns)
                && t.spec.selector.is_none()
                && t.spec.all_target_refs().is_empty()
        })
        .min_by_key(|t| created(t))
}

/// Creation order (RFC 3339 UTC timestamps sort as text; the name breaks
/// ties). A missing timestamp (file mode) sorts first.
fn created(t: &Telemetry) -> (Option<String>, String) {
    (
        t.metadata
            .creation_timestamp
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
        t.metadata.name.clone().unwrap_or_default(),
    )
}

/// Does `t` (in its own namespace) target the waypoint: its Gateway, or
/// the `istio-waypoint` GatewayClass from the root namespace?
fn targets_waypoint(cs: &ConfigSet, t: &Telemetry, wp: &WaypointInfo) -> bool {
    let ns = t.metadata.namespace.as_deref().unwrap_or("");
    t.spec.all_target_refs().iter().any(|r| {
        (r.kind == "Gateway" && r.name == wp.name && ns == wp.namespace)
            || (r.kind == "GatewayClass"
                && r.name == super::waypoints::WAYPOINT_CLASS
                && ns == cs.mesh.root_namespace)
    })
}

/// Does `t` target the Service `ns/name` (`targetRefs` kind Service, in
/// the Telemetry's own namespace)?
fn targets_service(t: &Telemetry, ns: &str, name: &str) -> bool {
    t.metadata.namespace.as_deref() == Some(ns)
        && t.spec.all_target_refs().iter().any(|r| {
            r.kind == "Service" && r.group.as_deref().unwrap_or("").is_empty() && r.name == name
        })
}

/// Effective telemetry of a waypoint, as istiod's `applicableTelemetries`
/// orders it (later entries override earlier ones): the root namespace's
/// namespace-wide Telemetry, the waypoint namespace's, then Telemetries
/// targeting the waypoint. Per service `(hostname, namespace, name)`,
/// when it differs: a service in another namespace than the waypoint's
/// takes that namespace's namespace-wide Telemetry after the waypoint
/// namespace's, and its targeting Telemetries are looked up in the
/// service's namespace (so a Telemetry targeting the waypoint does not
/// apply to it); Telemetries targeting the Service come last.
pub fn telemetry_for(
    cs: &ConfigSet,
    wp: &WaypointInfo,
    services: &[(&str, &str, &str)],
) -> TelemetryConfig {
    let root = cs.mesh.root_namespace.as_str();
    let mut base: Vec<&Telemetry> = namespace_wide(cs, root).into_iter().collect();
    if wp.namespace != root {
        base.extend(namespace_wide(cs, &wp.namespace));
    }
    let targeting = |ns: &str, pred: &dyn Fn(&Telemetry) -> bool| -> Vec<&Telemetry> {
        let mut v: Vec<&Telemetry> = cs
            .resources
            .telemetries
            .iter()
            .filter(|t| t.metadata.namespace.as_deref() == Some(ns) && pred(t))
            .collect();
        v.sort_by_key(|t| created(t));
        v
    };
    let mut gateway_refs: Vec<&Telemetry> =
        targeting(&wp.namespace, &|t| targets_waypoint(cs, t, wp));
    if wp.namespace != root {
        gateway_refs.extend(targeting(root, &|t| targets_waypoint(cs, t, wp)));
    }
    let mut wide = base.clone();
    wide.extend(gateway_refs.iter().copied());
    let mut out = effective(cs, &wide);
    for (host, ns, name) in services {
        let svc_refs = targeting(ns, &|t| targets_service(t, ns, name));
        let mut list = if *ns == wp.namespace {
            if svc_refs.is_empty() {
                continue;
            }
            wide.clone()
        } else {
            let own = namespace_wide(cs, ns);
            if own.is_none() && svc_refs.is_empty() && gateway_refs.is_empty() {
                continue;
            }
            let mut l = base.clone();
            l.extend(own);
            l
        };
        list.extend(svc_refs);
        out.services
            .insert((*host).to_string(), effective(cs, &list));
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
fn effective(cs: &ConfigSet, ts: &[&Telemetry]) -> TelemetryConfig {
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
    let configured = ts.iter().any(|t| {
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
    for t in ts.iter().copied() {
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
