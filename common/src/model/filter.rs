//! Filter chain entries: which WASM component runs, with which config,
//! capabilities and limits.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A module by content digest. The waypoint downloads it from
/// `GET /v1/modules/<sha256>` on the operator (or uses its cache) and must
/// check the digest before loading.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleRef {
    /// Lower-case hex SHA-256 of the component bytes.
    pub sha256: String,
    /// Where to fetch it (`https://<operator>:15012/v1/modules/<sha256>`),
    /// relative URLs are resolved against the push endpoint.
    pub url: String,
}

/// What happens when the filter cannot run (load failure, trap, limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailPolicy {
    /// Answer the request with an error (WasmPlugin `FAIL_CLOSE`, default).
    #[default]
    FailClosed,
    /// Skip the filter (WasmPlugin `FAIL_OPEN`).
    FailOpen,
}

/// Resource limits of one filter. `None` ⇒ the host's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterLimits {
    /// Linear memory cap per instance, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// CPU deadline per hook call.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_per_hook: Option<Duration>,
    /// Maximum concurrent instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
}

/// A canary rollout: `percentage` of requests run the new module (the
/// entry's `module`), the rest run `previous`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// Share of requests for the new version, 0–100.
    pub percentage: f64,
    /// The version being replaced.
    pub previous: ModuleRef,
    /// The previous version's config (when it differs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_config: Option<serde_json::Value>,
}

/// One filter in a waypoint's chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterConfig {
    /// Unique name in the chain (`jwt`, `authz`, `routing`, `fault`,
    /// `retry`, or `<ns>.<WasmPlugin name>`).
    pub name: String,
    /// The component.
    pub module: ModuleRef,
    /// Configuration handed to `configure` (JSON); `null` ⇒ empty bytes.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Granted host capabilities (`log`, `metrics`, `clock`, `random`,
    /// `crypto`, `authn`, `outbound-http`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// For `outbound-http`: upstream name → base URL the filter may call.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstreams: BTreeMap<String, String>,
    /// Limits.
    #[serde(default)]
    pub limits: FilterLimits,
    /// Fail policy.
    #[serde(default)]
    pub fail_policy: FailPolicy,
    /// Canary split, if a rollout is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Hostnames this filter applies to; empty ⇒ all traffic of the waypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

impl FilterConfig {
    /// The bytes given to the filter's `configure` hook.
    pub fn config_bytes(&self) -> Vec<u8> {
        if self.config.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&self.config).unwrap_or_default()
        }
    }

    /// Does the filter run for traffic to `hostname`?
    pub fn applies_to(&self, hostname: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|s| s == hostname)
    }
}

/// The name the waypoint's filter runtime gives a chain entry, and under
/// which its `wasm_filter_*` metrics are labelled: `[a-z0-9.-]`, so a user
/// filter `<ns>/<WasmPlugin>` becomes `<ns>.<WasmPlugin>` (a namespace has
/// no dots, so the mapping is one-to-one). Shared by the waypoint, the
/// operator's rollback and the CLI so they cannot disagree.
pub fn runtime_filter_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            match c {
                '/' => '.',
                c if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' => c,
                _ => '-',
            }
        })
        .collect();
    let mut s = s.trim_matches(|c| c == '-' || c == '.').to_string();
    s.truncate(253);
    if s.is_empty() { "filter".into() } else { s }
}

#[cfg(test)]
mod runtime_name_tests {
    use super::runtime_filter_name;

    #[test]
    fn maps_plugin_keys_one_to_one() {
        assert_eq!(runtime_filter_name("shop/lang-tag"), "shop.lang-tag");
        assert_eq!(runtime_filter_name("routing"), "routing");
        assert_eq!(runtime_filter_name("Shop/My_Filter"), "shop.my-filter");
        assert_eq!(runtime_filter_name("/"), "filter");
    }
}
