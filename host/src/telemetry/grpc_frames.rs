//! Counts gRPC messages in a body as it streams: each message is a 5-byte
//! prefix (compressed flag, big-endian length) and that many bytes. The
//! counts feed `istio_request_messages_total` and
//! `istio_response_messages_total`. A message counts once its prefix is
//! complete.

/// The state of one direction's message framing.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcFrames {
    prefix: [u8; 5],
    have: usize,
    body_left: u64,
    messages: u64,
}

impl GrpcFrames {
    /// Messages started so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Feeds the next chunk of the body.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.body_left > 0 {
                let skip = usize::try_from(self.body_left)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.body_left -= skip as u64;
                data = &data[skip..];
                continue;
            }
            let take = (5 - self.have).min(data.len());
            self.prefix[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            data = &data[take..];
            if self.have == 5 {
                self.have = 0;
                self.messages += 1;
                self.body_left = u64::from(u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GrpcFrames;

    fn msg(body: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn counts_messages_across_any_chunking() {
        let mut stream = msg(b"hello");
        stream.extend(msg(b""));
        stream.extend(msg(&[7; 300]));
        for chunk in [1, 2, 3, 5, 7, 64, 1000] {
            let mut f = GrpcFrames::default();
            for c in stream.chunks(chunk) {
                f.feed(c);
            }
            assert_eq!(f.messages(), 3, "chunks of {chunk}");
        }
        let mut f = GrpcFrames::default();
        f.feed(&stream[..3]);
        assert_eq!(f.messages(), 0, "an incomplete prefix is not a message yet");
    }
}
