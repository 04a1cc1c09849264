//! The WebAssembly filter runtime: loads filter components written against
//! `wit/mesh-filter@0.1.0` and runs them on each request.
//!
//! # Using it
//! 1. Create one [`FilterRuntime`] per process (wasmtime engine with the
//!    pooling allocator, fuel-metered CPU deadlines, async calls).
//! 2. Create a [`FilterManager`] and `apply` the desired chain: each
//!    [`DesiredFilter`] is a [`FilterSpec`] (name, config, granted
//!    capabilities, limits, fail policy) plus module bytes. A filter that
//!    fails to compile, link (e.g. imports an ungranted capability) or
//!    accept its configuration is refused and its previous version keeps
//!    serving.
//! 3. Per request, `RequestFilters::new(&manager.current(), conn)` pins the
//!    versions, then call the hooks as the request progresses (see
//!    [`request`]).
//! 4. Register [`RuntimeMetrics`] in the process's Prometheus registry.
//!
//! Isolation: a filter sees only the arguments of its hooks and the
//! capabilities it was granted; WASI imports (JS, Python, C guests) get no
//! files, environment or sockets. A trap, timeout or out-of-memory fails
//! that hook call only: the instance is discarded and the filter's fail
//! policy answers the request.

mod bindings;
mod budget;
mod capabilities;
mod chain;
mod config;
mod drive;
mod error;
pub mod jose;
pub mod limits;
mod loaded;
mod metrics;
mod outbound;
pub mod request;
mod runtime;
mod state;

pub use chain::{
    ApplyReport, Canary, Chain, ChainEntry, DesiredCanary, DesiredFilter, FilterManager,
};
pub use config::{Capability, FailPolicy, FilterSpec, Isolation, Limits};
pub use error::{FailureKind, FilterFailure, LoadError};
pub use loaded::LoadedFilter;
pub use metrics::{GuestMetrics, RuntimeMetrics};
pub use request::{
    AttemptInfo, AttemptOutcome, ConnectionInfo, RequestFilters, RequestPlan, RetryDecision,
    RouteDecision, Verdict,
};
pub use runtime::{FilterRuntime, OutOfProcessCompiler, RuntimeConfig, compile_to_file};
