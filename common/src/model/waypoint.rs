//! The snapshot a waypoint receives: its services, endpoints, resolved
//! DestinationRule policies, filter chain and telemetry.

use super::filter::FilterConfig;
use super::service::ServicePort;
use super::telemetry::TelemetryConfig;
use super::workload::TrafficType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Everything one waypoint needs. Keyed by `namespace/name` of its Gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointConfig {
    /// Gateway name.
    pub name: String,
    /// Gateway namespace.
    pub namespace: String,
    /// The SPIFFE ID the waypoint serves with
    /// (`spiffe://<td>/ns/<ns>/sa/<gateway name>`).
    pub identity: String,
    /// Trust domain.
    #[serde(default = "default_td")]
    pub trust_domain: String,
    /// Which traffic the waypoint takes (`istio.io/waypoint-for`).
    #[serde(default)]
    pub traffic_type: TrafficType,
    /// Services bound to this waypoint (service-addressed traffic), sorted by
    /// hostname.
    #[serde(default)]
    pub services: Vec<WaypointService>,
    /// Workloads bound to this waypoint for pod-addressed traffic (waypoints
    /// for `workload`/`all`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WaypointEndpoint>,
    /// The ordered HTTP filter chain (first-party filters first:
    /// jwt → authz → routing → fault → retry, then user filters by phase and
    /// priority).
    #[serde(default)]
    pub filters: Vec<FilterConfig>,
    /// Access log, tracing and metric settings.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

fn default_td() -> String {
    super::DEFAULT_TRUST_DOMAIN.to_string()
}

impl WaypointConfig {
    /// The service with this FQDN.
    pub fn service(&self, hostname: &str) -> Option<&WaypointService> {
        self.services.iter().find(|s| s.hostname == hostname)
    }

    /// The service owning a VIP.
    pub fn service_by_vip(&self, vip: IpAddr) -> Option<&WaypointService> {
        self.services.iter().find(|s| s.vips.contains(&vip))
    }
}

/// A service bound to the waypoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointService {
    /// FQDN (`orders.shop.svc.cluster.local`).
    pub hostname: String,
    /// Service name.
    pub name: String,
    /// Service namespace.
    pub namespace: String,
    /// VIPs.
    #[serde(default)]
    pub vips: Vec<IpAddr>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Endpoints, sorted by workload uid.
    #[serde(default)]
    pub endpoints: Vec<WaypointEndpoint>,
    /// DestinationRule subsets (label selectors over endpoints).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// Resolved DestinationRule policies: one per (service port, subset or
    /// none), port-level settings and subset merge already applied. Empty
    /// when no DestinationRule applies (then [`TrafficPolicy::default`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic_policies: Vec<TrafficPolicy>,
    /// Name of the DestinationRule the policies came from (`ns/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<String>,
    /// A destination of this waypoint's routes that is not bound to it
    /// (istiod's extra waypoint services): the waypoint forwards to it,
    /// but does not serve traffic addressed to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub route_only: bool,
}

impl WaypointService {
    /// Effective policy for traffic to `port` (service port) and `subset`.
    pub fn traffic_policy(&self, port: u16, subset: Option<&str>) -> TrafficPolicy {
        self.traffic_policies
            .iter()
            .find(|p| p.port == port && p.subset.as_deref() == subset)
            .cloned()
            .unwrap_or_default()
    }

    /// Endpoints selected by a subset (all endpoints for `None`; none for an
    /// unknown subset, which Istio answers with 503 NC).
    pub fn subset_endpoints<'a>(
        &'a self,
        subset: Option<&str>,
    ) -> Box<dyn Iterator<Item = &'a WaypointEndpoint> + 'a> {
        match subset {
            None => Box::new(self.endpoints.iter()),
            Some(name) => match self.subsets.iter().find(|s| s.name == name) {
                Some(s) => Box::new(self.endpoints.iter().filter(move |e| s.selects(&e.labels))),
                None => Box::new(std::iter::empty()),
            },
        }
    }
}

/// A DestinationRule subset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    /// Subset name.
    pub name: String,
    /// Endpoint labels that must all be present with these values.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Subset {
    /// Does this subset select an endpoint with `labels`?
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// An endpoint (workload) of a service, as the waypoint needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointEndpoint {
    /// [`super::Workload::uid`].
    pub workload_uid: String,
    /// Pod name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Owning workload name (metrics `destination_workload`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload_name: String,
    /// Address.
    pub address: IpAddr,
    /// Service port → workload port.
    #[serde(default)]
    pub ports: BTreeMap<u16, u16>,
    /// Pod labels (subset selection).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Enrolled in the mesh: reach it over HBONE (`address:15008`, CONNECT
    /// authority `address:port`); otherwise plain TCP.
    #[serde(default)]
    pub hbone: bool,
    /// Node name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Service account.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    /// SPIFFE ID the endpoint serves with.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identity: String,
    /// Canonical service (metrics `destination_canonical_service`, `destination_app`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canonical_name: String,
    /// Canonical revision (metrics `destination_version`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canonical_revision: String,
    /// Ready.
    #[serde(default = "yes")]
    pub healthy: bool,
}

fn yes() -> bool {
    true
}

/// Resolved DestinationRule traffic policy for one (port, subset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Service port.
    pub port: u16,
    /// Subset, `None` for the service as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Load balancer (default LEAST_REQUEST).
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// Connection pool limits (circuit breakers).
    #[serde(default)]
    pub connection_pool: ConnectionPool,
    /// Outlier detection; `None` ⇒ off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
}

/// Load-balancing policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoadBalancer {
    /// Istio's default (unset / UNSPECIFIED).
    #[default]
    LeastRequest,
    /// Round robin.
    RoundRobin,
    /// Random.
    Random,
    /// Connect to the address the client asked for.
    Passthrough,
    /// Ring hash / maglev.
    ConsistentHash(ConsistentHash),
}

/// Consistent-hash load balancing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHash {
    /// What to hash.
    pub key: HashKey,
    /// Ring-hash minimum ring size (default 1024); `None` when maglev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
    /// Maglev table size (default 65537); `Some` selects maglev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev_table_size: Option<u64>,
}

/// Consistent-hash key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HashKey {
    /// A request header.
    HttpHeaderName(String),
    /// A cookie, generated with `ttl` when absent (ttl 0 ⇒ session cookie).
    HttpCookie {
        /// Cookie name.
        name: String,
        /// Cookie path.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// Lifetime of a generated cookie.
        #[serde(
            default,
            with = "humantime_serde",
            skip_serializing_if = "Option::is_none"
        )]
        ttl: Option<Duration>,
    },
    /// The source IP.
    UseSourceIp,
    /// A query parameter.
    HttpQueryParameterName(String),
}

/// Connection-pool limits. `None` ⇒ Istio's default (effectively unlimited;
/// connect timeout 10 s; idle timeout 1 h).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ConnectionPool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_connection_duration: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_idle_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http1_max_pending_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_max_requests: Option<u32>,
    /// 0/None = unlimited; 1 disables keep-alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
}

/// Outlier detection with Envoy's effective values filled in by the operator
/// (`outlierDetection: {}` ⇒ 5 consecutive 5xx, interval 10 s, base
/// ejection 30 s, max 10 % ejected, max ejection time max(300 s, base)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Consecutive 5xx (incl. local failures unless split) to eject; 0 = off.
    pub consecutive_5xx_errors: u32,
    /// Consecutive 502/503/504 (and local failures unless split); 0 = off.
    pub consecutive_gateway_errors: u32,
    /// Consecutive local-origin failures (only with `split_external_local_origin_errors`).
    #[serde(default)]
    pub consecutive_local_origin_failures: u32,
    /// Count local-origin failures separately.
    #[serde(default)]
    pub split_external_local_origin_errors: bool,
    /// Sweep interval.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Base ejection time (× number of consecutive ejections).
    #[serde(with = "humantime_serde")]
    pub base_ejection_time: Duration,
    /// Cap on one ejection.
    #[serde(with = "humantime_serde")]
    pub max_ejection_time: Duration,
    /// At most this share of hosts ejected (one host always may be).
    pub max_ejection_percent: u32,
    /// Panic threshold: below this share of healthy hosts, ignore ejections
    /// (0 ⇒ never panic).
    #[serde(default)]
    pub min_health_percent: u32,
    /// `outlierDetectionHttpErrorCodes`: the response codes that count as
    /// errors for the consecutive-5xx detector, instead of every 5xx
    /// (Envoy's `error_matcher`); the gateway detector keeps 502–504.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_error_codes: Vec<u16>,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx_errors: 5,
            consecutive_gateway_errors: 0,
            consecutive_local_origin_failures: 0,
            split_external_local_origin_errors: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            min_health_percent: 0,
            http_error_codes: Vec::new(),
        }
    }
}
