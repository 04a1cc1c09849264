//! The operator as configuration source and CA.
//!
//! * [`XdsSource`]: subscribes to workloads, services and authorizations on
//!   the operator's push stream ([`mesh_common::xds`]) and applies each
//!   accepted delta to the registry. A delta with a workload whose identity
//!   is not a valid SPIFFE ID is refused (NACK) and the previous state kept.
//! * [`OperatorCa`]: `POST /v1/csr` with the PEM CSR as body, the node's
//!   bootstrap token as `authorization: Bearer`, the node name in
//!   `x-mesh-node`; the answer is an [`IssuedCert`] as JSON. Only the CSR
//!   leaves the node; the private key stays here.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use mesh_common::ca::IssuedCert;
use mesh_common::identity::SpiffeId;
use mesh_common::model::{ProxyKind, ResourceType};
use mesh_common::xds::CSR_PATH;
use mesh_common::xds::client::{Update, XdsClient, XdsClientConfig};
use mesh_common::xds::transport::{self, Endpoint};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::certs::{CaClient, CaFuture, CertError};
use crate::registry::{Change, Registry};
use crate::source::{ConfigSource, SourceError, SourceFuture};

/// Header carrying the node name on CSR requests.
pub const NODE_HEADER: &str = "x-mesh-node";

/// Configuration from the operator's push stream.
#[derive(Debug, Clone)]
pub struct XdsSource {
    /// Operator endpoint.
    pub endpoint: Endpoint,
    /// Node name.
    pub node: String,
}

/// Turns an accepted delta into a registry change (`None` for types
/// ztunnel does not use).
pub fn change_for(u: &Update<'_>) -> Result<Option<Change>, String> {
    let removals = u.removed.to_vec();
    Ok(Some(match u.type_ {
        ResourceType::Workload => {
            let upserts: Vec<_> = u
                .upserted
                .iter()
                .filter_map(|k| u.state.workloads.get(k))
                .map(|w| (**w).clone())
                .collect();
            for w in &upserts {
                SpiffeId::parse(&w.identity()).map_err(|e| format!("workload {}: {e}", w.uid))?;
            }
            Change::Workloads { upserts, removals }
        }
        ResourceType::Service => Change::Services {
            upserts: u
                .upserted
                .iter()
                .filter_map(|k| u.state.services.get(k))
                .map(|s| (**s).clone())
                .collect(),
            removals,
        },
        ResourceType::Authorization => Change::Authorizations {
            upserts: u
                .upserted
                .iter()
                .filter_map(|k| u.state.authorizations.get(k))
                .map(|p| (**p).clone())
                .collect(),
            removals,
        },
        ResourceType::WaypointConfig => return Ok(None),
    }))
}

impl ConfigSource for XdsSource {
    fn run(self: Box<Self>, registry: std::sync::Arc<Registry>, shutdown: CancellationToken) -> SourceFuture {
        Box::pin(async move {
            let reg = registry.clone();
            let handler = move |u: &Update<'_>| -> Result<(), String> {
                if let Some(change) = change_for(u)? {
                    reg.apply(change);
                }
                Ok(())
            };
            let cfg = XdsClientConfig::new(self.endpoint.clone(), self.node.clone(), ProxyKind::Ztunnel);
            let client = XdsClient::start(cfg, handler);
            let mut status = client.status();
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = status.wait_for(|s| s.synced) => {
                    if r.is_err() {
                        return Err(SourceError::Stream("push client stopped".into()));
                    }
                }
            }
            registry.mark_synced();
            info!(endpoint = ?self.endpoint, "synced with the operator");
            shutdown.cancelled().await;
            drop(client);
            Ok(())
        })
    }
}

/// The operator's CA.
#[derive(Debug, Clone)]
pub struct OperatorCa {
    /// Operator endpoint.
    pub endpoint: Endpoint,
    /// Node name sent in [`NODE_HEADER`].
    pub node: String,
    /// Bootstrap token (`authorization: Bearer`), if any.
    pub token: Option<String>,
}

impl CaClient for OperatorCa {
    fn sign(&self, id: &SpiffeId, csr_pem: String, ttl: Duration) -> CaFuture {
        let this = self.clone();
        let id = id.clone();
        Box::pin(async move {
            let remote = |msg: String| CertError::Remote {
                id: id.to_string(),
                msg,
            };
            let uri = this.endpoint.uri_for(CSR_PATH).map_err(|e| remote(e.to_string()))?;
            let mut req = Request::post(uri)
                .header(http::header::CONTENT_TYPE, "application/x-pem-file")
                .header(NODE_HEADER, &this.node)
                .header("x-mesh-cert-ttl-seconds", ttl.as_secs().to_string());
            if let Some(t) = &this.token {
                req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let req = req
                .body(Full::new(Bytes::from(csr_pem)).boxed())
                .map_err(|e| remote(e.to_string()))?;
            let mut conn = transport::connect(&this.endpoint).await.map_err(|e| remote(e.to_string()))?;
            let resp = conn.send_request(req).await.map_err(|e| remote(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| remote(e.to_string()))?
                .to_bytes();
            if status != StatusCode::OK {
                return Err(remote(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                )));
            }
            serde_json::from_slice::<IssuedCert>(&body)
                .map_err(|e| remote(format!("unexpected CA answer ({e}); expected an IssuedCert JSON")))
        })
    }
}
