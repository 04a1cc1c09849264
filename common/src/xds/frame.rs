//! Length-prefixed JSON frames: a 4-byte big-endian length, then that many
//! bytes of UTF-8 JSON.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest frame accepted (a full resync of a large mesh fits comfortably).
pub const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// Frame encoding/decoding errors.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a frame larger than [`MAX_FRAME_BYTES`].
    #[error(
        "push frame of {0} bytes exceeds the {MAX_FRAME_BYTES} byte limit; is the peer speaking this protocol?"
    )]
    TooLarge(usize),
    /// The payload is not the JSON we expect.
    #[error("malformed push frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// Serialize `msg` into one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Bytes, FrameError> {
    let json = serde_json::to_vec(msg)?;
    Ok(encode_raw(&json))
}

/// Frame already-serialized JSON.
pub fn encode_raw(json: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + json.len());
    buf.put_u32(json.len() as u32);
    buf.put_slice(json);
    buf.freeze()
}

/// Incremental decoder: feed body chunks, take complete frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    /// Append received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Take the next complete frame's payload, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            self.buf.reserve(4 + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Take and parse the next complete frame.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match self.next_frame()? {
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
            None => Ok(None),
        }
    }

    /// Bytes buffered but not yet a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_joined_frames() {
        let a = encode(&serde_json::json!({"a": 1})).unwrap();
        let b = encode(&serde_json::json!({"b": [1, 2]})).unwrap();
        let mut all = a.to_vec();
        all.extend_from_slice(&b);
        let mut d = FrameDecoder::default();
        // feed one byte at a time
        let mut out = Vec::new();
        for byte in all {
            d.push(&[byte]);
            while let Some(v) = d.next_message::<serde_json::Value>().unwrap() {
                out.push(v);
            }
        }
        assert_eq!(
            out,
            vec![
                serde_json::json!({"a": 1}),
                serde_json::json!({"b": [1, 2]})
            ]
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn oversized_frame_rejected() {
        let mut d = FrameDecoder::default();
        d.push(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge(_))));
    }
}
