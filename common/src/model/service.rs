//! Services (VIPs, ports, endpoints) as ztunnel sees them.

use super::workload::WaypointBinding;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A port of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// The service port clients address.
    pub port: u16,
    /// The workload port the service forwards to. `0` when the Service names
    /// a container port (`targetPort: http`) that is resolved per endpoint:
    /// then use [`Endpoint::ports`].
    #[serde(default)]
    pub target_port: u16,
    /// Port name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `appProtocol` (e.g. `http`, `http2`, `grpc`, `tcp`, `hbone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// One endpoint of a service: a workload and how service ports map to its
/// ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// [`super::Workload::uid`] of the endpoint.
    pub workload_uid: String,
    /// Service port → workload port.
    #[serde(default)]
    pub ports: BTreeMap<u16, u16>,
}

/// A service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// FQDN, `<name>.<namespace>.svc.<domain suffix>`.
    pub hostname: String,
    /// Virtual IPs (ClusterIPs). Empty for headless services.
    #[serde(default)]
    pub vips: Vec<IpAddr>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Endpoints (ready and not ready; check the workload's status).
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Waypoint for traffic addressed to this service, present only when the
    /// bound waypoint handles `service`/`all` traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<WaypointBinding>,
    /// Service labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Service {
    /// The workload port for `service_port` on `endpoint`: the endpoint's
    /// own mapping first, else the service-wide target port.
    pub fn target_port(&self, endpoint: &Endpoint, service_port: u16) -> Option<u16> {
        if let Some(p) = endpoint.ports.get(&service_port) {
            return Some(*p);
        }
        self.ports
            .iter()
            .find(|p| p.port == service_port && p.target_port != 0)
            .map(|p| p.target_port)
    }
}
