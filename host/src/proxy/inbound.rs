//! One request from arrival to the end of its response.

mod hash;
mod mirror;
mod upgrade;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{Guards, ResponseBody};
use super::headers::{self, authority, ensure_request_id, grpc_timeout, is_grpc, strip_hop_by_hop};
use super::{Destination, Downstream, Proxy, Snapshot};
use crate::cluster::{AttemptResult, Cluster, Host};
use crate::filter::request::keys;
use crate::filter::{AttemptInfo, AttemptOutcome, RequestFilters, RetryDecision, Verdict};
use crate::respond::{ProxyError, flags};
use crate::telemetry::record::header_bytes;
use crate::telemetry::{BodyBytes, RequestRecord};
use crate::upstream::{self, Protocol, ProxyBody, Replay};

/// The request body as kept for attempts.
enum ReqBody {
    Empty,
    Full(Bytes),
    Replay(Replay),
}

impl ReqBody {
    fn attempt(&self) -> Option<ProxyBody> {
        match self {
            ReqBody::Empty => Some(ProxyBody::Empty),
            ReqBody::Full(b) => Some(ProxyBody::Full((!b.is_empty()).then(|| b.clone()))),
            ReqBody::Replay(r) => r.attempt().map(ProxyBody::Replay),
        }
    }

    fn replayable(&self) -> bool {
        match self {
            ReqBody::Replay(r) => r.replayable(),
            _ => true,
        }
    }
}

/// Where the request goes.
struct Target {
    cluster: Arc<Cluster>,
    pinned: Option<SocketAddr>,
}

/// The route timeout: starts when the downstream request is complete.
struct RouteTimer {
    timeout: Option<Duration>,
    start: Instant,
    replay: Option<Replay>,
}

impl RouteTimer {
    fn deadline(&self) -> Option<Instant> {
        let t = self.timeout?;
        match &self.replay {
            Some(r) => r.finished_at().map(|e| e + t),
            None => Some(self.start + t),
        }
    }

    fn expired(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let Some(t) = self.timeout else {
            return Box::pin(std::future::pending());
        };
        let (start, replay) = (self.start, self.replay.clone());
        Box::pin(async move {
            let start = match replay {
                Some(r) => {
                    r.finished().await;
                    r.finished_at().unwrap_or_else(Instant::now)
                }
                None => start,
            };
            tokio::time::sleep_until(start + t).await;
        })
    }
}

enum Forwarded {
    Response(Response<Incoming>),
    Error(ProxyError),
}

struct Exchange {
    proxy: Arc<Proxy>,
    snap: Arc<Snapshot>,
    down: Arc<Downstream>,
    rf: RequestFilters,
    rec: Recorder,
    guards: Guards,
    /// A consistent-hash cookie generated for this request (`Set-Cookie`
    /// value added to the upstream response).
    set_cookie: Option<http::HeaderValue>,
}

/// Holds the record until the response is built; when the downstream goes
/// away before that (hyper drops the request future), the request is still
/// reported, with status 0 and flag `DC`, as Envoy does.
struct Recorder {
    telemetry: Arc<crate::telemetry::Telemetry>,
    rec: Option<RequestRecord>,
}

impl Recorder {
    fn take(&mut self) -> RequestRecord {
        self.rec
            .take()
            .expect("the record is taken once, by finalize")
    }
}

impl std::ops::Deref for Recorder {
    type Target = RequestRecord;
    fn deref(&self) -> &RequestRecord {
        self.rec
            .as_ref()
            .expect("the record is taken once, by finalize")
    }
}

impl std::ops::DerefMut for Recorder {
    fn deref_mut(&mut self) -> &mut RequestRecord {
        self.rec
            .as_mut()
            .expect("the record is taken once, by finalize")
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut r) = self.rec.take() {
            r.flags.push(flags::DOWNSTREAM_DISCONNECT.into());
            r.details = Some("downstream_remote_disconnect".into());
            self.telemetry.finish(&r);
        }
    }
}

fn non_zero(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

/// Handles one request.
pub(crate) async fn handle(
    proxy: Arc<Proxy>,
    down: Arc<Downstream>,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let inflight = proxy.start_request();
    let snap = proxy.snapshot();
    let (mut parts, body) = req.into_parts();
    let authority = authority(&parts);
    let dest = snap.destination(down.target, &authority);
    ensure_request_id(&mut parts.headers);
    let addressed = dest.service.as_ref().map(|s| s.hostname.as_str());
    let span = proxy.telemetry.start_span(&parts.headers, addressed);
    let rec = RequestRecord {
        start: Instant::now(),
        start_time: SystemTime::now(),
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        authority,
        protocol: match parts.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        grpc: is_grpc(&parts.headers),
        headers: if proxy.telemetry.needs_request_headers(&span, addressed) {
            parts.headers.clone()
        } else {
            http::HeaderMap::new()
        },
        source: down.source.clone(),
        source_address: down.remote,
        local_address: down.target.unwrap_or(down.local),
        mtls: down.mtls,
        request_grpc: Default::default(),
        response_grpc: Default::default(),
        service: dest.service.clone(),
        addressed: dest.service.clone(),
        service_port: dest.port,
        upstream: None,
        upstream_address: None,
        upstream_cluster: None,
        route: None,
        authz_policy: None,
        request_principal: None,
        response_code: 0,
        grpc_status: None,
        flags: Vec::new(),
        details: None,
        request_header_bytes: header_bytes(&parts.headers)
            + parts.uri.to_string().len() as u64
            + 16,
        request_body: BodyBytes::None,
        response_header_bytes: 0,
        response_body_bytes: 0,
        attempts: 0,
        upstream_service_time: None,
        span: Some(span),
    };
    let chain = snap
        .chains
        .manager_for(dest.service.as_ref().map(|s| s.hostname.as_str()))
        .current();
    let rf = RequestFilters::new(&chain, down.connection_info(&dest));
    let ex = Exchange {
        rec: Recorder {
            telemetry: proxy.telemetry.clone(),
            rec: Some(rec),
        },
        proxy,
        snap,
        down,
        rf,
        guards: vec![Box::new(inflight)],
        set_cookie: None,
    };
    ex.run(parts, body, dest).await
}

impl Exchange {
    async fn run(
        mut self,
        mut parts: http::request::Parts,
        body: Incoming,
        dest: Destination,
    ) -> Response<ResponseBody> {
        if parts.headers.get_all(http::header::HOST).iter().count() > 1 {
            return self
                .error_boxed(ProxyError::BadRequest("more than one Host header".into()))
                .await;
        }
        // RFC 9112 §3.2: an HTTP/1.1 request without Host (and not in
        // absolute form) is answered 400, as Envoy does.
        if parts.version == http::Version::HTTP_11
            && parts.uri.authority().is_none()
            && !parts.headers.contains_key(http::header::HOST)
        {
            return self
                .error_boxed(ProxyError::BadRequest("missing Host header".into()))
                .await;
        }
        if let Err(e) = headers::normalize_path(&mut parts) {
            return self.error_boxed(ProxyError::BadRequest(e)).await;
        }
        if let Verdict::Respond(r) = self.rf.on_request_headers(&mut parts).await {
            self.rec.details = Some("filter_local_reply".into());
            return self.finalize_local(r);
        }
        let (mut this, body) = if self.rf.request_body_limit().is_some() {
            match Box::pin(self.buffer_request_body(&mut parts, body)).await {
                Ok(x) => x,
                Err(r) => return r,
            }
        } else {
            self.stream_request_body(body)
        };
        let target = match this.route(&dest) {
            Ok(t) => t,
            Err(e) => return this.error_boxed(e).await,
        };
        if let Some(up) = upgrade::requested(&parts) {
            let hash = this.hash_key(&target.cluster, &parts);
            return Box::pin(this.upgrade(parts, target, hash, up)).await;
        }
        let proto = target
            .cluster
            .protocol
            .unwrap_or(Protocol::of(parts.version));
        let plan = this.rf.plan().clone();
        let mut timeout = non_zero(plan.timeout);
        if this.rec.grpc
            && let Some(g) = grpc_timeout(&parts.headers)
        {
            timeout = Some(timeout.map_or(g, |t| t.min(g)));
        }
        let timer = RouteTimer {
            timeout,
            start: Instant::now(),
            replay: match &body {
                ReqBody::Replay(r) => Some(r.clone()),
                _ => None,
            },
        };
        let authority = headers::authority(&parts);
        if let Some(meta) = this.rf.metadata(keys::MIRROR) {
            let clusters = mirror::targets(&this.snap, meta, dest.port);
            mirror::send(&this.proxy, clusters, &parts, &authority, &body, timeout);
        }
        let hash = this.hash_key(&target.cluster, &parts);
        match this
            .forward(
                &parts,
                &authority,
                &body,
                &target,
                proto,
                non_zero(plan.per_try_timeout),
                &timer,
                hash,
            )
            .await
        {
            Forwarded::Response(r) => this.respond(r, timer.deadline()).await,
            Forwarded::Error(e) => this.error_boxed(e).await,
        }
    }

    /// Streams the body (no filter wants it buffered).
    fn stream_request_body(mut self, body: Incoming) -> (Self, ReqBody) {
        if http_body::Body::is_end_stream(&body) {
            return (self, ReqBody::Empty);
        }
        let r = Replay::new(body);
        if self.rec.grpc {
            r.count_grpc_messages();
        }
        self.rec.request_body = BodyBytes::Streamed(r.clone());
        (self, ReqBody::Replay(r))
    }

    /// Buffers the body for the filters that want it and runs their body
    /// hooks. (Kept out of the common path's future: the caller boxes it.)
    async fn buffer_request_body(
        mut self,
        parts: &mut http::request::Parts,
        body: Incoming,
    ) -> Result<(Self, ReqBody), Response<ResponseBody>> {
        if let Some(limit) = self.rf.request_body_limit() {
            let mut buf = BytesMut::new();
            let mut body = body;
            while buf.len() <= limit {
                match body.frame().await {
                    None => break,
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            buf.extend_from_slice(&d);
                        }
                    }
                    Some(Err(e)) => {
                        self.rec.flags.push(flags::DOWNSTREAM_DISCONNECT.into());
                        let e = ProxyError::BadRequest(format!("reading the request body: {e}"));
                        return Err(self.error_boxed(e).await);
                    }
                }
            }
            let mut bytes = buf.freeze();
            if self.rec.grpc {
                self.rec.request_grpc.feed(&bytes);
            }
            if let Verdict::Respond(r) = self.rf.on_request_body(parts, &mut bytes).await {
                self.rec.request_body = BodyBytes::Known(bytes.len() as u64);
                self.rec.details = Some("filter_local_reply".into());
                return Err(self.finalize_local(r));
            }
            self.rec.request_body = BodyBytes::Known(bytes.len() as u64);
            return Ok((self, ReqBody::Full(bytes)));
        }
        Ok(self.stream_request_body(body))
    }

    /// The cluster: the filters' route, else the addressed service.
    fn route(&mut self, dest: &Destination) -> Result<Target, ProxyError> {
        let snap = self.snap.clone();
        let route = self.rf.plan().route.clone();
        self.rec.route = self.rf.metadata(keys::ROUTE).map(str::to_string);
        let (cluster, pinned, svc) = match (route, &dest.service, dest.direct) {
            (Some(r), _, _) => {
                let (svc, port, cluster) =
                    snap.service_cluster(&r.service, r.subset.as_deref(), r.port, dest.port)?;
                let pinned = match r.endpoint.as_deref() {
                    Some(e) => {
                        Some(e.parse::<SocketAddr>().map_err(|_| ProxyError::NoCluster {
                            service: format!("endpoint {e:?} (not ip:port)"),
                            port,
                            subset: None,
                        })?)
                    }
                    None => None,
                };
                self.rec.service_port = port;
                (cluster, pinned, Some(svc))
            }
            (None, _, Some(direct)) => {
                let template = dest
                    .service
                    .as_ref()
                    .and_then(|s| snap.clusters.get(&s.hostname, dest.port, None))
                    .map(|c| c.as_ref());
                (
                    snap.clusters.direct(direct, template),
                    None,
                    dest.service.clone(),
                )
            }
            (None, Some(svc), None) => {
                let c = snap
                    .clusters
                    .get(&svc.hostname, dest.port, None)
                    .cloned()
                    .ok_or_else(|| ProxyError::NoCluster {
                        service: svc.hostname.clone(),
                        port: dest.port,
                        subset: None,
                    })?;
                (c, None, Some(svc.clone()))
            }
            (None, None, None) => {
                return Err(ProxyError::NoRoute {
                    authority: self.rec.authority.clone(),
                });
            }
        };
        self.rec.service = svc.or_else(|| self.rec.service.clone());
        // PASSTHROUGH: connect to what the client dialled.
        let cluster = match (cluster.is_passthrough(), self.down.target) {
            (true, Some(t)) => snap.clusters.direct(t, Some(&cluster)),
            _ => cluster,
        };
        self.rec.upstream_cluster = Some(cluster.name.clone());
        Ok(Target { cluster, pinned })
    }

    fn pick(
        &self,
        target: &Target,
        hash: Option<u64>,
        tried: &[SocketAddr],
    ) -> Result<Arc<Host>, ProxyError> {
        match target.pinned {
            Some(addr) => match target.cluster.host(addr) {
                Some(h) if h.is_ready() => Ok(h),
                _ => Err(ProxyError::NoHealthyUpstream {
                    cluster: format!("{} endpoint {addr}", target.cluster.name),
                }),
            },
            None => target.cluster.choose(hash, tried),
        }
    }

    /// Sends attempts until one succeeds, the filters stop retrying, or the
    /// route timeout elapses.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &mut self,
        parts: &http::request::Parts,
        authority: &str,
        body: &ReqBody,
        target: &Target,
        proto: Protocol,
        mut per_try: Option<Duration>,
        timer: &RouteTimer,
        hash: Option<u64>,
    ) -> Forwarded {
        let mut expired = timer.expired();
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut _retry_permit = None;
        let cluster = &target.cluster;
        let traceparent = self.rec.span.map(|s| s.traceparent());
        let first = Instant::now();
        loop {
            self.rec.attempts += 1;
            let host = match self.pick(target, hash, &tried) {
                Ok(h) => h,
                Err(e) => return Forwarded::Error(e),
            };
            self.rec.upstream_address = Some(host.addr);
            self.rec.upstream = Some(host.endpoint.clone());
            let Some(attempt_body) = body.attempt() else {
                return Forwarded::Error(ProxyError::Reset {
                    endpoint: host.addr.to_string(),
                    reason: "request body too large to replay".into(),
                    refused: false,
                });
            };
            let req = match headers::upstream_request(
                parts,
                authority,
                proto,
                attempt_body,
                traceparent.as_deref(),
            ) {
                Ok(r) => r,
                Err(e) => return Forwarded::Error(ProxyError::BadRequest(e)),
            };
            let permit = match cluster.breakers.request() {
                Ok(p) => p,
                Err(e) => return Forwarded::Error(e),
            };
            let active = host.start_request();
            let send = upstream::send(&host, cluster, &self.proxy.connector, proto, req, per_try);
            let outcome = tokio::select! {
                r = send => r,
                () = &mut expired => {
                    cluster.report(&host, AttemptResult::Timeout);
                    self.rec.details = Some("upstream_response_timeout".into());
                    return Forwarded::Error(ProxyError::Timeout { which: "route" });
                }
            };
            let (result, attempt_outcome, grpc) = match &outcome {
                Ok(r) => {
                    let grpc = r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok());
                    // Outlier detection sees a gRPC error as the HTTP
                    // status it maps to (Envoy's router does the same:
                    // UNAVAILABLE counts as a 503).
                    let status = grpc.map_or(r.status().as_u16(), headers::grpc_to_http_status);
                    (
                        Some(AttemptResult::Http(status)),
                        AttemptOutcome::Response(r.status()),
                        grpc,
                    )
                }
                Err(ProxyError::ConnectFailure { .. }) => (
                    Some(AttemptResult::ConnectFailed),
                    AttemptOutcome::ConnectFailure,
                    None,
                ),
                Err(ProxyError::Reset { refused: true, .. }) => (
                    Some(AttemptResult::Reset),
                    AttemptOutcome::RefusedStream,
                    None,
                ),
                Err(ProxyError::Reset { .. }) => {
                    (Some(AttemptResult::Reset), AttemptOutcome::Reset, None)
                }
                Err(ProxyError::Timeout { .. }) => {
                    (Some(AttemptResult::Timeout), AttemptOutcome::Timeout, None)
                }
                // Overflow and the like: never retried, not an outlier signal.
                Err(_) => (None, AttemptOutcome::Reset, None),
            };
            let Some(result) = result else {
                return Forwarded::Error(
                    outcome
                        .err()
                        .unwrap_or(ProxyError::Timeout { which: "route" }),
                );
            };
            cluster.report(&host, result);
            // Final unless the attempt failed: a status of 400 or more, or
            // a gRPC error (HTTP 200 with a non-zero `grpc-status` in the
            // response headers, which Envoy's gRPC retry_on conditions
            // match).
            let outcome = match outcome {
                Ok(r) if r.status().as_u16() < 400 && grpc.unwrap_or(0) == 0 => {
                    return self.give_up(Ok(r), Box::new((permit, active)), first);
                }
                other => other,
            };
            let info = AttemptInfo {
                number: self.rec.attempts,
                outcome: attempt_outcome,
                grpc_status: grpc,
                elapsed: first.elapsed(),
            };
            let decision = tokio::select! {
                d = self.rf.on_attempt(&info) => d,
                () = &mut expired => return Forwarded::Error(ProxyError::Timeout { which: "route" }),
            };
            let RetryDecision::Retry {
                per_try_timeout,
                backoff,
            } = decision
            else {
                return self.give_up(outcome, Box::new((permit, active)), first);
            };
            if !body.replayable() {
                return self.give_up(outcome, Box::new((permit, active)), first);
            }
            let Some(p) = cluster.breakers.retry() else {
                self.rec.flags.push(flags::UPSTREAM_OVERFLOW.into());
                return self.give_up(outcome, Box::new((permit, active)), first);
            };
            _retry_permit = Some(p);
            drop((outcome, permit, active));
            // Envoy's previous-hosts predicate (Istio's default
            // `retryIgnorePreviousHosts: true`) unless the route turned it
            // off.
            if self.rf.metadata(keys::RETRY_HOSTS) != Some("reuse") {
                tried.push(host.addr);
            }
            if let Some(t) = per_try_timeout {
                per_try = non_zero(Some(t));
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = &mut expired => return Forwarded::Error(ProxyError::Timeout { which: "route" }),
            }
        }
    }

    /// Ends the attempts with `outcome`; a response keeps the attempt's
    /// breaker permit and host load until it has been sent.
    fn give_up(
        &mut self,
        outcome: Result<Response<Incoming>, ProxyError>,
        held: Box<dyn Send + Sync>,
        first: Instant,
    ) -> Forwarded {
        match outcome {
            Ok(r) => {
                self.rec.upstream_service_time = Some(first.elapsed());
                self.guards.push(held);
                Forwarded::Response(r)
            }
            Err(e) => Forwarded::Error(e),
        }
    }

    /// Streams (or, for body filters, buffers) an upstream response.
    async fn respond(
        mut self,
        resp: Response<Incoming>,
        deadline: Option<Instant>,
    ) -> Response<ResponseBody> {
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(c) = self.set_cookie.take() {
            parts.headers.append(http::header::SET_COOKIE, c);
        }
        if let Some(g) = parts
            .headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
        {
            self.rec.grpc_status = Some(g.to_string());
        }
        if let Verdict::Respond(r) = self.rf.on_response_headers(&mut parts).await {
            self.rec.details = Some("filter_local_reply".into());
            return self.finalize_local(r);
        }
        let sleep = deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
        if let Some(limit) = self.rf.response_body_limit() {
            return Box::pin(self.buffer_response_body(parts, body, limit, sleep)).await;
        }
        self.finalize(parts, ResponseBody::stream(body, sleep))
    }

    /// Buffers the response body for the filters that want it and runs
    /// their body hooks (boxed by the caller: off the common path).
    async fn buffer_response_body(
        mut self,
        mut parts: http::response::Parts,
        body: Incoming,
        limit: usize,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    ) -> Response<ResponseBody> {
        let mut buf = BytesMut::new();
        let mut body = body;
        let collect = async {
            while buf.len() <= limit {
                match body.frame().await {
                    None => return Ok(()),
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            buf.extend_from_slice(&d);
                        }
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                }
            }
            Ok(())
        };
        let collected = match sleep {
            Some(s) => {
                tokio::select! { r = collect => r, () = s => Err("route timeout".into()) }
            }
            None => collect.await,
        };
        if let Err(reason) = collected {
            let e = ProxyError::Reset {
                endpoint: self
                    .rec
                    .upstream_address
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                reason,
                refused: false,
            };
            return self.error_boxed(e).await;
        }
        let mut bytes = buf.freeze();
        if let Verdict::Respond(r) = self.rf.on_response_body(&mut parts, &mut bytes).await {
            self.rec.details = Some("filter_local_reply".into());
            return self.finalize_local(r);
        }
        self.finalize(parts, ResponseBody::full(bytes))
    }

    /// [`Exchange::error`] behind a box: local replies are the uncommon
    /// path, and their future (response hooks included) would otherwise
    /// enlarge, and be copied with, every request's future.
    fn error_boxed(
        self,
        e: ProxyError,
    ) -> Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>> {
        Box::pin(self.error(e))
    }

    /// Answers with a proxy error (after the response hooks).
    async fn error(mut self, e: ProxyError) -> Response<ResponseBody> {
        tracing::debug!(error = %e, "local reply");
        self.rec.flags.push(e.flag().into());
        if self.rec.details.is_none() {
            self.rec.details = Some(e.to_string());
        }
        let (mut parts, body) = e.to_response().into_parts();
        if let Verdict::Respond(r) = self.rf.on_response_headers(&mut parts).await {
            return self.finalize_local(r);
        }
        self.finalize_local(Response::from_parts(parts, body))
    }

    fn finalize_local(self, r: Response<Bytes>) -> Response<ResponseBody> {
        let r = if self.rec.grpc {
            crate::respond::to_grpc(r)
        } else {
            r
        };
        let (parts, body) = r.into_parts();
        self.finalize(parts, ResponseBody::full(body))
    }

    fn finalize(
        mut self,
        parts: http::response::Parts,
        body: ResponseBody,
    ) -> Response<ResponseBody> {
        self.rec.response_code = parts.status.as_u16();
        if self.rec.grpc_status.is_none()
            && let Some(g) = parts
                .headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
        {
            self.rec.grpc_status = Some(g.to_string());
        }
        self.rec.response_header_bytes = header_bytes(&parts.headers) + 17;
        for f in self.rf.response_flags() {
            if !self.rec.flags.iter().any(|x| x == f) {
                self.rec.flags.push(f.to_string());
            }
        }
        self.rec.authz_policy = self.rf.metadata(keys::AUTHZ_POLICY).map(str::to_string);
        if self.rec.route.is_none() {
            self.rec.route = self.rf.metadata(keys::ROUTE).map(str::to_string);
        }
        self.rec.request_principal = self.rf.request_principal().map(str::to_string);
        let rec = self.rec.take();
        let body = body.on_finish(self.proxy.telemetry.clone(), rec, self.guards);
        Response::from_parts(parts, body)
    }
}
