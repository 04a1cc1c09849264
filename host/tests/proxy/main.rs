//! In-process integration tests of the waypoint's proxy core with real
//! upstream servers and real clients (curl, h2load, grpcio, Prometheus).
//!
//! Tests needing routing or retry decisions run the `test-host-policy`
//! guest (filters/testdata/host-policy) in the chain; the others run an
//! empty chain, where a request goes to the service it addressed.

mod basic;
mod ext_authz;
mod grpc;
mod hbone;
mod lifecycle;
mod push;
mod resilience;
mod retries;
mod routing;
mod support;
mod tcp;
mod telemetry;
mod websocket;
