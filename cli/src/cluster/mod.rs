//! The local mesh's "API server": namespaces, workloads (Deployments,
//! StatefulSets), pods and services, kept in `cluster.yaml` and rendered
//! into the inventory the operator reads in file mode. Istio resources are
//! kept as files in the config directory ([`store`]).

pub mod apply;
pub mod manifest;
pub mod store;

use operator::config::inventory::{
    InvNamespace, InvNode, InvPort, InvService, InvWorkload, Inventory,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Labels.
pub type Labels = BTreeMap<String, String>;

/// Enrolment label.
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// Waypoint label.
pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
/// Annotation the CNI agent sets once a pod's traffic is redirected.
pub const REDIRECTION_ANNOTATION: &str = "ambient.istio.io/redirection";

/// A container port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerPort {
    /// Port name (for named `targetPort`s).
    pub name: String,
    /// Port number; the sample app listens on the first one.
    pub port: u16,
}

/// What pods of a workload look like.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodTemplate {
    /// Pod labels.
    pub labels: Labels,
    /// Pod annotations.
    pub annotations: Labels,
    /// ServiceAccount (default `default`).
    pub service_account: String,
    /// Pinned node (`spec.nodeName`).
    pub node: Option<String>,
    /// Container ports.
    pub ports: Vec<ContainerPort>,
}

/// A Deployment or StatefulSet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Workload {
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Object labels.
    pub labels: Labels,
    /// Replicas.
    pub replicas: u32,
    /// StatefulSet `serviceName` (pod DNS `<pod>.<serviceName>.<ns>.svc…`).
    pub service_name: Option<String>,
    /// Pod template.
    pub template: PodTemplate,
}

/// The owner of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Owner {
    /// `Deployment`, `StatefulSet`.
    pub kind: String,
    /// Name.
    pub name: String,
}

/// A pod: a network namespace on a node (root) running the sample app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pod {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// ServiceAccount.
    pub service_account: String,
    /// Node name (`node1`, …).
    pub node: String,
    /// Address (assigned when the pod is scheduled).
    pub ip: Option<IpAddr>,
    /// Owner.
    pub owner: Option<Owner>,
    /// Container ports.
    pub ports: Vec<ContainerPort>,
    /// StatefulSet pods: the governing service (pod DNS name).
    pub subdomain: Option<String>,
}

impl Pod {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Owner workload name (metrics `*_workload`), else the pod name.
    pub fn workload_name(&self) -> &str {
        self.owner
            .as_ref()
            .map(|o| o.name.as_str())
            .unwrap_or(&self.name)
    }
}

/// A service port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePort {
    /// Name.
    pub name: String,
    /// Port.
    pub port: u16,
    /// Target port (number or container port name); `None` ⇒ `port`.
    pub target_port: Option<serde_yaml::Value>,
    /// `appProtocol`.
    pub app_protocol: Option<String>,
}

/// A service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Service {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels (`istio.io/use-waypoint`).
    pub labels: Labels,
    /// ClusterIP; `None` for headless services or before allocation.
    pub cluster_ip: Option<IpAddr>,
    /// `clusterIP: None`.
    pub headless: bool,
    /// Pod selector.
    pub selector: Option<Labels>,
    /// Ports.
    pub ports: Vec<ServicePort>,
}

/// Everything the local API server holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Cluster {
    /// Namespaces and their labels.
    pub namespaces: BTreeMap<String, Labels>,
    /// Deployments and StatefulSets.
    pub workloads: Vec<Workload>,
    /// Pods.
    pub pods: Vec<Pod>,
    /// Services.
    pub services: Vec<Service>,
}

impl Cluster {
    /// A pod by namespace and name.
    pub fn pod(&self, ns: &str, name: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.namespace == ns && p.name == name)
    }

    /// Is the pod enrolled (`istio.io/dataplane-mode`, §7.1; never a pod
    /// with an injected sidecar)?
    pub fn enrolled(&self, pod: &Pod) -> bool {
        if pod
            .annotations
            .contains_key(operator::translate::workloads::SIDECAR_STATUS)
        {
            return false;
        }
        match pod.labels.get(DATAPLANE_MODE).map(String::as_str) {
            Some("ambient") => true,
            Some("none") => false,
            _ => {
                self.namespaces
                    .get(&pod.namespace)
                    .and_then(|l| l.get(DATAPLANE_MODE))
                    .map(String::as_str)
                    == Some("ambient")
            }
        }
    }

    /// The operator's inventory for this cluster and these nodes.
    pub fn inventory(&self, nodes: &[(String, String)]) -> Inventory {
        Inventory {
            mesh_config: None,
            nodes: nodes
                .iter()
                .map(|(n, t)| InvNode {
                    name: n.clone(),
                    token: Some(t.clone()),
                })
                .collect(),
            namespaces: self
                .namespaces
                .iter()
                .map(|(n, l)| InvNamespace {
                    name: n.clone(),
                    labels: l.clone(),
                })
                .collect(),
            workloads: self
                .pods
                .iter()
                .filter(|p| p.ip.is_some())
                .map(|p| InvWorkload {
                    name: p.name.clone(),
                    namespace: p.namespace.clone(),
                    service_account: Some(p.service_account.clone()),
                    node: p.node.clone(),
                    ip: p.ip,
                    ips: Vec::new(),
                    labels: p.labels.clone(),
                    annotations: p.annotations.clone(),
                    workload: Some(p.workload_name().to_string()),
                    ports: p
                        .ports
                        .iter()
                        .filter(|c| !c.name.is_empty())
                        .map(|c| (c.name.clone(), c.port))
                        .collect(),
                    ready: Some(true),
                })
                .collect(),
            services: self
                .services
                .iter()
                .map(|s| InvService {
                    name: s.name.clone(),
                    namespace: s.namespace.clone(),
                    vip: s.cluster_ip,
                    vips: Vec::new(),
                    selector: s.selector.clone(),
                    labels: s.labels.clone(),
                    ports: s
                        .ports
                        .iter()
                        .map(|p| InvPort {
                            name: p.name.clone(),
                            port: p.port,
                            target_port: p.target_port.clone(),
                            app_protocol: p.app_protocol.clone(),
                        })
                        .collect(),
                })
                .collect(),
            waypoints: Vec::new(),
        }
    }

    /// `/etc/hosts` lines for pods in `namespace`: every service by its
    /// cluster names (the short name only in its own namespace) and every
    /// StatefulSet pod by its stable DNS name.
    pub fn hosts_for(&self, namespace: &str, domain: &str) -> String {
        let mut out = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for s in &self.services {
            let Some(ip) = s.cluster_ip else { continue };
            let (n, ns) = (&s.name, &s.namespace);
            let short = if ns == namespace {
                format!("{n} ")
            } else {
                String::new()
            };
            out.push_str(&format!(
                "{ip} {short}{n}.{ns} {n}.{ns}.svc {n}.{ns}.svc.{domain}\n"
            ));
        }
        for p in &self.pods {
            let (Some(ip), Some(sub)) = (p.ip, &p.subdomain) else {
                continue;
            };
            let (n, ns) = (&p.name, &p.namespace);
            let short = if ns == namespace {
                format!("{n}.{sub} ")
            } else {
                String::new()
            };
            out.push_str(&format!(
                "{ip} {short}{n}.{sub}.{ns} {n}.{sub}.{ns}.svc {n}.{sub}.{ns}.svc.{domain}\n"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ns: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            name: name.into(),
            namespace: ns.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service_account: "default".into(),
            node: "node1".into(),
            ip: Some("10.0.0.2".parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn enrolment_follows_pod_then_namespace_label() {
        let mut c = Cluster::default();
        c.namespaces.insert(
            "shop".into(),
            [(DATAPLANE_MODE.to_string(), "ambient".to_string())].into(),
        );
        assert!(c.enrolled(&pod("a", "shop", &[])));
        assert!(!c.enrolled(&pod("a", "shop", &[(DATAPLANE_MODE, "none")])));
        assert!(!c.enrolled(&pod("a", "other", &[])));
        assert!(c.enrolled(&pod("a", "other", &[(DATAPLANE_MODE, "ambient")])));
    }

    #[test]
    fn hosts_name_services_and_stateful_pods() {
        let mut c = Cluster::default();
        c.services.push(Service {
            name: "orders".into(),
            namespace: "shop".into(),
            cluster_ip: Some("10.96.0.10".parse().unwrap()),
            ..Default::default()
        });
        let mut p = pod("db-0", "shop", &[]);
        p.subdomain = Some("db".into());
        c.pods.push(p);
        let h = c.hosts_for("shop", "cluster.local");
        assert!(
            h.contains(
                "10.96.0.10 orders orders.shop orders.shop.svc orders.shop.svc.cluster.local\n"
            ),
            "{h}"
        );
        assert!(
            h.contains(
                "10.0.0.2 db-0.db db-0.db.shop db-0.db.shop.svc db-0.db.shop.svc.cluster.local\n"
            ),
            "{h}"
        );
        assert!(
            !c.hosts_for("other", "cluster.local")
                .contains(" orders orders.shop")
        );
    }
}
