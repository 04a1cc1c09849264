//! The waypoint filter chain: first-party filters (jwt → authz → routing →
//! fault → retry) and WasmPlugins by phase and priority.

use super::TranslateContext;
use crate::crd::WasmPlugin;
use mesh_common::model::{Canary, FailPolicy, FilterConfig, FilterLimits, ModuleRef};
use std::time::Duration;

/// First-party filter names, in chain order.
pub const FIRST_PARTY: [&str; 5] = ["jwt", "authz", "routing", "fault", "retry"];

/// The authz filter built with ext-authz support (`<dir>/authz-ext.wasm`),
/// which serves CUSTOM policies.
pub const AUTHZ_EXT_MODULE: &str = "authz-ext";

/// The chain entry of the CUSTOM policies (module [`AUTHZ_EXT_MODULE`]).
pub const AUTHZ_CUSTOM: &str = "authz-custom";

/// Every first-party component the operator loads from its filters
/// directory.
pub const FIRST_PARTY_MODULES: [&str; 6] = [
    "jwt",
    "authz",
    AUTHZ_EXT_MODULE,
    "routing",
    "fault",
    "retry",
];

/// URL scheme telling the waypoint to use its own build of a first-party
/// filter (when the operator was not given the component files).
pub const BUILTIN_SCHEME: &str = "builtin://";

/// Capabilities granted to each first-party filter.
pub fn first_party_capabilities(name: &str) -> Vec<String> {
    let caps: &[&str] = match name {
        "jwt" => &["log", "metrics", "clock", "crypto", "authn"],
        "authz" => &["log", "metrics"],
        AUTHZ_EXT_MODULE => &["log", "metrics", "outbound-http"],
        "routing" => &["log", "metrics", "random"],
        "fault" => &["log", "metrics", "random"],
        "retry" => &["log", "metrics", "clock", "random"],
        _ => &[],
    };
    caps.iter().map(|s| s.to_string()).collect()
}

/// A first-party filter entry.
pub fn first_party(ctx: &TranslateContext, name: &str, config: serde_json::Value) -> FilterConfig {
    let module = ctx
        .first_party
        .get(name)
        .cloned()
        .unwrap_or_else(|| ModuleRef {
            sha256: String::new(),
            url: format!("{BUILTIN_SCHEME}{name}"),
        });
    FilterConfig {
        name: name.into(),
        module,
        config,
        capabilities: first_party_capabilities(name),
        fail_policy: FailPolicy::FailClosed,
        ..Default::default()
    }
}

/// Parse a Kubernetes quantity (`64Mi`, `1G`, `1048576`) into bytes.
pub fn parse_quantity(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        _ => return None,
    };
    Some((n * mult) as u64)
}

/// Phase rank: AUTHN before jwt, AUTHZ between jwt and authz, the rest last.
pub fn phase_rank(p: Option<&str>) -> u8 {
    match p {
        Some("AUTHN") => 0,
        Some("AUTHZ") => 1,
        Some("STATS") => 3,
        _ => 2,
    }
}

/// Key of a plugin (`namespace/name`).
pub fn plugin_key(p: &WasmPlugin) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

/// Filter entry of a WasmPlugin (its module must be resolved in `ctx`).
pub fn user_filter(
    ctx: &TranslateContext,
    p: &WasmPlugin,
    services: Vec<String>,
) -> Option<FilterConfig> {
    let key = plugin_key(p);
    let fail_policy = match p.spec.fail_strategy.as_deref() {
        Some("FAIL_OPEN") => FailPolicy::FailOpen,
        _ => FailPolicy::FailClosed,
    };
    let module = match ctx.modules.get(&key) {
        Some(m) => m.clone(),
        // Not fetched (yet, or failed): fail-open plugins are left out, a
        // fail-closed one is sent without a digest so the waypoint refuses
        // the traffic it covers (Istio substitutes a deny-all).
        None if fail_policy == FailPolicy::FailOpen => return None,
        None => ModuleRef {
            sha256: String::new(),
            url: p.spec.url.clone(),
        },
    };
    let limits = p.spec.limits.clone().unwrap_or_default();
    let canary = ctx.rollouts.get(&key).and_then(|r| {
        r.previous.as_ref().map(|prev| Canary {
            percentage: r.percentage,
            previous: prev.clone(),
            previous_config: r.previous_config.clone(),
        })
    });
    let (module, config) = match ctx.rollouts.get(&key) {
        // Rolled back: serve the previous version only.
        Some(r) if r.rolled_back => (
            r.previous.clone().unwrap_or(module),
            r.previous_config
                .clone()
                .unwrap_or_else(|| p.spec.plugin_config.clone().unwrap_or_default()),
        ),
        _ => (
            module,
            p.spec
                .plugin_config
                .clone()
                .unwrap_or(serde_json::Value::Null),
        ),
    };
    let rolled_back = ctx.rollouts.get(&key).is_some_and(|r| r.rolled_back);
    Some(FilterConfig {
        name: key,
        module,
        config,
        capabilities: p
            .spec
            .capabilities
            .clone()
            .unwrap_or_else(|| vec!["log".into(), "metrics".into()]),
        upstreams: Default::default(),
        limits: FilterLimits {
            memory_bytes: limits.memory.as_deref().and_then(parse_quantity),
            cpu_per_hook: limits
                .cpu
                .as_deref()
                .and_then(crate::validate::parse_duration_nanos)
                .map(|n| Duration::from_nanos(n as u64)),
            max_instances: limits.max_instances,
        },
        fail_policy,
        canary: if rolled_back { None } else { canary },
        services,
    })
}
