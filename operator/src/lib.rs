//! The control plane: Istio-compatible configuration in, per-proxy
//! snapshots out.
//!
//! | Module | Role |
//! |---|---|
//! | [`crd`] | typed resources and the CRD manifests the project ships |
//! | [`config`] | the input: mesh settings, inventory, resources |
//! | [`validate`] | Istio's admission checks and messages |
//! | [`translate`] | pure translation to ztunnel and waypoint snapshots |
pub mod analyze;
pub mod ca;
pub mod config;
pub mod controller;
pub mod crd;
pub mod fetch;
pub mod jwks;
pub mod lifecycle;
pub mod modules;
pub mod rollout;
pub mod run;
pub mod server;
pub mod source;
pub mod translate;
pub mod validate;
