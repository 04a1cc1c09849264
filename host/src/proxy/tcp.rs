//! Service ports whose protocol is not HTTP (`tcp`, `tls`, `mongo`,
//! `mysql`, `redis`, ... by `appProtocol` or Istio's port-name prefixes):
//! Istio's TCP filter chain. The waypoint does not parse the stream: it
//! authorizes the connection with the L4 part of the AuthorizationPolicies
//! attached to it (reference §1.8: an ALLOW rule that needs an HTTP
//! attribute is skipped, a DENY rule ignores those attributes), picks the
//! destination by the VirtualServices' `tcp` routes (else the addressed
//! service), an endpoint with that cluster's load balancer, and forwards
//! the bytes, over HBONE when the endpoint is in the mesh.
//!
//! Ports that declare no protocol are detected (`super::sniff`): HTTP when
//! the client's first bytes are an HTTP request, this TCP path otherwise.
//!
//! A denied connection is refused at the CONNECT (`403`) when the port is
//! declared TCP, or closed once detection accepted it; either way the
//! source node proxy closes the client's connection, which is what the
//! client of an Envoy waypoint sees when its RBAC network filter denies.

use std::borrow::Cow;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use filter_authz::{Authorizer, ConnectionInput, Decision};
use filter_model::routing::{RoutingConfig, TcpRoute};
use mesh_common::hbone::{H2Stream, InboundRequest};
use mesh_common::model::{FilterConfig, WaypointEndpoint, WaypointService};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::sniff::Rewind;
use super::{Destination, Downstream, Proxy};
use crate::respond::flags;
use crate::telemetry::{TcpConnection, security_policy};

/// Copy buffer per direction (tokio's default 8 KiB means many small
/// HTTP/2 DATA frames on the HBONE side).
const COPY_BUF: usize = 64 * 1024;

/// Application protocols Istio treats as opaque TCP (port-name prefixes and
/// `appProtocol` values). Declared HTTP protocols are served as HTTP;
/// ports with no (or an unknown) protocol are detected (`super::sniff`).
const TCP_PROTOCOLS: [&str; 6] = ["tcp", "tls", "https", "mongo", "mysql", "redis"];

/// Is `port` of `svc` declared as a non-HTTP protocol?
pub fn is_tcp_port(svc: &WaypointService, port: u16) -> bool {
    let Some(p) = svc.ports.iter().find(|p| p.port == port) else {
        return false;
    };
    let proto = p
        .app_protocol
        .as_deref()
        .unwrap_or_else(|| p.name.split('-').next().unwrap_or_default())
        .to_ascii_lowercase();
    TCP_PROTOCOLS.contains(&proto.as_str())
}

/// The L4 view of the first-party authorization filters' policies,
/// compiled natively for connections that never reach an HTTP hook: the
/// `authz-custom` entry (CUSTOM policies: only those with an unknown or
/// ambiguous provider apply on TCP, as deny rules, istiod's `buildTCP`),
/// then `authz` (DENY, ALLOW, AUDIT).
#[derive(Debug)]
pub struct TcpAuthz {
    parts: Vec<AuthzPart>,
}

/// One authorization filter of the chain.
#[derive(Debug)]
struct AuthzPart {
    /// The filter's service scope (empty: every service).
    services: Vec<String>,
    /// The compiled policies, or why they did not compile (then every TCP
    /// connection in scope is refused: fail closed).
    authorizer: Result<Authorizer, String>,
}

/// Chain entry names of the first-party authorization filters, in the
/// order they run.
const AUTHZ_FILTERS: [&str; 2] = ["authz-custom", "authz"];

impl TcpAuthz {
    /// From the chain of a waypoint config: the filters named
    /// `authz-custom` and `authz`.
    pub fn from_filters(filters: &[FilterConfig]) -> Option<Arc<Self>> {
        let parts: Vec<AuthzPart> = AUTHZ_FILTERS
            .iter()
            .filter_map(|name| filters.iter().find(|f| f.name == *name))
            .map(|fc| {
                let authorizer =
                    Authorizer::from_json(&fc.config_bytes()).map_err(|e| e.to_string());
                if let Err(e) = &authorizer {
                    tracing::warn!(filter = %fc.name, error = %e, "authz policies do not compile for TCP ports; TCP connections will be refused");
                }
                AuthzPart {
                    services: fc.services.clone(),
                    authorizer,
                }
            })
            .collect();
        (!parts.is_empty()).then(|| Arc::new(TcpAuthz { parts }))
    }

    /// `Ok` to let the connection through, `Err(reason)` to refuse it.
    fn check(&self, down: &Downstream, dest: &Destination, service: &str) -> Result<(), String> {
        let principal = down.peer.as_ref().map(|p| p.principal());
        let source = down.remote.ip().to_string();
        let target = down.target.map(|t| t.ip().to_string()).unwrap_or_default();
        let input = ConnectionInput {
            source_principal: principal.as_deref(),
            source_address: &source,
            destination_address: &target,
            destination_port: dest.port,
            destination_service: Some(service),
        };
        for part in &self.parts {
            if !part.services.is_empty() && !part.services.iter().any(|s| s == service) {
                continue;
            }
            let a = part
                .authorizer
                .as_ref()
                .map_err(|e| format!("policies unusable: {e}"))?;
            match a.evaluate_connection(&input) {
                Decision::NoPolicies | Decision::Allow { .. } => {}
                Decision::Deny { policy } => {
                    return Err(match policy {
                        Some(p) => format!("denied by {p}"),
                        None => "no ALLOW policy matched".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// VirtualService `tcp` routes per service, from the routing filter's
/// configuration (the operator puts them next to the `http` routes; the
/// WASM filter never sees a TCP connection, so the waypoint applies them).
#[derive(Debug, Default)]
pub struct TcpRoutes {
    by_host: HashMap<String, Vec<TcpRoute>>,
    /// `sourceNamespace` matches compare with it.
    waypoint_namespace: Option<String>,
}

impl TcpRoutes {
    /// From the chain of a waypoint config: the filter named `routing`;
    /// None when no VirtualService has `tcp` routes.
    pub fn from_filters(filters: &[FilterConfig]) -> Option<Arc<Self>> {
        let fc = filters.iter().find(|f| f.name == "routing")?;
        let cfg: RoutingConfig = match serde_json::from_value(fc.config.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "routing config unreadable for TCP routes");
                return None;
            }
        };
        let mut by_host: HashMap<String, Vec<TcpRoute>> = HashMap::new();
        for s in cfg.services {
            let routes: Vec<TcpRoute> =
                s.virtual_services.into_iter().flat_map(|v| v.tcp).collect();
            if !routes.is_empty() {
                by_host.entry(s.host).or_default().extend(routes);
            }
        }
        (!by_host.is_empty()).then(|| {
            Arc::new(TcpRoutes {
                by_host,
                waypoint_namespace: cfg.waypoint_namespace,
            })
        })
    }

    /// The first route of `service` a connection to `port` at `destination`
    /// (the address the client dialled) takes.
    fn route(
        &self,
        service: &str,
        port: u16,
        destination: Option<std::net::IpAddr>,
    ) -> Option<&TcpRoute> {
        let ns = self.waypoint_namespace.as_deref();
        self.by_host
            .get(service)?
            .iter()
            .find(|r| r.matches(port, destination, ns))
    }
}

/// Istio's TCP label set for a connection (`request_protocol="tcp"`).
fn labels<'a>(
    proxy: &'a Proxy,
    down: &'a Downstream,
    svc: &'a WaypointService,
    upstream: Option<&'a WaypointEndpoint>,
    flags: &'static str,
) -> crate::telemetry::LabelSet<'a> {
    let t = &proxy.telemetry;
    let mut l = t.peer_labels(&down.source, upstream, Some(svc));
    l.extend([
        ("request_protocol", Cow::Borrowed("tcp")),
        ("response_flags", Cow::Borrowed(flags)),
        (
            "connection_security_policy",
            Cow::Borrowed(security_policy(down.mtls, &down.source)),
        ),
    ]);
    l
}

/// A CONNECT to a TCP port: not answered yet (a declared TCP port), or
/// already accepted because protocol detection had to read from it.
pub(crate) enum Inbound {
    /// Declared TCP: refusals answer the CONNECT.
    Pending(InboundRequest),
    /// Detected as not HTTP: refusals close the stream.
    Detected(Rewind<H2Stream>),
}

impl Inbound {
    fn reject(self, status: http::StatusCode) {
        match self {
            Inbound::Pending(req) => req.reject(status),
            Inbound::Detected(stream) => drop(stream),
        }
    }

    fn accept(self) -> Result<Rewind<H2Stream>, String> {
        match self {
            Inbound::Pending(req) => req.accept().map(Rewind::new).map_err(|e| e.to_string()),
            Inbound::Detected(s) => Ok(s),
        }
    }
}

/// Serves one HBONE CONNECT to a TCP port of `svc`.
pub(crate) async fn serve(
    proxy: Arc<Proxy>,
    req: Inbound,
    down: Downstream,
    dest: Destination,
    svc: Arc<WaypointService>,
    drain: CancellationToken,
) {
    let snap = proxy.snapshot();
    let refuse = |req: Inbound, status, flags, why: &dyn std::fmt::Display| {
        tracing::debug!(service = %svc.hostname, port = dest.port, peer = ?down.peer, reason = %why, "TCP connection refused");
        proxy
            .telemetry
            .tcp_refused(&svc.hostname, &labels(&proxy, &down, &svc, None, flags));
        req.reject(status);
    };
    if let Some(authz) = &snap.tcp_authz
        && let Err(reason) = authz.check(&down, &dest, &svc.hostname)
    {
        // Envoy's RBAC network filter leaves no response flag.
        return refuse(req, http::StatusCode::FORBIDDEN, "-", &reason);
    }
    // VirtualService `tcp` routes, else the addressed service and port.
    let route = snap
        .tcp_routes
        .as_ref()
        .and_then(|r| r.route(&svc.hostname, dest.port, down.target.map(|t| t.ip())));
    let (to, port, subset) = match route {
        Some(route) => match route.pick(rand::random::<f64>()) {
            Some(d) => (
                d.host.clone(),
                d.port.map_or(dest.port, |p| p.number),
                d.subset.clone(),
            ),
            None => {
                return refuse(
                    req,
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    flags::NO_HEALTHY_UPSTREAM,
                    &"every TCP route destination weighs 0",
                );
            }
        },
        None => (svc.hostname.clone(), dest.port, None),
    };
    let Some(cluster) = snap.clusters.get(&to, port, subset.as_deref()).cloned() else {
        return refuse(
            req,
            http::StatusCode::SERVICE_UNAVAILABLE,
            flags::NO_CLUSTER,
            &format!("no cluster for {to}:{port} (subset {subset:?})"),
        );
    };
    drop(snap);
    let host = match cluster.choose(None, &[]) {
        Ok(h) => h,
        Err(e) => {
            return refuse(
                req,
                http::StatusCode::SERVICE_UNAVAILABLE,
                flags::NO_HEALTHY_UPSTREAM,
                &e,
            );
        }
    };
    let mut upstream = match proxy.connector.dial(&host, cluster.connect_timeout).await {
        Ok(io) => io,
        Err(e) => {
            return refuse(
                req,
                http::StatusCode::SERVICE_UNAVAILABLE,
                flags::UPSTREAM_CONNECT_FAILURE,
                &e,
            );
        }
    };
    let downstream = match req.accept() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "HBONE accept failed");
            return;
        }
    };
    let conn = proxy.telemetry.tcp_opened(
        &svc.hostname,
        &labels(&proxy, &down, &svc, Some(&host.endpoint), "-"),
    );
    let _active = host.start_request();
    let mut downstream = Counted {
        inner: downstream,
        conn: &conn,
    };
    // `tcp.maxConnectionDuration` closes the connection when reached
    // (Envoy's `max_downstream_connection_duration`, as istiod sets it on
    // a waypoint's TCP proxy).
    let lifetime = cluster.max_connection_duration;
    tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut downstream, &mut upstream, COPY_BUF, COPY_BUF) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "TCP connection ended with an error");
            }
        }
        () = drain.cancelled() => {}
        () = async {
            match lifetime {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        } => {
            tracing::debug!(service = %svc.hostname, "TCP connection reached maxConnectionDuration; closing");
        }
    }
}

/// The downstream side of a forwarded connection, counting bytes into the
/// connection's metrics as they pass.
struct Counted<'a, S> {
    inner: S,
    conn: &'a TcpConnection,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.conn.received((buf.filled().len() - before) as u64);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.conn.sent(*n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
