//! The first-party retry and timeout filter: Envoy's router retry policy as
//! Istio configures it, per route id.
//!
//! 1. [`RetryPolicies::from_json`] compiles a
//!    [`filter_model::retry::RetryConfig`] (route id → timeout and retries).
//! 2. On request headers, [`RetryPolicies::timeouts`] gives the route
//!    timeout (capped `grpc-timeout` for gRPC) and per-try timeout.
//! 3. After each failed attempt, [`RetryPolicies::on_attempt`] decides with
//!    Envoy's `retry_on` semantics whether to send again and after which
//!    fully jittered exponential backoff.
//!
//! Istio's defaults: a route without `retries` gets 2 retries on
//! `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`
//! with no status codes, so a plain `503` response is returned, not retried;
//! `attempts: 0` disables retries; the route timeout covers every attempt.
//!
//! ```
//! use filter_retry::{Outcome, Retry, RetryPolicies};
//! let p = RetryPolicies::from_json(br#"{"routes":{"vs:ns/r#0":{"retries":{"attempts":3,"retryOn":"5xx"}}}}"#).unwrap();
//! let d = p.on_attempt(Some("vs:ns/r#0"), 1, Outcome::Response(503), None, &mut || 7);
//! assert_eq!(d, Retry::After { backoff_ms: 7 % 25 });
//! // Default policy: a 503 response is not retried, a refused connection is.
//! assert_eq!(p.on_attempt(None, 1, Outcome::Response(503), None, &mut || 0), Retry::GiveUp);
//! assert!(matches!(p.on_attempt(None, 1, Outcome::ConnectFailure, None, &mut || 0), Retry::After { .. }));
//! ```

#[cfg(target_arch = "wasm32")]
mod guest;
mod policy;

pub use policy::{Outcome, Retry, RetryOn, RetryPolicies, RoutePolicy, Timeouts, grpc_timeout_ms};

/// Why a retry configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not the retry configuration's shape.
    #[error("invalid retry config JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A value Istio's validation rejects.
    #[error("route {route}: {message}")]
    Invalid {
        /// Route id (or `defaultPolicy`).
        route: String,
        /// What is wrong.
        message: String,
    },
}
