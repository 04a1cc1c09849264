//! Protocol detection for service ports that declare no protocol (no
//! `appProtocol`, no known port-name prefix): Istio serves them as HTTP
//! when the client's first bytes are an HTTP/1.x request line or the
//! HTTP/2 preface, and as opaque TCP otherwise. Like Istio (whose
//! `protocolDetectionTimeout` is off by default), detection waits for the
//! client's first bytes: a server-first protocol on such a port must
//! declare its protocol (`tcp-*`).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest method token looked at before deciding it is not HTTP/1.
const MAX_METHOD: usize = 20;

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// An HTTP/1.x request line or the HTTP/2 preface.
    Http,
    /// Anything else (including a stream that ended before deciding).
    Tcp,
}

/// Classifies a prefix; None while it could still go either way.
pub fn classify(buf: &[u8]) -> Option<Detected> {
    if buf.is_empty() {
        return None;
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        // "PRI " is also an HTTP/1 method token; the full preface decides.
        return (n == H2_PREFACE.len()).then_some(Detected::Http);
    }
    // HTTP/1: an upper-case method token, then a space.
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'A'..=b'Z' | b'-' | b'_' if i < MAX_METHOD => {}
            b' ' if i > 0 => return Some(Detected::Http),
            _ => return Some(Detected::Tcp),
        }
    }
    None
}

/// Reads the stream's first bytes until [`classify`] decides (or the
/// stream ends). The bytes read are kept in the returned [`Rewind`].
pub async fn detect<S: AsyncRead + Unpin>(mut io: S) -> std::io::Result<(Detected, Rewind<S>)> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 64];
    let detected = loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            break Detected::Tcp;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(d) = classify(&buf) {
            break d;
        }
    };
    Ok((
        detected,
        Rewind {
            prefix: buf,
            pos: 0,
            inner: io,
        },
    ))
}

/// A stream that first replays the bytes detection consumed.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    /// A stream with nothing to replay.
    pub fn new(inner: S) -> Self {
        Rewind {
            prefix: Vec::new(),
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let rest = &self.prefix[self.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_prefixes() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Detected::Http));
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1"), Some(Detected::Http));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify(H2_PREFACE), Some(Detected::Http));
        // "PRI " without the rest of the preface is an HTTP/1 method.
        assert_eq!(classify(b"PRI / HTTP/1.1"), Some(Detected::Http));
        assert_eq!(classify(b"\x16\x03\x01\x02\x00"), Some(Detected::Tcp)); // TLS
        assert_eq!(
            classify(b"\x00\x00\x00\x08\x04\xd2\x16\x2f"),
            Some(Detected::Tcp)
        ); // PostgreSQL
        assert_eq!(classify(b"get / HTTP/1.1"), Some(Detected::Tcp));
        assert_eq!(classify(b" GET"), Some(Detected::Tcp));
        assert_eq!(classify(&[b'A'; 40]), Some(Detected::Tcp));
    }

    #[tokio::test]
    async fn detection_replays_what_it_read() {
        let (mut a, b) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            a.write_all(b"GE").await.unwrap();
            a.write_all(b"T /x HTTP/1.1\r\n\r\n").await.unwrap();
        });
        let (d, mut r) = detect(b).await.unwrap();
        assert_eq!(d, Detected::Http);
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET /x HTTP/1.1\r\n\r\n");
    }
}
