//! Upstream connections: dialing endpoints (plain TCP, or HBONE through the
//! destination's node proxy on `pod ip:15008` with CONNECT authority
//! `pod ip:port`), HTTP/1.1 and HTTP/2 connection pools per host, and
//! replayable request bodies.

pub mod body;
mod io;
mod pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_common::hbone::{HBONE_PORT, HboneClient};
use mesh_common::identity::SpiffeId;
use mesh_common::tls::RotatingCert;

pub use body::{ProxyBody, Replay, ReplayBody};
pub use io::UpstreamIo;
pub use pool::{HostPool, send};

use crate::cluster::Host;
use crate::respond::ProxyError;

/// HTTP version spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 (prior knowledge; gRPC).
    Http2,
}

impl Protocol {
    /// The protocol matching a downstream request's version.
    pub fn of(v: http::Version) -> Self {
        if v == http::Version::HTTP_2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        }
    }
}

/// What the waypoint needs to originate HBONE.
#[derive(Clone)]
pub struct HboneUpstream {
    /// Pooled HBONE client.
    pub client: Arc<HboneClient>,
    /// The waypoint's own certificate.
    pub cert: Arc<RotatingCert>,
}

impl std::fmt::Debug for HboneUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HboneUpstream")
            .field("identity", &self.cert.identity())
            .finish_non_exhaustive()
    }
}

/// Dials upstream endpoints.
#[derive(Debug, Clone, Default)]
pub struct Connector {
    hbone: Option<HboneUpstream>,
}

impl Connector {
    /// A connector; without `hbone`, mesh endpoints cannot be reached.
    pub fn new(hbone: Option<HboneUpstream>) -> Self {
        Connector { hbone }
    }

    /// Opens the transport to `host` within `timeout`.
    pub async fn dial(&self, host: &Host, timeout: Duration) -> Result<UpstreamIo, ProxyError> {
        let fail = |reason: String| ProxyError::ConnectFailure {
            endpoint: host.addr.to_string(),
            reason,
        };
        if host.hbone {
            let Some(h) = &self.hbone else {
                return Err(fail(
                    "the endpoint is in the mesh (HBONE) but this waypoint runs without a workload certificate; start it with --cert-chain/--key/--roots".into(),
                ));
            };
            let hbone_addr = SocketAddr::new(host.addr.ip(), HBONE_PORT);
            let expected = match host.endpoint.identity.as_str() {
                "" => None,
                id => Some(
                    SpiffeId::parse(id)
                        .map_err(|e| fail(format!("endpoint identity {id:?}: {e}")))?,
                ),
            };
            let authority = host.addr.to_string();
            let stream = tokio::time::timeout(
                timeout,
                h.client.connect(
                    &h.cert,
                    hbone_addr,
                    expected.as_ref(),
                    &authority,
                    http::HeaderMap::new(),
                ),
            )
            .await
            .map_err(|_| {
                fail(format!(
                    "HBONE connect via {hbone_addr} timed out after {timeout:?}"
                ))
            })?
            .map_err(|e| fail(e.to_string()))?;
            Ok(UpstreamIo::Hbone(Box::new(stream)))
        } else {
            let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(host.addr))
                .await
                .map_err(|_| fail(format!("connect timed out after {timeout:?}")))?
                .map_err(|e| fail(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            Ok(UpstreamIo::Tcp(tcp))
        }
    }
}
