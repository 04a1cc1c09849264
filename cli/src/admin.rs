//! A small HTTP/1.1 client for the proxies' admin, metrics and debug
//! endpoints, which listen inside network namespaces: the socket is created
//! on a thread that entered the namespace (`setns`), then driven by tokio.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

/// Request timeout (connect + response).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Admin client errors.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The netns could not be entered.
    #[error(
        "cannot enter network namespace {ns}: {message} (is the local mesh up, and are you root?)"
    )]
    Netns {
        /// Namespace.
        ns: String,
        /// Cause.
        message: String,
    },
    /// Connection refused or timed out.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// `addr` (in `netns`).
        target: String,
        /// Cause.
        source: std::io::Error,
    },
    /// HTTP failure.
    #[error("{target}: {message}")]
    Http {
        /// Target.
        target: String,
        /// What went wrong.
        message: String,
    },
}

/// An HTTP endpoint, possibly inside a network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Network namespace name (`/var/run/netns/<name>`), `None` = ours.
    pub netns: Option<String>,
    /// Address.
    pub addr: SocketAddr,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.netns {
            Some(ns) => write!(f, "{} (netns {ns})", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

impl Target {
    /// `addr` inside `netns`.
    pub fn new(netns: Option<String>, addr: SocketAddr) -> Self {
        Target { netns, addr }
    }
}

/// A TCP connection to `addr` made inside `netns` (blocking; run it on a
/// blocking thread).
pub fn connect_std(
    netns: Option<&str>,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<std::net::TcpStream, AdminError> {
    let target = addr.to_string();
    let connect = move || {
        std::net::TcpStream::connect_timeout(&addr, timeout)
            .map_err(|source| AdminError::Connect { target, source })
    };
    let Some(ns) = netns else { return connect() };
    let path = format!("/var/run/netns/{ns}");
    let ns = ns.to_string();
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(&path).map_err(|e| AdminError::Netns {
                ns: ns.clone(),
                message: e.to_string(),
            })?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                AdminError::Netns {
                    ns: ns.clone(),
                    message: e.to_string(),
                }
            })?;
            connect()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(AdminError::Netns {
                ns: ns.clone(),
                message: "thread panicked".into(),
            })
        })
    })
}

/// Send one request; returns status and body.
pub async fn request(
    t: &Target,
    method: http::Method,
    path_and_query: &str,
) -> Result<(u16, String), AdminError> {
    let target = t.to_string();
    let err = |m: String| AdminError::Http {
        target: target.clone(),
        message: m,
    };
    let (netns, addr) = (t.netns.clone(), t.addr);
    let std_stream =
        tokio::task::spawn_blocking(move || connect_std(netns.as_deref(), addr, TIMEOUT))
            .await
            .map_err(|e| err(e.to_string()))??;
    std_stream
        .set_nonblocking(true)
        .map_err(|e| err(e.to_string()))?;
    let tcp = tokio::net::TcpStream::from_std(std_stream).map_err(|e| err(e.to_string()))?;
    let fut = async {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
                .await
                .map_err(|e| err(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::HOST, addr.to_string())
            .body(Full::new(Bytes::new()))
            .map_err(|e| err(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err(e.to_string()))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .map_err(|_| err(format!("no answer within {TIMEOUT:?}")))?
}

/// `GET`, requiring a 2xx answer.
pub async fn get(t: &Target, path: &str) -> Result<String, AdminError> {
    let (status, body) = request(t, http::Method::GET, path).await?;
    if !(200..300).contains(&status) {
        return Err(AdminError::Http {
            target: t.to_string(),
            message: format!("GET {path}: HTTP {status}: {}", body.trim()),
        });
    }
    Ok(body)
}

/// `GET` and parse JSON.
pub async fn get_json(t: &Target, path: &str) -> Result<serde_json::Value, AdminError> {
    let body = get(t, path).await?;
    serde_json::from_str(&body).map_err(|e| AdminError::Http {
        target: t.to_string(),
        message: format!("GET {path}: invalid JSON: {e}"),
    })
}
