//! Every limit of the filter runtime, with what it bounds and its default.
//! Per-filter values come from the filter's configuration; these are the
//! defaults and the process-wide ceilings.

use std::time::Duration;

/// Guest code yields to the executor after this much fuel (about one wasm
/// instruction each), so a filter spinning up to its deadline never stalls
/// the other connections of its worker for long, and the CPU deadline is
/// checked at each yield (see `budget`). Most operators cost one unit;
/// bulk memory and table operators also cost one per byte or element
/// (wasmtime's default), so `memory.fill` of a whole memory cannot hide a
/// long run behind one unit. Measured here, a tight loop burns an interval
/// in ~30 µs; code that misses the cache on every access is slower per
/// unit, estimated at up to ~10 ms per interval. `host/tests/runtime.rs`
/// checks that a spinning guest yields at least once per millisecond.
pub const FUEL_YIELD_INTERVAL: u64 = 500_000;

/// Smallest CPU deadline a filter may declare.
pub const MIN_CPU_DEADLINE: Duration = Duration::from_millis(1);

/// Default CPU budget of one hook call (time spent executing guest code;
/// time the host spends awaiting `outbound-http` does not count).
pub const DEFAULT_CPU_DEADLINE: Duration = Duration::from_millis(5);

/// Default cap of one instance's linear memory (all memories of the
/// component together), in bytes.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 << 20;

/// Largest memory cap a filter may ask for; also the pooling allocator's
/// per-memory reservation size.
pub const MAX_MEMORY_LIMIT: u64 = 512 << 20;

/// Default number of instances of one filter version alive at once (idle in
/// the pool or executing a hook). Beyond it a hook fails with `instance
/// limit` and the filter's fail policy applies.
pub const DEFAULT_MAX_INSTANCES: u32 = 512;

/// Default number of hook calls one instance serves before it is retired
/// (bounded reuse; see `Isolation`). Bounds the life of any state a guest
/// keeps, and of allocator fragmentation.
pub const DEFAULT_MAX_REUSE: u32 = 10_000;

/// Idle instances kept per filter version; more are dropped on return.
pub const MAX_IDLE_INSTANCES: usize = 64;

/// Most actions a hook may return; more is a filter error.
pub const MAX_ACTIONS: usize = 1024;

/// Largest local-response body a filter may produce, in bytes.
pub const MAX_LOCAL_BODY: usize = 1 << 20;

/// Largest body budget a filter may declare (request or response), in bytes.
pub const MAX_BODY_LIMIT: u32 = 16 << 20;

/// Distinct guest metric series (name + labels) per filter; more are dropped
/// and counted in `wasm_filter_metric_series_dropped_total`.
pub const MAX_METRIC_SERIES: usize = 1000;

/// Longest log line a guest may emit; longer lines are truncated.
pub const MAX_LOG_LINE: usize = 4096;

/// Pooling allocator: instances of all filters together.
pub const POOL_TOTAL_COMPONENT_INSTANCES: u32 = 4096;
/// Pooling allocator: core instances of all filters together (a JS or
/// Python component holds several).
pub const POOL_TOTAL_CORE_INSTANCES: u32 = 8192;
/// Pooling allocator: linear memories of all filters together.
pub const POOL_TOTAL_MEMORIES: u32 = 4096;
/// Pooling allocator: tables of all filters together.
pub const POOL_TOTAL_TABLES: u32 = 8192;
/// Pooling allocator: elements per table (interpreters need large tables).
pub const POOL_TABLE_ELEMENTS: usize = 65_536;
/// Pooling allocator: core instances per component.
pub const POOL_MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
/// Pooling allocator: memories / tables per component.
pub const POOL_MAX_MEMORIES_PER_COMPONENT: u32 = 16;
pub const POOL_MAX_TABLES_PER_COMPONENT: u32 = 32;
/// Pooling allocator: bytes of VM metadata per core instance and component
/// instance (interpreters export many functions and globals).
pub const POOL_CORE_INSTANCE_SIZE: usize = 1 << 20;
pub const POOL_COMPONENT_INSTANCE_SIZE: usize = 1 << 20;

/// CPU budget of instantiation plus `configure` (interpreters initialize
/// their runtime here).
pub const INIT_CPU_DEADLINE: Duration = Duration::from_millis(500);
