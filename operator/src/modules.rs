//! Filter modules: fetched from a WasmPlugin's `url` (`file://`, `https://`
//! or `http://` with `sha256`, `oci://`), digest-checked, cached on disk and
//! served to waypoints at `GET /v1/modules/<sha256>`.

use crate::controller::Controller;
use crate::fetch;
use crate::translate::RolloutState;
use crate::translate::filters::plugin_key;
use bytes::Bytes;
use mesh_common::model::ModuleRef;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Module download timeout.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// OCI media types of a WASM layer.
const OCI_WASM_TYPES: [&str; 2] = [
    "application/vnd.module.wasm.content.layer.v1+wasm",
    "application/wasm",
];

/// Module errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModuleError {
    /// Download failed.
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    /// Local file unreadable.
    #[error("cannot read {path}: {message}")]
    File {
        /// Path.
        path: String,
        /// Cause.
        message: String,
    },
    /// Digest differs from `sha256`.
    #[error(
        "module {url}: sha256 mismatch: WasmPlugin says {expected}, downloaded bytes are {actual}"
    )]
    Digest {
        /// URL.
        url: String,
        /// Expected.
        expected: String,
        /// Actual.
        actual: String,
    },
    /// Unsupported URL.
    #[error("unsupported module url {0:?}: use file://, https:// (with sha256) or oci://")]
    Url(String),
    /// OCI manifest problem.
    #[error("oci {0}")]
    Oci(String),
}

/// Modules by digest.
#[derive(Debug, Default)]
pub struct ModuleStore {
    dir: Option<PathBuf>,
    mem: RwLock<HashMap<String, Bytes>>,
}

/// Lower-case hex SHA-256.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ModuleStore {
    /// A store caching on disk under `dir` (memory only when `None`).
    pub fn new(dir: Option<PathBuf>) -> Arc<Self> {
        if let Some(d) = &dir {
            let _ = std::fs::create_dir_all(d);
        }
        Arc::new(ModuleStore {
            dir,
            mem: RwLock::new(HashMap::new()),
        })
    }

    /// Add bytes; returns the reference waypoints use.
    pub fn insert(&self, bytes: Bytes) -> ModuleRef {
        let sha = digest(&bytes);
        if let Some(d) = &self.dir {
            let p = d.join(format!("{sha}.wasm"));
            if !p.exists() {
                let _ = std::fs::write(&p, &bytes);
            }
        }
        self.mem.write().insert(sha.clone(), bytes);
        ModuleRef {
            url: format!("{}{sha}", mesh_common::xds::MODULES_PATH_PREFIX),
            sha256: sha,
        }
    }

    /// Bytes of a module.
    pub fn get(&self, sha: &str) -> Option<Bytes> {
        if let Some(b) = self.mem.read().get(sha) {
            return Some(b.clone());
        }
        let d = self.dir.as_ref()?;
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let b = Bytes::from(std::fs::read(d.join(format!("{sha}.wasm"))).ok()?);
        (digest(&b) == sha).then(|| {
            self.mem.write().insert(sha.to_string(), b.clone());
            b
        })
    }

    /// Register the first-party filter components found in `dir`
    /// (`<name>.wasm`).
    pub fn load_first_party(&self, dir: &Path) -> BTreeMap<String, ModuleRef> {
        let mut out = BTreeMap::new();
        for name in crate::translate::filters::FIRST_PARTY_MODULES {
            let p = dir.join(format!("{name}.wasm"));
            if let Ok(b) = std::fs::read(&p) {
                out.insert(name.to_string(), self.insert(Bytes::from(b)));
            }
        }
        out
    }

    /// Fetch a module from `url`, checking `sha256` when given.
    pub async fn fetch(
        &self,
        url: &str,
        sha256: Option<&str>,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<ModuleRef, ModuleError> {
        if let Some(s) = sha256.filter(|s| !s.is_empty())
            && let Some(b) = self.get(&s.to_ascii_lowercase())
        {
            return Ok(self.insert(b));
        }
        let bytes = fetch_bytes(url, tls).await?;
        let actual = digest(&bytes);
        if let Some(expected) = sha256.filter(|s| !s.is_empty())
            && !expected.eq_ignore_ascii_case(&actual)
        {
            return Err(ModuleError::Digest {
                url: url.into(),
                expected: expected.into(),
                actual,
            });
        }
        Ok(self.insert(bytes))
    }
}

async fn fetch_bytes(url: &str, tls: &Arc<rustls::ClientConfig>) -> Result<Bytes, ModuleError> {
    if let Some(path) = url.strip_prefix("file://") {
        return std::fs::read(path)
            .map(Bytes::from)
            .map_err(|e| ModuleError::File {
                path: path.into(),
                message: e.to_string(),
            });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(fetch::get(url, tls, FETCH_TIMEOUT, None).await?);
    }
    let rest = url.strip_prefix("oci://").unwrap_or(url);
    oci_fetch(rest, tls).await
}

/// `registry/repo[:tag|@digest]` → the WASM layer.
async fn oci_fetch(reference: &str, tls: &Arc<rustls::ClientConfig>) -> Result<Bytes, ModuleError> {
    let (registry, rest) = reference
        .split_once('/')
        .ok_or_else(|| ModuleError::Url(reference.into()))?;
    let (repo, tag) = match rest.rsplit_once('@') {
        Some((r, d)) => (r, d.to_string()),
        None => match rest.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t.to_string()),
            _ => (rest, "latest".to_string()),
        },
    };
    let scheme = if registry.starts_with("localhost") || registry.starts_with("127.") {
        "http"
    } else {
        "https"
    };
    let manifest_url = format!("{scheme}://{registry}/v2/{repo}/manifests/{tag}");
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
    let m = fetch::get(&manifest_url, tls, FETCH_TIMEOUT, Some(accept)).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&m).map_err(|e| ModuleError::Oci(format!("{manifest_url}: {e}")))?;
    let layers = v
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or_else(|| ModuleError::Oci(format!("{manifest_url}: no layers")))?;
    let layer = layers
        .iter()
        .find(|l| {
            l.get("mediaType")
                .and_then(|t| t.as_str())
                .is_some_and(|t| OCI_WASM_TYPES.contains(&t))
        })
        .ok_or_else(|| {
            ModuleError::Oci(format!(
                "{manifest_url}: no layer of type {}",
                OCI_WASM_TYPES.join(" or ")
            ))
        })?;
    let d = layer
        .get("digest")
        .and_then(|d| d.as_str())
        .ok_or_else(|| ModuleError::Oci("layer without digest".into()))?;
    let blob = fetch::get(
        &format!("{scheme}://{registry}/v2/{repo}/blobs/{d}"),
        tls,
        FETCH_TIMEOUT,
        None,
    )
    .await?;
    let want = d.strip_prefix("sha256:").unwrap_or(d);
    let actual = digest(&blob);
    if want != actual {
        return Err(ModuleError::Digest {
            url: reference.into(),
            expected: want.into(),
            actual,
        });
    }
    Ok(blob)
}

/// What was fetched for a plugin.
#[derive(Debug, Clone, PartialEq)]
struct Fetched {
    url: String,
    sha256: Option<String>,
    module: ModuleRef,
    config: serde_json::Value,
}

/// Keep the modules of every WasmPlugin fetched and start canaries when a
/// plugin changes version. Runs until cancelled.
pub async fn run(
    controller: Arc<Controller>,
    store: Arc<ModuleStore>,
    tls: Arc<rustls::ClientConfig>,
    shutdown: CancellationToken,
) {
    let mut fetched: BTreeMap<String, Fetched> = BTreeMap::new();
    let mut failed: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
    let mut generation = controller.watch();
    loop {
        let plugins = controller
            .config()
            .map(|c| c.resources.wasm_plugins.clone())
            .unwrap_or_default();
        let mut modules = controller.context().modules;
        let mut rollouts = controller.context().rollouts;
        let mut changed = false;
        for p in &plugins {
            let key = plugin_key(p);
            let sha = p.spec.sha256.clone();
            let config = p
                .spec
                .plugin_config
                .clone()
                .unwrap_or(serde_json::Value::Null);
            let current = fetched.get(&key);
            if current.is_some_and(|f| f.url == p.spec.url && f.sha256 == sha) {
                if let Some(f) = fetched.get_mut(&key) {
                    f.config = config;
                }
                // Canary percentage edited on an unchanged version: move it
                // (100 or unset promotes the new version).
                let pct = p.spec.rollout.as_ref().and_then(|r| r.canary_percentage);
                if let Some(r) = rollouts.get_mut(&key) {
                    match pct {
                        Some(x) if x < 100.0 && !r.rolled_back && r.percentage != x => {
                            r.percentage = x;
                            changed = true;
                        }
                        Some(x) if x < 100.0 => {}
                        _ => {
                            rollouts.remove(&key);
                            changed = true;
                        }
                    }
                }
                continue;
            }
            if failed
                .get(&key)
                .is_some_and(|f| f.0 == p.spec.url && f.1 == sha)
            {
                continue;
            }
            match store.fetch(&p.spec.url, sha.as_deref(), &tls).await {
                Ok(m) => {
                    failed.remove(&key);
                    tracing::info!(plugin = %key, sha256 = %m.sha256, "module fetched");
                    let pct = p.spec.rollout.as_ref().and_then(|r| r.canary_percentage);
                    match (current, pct) {
                        (Some(prev), Some(pct))
                            if pct < 100.0 && prev.module.sha256 != m.sha256 =>
                        {
                            rollouts.insert(
                                key.clone(),
                                RolloutState {
                                    percentage: pct,
                                    previous: Some(prev.module.clone()),
                                    previous_config: Some(prev.config.clone()),
                                    rolled_back: false,
                                },
                            );
                        }
                        _ => {
                            rollouts.remove(&key);
                        }
                    }
                    modules.insert(key.clone(), m.clone());
                    fetched.insert(
                        key,
                        Fetched {
                            url: p.spec.url.clone(),
                            sha256: sha,
                            module: m,
                            config,
                        },
                    );
                    changed = true;
                }
                Err(e) => {
                    tracing::error!(plugin = %key, "module fetch failed: {e}; the previous version (if any) keeps serving");
                    failed.insert(key, (p.spec.url.clone(), sha));
                }
            }
        }
        let keys: Vec<String> = plugins.iter().map(plugin_key).collect();
        let before = (modules.len(), rollouts.len());
        modules.retain(|k, _| keys.contains(k));
        rollouts.retain(|k, _| keys.contains(k));
        fetched.retain(|k, _| keys.contains(k));
        changed |= before != (modules.len(), rollouts.len());
        if changed
            && let Err(e) = controller.update_context(|c| {
                c.modules = modules;
                c.rollouts = rollouts;
            })
        {
            tracing::error!("publishing modules: {e}");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = generation.changed() => if r.is_err() { return },
        }
    }
}
