//! Turns the config's filter chain into loaded filter chains.
//!
//! A filter may be scoped to some services (`FilterConfig::services`), so
//! services can run different chains. Services with the same ordered list
//! of applicable filters share one [`FilterManager`]; managers live across
//! reloads, so an unchanged filter keeps its loaded version and warm
//! instances.

use std::collections::HashMap;
use std::sync::Arc;

use mesh_common::model::{self, FilterConfig, WaypointConfig};
use parking_lot::Mutex;

use super::{ConfigError, ModuleSource};
use crate::filter::{
    Capability, DesiredCanary, DesiredFilter, FailPolicy, FilterManager, FilterRuntime, FilterSpec,
    Limits,
};

/// Which chain each service runs.
#[derive(Clone)]
pub struct ChainMap {
    default: Arc<FilterManager>,
    by_service: HashMap<String, Arc<FilterManager>>,
    /// (group, filter names) for the admin page.
    pub groups: Vec<(Vec<String>, Arc<FilterManager>)>,
}

impl std::fmt::Debug for ChainMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainMap")
            .field("services", &self.by_service.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ChainMap {
    /// An empty chain for everything.
    pub fn empty(runtime: &Arc<FilterRuntime>) -> Self {
        let m = Arc::new(FilterManager::new(runtime.clone()));
        ChainMap {
            default: m.clone(),
            by_service: HashMap::new(),
            groups: vec![(Vec::new(), m)],
        }
    }

    /// The manager whose chain requests to `service` run (traffic to no
    /// known service runs the filters that apply to all traffic).
    pub fn manager_for(&self, service: Option<&str>) -> &Arc<FilterManager> {
        service
            .and_then(|s| self.by_service.get(s))
            .unwrap_or(&self.default)
    }
}

/// The filter name the runtime accepts (see `runtime_filter_name`).
pub use mesh_common::model::runtime_filter_name as runtime_name;

fn spec(fc: &FilterConfig, config: Vec<u8>, seed: Option<u64>) -> Result<FilterSpec, ConfigError> {
    let mut s = FilterSpec::new(runtime_name(&fc.name));
    s.config = config;
    for c in &fc.capabilities {
        s.capabilities.push(
            c.parse::<Capability>()
                .map_err(|e| ConfigError::Invalid(format!("filter {}: {e}", fc.name)))?,
        );
    }
    s.upstreams = fc.upstreams.clone();
    let d = Limits::default();
    s.limits = Limits {
        memory_bytes: fc.limits.memory_bytes.unwrap_or(d.memory_bytes),
        cpu_deadline: fc.limits.cpu_per_hook.unwrap_or(d.cpu_deadline),
        max_instances: fc.limits.max_instances.unwrap_or(d.max_instances),
    };
    s.fail_policy = match fc.fail_policy {
        model::FailPolicy::FailClosed => FailPolicy::FailClosed,
        model::FailPolicy::FailOpen => FailPolicy::FailOpen,
    };
    s.random_seed = seed.map(|seed| seed ^ crate::cluster::lb::hash64(&fc.name));
    Ok(s)
}

fn digest(m: &model::ModuleRef) -> Option<String> {
    (!m.sha256.is_empty()).then(|| m.sha256.clone())
}

/// Loads filter chains for configs; owns the managers.
pub struct FilterChains {
    runtime: Arc<FilterRuntime>,
    managers: Mutex<HashMap<Vec<String>, Arc<FilterManager>>>,
    random_seed: Option<u64>,
}

impl std::fmt::Debug for FilterChains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterChains").finish_non_exhaustive()
    }
}

impl FilterChains {
    /// Chains on `runtime`; `random_seed` makes the filters' `random`
    /// capability reproducible (tests).
    pub fn new(runtime: Arc<FilterRuntime>, random_seed: Option<u64>) -> Self {
        FilterChains {
            runtime,
            managers: Mutex::new(HashMap::new()),
            random_seed,
        }
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<FilterRuntime> {
        &self.runtime
    }

    async fn desired(
        &self,
        fc: &FilterConfig,
        modules: &dyn ModuleSource,
    ) -> Result<DesiredFilter, ConfigError> {
        let fetch = |m: &model::ModuleRef| {
            let m = m.clone();
            async move {
                modules
                    .fetch(&m)
                    .await
                    .map_err(|reason| ConfigError::Module {
                        filter: fc.name.clone(),
                        url: m.url.clone(),
                        reason,
                    })
            }
        };
        let module = fetch(&fc.module).await?;
        let new_spec = spec(fc, fc.config_bytes(), self.random_seed)?;
        let Some(c) = &fc.canary else {
            return Ok(DesiredFilter {
                spec: new_spec,
                module,
                sha256: digest(&fc.module),
                canary: None,
            });
        };
        // The stable entry is the version being replaced; the canary is the
        // new module, taking `percentage` of requests.
        let prev_module = fetch(&c.previous).await?;
        let prev_config = match &c.previous_config {
            Some(v) if !v.is_null() => serde_json::to_vec(v).unwrap_or_default(),
            Some(_) => Vec::new(),
            None => fc.config_bytes(),
        };
        Ok(DesiredFilter {
            spec: spec(fc, prev_config, self.random_seed)?,
            module: prev_module,
            sha256: digest(&c.previous),
            canary: Some(DesiredCanary {
                spec: new_spec,
                module,
                sha256: digest(&fc.module),
                percent: c.percentage,
            }),
        })
    }

    /// Loads the chains of `cfg`. Module fetch failures refuse the whole
    /// config (nothing changes); filters the runtime refuses keep their
    /// previous version and are returned as messages.
    pub async fn apply(
        &self,
        cfg: &WaypointConfig,
        modules: &dyn ModuleSource,
    ) -> Result<(ChainMap, Vec<String>), ConfigError> {
        let mut desired = Vec::with_capacity(cfg.filters.len());
        for fc in &cfg.filters {
            desired.push(self.desired(fc, modules).await?);
        }
        // Group services by their applicable filters.
        let group_of = |host: Option<&str>| -> Vec<usize> {
            cfg.filters
                .iter()
                .enumerate()
                .filter(|(_, f)| match host {
                    Some(h) => f.applies_to(h),
                    None => f.services.is_empty(),
                })
                .map(|(i, _)| i)
                .collect()
        };
        let mut groups: Vec<Vec<usize>> = vec![group_of(None)];
        let mut service_group: HashMap<String, usize> = HashMap::new();
        for s in &cfg.services {
            let g = group_of(Some(&s.hostname));
            let idx = match groups.iter().position(|x| *x == g) {
                Some(i) => i,
                None => {
                    groups.push(g);
                    groups.len() - 1
                }
            };
            service_group.insert(s.hostname.clone(), idx);
        }
        let mut refused = Vec::new();
        let mut loaded: Vec<(Vec<String>, Arc<FilterManager>)> = Vec::new();
        let mut keep = HashMap::new();
        for g in &groups {
            let names: Vec<String> = g.iter().map(|&i| desired[i].spec.name.clone()).collect();
            let manager = self
                .managers
                .lock()
                .get(&names)
                .cloned()
                .unwrap_or_else(|| Arc::new(FilterManager::new(self.runtime.clone())));
            let report = manager
                .apply(g.iter().map(|&i| desired[i].clone()).collect())
                .await;
            if !report.loaded.is_empty() {
                tracing::info!(filters = ?report.loaded, "filters loaded");
            }
            refused.extend(report.refused.iter().map(|e| e.to_string()));
            keep.insert(names.clone(), manager.clone());
            loaded.push((names, manager));
        }
        *self.managers.lock() = keep;
        let by_service = service_group
            .into_iter()
            .map(|(h, i)| (h, loaded[i].1.clone()))
            .collect();
        Ok((
            ChainMap {
                default: loaded[0].1.clone(),
                by_service,
                groups: loaded,
            },
            refused,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_runtime_names() {
        assert_eq!(runtime_name("authz"), "authz");
        assert_eq!(runtime_name("shop/Add-Header"), "shop.add-header");
        assert_eq!(runtime_name("shop.add_header"), "shop.add-header");
        assert_eq!(runtime_name(".x-"), "x");
        assert_eq!(runtime_name(&"a".repeat(300)).len(), 253);
        let spec = crate::filter::FilterSpec::new(runtime_name("shop/My_Plugin"));
        assert!(spec.validate().is_ok(), "the runtime accepts mapped names");
    }
}
