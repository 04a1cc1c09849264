//! The translation core both sources feed: validate → keep last good →
//! translate → publish to the push store → report status.
//!
//! A source hands over a complete [`Snapshot`] of what it sees; the
//! controller keeps, per resource, the last version that passed validation,
//! so a bad edit never replaces a good configuration (Kubernetes without
//! the admission webhook, or a file being edited).

use crate::config::{ConfigSet, IstioObject, Kind, ObjectKey, Resources};
use crate::crd::AuthorizationPolicy;
use crate::translate::incremental::{PolicyKey, apply_policy_changes, is_incremental, sort_key};
use crate::translate::status::Statuses;
use crate::translate::{TranslateContext, Translation, translate};
use crate::validate::{Validation, validate};
use mesh_common::model::{Authorization, Service, WaypointConfig, Workload};
use mesh_common::xds::store::{ConfigStore, StoreError};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
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
    /// Validation and change detection.
    pub prepare: Duration,
    /// Translation (full, or the incremental patch).
    pub translate: Duration,
    /// Serialization + diff into the store.
    pub publish: Duration,
    /// Whether the fast path (a change limited to AuthorizationPolicies
    /// that ztunnel enforces, translated incrementally) was used.
    pub fast_path: bool,
}

#[derive(Default)]
struct Inner {
    last_good: BTreeMap<ObjectKey, Box<SourcedObject>>,
    validation: Arc<BTreeMap<ObjectKey, Validation>>,
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
    /// Serializes publications, so the store never goes back to an older
    /// translation when two changes race.
    publishing: Mutex<()>,
    sinks: Mutex<Vec<Arc<dyn StatusSink>>>,
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

/// How a publication is computed.
enum Plan {
    /// Translate everything.
    Full,
    /// Patch the previous translation for these AuthorizationPolicies.
    Policies(Vec<PolicyKey>),
}

/// The AuthorizationPolicies changed between `old` and `new` (`changed`:
/// the keys of `new` whose object differs from `old`'s), when nothing else
/// changed and every change can be translated incrementally.
fn policy_changes(
    old: &BTreeMap<ObjectKey, Box<SourcedObject>>,
    new: &BTreeMap<ObjectKey, Box<SourcedObject>>,
    changed: &[ObjectKey],
) -> Option<Vec<PolicyKey>> {
    fn ap(o: Option<&SourcedObject>) -> Option<&AuthorizationPolicy> {
        match o.map(|o| &o.object) {
            Some(IstioObject::AuthorizationPolicy(p)) => Some(p),
            _ => None,
        }
    }
    let check = |k: &ObjectKey| {
        let (o, n) = (old.get(k).map(|b| &**b), new.get(k).map(|b| &**b));
        (k.kind == Kind::AuthorizationPolicy && is_incremental(ap(o), ap(n))).then(|| PolicyKey {
            namespace: k.namespace.clone(),
            name: k.name.clone(),
        })
    };
    let mut out: Vec<PolicyKey> = changed.iter().map(check).collect::<Option<_>>()?;
    let added = changed.iter().filter(|k| !old.contains_key(*k)).count();
    if old.len() + added != new.len() {
        for k in old.keys().filter(|k| !new.contains_key(*k)) {
            out.push(check(k)?);
        }
    }
    Some(out)
}

/// Replace, insert or remove the policy `key` in `cs` (policies sorted by
/// namespace and name, as the controller builds them).
fn patch_policy(cs: &mut ConfigSet, key: &PolicyKey, new: Option<&SourcedObject>) {
    let aps = &mut cs.resources.authorization_policies;
    let pos =
        aps.binary_search_by(|p| sort_key(p).cmp(&(key.namespace.as_str(), key.name.as_str())));
    let new = match new.map(|o| &o.object) {
        Some(IstioObject::AuthorizationPolicy(p)) => Some(p.clone()),
        _ => None,
    };
    match (pos, new) {
        (Ok(i), Some(p)) => aps[i] = p,
        (Err(i), Some(p)) => aps.insert(i, p),
        (Ok(i), None) => {
            aps.remove(i);
        }
        (Err(_), None) => {}
    }
}

/// Values too large to free on the publication path (previous snapshots):
/// dropped on a low-priority thread.
type Garbage = Vec<Box<dyn Send>>;

fn dispose(garbage: Garbage) {
    static TX: OnceLock<Option<std::sync::mpsc::Sender<Garbage>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Garbage>();
        std::thread::Builder::new()
            .name("controller-gc".into())
            .spawn(move || {
                lower_priority();
                for g in rx {
                    drop(g);
                }
            })
            .ok()
            .map(|_| tx)
    });
    // Without the thread (spawn failed), drop here.
    if let Some(Err(e)) = tx.as_ref().map(|tx| tx.send(garbage)) {
        drop(e.0);
    }
}

/// Lowest CPU priority for the calling thread (Linux nice values are per
/// thread), so freeing old snapshots yields to pushes and translation.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its integer arguments; `who = 0` is
    // the calling thread on Linux.
    #[allow(unsafe_code)]
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

impl Controller {
    /// A controller publishing into `store`.
    pub fn new(store: Arc<ConfigStore>) -> Arc<Self> {
        Arc::new(Controller {
            store,
            inner: Mutex::new(Inner::default()),
            publishing: Mutex::new(()),
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
        let _publishing = self.publishing.lock();
        {
            let mut inner = self.inner.lock();
            f(&mut inner.ctx);
        }
        self.republish(Plan::Full, Duration::ZERO, Vec::new())
    }

    /// Take a snapshot from a source, validate it and publish.
    ///
    /// A change limited to AuthorizationPolicies that ztunnel enforces
    /// (same selectors, no `targetRefs`; added or removed namespace-wide
    /// ones) patches the previous translation and pushes only those
    /// policies; anything else translates everything again. Either way the
    /// proxies receive only what changed.
    pub fn apply(&self, snap: Snapshot) -> Result<Vec<Diagnostic>, StoreError> {
        let t0 = Instant::now();
        let _publishing = self.publishing.lock();
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
        let mut garbage: Garbage = Vec::new();
        let plan;
        {
            let mut inner = self.inner.lock();
            let mut next: BTreeMap<ObjectKey, Box<SourcedObject>> = BTreeMap::new();
            // Objects from files that failed to parse stay as they were.
            if !snap.failed_origins.is_empty() {
                for (k, o) in &inner.last_good {
                    if o.origin
                        .as_ref()
                        .is_some_and(|x| snap.failed_origins.contains(x))
                    {
                        next.insert(k.clone(), o.clone());
                    }
                }
            }
            let mut validation = BTreeMap::new();
            // Keys whose last good object is replaced by another one.
            let mut changed: Vec<ObjectKey> = Vec::new();
            let same_mesh = inner
                .effective
                .as_ref()
                .is_some_and(|e| e.mesh == snap.base.mesh);
            for so in snap.objects {
                let key = so.object.key();
                let same = inner
                    .last_good
                    .get(&key)
                    .is_some_and(|o| o.object == so.object);
                // An unchanged valid object keeps its validation result, an
                // unchanged invalid one its cached result.
                let cached = if same && same_mesh {
                    inner.validation.get(&key).filter(|v| v.is_valid()).cloned()
                } else {
                    None
                }
                .or_else(|| {
                    inner
                        .validated
                        .get(&key)
                        .filter(|(o, _)| same_mesh && *o == so.object)
                        .map(|(_, v)| v.clone())
                });
                let v = match cached {
                    Some(v) => v,
                    None => {
                        let v = validate(&so.object, &snap.base.mesh);
                        if !v.is_valid() {
                            inner
                                .validated
                                .insert(key.clone(), (so.object.clone(), v.clone()));
                        }
                        v
                    }
                };
                let origin = || so.origin.clone().unwrap_or_default();
                for w in &v.warnings {
                    diags.push(Diagnostic {
                        severity: Severity::Warning,
                        origin: origin(),
                        resource: Some(key.to_string()),
                        message: w.clone(),
                    });
                }
                if v.is_valid() {
                    if !same {
                        changed.push(key.clone());
                    }
                    next.insert(key.clone(), Box::new(so));
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
                            origin: origin(),
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
            let incremental = match (&inner.effective, &inner.translation) {
                (Some(eff), Some(_)) if inventory_eq(eff, &base) => {
                    policy_changes(&inner.last_good, &next, &changed)
                }
                _ => None,
            };
            match (incremental, inner.effective.as_mut()) {
                (Some(keys), Some(eff)) => {
                    // Same inventory: keep it, patch the changed policies
                    // in (in place unless a reader holds the old one).
                    let cs = Arc::make_mut(eff);
                    for k in &keys {
                        let key = ObjectKey {
                            kind: Kind::AuthorizationPolicy,
                            namespace: k.namespace.clone(),
                            name: k.name.clone(),
                        };
                        patch_policy(cs, k, next.get(&key).map(|b| &**b));
                    }
                    garbage.push(Box::new(base));
                    plan = Plan::Policies(keys);
                }
                _ => {
                    for so in next.values() {
                        base.resources.push(so.object.clone());
                    }
                    if let Some(old) = inner.effective.replace(Arc::new(base)) {
                        garbage.push(Box::new(old));
                    }
                    plan = Plan::Full;
                }
            }
            // The cache keeps invalid objects only (valid ones are in
            // `last_good` with their result in `validation`).
            inner
                .validated
                .retain(|k, (_, v)| !v.is_valid() && validation.contains_key(k));
            garbage.push(Box::new(std::mem::replace(&mut inner.last_good, next)));
            garbage.push(Box::new(std::mem::replace(
                &mut inner.validation,
                Arc::new(validation),
            )));
            inner.diagnostics = diags.clone();
        }
        self.republish(plan, t0.elapsed(), garbage)?;
        Ok(diags)
    }

    fn republish(
        &self,
        plan: Plan,
        prepare: Duration,
        mut garbage: Garbage,
    ) -> Result<(), StoreError> {
        let t0 = Instant::now();
        let patched = match &plan {
            Plan::Policies(keys) => self.publish_policies(keys)?,
            Plan::Full => None,
        };
        let fast = patched.is_some();
        let (t1, t2) = match patched {
            Some(times) => times,
            None => self.publish_full(&mut garbage)?,
        };
        self.store.set_ready();
        let (translation, validation) = {
            let mut inner = self.inner.lock();
            inner.stats = PublishStats {
                prepare,
                translate: t1 - t0,
                publish: t2 - t1,
                fast_path: fast,
            };
            (inner.translation.clone(), inner.validation.clone())
        };
        if let Some(translation) = translation {
            for s in self.sinks.lock().iter() {
                s.publish(&translation.statuses, &validation);
            }
        }
        self.generation.send_modify(|g| *g += 1);
        dispose(garbage);
        Ok(())
    }

    /// Patch the previous translation for changed policies and push only
    /// those. `None` when it cannot be patched (translate everything).
    fn publish_policies(
        &self,
        keys: &[PolicyKey],
    ) -> Result<Option<(Instant, Instant)>, StoreError> {
        let changes = {
            let mut inner = self.inner.lock();
            let inner = &mut *inner;
            match (&inner.effective, &mut inner.translation) {
                (Some(cs), Some(t)) => {
                    // In place, unless a reader still holds this translation.
                    let t = Arc::make_mut(t);
                    let changes = apply_policy_changes(t, cs, keys);
                    for (target, conds) in &inner.extra_statuses.0 {
                        let changed = target.kind == "AuthorizationPolicy"
                            && keys
                                .iter()
                                .any(|k| k.namespace == target.namespace && k.name == target.name);
                        for c in conds.iter().filter(|_| changed) {
                            t.statuses.set(target.clone(), c.clone());
                        }
                    }
                    changes
                }
                _ => None,
            }
        };
        let Some(changes) = changes else {
            return Ok(None);
        };
        let t1 = Instant::now();
        self.store
            .update::<Authorization>(changes.upserts, changes.removals)?;
        Ok(Some((t1, Instant::now())))
    }

    /// Translate everything and make the store hold exactly the result
    /// (proxies still receive only what differs).
    fn publish_full(&self, garbage: &mut Garbage) -> Result<(Instant, Instant), StoreError> {
        let (cs, ctx) = {
            let inner = self.inner.lock();
            (
                inner.effective.clone().unwrap_or_default(),
                inner.ctx.clone(),
            )
        };
        let mut translation = translate(&cs, &ctx);
        drop(cs);
        let t1 = Instant::now();
        self.store
            .replace_all::<Workload>(translation.workloads.iter().cloned())?;
        self.store
            .replace_all::<Service>(translation.services.iter().cloned())?;
        self.store
            .replace_all::<WaypointConfig>(translation.waypoints.iter().cloned())?;
        self.store
            .replace_all::<Authorization>(translation.authorizations.iter().cloned())?;
        let t2 = Instant::now();
        let mut inner = self.inner.lock();
        for (k, v) in &inner.extra_statuses.0 {
            for c in v {
                translation.statuses.set(k.clone(), c.clone());
            }
        }
        if let Some(old) = inner.translation.replace(Arc::new(translation)) {
            garbage.push(Box::new(old));
        }
        Ok((t1, t2))
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
        let _publishing = self.publishing.lock();
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
        self.republish(Plan::Full, Duration::ZERO, Vec::new())
    }

    /// Set a condition produced outside translation (waypoint lifecycle) and
    /// hand the statuses to the sinks again.
    pub fn set_status(
        &self,
        target: crate::translate::status::StatusTarget,
        c: crate::translate::status::Condition,
    ) {
        let (translation, validation) = {
            let mut inner = self.inner.lock();
            if inner.extra_statuses.condition(&target, &c.type_) == Some(&c) {
                return;
            }
            inner.extra_statuses.set(target.clone(), c.clone());
            let Some(t) = inner.translation.as_mut() else {
                return;
            };
            Arc::make_mut(t).statuses.set(target, c);
            (t.clone(), inner.validation.clone())
        };
        for s in self.sinks.lock().iter() {
            s.publish(&translation.statuses, &validation);
        }
        self.generation.send_modify(|g| *g += 1);
    }
}

fn inventory_eq(a: &ConfigSet, b: &ConfigSet) -> bool {
    a.mesh == b.mesh
        && a.nodes == b.nodes
        && a.namespaces == b.namespaces
        && a.pods == b.pods
        && a.services == b.services
        && a.waypoint_addresses == b.waypoint_addresses
}
