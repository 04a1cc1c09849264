//! The sample app every pod of the local mesh runs (`meshctl app`): an
//! HTTP/1.1 + h2c server that answers every request with JSON describing
//! itself and the request, so routing, header filters and identities are
//! visible from `curl`.
//!
//! | Path | Answer |
//! |---|---|
//! | `…/status/<code>` | that status code |
//! | `…/delay/<ms>` | 200 after `ms` milliseconds |
//! | anything else | 200 `{"pod", "namespace", "app", "version", "method", "path", "headers", "peer"}` |

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Who this app is.
#[derive(Debug, Clone, Default)]
pub struct AppInfo {
    /// Pod name.
    pub pod: String,
    /// Namespace.
    pub namespace: String,
    /// `app` label.
    pub app: String,
    /// `version` label.
    pub version: String,
}

fn reply(status: StatusCode, info: &AppInfo, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for (k, v) in [("x-pod", &info.pod), ("x-version", &info.version)] {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    r
}

/// Answer one request.
pub async fn handle(
    info: &AppInfo,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    // Drain the request body (POSTs) before answering.
    let _ = req.into_body().collect().await;
    let mut status = StatusCode::OK;
    // `…/status/<code>` and `…/delay/<ms>` anywhere in the path (so they
    // also work under a policy that only admits /api/*).
    let tail = |key: &str| {
        path.rsplit_once(key)
            .and_then(|(_, v)| v.split('/').next()?.parse::<u64>().ok())
    };
    if let Some(code) = tail("/status/") {
        status = u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    } else if let Some(ms) = tail("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    let body = serde_json::json!({
        "pod": info.pod, "namespace": info.namespace, "app": info.app, "version": info.version,
        "method": method, "path": path, "headers": headers, "peer": peer.to_string(),
    });
    reply(status, info, format!("{body}\n"))
}

/// Serve on every address until killed.
pub async fn serve(listen: Vec<SocketAddr>, info: AppInfo) -> anyhow::Result<()> {
    let info = Arc::new(info);
    let mut tasks = Vec::new();
    for addr in listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        eprintln!("app {}/{} listening on {addr}", info.namespace, info.pod);
        let info = info.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = l.accept().await else { continue };
                let info = info.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let info = info.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&info, peer, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        }));
    }
    futures::future::join_all(tasks).await;
    Ok(())
}
