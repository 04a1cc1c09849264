//! The applied configuration as requests see it: services by VIP and name,
//! clusters, filter chains, and endpoint metadata by IP (for the `source_*`
//! telemetry of callers that are themselves endpoints).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use mesh_common::model::{WaypointConfig, WaypointEndpoint, WaypointService};

use crate::cluster::ClusterSet;
use crate::config::chains::ChainMap;
use crate::respond::ProxyError;

use super::tcp::{TcpAuthz, TcpRoutes};

/// Everything a request needs from the config, swapped atomically.
#[derive(Debug)]
pub struct Snapshot {
    /// Version of the config (file digest or push version).
    pub version: String,
    /// The config.
    pub config: Arc<WaypointConfig>,
    /// Clusters.
    pub clusters: ClusterSet,
    /// Filter chains.
    pub chains: ChainMap,
    /// When it was applied.
    pub applied_at: SystemTime,
    /// The `authz` filter's policies for connections to TCP ports.
    pub tcp_authz: Option<Arc<TcpAuthz>>,
    /// VirtualService `tcp` routes.
    pub tcp_routes: Option<Arc<TcpRoutes>>,
    by_vip: HashMap<IpAddr, Arc<WaypointService>>,
    by_name: HashMap<String, Arc<WaypointService>>,
    endpoints: HashMap<IpAddr, (Arc<WaypointEndpoint>, Option<Arc<WaypointService>>)>,
}

/// Where a request is headed before any routing filter ran.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    /// The service addressed (by VIP, or by name on the plain listener).
    pub service: Option<Arc<WaypointService>>,
    /// The service port (or the workload port for direct traffic).
    pub port: u16,
    /// A workload addressed directly (pod IP).
    pub direct: Option<SocketAddr>,
}

/// Splits `host[:port]` (IPv6 in brackets).
pub fn split_authority(a: &str) -> (&str, Option<u16>) {
    if let Some(rest) = a.strip_prefix('[')
        && let Some((h, p)) = rest.split_once(']')
    {
        return (h, p.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (a, None),
    }
}

impl Snapshot {
    /// The cluster of `service` (a subset, a port or the addressed one):
    /// the service, the port chosen and the cluster. Without a port, the
    /// addressed port is kept, or the service's only port taken when it has
    /// just one other.
    pub(crate) fn service_cluster(
        &self,
        service: &str,
        subset: Option<&str>,
        port: Option<u16>,
        dest_port: u16,
    ) -> Result<(Arc<WaypointService>, u16, Arc<crate::cluster::Cluster>), ProxyError> {
        let svc = self
            .service(service)
            .cloned()
            .ok_or_else(|| ProxyError::NoCluster {
                service: service.to_string(),
                port: port.unwrap_or(dest_port),
                subset: subset.map(str::to_string),
            })?;
        let port = match port {
            Some(p) => p,
            None if svc.ports.len() == 1 && !svc.ports.iter().any(|p| p.port == dest_port) => {
                svc.ports[0].port
            }
            None => dest_port,
        };
        let cluster = self
            .clusters
            .get(&svc.hostname, port, subset)
            .cloned()
            .ok_or_else(|| ProxyError::NoCluster {
                service: svc.hostname.clone(),
                port,
                subset: subset.map(str::to_string),
            })?;
        Ok((svc, port, cluster))
    }

    /// Builds the lookup tables around already-built clusters and chains.
    pub fn new(
        version: String,
        config: Arc<WaypointConfig>,
        clusters: ClusterSet,
        chains: ChainMap,
    ) -> Self {
        let mut by_vip = HashMap::new();
        let mut by_name = HashMap::new();
        let mut endpoints = HashMap::new();
        // Short names resolve in the waypoint's namespace first.
        let mut services: Vec<&WaypointService> = config.services.iter().collect();
        // Served services before route-only ones.
        services.sort_by_key(|s| (s.route_only, s.namespace != config.namespace));
        for s in services {
            let svc = Arc::new(s.clone());
            // A route-only service is a cluster, not something this
            // waypoint serves: its VIPs do not lead here.
            for vip in s.vips.iter().filter(|_| !s.route_only) {
                by_vip.entry(*vip).or_insert_with(|| svc.clone());
            }
            let short = [
                s.hostname.clone(),
                format!("{}.{}.svc", s.name, s.namespace),
                format!("{}.{}", s.name, s.namespace),
                s.name.clone(),
            ];
            for n in short {
                by_name.entry(n).or_insert_with(|| svc.clone());
            }
            for ep in &s.endpoints {
                endpoints
                    .entry(ep.address)
                    .or_insert_with(|| (Arc::new(ep.clone()), Some(svc.clone())));
            }
        }
        for w in &config.workloads {
            endpoints
                .entry(w.address)
                .or_insert_with(|| (Arc::new(w.clone()), None));
        }
        // Any port may carry TCP (declared, or detected on a port without a
        // protocol), so the policies are always ready.
        let tcp_authz = TcpAuthz::from_filters(&config.filters);
        let tcp_routes = TcpRoutes::from_filters(&config.filters);
        Snapshot {
            version,
            config,
            clusters,
            chains,
            applied_at: SystemTime::now(),
            tcp_authz,
            tcp_routes,
            by_vip,
            by_name,
            endpoints,
        }
    }

    /// The service with this FQDN (or short name).
    pub fn service(&self, name: &str) -> Option<&Arc<WaypointService>> {
        self.by_name.get(name)
    }

    /// The endpoint (and its service) with this IP.
    pub fn endpoint(
        &self,
        ip: IpAddr,
    ) -> Option<&(Arc<WaypointEndpoint>, Option<Arc<WaypointService>>)> {
        self.endpoints.get(&ip)
    }

    /// Resolves where a request goes before routing: the HBONE target
    /// (service VIP or workload IP) when there is one, else the authority.
    pub fn destination(&self, target: Option<SocketAddr>, authority: &str) -> Destination {
        if let Some(t) = target {
            if let Some(svc) = self.by_vip.get(&t.ip()) {
                return Destination {
                    service: Some(svc.clone()),
                    port: t.port(),
                    direct: None,
                };
            }
            if (self.config.traffic_type.handles_workload()
                || self.clusters.workload(t.ip()).is_some())
                && let Some((_, svc)) = self.endpoints.get(&t.ip())
            {
                return Destination {
                    service: svc.clone(),
                    port: t.port(),
                    direct: Some(t),
                };
            }
        }
        let (host, port) = split_authority(authority);
        let host = host.trim_end_matches('.');
        let svc = host
            .parse::<IpAddr>()
            .ok()
            .and_then(|ip| self.by_vip.get(&ip))
            .or_else(|| self.by_name.get(host).filter(|s| !s.route_only))
            .cloned();
        let port = match (&svc, port) {
            (_, Some(p)) => p,
            (Some(s), None) => {
                if s.ports.iter().any(|p| p.port == 80) || s.ports.is_empty() {
                    80
                } else {
                    s.ports[0].port
                }
            }
            (None, None) => target.map_or(80, |t| t.port()),
        };
        Destination {
            service: svc,
            port,
            direct: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_splitting() {
        assert_eq!(split_authority("a.b:8080"), ("a.b", Some(8080)));
        assert_eq!(split_authority("a.b"), ("a.b", None));
        assert_eq!(split_authority("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_authority("10.0.0.1"), ("10.0.0.1", None));
    }
}
