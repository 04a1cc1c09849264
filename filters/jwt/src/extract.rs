//! Token extraction from headers, query parameters and cookies, as Envoy's
//! `jwt_authn` extractor does it.

use crate::config::Location;
use std::borrow::Cow;

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

/// Envoy `extractJWT`: the run of base64url characters and dots starting at
/// the first such character after `after`.
fn token_after(value: &str, after: usize) -> &str {
    let bytes = value.as_bytes();
    let Some(start) = (after..bytes.len()).find(|&i| is_token_char(bytes[i])) else {
        return &value[after.min(value.len())..];
    };
    let end = (start..bytes.len())
        .find(|&i| !is_token_char(bytes[i]))
        .unwrap_or(bytes.len());
    &value[start..end]
}

fn joined_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<Cow<'a, str>> {
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

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

fn cookie(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v)
                .to_owned()
        })
}

/// The token at one location, if any.
pub(crate) fn at(
    location: &Location,
    headers: &[(String, String)],
    query: Option<&str>,
) -> Option<String> {
    match location {
        Location::Header { name, prefix } => {
            let value = joined_header(headers, name)?;
            if prefix.is_empty() {
                return Some(value.into_owned());
            }
            let pos = value.find(prefix.as_str())?;
            Some(token_after(&value, pos + prefix.len()).to_owned())
        }
        Location::Param(p) => query_param(query, p),
        Location::Cookie(c) => cookie(headers, c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect()
    }

    #[test]
    fn locations() {
        let bearer = Location::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        };
        assert_eq!(
            at(&bearer, &h(&[("authorization", "Bearer a.b.c")]), None).as_deref(),
            Some("a.b.c")
        );
        assert_eq!(
            at(
                &bearer,
                &h(&[("authorization", "Bearer  a.b.c, other")]),
                None
            )
            .as_deref(),
            Some("a.b.c")
        );
        assert_eq!(
            at(&bearer, &h(&[("authorization", "Basic xyz")]), None),
            None,
            "no prefix: not a token"
        );
        let raw = Location::Header {
            name: "x-jwt".into(),
            prefix: String::new(),
        };
        assert_eq!(
            at(&raw, &h(&[("X-Jwt", "t.t.t")]), None).as_deref(),
            Some("t.t.t")
        );
        assert_eq!(
            at(
                &Location::Param("access_token".into()),
                &[],
                Some("x=1&access_token=a%2Eb.c")
            )
            .as_deref(),
            Some("a.b.c")
        );
        assert_eq!(
            at(
                &Location::Cookie("session".into()),
                &h(&[("cookie", "a=1; session=\"x.y.z\"")]),
                None
            )
            .as_deref(),
            Some("x.y.z")
        );
    }
}
