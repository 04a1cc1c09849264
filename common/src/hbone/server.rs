//! HBONE server: TLS accept, HTTP/2 server, one handler call per CONNECT.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use super::stream::H2Stream;
use super::{HboneConfig, HboneError};
use crate::identity::SpiffeId;

/// One CONNECT stream waiting for an answer.
pub struct InboundRequest {
    peer: Option<SpiffeId>,
    authority: String,
    headers: HeaderMap,
    remote: SocketAddr,
    local: SocketAddr,
    respond: SendResponse<Bytes>,
    recv: RecvStream,
}

impl std::fmt::Debug for InboundRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundRequest")
            .field("peer", &self.peer)
            .field("authority", &self.authority)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl InboundRequest {
    /// The client's SPIFFE ID from its mTLS certificate.
    pub fn peer(&self) -> Option<&SpiffeId> {
        self.peer.as_ref()
    }
    /// The CONNECT authority as sent (normally `ip:port` of the destination pod).
    pub fn authority(&self) -> &str {
        &self.authority
    }
    /// The authority parsed as a socket address.
    pub fn target(&self) -> Result<SocketAddr, HboneError> {
        self.authority
            .parse()
            .map_err(|_| HboneError::BadAuthority(self.authority.clone()))
    }
    /// Request headers (e.g. `baggage`, `traceparent`, `forwarded`).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// Address of the HBONE client (the source node's or waypoint's IP).
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }
    /// Local address the HBONE connection arrived on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Answers 200 and returns the tunnelled stream.
    pub fn accept(self) -> Result<H2Stream, HboneError> {
        self.accept_with(HeaderMap::new())
    }

    /// Answers 200 with extra response headers.
    pub fn accept_with(mut self, headers: HeaderMap) -> Result<H2Stream, HboneError> {
        let mut resp = Response::new(());
        *resp.headers_mut() = headers;
        let send = self.respond.send_response(resp, false)?;
        Ok(H2Stream::new(send, self.recv, None))
    }

    /// Refuses the stream with `status` (e.g. 401 policy deny, 503 upstream
    /// unreachable) and ends it.
    pub fn reject(mut self, status: StatusCode) {
        let mut resp = Response::new(());
        *resp.status_mut() = status;
        if let Err(e) = self.respond.send_response(resp, true) {
            debug!(error = %e, "could not send HBONE rejection");
        }
    }
}

/// An HBONE listener: TLS with client certificates, then HTTP/2.
pub struct HboneServer {
    listener: TcpListener,
    tls: TlsAcceptor,
    cfg: HboneConfig,
    on_accept: Option<Box<dyn Fn() + Send + Sync>>,
}

impl HboneServer {
    /// Wraps a bound listener. `tls` should come from
    /// [`crate::tls::server_config`].
    pub fn new(listener: TcpListener, tls: Arc<rustls::ServerConfig>, cfg: HboneConfig) -> Self {
        Self {
            listener,
            tls: TlsAcceptor::from(tls),
            cfg,
            on_accept: None,
        }
    }

    /// Calls `f` for every TCP connection accepted (a metrics hook).
    #[must_use]
    pub fn on_accept(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_accept = Some(Box::new(f));
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `shutdown` is cancelled; each CONNECT stream
    /// is handed to `handler` on its own task. On shutdown every connection
    /// gets a GOAWAY and finishes its open streams.
    pub async fn run<H, F>(self, handler: H, shutdown: CancellationToken)
    where
        H: Fn(InboundRequest) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        loop {
            let (tcp, remote) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "HBONE accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            if let Some(f) = &self.on_accept {
                f();
            }
            let _ = tcp.set_nodelay(true);
            let local = tcp.local_addr().unwrap_or(remote);
            let tls = self.tls.clone();
            let cfg = self.cfg.clone();
            let handler = handler.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let accepted = tokio::time::timeout(cfg.connect_timeout, tls.accept(tcp)).await;
                let stream = match accepted {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        debug!(%remote, error = %e, "HBONE TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%remote, "HBONE TLS handshake timed out");
                        return;
                    }
                };
                let peer = crate::tls::peer_identity(stream.get_ref().1);
                if let Err(e) =
                    serve_connection(stream, peer, remote, local, &cfg, handler, shutdown).await
                {
                    debug!(%remote, error = %e, "HBONE connection ended with error");
                }
            });
        }
    }
}

/// Serves HTTP/2 on an already authenticated stream: every CONNECT becomes
/// an [`InboundRequest`] for `handler`; other methods get 405, a CONNECT
/// without authority gets 400. Sends keepalive PINGs and drops the
/// connection when they go unanswered.
pub async fn serve_connection<IO, H, F>(
    io: IO,
    peer: Option<SpiffeId>,
    remote: SocketAddr,
    local: SocketAddr,
    cfg: &HboneConfig,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), HboneError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(InboundRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(cfg.stream_window)
        .initial_connection_window_size(cfg.connection_window)
        .max_frame_size(cfg.max_frame_size)
        .max_send_buffer_size(cfg.stream_window as usize)
        .max_header_list_size(16 * 1024)
        .max_concurrent_streams(
            u32::try_from(cfg.max_streams_per_connection * 10).unwrap_or(u32::MAX),
        );
    let mut conn = tokio::time::timeout(cfg.connect_timeout, builder.handshake::<_, Bytes>(io))
        .await
        .map_err(|_| HboneError::Timeout("HTTP/2 handshake"))??;
    let keepalive = super::client::keepalive(conn.ping_pong(), cfg.clone());
    tokio::pin!(keepalive);
    let mut draining = false;
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                None => return Ok(()),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok((req, respond))) => dispatch(req, respond, &peer, remote, local, &handler),
            },
            _ = &mut keepalive => {
                debug!(%remote, "HBONE peer stopped answering PINGs; closing");
                return Err(HboneError::Timeout("keepalive PING"));
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.graceful_shutdown();
            }
        }
    }
}

fn dispatch<H, F>(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    peer: &Option<SpiffeId>,
    remote: SocketAddr,
    local: SocketAddr,
    handler: &H,
) where
    H: Fn(InboundRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let status = if req.method() != Method::CONNECT {
        Some(StatusCode::METHOD_NOT_ALLOWED)
    } else if req.uri().authority().is_none() {
        Some(StatusCode::BAD_REQUEST)
    } else {
        None
    };
    if let Some(status) = status {
        let mut resp = Response::new(());
        *resp.status_mut() = status;
        let _ = respond.send_response(resp, true);
        return;
    }
    let (parts, recv) = req.into_parts();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    trace!(%remote, %authority, "HBONE CONNECT");
    let inbound = InboundRequest {
        peer: peer.clone(),
        authority,
        headers: parts.headers,
        remote,
        local,
        respond,
        recv,
    };
    tokio::spawn(handler(inbound));
}
