//! What the operator publishes: the current resources of every type, with a
//! change log so each connected proxy receives only what changed.
//!
//! Every change bumps one global revision. A proxy that is synced to
//! revision `r` gets, on the next change, exactly the keys changed after `r`
//! (upserted when present, removed when gone); no per-proxy copy of the
//! state is kept.

use crate::model::{Resource, ResourceType};
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::watch;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A resource could not be serialized (a model bug, not a user error).
    #[error("cannot serialize {kind} {key}: {source}")]
    Serialize {
        /// Resource type.
        kind: ResourceType,
        /// Resource key.
        key: String,
        /// Cause.
        source: serde_json::Error,
    },
}

/// One stored resource in serialized form.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Hex content hash.
    pub hash: Arc<str>,
    /// JSON form.
    pub json: Arc<str>,
}

#[derive(Debug, Default)]
struct TypeStore {
    entries: HashMap<Arc<str>, Entry>,
    /// revision → key changed at that revision (latest change of each key only).
    log: BTreeMap<u64, Arc<str>>,
    key_rev: HashMap<Arc<str>, u64>,
}

impl TypeStore {
    fn touch(&mut self, key: &Arc<str>, rev: u64) {
        if let Some(old) = self.key_rev.insert(key.clone(), rev) {
            self.log.remove(&old);
        }
        self.log.insert(rev, key.clone());
    }
}

#[derive(Debug, Default)]
struct Inner {
    rev: u64,
    types: BTreeMap<ResourceType, TypeStore>,
}

/// Counts returned by [`ConfigStore::replace_all`] and [`ConfigStore::update`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeSummary {
    /// Resources added or changed.
    pub upserted: usize,
    /// Resources removed.
    pub removed: usize,
    /// Revision after the change.
    pub revision: u64,
}

/// The result of a diff for one proxy.
#[derive(Debug, Default)]
pub(crate) struct DiffResult {
    pub revision: u64,
    pub upserts: Vec<(Arc<str>, Entry)>,
    pub removals: Vec<Arc<str>>,
}

/// The operator's published configuration.
#[derive(Debug)]
pub struct ConfigStore {
    inner: RwLock<Inner>,
    rev_tx: watch::Sender<u64>,
    ready_tx: watch::Sender<bool>,
}

fn hash_of(json: &str) -> Arc<str> {
    let d = Sha256::digest(json.as_bytes());
    hex::encode(&d[..16]).into()
}

impl ConfigStore {
    /// An empty store, not ready (see [`ConfigStore::set_ready`]).
    pub fn new() -> Arc<Self> {
        Arc::new(ConfigStore {
            inner: RwLock::new(Inner::default()),
            rev_tx: watch::channel(0).0,
            ready_tx: watch::channel(false).0,
        })
    }

    /// Mark the store as holding a complete translation. Proxies that
    /// connect earlier wait for this before their initial sync, so a
    /// restarting operator never tells them to drop their state.
    pub fn set_ready(&self) {
        self.ready_tx.send_replace(true);
    }

    /// Wait until [`ConfigStore::set_ready`] was called.
    pub async fn ready(&self) {
        let mut rx = self.ready_tx.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Is the store ready?
    pub fn is_ready(&self) -> bool {
        *self.ready_tx.borrow()
    }

    /// Current revision.
    pub fn revision(&self) -> u64 {
        self.inner.read().rev
    }

    /// Notified with the revision after every change.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.rev_tx.subscribe()
    }

    fn serialize<T: Resource>(item: &T) -> Result<(Arc<str>, String), StoreError> {
        let key: Arc<str> = item.key().into();
        let json = serde_json::to_string(item).map_err(|source| StoreError::Serialize {
            kind: T::TYPE,
            key: key.to_string(),
            source,
        })?;
        Ok((key, json))
    }

    /// Upsert `upserts` and remove `removals` (keys). Unchanged resources are
    /// not counted and not pushed.
    pub fn update<T: Resource>(
        &self,
        upserts: impl IntoIterator<Item = T>,
        removals: impl IntoIterator<Item = String>,
    ) -> Result<ChangeSummary, StoreError> {
        let serialized: Vec<(Arc<str>, String)> = upserts
            .into_iter()
            .map(|i| Self::serialize(&i))
            .collect::<Result<_, _>>()?;
        let removals: Vec<String> = removals.into_iter().collect();
        let mut inner = self.inner.write();
        let mut rev = inner.rev;
        let mut summary = ChangeSummary::default();
        let ts = inner.types.entry(T::TYPE).or_default();
        for (key, json) in serialized {
            if ts.entries.get(&key).is_some_and(|e| *e.json == *json) {
                continue;
            }
            rev += 1;
            let hash = hash_of(&json);
            ts.entries.insert(
                key.clone(),
                Entry {
                    hash,
                    json: json.into(),
                },
            );
            ts.touch(&key, rev);
            summary.upserted += 1;
        }
        for key in removals {
            let key: Arc<str> = key.into();
            if ts.entries.remove(&key).is_some() {
                rev += 1;
                ts.touch(&key, rev);
                summary.removed += 1;
            }
        }
        inner.rev = rev;
        summary.revision = rev;
        drop(inner);
        if summary.upserted + summary.removed > 0 {
            self.rev_tx.send_replace(rev);
        }
        Ok(summary)
    }

    /// Make the resources of type `T` exactly `items` (a full recompute):
    /// changed ones are upserted, missing ones removed.
    pub fn replace_all<T: Resource>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ChangeSummary, StoreError> {
        let mut wanted: HashMap<String, T> = HashMap::new();
        for i in items {
            wanted.insert(i.key(), i);
        }
        let removals: Vec<String> = {
            let inner = self.inner.read();
            inner
                .types
                .get(&T::TYPE)
                .map(|ts| {
                    ts.entries
                        .keys()
                        .filter(|k| !wanted.contains_key(&***k))
                        .map(|k| k.to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        self.update(wanted.into_values(), removals)
    }

    /// The current resource with `key`.
    pub fn get<T: Resource>(&self, key: &str) -> Option<T> {
        let inner = self.inner.read();
        let e = inner.types.get(&T::TYPE)?.entries.get(key)?;
        serde_json::from_str(&e.json).ok()
    }

    /// The revision at which the resource `key` of type `ty` last changed
    /// (`None`: no such resource). A proxy that acknowledged a version at
    /// or above it runs this resource's current content.
    pub fn revision_of(&self, ty: ResourceType, key: &str) -> Option<u64> {
        let inner = self.inner.read();
        inner.types.get(&ty)?.key_rev.get(key).copied()
    }

    /// Keys of a type, sorted.
    pub fn keys(&self, ty: ResourceType) -> Vec<String> {
        let inner = self.inner.read();
        let mut keys: Vec<String> = inner
            .types
            .get(&ty)
            .map(|ts| ts.entries.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// Number of resources of a type.
    pub fn len(&self, ty: ResourceType) -> usize {
        self.inner
            .read()
            .types
            .get(&ty)
            .map_or(0, |t| t.entries.len())
    }

    /// `true` when the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.inner
            .read()
            .types
            .values()
            .all(|t| t.entries.is_empty())
    }

    /// Changes of `ty` after revision `since`, restricted to `visible` keys.
    pub(crate) fn diff_since(
        &self,
        ty: ResourceType,
        since: u64,
        visible: &dyn Fn(&str) -> bool,
    ) -> DiffResult {
        let inner = self.inner.read();
        let mut out = DiffResult {
            revision: inner.rev,
            ..Default::default()
        };
        let Some(ts) = inner.types.get(&ty) else {
            return out;
        };
        for (_, key) in ts.log.range(since + 1..) {
            if !visible(key) {
                continue;
            }
            match ts.entries.get(key) {
                Some(e) => out.upserts.push((key.clone(), e.clone())),
                None => out.removals.push(key.clone()),
            }
        }
        out
    }

    /// Full diff of `ty` against what a proxy says it holds.
    pub(crate) fn diff_known(
        &self,
        ty: ResourceType,
        known: &BTreeMap<String, String>,
        visible: &dyn Fn(&str) -> bool,
    ) -> DiffResult {
        let inner = self.inner.read();
        let mut out = DiffResult {
            revision: inner.rev,
            ..Default::default()
        };
        let empty = TypeStore::default();
        let ts = inner.types.get(&ty).unwrap_or(&empty);
        for (key, e) in &ts.entries {
            if visible(key) && known.get(&**key).map(String::as_str) != Some(&*e.hash) {
                out.upserts.push((key.clone(), e.clone()));
            }
        }
        for key in known.keys() {
            if !visible(key) || !ts.entries.contains_key(key.as_str()) {
                out.removals.push(key.as_str().into());
            }
        }
        out.upserts.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Workload;

    fn wl(uid: &str, node: &str) -> Workload {
        Workload {
            uid: uid.into(),
            name: uid.into(),
            namespace: "ns".into(),
            node: node.into(),
            ..Default::default()
        }
    }

    #[test]
    fn unchanged_resources_do_not_bump_revision() {
        let s = ConfigStore::new();
        let r = s.update([wl("a", "n1"), wl("b", "n1")], []).unwrap();
        assert_eq!((r.upserted, r.revision), (2, 2));
        let r = s.replace_all([wl("a", "n1"), wl("b", "n2")]).unwrap();
        assert_eq!((r.upserted, r.removed, r.revision), (1, 0, 3));
        let d = s.diff_since(ResourceType::Workload, 2, &|_| true);
        assert_eq!(d.upserts.len(), 1);
        assert_eq!(&*d.upserts[0].0, "b");
        let r = s.replace_all([wl("b", "n2")]).unwrap();
        assert_eq!(r.removed, 1);
        let d = s.diff_since(ResourceType::Workload, 3, &|_| true);
        assert_eq!(d.removals, vec![Arc::<str>::from("a")]);
        assert!(d.upserts.is_empty());
    }

    #[test]
    fn diff_against_known_hashes() {
        let s = ConfigStore::new();
        s.update([wl("a", "n1"), wl("b", "n1")], []).unwrap();
        let full = s.diff_known(ResourceType::Workload, &BTreeMap::new(), &|_| true);
        let hash_a = full.upserts[0].1.hash.to_string();
        let known = BTreeMap::from([
            ("a".to_string(), hash_a),
            ("gone".to_string(), "x".to_string()),
        ]);
        let d = s.diff_known(ResourceType::Workload, &known, &|_| true);
        assert_eq!(
            d.upserts.iter().map(|u| &*u.0).collect::<Vec<_>>(),
            vec!["b"]
        );
        assert_eq!(d.removals, vec![Arc::<str>::from("gone")]);
    }
}
