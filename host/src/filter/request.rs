//! One request's trip through the chain: the views handed to the guests, the
//! actions they return applied to the real request and response, and the
//! fail policy when a filter fails.
//!
//! The proxy drives it:
//! 1. `RequestFilters::new(chain, connection)` when the request arrives;
//! 2. `on_request_headers(&mut parts)` — `Verdict::Respond` ends the request;
//!    `plan()` then holds the route, timeouts and delay the filters chose;
//! 3. if `request_body_limit()` is some, buffer the body and call
//!    `on_request_body`;
//! 4. after each upstream attempt that failed or answered >= 400,
//!    `on_attempt` says whether to retry;
//! 5. `on_response_headers(&mut parts)`, then, if `response_body_limit()`,
//!    `on_response_body`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{HeaderName, HeaderValue};

use super::bindings::types;
use super::chain::Chain;
use super::error::{FailureKind, FilterFailure};
use super::limits;
use super::loaded::LoadedFilter;

/// The downstream connection, as the filters see it.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// Peer SPIFFE identity without `spiffe://`, when mTLS authenticated it.
    pub source_principal: Option<String>,
    pub source: SocketAddr,
    /// What the client addressed (service VIP or pod IP, and port).
    pub destination: SocketAddr,
    /// FQDN of the service the client addressed.
    pub destination_service: Option<String>,
    pub mtls: bool,
}

/// The destination the filters chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDecision {
    pub service: String,
    pub subset: Option<String>,
    pub port: Option<u16>,
    pub endpoint: Option<String>,
}

/// What the request phase decided besides header mutations.
#[derive(Clone, Debug, Default)]
pub struct RequestPlan {
    pub route: Option<RouteDecision>,
    /// Overall timeout; `Some(ZERO)` means explicitly none.
    pub timeout: Option<Duration>,
    pub per_try_timeout: Option<Duration>,
    /// Total delay the filters injected (already waited).
    pub delay: Duration,
}

/// How the request phase ended.
#[derive(Debug)]
pub enum Verdict {
    Continue,
    /// Answer with this response; the response hooks of the filters before
    /// the one that answered have already run on it.
    Respond(http::Response<Bytes>),
}

/// The outcome of one upstream attempt.
#[derive(Clone, Debug)]
pub enum AttemptOutcome {
    Response(StatusCode),
    Reset,
    ConnectFailure,
    RefusedStream,
    Timeout,
}

#[derive(Clone, Debug)]
pub struct AttemptInfo {
    /// 1 for the first attempt.
    pub number: u32,
    pub outcome: AttemptOutcome,
    pub grpc_status: Option<u32>,
    pub elapsed: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    GiveUp,
    Retry {
        per_try_timeout: Option<Duration>,
        backoff: Duration,
    },
}

/// Well-known metadata keys the host reads.
pub mod keys {
    /// Appended to the `response_flags` of metrics and access logs.
    pub const RESPONSE_FLAG: &str = "mesh.response-flag";
    /// The matched route, for logs.
    pub const ROUTE: &str = "mesh.route";
    /// Mirrors of the request (`<service>|<subset>|<port>`, comma separated).
    pub const MIRROR: &str = "mesh.mirror";
    /// `reuse`: retries may go to endpoints already tried.
    pub const RETRY_HOSTS: &str = "mesh.retry.hosts";
    /// The policy that decided an authorization, for logs.
    pub const AUTHZ_POLICY: &str = "mesh.authz.policy";
}

/// Response flag of a request failed closed by a filter.
pub const FILTER_FAILURE_FLAG: &str = "WF";

pub(super) enum HeaderOp {
    Set(HeaderName, HeaderValue),
    Add(HeaderName, HeaderValue),
    Remove(HeaderName),
}

/// A request's state across the chain.
pub struct RequestFilters {
    pub(super) filters: Vec<Arc<LoadedFilter>>,
    pub(super) ctx: types::Context,
    pub(super) plan: RequestPlan,
    /// Response header actions returned during the request phase.
    pub(super) pending_response_ops: Vec<HeaderOp>,
    /// Filters (by index) whose response hooks run: all, or those before a
    /// filter that answered locally.
    pub(super) response_upto: usize,
    pub(super) failures: Vec<FilterFailure>,
    /// A filter failed and its fail-closed policy answered the request.
    pub(super) failed_closed: bool,
}

pub(super) fn invalid(filter: &LoadedFilter, hook: &'static str, detail: String) -> FilterFailure {
    FilterFailure {
        filter: filter.name().to_string(),
        hook,
        kind: FailureKind::InvalidResult,
        detail,
    }
}

pub(super) fn header_name(s: &str) -> Result<HeaderName, String> {
    if s.starts_with(':') {
        return Err(format!(
            "pseudo-header `{s}` cannot be set; use rewrite-path/rewrite-authority"
        ));
    }
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("invalid header name `{s}`"))
}

pub(super) fn header_value(s: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(s).map_err(|_| format!("invalid header value {s:?}"))
}

/// The guest's view of `h`: every header, or only the selected names.
pub(super) fn headers_view(
    h: &http::HeaderMap,
    only: Option<&[HeaderName]>,
) -> Vec<(String, String)> {
    let pair = |(k, v): (&HeaderName, &HeaderValue)| {
        (
            k.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        )
    };
    match only {
        None => h.iter().map(pair).collect(),
        Some(names) => names
            .iter()
            .flat_map(|n| h.get_all(n).iter().map(move |v| pair((n, v))))
            .collect(),
    }
}

pub(super) fn local_response(lr: types::LocalResponse) -> Result<http::Response<Bytes>, String> {
    let status = StatusCode::from_u16(lr.status)
        .map_err(|_| format!("invalid local response status {}", lr.status))?;
    if lr.body.len() > limits::MAX_LOCAL_BODY {
        return Err(format!(
            "local response body of {} bytes exceeds {} bytes",
            lr.body.len(),
            limits::MAX_LOCAL_BODY
        ));
    }
    let mut resp = http::Response::new(Bytes::from(lr.body));
    *resp.status_mut() = status;
    for (k, v) in lr.headers {
        resp.headers_mut()
            .append(header_name(&k)?, header_value(&v)?);
    }
    Ok(resp)
}

pub(super) fn fail_closed_response(f: &FilterFailure) -> http::Response<Bytes> {
    let mut resp = http::Response::new(Bytes::from(format!(
        "filter {} failed ({})\n",
        f.filter,
        f.kind.as_str()
    )));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

impl RequestFilters {
    /// Pins the chain's versions for this request (canaries drawn here).
    pub fn new(chain: &Chain, conn: ConnectionInfo) -> Self {
        let filters = chain.pick(|| rand::random::<f64>() * 100.0);
        let response_upto = filters.len();
        RequestFilters {
            filters,
            ctx: types::Context {
                connection: types::Connection {
                    source_principal: conn.source_principal,
                    source_address: conn.source.ip().to_string(),
                    source_port: conn.source.port(),
                    destination_address: conn.destination.ip().to_string(),
                    destination_port: conn.destination.port(),
                    destination_service: conn.destination_service,
                    mtls: conn.mtls,
                },
                request_auth: None,
                metadata: Vec::new(),
            },
            plan: RequestPlan::default(),
            pending_response_ops: Vec::new(),
            response_upto,
            failures: Vec::new(),
            failed_closed: false,
        }
    }

    /// The versions this request runs, as `(name, version)`.
    pub fn versions(&self) -> Vec<(&str, &str)> {
        self.filters
            .iter()
            .map(|f| (f.name(), f.version()))
            .collect()
    }

    pub fn plan(&self) -> &RequestPlan {
        &self.plan
    }

    /// A metadata entry set by a filter.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.ctx
            .metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The end-user identity a filter established (`iss/sub`).
    pub fn request_principal(&self) -> Option<&str> {
        self.ctx.request_auth.as_ref().map(|a| a.principal.as_str())
    }

    /// Failures seen so far (fail-open ones included).
    pub fn failures(&self) -> &[FilterFailure] {
        &self.failures
    }

    /// Response flags contributed by the filters (`mesh.response-flag`) and
    /// by filter failures (`WF`).
    pub fn response_flags(&self) -> Vec<&str> {
        let mut flags: Vec<&str> = self
            .ctx
            .metadata
            .iter()
            .filter(|(k, _)| k == keys::RESPONSE_FLAG)
            .map(|(_, v)| v.as_str())
            .collect();
        if self.failed_closed {
            flags.push(FILTER_FAILURE_FLAG);
        }
        flags
    }

    /// Largest request body any filter wants to see, if any does.
    pub fn request_body_limit(&self) -> Option<usize> {
        self.filters
            .iter()
            .filter_map(|f| f.request_body_limit())
            .max()
    }

    /// Largest response body any filter wants to see, if any does.
    pub fn response_body_limit(&self) -> Option<usize> {
        self.filters[..self.response_upto]
            .iter()
            .filter_map(|f| f.response_body_limit())
            .max()
    }
}
