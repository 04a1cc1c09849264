//! Istio's `StringMatch` (`networking.istio.io`): `{exact}`, `{prefix}`,
//! `{regex}` or `{}`.

use serde::{Deserialize, Serialize};

/// One of `exact`, `prefix` (raw string prefix) or `regex` (RE2, full
/// match). An empty object `{}` — or `regex: "*"`, which Istio treats the
/// same — means "present" where presence matching exists (headers, query
/// parameters); setting more than one field is refused by the filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    /// Whole-value equality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Raw string prefix (`/foo` matches `/foobar`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// RE2 regular expression matched against the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl StringMatch {
    /// `{exact: v}`.
    pub fn exact(v: impl Into<String>) -> Self {
        StringMatch {
            exact: Some(v.into()),
            ..Default::default()
        }
    }

    /// `{prefix: v}`.
    pub fn prefix(v: impl Into<String>) -> Self {
        StringMatch {
            prefix: Some(v.into()),
            ..Default::default()
        }
    }

    /// `{regex: v}`.
    pub fn regex(v: impl Into<String>) -> Self {
        StringMatch {
            regex: Some(v.into()),
            ..Default::default()
        }
    }

    /// True for `{}` and `{regex: "*"}`: Istio's presence match.
    pub fn is_presence(&self) -> bool {
        match (&self.exact, &self.prefix, &self.regex) {
            (None, None, None) => true,
            (None, None, Some(r)) => r == "*",
            _ => false,
        }
    }

    /// Number of match kinds set (valid values have at most one).
    pub fn kinds_set(&self) -> usize {
        usize::from(self.exact.is_some())
            + usize::from(self.prefix.is_some())
            + usize::from(self.regex.is_some())
    }
}
