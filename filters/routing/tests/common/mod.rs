//! Helpers shared by the routing table tests.
#![allow(dead_code)]

use filter_routing::{Decision, Request, Router, Target};
use serde_json::{Value, json};

pub const SVC: &str = "reviews.bookinfo.svc.cluster.local";

/// A router for one service with the given VirtualService `http` routes.
pub fn vs(http: Value) -> Router {
    Router::from_json(
        json!({"services": [{"host": SVC, "aliases": ["reviews"],
            "virtualServices": [{"namespace": "bookinfo", "name": "reviews", "http": http}]}]})
        .to_string()
        .as_bytes(),
    )
    .expect("config compiles")
}

/// The configuration error for these routes.
pub fn vs_err(http: Value) -> String {
    Router::from_json(
        json!({"services": [{"host": SVC,
            "virtualServices": [{"namespace": "bookinfo", "name": "reviews", "http": http}]}]})
        .to_string()
        .as_bytes(),
    )
    .expect_err("config must be refused")
    .to_string()
}

/// A router for one service with the given HTTPRoutes.
pub fn gw(routes: Value) -> Router {
    Router::from_json(
        json!({"services": [{"host": SVC, "httpRoutes": routes}]})
            .to_string()
            .as_bytes(),
    )
    .expect("config compiles")
}

/// A request builder.
pub struct Req {
    pub method: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub port: u16,
    pub service: Option<String>,
}

pub fn get(path_and_query: &str) -> Req {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path_and_query.to_owned(), None),
    };
    Req {
        method: "GET".into(),
        scheme: "http".into(),
        authority: "reviews:9080".into(),
        path,
        query,
        headers: Vec::new(),
        port: 9080,
        service: Some(SVC.into()),
    }
}

impl Req {
    pub fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn authority(mut self, a: &str) -> Self {
        self.authority = a.into();
        self
    }
    pub fn scheme(mut self, s: &str) -> Self {
        self.scheme = s.into();
        self
    }
    pub fn port(mut self, p: u16) -> Self {
        self.port = p;
        self
    }
    pub fn no_service(mut self) -> Self {
        self.service = None;
        self
    }

    /// Routes with a draw of 0.
    pub fn route<'r>(&self, router: &'r Router) -> Decision<'r> {
        self.route_with(router, 0)
    }

    pub fn route_with<'r>(&self, router: &'r Router, draw: u64) -> Decision<'r> {
        let req = Request {
            method: &self.method,
            scheme: &self.scheme,
            authority: &self.authority,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
        };
        let target = Target {
            destination_service: self.service.as_deref(),
            destination_port: self.port,
        };
        router.route(&req, &target, &mut || draw)
    }
}

/// `(route id, subset)` of a forward decision, or a panic.
pub fn fwd(d: &Decision<'_>) -> (String, Option<String>) {
    match d {
        Decision::Forward(f) => (f.route_id.to_owned(), f.subset.map(str::to_owned)),
        other => panic!("expected forward, got {other:?}"),
    }
}

/// The subset a request is forwarded to.
pub fn subset(d: &Decision<'_>) -> String {
    fwd(d).1.unwrap_or_default()
}

/// Status of a local reply (0 for forward, 1 for default).
pub fn status(d: &Decision<'_>) -> u16 {
    match d {
        Decision::Respond(r) => r.status,
        Decision::Forward(_) => 0,
        Decision::Default => 1,
    }
}

/// A destination entry.
pub fn dest(subset: &str, weight: i64) -> Value {
    json!({"destination": {"host": SVC, "subset": subset}, "weight": weight})
}

/// A deterministic 64-bit generator (SplitMix64) for statistical checks.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
