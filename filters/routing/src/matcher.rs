//! Compiled string, header and query-parameter matchers with Envoy's
//! route-matching semantics.

use crate::ConfigError;
use filter_model::StringMatch;
use regex::Regex;
use std::borrow::Cow;

/// Istio's limit on a match regex.
pub(crate) const MAX_REGEX_LEN: usize = 1024;

/// Compiles `pattern` for an RE2-style full match.
pub(crate) fn full_match_regex(pattern: &str, field: &str) -> Result<Regex, ConfigError> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(ConfigError::Invalid(format!(
            "\"{field}\": regex is too large, max length allowed is {MAX_REGEX_LEN}"
        )));
    }
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| ConfigError::Regex {
        field: field.to_owned(),
        pattern: pattern.to_owned(),
        reason: e.to_string(),
    })
}

/// A compiled `StringMatch` value matcher.
#[derive(Debug)]
pub(crate) enum StrMatcher {
    /// Header/parameter present (any value).
    Present,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl StrMatcher {
    /// Compiles an Istio `StringMatch`; `{}` and `regex: "*"` become `Present`.
    pub(crate) fn compile(m: &StringMatch, field: &str) -> Result<Self, ConfigError> {
        if m.kinds_set() > 1 {
            return Err(ConfigError::Invalid(format!(
                "{field}: a StringMatch sets more than one of exact, prefix and regex"
            )));
        }
        if m.is_presence() {
            return Ok(StrMatcher::Present);
        }
        if let Some(v) = &m.exact {
            return Ok(StrMatcher::Exact(v.clone()));
        }
        if let Some(v) = &m.prefix {
            if v.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "\"{field}\": prefix string match should not be empty"
                )));
            }
            return Ok(StrMatcher::Prefix(v.clone()));
        }
        match &m.regex {
            Some(r) => Ok(StrMatcher::Regex(full_match_regex(r, field)?)),
            None => Ok(StrMatcher::Present),
        }
    }

    /// Matches a present value.
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            StrMatcher::Present => true,
            StrMatcher::Exact(v) => value == v,
            StrMatcher::Prefix(p) => value.starts_with(p.as_str()),
            StrMatcher::Regex(r) => r.is_match(value),
        }
    }
}

/// A header condition (`headers` or, inverted, `withoutHeaders`).
#[derive(Debug)]
pub(crate) struct HeaderMatcher {
    /// Lower-case name.
    pub name: String,
    pub value: StrMatcher,
    /// `withoutHeaders`: result inverted; a missing header counts as `""`
    /// for value matches (Envoy `treat_missing_header_as_empty`).
    pub invert: bool,
}

impl HeaderMatcher {
    pub(crate) fn matches(&self, headers: &[(String, String)]) -> bool {
        let value = joined_header(headers, &self.name);
        let inner = match (&value, &self.value) {
            (None, StrMatcher::Present) => false,
            (None, m) if self.invert => m.matches(""),
            (None, _) => false,
            (Some(v), m) => m.matches(v),
        };
        inner != self.invert
    }
}

/// All values of header `name` joined with `,` (Envoy's view for matching).
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

/// A query parameter condition on the parameter's first value.
#[derive(Debug)]
pub(crate) struct QueryMatcher {
    pub name: String,
    pub value: StrMatcher,
}

impl QueryMatcher {
    pub(crate) fn matches(&self, query: Option<&str>) -> bool {
        match first_query_value(query, &self.name) {
            None => false,
            Some(v) => self.value.matches(&v),
        }
    }
}

/// The first value of query parameter `name` (percent-decoded), `""` for a
/// bare `?name`.
pub(crate) fn first_query_value<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    let query = query?;
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k) == name {
            return Some(percent_decode(v));
        }
    }
    None
}

/// Decodes `%XX` escapes (invalid escapes are kept literally; `+` is not a
/// space, as in Envoy).
pub(crate) fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
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
    fn header_semantics() {
        let headers = h(&[("x-a", "1"), ("X-A", "2"), ("x-b", "")]);
        let m = |name: &str, value: StrMatcher, invert| HeaderMatcher {
            name: name.into(),
            value,
            invert,
        };
        assert!(m("x-a", StrMatcher::Exact("1,2".into()), false).matches(&headers));
        assert!(m("x-b", StrMatcher::Present, false).matches(&headers));
        assert!(!m("x-c", StrMatcher::Present, false).matches(&headers));
        // withoutHeaders: missing header treated as empty for value matches.
        assert!(m("x-c", StrMatcher::Exact("v".into()), true).matches(&headers));
        assert!(!m("x-c", StrMatcher::Exact(String::new()), true).matches(&headers));
        assert!(m("x-c", StrMatcher::Present, true).matches(&headers));
        assert!(!m("x-a", StrMatcher::Present, true).matches(&headers));
    }

    #[test]
    fn query_semantics() {
        let q = Some("a=1&a=2&flag&e=%41b&plus=a+b");
        assert_eq!(first_query_value(q, "a").unwrap(), "1");
        assert_eq!(first_query_value(q, "flag").unwrap(), "");
        assert_eq!(first_query_value(q, "e").unwrap(), "Ab");
        assert_eq!(first_query_value(q, "plus").unwrap(), "a+b");
        assert!(first_query_value(q, "zz").is_none());
        assert_eq!(percent_decode("%2"), "%2");
        assert_eq!(percent_decode("a%zz"), "a%zz");
    }
}
