//! JWKS fetched by the operator and inlined into the JWT filter's
//! configuration (Istio's default `PILOT_JWT_ENABLE_REMOTE_JWKS=false`, §2.3).
//!
//! Per source (`jwksUri`, or `issuer:<iss>` resolved through
//! `<iss>/.well-known/openid-configuration`): refreshed every
//! [`REFRESH_INTERVAL`]; after a failed refresh the next attempt comes after
//! [`FAILURE_INTERVAL`], doubling per consecutive failure up to
//! [`MAX_FAILURE_INTERVAL`], reset on success; a refresh retries
//! [`REFRESH_RETRIES`] times one second apart; the first fetch (config
//! push path) does not retry; entries unused or not refreshed for
//! [`EVICT_AFTER`] are dropped. Keys that cannot be fetched are replaced by
//! an empty key set, so tokens of that issuer fail (fail closed, 401).

use crate::controller::Controller;
use crate::fetch;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// First retry interval after a failure.
pub const FAILURE_INTERVAL: Duration = Duration::from_secs(60);
/// Cap of the failure interval.
pub const MAX_FAILURE_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// Retries of one refresh.
pub const REFRESH_RETRIES: u32 = 7;
/// Eviction of unused entries.
pub const EVICT_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// Fetch timeout when a rule sets no `timeout` (Istio's default).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Timing knobs (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct JwksTiming {
    /// Refresh interval.
    pub refresh: Duration,
    /// First failure interval.
    pub failure: Duration,
    /// Failure interval cap.
    pub max_failure: Duration,
    /// Retries per refresh.
    pub retries: u32,
    /// Spacing of retries.
    pub retry_spacing: Duration,
    /// Eviction.
    pub evict_after: Duration,
}

impl Default for JwksTiming {
    fn default() -> Self {
        JwksTiming {
            refresh: REFRESH_INTERVAL,
            failure: FAILURE_INTERVAL,
            max_failure: MAX_FAILURE_INTERVAL,
            retries: REFRESH_RETRIES,
            retry_spacing: Duration::from_secs(1),
            evict_after: EVICT_AFTER,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    jwks: Option<String>,
    next_refresh: Instant,
    failures: u32,
    last_used: Instant,
    last_success: Option<Instant>,
}

/// Next interval after `failures` consecutive failures.
pub fn failure_backoff(t: &JwksTiming, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    (t.failure * 2u32.pow(exp)).min(t.max_failure)
}

async fn fetch_jwks(
    key: &str,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<String, String> {
    let uri = match key.strip_prefix("issuer:") {
        Some(iss) => {
            let disc = format!(
                "{}/.well-known/openid-configuration",
                iss.trim_end_matches('/')
            );
            let body = fetch::get(&disc, tls, timeout, Some("application/json"))
                .await
                .map_err(|e| e.to_string())?;
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("{disc}: {e}"))?;
            v.get("jwks_uri")
                .and_then(|u| u.as_str())
                .ok_or_else(|| format!("{disc}: no jwks_uri"))?
                .to_string()
        }
        None => key.to_string(),
    };
    let body = fetch::get(&uri, tls, timeout, Some("application/json"))
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8(body.to_vec()).map_err(|e| format!("{uri}: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{uri}: not JSON: {e}"))?;
    if !v.get("keys").is_some_and(|k| k.is_array()) {
        return Err(format!("{uri}: not a JWKS (no \"keys\" array)"));
    }
    Ok(text)
}

/// Hands the keys fetched so far to the controller (which re-translates).
fn publish(controller: &Controller, entries: &BTreeMap<String, Entry>) {
    let map: BTreeMap<String, String> = entries
        .iter()
        .filter_map(|(k, e)| e.jwks.clone().map(|j| (k.clone(), j)))
        .collect();
    if let Err(e) = controller.update_context(|c| c.jwks = map) {
        tracing::error!("publishing JWKS: {e}");
    }
}

/// One source's fetch with Istio's retries (`retries` attempts
/// `retry_spacing` apart; the first fetch of a source too, as istiod
/// retries right away after a failed first fetch).
async fn fetch_with_retries(
    key: &str,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
    timing: &JwksTiming,
) -> Result<String, String> {
    let mut result = Err(String::new());
    for i in 0..timing.retries.max(1) {
        if i > 0 {
            tokio::time::sleep(timing.retry_spacing).await;
        }
        result = fetch_jwks(key, tls, timeout).await;
        if result.is_ok() {
            break;
        }
    }
    result
}

/// Run the JWKS resolver until cancelled: watch which sources the
/// translation needs, fetch and refresh them, and hand the keys to the
/// controller.
pub async fn run(
    controller: Arc<Controller>,
    tls: Arc<rustls::ClientConfig>,
    timing: JwksTiming,
    shutdown: CancellationToken,
) {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut generation = controller.watch();
    loop {
        let wanted: BTreeMap<String, Duration> = controller
            .translation()
            .map(|t| t.wanted_jwks.clone())
            .unwrap_or_default();
        let now = Instant::now();
        for k in wanted.keys() {
            let e = entries.entry(k.clone()).or_insert_with(|| Entry {
                jwks: None,
                next_refresh: now,
                failures: 0,
                last_used: now,
                last_success: None,
            });
            e.last_used = now;
        }
        let due: Vec<String> = entries
            .iter()
            .filter(|(_, e)| e.next_refresh <= now)
            .map(|(k, _)| k.clone())
            .collect();
        // Every due source at once, each published as soon as it is
        // fetched: one failing source (and its retries) does not hold up
        // the others' keys.
        let mut fetches: futures::stream::FuturesUnordered<_> = due
            .into_iter()
            .map(|k| {
                let timeout = wanted.get(&k).copied().unwrap_or(FETCH_TIMEOUT);
                let (tls, timing) = (&tls, &timing);
                async move {
                    let r = fetch_with_retries(&k, tls, timeout, timing).await;
                    (k, r)
                }
            })
            .collect();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = futures::StreamExt::next(&mut fetches) => n,
            };
            let Some((k, result)) = next else { break };
            let Some(e) = entries.get_mut(&k) else {
                continue;
            };
            let mut fresh = false;
            match result {
                Ok(j) => {
                    fresh = e.jwks.as_deref() != Some(j.as_str());
                    e.jwks = Some(j);
                    e.failures = 0;
                    e.last_success = Some(Instant::now());
                    e.next_refresh = Instant::now() + timing.refresh;
                }
                Err(err) => {
                    e.failures += 1;
                    e.next_refresh = Instant::now() + failure_backoff(&timing, e.failures);
                    tracing::warn!(source = %k, retry_in = ?failure_backoff(&timing, e.failures), "JWKS fetch failed: {err}");
                    // Keep serving the last keys fetched (Istio keeps the
                    // cached entry), but not forever: keys not refreshed
                    // for `evict_after` are dropped, and the source's
                    // tokens rejected (Istio evicts the entry after 7 days
                    // and fails closed on the next push).
                    if e.jwks.is_some()
                        && e.last_success
                            .is_none_or(|t| t.elapsed() >= timing.evict_after)
                    {
                        e.jwks = None;
                        fresh = true;
                    }
                }
            }
            if fresh {
                publish(&controller, &entries);
            }
        }
        let before = entries.len();
        let now = Instant::now();
        entries.retain(|k, e| {
            wanted.contains_key(k)
                || (now.duration_since(e.last_used) < timing.evict_after
                    && e.last_success
                        .is_none_or(|s| now.duration_since(s) < timing.evict_after))
        });
        if entries.len() != before {
            publish(&controller, &entries);
        }
        let next = entries.values().map(|e| e.next_refresh).min();
        let sleep = next
            .map(|n| n.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(sleep) => {}
            r = generation.changed() => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_backoff_doubles_to_the_cap() {
        let t = JwksTiming::default();
        let mins: Vec<u64> = (1..=8)
            .map(|f| failure_backoff(&t, f).as_secs() / 60)
            .collect();
        assert_eq!(mins, vec![1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
