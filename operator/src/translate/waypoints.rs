//! Waypoint discovery and binding (`istio.io/use-waypoint`,
//! `istio.io/waypoint-for`), Istio §7.1.

use super::status::{Condition, StatusTarget, Statuses};
use crate::config::ConfigSet;
use crate::crd::Gateway;
use crate::crd::gateway::LabelSelector;
use mesh_common::model::{TrafficType, WaypointBinding};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// GatewayClass name of waypoints.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// Controller of the waypoint class.
pub const WAYPOINT_CONTROLLER: &str = "istio.io/mesh-controller";
/// Label naming a waypoint.
pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
/// Label naming the waypoint's namespace.
pub const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
/// Label on a waypoint Gateway/GatewayClass: traffic it takes.
pub const WAYPOINT_FOR: &str = "istio.io/waypoint-for";
/// Label on waypoint pods.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// Enrolment label.
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";

/// Who may attach to a waypoint from another namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum AllowedFrom {
    /// Only the waypoint's namespace (default).
    Same,
    /// Any namespace.
    All,
    /// Namespaces matching a selector.
    Selector(LabelSelector),
}

/// A waypoint Gateway.
#[derive(Debug, Clone)]
pub struct WaypointInfo {
    /// Gateway name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `istio.io/waypoint-for` (Gateway label, else GatewayClass label, else service).
    pub traffic_type: TrafficType,
    /// Addresses (empty ⇒ not ready).
    pub addresses: Vec<IpAddr>,
    /// Name of the rendered Deployment and Service
    /// (`gateway.istio.io/name-override`, else the Gateway's name).
    pub deployment_name: String,
    /// Service account the waypoint runs as
    /// (`gateway.istio.io/service-account`, else the deployment name).
    pub service_account: String,
    /// Managed: the operator renders its Deployment and Service. A Gateway
    /// with a `Hostname` address points at a proxy deployed by the user.
    pub managed: bool,
    /// Attachment rule of the HBONE listener.
    pub allowed_from: AllowedFrom,
    /// The Gateway object.
    pub gateway: Gateway,
}

impl WaypointInfo {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// SPIFFE ID.
    pub fn identity(&self, trust_domain: &str) -> String {
        format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }

    /// Ready = has an address.
    pub fn ready(&self) -> bool {
        !self.addresses.is_empty()
    }

    fn admits(&self, ns: &str, ns_labels: &BTreeMap<String, String>) -> bool {
        match &self.allowed_from {
            AllowedFrom::Same => ns == self.namespace,
            AllowedFrom::All => true,
            // As istiod (`AllowsAttachmentFromNamespace`): the selector
            // alone decides, the waypoint's own namespace included.
            AllowedFrom::Selector(s) => s.matches(ns_labels),
        }
    }

    /// Binding handed to proxies.
    pub fn binding(&self, trust_domain: &str) -> WaypointBinding {
        WaypointBinding {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            addresses: self.addresses.clone(),
            hbone_port: 15008,
            identity: self.identity(trust_domain),
            traffic_type: self.traffic_type,
        }
    }
}

/// Is `gw` a waypoint?
pub fn is_waypoint(gw: &Gateway, cs: &ConfigSet) -> bool {
    gw.spec.gateway_class_name == WAYPOINT_CLASS
        || cs.resources.gateway_classes.iter().any(|c| {
            c.metadata.name.as_deref() == Some(gw.spec.gateway_class_name.as_str())
                && c.spec.controller_name == WAYPOINT_CONTROLLER
        })
}

/// All waypoints by `namespace/name`.
pub fn discover(cs: &ConfigSet) -> BTreeMap<String, WaypointInfo> {
    let mut out = BTreeMap::new();
    for gw in cs.resources.gateways.iter().filter(|g| is_waypoint(g, cs)) {
        let name = gw.metadata.name.clone().unwrap_or_default();
        let namespace = gw.metadata.namespace.clone().unwrap_or_default();
        let key = format!("{namespace}/{name}");
        let class_label = cs
            .resources
            .gateway_classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(gw.spec.gateway_class_name.as_str()))
            .and_then(|c| c.metadata.labels.as_ref()?.get(WAYPOINT_FOR).cloned());
        let traffic_type = gw
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(WAYPOINT_FOR).cloned())
            .or(class_label)
            .and_then(|v| TrafficType::parse(&v))
            .unwrap_or_default();
        let addresses: Vec<IpAddr> = match cs.waypoint_addresses.get(&key) {
            Some(a) => a.clone(),
            None => gw
                .status
                .iter()
                .flat_map(|s| s.addresses.iter())
                .filter_map(|a| a.value.parse().ok())
                .collect(),
        };
        let annotation = |k: &str| {
            gw.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(k).cloned())
                .filter(|v| !v.is_empty())
        };
        let deployment_name =
            annotation("gateway.istio.io/name-override").unwrap_or_else(|| name.clone());
        let service_account = annotation("gateway.istio.io/service-account")
            .unwrap_or_else(|| deployment_name.clone());
        let managed = !gw
            .spec
            .addresses
            .iter()
            .flatten()
            .any(|a| a.type_.as_deref() == Some("Hostname"));
        let hbone = gw.spec.listeners.iter().find(|l| l.protocol == "HBONE");
        let allowed_from = match hbone
            .and_then(|l| l.allowed_routes.as_ref())
            .and_then(|a| a.namespaces.as_ref())
        {
            Some(n) => match n.from.as_deref() {
                Some("All") => AllowedFrom::All,
                Some("Selector") => AllowedFrom::Selector(n.selector.clone().unwrap_or_default()),
                _ => AllowedFrom::Same,
            },
            None => AllowedFrom::Same,
        };
        out.insert(
            key,
            WaypointInfo {
                name,
                namespace,
                traffic_type,
                addresses,
                deployment_name,
                service_account,
                managed,
                allowed_from,
                gateway: gw.clone(),
            },
        );
    }
    out
}

/// Which traffic is being bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindFor {
    /// Service VIP traffic.
    Service,
    /// Pod-addressed traffic.
    Workload,
}

/// Resolve the waypoint for an object (Service or Pod) with `labels` in
/// `namespace`. Returns the waypoint key when bound; records the
/// `istio.io/WaypointBound` condition for Services in `statuses`.
pub fn resolve(
    cs: &ConfigSet,
    waypoints: &BTreeMap<String, WaypointInfo>,
    labels: &BTreeMap<String, String>,
    namespace: &str,
    bind: BindFor,
    status_target: Option<StatusTarget>,
    statuses: &mut Statuses,
) -> Option<String> {
    let ns_labels = cs.namespace_labels(namespace);
    let (name, wp_ns, explicit) = match labels.get(USE_WAYPOINT) {
        Some(n) => (n.clone(), labels.get(USE_WAYPOINT_NAMESPACE).cloned(), true),
        None => match ns_labels.get(USE_WAYPOINT) {
            Some(n) => (
                n.clone(),
                ns_labels.get(USE_WAYPOINT_NAMESPACE).cloned(),
                false,
            ),
            None => return None,
        },
    };
    if name == "none" {
        return None;
    }
    let wp_ns = wp_ns.unwrap_or_else(|| namespace.to_string());
    let key = format!("{wp_ns}/{name}");
    let mut fail = |reason: &str, message: String| {
        if let Some(t) = &status_target {
            statuses.set(
                t.clone(),
                Condition::new("istio.io/WaypointBound", false, reason, message),
            );
        }
    };
    let Some(wp) = waypoints.get(&key).filter(|w| w.ready()) else {
        fail(
            "WaypointIsNotReady",
            format!("waypoint {key:?} is not ready"),
        );
        return None;
    };
    let ok_type = match bind {
        BindFor::Service => wp.traffic_type.handles_service(),
        BindFor::Workload => wp.traffic_type.handles_workload(),
    };
    if !ok_type {
        if explicit || bind == BindFor::Service {
            let t = if bind == BindFor::Service {
                "service"
            } else {
                "workload"
            };
            fail(
                "UnsupportedTrafficType",
                format!(
                    "attempting to bind to traffic type {t:?} which the waypoint {key:?} does not support"
                ),
            );
        }
        return None;
    }
    if !wp.admits(namespace, &ns_labels) {
        fail(
            "AttachmentDenied",
            format!("we are not permitted to attach to waypoint {key:?} (missing allowedRoutes?)"),
        );
        return None;
    }
    if let Some(t) = status_target {
        statuses.set(
            t,
            Condition::new(
                "istio.io/WaypointBound",
                true,
                "WaypointAccepted",
                format!("Successfully attached to waypoint {key}"),
            ),
        );
    }
    Some(key)
}
