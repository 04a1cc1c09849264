//! Route actions: weighted destinations, rewrites, header operations,
//! redirects and direct responses, evaluated as Envoy does.

use crate::compile::{CompiledRoute, MatchInfo};
use crate::{ConfigError, Decision, Forward, HeaderOp, LocalReply, Request, Target};
use filter_model::routing::{HeaderOperations, Headers};
use regex::Regex;
use std::collections::BTreeMap;

#[derive(Debug)]
pub(crate) enum RouteAction {
    Forward(ForwardAction),
    Redirect(RedirectAction),
    Direct(DirectAction),
}

/// One Envoy header parser level: removals, then set/add in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeaderOps {
    pub remove: Vec<String>,
    /// (name, value, append)
    pub set_add: Vec<(String, String, bool)>,
}

fn is_internal(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

impl HeaderOps {
    /// Istio `TranslateHeadersOperations`: `set` then `add`, each sorted by
    /// name; pseudo-headers and `host` dropped; `:authority`/`host` in the
    /// request's `set` (preferred) or `add` becomes an authority rewrite.
    pub(crate) fn from_istio(h: Option<&Headers>) -> (HeaderOps, HeaderOps, Option<String>) {
        let Some(h) = h else {
            return (HeaderOps::default(), HeaderOps::default(), None);
        };
        let (req, set_auth, add_auth) = Self::from_operations(h.request.as_ref());
        let (resp, _, _) = Self::from_operations(h.response.as_ref());
        (req, resp, set_auth.or(add_auth))
    }

    fn from_operations(
        ops: Option<&HeaderOperations>,
    ) -> (HeaderOps, Option<String>, Option<String>) {
        let Some(ops) = ops else {
            return (HeaderOps::default(), None, None);
        };
        let mut out = HeaderOps::default();
        let mut auth = [None, None];
        for (slot, (map, append)) in [(&ops.set, false), (&ops.add, true)]
            .into_iter()
            .enumerate()
        {
            for (name, value) in map {
                if is_authority(name) {
                    auth[slot] = Some(value.clone());
                }
                if !is_internal(name) {
                    out.set_add
                        .push((name.to_ascii_lowercase(), value.clone(), append));
                }
            }
        }
        out.remove = ops
            .remove
            .iter()
            .filter(|n| !is_internal(n))
            .map(|n| n.to_ascii_lowercase())
            .collect();
        let [set_auth, add_auth] = auth;
        (out, set_auth, add_auth)
    }

    /// Gateway API header filter (names deduplicated, last wins, then sorted
    /// as Istio's map-based conversion does).
    pub(crate) fn from_gateway(
        f: &filter_model::gateway::HttpHeaderFilter,
    ) -> (HeaderOps, Option<String>) {
        let set: BTreeMap<String, String> = f
            .set
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let add: BTreeMap<String, String> = f
            .add
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let ops = HeaderOperations {
            set,
            add,
            remove: f.remove.clone(),
        };
        let (out, set_auth, add_auth) = Self::from_operations(Some(&ops));
        (out, set_auth.or(add_auth))
    }

    /// Appends `other` to this level (single destination: route then
    /// destination operations in one parser).
    pub(crate) fn merge(&mut self, other: HeaderOps) {
        self.remove.extend(other.remove);
        self.set_add.extend(other.set_add);
    }

    fn emit(&self, out: &mut Vec<HeaderOp>) {
        out.extend(self.remove.iter().map(|n| HeaderOp::Remove(n.clone())));
        out.extend(self.set_add.iter().map(|(n, v, append)| {
            if *append {
                HeaderOp::Add(n.clone(), v.clone())
            } else {
                HeaderOp::Set(n.clone(), v.clone())
            }
        }));
    }

    /// Applies to a local response's header list.
    fn apply(&self, headers: &mut Vec<(String, String)>) {
        for name in &self.remove {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        }
        for (name, value, append) in &self.set_add {
            if !append {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            }
            headers.push((name.clone(), value.clone()));
        }
    }
}

#[derive(Debug)]
pub(crate) struct Dest {
    /// `None`: invalid Gateway API backend (its share answers 500).
    pub service: Option<String>,
    pub subset: Option<String>,
    pub port: Option<u16>,
    pub weight: u64,
    pub req_ops: HeaderOps,
    pub resp_ops: HeaderOps,
    pub authority: Option<String>,
}

#[derive(Debug)]
pub(crate) enum PathRewrite {
    None,
    /// Envoy `prefix_rewrite`: replaces the matched part of the path.
    Prefix(String),
    /// Envoy `regex_rewrite`: every match replaced.
    Regex {
        re: Regex,
        replacement: String,
    },
    /// Gateway API `ReplacePrefixMatch: /`: drop the matched `PathPrefix`.
    StripPrefix,
}

impl PathRewrite {
    /// Compiles a `uriRegexRewrite` (RE2 `\N` substitutions).
    pub(crate) fn regex(pattern: &str, rewrite: &str, field: &str) -> Result<Self, ConfigError> {
        let re = Regex::new(pattern).map_err(|e| ConfigError::Regex {
            field: field.to_owned(),
            pattern: pattern.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(PathRewrite::Regex {
            re,
            replacement: re2_substitution(rewrite),
        })
    }
}

/// RE2 rewrite string (`\1`, `\\`) → regex crate replacement (`${1}`, `$$`).
fn re2_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    chars.next();
                    out.push_str(&format!("${{{d}}}"));
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            _ => out.push(c),
        }
    }
    out
}

#[derive(Debug)]
pub(crate) struct ForwardAction {
    pub dests: Vec<Dest>,
    /// Mirrors with their share in millionths.
    pub mirrors: Vec<(MirrorTarget, u32)>,
    pub total_weight: u64,
    pub rewrite: PathRewrite,
    /// Route-level authority (rewrite, then `:authority` header operations).
    pub authority: Option<String>,
    pub req_ops: HeaderOps,
    pub resp_ops: HeaderOps,
}

impl ForwardAction {
    pub(crate) fn new(
        mut dests: Vec<Dest>,
        rewrite: PathRewrite,
        authority: Option<String>,
        mut req_ops: HeaderOps,
        mut resp_ops: HeaderOps,
    ) -> Self {
        if dests.len() == 1 {
            // Istio puts a single destination's operations after the route's
            // in the same Envoy parser.
            let d = &mut dests[0];
            req_ops.merge(std::mem::take(&mut d.req_ops));
            resp_ops.merge(std::mem::take(&mut d.resp_ops));
        }
        let total_weight = dests.iter().map(|d| d.weight).sum();
        ForwardAction {
            dests,
            mirrors: Vec::new(),
            total_weight,
            rewrite,
            authority,
            req_ops,
            resp_ops,
        }
    }

    fn pick(&self, random: &mut dyn FnMut() -> u64) -> &Dest {
        if self.dests.len() == 1 || self.total_weight == 0 {
            return &self.dests[0];
        }
        let draw = random() % self.total_weight;
        let mut end = 0;
        for d in &self.dests {
            end += d.weight;
            if draw < end {
                return d;
            }
        }
        &self.dests[self.dests.len() - 1]
    }
}

#[derive(Debug)]
pub(crate) enum RedirectPort {
    /// No port setting: Envoy keeps the request's host as is.
    Keep,
    /// Explicit port (0 = scheme default).
    Explicit(u16),
    /// The port the request addressed.
    FromRequest,
}

#[derive(Debug)]
pub(crate) enum RedirectPath {
    Keep,
    Full(String),
    Prefix(String),
}

#[derive(Debug)]
pub(crate) struct RedirectAction {
    pub code: u16,
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: RedirectPort,
    pub path: RedirectPath,
    pub resp_ops: HeaderOps,
}

#[derive(Debug)]
pub(crate) struct DirectAction {
    pub status: u16,
    pub body: Vec<u8>,
    pub resp_ops: HeaderOps,
}

/// A mirror destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorTarget {
    /// Service FQDN.
    pub service: String,
    /// DestinationRule subset.
    pub subset: Option<String>,
    /// Service port; `None` keeps the addressed port.
    pub port: Option<u16>,
}

impl MirrorTarget {
    /// The `mesh.mirror` metadata entry: `<service>|<subset>|<port>`.
    pub fn encode(&self) -> String {
        format!(
            "{}|{}|{}",
            self.service,
            self.subset.as_deref().unwrap_or(""),
            self.port.map(|p| p.to_string()).unwrap_or_default()
        )
    }
}

/// Evaluates the action of the route that matched.
pub(crate) fn eval_action<'r>(
    route: &'r CompiledRoute,
    m: MatchInfo<'_>,
    req: &Request<'_>,
    target: &Target<'_>,
    random: &mut dyn FnMut() -> u64,
) -> Decision<'r> {
    match &route.action {
        RouteAction::Forward(f) => forward(route, f, m, req, random),
        RouteAction::Redirect(r) => {
            let mut headers = vec![("location".to_owned(), redirect_location(r, m, req, target))];
            r.resp_ops.apply(&mut headers);
            Decision::Respond(LocalReply {
                route_id: Some(route.id.clone()),
                status: r.code,
                headers,
                body: Vec::new(),
                response_flag: None,
            })
        }
        RouteAction::Direct(d) => {
            let mut headers = Vec::new();
            if !d.body.is_empty() {
                headers.push(("content-type".to_owned(), "text/plain".to_owned()));
            }
            d.resp_ops.apply(&mut headers);
            Decision::Respond(LocalReply {
                route_id: Some(route.id.clone()),
                status: d.status,
                headers,
                body: d.body.clone(),
                response_flag: None,
            })
        }
    }
}

fn forward<'r>(
    route: &'r CompiledRoute,
    f: &'r ForwardAction,
    m: MatchInfo<'_>,
    req: &Request<'_>,
    random: &mut dyn FnMut() -> u64,
) -> Decision<'r> {
    let dest = f.pick(random);
    let Some(service) = dest.service.as_deref() else {
        // Gateway API: an invalid backend's share is answered 500 (Envoy
        // cluster_not_found_response_code, flag NC).
        return Decision::Respond(LocalReply {
            route_id: Some(route.id.clone()),
            status: 500,
            headers: Vec::new(),
            body: Vec::new(),
            response_flag: Some("NC"),
        });
    };
    let path = match &f.rewrite {
        PathRewrite::None => None,
        PathRewrite::Prefix(p) => Some(format!(
            "{p}{}",
            req.path.get(m.matched_len..).unwrap_or("")
        )),
        PathRewrite::Regex { re, replacement } => {
            Some(re.replace_all(req.path, replacement.as_str()).into_owned())
        }
        PathRewrite::StripPrefix => {
            let prefix = m.separated_prefix.unwrap_or("");
            let rest = req.path.get(prefix.len()..).unwrap_or("");
            Some(format!("/{}", rest.strip_prefix('/').unwrap_or(rest)))
        }
    };
    let mut request_headers = Vec::new();
    dest.req_ops.emit(&mut request_headers);
    f.req_ops.emit(&mut request_headers);
    let mut response_headers = Vec::new();
    dest.resp_ops.emit(&mut response_headers);
    f.resp_ops.emit(&mut response_headers);
    let mirrors = f
        .mirrors
        .iter()
        .filter(|(_, share)| *share >= 1_000_000 || random() % 1_000_000 < u64::from(*share))
        .map(|(m, _)| m)
        .collect();
    Decision::Forward(Forward {
        route_id: &route.id,
        mirrors,
        service,
        subset: dest.subset.as_deref(),
        port: dest.port,
        path,
        authority: f.authority.clone().or_else(|| dest.authority.clone()),
        request_headers,
        response_headers,
    })
}

/// Envoy's redirect `location`: scheme, host (request port dropped when the
/// port or the default-port scheme changes), port, path and original query.
fn redirect_location(
    r: &RedirectAction,
    m: MatchInfo<'_>,
    req: &Request<'_>,
    target: &Target<'_>,
) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(req.scheme);
    let port = match r.port {
        RedirectPort::Keep => 0,
        RedirectPort::Explicit(p) => p,
        RedirectPort::FromRequest => target.destination_port,
    };
    // Istio omits the scheme's default port (its scheme defaults to http).
    let default_scheme = r.scheme.as_deref().unwrap_or("http");
    let port =
        if (port == 80 && default_scheme == "http") || (port == 443 && default_scheme == "https") {
            0
        } else {
            port
        };
    let port_str = if port == 0 {
        String::new()
    } else {
        format!(":{port}")
    };
    let host = match &r.host {
        Some(h) => h.clone(),
        None => request_host(req.authority, scheme, !port_str.is_empty(), req.scheme),
    };
    let query = req.query.map(|q| format!("?{q}")).unwrap_or_default();
    let path = match &r.path {
        RedirectPath::Keep => format!("{}{query}", req.path),
        RedirectPath::Full(u) if u.contains('?') => u.clone(),
        RedirectPath::Full(u) => format!("{u}{query}"),
        RedirectPath::Prefix(p) => {
            format!("{p}{}{query}", req.path.get(m.matched_len..).unwrap_or(""))
        }
    };
    format!("{scheme}://{host}{port_str}{path}")
}

/// Envoy `processRequestHost`.
fn request_host(authority: &str, new_scheme: &str, new_port: bool, request_proto: &str) -> String {
    let end = if authority.starts_with('[') {
        authority.rfind("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    if let Some(end) = end {
        let request_port = &authority[end..];
        let mut remove = new_port;
        if new_scheme != request_proto {
            remove |= request_proto == "https" && request_port == ":443";
            remove |= request_proto == "http" && request_port == ":80";
        }
        if remove {
            return authority[..end].to_owned();
        }
    }
    authority.to_owned()
}

/// Used by the Gateway API compiler for `ReplaceFullPath` (`/.*` → value).
pub(crate) fn full_path_rewrite(value: &str, field: &str) -> Result<PathRewrite, ConfigError> {
    PathRewrite::regex("/.*", value, field)
}

#[cfg(test)]
mod tests {
    use super::re2_substitution;

    #[test]
    fn substitution_syntax() {
        assert_eq!(re2_substitution(r"/v2/\1"), "/v2/${1}");
        assert_eq!(re2_substitution(r"a$b\\c"), r"a$$b\c");
    }
}
