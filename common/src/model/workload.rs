//! Workloads (pods or local processes) as ztunnel sees them.

use super::is_default;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// How traffic reaches a workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TunnelProtocol {
    /// Enrolled in the mesh (`istio.io/dataplane-mode=ambient`): reached over
    /// HBONE (HTTP/2 CONNECT in mTLS) on its node proxy's port 15008.
    #[serde(rename = "HBONE")]
    Hbone,
    /// Not enrolled: plain TCP to the workload's address.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
}

/// Health of a workload (pod readiness).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    /// Ready: eligible as a service endpoint.
    #[default]
    Healthy,
    /// Not ready: kept in the registry but never picked as an endpoint.
    Unhealthy,
}

/// Which traffic a waypoint handles (`istio.io/waypoint-for`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficType {
    /// Traffic addressed to a Service VIP (the default).
    #[default]
    Service,
    /// Traffic addressed directly to a workload (pod IP).
    Workload,
    /// Both.
    All,
    /// Neither.
    None,
}

impl TrafficType {
    /// Parse the `istio.io/waypoint-for` label value.
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "service" => Some(Self::Service),
            "workload" => Some(Self::Workload),
            "all" => Some(Self::All),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Workload => "workload",
            Self::All => "all",
            Self::None => "none",
        }
    }

    /// Does a waypoint of this type accept Service-addressed traffic?
    pub fn handles_service(self) -> bool {
        matches!(self, Self::Service | Self::All)
    }

    /// Does a waypoint of this type accept workload-addressed traffic?
    pub fn handles_workload(self) -> bool {
        matches!(self, Self::Workload | Self::All)
    }
}

/// A resolved binding of a service or workload to a waypoint: where to send
/// the traffic instead of the destination, and who must answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointBinding {
    /// Name of the waypoint Gateway.
    pub name: String,
    /// Namespace of the waypoint Gateway.
    pub namespace: String,
    /// Addresses of the waypoint (its Service VIP in Kubernetes, the process
    /// address in file mode). Connect over HBONE to `address:hbone_port`.
    pub addresses: Vec<IpAddr>,
    /// HBONE port of the waypoint (15008).
    #[serde(default = "default_hbone_port")]
    pub hbone_port: u16,
    /// SPIFFE identity the waypoint must present
    /// (`spiffe://<td>/ns/<ns>/sa/<waypoint service account>`).
    pub identity: String,
    /// The waypoint's `istio.io/waypoint-for` (already checked by the
    /// operator against the binding: a binding is only emitted when it fits).
    #[serde(default)]
    pub traffic_type: TrafficType,
}

fn default_hbone_port() -> u16 {
    15008
}

/// A workload: a pod in Kubernetes, a local process in file mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Unique id, `<cluster>//Pod/<namespace>/<name>` (Istio's format).
    pub uid: String,
    /// Pod name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Kubernetes ServiceAccount the workload runs as.
    pub service_account: String,
    /// Node (ztunnel) the workload runs on.
    pub node: String,
    /// IP addresses.
    pub addresses: Vec<IpAddr>,
    /// HBONE when enrolled in ambient, else TCP.
    #[serde(default)]
    pub protocol: TunnelProtocol,
    /// Pod labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Owning workload name (Deployment/StatefulSet name, else pod name),
    /// used in metrics as `*_workload`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload_name: String,
    /// Canonical service (`service.istio.io/canonical-name`, else `app`
    /// label, else workload name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canonical_name: String,
    /// Canonical revision (`service.istio.io/canonical-revision`, else
    /// `version` label, else `latest`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canonical_revision: String,
    /// SPIFFE trust domain.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Waypoint for traffic addressed to this workload directly (pod IP),
    /// resolved from `istio.io/use-waypoint` on the pod or its namespace and
    /// only present when the waypoint handles `workload`/`all` traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<WaypointBinding>,
    /// Readiness.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: HealthStatus,
    /// Keys (`namespace/name`) of the selector-scoped [`super::Authorization`]
    /// policies that apply to this workload, in addition to the `Global` and
    /// `Namespace` scoped ones (which apply by scope). Includes the converted
    /// PeerAuthentication policies (static strict or per-workload port-level).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_policies: Vec<String>,
}

fn default_trust_domain() -> String {
    super::DEFAULT_TRUST_DOMAIN.to_string()
}

impl Workload {
    /// The workload's SPIFFE ID, `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn identity(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}
