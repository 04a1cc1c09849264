//! Inbound: HBONE (15008) and plaintext (15006, PERMISSIVE) connections to
//! the workload, authorized at this (destination) ztunnel.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use mesh_common::hbone::{InboundRequest, copy_bidirectional};
use mesh_common::model::{Connection, Service, Workload};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::outbound::original_dst;
use super::{WorkloadProxy, connect};
use crate::authz;
use crate::metrics::{ConnInfo, FLAG_CONNECT_FAILURE, FLAG_DENIED, FLAG_NONE, Reporter};

/// What the destination side knows about a connection before proxying it.
struct Admitted {
    src: Option<Arc<Workload>>,
    dst: Arc<Workload>,
    service: Option<Arc<Service>>,
    allowed: bool,
}

impl WorkloadProxy {
    fn admit(&self, conn: &Connection) -> Option<Admitted> {
        let st = self.inputs.registry.read();
        let dst = st.workload(&self.uid)?.clone();
        // The source workload by address, trusted only if it is the identity
        // that authenticated (plaintext peers are identified by IP alone).
        let src = st
            .workload_by_ip(conn.src.ip())
            .filter(|w| {
                conn.src_identity
                    .as_ref()
                    .is_none_or(|id| *id == w.identity())
            })
            .cloned();
        let service = st
            .services_of(&dst.uid)
            .find(|s| {
                s.endpoints
                    .iter()
                    .filter(|e| e.workload_uid == dst.uid)
                    .any(|e| {
                        s.ports
                            .iter()
                            .any(|p| s.target_port(e, p.port) == Some(conn.dst.port()))
                    })
            })
            .cloned();
        let decision = authz::check(&st, &dst, conn);
        if !decision.is_allowed() {
            debug!(src = %conn.src, dst = %conn.dst, peer = ?conn.src_identity, ?decision, "connection denied by policy");
        }
        Some(Admitted {
            src,
            dst,
            service,
            allowed: decision.is_allowed(),
        })
    }

    pub(super) async fn serve_hbone(self: Arc<Self>, req: InboundRequest) {
        let target = match req.target() {
            Ok(t) => t,
            Err(_) => return req.reject(StatusCode::BAD_REQUEST),
        };
        let conn = Connection {
            src: req.remote_addr(),
            dst: target,
            src_identity: req.peer().map(|p| p.to_string()),
        };
        let Some(adm) = self.admit(&conn) else {
            return req.reject(StatusCode::SERVICE_UNAVAILABLE);
        };
        // The tunnel must end at this workload.
        if !adm.dst.addresses.contains(&target.ip()) {
            debug!(%target, uid = %self.uid, "HBONE target is not this workload");
            return req.reject(StatusCode::BAD_REQUEST);
        }
        let own = self.identity.to_string();
        let info = ConnInfo {
            reporter: Reporter::Destination,
            src: adm.src.as_deref(),
            src_principal: conn.src_identity.as_deref(),
            dst: Some(&adm.dst),
            dst_principal: Some(&own),
            service: adm.service.as_deref(),
            mtls: true,
        };
        let metrics = &self.inputs.metrics;
        metrics.opened(&info);
        if !adm.allowed {
            metrics.closed(&info, FLAG_DENIED, 0, 0);
            return req.reject(StatusCode::UNAUTHORIZED);
        }
        let guard = self.inputs.tracker.track(&self.uid, conn.clone());
        let upstream = match connect(
            self.sockets.as_ref(),
            target,
            self.inputs.cfg.connect_timeout,
        )
        .await
        {
            Ok(u) => u,
            Err(e) => {
                debug!(%target, error = %e, "inbound upstream connect failed");
                metrics.closed(&info, FLAG_CONNECT_FAILURE, 0, 0);
                return req.reject(StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        let stream = match req.accept() {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "HBONE stream vanished before accept");
                metrics.closed(&info, FLAG_CONNECT_FAILURE, 0, 0);
                return;
            }
        };
        let (flag, rx, tx) = tokio::select! {
            r = copy_bidirectional(upstream, stream) => {
                let (tx, rx) = r.unwrap_or_else(|e| {
                        debug!(error = %e, "proxied connection ended with an error");
                        (0, 0)
                    });
                (FLAG_NONE, rx, tx)
            }
            _ = guard.revoked.cancelled() => (FLAG_DENIED, 0, 0),
        };
        metrics.closed(&info, flag, rx, tx);
    }

    pub(super) async fn accept_plaintext(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "plaintext inbound accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = self.stop.cancelled() => return,
            };
            let _ = tcp.set_nodelay(true);
            let p = self.clone();
            tokio::spawn(async move { p.proxy_plaintext(tcp, peer).await });
        }
    }

    async fn proxy_plaintext(self: Arc<Self>, mut tcp: TcpStream, peer: SocketAddr) {
        let Ok(orig) = original_dst(&tcp) else {
            debug!(%peer, "plaintext inbound without original destination; closing");
            return;
        };
        let conn = Connection {
            src: peer,
            dst: orig,
            src_identity: None,
        };
        let Some(adm) = self.admit(&conn) else { return };
        if !adm.dst.addresses.contains(&orig.ip())
            || orig.port() == self.addrs.inbound_plaintext.port()
        {
            debug!(%orig, "plaintext inbound not addressed to this workload; closing");
            return;
        }
        let own = self.identity.to_string();
        let info = ConnInfo {
            reporter: Reporter::Destination,
            src: adm.src.as_deref(),
            src_principal: None,
            dst: Some(&adm.dst),
            dst_principal: Some(&own),
            service: adm.service.as_deref(),
            mtls: false,
        };
        let metrics = &self.inputs.metrics;
        metrics.opened(&info);
        if !adm.allowed {
            // STRICT (or an explicit policy) refuses plaintext: close it.
            metrics.closed(&info, FLAG_DENIED, 0, 0);
            return;
        }
        let guard = self.inputs.tracker.track(&self.uid, conn.clone());
        let mut upstream =
            match connect(self.sockets.as_ref(), orig, self.inputs.cfg.connect_timeout).await {
                Ok(u) => u,
                Err(e) => {
                    debug!(%orig, error = %e, "plaintext upstream connect failed");
                    metrics.closed(&info, FLAG_CONNECT_FAILURE, 0, 0);
                    return;
                }
            };
        let (flag, rx, tx) = tokio::select! {
            r = tokio::io::copy_bidirectional_with_sizes(&mut tcp, &mut upstream, 64 * 1024, 64 * 1024) => {
                let (rx, tx) = r.unwrap_or_else(|e| {
                        debug!(error = %e, "proxied connection ended with an error");
                        (0, 0)
                    });
                (FLAG_NONE, rx, tx)
            }
            _ = guard.revoked.cancelled() => (FLAG_DENIED, 0, 0),
        };
        metrics.closed(&info, flag, rx, tx);
    }
}
