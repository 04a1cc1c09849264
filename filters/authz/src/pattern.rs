//! Value matchers as Istio generates them for Envoy RBAC: the `*` forms,
//! globs, CIDR blocks and URI templates.

use crate::ConfigError;
use std::net::IpAddr;

/// Istio's string forms: `abc` exact, `abc*` prefix, `*abc` suffix, `*`
/// non-empty (Envoy regex `.+`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    NonEmpty,
}

impl Pattern {
    /// `matcher.StringMatcher(v)`.
    pub(crate) fn parse(v: &str) -> Self {
        if v == "*" {
            Pattern::NonEmpty
        } else if let Some(s) = v.strip_prefix('*') {
            Pattern::Suffix(s.to_owned())
        } else if let Some(p) = v.strip_suffix('*') {
            Pattern::Prefix(p.to_owned())
        } else {
            Pattern::Exact(v.to_owned())
        }
    }

    /// `matcher.StringMatcherWithPrefix(v, prefix)`: the pattern over
    /// `prefix + value` (principals: `spiffe://`).
    pub(crate) fn with_prefix(v: &str, prefix: &str) -> Self {
        match Pattern::parse(v) {
            Pattern::NonEmpty => Pattern::NonEmpty,
            Pattern::Suffix(s) => Pattern::Suffix(s),
            Pattern::Prefix(p) => Pattern::Prefix(format!("{prefix}{p}")),
            Pattern::Exact(e) => Pattern::Exact(format!("{prefix}{e}")),
        }
    }

    /// Lower-cases the pattern for case-insensitive matching.
    pub(crate) fn lowercase(self) -> Self {
        match self {
            Pattern::Exact(s) => Pattern::Exact(s.to_ascii_lowercase()),
            Pattern::Prefix(s) => Pattern::Prefix(s.to_ascii_lowercase()),
            Pattern::Suffix(s) => Pattern::Suffix(s.to_ascii_lowercase()),
            Pattern::NonEmpty => Pattern::NonEmpty,
        }
    }

    pub(crate) fn matches(&self, v: &str) -> bool {
        match self {
            Pattern::Exact(e) => v == e,
            Pattern::Prefix(p) => v.starts_with(p.as_str()),
            Pattern::Suffix(s) => v.ends_with(s.as_str()),
            Pattern::NonEmpty => !v.is_empty(),
        }
    }

    /// ASCII case-insensitive match (the pattern must be lower-cased).
    pub(crate) fn matches_ignore_case(&self, v: &str) -> bool {
        let b = v.as_bytes();
        match self {
            Pattern::Exact(e) => v.eq_ignore_ascii_case(e),
            Pattern::Prefix(p) => {
                b.len() >= p.len() && b[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            Pattern::Suffix(s) => {
                b.len() >= s.len() && b[b.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            Pattern::NonEmpty => !v.is_empty(),
        }
    }
}

/// A glob where `*` matches any run of characters (including `/`), the
/// rest literally: Istio's namespace and trust-domain regexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob {
    parts: Vec<String>,
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Self {
        Glob {
            parts: pattern.split('*').map(str::to_owned).collect(),
        }
    }

    /// Full match.
    pub(crate) fn matches(&self, s: &str) -> bool {
        let Some((first, rest)) = self.parts.split_first() else {
            return s.is_empty();
        };
        let Some(mut tail) = s.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return tail.is_empty();
        };
        for part in middle {
            match tail.find(part.as_str()) {
                Some(i) => tail = &tail[i + part.len()..],
                None => return false,
            }
        }
        tail.len() >= last.len() && tail.ends_with(last.as_str())
    }
}

/// An IP block (`10.0.0.0/8`, `1.2.3.4`, `2001:db8::/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(crate) fn parse(v: &str) -> Result<Self, ConfigError> {
        let (ip, len) = match v.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (v, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("bad IP address ({v})")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "bad CIDR range ({v}): invalid prefix length"
                    )));
                }
            },
        };
        Ok(Cidr { addr, prefix })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => mask_eq(&net.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(a)) => mask_eq(&net.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn mask_eq(net: &[u8], a: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    if net[..full] != a[..full] {
        return false;
    }
    let rem = prefix % 8;
    if rem == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rem);
    net[full] & mask == a[full] & mask
}

/// Envoy `uri_template` matcher for Istio path templates (`{*}` = one
/// segment, `{**}` = any number of segments, must be last operator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    toks: Vec<Tok>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(String),
    /// `[lit]+` (one segment).
    Seg,
    /// `[lit/]*`.
    Any,
    /// Anything up to the end (a trailing `/` after `{**}`, see `parse`).
    Rest,
}

/// RFC 3986 pchar without `*` and `=` (Envoy `kLiteral`).
fn is_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@".contains(&b)
}

impl PathTemplate {
    /// True when `v` uses `{*}` or `{**}`.
    pub(crate) fn is_template(v: &str) -> bool {
        v.contains("{*}") || v.contains("{**}")
    }

    /// Parses Istio's template syntax (validated as Istio does).
    pub(crate) fn parse(v: &str) -> Result<Self, ConfigError> {
        let bad = |why: String| {
            ConfigError::Invalid(format!(
                "invalid or unsupported path {v}, found in Paths. {why}"
            ))
        };
        let Some(body) = v.strip_prefix('/') else {
            return Err(bad("path templates must start with '/'".into()));
        };
        let mut toks = vec![Tok::Lit("/".into())];
        let segments: Vec<&str> = body.split('/').collect();
        let mut seen_any = false;
        for (i, seg) in segments.iter().enumerate() {
            if i > 0 {
                toks.push(Tok::Lit("/".into()));
            }
            match *seg {
                "{**}" | "{*}" if seen_any => {
                    return Err(bad("{**} is not the last operator".into()));
                }
                "{**}" => {
                    seen_any = true;
                    toks.push(Tok::Any);
                }
                "{*}" => toks.push(Tok::Seg),
                "" if i + 1 == segments.len() => {
                    // `/foo/{**}/`: Istio documents it as matching
                    // `/foo/bar/baz.txt` as well as `/foo/bar/` and `/foo//`
                    // (reference §1.5): a trailing `/` after `{**}` accepts
                    // any remainder.
                    if segments.len() >= 2 && segments[i - 1] == "{**}" {
                        toks.push(Tok::Rest);
                    }
                }
                lit => {
                    if lit.contains(['{', '}']) {
                        return Err(bad(
                            "Contains '{' or '}' beyond a supported path template".into()
                        ));
                    }
                    if lit.is_empty() || !lit.bytes().all(|b| is_literal(b) || b == b'=') {
                        return Err(bad(format!(
                            "Contains segment {lit} with invalid string literal"
                        )));
                    }
                    toks.push(Tok::Lit(lit.to_owned()));
                }
            }
        }
        // Merge adjacent literals.
        let mut merged: Vec<Tok> = Vec::with_capacity(toks.len());
        for t in toks {
            match (merged.last_mut(), t) {
                (Some(Tok::Lit(prev)), Tok::Lit(s)) => prev.push_str(&s),
                (_, t) => merged.push(t),
            }
        }
        Ok(PathTemplate { toks: merged })
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        match_toks(&self.toks, path.as_bytes())
    }
}

fn match_toks(toks: &[Tok], s: &[u8]) -> bool {
    let Some((tok, rest)) = toks.split_first() else {
        return s.is_empty();
    };
    match tok {
        Tok::Lit(l) => s.starts_with(l.as_bytes()) && match_toks(rest, &s[l.len()..]),
        Tok::Seg => {
            let run = s.iter().take_while(|b| is_literal(**b)).count();
            (1..=run).rev().any(|k| match_toks(rest, &s[k..]))
        }
        Tok::Any => {
            let run = s
                .iter()
                .take_while(|b| is_literal(**b) || **b == b'/')
                .count();
            (0..=run).rev().any(|k| match_toks(rest, &s[k..]))
        }
        Tok::Rest => rest.is_empty() || (0..=s.len()).any(|k| match_toks(rest, &s[k..])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(Pattern::parse("/api/*").matches("/api/"));
        assert!(!Pattern::parse("/api/*").matches("/api"));
        assert!(Pattern::parse("*.html").matches(".html"));
        assert!(Pattern::parse("*").matches("x") && !Pattern::parse("*").matches(""));
        let host = Pattern::parse("*.FOO.com").lowercase();
        assert!(host.matches_ignore_case("a.foo.COM"));
    }

    #[test]
    fn globs() {
        let g = Glob::new(".*"); // literal dot then anything: no regex here
        assert!(g.matches(".x") && !g.matches("x"));
        let ns = Glob::new("spiffe://*/ns/prod-*/*");
        assert!(ns.matches("spiffe://cluster.local/ns/prod-eu/sa/x"));
        assert!(ns.matches("spiffe://cluster.local/ns/prod-/sa/x"));
        assert!(!ns.matches("spiffe://cluster.local/ns/prod/sa/x"));
        assert!(Glob::new("a*b*c").matches("abbbc") && !Glob::new("a*b*c").matches("acb"));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(
            c.contains("10.1.255.3".parse().unwrap()) && !c.contains("10.2.0.1".parse().unwrap())
        );
        assert!(c.contains("::ffff:10.1.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("1.2.3.4")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8:1::1".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("nope").is_err());
    }

    #[test]
    fn templates() {
        let t = |p: &str| PathTemplate::parse(p).unwrap();
        assert!(t("/foo/{*}").matches("/foo/bar"));
        assert!(!t("/foo/{*}").matches("/foo/bar/baz"));
        assert!(!t("/foo/{*}").matches("/foo/"));
        assert!(t("/foo/{**}/").matches("/foo/bar/"));
        assert!(t("/foo/{**}/").matches("/foo//"));
        assert!(t("/foo/{**}/").matches("/foo/bar/baz/"));
        assert!(t("/foo/{**}/").matches("/foo/bar/baz.txt"));
        assert!(!t("/foo/{**}/").matches("/foo/bar"));
        assert!(!t("/foo/{**}/").matches("/foo"));
        assert!(t("/foo/{*}/bar/{**}").matches("/foo/buzz/bar/"));
        assert!(t("/foo/{*}/bar/{**}").matches("/foo/buzz/bar/baz"));
        assert!(t("/foo/{**}").matches("/foo/"));
        assert!(PathTemplate::parse("/{**}/foo/{*}").is_err());
        assert!(PathTemplate::parse("/foo/{*}.txt").is_err());
        assert!(PathTemplate::parse("/*/baz/{*}").is_err());
    }
}
