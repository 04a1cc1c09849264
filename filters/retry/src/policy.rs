//! Compiled retry policies and Envoy's retry decision.

use crate::ConfigError;
use filter_model::retry::{HttpRetry, RetryConfig};
use std::collections::HashMap;

/// Envoy's default backoff base interval.
pub const DEFAULT_BACKOFF_BASE_MS: u32 = 25;
/// Istio's retry count when `retries` is unset.
pub const DEFAULT_NUM_RETRIES: u32 = 2;
/// Istio's `retry_on` when `retries` (or its `retryOn`) is unset.
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// A set of Envoy `retry_on` conditions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOn(u32);

impl RetryOn {
    /// Any 5xx, or no response at all.
    pub const FIVE_XX: RetryOn = RetryOn(1);
    /// 502/503/504, or no response.
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    /// No response (reset, disconnect, per-try timeout).
    pub const RESET: RetryOn = RetryOn(1 << 2);
    /// Reset before the request was sent (here: connect failures).
    pub const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 3);
    /// Connection failure.
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 4);
    /// 409.
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 5);
    /// HTTP/2 `REFUSED_STREAM`.
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 6);
    /// Status codes of the policy.
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 7);
    /// `retriable-headers` (accepted; never matches: no response headers here).
    pub const RETRIABLE_HEADERS: RetryOn = RetryOn(1 << 8);
    /// `envoy-ratelimited` (accepted; never matches).
    pub const ENVOY_RATELIMITED: RetryOn = RetryOn(1 << 9);
    /// `http3-post-connect-failure` (accepted; never matches).
    pub const HTTP3_POST_CONNECT_FAILURE: RetryOn = RetryOn(1 << 10);
    /// grpc-status 1.
    pub const CANCELLED: RetryOn = RetryOn(1 << 11);
    /// grpc-status 4.
    pub const DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 12);
    /// grpc-status 13.
    pub const INTERNAL: RetryOn = RetryOn(1 << 13);
    /// grpc-status 8.
    pub const RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 14);
    /// grpc-status 14.
    pub const UNAVAILABLE: RetryOn = RetryOn(1 << 15);

    fn from_token(token: &str) -> Option<RetryOn> {
        Some(match token {
            "5xx" => Self::FIVE_XX,
            "gateway-error" => Self::GATEWAY_ERROR,
            "reset" => Self::RESET,
            "reset-before-request" => Self::RESET_BEFORE_REQUEST,
            "connect-failure" => Self::CONNECT_FAILURE,
            "retriable-4xx" => Self::RETRIABLE_4XX,
            "refused-stream" => Self::REFUSED_STREAM,
            "retriable-status-codes" => Self::RETRIABLE_STATUS_CODES,
            "retriable-headers" => Self::RETRIABLE_HEADERS,
            "envoy-ratelimited" => Self::ENVOY_RATELIMITED,
            "http3-post-connect-failure" => Self::HTTP3_POST_CONNECT_FAILURE,
            "cancelled" => Self::CANCELLED,
            "deadline-exceeded" => Self::DEADLINE_EXCEEDED,
            "internal" => Self::INTERNAL,
            "resource-exhausted" => Self::RESOURCE_EXHAUSTED,
            "unavailable" => Self::UNAVAILABLE,
            _ => return None,
        })
    }

    /// True when any condition of `other` is set.
    pub fn has(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }

    fn insert(&mut self, other: RetryOn) {
        self.0 |= other.0;
    }
}

/// Status codes Go's `http.StatusText` knows: Istio treats only these
/// numbers in `retryOn` as status codes.
fn is_known_status(code: u16) -> bool {
    matches!(code,
        100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426
        | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511)
}

/// Istio `parseRetryOn` (tokens trimmed, known status codes split out,
/// `retriable-status-codes` added when codes are present), refusing tokens
/// Istio's validation rejects.
fn parse_retry_on(s: &str) -> Result<(RetryOn, Vec<u16>), String> {
    let mut on = RetryOn::default();
    let mut codes = Vec::new();
    for token in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if let Ok(code) = token.parse::<u16>()
            && is_known_status(code)
        {
            codes.push(code);
            continue;
        }
        match RetryOn::from_token(token) {
            Some(flag) => on.insert(flag),
            None => return Err(format!("{token:?} is not a valid retryOn policy")),
        }
    }
    if !codes.is_empty() {
        on.insert(RetryOn::RETRIABLE_STATUS_CODES);
    }
    Ok((on, codes))
}

/// A compiled retry policy (Envoy `RetryPolicy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePolicy {
    /// Retries after the first attempt.
    pub num_retries: u32,
    /// Conditions.
    pub retry_on: RetryOn,
    /// `retriable_status_codes`.
    pub codes: Vec<u16>,
    /// Per-attempt timeout.
    pub per_try_timeout_ms: Option<u32>,
    /// Backoff base interval.
    pub backoff_base_ms: u32,
    /// `retryIgnorePreviousHosts: false`: a retry may go to an endpoint
    /// already tried (the host avoids them by default).
    pub reuse_hosts: bool,
}

impl RoutePolicy {
    /// Istio's built-in default policy.
    pub fn istio_default() -> Self {
        let (retry_on, codes) = parse_retry_on(DEFAULT_RETRY_ON).unwrap_or_default();
        RoutePolicy {
            num_retries: DEFAULT_NUM_RETRIES,
            retry_on,
            codes,
            per_try_timeout_ms: None,
            backoff_base_ms: DEFAULT_BACKOFF_BASE_MS,
            reuse_hosts: false,
        }
    }

    /// Istio `ConvertPolicy`: `None` when `attempts` is 0 (no retries).
    fn convert(r: &HttpRetry, route: &str) -> Result<Option<Self>, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            route: route.to_owned(),
            message,
        };
        if r.attempts < 0 {
            return Err(invalid("attempts cannot be negative".into()));
        }
        // Validate retryOn even when attempts is 0, as the webhook does.
        let parsed = r
            .retry_on
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(parse_retry_on)
            .transpose()
            .map_err(invalid)?;
        if r.attempts == 0 {
            return Ok(None);
        }
        let mut policy = RoutePolicy::istio_default();
        policy.num_retries = u32::try_from(r.attempts).unwrap_or(0);
        if let Some((on, codes)) = parsed {
            policy.retry_on = on;
            policy.codes = codes;
        }
        policy.per_try_timeout_ms = r
            .per_try_timeout
            .filter(|d| !d.is_zero())
            .map(|d| d.as_millis_u32());
        if let Some(b) = r.backoff.filter(|d| !d.is_zero()) {
            policy.backoff_base_ms = b.as_millis_u32();
        }
        policy.reuse_hosts = r.retry_ignore_previous_hosts == Some(false);
        Ok(Some(policy))
    }

    /// Envoy `wouldRetryFromHeaders` / `wouldRetryFromReset`.
    pub fn should_retry(&self, outcome: Outcome, grpc_status: Option<u32>) -> bool {
        let on = self.retry_on;
        let no_response =
            on.has(RetryOn::FIVE_XX) || on.has(RetryOn::GATEWAY_ERROR) || on.has(RetryOn::RESET);
        match outcome {
            Outcome::Response(code) => {
                (on.has(RetryOn::FIVE_XX) && (500..600).contains(&code))
                    || (on.has(RetryOn::GATEWAY_ERROR) && matches!(code, 502..=504))
                    || (on.has(RetryOn::RETRIABLE_4XX) && code == 409)
                    || (on.has(RetryOn::RETRIABLE_STATUS_CODES) && self.codes.contains(&code))
                    || grpc_status.is_some_and(|g| {
                        (g == 1 && on.has(RetryOn::CANCELLED))
                            || (g == 4 && on.has(RetryOn::DEADLINE_EXCEEDED))
                            || (g == 8 && on.has(RetryOn::RESOURCE_EXHAUSTED))
                            || (g == 13 && on.has(RetryOn::INTERNAL))
                            || (g == 14 && on.has(RetryOn::UNAVAILABLE))
                    })
            }
            Outcome::ConnectFailure => {
                on.has(RetryOn::CONNECT_FAILURE)
                    || on.has(RetryOn::RESET_BEFORE_REQUEST)
                    || no_response
            }
            Outcome::RefusedStream => on.has(RetryOn::REFUSED_STREAM) || no_response,
            Outcome::Reset | Outcome::Timeout => no_response,
        }
    }

    /// Envoy `JitteredExponentialBackOffStrategy` (max = 10 × base) for the
    /// `retry`-th retry (1-based): uniform in `[0, (2^n − 1) × base)`, where
    /// `n` stops growing once that bound exceeds the max, capped at the max.
    pub fn backoff_ms(&self, retry: u32, random: u64) -> u32 {
        let base = u64::from(self.backoff_base_ms.max(1));
        let max = base * 10;
        let mut n = 1u32;
        while n < retry && ((1u64 << n) - 1) * base <= max {
            n += 1;
        }
        let bound = ((1u64 << n.min(62)) - 1) * base;
        u32::try_from((random % bound).min(max)).unwrap_or(u32::MAX)
    }
}

/// How an upstream attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Response(u16),
    /// Reset or disconnect without a response.
    Reset,
    /// The connection could not be established.
    ConnectFailure,
    /// HTTP/2 `REFUSED_STREAM`.
    RefusedStream,
    /// The per-try timeout elapsed.
    Timeout,
}

/// The retry decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Return this attempt's result.
    GiveUp,
    /// Send again after `backoff_ms`.
    After {
        /// Jittered backoff.
        backoff_ms: u32,
    },
}

/// Timeouts to apply to a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Overall timeout across attempts (none = no timeout).
    pub route_ms: Option<u32>,
    /// Timeout of each attempt.
    pub per_try_ms: Option<u32>,
}

#[derive(Debug)]
struct RouteSettings {
    timeout_ms: u32,
    /// `None`: retries disabled (`attempts: 0`).
    retry: Option<RoutePolicy>,
}

/// Compiled retry configuration: route id → policy.
#[derive(Debug)]
pub struct RetryPolicies {
    default: Option<RoutePolicy>,
    routes: HashMap<String, RouteSettings>,
}

impl Default for RetryPolicies {
    fn default() -> Self {
        RetryPolicies {
            default: Some(RoutePolicy::istio_default()),
            routes: HashMap::new(),
        }
    }
}

impl RetryPolicies {
    /// Parses and compiles the filter's JSON configuration (empty = defaults only).
    pub fn from_json(config: &[u8]) -> Result<Self, ConfigError> {
        if config.iter().all(u8::is_ascii_whitespace) {
            return Ok(RetryPolicies::default());
        }
        Self::compile(&serde_json::from_slice(config)?)
    }

    /// Compiles a configuration.
    pub fn compile(cfg: &RetryConfig) -> Result<Self, ConfigError> {
        let default = match &cfg.default_policy {
            None => Some(RoutePolicy::istio_default()),
            Some(p) => RoutePolicy::convert(p, "defaultPolicy")?,
        };
        let mut routes = HashMap::with_capacity(cfg.routes.len());
        for (id, p) in &cfg.routes {
            let retry = match &p.retries {
                None => default.clone(),
                Some(r) => RoutePolicy::convert(r, id)?,
            };
            let timeout_ms = p.timeout.map(|d| d.as_millis_u32()).unwrap_or(0);
            routes.insert(id.clone(), RouteSettings { timeout_ms, retry });
        }
        Ok(RetryPolicies { default, routes })
    }

    fn lookup(&self, route: Option<&str>) -> (u32, Option<&RoutePolicy>) {
        match route.and_then(|r| self.routes.get(r)) {
            Some(s) => (s.timeout_ms, s.retry.as_ref()),
            None => (0, self.default.as_ref()),
        }
    }

    /// Can [`RetryPolicies::timeouts`] ever return a timeout the host does
    /// not apply by itself? Only a configured route timeout or per-try
    /// timeout can (a gRPC request's own `grpc-timeout` is enforced by the
    /// host without the filter); when neither exists the filter needs no
    /// request-headers hook.
    pub fn sets_timeouts(&self) -> bool {
        let per_try = |p: Option<&RoutePolicy>| p.is_some_and(|p| p.per_try_timeout_ms.is_some());
        per_try(self.default.as_ref())
            || self
                .routes
                .values()
                .any(|r| r.timeout_ms != 0 || per_try(r.retry.as_ref()))
    }

    /// Does any policy let retries reuse endpoints already tried? Only
    /// then does the filter need the request-headers hook for it.
    pub fn reuses_hosts(&self) -> bool {
        let reuse = |p: Option<&RoutePolicy>| p.is_some_and(|p| p.reuse_hosts);
        reuse(self.default.as_ref()) || self.routes.values().any(|r| reuse(r.retry.as_ref()))
    }

    /// The policy in force for a route (`None`: no retries).
    pub fn policy(&self, route: Option<&str>) -> Option<&RoutePolicy> {
        self.lookup(route).1
    }

    /// Timeouts for a request on `route`. `grpc_timeout_ms` is the parsed
    /// `grpc-timeout` of a gRPC request (`Some(0)` or `None` = none); Istio
    /// caps it with the route timeout and uses it instead (Envoy
    /// `max_grpc_timeout`).
    pub fn timeouts(
        &self,
        route: Option<&str>,
        grpc_request: bool,
        grpc_timeout_ms: Option<u32>,
    ) -> Timeouts {
        let (timeout_ms, retry) = self.lookup(route);
        let mut route_ms = timeout_ms;
        if grpc_request {
            let header = grpc_timeout_ms.unwrap_or(0);
            route_ms = if timeout_ms != 0 && (header == 0 || header > timeout_ms) {
                timeout_ms
            } else {
                header
            };
        }
        Timeouts {
            route_ms: (route_ms != 0).then_some(route_ms),
            per_try_ms: retry.and_then(|r| r.per_try_timeout_ms),
        }
    }

    /// Decides after attempt `number` (1 = first) failed with `outcome`.
    pub fn on_attempt(
        &self,
        route: Option<&str>,
        number: u32,
        outcome: Outcome,
        grpc_status: Option<u32>,
        random: &mut dyn FnMut() -> u64,
    ) -> Retry {
        let Some(policy) = self.policy(route) else {
            return Retry::GiveUp;
        };
        if number == 0 || number > policy.num_retries || !policy.should_retry(outcome, grpc_status)
        {
            return Retry::GiveUp;
        }
        Retry::After {
            backoff_ms: policy.backoff_ms(number, random()),
        }
    }
}

/// Parses a `grpc-timeout` header (`<1-8 digits><H|M|S|m|u|n>`) into
/// milliseconds (sub-millisecond values truncated).
pub fn grpc_timeout_ms(value: &str) -> Option<u32> {
    let value = value.trim();
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let ms = match unit {
        "H" => n * 3_600_000,
        "M" => n * 60_000,
        "S" => n * 1000,
        "m" => n,
        "u" => n / 1000,
        "n" => n / 1_000_000,
        _ => return None,
    };
    Some(u32::try_from(ms).unwrap_or(u32::MAX))
}
