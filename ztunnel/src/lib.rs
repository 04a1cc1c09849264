//! ztunnel: the per-node L4 proxy of the mesh (Istio ambient style).
//!
//! For every enrolled pod on its node, ztunnel gives the pod mutual TLS and
//! a SPIFFE identity without a sidecar and without restarting it:
//!
//! * **capture** ([`manager`], [`capture`], [`netns`]): in in-pod mode the
//!   ztunnel process is also the node agent. For each local enrolled pod it
//!   enters the pod's network namespace on a dedicated thread, opens the
//!   outbound (15001), plaintext inbound (15006) and HBONE (15008) listeners
//!   *inside* it, and installs iptables `REDIRECT` rules there. Unenrolment
//!   removes the rules; `istio.io/dataplane-mode=none` pods are skipped.
//! * **outbound** ([`route`], [`proxy`]): the original destination
//!   (`SO_ORIGINAL_DST`) is resolved against the [`registry`]: service VIP
//!   → healthy endpoint or the service's waypoint; pod IP → the pod or its
//!   workload waypoint; anything else passes through. Mesh destinations are
//!   reached over HBONE ([`mesh_common::hbone`]) from the pod's own network
//!   namespace, presenting the pod's certificate ([`certs`]).
//! * **inbound**: HBONE streams and PERMISSIVE plaintext are authorized at
//!   the destination ([`authz`]) with the L4 policies the operator pushes,
//!   and live connections are re-checked when policies change.
//! * **observability** ([`admin`], [`metrics`]): config dump and runtime
//!   log level on 15000, Istio TCP metrics on 15020, readiness on 15021.
//!
//! Configuration arrives through a [`source::ConfigSource`]: a YAML/JSON
//! file ([`source::FileSource`]) or the operator's push stream.

pub mod admin;
pub mod app;
pub mod authz;
pub mod capture;
pub mod certs;
pub mod config;
pub mod manager;
pub mod metrics;
pub mod netns;
pub mod proxy;
pub mod registry;
pub mod route;
pub mod source;
pub mod xds;

pub use app::Ztunnel;
