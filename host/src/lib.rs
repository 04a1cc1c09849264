//! The waypoint: a per-service L7 proxy whose policy runs as WebAssembly
//! components.
//!
//! - [`filter`]: the WASM filter runtime (wasmtime component host).
//! - [`proxy`]: listeners (HBONE, plain HTTP), the request path, drain.
//! - [`upstream`]: upstream connections (TCP, HBONE), pools, replayable bodies.
//! - [`cluster`]: endpoints, load balancing, circuit breakers, outlier detection.
//! - [`respond`]: every local reply (status, response flag, body) in one place.
//! - [`telemetry`]: Istio metrics, JSON access logs, OTLP traces.
//! - [`config`]: configuration sources (file, push) and applying them.
//! - [`admin`]: config dump, filters, clusters, metrics, readiness.
//! - [`waypoint`]: the process as a library; [`cli`]: its flags;
//!   [`workers`]: the data-plane threads (one runtime per core).

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod filter;
pub mod proxy;
pub mod respond;
pub mod telemetry;
pub mod upstream;
pub mod waypoint;
pub mod workers;
