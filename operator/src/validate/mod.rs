//! Validation with Istio's messages (`pkg/config/validation`): what the
//! admission webhook would reject (errors) or warn about (warnings).
//!
//! ```
//! use operator::config::{MeshSettings, parse::{parse_documents, ParsedDoc}};
//! let yaml = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
//!             metadata: {name: d, namespace: shop}\nspec: {action: DENY}\n";
//! let ParsedDoc::Object(obj) = parse_documents(yaml, "x.yaml", "default").remove(0).unwrap() else { panic!() };
//! let v = operator::validate::validate(&obj, &MeshSettings::default());
//! assert_eq!(v.errors, vec!["invalid policy d.shop: DENY action without `rules` is meaningless as it will never be \
//!     triggered, add an empty rule `{}` if you want it be triggered for every request".to_string()]);
//! ```

mod networking;
mod other;
mod security;
mod unreachable;

use crate::config::{IstioObject, MeshSettings};

/// The outcome for one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validation {
    /// Rejections (the resource is not used).
    pub errors: Vec<String>,
    /// Warnings (the resource is used).
    pub warnings: Vec<String>,
}

impl Validation {
    /// No errors.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn err(&mut self, e: impl Into<String>) {
        self.errors.push(e.into());
    }

    pub(crate) fn warn(&mut self, w: impl Into<String>) {
        self.warnings.push(w.into());
    }

    fn prefixed(mut self, prefix: &str) -> Self {
        for e in &mut self.errors {
            *e = format!("{prefix} {e}");
        }
        self
    }
}

/// Validate one resource.
pub fn validate(obj: &IstioObject, mesh: &MeshSettings) -> Validation {
    let name = obj.meta().name.clone().unwrap_or_default();
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    if let Some(e) = dry_run_annotation_error(obj, &ns, &name) {
        let mut v = Validation::default();
        v.err(e);
        return v;
    }
    match obj {
        IstioObject::AuthorizationPolicy(o) => security::authorization_policy(o, mesh)
            .prefixed(&format!("invalid policy {name}.{ns}:")),
        IstioObject::PeerAuthentication(o) => security::peer_authentication(&o.spec),
        IstioObject::RequestAuthentication(o) => security::request_authentication(&o.spec),
        IstioObject::VirtualService(o) => networking::virtual_service(&o.spec, mesh),
        IstioObject::DestinationRule(o) => networking::destination_rule(&o.spec),
        IstioObject::Telemetry(o) => other::telemetry(&o.spec),
        IstioObject::WasmPlugin(o) => other::wasm_plugin(&o.spec),
        IstioObject::Gateway(o) => other::gateway(&o.spec),
        IstioObject::GatewayClass(_) => Validation::default(),
        IstioObject::HTTPRoute(o) => other::http_route(&o.spec),
    }
}

/// Istio checks the `istio.io/dry-run` annotation of every kind before
/// anything else and reports only that: unsupported outside
/// AuthorizationPolicy, only for ALLOW/DENY, and a `strconv.ParseBool`
/// value.
fn dry_run_annotation_error(obj: &IstioObject, ns: &str, name: &str) -> Option<String> {
    const KEY: &str = "istio.io/dry-run";
    let val = obj.meta().annotations.as_ref()?.get(KEY)?;
    let IstioObject::AuthorizationPolicy(ap) = obj else {
        return Some(format!(
            "{ns}/{name} has unsupported annotation {KEY}, please remove the annotation"
        ));
    };
    let action = ap.spec.action();
    if !matches!(
        action,
        crate::crd::security::AuthorizationAction::Allow
            | crate::crd::security::AuthorizationAction::Deny
    ) {
        return Some(format!(
            "the annotation {KEY} currently only supports action ALLOW/DENY, found action {} in {ns}/{name}",
            action.as_str()
        ));
    }
    let go_bool = matches!(
        val.as_str(),
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False"
    );
    (!go_bool).then(|| {
        format!(
            "{ns}/{name} has annotation {KEY} with invalid value ({val}): strconv.ParseBool: parsing {val:?}: invalid syntax"
        )
    })
}

// === shared helpers ===

/// Parse a Go/Istio duration (`1h2m3.5s`, `500ms`, `10us`) into
/// nanoseconds, as Go's `time.ParseDuration` does (a negative one aside).
pub fn parse_duration_nanos(s: &str) -> Option<u128> {
    filter_model::Duration::parse_nanos(s).ok()
}

/// Istio's `ValidateDuration`.
pub(crate) fn check_duration(v: &mut Validation, s: &str) {
    // Go's `time.ParseDuration` accepts a negative duration, which the
    // minimum then refuses.
    if let Some(abs) = s.trim().strip_prefix('-')
        && parse_duration_nanos(abs).is_some()
    {
        v.err("duration must be greater than 1ms");
        return;
    }
    match parse_duration_nanos(s) {
        None => v.err(format!("invalid duration {s:?}")),
        Some(n) if n < 1_000_000 => v.err("duration must be greater than 1ms"),
        Some(n) if n % 1_000_000 != 0 => v.err("only durations to ms precision are supported"),
        Some(_) => {}
    }
}

/// RFC 1123 DNS label.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Istio's `ValidateWildcardDomain` (simplified: `*` only as the whole
/// first label or a leading `*` of it).
pub(crate) fn check_wildcard_domain(v: &mut Validation, host: &str) {
    if host.is_empty() {
        v.err("domain name \"\" invalid (empty)");
        return;
    }
    if host.len() > 255 {
        v.err(format!("domain name {host:?} too long (max 255)"));
        return;
    }
    if host == "*" || host.parse::<std::net::IpAddr>().is_ok() {
        return;
    }
    let rest = host
        .strip_prefix("*.")
        .or_else(|| host.strip_prefix('*'))
        .unwrap_or(host);
    for label in rest.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            v.err(format!(
                "domain name {host:?} invalid (label {label:?} invalid)"
            ));
            return;
        }
    }
}

/// Istio's `ValidateIPs`.
pub(crate) fn check_ips(v: &mut Validation, ips: &[String]) {
    for ip in ips {
        if ip.contains('/') {
            if let Err(e) = ip.parse::<ipnet::IpNet>() {
                v.err(format!(
                    "bad CIDR range ({ip}): netip.ParsePrefix({ip:?}): {e}"
                ));
            }
        } else if ip.parse::<std::net::IpAddr>().is_err() {
            v.err(format!("bad IP address ({ip})"));
        }
    }
}

/// Istio's `ValidatePorts`.
pub(crate) fn check_ports(v: &mut Validation, ports: &[String]) {
    // strconv.ParseUint(p, 10, 32): ASCII digits only (no sign).
    for p in ports {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            v.err(format!(
                "bad port ({p}): strconv.ParseUint: parsing {p:?}: invalid syntax"
            ));
            continue;
        }
        match p.parse::<u32>() {
            Err(_) => v.err(format!(
                "bad port ({p}): strconv.ParseUint: parsing {p:?}: value out of range"
            )),
            Ok(n) if n > 65535 => v.err(format!("bad port ({p}): <nil>")),
            Ok(_) => {}
        }
    }
}

/// Status codes Go's `http.StatusText` knows.
pub(crate) fn is_known_http_status(code: i64) -> bool {
    matches!(
        code,
        100..=103
            | 200..=208
            | 226
            | 300..=305
            | 307
            | 308
            | 400..=418
            | 421..=426
            | 428
            | 429
            | 431
            | 451
            | 500..=508
            | 510
            | 511
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_nanos("2s"), Some(2_000_000_000));
        assert_eq!(parse_duration_nanos("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration_nanos("0.5s"), Some(500_000_000));
        assert_eq!(parse_duration_nanos("abc"), None);
        assert_eq!(parse_duration_nanos("2500.5h"), Some(9_001_800_000_000_000));
        assert_eq!(parse_duration_nanos("1.0005s"), Some(1_000_500_000));
        assert_eq!(parse_duration_nanos("99999999999999999999h"), None);
        assert_eq!(parse_duration_nanos("2562048h"), None);
        assert_eq!(parse_duration_nanos("1.s"), Some(1_000_000_000));
        assert_eq!(parse_duration_nanos("."), None);
        let mut v = Validation::default();
        check_duration(&mut v, "500us");
        check_duration(&mut v, "1500us");
        check_duration(&mut v, "-5s");
        check_duration(&mut v, "99999999999999999999h");
        assert_eq!(
            v.errors,
            vec![
                "duration must be greater than 1ms",
                "only durations to ms precision are supported",
                "duration must be greater than 1ms",
                "invalid duration \"99999999999999999999h\"",
            ]
        );
    }
}
