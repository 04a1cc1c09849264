//! Downstream listeners and graceful drain.
//!
//! - **HBONE** (15008): mTLS with client certificates, HTTP/2 `CONNECT`
//!   streams (`mesh_common::hbone`); each accepted stream is parsed as
//!   HTTP/1.1 or HTTP/2 (prior knowledge), the peer identity is the client
//!   certificate's SPIFFE ID and the CONNECT authority is the address the
//!   client dialled (service VIP or workload IP).
//!   CONNECTs to a service port declared as TCP (`tcp-*`, `appProtocol:
//!   tcp`, ...) are forwarded as bytes instead ([`super::tcp`]).
//! - **plain HTTP** (15080): HTTP/1.1 or h2c for local use; the service is
//!   taken from the authority.
//!
//! Drain: `stop_accept` closes the listeners; `drain` asks every connection
//! to finish (HTTP/1.1: `connection: close` after the in-flight request;
//! HTTP/2: GOAWAY, open streams complete). Connection tasks are tracked so
//! shutdown can wait for them.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use mesh_common::hbone::{HboneConfig, HboneServer, InboundRequest};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Downstream, Proxy, inbound, sniff, tcp};
use crate::cluster::port_protocol;

/// Streams per downstream HTTP/2 connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Largest request head (request line and headers) accepted.
pub const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;

/// Shared drain state of all listeners.
#[derive(Debug, Clone)]
pub struct Drain {
    /// Cancelled to stop accepting.
    pub stop_accept: CancellationToken,
    /// Cancelled to close connections gracefully.
    pub drain: CancellationToken,
    /// Connection tasks.
    pub tracker: TaskTracker,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            stop_accept: CancellationToken::new(),
            drain: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }
}

/// Serves HTTP/1.1 and HTTP/2 on one byte stream until it closes or drain.
pub async fn serve_connection<IO>(
    proxy: Arc<Proxy>,
    down: Arc<Downstream>,
    io: IO,
    drain: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let (p, d) = (proxy.clone(), down.clone());
        async move { Ok::<_, Infallible>(inbound::handle(p, d, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        // Envoy's default `max_request_headers_kb` (60 KiB) plus the
        // request line: a larger head is answered 431.
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_REQUEST_HEAD_BYTES as u32)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    // With upgrades: WebSocket requests are relayed (`inbound::upgrade`).
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "downstream connection ended with an error");
            }
        }
        () = drain.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Accepts plain HTTP connections until `stop_accept`, counting them in
/// `accepted`.
pub async fn serve_plain(proxy: Arc<Proxy>, listener: TcpListener, d: Drain, accepted: Counter) {
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the plain HTTP listener");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = d.stop_accept.cancelled() => return,
        };
        accepted.inc();
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().unwrap_or(remote);
        let down = Arc::new(Downstream {
            peer: None,
            remote,
            local,
            target: None,
            mtls: false,
            source: proxy.peer_info(None, remote, None),
        });
        d.tracker
            .spawn(serve_connection(proxy.clone(), down, tcp, d.drain.clone()));
    }
}

/// The original client address from `forwarded: for=...` (RFC 7239), as
/// the node proxy sends it on the CONNECT.
pub fn forwarded_for(h: &http::HeaderMap) -> Option<IpAddr> {
    let v = h.get("forwarded")?.to_str().ok()?;
    v.split([';', ','])
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("for"))
        .and_then(|(_, v)| {
            let v = v.trim_matches('"');
            let v = v
                .strip_prefix('[')
                .map_or(v, |x| x.split(']').next().unwrap_or(x));
            v.parse::<IpAddr>()
                .ok()
                .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
        })
}

async fn on_connect(proxy: Arc<Proxy>, req: InboundRequest, d: Drain) {
    let target = match req.target() {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(error = %e, "refusing HBONE CONNECT");
            req.reject(http::StatusCode::BAD_REQUEST);
            return;
        }
    };
    if d.drain.is_cancelled() {
        req.reject(http::StatusCode::SERVICE_UNAVAILABLE);
        return;
    }
    let peer = req.peer().cloned();
    let remote =
        forwarded_for(req.headers()).map_or(req.remote_addr(), |ip| SocketAddr::new(ip, 0));
    let local = req.local_addr();
    let baggage = req
        .headers()
        .get("baggage")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let down = Downstream {
        source: proxy.peer_info(peer.as_ref(), remote, baggage.as_deref()),
        peer,
        remote,
        local,
        target: Some(target),
        mtls: true,
    };
    // A service port declared as TCP: forward the bytes (L4 policy only);
    // declared HTTP: serve HTTP; neither: detect from the first bytes.
    let dest = proxy.snapshot().destination(Some(target), "");
    let stream = match &dest.service {
        Some(svc) if tcp::is_tcp_port(svc, dest.port) => Err(tcp::Inbound::Pending(req)),
        svc => {
            let stream = match req.accept() {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "HBONE accept failed");
                    return;
                }
            };
            if svc
                .as_ref()
                .is_some_and(|s| port_protocol(s, dest.port).is_none())
            {
                let detected = tokio::select! {
                    r = sniff::detect(stream) => r,
                    () = d.drain.cancelled() => return,
                };
                match detected {
                    Ok((sniff::Detected::Http, s)) => Ok(s),
                    Ok((sniff::Detected::Tcp, s)) => Err(tcp::Inbound::Detected(s)),
                    Err(e) => {
                        tracing::debug!(error = %e, "stream ended during protocol detection");
                        return;
                    }
                }
            } else {
                Ok(sniff::Rewind::new(stream))
            }
        }
    };
    let stream = match (stream, dest.service.clone()) {
        (Ok(s), _) => s,
        (Err(inbound), Some(svc)) => {
            let conn = tcp::serve(proxy, inbound, down, dest, svc, d.drain.clone());
            d.tracker.track_future(conn).await;
            return;
        }
        // TCP is only chosen for a known service.
        (Err(_), None) => return,
    };
    let down = Arc::new(down);
    d.tracker
        .track_future(serve_connection(proxy, down, stream, d.drain.clone()))
        .await;
}

/// Terminates HBONE until `stop_accept`, counting connections in
/// `accepted`.
pub async fn serve_hbone(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    d: Drain,
    accepted: Counter,
) {
    let server = HboneServer::new(listener, tls, HboneConfig::default()).on_accept(move || {
        accepted.inc();
    });
    let stop = d.stop_accept.clone();
    let handler = move |req: InboundRequest| on_connect(proxy.clone(), req, d.clone());
    server.run(handler, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_forms() {
        let f = |v: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert("forwarded", http::HeaderValue::from_static(v));
            forwarded_for(&h)
        };
        assert_eq!(f("for=10.0.0.5"), Some("10.0.0.5".parse().unwrap()));
        assert_eq!(
            f("proto=http;for=\"[2001:db8::1]:4711\""),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(f("for=\"10.1.2.3:555\""), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(f("by=x"), None);
    }
}
