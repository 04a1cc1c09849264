//! Gateway API HTTPRoutes → compiled routes, as Istio converts them: one
//! route per match, every HTTPRoute of the service merged (oldest first) and
//! stably sorted by Gateway API precedence.

use crate::ConfigError;
use crate::action::{
    Dest, DirectAction, ForwardAction, HeaderOps, PathRewrite, RedirectAction, RedirectPath,
    RedirectPort, RouteAction, full_path_rewrite,
};
use crate::compile::{CompiledRoute, RouteMatch, UriMatch};
use crate::matcher::{HeaderMatcher, QueryMatcher, StrMatcher};
use filter_model::StringMatch;
use filter_model::derive::httproute_rule_id;
use filter_model::gateway::{
    GatewayHttpRoute, HttpRouteFilter, HttpRouteMatch, HttpRouteRule, PathMatchType,
    PathModifierType, ValueMatchType,
};
use std::cmp::Ordering;

/// Istio's precedence key of a converted route (`sortHTTPRoutes`).
#[derive(Debug)]
struct SortKey {
    has_match: bool,
    uri_rank: i8,
    uri_len: usize,
    has_method: bool,
    headers: usize,
    query: usize,
}

impl SortKey {
    fn less(&self, o: &SortKey) -> bool {
        if !self.has_match {
            return false;
        }
        if !o.has_match {
            return true;
        }
        if self.uri_rank != o.uri_rank {
            return self.uri_rank > o.uri_rank;
        }
        if self.uri_len != o.uri_len {
            return self.uri_len > o.uri_len;
        }
        if self.has_method != o.has_method {
            return self.has_method;
        }
        if self.headers != o.headers {
            return self.headers > o.headers;
        }
        self.query > o.query
    }

    fn cmp(&self, o: &SortKey) -> Ordering {
        if self.less(o) {
            Ordering::Less
        } else if o.less(self) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }
}

/// A rule filter type the conversion does not support.
struct Unsupported;

/// Compiles every HTTPRoute of a service.
pub(crate) fn compile_routes(
    routes: &[GatewayHttpRoute],
) -> Result<Vec<CompiledRoute>, ConfigError> {
    let mut ordered: Vec<&GatewayHttpRoute> = routes.iter().collect();
    ordered.sort_by(|a, b| {
        let ta = a.creation_timestamp.as_deref().unwrap_or("");
        let tb = b.creation_timestamp.as_deref().unwrap_or("");
        ta.cmp(tb)
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut out: Vec<(SortKey, CompiledRoute)> = Vec::new();
    for hr in ordered {
        let mut converted = Vec::new();
        let mut supported = true;
        for (i, rule) in hr.rules.iter().enumerate() {
            let field = format!("httpRoute {}/{} rules[{i}]", hr.namespace, hr.name);
            match compile_rule(hr, i, rule, &field)? {
                Ok(routes) => converted.extend(routes),
                Err(Unsupported) => {
                    supported = false;
                    break;
                }
            }
        }
        // Istio: an unsupported filter is a hard error for the whole route.
        if supported {
            out.extend(converted);
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

fn compile_rule(
    hr: &GatewayHttpRoute,
    index: usize,
    rule: &HttpRouteRule,
    field: &str,
) -> Result<Result<Vec<(SortKey, CompiledRoute)>, Unsupported>, ConfigError> {
    let default_match = [HttpRouteMatch::default()];
    let matches: &[HttpRouteMatch] = match &rule.matches {
        None => &default_match,
        Some(m) => m,
    };
    let id = httproute_rule_id(&hr.namespace, &hr.name, index);
    let mut out = Vec::new();
    if matches.is_empty() {
        // A rule without matches: catch-all (or port-restricted catch-all).
        let action = match compile_rule_action(rule, field)? {
            Ok(a) => a,
            Err(u) => return Ok(Err(u)),
        };
        let mut route_matches = Vec::new();
        let mut key = SortKey {
            has_match: false,
            uri_rank: -1,
            uri_len: 0,
            has_method: false,
            headers: 0,
            query: 0,
        };
        if let Some(port) = hr.port {
            key.has_match = true;
            route_matches.push(RouteMatch {
                uri: UriMatch::Any,
                scheme: None,
                method: None,
                authority: None,
                headers: Vec::new(),
                query: Vec::new(),
                port: Some(port),
                never: false,
            });
        }
        out.push((
            key,
            CompiledRoute {
                id,
                matches: route_matches,
                action,
                cors: rule_cors(rule, field)?,
            },
        ));
        return Ok(Ok(out));
    }
    for (j, m) in matches.iter().enumerate() {
        let mfield = format!("{field}.matches[{j}]");
        let (route_match, key) = compile_match(m, hr.port, &mfield)?;
        let action = match compile_rule_action(rule, field)? {
            Ok(a) => a,
            Err(u) => return Ok(Err(u)),
        };
        out.push((
            key,
            CompiledRoute {
                id: id.clone(),
                matches: vec![route_match],
                action,
                cors: rule_cors(rule, field)?,
            },
        ));
    }
    Ok(Ok(out))
}

fn compile_match(
    m: &HttpRouteMatch,
    port: Option<u16>,
    field: &str,
) -> Result<(RouteMatch, SortKey), ConfigError> {
    let kind = m
        .path
        .as_ref()
        .and_then(|p| p.kind)
        .unwrap_or(PathMatchType::PathPrefix);
    let mut value = m
        .path
        .as_ref()
        .and_then(|p| p.value.clone())
        .unwrap_or_else(|| "/".into());
    let (uri, rank) = match kind {
        PathMatchType::PathPrefix => {
            if value != "/" {
                value = value.strip_suffix('/').unwrap_or(&value).to_owned();
            }
            if value == "/" {
                (
                    UriMatch::Prefix {
                        value: value.clone(),
                        ignore_case: false,
                    },
                    2,
                )
            } else {
                (UriMatch::Separated(value.clone()), 2)
            }
        }
        PathMatchType::Exact => (
            UriMatch::Exact {
                value: value.clone(),
                ignore_case: false,
            },
            3,
        ),
        PathMatchType::RegularExpression => (
            UriMatch::Regex(crate::matcher::full_match_regex(
                &value,
                &format!("{field}.path"),
            )?),
            1,
        ),
    };
    let mut headers: Vec<HeaderMatcher> = Vec::new();
    for h in &m.headers {
        let name = h.name.to_ascii_lowercase();
        if headers.iter().any(|x| x.name == name) {
            continue; // the first of equivalent names wins
        }
        let sm = match h.kind.unwrap_or(ValueMatchType::Exact) {
            ValueMatchType::Exact => StringMatch::exact(h.value.clone()),
            ValueMatchType::RegularExpression => StringMatch::regex(h.value.clone()),
        };
        let value = StrMatcher::compile(&sm, &format!("{field}.headers[{name}]"))?;
        headers.push(HeaderMatcher {
            name,
            value,
            invert: false,
        });
    }
    let mut query: Vec<QueryMatcher> = Vec::new();
    for q in &m.query_params {
        if query.iter().any(|x| x.name == q.name) {
            continue;
        }
        let sm = match q.kind.unwrap_or(ValueMatchType::Exact) {
            ValueMatchType::Exact => StringMatch::exact(q.value.clone()),
            ValueMatchType::RegularExpression => StringMatch::regex(q.value.clone()),
        };
        let value = StrMatcher::compile(&sm, &format!("{field}.queryParams[{}]", q.name))?;
        query.push(QueryMatcher {
            name: q.name.clone(),
            value,
        });
    }
    let method = m.method.as_ref().map(|v| StrMatcher::Exact(v.clone()));
    let key = SortKey {
        has_match: true,
        uri_rank: rank,
        uri_len: value.len(),
        has_method: method.is_some(),
        headers: headers.len(),
        query: query.len(),
    };
    let route_match = RouteMatch {
        uri,
        scheme: None,
        method,
        authority: None,
        headers,
        query,
        port,
        never: false,
    };
    Ok((route_match, key))
}

fn header_filter(
    f: &HttpRouteFilter,
) -> Result<Option<(bool, HeaderOps, Option<String>)>, Unsupported> {
    match f.kind.as_str() {
        "RequestHeaderModifier" => Ok(f.request_header_modifier.as_ref().map(|h| {
            let (ops, auth) = HeaderOps::from_gateway(h);
            (true, ops, auth)
        })),
        "ResponseHeaderModifier" => Ok(f.response_header_modifier.as_ref().map(|h| {
            let (ops, _) = HeaderOps::from_gateway(h);
            (false, ops, None)
        })),
        _ => Err(Unsupported),
    }
}

/// The rule's `CORS` filter, compiled as a VirtualService `corsPolicy`.
fn rule_cors(rule: &HttpRouteRule, field: &str) -> Result<Option<crate::cors::Cors>, ConfigError> {
    rule.filters
        .iter()
        .find_map(|f| f.cors_policy.as_ref())
        .map(|p| crate::cors::Cors::compile(p, &format!("{field}.filters.cors")))
        .transpose()
}

fn compile_rule_action(
    rule: &HttpRouteRule,
    field: &str,
) -> Result<Result<RouteAction, Unsupported>, ConfigError> {
    let mut req_ops = HeaderOps::default();
    let mut resp_ops = HeaderOps::default();
    let mut authority = None;
    let mut redirect = None;
    let mut rewrite = PathRewrite::None;
    let mut mirrors = Vec::new();
    for f in &rule.filters {
        match f.kind.as_str() {
            "RequestHeaderModifier" | "ResponseHeaderModifier" => match header_filter(f) {
                Ok(Some((true, ops, auth))) => {
                    req_ops = ops;
                    authority = auth;
                }
                Ok(Some((false, ops, _))) => resp_ops = ops,
                Ok(None) => {}
                Err(u) => return Ok(Err(u)),
            },
            "RequestRedirect" => {
                if let Some(r) = &f.request_redirect {
                    redirect = Some(r.clone());
                }
            }
            "URLRewrite" => {
                if let Some(rw) = &f.url_rewrite {
                    if let Some(p) = &rw.path {
                        rewrite = match p.kind {
                            PathModifierType::ReplacePrefixMatch => {
                                let v = p.replace_prefix_match.clone().unwrap_or_default();
                                let v = v.strip_suffix('/').unwrap_or(&v).to_owned();
                                if v.is_empty() || v == "/" {
                                    PathRewrite::StripPrefix
                                } else {
                                    PathRewrite::Prefix(v)
                                }
                            }
                            PathModifierType::ReplaceFullPath => {
                                let v = p.replace_full_path.clone().unwrap_or_default();
                                full_path_rewrite(&v, &format!("{field}.filters.urlRewrite"))?
                            }
                        };
                    }
                    if let Some(h) = rw.hostname.as_ref().filter(|h| !h.is_empty()) {
                        authority = Some(h.clone());
                    }
                }
            }
            "RequestMirror" => {
                if let Some(m) = &f.request_mirror
                    && let Some(host) = m.host.as_ref().filter(|h| !h.is_empty())
                {
                    let share = m.per_million.unwrap_or(1_000_000).min(1_000_000);
                    if share > 0 {
                        mirrors.push((
                            crate::MirrorTarget {
                                service: host.clone(),
                                subset: None,
                                port: m.port,
                            },
                            share,
                        ));
                    }
                }
            }
            "CORS" => {}
            _ => return Ok(Err(Unsupported)),
        }
    }
    if let Some(r) = redirect {
        let port = match (r.port, r.scheme.is_some()) {
            (Some(p), _) => RedirectPort::Explicit(p),
            (None, true) => RedirectPort::Explicit(0),
            (None, false) => RedirectPort::FromRequest,
        };
        let path = match &r.path {
            None => RedirectPath::Keep,
            Some(p) => match p.kind {
                PathModifierType::ReplaceFullPath => {
                    RedirectPath::Full(p.replace_full_path.clone().unwrap_or_default())
                }
                PathModifierType::ReplacePrefixMatch => {
                    RedirectPath::Prefix(p.replace_prefix_match.clone().unwrap_or_default())
                }
            },
        };
        return Ok(Ok(RouteAction::Redirect(RedirectAction {
            code: r.status_code.unwrap_or(302),
            scheme: r.scheme.clone(),
            host: r.hostname.clone(),
            port,
            path,
            resp_ops,
        })));
    }
    let weight_sum: u64 = rule
        .backend_refs
        .iter()
        .map(|b| u64::from(b.weight.unwrap_or(1)))
        .sum();
    if weight_sum == 0 {
        return Ok(Ok(RouteAction::Direct(DirectAction {
            status: 500,
            body: Vec::new(),
            resp_ops,
        })));
    }
    let mut dests = Vec::new();
    for b in &rule.backend_refs {
        let weight = u64::from(b.weight.unwrap_or(1));
        if weight == 0 {
            continue;
        }
        let mut d = Dest {
            service: b.host.clone().filter(|h| !h.is_empty()),
            subset: None,
            port: b.port,
            weight,
            req_ops: HeaderOps::default(),
            resp_ops: HeaderOps::default(),
            authority: None,
        };
        for f in &b.filters {
            match header_filter(f) {
                Ok(Some((true, ops, auth))) => {
                    d.req_ops = ops;
                    d.authority = auth;
                }
                Ok(Some((false, ops, _))) => d.resp_ops = ops,
                Ok(None) => {}
                Err(u) => return Ok(Err(u)),
            }
        }
        dests.push(d);
    }
    let mut forward = ForwardAction::new(dests, rewrite, authority, req_ops, resp_ops);
    forward.mirrors = mirrors;
    Ok(Ok(RouteAction::Forward(forward)))
}
