//! An HTTP/2 CONNECT stream as a byte stream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Read buffer size used by [`copy_bidirectional`] for the TCP side.
const COPY_BUF: usize = 64 * 1024;
/// Reads at least this large are sent without copying.
const ZERO_COPY_MIN: usize = 16 * 1024;

/// Something kept alive as long as the stream (e.g. a pool slot).
pub(crate) type StreamGuard = Arc<dyn Send + Sync>;

/// One tunnelled byte stream (`AsyncRead + AsyncWrite`). Dropping it before
/// both sides ended resets the HTTP/2 stream.
pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Bytes received but not yet handed out.
    buf: Bytes,
    /// True once `END_STREAM` was sent.
    write_closed: bool,
    _guard: Option<StreamGuard>,
}

impl std::fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Stream")
            .field("write_closed", &self.write_closed)
            .finish_non_exhaustive()
    }
}

impl H2Stream {
    pub(crate) fn new(
        send: SendStream<Bytes>,
        recv: RecvStream,
        guard: Option<StreamGuard>,
    ) -> Self {
        Self {
            send,
            recv,
            buf: Bytes::new(),
            write_closed: false,
            _guard: guard,
        }
    }

    /// Aborts the stream with `RST_STREAM(reason)`.
    pub fn reset(&mut self, reason: Reason) {
        self.send.send_reset(reason);
    }

    fn poll_next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        loop {
            return match ready!(self.recv.poll_data(cx)) {
                None => Poll::Ready(Ok(Bytes::new())),
                Some(Ok(b)) if b.is_empty() => continue,
                Some(Ok(b)) => {
                    let _ = self.recv.flow_control().release_capacity(b.len());
                    Poll::Ready(Ok(b))
                }
                Some(Err(e)) => match e.reason() {
                    Some(Reason::NO_ERROR) | Some(Reason::CANCEL) => Poll::Ready(Ok(Bytes::new())),
                    _ => Poll::Ready(Err(h2_to_io(e))),
                },
            };
        }
    }

    fn poll_reset_error<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let err = match ready!(self.send.poll_reset(cx)) {
            Ok(Reason::NO_ERROR) | Ok(Reason::CANCEL) | Ok(Reason::STREAM_CLOSED) => {
                io::ErrorKind::BrokenPipe.into()
            }
            Ok(reason) => io::Error::other(h2::Error::from(reason)),
            Err(e) => h2_to_io(e),
        };
        Poll::Ready(Err(err))
    }

    fn close_write(&mut self) -> io::Result<()> {
        if self.write_closed {
            return Ok(());
        }
        self.write_closed = true;
        match self.send.send_data(Bytes::new(), true) {
            Ok(()) => Ok(()),
            // Peer already reset or closed: nothing left to half-close.
            Err(e) if e.reason() == Some(Reason::NO_ERROR) => Ok(()),
            Err(e) => Err(h2_to_io(e)),
        }
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.buf.is_empty() {
            self.buf = ready!(self.poll_next_chunk(cx))?;
        }
        let n = out.remaining().min(self.buf.len());
        out.put_slice(&self.buf.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        loop {
            return match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    self.send
                        .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .map_err(h2_to_io)?;
                    Poll::Ready(Ok(n))
                }
                Some(Err(e)) => Poll::Ready(Err(h2_to_io(e))),
                None => self.poll_reset_error(cx),
            };
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.close_write())
    }
}

fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io()
            .unwrap_or_else(|| io::Error::other("h2 I/O error"))
    } else {
        io::Error::other(e)
    }
}

/// Pumps bytes both ways between `io` (typically a `TcpStream`) and `h2`
/// until both directions reached EOF, propagating half-closes. Returns
/// `(bytes io→h2, bytes h2→io)`. Data read from `io` is handed to HTTP/2
/// without an extra copy.
///
/// Like TCP: when the peer has gone away for writing (stream reset or
/// closed) the `io→h2` direction stops, but what the peer already sent is
/// still delivered to `io`. An error reading `io` or writing to it, or a
/// real stream error, aborts both directions (the stream is reset).
pub async fn copy_bidirectional<T>(io: T, h2: H2Stream) -> io::Result<(u64, u64)>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let H2Stream {
        mut send,
        mut recv,
        buf,
        write_closed,
        _guard: _keep_slot,
    } = h2;
    let mut send_side = SendSide {
        send: &mut send,
        closed: write_closed,
    };
    let upstream = async {
        let mut total = 0u64;
        let mut chunk = BytesMut::with_capacity(COPY_BUF);
        loop {
            if chunk.capacity() < COPY_BUF / 4 {
                chunk.reserve(COPY_BUF);
            }
            let n = rd.read_buf(&mut chunk).await?;
            if n == 0 {
                // The peer may already be gone: nothing left to half-close.
                let _ = send_side.finish();
                return Ok::<u64, io::Error>(total);
            }
            total += n as u64;
            // Large reads are handed over without copying; small ones are
            // copied so a 256 KiB buffer is not pinned by a few bytes.
            let mut data = if n >= ZERO_COPY_MIN {
                chunk.split().freeze()
            } else {
                let d = Bytes::copy_from_slice(&chunk);
                chunk.clear();
                d
            };
            if std::future::poll_fn(|cx| send_side.poll_send(cx, &mut data))
                .await
                .is_err()
            {
                // Peer stopped reading: like EPIPE, stop this direction only.
                return Ok(total);
            }
        }
    };
    let downstream = async {
        let mut total = 0u64;
        if !buf.is_empty() {
            wr.write_all(&buf).await?;
            total += buf.len() as u64;
        }
        while let Some(chunk) = recv.data().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) if matches!(e.reason(), Some(Reason::NO_ERROR) | Some(Reason::CANCEL)) => {
                    break;
                }
                Err(e) => return Err(h2_to_io(e)),
            };
            let _ = recv.flow_control().release_capacity(chunk.len());
            wr.write_all(&chunk).await?;
            total += chunk.len() as u64;
        }
        wr.shutdown().await?;
        Ok(total)
    };
    tokio::pin!(upstream, downstream);
    let (mut up, mut down) = (None, None);
    while up.is_none() || down.is_none() {
        tokio::select! {
            r = &mut upstream, if up.is_none() => up = Some(r?),
            r = &mut downstream, if down.is_none() => down = Some(r?),
        }
    }
    Ok((up.unwrap_or(0), down.unwrap_or(0)))
}

struct SendSide<'a> {
    send: &'a mut SendStream<Bytes>,
    closed: bool,
}

impl SendSide<'_> {
    fn poll_send(&mut self, cx: &mut Context<'_>, data: &mut Bytes) -> Poll<io::Result<()>> {
        while !data.is_empty() {
            self.send.reserve_capacity(data.len());
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let chunk = data.split_to(n.min(data.len()));
                    self.send.send_data(chunk, false).map_err(h2_to_io)?;
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => {
                    let reason = ready!(self.send.poll_reset(cx)).map_err(h2_to_io)?;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        format!("HBONE stream reset by peer: {reason:?}"),
                    )));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn finish(&mut self) -> io::Result<()> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        match self.send.send_data(Bytes::new(), true) {
            Ok(()) => Ok(()),
            Err(e) if e.reason() == Some(Reason::NO_ERROR) => Ok(()),
            Err(e) => Err(h2_to_io(e)),
        }
    }
}
