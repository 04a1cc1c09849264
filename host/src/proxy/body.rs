//! The response body sent downstream: the upstream body streamed (trailers
//! included), or a complete one; it enforces the route timeout while the
//! body streams and reports the request to telemetry when it ends — at the
//! last byte, on an upstream error (`UR`), on the route timeout (`UT`) or
//! when the downstream goes away (`DC`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::respond::flags;
use crate::telemetry::{RequestRecord, Telemetry};

/// Error type of downstream response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What ends with the request (breaker permits, active counts, the drain
/// tracker), besides the record.
pub type Guards = Vec<Box<dyn Send + Sync>>;

struct Finish {
    telemetry: Arc<Telemetry>,
    rec: RequestRecord,
    _guards: Guards,
}

enum Inner {
    Full(Option<Bytes>),
    Stream(Incoming),
}

/// A downstream response body.
pub struct ResponseBody {
    inner: Inner,
    deadline: Option<Pin<Box<Sleep>>>,
    finish: Option<Box<Finish>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("route timeout elapsed while the response body was streaming")]
struct BodyTimeout;

impl ResponseBody {
    /// A complete body.
    pub fn full(b: Bytes) -> Self {
        ResponseBody {
            inner: Inner::Full((!b.is_empty()).then_some(b)),
            deadline: None,
            finish: None,
        }
    }

    /// The upstream body, cut at `deadline`.
    pub fn stream(b: Incoming, deadline: Option<Pin<Box<Sleep>>>) -> Self {
        ResponseBody {
            inner: Inner::Stream(b),
            deadline,
            finish: None,
        }
    }

    /// Reports `rec` to `telemetry` when the body ends; `guards` are
    /// released then.
    pub fn on_finish(
        mut self,
        telemetry: Arc<Telemetry>,
        rec: RequestRecord,
        guards: Guards,
    ) -> Self {
        self.finish = Some(Box::new(Finish {
            telemetry,
            rec,
            _guards: guards,
        }));
        if self.ended() {
            self.complete(None);
        }
        self
    }

    fn ended(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Stream(s) => s.is_end_stream(),
        }
    }

    fn complete(&mut self, flag: Option<&'static str>) {
        if let Some(f) = self.finish.take() {
            let Finish {
                telemetry,
                mut rec,
                _guards,
            } = *f;
            if let Some(fl) = flag {
                rec.flags.push(fl.to_string());
            }
            telemetry.finish(&rec);
        }
    }

    fn count(&mut self, data: &[u8]) {
        if let Some(f) = self.finish.as_mut() {
            f.rec.response_body_bytes += data.len() as u64;
            if f.rec.grpc {
                f.rec.response_grpc.feed(data);
            }
        }
    }

    fn trailers(&mut self, t: &http::HeaderMap) {
        if let Some(f) = self.finish.as_mut()
            && let Some(s) = t.get("grpc-status").and_then(|v| v.to_str().ok())
        {
            f.rec.grpc_status = Some(s.to_string());
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.finish.is_some() {
            let flag = (!self.ended()).then_some(flags::DOWNSTREAM_DISCONNECT);
            self.complete(flag);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(d) = this.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            this.deadline = None;
            if let Some(f) = this.finish.as_mut() {
                f.rec.details = Some("upstream_response_timeout".into());
            }
            this.complete(Some(flags::UPSTREAM_TIMEOUT));
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        let polled = match &mut this.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Stream(s) => Pin::new(s)
                .poll_frame(cx)
                .map_err(|e| -> BoxError { Box::new(e) }),
        };
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.complete(None);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.complete(Some(flags::UPSTREAM_RESET));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.count(d);
                } else if let Some(t) = frame.trailers_ref() {
                    this.trailers(t);
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Stream(s) => s.size_hint(),
        }
    }
}
