//! Compilation of VirtualService routes into match tables.

use crate::action::{
    Dest, DirectAction, ForwardAction, HeaderOps, PathRewrite, RedirectAction, RedirectPath,
    RedirectPort, RouteAction,
};
use crate::matcher::{HeaderMatcher, QueryMatcher, StrMatcher, full_match_regex};
use crate::{ConfigError, Request, gateway};
use base64::Engine;
use filter_model::derive::vs_route_id;
use filter_model::routing::{
    DerivePort, HttpMatchRequest, HttpRedirect, HttpRoute, ServiceRouting,
};
use regex::Regex;

/// Istio rejects direct response bodies above 1 MB.
const MAX_DIRECT_BODY: usize = 1024 * 1024;

/// The routes of one service, in evaluation order.
#[derive(Debug)]
pub(crate) struct ServiceTable {
    pub routes: Vec<CompiledRoute>,
}

impl ServiceTable {
    pub(crate) fn compile(
        svc: &ServiceRouting,
        waypoint_ns: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let mut routes = Vec::new();
        for vs in &svc.virtual_services {
            for (i, http) in vs.http.iter().enumerate() {
                let field = format!("virtualService {}/{} http[{i}]", vs.namespace, vs.name);
                let id = vs_route_id(&vs.namespace, &vs.name, i);
                if let Some(route) = compile_vs_route(http, id, waypoint_ns, &field)? {
                    routes.push(route);
                }
            }
        }
        routes.extend(gateway::compile_routes(&svc.http_routes)?);
        Ok(ServiceTable { routes })
    }
}

/// One route: its matches (ORed; empty = catch-all) and its action.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    pub id: String,
    pub matches: Vec<RouteMatch>,
    pub action: RouteAction,
    /// The route's `corsPolicy`.
    pub cors: Option<crate::cors::Cors>,
}

/// What a successful match tells the action.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatchInfo<'m> {
    /// Bytes of the path covered by the path match (the part a prefix
    /// rewrite replaces).
    pub matched_len: usize,
    /// The matched `PathSeparatedPrefix` (Gateway API), if any.
    pub separated_prefix: Option<&'m str>,
}

impl CompiledRoute {
    /// Istio drops matches for other ports; a route without any match left
    /// for this port does not exist there.
    pub(crate) fn applies_to_port(&self, port: u16) -> bool {
        self.matches.is_empty()
            || self
                .matches
                .iter()
                .any(|m| m.port.is_none_or(|p| p == port))
    }

    pub(crate) fn first_match(&self, req: &Request<'_>, port: u16) -> Option<MatchInfo<'_>> {
        if self.matches.is_empty() {
            return req.path.starts_with('/').then_some(MatchInfo {
                matched_len: 1,
                separated_prefix: None,
            });
        }
        self.matches.iter().find_map(|m| m.matches(req, port))
    }
}

/// The path part of a match.
#[derive(Debug)]
pub(crate) enum UriMatch {
    /// No `uri`: Envoy prefix `/`.
    Any,
    Exact {
        value: String,
        ignore_case: bool,
    },
    Prefix {
        value: String,
        ignore_case: bool,
    },
    /// Gateway API `PathPrefix` (value without trailing `/`).
    Separated(String),
    Regex(Regex),
}

impl UriMatch {
    fn matches(&self, path: &str) -> Option<usize> {
        match self {
            UriMatch::Any => path.starts_with('/').then_some(1),
            UriMatch::Exact { value, ignore_case } => {
                let ok = if *ignore_case {
                    path.eq_ignore_ascii_case(value)
                } else {
                    path == value
                };
                ok.then_some(path.len())
            }
            UriMatch::Prefix { value, ignore_case } => {
                let ok = if *ignore_case {
                    path.len() >= value.len()
                        && path.as_bytes()[..value.len()].eq_ignore_ascii_case(value.as_bytes())
                } else {
                    path.starts_with(value.as_str())
                };
                ok.then_some(value.len())
            }
            UriMatch::Separated(prefix) => {
                let ok = path.starts_with(prefix.as_str())
                    && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/');
                ok.then_some(prefix.len())
            }
            UriMatch::Regex(re) => re.is_match(path).then_some(path.len()),
        }
    }
}

/// One `HTTPMatchRequest`, compiled.
#[derive(Debug)]
pub(crate) struct RouteMatch {
    pub uri: UriMatch,
    pub scheme: Option<StrMatcher>,
    pub method: Option<StrMatcher>,
    pub authority: Option<StrMatcher>,
    pub headers: Vec<HeaderMatcher>,
    pub query: Vec<QueryMatcher>,
    pub port: Option<u16>,
    /// A condition that can never hold at a waypoint (JWT claim routing).
    pub never: bool,
}

impl RouteMatch {
    fn matches(&self, req: &Request<'_>, port: u16) -> Option<MatchInfo<'_>> {
        if self.never || self.port.is_some_and(|p| p != port) {
            return None;
        }
        let matched_len = self.uri.matches(req.path)?;
        let pseudo = [
            (&self.scheme, req.scheme),
            (&self.method, req.method),
            (&self.authority, req.authority),
        ];
        if !pseudo
            .iter()
            .all(|(m, v)| m.as_ref().is_none_or(|m| m.matches(v)))
        {
            return None;
        }
        if !self.headers.iter().all(|h| h.matches(req.headers)) {
            return None;
        }
        if !self.query.iter().all(|q| q.matches(req.query)) {
            return None;
        }
        let separated_prefix = match &self.uri {
            UriMatch::Separated(p) => Some(p.as_str()),
            _ => None,
        };
        Some(MatchInfo {
            matched_len,
            separated_prefix,
        })
    }
}

/// Compiles one VirtualService `http[]` entry; `None` when every match was
/// dropped (source labels, gateways, source namespace).
fn compile_vs_route(
    http: &HttpRoute,
    id: String,
    waypoint_ns: Option<&str>,
    field: &str,
) -> Result<Option<CompiledRoute>, ConfigError> {
    let mut matches = Vec::with_capacity(http.matches.len());
    for (j, m) in http.matches.iter().enumerate() {
        // istiod's `sourceMatchHTTP` for a waypoint: a match naming
        // `gateways` applies when they include `mesh`, whatever its source
        // fields say; otherwise `sourceLabels` (the proxy's own labels,
        // which a waypoint's never carry here) and `sourceNamespace` (the
        // waypoint's namespace) decide.
        let keep = if m.gateways.is_empty() {
            m.source_labels.is_empty()
                && m.source_namespace
                    .as_deref()
                    .is_none_or(|ns| Some(ns) == waypoint_ns)
        } else {
            m.gateways.iter().any(|g| g == "mesh")
        };
        if !keep {
            continue;
        }
        matches.push(compile_vs_match(m, &format!("{field}.match[{j}]"))?);
    }
    if !http.matches.is_empty() && matches.is_empty() {
        return Ok(None);
    }
    let action = compile_vs_action(http, field)?;
    let cors = match &http.cors_policy {
        Some(p) => Some(crate::cors::Cors::compile(
            p,
            &format!("{field}.corsPolicy"),
        )?),
        None => None,
    };
    Ok(Some(CompiledRoute {
        id,
        matches,
        action,
        cors,
    }))
}

fn compile_vs_match(m: &HttpMatchRequest, field: &str) -> Result<RouteMatch, ConfigError> {
    let uri = match &m.uri {
        None => UriMatch::Any,
        Some(u) => {
            if u.kinds_set() > 1 {
                return Err(ConfigError::Invalid(format!(
                    "{field}.uri: more than one match type set"
                )));
            }
            if let Some(v) = &u.exact {
                UriMatch::Exact {
                    value: v.clone(),
                    ignore_case: m.ignore_uri_case,
                }
            } else if let Some(v) = &u.prefix {
                UriMatch::Prefix {
                    value: v.clone(),
                    ignore_case: m.ignore_uri_case,
                }
            } else if let Some(r) = &u.regex {
                UriMatch::Regex(full_match_regex(r, &format!("{field}.uri"))?)
            } else {
                UriMatch::Any
            }
        }
    };
    let opt = |s: &Option<filter_model::StringMatch>, name: &str| {
        s.as_ref()
            .map(|s| StrMatcher::compile(s, &format!("{field}.{name}")))
            .transpose()
    };
    let mut never = false;
    let mut headers = Vec::new();
    for (inverted, map) in [(false, &m.headers), (true, &m.without_headers)] {
        for (name, sm) in map {
            let name = name.to_ascii_lowercase();
            if matches!(name.as_str(), "uri" | "scheme" | "method" | "authority") {
                continue;
            }
            if name.starts_with("@request.auth.claims") {
                // Claim-based routing is gateway-only (validation rejects it
                // for mesh VirtualServices); at a waypoint it never matches.
                never |= !inverted;
                continue;
            }
            let value = StrMatcher::compile(sm, &format!("{field}.headers[{name}]"))?;
            headers.push(HeaderMatcher {
                name,
                value,
                invert: inverted,
            });
        }
    }
    let mut query = Vec::new();
    for (name, sm) in &m.query_params {
        let value = StrMatcher::compile(sm, &format!("{field}.queryParams[{name}]"))?;
        query.push(QueryMatcher {
            name: name.clone(),
            value,
        });
    }
    Ok(RouteMatch {
        uri,
        scheme: opt(&m.scheme, "scheme")?,
        method: opt(&m.method, "method")?,
        authority: opt(&m.authority, "authority")?,
        headers,
        query,
        port: m.port,
        never,
    })
}

fn compile_vs_action(http: &HttpRoute, field: &str) -> Result<RouteAction, ConfigError> {
    let invalid = |msg: &str| Err(ConfigError::Invalid(format!("{field}: {msg}")));
    let has_route = !http.route.is_empty();
    match (
        has_route,
        http.redirect.is_some(),
        http.direct_response.is_some(),
    ) {
        (true, true, _) => return invalid("HTTP route cannot contain both route and redirect"),
        (true, _, true) => {
            return invalid("HTTP route cannot contain both route and direct_response");
        }
        (_, true, true) => {
            return invalid("HTTP route rule cannot contain both direct_response and redirect");
        }
        (false, false, false) => {
            return invalid("HTTP route, redirect or direct_response is required");
        }
        _ => {}
    }
    if http.rewrite.is_some() && http.redirect.is_some() {
        return invalid("HTTP route rule cannot contain both rewrite and redirect");
    }
    if http.rewrite.is_some() && http.direct_response.is_some() {
        return invalid("HTTP route rule cannot contain both rewrite and direct_response");
    }
    let (route_req, route_resp, header_authority) = HeaderOps::from_istio(http.headers.as_ref());
    if let Some(r) = &http.redirect {
        return Ok(RouteAction::Redirect(compile_redirect(
            r, route_resp, field,
        )?));
    }
    if let Some(d) = &http.direct_response {
        if d.status < 200 || d.status > 600 {
            return invalid(&format!(
                "directResponse status {} is not in range 200-599",
                d.status
            ));
        }
        let body = match &d.body {
            None => Vec::new(),
            Some(b) => match (&b.string, &b.bytes) {
                (Some(s), _) => s.clone().into_bytes(),
                (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| {
                        ConfigError::Invalid(format!(
                            "{field}: directResponse.body.bytes is not base64: {e}"
                        ))
                    })?,
                (None, None) => Vec::new(),
            },
        };
        if body.len() > MAX_DIRECT_BODY {
            return invalid("direct response body exceeds the 1 MB limit");
        }
        return Ok(RouteAction::Direct(DirectAction {
            status: d.status,
            body,
            resp_ops: route_resp,
        }));
    }

    let mut rewrite = PathRewrite::None;
    let mut authority = header_authority;
    if let Some(rw) = &http.rewrite {
        match (&rw.uri, &rw.uri_regex_rewrite) {
            (Some(_), Some(_)) => {
                return invalid("rewrite may only contain one of URI or UriRegexRewrite");
            }
            (Some(uri), None) if !uri.is_empty() => rewrite = PathRewrite::Prefix(uri.clone()),
            (_, Some(rr)) => {
                if rr.pattern.is_empty() || rr.rewrite.is_empty() {
                    return invalid(
                        "UriRegexRewrite requires both Rewrite and Match fields to be specified",
                    );
                }
                rewrite =
                    PathRewrite::regex(&rr.pattern, &rr.rewrite, &format!("{field}.rewrite"))?;
            }
            _ => {}
        }
        if let Some(a) = rw.authority.as_ref().filter(|a| !a.is_empty()) {
            authority = Some(a.clone());
        }
    }

    let multi = http.route.len() > 1;
    let mut dests = Vec::with_capacity(http.route.len());
    for (k, d) in http.route.iter().enumerate() {
        if d.weight < 0 {
            return invalid(&format!("route[{k}]: weight {} < 0", d.weight));
        }
        if multi && d.weight == 0 {
            continue; // Envoy never selects it; Istio drops it.
        }
        if d.destination.host.is_empty() {
            return invalid(&format!("route[{k}]: destination is required"));
        }
        let (req_ops, resp_ops, dest_authority) = HeaderOps::from_istio(d.headers.as_ref());
        dests.push(Dest {
            service: Some(d.destination.host.clone()),
            subset: d.destination.subset.clone().filter(|s| !s.is_empty()),
            port: d.destination.port.map(|p| p.number),
            weight: u64::try_from(d.weight).unwrap_or(0),
            req_ops,
            resp_ops,
            authority: dest_authority,
        });
    }
    if dests.is_empty() {
        return invalid("total destination weight = 0");
    }
    let mut forward = ForwardAction::new(dests, rewrite, authority, route_req, route_resp);
    for (k, m) in http.mirrors.iter().enumerate() {
        if m.destination.host.is_empty() {
            return invalid(&format!("mirrors[{k}]: destination is required"));
        }
        // Istio: unset percentage mirrors everything, an explicit 0 nothing.
        let share = match &m.percentage {
            None => 1_000_000,
            Some(p) if !(0.0..=100.0).contains(&p.value) => {
                return invalid(&format!(
                    "mirror_percentage must have a max value of 100 (it has {})",
                    p.value
                ));
            }
            Some(p) => (p.value * 10_000.0).round() as u32,
        };
        if share > 0 {
            forward.mirrors.push((
                crate::MirrorTarget {
                    service: m.destination.host.clone(),
                    subset: m.destination.subset.clone().filter(|s| !s.is_empty()),
                    port: m.destination.port.map(|p| p.number),
                },
                share,
            ));
        }
    }
    Ok(RouteAction::Forward(forward))
}

fn compile_redirect(
    r: &HttpRedirect,
    resp_ops: HeaderOps,
    field: &str,
) -> Result<RedirectAction, ConfigError> {
    let invalid = |msg: String| Err(ConfigError::Invalid(format!("{field}: {msg}")));
    let code = r.redirect_code.unwrap_or(301);
    if !matches!(code, 301 | 302 | 303 | 307 | 308) {
        return invalid(format!("{code} is not a valid redirect code, must be 3xx"));
    }
    if let Some(s) = r.scheme.as_deref().filter(|s| !s.is_empty())
        && s != "http"
        && s != "https"
    {
        return invalid("invalid redirect scheme, must be \"http\" or \"https\"".into());
    }
    let uri = r.uri.clone().filter(|u| !u.is_empty());
    let prefix = r.prefix_rewrite.clone().filter(|u| !u.is_empty());
    if uri.is_some() && prefix.is_some() {
        return invalid("redirect may only specify one of uri or prefix_rewrite".into());
    }
    let port = match (r.port, r.derive_port) {
        (Some(p), _) => RedirectPort::Explicit(p),
        (None, Some(DerivePort::FromRequestPort)) => RedirectPort::FromRequest,
        (None, Some(DerivePort::FromProtocolDefault)) => RedirectPort::Explicit(0),
        (None, None) => RedirectPort::Keep,
    };
    let host = r.authority.clone().filter(|a| !a.is_empty());
    let scheme = r.scheme.clone().filter(|s| !s.is_empty());
    if uri.is_none()
        && prefix.is_none()
        && host.is_none()
        && scheme.is_none()
        && matches!(port, RedirectPort::Keep)
    {
        return invalid("redirect must specify URI, authority, scheme, or port".into());
    }
    let path = match (uri, prefix) {
        (Some(u), _) => RedirectPath::Full(u),
        (None, Some(p)) => RedirectPath::Prefix(p),
        (None, None) => RedirectPath::Keep,
    };
    Ok(RedirectAction {
        code,
        scheme,
        host,
        port,
        path,
        resp_ops,
    })
}
