//! Telemetry, WasmPlugin, Gateway, HTTPRoute.

use super::{Validation, check_duration};
use crate::crd::extensions::WasmPluginSpec;
use crate::crd::gateway::{GatewaySpec, HTTPRouteSpec};
use crate::crd::telemetry::TelemetrySpec;

pub(crate) fn telemetry(spec: &TelemetrySpec) -> Validation {
    let mut v = Validation::default();
    super::security::check_one_of_selector(
        &mut v,
        spec.selector.is_some(),
        spec.target_ref.is_some(),
        spec.target_refs.is_some(),
    );
    super::security::check_selector(&mut v, spec.selector.as_ref());
    let tracing = spec.tracing.as_deref().unwrap_or_default();
    if tracing.len() > 1 {
        v.warn("multiple tracing is not currently supported");
    }
    for t in tracing {
        if t.providers.as_ref().is_some_and(|p| p.len() > 1) {
            v.warn("multiple providers is not currently supported");
        }
        if let Some(p) = t.random_sampling_percentage
            && !(0.0..=100.0).contains(&p)
        {
            v.err("randomSamplingPercentage must be in range [0.0, 100.0]");
        }
        for (name, tag) in t.custom_tags.iter().flatten() {
            if name.is_empty() {
                v.err("tag name may not be empty");
            }
            if let Some(l) = &tag.literal
                && l.value.is_empty()
            {
                v.err("literal tag value may not be empty");
            }
            if let Some(h) = &tag.header
                && h.name.is_empty()
            {
                v.err("header tag name may not be empty");
            }
            if let Some(e) = &tag.environment
                && e.name.is_empty()
            {
                v.err("environment tag name may not be empty");
            }
        }
    }
    for m in spec.metrics.iter().flatten() {
        if m.providers.as_ref().is_some_and(|p| p.len() > 1) {
            v.warn("multiple providers is not currently supported");
        }
        if let Some(ri) = &m.reporting_interval {
            check_duration(&mut v, ri);
        }
        for o in m.overrides.iter().flatten() {
            if let Some(sel) = &o.r#match
                && sel.custom_metric.as_deref() == Some("")
            {
                v.err("customMetric may not be empty");
            }
            for to in o.tag_overrides.iter().flat_map(|t| t.values()) {
                let upsert = to.operation.as_deref().unwrap_or("UPSERT") == "UPSERT";
                if upsert && to.value.as_deref().unwrap_or("").is_empty() {
                    v.err("tagOverrides.value must be set when operation is UPSERT");
                }
                if !upsert && to.value.is_some() {
                    v.err("tagOverrides.value may only be set when operation is UPSERT");
                }
            }
        }
    }
    for a in spec.access_logging.iter().flatten() {
        if a.providers.as_ref().is_some_and(|p| p.len() > 1) {
            v.warn("multiple providers is not currently supported");
        }
    }
    v
}

pub(crate) fn wasm_plugin(spec: &WasmPluginSpec) -> Validation {
    let mut v = Validation::default();
    super::security::check_one_of_selector(
        &mut v,
        spec.selector.is_some(),
        spec.target_ref.is_some(),
        spec.target_refs.is_some(),
    );
    super::security::check_selector(&mut v, spec.selector.as_ref());
    if spec.url.is_empty() {
        v.err("url field needs to be set");
    } else {
        let scheme = spec.url.split_once("://").map(|(s, _)| s).unwrap_or("oci");
        match scheme {
            "file" | "http" | "https" | "oci" => {}
            s => v.err(format!(
                "unsupported scheme {s:?} in url {:?}; use file://, https:// or oci://",
                spec.url
            )),
        }
        if (scheme == "http" || scheme == "https")
            && spec.sha256.as_deref().unwrap_or("").is_empty()
        {
            v.warn("sha256 is not set for an http(s) url: the module cannot be verified");
        }
    }
    if let Some(d) = &spec.sha256
        && !d.is_empty()
        && (d.len() != 64 || !d.chars().all(|c| c.is_ascii_hexdigit()))
    {
        v.err(format!(
            "sha256 field must be 64 hex characters, found {d:?}"
        ));
    }
    if let Some(p) = &spec.phase
        && !["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"].contains(&p.as_str())
    {
        v.err(format!("unknown phase {p:?}"));
    }
    if let Some(f) = &spec.fail_strategy
        && !["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"].contains(&f.as_str())
    {
        v.err(format!("unknown failStrategy {f:?}"));
    }
    if let Some(l) = &spec.limits {
        if let Some(m) = &l.memory
            && crate::translate::filters::parse_quantity(m).is_none()
        {
            v.err(format!("limits.memory {m:?} is not a quantity (e.g. 64Mi)"));
        }
        if let Some(c) = &l.cpu {
            check_duration(&mut v, c);
        }
    }
    for c in spec.capabilities.iter().flatten() {
        if ![
            "log",
            "metrics",
            "clock",
            "random",
            "crypto",
            "authn",
            "outbound-http",
        ]
        .contains(&c.as_str())
        {
            v.err(format!(
                "unknown capability {c:?}; known: log, metrics, clock, random, crypto, authn, outbound-http"
            ));
        }
    }
    if let Some(r) = &spec.rollout {
        if let Some(p) = r.canary_percentage
            && !(0.0..=100.0).contains(&p)
        {
            v.err(format!(
                "rollout.canaryPercentage {p} is not in range [0, 100]"
            ));
        }
        if let Some(e) = r.max_error_rate
            && !(0.0..=1.0).contains(&e)
        {
            v.err(format!("rollout.maxErrorRate {e} is not in range [0, 1]"));
        }
    }
    v
}

pub(crate) fn gateway(spec: &GatewaySpec) -> Validation {
    let mut v = Validation::default();
    if spec.gateway_class_name.is_empty() {
        v.err("gatewayClassName must be set");
    }
    let mut names = std::collections::BTreeSet::new();
    for l in &spec.listeners {
        if !names.insert(l.name.clone()) {
            v.err(format!("duplicate listener name {:?}", l.name));
        }
        if !(1..=65535).contains(&l.port) {
            v.err(format!(
                "listener {:?}: port {} must be in range 1..65535",
                l.name, l.port
            ));
        }
    }
    v
}

pub(crate) fn http_route(spec: &HTTPRouteSpec) -> Validation {
    let mut v = Validation::default();
    for r in &spec.rules {
        for m in r.matches.iter().flatten() {
            if let Some(p) = &m.path {
                let t = p.type_.as_deref().unwrap_or("PathPrefix");
                let val = p.value.as_deref().unwrap_or("/");
                if (t == "PathPrefix" || t == "Exact") && !val.starts_with('/') {
                    v.err(format!("path {val:?} must be an absolute path"));
                }
            }
        }
        if let Some(t) = &r.timeouts {
            for d in [&t.request, &t.backend_request].into_iter().flatten() {
                if super::parse_duration_nanos(d).is_none() {
                    v.err(format!("invalid duration {d:?}"));
                }
            }
        }
    }
    v
}
