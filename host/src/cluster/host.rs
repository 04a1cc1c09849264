//! One endpoint of a cluster: its address, metadata for telemetry, load
//! (active requests), outlier state and connection pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mesh_common::model::WaypointEndpoint;
use parking_lot::Mutex;

use super::outlier::Monitor;
use crate::upstream::HostPool;

/// An upstream endpoint.
#[derive(Debug)]
pub struct Host {
    /// `pod ip : workload port` — what the request is for.
    pub addr: SocketAddr,
    /// Reach it over HBONE (its node proxy on `ip:15008`).
    pub hbone: bool,
    /// The endpoint as configured (labels, workload, identity).
    pub endpoint: Arc<WaypointEndpoint>,
    active: AtomicU64,
    ejected: AtomicBool,
    pub(crate) monitor: Mutex<Monitor>,
    pub(crate) pool: HostPool,
}

/// Counts a request as active on its host while alive (LEAST_REQUEST).
#[derive(Debug)]
pub struct ActiveRequest(Arc<Host>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Host {
    /// A host with fresh state.
    pub fn new(addr: SocketAddr, hbone: bool, endpoint: Arc<WaypointEndpoint>) -> Arc<Self> {
        Arc::new(Host {
            addr,
            hbone,
            endpoint,
            active: AtomicU64::new(0),
            ejected: AtomicBool::new(false),
            monitor: Mutex::new(Monitor::default()),
            pool: HostPool::default(),
        })
    }

    /// Requests in flight to this host.
    pub fn active_requests(&self) -> u64 {
        self.active.load(Ordering::Acquire)
    }

    /// Marks a request active until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(self.clone())
    }

    /// Ejected by outlier detection right now.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }

    pub(crate) fn set_ejected(&self, v: bool) {
        self.ejected.store(v, Ordering::Release);
    }

    /// Ready according to the control plane.
    pub fn is_ready(&self) -> bool {
        self.endpoint.healthy
    }

    /// Can the load balancer pick it (ready and not ejected)?
    pub fn is_available(&self) -> bool {
        self.is_ready() && !self.is_ejected()
    }

    /// Open upstream connections to this host.
    pub fn connections(&self) -> u64 {
        self.pool.connections()
    }
}
