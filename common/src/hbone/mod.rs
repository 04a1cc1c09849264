//! HBONE: TCP tunnelled as HTTP/2 `CONNECT` streams inside mutual TLS, as
//! Istio's ztunnel and waypoints speak it on port 15008. Written on the `h2`
//! crate directly (no hyper), with windows sized for throughput
//! ([`HboneConfig`]), keepalive pings and pooled, multiplexed client
//! connections.
//!
//! # How to use
//!
//! **Server** (ztunnel inbound, waypoint):
//! 1. Build a TLS config for the identity you serve:
//!    `let tls = mesh_common::tls::server_config(rotating_cert)?;`
//! 2. `let server = HboneServer::new(listener, tls, HboneConfig::default());`
//! 3. `server.run(handler, shutdown_token).await` — the handler is called once
//!    per CONNECT stream with an [`InboundRequest`]: look at
//!    [`InboundRequest::peer`] (the client's SPIFFE ID from mTLS),
//!    [`InboundRequest::target`] (the `ip:port` authority) and headers, then
//!    either [`InboundRequest::reject`] with a status (401 on policy deny,
//!    503 when the upstream is unreachable, 400 on a bad authority) or
//!    [`InboundRequest::accept`] to get an [`H2Stream`]
//!    (`AsyncRead + AsyncWrite`); [`copy_bidirectional`] pumps it to a
//!    `TcpStream` with half-close.
//!
//! **Client** (ztunnel outbound, waypoint upstream):
//! 1. One [`HboneClient`] per process (or per network namespace, with
//!    [`HboneClient::with_dialer`]).
//! 2. `client.connect(&rotating_cert, hbone_addr, Some(&server_id), "10.0.0.7:8080", HeaderMap::new()).await?`
//!    returns an [`H2Stream`] once the peer answered 200; any other status is
//!    [`HboneError::Status`]. Connections are pooled per
//!    (source identity, HBONE address, expected server identity) and carry up
//!    to [`HboneConfig::max_streams_per_connection`] streams each.
//!
//! Half-close: shutting down the write side of an [`H2Stream`] sends
//! `END_STREAM`; the peer reads EOF and can keep writing back. A reset from
//! the peer with `NO_ERROR`/`CANCEL` reads as EOF.

mod client;
mod server;
mod stream;

use std::time::Duration;

pub use client::{Dialer, HboneClient, PoolKey, TcpDialer};
pub use server::{HboneServer, InboundRequest, serve_connection};
pub use stream::{H2Stream, copy_bidirectional};

/// The HBONE port.
pub const HBONE_PORT: u16 = 15008;

/// HTTP/2 and pool tuning shared by client and server.
#[derive(Debug, Clone)]
pub struct HboneConfig {
    /// Per-stream flow-control window (bytes).
    pub stream_window: u32,
    /// Per-connection flow-control window (bytes). Larger than the stream
    /// window so one stream cannot starve the others.
    pub connection_window: u32,
    /// Largest DATA frame we accept (bytes).
    pub max_frame_size: u32,
    /// Streams per pooled client connection before another one is opened.
    pub max_streams_per_connection: usize,
    /// Interval between keepalive PINGs on idle and busy connections.
    pub ping_interval: Duration,
    /// A connection whose PING is not answered within this is dropped.
    pub ping_timeout: Duration,
    /// Limit for TCP connect + TLS handshake + h2 handshake.
    pub connect_timeout: Duration,
    /// Limit for the peer's answer to a CONNECT.
    pub response_timeout: Duration,
    /// A client connection with no streams for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for HboneConfig {
    fn default() -> Self {
        Self {
            stream_window: 4 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            max_frame_size: 1024 * 1024,
            max_streams_per_connection: 100,
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Errors on the HBONE path.
#[derive(Debug, thiserror::Error)]
pub enum HboneError {
    /// TCP connect to the HBONE endpoint failed.
    #[error(
        "could not connect to HBONE endpoint {addr}: {source} (is a ztunnel or waypoint listening on {addr}, and is port 15008 reachable?)"
    )]
    Connect {
        /// Endpoint dialled.
        addr: std::net::SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// TLS handshake failed (untrusted CA, wrong identity, no client cert...).
    #[error(
        "mTLS handshake with {addr} failed: {source} (check that both sides trust the same mesh root and identities)"
    )]
    Handshake {
        /// Peer address.
        addr: std::net::SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// HTTP/2 protocol error.
    #[error("HTTP/2 error: {0}")]
    H2(#[from] h2::Error),
    /// The peer answered the CONNECT with a non-200 status.
    #[error(
        "peer refused CONNECT with status {0} (401: denied by authorization policy; 503: destination unreachable)"
    )]
    Status(http::StatusCode),
    /// Something took longer than the configured timeout.
    #[error("HBONE {0} timed out")]
    Timeout(&'static str),
    /// The CONNECT authority is not `ip:port`.
    #[error("CONNECT authority {0:?} is not an ip:port address")]
    BadAuthority(String),
    /// TLS material could not be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The pooled connection is gone.
    #[error("HBONE connection closed")]
    Closed,
}
