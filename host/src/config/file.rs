//! The configuration from a file: the `WaypointConfig` model as YAML or
//! JSON, reloaded without restart when the file changes (written in place
//! or replaced by rename, as editors and `kubectl`-style tools do).
//!
//! Filter modules are files: `module.url` is a path relative to the config
//! file's directory, an absolute path, or a `file://` URL; `module.sha256`
//! (optional here) pins the content.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mesh_common::model::{ModuleRef, WaypointConfig};
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{BoxFuture, ConfigError, ConfigSource, ConfigUpdate, ModuleSource};

/// Backstop check interval when no file event arrives.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Wait after a file event before reading, so a writer can finish.
pub const SETTLE: Duration = Duration::from_millis(50);

/// Reads and parses a config file; returns it with its content digest.
pub fn load(path: &Path) -> Result<(WaypointConfig, String), ConfigError> {
    let text = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &[u8]) -> Result<(WaypointConfig, String), ConfigError> {
    let version = hex::encode(&Sha256::digest(text)[..6]);
    let parse_err = |reason: String| ConfigError::Parse {
        path: path.display().to_string(),
        reason,
    };
    // JSON first when it looks like JSON: YAML would read `{"80": 8080}`
    // map keys as strings where the model wants port numbers.
    let looks_json = text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let cfg: WaypointConfig = if looks_json {
        serde_json::from_slice(text).map_err(|e| parse_err(e.to_string()))?
    } else {
        serde_yaml::from_slice(text).map_err(|e| parse_err(e.to_string()))?
    };
    super::validate(&cfg)?;
    Ok((cfg, version))
}

/// Modules as files next to the config.
#[derive(Debug, Clone)]
pub struct FileModules {
    base: PathBuf,
}

impl FileModules {
    /// Resolves relative paths against `base`.
    pub fn new(base: impl Into<PathBuf>) -> Self {
        FileModules { base: base.into() }
    }

    /// The file a module reference names.
    pub fn path_of(&self, m: &ModuleRef) -> Result<PathBuf, String> {
        let url = m.url.trim();
        if url.starts_with("http://") || url.starts_with("https://") || url.starts_with("oci://") {
            return Err(format!(
                "{url} is a remote module; the file source reads modules from disk (use a path, or run with --xds-address)"
            ));
        }
        if url.is_empty() {
            return Err("module.url is empty".into());
        }
        let p = Path::new(url.strip_prefix("file://").unwrap_or(url));
        Ok(if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        })
    }
}

impl ModuleSource for FileModules {
    fn fetch<'a>(&'a self, m: &'a ModuleRef) -> BoxFuture<'a, Result<Arc<[u8]>, String>> {
        Box::pin(async move {
            let p = self.path_of(m)?;
            tokio::fs::read(&p)
                .await
                .map(Arc::from)
                .map_err(|e| format!("{}: {e}", p.display()))
        })
    }
}

/// A config file, watched.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// Watches `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSource { path: path.into() }
    }
}

impl ConfigSource for FileSource {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn run(
        self: Box<Self>,
        updates: mpsc::Sender<ConfigUpdate>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move { watch(self.path, updates, shutdown).await })
    }
}

fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

async fn watch(path: PathBuf, updates: mpsc::Sender<ConfigUpdate>, shutdown: CancellationToken) {
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let modules: Arc<dyn ModuleSource> = Arc::new(FileModules::new(&base));
    let (ev_tx, mut ev_rx) = mpsc::channel::<()>(8);
    let name = path.file_name().map(|n| n.to_os_string());
    // Watch the directory: replacing the file by rename drops a watch on
    // the file itself.
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Our own reads produce access events: react to changes only.
        if let Ok(ev) = res
            && is_change(&ev.kind)
            && ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
        {
            let _ = ev_tx.try_send(());
        }
    })
    .and_then(|mut w| w.watch(&base, RecursiveMode::NonRecursive).map(|()| w));
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            let err = ConfigError::Watch {
                path: base.display().to_string(),
                reason: e.to_string(),
            };
            tracing::warn!("{err}; checking every {POLL_INTERVAL:?} instead");
            None
        }
    };
    let mut last: Option<String> = None;
    let mut last_error: Option<String> = None;
    loop {
        match tokio::fs::read(&path).await {
            Ok(text) => match parse(&path, &text) {
                Ok((config, version)) if last.as_deref() != Some(version.as_str()) => {
                    tracing::info!(path = %path.display(), %version, "config file changed");
                    last = Some(version.clone());
                    last_error = None;
                    let u = ConfigUpdate {
                        version,
                        config,
                        modules: modules.clone(),
                        done: None,
                    };
                    if updates.send(u).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let msg = e.to_string();
                    if last_error.as_deref() != Some(msg.as_str()) {
                        tracing::error!("{msg}; keeping the last good config");
                        last_error = Some(msg);
                    }
                }
            },
            Err(e) => {
                let msg = format!("cannot read config file {}: {e}", path.display());
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!("{msg}; keeping the last good config");
                    last_error = Some(msg);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = ev_rx.recv() => {
                if ev.is_some() {
                    tokio::time::sleep(SETTLE).await;
                    while ev_rx.try_recv().is_ok() {}
                }
            }
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_yaml_and_json_and_reports_errors_with_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.yaml");
        std::fs::write(
            &p,
            "name: wp\nnamespace: shop\nidentity: spiffe://cluster.local/ns/shop/sa/wp\n",
        )
        .unwrap();
        let (c, v) = load(&p).unwrap();
        assert_eq!(c.name, "wp");
        assert_eq!(v.len(), 12);
        std::fs::write(&p, r#"{"name":"wp","namespace":"shop","identity":"x","services":[{"hostname":"a","name":"a","namespace":"shop"},{"hostname":"a","name":"a","namespace":"shop"}]}"#).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("listed twice"));
        std::fs::write(&p, "name: [\n").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("not a valid WaypointConfig"), "{e}");
        let m = FileModules::new("/etc/w");
        let r = |url: &str| ModuleRef {
            sha256: String::new(),
            url: url.into(),
        };
        assert_eq!(
            m.path_of(&r("mods/a.wasm")).unwrap(),
            PathBuf::from("/etc/w/mods/a.wasm")
        );
        assert_eq!(
            m.path_of(&r("file:///x/a.wasm")).unwrap(),
            PathBuf::from("/x/a.wasm")
        );
        assert!(m.path_of(&r("https://op/v1/modules/x")).is_err());
    }
}
