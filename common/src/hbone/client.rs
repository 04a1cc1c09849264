//! HBONE client: a pool of mTLS HTTP/2 connections, many CONNECT streams each.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use super::stream::H2Stream;
use super::{HboneConfig, HboneError};
use crate::identity::SpiffeId;
use crate::tls::{self, RotatingCert};

/// Opens the TCP connection under an HBONE connection (e.g. from inside a
/// pod's network namespace).
pub trait Dialer: Send + Sync + 'static {
    /// Connects to `addr`.
    fn dial(&self, addr: SocketAddr)
    -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;
}

/// Plain `TcpStream::connect` with `TCP_NODELAY`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

impl Dialer for TcpDialer {
    fn dial(
        &self,
        addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>> {
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(s)
        })
    }
}

/// What a pooled connection is shared by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Identity the client presents.
    pub source: SpiffeId,
    /// HBONE endpoint (`ip:15008`).
    pub dst: SocketAddr,
    /// Identity the server must prove (`None`: any identity in the trust domain).
    pub expected: Option<SpiffeId>,
}

struct Conn {
    sender: SendRequest<Bytes>,
    max_streams: usize,
    active: AtomicUsize,
    closed: AtomicBool,
    close: CancellationToken,
    idle_since: Mutex<Instant>,
}

impl Conn {
    fn try_reserve(self: &Arc<Self>) -> Option<Slot> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_streams).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.close.cancel();
    }
}

/// A reserved stream slot on a connection; released on drop.
struct Slot(Arc<Conn>);

impl Drop for Slot {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock() = Instant::now();
        }
    }
}

#[derive(Default)]
struct Entry {
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Serialises dialing so concurrent callers share one new connection.
    dialing: tokio::sync::Mutex<()>,
}

impl Entry {
    fn try_reserve(&self) -> Option<Slot> {
        let mut conns = self.conns.lock();
        conns.retain(|c| !c.closed.load(Ordering::Acquire));
        conns.iter().find_map(|c| c.try_reserve())
    }
}

/// Pooled HBONE client.
pub struct HboneClient {
    cfg: HboneConfig,
    dialer: Arc<dyn Dialer>,
    pool: Mutex<HashMap<PoolKey, Arc<Entry>>>,
}

impl std::fmt::Debug for HboneClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HboneClient")
            .field("connections", &self.connection_count())
            .finish_non_exhaustive()
    }
}

impl HboneClient {
    /// A client dialing with [`TcpDialer`].
    pub fn new(cfg: HboneConfig) -> Self {
        Self::with_dialer(cfg, Arc::new(TcpDialer))
    }

    /// A client dialing with `dialer`.
    pub fn with_dialer(cfg: HboneConfig, dialer: Arc<dyn Dialer>) -> Self {
        Self {
            cfg,
            dialer,
            pool: Mutex::new(HashMap::new()),
        }
    }

    /// Live pooled connections (all keys).
    pub fn connection_count(&self) -> usize {
        self.pool
            .lock()
            .values()
            .map(|e| {
                e.conns
                    .lock()
                    .iter()
                    .filter(|c| !c.closed.load(Ordering::Acquire))
                    .count()
            })
            .sum()
    }

    /// Closes every pooled connection (open streams are reset).
    pub fn clear(&self) {
        for entry in self.pool.lock().drain().map(|(_, e)| e) {
            for c in entry.conns.lock().drain(..) {
                c.mark_closed();
            }
        }
    }

    /// Opens a CONNECT stream to `authority` (the destination `ip:port`)
    /// through the HBONE endpoint `hbone_addr`, presenting `cert` and
    /// requiring the server to be `expected` (if given). Returns once the
    /// server answered 200.
    pub async fn connect(
        &self,
        cert: &Arc<RotatingCert>,
        hbone_addr: SocketAddr,
        expected: Option<&SpiffeId>,
        authority: &str,
        headers: HeaderMap,
    ) -> Result<H2Stream, HboneError> {
        let uri: Uri = authority
            .parse()
            .map_err(|_| HboneError::BadAuthority(authority.to_string()))?;
        if uri.authority().is_none() || uri.scheme().is_some() {
            return Err(HboneError::BadAuthority(authority.to_string()));
        }
        let key = PoolKey {
            source: cert.identity().clone(),
            dst: hbone_addr,
            expected: expected.cloned(),
        };
        let entry = self.entry(&key);
        // A pooled connection may have received GOAWAY since we looked:
        // retry once on a fresh one.
        for attempt in 0..2 {
            let slot = match entry.try_reserve() {
                Some(s) => s,
                None => {
                    let _dialing = entry.dialing.lock().await;
                    match entry.try_reserve() {
                        Some(s) => s,
                        None => {
                            let conn = self.dial(cert, &key).await?;
                            let slot = conn.try_reserve().ok_or(HboneError::Closed)?;
                            entry.conns.lock().push(conn);
                            slot
                        }
                    }
                }
            };
            let conn = slot.0.clone();
            let sender = match conn.sender.clone().ready().await {
                Ok(s) => s,
                Err(e) => {
                    debug!(error = %e, "pooled HBONE connection unusable");
                    conn.mark_closed();
                    if attempt == 0 {
                        continue;
                    }
                    return Err(e.into());
                }
            };
            return self.send_connect(sender, slot, uri, headers).await;
        }
        Err(HboneError::Closed)
    }

    fn entry(&self, key: &PoolKey) -> Arc<Entry> {
        let mut pool = self.pool.lock();
        if let Some(e) = pool.get(key) {
            return e.clone();
        }
        // Forget keys with no connection and nobody using them.
        pool.retain(|_, e| Arc::strong_count(e) > 1 || !e.conns.lock().is_empty());
        pool.entry(key.clone()).or_default().clone()
    }

    async fn send_connect(
        &self,
        mut sender: SendRequest<Bytes>,
        slot: Slot,
        uri: Uri,
        headers: HeaderMap,
    ) -> Result<H2Stream, HboneError> {
        let mut req = Request::new(());
        *req.method_mut() = Method::CONNECT;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let (response, send) = sender.send_request(req, false)?;
        let response = tokio::time::timeout(self.cfg.response_timeout, response)
            .await
            .map_err(|_| HboneError::Timeout("CONNECT response"))??;
        if response.status() != StatusCode::OK {
            return Err(HboneError::Status(response.status()));
        }
        Ok(H2Stream::new(
            send,
            response.into_body(),
            Some(Arc::new(slot)),
        ))
    }

    async fn dial(&self, cert: &Arc<RotatingCert>, key: &PoolKey) -> Result<Arc<Conn>, HboneError> {
        let addr = key.dst;
        let timeout = self.cfg.connect_timeout;
        let tcp = tokio::time::timeout(timeout, self.dialer.dial(addr))
            .await
            .map_err(|_| HboneError::Timeout("TCP connect"))?
            .map_err(|source| HboneError::Connect { addr, source })?;
        let tls_cfg = tls::client_config(cert.clone(), key.expected.clone())?;
        let tls = tokio::time::timeout(
            timeout,
            TlsConnector::from(tls_cfg).connect(tls::server_name(addr.ip()), tcp),
        )
        .await
        .map_err(|_| HboneError::Timeout("TLS handshake"))?
        .map_err(|source| HboneError::Handshake { addr, source })?;
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(self.cfg.stream_window)
            .initial_connection_window_size(self.cfg.connection_window)
            .max_frame_size(self.cfg.max_frame_size)
            .initial_max_send_streams(self.cfg.max_streams_per_connection)
            .max_send_buffer_size(self.cfg.stream_window as usize)
            .max_header_list_size(16 * 1024)
            .enable_push(false);
        let (sender, mut connection) =
            tokio::time::timeout(timeout, builder.handshake::<_, Bytes>(tls))
                .await
                .map_err(|_| HboneError::Timeout("HTTP/2 handshake"))??;
        let max_streams = self
            .cfg
            .max_streams_per_connection
            .min(connection.max_concurrent_send_streams().max(1));
        let conn = Arc::new(Conn {
            sender,
            max_streams,
            active: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            close: CancellationToken::new(),
            idle_since: Mutex::new(Instant::now()),
        });
        trace!(key = ?key, "new HBONE connection");
        let driver_conn = conn.clone();
        let cfg = self.cfg.clone();
        let ping = connection.ping_pong();
        tokio::spawn(async move {
            let c = &driver_conn;
            tokio::select! {
                r = &mut connection => if let Err(e) = r { debug!(error = %e, "HBONE connection failed") },
                _ = keepalive(ping, cfg.clone()) => debug!("HBONE peer stopped answering PINGs; closing"),
                _ = idle(c, cfg.idle_timeout) => trace!("closing idle HBONE connection"),
                _ = c.close.cancelled() => {},
            }
            c.closed.store(true, Ordering::Release);
        });
        Ok(conn)
    }
}

/// Resolves when `conn` has had no stream for `timeout`.
async fn idle(conn: &Conn, timeout: Duration) {
    let tick = (timeout / 4).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(tick).await;
        if conn.active.load(Ordering::Acquire) == 0 && conn.idle_since.lock().elapsed() >= timeout {
            return;
        }
    }
}

/// Sends a PING every `ping_interval`; resolves when one is not answered
/// within `ping_timeout` (or the connection fails). Never resolves when
/// PINGs are unavailable.
pub(crate) async fn keepalive(ping: Option<h2::PingPong>, cfg: HboneConfig) {
    let Some(mut ping) = ping else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(cfg.ping_interval).await;
        match tokio::time::timeout(cfg.ping_timeout, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => trace!("HBONE pong"),
            Ok(Err(e)) => {
                trace!(error = %e, "HBONE ping failed");
                return;
            }
            Err(_) => return,
        }
    }
}
