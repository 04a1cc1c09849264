//! AuthorizationPolicy, PeerAuthentication, RequestAuthentication.

use super::{Validation, check_ips, check_ports};
use crate::config::MeshSettings;
use crate::crd::common::{PolicyTargetReference, WorkloadSelector};
use crate::crd::security::{
    AuthorizationAction, AuthorizationPolicy, PeerAuthenticationSpec, RequestAuthenticationSpec,
    Source,
};

const ALLOWED_TARGET_REFS: &str = "[core/v1/Service networking.istio.io/v1/ServiceEntry \
gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass]";

fn target_ref_allowed(r: &PolicyTargetReference) -> bool {
    matches!(
        (r.group(), r.kind.as_str()),
        ("", "Service")
            | ("networking.istio.io", "ServiceEntry")
            | ("gateway.networking.k8s.io", "Gateway")
            | ("gateway.networking.k8s.io", "GatewayClass")
    )
}

pub(crate) fn check_target_ref(v: &mut Validation, r: &PolicyTargetReference) {
    if r.name.is_empty() {
        v.err("targetRef name must be set");
    }
    if r.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
        v.err("targetRef namespace must not be set; cross namespace referencing is not supported");
    }
    if !target_ref_allowed(r) {
        v.err(format!(
            "targetRef must be to one of {ALLOWED_TARGET_REFS} but was {}/{}",
            r.group.as_deref().unwrap_or(""),
            r.kind
        ));
    }
}

pub(crate) fn check_selector(v: &mut Validation, sel: Option<&WorkloadSelector>) {
    let Some(sel) = sel else { return };
    let labels = sel.labels();
    if labels.is_empty() {
        v.warn("workload selector specified without labels");
    }
    for (k, val) in labels {
        if k.is_empty() {
            v.err(format!(
                "empty key is not supported in selector: {:?}",
                format!("{k}={val}")
            ));
        }
        if k.contains('*') || val.contains('*') {
            v.err(format!(
                "wildcard is not supported in selector: {:?}",
                format!("{k}={val}")
            ));
        }
    }
}

pub(crate) fn check_one_of_selector(
    v: &mut Validation,
    selector: bool,
    target_ref: bool,
    target_refs: bool,
) {
    if selector && (target_ref || target_refs) {
        v.err("only one of targetRefs or workloadSelector can be set");
    }
}

fn check_empty(v: &mut Validation, field: &str, values: &Option<Vec<String>>) {
    if values.iter().flatten().any(|s| s.is_empty()) {
        v.err(format!("empty value not allowed, found in {field}"));
    }
}

fn check_service_accounts(v: &mut Validation, field: &str, values: &Option<Vec<String>>) {
    if let Some(values) = values
        && let Err(e) = service_account_error(field, values)
    {
        v.err(e);
    }
}

/// Istio's `CheckServiceAccount`: the first problem found, worded as Istio
/// words it.
fn service_account_error(field: &str, values: &[String]) -> Result<(), String> {
    if values.len() > 16 {
        return Err("may not have more than 16 values".into());
    }
    for sa in values {
        if sa.is_empty() {
            return Err(format!("empty value not allowed, found in {field}"));
        }
        if sa.contains('*') {
            return Err(format!("wildcard not allowed, found in {field}"));
        }
        if sa.matches('/').count() > 1 {
            return Err(format!(
                "expected format 'serviceAccount' or 'namespace/serviceAccount', found {sa:?} in {field}"
            ));
        }
        if sa.len() > 320 {
            return Err(format!(
                "value cannot exceed 320 characters, found {sa:?} in {field}"
            ));
        }
        match sa.split_once('/') {
            Some(("", _)) => {
                return Err(format!(
                    "expected format 'serviceAccount' or 'namespace/serviceAccount', found empty namespace {sa:?} in {field}"
                ));
            }
            Some((_, "")) => {
                return Err(format!(
                    "expected format 'serviceAccount' or 'namespace/serviceAccount', found empty serviceAccount {sa:?} in {field}"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_trust_domains(v: &mut Validation, field: &str, values: &Option<Vec<String>>) {
    for td in values.iter().flatten() {
        let stars = td.matches('*').count();
        if stars > 1 {
            v.err(format!(
                "at most one wildcard is allowed, found {td:?} in {field}"
            ));
        } else if stars == 1 && !(td.starts_with('*') || td.ends_with('*')) {
            v.err(format!(
                "wildcard is only allowed at the start or end, found {td:?} in {field}"
            ));
        }
        if td.contains('/') {
            v.err(format!(
                "trust domain must not contain '/', found {td:?} in {field}"
            ));
        }
    }
}

fn nonempty(v: &Option<Vec<String>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

/// Istio checks lengths: a field set to `[]` counts as empty.
fn source_is_empty(s: &Source) -> bool {
    [
        &s.principals,
        &s.not_principals,
        &s.request_principals,
        &s.not_request_principals,
        &s.namespaces,
        &s.not_namespaces,
        &s.service_accounts,
        &s.not_service_accounts,
        &s.ip_blocks,
        &s.not_ip_blocks,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        &s.trust_domains,
        &s.not_trust_domains,
    ]
    .iter()
    .all(|f| f.as_ref().is_none_or(Vec::is_empty))
}

fn operation_is_empty(o: &crate::crd::security::Operation) -> bool {
    [
        &o.hosts,
        &o.not_hosts,
        &o.ports,
        &o.not_ports,
        &o.methods,
        &o.not_methods,
        &o.paths,
        &o.not_paths,
    ]
    .iter()
    .all(|f| f.as_ref().is_none_or(Vec::is_empty))
}

/// Path template checks (`{*}` / `{**}`).
fn check_paths(v: &mut Validation, field: &str, paths: &Option<Vec<String>>) {
    for p in paths.iter().flatten() {
        if !(p.contains("{*}") || p.contains("{**}")) {
            continue;
        }
        let segs: Vec<&str> = p.split('/').collect();
        for (i, seg) in segs.iter().enumerate() {
            if *seg == "{**}" {
                if segs[i + 1..].iter().any(|s| !s.is_empty()) {
                    v.err(format!("invalid or unsupported path {p}, found in {field}. {{**}} is not the last operator"));
                    break;
                }
                continue;
            }
            if *seg == "{*}" || seg.is_empty() {
                continue;
            }
            if seg.contains(['{', '}']) || seg.contains('*') {
                v.err(format!(
                    "invalid or unsupported path {p}, found in {field}. Contains '{{' or '}}' beyond a supported path template"
                ));
                break;
            }
            let ok = seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@=".contains(c));
            if !ok {
                v.err(format!(
                    "invalid or unsupported path {p}, found in {field}. Contains segment {seg} with invalid string literal"
                ));
                break;
            }
        }
    }
}

/// `when` key check (Istio `ValidateAttribute`).
fn check_attribute(key: &str, values: &[String]) -> Result<(), String> {
    let map_key = |k: &str| -> Result<(), String> {
        let ok = k
            .find('[')
            .is_some_and(|i| i > 0 && k.ends_with(']') && k.len() > i + 2);
        if ok {
            Ok(())
        } else {
            Err(format!("bad key ({k}): should have format a[b]"))
        }
    };
    if values.iter().any(String::is_empty) {
        return Err(format!("empty value not allowed, found in {key}"));
    }
    let mut ips = Validation::default();
    match key {
        "source.ip" | "destination.ip" | "remote.ip" => {
            check_ips(&mut ips, values);
        }
        "destination.port" => check_ports(&mut ips, values),
        "source.serviceAccount" => service_account_error(key, values)?,
        "source.trustDomain" => wildcard_values(key, values)?,
        "source.namespace"
        | "source.principal"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => {}
        k if k.starts_with("request.headers") => map_key(k)?,
        k if k.starts_with("request.auth.claims") => map_key(k)?,
        k if k.starts_with("experimental.envoy.filters.") => map_key(k)?,
        "destination.namespace" => {
            return Err(format!(
                "attribute {key} is replaced by the metadata.namespace"
            ));
        }
        k if k.starts_with("destination.labels") => {
            return Err(format!(
                "attribute {key} is replaced by the workload selector"
            ));
        }
        "destination.name" | "destination.user" => {
            return Err(format!(
                "deprecated attribute {key}: only supported in v1alpha1"
            ));
        }
        _ => return Err(format!("unknown attribute: {key}")),
    }
    match ips.errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub(crate) fn authorization_policy(ap: &AuthorizationPolicy, _mesh: &MeshSettings) -> Validation {
    let spec = &ap.spec;
    let mut v = Validation::default();
    check_one_of_selector(
        &mut v,
        spec.selector.is_some(),
        spec.target_ref.is_some(),
        spec.target_refs.is_some(),
    );
    check_selector(&mut v, spec.selector.as_ref());
    for r in spec.all_target_refs() {
        check_target_ref(&mut v, &r);
    }
    let action = spec.action();
    let rules = spec.rules.as_deref().unwrap_or_default();
    if action == AuthorizationAction::Custom {
        if spec.rules.is_none() {
            v.err("CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request");
        } else if spec
            .provider
            .as_ref()
            .and_then(|p| p.name.as_deref())
            .unwrap_or("")
            .is_empty()
        {
            v.err("`provider.name` must not be empty");
        }
        for r in rules {
            for f in r.from.iter().flatten() {
                let Some(s) = &f.source else { continue };
                let fields: [(&str, bool); 10] = [
                    ("Namespaces", nonempty(&s.namespaces)),
                    ("NotNamespaces", nonempty(&s.not_namespaces)),
                    ("ServiceAccounts", nonempty(&s.service_accounts)),
                    ("NotServiceAccounts", nonempty(&s.not_service_accounts)),
                    ("TrustDomains", nonempty(&s.trust_domains)),
                    ("NotTrustDomains", nonempty(&s.not_trust_domains)),
                    ("Principals", nonempty(&s.principals)),
                    ("NotPrincipals", nonempty(&s.not_principals)),
                    ("RequestPrincipals", nonempty(&s.request_principals)),
                    ("NotRequestPrincipals", nonempty(&s.not_request_principals)),
                ];
                for (name, set) in fields {
                    if set {
                        v.err(format!(
                            "From.{name} is currently not supported with CUSTOM action"
                        ));
                    }
                }
            }
            for c in r.when.iter().flatten() {
                if matches!(
                    c.key.as_str(),
                    "source.namespace"
                        | "source.serviceAccount"
                        | "source.trustDomain"
                        | "source.principal"
                ) || c.key.starts_with("request.auth.")
                {
                    v.err(format!(
                        "{} is currently not supported with CUSTOM action",
                        c.key
                    ));
                }
            }
        }
    } else if spec.provider.is_some() {
        v.err(format!(
            "`provider` must not be with non CUSTOM action, found {}",
            action.as_str()
        ));
    }
    if action == AuthorizationAction::Deny && rules.is_empty() {
        v.err("DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request");
    }
    for (i, rule) in rules.iter().enumerate() {
        if rule.from.as_ref().is_some_and(|f| f.is_empty()) {
            v.err(format!("`from` must not be empty, found at rule {i}"));
        }
        for from in rule.from.iter().flatten() {
            let Some(src) = &from.source else {
                v.err(format!("`from.source` must not be nil, found at rule {i}"));
                continue;
            };
            if source_is_empty(src) {
                v.err(format!(
                    "`from.source` must not be empty, found at rule {i}"
                ));
            }
            for ips in [
                &src.ip_blocks,
                &src.not_ip_blocks,
                &src.remote_ip_blocks,
                &src.not_remote_ip_blocks,
            ] {
                check_ips(&mut v, ips.as_deref().unwrap_or_default());
            }
            check_empty(&mut v, "Principals", &src.principals);
            check_empty(&mut v, "RequestPrincipals", &src.request_principals);
            check_empty(&mut v, "Namespaces", &src.namespaces);
            check_empty(&mut v, "IpBlocks", &src.ip_blocks);
            check_empty(&mut v, "RemoteIpBlocks", &src.remote_ip_blocks);
            check_empty(&mut v, "NotPrincipals", &src.not_principals);
            check_empty(&mut v, "NotRequestPrincipals", &src.not_request_principals);
            check_empty(&mut v, "NotNamespaces", &src.not_namespaces);
            check_empty(&mut v, "NotIpBlocks", &src.not_ip_blocks);
            check_empty(&mut v, "NotRemoteIpBlocks", &src.not_remote_ip_blocks);
            let has_sa = src.service_accounts.is_some() || src.not_service_accounts.is_some();
            let has_id = src.principals.is_some()
                || src.not_principals.is_some()
                || src.namespaces.is_some()
                || src.not_namespaces.is_some();
            if has_sa && has_id {
                v.err(format!(
                    "cannot set serviceAccounts with namespaces or principals, found at rule {i}"
                ));
            }
            check_service_accounts(&mut v, "ServiceAccounts", &src.service_accounts);
            check_service_accounts(&mut v, "NotServiceAccounts", &src.not_service_accounts);
            check_trust_domains(&mut v, "TrustDomains", &src.trust_domains);
            check_trust_domains(&mut v, "NotTrustDomains", &src.not_trust_domains);
        }
        if rule.to.as_ref().is_some_and(|t| t.is_empty()) {
            v.err(format!("`to` must not be empty, found at rule {i}"));
        }
        for to in rule.to.iter().flatten() {
            let Some(op) = &to.operation else {
                v.err(format!("`to.operation` must not be nil, found at rule {i}"));
                continue;
            };
            if operation_is_empty(op) {
                v.err(format!(
                    "`to.operation` must not be empty, found at rule {i}"
                ));
            }
            check_ports(&mut v, op.ports.as_deref().unwrap_or_default());
            check_ports(&mut v, op.not_ports.as_deref().unwrap_or_default());
            check_empty(&mut v, "Ports", &op.ports);
            check_empty(&mut v, "Methods", &op.methods);
            check_empty(&mut v, "Paths", &op.paths);
            check_empty(&mut v, "Hosts", &op.hosts);
            check_empty(&mut v, "NotPorts", &op.not_ports);
            check_empty(&mut v, "NotMethods", &op.not_methods);
            check_empty(&mut v, "NotPaths", &op.not_paths);
            check_empty(&mut v, "NotHosts", &op.not_hosts);
            check_paths(&mut v, "Paths", &op.paths);
            check_paths(&mut v, "NotPaths", &op.not_paths);
        }
        for c in rule.when.iter().flatten() {
            if c.key.is_empty() {
                v.err("`key` must not be empty");
                continue;
            }
            let values = c.values.as_deref().unwrap_or_default();
            let not_values = c.not_values.as_deref().unwrap_or_default();
            if values.is_empty() && not_values.is_empty() {
                v.err(format!(
                    "at least one of `values` or `notValues` must be set for key {}",
                    c.key
                ));
                continue;
            }
            for (vals, what) in [(values, "value"), (not_values, "notValue")] {
                if !vals.is_empty()
                    && let Err(e) = check_attribute(&c.key, vals)
                {
                    v.err(format!("invalid `{what}` for `key` {}: {e}", c.key));
                }
            }
        }
    }
    // Webhook warning for DENY rules using only HTTP attributes (TCP ports
    // under the policy's scope would be denied entirely), per rule, with
    // Istio's condition: a `from` without `to` and no L4 source field, or a
    // `to` without ports.
    if action == AuthorizationAction::Deny {
        for r in rules {
            let sources: Vec<&Source> = r
                .from
                .iter()
                .flatten()
                .filter_map(|f| f.source.as_ref())
                .collect();
            let ops: Vec<_> =
                r.to.iter()
                    .flatten()
                    .filter_map(|t| t.operation.as_ref())
                    .collect();
            let tcp_in_from = sources.iter().any(|s| {
                s.principals.is_some()
                    || s.not_principals.is_some()
                    || s.ip_blocks.is_some()
                    || s.not_ip_blocks.is_some()
                    || s.namespaces.is_some()
                    || s.not_namespaces.is_some()
                    || s.remote_ip_blocks.is_some()
                    || s.not_remote_ip_blocks.is_some()
                    || s.service_accounts.is_some()
                    || s.not_service_accounts.is_some()
            });
            let tcp_in_to = ops
                .iter()
                .any(|o| o.ports.is_some() || o.not_ports.is_some());
            let (from_exists, to_exists) = (!sources.is_empty(), !ops.is_empty());
            if (from_exists && !to_exists && !tcp_in_from) || (to_exists && !tcp_in_to) {
                v.warn("configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port");
            }
        }
    }
    v
}

pub(crate) fn peer_authentication(spec: &PeerAuthenticationSpec) -> Validation {
    let mut v = Validation::default();
    check_selector(&mut v, spec.selector.as_ref());
    if !spec.has_selector_labels() && spec.port_level_mtls.as_ref().is_some_and(|p| !p.is_empty()) {
        v.err("mesh/namespace peer authentication cannot have port level mTLS");
    }
    if spec.port_level_mtls.as_ref().is_some_and(|p| p.is_empty()) {
        v.err("port level mTLS, if defined, must have at least one element");
    }
    for port in spec.port_level_mtls.iter().flat_map(|m| m.keys()) {
        match port.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => {}
            _ => v.err("port must be in range 1..65535"),
        }
    }
    v
}

pub(crate) fn request_authentication(spec: &RequestAuthenticationSpec) -> Validation {
    let mut v = Validation::default();
    check_one_of_selector(
        &mut v,
        spec.selector.is_some(),
        spec.target_ref.is_some(),
        spec.target_refs.is_some(),
    );
    check_selector(&mut v, spec.selector.as_ref());
    for r in spec.all_target_refs() {
        check_target_ref(&mut v, &r);
    }
    for rule in spec.jwt_rules.iter().flatten() {
        let issuer = rule.issuer.as_deref().unwrap_or("");
        let uri = rule.uri().unwrap_or("");
        if issuer.is_empty() && uri.is_empty() {
            v.err("issuer or jwksUri must be non-empty string");
        }
        for a in rule.audiences.iter().flatten() {
            if a.is_empty() {
                v.err("audience must be non-empty string");
            }
        }
        if !uri.is_empty() {
            if uri.len() > 2048 {
                v.err("jwksUri must be at most 2048 characters");
            }
            match url::Url::parse(uri) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(u) => v.err(format!("URI scheme {:?} is not supported", u.scheme())),
                // Go's url.Parse takes a scheme-less string as a relative
                // URL; Istio then refuses its empty scheme.
                Err(url::ParseError::RelativeUrlWithoutBase) => {
                    v.err("URI scheme \"\" is not supported")
                }
                Err(e) => v.err(format!("parse {uri:?}: {e}")),
            }
        }
        if let Some(j) = rule.jwks.as_deref().filter(|j| !j.is_empty()) {
            if !uri.is_empty() {
                v.err("only one of jwks or jwksUri can be set");
            }
            match serde_json::from_str::<serde_json::Value>(j) {
                Err(e) => v.err(format!("jwks parse error: {e}")),
                Ok(val) => {
                    let keys = val.get("keys").and_then(|k| k.as_array());
                    match keys {
                        None => v.err("jwks parse error: missing \"keys\" array"),
                        Some(keys) => {
                            if keys.iter().any(|k| k.get("d").is_some()) {
                                v.warn("jwks contains private key material");
                            }
                        }
                    }
                }
            }
        }
        for h in rule.from_headers.iter().flatten() {
            if h.name.is_empty() {
                v.err("location header name must be non-empty string");
            }
        }
        for p in rule.from_params.iter().flatten() {
            if p.is_empty() {
                v.err("location query must be non-empty string");
            }
        }
        for c in rule.from_cookies.iter().flatten() {
            if c.is_empty() {
                v.err("cookie name must be non-empty string");
            }
        }
        for ch in rule.output_claim_to_headers.iter().flatten() {
            if ch.claim.is_empty() || ch.header.is_empty() {
                v.err("outputClaimToHeader header and claim value must be non-empty string");
            } else if !ch
                .header
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                v.err(format!(
                    "header name {} is not a valid header name",
                    ch.header
                ));
            }
        }
        if let Some(t) = &rule.timeout {
            super::check_duration(&mut v, t);
        }
    }
    v
}

/// istio's `CheckWildcardValues`: at most one `*`, at the start or the end
/// (or alone).
fn wildcard_values(key: &str, values: &[String]) -> Result<(), String> {
    for v in values {
        let n = v.matches('*').count();
        if n > 1 {
            return Err(format!(
                "at most one wildcard is allowed, found in {key}: {v:?}"
            ));
        }
        if n == 1 && v != "*" && !v.starts_with('*') && !v.ends_with('*') {
            return Err(format!(
                "wildcard is only allowed at the start or end, found in {key}: {v:?}"
            ));
        }
    }
    Ok(())
}
