//! Circuit breakers: the cluster-wide connection-pool limits of a
//! DestinationRule (`connectionPool`), counted as Envoy counts them.
//!
//! | Istio field | Envoy resource | What is counted |
//! |---|---|---|
//! | `tcp.maxConnections` | `max_connections` | open upstream connections |
//! | `http.http1MaxPendingRequests` | `max_pending_requests` | requests waiting for a connection |
//! | `http.http2MaxRequests` | `max_requests` | requests in flight (HTTP/1 and HTTP/2) |
//! | `http.maxRetries` | `max_retries` | retries in flight |
//!
//! Istio's defaults are "unlimited" (2^32-1) and zero means unset. Going
//! over a limit answers 503 with flag `UO` (retries: the retry is skipped).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mesh_common::model::ConnectionPool;

use crate::respond::ProxyError;

/// Istio's default for every breaker: 2^32-1.
pub const UNLIMITED: u64 = u32::MAX as u64;

/// The limits of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `tcp.maxConnections`.
    pub max_connections: u64,
    /// `http.http1MaxPendingRequests`.
    pub max_pending_requests: u64,
    /// `http.http2MaxRequests`.
    pub max_requests: u64,
    /// `http.maxRetries`.
    pub max_retries: u64,
    /// `http.maxRequestsPerConnection` (0 = unlimited).
    pub max_requests_per_connection: u64,
}

fn or_unlimited(v: Option<u32>) -> u64 {
    match v {
        None | Some(0) => UNLIMITED,
        Some(n) => u64::from(n),
    }
}

impl Limits {
    /// The limits a DestinationRule's `connectionPool` sets (zero = unset).
    pub fn from_pool(p: &ConnectionPool) -> Self {
        Limits {
            max_connections: or_unlimited(p.max_connections),
            max_pending_requests: or_unlimited(p.http1_max_pending_requests),
            max_requests: or_unlimited(p.http2_max_requests),
            max_retries: or_unlimited(p.max_retries),
            max_requests_per_connection: u64::from(p.max_requests_per_connection.unwrap_or(0)),
        }
    }
}

/// Live counters against [`Limits`].
#[derive(Debug)]
pub struct Breakers {
    /// The limits.
    pub limits: Limits,
    cluster: String,
    connections: AtomicU64,
    pending: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    overflows: AtomicU64,
}

/// Held while the counted thing lasts; decrements on drop.
#[derive(Debug)]
pub struct Permit {
    breakers: Arc<Breakers>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Connection,
    Pending,
    Request,
    Retry,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.breakers
            .counter(self.kind)
            .fetch_sub(1, Ordering::AcqRel);
    }
}

impl Breakers {
    /// Counters at zero for `cluster`.
    pub fn new(cluster: &str, limits: Limits) -> Arc<Self> {
        Arc::new(Breakers {
            limits,
            cluster: cluster.to_string(),
            connections: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        })
    }

    fn counter(&self, kind: Kind) -> &AtomicU64 {
        match kind {
            Kind::Connection => &self.connections,
            Kind::Pending => &self.pending,
            Kind::Request => &self.requests,
            Kind::Retry => &self.retries,
        }
    }

    fn try_acquire(self: &Arc<Self>, kind: Kind, max: u64) -> Option<Permit> {
        let c = self.counter(kind);
        let mut cur = c.load(Ordering::Acquire);
        loop {
            if cur >= max {
                self.overflows.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match c.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Some(Permit {
                        breakers: self.clone(),
                        kind,
                    });
                }
                Err(v) => cur = v,
            }
        }
    }

    fn overflow(&self, limit: &'static str, max: u64) -> ProxyError {
        ProxyError::Overflow {
            cluster: self.cluster.clone(),
            limit,
            max,
        }
    }

    /// A request in flight (`http2MaxRequests`).
    pub fn request(self: &Arc<Self>) -> Result<Permit, ProxyError> {
        let max = self.limits.max_requests;
        self.try_acquire(Kind::Request, max)
            .ok_or_else(|| self.overflow("http2MaxRequests", max))
    }

    /// A request waiting for a connection (`http1MaxPendingRequests`).
    pub fn pending(self: &Arc<Self>) -> Result<Permit, ProxyError> {
        let max = self.limits.max_pending_requests;
        self.try_acquire(Kind::Pending, max)
            .ok_or_else(|| self.overflow("http1MaxPendingRequests", max))
    }

    /// A new connection (`maxConnections`); `None` when at the limit.
    pub fn connection(self: &Arc<Self>) -> Option<Permit> {
        self.try_acquire(Kind::Connection, self.limits.max_connections)
    }

    /// A connection opened although the limit is reached (Envoy always lets
    /// a host with no connection open one); counted, never refused.
    pub fn connection_over_limit(self: &Arc<Self>) -> Permit {
        self.connections.fetch_add(1, Ordering::AcqRel);
        Permit {
            breakers: self.clone(),
            kind: Kind::Connection,
        }
    }

    /// A retry (`maxRetries`); `None` means the retry is skipped.
    pub fn retry(self: &Arc<Self>) -> Option<Permit> {
        self.try_acquire(Kind::Retry, self.limits.max_retries)
    }

    /// Counters for the admin endpoint: (connections, pending, requests,
    /// retries, overflows).
    pub fn snapshot(&self) -> [u64; 5] {
        [
            self.connections.load(Ordering::Relaxed),
            self.pending.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
            self.overflows.load(Ordering::Relaxed),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_unset_are_unlimited() {
        let l = Limits::from_pool(&ConnectionPool {
            max_connections: Some(0),
            http2_max_requests: Some(3),
            ..Default::default()
        });
        assert_eq!(l.max_connections, UNLIMITED);
        assert_eq!(l.max_pending_requests, UNLIMITED);
        assert_eq!(l.max_requests, 3);
        assert_eq!(l.max_requests_per_connection, 0);
    }

    #[test]
    fn permits_count_and_release() {
        let b = Breakers::new(
            "c",
            Limits {
                max_connections: 1,
                max_pending_requests: 1,
                max_requests: 2,
                max_retries: 0,
                max_requests_per_connection: 0,
            },
        );
        let r1 = b.request().unwrap();
        let _r2 = b.request().unwrap();
        let e = b.request().unwrap_err();
        assert_eq!(e.flag(), "UO");
        assert!(e.to_string().contains("http2MaxRequests of 2"), "{e}");
        drop(r1);
        assert!(b.request().is_ok());
        assert!(b.retry().is_none(), "a literal limit of 0 admits no retry");
        let c = b.connection().unwrap();
        assert!(b.connection().is_none());
        let over = b.connection_over_limit();
        assert_eq!(b.snapshot()[0], 2);
        drop((c, over));
        assert_eq!(b.snapshot()[0], 0);
        let _p = b.pending().unwrap();
        assert!(b.pending().is_err());
    }
}
