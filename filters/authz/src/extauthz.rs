//! CUSTOM action: Envoy `ext_authz` HTTP-service semantics as Istio
//! configures an `envoyExtAuthzHttp` extension provider.
//!
//! The check request copies the original method, `host`, `:path` (with the
//! provider's `pathPrefix`), `authorization` and the configured headers, with
//! an empty body. The answer: `200` allows (optionally moving headers to the
//! upstream request and the downstream response); a `5xx` or a failed call is
//! an error (allowed with `failOpen`, else answered `statusOnError`, default
//! 403); any other status denies with the provider's status, body and
//! headers. Denials carry the response flag `UAEX`.

use crate::ConfigError;
use crate::pattern::Pattern;
use filter_model::authz::ExtAuthzHttpProvider;

/// Istio's default provider timeout.
pub const DEFAULT_TIMEOUT_MS: u32 = 600_000;

/// A provider ready to use.
#[derive(Clone, Debug)]
pub struct Provider {
    /// Provider (and outbound upstream) name.
    pub name: String,
    timeout_ms: u32,
    path_prefix: String,
    fail_open: bool,
    status_on_error: u16,
    include: Vec<Pattern>,
    additional: Vec<(String, String)>,
    to_upstream: Vec<Pattern>,
    to_downstream_allow: Vec<Pattern>,
    to_downstream_deny: Vec<Pattern>,
}

fn header_patterns(v: &[String]) -> Vec<Pattern> {
    v.iter().map(|h| Pattern::parse(h).lowercase()).collect()
}

fn any_matches(pats: &[Pattern], name: &str) -> bool {
    pats.iter().any(|p| p.matches_ignore_case(name))
}

impl Provider {
    pub(crate) fn compile(p: &ExtAuthzHttpProvider) -> Result<Self, ConfigError> {
        let status_on_error = match p.status_on_error.as_deref().filter(|s| !s.is_empty()) {
            None => 403,
            Some(s) => match s.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => code,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "provider {}: invalid statusOnError {s:?}",
                        p.name
                    )));
                }
            },
        };
        if let Some(prefix) = p.path_prefix.as_deref().filter(|s| !s.is_empty())
            && !prefix.starts_with('/')
        {
            return Err(ConfigError::Invalid(format!(
                "provider {}: pathPrefix must begin with `/`, found: {prefix:?}",
                p.name
            )));
        }
        Ok(Provider {
            name: p.name.clone(),
            timeout_ms: p
                .timeout
                .map(|d| d.as_millis_u32())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_TIMEOUT_MS),
            path_prefix: p.path_prefix.clone().unwrap_or_default(),
            fail_open: p.fail_open,
            status_on_error,
            include: header_patterns(&p.include_request_headers_in_check),
            additional: p
                .include_additional_headers_in_check
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            to_upstream: header_patterns(&p.headers_to_upstream_on_allow),
            to_downstream_allow: header_patterns(&p.headers_to_downstream_on_allow),
            to_downstream_deny: header_patterns(&p.headers_to_downstream_on_deny),
        })
    }

    /// The check request for a request.
    pub fn check_request(
        &self,
        method: &str,
        authority: &str,
        path_and_query: &str,
        headers: &[(String, String)],
    ) -> CheckRequest {
        let mut out: Vec<(String, String)> = vec![("host".into(), authority.into())];
        for (name, value) in headers {
            let name_l = name.to_ascii_lowercase();
            if matches!(
                name_l.as_str(),
                "content-length" | "host" | "transfer-encoding"
            ) || name_l.starts_with(':')
            {
                continue;
            }
            if name_l == "authorization" || any_matches(&self.include, &name_l) {
                match out.iter_mut().find(|(n, _)| *n == name_l) {
                    Some((_, v)) => {
                        v.push(',');
                        v.push_str(value);
                    }
                    None => out.push((name_l, value.clone())),
                }
            }
        }
        for (k, v) in &self.additional {
            out.retain(|(n, _)| n != k);
            out.push((k.clone(), v.clone()));
        }
        CheckRequest {
            upstream: self.name.clone(),
            method: method.into(),
            path: format!("{}{path_and_query}", self.path_prefix),
            headers: out,
            timeout_ms: self.timeout_ms,
        }
    }

    /// Interprets the provider's answer (`Err`: the call failed).
    pub fn interpret(&self, answer: Result<CheckResponse, String>) -> CheckResult {
        let resp = match answer {
            Ok(r) if !(500..600).contains(&r.status) => r,
            _ => return self.error(),
        };
        if resp.status == 200 {
            let mut upstream_set = Vec::new();
            let mut upstream_remove = Vec::new();
            let mut downstream_add = Vec::new();
            for (name, value) in &resp.headers {
                let n = name.to_ascii_lowercase();
                if n == "x-envoy-auth-headers-to-remove" {
                    upstream_remove.extend(
                        value
                            .split(',')
                            .map(|s| s.trim().to_ascii_lowercase())
                            .filter(|s| !s.is_empty()),
                    );
                    continue;
                }
                if any_matches(&self.to_upstream, &n) {
                    upstream_set.push((n.clone(), value.clone()));
                }
                if any_matches(&self.to_downstream_allow, &n) {
                    downstream_add.push((n, value.clone()));
                }
            }
            return CheckResult::Allow {
                upstream_set,
                upstream_remove,
                downstream_add,
            };
        }
        let headers = resp
            .headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .filter(|(n, _)| {
                if matches!(
                    n.as_str(),
                    "content-length"
                        | "transfer-encoding"
                        | "connection"
                        | "x-envoy-auth-headers-to-remove"
                ) {
                    return false;
                }
                if self.to_downstream_deny.is_empty() {
                    n != "host"
                } else {
                    matches!(n.as_str(), "www-authenticate" | "location")
                        || any_matches(&self.to_downstream_deny, n)
                }
            })
            .collect();
        CheckResult::Deny {
            status: resp.status,
            headers,
            body: resp.body,
        }
    }

    fn error(&self) -> CheckResult {
        if self.fail_open {
            return CheckResult::Allow {
                upstream_set: Vec::new(),
                upstream_remove: Vec::new(),
                downstream_add: Vec::new(),
            };
        }
        CheckResult::Deny {
            status: self.status_on_error,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// What to send to the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRequest {
    /// Outbound upstream name (= provider name).
    pub upstream: String,
    /// The original method.
    pub method: String,
    /// `pathPrefix` + original path and query.
    pub path: String,
    /// Headers (`host` = original authority).
    pub headers: Vec<(String, String)>,
    /// Call timeout.
    pub timeout_ms: u32,
}

/// The provider's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResponse {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// The outcome of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Go on, applying these header changes.
    Allow {
        /// Set on the upstream request.
        upstream_set: Vec<(String, String)>,
        /// Removed from the upstream request.
        upstream_remove: Vec<String>,
        /// Added to the downstream response.
        downstream_add: Vec<(String, String)>,
    },
    /// Answer with this (flag `UAEX`).
    Deny {
        /// Status.
        status: u16,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
}
