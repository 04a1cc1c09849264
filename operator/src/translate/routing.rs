//! VirtualService and HTTPRoute → the routing filter's configuration (§4.1, §6).

use super::destination::{fqdn, host_matches};
use super::status::{Condition, StatusTarget, Statuses};
use super::waypoints::WaypointInfo;
use crate::config::ConfigSet;
use crate::crd::gateway::HttpBackendRef as CrdBackend;
use crate::crd::{HTTPRoute, VirtualService};
use filter_model::gateway::{GatewayHttpRoute, HttpBackendRef, HttpRouteRule};
use filter_model::routing::{
    HttpRoute, RoutingConfig, ServiceRouting, TcpRoute, VirtualServiceRoutes,
};
use std::collections::BTreeMap;

fn created(m: &kube::api::ObjectMeta) -> Option<String> {
    m.creation_timestamp
        .as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(String::from))
}

fn age_key(m: &kube::api::ObjectMeta) -> (Option<String>, String, String) {
    (
        created(m),
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// Is a resource of namespace `own` with this `exportTo` visible to
/// proxies of namespace `client` (empty means everywhere)?
fn exported_to(export_to: &[String], own: &str, client: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == client || (e == "." && own == client))
}

/// VirtualServices that apply to `host` (service in `svc_ns`) at waypoint `wp`, oldest first.
pub fn virtual_services_for<'a>(
    cs: &'a ConfigSet,
    host: &str,
    svc_ns: &str,
    wp_ns: &str,
) -> Vec<&'a VirtualService> {
    let mut v: Vec<&VirtualService> = cs
        .resources
        .virtual_services
        .iter()
        .filter(|vs| {
            let ns = vs.metadata.namespace.as_deref().unwrap_or("");
            (ns == svc_ns || ns == wp_ns)
                && exported_to(&vs.spec.export_to, ns, wp_ns)
                && (vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == "mesh"))
                && vs
                    .spec
                    .hosts
                    .iter()
                    .any(|h| h != "*" && host_matches(&fqdn(cs, h, ns), host))
        })
        .collect();
    v.sort_by_key(|vs| age_key(&vs.metadata));
    v
}

/// Convert one VirtualService's `http` to the filter's shape.
pub fn vs_routes(cs: &ConfigSet, vs: &VirtualService) -> Result<VirtualServiceRoutes, String> {
    let ns = vs.metadata.namespace.clone().unwrap_or_default();
    let mut http = Vec::new();
    for r in &vs.spec.http {
        let mut r = r.clone();
        for d in r.route.iter_mut().flatten() {
            d.destination.host = fqdn(cs, &d.destination.host, &ns);
        }
        let v = serde_json::to_value(&r).map_err(|e| e.to_string())?;
        let mut fm: HttpRoute = serde_json::from_value(v)
            .map_err(|e| format!("{}/{}: {e}", ns, vs.metadata.name.as_deref().unwrap_or("")))?;
        fm.mirrors = mirrors(cs, &r, &ns)?;
        http.push(fm);
    }
    let mut tcp = Vec::new();
    for r in &vs.spec.tcp {
        let mut t: TcpRoute = serde_json::from_value(r.clone()).map_err(|e| {
            format!(
                "{}/{}: tcp: {e}",
                ns,
                vs.metadata.name.as_deref().unwrap_or("")
            )
        })?;
        for d in &mut t.route {
            d.destination.host = fqdn(cs, &d.destination.host, &ns);
        }
        tcp.push(t);
    }
    Ok(VirtualServiceRoutes {
        namespace: ns,
        name: vs.metadata.name.clone().unwrap_or_default(),
        http,
        tcp,
    })
}

/// `mirror` (+ `mirrorPercentage`, or the deprecated `mirrorPercent`) and
/// `mirrors[]` as one list (Istio's `MirrorPercent`: unset ⇒ 100 %, an
/// explicit 0 ⇒ no mirroring).
fn mirrors(
    cs: &ConfigSet,
    r: &crate::crd::networking::HttpRoute,
    ns: &str,
) -> Result<Vec<filter_model::routing::HttpMirror>, String> {
    use filter_model::fault::Percent;
    let dest = |d: &crate::crd::networking::Destination| -> Result<filter_model::routing::Destination, String> {
        let mut d = d.clone();
        d.host = fqdn(cs, &d.host, ns);
        serde_json::from_value(serde_json::to_value(&d).map_err(|e| e.to_string())?)
            .map_err(|e| format!("mirror destination: {e}"))
    };
    let mut out = Vec::new();
    if let Some(m) = &r.mirror {
        let percentage = match (
            r.mirror_percentage,
            r.mirror_percent.or(r.mirror_percent_snake),
        ) {
            (Some(p), _) => Some(Percent { value: p.value }),
            (None, Some(p)) => Some(Percent {
                value: f64::from(p),
            }),
            (None, None) => None,
        };
        out.push(filter_model::routing::HttpMirror {
            destination: dest(m)?,
            percentage,
        });
    }
    for m in r.mirrors.iter().flatten() {
        out.push(filter_model::routing::HttpMirror {
            destination: dest(&m.destination)?,
            percentage: m.percentage.map(|p| Percent { value: p.value }),
        });
    }
    Ok(out)
}

/// Which services (host) an HTTPRoute attaches to, with the parent port.
fn route_parents(cs: &ConfigSet, hr: &HTTPRoute) -> Vec<(String, String, String, Option<u16>)> {
    let ns = hr.metadata.namespace.clone().unwrap_or_default();
    hr.spec
        .parent_refs
        .iter()
        .filter(|p| {
            p.kind.as_deref() == Some("Service") && p.group.as_deref().unwrap_or("").is_empty()
        })
        .map(|p| {
            let pns = p.namespace.clone().unwrap_or_else(|| ns.clone());
            (
                super::workloads::hostname(cs, &p.name, &pns),
                pns,
                p.name.clone(),
                p.port.and_then(|x| u16::try_from(x).ok()),
            )
        })
        .collect()
}

fn backend(cs: &ConfigSet, b: &CrdBackend, ns: &str) -> Result<HttpBackendRef, String> {
    let kind_ok = b.kind.as_deref().unwrap_or("Service") == "Service"
        && b.group.as_deref().unwrap_or("").is_empty();
    let bns = b.namespace.clone().unwrap_or_else(|| ns.to_string());
    let exists = cs
        .services
        .iter()
        .any(|s| s.namespace == bns && s.name == b.name);
    let filters = match &b.filters {
        Some(f) => serde_json::from_value(serde_json::to_value(f).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    // Every route here has Service parents (a mesh route): istiod resolves
    // its backends in any namespace without a ReferenceGrant.
    Ok(HttpBackendRef {
        host: (kind_ok && exists).then(|| super::workloads::hostname(cs, &b.name, &bns)),
        port: b.port.and_then(|p| u16::try_from(p).ok()),
        weight: b.weight.map(|w| w.max(0) as u32),
        filters,
    })
}

/// `RequestMirror`: the backend resolved as backends are (a Service, in
/// any namespace for a mesh route), the share from `percent` or `fraction` (Gateway API:
/// neither = 100 %).
fn request_mirror(
    cs: &ConfigSet,
    m: &serde_json::Value,
    ns: &str,
) -> filter_model::gateway::HttpRequestMirrorFilter {
    let b = m.get("backendRef");
    let name = b
        .and_then(|b| b.get("name"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let kind_ok = b
        .and_then(|b| b.get("kind"))
        .and_then(|v| v.as_str())
        .unwrap_or("Service")
        == "Service"
        && b.and_then(|b| b.get("group"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .is_empty();
    let bns = b
        .and_then(|b| b.get("namespace"))
        .and_then(|v| v.as_str())
        .unwrap_or(ns);
    let exists = cs
        .services
        .iter()
        .any(|s| s.namespace == bns && s.name == name);
    let per_million = match (m.get("percent").and_then(|v| v.as_u64()), m.get("fraction")) {
        (Some(p), _) => Some(u32::try_from(p.min(100) * 10_000).unwrap_or(1_000_000)),
        (None, Some(f)) => {
            let num = f.get("numerator").and_then(|v| v.as_u64()).unwrap_or(0);
            let den = f
                .get("denominator")
                .and_then(|v| v.as_u64())
                .unwrap_or(100)
                .max(1);
            Some(u32::try_from((num.min(den) * 1_000_000) / den).unwrap_or(1_000_000))
        }
        (None, None) => None,
    };
    filter_model::gateway::HttpRequestMirrorFilter {
        host: (kind_ok && exists).then(|| super::workloads::hostname(cs, name, bns)),
        port: b
            .and_then(|b| b.get("port"))
            .and_then(|v| v.as_u64())
            .and_then(|p| u16::try_from(p).ok()),
        per_million,
    }
}

/// `HTTPCORSFilter` → `corsPolicy`, as Istio's `createCorsFilter`: `*`
/// alone matches any well-formed origin, an origin without `*` exactly,
/// one trailing `*` as a prefix, other wildcards as a regex; unmatched
/// preflights are ignored (answered without CORS headers).
fn cors_policy(c: &serde_json::Value) -> filter_model::routing::CorsPolicy {
    use filter_model::StringMatch;
    let strings = |key: &str| -> Vec<String> {
        c.get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let allow_origins = strings("allowOrigins")
        .into_iter()
        .filter(|o| !o.is_empty())
        .map(|o| {
            if o == "*" {
                StringMatch {
                    regex: Some(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s?#]+$".into()),
                    ..Default::default()
                }
            } else if !o.contains('*') {
                StringMatch {
                    exact: Some(o),
                    ..Default::default()
                }
            } else if o.matches('*').count() == 1 && o.ends_with('*') {
                StringMatch {
                    prefix: Some(o.trim_end_matches('*').to_string()),
                    ..Default::default()
                }
            } else {
                StringMatch {
                    regex: Some(format!("^{}$", regex::escape(&o).replace(r"\*", ".*"))),
                    ..Default::default()
                }
            }
        })
        .collect();
    let max_age = c
        .get("maxAge")
        .and_then(|v| v.as_i64())
        .filter(|s| *s > 0)
        .map(|s| filter_model::Duration::from_millis(s.unsigned_abs().saturating_mul(1000)));
    filter_model::routing::CorsPolicy {
        allow_origins,
        allow_origin: Vec::new(),
        allow_methods: strings("allowMethods"),
        allow_headers: strings("allowHeaders"),
        expose_headers: strings("exposeHeaders"),
        max_age,
        allow_credentials: c
            .get("allowCredentials")
            .and_then(|v| v.as_bool())
            .filter(|b| *b),
        unmatched_preflights: Some("IGNORE".into()),
    }
}

/// Convert an HTTPRoute (rules with resolved backends).
pub fn gateway_route(
    cs: &ConfigSet,
    hr: &HTTPRoute,
    port: Option<u16>,
) -> Result<GatewayHttpRoute, String> {
    let ns = hr.metadata.namespace.clone().unwrap_or_default();
    let mut rules = Vec::new();
    for r in &hr.spec.rules {
        let mut v = serde_json::to_value(r).map_err(|e| e.to_string())?;
        if let Some(o) = v.as_object_mut() {
            o.remove("backendRefs");
        }
        let mut rule: HttpRouteRule = serde_json::from_value(v).map_err(|e| e.to_string())?;
        for (f, crd) in rule.filters.iter_mut().zip(r.filters.iter().flatten()) {
            if let Some(m) = &crd.request_mirror {
                f.request_mirror = Some(request_mirror(cs, m, &ns));
            }
            if let Some(c) = &crd.cors {
                f.cors_policy = Some(cors_policy(c));
            }
        }
        rule.backend_refs = r
            .backend_refs
            .iter()
            .flatten()
            .map(|b| backend(cs, b, &ns))
            .collect::<Result<_, _>>()?;
        rules.push(rule);
    }
    Ok(GatewayHttpRoute {
        namespace: ns,
        name: hr.metadata.name.clone().unwrap_or_default(),
        creation_timestamp: created(&hr.metadata),
        port,
        rules,
    })
}

/// HTTPRoute statuses (parent acceptance); returns host → routes for bound parents.
pub fn http_routes_by_host(
    cs: &ConfigSet,
    svc_waypoint: &BTreeMap<String, String>,
    statuses: &mut Statuses,
) -> BTreeMap<String, Vec<GatewayHttpRoute>> {
    let mut out: BTreeMap<String, Vec<GatewayHttpRoute>> = BTreeMap::new();
    let mut routes: Vec<&HTTPRoute> = cs.resources.http_routes.iter().collect();
    routes.sort_by_key(|r| age_key(&r.metadata));
    for hr in routes {
        let ns = hr.metadata.namespace.clone().unwrap_or_default();
        let name = hr.metadata.name.clone().unwrap_or_default();
        let target = StatusTarget::new("HTTPRoute", &ns, &name);
        let parents = route_parents(cs, hr);
        for (host, pns, pname, port) in parents {
            let exists = cs
                .services
                .iter()
                .any(|s| s.namespace == pns && s.name == pname);
            if !exists {
                statuses.set(
                    target.clone(),
                    Condition::new(
                        "Accepted",
                        false,
                        "BackendNotFound",
                        format!("parent Service {pns}/{pname} not found"),
                    ),
                );
                continue;
            }
            if !svc_waypoint.contains_key(&host) {
                statuses.set(
                    target.clone(),
                    Condition::new(
                        "ResolvedWaypoints",
                        false,
                        "WaypointNotFound",
                        "istio.io/use-waypoint label missing from parent and parent namespace; in ambient mode, route will not be respected",
                    ),
                );
                continue;
            }
            let unsupported = hr
                .spec
                .rules
                .iter()
                .flat_map(|r| r.filters.iter().flatten())
                .find(|f| {
                    !matches!(
                        f.type_.as_str(),
                        "RequestHeaderModifier"
                            | "ResponseHeaderModifier"
                            | "RequestRedirect"
                            | "URLRewrite"
                            | "RequestMirror"
                            | "CORS"
                    )
                });
            if let Some(f) = unsupported {
                statuses.set(
                    target.clone(),
                    Condition::new(
                        "Accepted",
                        false,
                        "InvalidFilter",
                        format!("unsupported filter type {:?}", f.type_),
                    ),
                );
                continue;
            }
            let checked = gateway_route(cs, hr, port).and_then(|r| {
                let one = ServiceRouting {
                    host: host.clone(),
                    http_routes: vec![r],
                    ..Default::default()
                };
                refused_by_filter(&one, None)?;
                Ok(one.http_routes.into_iter().next().unwrap_or_default())
            });
            match checked {
                Ok(r) => {
                    statuses.set(
                        target.clone(),
                        Condition::new("Accepted", true, "Accepted", "Route was valid"),
                    );
                    statuses.set(
                        target.clone(),
                        Condition::new(
                            "ResolvedWaypoints",
                            true,
                            "Resolved",
                            format!("bound to {}", svc_waypoint[&host]),
                        ),
                    );
                    let all_ok = r
                        .rules
                        .iter()
                        .flat_map(|x| &x.backend_refs)
                        .all(|b| b.host.is_some());
                    statuses.set(
                        target.clone(),
                        if all_ok {
                            Condition::new(
                                "ResolvedRefs",
                                true,
                                "ResolvedRefs",
                                "All references resolved",
                            )
                        } else {
                            Condition::new(
                                "ResolvedRefs",
                                false,
                                "BackendNotFound",
                                "backend(s) not found",
                            )
                        },
                    );
                    out.entry(host).or_default().push(r);
                }
                Err(e) => statuses.set(
                    target.clone(),
                    Condition::new("Accepted", false, "Invalid", e),
                ),
            }
        }
    }
    out
}

/// Compiles one resource's routes with the routing filter's own code: a
/// VirtualService or HTTPRoute the filter would refuse is dropped alone,
/// with its error, instead of failing the waypoint's whole routing
/// configuration (istiod omits such a VirtualService's routes).
fn refused_by_filter(one: &ServiceRouting, waypoint_ns: Option<&str>) -> Result<(), String> {
    let cfg = RoutingConfig {
        waypoint_namespace: waypoint_ns.map(str::to_string),
        services: vec![one.clone()],
    };
    filter_routing::Router::compile(&cfg)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Routing configuration of one waypoint.
pub fn routing_config(
    cs: &ConfigSet,
    wp: &WaypointInfo,
    hosts: &[(String, String)],
    http_routes: &BTreeMap<String, Vec<GatewayHttpRoute>>,
    statuses: &mut Statuses,
) -> RoutingConfig {
    let mut services = Vec::new();
    for (host, svc_ns) in hosts {
        let mut sr = ServiceRouting {
            host: host.clone(),
            ..Default::default()
        };
        let short = host.split('.').next().unwrap_or("").to_string();
        sr.aliases = vec![
            short.clone(),
            format!("{short}.{svc_ns}"),
            format!("{short}.{svc_ns}.svc"),
        ];
        for vs in virtual_services_for(cs, host, svc_ns, &wp.namespace) {
            match vs_routes(cs, vs).and_then(|r| {
                let one = ServiceRouting {
                    host: host.clone(),
                    virtual_services: vec![r],
                    ..Default::default()
                };
                refused_by_filter(&one, Some(&wp.namespace))?;
                Ok(one.virtual_services.into_iter().next().unwrap_or_default())
            }) {
                Ok(r) => sr.virtual_services.push(r),
                Err(e) => statuses.set(
                    StatusTarget::new(
                        "VirtualService",
                        vs.metadata.namespace.as_deref().unwrap_or(""),
                        vs.metadata.name.as_deref().unwrap_or(""),
                    ),
                    Condition::new("Reconciled", false, "Invalid", e),
                ),
            }
        }
        // Only routes of the service's or the waypoint's namespace: an
        // HTTPRoute elsewhere is a consumer route, which the waypoint does
        // not apply (istiod's `getVirtualServiceForWaypoint`).
        if let Some(r) = http_routes.get(host) {
            sr.http_routes = r
                .iter()
                .filter(|r| r.namespace == *svc_ns || r.namespace == wp.namespace)
                .cloned()
                .collect();
        }
        if !sr.virtual_services.is_empty() || !sr.http_routes.is_empty() {
            services.push(sr);
        }
    }
    RoutingConfig {
        waypoint_namespace: Some(wp.namespace.clone()),
        services,
    }
}
