//! The first-party routing filter: VirtualService `http` routes and Gateway
//! API HTTPRoutes evaluated with Istio's (Envoy's) semantics.
//!
//! 1. [`Router::from_json`] compiles a [`filter_model::routing::RoutingConfig`]
//!    once (regexes compiled, routes ordered, HTTPRoutes split per match and
//!    sorted by Gateway API precedence).
//! 2. [`Router::route`] evaluates one request: the service's routes in order,
//!    first match wins, and returns a [`Decision`]: forward (destination,
//!    rewrites, header operations), answer locally (redirect, direct
//!    response, `404` when nothing matched, `500` for Gateway API routes
//!    without backends), or [`Decision::Default`] when the service has no
//!    routes for this port (the host forwards to the addressed service).
//!
//! ```
//! use filter_routing::{Decision, Request, Router, Target};
//! let router = Router::from_json(br#"{"services":[{"host":"r.ns.svc.cluster.local",
//!   "virtualServices":[{"namespace":"ns","name":"r","http":[
//!     {"match":[{"uri":{"prefix":"/api"}}],"route":[{"destination":{"host":"r.ns.svc.cluster.local","subset":"v2"}}]},
//!     {"route":[{"destination":{"host":"r.ns.svc.cluster.local","subset":"v1"}}]}]}]}]}"#).unwrap();
//! let req = Request { method: "GET", scheme: "http", authority: "r", path: "/apix", query: None, headers: &[] };
//! let target = Target { destination_service: Some("r.ns.svc.cluster.local"), destination_port: 80 };
//! let Decision::Forward(f) = router.route(&req, &target, &mut || 0) else { panic!() };
//! assert_eq!((f.route_id, f.subset), ("vs:ns/r#0", Some("v2"))); // raw string prefix
//! ```
//!
//! The `guest` module (wasm32 only) adapts this to the SDK: it sets metadata
//! `mesh.route` and emits `route`, `rewrite-path`, `rewrite-authority` and
//! header actions, or `respond`.

mod action;
mod compile;
mod cors;
pub mod format;
mod gateway;
#[cfg(target_arch = "wasm32")]
mod guest;
mod matcher;

pub use action::MirrorTarget;
use action::eval_action;
use compile::ServiceTable;
use filter_model::routing::RoutingConfig;
use std::collections::HashMap;

/// Why a routing configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The JSON does not have the routing configuration's shape.
    #[error("invalid routing config JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A regular expression does not compile.
    #[error("{field}: regex {pattern:?} is invalid (RE2 syntax expected): {reason}")]
    Regex {
        /// Where the regex is.
        field: String,
        /// The pattern.
        pattern: String,
        /// The compiler's message.
        reason: String,
    },
    /// A value Istio's validation would reject.
    #[error("{0}")]
    Invalid(String),
}

/// The request as the routing filter sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:scheme` (`http`/`https`).
    pub scheme: &'a str,
    /// `:authority` / `Host`, with any port.
    pub authority: &'a str,
    /// Path without query.
    pub path: &'a str,
    /// Raw query without `?`.
    pub query: Option<&'a str>,
    /// Headers, lower-case names.
    pub headers: &'a [(String, String)],
}

/// Which service and port the client addressed.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// FQDN of the addressed service, when the host knows it.
    pub destination_service: Option<&'a str>,
    /// The port the client addressed (the service port).
    pub destination_port: u16,
}

/// A header operation, applied in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderOp {
    /// Overwrite (or add).
    Set(String, String),
    /// Append a value.
    Add(String, String),
    /// Delete.
    Remove(String),
}

/// Forward the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward<'r> {
    /// Id of the selected route (metadata `mesh.route`).
    pub route_id: &'r str,
    /// Mirrors selected for this request (metadata `mesh.mirror`).
    pub mirrors: Vec<&'r MirrorTarget>,
    /// Destination service FQDN.
    pub service: &'r str,
    /// DestinationRule subset.
    pub subset: Option<&'r str>,
    /// Destination port; `None` keeps the addressed port.
    pub port: Option<u16>,
    /// New path (without query), when rewritten.
    pub path: Option<String>,
    /// New `:authority`, when rewritten.
    pub authority: Option<String>,
    /// Request header operations, in order.
    pub request_headers: Vec<HeaderOp>,
    /// Response header operations, in order (applied when the response comes back).
    pub response_headers: Vec<HeaderOp>,
}

/// Answer locally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    /// Id of the route that produced it (none for "no route matched").
    pub route_id: Option<String>,
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Envoy response flag (`NR` no route, `NC` no cluster).
    pub response_flag: Option<&'static str>,
}

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'r> {
    /// No routes for this service/port: no action (default route).
    Default,
    /// Forward as described.
    Forward(Forward<'r>),
    /// Answer with this response.
    Respond(LocalReply),
}

/// A compiled routing configuration.
#[derive(Debug, Default)]
pub struct Router {
    tables: Vec<ServiceTable>,
    by_host: HashMap<String, usize>,
    by_alias: HashMap<String, usize>,
}

impl Router {
    /// Parses and compiles the filter's JSON configuration (empty = no routes).
    pub fn from_json(config: &[u8]) -> Result<Self, ConfigError> {
        if config.iter().all(u8::is_ascii_whitespace) {
            return Ok(Router::default());
        }
        let cfg: RoutingConfig = serde_json::from_slice(config)?;
        Router::compile(&cfg)
    }

    /// Compiles a configuration.
    pub fn compile(cfg: &RoutingConfig) -> Result<Self, ConfigError> {
        let mut router = Router::default();
        for svc in &cfg.services {
            let table = ServiceTable::compile(svc, cfg.waypoint_namespace.as_deref())?;
            if table.routes.is_empty() {
                continue;
            }
            let idx = router.tables.len();
            router.tables.push(table);
            router.by_host.insert(svc.host.to_ascii_lowercase(), idx);
            for alias in svc.aliases.iter().chain(std::iter::once(&svc.host)) {
                router.by_alias.insert(alias.to_ascii_lowercase(), idx);
            }
        }
        Ok(router)
    }

    /// Every header name a match condition reads (lower-case, sorted): the
    /// only headers the filter needs to see.
    pub fn header_names(&self) -> Vec<String> {
        let routes = || self.tables.iter().flat_map(|t| &t.routes);
        let mut names: Vec<String> = routes()
            .flat_map(|r| &r.matches)
            .flat_map(|m| &m.headers)
            .map(|h| h.name.clone())
            .collect();
        if routes().any(|r| r.cors.is_some()) {
            names.extend(cors::Cors::HEADERS.iter().map(|h| h.to_string()));
        }
        // Headers `%REQ(...)%` reads in header values.
        for r in routes() {
            if let action::RouteAction::Forward(f) = &r.action {
                let ops = [&f.req_ops, &f.resp_ops]
                    .into_iter()
                    .chain(f.dests.iter().flat_map(|d| [&d.req_ops, &d.resp_ops]));
                for o in ops {
                    for (_, v, _) in &o.set_add {
                        names.extend(format::referenced_headers(v));
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Number of services with routes.
    pub fn service_count(&self) -> usize {
        self.tables.len()
    }

    fn table(&self, req: &Request<'_>, target: &Target<'_>) -> Option<&ServiceTable> {
        let idx = match target.destination_service {
            Some(svc) => self.by_host.get(&svc.to_ascii_lowercase()).copied(),
            None => self
                .by_alias
                .get(&authority_host(req.authority).to_ascii_lowercase())
                .copied(),
        };
        idx.map(|i| &self.tables[i])
    }

    /// Routes one request. `random` supplies the draw for weighted
    /// destinations (called only when a route has several).
    pub fn route<'r>(
        &'r self,
        req: &Request<'_>,
        target: &Target<'_>,
        random: &mut dyn FnMut() -> u64,
    ) -> Decision<'r> {
        let Some(table) = self.table(req, target) else {
            return Decision::Default;
        };
        let port = target.destination_port;
        let mut any_applicable = false;
        for route in &table.routes {
            if !route.applies_to_port(port) {
                continue;
            }
            any_applicable = true;
            if let Some(m) = route.first_match(req, port) {
                let cors = match &route.cors {
                    Some(c) => c.apply(req, &route.id),
                    None => cors::CorsOutcome::None,
                };
                return match cors {
                    cors::CorsOutcome::None => eval_action(route, m, req, target, random),
                    cors::CorsOutcome::Reply(r) => Decision::Respond(r),
                    cors::CorsOutcome::Headers(ops) => {
                        let mut d = eval_action(route, m, req, target, random);
                        match &mut d {
                            Decision::Forward(f) => f.response_headers.extend(ops),
                            Decision::Respond(r) => {
                                for op in ops {
                                    if let HeaderOp::Set(n, v) = op {
                                        r.headers.retain(|(h, _)| !h.eq_ignore_ascii_case(&n));
                                        r.headers.push((n, v));
                                    }
                                }
                            }
                            Decision::Default => {}
                        }
                        d
                    }
                };
            }
        }
        if !any_applicable {
            // Istio builds the default route when no VirtualService route
            // survives for this port.
            return Decision::Default;
        }
        Decision::Respond(LocalReply {
            route_id: None,
            status: 404,
            headers: Vec::new(),
            body: Vec::new(),
            response_flag: Some("NR"),
        })
    }
}

/// The host part of an authority (`[::1]:80` → `[::1]`, `a:80` → `a`).
pub(crate) fn authority_host(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rfind(':') {
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &authority[..i],
        _ => authority,
    }
}
