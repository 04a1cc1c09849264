//! Evaluation of compiled policies against one request (Envoy RBAC
//! semantics: a missing attribute never matches, so its `not` form does).

use crate::Input;
use crate::compile::{
    Attr, Check, CompiledPolicy, CompiledRule, HeaderPattern, PathMatch, RequestPrincipal,
    TrustDomainMatch,
};
use crate::pattern::Pattern;
use filter_model::authz::Action;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

/// Per-request values computed at most once.
pub(crate) struct EvalCtx<'i> {
    pub input: &'i Input<'i>,
    /// Normalized path.
    pub path: &'i str,
    pub num_trusted_proxies: u32,
    /// A TCP connection rather than an HTTP request (see [`Attr::is_http`]).
    pub tcp: bool,
    peer_uri: OnceCell<Option<String>>,
    source_ip: OnceCell<Option<IpAddr>>,
    remote_ip: OnceCell<Option<IpAddr>>,
    destination_ip: OnceCell<Option<IpAddr>>,
    claims: OnceCell<Option<Value>>,
}

impl<'i> EvalCtx<'i> {
    pub(crate) fn new(input: &'i Input<'i>, path: &'i str, num_trusted_proxies: u32) -> Self {
        EvalCtx {
            input,
            path,
            num_trusted_proxies,
            tcp: false,
            peer_uri: OnceCell::new(),
            source_ip: OnceCell::new(),
            remote_ip: OnceCell::new(),
            destination_ip: OnceCell::new(),
            claims: OnceCell::new(),
        }
    }

    fn peer_uri(&self) -> Option<&str> {
        self.peer_uri
            .get_or_init(|| {
                self.input
                    .source_principal
                    .filter(|p| !p.is_empty())
                    .map(|p| format!("spiffe://{p}"))
            })
            .as_deref()
    }

    fn source_ip(&self) -> Option<IpAddr> {
        *self
            .source_ip
            .get_or_init(|| parse_ip(self.input.source_address))
    }

    fn destination_ip(&self) -> Option<IpAddr> {
        *self
            .destination_ip
            .get_or_init(|| parse_ip(self.input.destination_address))
    }

    /// Envoy without `use_remote_address`: the (N+1)-th `x-forwarded-for`
    /// entry from the right, else the connection's source address.
    pub(crate) fn remote_ip(&self) -> Option<IpAddr> {
        *self.remote_ip.get_or_init(|| {
            let xff = joined_header(self.input.headers, "x-forwarded-for");
            let from_xff = xff.and_then(|v| {
                let entries: Vec<&str> = v.split(',').map(str::trim).collect();
                let skip = usize::try_from(self.num_trusted_proxies).unwrap_or(usize::MAX);
                let idx = entries.len().checked_sub(skip.checked_add(1)?)?;
                entries[idx].parse::<IpAddr>().ok()
            });
            from_xff.or_else(|| self.source_ip())
        })
    }

    fn claims(&self) -> Option<&Value> {
        self.claims
            .get_or_init(|| {
                self.input
                    .request_auth
                    .as_ref()
                    .and_then(|a| serde_json::from_str(a.claims).ok())
            })
            .as_ref()
    }
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse().ok().or_else(|| {
        s.strip_prefix('[')
            .and_then(|r| r.split(']').next())
            .and_then(|r| r.parse().ok())
    })
}

/// All values of a header joined with `,` (Envoy's view).
pub(crate) fn joined_header<'a>(
    headers: &'a [(String, String)],
    name: &str,
) -> Option<Cow<'a, str>> {
    let mut found: Option<Cow<'a, str>> = None;
    for (n, v) in headers {
        if n.eq_ignore_ascii_case(name) {
            found = Some(match found {
                None => Cow::Borrowed(v.as_str()),
                Some(prev) => Cow::Owned(format!("{prev},{v}")),
            });
        }
    }
    found
}

fn header_matches(pats: &[HeaderPattern], value: Option<&str>, ignore_case: bool) -> bool {
    let Some(v) = value else {
        return false;
    };
    pats.iter().any(|p| match p {
        HeaderPattern::Present => true,
        HeaderPattern::Value(p) if ignore_case => p.matches_ignore_case(v),
        HeaderPattern::Value(p) => p.matches(v),
    })
}

/// Matches the `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` regex Istio uses.
fn service_account_matches(uri: &str, ns: &str, sa: &str) -> bool {
    let Some(rest) = uri.strip_prefix("spiffe://") else {
        return false;
    };
    let needle = format!("/ns/{ns}/");
    let mut from = 1; // `.+` before `/ns/`
    while let Some(pos) = rest.get(from..).and_then(|r| r.find(&needle)) {
        let after = &rest[from + pos + needle.len()..];
        let sa_needle = format!("sa/{sa}");
        let mut j = 0;
        while let Some(k) = after.get(j..).and_then(|a| a.find(&sa_needle)) {
            let start = j + k;
            let end = start + sa_needle.len();
            let boundary = start == 0 || after.as_bytes()[start - 1] == b'/';
            let tail = &after[end..];
            if boundary && (tail.is_empty() || (tail.len() > 1 && tail.starts_with('/'))) {
                return true;
            }
            j = start + 1;
        }
        from += pos + 1;
    }
    false
}

fn trust_domain_matches(uri: &str, m: &TrustDomainMatch) -> bool {
    let Some(rest) = uri.strip_prefix("spiffe://") else {
        return false;
    };
    match m {
        TrustDomainMatch::Any => true,
        TrustDomainMatch::Exact(td) => rest
            .strip_prefix(td.as_str())
            .is_some_and(|r| r.starts_with('/')),
        TrustDomainMatch::Wildcard(a, b) => match rest.find('/') {
            Some(i) => {
                let td = &rest[..i];
                td.len() >= a.len() + b.len()
                    && td.starts_with(a.as_str())
                    && td.ends_with(b.as_str())
            }
            None => false,
        },
    }
}

/// A claim value matches when it is a matching string, or a list with a
/// matching string element (Istio's extended JWT matcher).
fn claim_matches(v: &Value, pats: &[Pattern]) -> bool {
    match v {
        Value::String(s) => pats.iter().any(|p| p.matches(s)),
        Value::Array(items) => items
            .iter()
            .any(|i| matches!(i, Value::String(s) if pats.iter().any(|p| p.matches(s)))),
        _ => false,
    }
}

fn request_principal_matches(rp: &RequestPrincipal, iss: &str, sub: &str) -> bool {
    rp.iss.matches(iss) && rp.sub.matches(sub)
}

fn attr_matches(attr: &Attr, cx: &EvalCtx<'_>) -> bool {
    let input = cx.input;
    match attr {
        Attr::Principal(pats) => cx
            .peer_uri()
            .is_some_and(|u| pats.iter().any(|p| p.matches(u))),
        Attr::Namespace(globs) => cx
            .peer_uri()
            .is_some_and(|u| globs.iter().any(|g| g.matches(u))),
        Attr::ServiceAccount(list) => cx.peer_uri().is_some_and(|u| {
            list.iter()
                .any(|(ns, sa)| service_account_matches(u, ns, sa))
        }),
        Attr::TrustDomain(list) => cx
            .peer_uri()
            .is_some_and(|u| list.iter().any(|m| trust_domain_matches(u, m))),
        Attr::SourceIp(cidrs) => cx
            .source_ip()
            .is_some_and(|ip| cidrs.iter().any(|c| c.contains(ip))),
        Attr::RemoteIp(cidrs) => cx
            .remote_ip()
            .is_some_and(|ip| cidrs.iter().any(|c| c.contains(ip))),
        Attr::DestinationIp(cidrs) => cx
            .destination_ip()
            .is_some_and(|ip| cidrs.iter().any(|c| c.contains(ip))),
        // Istio matches `payload.iss` and `payload.sub` separately: a token
        // without either (or with a non-string one) matches no pattern,
        // not even an empty one.
        Attr::RequestPrincipal(list) => input.request_auth.as_ref().is_some_and(|a| {
            let has = |k: &str| {
                cx.claims()
                    .is_some_and(|c| c.get(k).is_some_and(Value::is_string))
            };
            has("iss")
                && has("sub")
                && list
                    .iter()
                    .any(|rp| request_principal_matches(rp, a.issuer, a.subject))
        }),
        Attr::Audiences(pats) => input.request_auth.as_ref().is_some_and(|a| {
            a.audiences
                .iter()
                .any(|aud| pats.iter().any(|p| p.matches(aud)))
        }),
        Attr::Presenter(pats) => input
            .request_auth
            .as_ref()
            .and_then(|a| a.presenter)
            .is_some_and(|azp| pats.iter().any(|p| p.matches(azp))),
        Attr::Claim(path, pats) => {
            let mut v = cx.claims();
            for key in path {
                v = v.and_then(|v| v.get(key.as_str()));
            }
            v.is_some_and(|v| claim_matches(v, pats))
        }
        Attr::Header(name, pats) => {
            header_matches(pats, joined_header(input.headers, name).as_deref(), false)
        }
        Attr::Host(pats) => header_matches(pats, Some(input.authority), true),
        Attr::Method(pats) => header_matches(pats, Some(input.method), false),
        Attr::Path(list) => list.iter().any(|m| match m {
            PathMatch::Str(p) => p.matches(cx.path),
            PathMatch::Template(t) => t.matches(cx.path),
        }),
        Attr::Port(ports) => ports.contains(&input.destination_port),
        Attr::Never => false,
    }
}

fn checks_match(checks: &[Check], cx: &EvalCtx<'_>) -> bool {
    checks
        .iter()
        .filter(|c| !(cx.tcp && c.attr.is_http()))
        .all(|c| attr_matches(&c.attr, cx) != c.negate)
}

fn rule_matches(r: &CompiledRule, cx: &EvalCtx<'_>, allow: bool) -> bool {
    // On a TCP chain an ALLOW rule needing HTTP attributes is dropped (a
    // smaller allow); DENY and AUDIT rules just ignore those attributes (a
    // wider deny), which `checks_match` does.
    if cx.tcp && allow && r.uses_http() {
        return false;
    }
    (r.from.is_empty() || r.from.iter().any(|f| checks_match(f, cx)))
        && (r.to.is_empty() || r.to.iter().any(|t| checks_match(t, cx)))
        && checks_match(&r.when, cx)
}

/// A policy matches when any of its rules does (no rules: never).
pub(crate) fn policy_matches(p: &CompiledPolicy, cx: &EvalCtx<'_>) -> bool {
    let allow = p.action == Action::Allow;
    p.rules.iter().any(|r| rule_matches(r, cx, allow))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_regex() {
        assert!(service_account_matches(
            "spiffe://cluster.local/ns/foo/sa/bar",
            "foo",
            "bar"
        ));
        assert!(!service_account_matches(
            "spiffe://cluster.local/ns/foo/sa/barx",
            "foo",
            "bar"
        ));
        assert!(!service_account_matches(
            "spiffe://cluster.local/ns/foox/sa/bar",
            "foo",
            "bar"
        ));
        assert!(service_account_matches(
            "spiffe://td/ns/foo/x/sa/bar/y",
            "foo",
            "bar"
        ));
        assert!(!service_account_matches(
            "spiffe:///ns/foo/sa/bar",
            "foo",
            "bar"
        ));
    }

    #[test]
    fn trust_domains() {
        let u = "spiffe://prod.example.com/ns/a/sa/b";
        assert!(trust_domain_matches(
            u,
            &TrustDomainMatch::Exact("prod.example.com".into())
        ));
        assert!(!trust_domain_matches(
            u,
            &TrustDomainMatch::Exact("prod.example".into())
        ));
        assert!(trust_domain_matches(
            u,
            &TrustDomainMatch::Wildcard("prod.".into(), ".com".into())
        ));
        assert!(!trust_domain_matches(
            u,
            &TrustDomainMatch::Wildcard("dev.".into(), String::new())
        ));
    }
}
