//! WebSocket through the waypoint: HTTP/1.1 `Upgrade: websocket`, which
//! Istio enables on every HTTP route. The request runs the filter chain
//! like any other (authorization, JWT, routing pick the destination); it is
//! then sent on a dedicated upstream connection (an upgraded connection
//! cannot go back to a pool) with its `Connection: upgrade` and `Upgrade`
//! headers. A `101 Switching Protocols` answer is passed to the client and
//! both connections are spliced until either side closes; any other answer
//! is an ordinary response. Upgrades are not retried.

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::{Exchange, Target};
use crate::cluster::AttemptResult;
use crate::proxy::body::ResponseBody;
use crate::proxy::headers;
use crate::respond::ProxyError;
use crate::upstream::{Protocol, ProxyBody};

/// The `Upgrade` value when `parts` asks for a WebSocket upgrade the
/// waypoint relays (HTTP/1.1, `Connection: upgrade`, `Upgrade: websocket`).
pub(super) fn requested(parts: &http::request::Parts) -> Option<HeaderValue> {
    if parts.version != Version::HTTP_11 {
        return None;
    }
    let tokens = |v: &HeaderValue, want: &str| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
    };
    let connection = parts
        .headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| tokens(v, "upgrade"));
    let upgrade = parts.headers.get(UPGRADE)?;
    (connection && tokens(upgrade, "websocket")).then(|| upgrade.clone())
}

impl Exchange {
    /// Relays an upgrade request (after the request filters ran).
    pub(super) async fn upgrade(
        mut self,
        mut parts: http::request::Parts,
        target: Target,
        hash: Option<u64>,
        upgrade: HeaderValue,
    ) -> Response<ResponseBody> {
        let Some(downstream) = parts.extensions.remove::<OnUpgrade>() else {
            return self
                .error_boxed(ProxyError::BadRequest(
                    "upgrade requested on a connection that cannot upgrade".into(),
                ))
                .await;
        };
        self.rec.attempts = 1;
        let host = match self.pick(&target, hash, &[]) {
            Ok(h) => h,
            Err(e) => return self.error_boxed(e).await,
        };
        self.rec.upstream_address = Some(host.addr);
        self.rec.upstream = Some(host.endpoint.clone());
        let cluster = target.cluster.clone();
        let permit = match cluster.breakers.request() {
            Ok(p) => p,
            Err(e) => return self.error_boxed(e).await,
        };
        let active = host.start_request();
        let io = match self
            .proxy
            .connector
            .dial(&host, cluster.connect_timeout)
            .await
        {
            Ok(io) => io,
            Err(e) => {
                cluster.report(&host, AttemptResult::ConnectFailed);
                return self.error_boxed(e).await;
            }
        };
        let reset = |reason: String| ProxyError::Reset {
            endpoint: host.addr.to_string(),
            reason,
            refused: false,
        };
        let (mut send, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
            Ok(x) => x,
            Err(e) => return self.error_boxed(reset(e.to_string())).await,
        };
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended with an error");
            }
        });
        let authority = headers::authority(&parts);
        let traceparent = self.rec.span.map(|s| s.traceparent());
        let mut req = match headers::upstream_request(
            &parts,
            &authority,
            Protocol::Http1,
            ProxyBody::Empty,
            traceparent.as_deref(),
        ) {
            Ok(r) => r,
            Err(e) => return self.error_boxed(ProxyError::BadRequest(e)).await,
        };
        req.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        req.headers_mut().insert(UPGRADE, upgrade);
        let first = tokio::time::Instant::now();
        let mut resp = match send.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                cluster.report(&host, AttemptResult::Reset);
                return self.error_boxed(reset(e.to_string())).await;
            }
        };
        self.rec.upstream_service_time = Some(first.elapsed());
        cluster.report(&host, AttemptResult::Http(resp.status().as_u16()));
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            self.guards.push(Box::new((permit, active)));
            return self.respond(resp, None).await;
        }
        let upstream = hyper::upgrade::on(&mut resp);
        let (parts, _) = resp.into_parts();
        tokio::spawn(async move {
            // The host counts as loaded and the breaker permit is held for
            // as long as the tunnel lives.
            let _held = (permit, active);
            match tokio::try_join!(downstream, upstream) {
                Ok((d, u)) => {
                    let (mut d, mut u) = (TokioIo::new(d), TokioIo::new(u));
                    if let Err(e) = tokio::io::copy_bidirectional(&mut d, &mut u).await {
                        tracing::debug!(error = %e, "upgraded connection ended with an error");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
            }
        });
        // 101 keeps its `Connection`/`Upgrade` headers: they are the answer.
        self.finalize(parts, ResponseBody::full(Bytes::new()))
    }
}
