//! The one place where the WIT contract (`wit/mesh-filter@0.1.0`) becomes
//! Rust: every other module of the runtime uses the types generated here.
//!
//! Imports are generated as `async` so that `outbound-http.send` can await
//! network I/O without blocking a Tokio worker; the rest complete without
//! awaiting. Exports are called with `call_async` on a fiber so that a
//! long-running guest yields back to the executor (see `budget`).

#![allow(missing_docs, clippy::all, rust_2018_idioms)]

wasmtime::component::bindgen!({
    path: "../wit/mesh-filter@0.1.0",
    world: "full-filter",
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [PartialEq],
});

pub use mesh::filter::types;
