//! One loaded filter version: the compiled component pre-linked with its
//! grants (`InstancePre`), the hooks and body budgets it declared, and its
//! instance pool. Hook calls check an instance out, arm its CPU deadline,
//! call, and either return it (bounded reuse) or drop it (fresh isolation,
//! or any failure: a trapped, timed-out or out-of-memory instance is never
//! used again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;
use wasmtime::component::Component;

use super::bindings::types::{self, Hooks, RequestAuth};
use super::bindings::{FullFilter, FullFilterPre};
use super::budget::{self, CpuBudget};
use super::capabilities::linker_for;
use super::config::{FilterSpec, Isolation};
use super::error::{DeadlineExceeded, FailureKind, FilterFailure, LoadError};
use super::limits;
use super::metrics::{ErrorLabels, HookLabels, VersionLabels};
use super::runtime::FilterRuntime;
use super::state::{FilterShared, StoreState};

/// One live instance.
struct Instance {
    store: Store<StoreState>,
    bindings: FullFilter,
    uses: u32,
    gauge: Gauge,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// A filter version ready to serve.
pub struct LoadedFilter {
    runtime: Arc<FilterRuntime>,
    shared: Arc<FilterShared>,
    digest: String,
    pre: FullFilterPre<StoreState>,
    info: types::FilterInfo,
    /// Headers shown to the request / response header hooks; None = all.
    request_headers: Option<Vec<http::HeaderName>>,
    response_headers: Option<Vec<http::HeaderName>>,
    idle: Mutex<Vec<Instance>>,
    permits: Arc<Semaphore>,
    /// Per hook: invocation counter and latency histogram of this version.
    hook_stats: Vec<(&'static str, Counter, Histogram)>,
    /// CPU budget of one hook call, and of instantiation plus `configure`.
    cpu_deadline: Duration,
    init_deadline: Duration,
}

/// Parses a header selection once, at load.
fn selection(sel: &types::HeaderSelection) -> Result<Option<Vec<http::HeaderName>>, String> {
    match sel {
        types::HeaderSelection::All => Ok(None),
        types::HeaderSelection::Only(names) => names
            .iter()
            .map(|n| {
                http::HeaderName::from_bytes(n.as_bytes())
                    .ok()
                    .filter(|h| h.as_str() == n)
                    .ok_or_else(|| {
                        format!(
                            "header selection names `{n}`, which is not a lower-case header name"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

/// The hooks metrics are kept for.
const HOOKS: [&str; 5] = [
    "request_headers",
    "request_body",
    "response_headers",
    "response_body",
    "attempt",
];

impl LoadedFilter {
    pub(crate) async fn new(
        runtime: Arc<FilterRuntime>,
        spec: FilterSpec,
        digest: String,
        component: Component,
        wasi: bool,
    ) -> Result<Arc<Self>, LoadError> {
        let name = spec.name.clone();
        let linker = linker_for(runtime.engine(), &spec, wasi).map_err(|e| LoadError::Link {
            name: name.clone(),
            reason: format!("{e:#}"),
        })?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                name: name.clone(),
                reason: format!("{e:#}"),
            })?;
        let pre = FullFilterPre::new(pre).map_err(|e| LoadError::Link {
            name: name.clone(),
            reason: format!("the component does not export mesh:filter/handler@0.1.0: {e:#}"),
        })?;
        let version = digest[..12].to_string();
        let cpu_deadline = spec.limits.cpu_deadline;
        let init_deadline = cpu_deadline.max(limits::INIT_CPU_DEADLINE);
        let permits = Arc::new(Semaphore::new(spec.limits.max_instances as usize));
        let hook_stats = HOOKS
            .iter()
            .map(|&hook| {
                let labels = HookLabels {
                    filter: name.clone(),
                    version: version.clone(),
                    hook,
                };
                let m = runtime.metrics();
                (
                    hook,
                    m.invocations.get_or_create(&labels).clone(),
                    m.latency.get_or_create(&labels).clone(),
                )
            })
            .collect();
        let shared = Arc::new(FilterShared::new(spec, version, runtime.metrics().clone()));
        let mut filter = LoadedFilter {
            runtime,
            shared,
            digest,
            pre,
            info: types::FilterInfo {
                hooks: Hooks::empty(),
                request_body_limit: 0,
                response_body_limit: 0,
                request_headers: types::HeaderSelection::All,
                response_headers: types::HeaderSelection::All,
            },
            request_headers: None,
            response_headers: None,
            hook_stats,
            idle: Mutex::new(Vec::new()),
            permits,
            cpu_deadline,
            init_deadline,
        };
        // The first instance validates the configuration and tells us the
        // hooks; it then serves requests like any other.
        let (inst, info) = filter.instantiate().await.map_err(|f| match f.kind {
            FailureKind::InvalidResult => LoadError::Config {
                name: name.clone(),
                reason: f.detail,
            },
            _ => LoadError::Instantiate {
                name: name.clone(),
                reason: format!("{} ({})", f.detail, f.kind.as_str()),
            },
        })?;
        for (limit, what) in [
            (info.request_body_limit, "request-body-limit"),
            (info.response_body_limit, "response-body-limit"),
        ] {
            if limit > limits::MAX_BODY_LIMIT {
                return Err(LoadError::Config {
                    name,
                    reason: format!(
                        "{what} {limit} exceeds the host maximum of {} bytes",
                        limits::MAX_BODY_LIMIT
                    ),
                });
            }
        }
        filter.request_headers =
            selection(&info.request_headers).map_err(|reason| LoadError::Config {
                name: name.clone(),
                reason,
            })?;
        filter.response_headers =
            selection(&info.response_headers).map_err(|reason| LoadError::Config {
                name: name.clone(),
                reason,
            })?;
        filter.info = info;
        filter.checkin(inst);
        Ok(Arc::new(filter))
    }

    /// The filter's name.
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// Full sha256 of the module, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The first 12 hex digits of the digest: the `version` metrics label.
    pub fn version(&self) -> &str {
        &self.shared.version
    }

    pub fn spec(&self) -> &FilterSpec {
        &self.shared.spec
    }

    /// Creates up to `n` idle instances ahead of traffic (bounded by the
    /// idle-pool size); returns how many are idle afterwards.
    pub async fn prewarm(&self, n: usize) -> Result<usize, FilterFailure> {
        let n = n.min(limits::MAX_IDLE_INSTANCES);
        let mut made = Vec::new();
        while self.idle.lock().len() + made.len() < n {
            let (inst, _) = self.instantiate().await?;
            made.push(inst);
        }
        let mut idle = self.idle.lock();
        idle.extend(made);
        Ok(idle.len())
    }

    pub(crate) fn wants(&self, hook: Hooks) -> bool {
        self.info.hooks.contains(hook)
    }

    /// The request headers this filter sees; None = all.
    pub(crate) fn request_header_selection(&self) -> Option<&[http::HeaderName]> {
        self.request_headers.as_deref()
    }

    /// The response headers this filter sees; None = all.
    pub(crate) fn response_header_selection(&self) -> Option<&[http::HeaderName]> {
        self.response_headers.as_deref()
    }

    pub(crate) fn request_body_limit(&self) -> Option<usize> {
        self.wants(Hooks::REQUEST_BODY)
            .then_some(self.info.request_body_limit as usize)
    }

    pub(crate) fn response_body_limit(&self) -> Option<usize> {
        self.wants(Hooks::RESPONSE_BODY)
            .then_some(self.info.response_body_limit as usize)
    }

    fn failure(&self, hook: &'static str, kind: FailureKind, detail: String) -> FilterFailure {
        self.shared
            .metrics
            .errors
            .get_or_create(&ErrorLabels {
                filter: self.name().to_string(),
                version: self.shared.version.clone(),
                kind: kind.as_str(),
            })
            .inc();
        FilterFailure {
            filter: self.name().to_string(),
            hook,
            kind,
            detail,
        }
    }

    /// Classifies a failed call from what the store recorded.
    fn classify(
        &self,
        hook: &'static str,
        store: &Store<StoreState>,
        e: wasmtime::Error,
    ) -> FilterFailure {
        let d = store.data();
        if d.timed_out || e.downcast_ref::<DeadlineExceeded>().is_some() {
            let deadline = self.shared.spec.limits.cpu_deadline;
            self.failure(
                hook,
                FailureKind::Timeout,
                format!("ran past its CPU deadline of {deadline:?}"),
            )
        } else if d.limiter.hit {
            self.failure(
                hook,
                FailureKind::OutOfMemory,
                format!(
                    "exceeded its memory limit of {} bytes",
                    self.shared.spec.limits.memory_bytes
                ),
            )
        } else {
            self.failure(hook, FailureKind::Trap, format!("{e:#}"))
        }
    }

    fn new_store(&self) -> Result<Store<StoreState>, FilterFailure> {
        let mut store = Store::new(self.runtime.engine(), StoreState::new(self.shared.clone()));
        store.limiter(|s| &mut s.limiter);
        budget::prepare(&mut store)
            .map_err(|e| self.failure("configure", FailureKind::Trap, format!("{e:#}")))?;
        Ok(store)
    }

    /// Resets the per-call state before a call with budget `limit`.
    fn arm(store: &mut Store<StoreState>, limit: Duration) {
        let d = store.data_mut();
        d.cpu_limit = limit;
        d.host_cpu = Duration::ZERO;
        d.timed_out = false;
        d.request_auth = None;
    }

    /// A new instance, configured. Also returns what `configure` declared.
    async fn instantiate(&self) -> Result<(Instance, types::FilterInfo), FilterFailure> {
        const HOOK: &str = "configure";
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(
                self.runtime.instance_wait(),
                self.permits.clone().acquire_owned(),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                self.failure(
                    HOOK,
                    FailureKind::InstanceLimit,
                    format!(
                        "all {} instances busy",
                        self.shared.spec.limits.max_instances
                    ),
                )
            })?,
        };
        let mut store = self.new_store()?;
        Self::arm(&mut store, self.init_deadline);
        let mut budget = CpuBudget::new(self.init_deadline);
        let bindings = match budget.call(self.pre.instantiate_async(&mut store)).await {
            Ok(b) => b,
            Err(e) => {
                let msg = format!("{e:#}");
                // The pooling allocator refuses when its slots are exhausted.
                if msg.contains("maximum concurrent")
                    || msg.contains("limit") && !store.data().limiter.hit
                {
                    return Err(self.failure(HOOK, FailureKind::InstanceLimit, msg));
                }
                return Err(self.classify(HOOK, &store, e));
            }
        };
        let config = self.shared.spec.config.clone();
        let info = match budget
            .call(
                bindings
                    .mesh_filter_handler()
                    .call_configure(&mut store, &config),
            )
            .await
        {
            Ok(Ok(info)) => info,
            Ok(Err(reason)) => {
                return Err(self.failure(HOOK, FailureKind::InvalidResult, reason));
            }
            Err(e) => return Err(self.classify(HOOK, &store, e)),
        };
        let labels = VersionLabels {
            filter: self.name().to_string(),
            version: self.shared.version.clone(),
        };
        self.shared
            .metrics
            .instantiations
            .get_or_create(&labels)
            .inc();
        let gauge = self.shared.metrics.instances.get_or_create(&labels).clone();
        gauge.inc();
        Ok((
            Instance {
                store,
                bindings,
                uses: 0,
                gauge,
                _permit: permit,
            },
            info,
        ))
    }

    async fn checkout(&self) -> Result<Instance, FilterFailure> {
        if let Some(inst) = self.idle.lock().pop() {
            return Ok(inst);
        }
        let (inst, info) = self.instantiate().await?;
        if info != self.info {
            // A guest must answer `configure` the same way every time.
            return Err(self.failure(
                "configure",
                FailureKind::InvalidResult,
                "configure returned different hooks or limits than at load time".into(),
            ));
        }
        Ok(inst)
    }

    fn checkin(&self, mut inst: Instance) {
        inst.uses += 1;
        let keep = match self.shared.spec.isolation {
            Isolation::Reuse { max_uses } => inst.uses < max_uses,
            Isolation::Fresh => false,
        };
        if keep {
            let mut idle = self.idle.lock();
            if idle.len() < limits::MAX_IDLE_INSTANCES {
                idle.push(inst);
            }
        }
    }

    /// Counts one call of `hook` and records its latency. The metric
    /// handles were resolved once at load: no label allocation per call.
    fn record(&self, hook: &'static str, start: Instant) {
        if let Some((_, calls, latency)) = self.hook_stats.iter().find(|(h, _, _)| *h == hook) {
            calls.inc();
            latency.observe(start.elapsed().as_secs_f64());
        }
    }
}

/// Calls one export on a checked-out instance with its CPU deadline armed,
/// then returns the instance to the pool or drops it.
macro_rules! call_hook {
    ($self:ident, $hook:literal, |$h:ident, $store:ident| $call:expr) => {{
        let start = Instant::now();
        let mut inst = $self.checkout().await?;
        LoadedFilter::arm(&mut inst.store, $self.cpu_deadline);
        let result = {
            let $h = inst.bindings.mesh_filter_handler();
            let $store = &mut inst.store;
            CpuBudget::new($self.cpu_deadline).call($call).await
        };
        $self.record($hook, start);
        match result {
            Ok(r) => {
                let auth = inst.store.data_mut().request_auth.take();
                $self.checkin(inst);
                Ok((r, auth))
            }
            Err(e) => Err($self.classify($hook, &inst.store, e)),
        }
    }};
}

/// What a hook returned, plus the request identity it established.
pub(crate) type HookResult<T> = Result<(T, Option<RequestAuth>), FilterFailure>;

impl LoadedFilter {
    pub(crate) async fn on_request_headers(
        &self,
        ctx: &types::Context,
        req: &types::Request,
    ) -> HookResult<Vec<types::Action>> {
        call_hook!(self, "request_headers", |h, store| h
            .call_on_request_headers(store, ctx, req))
    }

    pub(crate) async fn on_request_body(
        &self,
        ctx: &types::Context,
        body: &[u8],
    ) -> HookResult<Vec<types::Action>> {
        call_hook!(self, "request_body", |h, store| h
            .call_on_request_body(store, ctx, body))
    }

    pub(crate) async fn on_response_headers(
        &self,
        ctx: &types::Context,
        resp: &types::Response,
    ) -> HookResult<Vec<types::Action>> {
        call_hook!(self, "response_headers", |h, store| h
            .call_on_response_headers(store, ctx, resp))
    }

    pub(crate) async fn on_response_body(
        &self,
        ctx: &types::Context,
        body: &[u8],
    ) -> HookResult<Vec<types::Action>> {
        call_hook!(self, "response_body", |h, store| h
            .call_on_response_body(store, ctx, body))
    }

    pub(crate) async fn on_attempt(
        &self,
        ctx: &types::Context,
        attempt: types::Attempt,
    ) -> HookResult<types::RetryDecision> {
        call_hook!(self, "attempt", |h, store| h
            .call_on_attempt(store, ctx, attempt))
    }
}
