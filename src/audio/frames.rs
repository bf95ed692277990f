//! Slicing a sample stream into 20 ms frames, the packet size telephony expects.

use anyhow::{ensure, Result};
use bytes::{BufMut, Bytes, BytesMut};

/// Frame duration on every call.
pub const FRAME_MS: u32 = 20;

/// Samples in one 20 ms frame at `rate` (160 at 8 kHz, 882 at 44.1 kHz).
pub fn frame_samples(rate: u32) -> usize {
    (rate as usize * FRAME_MS as usize) / 1000
}

/// Little-endian 16-bit PCM ("slin"), as AudioSocket and `.sln` files carry it.
pub fn slin_bytes(samples: &[i16]) -> Bytes {
    let mut out = BytesMut::with_capacity(samples.len() * 2);
    for &s in samples {
        out.put_i16_le(s);
    }
    out.freeze()
}

/// Reads little-endian 16-bit PCM; a trailing odd byte is an error.
pub fn slin_samples(bytes: &[u8]) -> Result<Vec<i16>> {
    ensure!(
        bytes.len().is_multiple_of(2),
        "slin data has an odd length ({} bytes)",
        bytes.len()
    );
    Ok(bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// Cuts a stream into whole frames; the last partial frame is padded with silence.
pub struct Framer {
    frame_len: usize,
    buf: Vec<i16>,
}

impl Framer {
    pub fn new(rate: u32) -> Result<Self> {
        let frame_len = frame_samples(rate);
        ensure!(
            frame_len > 0 && (rate as usize * FRAME_MS as usize).is_multiple_of(1000),
            "{rate} Hz has no whole number of samples in {FRAME_MS} ms"
        );
        Ok(Self {
            frame_len,
            buf: Vec::new(),
        })
    }

    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Adds samples; returns every frame completed by them.
    pub fn push(&mut self, samples: &[i16]) -> Vec<Vec<i16>> {
        self.buf.extend_from_slice(samples);
        let whole = self.buf.len() / self.frame_len * self.frame_len;
        let frames = self.buf[..whole].chunks(self.frame_len).map(<[i16]>::to_vec).collect();
        self.buf.drain(..whole);
        frames
    }

    /// The remaining samples padded to a whole frame, if any remain.
    pub fn finish(&mut self) -> Option<Vec<i16>> {
        if self.buf.is_empty() {
            return None;
        }
        let mut last = std::mem::take(&mut self.buf);
        last.resize(self.frame_len, 0);
        Some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_per_rate() {
        assert_eq!(frame_samples(8000) * 2, 320);
        assert_eq!(frame_samples(16000) * 2, 640);
        assert_eq!(frame_samples(44100) * 2, 1764);
        assert_eq!(frame_samples(48000) * 2, 1920);
        assert!(Framer::new(8001).is_err());
        assert!(Framer::new(0).is_err());
    }

    #[test]
    fn frames_are_whole_and_last_is_padded() {
        let mut f = Framer::new(8000).unwrap();
        let input: Vec<i16> = (1..=400).collect();
        let mut frames = f.push(&input[..100]);
        assert!(frames.is_empty());
        frames.extend(f.push(&input[100..]));
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], input[..160].to_vec());
        assert_eq!(frames[1], input[160..320].to_vec());
        let last = f.finish().unwrap();
        assert_eq!(last.len(), 160);
        assert_eq!(&last[..80], &input[320..]);
        assert!(last[80..].iter().all(|&s| s == 0));
        assert!(f.finish().is_none());
    }

    #[test]
    fn slin_is_little_endian() {
        let bytes = slin_bytes(&[0x0102, -2]);
        assert_eq!(&bytes[..], &[0x02, 0x01, 0xFE, 0xFF]);
        assert_eq!(slin_samples(&bytes).unwrap(), vec![0x0102, -2]);
        assert!(slin_samples(&[1, 2, 3]).is_err());
    }
}
