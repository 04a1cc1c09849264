//! Per-host connection pools with Envoy's circuit-breaking semantics.
//!
//! HTTP/1.1: one request per connection at a time. A request takes an idle
//! connection, or opens one while the cluster is under `maxConnections` (a
//! host with no connection may always open one), or waits as a *pending*
//! request — refused with `UO` beyond `http1MaxPendingRequests`. A
//! connection returns to the pool when its response has been read, unless
//! it served `maxRequestsPerConnection` requests or sat idle past the idle
//! timeout.
//!
//! Thread affinity (HTTP/1.1): a connection is driven by the worker thread
//! that opened it (`crate::workers`). A request takes an idle connection of
//! its own worker first, then opens one if the breakers allow, and only
//! then borrows another worker's idle connection (which costs a wake-up of
//! that thread per request), so each worker keeps its own set, as Envoy's
//! per-worker pools do, within the same cluster-wide limits.
//!
//! HTTP/2: one multiplexed connection per host, replaced when it closes or
//! reaches `maxRequestsPerConnection`; requests wait (pending) only while
//! it is being established.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::body::ProxyBody;
use super::io::UpstreamIo;
use super::{Connector, Protocol};
use crate::cluster::{Cluster, Host, Permit};
use crate::respond::ProxyError;

/// Upper bound on how long a stale pooled connection may be retried
/// transparently before an attempt fails.
const MAX_STALE_RETRIES: usize = 3;

#[derive(Debug)]
struct ConnState {
    uses: AtomicU64,
    /// The worker whose runtime drives the connection.
    owner: u32,
    /// When the connection was opened.
    opened: Instant,
}

impl ConnState {
    fn new(uses: u64) -> Arc<Self> {
        Arc::new(ConnState {
            uses: AtomicU64::new(uses),
            owner: crate::workers::current(),
            opened: Instant::now(),
        })
    }

    /// Past the cluster's `maxConnectionDuration`: no new requests.
    fn expired(&self, max: Option<Duration>, now: Instant) -> bool {
        max.is_some_and(|d| now.saturating_duration_since(self.opened) >= d)
    }
}

#[derive(Debug)]
struct Idle {
    send: http1::SendRequest<ProxyBody>,
    conn: Arc<ConnState>,
    since: Instant,
}

#[derive(Debug, Clone)]
struct Shared {
    send: http2::SendRequest<ProxyBody>,
    conn: Arc<ConnState>,
}

/// The connections of one host.
#[derive(Debug, Default)]
pub struct HostPool {
    idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<Shared>>,
    h2_dial: tokio::sync::Mutex<()>,
    conns: AtomicU64,
    released: Notify,
}

/// Keeps counts right while a connection task runs.
struct ConnGuard {
    host: Arc<Host>,
    _permit: Permit,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.host.pool.conns.fetch_sub(1, Ordering::AcqRel);
        self.host.pool.released.notify_one();
    }
}

/// A connection reserved for one request.
#[derive(Debug)]
enum Lease {
    H1(http1::SendRequest<ProxyBody>, Arc<ConnState>),
    H2(http2::SendRequest<ProxyBody>),
}

fn classify(host: &Host, e: &hyper::Error) -> ProxyError {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(h2e) = s.downcast_ref::<h2::Error>()
            && h2e.reason() == Some(h2::Reason::REFUSED_STREAM)
        {
            return ProxyError::Reset {
                endpoint: host.addr.to_string(),
                reason: "remote refused stream".into(),
                refused: true,
            };
        }
        src = s.source();
    }
    ProxyError::Reset {
        endpoint: host.addr.to_string(),
        reason: e.to_string(),
        refused: false,
    }
}

impl HostPool {
    /// Open connections (including ones being established).
    pub fn connections(&self) -> u64 {
        self.conns.load(Ordering::Acquire)
    }

    /// The most recently used live idle connection, of worker `owner` when
    /// given; closed and expired ones met on the way are dropped.
    fn pop_idle(
        &self,
        cluster: &Cluster,
        owner: Option<u32>,
    ) -> Option<(http1::SendRequest<ProxyBody>, Arc<ConnState>)> {
        let mut idle = self.idle.lock();
        let now = Instant::now();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let e = &idle[i];
            if !e.send.is_ready()
                || now.saturating_duration_since(e.since) >= cluster.idle_timeout
                || e.conn.expired(cluster.max_connection_duration, now)
            {
                idle.remove(i);
            } else if owner.is_none_or(|w| e.conn.owner == w) {
                let e = idle.remove(i);
                return Some((e.send, e.conn));
            }
        }
        None
    }

    fn put_idle(&self, send: http1::SendRequest<ProxyBody>, conn: Arc<ConnState>) {
        self.idle.lock().push(Idle {
            send,
            conn,
            since: Instant::now(),
        });
        self.released.notify_one();
    }

    fn h2_current(
        &self,
        max_uses: u64,
        max_age: Option<Duration>,
    ) -> Option<http2::SendRequest<ProxyBody>> {
        let mut cur = self.h2.lock();
        match cur.as_ref() {
            // Too old: dropped from the pool, it finishes its streams and
            // closes; the next request opens a new one.
            Some(s) if s.conn.expired(max_age, Instant::now()) => {
                *cur = None;
                None
            }
            Some(s) if !s.send.is_closed() => {
                let used = s.conn.uses.fetch_add(1, Ordering::AcqRel);
                if max_uses > 0 && used >= max_uses {
                    *cur = None;
                    return None;
                }
                Some(s.send.clone())
            }
            Some(_) => {
                *cur = None;
                None
            }
            None => None,
        }
    }

    /// A permit for a new connection, or `None` when the cluster is at
    /// `maxConnections` and this host already has one.
    fn connection_permit(&self, cluster: &Cluster) -> Option<Permit> {
        if let Some(p) = cluster.breakers.connection() {
            return Some(p);
        }
        (self.connections() == 0).then(|| cluster.breakers.connection_over_limit())
    }
}

async fn open(
    host: &Arc<Host>,
    cluster: &Cluster,
    connector: &Connector,
    proto: Protocol,
    permit: Permit,
) -> Result<Lease, ProxyError> {
    host.pool.conns.fetch_add(1, Ordering::AcqRel);
    let guard = ConnGuard {
        host: host.clone(),
        _permit: permit,
    };
    let io = connector.dial(host, cluster.connect_timeout).await?;
    let io = TokioIo::new(io);
    let fail = |e: hyper::Error| ProxyError::ConnectFailure {
        endpoint: host.addr.to_string(),
        reason: format!("HTTP handshake failed: {e}"),
    };
    match proto {
        Protocol::Http1 => {
            let (send, conn) = http1::Builder::new()
                .handshake::<TokioIo<UpstreamIo>, ProxyBody>(io)
                .await
                .map_err(fail)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
                }
                drop(guard);
            });
            Ok(Lease::H1(send, ConnState::new(0)))
        }
        Protocol::Http2 => {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .initial_stream_window_size(1 << 20)
                .initial_connection_window_size(4 << 20)
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .handshake::<TokioIo<UpstreamIo>, ProxyBody>(io)
                .await
                .map_err(fail)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                }
                drop(guard);
            });
            let shared = Shared {
                send: send.clone(),
                conn: ConnState::new(1),
            };
            *host.pool.h2.lock() = Some(shared);
            Ok(Lease::H2(send))
        }
    }
}

async fn acquire(
    host: &Arc<Host>,
    cluster: &Cluster,
    connector: &Connector,
    proto: Protocol,
) -> Result<Lease, ProxyError> {
    let pool = &host.pool;
    match proto {
        Protocol::Http1 => {
            let mut pending: Option<Permit> = None;
            let me = crate::workers::current();
            loop {
                if let Some((send, conn)) = pool.pop_idle(cluster, Some(me)) {
                    return Ok(Lease::H1(send, conn));
                }
                if let Some(p) = pool.connection_permit(cluster) {
                    // Boxed: dialing (TCP or HBONE + TLS) is rare and its
                    // future is kilobytes; inline it would be copied with
                    // every request's future.
                    return Box::pin(open(host, cluster, connector, proto, p)).await;
                }
                if let Some((send, conn)) = pool.pop_idle(cluster, None) {
                    return Ok(Lease::H1(send, conn));
                }
                if pending.is_none() {
                    pending = Some(cluster.breakers.pending()?);
                }
                let notified = pool.released.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some((send, conn)) = pool.pop_idle(cluster, None) {
                    return Ok(Lease::H1(send, conn));
                }
                notified.await;
            }
        }
        Protocol::Http2 => {
            let max_uses = cluster.breakers.limits.max_requests_per_connection;
            if let Some(s) = pool.h2_current(max_uses, cluster.max_connection_duration) {
                return Ok(Lease::H2(s));
            }
            let _pending = cluster.breakers.pending()?;
            let _dialing = pool.h2_dial.lock().await;
            if let Some(s) = pool.h2_current(max_uses, cluster.max_connection_duration) {
                return Ok(Lease::H2(s));
            }
            let permit = match pool.connection_permit(cluster) {
                Some(p) => p,
                // At maxConnections with a connection to this host that is
                // closing or used up: the new one replaces it.
                None => cluster.breakers.connection_over_limit(),
            };
            Box::pin(open(host, cluster, connector, proto, permit)).await
        }
    }
}

/// What one try on a leased connection gave: the response, the request
/// back (it was not sent: the connection was found closed), or an error.
type Tried = Result<http::Response<Incoming>, Result<http::Request<ProxyBody>, hyper::Error>>;

async fn try_lease(
    host: &Arc<Host>,
    lease: Lease,
    req: http::Request<ProxyBody>,
    max_uses: u64,
) -> Tried {
    let result = match lease {
        Lease::H1(mut send, conn) => {
            let used = conn.uses.fetch_add(1, Ordering::AcqRel) + 1;
            let r = send.try_send_request(req).await;
            if r.is_ok() && (max_uses == 0 || used < max_uses) {
                let h = host.clone();
                tokio::spawn(async move {
                    if send.ready().await.is_ok() {
                        h.pool.put_idle(send, conn);
                    }
                });
            }
            r
        }
        Lease::H2(mut send) => {
            if send.ready().await.is_err() {
                host.pool.h2.lock().take();
                return Err(Ok(req));
            }
            send.try_send_request(req).await
        }
    };
    result.map_err(|mut e| e.take_message().ok_or_else(|| e.into_error()))
}

/// Sends one request to `host`: takes or opens a connection (subject to
/// the cluster's breakers) and returns the response headers. A pooled
/// connection found closed before the request was written is replaced
/// transparently.
///
/// `per_try` bounds the attempt from the moment it has a connection, as
/// Envoy's per-try timer starts when the connection pool is ready: the
/// wait for a connection is not charged to it (dialing is bounded by the
/// cluster's `connectTimeout`, a pending request by the route timeout).
pub async fn send(
    host: &Arc<Host>,
    cluster: &Cluster,
    connector: &Connector,
    proto: Protocol,
    mut req: http::Request<ProxyBody>,
    per_try: Option<Duration>,
) -> Result<http::Response<Incoming>, ProxyError> {
    let max_uses = cluster.breakers.limits.max_requests_per_connection;
    let mut deadline: Option<Option<Instant>> = None;
    for _ in 0..MAX_STALE_RETRIES {
        let lease = acquire(host, cluster, connector, proto).await?;
        let deadline = *deadline.get_or_insert_with(|| per_try.map(|t| Instant::now() + t));
        let tried = try_lease(host, lease, req, max_uses);
        let tried = match deadline {
            Some(d) => tokio::time::timeout_at(d, tried)
                .await
                .map_err(|_| ProxyError::Timeout { which: "per-try" })?,
            None => tried.await,
        };
        match tried {
            Ok(resp) => return Ok(resp),
            Err(Ok(r)) => {
                tracing::debug!(host = %host.addr, "pooled connection closed before the request was sent; using a new one");
                req = r;
            }
            Err(Err(e)) => return Err(classify(host, &e)),
        }
    }
    Err(ProxyError::Reset {
        endpoint: host.addr.to_string(),
        reason: "connections kept closing before the request could be sent".into(),
        refused: false,
    })
}
