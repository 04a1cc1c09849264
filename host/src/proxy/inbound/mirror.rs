//! Request mirroring (VirtualService `mirror` / `mirrors`, Envoy's request
//! mirror policies): the routing filter picks the mirrors of a request
//! (metadata `mesh.mirror`, their percentages already drawn) and the host
//! sends each one a copy, fire and forget. The copy keeps the request's
//! authority: Istio stopped appending `-shadow` to it in 1.28
//! (`DISABLE_SHADOW_HOST_SUFFIX`, on by default; only the 1.25–1.27
//! compatibility profiles turn it off). Its response is dropped
//! and never reaches the client, and its failures do not affect the
//! request. A streamed body is copied once the downstream body has ended,
//! if it fitted the replay buffer; a larger one is not mirrored.

use std::sync::Arc;
use std::time::Duration;

use super::ReqBody;
use crate::cluster::Cluster;
use crate::proxy::headers;
use crate::proxy::{Proxy, Snapshot};
use crate::upstream::{self, Protocol, ProxyBody};

/// How long a mirrored request may take when the route has no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The clusters named by `mesh.mirror` (`<service>|<subset>|<port>`, comma
/// separated). Unknown services or subsets are skipped.
pub(super) fn targets(snap: &Snapshot, meta: &str, dest_port: u16) -> Vec<Arc<Cluster>> {
    meta.split(',')
        .filter_map(|entry| {
            let mut f = entry.split('|');
            let service = f.next().filter(|s| !s.is_empty())?;
            let subset = f.next().filter(|s| !s.is_empty());
            let port = f.next().and_then(|p| p.parse::<u16>().ok());
            match snap.service_cluster(service, subset, port, dest_port) {
                Ok((_, _, cluster)) => Some(cluster),
                Err(e) => {
                    tracing::debug!(mirror = entry, error = %e, "mirror target not found; not mirrored");
                    None
                }
            }
        })
        .collect()
}

/// Sends a copy of the request (as forwarded: after the filters' changes)
/// to each cluster, in background tasks.
pub(super) fn send(
    proxy: &Arc<Proxy>,
    clusters: Vec<Arc<Cluster>>,
    parts: &http::request::Parts,
    authority: &str,
    body: &ReqBody,
    timeout: Option<Duration>,
) {
    for cluster in clusters {
        let proto = cluster.protocol.unwrap_or(Protocol::of(parts.version));
        let req = match headers::upstream_request(parts, authority, proto, ProxyBody::Empty, None) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "mirror request not built");
                continue;
            }
        };
        let body = match body {
            ReqBody::Empty => Pending::Ready(ProxyBody::Empty),
            ReqBody::Full(b) => Pending::Ready(ProxyBody::Full((!b.is_empty()).then(|| b.clone()))),
            ReqBody::Replay(r) => Pending::Streamed(r.clone()),
        };
        let proxy = proxy.clone();
        let limit = timeout.unwrap_or(DEFAULT_TIMEOUT);
        tokio::spawn(async move {
            let work = async {
                let body = match body {
                    Pending::Ready(b) => b,
                    Pending::Streamed(r) => {
                        r.finished().await;
                        match r.buffered() {
                            Some(b) => ProxyBody::Full((!b.is_empty()).then_some(b)),
                            None => {
                                tracing::debug!(cluster = %cluster.name, "request body too large to mirror");
                                return;
                            }
                        }
                    }
                };
                let req = req.map(|_| body);
                let Ok(host) = cluster.choose(None, &[]) else {
                    return;
                };
                let Ok(_permit) = cluster.breakers.request() else {
                    return;
                };
                let _active = host.start_request();
                match upstream::send(&host, &cluster, &proxy.connector, proto, req, None).await {
                    Ok(resp) => {
                        // Read the answer so the connection can be reused.
                        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                    }
                    Err(e) => {
                        tracing::debug!(cluster = %cluster.name, error = %e, "mirrored request failed");
                    }
                }
            };
            if tokio::time::timeout(limit, work).await.is_err() {
                tracing::debug!("mirrored request timed out");
            }
        });
    }
}

enum Pending {
    Ready(ProxyBody),
    Streamed(crate::upstream::Replay),
}
