//! The translation core both sources feed: validate → keep last good →
//! translate → publish to the push store → report status.
//!
//! A source hands over a complete [`Snapshot`] of what it sees; the
//! controller keeps, per resource, the last version that passed validation,
//! so a bad edit never replaces a good configuration (Kubernetes without
//! the admission webhook, or a file being edited).

use crate::config::{ConfigSet, IstioObject, ObjectKey, Resources};
use crate::translate::status::Statuses;
use crate::translate::{TranslateContext, Translation, translate};
use crate::validate::{Validation, validate};
use mesh_common::model::{Authorization, Service, WaypointConfig, Workload};
use mesh_common::xds::store::{ConfigStore, StoreError};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Severity of a diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Rejected / broken.
    Error,
    /// Accepted with a warning.
    Warning,
}

/// A problem found while loading, for logs and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Severity.
    pub severity: Severity,
    /// File / document (file mode) or empty.
    pub origin: String,
    /// Resource, when known.
    pub resource: Option<String>,
    /// Message.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: ")?;
        if !self.origin.is_empty() {
            write!(f, "{}: ", self.origin)?;
        }
        if let Some(r) = &self.resource {
            write!(f, "{r}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// One object of a snapshot with where it came from.
#[derive(Debug, Clone)]
pub struct SourcedObject {
    /// The object.
    pub object: IstioObject,
    /// File (file mode).
    pub origin: Option<String>,
}

/// Everything a source sees at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Inventory and mesh settings (its `resources` are ignored).
    pub base: ConfigSet,
    /// Resources.
    pub objects: Vec<SourcedObject>,
    /// Origins that failed to parse: their previously loaded objects stay.
    pub failed_origins: BTreeSet<String>,
    /// Parse errors (already formatted).
    pub parse_errors: Vec<String>,
}

/// Receives statuses after each translation.
pub trait StatusSink: Send + Sync + 'static {
    /// Called after every translation with all conditions and the
    /// validation result of every resource seen.
    fn publish(&self, statuses: &Statuses, validation: &BTreeMap<ObjectKey, Validation>);
}

/// A sink that logs condition changes (file mode).
#[derive(Debug, Default)]
pub struct LogSink {
    last: Mutex<Statuses>,
}

impl StatusSink for LogSink {
    fn publish(&self, statuses: &Statuses, _v: &BTreeMap<ObjectKey, Validation>) {
        let mut last = self.last.lock();
        for (t, conds) in &statuses.0 {
            for c in conds {
                if last.condition(t, &c.type_) != Some(c) {
                    tracing::info!(target: "status", "{t}: {}={} ({}) {}", c.type_, c.status_str(), c.reason, c.message);
                }
            }
        }
        *last = statuses.clone();
    }
}

/// Timing of the last publication.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PublishStats {
    /// Validation + translation.
    pub translate: Duration,
    /// Serialization + diff into the store.
    pub publish: Duration,
    /// Whether the fast path (policy-only change) was used.
    pub fast_path: bool,
}

#[derive(Default)]
struct Inner {
    last_good: BTreeMap<ObjectKey, SourcedObject>,
    validation: BTreeMap<ObjectKey, Validation>,
    ctx: TranslateContext,
    diagnostics: Vec<Diagnostic>,
    translation: Option<Arc<Translation>>,
    effective: Option<Arc<ConfigSet>>,
    stats: PublishStats,
    extra_addresses: BTreeMap<String, Vec<std::net::IpAddr>>,
    extra_statuses: Statuses,
    validated: BTreeMap<ObjectKey, (IstioObject, Validation)>,
}

/// The controller.
pub struct Controller {
    store: Arc<ConfigStore>,
    inner: Mutex<Inner>,
    sinks: Mutex<Vec<Arc<dyn StatusSink>>>,
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

/// Is a change between two resource sets limited to ztunnel-only
/// AuthorizationPolicies whose selectors did not change?
fn policy_only_change(old: &Resources, new: &Resources) -> Option<()> {
    let same_rest = old.peer_authentications == new.peer_authentications
        && old.request_authentications == new.request_authentications
        && old.virtual_services == new.virtual_services
        && old.destination_rules == new.destination_rules
        && old.telemetries == new.telemetries
        && old.wasm_plugins == new.wasm_plugins
        && old.gateway_classes == new.gateway_classes
        && old.gateways == new.gateways
        && old.http_routes == new.http_routes;
    if !same_rest || old.authorization_policies.len() != new.authorization_policies.len() {
        return None;
    }
    let key = |p: &crate::crd::AuthorizationPolicy| {
        (p.metadata.namespace.clone(), p.metadata.name.clone())
    };
    let index: BTreeMap<_, &crate::crd::AuthorizationPolicy> = old
        .authorization_policies
        .iter()
        .map(|p| (key(p), p))
        .collect();
    for n in &new.authorization_policies {
        let o = index.get(&key(n))?;
        if *o == n {
            continue;
        }
        let refs = |p: &crate::crd::AuthorizationPolicy| {
            p.spec.target_ref.is_some() || p.spec.target_refs.is_some()
        };
        if refs(o) || refs(n) || o.spec.selector != n.spec.selector {
            return None;
        }
    }
    Some(())
}

impl Controller {
    /// A controller publishing into `store`.
    pub fn new(store: Arc<ConfigStore>) -> Arc<Self> {
        Arc::new(Controller {
            store,
            inner: Mutex::new(Inner::default()),
            sinks: Mutex::new(Vec::new()),
            generation: watch::channel(0).0,
        })
    }

    /// The push store.
    pub fn store(&self) -> &Arc<ConfigStore> {
        &self.store
    }

    /// Add a status sink.
    pub fn add_sink(&self, s: Arc<dyn StatusSink>) {
        self.sinks.lock().push(s);
    }

    /// Bumped after every publication.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The last translation.
    pub fn translation(&self) -> Option<Arc<Translation>> {
        self.inner.lock().translation.clone()
    }

    /// The effective configuration (last good resources + inventory).
    pub fn config(&self) -> Option<Arc<ConfigSet>> {
        self.inner.lock().effective.clone()
    }

    /// Diagnostics of the last snapshot.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        self.inner.lock().diagnostics.clone()
    }

    /// Timing of the last publication.
    pub fn stats(&self) -> PublishStats {
        self.inner.lock().stats
    }

    /// The translate context (JWKS, modules, rollouts).
    pub fn context(&self) -> TranslateContext {
        self.inner.lock().ctx.clone()
    }

    /// Change the translate context and republish.
    pub fn update_context(&self, f: impl FnOnce(&mut TranslateContext)) -> Result<(), StoreError> {
        {
            let mut inner = self.inner.lock();
            f(&mut inner.ctx);
        }
        self.republish(false)
    }

    /// Take a snapshot from a source, validate it and publish.
    pub fn apply(&self, snap: Snapshot) -> Result<Vec<Diagnostic>, StoreError> {
        let mut diags: Vec<Diagnostic> = snap
            .parse_errors
            .iter()
            .map(|m| Diagnostic {
                severity: Severity::Error,
                origin: String::new(),
                resource: None,
                message: m.clone(),
            })
            .collect();
        let fast;
        {
            let mut inner = self.inner.lock();
            let mut next: BTreeMap<ObjectKey, SourcedObject> = BTreeMap::new();
            // Objects from files that failed to parse stay as they were.
            for (k, o) in &inner.last_good {
                if o.origin
                    .as_ref()
                    .is_some_and(|x| snap.failed_origins.contains(x))
                {
                    next.insert(k.clone(), o.clone());
                }
            }
            let mut validation = BTreeMap::new();
            let same_mesh = inner
                .effective
                .as_ref()
                .is_some_and(|e| e.mesh == snap.base.mesh);
            for so in snap.objects {
                let key = so.object.key();
                // Unchanged objects keep their validation result.
                let cached = inner
                    .validated
                    .get(&key)
                    .filter(|(o, _)| same_mesh && *o == so.object)
                    .map(|(_, v)| v.clone());
                let v = match cached {
                    Some(v) => v,
                    None => {
                        let v = validate(&so.object, &snap.base.mesh);
                        inner
                            .validated
                            .insert(key.clone(), (so.object.clone(), v.clone()));
                        v
                    }
                };
                let origin = so.origin.clone().unwrap_or_default();
                for w in &v.warnings {
                    diags.push(Diagnostic {
                        severity: Severity::Warning,
                        origin: origin.clone(),
                        resource: Some(key.to_string()),
                        message: w.clone(),
                    });
                }
                if v.is_valid() {
                    next.insert(key.clone(), so);
                } else {
                    let kept = inner.last_good.get(&key).cloned();
                    let suffix = if kept.is_some() {
                        "; keeping the last good version"
                    } else {
                        "; resource ignored"
                    };
                    for e in &v.errors {
                        diags.push(Diagnostic {
                            severity: Severity::Error,
                            origin: origin.clone(),
                            resource: Some(key.to_string()),
                            message: format!("{e}{suffix}"),
                        });
                    }
                    if let Some(k) = kept {
                        next.insert(key.clone(), k);
                    }
                }
                validation.insert(key, v);
            }
            for d in &diags {
                match d.severity {
                    Severity::Error => tracing::error!("{d}"),
                    Severity::Warning => tracing::warn!("{d}"),
                }
            }
            let mut base = snap.base;
            base.resources = Resources::default();
            for (k, a) in &inner.extra_addresses {
                base.waypoint_addresses
                    .entry(k.clone())
                    .or_insert_with(|| a.clone());
            }
            for so in next.values() {
                base.resources.push(so.object.clone());
            }
            fast = match (
                inner.effective.as_ref().map(|e| &e.resources),
                &inner.translation,
            ) {
                (Some(old), Some(_)) => {
                    let same_inventory = inner
                        .effective
                        .as_ref()
                        .is_some_and(|e| inventory_eq(e, &base));
                    same_inventory && policy_only_change(old, &base.resources).is_some()
                }
                _ => false,
            };
            let seen: std::collections::BTreeSet<ObjectKey> = validation.keys().cloned().collect();
            inner.validated.retain(|k, _| seen.contains(k));
            inner.last_good = next;
            inner.validation = validation;
            inner.effective = Some(Arc::new(base));
            inner.diagnostics = diags.clone();
        }
        self.republish(fast)?;
        Ok(diags)
    }

    fn republish(&self, fast: bool) -> Result<(), StoreError> {
        let t0 = Instant::now();
        let (cs, ctx, prev) = {
            let inner = self.inner.lock();
            (
                inner.effective.clone().unwrap_or_default(),
                inner.ctx.clone(),
                inner.translation.clone(),
            )
        };
        let translation = match (fast, prev) {
            (true, Some(prev)) => {
                let mut t = (*prev).clone();
                let mut statuses = Statuses::default();
                let implicit: Vec<Authorization> = t
                    .authorizations
                    .iter()
                    .filter(|a| a.name.starts_with("istio_allow_waypoint_"))
                    .cloned()
                    .collect();
                t.authorizations = crate::translate::authz::all_policies(&cs, &mut statuses);
                t.authorizations.extend(implicit);
                for (k, v) in statuses.0 {
                    t.statuses.0.insert(k, v);
                }
                t
            }
            _ => translate(&cs, &ctx),
        };
        let t1 = Instant::now();
        if !fast {
            self.store
                .replace_all::<Workload>(translation.workloads.iter().cloned())?;
            self.store
                .replace_all::<Service>(translation.services.iter().cloned())?;
            self.store
                .replace_all::<WaypointConfig>(translation.waypoints.iter().cloned())?;
        }
        self.store
            .replace_all::<Authorization>(translation.authorizations.iter().cloned())?;
        self.store.set_ready();
        let t2 = Instant::now();
        let mut translation = translation;
        let validation = {
            let mut inner = self.inner.lock();
            for (k, v) in &inner.extra_statuses.0 {
                for c in v {
                    translation.statuses.set(k.clone(), c.clone());
                }
            }
            let translation = Arc::new(std::mem::take(&mut translation));
            inner.translation = Some(translation);
            inner.stats = PublishStats {
                translate: t1 - t0,
                publish: t2 - t1,
                fast_path: fast,
            };
            inner.validation.clone()
        };
        let Some(translation) = self.translation() else {
            return Ok(());
        };
        for s in self.sinks.lock().iter() {
            s.publish(&translation.statuses, &validation);
        }
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }
}

impl Controller {
    /// Record the address of a waypoint instance started by a launcher
    /// (`None` removes it) and republish.
    pub fn set_waypoint_address(
        &self,
        key: &str,
        addrs: Option<Vec<std::net::IpAddr>>,
    ) -> Result<(), StoreError> {
        {
            let mut inner = self.inner.lock();
            match &addrs {
                Some(a) => inner.extra_addresses.insert(key.to_string(), a.clone()),
                None => inner.extra_addresses.remove(key),
            };
            if let Some(eff) = inner.effective.clone() {
                let mut cs = (*eff).clone();
                match addrs {
                    Some(a) => {
                        cs.waypoint_addresses.entry(key.to_string()).or_insert(a);
                    }
                    None => {
                        cs.waypoint_addresses.remove(key);
                    }
                }
                inner.effective = Some(Arc::new(cs));
            }
        }
        self.republish(false)
    }

    /// Set a condition produced outside translation (waypoint lifecycle) and
    /// hand the statuses to the sinks again.
    pub fn set_status(
        &self,
        target: crate::translate::status::StatusTarget,
        c: crate::translate::status::Condition,
    ) {
        let (statuses, validation) = {
            let mut inner = self.inner.lock();
            if inner.extra_statuses.condition(&target, &c.type_) == Some(&c) {
                return;
            }
            inner.extra_statuses.set(target.clone(), c.clone());
            let Some(t) = inner.translation.clone() else {
                return;
            };
            let mut t = (*t).clone();
            t.statuses.set(target, c);
            let statuses = t.statuses.clone();
            inner.translation = Some(Arc::new(t));
            (statuses, inner.validation.clone())
        };
        for s in self.sinks.lock().iter() {
            s.publish(&statuses, &validation);
        }
        self.generation.send_modify(|g| *g += 1);
    }
}

fn inventory_eq(a: &ConfigSet, b: &ConfigSet) -> bool {
    a.mesh == b.mesh
        && a.namespaces == b.namespaces
        && a.pods == b.pods
        && a.services == b.services
        && a.waypoint_addresses == b.waypoint_addresses
}
