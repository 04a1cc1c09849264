//! `analyze`: Istio analyzer messages (`istioctl analyze`) over a config
//! set, as data for the CLI to print.
//!
//! ```
//! use operator::analyze::{analyze, Level};
//! use operator::config::ConfigSet;
//! assert!(analyze(&ConfigSet::default(), None).iter().all(|m| m.level != Level::Error));
//! ```

use crate::config::{ConfigSet, IstioObject};
use crate::translate::destination::fqdn;
use crate::translate::{TranslateContext, translate};
use crate::validate::validate;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

mod gateway_pods;
mod gateways;
mod namespaces;
mod telemetry;

/// Message level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Level {
    /// Error.
    Error,
    /// Warning.
    Warning,
    /// Info.
    Info,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Error => "Error",
            Level::Warning => "Warning",
            Level::Info => "Info",
        })
    }
}

/// One analyzer message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `ISTnnnn` (or `MSHnnnn` for this mesh's own checks).
    pub code: &'static str,
    /// Message type name.
    pub name: &'static str,
    /// Level.
    pub level: Level,
    /// `Kind namespace/name`.
    pub resource: String,
    /// Namespace of the resource (filtering).
    pub namespace: String,
    /// Text.
    pub message: String,
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] ({}) {}",
            self.level, self.code, self.resource, self.message
        )
    }
}

impl Message {
    fn new(
        code: &'static str,
        name: &'static str,
        level: Level,
        kind: &str,
        ns: &str,
        n: &str,
        message: String,
    ) -> Message {
        Message {
            code,
            name,
            level,
            resource: res(kind, ns, n),
            namespace: ns.to_string(),
            message,
        }
    }
}

/// Go's `%v` of a `[]string` (`[a b]`), as istiod's message templates
/// print lists.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

fn res(kind: &str, ns: &str, name: &str) -> String {
    if ns.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {ns}/{name}")
    }
}

fn selector_string(l: &BTreeMap<String, String>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Analyze everything (`namespace` restricts the output).
pub fn analyze(cs: &ConfigSet, namespace: Option<&str>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    let mut push = |code, name, level, kind: &str, ns: &str, n: &str, message: String| {
        out.push(Message::new(code, name, level, kind, ns, n, message));
    };
    // Webhook validation.
    let mut valid = cs.clone();
    valid.resources = Default::default();
    for obj in cs.resources.objects() {
        let v = validate(&obj, &cs.mesh);
        let k = obj.key();
        for e in &v.errors {
            push(
                "IST0106",
                "SchemaValidationError",
                Level::Error,
                k.kind.as_str(),
                &k.namespace,
                &k.name,
                format!("Schema validation error: {e}"),
            );
        }
        for w in &v.warnings {
            if w.starts_with("virtualService rule") && w.contains(" match ") {
                push(
                    "IST0131",
                    "VirtualServiceIneffectiveMatch",
                    Level::Info,
                    k.kind.as_str(),
                    &k.namespace,
                    &k.name,
                    analyzer_text(w),
                );
            } else if w.starts_with("virtualService rule") {
                push(
                    "IST0130",
                    "VirtualServiceUnreachableRule",
                    Level::Warning,
                    k.kind.as_str(),
                    &k.namespace,
                    &k.name,
                    analyzer_text(w),
                );
            } else {
                push(
                    "IST0133",
                    "SchemaWarning",
                    Level::Warning,
                    k.kind.as_str(),
                    &k.namespace,
                    &k.name,
                    format!("Schema validation warning: {w}"),
                );
            }
        }
        if v.is_valid() {
            valid.resources.push(obj);
        }
    }
    let cs = &valid;
    let service_hosts: BTreeMap<String, &crate::config::ServiceInfo> = cs
        .services
        .iter()
        .map(|s| {
            (
                crate::translate::workloads::hostname(cs, &s.name, &s.namespace),
                s,
            )
        })
        .collect();
    let selects_in_mesh = |ns: &str, root_wide: bool, labels: &BTreeMap<String, String>| {
        cs.pods.iter().any(|p| {
            (root_wide || p.namespace == ns)
                && in_mesh(cs, p)
                && labels.iter().all(|(k, v)| p.labels.get(k) == Some(v))
        })
    };
    let selects_any = |ns: &str, root_wide: bool, labels: &BTreeMap<String, String>| {
        cs.pods.iter().any(|p| {
            (root_wide || p.namespace == ns)
                && labels.iter().all(|(k, v)| p.labels.get(k) == Some(v))
        })
    };

    // VirtualServices.
    let mut mesh_hosts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for vs in &cs.resources.virtual_services {
        let ns = vs.metadata.namespace.clone().unwrap_or_default();
        let name = vs.metadata.name.clone().unwrap_or_default();
        let mesh_bound =
            vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == "mesh");
        if mesh_bound {
            for h in &vs.spec.hosts {
                mesh_hosts
                    .entry(fqdn(cs, h, &ns))
                    .or_default()
                    .push(format!("{ns}/{name}"));
            }
        }
        for r in &vs.spec.http {
            let mut dests: Vec<(&crate::crd::networking::Destination, bool)> = r
                .route
                .iter()
                .flatten()
                .map(|d| (&d.destination, false))
                .collect();
            dests.extend(r.mirror.iter().map(|d| (d, true)));
            dests.extend(r.mirrors.iter().flatten().map(|m| (&m.destination, true)));
            for (d, mirror) in dests {
                let host = fqdn(cs, &d.host, &ns);
                let what = if mirror { "mirror host" } else { "host" };
                let Some(svc) = service_hosts.get(&host) else {
                    push(
                        "IST0101",
                        "ReferencedResourceNotFound",
                        Level::Error,
                        "VirtualService",
                        &ns,
                        &name,
                        format!("Referenced {what} not found: {:?}", d.host),
                    );
                    continue;
                };
                if let Some(p) = d.port.as_ref().map(|p| p.number)
                    && !svc.ports.iter().any(|sp| u32::from(sp.port) == p)
                {
                    push(
                        "IST0101",
                        "ReferencedResourceNotFound",
                        Level::Error,
                        "VirtualService",
                        &ns,
                        &name,
                        format!(
                            "Referenced host:port not found: {:?}",
                            format!("{}:{p}", d.host)
                        ),
                    );
                }
                if d.port.is_none() && svc.ports.len() > 1 && !mirror {
                    let ports = svc
                        .ports
                        .iter()
                        .map(|p| p.port.to_string())
                        .collect::<Vec<_>>()
                        .join(",");
                    push(
                        "IST0112",
                        "VirtualServiceDestinationPortSelectorRequired",
                        Level::Error,
                        "VirtualService",
                        &ns,
                        &name,
                        format!(
                            "This VirtualService routes to a service {:?} that exposes multiple ports [{ports}]. Specifying a port in the destination is required to disambiguate.",
                            d.host
                        ),
                    );
                }
                if let Some(subset) = &d.subset {
                    let has = crate::translate::destination::find(
                        cs,
                        &host,
                        &svc.namespace,
                        &svc.namespace,
                    )
                    .is_some_and(|dr| dr.spec.subsets.iter().any(|s| &s.name == subset));
                    if !has {
                        let what = if mirror {
                            "mirror+subset in destinationrule"
                        } else {
                            "host+subset in destinationrule"
                        };
                        push(
                            "IST0101",
                            "ReferencedResourceNotFound",
                            Level::Error,
                            "VirtualService",
                            &ns,
                            &name,
                            format!(
                                "Referenced {what} not found: {:?}",
                                format!("{}+{subset}", d.host)
                            ),
                        );
                    }
                }
            }
            if r.fault
                .as_ref()
                .and_then(|f| f.delay.as_ref())
                .is_some_and(|d| d.percent.is_some_and(|p| p > 0))
            {
                push(
                    "IST0002",
                    "Deprecated",
                    Level::Warning,
                    "VirtualService",
                    &ns,
                    &name,
                    "Deprecated: HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage".into(),
                );
            }
        }
    }
    for (host, vss) in &mesh_hosts {
        let mut vss = vss.clone();
        vss.sort();
        if vss.len() > 1 {
            let list = vss.join(",");
            for v in &vss {
                let (ns, name) = v.split_once('/').unwrap_or(("", v.as_str()));
                push(
                    "IST0109",
                    "ConflictingMeshGatewayVirtualServiceHosts",
                    Level::Error,
                    "VirtualService",
                    ns,
                    name,
                    format!(
                        "The VirtualServices {list} associated with mesh gateway define the same host {host} which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."
                    ),
                );
            }
        }
    }
    // VirtualService + HTTPRoute on one host.
    for hr in &cs.resources.http_routes {
        let ns = hr.metadata.namespace.clone().unwrap_or_default();
        let name = hr.metadata.name.clone().unwrap_or_default();
        for p in hr
            .spec
            .parent_refs
            .iter()
            .filter(|p| p.kind.as_deref() == Some("Service"))
        {
            let host = crate::translate::workloads::hostname(
                cs,
                &p.name,
                p.namespace.as_deref().unwrap_or(&ns),
            );
            if let Some(vss) = mesh_hosts.get(&host) {
                push(
                    "MSH0001",
                    "MixedRouteTypesOnHost",
                    Level::Warning,
                    "HTTPRoute",
                    &ns,
                    &name,
                    format!(
                        "HTTPRoute {ns}/{name} and VirtualService {} both route host {host}: mixing VirtualService and Gateway API routes on one host is not supported and their precedence is undefined; use one routing API per host",
                        vss.join(",")
                    ),
                );
            }
        }
    }
    // DestinationRules.
    for dr in &cs.resources.destination_rules {
        let ns = dr.metadata.namespace.clone().unwrap_or_default();
        let name = dr.metadata.name.clone().unwrap_or_default();
        let host = fqdn(cs, &dr.spec.host, &ns);
        let svc = service_hosts.get(&host);
        if svc.is_none() && !host.contains('*') {
            push(
                "IST0174",
                "UnknownDestinationRuleHost",
                Level::Warning,
                "DestinationRule",
                &ns,
                &name,
                format!(
                    "The host {} defined in the DestinationRule does not match any services in the mesh.",
                    dr.spec.host
                ),
            );
        }
        // IST0128/IST0129: SIMPLE or MUTUAL TLS without `caCertificates`
        // (istiod's `CaCertificateAnalyzer`: a `credentialName` counts only
        // on a DestinationRule with a `workloadSelector`, and
        // `insecureSkipVerify` is no excuse).
        let selected = dr.spec.workload_selector.is_some();
        let unverified = |t: &serde_json::Value| -> Option<String> {
            let s = |k: &str| t.get(k).and_then(|x| x.as_str()).unwrap_or("");
            let mode = s("mode");
            (matches!(mode, "SIMPLE" | "MUTUAL")
                && s("caCertificates").is_empty()
                && (!selected || s("credentialName").is_empty()))
            .then(|| mode.to_string())
        };
        if let Some(tp) = &dr.spec.traffic_policy {
            if let Some(mode) = tp.tls.as_ref().and_then(unverified) {
                push(
                    "IST0128",
                    "NoServerCertificateVerificationDestinationLevel",
                    Level::Warning,
                    "DestinationRule",
                    &ns,
                    &name,
                    format!(
                        "DestinationRule {ns}/{name} in namespace {ns} has TLS mode set to {mode} but no caCertificates are set to validate server identity for host: {}",
                        dr.spec.host
                    ),
                );
            }
            for pl in &tp.port_level_settings {
                if let Some(mode) = pl.tls.as_ref().and_then(unverified) {
                    let port = pl.port.as_ref().map(|p| p.number).unwrap_or(0);
                    push(
                        "IST0129",
                        "NoServerCertificateVerificationPortLevel",
                        Level::Warning,
                        "DestinationRule",
                        &ns,
                        &name,
                        format!(
                            "DestinationRule {ns}/{name} in namespace {ns} has TLS mode set to {mode} but no caCertificates are set to validate server identity for host: {} at port number:{port}",
                            dr.spec.host
                        ),
                    );
                }
            }
        }
        if let Some(svc) = svc {
            let pods = crate::translate::workloads::service_pods(
                cs,
                svc,
                &crate::translate::workloads::pods_by_ip(cs),
            );
            for s in &dr.spec.subsets {
                if !pods
                    .iter()
                    .any(|p| s.labels.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
                {
                    push(
                        "IST0173",
                        "DestinationRuleSubsetNotSelectPods",
                        Level::Error,
                        "DestinationRule",
                        &ns,
                        &name,
                        format!(
                            "The Subset {} defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
                            s.name
                        ),
                    );
                }
            }
        }
    }
    // Selectors matching nothing; namespaces referenced by policies.
    let root = cs.mesh.root_namespace.clone();
    let mut selectors: Vec<(&str, String, String, BTreeMap<String, String>)> = Vec::new();
    for o in cs.resources.objects() {
        let k = o.key();
        let sel = match &o {
            IstioObject::AuthorizationPolicy(x) => x.spec.selector.as_ref(),
            IstioObject::PeerAuthentication(x) => x.spec.selector.as_ref(),
            IstioObject::RequestAuthentication(x) => x.spec.selector.as_ref(),
            IstioObject::Telemetry(x) => x.spec.selector.as_ref(),
            IstioObject::WasmPlugin(x) => x.spec.selector.as_ref(),
            _ => None,
        };
        if let Some(s) = sel {
            let l = s.labels();
            // Telemetry: a missing selector target (IST0101); only
            // AuthorizationPolicies get IST0127 (istiod's analyzers), an
            // empty selector included.
            if !l.is_empty() || k.kind == crate::config::Kind::AuthorizationPolicy {
                selectors.push((k.kind.as_str(), k.namespace.clone(), k.name.clone(), l));
            }
        }
    }
    for (kind, ns, name, labels) in selectors {
        // Istio's Telemetry analyzer looks for pods in the Telemetry's own
        // namespace only, even in the root namespace.
        if kind == "Telemetry" && !selects_any(&ns, false, &labels) {
            // Istio's Telemetry analyzer reports its selector as a missing
            // reference.
            push(
                "IST0101",
                "ReferencedResourceNotFound",
                Level::Error,
                kind,
                &ns,
                &name,
                format!(
                    "Referenced selector not found: {:?}",
                    selector_string(&labels)
                ),
            );
        } else if kind == "AuthorizationPolicy" && !selects_in_mesh(&ns, ns == root, &labels) {
            push(
                "IST0127",
                "NoMatchingWorkloadsFound",
                Level::Warning,
                kind,
                &ns,
                &name,
                format!(
                    "No matching workloads for this resource with the following labels: {}",
                    selector_string(&labels)
                ),
            );
        }
    }
    for ap in &cs.resources.authorization_policies {
        let ns = ap.metadata.namespace.clone().unwrap_or_default();
        let name = ap.metadata.name.clone().unwrap_or_default();
        for r in ap.spec.rules.iter().flatten() {
            for f in r.from.iter().flatten() {
                let Some(s) = &f.source else { continue };
                for n in s
                    .namespaces
                    .iter()
                    .flatten()
                    .chain(s.not_namespaces.iter().flatten())
                {
                    if !cs.namespaces.keys().any(|ns| namespace_match(ns, n)) {
                        push(
                            "IST0101",
                            "ReferencedResourceNotFound",
                            Level::Error,
                            "AuthorizationPolicy",
                            &ns,
                            &name,
                            format!("Referenced namespace not found: {n:?}"),
                        );
                    }
                }
            }
        }
        // istiod counts only pods in the mesh (ambient or sidecar), and
        // does not look at `targetRefs`.
        if ap.spec.selector.is_none()
            && ns != root
            && !cs.pods.iter().any(|p| p.namespace == ns && in_mesh(cs, p))
        {
            push(
                "IST0127",
                "NoMatchingWorkloadsFound",
                Level::Warning,
                "AuthorizationPolicy",
                &ns,
                &name,
                "No matching workloads for this resource with the following labels: ".into(),
            );
        }
    }
    // istiod's `BlockedCIDRsAnalyzer`: one message on the control plane
    // when RequestAuthentications exist and JWKS fetches are not
    // restricted by a CIDR block list (this operator has none).
    if !cs.resources.request_authentications.is_empty() {
        let names: Vec<String> = cs
            .resources
            .request_authentications
            .iter()
            .map(|ra| {
                format!(
                    "{}/{}",
                    ra.metadata.namespace.as_deref().unwrap_or(""),
                    ra.metadata.name.as_deref().unwrap_or("")
                )
            })
            .collect();
        let listed = if names.len() <= 5 {
            names.join(", ")
        } else {
            format!("{}, and {} more", names[..5].join(", "), names.len() - 5)
        };
        push(
            "IST0175",
            "JwksUriFetchUnrestricted",
            Level::Warning,
            "Deployment",
            &root,
            "istiod",
            format!(
                "BLOCKED_CIDRS_IN_JWKS_URIS is not configured but {} RequestAuthentication resource(s) exist ({listed}). Consider configuring it to restrict JWKS URI fetches to trusted networks.",
                names.len()
            ),
        );
    }
    // Negative status conditions.
    let t = translate(cs, &TranslateContext::default());
    for (target, conds) in &t.statuses.0 {
        for c in conds {
            let negative =
                !c.status || (c.type_ == "WaypointAccepted" && c.reason == "PartiallyInvalid");
            if negative {
                push(
                    "IST0171",
                    "NegativeConditionStatus",
                    Level::Warning,
                    &target.kind,
                    &target.namespace,
                    &target.name,
                    format!(
                        "A condition with a negative status is present: type={}, reason={}, message={}.",
                        c.type_, c.reason, c.message
                    ),
                );
            }
        }
    }
    out.extend(gateways::analyze(cs));
    out.extend(gateway_pods::analyze(cs));
    out.extend(telemetry::analyze(cs));
    out.extend(namespaces::analyze(cs));
    if let Some(n) = namespace {
        out.retain(|m| m.namespace == n);
    }
    out.sort_by(|a, b| {
        (a.level, &a.resource, a.code, &a.message).cmp(&(b.level, &b.resource, b.code, &b.message))
    });
    out.dedup();
    out
}

/// istioctl's `namespaceMatch`: `*` matches every namespace, `*suffix` and
/// `prefix*` match by suffix and prefix, anything else case-insensitively.
fn namespace_match(ns: &str, pattern: &str) -> bool {
    if pattern == "*" {
        true
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        ns.ends_with(suffix)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        ns.starts_with(prefix)
    } else {
        ns.eq_ignore_ascii_case(pattern)
    }
}

/// Is the pod in the mesh: enrolled in ambient, or with an injected sidecar?
fn in_mesh(cs: &ConfigSet, p: &crate::config::PodInfo) -> bool {
    crate::translate::workloads::is_enrolled(cs, p)
        || p.annotations
            .contains_key(crate::translate::workloads::SIDECAR_STATUS)
}

/// A validation warning about an unreachable rule or match, in the
/// analyzer's template (`VirtualService rule … not used (…).`).
fn analyzer_text(w: &str) -> String {
    let body = w.strip_prefix("virtualService").unwrap_or(w);
    format!("VirtualService{body}.")
}
