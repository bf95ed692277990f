//! Reads whole AudioSocket messages from a byte stream. Once part of a message has arrived
//! the rest must follow within `payload_timeout` (a stalled sender is an error), while
//! the wait between messages is unbounded: Asterisk sends nothing when the caller is silent.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::codec::Decoder;

use super::codec::{AudioSocketCodec, CodecError, Message};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("message incomplete after {0:?} ({1} bytes received)")]
    Stalled(Duration, usize),
}

pub struct MessageReader<R> {
    io: R,
    codec: AudioSocketCodec,
    buf: BytesMut,
    payload_timeout: Duration,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    pub fn new(io: R, codec: AudioSocketCodec, payload_timeout: Duration) -> Self {
        Self {
            io,
            codec,
            buf: BytesMut::with_capacity(4096),
            payload_timeout,
        }
    }

    /// The next message; `Ok(None)` on a clean end of stream between messages. A stream
    /// that ends inside a message is an error. Cancel-safe: bytes read stay buffered.
    pub async fn next(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            if let Some(message) = self.codec.decode(&mut self.buf)? {
                return Ok(Some(message));
            }
            let pending = self.buf.len();
            let read = self.io.read_buf(&mut self.buf);
            let n = if pending == 0 {
                read.await.map_err(CodecError::Io)?
            } else {
                tokio::time::timeout(self.payload_timeout, read)
                    .await
                    .map_err(|_| ReadError::Stalled(self.payload_timeout, pending))?
                    .map_err(CodecError::Io)?
            };
            if n == 0 {
                return Ok(self.codec.decode_eof(&mut self.buf)?);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_messages_and_detects_stalls() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        let mut reader = MessageReader::new(rx, AudioSocketCodec::default(), Duration::from_millis(50));
        tx.write_all(&[0x03, 0x00, 0x01, b'5', 0x10, 0x00]).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Some(Message::Dtmf('5')));
        // Half a header, then nothing: stalled.
        let err = reader.next().await.unwrap_err();
        assert!(matches!(err, ReadError::Stalled(_, 2)), "{err}");
    }

    #[tokio::test]
    async fn clean_and_truncated_ends() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        let mut reader = MessageReader::new(rx, AudioSocketCodec::default(), Duration::from_secs(5));
        tx.write_all(&[0x10, 0x00, 0x02, 1, 2]).await.unwrap();
        drop(tx);
        assert!(matches!(
            reader.next().await.unwrap(),
            Some(Message::Audio { rate: 8000, .. })
        ));
        assert_eq!(reader.next().await.unwrap(), None);

        let (mut tx, rx) = tokio::io::duplex(1024);
        let mut reader = MessageReader::new(rx, AudioSocketCodec::default(), Duration::from_secs(5));
        tx.write_all(&[0x10, 0x01, 0x40, 0, 0]).await.unwrap();
        drop(tx);
        assert!(reader.next().await.is_err());
    }
}
