//! Request bodies sent upstream, replayable for retries.
//!
//! The downstream body streams to the first attempt as it arrives while a
//! copy is kept (up to [`RETRY_BUFFER_LIMIT`], Envoy's default per-request
//! buffer limit). A retry replays the copy and then continues reading the
//! downstream body where the previous attempt stopped. A body larger than
//! the limit streams unbuffered and disables retries, as in Envoy.
//!
//! Attempts are sequential: a new attempt bumps the generation, and a body
//! of an abandoned attempt that hyper still polls ends with an error instead
//! of stealing frames.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::sync::watch;

/// Largest request body kept for retries (Envoy's
/// `per_connection_buffer_limit_bytes` default, 1 MiB).
pub const RETRY_BUFFER_LIMIT: usize = 1 << 20;

/// Error of an upstream request body.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Reading the downstream body failed (client reset or disconnect).
    #[error("downstream request body: {0}")]
    Downstream(#[from] hyper::Error),
    /// This attempt was abandoned for a newer one.
    #[error("request attempt superseded by a retry")]
    Superseded,
}

/// The body of one upstream attempt.
#[derive(Debug)]
pub enum ProxyBody {
    /// No body.
    Empty,
    /// A complete body (buffered for the filters, or a local one).
    Full(Option<Bytes>),
    /// The downstream body, streamed and kept for replay.
    Replay(ReplayBody),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Replay(r) => r.poll(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Replay(r) => r.is_end(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Replay(r) => r.size_hint(),
        }
    }
}

#[derive(Debug)]
struct State {
    source: Option<Incoming>,
    frames: Vec<Bytes>,
    buffered: usize,
    trailers: Option<HeaderMap>,
    ended: bool,
    overflowed: bool,
    generation: u64,
    /// Body bytes read from downstream so far.
    read: u64,
    limit: usize,
    ended_at: Option<tokio::time::Instant>,
    done: watch::Sender<bool>,
    /// gRPC message counter of the downstream body, when it is gRPC.
    grpc: Option<crate::telemetry::grpc_frames::GrpcFrames>,
}

/// Shared state of a replayable downstream body.
#[derive(Debug, Clone)]
pub struct Replay {
    state: Arc<Mutex<State>>,
    done: watch::Receiver<bool>,
}

/// One attempt's view of a [`Replay`].
#[derive(Debug)]
pub struct ReplayBody {
    state: Arc<Mutex<State>>,
    generation: u64,
    pos: usize,
    trailers_sent: bool,
}

impl Replay {
    /// Wraps the downstream body.
    pub fn new(source: Incoming) -> Self {
        Self::with_limit(source, RETRY_BUFFER_LIMIT)
    }

    /// Wraps the downstream body with a custom buffer limit.
    pub fn with_limit(source: Incoming, limit: usize) -> Self {
        let (done, rx) = watch::channel(false);
        Replay {
            state: Arc::new(Mutex::new(State {
                source: Some(source),
                frames: Vec::new(),
                buffered: 0,
                trailers: None,
                ended: false,
                overflowed: false,
                generation: 0,
                read: 0,
                limit,
                ended_at: None,
                done,
                grpc: None,
            })),
            done: rx,
        }
    }

    /// The body of the next attempt; `None` once the body outgrew the
    /// buffer (no retry possible).
    pub fn attempt(&self) -> Option<ReplayBody> {
        let mut s = self.state.lock();
        if s.overflowed {
            return None;
        }
        s.generation += 1;
        Some(ReplayBody {
            state: self.state.clone(),
            generation: s.generation,
            pos: 0,
            trailers_sent: false,
        })
    }

    /// Can another attempt still be sent?
    pub fn replayable(&self) -> bool {
        !self.state.lock().overflowed
    }

    /// Body bytes received from downstream so far.
    pub fn bytes_read(&self) -> u64 {
        self.state.lock().read
    }

    /// Count the gRPC messages of the downstream body from now on.
    pub fn count_grpc_messages(&self) {
        self.state.lock().grpc.get_or_insert_with(Default::default);
    }

    /// gRPC messages received from downstream so far (0 unless counting).
    pub fn grpc_messages(&self) -> u64 {
        self.state.lock().grpc.map_or(0, |g| g.messages())
    }

    /// When the downstream body ended, if it has.
    pub fn finished_at(&self) -> Option<tokio::time::Instant> {
        self.state.lock().ended_at
    }

    /// The whole body, once the downstream body has ended, if it fitted the
    /// replay buffer (request mirroring copies it then).
    pub fn buffered(&self) -> Option<Bytes> {
        let s = self.state.lock();
        if s.overflowed || !s.ended {
            return None;
        }
        let mut b = bytes::BytesMut::with_capacity(s.buffered);
        for f in &s.frames {
            b.extend_from_slice(f);
        }
        Some(b.freeze())
    }

    /// Resolves once the downstream body has been read completely (the
    /// route timeout starts then, as in Envoy).
    pub async fn finished(&self) {
        let mut rx = self.done.clone();
        let _ = rx.wait_for(|d| *d).await;
    }
}

impl ReplayBody {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut s = self.state.lock();
        if s.generation != self.generation {
            return Poll::Ready(Some(Err(BodyError::Superseded)));
        }
        if self.pos < s.frames.len() {
            let f = s.frames[self.pos].clone();
            self.pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(f))));
        }
        if s.ended {
            if !self.trailers_sent
                && let Some(t) = s.trailers.clone()
            {
                self.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            return Poll::Ready(None);
        }
        let Some(src) = s.source.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(src).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.ended = true;
                s.source = None;
                s.ended_at = Some(tokio::time::Instant::now());
                s.done.send_replace(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    s.read += data.len() as u64;
                    if let Some(g) = s.grpc.as_mut() {
                        g.feed(&data);
                    }
                    if !s.overflowed {
                        if s.buffered + data.len() > s.limit {
                            s.overflowed = true;
                            s.frames = Vec::new();
                            s.buffered = 0;
                        } else {
                            s.buffered += data.len();
                            s.frames.push(data.clone());
                        }
                    }
                    self.pos = s.frames.len();
                    // A client that stops at the announced length never
                    // polls for the end: note it now (the route timeout
                    // starts and mirrors copy the body then).
                    if s.source
                        .as_ref()
                        .is_some_and(http_body::Body::is_end_stream)
                    {
                        s.ended = true;
                        s.source = None;
                        s.ended_at = Some(tokio::time::Instant::now());
                        s.done.send_replace(true);
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        s.trailers = Some(t.clone());
                        self.trailers_sent = true;
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Poll::Ready(Some(Ok(Frame::data(Bytes::new()))))
                }
            },
        }
    }

    fn is_end(&self) -> bool {
        let s = self.state.lock();
        s.generation == self.generation
            && s.ended
            && self.pos >= s.frames.len()
            && (self.trailers_sent || s.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        let s = self.state.lock();
        if s.ended {
            return SizeHint::with_exact(
                s.buffered.saturating_sub(
                    s.frames[..self.pos.min(s.frames.len())]
                        .iter()
                        .map(Bytes::len)
                        .sum::<usize>(),
                ) as u64,
            );
        }
        match &s.source {
            Some(src) => {
                let h = src.size_hint();
                let rest: u64 = s.frames[self.pos.min(s.frames.len())..]
                    .iter()
                    .map(|b| b.len() as u64)
                    .sum();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + rest);
                if let Some(u) = h.upper() {
                    out.set_upper(u + rest);
                }
                out
            }
            None => SizeHint::default(),
        }
    }
}
