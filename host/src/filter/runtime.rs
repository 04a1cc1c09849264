//! The process-wide filter runtime: one wasmtime `Engine` (pooling
//! allocator, epoch interruption, async), the epoch ticker, and `load`, which
//! turns module bytes plus a `FilterSpec` into a ready `LoadedFilter` or a
//! `LoadError` naming what is wrong.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::config::{Capability, FilterSpec};
use super::error::LoadError;
use super::limits;
use super::loaded::LoadedFilter;
use super::metrics::RuntimeMetrics;

/// Process-wide settings of the runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Use the pooling allocator (fast instantiation; reserves address space
    /// up front). Off, instances are allocated on demand.
    pub pooling: bool,
    /// Directory of wasmtime's compilation cache: a module compiled once is
    /// loaded from disk by later processes. None disables it.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            // MESH_WASM_POOLING=0 for environments that cap address space
            // (valgrind, strict `ulimit -v`).
            pooling: std::env::var("MESH_WASM_POOLING").map_or(true, |v| v != "0"),
            cache_dir: std::env::var_os("MESH_WASM_CACHE").map(PathBuf::from),
        }
    }
}

/// Compiles, links, validates and runs filters. Cheap to share (`Arc`).
pub struct FilterRuntime {
    engine: Engine,
    metrics: RuntimeMetrics,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for FilterRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn engine_config(rc: &RuntimeConfig) -> wasmtime::Result<Config> {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .parallel_compilation(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    if rc.pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(limits::POOL_TOTAL_COMPONENT_INSTANCES)
            .total_core_instances(limits::POOL_TOTAL_CORE_INSTANCES)
            .total_memories(limits::POOL_TOTAL_MEMORIES)
            .total_tables(limits::POOL_TOTAL_TABLES)
            .total_stacks(limits::POOL_TOTAL_COMPONENT_INSTANCES)
            .table_elements(limits::POOL_TABLE_ELEMENTS)
            .max_core_instances_per_component(limits::POOL_MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(limits::POOL_MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(limits::POOL_MAX_TABLES_PER_COMPONENT)
            .max_core_instance_size(limits::POOL_CORE_INSTANCE_SIZE)
            .max_component_instance_size(limits::POOL_COMPONENT_INSTANCE_SIZE)
            .max_memory_size(limits::MAX_MEMORY_LIMIT as usize);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // Reserve only what the largest cap needs instead of 4 GiB per slot:
        // 4096 slots x 512 MiB stays well inside the address space.
        cfg.memory_reservation(limits::MAX_MEMORY_LIMIT)
            .memory_guard_size(64 << 10);
    }
    // Diagnostics: MESH_WASM_PROFILER=perfmap writes /tmp/perf-<pid>.map so
    // `perf report` names guest functions instead of raw JIT addresses.
    if std::env::var("MESH_WASM_PROFILER").is_ok_and(|v| v == "perfmap") {
        cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Some(dir) = &rc.cache_dir {
        let mut cc = wasmtime::CacheConfig::new();
        cc.with_directory(dir);
        cfg.cache(Some(wasmtime::Cache::new(cc)?));
    }
    Ok(cfg)
}

impl FilterRuntime {
    /// Creates the engine and starts the epoch ticker thread.
    pub fn new(rc: RuntimeConfig) -> anyhow::Result<Arc<Self>> {
        let cfg = engine_config(&rc).map_err(|e| anyhow::anyhow!("{e}"))?;
        let engine = Engine::new(&cfg).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the WebAssembly engine: {e} (the pooling allocator reserves address space; check `ulimit -v`)"
            )
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (engine.weak(), stop.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(limits::EPOCH_TICK);
                    match e.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Arc::new(FilterRuntime {
            engine,
            metrics: RuntimeMetrics::default(),
            ticker_stop: stop,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Metrics of all filters loaded by this runtime.
    pub fn metrics(&self) -> &RuntimeMetrics {
        &self.metrics
    }

    /// Loads one filter version: checks the digest (when `expected_sha256`
    /// is given), compiles (off the async executor), checks every import
    /// against the grants, links, instantiates once and runs `configure` to
    /// validate the configuration. The instance it made is kept for reuse.
    pub async fn load(
        self: &Arc<Self>,
        spec: FilterSpec,
        bytes: Arc<[u8]>,
        expected_sha256: Option<&str>,
    ) -> Result<Arc<LoadedFilter>, LoadError> {
        let name = spec.name.clone();
        spec.validate().map_err(|reason| LoadError::InvalidSpec {
            name: name.clone(),
            reason,
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = expected_sha256 {
            let expected = expected.trim_start_matches("sha256:").to_ascii_lowercase();
            if expected != digest {
                return Err(LoadError::Digest {
                    name,
                    expected,
                    actual: digest,
                });
            }
        }
        let engine = self.engine.clone();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &*bytes))
            .await
            .map_err(|e| LoadError::Compile {
                name: name.clone(),
                reason: format!("compiler task failed: {e}"),
            })?
            .map_err(|e| LoadError::Compile {
                name: name.clone(),
                reason: format!("{e:#}"),
            })?;
        let wasi = check_imports(&self.engine, &component, &spec)?;
        LoadedFilter::new(self.clone(), spec, digest, component, wasi).await
    }

    /// Time to wait for a free instance before failing a hook.
    pub(crate) fn instance_wait(&self) -> Duration {
        Duration::from_millis(100)
    }
}

/// Every import must be a granted `mesh:filter` capability, the shared
/// `types` interface, or WASI. Returns whether WASI is imported.
fn check_imports(
    engine: &Engine,
    component: &Component,
    spec: &FilterSpec,
) -> Result<bool, LoadError> {
    let mut wasi = false;
    for (import, _) in component.component_type().imports(engine) {
        let (pkg, rest) = import.split_once('/').unwrap_or((import, ""));
        let iface = rest.split('@').next().unwrap_or(rest);
        if pkg == "mesh:filter" {
            if iface == "types" {
                continue;
            }
            match Capability::from_interface(iface) {
                Some(cap) if spec.grants(cap) => {}
                Some(cap) => {
                    return Err(LoadError::CapabilityNotGranted {
                        name: spec.name.clone(),
                        import: import.to_string(),
                        capability: cap.to_string(),
                    });
                }
                None => {
                    return Err(LoadError::UnknownImport {
                        name: spec.name.clone(),
                        import: import.to_string(),
                    });
                }
            }
        } else if pkg.starts_with("wasi:") {
            wasi = true;
        } else {
            return Err(LoadError::UnknownImport {
                name: spec.name.clone(),
                import: import.to_string(),
            });
        }
    }
    Ok(wasi)
}
