//! Upstream clusters: one per (service, port, subset) of the services bound
//! to the waypoint, plus one per workload addressed directly. A cluster has
//! its endpoints ([`Host`]), the resolved DestinationRule policy (load
//! balancer, circuit breakers, outlier detection) and is rebuilt on every
//! config change, keeping the hosts (their connection pools and outlier
//! state) whose endpoint did not change.
//!
//! Names follow the waypoint's Envoy: `inbound-vip|<port>|http|<host>`, and
//! `inbound-vip|<port>|http/<subset>|<host>` for subsets.

pub mod breaker;
mod host;
pub mod lb;
pub mod outlier;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use mesh_common::model::{
    LoadBalancer, TrafficPolicy, WaypointConfig, WaypointEndpoint, WaypointService,
};
use parking_lot::Mutex;
use tokio::time::Instant;

pub use breaker::{Breakers, Limits, Permit};
pub use host::{ActiveRequest, Host};
pub use lb::Balancer;
pub use outlier::{AttemptResult, Detector};

use crate::respond::ProxyError;
use crate::upstream::Protocol;

/// Istio's `meshConfig.connectTimeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's upstream idle timeout default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's `host_selection_retry_max_attempts` as Istio configures it.
pub const HOST_SELECTION_RETRY_MAX_ATTEMPTS: usize = 5;

/// Identifies a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterKey {
    /// Service FQDN.
    pub service: String,
    /// Service port.
    pub port: u16,
    /// DestinationRule subset.
    pub subset: Option<String>,
}

/// A set of endpoints with one traffic policy.
#[derive(Debug)]
pub struct Cluster {
    /// Envoy-style name (metrics, logs, admin).
    pub name: String,
    /// Key.
    pub key: ClusterKey,
    /// The service (telemetry labels).
    pub service: Arc<WaypointService>,
    /// Resolved policy.
    pub policy: TrafficPolicy,
    /// Upstream protocol the service port declares; `None` follows the
    /// downstream request.
    pub protocol: Option<Protocol>,
    /// Endpoints.
    pub hosts: Vec<Arc<Host>>,
    balancer: Balancer,
    /// Circuit breakers.
    pub breakers: Arc<Breakers>,
    detector: Option<Detector>,
    eject_lock: Mutex<()>,
    /// TCP (and HBONE) connect timeout.
    pub connect_timeout: Duration,
    /// Idle upstream connections are closed after this.
    pub idle_timeout: Duration,
    /// `tcp.maxConnectionDuration`: an upstream HTTP connection older than
    /// this takes no new request and closes once its requests finish
    /// (Envoy's `max_connection_duration`, as istiod sets it).
    pub max_connection_duration: Option<Duration>,
}

/// The protocol a service port declares, by `appProtocol` or Istio's port
/// name prefixes.
pub fn port_protocol(svc: &WaypointService, port: u16) -> Option<Protocol> {
    let p = svc.ports.iter().find(|p| p.port == port)?;
    let proto = p
        .app_protocol
        .clone()
        .unwrap_or_else(|| p.name.split('-').next().unwrap_or_default().to_string())
        .to_ascii_lowercase();
    match proto.as_str() {
        "http2" | "grpc" | "h2c" | "kubernetes.io/h2c" => Some(Protocol::Http2),
        "http" | "http1" | "grpc-web" => Some(Protocol::Http1),
        _ => None,
    }
}

impl Cluster {
    fn build(
        name: String,
        key: ClusterKey,
        service: Arc<WaypointService>,
        policy: TrafficPolicy,
        hosts: Vec<Arc<Host>>,
    ) -> Arc<Self> {
        let protocol = port_protocol(&service, key.port);
        let limits = Limits::from_pool(&policy.connection_pool);
        let balancer = Balancer::new(&policy.load_balancer, &hosts);
        let detector = policy.outlier_detection.clone().map(Detector::new);
        let pool = &policy.connection_pool;
        Arc::new(Cluster {
            breakers: Breakers::new(&name, limits),
            name,
            key,
            service,
            protocol,
            hosts,
            balancer,
            detector,
            eject_lock: Mutex::new(()),
            connect_timeout: pool.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            idle_timeout: pool
                .idle_timeout
                .or(pool.tcp_idle_timeout)
                .unwrap_or(DEFAULT_IDLE_TIMEOUT),
            max_connection_duration: pool.max_connection_duration.filter(|d| !d.is_zero()),
            policy,
        })
    }

    /// Is this a `PASSTHROUGH` cluster?
    pub fn is_passthrough(&self) -> bool {
        matches!(self.policy.load_balancer, LoadBalancer::Passthrough)
    }

    /// The outlier detector, when the policy has one.
    pub fn detector(&self) -> Option<&Detector> {
        self.detector.as_ref()
    }

    /// Picks a host for an attempt, avoiding `tried` hosts (Istio's
    /// previous-hosts retry predicate, up to 5 selections).
    pub fn choose(&self, hash: Option<u64>, tried: &[SocketAddr]) -> Result<Arc<Host>, ProxyError> {
        let ready: Vec<Arc<Host>> = self
            .hosts
            .iter()
            .filter(|h| h.is_ready())
            .cloned()
            .collect();
        let mut candidates: Vec<Arc<Host>> =
            ready.iter().filter(|h| !h.is_ejected()).cloned().collect();
        let panic_threshold = self
            .detector
            .as_ref()
            .map_or(0, |d| d.config().min_health_percent);
        if panic_threshold > 0
            && (candidates.len() as u64) * 100 < u64::from(panic_threshold) * ready.len() as u64
        {
            candidates = ready;
        }
        if candidates.is_empty() {
            return Err(ProxyError::NoHealthyUpstream {
                cluster: self.name.clone(),
            });
        }
        let usable = |h: &Host| h.is_available();
        let mut last = None;
        for _ in 0..HOST_SELECTION_RETRY_MAX_ATTEMPTS {
            let Some(h) = self.balancer.pick(&self.hosts, &candidates, hash, usable) else {
                break;
            };
            if !tried.contains(&h.addr) {
                return Ok(h);
            }
            last = Some(h);
        }
        last.ok_or_else(|| ProxyError::NoHealthyUpstream {
            cluster: self.name.clone(),
        })
    }

    /// The host with this address (a route pinned to an endpoint).
    pub fn host(&self, addr: SocketAddr) -> Option<Arc<Host>> {
        self.hosts.iter().find(|h| h.addr == addr).cloned()
    }

    /// Reports an attempt's result to outlier detection.
    pub fn report(&self, host: &Host, r: AttemptResult) {
        let Some(d) = &self.detector else { return };
        let fired = d.record(&mut host.monitor.lock(), r);
        if let Some(kind) = fired {
            let _g = self.eject_lock.lock();
            let ejected = self.hosts.iter().filter(|h| h.is_ejected()).count();
            let mut m = host.monitor.lock();
            if d.try_eject(&mut m, kind, ejected, self.hosts.len(), Instant::now()) {
                host.set_ejected(true);
                tracing::info!(
                    cluster = %self.name, host = %host.addr, ?kind,
                    duration = ?d.ejection_duration(&m), "outlier detection ejected a host"
                );
            }
        }
    }

    /// One interval sweep: returns hosts whose ejection time is over.
    pub fn sweep(&self, now: Instant) {
        let Some(d) = &self.detector else { return };
        let _g = self.eject_lock.lock();
        for h in &self.hosts {
            let mut m = h.monitor.lock();
            if d.sweep(&mut m, now) {
                h.set_ejected(false);
                tracing::info!(cluster = %self.name, host = %h.addr, "outlier detection returned a host");
            }
        }
    }
}

/// All clusters of one applied config.
#[derive(Debug, Default)]
pub struct ClusterSet {
    clusters: HashMap<ClusterKey, Arc<Cluster>>,
    workloads: Mutex<HashMap<SocketAddr, Arc<Cluster>>>,
    workload_endpoints: HashMap<std::net::IpAddr, Arc<WaypointEndpoint>>,
}

/// The name of a service cluster.
pub fn cluster_name(key: &ClusterKey) -> String {
    match &key.subset {
        Some(s) => format!("inbound-vip|{}|http/{s}|{}", key.port, key.service),
        None => format!("inbound-vip|{}|http|{}", key.port, key.service),
    }
}

/// The workload port of `ep` for service port `port`.
pub fn target_port(svc: &WaypointService, ep: &WaypointEndpoint, port: u16) -> u16 {
    if let Some(p) = ep.ports.get(&port) {
        return *p;
    }
    svc.ports
        .iter()
        .find(|p| p.port == port && p.target_port != 0)
        .map_or(port, |p| p.target_port)
}

impl ClusterSet {
    /// Builds the clusters of `cfg`, reusing unchanged hosts of `previous`.
    pub fn build(cfg: &WaypointConfig, previous: Option<&ClusterSet>) -> ClusterSet {
        let mut clusters = HashMap::new();
        for svc in &cfg.services {
            let svc_arc = Arc::new(svc.clone());
            let mut ports: Vec<u16> = svc.ports.iter().map(|p| p.port).collect();
            ports.extend(svc.traffic_policies.iter().map(|p| p.port));
            ports.sort_unstable();
            ports.dedup();
            let subsets: Vec<Option<String>> = std::iter::once(None)
                .chain(svc.subsets.iter().map(|s| Some(s.name.clone())))
                .collect();
            for &port in &ports {
                for subset in &subsets {
                    let key = ClusterKey {
                        service: svc.hostname.clone(),
                        port,
                        subset: subset.clone(),
                    };
                    let prev = previous.and_then(|p| p.clusters.get(&key));
                    let hosts: Vec<Arc<Host>> = svc
                        .subset_endpoints(subset.as_deref())
                        .map(|ep| {
                            let addr = SocketAddr::new(ep.address, target_port(svc, ep, port));
                            reuse_or_new(prev, addr, ep)
                        })
                        .collect();
                    let policy = svc.traffic_policy(port, subset.as_deref());
                    let c = Cluster::build(
                        cluster_name(&key),
                        key.clone(),
                        svc_arc.clone(),
                        policy,
                        hosts,
                    );
                    clusters.insert(key, c);
                }
            }
        }
        let workload_endpoints = cfg
            .workloads
            .iter()
            .map(|w| (w.address, Arc::new(w.clone())))
            .collect();
        ClusterSet {
            clusters,
            workloads: Mutex::new(HashMap::new()),
            workload_endpoints,
        }
    }

    /// The cluster for a route.
    pub fn get(&self, service: &str, port: u16, subset: Option<&str>) -> Option<&Arc<Cluster>> {
        let key = ClusterKey {
            service: service.to_string(),
            port,
            subset: subset.map(str::to_string),
        };
        self.clusters.get(&key)
    }

    /// All service clusters, sorted by name.
    pub fn all(&self) -> Vec<Arc<Cluster>> {
        let mut v: Vec<_> = self.clusters.values().cloned().collect();
        v.extend(self.workloads.lock().values().cloned());
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Is `ip` a workload bound to this waypoint for workload-addressed
    /// traffic?
    pub fn workload(&self, ip: std::net::IpAddr) -> Option<&Arc<WaypointEndpoint>> {
        self.workload_endpoints.get(&ip)
    }

    /// A one-host cluster for traffic addressed to `addr` directly (a
    /// workload, or a PASSTHROUGH destination), created on first use.
    pub fn direct(&self, addr: SocketAddr, template: Option<&Cluster>) -> Arc<Cluster> {
        let mut w = self.workloads.lock();
        if let Some(c) = w.get(&addr) {
            return c.clone();
        }
        let ep = self
            .workload_endpoints
            .get(&addr.ip())
            .cloned()
            .or_else(|| {
                template.and_then(|t| {
                    t.hosts
                        .iter()
                        .find(|h| h.addr.ip() == addr.ip())
                        .map(|h| h.endpoint.clone())
                })
            })
            .unwrap_or_else(|| Arc::new(bare_endpoint(addr.ip())));
        let hbone = ep.hbone;
        let key = ClusterKey {
            service: addr.ip().to_string(),
            port: addr.port(),
            subset: None,
        };
        let service = template.map_or_else(
            || Arc::new(WaypointService::default()),
            |t| t.service.clone(),
        );
        let mut policy = template.map(|t| t.policy.clone()).unwrap_or_default();
        policy.load_balancer = LoadBalancer::RoundRobin;
        let c = Cluster::build(
            format!("inbound-pod|{}||{}", addr.port(), addr.ip()),
            key,
            service,
            policy,
            vec![Host::new(addr, hbone, ep)],
        );
        start_sweeper(&c);
        w.insert(addr, c.clone());
        c
    }

    /// Starts the outlier-detection interval sweeps (one task per cluster
    /// with a detector; each ends when its cluster is dropped).
    pub fn start_sweepers(&self) {
        for c in self.clusters.values() {
            start_sweeper(c);
        }
    }
}

/// An endpoint known only by its address (direct traffic to a workload the
/// config does not describe).
pub fn bare_endpoint(ip: std::net::IpAddr) -> WaypointEndpoint {
    WaypointEndpoint {
        workload_uid: String::new(),
        name: String::new(),
        namespace: String::new(),
        workload_name: String::new(),
        address: ip,
        ports: Default::default(),
        labels: Default::default(),
        hbone: false,
        node: String::new(),
        service_account: String::new(),
        identity: String::new(),
        canonical_name: String::new(),
        canonical_revision: String::new(),
        healthy: true,
    }
}

fn reuse_or_new(prev: Option<&Arc<Cluster>>, addr: SocketAddr, ep: &WaypointEndpoint) -> Arc<Host> {
    if let Some(h) = prev.and_then(|c| c.host(addr))
        && h.hbone == ep.hbone
        && *h.endpoint == *ep
    {
        return h;
    }
    Host::new(addr, ep.hbone, Arc::new(ep.clone()))
}

fn start_sweeper(c: &Arc<Cluster>) {
    let Some(d) = c.detector() else { return };
    let interval = d.interval();
    let weak: Weak<Cluster> = Arc::downgrade(c);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(c) = weak.upgrade() else { return };
            c.sweep(Instant::now());
        }
    });
}
