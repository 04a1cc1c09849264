//! The JSON configuration of the first-party mesh filters.
//!
//! The operator translates Istio resources (VirtualService, Gateway API
//! HTTPRoute, AuthorizationPolicy, RequestAuthentication) into these types and
//! hands each filter its JSON as `pluginConfig`; each filter deserializes the
//! same types in `configure`. Field names and value shapes follow the Istio
//! and Gateway API YAML (camelCase, `StringMatch` objects, duration strings)
//! so that a resource's `spec` can be copied almost verbatim; what the
//! operator must resolve before (attachment, short host names, defaults the
//! Kubernetes API server would fill) is said on each type.
//!
//! | Filter | Config type | Per-request input it reads |
//! |---|---|---|
//! | `routing` | [`routing::RoutingConfig`] | request, `connection.destination-service`/`-port` |
//! | `retry` | [`retry::RetryConfig`] | metadata [`keys::ROUTE`] |
//! | `fault` | [`fault::FaultConfig`] | metadata [`keys::ROUTE`] |
//! | `authz` | [`authz::AuthzConfig`] | request, connection, `request-auth` |
//! | `jwt` | [`jwt::JwtConfig`] | request, `destination-service` |
//!
//! Unknown fields are ignored (forward compatibility with newer Istio
//! fields); every value the filters use is validated by the filter's
//! `configure`, which refuses the whole configuration with a message naming
//! the offending field.
//!
//! [`derive`] builds the retry and fault configurations from a routing
//! configuration, so that the route ids the three filters share cannot drift.

pub mod authz;
pub mod derive;
mod duration;
pub mod fault;
pub mod gateway;
pub mod jwt;
pub mod retry;
pub mod routing;
mod string_match;

pub use duration::{Duration, DurationError};
pub use string_match::StringMatch;

/// Well-known per-request metadata keys set by the first-party filters with
/// `set-metadata`. The host reads them for metrics and access logs.
pub mod keys {
    /// Id of the route the routing filter selected (see
    /// [`crate::derive::vs_route_id`] and [`crate::derive::httproute_rule_id`]).
    /// Absent when the service has no routes (default route).
    pub const ROUTE: &str = "mesh.route";
    /// Mirrors chosen for the request by the routing filter: entries
    /// `<service>|<subset>|<port>` (subset and port may be empty) separated
    /// by `,`. The host sends each a copy of the request, fire and forget.
    pub const MIRROR: &str = "mesh.mirror";
    /// `reuse` when the request's route has `retryIgnorePreviousHosts:
    /// false`: the host may send a retry to an endpoint already tried
    /// (by default it avoids them). Set by the retry filter.
    pub const RETRY_HOSTS: &str = "mesh.retry.hosts";
    /// Envoy-style response flags of the request, comma-separated when there
    /// are several (`NR`, `NC`, `DI`, `FI`, `RBAC`, `UAEX`). The host puts the
    /// value in the `response_flags` metric label and the access log.
    pub const RESPONSE_FLAG: &str = "mesh.response-flag";
    /// `<namespace>/<name>` of the AuthorizationPolicy that decided the
    /// request (the matching DENY, the matching ALLOW, or the CUSTOM policy
    /// whose provider denied). Absent when no policy matched.
    pub const AUTHZ_POLICY: &str = "mesh.authz.policy";
    /// `allowed` or `denied`: the authorization filter's decision. Absent when
    /// no policy applies to the request's target.
    pub const AUTHZ_RESULT: &str = "mesh.authz.result";
    /// `<namespace>/<name>` of the first AUDIT policy that matched (Envoy's
    /// `access_log_hint`): the request should be audit-logged.
    pub const AUTHZ_AUDIT: &str = "mesh.authz.audit";
    /// Dry-run (`istio.io/dry-run: "true"`) evaluation result, `allowed` or
    /// `denied`, and the dry-run policy that decided it.
    pub const AUTHZ_SHADOW_RESULT: &str = "mesh.authz.shadow-result";
    /// See [`AUTHZ_SHADOW_RESULT`].
    pub const AUTHZ_SHADOW_POLICY: &str = "mesh.authz.shadow-policy";
    /// Why the JWT filter rejected the request (jwt_verify_lib status text,
    /// e.g. `Jwt is expired`).
    pub const JWT_STATUS: &str = "mesh.jwt.status";
}
