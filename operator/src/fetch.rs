//! A small HTTP(S) GET client for JWKS and module downloads (rustls, HTTP/1.1,
//! redirects followed, size-capped).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;

/// Largest body accepted.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;

/// Fetch errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// URL not usable.
    #[error("invalid URL {0:?}")]
    Url(String),
    /// Network / TLS / HTTP failure.
    #[error("GET {url}: {message}")]
    Io {
        /// URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// Non-2xx answer.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// URL.
        url: String,
        /// Status.
        status: u16,
    },
    /// Timed out.
    #[error("GET {0}: timed out")]
    Timeout(String),
}

/// TLS roots for https fetches: the system's web roots plus extra PEM roots.
pub fn client_config(extra_roots_pem: Option<&str>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_roots_pem
        && let Ok(certs) = mesh_common::ca::certs_from_pem(pem)
    {
        for c in certs {
            let _ = roots.add(c);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    Arc::new(cfg)
}

async fn get_once(
    url: &url::Url,
    tls: &Arc<rustls::ClientConfig>,
    accept: Option<&str>,
) -> Result<hyper::Response<hyper::body::Incoming>, FetchError> {
    let s = url.to_string();
    let io = |m: String| FetchError::Io {
        url: s.clone(),
        message: m,
    };
    let host = url
        .host_str()
        .ok_or_else(|| FetchError::Url(s.clone()))?
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| FetchError::Url(s.clone()))?;
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| io(e.to_string()))?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut req = hyper::Request::get(path)
        .header(http::header::HOST, url.host_str().unwrap_or_default())
        .header(http::header::USER_AGENT, "mesh-operator");
    if let Some(a) = accept {
        req = req.header(http::header::ACCEPT, a);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| io(e.to_string()))?;
    match url.scheme() {
        "https" => {
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|_| FetchError::Url(s.clone()))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| io(e.to_string()))?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| io(e.to_string()))?;
            tokio::spawn(conn);
            send.send_request(req).await.map_err(|e| io(e.to_string()))
        }
        "http" => {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| io(e.to_string()))?;
            tokio::spawn(conn);
            send.send_request(req).await.map_err(|e| io(e.to_string()))
        }
        _ => Err(FetchError::Url(s)),
    }
}

/// GET `url` (http or https), following redirects, within `timeout`.
pub async fn get(
    url: &str,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
    accept: Option<&str>,
) -> Result<Bytes, FetchError> {
    let fut = async {
        let mut u = url::Url::parse(url).map_err(|_| FetchError::Url(url.to_string()))?;
        for _ in 0..MAX_REDIRECTS {
            let resp = get_once(&u, tls, accept).await?;
            let status = resp.status();
            if status.is_redirection() {
                let loc = resp
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| FetchError::Status {
                        url: u.to_string(),
                        status: status.as_u16(),
                    })?;
                u = u.join(loc).map_err(|_| FetchError::Url(loc.to_string()))?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    url: u.to_string(),
                    status: status.as_u16(),
                });
            }
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| FetchError::Io {
                    url: u.to_string(),
                    message: e.to_string(),
                })?;
            return Ok(body.to_bytes());
        }
        Err(FetchError::Io {
            url: url.to_string(),
            message: "too many redirects".into(),
        })
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| FetchError::Timeout(url.to_string()))?
}
