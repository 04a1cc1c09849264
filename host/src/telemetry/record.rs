//! What the proxy collects about one request for metrics, access logs and
//! traces, and the peer (source workload) information behind Istio's
//! `source_*` labels.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use mesh_common::model::{WaypointEndpoint, WaypointService};
use tokio::time::Instant;

use super::expr::{Attributes, Value};
use super::trace::SpanContext;
use crate::upstream::Replay;

/// The downstream peer, as Istio's `source_*` labels describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// `spiffe://td/ns/x/sa/y` when mTLS authenticated the peer.
    pub principal: Option<String>,
    /// Owning workload (deployment) name.
    pub workload: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// `app` label.
    pub app: Option<String>,
    /// `version` label.
    pub version: Option<String>,
    /// Canonical service.
    pub canonical_service: Option<String>,
    /// Canonical revision.
    pub canonical_revision: Option<String>,
    /// Cluster id.
    pub cluster: Option<String>,
}

impl PeerInfo {
    /// From an endpoint known to the config (same labels as destinations).
    pub fn from_endpoint(ep: &WaypointEndpoint, principal: Option<String>) -> Self {
        let label = |k: &str| ep.labels.get(k).cloned();
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        PeerInfo {
            principal: principal.or_else(|| non_empty(&ep.identity)),
            workload: non_empty(&ep.workload_name).or_else(|| non_empty(&ep.name)),
            namespace: non_empty(&ep.namespace),
            app: label("app").or_else(|| non_empty(&ep.canonical_name)),
            version: label("version").or_else(|| non_empty(&ep.canonical_revision)),
            canonical_service: non_empty(&ep.canonical_name).or_else(|| label("app")),
            canonical_revision: non_empty(&ep.canonical_revision).or_else(|| label("version")),
            cluster: None,
        }
    }

    /// From W3C `baggage` as ztunnel and Istio proxies send it
    /// (`k8s.namespace.name=shop,k8s.deployment.name=web,service.name=web,service.version=v1`).
    pub fn merge_baggage(&mut self, baggage: &str) {
        for kv in baggage.split(',') {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let (k, v) = (
                k.trim(),
                v.trim().split(';').next().unwrap_or("").to_string(),
            );
            if v.is_empty() {
                continue;
            }
            match k {
                "k8s.namespace.name" => self.namespace = Some(v),
                "k8s.cluster.name" => self.cluster = Some(v),
                "service.name" => self.canonical_service = Some(v),
                "service.version" => self.canonical_revision = Some(v),
                "app.name" => self.app = Some(v),
                "app.version" => self.version = Some(v),
                k if k.starts_with("k8s.") && k.ends_with(".name") && k != "k8s.pod.name" => {
                    self.workload = Some(v);
                }
                _ => {}
            }
        }
        if self.app.is_none() {
            self.app = self.canonical_service.clone();
        }
        if self.version.is_none() {
            self.version = self.canonical_revision.clone();
        }
    }

    /// Namespace from the principal when nothing better is known.
    pub fn fill_from_principal(&mut self) {
        if self.namespace.is_none()
            && let Some(p) = &self.principal
            && let Some(i) = p.find("/ns/")
        {
            let rest = &p[i + 4..];
            self.namespace = Some(rest.split('/').next().unwrap_or("").to_string());
        }
    }
}

/// Body bytes of the request: known, or read from a streamed body.
#[derive(Debug, Clone, Default)]
pub enum BodyBytes {
    /// Known size.
    #[default]
    None,
    /// Known size.
    Known(u64),
    /// Counted while streaming.
    Streamed(Replay),
}

impl BodyBytes {
    /// Bytes so far.
    pub fn get(&self) -> u64 {
        match self {
            BodyBytes::None => 0,
            BodyBytes::Known(n) => *n,
            BodyBytes::Streamed(r) => r.bytes_read(),
        }
    }
}

impl RequestRecord {
    /// gRPC messages in the request body so far.
    pub fn request_messages(&self) -> u64 {
        match &self.request_body {
            BodyBytes::Streamed(r) => r.grpc_messages(),
            _ => self.request_grpc.messages(),
        }
    }
}

/// One request's telemetry.
#[derive(Debug)]
pub struct RequestRecord {
    /// When the request headers arrived.
    pub start: Instant,
    /// Wall clock of `start`.
    pub start_time: SystemTime,
    /// Method.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Authority.
    pub authority: String,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// gRPC request (content-type `application/grpc*`).
    pub grpc: bool,
    /// Request headers as received, for the access log, tag expressions and
    /// spans; empty when none of them is enabled for the request
    /// ([`super::Telemetry::needs_request_headers`]).
    pub headers: HeaderMap,
    /// Downstream peer.
    pub source: Arc<PeerInfo>,
    /// Downstream address (HBONE peer or TCP peer).
    pub source_address: SocketAddr,
    /// Address the downstream connection arrived on.
    pub local_address: SocketAddr,
    /// Arrived over mTLS (HBONE).
    pub mtls: bool,
    /// gRPC messages of a request body buffered for the filters (a
    /// streamed body counts its own, see [`BodyBytes::Streamed`]).
    pub request_grpc: super::grpc_frames::GrpcFrames,
    /// gRPC messages of the response body.
    pub response_grpc: super::grpc_frames::GrpcFrames,
    /// Destination service.
    pub service: Option<Arc<WaypointService>>,
    /// The service the client addressed (telemetry settings follow it,
    /// whatever the route chose).
    pub addressed: Option<Arc<WaypointService>>,
    /// Service port.
    pub service_port: u16,
    /// The endpoint of the last attempt.
    pub upstream: Option<Arc<WaypointEndpoint>>,
    /// `ip:port` of the last attempt.
    pub upstream_address: Option<SocketAddr>,
    /// Cluster name.
    pub upstream_cluster: Option<String>,
    /// Matched route (from the routing filter's metadata).
    pub route: Option<String>,
    /// Authorization policy that decided (filter metadata).
    pub authz_policy: Option<String>,
    /// End-user principal (JWT).
    pub request_principal: Option<String>,
    /// Status sent downstream (0 when none).
    pub response_code: u16,
    /// gRPC status (headers or trailers).
    pub grpc_status: Option<String>,
    /// Envoy response flags.
    pub flags: Vec<String>,
    /// Why the proxy answered itself (access log `response_code_details`).
    pub details: Option<String>,
    /// Size of the request headers.
    pub request_header_bytes: u64,
    /// Request body size.
    pub request_body: BodyBytes,
    /// Size of the response headers.
    pub response_header_bytes: u64,
    /// Response body bytes sent.
    pub response_body_bytes: u64,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Time from the first attempt to the response headers.
    pub upstream_service_time: Option<Duration>,
    /// The waypoint's span.
    pub span: Option<SpanContext>,
}

/// Approximate wire size of a header block (`name: value\r\n`).
pub fn header_bytes(h: &HeaderMap) -> u64 {
    h.iter()
        .map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64)
        .sum()
}

impl RequestRecord {
    /// Response flags as Istio prints them (`-` for none).
    pub fn flags_label(&self) -> String {
        if self.flags.is_empty() {
            "-".to_string()
        } else {
            self.flags.join(",")
        }
    }

    /// Duration from the request headers to the end of the response.
    pub fn duration(&self) -> Duration {
        self.start.elapsed()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Attributes for RequestRecord {
    fn get(&self, path: &str, index: Option<&str>) -> Value {
        let s = |v: &str| Value::Str(v.to_string());
        let opt = |v: &Option<String>| v.as_deref().map_or(Value::Null, s);
        match (path, index) {
            ("response.code", None) => Value::Int(i64::from(self.response_code)),
            ("response.flags", None) => s(&self.flags_label()),
            ("response.grpc_status", None) => opt(&self.grpc_status),
            ("response.size" | "response.total_size", None) => {
                Value::Int(self.response_body_bytes as i64)
            }
            ("response.duration", None) => Value::Int(self.duration().as_millis() as i64),
            ("request.method", None) => s(&self.method),
            ("request.path", None) => s(&self.path),
            ("request.url_path", None) => s(self.path.split('?').next().unwrap_or("")),
            ("request.host", None) => s(&self.authority),
            ("request.protocol", None) => s(self.protocol),
            ("request.id", None) => self.header("x-request-id").map_or(Value::Null, s),
            ("request.useragent", None) => self.header("user-agent").map_or(Value::Null, s),
            ("request.size", None) => Value::Int(self.request_body.get() as i64),
            ("request.headers", Some(h)) => {
                self.header(&h.to_ascii_lowercase()).map_or(Value::Null, s)
            }
            ("source.principal", None) => opt(&self.source.principal),
            ("source.address", None) => s(&self.source_address.ip().to_string()),
            ("source.workload.namespace", None) => opt(&self.source.namespace),
            ("destination.port", None) => Value::Int(i64::from(self.service_port)),
            ("destination.service.host", None) => self
                .service
                .as_ref()
                .map_or(Value::Null, |x| s(&x.hostname)),
            ("upstream.address", None) => self
                .upstream_address
                .map_or(Value::Null, |a| s(&a.to_string())),
            ("connection.mtls", None) => Value::Bool(self.mtls),
            ("request.auth.principal", None) => opt(&self.request_principal),
            _ => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baggage_and_principal_fill_peer_info() {
        let mut p = PeerInfo {
            principal: Some("spiffe://cluster.local/ns/shop/sa/web".into()),
            ..Default::default()
        };
        p.fill_from_principal();
        assert_eq!(p.namespace.as_deref(), Some("shop"));
        p.merge_baggage("k8s.cluster.name=c1, k8s.namespace.name=shop,k8s.deployment.name=web,service.name=web,service.version=v1");
        assert_eq!(p.workload.as_deref(), Some("web"));
        assert_eq!(p.cluster.as_deref(), Some("c1"));
        assert_eq!(p.app.as_deref(), Some("web"));
        assert_eq!(p.version.as_deref(), Some("v1"));
    }
}
