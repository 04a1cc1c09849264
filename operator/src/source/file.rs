//! File mode: a directory of YAML (Istio, Gateway API, Namespace and
//! Service documents) plus an inventory file, watched with `notify`.

use crate::config::inventory::Inventory;
use crate::config::parse::{ParsedDoc, parse_documents};
use crate::config::{ConfigSet, NamespaceInfo};
use crate::controller::{Controller, Snapshot, SourcedObject};
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Debounce for file events.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// File-source errors.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// Directory unreadable.
    #[error("cannot read config directory {path}: {source}")]
    Dir {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Watch setup failed.
    #[error("cannot watch {path}: {source}")]
    Watch {
        /// Path.
        path: String,
        /// Cause.
        source: notify::Error,
    },
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out)?;
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
    Ok(())
}

/// Load a snapshot from a directory (and an optional inventory file). Parse
/// problems become diagnostics, never errors: the operator keeps serving.
pub fn load(dir: &Path, inventory: Option<&Path>) -> Result<Snapshot, FileSourceError> {
    let mut snap = Snapshot::default();
    let mut base = ConfigSet::default();
    if let Some(inv) = inventory {
        let path = inv.display().to_string();
        match std::fs::read_to_string(inv) {
            Ok(text) => {
                match Inventory::parse(&text, &path).and_then(|i| i.apply(&mut base, &path)) {
                    Ok(()) => {}
                    Err(e) => snap.parse_errors.push(e.to_string()),
                }
            }
            Err(e) => snap.parse_errors.push(format!("inventory {path}: {e}")),
        }
    }
    let mut files = Vec::new();
    yaml_files(dir, &mut files).map_err(|source| FileSourceError::Dir {
        path: dir.display().to_string(),
        source,
    })?;
    for f in files {
        if inventory.is_some_and(|i| same_file(i, &f)) {
            continue;
        }
        let origin = f.strip_prefix(dir).unwrap_or(&f).display().to_string();
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                snap.parse_errors.push(format!("{origin}: {e}"));
                snap.failed_origins.insert(origin);
                continue;
            }
        };
        let mut failed = false;
        let mut objs = Vec::new();
        for doc in parse_documents(&text, &origin, "default") {
            match doc {
                Ok(ParsedDoc::Object(o)) => objs.push(SourcedObject {
                    object: o,
                    origin: Some(origin.clone()),
                }),
                Ok(ParsedDoc::Namespace(ns)) => {
                    let e =
                        base.namespaces
                            .entry(ns.name.clone())
                            .or_insert_with(|| NamespaceInfo {
                                name: ns.name.clone(),
                                ..Default::default()
                            });
                    e.labels.extend(ns.labels);
                }
                Ok(ParsedDoc::Service(svc)) => match base
                    .services
                    .iter_mut()
                    .find(|s| s.name == svc.name && s.namespace == svc.namespace)
                {
                    // Inventory services carry addresses; a Service document adds labels/ports.
                    Some(s) => {
                        s.labels.extend(svc.labels);
                        if !svc.ports.is_empty() {
                            s.ports = svc.ports;
                        }
                        if svc.selector.is_some() {
                            s.selector = svc.selector;
                        }
                    }
                    None => base.services.push(svc),
                },
                Ok(ParsedDoc::Ignored { .. }) => {}
                Err(e) => {
                    failed = true;
                    snap.parse_errors.push(e.to_string());
                }
            }
        }
        if failed {
            // A half-parsed file keeps its previous content (last good).
            snap.failed_origins.insert(origin);
        } else {
            snap.objects.extend(objs);
        }
    }
    snap.base = base;
    Ok(snap)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Load once and apply.
pub fn sync(
    controller: &Controller,
    dir: &Path,
    inventory: Option<&Path>,
) -> Result<Vec<crate::controller::Diagnostic>, FileSourceError> {
    let snap = load(dir, inventory)?;
    controller.apply(snap).map_err(|e| FileSourceError::Dir {
        path: dir.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Watch `dir` (and the inventory) and re-apply on every change until
/// cancelled. The first load happens before this returns.
pub async fn watch(
    controller: Arc<Controller>,
    dir: PathBuf,
    inventory: Option<PathBuf>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, FileSourceError> {
    sync(&controller, &dir, inventory.as_deref())?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok() {
            let _ = tx.send(());
        }
    })
    .map_err(|source| FileSourceError::Watch {
        path: dir.display().to_string(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|source| FileSourceError::Watch {
            path: dir.display().to_string(),
            source,
        })?;
    if let Some(inv) = &inventory {
        // Watch the inventory's directory (editors replace files).
        let parent = inv
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.starts_with(&dir) {
            watcher
                .watch(parent, RecursiveMode::NonRecursive)
                .map_err(|source| FileSourceError::Watch {
                    path: parent.display().to_string(),
                    source,
                })?;
        }
    }
    Ok(tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = rx.recv() => if ev.is_none() { return },
            }
            // Debounce bursts of events.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            if let Err(e) = sync(&controller, &dir, inventory.as_deref()) {
                tracing::error!("{e}");
            }
        }
    }))
}
