//! What each wasmtime `Store` carries: the filter version it belongs to, the
//! memory limiter, the CPU budget of the current call, the per-call scratch
//! the capabilities write to, and (only for components importing WASI) an
//! inert WASI context.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::types::RequestAuth;
use super::config::FilterSpec;
use super::error::DeadlineExceeded;
use super::limits;
use super::metrics::RuntimeMetrics;
use super::outbound::OutboundClient;

/// State shared by all instances of one filter version.
pub(crate) struct FilterShared {
    pub spec: FilterSpec,
    /// Module digest prefix used as the `version` label.
    pub version: String,
    pub metrics: RuntimeMetrics,
    /// This filter's guest metrics (shared by its versions).
    pub guest_metrics: Arc<super::metrics::FilterGuestMetrics>,
    /// The seeded generator when `random_seed` is set: one sequence for the
    /// whole filter version, so a test sees the same draws whatever instance
    /// serves a request.
    pub seeded_rng: Option<Mutex<ChaCha8Rng>>,
    /// Parsed JWKs, by the exact JSON text the guest passed.
    pub key_cache: Mutex<HashMap<String, Arc<super::jose::VerifyKey>>>,
    pub outbound: Option<OutboundClient>,
}

impl FilterShared {
    pub fn new(spec: FilterSpec, version: String, metrics: RuntimeMetrics) -> Self {
        let outbound = (!spec.upstreams.is_empty()).then(|| OutboundClient::new(&spec.upstreams));
        let guest_metrics = metrics.guest.for_filter(&spec.name);
        FilterShared {
            guest_metrics,
            seeded_rng: spec
                .random_seed
                .map(|s| Mutex::new(ChaCha8Rng::seed_from_u64(s))),
            spec,
            version,
            metrics,
            key_cache: Mutex::new(HashMap::new()),
            outbound,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn next_u64(&self) -> u64 {
        match &self.seeded_rng {
            Some(rng) => rng.lock().next_u64(),
            None => rand::rng().next_u64(),
        }
    }
}

/// Caps linear memory across all memories of an instance, and records that
/// the cap was hit so a resulting trap is reported as out-of-memory.
pub(crate) struct MemoryLimiter {
    pub cap: usize,
    pub used: usize,
    pub hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.used - current.min(self.used) + desired;
        if after > self.cap {
            self.hit = true;
            // Returning an error traps the guest at once rather than letting
            // `memory.grow` return -1 into an allocator that may spin.
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded (wanted {after})",
                self.cap
            ));
        }
        self.used = after;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= limits::POOL_TABLE_ELEMENTS)
    }
}

/// WASI for components produced by JS/Python/C toolchains: no arguments,
/// environment, preopened directories, sockets or name lookups; stdio goes
/// nowhere; clocks are real; randomness follows the filter's seed.
pub(crate) struct WasiState {
    pub ctx: WasiCtx,
    pub table: ResourceTable,
}

impl WasiState {
    pub fn new(seed: Option<u64>) -> Self {
        let mut b = WasiCtxBuilder::new();
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(seed) = seed {
            use rand010::SeedableRng as _;
            b.secure_random(rand010::rngs::ChaCha8Rng::seed_from_u64(seed))
                .insecure_random(rand010::rngs::ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9))
                .insecure_random_seed(u128::from(seed));
        }
        WasiState {
            ctx: b.build(),
            table: ResourceTable::new(),
        }
    }
}

/// The data of one store (= one instance).
pub(crate) struct StoreState {
    pub shared: Arc<FilterShared>,
    pub limiter: MemoryLimiter,
    /// CPU budget of the current call (see `budget`).
    pub cpu_limit: Duration,
    /// Time the current call spent in host functions that charge it.
    pub host_cpu: Duration,
    /// Set when a host function found the budget spent.
    pub timed_out: bool,
    /// Written by `authn.set-request-auth` during the current call.
    pub request_auth: Option<RequestAuth>,
    /// Created on the first WASI call (only components importing WASI make
    /// any).
    pub wasi: Option<Box<WasiState>>,
}

impl StoreState {
    pub fn new(shared: Arc<FilterShared>) -> Self {
        let cap = usize::try_from(shared.spec.limits.memory_bytes).unwrap_or(usize::MAX);
        StoreState {
            shared,
            limiter: MemoryLimiter {
                cap,
                used: 0,
                hit: false,
            },
            cpu_limit: Duration::ZERO,
            host_cpu: Duration::ZERO,
            timed_out: false,
            request_auth: None,
            wasi: None,
        }
    }
}

impl StoreState {
    /// Charges `took`, spent in a host function, to the current call; past
    /// the call's budget the guest traps with a timeout. Guest code between
    /// such calls burns fuel and is stopped by `budget` at its next yield.
    pub fn charge(&mut self, took: Duration) -> wasmtime::Result<()> {
        self.host_cpu += took;
        if self.host_cpu > self.cpu_limit {
            self.timed_out = true;
            return Err(DeadlineExceeded.into());
        }
        Ok(())
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let seed = self.shared.spec.random_seed;
        let w = self
            .wasi
            .get_or_insert_with(|| Box::new(WasiState::new(seed)));
        WasiCtxView {
            ctx: &mut w.ctx,
            table: &mut w.table,
        }
    }
}
