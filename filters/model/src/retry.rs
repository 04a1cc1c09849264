//! Configuration of the `retry` filter (retries and timeouts), per route id.

use crate::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The retry filter's configuration.
///
/// A request whose route id (metadata `mesh.route`) is absent from `routes`
/// — including requests on the default route of a service without
/// VirtualService — gets no timeout and the mesh default retry policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    /// `meshConfig.defaultHttpRetryPolicy`; unset ⇒ Istio's built-in default
    /// (2 retries on `connect-failure,refused-stream,unavailable,cancelled,
    /// retriable-status-codes` with no status codes, 25 ms backoff base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_policy: Option<HttpRetry>,
    /// Route id → policy.
    #[serde(default)]
    pub routes: BTreeMap<String, RoutePolicy>,
}

/// Timeout and retries of one route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutePolicy {
    /// Route timeout covering all attempts; unset or `0s` = none. Also caps a
    /// gRPC request's `grpc-timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// VirtualService `retries`; unset ⇒ the default policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
}

/// VirtualService `HTTPRetry`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    /// Number of retries (the request is sent at most `1 + attempts` times);
    /// `0` disables retries.
    #[serde(default)]
    pub attempts: i32,
    /// Timeout of each attempt; unset = none (only the route timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated Envoy `retry_on` policies and HTTP status codes
    /// (`"5xx,reset,503"`); unset ⇒ the default list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
    /// Base interval of the jittered exponential backoff (default 25 ms;
    /// the cap is 10× the base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
    /// Endpoint selection for retries (default true: avoid endpoints
    /// already tried). `false` makes the filter set metadata
    /// `mesh.retry.hosts: reuse`, which lets the host pick any endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ignore_previous_hosts: Option<bool>,
}
