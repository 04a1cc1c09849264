//! Where the waypoint's configuration comes from and how it is applied.
//!
//! The configuration is one [`WaypointConfig`] (the pushed model of
//! `mesh_common::model`), delivered by a [`ConfigSource`]:
//!
//! - [`file::FileSource`]: a YAML or JSON file holding the model, reloaded
//!   whenever it changes (inotify, plus a periodic check as a backstop);
//!   module URLs are paths relative to the file;
//! - [`push::PushSource`]: the operator's push stream (`mesh_common::xds`),
//!   modules downloaded from the operator by digest.
//!
//! Each [`ConfigUpdate`] goes to [`apply::Applier`], which validates it,
//! loads changed filters, rebuilds clusters and telemetry, and swaps the
//! snapshot requests use — or refuses it, keeping the last good one.

pub mod apply;
pub mod chains;
pub mod file;
pub mod push;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use mesh_common::model::{ModuleRef, WaypointConfig};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::telemetry::TelemetryError;

/// Why a configuration could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a valid WaypointConfig.
    #[error("config file {path} is not a valid WaypointConfig (YAML or JSON): {reason}")]
    Parse {
        /// File.
        path: String,
        /// Parser message (with line and column).
        reason: String,
    },
    /// The model is inconsistent.
    #[error("invalid waypoint config: {0}")]
    Invalid(String),
    /// A filter module could not be fetched.
    #[error("filter `{filter}`: cannot fetch module {url:?}: {reason}")]
    Module {
        /// Filter name.
        filter: String,
        /// Module URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Telemetry settings are unusable.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The file watcher could not start.
    #[error("cannot watch {path} for changes: {reason}")]
    Watch {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fetches filter modules named by the config.
pub trait ModuleSource: Send + Sync + 'static {
    /// The bytes of `module`. Digests are checked by the filter runtime.
    fn fetch<'a>(&'a self, module: &'a ModuleRef) -> BoxFuture<'a, Result<Arc<[u8]>, String>>;
}

/// One configuration to apply.
pub struct ConfigUpdate {
    /// Version (content digest or push version).
    pub version: String,
    /// The config.
    pub config: WaypointConfig,
    /// Where its modules come from.
    pub modules: Arc<dyn ModuleSource>,
    /// Told the outcome, when the source wants to know (ACK/NACK).
    pub done: Option<oneshot::Sender<Result<(), String>>>,
}

impl std::fmt::Debug for ConfigUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigUpdate")
            .field("version", &self.version)
            .field(
                "waypoint",
                &format!("{}/{}", self.config.namespace, self.config.name),
            )
            .finish_non_exhaustive()
    }
}

/// A source of configuration snapshots. Implementations deliver the first
/// snapshot as soon as they have it and then every change, until
/// `shutdown`.
pub trait ConfigSource: std::fmt::Debug + Send + 'static {
    /// For logs and the admin page (`file:/etc/waypoint.yaml`).
    fn describe(&self) -> String;

    /// Runs the source.
    fn run(
        self: Box<Self>,
        updates: mpsc::Sender<ConfigUpdate>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()>;
}

/// Checks what can be checked without loading anything.
pub fn validate(cfg: &WaypointConfig) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for s in &cfg.services {
        if s.hostname.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "service {:?} has an empty hostname",
                s.name
            )));
        }
        if !seen.insert(s.hostname.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "service {} is listed twice",
                s.hostname
            )));
        }
        let mut subsets = std::collections::HashSet::new();
        for sub in &s.subsets {
            if !subsets.insert(sub.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "service {}: duplicate subset names: {}",
                    s.hostname, sub.name
                )));
            }
        }
    }
    let mut names = std::collections::HashSet::new();
    for f in &cfg.filters {
        if !names.insert(f.name.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "filter {} appears twice in the chain",
                f.name
            )));
        }
        if f.module.url.is_empty() && f.module.sha256.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "filter {} has no module (set module.url, and module.sha256 to pin it)",
                f.name
            )));
        }
    }
    Ok(())
}
