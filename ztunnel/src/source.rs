//! Where configuration comes from. ztunnel only sees [`ConfigSource`]: a
//! task that feeds [`Change`]s into the [`Registry`] and marks it synced.
//! [`FileSource`] reads a YAML/JSON [`Snapshot`] and reloads it on change;
//! the operator's push stream plugs in the same way.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::registry::{Change, Registry, Snapshot};

/// Errors from configuration sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The config file is not a valid snapshot.
    #[error(
        "config file {path} is not a valid ztunnel snapshot (workloads/services/authorizations): {msg}"
    )]
    Parse {
        /// File.
        path: PathBuf,
        /// Parser message.
        msg: String,
    },
    /// The push stream failed for good.
    #[error("config stream: {0}")]
    Stream(String),
}

/// A boxed source future.
pub type SourceFuture = Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>>;

/// Feeds the registry until `shutdown`.
pub trait ConfigSource: Send + 'static {
    /// Runs the source. Must call [`Registry::mark_synced`] once the first
    /// complete configuration is applied.
    fn run(self: Box<Self>, registry: Arc<Registry>, shutdown: CancellationToken) -> SourceFuture;
}

/// A YAML or JSON file holding a [`Snapshot`], re-read when its content changes.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    poll: Duration,
}

impl FileSource {
    /// Watches `path`, checking for changes every 250 ms.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            poll: Duration::from_millis(250),
        }
    }

    /// Reads and parses the file once.
    pub fn load(&self) -> Result<Snapshot, SourceError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| SourceError::Read {
            path: self.path.clone(),
            source,
        })?;
        parse_snapshot(&text).map_err(|msg| SourceError::Parse {
            path: self.path.clone(),
            msg,
        })
    }
}

/// Parses a snapshot from YAML (JSON is valid YAML).
pub fn parse_snapshot(text: &str) -> Result<Snapshot, String> {
    if text.trim().is_empty() {
        return Ok(Snapshot::default());
    }
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

impl ConfigSource for FileSource {
    fn run(self: Box<Self>, registry: Arc<Registry>, shutdown: CancellationToken) -> SourceFuture {
        Box::pin(async move {
            let mut last = std::fs::read(&self.path).map_err(|source| SourceError::Read {
                path: self.path.clone(),
                source,
            })?;
            registry.apply(Change::Snapshot(self.load()?));
            registry.mark_synced();
            info!(path = %self.path.display(), "loaded config file");
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(self.poll) => {}
                }
                let Ok(now) = std::fs::read(&self.path) else {
                    continue;
                };
                if now == last {
                    continue;
                }
                last = now;
                match self.load() {
                    Ok(snap) => {
                        info!(path = %self.path.display(), "config file changed; applying");
                        registry.apply(Change::Snapshot(snap));
                    }
                    Err(e) => warn!(error = %e, "keeping previous configuration"),
                }
            }
        })
    }
}

/// A fixed snapshot (tests): applied once, then idle.
#[derive(Debug, Clone)]
pub struct StaticSource(pub Snapshot);

impl ConfigSource for StaticSource {
    fn run(self: Box<Self>, registry: Arc<Registry>, shutdown: CancellationToken) -> SourceFuture {
        Box::pin(async move {
            registry.apply(Change::Snapshot(self.0));
            registry.mark_synced();
            shutdown.cancelled().await;
            Ok(())
        })
    }
}
