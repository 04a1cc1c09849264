//! The configuration from the operator's push stream: the waypoint
//! subscribes to its own `WaypointConfig` (`<namespace>/<name>`) and
//! downloads filter modules by digest from the operator.

use std::collections::HashMap;
use std::sync::Arc;

use mesh_common::model::{ModuleRef, ProxyKind, ResourceType};
use mesh_common::xds::client::{
    Handler, Settled, Update, XdsClient, XdsClientConfig, fetch_module,
};
use mesh_common::xds::transport::Endpoint;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{BoxFuture, ConfigSource, ConfigUpdate, ModuleSource};

/// Modules downloaded from the operator, cached by digest.
pub struct PushModules {
    endpoint: Endpoint,
    cache: Mutex<HashMap<String, Arc<[u8]>>>,
}

impl std::fmt::Debug for PushModules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushModules")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl PushModules {
    /// Downloads from `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        PushModules {
            endpoint,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl ModuleSource for PushModules {
    fn fetch<'a>(&'a self, m: &'a ModuleRef) -> BoxFuture<'a, Result<Arc<[u8]>, String>> {
        Box::pin(async move {
            let sha = m.sha256.trim_start_matches("sha256:").to_ascii_lowercase();
            if sha.is_empty() {
                return Err("pushed modules must carry a sha256".into());
            }
            if let Some(b) = self.cache.lock().get(&sha) {
                return Ok(b.clone());
            }
            let bytes: Arc<[u8]> = fetch_module(&self.endpoint, &sha)
                .await
                .map_err(|e| e.to_string())?
                .to_vec()
                .into();
            self.cache.lock().insert(sha, bytes.clone());
            Ok(bytes)
        })
    }
}

/// Hands pushed waypoint configs to the applier and ACKs each one only once
/// it serves (filter modules fetched and compiled), so the operator's
/// `Programmed` condition means the waypoint routes with that version.
struct PushHandler {
    key: String,
    updates: mpsc::Sender<ConfigUpdate>,
    modules: Arc<dyn ModuleSource>,
}

impl Handler for PushHandler {
    fn apply(&self, u: &Update<'_>) -> Result<(), String> {
        self.apply_deferred(u).map(|_| ())
    }

    fn apply_deferred(&self, u: &Update<'_>) -> Result<Option<Settled>, String> {
        if u.type_ != ResourceType::WaypointConfig {
            return Ok(None);
        }
        let Some(cfg) = u.state.waypoints.get(&self.key) else {
            tracing::warn!(waypoint = %self.key, "the operator has no config for this waypoint; keeping the current one");
            return Ok(None);
        };
        super::validate(cfg).map_err(|e| e.to_string())?;
        let (done, settled) = oneshot::channel();
        self.updates
            .try_send(ConfigUpdate {
                version: u.version.to_string(),
                config: (**cfg).clone(),
                modules: self.modules.clone(),
                done: Some(done),
            })
            .map_err(|e| format!("waypoint busy applying earlier configs: {e}"))?;
        Ok(Some(settled))
    }
}

/// The push stream.
#[derive(Debug)]
pub struct PushSource {
    endpoint: Endpoint,
    node: String,
    key: String,
}

impl PushSource {
    /// Subscribes to waypoint `namespace/name` at `endpoint`, identifying
    /// as `node`.
    pub fn new(endpoint: Endpoint, node: impl Into<String>, namespace: &str, name: &str) -> Self {
        PushSource {
            endpoint,
            node: node.into(),
            key: format!("{namespace}/{name}"),
        }
    }
}

impl ConfigSource for PushSource {
    fn describe(&self) -> String {
        format!("push:{}#{}", self.endpoint.uri, self.key)
    }

    fn run(
        self: Box<Self>,
        updates: mpsc::Sender<ConfigUpdate>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let modules: Arc<dyn ModuleSource> = Arc::new(PushModules::new(self.endpoint.clone()));
            let handler = PushHandler {
                key: self.key.clone(),
                updates,
                modules,
            };
            let mut cfg = XdsClientConfig::new(
                self.endpoint.clone(),
                self.node.clone(),
                ProxyKind::Waypoint,
            );
            cfg.resource_names = vec![self.key.clone()];
            let client = XdsClient::start(cfg, handler);
            shutdown.cancelled().await;
            drop(client);
        })
    }
}
