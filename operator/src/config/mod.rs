//! The operator's view of the world: mesh settings, the inventory
//! (namespaces, pods, services) and the Istio / Gateway API resources. Both
//! sources (Kubernetes and files) fill a [`ConfigSet`]; translation is a
//! pure function of it.

pub mod inventory;
pub mod mesh;
pub mod objects;
pub mod parse;

pub use mesh::MeshSettings;
pub use objects::{IstioObject, Kind, ObjectKey};

use crate::crd::{
    AuthorizationPolicy, DestinationRule, Gateway, GatewayClass, HTTPRoute, PeerAuthentication,
    RequestAuthentication, Telemetry, VirtualService, WasmPlugin,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Name.
    pub name: String,
    /// Labels (`istio.io/dataplane-mode`, `istio.io/use-waypoint`, …).
    pub labels: BTreeMap<String, String>,
}

/// A pod (Kubernetes) or local process (file mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// Pod name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Service account (default `default`).
    pub service_account: String,
    /// Node.
    pub node: String,
    /// Pod IPs.
    pub ips: Vec<IpAddr>,
    /// Ready condition.
    pub ready: bool,
    /// Owning workload name (Deployment, StatefulSet…), if known.
    pub workload_name: Option<String>,
    /// Named container ports.
    pub named_ports: BTreeMap<String, u16>,
    /// Terminal phase (Succeeded/Failed): not a workload any more.
    pub terminated: bool,
}

/// A service port's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    /// A number.
    Number(u16),
    /// A container port name.
    Name(String),
}

/// A service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortInfo {
    /// Name.
    pub name: String,
    /// Port.
    pub port: u16,
    /// Target.
    pub target_port: TargetPort,
    /// appProtocol.
    pub app_protocol: Option<String>,
}

/// A service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels (`istio.io/use-waypoint`, …).
    pub labels: BTreeMap<String, String>,
    /// ClusterIPs.
    pub vips: Vec<IpAddr>,
    /// Ports.
    pub ports: Vec<ServicePortInfo>,
    /// Pod selector (`None` ⇒ endpoints from `endpoint_ips`).
    pub selector: Option<BTreeMap<String, String>>,
    /// Endpoint IPs from EndpointSlices (selector-less services).
    pub endpoint_ips: Vec<IpAddr>,
}

/// A node and its bootstrap credential (file mode CA authentication).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Bootstrap token the node's ztunnel presents to the CA.
    pub token: Option<String>,
}

/// Resources as the user wrote them (already schema-parsed).
#[derive(Debug, Clone, Default)]
#[allow(missing_docs)]
pub struct Resources {
    pub authorization_policies: Vec<AuthorizationPolicy>,
    pub peer_authentications: Vec<PeerAuthentication>,
    pub request_authentications: Vec<RequestAuthentication>,
    pub virtual_services: Vec<VirtualService>,
    pub destination_rules: Vec<DestinationRule>,
    pub telemetries: Vec<Telemetry>,
    pub wasm_plugins: Vec<WasmPlugin>,
    pub gateway_classes: Vec<GatewayClass>,
    pub gateways: Vec<Gateway>,
    pub http_routes: Vec<HTTPRoute>,
}

impl Resources {
    /// Add one object.
    pub fn push(&mut self, obj: IstioObject) {
        match obj {
            IstioObject::AuthorizationPolicy(o) => self.authorization_policies.push(o),
            IstioObject::PeerAuthentication(o) => self.peer_authentications.push(o),
            IstioObject::RequestAuthentication(o) => self.request_authentications.push(o),
            IstioObject::VirtualService(o) => self.virtual_services.push(o),
            IstioObject::DestinationRule(o) => self.destination_rules.push(o),
            IstioObject::Telemetry(o) => self.telemetries.push(o),
            IstioObject::WasmPlugin(o) => self.wasm_plugins.push(o),
            IstioObject::GatewayClass(o) => self.gateway_classes.push(o),
            IstioObject::Gateway(o) => self.gateways.push(o),
            IstioObject::HTTPRoute(o) => self.http_routes.push(o),
        }
    }

    /// All objects.
    pub fn objects(&self) -> Vec<IstioObject> {
        let mut v: Vec<IstioObject> = Vec::new();
        v.extend(
            self.authorization_policies
                .iter()
                .cloned()
                .map(IstioObject::AuthorizationPolicy),
        );
        v.extend(
            self.peer_authentications
                .iter()
                .cloned()
                .map(IstioObject::PeerAuthentication),
        );
        v.extend(
            self.request_authentications
                .iter()
                .cloned()
                .map(IstioObject::RequestAuthentication),
        );
        v.extend(
            self.virtual_services
                .iter()
                .cloned()
                .map(IstioObject::VirtualService),
        );
        v.extend(
            self.destination_rules
                .iter()
                .cloned()
                .map(IstioObject::DestinationRule),
        );
        v.extend(self.telemetries.iter().cloned().map(IstioObject::Telemetry));
        v.extend(
            self.wasm_plugins
                .iter()
                .cloned()
                .map(IstioObject::WasmPlugin),
        );
        v.extend(
            self.gateway_classes
                .iter()
                .cloned()
                .map(IstioObject::GatewayClass),
        );
        v.extend(self.gateways.iter().cloned().map(IstioObject::Gateway));
        v.extend(self.http_routes.iter().cloned().map(IstioObject::HTTPRoute));
        v
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.authorization_policies.len()
            + self.peer_authentications.len()
            + self.request_authentications.len()
            + self.virtual_services.len()
            + self.destination_rules.len()
            + self.telemetries.len()
            + self.wasm_plugins.len()
            + self.gateway_classes.len()
            + self.gateways.len()
            + self.http_routes.len()
    }

    /// `true` when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything translation needs.
#[derive(Debug, Clone, Default)]
pub struct ConfigSet {
    /// Mesh-wide settings.
    pub mesh: MeshSettings,
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, NamespaceInfo>,
    /// Pods.
    pub pods: Vec<PodInfo>,
    /// Services.
    pub services: Vec<ServiceInfo>,
    /// Nodes (file mode).
    pub nodes: Vec<NodeInfo>,
    /// Addresses of waypoint instances, by `namespace/name` of their
    /// Gateway (file mode: the launched process; Kubernetes: the waypoint
    /// Service's ClusterIP, also published in `Gateway.status.addresses`).
    pub waypoint_addresses: BTreeMap<String, Vec<IpAddr>>,
    /// Istio and Gateway API resources (only valid ones reach translation).
    pub resources: Resources,
}

impl ConfigSet {
    /// Labels of a namespace (empty when unknown).
    pub fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(ns)
            .map(|n| n.labels.clone())
            .unwrap_or_default()
    }
}
