//! Translation: a [`ConfigSet`] → what each proxy receives. Pure: the same
//! input always gives the same output (table-tested in `tests/`).
//!
//! ```
//! use operator::config::ConfigSet;
//! use operator::translate::{translate, TranslateContext};
//! let t = translate(&ConfigSet::default(), &TranslateContext::default());
//! assert!(t.workloads.is_empty() && t.authorizations.is_empty());
//! ```

pub mod attach;
pub mod authz;
pub mod clusters;
pub mod destination;
pub mod filters;
pub mod incremental;
pub mod routing;
pub mod status;
pub mod telemetry;
pub mod waypoints;
pub mod workloads;

use crate::config::ConfigSet;
use attach::Attachments;
use mesh_common::model::{
    Authorization, FilterConfig, ModuleRef, Service, WaypointConfig, WaypointEndpoint,
    WaypointService, Workload,
};
use status::Statuses;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use waypoints::WaypointInfo;

/// Inline JWKS served when keys could not be fetched (fail closed).
pub const EMPTY_JWKS: &str = r#"{"keys":[]}"#;

/// State of a filter rollout (see `crate::rollout`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutState {
    /// Canary share of the new version.
    pub percentage: f64,
    /// Previous version.
    pub previous: Option<ModuleRef>,
    /// Previous config.
    pub previous_config: Option<serde_json::Value>,
    /// The new version was rolled back.
    pub rolled_back: bool,
}

/// Everything translation needs besides the config set: results of
/// asynchronous work (JWKS fetches, module downloads, rollouts).
#[derive(Debug, Clone, Default)]
pub struct TranslateContext {
    /// JWKS by `jwksUri` (or `issuer:<iss>` for OpenID discovery).
    pub jwks: BTreeMap<String, String>,
    /// Resolved module of each WasmPlugin (`namespace/name`).
    pub modules: BTreeMap<String, ModuleRef>,
    /// First-party filter modules by name (absent ⇒ `builtin://<name>`).
    pub first_party: BTreeMap<String, ModuleRef>,
    /// Rollout state by WasmPlugin key.
    pub rollouts: BTreeMap<String, RolloutState>,
}

/// The translation result.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// Workloads (ztunnel).
    pub workloads: Arc<Vec<Workload>>,
    /// Services (ztunnel).
    pub services: Arc<Vec<Service>>,
    /// L4 policies (ztunnel): first those converted from
    /// AuthorizationPolicies (sorted by namespace and name, see
    /// [`Translation::policy_count`]), then the static strict policy,
    /// converted PeerAuthentications and implicit waypoint policies.
    pub authorizations: Vec<Authorization>,
    /// How many leading `authorizations` were converted from
    /// AuthorizationPolicies.
    pub policy_count: usize,
    /// Per-waypoint snapshots.
    pub waypoints: Arc<Vec<WaypointConfig>>,
    /// Discovered waypoints (lifecycle).
    pub waypoint_infos: BTreeMap<String, WaypointInfo>,
    /// Status conditions.
    pub statuses: Statuses,
    /// JWKS sources needed (`jwksUri` or `issuer:<iss>`), with the fetch
    /// timeout (the longest `timeout` of the rules naming the source,
    /// default 5 s).
    pub wanted_jwks: BTreeMap<String, std::time::Duration>,
}

/// JWKS cache key of a rule.
pub fn jwks_key(rule: &crate::crd::security::JwtRule) -> Option<String> {
    if rule.jwks.as_deref().is_some_and(|j| !j.is_empty()) {
        return None;
    }
    match (rule.uri(), &rule.issuer) {
        (Some(u), _) => Some(u.to_string()),
        (_, Some(i)) if !i.is_empty() => Some(format!("issuer:{i}")),
        _ => None,
    }
}

/// A rule's JWKS fetch timeout: `timeout`, default 5 s (Istio).
fn jwks_timeout(rule: &crate::crd::security::JwtRule) -> std::time::Duration {
    rule.timeout
        .as_deref()
        .and_then(crate::validate::parse_duration_nanos)
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n > 0)
        .map_or(crate::jwks::FETCH_TIMEOUT, std::time::Duration::from_nanos)
}

fn jwt_rule(
    ctx: &TranslateContext,
    r: &crate::crd::security::JwtRule,
) -> filter_model::jwt::JwtRule {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("timeout");
    }
    let mut out: filter_model::jwt::JwtRule = serde_json::from_value(v).unwrap_or_default();
    out.jwks_uri = r.uri().map(str::to_string);
    if out.jwks.is_empty() {
        out.jwks = jwks_key(r)
            .and_then(|k| ctx.jwks.get(&k).cloned())
            .unwrap_or_else(|| EMPTY_JWKS.to_string());
    }
    out
}

/// Translate everything.
pub fn translate(cs: &ConfigSet, ctx: &TranslateContext) -> Translation {
    let mut statuses = Statuses::default();
    let wps = waypoints::discover(cs);
    let mut authorizations = authz::ap_policies(cs, &mut statuses);
    let policy_count = authorizations.len();
    authorizations.extend(authz::mesh_policies(cs));
    let workloads = workloads::workloads(cs, &wps, &mut statuses);
    let (services, bound) = workloads::services(cs, &wps, &mut statuses);
    let svc_waypoint: BTreeMap<String, String> = bound
        .iter()
        .flat_map(|(wp, hosts)| hosts.iter().map(move |h| (h.clone(), wp.clone())))
        .collect();
    let http_routes = routing::http_routes_by_host(cs, &svc_waypoint, &mut statuses);
    let mut workloads = workloads;
    if cs.mesh.auto_allow_waypoint_policy {
        implicit_waypoint_policies(cs, &wps, &services, &mut workloads, &mut authorizations);
    }

    // Attachments of targetRef policies.
    let mut ap_att: Vec<(&crate::crd::AuthorizationPolicy, Attachments)> = Vec::new();
    for ap in &cs.resources.authorization_policies {
        let (ns, name) = (
            ap.metadata.namespace.as_deref().unwrap_or(""),
            ap.metadata.name.as_deref().unwrap_or(""),
        );
        let a = attach::attach(
            cs,
            &wps,
            &svc_waypoint,
            &status::StatusTarget::new("AuthorizationPolicy", ns, name),
            &ap.spec.all_target_refs(),
            &mut statuses,
        );
        if !a.is_empty() {
            ap_att.push((ap, a));
        }
    }
    let mut ra_att: Vec<(&crate::crd::RequestAuthentication, Attachments)> = Vec::new();
    let mut wanted_jwks: BTreeMap<String, std::time::Duration> = BTreeMap::new();
    for ra in &cs.resources.request_authentications {
        let (ns, name) = (
            ra.metadata.namespace.as_deref().unwrap_or(""),
            ra.metadata.name.as_deref().unwrap_or(""),
        );
        let a = attach::attach(
            cs,
            &wps,
            &svc_waypoint,
            &status::StatusTarget::new("RequestAuthentication", ns, name),
            &ra.spec.all_target_refs(),
            &mut statuses,
        );
        if !a.is_empty() {
            for rule in ra.spec.jwt_rules.iter().flatten() {
                if let Some(k) = jwks_key(rule) {
                    let t = jwks_timeout(rule);
                    let e = wanted_jwks.entry(k).or_insert(t);
                    *e = (*e).max(t);
                }
            }
            ra_att.push((ra, a));
        }
    }
    let mut wasm_att: Vec<(&crate::crd::WasmPlugin, Attachments)> = Vec::new();
    for p in &cs.resources.wasm_plugins {
        let (ns, name) = (
            p.metadata.namespace.as_deref().unwrap_or(""),
            p.metadata.name.as_deref().unwrap_or(""),
        );
        let a = attach::attach(
            cs,
            &wps,
            &svc_waypoint,
            &status::StatusTarget::new("WasmPlugin", ns, name),
            &p.spec.all_target_refs(),
            &mut statuses,
        );
        if !a.is_empty() {
            wasm_att.push((p, a));
        }
    }

    let by_ip = workloads::pods_by_ip(cs);
    let mut waypoint_cfgs = Vec::new();
    for (key, wp) in &wps {
        let td = &cs.mesh.trust_domain;
        let hosts: Vec<(String, String)> = cs
            .services
            .iter()
            .map(|s| {
                (
                    workloads::hostname(cs, &s.name, &s.namespace),
                    s.namespace.clone(),
                )
            })
            .filter(|(h, _)| svc_waypoint.get(h) == Some(key))
            .collect();
        let mut wsvcs: Vec<WaypointService> = cs
            .services
            .iter()
            .filter(|s| {
                svc_waypoint.get(&workloads::hostname(cs, &s.name, &s.namespace)) == Some(key)
            })
            .map(|s| clusters::waypoint_service(cs, s, &by_ip, &services, &wp.namespace, false))
            .collect();
        let wl_eps: Vec<WaypointEndpoint> = workloads
            .iter()
            .filter(|w| {
                w.waypoint
                    .as_ref()
                    .is_some_and(|b| format!("{}/{}", b.namespace, b.name) == *key)
            })
            .filter_map(|w| {
                cs.pods
                    .iter()
                    .find(|p| p.namespace == w.namespace && p.name == w.name)
            })
            .map(|p| endpoint(cs, p, None))
            .collect();

        // Filter chain.
        let mut chain: Vec<FilterConfig> = Vec::new();
        let jwt_cfg = filter_model::jwt::JwtConfig {
            request_authentications: ra_att
                .iter()
                .filter_map(|(ra, a)| {
                    a.get(key)
                        .map(|svcs| filter_model::jwt::RequestAuthentication {
                            namespace: ra.metadata.namespace.clone().unwrap_or_default(),
                            name: ra.metadata.name.clone().unwrap_or_default(),
                            target_services: svcs.clone(),
                            jwt_rules: ra
                                .spec
                                .jwt_rules
                                .iter()
                                .flatten()
                                .map(|r| jwt_rule(ctx, r))
                                .collect(),
                        })
                })
                .collect(),
            ..Default::default()
        };
        let mut authz_cfg = filter_model::authz::AuthzConfig {
            trust_domain: td.clone(),
            trust_domain_aliases: cs.mesh.trust_domain_aliases.clone(),
            multiple_custom_providers: cs.mesh.multiple_custom_authz_providers,
            providers: cs
                .mesh
                .extension_providers
                .iter()
                .filter_map(|(n, p)| {
                    let h = p.envoy_ext_authz_http.as_ref()?;
                    Some(filter_model::authz::ExtAuthzHttpProvider {
                        name: n.clone(),
                        timeout: h
                            .timeout
                            .as_deref()
                            .and_then(|t| filter_model::Duration::parse(t).ok()),
                        path_prefix: h.path_prefix.clone(),
                        fail_open: h.fail_open,
                        status_on_error: h.status_on_error.clone(),
                        include_request_headers_in_check: h
                            .include_request_headers_in_check
                            .clone(),
                        include_additional_headers_in_check: h
                            .include_additional_headers_in_check
                            .clone(),
                        headers_to_upstream_on_allow: h.headers_to_upstream_on_allow.clone(),
                        headers_to_downstream_on_allow: h.headers_to_downstream_on_allow.clone(),
                        headers_to_downstream_on_deny: h.headers_to_downstream_on_deny.clone(),
                    })
                })
                .collect(),
            policies: ap_att
                .iter()
                .filter_map(|(ap, a)| {
                    let svcs = a.get(key)?;
                    let mut v = serde_json::to_value(&ap.spec).ok()?;
                    if let Some(o) = v.as_object_mut() {
                        o.remove("selector");
                        o.remove("targetRef");
                        o.remove("targetRefs");
                        o.insert(
                            "namespace".into(),
                            ap.metadata.namespace.clone().unwrap_or_default().into(),
                        );
                        o.insert(
                            "name".into(),
                            ap.metadata.name.clone().unwrap_or_default().into(),
                        );
                    }
                    let mut p: filter_model::authz::AuthorizationPolicy =
                        match serde_json::from_value(v) {
                            Ok(p) => p,
                            Err(e) => {
                                tracing::error!(
                                    "AuthorizationPolicy {}: cannot convert for the waypoint: {e}",
                                    ap.metadata.name.as_deref().unwrap_or("")
                                );
                                return None;
                            }
                        };
                    p.namespace = ap.metadata.namespace.clone().unwrap_or_default();
                    p.name = ap.metadata.name.clone().unwrap_or_default();
                    p.target_services = svcs.clone();
                    p.dry_run = authz::is_dry_run(ap);
                    Some(p)
                })
                .collect(),
            ..Default::default()
        };
        let routing_cfg = routing::routing_config(cs, wp, &hosts, &http_routes, &mut statuses);
        // Services the routes send to without being bound here: clusters
        // only (a route to another namespace's service, a canary Service
        // as an HTTPRoute backend).
        let served: BTreeSet<String> = wsvcs.iter().map(|s| s.hostname.clone()).collect();
        let extra = clusters::route_destinations(&routing_cfg);
        wsvcs.extend(
            cs.services
                .iter()
                .filter(|s| {
                    let host = workloads::hostname(cs, &s.name, &s.namespace);
                    extra.contains(&host) && !served.contains(&host)
                })
                .map(|s| clusters::waypoint_service(cs, s, &by_ip, &services, &wp.namespace, true)),
        );
        let fault_cfg = filter_model::derive::fault_config(&routing_cfg);
        let retry_cfg = filter_model::derive::retry_config(&routing_cfg);
        let mut users: Vec<(u8, i32, String, FilterConfig)> = wasm_att
            .iter()
            .filter_map(|(p, a)| {
                let svcs = a.get(key)?;
                let f = filters::user_filter(ctx, p, svcs.clone())?;
                Some((
                    filters::phase_rank(p.spec.phase.as_deref()),
                    -p.spec.priority.unwrap_or(0),
                    f.name.clone(),
                    f,
                ))
            })
            .collect();
        users.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        let push_users = |rank: u8, chain: &mut Vec<FilterConfig>| {
            chain.extend(users.iter().filter(|u| u.0 == rank).map(|u| u.3.clone()));
        };
        // CUSTOM policies run first, before WasmPlugins of the AUTHN phase
        // and JWT validation (Istio's waypoint chain: ext_authz →
        // AUTHN → jwt_authn → AUTHZ → rbac): the provider sees the request
        // as the client sent it, token included. They run in the authz
        // filter's `authz-ext` build (the only one granted outbound-http);
        // the `authz` entry keeps AUDIT, DENY and ALLOW.
        let custom_cfg = split_custom(&mut authz_cfg);
        if !custom_cfg.policies.is_empty() {
            let mut f = filters::first_party(
                ctx,
                filters::AUTHZ_EXT_MODULE,
                serde_json::to_value(&custom_cfg).unwrap_or_default(),
            );
            f.name = filters::AUTHZ_CUSTOM.into();
            for (n, p) in &cs.mesh.extension_providers {
                if let Some(h) = &p.envoy_ext_authz_http {
                    f.upstreams
                        .insert(n.clone(), format!("http://{}:{}", h.service, h.port));
                }
            }
            chain.push(f);
        }
        push_users(0, &mut chain);
        if !jwt_cfg.request_authentications.is_empty() {
            chain.push(filters::first_party(
                ctx,
                "jwt",
                serde_json::to_value(&jwt_cfg).unwrap_or_default(),
            ));
        }
        push_users(1, &mut chain);
        if !authz_cfg.policies.is_empty() {
            chain.push(filters::first_party(
                ctx,
                "authz",
                serde_json::to_value(&authz_cfg).unwrap_or_default(),
            ));
        }
        if !routing_cfg.services.is_empty() {
            chain.push(filters::first_party(
                ctx,
                "routing",
                serde_json::to_value(&routing_cfg).unwrap_or_default(),
            ));
        }
        if !fault_cfg.routes.is_empty() {
            chain.push(filters::first_party(
                ctx,
                "fault",
                serde_json::to_value(&fault_cfg).unwrap_or_default(),
            ));
        }
        chain.push(filters::first_party(
            ctx,
            "retry",
            serde_json::to_value(&retry_cfg).unwrap_or_default(),
        ));
        push_users(2, &mut chain);
        push_users(3, &mut chain);
        let svc_keys: Vec<(&str, &str, &str)> = wsvcs
            .iter()
            .filter(|s| !s.route_only)
            .map(|s| (s.hostname.as_str(), s.namespace.as_str(), s.name.as_str()))
            .collect();
        let telemetry = telemetry::telemetry_for(cs, wp, &svc_keys);
        waypoint_cfgs.push(WaypointConfig {
            name: wp.name.clone(),
            namespace: wp.namespace.clone(),
            identity: wp.identity(td),
            trust_domain: td.clone(),
            traffic_type: wp.traffic_type,
            services: wsvcs,
            workloads: wl_eps,
            filters: chain,
            telemetry,
        });
    }

    Translation {
        workloads: Arc::new(workloads),
        services: Arc::new(services),
        authorizations,
        policy_count,
        waypoints: Arc::new(waypoint_cfgs),
        waypoint_infos: wps,
        statuses,
        wanted_jwks,
    }
}

/// Moves the CUSTOM policies (and the ext-authz providers) of `cfg` into a
/// config of their own, for the chain entry that runs before JWT.
fn split_custom(cfg: &mut filter_model::authz::AuthzConfig) -> filter_model::authz::AuthzConfig {
    use filter_model::authz::Action;
    let (custom, rest) = std::mem::take(&mut cfg.policies)
        .into_iter()
        .partition(|p| p.action == Action::Custom);
    cfg.policies = rest;
    filter_model::authz::AuthzConfig {
        trust_domain: cfg.trust_domain.clone(),
        trust_domain_aliases: cfg.trust_domain_aliases.clone(),
        num_trusted_proxies: cfg.num_trusted_proxies,
        path_normalization: cfg.path_normalization,
        multiple_custom_providers: cfg.multiple_custom_providers,
        providers: std::mem::take(&mut cfg.providers),
        policies: custom,
    }
}

/// `PILOT_AUTO_ALLOW_WAYPOINT_POLICY`: one ALLOW policy per waypoint for
/// its identity, referenced by every workload behind it.
fn implicit_waypoint_policies(
    cs: &ConfigSet,
    wps: &BTreeMap<String, WaypointInfo>,
    services: &[Service],
    workloads: &mut [Workload],
    authorizations: &mut Vec<Authorization>,
) {
    use mesh_common::model::{RbacAction, RbacMatch, RbacScope, StringMatch};
    let mut refs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in services {
        if let Some(b) = &s.waypoint {
            for e in &s.endpoints {
                refs.entry(e.workload_uid.clone())
                    .or_default()
                    .insert(format!("{}/{}", b.namespace, b.name));
            }
        }
    }
    for w in workloads.iter() {
        if let Some(b) = &w.waypoint {
            refs.entry(w.uid.clone())
                .or_default()
                .insert(format!("{}/{}", b.namespace, b.name));
        }
    }
    let name = |wp: &WaypointInfo| format!("istio_allow_waypoint_{}_{}", wp.namespace, wp.name);
    for wp in wps.values() {
        let principal = wp
            .identity(&cs.mesh.trust_domain)
            .trim_start_matches("spiffe://")
            .to_string();
        authorizations.push(Authorization {
            name: name(wp),
            namespace: wp.namespace.clone(),
            scope: RbacScope::WorkloadSelector,
            action: RbacAction::Allow,
            rules: vec![vec![vec![RbacMatch {
                principals: vec![StringMatch::Exact(principal)],
                ..Default::default()
            }]]],
            dry_run: false,
        });
    }
    for w in workloads.iter_mut() {
        for k in refs.get(&w.uid).into_iter().flatten() {
            if let Some(wp) = wps.get(k) {
                w.authorization_policies
                    .push(format!("{}/{}", wp.namespace, name(wp)));
            }
        }
        w.authorization_policies.sort();
        w.authorization_policies.dedup();
    }
}

pub(crate) fn endpoint(
    cs: &ConfigSet,
    p: &crate::config::PodInfo,
    svc: Option<&crate::config::ServiceInfo>,
) -> WaypointEndpoint {
    WaypointEndpoint {
        workload_uid: workloads::workload_uid(&p.namespace, &p.name),
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        workload_name: workloads::workload_name(p),
        address: p
            .ips
            .first()
            .copied()
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
        ports: svc
            .map(|s| {
                s.ports
                    .iter()
                    .filter_map(|sp| {
                        Some((sp.port, workloads::resolve_target(&sp.target_port, p)?))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        labels: p.labels.clone(),
        hbone: workloads::is_enrolled(cs, p),
        node: p.node.clone(),
        service_account: p.service_account.clone(),
        identity: format!(
            "spiffe://{}/ns/{}/sa/{}",
            cs.mesh.trust_domain, p.namespace, p.service_account
        ),
        canonical_name: workloads::canonical_name(p),
        canonical_revision: workloads::canonical_revision(p),
        healthy: p.ready,
    }
}
