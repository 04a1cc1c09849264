//! The operational endpoints:
//!
//! | Port | Path | What |
//! |---|---|---|
//! | 15000 | `/config_dump` | serving config with version, source and last error |
//! | 15000 | `/filters` | filter chains: name, version, digest, canary share |
//! | 15000 | `/clusters` | clusters, endpoints, outlier state, breaker counters |
//! | 15000 | `/logging?level=debug` (POST) | change the log filter |
//! | 15000 | `/ready` | same as 15021 |
//! | 15020 | `/stats/prometheus`, `/metrics` | Prometheus text (Istio metrics, runtime metrics) |
//! | 15021 | `/healthz/ready` | 200 once a config is applied and not draining, else 503 |

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::apply::Applier;
use crate::proxy::Proxy;
use crate::telemetry::prom;

/// Changes the log filter (e.g. `info,waypoint=debug`).
pub type LogControl = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the endpoints read.
#[derive(Clone)]
pub struct AdminState {
    /// The proxy.
    pub proxy: Arc<Proxy>,
    /// Config status.
    pub applier: Arc<Applier>,
    /// Other metrics (filter runtime, config applies).
    pub registry: Arc<Mutex<Registry>>,
    /// Ready after the first config.
    pub ready: watch::Receiver<bool>,
    /// Log control, when the binary installed one.
    pub log: Option<LogControl>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").finish_non_exhaustive()
    }
}

/// Which endpoint set a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// 15000.
    Admin,
    /// 15020.
    Metrics,
    /// 15021.
    Readiness,
}

fn reply(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}

fn json_reply(v: &Json) -> Response<Full<Bytes>> {
    reply(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec_pretty(v).unwrap_or_default(),
    )
}

impl AdminState {
    /// Ready: a config applied and not draining.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow() && !self.proxy.is_draining()
    }

    /// The metrics page.
    pub fn metrics_text(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.proxy.telemetry.encode(&mut out);
        prom::encode_registry(&self.registry.lock(), &mut out);
        out
    }

    fn readiness(&self) -> Response<Full<Bytes>> {
        if self.is_ready() {
            reply(StatusCode::OK, "text/plain", "ready\n")
        } else if self.proxy.is_draining() {
            reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
        } else {
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "no configuration applied yet\n",
            )
        }
    }

    fn filters(&self) -> Json {
        let snap = self.proxy.snapshot();
        let chains: Vec<Json> = snap
            .chains
            .groups
            .iter()
            .map(|(names, m)| {
                let chain = m.current();
                let filters: Vec<Json> = chain
                    .entries()
                    .iter()
                    .map(|e| {
                        json!({
                            "name": e.stable.name(),
                            "version": e.stable.version(),
                            "digest": e.stable.digest(),
                            "canary": e.canary.as_ref().map(|c| json!({
                                "version": c.filter.version(),
                                "digest": c.filter.digest(),
                                "percent": c.percent,
                            })),
                        })
                    })
                    .collect();
                json!({ "filters": filters, "configured": names })
            })
            .collect();
        json!({ "version": snap.version, "chains": chains })
    }

    fn clusters(&self) -> Json {
        let snap = self.proxy.snapshot();
        let clusters: Vec<Json> = snap
            .clusters
            .all()
            .iter()
            .map(|c| {
                let [cx, pending, rq, retries, overflows] = c.breakers.snapshot();
                let hosts: Vec<Json> = c
                    .hosts
                    .iter()
                    .map(|h| {
                        let m = h.monitor.lock();
                        let (c5xx, cgw, clocal) = m.counters();
                        json!({
                            "address": h.addr.to_string(),
                            "hbone": h.hbone,
                            "ready": h.is_ready(),
                            "ejected": h.is_ejected(),
                            "ejections": m.num_ejections,
                            "ejectionMultiplier": m.backoff(),
                            "consecutive5xx": c5xx,
                            "consecutiveGatewayErrors": cgw,
                            "consecutiveLocalOriginFailures": clocal,
                            "activeRequests": h.active_requests(),
                            "connections": h.connections(),
                            "workload": h.endpoint.workload_name,
                            "labels": h.endpoint.labels,
                        })
                    })
                    .collect();
                json!({
                    "name": c.name,
                    "service": c.key.service,
                    "port": c.key.port,
                    "subset": c.key.subset,
                    "loadBalancer": c.policy.load_balancer,
                    "connectionPool": c.policy.connection_pool,
                    "outlierDetection": c.policy.outlier_detection,
                    "circuitBreakers": {
                        "connections": cx, "pendingRequests": pending, "requests": rq,
                        "retries": retries, "overflows": overflows,
                        "maxConnections": c.breakers.limits.max_connections,
                        "maxPendingRequests": c.breakers.limits.max_pending_requests,
                        "maxRequests": c.breakers.limits.max_requests,
                        "maxRetries": c.breakers.limits.max_retries,
                    },
                    "hosts": hosts,
                })
            })
            .collect();
        json!({ "version": snap.version, "clusters": clusters })
    }

    fn config_dump(&self) -> Json {
        let snap = self.proxy.snapshot();
        json!({
            "status": *self.applier.status(),
            "config": *snap.config,
        })
    }

    /// Handles one request for `role`.
    pub fn handle(&self, role: Role, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        match (role, req.method(), path) {
            (Role::Readiness, _, "/healthz/ready") | (Role::Admin, _, "/ready") => self.readiness(),
            (Role::Metrics | Role::Admin, &Method::GET, "/stats/prometheus" | "/metrics") => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics_text(),
            ),
            (Role::Admin, &Method::GET, "/config_dump") => json_reply(&self.config_dump()),
            (Role::Admin, &Method::GET, "/filters") => json_reply(&self.filters()),
            (Role::Admin, &Method::GET, "/clusters") => json_reply(&self.clusters()),
            (Role::Admin, &Method::POST, "/logging") => {
                let level = req
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("level=")))
                    .unwrap_or("");
                match (&self.log, level) {
                    (_, "") => reply(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        "use POST /logging?level=<filter>\n",
                    ),
                    (None, _) => reply(
                        StatusCode::NOT_IMPLEMENTED,
                        "text/plain",
                        "log control not installed\n",
                    ),
                    (Some(f), l) => match f(l) {
                        Ok(()) => reply(
                            StatusCode::OK,
                            "text/plain",
                            format!("log filter set to {l}\n"),
                        ),
                        Err(e) => reply(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
                    },
                }
            }
            (Role::Admin, &Method::GET, "/") => reply(
                StatusCode::OK,
                "text/plain",
                "/config_dump\n/filters\n/clusters\n/stats/prometheus\n/ready\nPOST /logging?level=<filter>\n",
            ),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }
}

/// Serves `role` on `listener` until `shutdown`.
pub async fn serve(
    state: AdminState,
    role: Role,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, ?role, "admin accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let st = state.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let r = st.handle(role, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let b = auto::Builder::new(TokioExecutor::new());
            let conn = b.serve_connection(TokioIo::new(tcp), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}
