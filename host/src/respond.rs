//! Every way the proxy itself can fail a request, mapped to a fixed status,
//! an Envoy response flag and an Envoy-compatible body — in this one module
//! (linkerd's `errors/respond.rs`), so metrics, access logs and clients see
//! the same answer for the same cause wherever it arises.
//!
//! | Cause | Status | Flag |
//! |---|---|---|
//! | no route (no service addressed, none chosen) | 404 | `NR` |
//! | route to an unknown service or subset | 503 | `NC` |
//! | no healthy endpoint | 503 | `UH` |
//! | connection-pool limit exceeded | 503 | `UO` |
//! | upstream connect failure | 503 | `UF` |
//! | upstream reset before response headers | 503 | `UR` |
//! | route timeout or per-try timeout | 504 | `UT` |
//! | filter failed closed | 503 | `WF` (set by the runtime) |
//! | downstream went away | — | `DC` |
//! | malformed request | 400 | `DPE` |

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

/// Envoy's short response flags used by the host.
pub mod flags {
    /// No route configured for the request.
    pub const NO_ROUTE: &str = "NR";
    /// The route's cluster does not exist.
    pub const NO_CLUSTER: &str = "NC";
    /// No healthy upstream host.
    pub const NO_HEALTHY_UPSTREAM: &str = "UH";
    /// Upstream overflow (circuit breaker).
    pub const UPSTREAM_OVERFLOW: &str = "UO";
    /// Upstream connection failure.
    pub const UPSTREAM_CONNECT_FAILURE: &str = "UF";
    /// Upstream reset.
    pub const UPSTREAM_RESET: &str = "UR";
    /// Upstream request timeout.
    pub const UPSTREAM_TIMEOUT: &str = "UT";
    /// Downstream connection terminated.
    pub const DOWNSTREAM_DISCONNECT: &str = "DC";
    /// Downstream protocol error.
    pub const DOWNSTREAM_PROTOCOL_ERROR: &str = "DPE";
    /// Retries exhausted (the retry filter sets it through metadata).
    pub const RETRY_LIMIT_EXCEEDED: &str = "URX";
}

/// A request the proxy answers itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    /// Nothing addressed a known service and no filter chose a route.
    #[error(
        "no route for authority {authority:?}: it names no service bound to this waypoint and no routing filter chose one"
    )]
    NoRoute {
        /// The request's authority.
        authority: String,
    },
    /// A route names a service (or subset) the waypoint has no cluster for.
    #[error(
        "route to {service} port {port} subset {subset:?} has no cluster: the service is not bound to this waypoint or the DestinationRule has no such subset"
    )]
    NoCluster {
        /// Destination service.
        service: String,
        /// Service port.
        port: u16,
        /// Subset.
        subset: Option<String>,
    },
    /// Every endpoint is unhealthy, ejected, or there are none.
    #[error(
        "no healthy upstream in {cluster} (all endpoints unready or ejected by outlier detection)"
    )]
    NoHealthyUpstream {
        /// Cluster name.
        cluster: String,
    },
    /// A connection-pool limit was hit.
    #[error(
        "upstream overflow in {cluster}: connectionPool {limit} of {max} reached; raise it in the DestinationRule if this load is expected"
    )]
    Overflow {
        /// Cluster name.
        cluster: String,
        /// Which limit (`http1MaxPendingRequests`, `http2MaxRequests`, ...).
        limit: &'static str,
        /// Its value.
        max: u64,
    },
    /// Connecting to the chosen endpoint failed.
    #[error("upstream connect error to {endpoint}: {reason}")]
    ConnectFailure {
        /// `ip:port` (or HBONE address) dialled.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The upstream reset the stream or closed the connection before
    /// answering.
    #[error("upstream {endpoint} reset before response headers: {reason}")]
    Reset {
        /// Endpoint.
        endpoint: String,
        /// Why.
        reason: String,
        /// The upstream refused the stream (HTTP/2 REFUSED_STREAM).
        refused: bool,
    },
    /// The route timeout or the per-try timeout elapsed.
    #[error("upstream request timeout ({which} timeout)")]
    Timeout {
        /// `route` or `per-try`.
        which: &'static str,
    },
    /// The downstream request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl ProxyError {
    /// HTTP status of the local reply.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoCluster { .. }
            | ProxyError::NoHealthyUpstream { .. }
            | ProxyError::Overflow { .. }
            | ProxyError::ConnectFailure { .. }
            | ProxyError::Reset { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Envoy response flag.
    pub fn flag(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => flags::NO_ROUTE,
            ProxyError::NoCluster { .. } => flags::NO_CLUSTER,
            ProxyError::NoHealthyUpstream { .. } => flags::NO_HEALTHY_UPSTREAM,
            ProxyError::Overflow { .. } => flags::UPSTREAM_OVERFLOW,
            ProxyError::ConnectFailure { .. } => flags::UPSTREAM_CONNECT_FAILURE,
            ProxyError::Reset { .. } => flags::UPSTREAM_RESET,
            ProxyError::Timeout { .. } => flags::UPSTREAM_TIMEOUT,
            ProxyError::BadRequest(_) => flags::DOWNSTREAM_PROTOCOL_ERROR,
        }
    }

    /// The body Envoy sends for the same cause (clients and tests match on
    /// these strings).
    pub fn body(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } | ProxyError::NoCluster { .. } => "",
            ProxyError::NoHealthyUpstream { .. } => "no healthy upstream",
            ProxyError::Overflow { .. } => {
                "upstream connect error or disconnect/reset before headers. reset reason: overflow"
            }
            ProxyError::ConnectFailure { .. } => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
            }
            ProxyError::Reset { refused: true, .. } => {
                "upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset"
            }
            ProxyError::Reset { .. } => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
            }
            ProxyError::Timeout { .. } => "upstream request timeout",
            ProxyError::BadRequest(_) => "Bad Request",
        }
    }

    /// The local reply.
    pub fn to_response(&self) -> Response<Bytes> {
        local_reply(self.status(), self.body())
    }
}

/// A plain-text local reply with a content length.
pub fn local_reply(status: StatusCode, body: &'static str) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from_static(body.as_bytes()));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp
}

/// The gRPC status Envoy maps an HTTP status to for local replies.
pub fn grpc_status_for(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// A local reply to a gRPC request, as Envoy sends it: trailers-only (HTTP
/// 200, `grpc-status` and `grpc-message` in the headers). Replies that are
/// already gRPC pass through.
pub fn to_grpc(resp: Response<Bytes>) -> Response<Bytes> {
    let is_grpc = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc || resp.status() == StatusCode::OK {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(Bytes::new());
    *out.headers_mut() = parts.headers;
    out.headers_mut().remove(CONTENT_LENGTH);
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    out.headers_mut().insert(
        "grpc-status",
        HeaderValue::from(grpc_status_for(parts.status)),
    );
    let msg: String = String::from_utf8_lossy(&body)
        .bytes()
        .flat_map(|b| {
            if b.is_ascii_graphic() && b != b'%' || b == b' ' {
                vec![b as char]
            } else {
                format!("%{b:02X}").chars().collect()
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&msg)
        && !msg.is_empty()
    {
        out.headers_mut().insert("grpc-message", v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_its_status_and_flag() {
        let cases: Vec<(ProxyError, u16, &str)> = vec![
            (
                ProxyError::NoRoute {
                    authority: "x".into(),
                },
                404,
                "NR",
            ),
            (
                ProxyError::NoCluster {
                    service: "s".into(),
                    port: 80,
                    subset: None,
                },
                503,
                "NC",
            ),
            (
                ProxyError::NoHealthyUpstream {
                    cluster: "c".into(),
                },
                503,
                "UH",
            ),
            (
                ProxyError::Overflow {
                    cluster: "c".into(),
                    limit: "maxConnections",
                    max: 1,
                },
                503,
                "UO",
            ),
            (
                ProxyError::ConnectFailure {
                    endpoint: "e".into(),
                    reason: "r".into(),
                },
                503,
                "UF",
            ),
            (
                ProxyError::Reset {
                    endpoint: "e".into(),
                    reason: "r".into(),
                    refused: false,
                },
                503,
                "UR",
            ),
            (ProxyError::Timeout { which: "route" }, 504, "UT"),
            (ProxyError::BadRequest("b".into()), 400, "DPE"),
        ];
        for (e, status, flag) in cases {
            assert_eq!(e.status().as_u16(), status, "{e}");
            assert_eq!(e.flag(), flag, "{e}");
            let r = e.to_response();
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(r.body().len(), e.body().len());
        }
        assert_eq!(
            ProxyError::NoHealthyUpstream {
                cluster: "c".into()
            }
            .to_response()
            .body(),
            &Bytes::from_static(b"no healthy upstream")
        );
    }

    #[test]
    fn grpc_local_replies_are_trailers_only() {
        let r = to_grpc(ProxyError::Timeout { which: "route" }.to_response());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["grpc-message"], "upstream request timeout");
        assert!(r.body().is_empty());
        let r = to_grpc(local_reply(StatusCode::FORBIDDEN, "RBAC: access denied"));
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()["grpc-message"], "RBAC: access denied");
    }
}
