//! Admin (15000), metrics (15020) and readiness (15021) HTTP endpoints.
//!
//! * `GET /config_dump` (15000): workloads, services, policies, enrolled
//!   workloads and certificates as JSON.
//! * `GET /logging` shows the log filter; `POST /logging?level=<filter>`
//!   changes it at runtime (e.g. `level=debug` or `level=info,ztunnel=trace`).
//! * `GET /metrics` (15020): Prometheus text.
//! * `GET /healthz/ready` (15021): 200 once the configuration is synced and
//!   every local workload is enrolled, else 503.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::authz::ConnTracker;
use crate::certs::CertManager;
use crate::manager::Manager;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Runtime log-level control (implemented by the binary over
/// `tracing_subscriber::reload`).
pub trait LogControl: Send + Sync + 'static {
    /// Current filter.
    fn get(&self) -> String;
    /// Replace the filter.
    fn set(&self, filter: &str) -> Result<(), String>;
}

/// What the endpoints read.
#[derive(Clone)]
pub struct AdminState {
    /// Mesh state.
    pub registry: Arc<Registry>,
    /// Enrolment.
    pub manager: Arc<Manager>,
    /// Certificates.
    pub certs: Arc<CertManager>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Live inbound connections.
    pub tracker: Arc<ConnTracker>,
    /// Log control, if any.
    pub log: Option<Arc<dyn LogControl>>,
    /// Node name.
    pub node: String,
}

/// An endpoint response.
pub type Resp = Response<Full<Bytes>>;
/// An endpoint router.
pub type Route = fn(&AdminState, &Request<Incoming>) -> Resp;

fn text(status: StatusCode, body: impl Into<Bytes>, ctype: &str) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.replace("%2C", ",").replace("%3D", "="))
    })
}

/// The admin routes.
pub fn admin(state: &AdminState, req: &Request<Incoming>) -> Resp {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/config_dump") => {
            let snap = state.registry.read().snapshot();
            let body = json!({
                "node": state.node,
                "workloads": snap.workloads,
                "services": snap.services,
                "policies": snap.authorizations,
                "enrolled": state.manager.enrolled_uids(),
                "certificates": state.certs.dump(),
                "liveInboundConnections": state.tracker.len(),
            });
            text(
                StatusCode::OK,
                serde_json::to_vec_pretty(&body).unwrap_or_default(),
                "application/json",
            )
        }
        (&Method::GET, "/logging") => match &state.log {
            Some(l) => text(StatusCode::OK, format!("{}\n", l.get()), "text/plain"),
            None => text(
                StatusCode::NOT_IMPLEMENTED,
                "log control not available\n",
                "text/plain",
            ),
        },
        (&Method::POST, "/logging") => match (&state.log, query_param(req, "level")) {
            (Some(l), Some(level)) => match l.set(&level) {
                Ok(()) => text(StatusCode::OK, format!("{}\n", l.get()), "text/plain"),
                Err(e) => text(
                    StatusCode::BAD_REQUEST,
                    format!("invalid level: {e}\n"),
                    "text/plain",
                ),
            },
            (None, _) => text(
                StatusCode::NOT_IMPLEMENTED,
                "log control not available\n",
                "text/plain",
            ),
            (_, None) => text(
                StatusCode::BAD_REQUEST,
                "usage: POST /logging?level=<filter>\n",
                "text/plain",
            ),
        },
        (&Method::GET, "/") => text(
            StatusCode::OK,
            "GET /config_dump\nGET /logging\nPOST /logging?level=<filter>\n",
            "text/plain",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
    }
}

/// The metrics route.
pub fn metrics(state: &AdminState, req: &Request<Incoming>) -> Resp {
    match req.uri().path() {
        "/metrics" | "/stats/prometheus" => text(
            StatusCode::OK,
            state.metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
    }
}

/// The readiness route.
pub fn readiness(state: &AdminState, req: &Request<Incoming>) -> Resp {
    match req.uri().path() {
        "/healthz/ready" => {
            if state.registry.is_synced() && state.manager.is_ready() {
                text(StatusCode::OK, "ready\n", "text/plain")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n", "text/plain")
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
    }
}

/// Serves HTTP/1 on `listener` with `route` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    route: Route,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = shutdown.cancelled() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let resp = route(&state, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await
            {
                debug!(error = %e, "admin connection error");
            }
        });
    }
}

/// Binds `addr` (helper for the three endpoints).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
