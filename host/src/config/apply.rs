//! Applies configuration updates, one at a time, newest first.
//!
//! Order, so that a refused config changes nothing: validate the model →
//! check telemetry settings → fetch every module (a missing module refuses
//! the config) → load changed filters (a filter the runtime refuses keeps
//! its previous version, reported) → build clusters (reusing unchanged
//! hosts) → publish the snapshot → commit telemetry.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::chains::FilterChains;
use super::{ConfigError, ConfigUpdate};
use crate::cluster::ClusterSet;
use crate::proxy::{Proxy, Snapshot};

/// What the admin page shows about configuration.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyStatus {
    /// `file:...` or `push:...`.
    pub source: String,
    /// Version serving now.
    pub version: Option<String>,
    /// When it was applied (seconds since the epoch).
    pub applied_at_unix: Option<u64>,
    /// Last refusal, if the newest config was refused.
    pub last_error: Option<String>,
    /// Filters the runtime refused in the serving config (previous version
    /// kept).
    pub refused_filters: Vec<String>,
    /// Configs applied.
    pub applied: u64,
    /// Configs refused.
    pub refused: u64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Applies updates to the proxy.
pub struct Applier {
    proxy: Arc<Proxy>,
    chains: FilterChains,
    status: ArcSwap<ApplyStatus>,
    ready: watch::Sender<bool>,
    applies: Family<ResultLabel, Counter>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("status", &self.status.load())
            .finish_non_exhaustive()
    }
}

impl Applier {
    /// An applier for `proxy`, naming `source` in its status.
    pub fn new(proxy: Arc<Proxy>, chains: FilterChains, source: String) -> Arc<Self> {
        let (ready, _) = watch::channel(false);
        Arc::new(Applier {
            proxy,
            chains,
            status: ArcSwap::from_pointee(ApplyStatus {
                source,
                ..ApplyStatus::default()
            }),
            ready,
            applies: Family::default(),
        })
    }

    /// Registers `waypoint_config_applies_total{result}`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "waypoint_config_applies",
            "Configuration updates applied or refused",
            self.applies.clone(),
        );
    }

    /// Current status.
    pub fn status(&self) -> Arc<ApplyStatus> {
        self.status.load_full()
    }

    /// Becomes true once a config has been applied.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Applies one update; on error nothing changed.
    pub async fn apply(&self, u: &ConfigUpdate) -> Result<Vec<String>, ConfigError> {
        super::validate(&u.config)?;
        let telemetry = self.proxy.telemetry.prepare(&u.config)?;
        let (chains, refused) = self.chains.apply(&u.config, u.modules.as_ref()).await?;
        let prev = self.proxy.snapshot();
        let clusters = ClusterSet::build(&u.config, Some(&prev.clusters));
        clusters.start_sweepers();
        self.proxy.publish(Snapshot::new(
            u.version.clone(),
            Arc::new(u.config.clone()),
            clusters,
            chains,
        ));
        self.proxy.telemetry.commit(telemetry);
        Ok(refused)
    }

    fn record(&self, version: &str, r: &Result<Vec<String>, ConfigError>) {
        let mut s = (*self.status.load_full()).clone();
        match r {
            Ok(refused) => {
                s.version = Some(version.to_string());
                s.applied_at_unix = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs());
                s.last_error = None;
                s.refused_filters = refused.clone();
                s.applied += 1;
                self.applies
                    .get_or_create(&ResultLabel { result: "applied" })
                    .inc();
                for f in refused {
                    tracing::warn!("{f}");
                }
                tracing::info!(%version, "configuration applied");
            }
            Err(e) => {
                s.last_error = Some(e.to_string());
                s.refused += 1;
                self.applies
                    .get_or_create(&ResultLabel { result: "refused" })
                    .inc();
                tracing::error!(%version, "configuration refused, keeping the previous one: {e}");
            }
        }
        self.status.store(Arc::new(s));
    }

    /// Applies updates from `rx` until it closes, skipping ones superseded
    /// while an earlier one was applied.
    pub async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<ConfigUpdate>) {
        while let Some(mut u) = rx.recv().await {
            while let Ok(newer) = rx.try_recv() {
                if let Some(done) = u.done.take() {
                    let _ = done.send(Err("superseded by a newer config".into()));
                }
                u = newer;
            }
            let r = self.apply(&u).await;
            self.record(&u.version, &r);
            // Applying (and, with `--compile-in-process`, compiling) frees
            // large buffers that glibc would keep resident.
            let _ = tokio::task::spawn_blocking(mesh_common::mem::trim_now).await;
            if r.is_ok() {
                self.ready.send_replace(true);
            }
            if let Some(done) = u.done.take() {
                let _ = done.send(r.map(|_| ()).map_err(|e| e.to_string()));
            }
        }
    }
}
