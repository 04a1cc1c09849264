//! Kubernetes-style manifests → [`Doc`]s: core kinds become cluster model
//! objects, Istio and Gateway API kinds are parsed by the operator.

use super::{ContainerPort, Labels, Pod, PodTemplate, Service, ServicePort, Workload};
use operator::config::IstioObject;
use operator::config::parse::{ParsedDoc, parse_value};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Manifest errors.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// File unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not YAML.
    #[error("{origin}: invalid YAML: {message}")]
    Yaml {
        /// File and document.
        origin: String,
        /// Parser message.
        message: String,
    },
    /// A document the operator's schema refuses.
    #[error(transparent)]
    Parse(#[from] operator::config::parse::ParseError),
    /// A core object with a missing or bad field.
    #[error("{origin}: {kind} {name}: {message}")]
    Invalid {
        /// File and document.
        origin: String,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A kind neither Kubernetes core nor Istio.
    #[error(
        "{origin}: unsupported kind {kind:?} (apiVersion {api_version:?}): meshctl manages Namespace, Service, ServiceAccount, Pod, Deployment, StatefulSet and the Istio / Gateway API kinds"
    )]
    Unsupported {
        /// File and document.
        origin: String,
        /// Kind.
        kind: String,
        /// apiVersion.
        api_version: String,
    },
}

/// One document.
#[derive(Debug, Clone)]
pub enum Doc {
    /// Namespace with labels.
    Namespace(String, Labels),
    /// Service.
    Service(Service),
    /// Deployment / StatefulSet.
    Workload(Workload),
    /// A bare pod.
    Pod(Pod),
    /// Accepted and not stored (ServiceAccount).
    Noop(String, String),
    /// Istio / Gateway API resource.
    Istio(IstioObject),
}

impl Doc {
    /// `Kind namespace/name` for messages.
    pub fn describe(&self) -> String {
        match self {
            Doc::Namespace(n, _) => format!("namespace/{n}"),
            Doc::Service(s) => format!("service/{}", s.name),
            Doc::Workload(w) => format!("{}/{}", w.kind.to_lowercase(), w.name),
            Doc::Pod(p) => format!("pod/{}", p.name),
            Doc::Noop(k, n) => format!("{}/{n}", k.to_lowercase()),
            Doc::Istio(o) => {
                let k = o.key();
                format!("{}/{}", k.kind.as_str().to_lowercase(), k.name)
            }
        }
    }
}

fn s(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn labels(v: &Value, ptr: &str) -> Labels {
    v.pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn template(spec: &Value) -> PodTemplate {
    let mut ports = Vec::new();
    for c in spec
        .pointer("/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = p
                .get("containerPort")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
            {
                ports.push(ContainerPort {
                    name: s(p, "/name"),
                    port: n,
                });
            }
        }
    }
    let sa = s(spec, "/serviceAccountName");
    PodTemplate {
        labels: Labels::new(),
        annotations: Labels::new(),
        service_account: if sa.is_empty() { "default".into() } else { sa },
        node: spec
            .pointer("/nodeName")
            .and_then(Value::as_str)
            .map(str::to_string),
        ports,
    }
}

/// Parse one JSON value.
pub fn parse_doc(v: Value, origin: &str, default_ns: &str) -> Result<Doc, ManifestError> {
    let kind = s(&v, "/kind");
    let api_version = s(&v, "/apiVersion");
    let name = s(&v, "/metadata/name");
    let ns = match s(&v, "/metadata/namespace") {
        n if n.is_empty() => default_ns.to_string(),
        n => n,
    };
    let invalid = |m: &str| ManifestError::Invalid {
        origin: origin.into(),
        kind: kind.clone(),
        name: name.clone(),
        message: m.into(),
    };
    let core = api_version == "v1" || api_version == "apps/v1";
    if core && name.is_empty() {
        return Err(invalid("metadata.name is required"));
    }
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => Ok(Doc::Namespace(name, labels(&v, "/metadata/labels"))),
        ("v1", "ServiceAccount") => Ok(Doc::Noop(kind, name)),
        ("v1", "Service") => {
            let spec = v.get("spec").cloned().unwrap_or(Value::Null);
            let cip = s(&spec, "/clusterIP");
            let mut ports = Vec::new();
            for p in spec
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let port = p
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| invalid("every port needs a port number"))?;
                ports.push(ServicePort {
                    name: s(p, "/name"),
                    port,
                    target_port: p
                        .get("targetPort")
                        .map(|t| serde_yaml::to_value(t).unwrap_or(serde_yaml::Value::Null)),
                    app_protocol: p
                        .get("appProtocol")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                });
            }
            Ok(Doc::Service(Service {
                name,
                namespace: ns,
                labels: labels(&v, "/metadata/labels"),
                cluster_ip: cip.parse().ok(),
                headless: cip == "None",
                selector: spec.get("selector").map(|_| labels(&spec, "/selector")),
                ports,
            }))
        }
        ("v1", "Pod") => {
            let t = template(v.get("spec").unwrap_or(&Value::Null));
            Ok(Doc::Pod(Pod {
                name,
                namespace: ns,
                labels: labels(&v, "/metadata/labels"),
                annotations: labels(&v, "/metadata/annotations"),
                service_account: t.service_account,
                node: t.node.unwrap_or_default(),
                ports: t.ports,
                ..Default::default()
            }))
        }
        ("apps/v1", "Deployment" | "StatefulSet") => {
            let spec = v.get("spec").cloned().unwrap_or(Value::Null);
            let mut t = template(spec.pointer("/template/spec").unwrap_or(&Value::Null));
            t.labels = labels(&spec, "/template/metadata/labels");
            t.annotations = labels(&spec, "/template/metadata/annotations");
            let replicas = spec.get("replicas").and_then(Value::as_u64).unwrap_or(1);
            let replicas = u32::try_from(replicas).map_err(|_| invalid("replicas out of range"))?;
            Ok(Doc::Workload(Workload {
                kind,
                name,
                namespace: ns,
                labels: labels(&v, "/metadata/labels"),
                replicas,
                service_name: spec
                    .get("serviceName")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                template: t,
            }))
        }
        _ => match parse_value(v, origin, default_ns)? {
            ParsedDoc::Object(o) => Ok(Doc::Istio(o)),
            _ => Err(ManifestError::Unsupported {
                origin: origin.into(),
                kind,
                api_version,
            }),
        },
    }
}

/// Parse a YAML stream (several documents, `kind: List` expanded).
pub fn parse_text(text: &str, origin: &str, default_ns: &str) -> Result<Vec<Doc>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = format!("{origin} (document {})", i + 1);
        let v = Value::deserialize(doc).map_err(|e| ManifestError::Yaml {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        match v {
            Value::Null => {}
            v if v.get("kind").and_then(Value::as_str) == Some("List") => {
                for item in v
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.push(parse_doc(item.clone(), &origin, default_ns)?);
                }
            }
            v => out.push(parse_doc(v, &origin, default_ns)?),
        }
    }
    Ok(out)
}

/// Like [`parse_text`], but a document that does not parse is reported
/// and skipped instead of failing the whole text (a YAML syntax error still
/// ends the text: the stream cannot continue after it).
pub fn parse_text_lenient(
    text: &str,
    origin: &str,
    default_ns: &str,
) -> (Vec<Doc>, Vec<ManifestError>) {
    let (mut docs, mut errors) = (Vec::new(), Vec::new());
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = format!("{origin} (document {})", i + 1);
        let v = match Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                errors.push(ManifestError::Yaml {
                    origin,
                    message: e.to_string(),
                });
                break;
            }
        };
        let items: Vec<Value> = match v {
            Value::Null => Vec::new(),
            v if v.get("kind").and_then(Value::as_str) == Some("List") => v
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            v => vec![v],
        };
        for item in items {
            match parse_doc(item, &origin, default_ns) {
                Ok(d) => docs.push(d),
                Err(e) => errors.push(e),
            }
        }
    }
    (docs, errors)
}

/// YAML files under `path` (a file, or a directory read recursively in name
/// order), like `kubectl apply -f`.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let read = |p: &Path, source| ManifestError::Read {
        path: p.to_path_buf(),
        source,
    };
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| read(path, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(files(&p)?);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Parse every manifest under `path` (`-` reads stdin).
pub fn load(path: &Path, default_ns: &str) -> Result<Vec<Doc>, ManifestError> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|source| {
            ManifestError::Read {
                path: path.into(),
                source,
            }
        })?;
        return parse_text(&text, "<stdin>", default_ns);
    }
    let mut out = Vec::new();
    for f in files(path)? {
        let text = std::fs::read_to_string(&f).map_err(|source| ManifestError::Read {
            path: f.clone(),
            source,
        })?;
        out.extend(parse_text(&text, &f.display().to_string(), default_ns)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_istio_documents() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  template:\n    metadata: {labels: {app: web, version: v1}}\n    spec:\n      serviceAccountName: web\n      containers: [{name: app, ports: [{containerPort: 8080, name: http}]}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080, name: http}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all}\nspec: {}\n";
        let docs = parse_text(text, "t.yaml", "shop").unwrap();
        let Doc::Workload(w) = &docs[0] else {
            panic!("{docs:?}")
        };
        assert_eq!(
            (
                w.replicas,
                w.namespace.as_str(),
                w.template.service_account.as_str()
            ),
            (2, "shop", "web")
        );
        assert_eq!(
            w.template.ports,
            vec![ContainerPort {
                name: "http".into(),
                port: 8080
            }]
        );
        let Doc::Service(s) = &docs[1] else { panic!() };
        assert_eq!(s.selector.as_ref().unwrap()["app"], "web");
        let Doc::Istio(o) = &docs[2] else { panic!() };
        assert_eq!(o.key().namespace, "shop");
        let err = parse_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "c.yaml",
            "default",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unsupported kind \"ConfigMap\""),
            "{err}"
        );
    }
}
