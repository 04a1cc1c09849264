//! The process-wide filter runtime: one wasmtime `Engine` (pooling
//! allocator, fuel metering for CPU budgets, async), and `load`, which
//! turns module bytes plus a `FilterSpec` into a ready `LoadedFilter` or a
//! `LoadError` naming what is wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
    /// Compile components in a child process instead of in this one (see
    /// [`OutOfProcessCompiler`]). None compiles in-process.
    pub compiler: Option<OutOfProcessCompiler>,
}

/// Runs `program args… <input.wasm> <output.cwasm>` to compile a component
/// with an engine configured exactly like this process's (the child must
/// call [`compile_to_file`] with the same [`RuntimeConfig`]), then maps the
/// result. The serving process then never runs cranelift: neither its code
/// (≈ 7 MB of resident text) nor its transient heap (a 5-filter chain peaks
/// near 80 MB while compiling) lands in the proxy's RSS.
#[derive(Clone, Debug)]
pub struct OutOfProcessCompiler {
    /// Executable (the waypoint binary itself).
    pub program: PathBuf,
    /// Arguments before the two paths (a hidden subcommand).
    pub args: Vec<String>,
    /// Private directory for the artifacts (created 0700).
    pub work_dir: PathBuf,
}

/// Longest a child compile may take.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

/// The child side of [`OutOfProcessCompiler`]: compile `input` with the
/// engine configuration of `rc` and write the artifact to `output`.
pub fn compile_to_file(rc: &RuntimeConfig, input: &Path, output: &Path) -> anyhow::Result<()> {
    let cfg = engine_config(rc).map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = Engine::new(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let bytes = std::fs::read(input)?;
    let art = engine
        .precompile_component(&bytes)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    std::fs::write(output, art)?;
    Ok(())
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            // MESH_WASM_POOLING=0 for environments that cap address space
            // (valgrind, strict `ulimit -v`).
            pooling: std::env::var("MESH_WASM_POOLING").map_or(true, |v| v != "0"),
            cache_dir: std::env::var_os("MESH_WASM_CACHE").map(PathBuf::from),
            compiler: None,
        }
    }
}

/// Compiles, links, validates and runs filters. Cheap to share (`Arc`).
pub struct FilterRuntime {
    engine: Engine,
    compiler: Option<OutOfProcessCompiler>,
    compiles: std::sync::atomic::AtomicU64,
    metrics: RuntimeMetrics,
}

fn engine_config(rc: &RuntimeConfig) -> wasmtime::Result<Config> {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        // Fuel makes guests yield at regular points; `budget` turns those
        // yields into per-call CPU deadlines.
        .consume_fuel(true)
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
    /// Creates the engine.
    pub fn new(rc: RuntimeConfig) -> anyhow::Result<Arc<Self>> {
        let cfg = engine_config(&rc).map_err(|e| anyhow::anyhow!("{e}"))?;
        let engine = Engine::new(&cfg).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the WebAssembly engine: {e} (the pooling allocator reserves address space; check `ulimit -v`)"
            )
        })?;
        Ok(Arc::new(FilterRuntime {
            engine,
            compiler: rc.compiler.clone(),
            compiles: std::sync::atomic::AtomicU64::new(0),
            metrics: RuntimeMetrics::default(),
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
        let child = match &self.compiler {
            Some(c) => match self.compile_out_of_process(c, &name, &digest, &bytes).await {
                Ok(r) => Some(r?),
                Err(why) => {
                    // E.g. a read-only temp directory: still serve, at the
                    // cost of the compiler's memory in this process.
                    tracing::warn!(filter = %name, "compiling in-process: {why}");
                    None
                }
            },
            None => None,
        };
        let component = match child {
            Some(c) => c,
            None => {
                let engine = self.engine.clone();
                tokio::task::spawn_blocking(move || Component::new(&engine, &*bytes))
                    .await
                    .map_err(|e| LoadError::Compile {
                        name: name.clone(),
                        reason: format!("compiler task failed: {e}"),
                    })?
                    .map_err(|e| LoadError::Compile {
                        name: name.clone(),
                        reason: format!("{e:#}"),
                    })?
            }
        };
        let wasi = check_imports(&self.engine, &component, &spec)?;
        LoadedFilter::new(self.clone(), spec, digest, component, wasi).await
    }

    async fn compile_out_of_process(
        &self,
        c: &OutOfProcessCompiler,
        name: &str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<Result<Component, LoadError>, String> {
        let fail = |reason: String| LoadError::Compile {
            name: name.to_string(),
            reason,
        };
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&c.work_dir)
                .map_err(|e| format!("{}: {e}", c.work_dir.display()))?;
        }
        let n = self.compiles.fetch_add(1, Ordering::Relaxed);
        let input = c.work_dir.join(format!("{digest}.{n}.wasm"));
        let output = c.work_dir.join(format!("{digest}.{n}.cwasm"));
        let cleanup = || {
            let _ = std::fs::remove_file(&input);
            let _ = std::fs::remove_file(&output);
        };
        tokio::fs::write(&input, bytes)
            .await
            .map_err(|e| format!("{}: {e}", input.display()))?;
        let child = tokio::process::Command::new(&c.program)
            .args(&c.args)
            .arg(&input)
            .arg(&output)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(COMPILE_TIMEOUT, child).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                cleanup();
                return Err(format!(
                    "cannot run the compiler process {}: {e}",
                    c.program.display()
                ));
            }
            Err(_) => {
                cleanup();
                return Ok(Err(fail(format!(
                    "compiling took longer than {}s",
                    COMPILE_TIMEOUT.as_secs()
                ))));
            }
        };
        if !out.status.success() {
            cleanup();
            let err = String::from_utf8_lossy(&out.stderr);
            return Ok(Err(fail(err.trim().to_string())));
        }
        // SAFETY: `deserialize_file` trusts that the file is an artifact
        // of `Engine::precompile_component` for a compatible engine (it
        // checks the compatibility itself, not the machine code). The file
        // was written a moment ago by our own executable into a directory
        // only this user can write (created 0700 above), from bytes whose
        // sha256 was checked by the caller.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(&self.engine, &output) };
        cleanup();
        Ok(component.map_err(|e| fail(format!("loading the compiled component: {e:#}"))))
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
