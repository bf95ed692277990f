//! The AudioSocket wire format: `kind (u8) | length (u16 big-endian) | payload`.
//! A pure codec: it never touches a socket, so it can be tested byte by byte.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};
use uuid::Uuid;

pub const KIND_HANGUP: u8 = 0x00;
pub const KIND_UUID: u8 = 0x01;
pub const KIND_DTMF: u8 = 0x03;
pub const KIND_SLIN: u8 = 0x10;
pub const KIND_ERROR: u8 = 0xff;

const HEADER_LEN: usize = 3;

/// Audio kinds and their sample rates (16-bit little-endian mono PCM each).
const AUDIO_KINDS: [(u8, u32); 9] = [
    (0x10, 8_000),
    (0x11, 12_000),
    (0x12, 16_000),
    (0x13, 24_000),
    (0x14, 32_000),
    (0x15, 44_100),
    (0x16, 48_000),
    (0x17, 96_000),
    (0x18, 192_000),
];

/// Sample rate carried by an audio kind.
pub fn rate_of_kind(kind: u8) -> Option<u32> {
    AUDIO_KINDS.iter().find(|(k, _)| *k == kind).map(|(_, r)| *r)
}

/// Audio kind for a sample rate.
pub fn kind_of_rate(rate: u32) -> Option<u8> {
    AUDIO_KINDS.iter().find(|(_, r)| *r == rate).map(|(k, _)| *k)
}

/// Default payload limit: one second of 16 kHz audio. Asterisk sends 20 ms frames
/// (7 680 bytes even at 192 kHz), so anything this large is a broken peer.
pub const DEFAULT_MAX_PAYLOAD: usize = 32_000;

/// One AudioSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hangup,
    Uuid(Uuid),
    Dtmf(char),
    /// 16-bit little-endian PCM at `rate`.
    Audio {
        rate: u32,
        pcm: Bytes,
    },
    Error(Option<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    #[error("UUID message with {0} bytes (expected 16)")]
    UuidLength(usize),
    #[error("DTMF message with {0} bytes (expected 1)")]
    DtmfLength(usize),
    #[error("DTMF message with invalid digit {0:#04x}")]
    DtmfDigit(u8),
    #[error("hangup message with a {0}-byte payload")]
    HangupLength(usize),
    #[error("zero-length audio message (kind {0:#04x})")]
    EmptyAudio(u8),
    #[error("audio message with an odd length ({0} bytes)")]
    OddAudio(usize),
    #[error("{kind:#04x} message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { kind: u8, len: usize, max: usize },
    #[error("no AudioSocket kind for {0} Hz audio")]
    UnsupportedRate(u32),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

fn valid_dtmf(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')
}

/// Decodes and encodes AudioSocket messages.
#[derive(Debug, Clone)]
pub struct AudioSocketCodec {
    max_payload: usize,
}

impl Default for AudioSocketCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl AudioSocketCodec {
    /// `max_payload`: largest payload accepted in either direction (at most 65 535, what the
    /// header can say).
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload: max_payload.min(u16::MAX as usize),
        }
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Checks a header's length against its kind before waiting for the payload, so a bad
    /// message fails at once instead of after a stall.
    fn check_header(&self, kind: u8, len: usize) -> Result<(), CodecError> {
        match kind {
            KIND_HANGUP if len != 0 => Err(CodecError::HangupLength(len)),
            KIND_UUID if len != 16 => Err(CodecError::UuidLength(len)),
            KIND_DTMF if len != 1 => Err(CodecError::DtmfLength(len)),
            KIND_HANGUP | KIND_UUID | KIND_DTMF => Ok(()),
            KIND_ERROR if len > self.max_payload => Err(CodecError::TooLarge {
                kind,
                len,
                max: self.max_payload,
            }),
            KIND_ERROR => Ok(()),
            k if rate_of_kind(k).is_some() => {
                if len == 0 {
                    Err(CodecError::EmptyAudio(k))
                } else if !len.is_multiple_of(2) {
                    Err(CodecError::OddAudio(len))
                } else if len > self.max_payload {
                    Err(CodecError::TooLarge {
                        kind,
                        len,
                        max: self.max_payload,
                    })
                } else {
                    Ok(())
                }
            }
            k => Err(CodecError::UnknownKind(k)),
        }
    }
}

impl Decoder for AudioSocketCodec {
    type Item = Message;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = src[0];
        let len = u16::from_be_bytes([src[1], src[2]]) as usize;
        self.check_header(kind, len)?;
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len).freeze();
        let message = match kind {
            KIND_HANGUP => Message::Hangup,
            KIND_UUID => Message::Uuid(Uuid::from_slice(&payload).map_err(|_| CodecError::UuidLength(len))?),
            KIND_DTMF => {
                let c = payload[0] as char;
                if !valid_dtmf(c) {
                    return Err(CodecError::DtmfDigit(payload[0]));
                }
                Message::Dtmf(c)
            }
            KIND_ERROR => Message::Error(payload.first().copied()),
            k => Message::Audio {
                rate: rate_of_kind(k).ok_or(CodecError::UnknownKind(k))?,
                pcm: payload,
            },
        };
        Ok(Some(message))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        match self.decode(src)? {
            Some(message) => Ok(Some(message)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("connection closed inside a message ({} bytes pending)", src.len()),
            ))),
        }
    }
}

impl Encoder<Message> for AudioSocketCodec {
    type Error = CodecError;

    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        let (kind, payload): (u8, Bytes) = match message {
            Message::Hangup => (KIND_HANGUP, Bytes::new()),
            Message::Uuid(uuid) => (KIND_UUID, Bytes::copy_from_slice(uuid.as_bytes())),
            Message::Dtmf(c) => {
                if !valid_dtmf(c) {
                    return Err(CodecError::DtmfDigit(c as u32 as u8));
                }
                (KIND_DTMF, Bytes::copy_from_slice(&[c as u8]))
            }
            Message::Audio { rate, pcm } => (kind_of_rate(rate).ok_or(CodecError::UnsupportedRate(rate))?, pcm),
            Message::Error(code) => (
                KIND_ERROR,
                code.map(|c| Bytes::copy_from_slice(&[c])).unwrap_or_default(),
            ),
        };
        self.check_header(kind, payload.len())?;
        dst.reserve(HEADER_LEN + payload.len());
        dst.put_u8(kind);
        dst.put_u16(payload.len() as u16);
        dst.put_slice(&payload);
        Ok(())
    }
}

/// Encodes one message into its own buffer (for a single whole write).
pub fn encode_message(codec: &mut AudioSocketCodec, message: Message) -> Result<BytesMut, CodecError> {
    let mut buf = BytesMut::new();
    codec.encode(message, &mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, CodecError> {
        let mut codec = AudioSocketCodec::default();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = codec.decode(&mut buf)? {
            out.push(m);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    fn encode(message: Message) -> Vec<u8> {
        encode_message(&mut AudioSocketCodec::default(), message)
            .unwrap()
            .to_vec()
    }

    const UUID_TEXT: &str = "40325ec2-5efd-4bd3-805f-53576e581d13";

    #[test]
    fn uuid_message_is_rfc_byte_order() {
        let uuid = Uuid::parse_str(UUID_TEXT).unwrap();
        let mut wire = vec![0x01, 0x00, 0x10];
        wire.extend([
            0x40, 0x32, 0x5e, 0xc2, 0x5e, 0xfd, 0x4b, 0xd3, 0x80, 0x5f, 0x53, 0x57, 0x6e, 0x58, 0x1d, 0x13,
        ]);
        assert_eq!(encode(Message::Uuid(uuid)), wire);
        assert_eq!(decode_all(&wire).unwrap(), vec![Message::Uuid(uuid)]);
    }

    #[test]
    fn hangup_dtmf_and_audio_bytes() {
        assert_eq!(encode(Message::Hangup), vec![0x00, 0x00, 0x00]);
        assert_eq!(encode(Message::Dtmf('#')), vec![0x03, 0x00, 0x01, b'#']);
        let pcm = Bytes::from(vec![0x34, 0x12, 0xff, 0xff]);
        assert_eq!(
            encode(Message::Audio {
                rate: 8000,
                pcm: pcm.clone()
            }),
            vec![0x10, 0x00, 0x04, 0x34, 0x12, 0xff, 0xff]
        );
        assert_eq!(
            encode(Message::Audio {
                rate: 12000,
                pcm: pcm.clone()
            })[0],
            0x11
        );
        assert_eq!(
            encode(Message::Audio {
                rate: 16000,
                pcm: pcm.clone()
            })[0],
            0x12
        );
        assert_eq!(encode(Message::Audio { rate: 192000, pcm })[0], 0x18);
        assert_eq!(encode(Message::Error(Some(1))), vec![0xff, 0x00, 0x01, 0x01]);
        assert_eq!(encode(Message::Error(None)), vec![0xff, 0x00, 0x00]);
    }

    #[test]
    fn a_320_byte_frame_has_length_0x0140() {
        let wire = encode(Message::Audio {
            rate: 8000,
            pcm: Bytes::from(vec![0u8; 320]),
        });
        assert_eq!(&wire[..3], &[0x10, 0x01, 0x40]);
        assert_eq!(wire.len(), 323);
    }

    #[test]
    fn decodes_a_stream_split_anywhere() {
        let uuid = Uuid::parse_str(UUID_TEXT).unwrap();
        let messages = vec![
            Message::Uuid(uuid),
            Message::Audio {
                rate: 16000,
                pcm: Bytes::from((0..640u32).map(|i| i as u8).collect::<Vec<_>>()),
            },
            Message::Dtmf('7'),
            Message::Dtmf('D'),
            Message::Hangup,
        ];
        let wire: Vec<u8> = messages.iter().flat_map(|m| encode(m.clone())).collect();
        assert_eq!(decode_all(&wire).unwrap(), messages);
        for split in [1, 2, 3, 5, 18, 19, 20, 21, 300, wire.len() - 1] {
            let mut codec = AudioSocketCodec::default();
            let mut buf = BytesMut::from(&wire[..split]);
            let mut out = Vec::new();
            while let Some(m) = codec.decode(&mut buf).unwrap() {
                out.push(m);
            }
            buf.extend_from_slice(&wire[split..]);
            while let Some(m) = codec.decode(&mut buf).unwrap() {
                out.push(m);
            }
            assert_eq!(out, messages, "split at {split}");
        }
    }

    #[test]
    fn bad_messages_are_errors() {
        let err = |bytes: &[u8]| decode_all(bytes).unwrap_err();
        assert!(matches!(err(&[0x02, 0x00, 0x00]), CodecError::UnknownKind(0x02)));
        assert!(matches!(err(&[0x19, 0x00, 0x02, 0, 0]), CodecError::UnknownKind(0x19)));
        assert!(matches!(err(&[0x10, 0x00, 0x00]), CodecError::EmptyAudio(0x10)));
        assert!(matches!(err(&[0x10, 0x00, 0x03, 1, 2, 3]), CodecError::OddAudio(3)));
        assert!(matches!(err(&[0x01, 0x00, 0x0f]), CodecError::UuidLength(15)));
        assert!(matches!(
            err(&[0x03, 0x00, 0x02, b'1', b'2']),
            CodecError::DtmfLength(2)
        ));
        assert!(matches!(err(&[0x03, 0x00, 0x01, b'x']), CodecError::DtmfDigit(b'x')));
        assert!(matches!(err(&[0x00, 0x00, 0x01, 0]), CodecError::HangupLength(1)));
        // Oversized: refused from the header alone, without waiting for the payload.
        assert!(matches!(
            err(&[0x10, 0x7d, 0x02]),
            CodecError::TooLarge {
                len: 32002,
                max: 32000,
                ..
            }
        ));
        let mut small = AudioSocketCodec::new(640);
        let mut buf = BytesMut::from(&[0x12, 0x02, 0x82][..]);
        assert!(matches!(
            small.decode(&mut buf),
            Err(CodecError::TooLarge { len: 642, .. })
        ));
    }

    #[test]
    fn truncated_message_at_eof_is_an_error() {
        let mut codec = AudioSocketCodec::default();
        let mut buf = BytesMut::from(&[0x10, 0x01, 0x40, 0, 0][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(matches!(codec.decode_eof(&mut buf), Err(CodecError::Io(_))));
        let mut empty = BytesMut::new();
        assert!(codec.decode_eof(&mut empty).unwrap().is_none());
    }

    #[test]
    fn encoder_refuses_what_the_wire_cannot_carry() {
        let mut codec = AudioSocketCodec::default();
        let mut buf = BytesMut::new();
        let audio = |rate, n: usize| Message::Audio {
            rate,
            pcm: Bytes::from(vec![0u8; n]),
        };
        assert!(matches!(
            codec.encode(audio(22050, 2), &mut buf),
            Err(CodecError::UnsupportedRate(22050))
        ));
        assert!(matches!(
            codec.encode(audio(8000, 0), &mut buf),
            Err(CodecError::EmptyAudio(_))
        ));
        assert!(matches!(
            codec.encode(audio(8000, 3), &mut buf),
            Err(CodecError::OddAudio(3))
        ));
        assert!(matches!(
            codec.encode(audio(8000, 40000), &mut buf),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            codec.encode(Message::Dtmf('x'), &mut buf),
            Err(CodecError::DtmfDigit(_))
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn kinds_and_rates() {
        assert_eq!(rate_of_kind(0x11), Some(12_000));
        assert_eq!(rate_of_kind(0x12), Some(16_000));
        assert_eq!(rate_of_kind(0x15), Some(44_100));
        assert_eq!(rate_of_kind(0x02), None);
        assert_eq!(kind_of_rate(8000), Some(0x10));
        assert_eq!(kind_of_rate(11025), None);
    }
}
