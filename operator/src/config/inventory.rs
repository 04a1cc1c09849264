//! The file-mode inventory: what Kubernetes would know about nodes,
//! namespaces, workloads and services, in one YAML file.
//!
//! ```yaml
//! meshConfig:                 # optional, Istio meshConfig subset
//!   rootNamespace: istio-system
//!   trustDomain: cluster.local
//!   autoAllowWaypointPolicy: false  # PILOT_AUTO_ALLOW_WAYPOINT_POLICY
//!   rejectFaultWithRetries: false   # true: refuse fault+retries/timeout in one route (the seed's rule; Istio accepts it)
//! nodes:
//!   - name: node-1
//!     token: s3cret           # bootstrap credential for POST /v1/csr
//! namespaces:
//!   - name: shop
//!     labels: {istio.io/dataplane-mode: ambient}
//! workloads:
//!   - name: web-0
//!     namespace: shop
//!     serviceAccount: web
//!     node: node-1
//!     ips: [10.10.0.2]        # or `ip: 10.10.0.2`
//!     labels: {app: web}
//!     workload: web           # owner name (metrics); default = name
//!     ports: {http: 8080}     # named ports, for named targetPorts
//! services:
//!   - name: web
//!     namespace: shop
//!     vips: [10.96.0.10]      # or `vip:`
//!     selector: {app: web}
//!     labels: {}
//!     ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
//! waypoints:                  # addresses of running waypoint processes
//!   - {name: waypoint, namespace: shop, address: 10.10.0.100}
//! ```

use super::mesh::MeshSettings;
use super::{
    ConfigSet, NamespaceInfo, NodeInfo, PodInfo, ServiceInfo, ServicePortInfo, TargetPort,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Inventory errors.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// Not valid YAML / wrong shape.
    #[error("inventory {path}: {source}")]
    Yaml {
        /// File.
        path: String,
        /// Cause.
        source: serde_yaml::Error,
    },
    /// A semantic problem.
    #[error("inventory {path}: {message}")]
    Invalid {
        /// File.
        path: String,
        /// What.
        message: String,
    },
}

/// The inventory file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct Inventory {
    pub mesh_config: Option<serde_yaml::Value>,
    pub nodes: Vec<InvNode>,
    pub namespaces: Vec<InvNamespace>,
    pub workloads: Vec<InvWorkload>,
    pub services: Vec<InvService>,
    pub waypoints: Vec<InvWaypoint>,
}

/// Node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct InvNode {
    pub name: String,
    pub token: Option<String>,
}

/// Namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct InvNamespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct InvWorkload {
    pub name: String,
    pub namespace: String,
    pub service_account: Option<String>,
    pub node: String,
    pub ip: Option<IpAddr>,
    pub ips: Vec<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub workload: Option<String>,
    pub ports: BTreeMap<String, u16>,
    /// Default true.
    pub ready: Option<bool>,
}

/// Service port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct InvPort {
    pub name: String,
    pub port: u16,
    pub target_port: Option<serde_yaml::Value>,
    pub app_protocol: Option<String>,
}

/// Service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct InvService {
    pub name: String,
    pub namespace: String,
    pub vip: Option<IpAddr>,
    pub vips: Vec<IpAddr>,
    pub selector: Option<BTreeMap<String, String>>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<InvPort>,
}

/// A running waypoint process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct InvWaypoint {
    pub name: String,
    pub namespace: String,
    pub address: Option<IpAddr>,
}

impl Inventory {
    /// Parse inventory YAML.
    pub fn parse(text: &str, path: &str) -> Result<Self, InventoryError> {
        if text.trim().is_empty() {
            return Ok(Inventory::default());
        }
        serde_yaml::from_str(text).map_err(|source| InventoryError::Yaml {
            path: path.into(),
            source,
        })
    }

    /// Fill the inventory part of a config set.
    pub fn apply(&self, cs: &mut ConfigSet, path: &str) -> Result<(), InventoryError> {
        let bad = |m: String| InventoryError::Invalid {
            path: path.into(),
            message: m,
        };
        if let Some(mc) = &self.mesh_config {
            let text = serde_yaml::to_string(mc).map_err(|source| InventoryError::Yaml {
                path: path.into(),
                source,
            })?;
            let mut mesh = MeshSettings::default();
            mesh.apply_mesh_config(&text)
                .map_err(|source| InventoryError::Yaml {
                    path: path.into(),
                    source,
                })?;
            // Settings only the inventory can carry.
            if let Some(b) = mc.get("rejectFaultWithRetries").and_then(|v| v.as_bool()) {
                mesh.reject_fault_with_retries = b;
            }
            if let Some(b) = mc.get("autoAllowWaypointPolicy").and_then(|v| v.as_bool()) {
                mesh.auto_allow_waypoint_policy = b;
            }
            cs.mesh = mesh;
        }
        cs.nodes = self
            .nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                token: n.token.clone(),
            })
            .collect();
        for ns in &self.namespaces {
            cs.namespaces.insert(
                ns.name.clone(),
                NamespaceInfo {
                    name: ns.name.clone(),
                    labels: ns.labels.clone(),
                },
            );
        }
        for w in &self.workloads {
            if w.name.is_empty() || w.namespace.is_empty() {
                return Err(bad(format!(
                    "workload {:?} needs a name and a namespace",
                    w.name
                )));
            }
            let mut ips = w.ips.clone();
            ips.extend(w.ip);
            if ips.is_empty() {
                return Err(bad(format!(
                    "workload {}/{} has no ip",
                    w.namespace, w.name
                )));
            }
            cs.namespaces
                .entry(w.namespace.clone())
                .or_insert_with(|| NamespaceInfo {
                    name: w.namespace.clone(),
                    labels: BTreeMap::new(),
                });
            cs.pods.push(PodInfo {
                name: w.name.clone(),
                namespace: w.namespace.clone(),
                labels: w.labels.clone(),
                annotations: w.annotations.clone(),
                service_account: w
                    .service_account
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                node: w.node.clone(),
                ips,
                ready: w.ready.unwrap_or(true),
                workload_name: w.workload.clone(),
                named_ports: w.ports.clone(),
                terminated: false,
            });
        }
        for s in &self.services {
            let mut vips = s.vips.clone();
            vips.extend(s.vip);
            let mut ports = Vec::new();
            for p in &s.ports {
                let target_port = match &p.target_port {
                    None => TargetPort::Number(p.port),
                    Some(serde_yaml::Value::Number(n)) => TargetPort::Number(
                        n.as_u64()
                            .and_then(|n| u16::try_from(n).ok())
                            .ok_or_else(|| {
                                bad(format!(
                                    "service {}/{}: bad targetPort {n}",
                                    s.namespace, s.name
                                ))
                            })?,
                    ),
                    Some(serde_yaml::Value::String(name)) => match name.parse() {
                        Ok(n) => TargetPort::Number(n),
                        Err(_) => TargetPort::Name(name.clone()),
                    },
                    Some(other) => {
                        return Err(bad(format!(
                            "service {}/{}: bad targetPort {other:?}",
                            s.namespace, s.name
                        )));
                    }
                };
                ports.push(ServicePortInfo {
                    name: p.name.clone(),
                    port: p.port,
                    target_port,
                    app_protocol: p.app_protocol.clone(),
                });
            }
            cs.namespaces
                .entry(s.namespace.clone())
                .or_insert_with(|| NamespaceInfo {
                    name: s.namespace.clone(),
                    labels: BTreeMap::new(),
                });
            cs.services.push(ServiceInfo {
                name: s.name.clone(),
                namespace: s.namespace.clone(),
                labels: s.labels.clone(),
                vips,
                ports,
                selector: s.selector.clone(),
                endpoint_ips: Vec::new(),
            });
        }
        for w in &self.waypoints {
            if let Some(a) = w.address {
                cs.waypoint_addresses
                    .insert(format!("{}/{}", w.namespace, w.name), vec![a]);
            }
        }
        Ok(())
    }
}
