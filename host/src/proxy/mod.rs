//! The L7 proxy: listeners (HBONE on 15008, plain HTTP on 15080), the
//! request path through the filter chain to an upstream endpoint, and
//! graceful drain.
//!
//! Per request ([`inbound`]):
//! 1. resolve the addressed service (HBONE target VIP, workload IP, or the
//!    authority on the plain listener);
//! 2. run the filter chain's request hooks (they may answer, rewrite, route,
//!    set timeouts);
//! 3. pick a cluster from the route (or the addressed service), a host by
//!    the cluster's load balancer, and send — retrying as the filters'
//!    `on-attempt` decides, within the route and per-try timeouts;
//! 4. run the response hooks and stream the response back; telemetry is
//!    recorded when the response ends.

mod body;
mod headers;
mod inbound;
pub mod listener;
pub mod snapshot;
mod sniff;
pub mod tcp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use mesh_common::identity::SpiffeId;
use tokio::sync::Notify;

pub use body::ResponseBody;
pub use headers::strip_hop_by_hop;
pub use snapshot::{Destination, Snapshot};

use crate::filter::ConnectionInfo;
use crate::telemetry::{PeerInfo, Telemetry};
use crate::upstream::Connector;

/// The downstream connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// Peer identity from the HBONE client certificate.
    pub peer: Option<SpiffeId>,
    /// The original source: `forwarded: for=` from the node proxy, else the
    /// TCP peer.
    pub remote: SocketAddr,
    /// Where the connection arrived.
    pub local: SocketAddr,
    /// HBONE CONNECT target: the address the client dialled.
    pub target: Option<SocketAddr>,
    /// Arrived over HBONE (mTLS).
    pub mtls: bool,
    /// The peer as telemetry labels describe it.
    pub source: Arc<PeerInfo>,
}

impl Downstream {
    fn connection_info(&self, dest: &Destination) -> ConnectionInfo {
        ConnectionInfo {
            source_principal: self.peer.as_ref().map(SpiffeId::principal),
            source: self.remote,
            // The plain listener has no CONNECT target: the filters see the
            // addressed service's VIP (or the local IP) and service port.
            destination: self.target.unwrap_or_else(|| {
                let ip = dest
                    .service
                    .as_ref()
                    .and_then(|s| s.vips.first().copied())
                    .unwrap_or(self.local.ip());
                SocketAddr::new(ip, dest.port)
            }),
            destination_service: dest.service.as_ref().map(|s| s.hostname.clone()),
            mtls: self.mtls,
        }
    }
}

/// Counts requests in flight so drain can wait for them.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One request in flight.
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// Requests in flight.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Resolves when no request is in flight.
    pub async fn idle(&self) {
        loop {
            let n = self.idle.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            n.await;
        }
    }
}

/// Shared state of the request path.
#[derive(Debug)]
pub struct Proxy {
    snapshot: ArcSwap<Snapshot>,
    /// Telemetry.
    pub telemetry: Arc<Telemetry>,
    connector: Connector,
    inflight: Arc<InFlight>,
    draining: AtomicBool,
}

impl Proxy {
    /// A proxy serving `initial` until a config is applied.
    pub fn new(initial: Snapshot, telemetry: Arc<Telemetry>, connector: Connector) -> Arc<Self> {
        Arc::new(Proxy {
            snapshot: ArcSwap::from_pointee(initial),
            telemetry,
            connector,
            inflight: Arc::default(),
            draining: AtomicBool::new(false),
        })
    }

    /// The snapshot new requests use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Publishes a new snapshot.
    pub fn publish(&self, s: Snapshot) {
        self.snapshot.store(Arc::new(s));
    }

    /// Requests in flight.
    pub fn inflight(&self) -> &Arc<InFlight> {
        &self.inflight
    }

    fn start_request(&self) -> InFlightGuard {
        self.inflight.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.inflight.clone())
    }

    /// Marks the proxy draining (readiness fails).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Is it draining?
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Peer information for a new connection.
    pub fn peer_info(
        &self,
        peer: Option<&SpiffeId>,
        remote: SocketAddr,
        baggage: Option<&str>,
    ) -> Arc<PeerInfo> {
        let snap = self.snapshot();
        let principal = peer.map(SpiffeId::uri);
        let mut info = match snap.endpoint(remote.ip()) {
            Some((ep, _)) => PeerInfo::from_endpoint(ep, principal),
            None => PeerInfo {
                principal,
                ..PeerInfo::default()
            },
        };
        if let Some(b) = baggage {
            info.merge_baggage(b);
        }
        info.fill_from_principal();
        Arc::new(info)
    }
}
