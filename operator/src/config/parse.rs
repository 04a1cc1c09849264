//! YAML/JSON documents → typed resources.

use super::objects::{IstioObject, Kind};
use super::{NamespaceInfo, ServiceInfo, ServicePortInfo, TargetPort};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Parse errors, each naming the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not YAML.
    #[error("{origin}: invalid YAML: {message}")]
    Yaml {
        /// File (and document).
        origin: String,
        /// Parser message.
        message: String,
    },
    /// YAML, but not a resource the schema accepts.
    #[error("{origin}: {kind} {name}: {message}")]
    Schema {
        /// File (and document).
        origin: String,
        /// Kind.
        kind: String,
        /// `namespace/name`.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// apiVersion/kind pair not known.
    #[error(
        "{origin}: unsupported apiVersion {api_version:?} for kind {kind:?}; expected one of {expected}"
    )]
    Version {
        /// File.
        origin: String,
        /// apiVersion found.
        api_version: String,
        /// Kind.
        kind: String,
        /// Accepted versions.
        expected: String,
    },
}

/// One parsed document.
#[derive(Debug, Clone)]
pub enum ParsedDoc {
    /// An Istio / Gateway API resource.
    Object(IstioObject),
    /// A core Namespace (labels for enrolment and waypoint use).
    Namespace(NamespaceInfo),
    /// A core Service.
    Service(ServiceInfo),
    /// A kind the operator does not read (kept for `analyze`, otherwise ignored).
    Ignored {
        /// apiVersion.
        api_version: String,
        /// Kind.
        kind: String,
    },
}

/// Parse a multi-document YAML (or JSON) stream. `origin` names it in
/// errors; `default_namespace` fills a missing `metadata.namespace`.
pub fn parse_documents(
    text: &str,
    origin: &str,
    default_namespace: &str,
) -> Vec<Result<ParsedDoc, ParseError>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = format!("{origin} (document {})", i + 1);
        match serde_json::Value::deserialize(doc) {
            Ok(serde_json::Value::Null) => {}
            Ok(v) => {
                // `kind: List` from `kubectl get -o yaml`.
                if v.get("kind").and_then(|k| k.as_str()) == Some("List") {
                    for item in v
                        .get("items")
                        .and_then(|i| i.as_array())
                        .into_iter()
                        .flatten()
                    {
                        out.push(parse_value(item.clone(), &origin, default_namespace));
                    }
                } else {
                    out.push(parse_value(v, &origin, default_namespace));
                }
            }
            Err(e) => {
                out.push(Err(ParseError::Yaml {
                    origin,
                    message: e.to_string(),
                }));
                // The stream cannot continue after a syntax error.
                break;
            }
        }
    }
    out
}

fn typed<T: DeserializeOwned>(
    v: serde_json::Value,
    origin: &str,
    kind: &str,
    name: &str,
) -> Result<T, ParseError> {
    serde_json::from_value(v).map_err(|e| ParseError::Schema {
        origin: origin.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        message: e.to_string(),
    })
}

/// Parse one JSON value into a document.
pub fn parse_value(
    mut v: serde_json::Value,
    origin: &str,
    default_namespace: &str,
) -> Result<ParsedDoc, ParseError> {
    let api_version = v
        .get("apiVersion")
        .and_then(|a| a.as_str())
        .unwrap_or("")
        .to_string();
    let kind_name = v
        .get("kind")
        .and_then(|a| a.as_str())
        .unwrap_or("")
        .to_string();
    let (group, version) = api_version
        .rsplit_once('/')
        .unwrap_or(("", api_version.as_str()));
    let name = v
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    if group.is_empty() {
        return parse_core(v, origin, &kind_name, &api_version, default_namespace);
    }
    let Some(kind) = Kind::parse(&kind_name).filter(|k| k.group() == group) else {
        return Ok(ParsedDoc::Ignored {
            api_version,
            kind: kind_name,
        });
    };
    if !kind.accepted_versions().contains(&version) {
        return Err(ParseError::Version {
            origin: origin.into(),
            api_version,
            kind: kind_name,
            expected: kind
                .accepted_versions()
                .iter()
                .map(|v| format!("{}/{v}", kind.group()))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let Some(obj) = v.as_object_mut() else {
        return Err(ParseError::Schema {
            origin: origin.into(),
            kind: kind_name,
            name,
            message: "document is not a mapping".into(),
        });
    };
    // Normalise to the storage version so typed structs accept aliases.
    obj.insert(
        "apiVersion".into(),
        format!("{}/{}", kind.group(), kind.version()).into(),
    );
    if !obj.get("spec").is_some_and(|s| s.is_object()) {
        if obj.get("spec").is_some_and(|s| !s.is_null()) {
            return Err(ParseError::Schema {
                origin: origin.into(),
                kind: kind_name,
                name,
                message: "spec must be a mapping".into(),
            });
        }
        obj.insert("spec".into(), serde_json::json!({}));
    }
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| serde_json::json!({}));
    if name.is_empty() {
        return Err(ParseError::Schema {
            origin: origin.into(),
            kind: kind_name,
            name,
            message: "metadata.name is required".into(),
        });
    }
    if !kind.cluster_scoped()
        && let Some(m) = meta.as_object_mut()
        && m.get("namespace")
            .is_none_or(|n| n.as_str().is_none_or(|s| s.is_empty()))
    {
        m.insert("namespace".into(), default_namespace.into());
    }
    let ns = v
        .pointer("/metadata/namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("");
    let full = if ns.is_empty() {
        name.clone()
    } else {
        format!("{ns}/{name}")
    };
    let k = kind_name.as_str();
    Ok(ParsedDoc::Object(match kind {
        Kind::AuthorizationPolicy => IstioObject::AuthorizationPolicy(typed(v, origin, k, &full)?),
        Kind::PeerAuthentication => IstioObject::PeerAuthentication(typed(v, origin, k, &full)?),
        Kind::RequestAuthentication => {
            IstioObject::RequestAuthentication(typed(v, origin, k, &full)?)
        }
        Kind::VirtualService => IstioObject::VirtualService(typed(v, origin, k, &full)?),
        Kind::DestinationRule => IstioObject::DestinationRule(typed(v, origin, k, &full)?),
        Kind::Telemetry => IstioObject::Telemetry(typed(v, origin, k, &full)?),
        Kind::WasmPlugin => IstioObject::WasmPlugin(typed(v, origin, k, &full)?),
        Kind::GatewayClass => IstioObject::GatewayClass(typed(v, origin, k, &full)?),
        Kind::Gateway => IstioObject::Gateway(typed(v, origin, k, &full)?),
        Kind::HTTPRoute => IstioObject::HTTPRoute(typed(v, origin, k, &full)?),
    }))
}

fn parse_core(
    v: serde_json::Value,
    origin: &str,
    kind: &str,
    api_version: &str,
    default_namespace: &str,
) -> Result<ParsedDoc, ParseError> {
    match kind {
        "Namespace" => {
            let ns: k8s_openapi::api::core::v1::Namespace = typed(v, origin, kind, "")?;
            Ok(ParsedDoc::Namespace(NamespaceInfo {
                name: ns.metadata.name.unwrap_or_default(),
                labels: ns.metadata.labels.unwrap_or_default(),
            }))
        }
        "Service" => {
            let svc: k8s_openapi::api::core::v1::Service = typed(v, origin, kind, "")?;
            Ok(ParsedDoc::Service(service_info(&svc, default_namespace)))
        }
        _ => Ok(ParsedDoc::Ignored {
            api_version: api_version.into(),
            kind: kind.into(),
        }),
    }
}

/// A Kubernetes Service as the operator sees it.
pub fn service_info(
    svc: &k8s_openapi::api::core::v1::Service,
    default_namespace: &str,
) -> ServiceInfo {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let spec = svc.spec.clone().unwrap_or_default();
    let mut vips: Vec<std::net::IpAddr> = Vec::new();
    for ip in spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
    {
        if let Ok(a) = ip.parse()
            && !vips.contains(&a)
        {
            vips.push(a);
        }
    }
    ServiceInfo {
        name: svc.metadata.name.clone().unwrap_or_default(),
        namespace: svc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_string()),
        labels: svc.metadata.labels.clone().unwrap_or_default(),
        vips,
        ports: spec
            .ports
            .iter()
            .flatten()
            .map(|p| ServicePortInfo {
                name: p.name.clone().unwrap_or_default(),
                port: u16::try_from(p.port).unwrap_or(0),
                target_port: match &p.target_port {
                    Some(IntOrString::Int(n)) => TargetPort::Number(u16::try_from(*n).unwrap_or(0)),
                    Some(IntOrString::String(s)) => match s.parse::<u16>() {
                        Ok(n) => TargetPort::Number(n),
                        Err(_) => TargetPort::Name(s.clone()),
                    },
                    None => TargetPort::Number(u16::try_from(p.port).unwrap_or(0)),
                },
                app_protocol: p.app_protocol.clone(),
            })
            .collect(),
        selector: spec.selector.clone(),
        endpoint_ips: Vec::new(),
    }
}
