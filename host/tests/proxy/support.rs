//! Test support: real upstream servers that count what reaches them, config
//! files for a waypoint, and helpers to run it and real clients.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use waypoint::config::file::FileSource;
use waypoint::waypoint::{AccessLogTarget, Options, Waypoint};

/// The service the tests route to.
pub const SVC: &str = "echo.test.svc.cluster.local";
/// Its service port.
pub const SVC_PORT: u16 = 80;

/// What a test upstream saw.
#[derive(Default)]
pub struct Seen {
    /// Requests received.
    pub requests: AtomicU64,
    /// Requests per `x-request-id` (attempts of one client request).
    pub by_request_id: Mutex<HashMap<String, u64>>,
    /// Last headers received.
    pub last_headers: Mutex<Option<http::HeaderMap>>,
    /// Last request target (path and query) received.
    pub last_uri: Mutex<Option<String>>,
    /// HTTP versions seen.
    pub versions: Mutex<Vec<http::Version>>,
    /// When set (non-zero), every response has this status.
    pub force_status: AtomicU16,
    /// Delay every response by this many milliseconds.
    pub force_delay_ms: AtomicU64,
    /// Requests in flight.
    pub active: AtomicU64,
    /// Most requests in flight at once.
    pub max_active: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
}

/// A real HTTP/1.1 + h2c upstream.
///
/// Behaviour per request header:
/// - `x-status: N` answer N;
/// - `x-fail-times: N` with `x-fail-mode: <status>|reset|grpc-<code>`: the
///   first N attempts of one `x-request-id` fail that way (`grpc-<code>`: a
///   trailers-only gRPC error, HTTP 200 with `grpc-status: <code>`), later
///   ones succeed;
/// - `x-delay-ms: N` (or `x-delay-first-ms` for the first attempt only);
/// - `x-body-size: N` answer N bytes;
/// - `x-reset: 1` close without answering.
///
/// Answers carry `x-upstream: <name>` and echo `traceparent` as
/// `x-seen-traceparent`.
pub struct Upstream {
    /// Name in `x-upstream`.
    pub name: String,
    /// Listening address.
    pub addr: SocketAddr,
    /// Counters.
    pub seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, thiserror::Error)]
#[error("test upstream reset the request")]
struct Reset;

async fn upstream_handle(
    name: String,
    seen: Arc<Seen>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Reset> {
    let n = seen.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let active = seen.active.fetch_add(1, Ordering::SeqCst) + 1;
    seen.max_active.fetch_max(active, Ordering::SeqCst);
    struct Dec(Arc<Seen>);
    impl Drop for Dec {
        fn drop(&mut self) {
            self.0.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _dec = Dec(seen.clone());
    seen.versions.lock().push(req.version());
    let h = req.headers().clone();
    *seen.last_headers.lock() = Some(h.clone());
    *seen.last_uri.lock() = req.uri().path_and_query().map(|p| p.to_string());
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let num = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
    let rid = get("x-request-id").unwrap_or_default();
    let attempt = {
        let mut m = seen.by_request_id.lock();
        let e = m.entry(rid).or_insert(0);
        *e += 1;
        *e
    };
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let forced_delay = seen.force_delay_ms.load(Ordering::SeqCst);
    if forced_delay > 0 {
        tokio::time::sleep(Duration::from_millis(forced_delay)).await;
    }
    if let Some(ms) = num("x-delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if attempt == 1
        && let Some(ms) = num("x-delay-first-ms")
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if get("x-reset").is_some() {
        return Err(Reset);
    }
    let mut status = num("x-status")
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let mut grpc_status = None;
    if let Some(times) = num("x-fail-times")
        && attempt <= times
    {
        match get("x-fail-mode").as_deref() {
            Some("reset") => return Err(Reset),
            Some(g) if g.starts_with("grpc-") => grpc_status = Some(g["grpc-".len()..].to_string()),
            Some(s) => {
                status = s
                    .parse::<u16>()
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            None => status = StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    let forced = seen.force_status.load(Ordering::SeqCst);
    if forced != 0 {
        status = StatusCode::from_u16(forced).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    }
    let out = match num("x-body-size") {
        Some(n) => Bytes::from(vec![b'x'; n as usize]),
        None if !body.is_empty() => body,
        None => Bytes::from(format!("{name} {n}\n")),
    };
    let mut resp = Response::new(Full::new(out));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-upstream", name.parse().unwrap());
    resp.headers_mut()
        .insert("x-attempt", attempt.to_string().parse().unwrap());
    if let Some(g) = grpc_status {
        resp.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        resp.headers_mut().insert("grpc-status", g.parse().unwrap());
    }
    if let Some(tp) = h.get("traceparent") {
        resp.headers_mut().insert("x-seen-traceparent", tp.clone());
    }
    Ok(resp)
}

impl Upstream {
    /// Starts an upstream named `name` on `ip` (any port).
    pub async fn start(name: &str, ip: &str) -> Upstream {
        let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let (n, s) = (name.to_string(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let (n, s) = (n.clone(), s.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| upstream_handle(n.clone(), s.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Upstream {
            name: name.to_string(),
            addr,
            seen,
            task,
        }
    }

    /// Requests received so far.
    pub fn count(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// Attempts seen for one request id.
    pub fn attempts(&self, request_id: &str) -> u64 {
        self.seen
            .by_request_id
            .lock()
            .get(request_id)
            .copied()
            .unwrap_or(0)
    }

    /// The endpoint entry for a config.
    pub fn endpoint(&self, labels: &[(&str, &str)]) -> Value {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "workloadUid": format!("Kubernetes//Pod/test/{}", self.name),
            "name": self.name,
            "namespace": "test",
            "workloadName": self.name,
            "address": self.addr.ip().to_string(),
            "ports": { SVC_PORT.to_string(): self.addr.port() },
            "labels": labels,
            "identity": format!("spiffe://cluster.local/ns/test/sa/{}", self.name),
            "canonicalName": self.name,
            "canonicalRevision": labels.get("version").and_then(|v| v.as_str()).unwrap_or("v1"),
        })
    }
}

/// A workload certificate from `ca` for `ns`/`sa`.
pub fn cert(
    ca: &mesh_common::ca::CertificateAuthority,
    ns: &str,
    sa: &str,
) -> Arc<mesh_common::tls::RotatingCert> {
    let b = ca
        .issue_workload(
            &mesh_common::identity::SpiffeId::new("cluster.local", ns, sa),
            Duration::from_secs(3600),
        )
        .unwrap();
    mesh_common::tls::RotatingCert::from_bundle(&b).unwrap()
}

/// An endpoint entry `test/<name>` of workload `workload` listening on
/// `addr`, serving the service's `service_port`.
pub fn endpoint_at(
    name: &str,
    workload: &str,
    addr: SocketAddr,
    service_port: u16,
    labels: Value,
) -> Value {
    json!({
        "workloadUid": format!("Kubernetes//Pod/test/{name}"),
        "name": name,
        "namespace": "test",
        "workloadName": workload,
        "address": addr.ip().to_string(),
        "ports": { service_port.to_string(): addr.port() },
        "labels": labels,
    })
}

/// A WaypointConfig with one service whose endpoints are `endpoints`.
pub fn config(endpoints: Vec<Value>, extra_service: Value) -> Value {
    let mut svc = json!({
        "hostname": SVC,
        "name": "echo",
        "namespace": "test",
        "vips": ["10.96.0.10"],
        "ports": [{ "port": SVC_PORT, "targetPort": 0, "name": "http" }],
        "endpoints": endpoints,
    });
    if let (Some(s), Some(extra)) = (svc.as_object_mut(), extra_service.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({
        "name": "waypoint",
        "namespace": "test",
        "identity": "spiffe://cluster.local/ns/test/sa/waypoint",
        "services": [svc],
        "filters": [],
        "telemetry": { "accessLog": { "enabled": false }, "tracing": { "samplingPercentage": 0.0 } },
    })
}

/// The `test-host-policy` guest component, built from `filters/testdata`.
pub fn policy_module() -> PathBuf {
    guest("test-host-policy")
}

fn repo_root() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

/// A guest component from the guest build cache, built on demand.
pub fn guest(name: &str) -> PathBuf {
    let cache = std::env::var("MESH_GUEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/ambient-mesh/guests")
        });
    let out = cache.join("out").join(format!("{name}.wasm"));
    if !out.exists() {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = LOCK.lock().unwrap();
        if !out.exists() {
            let st = std::process::Command::new(repo_root().join("scripts/build-guests.sh"))
                .arg(name)
                .status()
                .expect("run scripts/build-guests.sh");
            assert!(st.success(), "scripts/build-guests.sh {name} failed");
        }
    }
    out
}

/// A filter entry using the policy guest with `config`.
pub fn policy_filter(config: Value) -> Value {
    json!({
        "name": "policy",
        "module": { "sha256": "", "url": policy_module().display().to_string() },
        "config": config,
        "capabilities": [],
    })
}

/// The first-party `retry` guest with `config`, as the operator sends it.
pub fn retry_filter(config: Value) -> Value {
    json!({
        "name": "retry",
        "module": { "sha256": "", "url": guest("retry").display().to_string() },
        "config": config,
        "capabilities": ["random"],
    })
}

/// The first-party `routing` filter with `config` (a routing filter
/// configuration), as the operator grants it.
pub fn routing_filter(config: Value) -> Value {
    json!({
        "name": "routing",
        "module": { "sha256": "", "url": guest("routing").display().to_string() },
        "config": config,
        "capabilities": ["random"],
    })
}

/// A waypoint running in this process on ephemeral ports, configured from
/// a file it watches.
pub struct TestWaypoint {
    /// The waypoint.
    pub w: Option<Waypoint>,
    /// Its config file.
    pub path: PathBuf,
    _dir: tempfile::TempDir,
    /// Access log file.
    pub access_log: PathBuf,
}

impl TestWaypoint {
    /// Starts with `cfg` and waits until it is applied.
    pub async fn start(cfg: &Value) -> TestWaypoint {
        Self::start_with(cfg, |_| {}).await
    }

    /// Starts with option tweaks.
    pub async fn start_with(cfg: &Value, tweak: impl FnOnce(&mut Options)) -> TestWaypoint {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("waypoint.json");
        std::fs::write(&path, serde_json::to_vec_pretty(cfg).unwrap()).unwrap();
        let access_log = dir.path().join("access.log");
        let mut opts = Options::local();
        opts.access_log = AccessLogTarget::File(access_log.clone());
        opts.drain_timeout = Duration::from_secs(3);
        tweak(&mut opts);
        let w = Waypoint::start(opts, Box::new(FileSource::new(&path)))
            .await
            .unwrap();
        w.wait_ready(Duration::from_secs(60)).await.unwrap();
        TestWaypoint {
            w: Some(w),
            path,
            _dir: dir,
            access_log,
        }
    }

    /// Drains and stops the waypoint.
    pub async fn shutdown(&mut self) {
        if let Some(w) = self.w.take() {
            w.shutdown().await;
        }
    }

    /// The waypoint.
    pub fn w(&self) -> &Waypoint {
        self.w.as_ref().unwrap()
    }

    /// Plain listener address.
    pub fn http(&self) -> SocketAddr {
        self.w().bound().http.unwrap()
    }

    /// URL on the plain listener for `path` (authority = the service).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http(), path)
    }

    /// Rewrites the config file and waits until `version` changes.
    pub async fn reconfigure(&self, cfg: &Value) {
        let before = self.w().applier().status().version.clone();
        std::fs::write(&self.path, serde_json::to_vec_pretty(cfg).unwrap()).unwrap();
        for _ in 0..200 {
            let s = self.w().applier().status();
            if s.version != before || s.last_error.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("config was not reloaded");
    }

    /// The Prometheus page.
    pub async fn metrics(&self) -> String {
        let url = format!(
            "http://{}/stats/prometheus",
            self.w().bound().metrics.unwrap()
        );
        get(&url, &[]).await.1
    }
}

/// A hyper client for plain HTTP/1.1.
pub fn client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// GET with headers; returns (status, body, headers). Host is the service.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, String, http::HeaderMap) {
    let mut b = Request::get(url).header("host", format!("{SVC}:{SVC_PORT}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client()
        .request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        parts.status,
        String::from_utf8_lossy(&body).into_owned(),
        parts.headers,
    )
}

/// The value of a sample line in Prometheus text whose labels include
/// all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .reduce(|a, b| a + b)
}

/// Runs a command, returning stdout; panics with stderr on failure.
pub async fn run(cmd: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(cmd)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e} (run scripts/setup.sh)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `curl` returning (status, headers+body text).
pub async fn curl(args: &[&str]) -> String {
    run("curl", &[&["-sS", "--max-time", "20"], args].concat()).await
}

/// The status code curl gets for a GET of `url` with `Host: host`.
pub async fn curl_status(host: &str, url: &str) -> String {
    curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("Host: {host}"),
        url,
    ])
    .await
}

/// Waits (up to 10 s) until `cond` holds.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
