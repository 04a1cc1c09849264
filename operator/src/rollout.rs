//! Automatic rollback of filter canaries.
//!
//! While a WasmPlugin canary is in progress (`spec.rollout.canaryPercentage`
//! < 100 and a previous version exists), the operator scrapes the metrics
//! endpoint (`:15020/metrics`) of every waypoint serving the plugin and
//! sums, for the new version (the waypoint's filter runtime labels a version
//! with the first 12 hex digits of its module digest, and names a plugin
//! `<ns>.<name>`):
//!
//! * [`REQUESTS_METRIC`]`{filter="<ns>.<name>",version="<digest[..12]>"}` —
//!   hook invocations of that version, and
//! * [`FAILURES_METRIC`]`{filter=…,version=…}` — traps, timeouts,
//!   out-of-memory, instance-limit and invalid-result failures of that
//!   version.
//!
//! When at least `rollout.minRequests` (default 20) requests were served and
//! failures/requests exceeds `rollout.maxErrorRate` (default 0.05), the
//! rollout is marked rolled back: waypoints receive the previous version
//! only, and the WasmPlugin must change (new url/sha256) to try again.

use crate::controller::Controller;
use crate::fetch;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Counter of filter invocations per version (waypoint metric).
pub const REQUESTS_METRIC: &str = "wasm_filter_invocations_total";
/// Counter of filter failures (trap, limit, error) per version.
pub const FAILURES_METRIC: &str = "wasm_filter_errors_total";
/// Default rollback threshold.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.05;
/// Default minimum sample.
pub const DEFAULT_MIN_REQUESTS: u64 = 20;
/// Waypoint metrics port.
pub const METRICS_PORT: u16 = 15020;

/// Sum a counter over samples whose labels include all of `labels`.
pub fn sum_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || !line.starts_with(name) {
            continue;
        }
        let rest = &line[name.len()..];
        let (lbl, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let ok = labels
            .iter()
            .all(|(k, v)| lbl.split(',').any(|kv| kv.trim() == format!("{k}=\"{v}\"")));
        if ok
            && let Some(v) = value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        {
            total += v;
        }
    }
    total
}

/// Should a canary with these counts be rolled back?
pub fn should_roll_back(
    requests: f64,
    failures: f64,
    max_error_rate: f64,
    min_requests: u64,
) -> bool {
    requests >= min_requests as f64 && requests > 0.0 && failures / requests > max_error_rate
}

/// Watch canaries until cancelled.
pub async fn run(controller: Arc<Controller>, interval: Duration, shutdown: CancellationToken) {
    let tls = fetch::client_config(None);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let ctx = controller.context();
        let (Some(cs), Some(t)) = (controller.config(), controller.translation()) else {
            continue;
        };
        let mut rollbacks: Vec<String> = Vec::new();
        for (key, r) in ctx
            .rollouts
            .iter()
            .filter(|(_, r)| !r.rolled_back && r.previous.is_some())
        {
            let Some(new) = ctx.modules.get(key) else {
                continue;
            };
            let Some(p) = cs
                .resources
                .wasm_plugins
                .iter()
                .find(|p| crate::translate::filters::plugin_key(p) == *key)
            else {
                continue;
            };
            let spec = p.spec.rollout.clone().unwrap_or_default();
            let (mut req, mut fail) = (0.0, 0.0);
            for wp in t.waypoints.iter() {
                if !wp.filters.iter().any(|f| f.name == *key) {
                    continue;
                }
                let Some(info) = t
                    .waypoint_infos
                    .get(&format!("{}/{}", wp.namespace, wp.name))
                else {
                    continue;
                };
                for addr in &info.addresses {
                    let url = match addr {
                        std::net::IpAddr::V6(a) => format!("http://[{a}]:{METRICS_PORT}/metrics"),
                        a => format!("http://{a}:{METRICS_PORT}/metrics"),
                    };
                    match fetch::get(&url, &tls, Duration::from_secs(3), None).await {
                        Ok(body) => {
                            let text = String::from_utf8_lossy(&body);
                            let filter = mesh_common::model::runtime_filter_name(key);
                            let version = new.sha256.get(..12).unwrap_or(&new.sha256);
                            let l = [("filter", filter.as_str()), ("version", version)];
                            req += sum_metric(&text, REQUESTS_METRIC, &l);
                            fail += sum_metric(&text, FAILURES_METRIC, &l);
                        }
                        Err(e) => tracing::debug!("scraping {url}: {e}"),
                    }
                }
            }
            let max = spec.max_error_rate.unwrap_or(DEFAULT_MAX_ERROR_RATE);
            let min = spec.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS);
            if should_roll_back(req, fail, max, min) {
                tracing::warn!(plugin = %key, requests = req, failures = fail, threshold = max, "canary failure rate too high: rolling back to {}", r.previous.as_ref().map(|m| m.sha256.as_str()).unwrap_or(""));
                rollbacks.push(key.clone());
            }
        }
        if !rollbacks.is_empty() {
            let _ = controller.update_context(|c| {
                for k in &rollbacks {
                    if let Some(r) = c.rollouts.get_mut(k) {
                        r.rolled_back = true;
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_and_decides() {
        let text = "# TYPE wasm_filter_invocations_total counter\n\
            wasm_filter_invocations_total{filter=\"shop.f\",version=\"new\",hook=\"request_headers\"} 40\n\
            wasm_filter_invocations_total{filter=\"shop.f\",version=\"old\",hook=\"request_headers\"} 400\n\
            wasm_filter_errors_total{filter=\"shop.f\",version=\"new\",kind=\"trap\"} 10\n";
        let l = [("filter", "shop.f"), ("version", "new")];
        assert_eq!(sum_metric(text, REQUESTS_METRIC, &l), 40.0);
        assert_eq!(sum_metric(text, FAILURES_METRIC, &l), 10.0);
        assert!(should_roll_back(40.0, 10.0, 0.05, 20));
        assert!(!should_roll_back(10.0, 10.0, 0.05, 20), "too few requests");
        assert!(!should_roll_back(400.0, 1.0, 0.05, 20));
    }
}
