//! The ordered filter chain and its hot swap.
//!
//! A `Chain` is immutable; the `FilterManager` holds the current one in an
//! `ArcSwap`. A request takes the chain once when it starts and keeps those
//! filter versions (`Arc`s) until it ends, so replacing a filter is atomic:
//! requests in flight finish on the version they started with, new requests
//! get the new one, and an old version is dropped with its last request.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::config::FilterSpec;
use super::error::LoadError;
use super::loaded::LoadedFilter;
use super::metrics::VersionLabels;
use super::runtime::FilterRuntime;

/// A new version served to a share of requests.
#[derive(Clone)]
pub struct Canary {
    pub filter: Arc<LoadedFilter>,
    /// Share of requests, 0..=100.
    pub percent: f64,
}

/// One position of the chain.
#[derive(Clone)]
pub struct ChainEntry {
    pub stable: Arc<LoadedFilter>,
    pub canary: Option<Canary>,
}

/// The filters of a waypoint, in execution order.
#[derive(Clone, Default)]
pub struct Chain {
    entries: Vec<ChainEntry>,
}

impl Chain {
    pub fn new(entries: Vec<ChainEntry>) -> Self {
        Chain { entries }
    }

    pub fn entries(&self) -> &[ChainEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stable filter named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedFilter>> {
        self.entries
            .iter()
            .map(|e| &e.stable)
            .find(|f| f.name() == name)
    }

    /// The versions one request uses: the canary when `draw` (uniform in
    /// 0..100) falls below its percentage.
    pub(crate) fn pick(&self, mut draw: impl FnMut() -> f64) -> Vec<Arc<LoadedFilter>> {
        self.entries
            .iter()
            .map(|e| match &e.canary {
                Some(c) if draw() < c.percent => c.filter.clone(),
                _ => e.stable.clone(),
            })
            .collect()
    }
}

/// A filter the control plane wants in the chain.
#[derive(Clone)]
pub struct DesiredFilter {
    pub spec: FilterSpec,
    pub module: Arc<[u8]>,
    /// When set, the module must have this digest (hex, optional `sha256:`).
    pub sha256: Option<String>,
    pub canary: Option<DesiredCanary>,
}

#[derive(Clone)]
pub struct DesiredCanary {
    pub spec: FilterSpec,
    pub module: Arc<[u8]>,
    pub sha256: Option<String>,
    pub percent: f64,
}

/// What `FilterManager::apply` did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Filters (re)loaded, as `name@version`.
    pub loaded: Vec<String>,
    /// Filters refused; the chain kept their previous version when there was
    /// one, and left them out otherwise.
    pub refused: Vec<LoadError>,
}

impl ApplyReport {
    pub fn is_ok(&self) -> bool {
        self.refused.is_empty()
    }
}

/// Owns the current chain and replaces it atomically.
pub struct FilterManager {
    runtime: Arc<FilterRuntime>,
    current: ArcSwap<Chain>,
    /// Serializes `apply`/`swap` so two updates never interleave.
    update: tokio::sync::Mutex<()>,
}

impl FilterManager {
    pub fn new(runtime: Arc<FilterRuntime>) -> Self {
        FilterManager {
            runtime,
            current: ArcSwap::from_pointee(Chain::default()),
            update: tokio::sync::Mutex::new(()),
        }
    }

    pub fn runtime(&self) -> &Arc<FilterRuntime> {
        &self.runtime
    }

    /// The chain new requests use.
    pub fn current(&self) -> Arc<Chain> {
        self.current.load_full()
    }

    /// Makes the chain match `desired` (in that order). Filters whose module
    /// digest and spec did not change keep their loaded version (and its warm
    /// instances); changed ones are loaded first, off to the side, and the
    /// new chain is published in one atomic store. A filter that fails to
    /// load keeps its previous version.
    pub async fn apply(&self, desired: Vec<DesiredFilter>) -> ApplyReport {
        let _guard = self.update.lock().await;
        let old = self.current();
        let mut report = ApplyReport::default();
        let mut entries = Vec::with_capacity(desired.len());
        for d in desired {
            let previous = old.entries.iter().find(|e| e.stable.name() == d.spec.name);
            let stable = match self
                .reuse_or_load(
                    previous.map(|p| &p.stable),
                    &d.spec,
                    &d.module,
                    d.sha256.as_deref(),
                    &mut report,
                )
                .await
            {
                Some(f) => f,
                None => continue,
            };
            let canary = match &d.canary {
                None => None,
                Some(c) => {
                    let prev = previous.and_then(|p| p.canary.as_ref()).map(|c| &c.filter);
                    self.reuse_or_load(prev, &c.spec, &c.module, c.sha256.as_deref(), &mut report)
                        .await
                        .map(|filter| Canary {
                            filter,
                            percent: c.percent.clamp(0.0, 100.0),
                        })
                        .or_else(|| previous.and_then(|p| p.canary.clone()))
                }
            };
            entries.push(ChainEntry { stable, canary });
        }
        self.publish(&old, Chain::new(entries));
        report
    }

    async fn reuse_or_load(
        &self,
        previous: Option<&Arc<LoadedFilter>>,
        spec: &FilterSpec,
        module: &Arc<[u8]>,
        sha256: Option<&str>,
        report: &mut ApplyReport,
    ) -> Option<Arc<LoadedFilter>> {
        if let Some(p) = previous {
            let same_digest = sha256
                .map(|s| {
                    s.trim_start_matches("sha256:")
                        .eq_ignore_ascii_case(p.digest())
                })
                .unwrap_or_else(|| {
                    use sha2::Digest;
                    hex::encode(sha2::Sha256::digest(&**module)) == p.digest()
                });
            if same_digest && p.spec() == spec {
                return Some(p.clone());
            }
        }
        match self
            .runtime
            .load(spec.clone(), module.clone(), sha256)
            .await
        {
            Ok(f) => {
                report.loaded.push(format!("{}@{}", f.name(), f.version()));
                Some(f)
            }
            Err(e) => {
                tracing::warn!("{e}; keeping the previous version");
                report.refused.push(e);
                previous.cloned()
            }
        }
    }

    /// Replaces (or appends) one filter; the rest of the chain is untouched.
    pub async fn swap(
        &self,
        spec: FilterSpec,
        module: Arc<[u8]>,
        sha256: Option<&str>,
    ) -> Result<Arc<LoadedFilter>, LoadError> {
        let _guard = self.update.lock().await;
        let f = self.runtime.load(spec, module, sha256).await?;
        let old = self.current();
        let mut entries = old.entries.clone();
        match entries.iter_mut().find(|e| e.stable.name() == f.name()) {
            Some(e) => e.stable = f.clone(),
            None => entries.push(ChainEntry {
                stable: f.clone(),
                canary: None,
            }),
        }
        self.publish(&old, Chain::new(entries));
        Ok(f)
    }

    fn publish(&self, old: &Chain, new: Chain) {
        let m = self.runtime.metrics();
        let all = |c: &Chain| -> Vec<(String, String)> {
            c.entries
                .iter()
                .flat_map(|e| {
                    std::iter::once(&e.stable).chain(e.canary.as_ref().map(|c| &c.filter))
                })
                .map(|f| (f.name().to_string(), f.version().to_string()))
                .collect()
        };
        let (before, after) = (all(old), all(&new));
        for (filter, version) in &before {
            if !after.contains(&(filter.clone(), version.clone())) {
                m.active
                    .get_or_create(&VersionLabels {
                        filter: filter.clone(),
                        version: version.clone(),
                    })
                    .set(0);
            }
        }
        for (filter, version) in after {
            m.active
                .get_or_create(&VersionLabels { filter, version })
                .set(1);
        }
        self.current.store(Arc::new(new));
    }
}
