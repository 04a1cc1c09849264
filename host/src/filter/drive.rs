//! Drives the hooks of one request and applies what they return.
//!
//! A hook's actions are validated as a whole first and applied only if all
//! are valid, so a filter error never leaves a request half-mutated.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{StatusCode, Uri};

use super::bindings::types::{self, Action, Hooks};
use super::config::FailPolicy;
use super::error::FilterFailure;
use super::loaded::LoadedFilter;
use super::request::{
    AttemptInfo, AttemptOutcome, HeaderOp, RequestFilters, RetryDecision, RouteDecision, Verdict,
    fail_closed_response, header_name, header_value, headers_view, invalid, local_response,
};

/// Longest single injected delay.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// Which actions a hook may return.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
}

impl Phase {
    fn hook(self) -> &'static str {
        match self {
            Phase::RequestHeaders => "request_headers",
            Phase::RequestBody => "request_body",
            Phase::ResponseHeaders => "response_headers",
            Phase::ResponseBody => "response_body",
        }
    }
}

/// Validated effects of one hook.
#[derive(Default)]
struct Effects {
    respond: Option<http::Response<Bytes>>,
    request_ops: Vec<HeaderOp>,
    response_ops: Vec<HeaderOp>,
    path: Option<String>,
    authority: Option<http::uri::Authority>,
    route: Option<RouteDecision>,
    timeout: Option<Duration>,
    per_try_timeout: Option<Duration>,
    delay: Duration,
    body: Option<Bytes>,
    metadata: Vec<(String, String)>,
}

fn ms(v: u32) -> Duration {
    Duration::from_millis(u64::from(v))
}

fn validate(actions: Vec<Action>, phase: Phase) -> Result<Effects, String> {
    if actions.len() > super::limits::MAX_ACTIONS {
        return Err(format!(
            "{} actions exceed the limit of {}",
            actions.len(),
            super::limits::MAX_ACTIONS
        ));
    }
    let mut e = Effects::default();
    let req_phase = matches!(phase, Phase::RequestHeaders | Phase::RequestBody);
    for a in actions {
        let allowed = match &a {
            Action::Respond(_) | Action::SetMetadata(_) => true,
            Action::SetRequestHeader(_)
            | Action::AddRequestHeader(_)
            | Action::RemoveRequestHeader(_) => req_phase,
            Action::SetResponseHeader(_)
            | Action::AddResponseHeader(_)
            | Action::RemoveResponseHeader(_) => phase != Phase::ResponseBody,
            Action::RewritePath(_)
            | Action::RewriteAuthority(_)
            | Action::Route(_)
            | Action::Timeout(_)
            | Action::PerTryTimeout(_)
            | Action::Delay(_) => phase == Phase::RequestHeaders,
            Action::ReplaceBody(_) => matches!(phase, Phase::RequestBody | Phase::ResponseBody),
        };
        if !allowed {
            return Err(format!("action {a:?} is not allowed in {}", phase.hook()));
        }
        match a {
            Action::Respond(lr) => {
                e.respond = Some(local_response(lr)?);
                break;
            }
            Action::SetRequestHeader((k, v)) => e
                .request_ops
                .push(HeaderOp::Set(header_name(&k)?, header_value(&v)?)),
            Action::AddRequestHeader((k, v)) => e
                .request_ops
                .push(HeaderOp::Add(header_name(&k)?, header_value(&v)?)),
            Action::RemoveRequestHeader(k) => {
                e.request_ops.push(HeaderOp::Remove(header_name(&k)?))
            }
            Action::SetResponseHeader((k, v)) => e
                .response_ops
                .push(HeaderOp::Set(header_name(&k)?, header_value(&v)?)),
            Action::AddResponseHeader((k, v)) => e
                .response_ops
                .push(HeaderOp::Add(header_name(&k)?, header_value(&v)?)),
            Action::RemoveResponseHeader(k) => {
                e.response_ops.push(HeaderOp::Remove(header_name(&k)?))
            }
            Action::RewritePath(p) => {
                if !p.starts_with('/')
                    || p.contains('?')
                    || http::uri::PathAndQuery::try_from(p.as_str()).is_err()
                {
                    return Err(format!(
                        "rewrite-path {p:?} is not an absolute path without query"
                    ));
                }
                e.path = Some(p);
            }
            Action::RewriteAuthority(a) => {
                e.authority =
                    Some(a.parse().map_err(|_| {
                        format!("rewrite-authority {a:?} is not a valid authority")
                    })?);
            }
            Action::Route(r) => {
                if r.service.is_empty() {
                    return Err("route with an empty service".into());
                }
                e.route = Some(RouteDecision {
                    service: r.service,
                    subset: r.subset,
                    port: r.port,
                    endpoint: r.endpoint,
                });
            }
            Action::Timeout(v) => e.timeout = Some(ms(v)),
            Action::PerTryTimeout(v) => e.per_try_timeout = Some(ms(v)),
            Action::Delay(v) => e.delay += ms(v).min(MAX_DELAY),
            Action::ReplaceBody(b) => e.body = Some(Bytes::from(b)),
            Action::SetMetadata(kv) => e.metadata.push(kv),
        }
    }
    Ok(e)
}

fn apply_ops(headers: &mut http::HeaderMap, ops: Vec<HeaderOp>) {
    for op in ops {
        match op {
            HeaderOp::Set(k, v) => {
                headers.insert(k, v);
            }
            HeaderOp::Add(k, v) => {
                headers.append(k, v);
            }
            HeaderOp::Remove(k) => {
                headers.remove(k);
            }
        }
    }
}

/// The guest's view of a request, with the headers `only` selects.
fn request_view(parts: &http::request::Parts, only: Option<&[http::HeaderName]>) -> types::Request {
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        })
        .unwrap_or_default();
    types::Request {
        method: parts.method.as_str().to_string(),
        scheme: parts.uri.scheme_str().unwrap_or("http").to_string(),
        authority,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: headers_view(&parts.headers, only),
        protocol: match parts.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
        .to_string(),
    }
}

fn set_path(uri: &Uri, path: &str) -> Option<Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut p = uri.clone().into_parts();
    p.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(p).ok()
}

fn set_authority(parts: &mut http::request::Parts, a: http::uri::Authority) {
    if parts.uri.authority().is_some() {
        let mut p = parts.uri.clone().into_parts();
        p.authority = Some(a.clone());
        if let Ok(u) = Uri::from_parts(p) {
            parts.uri = u;
        }
    }
    if let Ok(v) = http::HeaderValue::from_str(a.as_str()) {
        parts.headers.insert(HOST, v);
    }
}

fn body_too_large(
    status: StatusCode,
    filter: &LoadedFilter,
    limit: usize,
) -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::from(format!(
        "body exceeds the {limit}-byte budget of filter {}\n",
        filter.name()
    )));
    *r.status_mut() = status;
    r
}

impl RequestFilters {
    fn set_metadata(&mut self, kv: Vec<(String, String)>) {
        for (k, v) in kv {
            match self.ctx.metadata.iter_mut().find(|(ek, _)| *ek == k) {
                Some(e) => e.1 = v,
                None => self.ctx.metadata.push((k, v)),
            }
        }
    }

    /// Applies the fail policy. Some(response) when the request must end.
    fn fail(&mut self, f: &LoadedFilter, failure: FilterFailure) -> Option<http::Response<Bytes>> {
        tracing::warn!("{failure}");
        let resp = match f.spec().fail_policy {
            FailPolicy::FailClosed => {
                self.failed_closed = true;
                Some(fail_closed_response(&failure))
            }
            FailPolicy::FailOpen => None,
        };
        self.failures.push(failure);
        resp
    }

    /// The error side carries the response that ends the request (boxing
    /// it would add an allocation to every fail-closed answer).
    #[allow(clippy::result_large_err)]
    fn absorb<T>(
        &mut self,
        f: &LoadedFilter,
        r: super::loaded::HookResult<T>,
    ) -> Result<T, Option<http::Response<Bytes>>> {
        match r {
            Ok((v, auth)) => {
                if let Some(a) = auth {
                    self.ctx.request_auth = Some(a);
                }
                Ok(v)
            }
            Err(failure) => Err(self.fail(f, failure)),
        }
    }

    /// Runs the request-headers hooks in chain order.
    pub async fn on_request_headers(&mut self, parts: &mut http::request::Parts) -> Verdict {
        for i in 0..self.filters.len() {
            let f = self.filters[i].clone();
            if !f.wants(Hooks::REQUEST_HEADERS) {
                continue;
            }
            let req = request_view(parts, f.request_header_selection());
            let r = f.on_request_headers(&self.ctx, &req).await;
            let actions = match self.absorb(&f, r) {
                Ok(a) => a,
                Err(Some(resp)) => return Verdict::Respond(resp),
                Err(None) => continue,
            };
            let e = match validate(actions, Phase::RequestHeaders) {
                Ok(e) => e,
                Err(d) => match self.fail(&f, invalid(&f, "request_headers", d)) {
                    Some(resp) => return Verdict::Respond(resp),
                    None => continue,
                },
            };
            if !e.delay.is_zero() {
                tokio::time::sleep(e.delay).await;
                self.plan.delay += e.delay;
            }
            self.set_metadata(e.metadata);
            self.pending_response_ops.extend(e.response_ops);
            if let Some(resp) = e.respond {
                self.response_upto = i;
                return Verdict::Respond(self.finish_local(resp).await);
            }
            apply_ops(&mut parts.headers, e.request_ops);
            if let Some(p) = e.path
                && let Some(u) = set_path(&parts.uri, &p)
            {
                parts.uri = u;
            }
            if let Some(a) = e.authority {
                set_authority(parts, a);
            }
            if e.route.is_some() {
                self.plan.route = e.route;
            }
            if e.timeout.is_some() {
                self.plan.timeout = e.timeout;
            }
            if e.per_try_timeout.is_some() {
                self.plan.per_try_timeout = e.per_try_timeout;
            }
        }
        Verdict::Continue
    }

    /// Runs the request-body hooks on the buffered body.
    pub async fn on_request_body(
        &mut self,
        parts: &mut http::request::Parts,
        body: &mut Bytes,
    ) -> Verdict {
        for i in 0..self.filters.len() {
            let f = self.filters[i].clone();
            let Some(limit) = f.request_body_limit() else {
                continue;
            };
            if body.len() > limit {
                self.response_upto = i;
                return Verdict::Respond(body_too_large(StatusCode::PAYLOAD_TOO_LARGE, &f, limit));
            }
            let r = f.on_request_body(&self.ctx, body).await;
            let actions = match self.absorb(&f, r) {
                Ok(a) => a,
                Err(Some(resp)) => return Verdict::Respond(resp),
                Err(None) => continue,
            };
            let e = match validate(actions, Phase::RequestBody) {
                Ok(e) => e,
                Err(d) => match self.fail(&f, invalid(&f, "request_body", d)) {
                    Some(resp) => return Verdict::Respond(resp),
                    None => continue,
                },
            };
            self.set_metadata(e.metadata);
            self.pending_response_ops.extend(e.response_ops);
            if let Some(resp) = e.respond {
                self.response_upto = i;
                return Verdict::Respond(self.finish_local(resp).await);
            }
            apply_ops(&mut parts.headers, e.request_ops);
            if let Some(b) = e.body {
                *body = b;
                parts.headers.remove(http::header::CONTENT_LENGTH);
                if let Ok(v) = http::HeaderValue::from_str(&body.len().to_string()) {
                    parts.headers.insert(http::header::CONTENT_LENGTH, v);
                }
            }
        }
        Verdict::Continue
    }

    /// Runs the response-header hooks (last filter first) after applying the
    /// response header actions of the request phase. `Respond` replaces the
    /// response.
    pub async fn on_response_headers(&mut self, parts: &mut http::response::Parts) -> Verdict {
        apply_ops(
            &mut parts.headers,
            std::mem::take(&mut self.pending_response_ops),
        );
        for i in (0..self.response_upto).rev() {
            let f = self.filters[i].clone();
            if !f.wants(Hooks::RESPONSE_HEADERS) {
                continue;
            }
            let view = types::Response {
                status: parts.status.as_u16(),
                headers: headers_view(&parts.headers, f.response_header_selection()),
            };
            let r = f.on_response_headers(&self.ctx, &view).await;
            let actions = match self.absorb(&f, r) {
                Ok(a) => a,
                Err(Some(resp)) => return Verdict::Respond(resp),
                Err(None) => continue,
            };
            let e = match validate(actions, Phase::ResponseHeaders) {
                Ok(e) => e,
                Err(d) => match self.fail(&f, invalid(&f, "response_headers", d)) {
                    Some(resp) => return Verdict::Respond(resp),
                    None => continue,
                },
            };
            self.set_metadata(e.metadata);
            if let Some(resp) = e.respond {
                return Verdict::Respond(resp);
            }
            apply_ops(&mut parts.headers, e.response_ops);
        }
        Verdict::Continue
    }

    /// Runs the response-body hooks (last filter first) on the buffered body.
    pub async fn on_response_body(
        &mut self,
        parts: &mut http::response::Parts,
        body: &mut Bytes,
    ) -> Verdict {
        for i in (0..self.response_upto).rev() {
            let f = self.filters[i].clone();
            let Some(limit) = f.response_body_limit() else {
                continue;
            };
            if body.len() > limit {
                return Verdict::Respond(body_too_large(StatusCode::BAD_GATEWAY, &f, limit));
            }
            let r = f.on_response_body(&self.ctx, body).await;
            let actions = match self.absorb(&f, r) {
                Ok(a) => a,
                Err(Some(resp)) => return Verdict::Respond(resp),
                Err(None) => continue,
            };
            let e = match validate(actions, Phase::ResponseBody) {
                Ok(e) => e,
                Err(d) => match self.fail(&f, invalid(&f, "response_body", d)) {
                    Some(resp) => return Verdict::Respond(resp),
                    None => continue,
                },
            };
            self.set_metadata(e.metadata);
            if let Some(resp) = e.respond {
                return Verdict::Respond(resp);
            }
            if let Some(b) = e.body {
                *body = b;
                parts.headers.remove(http::header::CONTENT_LENGTH);
                if let Ok(v) = http::HeaderValue::from_str(&body.len().to_string()) {
                    parts.headers.insert(http::header::CONTENT_LENGTH, v);
                }
            }
        }
        Verdict::Continue
    }

    /// Asks the filters wanting the attempt hook, in chain order, whether to
    /// retry; the first that answers retry wins. A failing filter counts as
    /// "give up".
    pub async fn on_attempt(&mut self, info: &AttemptInfo) -> RetryDecision {
        // A response below 400 is final unless it carries a non-zero
        // grpc-status (gRPC errors arrive as HTTP 200).
        if matches!(info.outcome, AttemptOutcome::Response(s) if s.as_u16() < 400)
            && info.grpc_status.unwrap_or(0) == 0
        {
            return RetryDecision::GiveUp;
        }
        let attempt = types::Attempt {
            number: info.number,
            outcome: match info.outcome {
                AttemptOutcome::Response(s) => types::AttemptOutcome::Response(s.as_u16()),
                AttemptOutcome::Reset => types::AttemptOutcome::Reset,
                AttemptOutcome::ConnectFailure => types::AttemptOutcome::ConnectFailure,
                AttemptOutcome::RefusedStream => types::AttemptOutcome::RefusedStream,
                AttemptOutcome::Timeout => types::AttemptOutcome::Timeout,
            },
            grpc_status: info.grpc_status,
            elapsed: u32::try_from(info.elapsed.as_millis()).unwrap_or(u32::MAX),
        };
        let filters: Vec<Arc<LoadedFilter>> = self
            .filters
            .iter()
            .filter(|f| f.wants(Hooks::ATTEMPT))
            .cloned()
            .collect();
        for f in filters {
            let r = f.on_attempt(&self.ctx, attempt).await;
            match r {
                Ok((types::RetryDecision::Retry(p), _)) => {
                    return RetryDecision::Retry {
                        per_try_timeout: p.per_try_timeout.map(ms),
                        backoff: ms(p.backoff).min(MAX_DELAY),
                    };
                }
                Ok((types::RetryDecision::GiveUp, _)) => {}
                Err(failure) => {
                    tracing::warn!("{failure}");
                    self.failures.push(failure);
                }
            }
        }
        RetryDecision::GiveUp
    }

    /// Runs the response hooks of the filters before the responder on a
    /// local response.
    async fn finish_local(&mut self, resp: http::Response<Bytes>) -> http::Response<Bytes> {
        let (mut parts, body) = resp.into_parts();
        match Box::pin(self.on_response_headers(&mut parts)).await {
            Verdict::Continue => http::Response::from_parts(parts, body),
            Verdict::Respond(r) => r,
        }
    }
}
