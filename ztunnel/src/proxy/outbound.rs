//! Outbound: connections the workload opens, captured on 15001.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use mesh_common::hbone::{HboneError, copy_bidirectional};
use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::{WorkloadProxy, connect};
use crate::metrics::{ConnInfo, FLAG_CONNECT_FAILURE, FLAG_DENIED, FLAG_NONE, Reporter};
use crate::route::{Route, route};

/// The destination a redirected connection was addressed to
/// (`SO_ORIGINAL_DST`).
pub fn original_dst(s: &TcpStream) -> std::io::Result<SocketAddr> {
    let local = s.local_addr()?;
    if local.is_ipv4() {
        let a = getsockopt(&s.as_fd(), sockopt::OriginalDst)?;
        let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
        Ok(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
    } else {
        let a = getsockopt(&s.as_fd(), sockopt::Ip6tOriginalDst)?;
        let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
        Ok(SocketAddr::new(IpAddr::V6(ip), u16::from_be(a.sin6_port)))
    }
}

impl WorkloadProxy {
    pub(super) async fn accept_outbound(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "outbound accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = self.stop.cancelled() => return,
            };
            let _ = tcp.set_nodelay(true);
            let orig = match original_dst(&tcp) {
                Ok(o) => o,
                Err(e) => {
                    debug!(%peer, error = %e, "outbound connection without original destination; closing");
                    continue;
                }
            };
            // A connection addressed to the listener itself was not
            // redirected: refuse rather than loop.
            if orig.port() == self.addrs.outbound.port()
                && tcp.local_addr().is_ok_and(|l| l == orig)
            {
                debug!(%peer, "direct connection to the outbound port; closing");
                continue;
            }
            let p = self.clone();
            tokio::spawn(async move { p.proxy_outbound(tcp, orig).await });
        }
    }

    /// Proxies one outbound connection addressed to `orig_dst` (public so
    /// tests and shared mode can feed connections without a redirect).
    pub async fn proxy_outbound(self: Arc<Self>, tcp: TcpStream, orig_dst: SocketAddr) {
        let inputs = &self.inputs;
        let (src, route) = {
            let st = inputs.registry.read();
            let src = st.workload(&self.uid).cloned();
            let r = route(&st, orig_dst, inputs.cfg.hbone_port, |n| {
                rand::random_range(0..n)
            });
            (src, r)
        };
        let src_principal = self.identity.to_string();
        let client_ip = tcp.peer_addr().map(|a| a.ip()).ok();
        match route {
            Route::Refuse(why) => debug!(%orig_dst, "refusing outbound connection: {why}"),
            Route::Direct { addr, dst, service } => {
                let info = ConnInfo {
                    reporter: Reporter::Source,
                    src: src.as_deref(),
                    // Plaintext: no identity is presented, so none is
                    // reported (Istio's ztunnel: `unknown`).
                    src_principal: None,
                    dst: dst.as_deref(),
                    dst_principal: None,
                    service: service.as_deref(),
                    mtls: false,
                };
                inputs.metrics.opened(&info);
                let upstream =
                    match connect(self.sockets.as_ref(), addr, inputs.cfg.connect_timeout).await {
                        Ok(u) => u,
                        Err(e) => {
                            debug!(%addr, error = %e, "passthrough connect failed");
                            inputs.metrics.closed(&info, FLAG_CONNECT_FAILURE, 0, 0);
                            return;
                        }
                    };
                let mut tcp = tcp;
                let mut upstream = upstream;
                let (rx, tx) = tokio::io::copy_bidirectional_with_sizes(
                    &mut tcp,
                    &mut upstream,
                    64 * 1024,
                    64 * 1024,
                )
                .await
                .unwrap_or_else(|e| {
                    debug!(error = %e, "proxied connection ended with an error");
                    (0, 0)
                });
                inputs.metrics.closed(&info, FLAG_NONE, rx, tx);
            }
            Route::Hbone {
                hbone,
                authority,
                identity,
                dst,
                service,
                waypoint,
            } => {
                let dst_principal = identity.to_string();
                let info = ConnInfo {
                    reporter: Reporter::Source,
                    src: src.as_deref(),
                    src_principal: Some(&src_principal),
                    dst: dst.as_deref(),
                    dst_principal: Some(&dst_principal),
                    service: service.as_deref(),
                    mtls: true,
                };
                inputs.metrics.opened(&info);
                let mut headers = HeaderMap::new();
                if let Some(ip) = client_ip
                    && let Ok(v) = HeaderValue::from_str(&forwarded_for(ip))
                {
                    headers.insert(http::header::FORWARDED, v);
                }
                let stream = self
                    .client
                    .connect(
                        &self.cert,
                        hbone,
                        Some(&identity),
                        &authority.to_string(),
                        headers,
                    )
                    .await;
                match stream {
                    Ok(stream) => {
                        let (rx, tx) = copy_bidirectional(tcp, stream).await.unwrap_or_else(|e| {
                            debug!(error = %e, "proxied connection ended with an error");
                            (0, 0)
                        });
                        inputs.metrics.closed(&info, FLAG_NONE, rx, tx);
                    }
                    Err(e) => {
                        debug!(%hbone, %authority, ?waypoint, error = %e, "HBONE connect failed");
                        let flag = match e {
                            HboneError::Status(s) if s == http::StatusCode::UNAUTHORIZED => {
                                FLAG_DENIED
                            }
                            _ => FLAG_CONNECT_FAILURE,
                        };
                        inputs.metrics.closed(&info, flag, 0, 0);
                    }
                }
            }
        }
    }
}

fn forwarded_for(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    }
}
