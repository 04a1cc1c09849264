//! The operator as configuration source and CA.
//!
//! * [`XdsSource`]: subscribes to workloads, services and authorizations on
//!   the operator's push stream ([`mesh_common::xds`]) and applies each
//!   accepted delta to the registry. A delta with a workload whose identity
//!   is not a valid SPIFFE ID is refused (NACK) and the previous state kept.
//! * [`OperatorCa`]: `POST /v1/csr` with a JSON
//!   [`mesh_common::xds::CsrRequest`] (PEM CSR, requested lifetime, this
//!   node's name) and the node's bootstrap token as `authorization: Bearer`;
//!   the answer is a [`mesh_common::ca::IssuedCert`] as JSON. Only the CSR
//!   leaves the node; the private key stays here.

use std::time::Duration;

use mesh_common::identity::SpiffeId;
use mesh_common::model::{ProxyKind, ResourceType};
use mesh_common::xds::CsrRequest;
use mesh_common::xds::client::{Update, XdsClient, XdsClientConfig, request_certificate};
use mesh_common::xds::transport::Endpoint;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::certs::{CaClient, CaFuture, CertError};
use crate::registry::{Change, Registry};
use crate::source::{ConfigSource, SourceError, SourceFuture};

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
    fn run(
        self: Box<Self>,
        registry: std::sync::Arc<Registry>,
        shutdown: CancellationToken,
    ) -> SourceFuture {
        Box::pin(async move {
            let reg = registry.clone();
            let handler = move |u: &Update<'_>| -> Result<(), String> {
                if let Some(change) = change_for(u)? {
                    reg.apply(change);
                }
                Ok(())
            };
            let cfg =
                XdsClientConfig::new(self.endpoint.clone(), self.node.clone(), ProxyKind::Ztunnel);
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
    /// Node name sent with each request.
    pub node: String,
    /// Bootstrap token (`authorization: Bearer`), if any.
    pub token: Option<String>,
}

impl CaClient for OperatorCa {
    fn sign(&self, id: &SpiffeId, csr_pem: String, ttl: Duration) -> CaFuture {
        let this = self.clone();
        let id = id.clone();
        Box::pin(async move {
            let request = CsrRequest {
                csr: csr_pem,
                ttl_seconds: Some(ttl.as_secs()),
                node: Some(this.node.clone()),
            };
            request_certificate(&this.endpoint, this.token.as_deref(), &request)
                .await
                .map_err(|e| CertError::Remote {
                    id: id.to_string(),
                    msg: e.to_string(),
                })
        })
    }
}
