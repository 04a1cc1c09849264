//! HTTP/2 plumbing for the operator's port: a listener (TLS optional) that
//! hands every request to one handler, and a client connector.

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::{CertificateDer, ServerName};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Body type of every response (and of client requests).
pub type ResponseBody = BoxBody<Bytes, Infallible>;

/// HTTP/2 keepalive ping interval (detects a vanished peer).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a keepalive ping may go unanswered.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP connect + TLS handshake timeout of the client.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Transport errors.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Could not reach the operator.
    #[error(
        "cannot connect to {addr}: {source} (is the operator running and port 15012 reachable?)"
    )]
    Connect {
        /// Target.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Timed out connecting.
    #[error("connecting to {0} timed out after {CONNECT_TIMEOUT:?}")]
    ConnectTimeout(String),
    /// The endpoint URI is unusable.
    #[error("invalid operator endpoint {0:?}: expected http://host:port or https://host:port")]
    BadEndpoint(String),
    /// TLS handshake failed.
    #[error("TLS handshake with {addr} failed: {source} (check the CA bundle and the server name)")]
    Tls {
        /// Target.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// HTTP/2 failure.
    #[error("HTTP/2 error: {0}")]
    Http(#[from] hyper::Error),
    /// Listener failure.
    #[error("accept failed: {0}")]
    Accept(std::io::Error),
}

/// What the server knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Remote address.
    pub peer: SocketAddr,
    /// Client certificate chain, when TLS with client auth was used.
    pub peer_certificates: Option<Vec<CertificateDer<'static>>>,
}

/// A response with a complete body.
pub fn full(
    status: http::StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// A request handler.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>, Arc<ConnInfo>) -> BoxFuture<'static, Response<ResponseBody>>
        + Send
        + Sync,
>;

/// Serve HTTP/1.1 and HTTP/2 (TLS when `tls` is set, ALPN `h2`/`http/1.1`)
/// on `listener` until `shutdown` is cancelled; open connections are then
/// dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
    shutdown: CancellationToken,
) -> Result<(), TransportError> {
    let acceptor = tls.map(|cfg| {
        let mut cfg = (*cfg).clone();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = async move {
                match acceptor {
                    Some(acc) => match acc.accept(stream).await {
                        Ok(tls) => {
                            let certs = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
                            let info = Arc::new(ConnInfo {
                                peer,
                                peer_certificates: certs,
                            });
                            serve_conn(TokioIo::new(tls), info, handler).await
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    },
                    None => {
                        let info = Arc::new(ConnInfo {
                            peer,
                            peer_certificates: None,
                        });
                        serve_conn(TokioIo::new(stream), info, handler).await
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

async fn serve_conn<IO>(io: TokioIo<IO>, info: Arc<ConnInfo>, handler: Handler)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let fut = handler(req, info.clone());
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(KEEPALIVE_INTERVAL))
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(8 * 1024 * 1024);
    if let Err(e) = builder.serve_connection(io, svc).await {
        tracing::debug!(error = %e, "connection ended with error");
    }
}

/// Where the operator is and how to talk to it.
#[derive(Clone)]
pub struct Endpoint {
    /// `http://host:port` (cleartext HTTP/2) or `https://host:port`.
    pub uri: http::Uri,
    /// TLS client config (required for `https`). ALPN is set to `h2`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// TLS server name to verify; defaults to the URI host.
    pub server_name: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("uri", &self.uri)
            .field("tls", &self.tls.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Endpoint {
    /// A cleartext endpoint (`http://addr`).
    pub fn plaintext(addr: SocketAddr) -> Self {
        Endpoint {
            uri: format!("http://{addr}").parse().unwrap_or_default(),
            tls: None,
            server_name: None,
        }
    }

    /// The endpoint's authority (`host:port`).
    pub fn authority(&self) -> Result<String, TransportError> {
        let auth = self
            .uri
            .authority()
            .ok_or_else(|| TransportError::BadEndpoint(self.uri.to_string()))?;
        let default_port = if self.tls.is_some() { 443 } else { 80 };
        Ok(format!(
            "{}:{}",
            auth.host(),
            auth.port_u16().unwrap_or(default_port)
        ))
    }

    /// Build a request URI for `path` on this endpoint.
    pub fn uri_for(&self, path: &str) -> Result<http::Uri, TransportError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.authority()?)
            .parse()
            .map_err(|_| TransportError::BadEndpoint(self.uri.to_string()))
    }
}

/// An HTTP/2 connection to the operator.
pub type Connection = hyper::client::conn::http2::SendRequest<ResponseBody>;

/// Open an HTTP/2 connection (TLS per `endpoint`) with keepalive pings.
pub async fn connect(endpoint: &Endpoint) -> Result<Connection, TransportError> {
    let addr = endpoint.authority()?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| TransportError::ConnectTimeout(addr.clone()))?
        .map_err(|source| TransportError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(KEEPALIVE_INTERVAL))
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(8 * 1024 * 1024);
    match &endpoint.tls {
        Some(cfg) => {
            let mut cfg = (**cfg).clone();
            cfg.alpn_protocols = vec![b"h2".to_vec()];
            let host = endpoint
                .server_name
                .clone()
                .or_else(|| endpoint.uri.host().map(str::to_string))
                .ok_or_else(|| TransportError::BadEndpoint(endpoint.uri.to_string()))?;
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|_| TransportError::BadEndpoint(endpoint.uri.to_string()))?;
            let tls = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
            )
            .await
            .map_err(|_| TransportError::ConnectTimeout(addr.clone()))?
            .map_err(|source| TransportError::Tls {
                addr: addr.clone(),
                source,
            })?;
            let (send, conn) = builder.handshake(TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "push connection closed");
                }
            });
            Ok(send)
        }
        None => {
            let (send, conn) = builder.handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "push connection closed");
                }
            });
            Ok(send)
        }
    }
}
