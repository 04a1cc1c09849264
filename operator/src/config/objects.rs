//! One enum over every resource kind the operator reads.

use crate::crd::{
    AuthorizationPolicy, DestinationRule, Gateway, GatewayClass, HTTPRoute, PeerAuthentication,
    RequestAuthentication, Telemetry, VirtualService, WasmPlugin,
};
use kube::api::ObjectMeta;
use serde::Serialize;
use std::fmt;

/// Resource kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[allow(missing_docs)]
pub enum Kind {
    AuthorizationPolicy,
    PeerAuthentication,
    RequestAuthentication,
    VirtualService,
    DestinationRule,
    Telemetry,
    WasmPlugin,
    GatewayClass,
    Gateway,
    HTTPRoute,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 10] = [
        Kind::AuthorizationPolicy,
        Kind::PeerAuthentication,
        Kind::RequestAuthentication,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::Telemetry,
        Kind::WasmPlugin,
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::HTTPRoute,
    ];

    /// API group.
    pub fn group(self) -> &'static str {
        match self {
            Kind::AuthorizationPolicy | Kind::PeerAuthentication | Kind::RequestAuthentication => {
                "security.istio.io"
            }
            Kind::VirtualService | Kind::DestinationRule => "networking.istio.io",
            Kind::Telemetry => "telemetry.istio.io",
            Kind::WasmPlugin => "extensions.istio.io",
            Kind::GatewayClass | Kind::Gateway | Kind::HTTPRoute => "gateway.networking.k8s.io",
        }
    }

    /// Storage version.
    pub fn version(self) -> &'static str {
        match self {
            Kind::WasmPlugin => "v1alpha1",
            _ => "v1",
        }
    }

    /// Versions accepted on input.
    pub fn accepted_versions(self) -> &'static [&'static str] {
        match self.group() {
            "security.istio.io" => &["v1", "v1beta1"],
            "networking.istio.io" => &["v1", "v1beta1", "v1alpha3"],
            "telemetry.istio.io" => &["v1", "v1alpha1"],
            "extensions.istio.io" => &["v1alpha1"],
            _ => &["v1", "v1beta1"],
        }
    }

    /// Kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Telemetry => "Telemetry",
            Kind::WasmPlugin => "WasmPlugin",
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::HTTPRoute => "HTTPRoute",
        }
    }

    /// Parse a kind name.
    pub fn parse(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// Cluster-scoped?
    pub fn cluster_scoped(self) -> bool {
        self == Kind::GatewayClass
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `(kind, namespace, name)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Any resource.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum IstioObject {
    AuthorizationPolicy(AuthorizationPolicy),
    PeerAuthentication(PeerAuthentication),
    RequestAuthentication(RequestAuthentication),
    VirtualService(VirtualService),
    DestinationRule(DestinationRule),
    Telemetry(Telemetry),
    WasmPlugin(WasmPlugin),
    GatewayClass(GatewayClass),
    Gateway(Gateway),
    HTTPRoute(HTTPRoute),
}

macro_rules! each {
    ($self:expr, $o:ident => $e:expr) => {
        match $self {
            IstioObject::AuthorizationPolicy($o) => $e,
            IstioObject::PeerAuthentication($o) => $e,
            IstioObject::RequestAuthentication($o) => $e,
            IstioObject::VirtualService($o) => $e,
            IstioObject::DestinationRule($o) => $e,
            IstioObject::Telemetry($o) => $e,
            IstioObject::WasmPlugin($o) => $e,
            IstioObject::GatewayClass($o) => $e,
            IstioObject::Gateway($o) => $e,
            IstioObject::HTTPRoute($o) => $e,
        }
    };
}

impl IstioObject {
    /// Kind.
    pub fn kind(&self) -> Kind {
        match self {
            IstioObject::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            IstioObject::PeerAuthentication(_) => Kind::PeerAuthentication,
            IstioObject::RequestAuthentication(_) => Kind::RequestAuthentication,
            IstioObject::VirtualService(_) => Kind::VirtualService,
            IstioObject::DestinationRule(_) => Kind::DestinationRule,
            IstioObject::Telemetry(_) => Kind::Telemetry,
            IstioObject::WasmPlugin(_) => Kind::WasmPlugin,
            IstioObject::GatewayClass(_) => Kind::GatewayClass,
            IstioObject::Gateway(_) => Kind::Gateway,
            IstioObject::HTTPRoute(_) => Kind::HTTPRoute,
        }
    }

    /// Metadata.
    pub fn meta(&self) -> &ObjectMeta {
        each!(self, o => &o.metadata)
    }

    /// Mutable metadata.
    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        each!(self, o => &mut o.metadata)
    }

    /// Key.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.kind(),
            namespace: self.meta().namespace.clone().unwrap_or_default(),
            name: self.meta().name.clone().unwrap_or_default(),
        }
    }

    /// JSON form (apiVersion, kind, metadata, spec).
    pub fn to_value(&self) -> serde_json::Value {
        each!(self, o => serde_json::to_value(o).unwrap_or_default())
    }
}
