//! Table-driven translation over the seed's manifests and Istio's
//! documented examples (reference §1.11, §3, §5.5, §7).

mod support;

mod authorization;
mod peer_authentication;
mod seed;
mod telemetry;
mod traffic;
mod validation;
mod waypoint;
