//! AuthorizationPolicy and PeerAuthentication → ztunnel policies
//! (Istio `pilot/pkg/serviceregistry/ambient/authorization.go`, §1.7, §3).

use super::status::{Condition, StatusTarget, Statuses};
use crate::config::ConfigSet;
use crate::crd::AuthorizationPolicy;
use crate::crd::security::{AuthorizationAction, MtlsMode, MutualTls, PeerAuthentication, Rule};
use mesh_common::model::policy::{CONVERTED_PEER_AUTHENTICATION_PREFIX, STATIC_STRICT_POLICY_NAME};
use mesh_common::model::{
    Authorization, RbacAction, RbacMatch, RbacScope, ServiceAccountMatch, StringMatch,
};
use std::collections::{BTreeMap, BTreeSet};

const HTTP_RULE_FMT_PREFIX: &str = "ztunnel does not support HTTP attributes (found: ";
const DENY_NO_EFFECT: &str = "After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at ztunnel and will have no effect. Deploy a waypoint proxy and use a targetRef to enforce this policy.";
const DENY_MIXED: &str = "DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more restrictive than requested.";
const ALLOW_RULE: &str = "Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested.";

const L4_WHEN: [&str; 5] = [
    "source.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
];

fn to_matches(values: &Option<Vec<String>>) -> Vec<StringMatch> {
    values
        .iter()
        .flatten()
        .map(|v| StringMatch::parse(v))
        .collect()
}

fn to_ports(values: &[String]) -> Vec<u16> {
    values
        .iter()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter_map(|p| u16::try_from(p).ok())
        .collect()
}

fn to_ips(values: &[String]) -> Vec<ipnet::IpNet> {
    values
        .iter()
        .filter(|v| !v.is_empty())
        .filter_map(|v| {
            if v.contains('/') {
                v.parse::<ipnet::IpNet>().ok()
            } else {
                v.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from)
            }
        })
        .collect()
}

fn to_sa(values: &Option<Vec<String>>, ns: &str) -> Vec<ServiceAccountMatch> {
    values
        .iter()
        .flatten()
        .map(|v| match v.split_once('/') {
            Some((n, sa)) => ServiceAccountMatch {
                namespace: n.into(),
                service_account: sa.into(),
            },
            None => ServiceAccountMatch {
                namespace: ns.into(),
                service_account: v.clone(),
            },
        })
        .collect()
}

/// `handleRule`: (clauses, HTTP attributes found).
fn handle_rule(
    action: RbacAction,
    rule: &Rule,
    ns: &str,
) -> (Option<Vec<Vec<RbacMatch>>>, Vec<String>) {
    let mut http = Vec::new();
    let mut l7 = false;
    let mut to_m = Vec::new();
    for to in rule.to.iter().flatten() {
        let op = to.operation.clone().unwrap_or_default();
        for (name, set) in [
            ("hosts", &op.hosts),
            ("notHosts", &op.not_hosts),
            ("methods", &op.methods),
            ("notMethods", &op.not_methods),
            ("paths", &op.paths),
            ("notPaths", &op.not_paths),
        ] {
            if set.as_ref().is_some_and(|s| !s.is_empty()) {
                l7 = true;
                http.push(name.to_string());
            }
        }
        to_m.push(RbacMatch {
            destination_ports: to_ports(op.ports.as_deref().unwrap_or_default()),
            not_destination_ports: to_ports(op.not_ports.as_deref().unwrap_or_default()),
            ..Default::default()
        });
    }
    let mut from_m = Vec::new();
    for from in rule.from.iter().flatten() {
        let s = from.source.clone().unwrap_or_default();
        for (name, set) in [
            ("remoteIpBlocks", &s.remote_ip_blocks),
            ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
            ("requestPrincipals", &s.request_principals),
            ("notRequestPrincipals", &s.not_request_principals),
        ] {
            if set.as_ref().is_some_and(|s| !s.is_empty()) {
                l7 = true;
                http.push(name.to_string());
            }
        }
        // trustDomains/notTrustDomains: neither translated nor reported
        // (reference §1.7): a source holding only them is an empty match.
        from_m.push(RbacMatch {
            source_ips: to_ips(s.ip_blocks.as_deref().unwrap_or_default()),
            not_source_ips: to_ips(s.not_ip_blocks.as_deref().unwrap_or_default()),
            namespaces: to_matches(&s.namespaces),
            not_namespaces: to_matches(&s.not_namespaces),
            service_accounts: to_sa(&s.service_accounts, ns),
            not_service_accounts: to_sa(&s.not_service_accounts, ns),
            principals: to_matches(&s.principals),
            not_principals: to_matches(&s.not_principals),
            ..Default::default()
        });
    }
    let mut clauses = Vec::new();
    if !to_m.is_empty() {
        clauses.push(to_m);
    }
    if !from_m.is_empty() {
        clauses.push(from_m);
    }
    for w in rule.when.iter().flatten() {
        if !L4_WHEN.contains(&w.key.as_str()) {
            l7 = true;
            http.push(w.key.clone());
        }
        let vals = w.values.as_deref().unwrap_or_default();
        let nvals = w.not_values.as_deref().unwrap_or_default();
        let strs = |v: &[String]| v.iter().map(|s| StringMatch::parse(s)).collect::<Vec<_>>();
        let mut m = RbacMatch::default();
        match w.key.as_str() {
            "source.namespace" => {
                m.namespaces = strs(vals);
                m.not_namespaces = strs(nvals);
            }
            "source.principal" => {
                m.principals = strs(vals);
                m.not_principals = strs(nvals);
            }
            "source.ip" => {
                m.source_ips = to_ips(vals);
                m.not_source_ips = to_ips(nvals);
            }
            "destination.port" => {
                m.destination_ports = to_ports(vals);
                m.not_destination_ports = to_ports(nvals);
            }
            "destination.ip" => {
                m.destination_ips = to_ips(vals);
                m.not_destination_ips = to_ips(nvals);
            }
            _ => {}
        }
        clauses.push(vec![m]);
    }
    if action == RbacAction::Allow && l7 {
        return (None, http);
    }
    (Some(clauses), http)
}

/// `hasEffectiveRules`.
fn has_effective_rules(rules: &[Vec<Vec<RbacMatch>>]) -> bool {
    rules
        .iter()
        .any(|g| g.is_empty() || g.iter().all(|clause| clause.iter().any(|m| !m.is_empty())))
}

/// Translate one AuthorizationPolicy for ztunnel. `None` when it is not sent.
pub fn convert_policy(
    ap: &AuthorizationPolicy,
    cs: &ConfigSet,
    statuses: &mut Statuses,
) -> Option<Authorization> {
    let spec = &ap.spec;
    let ns = ap.metadata.namespace.clone().unwrap_or_default();
    let name = ap.metadata.name.clone().unwrap_or_default();
    let target = StatusTarget::new("AuthorizationPolicy", &ns, &name);
    let dry_run = is_dry_run(ap);
    if dry_run && !cs.mesh.ztunnel_dry_run {
        statuses.set(
            target,
            Condition::new(
                "ZtunnelAccepted",
                false,
                "UnsupportedValue",
                format!("found policy \"{ns}/{name}\" using dry-run annotation, but support for ambient dry-run authorizationPolicies isn't enabled"),
            ),
        );
        return None;
    }
    if !spec.all_target_refs().is_empty() {
        return None;
    }
    let scope = if spec.selector.is_some() {
        RbacScope::WorkloadSelector
    } else if ns == cs.mesh.root_namespace {
        RbacScope::Global
    } else {
        RbacScope::Namespace
    };
    let action = match spec.action() {
        AuthorizationAction::Allow => RbacAction::Allow,
        AuthorizationAction::Deny => RbacAction::Deny,
        other => {
            statuses.set(
                target,
                Condition::new(
                    "ZtunnelAccepted",
                    false,
                    "UnsupportedValue",
                    format!("ztunnel does not support the {} action", other.as_str()),
                ),
            );
            return None;
        }
    };
    let mut rules = Vec::new();
    let mut http: BTreeSet<String> = BTreeSet::new();
    for r in spec.rules.iter().flatten() {
        let (clauses, found) = handle_rule(action, r, &ns);
        if let Some(c) = clauses {
            rules.push(c);
        }
        http.extend(found);
    }
    let pol = Authorization {
        name,
        namespace: ns,
        scope,
        action,
        rules,
        dry_run,
    };
    if http.is_empty() {
        statuses.set(
            target,
            Condition::new("ZtunnelAccepted", true, "Accepted", "attached to ztunnel"),
        );
    } else {
        let boiler = match action {
            RbacAction::Deny if !has_effective_rules(&pol.rules) => DENY_NO_EFFECT,
            RbacAction::Deny => DENY_MIXED,
            RbacAction::Allow => ALLOW_RULE,
        };
        let found = http.into_iter().collect::<Vec<_>>().join(", ");
        statuses.set(
            target,
            Condition::new(
                "ZtunnelAccepted",
                true,
                "UnsupportedValue",
                format!("{HTTP_RULE_FMT_PREFIX}{found}). In ambient mode you must use a waypoint proxy to enforce HTTP rules. {boiler}"),
            ),
        );
    }
    Some(pol)
}

fn mode(m: Option<&MutualTls>) -> MtlsMode {
    m.map(MutualTls::mode).unwrap_or_default()
}

fn oldest<'a>(pas: impl Iterator<Item = &'a PeerAuthentication>) -> Option<&'a PeerAuthentication> {
    pas.min_by(|a, b| {
        let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
        // Missing timestamps (file mode) sort by name for determinism.
        ta.cmp(&tb)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    })
}

/// The PeerAuthentications applying to a workload: (mesh, namespace, workload).
fn effective_pas<'a>(
    cs: &'a ConfigSet,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> (
    Option<&'a PeerAuthentication>,
    Option<&'a PeerAuthentication>,
    Option<&'a PeerAuthentication>,
) {
    let root = &cs.mesh.root_namespace;
    let pas = &cs.resources.peer_authentications;
    let in_ns = |p: &&PeerAuthentication, n: &str| p.metadata.namespace.as_deref() == Some(n);
    let mesh = oldest(
        pas.iter()
            .filter(|p| in_ns(p, root) && !p.spec.has_selector_labels()),
    );
    let nsp = if ns == root.as_str() {
        None
    } else {
        oldest(
            pas.iter()
                .filter(|p| in_ns(p, ns) && !p.spec.has_selector_labels()),
        )
    };
    let wl = if ns == root.as_str() {
        None
    } else {
        oldest(pas.iter().filter(|p| {
            in_ns(p, ns)
                && p.spec.has_selector_labels()
                && p.spec.selector.as_ref().is_some_and(|s| s.selects(labels))
        }))
    };
    (mesh, nsp, wl)
}

fn ports_sorted(pa: &PeerAuthentication) -> Vec<(u16, MtlsMode)> {
    let mut v: Vec<(u16, MtlsMode)> = pa
        .spec
        .port_level_mtls
        .iter()
        .flatten()
        .filter_map(|(k, m)| Some((k.parse().ok()?, m.mode())))
        .collect();
    v.sort_by_key(|(p, _)| *p);
    v
}

fn converted_name(pa: &PeerAuthentication) -> String {
    format!(
        "{CONVERTED_PEER_AUTHENTICATION_PREFIX}{}",
        pa.metadata.name.as_deref().unwrap_or("")
    )
}

/// `convertedSelectorPeerAuthentications`: policy keys a workload references.
pub fn workload_pa_keys(
    cs: &ConfigSet,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    let root = &cs.mesh.root_namespace;
    let (mesh, nsp, wl) = effective_pas(cs, ns, labels);
    let mut strict = mesh.is_some_and(|m| m.spec.mode() == MtlsMode::Strict);
    if let Some(n) = nsp
        && n.spec.mode() != MtlsMode::Unset
    {
        strict = n.spec.mode() == MtlsMode::Strict;
    }
    let mut port_key: Option<String> = None;
    if let Some(w) = wl {
        let wmode = w.spec.mode();
        if wmode == MtlsMode::Strict {
            strict = true;
        }
        if matches!(wmode, MtlsMode::Permissive | MtlsMode::Disable) {
            strict = false;
        }
        if w.spec.port_level_mtls.is_some() {
            let ports = ports_sorted(w);
            let key = format!("{ns}/{}", converted_name(w));
            match wmode {
                MtlsMode::Strict => {
                    if ports
                        .iter()
                        .any(|(_, m)| matches!(m, MtlsMode::Permissive | MtlsMode::Disable))
                    {
                        port_key = Some(key);
                        strict = false;
                    }
                }
                MtlsMode::Permissive | MtlsMode::Disable => {
                    if ports.iter().any(|(_, m)| *m == MtlsMode::Strict) {
                        port_key = Some(key);
                    }
                }
                MtlsMode::Unset => {
                    if strict {
                        if ports.iter().any(|(_, m)| *m == MtlsMode::Permissive) {
                            port_key = Some(key);
                            strict = false;
                        }
                    } else {
                        strict = false;
                        if ports.iter().any(|(_, m)| *m == MtlsMode::Strict) {
                            port_key = Some(key);
                        }
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    if strict {
        out.insert(format!("{root}/{STATIC_STRICT_POLICY_NAME}"));
    }
    out.extend(port_key);
    out.into_iter().collect()
}

fn no_principal() -> RbacMatch {
    RbacMatch {
        not_principals: vec![StringMatch::Presence],
        ..Default::default()
    }
}

/// `convertPeerAuthentication`: a per-workload DENY policy for a workload
/// PeerAuthentication with port-level mTLS, or `None`.
pub fn convert_peer_authentication(
    cs: &ConfigSet,
    pa: &PeerAuthentication,
) -> Option<Authorization> {
    let root = &cs.mesh.root_namespace;
    let ns = pa.metadata.namespace.clone().unwrap_or_default();
    if ns == *root
        || !pa.spec.has_selector_labels()
        || pa
            .spec
            .port_level_mtls
            .as_ref()
            .is_none_or(|p| p.is_empty())
    {
        return None;
    }
    let pas = &cs.resources.peer_authentications;
    let ns_cfg = oldest(pas.iter().filter(|p| {
        p.metadata.namespace.as_deref() == Some(ns.as_str()) && !p.spec.has_selector_labels()
    }));
    let root_cfg = oldest(pas.iter().filter(|p| {
        p.metadata.namespace.as_deref() == Some(root.as_str()) && !p.spec.has_selector_labels()
    }));
    let m = pa.spec.mode();
    let ns_mode = ns_cfg.map(|p| p.spec.mode());
    let root_mode = root_cfg.map(|p| p.spec.mode());
    let mut clauses: Vec<Vec<RbacMatch>> = Vec::new();
    let mut groups: Vec<Vec<Vec<RbacMatch>>> = Vec::new();
    if m == MtlsMode::Strict {
        clauses.push(vec![no_principal()]);
    }
    let mut found_non_strict = false;
    for (port, pm) in ports_sorted(pa) {
        match pm {
            MtlsMode::Strict => {
                let parent_strict = m == MtlsMode::Strict
                    || (m == MtlsMode::Unset && ns_mode == Some(MtlsMode::Strict))
                    || ((ns_mode.is_none() || ns_mode == Some(MtlsMode::Unset))
                        && root_mode == Some(MtlsMode::Strict));
                if parent_strict {
                    continue;
                }
                groups.push(vec![vec![RbacMatch {
                    not_principals: vec![StringMatch::Presence],
                    destination_ports: vec![port],
                    ..Default::default()
                }]]);
            }
            MtlsMode::Permissive | MtlsMode::Disable => {
                if matches!(m, MtlsMode::Permissive | MtlsMode::Disable) {
                    continue;
                }
                if m == MtlsMode::Unset
                    && ((ns_mode.is_some() && ns_mode != Some(MtlsMode::Strict))
                        || (ns_mode.is_none()
                            && root_mode.is_some()
                            && root_mode != Some(MtlsMode::Strict))
                        || (ns_mode.is_none() && root_mode.is_none()))
                {
                    continue;
                }
                found_non_strict = true;
                clauses.push(vec![RbacMatch {
                    not_destination_ports: vec![port],
                    ..Default::default()
                }]);
            }
            MtlsMode::Unset => continue,
        }
    }
    if m == MtlsMode::Strict && !found_non_strict {
        return None;
    }
    if clauses.is_empty() && groups.is_empty() {
        return None;
    }
    let merge_strict = (root_mode == Some(MtlsMode::Strict)
        && (ns_mode.is_none()
            || ns_mode == Some(MtlsMode::Unset)
            || ns_mode == Some(MtlsMode::Strict)))
        || ns_mode == Some(MtlsMode::Strict);
    if merge_strict && found_non_strict {
        clauses.push(vec![no_principal()]);
    }
    if !clauses.is_empty() {
        groups.push(clauses);
    }
    let _ = mode(None);
    Some(Authorization {
        name: converted_name(pa),
        namespace: ns,
        scope: RbacScope::WorkloadSelector,
        action: RbacAction::Deny,
        rules: groups,
        dry_run: false,
    })
}

/// Every ztunnel policy: converted AuthorizationPolicies, the static strict
/// policy (when any PeerAuthentication exists) and converted port-level
/// PeerAuthentications.
pub fn all_policies(cs: &ConfigSet, statuses: &mut Statuses) -> Vec<Authorization> {
    let mut out = ap_policies(cs, statuses);
    out.extend(mesh_policies(cs));
    out
}

/// The converted AuthorizationPolicies, in the order of
/// `cs.resources.authorization_policies`.
pub fn ap_policies(cs: &ConfigSet, statuses: &mut Statuses) -> Vec<Authorization> {
    cs.resources
        .authorization_policies
        .iter()
        .filter_map(|ap| convert_policy(ap, cs, statuses))
        .collect()
}

/// The static strict policy (when any PeerAuthentication exists) and the
/// converted port-level PeerAuthentications.
pub fn mesh_policies(cs: &ConfigSet) -> Vec<Authorization> {
    let mut out = Vec::new();
    if !cs.resources.peer_authentications.is_empty() {
        out.push(Authorization::static_strict(&cs.mesh.root_namespace));
        out.extend(
            cs.resources
                .peer_authentications
                .iter()
                .filter_map(|pa| convert_peer_authentication(cs, pa)),
        );
    }
    out
}

/// Does a policy's selector attach it to a workload at ztunnel? As
/// istiod's `buildWorkloadPolicies`: only with `matchLabels` present (a
/// `selector: {}` has none and attaches to no workload; `matchLabels: {}`
/// attaches to all of the namespace).
fn ztunnel_selects(sel: &crate::crd::WorkloadSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels.is_some() && sel.selects(labels)
}

/// Keys of selector-scoped policies selecting a workload.
pub fn selected_policy_keys(
    cs: &ConfigSet,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    let root = &cs.mesh.root_namespace;
    let mut out: Vec<String> = cs
        .resources
        .authorization_policies
        .iter()
        .filter(|ap| ap.spec.all_target_refs().is_empty())
        .filter(|ap| {
            let pns = ap.metadata.namespace.as_deref().unwrap_or("");
            (pns == ns || pns == root)
                && ap
                    .spec
                    .selector
                    .as_ref()
                    .is_some_and(|s| ztunnel_selects(s, labels))
        })
        .map(|ap| {
            format!(
                "{}/{}",
                ap.metadata.namespace.as_deref().unwrap_or(""),
                ap.metadata.name.as_deref().unwrap_or("")
            )
        })
        .collect();
    out.extend(workload_pa_keys(cs, ns, labels));
    out.sort();
    out.dedup();
    out
}

/// Selector policies and PeerAuthentications indexed by namespace, so that
/// finding a workload's policies does not scan every policy.
pub struct PolicyIndex<'a> {
    selectors: std::collections::HashMap<&'a str, Vec<(String, &'a crate::crd::WorkloadSelector)>>,
    any_pa: bool,
}

impl<'a> PolicyIndex<'a> {
    /// Build the index.
    pub fn new(cs: &'a ConfigSet) -> Self {
        let mut selectors: std::collections::HashMap<
            &'a str,
            Vec<(String, &'a crate::crd::WorkloadSelector)>,
        > = Default::default();
        for ap in &cs.resources.authorization_policies {
            if !ap.spec.all_target_refs().is_empty() {
                continue;
            }
            if let Some(sel) = &ap.spec.selector {
                let ns = ap.metadata.namespace.as_deref().unwrap_or("");
                selectors.entry(ns).or_default().push((
                    format!("{ns}/{}", ap.metadata.name.as_deref().unwrap_or("")),
                    sel,
                ));
            }
        }
        PolicyIndex {
            selectors,
            any_pa: !cs.resources.peer_authentications.is_empty(),
        }
    }

    /// Keys of the selector policies and converted PeerAuthentications a
    /// workload references (same result as [`selected_policy_keys`]).
    pub fn keys_for(
        &self,
        cs: &ConfigSet,
        ns: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let root = cs.mesh.root_namespace.as_str();
        let mut out: Vec<String> = Vec::new();
        for n in [ns, root] {
            for (k, sel) in self.selectors.get(n).into_iter().flatten() {
                if ztunnel_selects(sel, labels) {
                    out.push(k.clone());
                }
            }
            if ns == root {
                break;
            }
        }
        if self.any_pa {
            out.extend(workload_pa_keys(cs, ns, labels));
        }
        out.sort();
        out.dedup();
        out
    }
}

/// The `istio.io/dry-run` annotation read as Go's `strconv.ParseBool` reads
/// it (`true`, `1`, `t`, `T`, `TRUE`, `True`), as istiod does.
pub fn is_dry_run(ap: &crate::crd::AuthorizationPolicy) -> bool {
    ap.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("istio.io/dry-run"))
        .is_some_and(|v| matches!(v.as_str(), "true" | "1" | "t" | "T" | "TRUE" | "True"))
}
