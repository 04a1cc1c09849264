//! Changing the local mesh's configuration, the way `kubectl apply`,
//! `delete` and `label` change a cluster: core objects live in
//! `cluster.yaml`, Istio objects one file each in the config directory (the
//! operator watches both). Saving re-renders the inventory and reconciles
//! the running pods (network namespaces and sample apps).

use super::manifest::Doc;
use super::{Cluster, Labels, Workload};
use crate::context::{ContextError, Lock, RunDir, write_atomic};
use crate::mesh::state::{State, StateError};
use operator::config::parse::{ParsedDoc, parse_documents};
use operator::config::{IstioObject, Kind, MeshSettings, ObjectKey};
use sha2::Digest;
use std::path::PathBuf;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No mesh / lock.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// State file.
    #[error(transparent)]
    State(#[from] StateError),
    /// File IO.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// `cluster.yaml` corrupt.
    #[error("{path}: {source}")]
    Yaml {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: serde_yaml::Error,
    },
    /// Validation refused an object (Istio's admission webhook message).
    #[error(
        "error when applying {object}: admission webhook \"validation.istio.io\" denied the request: configuration is invalid: {message}"
    )]
    Invalid {
        /// `kind/name`.
        object: String,
        /// Messages.
        message: String,
    },
    /// Not found.
    #[error("{0} not found")]
    NotFound(String),
    /// Label exists and --overwrite was not given.
    #[error("'{key}' already has a value ({value}), and --overwrite is false")]
    LabelExists {
        /// Key.
        key: String,
        /// Current value.
        value: String,
    },
    /// Runtime reconciliation.
    #[error("{0}")]
    Runtime(String),
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The local mesh's configuration, locked for changes.
pub struct Store {
    /// Run directory.
    pub rd: RunDir,
    /// Core objects.
    pub cluster: Cluster,
    /// Runtime state.
    pub state: State,
    _lock: Lock,
}

/// File name of an Istio object in the config directory.
pub fn object_file(rd: &RunDir, key: &ObjectKey) -> PathBuf {
    let ns = if key.namespace.is_empty() {
        "_cluster"
    } else {
        &key.namespace
    };
    rd.config_dir().join(format!(
        "{}.{ns}.{}.yaml",
        key.kind.as_str().to_lowercase(),
        key.name
    ))
}

/// Namespaces every cluster has: Kubernetes' own and the mesh's.
pub const BUILTIN_NAMESPACES: [&str; 3] = ["default", "istio-system", "kube-system"];

/// Load `cluster.yaml` (empty when absent), with the built-in namespaces.
pub fn load_cluster(rd: &RunDir) -> Result<Cluster, StoreError> {
    let path = rd.cluster_file();
    let mut c = match std::fs::read_to_string(&path) {
        Ok(t) => serde_yaml::from_str(&t).map_err(|source| StoreError::Yaml { path, source })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Cluster::default(),
        Err(e) => return Err(StoreError::Io { path, source: e }),
    };
    for ns in BUILTIN_NAMESPACES {
        c.namespaces.entry(ns.to_string()).or_default();
    }
    Ok(c)
}

/// Every Istio object in the config directory.
pub fn load_objects(rd: &RunDir) -> Result<Vec<IstioObject>, StoreError> {
    let dir = rd.config_dir();
    let mut out = Vec::new();
    let Ok(rd_) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    let mut files: Vec<PathBuf> = rd_
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(io(&f))?;
        for d in parse_documents(&text, &f.display().to_string(), "default")
            .into_iter()
            .flatten()
        {
            if let ParsedDoc::Object(o) = d {
                out.push(o);
            }
        }
    }
    Ok(out)
}

/// Pod name of replica `i` of a workload (`web-7c5d2` for Deployments,
/// `db-0` for StatefulSets).
pub fn replica_name(w: &Workload, i: u32) -> String {
    if w.kind == "StatefulSet" {
        return format!("{}-{i}", w.name);
    }
    let h = sha2::Sha256::digest(format!("{}/{}/{i}", w.namespace, w.name));
    format!("{}-{}", w.name, &hex::encode(h)[..5])
}

impl Store {
    /// Open and lock the run directory's configuration.
    pub fn open(rd: &RunDir) -> Result<Self, StoreError> {
        rd.require()?;
        let lock = rd.lock()?;
        let state = State::load(rd)?;
        let cluster = load_cluster(rd)?;
        Ok(Store {
            rd: rd.clone(),
            cluster,
            state,
            _lock: lock,
        })
    }

    /// Apply documents; returns kubectl-style lines (`deployment/web created`).
    pub fn apply(&mut self, docs: Vec<Doc>) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        // Validate every Istio object first: nothing is written when one is refused.
        let mesh = MeshSettings::default();
        for d in &docs {
            if let Doc::Istio(o) = d {
                let v = operator::validate::validate(o, &mesh);
                if !v.is_valid() {
                    return Err(StoreError::Invalid {
                        object: d.describe(),
                        message: v.errors.join("; "),
                    });
                }
                for w in v.warnings {
                    out.push(format!("Warning: {}: {w}", d.describe()));
                }
            }
        }
        for d in docs {
            let what = d.describe();
            let verb = match d {
                Doc::Istio(o) => {
                    let path = object_file(&self.rd, &o.key());
                    let text = serde_yaml::to_string(&o.to_value()).map_err(|source| {
                        StoreError::Yaml {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    let verb = match std::fs::read_to_string(&path) {
                        Ok(old) if old == text => "unchanged",
                        Ok(_) => "configured",
                        Err(_) => "created",
                    };
                    write_atomic(&path, text.as_bytes()).map_err(io(&path))?;
                    verb
                }
                core => self.cluster.apply_core(core),
            };
            out.push(format!("{what} {verb}"));
        }
        Ok(out)
    }

    /// Delete what the documents name.
    pub fn delete_docs(&mut self, docs: &[Doc]) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for d in docs {
            let (kind, ns, name) = match d {
                Doc::Namespace(n, _) => ("namespace", String::new(), n.clone()),
                Doc::Service(s) => ("service", s.namespace.clone(), s.name.clone()),
                Doc::Workload(w) => (
                    if w.kind == "StatefulSet" {
                        "statefulset"
                    } else {
                        "deployment"
                    },
                    w.namespace.clone(),
                    w.name.clone(),
                ),
                Doc::Pod(p) => ("pod", p.namespace.clone(), p.name.clone()),
                Doc::Noop(..) => continue,
                Doc::Istio(o) => {
                    let k = o.key();
                    let path = object_file(&self.rd, &k);
                    if std::fs::remove_file(&path).is_ok() {
                        out.push(format!(
                            "{} \"{}\" deleted",
                            k.kind.as_str().to_lowercase(),
                            k.name
                        ));
                    } else {
                        out.push(format!(
                            "Error from server (NotFound): {} \"{}\" not found",
                            k.kind.as_str().to_lowercase(),
                            k.name
                        ));
                    }
                    continue;
                }
            };
            out.push(match self.delete(kind, &ns, &name) {
                Ok(()) => format!("{kind} \"{name}\" deleted"),
                Err(e) => format!("Error from server (NotFound): {e}"),
            });
        }
        Ok(out)
    }

    /// Delete one core object (`namespace`, `service`, `deployment`,
    /// `statefulset`, `pod`) or an Istio object by kind name.
    pub fn delete(&mut self, kind: &str, ns: &str, name: &str) -> Result<(), StoreError> {
        let c = &mut self.cluster;
        let nf = || StoreError::NotFound(format!("{kind} \"{name}\""));
        match kind {
            "namespace" => {
                c.namespaces.remove(name).ok_or_else(nf)?;
                c.pods.retain(|p| p.namespace != name);
                c.services.retain(|s| s.namespace != name);
                c.workloads.retain(|w| w.namespace != name);
            }
            "service" => {
                let n = c.services.len();
                c.services
                    .retain(|s| !(s.namespace == ns && s.name == name));
                if n == c.services.len() {
                    return Err(nf());
                }
            }
            "deployment" | "statefulset" => {
                let k = if kind == "deployment" {
                    "Deployment"
                } else {
                    "StatefulSet"
                };
                let n = c.workloads.len();
                c.workloads
                    .retain(|w| !(w.namespace == ns && w.name == name && w.kind == k));
                if n == c.workloads.len() {
                    return Err(nf());
                }
                c.pods.retain(|p| {
                    !(p.namespace == ns
                        && p.owner
                            .as_ref()
                            .is_some_and(|o| o.name == name && o.kind == k))
                });
            }
            "pod" => {
                let n = c.pods.len();
                c.pods.retain(|p| !(p.namespace == ns && p.name == name));
                if n == c.pods.len() {
                    return Err(nf());
                }
            }
            other => {
                let k = Kind::ALL
                    .into_iter()
                    .find(|k| k.as_str().eq_ignore_ascii_case(other))
                    .ok_or_else(nf)?;
                let key = ObjectKey {
                    kind: k,
                    namespace: if k.cluster_scoped() {
                        String::new()
                    } else {
                        ns.to_string()
                    },
                    name: name.to_string(),
                };
                std::fs::remove_file(object_file(&self.rd, &key)).map_err(|_| nf())?;
            }
        }
        Ok(())
    }

    /// Apply label changes (`k=v` sets, `k-` removes) to the labels of an
    /// object; `kind` is `namespace`, `service`, `pod`, `deployment`,
    /// `statefulset` (the last two label their pods as well: ambient reads
    /// pod labels).
    pub fn label(
        &mut self,
        kind: &str,
        ns: &str,
        name: &str,
        changes: &[String],
        overwrite: bool,
    ) -> Result<String, StoreError> {
        let c = &mut self.cluster;
        let mut targets: Vec<&mut Labels> = Vec::new();
        let nf = StoreError::NotFound(format!("{kind} \"{name}\""));
        match kind {
            "namespace" => targets.push(c.namespaces.get_mut(name).ok_or(nf)?),
            "service" => targets.push(
                &mut c
                    .services
                    .iter_mut()
                    .find(|s| s.namespace == ns && s.name == name)
                    .ok_or(nf)?
                    .labels,
            ),
            "pod" => targets.push(
                &mut c
                    .pods
                    .iter_mut()
                    .find(|p| p.namespace == ns && p.name == name)
                    .ok_or(nf)?
                    .labels,
            ),
            "deployment" | "statefulset" => {
                let k = if kind == "deployment" {
                    "Deployment"
                } else {
                    "StatefulSet"
                };
                let w = c
                    .workloads
                    .iter_mut()
                    .find(|w| w.namespace == ns && w.name == name && w.kind == k)
                    .ok_or(nf)?;
                targets.push(&mut w.template.labels);
                for p in c.pods.iter_mut().filter(|p| {
                    p.namespace == ns
                        && p.owner
                            .as_ref()
                            .is_some_and(|o| o.name == name && o.kind == k)
                }) {
                    targets.push(&mut p.labels);
                }
            }
            other => {
                return Err(StoreError::Runtime(format!(
                    "cannot label {other}: use namespace, service, pod, deployment or statefulset"
                )));
            }
        }
        let mut changed = false;
        for ch in changes {
            if let Some(key) = ch.strip_suffix('-') {
                for t in targets.iter_mut() {
                    changed |= t.remove(key).is_some();
                }
            } else if let Some((k, v)) = ch.split_once('=') {
                for t in targets.iter_mut() {
                    match t.get(k) {
                        Some(old) if old == v => {}
                        Some(old) if !overwrite => {
                            return Err(StoreError::LabelExists {
                                key: k.into(),
                                value: old.clone(),
                            });
                        }
                        _ => {
                            t.insert(k.into(), v.into());
                            changed = true;
                        }
                    }
                }
            } else {
                return Err(StoreError::Runtime(format!(
                    "invalid label change {ch:?}: use key=value or key-"
                )));
            }
        }
        Ok(format!(
            "{kind}/{name} {}",
            if changed { "labeled" } else { "not labeled" }
        ))
    }

    /// Save everything and reconcile the running pods.
    pub fn commit(mut self) -> Result<(), StoreError> {
        crate::mesh::pods::schedule(&mut self.cluster, &mut self.state);
        let path = self.rd.cluster_file();
        let text = serde_yaml::to_string(&self.cluster).map_err(|source| StoreError::Yaml {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, text.as_bytes()).map_err(io(&path))?;
        // Network namespaces first, so ztunnel finds them as soon as the
        // operator pushes the new workloads.
        let reconciled = crate::mesh::pods::reconcile(&self.rd, &self.cluster, &mut self.state)
            .map_err(|e| StoreError::Runtime(e.to_string()));
        self.state.save(&self.rd)?;
        reconciled?;
        crate::mesh::kubeproxy::sync(&self.state.plan, &self.cluster)
            .map_err(|e| StoreError::Runtime(e.to_string()))?;
        self.render_inventory()?;
        Ok(())
    }

    /// Write the operator's inventory.
    pub fn render_inventory(&self) -> Result<(), StoreError> {
        let path = self.rd.inventory_file();
        let inv = self.cluster.inventory(&self.state.nodes());
        let text = serde_yaml::to_string(&inv).map_err(|source| StoreError::Yaml {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, text.as_bytes()).map_err(io(&path))
    }
}
