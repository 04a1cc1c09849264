//! The configuration model the operator pushes to the proxies.
//!
//! Two consumers, two views of one mesh:
//!
//! 1. **ztunnel** (per node) receives [`Workload`]s, [`Service`]s and
//!    [`Authorization`] policies, the same three resource kinds Istio's
//!    WDS/`Address` + `Authorization` protocol carries. Authorization policies
//!    are already in ztunnel's rule shape (rules → clauses → matches, see
//!    [`policy`]); PeerAuthentication has been converted to DENY policies the
//!    way istiod does it (see [`policy::STATIC_STRICT_POLICY_NAME`]).
//! 2. **waypoints** receive one [`WaypointConfig`] each: the services bound to
//!    the waypoint with their endpoints and resolved DestinationRule traffic
//!    policies, the ordered filter chain ([`FilterConfig`]) and telemetry
//!    settings.
//!
//! Every type has a stable JSON and YAML form (serde, `camelCase` field
//! names, empty collections and `None` omitted) which is what the push
//! protocol ([`crate::xds`]) carries and what admin config dumps print.
//!
//! Each pushed resource has a *key* ([`Resource::key`]), unique within its
//! [`ResourceType`]: incremental pushes upsert and remove by key.
//!
//! ```
//! use mesh_common::model::{Resource, Workload, TunnelProtocol};
//! let w: Workload = serde_json::from_str(r#"{
//!     "uid": "Kubernetes//Pod/shop/web-1", "name": "web-1", "namespace": "shop",
//!     "serviceAccount": "web", "node": "node-1", "addresses": ["10.0.0.5"],
//!     "protocol": "HBONE"
//! }"#).unwrap();
//! assert_eq!(w.protocol, TunnelProtocol::Hbone);
//! assert_eq!(w.key(), "Kubernetes//Pod/shop/web-1");
//! assert_eq!(w.identity(), "spiffe://cluster.local/ns/shop/sa/web");
//! ```

pub mod filter;
pub mod policy;
pub mod service;
pub mod telemetry;
pub mod waypoint;
pub mod workload;

pub use filter::{Canary, FailPolicy, FilterConfig, FilterLimits, ModuleRef, runtime_filter_name};
pub use policy::{
    Authorization, Connection, RbacAction, RbacMatch, RbacScope, ServiceAccountMatch, StringMatch,
};
pub use service::{Endpoint, Service, ServicePort};
pub use telemetry::{AccessLogConfig, MetricOverride, TagSource, TelemetryConfig, TracingConfig};
pub use waypoint::{
    ConnectionPool, ConsistentHash, HashKey, LoadBalancer, OutlierDetection, Subset, TrafficPolicy,
    WaypointConfig, WaypointEndpoint, WaypointService,
};
pub use workload::{HealthStatus, TrafficType, TunnelProtocol, WaypointBinding, Workload};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Default SPIFFE trust domain (`meshConfig.trustDomain` default).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The kinds of resource the push protocol carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    /// [`Workload`], keyed by uid. ztunnel.
    Workload,
    /// [`Service`], keyed by `namespace/hostname`. ztunnel.
    Service,
    /// [`Authorization`], keyed by `namespace/name`. ztunnel.
    Authorization,
    /// [`WaypointConfig`], keyed by `namespace/name` of the waypoint. Waypoints.
    WaypointConfig,
}

impl ResourceType {
    /// The resource types a proxy of `kind` subscribes to.
    pub fn for_proxy(kind: ProxyKind) -> &'static [ResourceType] {
        match kind {
            ProxyKind::Ztunnel => &[
                ResourceType::Workload,
                ResourceType::Service,
                ResourceType::Authorization,
            ],
            ProxyKind::Waypoint => &[ResourceType::WaypointConfig],
        }
    }

    /// Stable name, as used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Workload => "Workload",
            ResourceType::Service => "Service",
            ResourceType::Authorization => "Authorization",
            ResourceType::WaypointConfig => "WaypointConfig",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which proxy is subscribing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProxyKind {
    /// A node proxy: receives workloads, services and L4 policies.
    Ztunnel,
    /// A waypoint: receives its own [`WaypointConfig`].
    Waypoint,
}

/// A pushed resource: something with a key unique within its type.
pub trait Resource:
    Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
    /// The resource type.
    const TYPE: ResourceType;
    /// The key the protocol upserts and removes by.
    fn key(&self) -> String;
}

impl Resource for Workload {
    const TYPE: ResourceType = ResourceType::Workload;
    fn key(&self) -> String {
        self.uid.clone()
    }
}

impl Resource for Service {
    const TYPE: ResourceType = ResourceType::Service;
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.hostname)
    }
}

impl Resource for Authorization {
    const TYPE: ResourceType = ResourceType::Authorization;
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl Resource for WaypointConfig {
    const TYPE: ResourceType = ResourceType::WaypointConfig;
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// `true` when a value equals its `Default` (used to omit defaults in output).
pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
