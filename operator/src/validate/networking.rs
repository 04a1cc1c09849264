//! VirtualService and DestinationRule.

use super::{
    Validation, check_duration, check_wildcard_domain, is_dns1123_label, is_known_http_status,
};
use crate::config::MeshSettings;
use crate::crd::networking::{
    ConnectionPoolSettings, Destination, DestinationRuleSpec, HeaderOperations, HttpRoute,
    LoadBalancerSettings, OutlierDetection, StringMatch, TrafficPolicy, VirtualServiceSpec,
};

/// Retry policies Envoy/Istio accept in `retryOn`.
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

use filter_model::fault::GRPC_STATUS_NAMES as GRPC_CODES;

const MAX_REGEX: usize = 1024;

fn check_percentage(v: &mut Validation, p: f64) {
    if !(0.0..=100.0).contains(&p) || (p > 0.0 && p < 0.0001) {
        v.err(format!(
            "percentage {p} is neither 0.0, nor in range [0.0001, 100.0]"
        ));
    }
}

fn check_string_match(v: &mut Validation, m: &StringMatch, where_: &str) {
    if let Some(p) = &m.prefix
        && p.is_empty()
        && where_ != "uri"
    {
        v.err(format!(
            "{where_:?}: prefix string match should not be empty"
        ));
    }
    if let Some(r) = &m.regex {
        if r.len() > MAX_REGEX {
            v.err(format!(
                "{where_:?}: regex is too large, max length allowed is {MAX_REGEX}"
            ));
        } else if r != "*" && regex::Regex::new(&format!("^(?:{r})$")).is_err() {
            v.err(format!("{where_:?}: invalid regex {r:?}"));
        }
    }
}

/// A mirror's share: 0–100, istiod's texts (Go's `%f`).
fn mirror_share(v: &mut Validation, what: &str, value: f64) {
    if value > 100.0 {
        v.err(format!(
            "{what} must have a max value of 100 (it has {value:.6})"
        ));
    } else if value < 0.0 {
        v.err(format!(
            "{what} must have a min value of 0 (it has {value:.6})"
        ));
    }
}

fn check_destination(v: &mut Validation, d: &Destination) {
    if d.host == "*" {
        v.err("invalid destination host *");
    } else {
        check_wildcard_domain(v, &d.host);
    }
    if let Some(s) = &d.subset
        && !is_dns1123_label(s)
    {
        v.err(format!("subset name is invalid: {s}"));
    }
    if let Some(p) = &d.port
        && p.number > 65535
    {
        v.err(format!(
            "port number {} must be in the range 1..65535",
            p.number
        ));
    }
}

fn check_header_ops(
    v: &mut Validation,
    ops: Option<&HeaderOperations>,
    request: bool,
    authority: &mut Option<String>,
) {
    let Some(ops) = ops else { return };
    for (name, val) in ops.set.iter().flatten().chain(ops.add.iter().flatten()) {
        // Values are Envoy format strings (Istio's ValidateHTTPHeaderValue).
        if val.matches('%').count() % 2 != 0 {
            v.err("single % not allowed.  Escape by doubling to %% or encase Envoy variable name in pair of %");
        }
        let lower = name.to_ascii_lowercase();
        if request && (lower == ":authority" || lower == "host") {
            if let Some(prev) = authority.as_ref()
                && prev != val
            {
                v.err(format!("authority header cannot be set multiple times: have {prev:?}, attempting to set {val:?}"));
            }
            *authority = Some(val.clone());
            continue;
        }
        if lower.starts_with(':') {
            v.err(format!(
                "invalid header {name:?}: header cannot have \":\" prefix"
            ));
        } else if lower == "host" {
            v.err(format!("invalid header {name:?}: cannot set Host header"));
        }
    }
    for name in ops.remove.iter().flatten() {
        if name.starts_with(':') {
            v.err(format!(
                "invalid header {name:?}: header cannot have \":\" prefix"
            ));
        }
    }
}

fn http_route(v: &mut Validation, r: &HttpRoute, idx: usize, mesh: &MeshSettings) {
    let routes = r.route.as_deref().unwrap_or_default();
    // Conflicts.
    if r.mirror.is_some() && r.mirrors.as_ref().is_some_and(|m| !m.is_empty()) {
        v.err("HTTP route cannot contain both mirror and mirrors");
    }
    if r.redirect.is_some() {
        if !routes.is_empty() {
            v.err("HTTP route cannot contain both route and redirect");
        }
        if r.fault.is_some() {
            v.err("HTTP route cannot contain both fault and redirect");
        }
        if r.rewrite.is_some() {
            v.err("HTTP route rule cannot contain both rewrite and redirect");
        }
        if r.direct_response.is_some() {
            v.err("HTTP route rule cannot contain both direct_response and redirect");
        }
    }
    if r.direct_response.is_some() {
        if !routes.is_empty() {
            v.err("HTTP route cannot contain both route and direct_response");
        }
        if r.fault.is_some() {
            v.err("HTTP route cannot contain both fault and direct_response");
        }
        if r.rewrite.is_some() {
            v.err("HTTP route rule cannot contain both rewrite and direct_response");
        }
    }
    if r.redirect.is_none()
        && r.direct_response.is_none()
        && routes.is_empty()
        && r.delegate.is_none()
    {
        v.err("HTTP route, redirect or direct_response is required");
    }
    // The seed guide's rule, opt-in (not an Istio rule, see MeshSettings).
    if mesh.reject_fault_with_retries
        && r.fault.is_some()
        && (r.retries.is_some() || r.timeout.is_some())
    {
        let which = match (r.retries.is_some(), r.timeout.is_some()) {
            (true, true) => "retries and timeout",
            (true, false) => "retries",
            _ => "timeout",
        };
        let name = r
            .name
            .as_deref()
            .map(|n| format!(" {n:?}"))
            .unwrap_or_default();
        v.err(format!(
            "HTTP route {idx}{name} combines fault injection with {which}: move the fault into its own \
             VirtualService for this host (an injected fault is applied before the route's {which}, which \
             then do not apply to it)"
        ));
    }
    // Matches.
    for m in r.r#match.iter().flatten() {
        for (what, sm) in [
            ("uri", &m.uri),
            ("scheme", &m.scheme),
            ("method", &m.method),
            ("authority", &m.authority),
        ] {
            if let Some(sm) = sm {
                check_string_match(v, sm, what);
            }
        }
        // Istio names the field, not the key, in these messages.
        for (field, map) in [
            ("headers", &m.headers),
            ("withoutHeaders", &m.without_headers),
        ] {
            for (name, sm) in map.iter().flatten() {
                if name.is_empty() {
                    v.err("header name cannot be empty");
                }
                check_string_match(v, sm, field);
            }
        }
        for sm in m.query_params.iter().flat_map(|q| q.values()) {
            check_string_match(v, sm, "queryParams");
        }
        if let Some(p) = m.port
            && (p == 0 || p > 65535)
        {
            v.err(format!("port number {p} must be in the range 1..65535"));
        }
        if m.gateways.is_none() && m.source_labels.is_none() && m.source_namespace.is_none() {
            // nothing
        }
    }
    // Header manipulation.
    let mut authority = r.rewrite.as_ref().and_then(|rw| rw.authority.clone());
    if let Some(h) = &r.headers {
        check_header_ops(v, h.request.as_ref(), true, &mut authority);
        check_header_ops(v, h.response.as_ref(), false, &mut None);
    }
    // CORS.
    if let Some(c) = &r.cors_policy {
        for m in c.allow_methods.iter().flatten() {
            if ![
                "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
            ]
            .contains(&m.as_str())
            {
                v.err(format!("{m:?} is not a supported HTTP method"));
            }
        }
        for o in c.allow_origins.iter().flatten() {
            if o.exact.is_none() && o.prefix.is_none() && o.regex.is_none() {
                v.err("'' is not a valid match type for CORS allow origins");
            }
        }
        if let Some(ma) = &c.max_age {
            check_duration(v, ma);
            if super::parse_duration_nanos(ma).is_some_and(|n| n % 1_000_000_000 != 0) {
                v.err("max_age duration is accurate only to seconds precision");
            }
        }
    }
    // Fault.
    if let Some(f) = &r.fault {
        if f.abort.is_none() && f.delay.is_none() {
            v.err("HTTP fault injection must have an abort and/or a delay");
        }
        if let Some(a) = &f.abort {
            if let Some(p) = a.percentage {
                check_percentage(v, p.value);
            }
            match (a.http_status, &a.grpc_status, &a.http2_error) {
                (Some(s), _, _) => {
                    if !(200..=599).contains(&s) {
                        v.err(format!("HTTP status {s} is not in range 200-599"));
                    }
                }
                (None, Some(g), _) => {
                    if !GRPC_CODES.contains(&g.as_str()) {
                        v.err(format!(
                            "gRPC status {g:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'"
                        ));
                    }
                }
                (None, None, Some(_)) => v.err("HTTP/2 abort fault injection not supported yet"),
                (None, None, None) => v.warn("abort configured, but error type not set"),
            }
        }
        if let Some(d) = &f.delay {
            if let Some(p) = d.percentage {
                check_percentage(v, p.value);
            }
            if let Some(fd) = &d.fixed_delay {
                check_duration(v, fd);
            }
            if let Some(ed) = &d.exponential_delay {
                check_duration(v, ed);
                v.err("exponentialDelay not supported yet");
            }
        }
    }
    // Mirrors.
    if let Some(p) = r.mirror_percent.or(r.mirror_percent_snake) {
        if p > 100 {
            v.err(format!(
                "mirror_percent must have a max value of 100 (it has {p})"
            ));
        }
        v.warn("using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead");
    }
    if let Some(p) = r.mirror_percentage {
        mirror_share(v, "mirror_percentage", p.value);
    }
    if let Some(m) = &r.mirror {
        check_destination(v, m);
    }
    for m in r.mirrors.iter().flatten() {
        check_destination(v, &m.destination);
        if let Some(p) = m.percentage {
            mirror_share(v, "mirror percentage", p.value);
        }
    }
    // Redirect.
    if let Some(rd) = &r.redirect {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|x| !x.is_empty());
        if set(&rd.uri) && set(&rd.prefix_rewrite) {
            v.err("redirect may only specify one of uri or prefix_rewrite");
        }
        if set(&rd.prefix_rewrite)
            && r.r#match
                .iter()
                .flatten()
                .any(|m| m.uri.as_ref().is_some_and(|u| u.prefix.is_none()))
        {
            v.err("redirect prefix_rewrite requires all URI matches to use prefix match type");
        }
        if let Some(p) = rd.port
            && !(1..=65535).contains(&p)
        {
            v.err(format!("port number {p} must be in the range 1..65535"));
        }
        if rd.uri.is_none()
            && !set(&rd.prefix_rewrite)
            && rd.authority.is_none()
            && rd.scheme.is_none()
            && rd.port.is_none()
            && rd.derive_port.is_none()
        {
            v.err("redirect must specify URI, authority, scheme, or port");
        }
        if let Some(code) = rd.redirect_code {
            if !(300..=399).contains(&code) {
                v.err(format!("{code} is not a valid redirect code, must be 3xx"));
            } else if !matches!(code, 301 | 302 | 303 | 307 | 308) {
                // Istio's webhook lets these through, then istiod drops the
                // route's action ("Redirect Code N is not yet supported")
                // and Envoy refuses the route table; refuse the object here
                // instead, so the rest of the waypoint's routes keep working.
                v.err(format!(
                    "Redirect Code {code} is not yet supported (supported: 301, 302, 303, 307, 308)"
                ));
            }
        }
        if let Some(s) = &rd.scheme
            && s != "http"
            && s != "https"
        {
            v.err("invalid redirect scheme, must be \"http\" or \"https\"");
        }
    }
    // Direct response.
    if let Some(dr) = &r.direct_response {
        if dr.status < 200 || dr.status > 600 {
            v.err(format!("HTTP status {} is not in range 200-599", dr.status));
        }
        if let Some(b) = &dr.body {
            let len = b
                .string
                .as_ref()
                .map(|s| s.len())
                .or(b.bytes.as_ref().map(|s| s.len() * 3 / 4))
                .unwrap_or(0);
            if len > 1024 * 1024 {
                v.err("large direct_responses may impact control plane performance, must be less than 1MB");
            } else if len > 100 * 1024 {
                v.warn("large direct_responses may impact control plane performance");
            }
        }
    }
    // Retries.
    if let Some(rt) = &r.retries {
        let attempts = rt.attempts.unwrap_or(0);
        if attempts < 0 {
            v.err("attempts cannot be negative");
        }
        if attempts == 0
            && (rt.per_try_timeout.is_some()
                || rt.retry_on.is_some()
                || rt.retry_remote_localities.is_some())
        {
            v.err("http retry policy configured when attempts are set to 0 (disabled)");
        }
        if let Some(t) = &rt.per_try_timeout {
            check_duration(v, t);
        }
        if let Some(on) = rt.retry_on.as_deref().filter(|s| !s.is_empty()) {
            for p in on.split(',') {
                let known_code = p.parse::<i64>().is_ok_and(is_known_http_status);
                if !known_code && !RETRY_ON.contains(&p) {
                    v.err(format!("{p:?} is not a valid retryOn policy"));
                }
            }
        }
        if let Some(b) = &rt.backoff {
            check_duration(v, b);
        }
    }
    // Rewrite.
    if let Some(rw) = &r.rewrite {
        if rw.uri.is_some() && rw.uri_regex_rewrite.is_some() {
            v.err("rewrite may only contain one of URI or UriRegexRewrite");
        }
        if rw.uri.is_none() && rw.uri_regex_rewrite.is_none() && rw.authority.is_none() {
            v.err("rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified");
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            let pattern = rr.r#match.as_deref().unwrap_or("");
            if pattern.is_empty() || rr.rewrite.as_deref().unwrap_or("").is_empty() {
                v.err("UriRegexRewrite requires both Rewrite and Match fields to be specified");
            } else if pattern.len() > MAX_REGEX || regex::Regex::new(pattern).is_err() {
                v.err(format!(
                    "UriRegexRewrite has errors: \"HTTPRewrite.UriRegexRewrite.Match\" regex invalid: {pattern:?}"
                ));
            }
        }
    }
    // Destinations.
    let mut total: i64 = 0;
    for d in routes {
        check_destination(v, &d.destination);
        let w = d.weight.unwrap_or(0);
        if w < 0 {
            v.err(format!("weight {w} < 0"));
        }
        total += i64::from(w);
        if let Some(h) = &d.headers {
            let mut a = None;
            check_header_ops(v, h.request.as_ref(), true, &mut a);
            check_header_ops(v, h.response.as_ref(), false, &mut None);
        }
    }
    if routes.len() > 1 && total == 0 {
        v.err("total destination weight = 0");
    }
    if let Some(t) = &r.timeout {
        check_duration(v, t);
    }
}

pub(crate) fn virtual_service(spec: &VirtualServiceSpec, mesh: &MeshSettings) -> Validation {
    let mut v = Validation::default();
    let applies_to_mesh = spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh");
    if spec.hosts.is_empty() {
        v.err("virtual service must have at least one host");
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        if applies_to_mesh && h == "*" {
            v.err("wildcard host * is not allowed for virtual services bound to the mesh gateway");
        } else {
            check_wildcard_domain(&mut v, h);
        }
        for other in &spec.hosts[i + 1..] {
            if other.eq_ignore_ascii_case(h) {
                v.err(format!("duplicate hosts in virtual service: {h} & {other}"));
            }
        }
    }
    // JWT claim routing (`@request.auth.claims.*` header keys) is
    // gateway-only (Istio's webhook).
    let applies_to_gateway =
        !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == "mesh");
    if !applies_to_gateway {
        for m in spec.http.iter().flat_map(|r| r.r#match.iter().flatten()) {
            for key in m
                .headers
                .iter()
                .chain(m.without_headers.iter())
                .flat_map(|h| h.keys())
                .filter(|k| k.starts_with("@request.auth.claims"))
            {
                v.err(format!(
                    "JWT claim based routing (key: {key}) is only supported for gateway, found no gateways: [{}]",
                    spec.gateways.join(" ")
                ));
            }
        }
    }
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        v.err("http, tcp or tls must be provided in virtual service");
    }
    for (i, r) in spec.http.iter().enumerate() {
        http_route(&mut v, r, i, mesh);
    }
    for r in &spec.tcp {
        tcp_route(&mut v, r);
    }
    super::unreachable::unreachable_rules(&mut v, spec);
    v
}

/// `tcp` routes: `destinationSubnets` entries are IPs or CIDR blocks
/// (Istio's `ValidateIPSubnet`, with its messages).
fn tcp_route(v: &mut Validation, r: &serde_json::Value) {
    let matches = r.get("match").and_then(|m| m.as_array());
    for m in matches.into_iter().flatten() {
        let subnets = m.get("destinationSubnets").and_then(|s| s.as_array());
        for s in subnets.into_iter().flatten() {
            match s.as_str() {
                Some(s) => {
                    if let Err(e) = filter_model::routing::parse_subnet(s) {
                        v.err(e);
                    }
                }
                None => v.err(format!("destinationSubnets entry {s} is not a string")),
            }
        }
    }
}

fn check_traffic_policy(v: &mut Validation, p: &TrafficPolicy) {
    if p.outlier_detection.is_none()
        && p.connection_pool.is_none()
        && p.load_balancer.is_none()
        && p.tls.is_none()
        && p.port_level_settings.is_empty()
        && p.tunnel.is_none()
        && p.proxy_protocol.is_none()
        && p.retry_budget.is_none()
    {
        v.err("traffic policy must have at least one field");
    }
    if p.tunnel.is_some() && p.proxy_protocol.is_some() {
        v.err("tunnel and proxyProtocol must not be set together");
    }
    if let Some(o) = &p.outlier_detection {
        check_outlier(v, o);
    }
    if let Some(c) = &p.connection_pool {
        check_pool(v, c);
    }
    if let Some(lb) = &p.load_balancer {
        check_lb(v, lb);
    }
    if let Some(t) = &p.tls {
        check_tls(v, t);
    }
    for pl in &p.port_level_settings {
        if pl.port.is_none() {
            v.err("portTrafficPolicy must have valid port");
        }
        if pl.connection_pool.is_none()
            && pl.load_balancer.is_none()
            && pl.outlier_detection.is_none()
            && pl.tls.is_none()
        {
            v.err("port traffic policy must have at least one field");
        }
        if let Some(o) = &pl.outlier_detection {
            check_outlier(v, o);
        }
        if let Some(c) = &pl.connection_pool {
            check_pool(v, c);
        }
        if let Some(lb) = &pl.load_balancer {
            check_lb(v, lb);
        }
        if let Some(t) = &pl.tls {
            check_tls(v, t);
        }
    }
}

/// `ClientTLSSettings` (Istio's `ValidateTLS`).
fn check_tls(v: &mut Validation, t: &serde_json::Value) {
    let s = |k: &str| t.get(k).and_then(|x| x.as_str()).unwrap_or("");
    let mode = s("mode");
    let set = |k: &str| !s(k).is_empty();
    let sans = t.get("subjectAltNames").is_some_and(|x| !x.is_null());
    if t.get("insecureSkipVerify").and_then(|x| x.as_bool()) == Some(true) {
        if mode == "SIMPLE" && (set("caCertificates") || set("credentialName") || sans) {
            v.err("cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true");
        }
        if mode == "MUTUAL" && (set("caCertificates") || sans) {
            v.err("cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true");
        }
    }
    if matches!(mode, "SIMPLE" | "MUTUAL") && set("credentialName") {
        if set("clientCertificate") || set("caCertificates") || set("privateKey") || set("caCrl") {
            v.err("cannot specify client certificates or CA certificate or CA CRL If credentialName is set");
        }
        return;
    }
    if mode == "MUTUAL" {
        if !set("clientCertificate") {
            v.err("client certificate required for mutual tls");
        }
        if !set("privateKey") {
            v.err("private key required for mutual tls");
        }
    }
}

fn check_outlier(v: &mut Validation, o: &OutlierDetection) {
    if let Some(b) = &o.base_ejection_time {
        check_duration(v, b);
    }
    if o.consecutive_errors.is_some_and(|c| c != 0) {
        v.warn("outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead");
    }
    if !o.split_external_local_origin_errors.unwrap_or(false)
        && o.consecutive_local_origin_failures.is_some_and(|c| c > 0)
    {
        v.err("outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false");
    }
    if let Some(i) = &o.interval {
        check_duration(v, i);
    }
    for p in [o.max_ejection_percent, o.min_health_percent]
        .into_iter()
        .flatten()
    {
        if !(0..=100).contains(&p) {
            v.err(format!("percentage {p} is not in range 0..100"));
        }
    }
    // The CRD's schema bounds (the API server refuses the object).
    for (i, c) in o
        .outlier_detection_http_error_codes
        .iter()
        .flatten()
        .enumerate()
    {
        if !(100..=599).contains(c) {
            v.err(format!(
                "outlierDetectionHttpErrorCodes[{i}]: Invalid value: {c}: must be in the range 100..599"
            ));
        }
    }
}

fn check_pool(v: &mut Validation, c: &ConnectionPoolSettings) {
    if c.http.is_none() && c.tcp.is_none() {
        v.err("connection pool must have at least one field");
    }
    if let Some(h) = &c.http {
        let neg = |x: Option<i32>| x.is_some_and(|x| x < 0);
        if neg(h.http1_max_pending_requests) {
            v.err("http1 max pending requests must be non-negative");
        }
        if neg(h.http2_max_requests) {
            v.err("http2 max requests must be non-negative");
        }
        if neg(h.max_requests_per_connection) {
            v.err("max requests per connection must be non-negative");
        }
        if neg(h.max_retries) {
            v.err("max retries must be non-negative");
        }
        if neg(h.max_concurrent_streams) {
            v.err("max concurrent streams must be non-negative");
        }
        if let Some(t) = &h.idle_timeout {
            check_duration(v, t);
        }
        if h.h2_upgrade_policy.as_deref() == Some("UPGRADE") && h.use_client_protocol == Some(true)
        {
            v.err("use client protocol must not be true when H2UpgradePolicy is UPGRADE");
        }
    }
    if let Some(t) = &c.tcp {
        if t.max_connections.is_some_and(|x| x < 0) {
            v.err("max connections must be non-negative");
        }
        for d in [
            &t.connect_timeout,
            &t.max_connection_duration,
            &t.idle_timeout,
        ]
        .into_iter()
        .flatten()
        {
            check_duration(v, d);
        }
        if let Some(ka) = &t.tcp_keepalive {
            for k in ["time", "interval"] {
                if let Some(d) = ka.get(k).and_then(|d| d.as_str()) {
                    check_duration(v, d);
                }
            }
        }
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|i| i * i <= n)
            .all(|i| !n.is_multiple_of(i))
}

fn check_lb(v: &mut Validation, lb: &LoadBalancerSettings) {
    if let Some(ch) = &lb.consistent_hash {
        if let Some(c) = &ch.http_cookie {
            if c.name.is_empty() {
                v.err("name required for HttpCookie");
            }
            let mut names = std::collections::BTreeSet::new();
            for a in c.attributes.iter().flatten() {
                if !names.insert(a.name.clone()) {
                    v.err(format!("duplicate cookie attribute name: {}", a.name));
                }
            }
            if let Some(ttl) = &c.ttl
                && super::parse_duration_nanos(ttl).is_none()
            {
                v.err(format!("invalid duration {ttl:?}"));
            }
        }
        if let Some(m) = &ch.maglev {
            match m.table_size.unwrap_or(0) {
                0 => v.err("tableSize must be set for maglev"),
                t if t >= 5_000_011 => v.err("tableSize must be less than 5000011 for maglev"),
                t if !is_prime(t) => v.err("tableSize must be a prime number for maglev"),
                _ => {}
            }
        }
        if ch.minimum_ring_size.is_some() && (ch.maglev.is_some() || ch.ring_hash.is_some()) {
            v.err("only one of MinimumRingSize or Maglev/Ringhash can be specified");
        }
    }
    if let Some(s) = &lb.simple
        && ![
            "UNSPECIFIED",
            "LEAST_CONN",
            "RANDOM",
            "PASSTHROUGH",
            "ROUND_ROBIN",
            "LEAST_REQUEST",
        ]
        .contains(&s.as_str())
    {
        v.err(format!("unsupported load balancer {s:?}"));
    }
}

pub(crate) fn destination_rule(spec: &DestinationRuleSpec) -> Validation {
    let mut v = Validation::default();
    check_wildcard_domain(&mut v, &spec.host);
    if let Some(p) = &spec.traffic_policy {
        check_traffic_policy(&mut v, p);
    }
    let mut names = std::collections::BTreeSet::new();
    for s in &spec.subsets {
        if !names.insert(s.name.clone()) {
            v.err(format!("duplicate subset names: {}", s.name));
        }
        if s.name.is_empty() {
            v.err("subset name cannot be empty");
        } else if !is_dns1123_label(&s.name) {
            v.err(format!("subset name is invalid: {}", s.name));
        }
        if let Some(p) = &s.traffic_policy {
            check_traffic_policy(&mut v, p);
        }
    }
    v
}
