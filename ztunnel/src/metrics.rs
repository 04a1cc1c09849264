//! Istio's standard TCP metrics, served on 15020.
//!
//! `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total`,
//! `istio_tcp_sent_bytes_total` (destination → client, "response" bytes) and
//! `istio_tcp_received_bytes_total` (client → destination, "request" bytes),
//! with Istio's label set. ztunnel reports as `source` for outbound
//! connections and `destination` for inbound ones. Missing values are
//! `unknown`; canonical revisions default to `latest`.

use std::sync::Arc;

use mesh_common::model::{Service, Workload};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Cluster name reported in `*_cluster` labels.
pub const CLUSTER_ID: &str = "Kubernetes";
/// `response_flags` when nothing went wrong.
pub const FLAG_NONE: &str = "-";
/// `response_flags` for a connection refused by an AuthorizationPolicy.
pub const FLAG_DENIED: &str = "AuthorizationPolicyDenied";
/// `response_flags` for an upstream connection failure.
pub const FLAG_CONNECT_FAILURE: &str = "ConnectionFailure";
/// Value for unknown labels.
pub const UNKNOWN: &str = "unknown";

/// Who reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// The client side ztunnel (outbound).
    Source,
    /// The server side ztunnel (inbound).
    Destination,
}

/// Istio's label set for TCP metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(missing_docs)]
pub struct TcpLabels {
    pub reporter: String,
    pub source_workload: String,
    pub source_canonical_service: String,
    pub source_canonical_revision: String,
    pub source_workload_namespace: String,
    pub source_principal: String,
    pub source_app: String,
    pub source_version: String,
    pub source_cluster: String,
    pub destination_service: String,
    pub destination_service_namespace: String,
    pub destination_service_name: String,
    pub destination_workload: String,
    pub destination_canonical_service: String,
    pub destination_canonical_revision: String,
    pub destination_workload_namespace: String,
    pub destination_principal: String,
    pub destination_app: String,
    pub destination_version: String,
    pub destination_cluster: String,
    pub request_protocol: String,
    pub response_flags: String,
    pub connection_security_policy: String,
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        UNKNOWN.to_string()
    } else {
        s.to_string()
    }
}

struct Side {
    workload: String,
    canonical_service: String,
    canonical_revision: String,
    namespace: String,
    principal: String,
    cluster: String,
}

/// One side's labels. `principal` is the identity the connection proves
/// (mTLS); without it the source principal is `unknown` (Istio's ztunnel
/// never takes it from the registry: a plaintext peer proves nothing), the
/// destination principal the workload's identity.
fn side(w: Option<&Workload>, principal: Option<&str>, registry_identity: bool) -> Side {
    let principal = principal.map(str::to_string);
    match w {
        Some(w) => {
            let name = if w.workload_name.is_empty() {
                &w.name
            } else {
                &w.workload_name
            };
            let canonical = if w.canonical_name.is_empty() {
                name
            } else {
                &w.canonical_name
            };
            let revision = if w.canonical_revision.is_empty() {
                "latest"
            } else {
                &w.canonical_revision
            };
            Side {
                workload: or_unknown(name),
                canonical_service: or_unknown(canonical),
                canonical_revision: revision.to_string(),
                namespace: or_unknown(&w.namespace),
                principal: match principal {
                    Some(p) => p,
                    None if registry_identity => w.identity(),
                    None => UNKNOWN.into(),
                },
                cluster: CLUSTER_ID.to_string(),
            }
        }
        None => Side {
            workload: UNKNOWN.into(),
            canonical_service: UNKNOWN.into(),
            canonical_revision: UNKNOWN.into(),
            namespace: UNKNOWN.into(),
            principal: principal.unwrap_or(UNKNOWN.into()),
            cluster: UNKNOWN.into(),
        },
    }
}

/// Everything that labels one proxied connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo<'a> {
    /// Reporter.
    pub reporter: Reporter,
    /// Source workload, if known.
    pub src: Option<&'a Workload>,
    /// Source principal (SPIFFE URI) if proven or known.
    pub src_principal: Option<&'a str>,
    /// Destination workload, if known.
    pub dst: Option<&'a Workload>,
    /// Destination principal (SPIFFE URI).
    pub dst_principal: Option<&'a str>,
    /// Destination service, if the client addressed one.
    pub service: Option<&'a Service>,
    /// mTLS (HBONE) or plaintext.
    pub mtls: bool,
}

impl TcpLabels {
    /// Labels for `info` with response flags `flags`.
    pub fn new(info: &ConnInfo<'_>, flags: &str) -> Self {
        let s = side(info.src, info.src_principal, false);
        let d = side(info.dst, info.dst_principal, true);
        let (svc, svc_ns, svc_name) = match info.service {
            Some(svc) => (
                svc.hostname.clone(),
                svc.namespace.clone(),
                svc.name.clone(),
            ),
            None => (UNKNOWN.into(), UNKNOWN.into(), UNKNOWN.into()),
        };
        TcpLabels {
            reporter: match info.reporter {
                Reporter::Source => "source".into(),
                Reporter::Destination => "destination".into(),
            },
            source_app: s.canonical_service.clone(),
            source_version: s.canonical_revision.clone(),
            source_workload: s.workload,
            source_canonical_service: s.canonical_service,
            source_canonical_revision: s.canonical_revision,
            source_workload_namespace: s.namespace,
            source_principal: s.principal,
            source_cluster: s.cluster,
            destination_service: svc,
            destination_service_namespace: svc_ns,
            destination_service_name: svc_name,
            destination_app: d.canonical_service.clone(),
            destination_version: d.canonical_revision.clone(),
            destination_workload: d.workload,
            destination_canonical_service: d.canonical_service,
            destination_canonical_revision: d.canonical_revision,
            destination_workload_namespace: d.namespace,
            destination_principal: d.principal,
            destination_cluster: d.cluster,
            request_protocol: "tcp".into(),
            response_flags: flags.to_string(),
            connection_security_policy: if info.mtls { "mutual_tls" } else { "unknown" }.into(),
        }
    }
}

/// The metric families.
pub struct Metrics {
    registry: Registry,
    opened: Family<TcpLabels, Counter>,
    closed: Family<TcpLabels, Counter>,
    sent: Family<TcpLabels, Counter>,
    received: Family<TcpLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers the families.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let opened = Family::<TcpLabels, Counter>::default();
        let closed = Family::<TcpLabels, Counter>::default();
        let sent = Family::<TcpLabels, Counter>::default();
        let received = Family::<TcpLabels, Counter>::default();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "istio_tcp_connections_opened",
            "The total number of TCP connections opened",
            opened.clone(),
        );
        registry.register(
            "istio_tcp_connections_closed",
            "The total number of TCP connections closed",
            closed.clone(),
        );
        registry.register(
            "istio_tcp_sent_bytes",
            "The size of total bytes sent during response in case of a TCP connection",
            sent.clone(),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "The size of total bytes received during request in case of a TCP connection",
            received.clone(),
        );
        Arc::new(Self {
            registry,
            opened,
            closed,
            sent,
            received,
        })
    }

    /// Counts a connection start.
    pub fn opened(&self, info: &ConnInfo<'_>) {
        self.opened
            .get_or_create(&TcpLabels::new(info, FLAG_NONE))
            .inc();
    }

    /// Counts a connection end with its byte counts.
    pub fn closed(&self, info: &ConnInfo<'_>, flags: &str, received: u64, sent: u64) {
        let labels = TcpLabels::new(info, flags);
        // Access log, one line per connection (Istio's "connection complete").
        tracing::info!(
            target: "ztunnel::access",
            reporter = %labels.reporter,
            src.workload = %labels.source_workload,
            src.identity = %labels.source_principal,
            dst.workload = %labels.destination_workload,
            dst.service = %labels.destination_service,
            dst.identity = %labels.destination_principal,
            flags = %labels.response_flags,
            bytes_recv = received,
            bytes_sent = sent,
            "connection complete"
        );
        self.closed.get_or_create(&labels).inc();
        if received > 0 {
            self.received.get_or_create(&labels).inc_by(received);
        }
        if sent > 0 {
            self.sent.get_or_create(&labels).inc_by(sent);
        }
    }

    /// Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(sa: &str) -> Workload {
        Workload {
            name: format!("{sa}-0"),
            namespace: "shop".into(),
            service_account: sa.into(),
            trust_domain: "cluster.local".into(),
            ..Default::default()
        }
    }

    /// The source principal is the identity the connection proved: on a
    /// plaintext connection it is `unknown` even when the source is a
    /// known workload (Istio's ztunnel); the destination principal is the
    /// destination workload's identity either way.
    #[test]
    fn source_principal_only_from_a_proven_identity() {
        let (src, dst) = (workload("web"), workload("orders"));
        let mut info = ConnInfo {
            reporter: Reporter::Destination,
            src: Some(&src),
            src_principal: None,
            dst: Some(&dst),
            dst_principal: None,
            service: None,
            mtls: false,
        };
        let l = TcpLabels::new(&info, "-");
        assert_eq!(l.source_principal, "unknown");
        assert_eq!(l.source_workload, "web-0");
        assert_eq!(
            l.destination_principal,
            "spiffe://cluster.local/ns/shop/sa/orders"
        );
        assert_eq!(l.connection_security_policy, "unknown");
        let proven = "spiffe://cluster.local/ns/shop/sa/web".to_string();
        info.src_principal = Some(&proven);
        info.mtls = true;
        let l = TcpLabels::new(&info, "-");
        assert_eq!(l.source_principal, proven);
        assert_eq!(l.connection_security_policy, "mutual_tls");
    }
}
