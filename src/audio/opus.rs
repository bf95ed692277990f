//! Ogg Opus files (RFC 7845) of mono speech, through libopus (`audiopus`) and the `ogg` crate:
//! what the prompt cache stores and what the HTTP API returns for `opus`.
//!
//! The encoder runs at the engine's 24 kHz (an Opus native rate, so nothing is resampled)
//! in 20 ms frames, tuned for fidelity to its input (`Application::Audio`, voice signal) at
//! [`BITRATE`] bits per second. The header's pre-skip removes the encoder's look-ahead and the
//! last page's granule position cuts the padding, so a decoded file has exactly as many
//! samples as were encoded.

use std::io::Cursor;

use anyhow::{anyhow, bail, ensure, Context, Result};
use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate, Signal};
use ogg::writing::PacketWriteEndInfo;

/// Bits per second of stored speech: near-transparent for 24 kHz mono speech (libopus'
/// fullband voice sweet spot is 24-40 kb/s), 4 KB per second of audio.
pub const BITRATE: i32 = 32_000;
/// Opus packet duration.
const FRAME_MS: usize = 20;
/// Granule positions always count 48 kHz samples.
const GRANULE_RATE: u64 = 48_000;
/// The stream serial of the files written here (one logical stream per file).
const SERIAL: u32 = 0x7874_7473;

fn opus_rate(rate: u32) -> Result<SampleRate> {
    SampleRate::try_from(rate as i32).map_err(|_| anyhow!("Opus cannot run at {rate} Hz (8, 12, 16, 24 or 48 kHz)"))
}

/// Encodes mono samples in [-1, 1] at `rate` (an Opus rate) into a complete Ogg Opus file.
pub fn encode(samples: &[f32], rate: u32, bitrate: i32) -> Result<Vec<u8>> {
    let mut encoder = Encoder::new(opus_rate(rate)?, Channels::Mono, Application::Audio).context("Opus encoder")?;
    encoder
        .set_bitrate(Bitrate::BitsPerSecond(bitrate))
        .context("Opus bitrate")?;
    encoder.set_signal(Signal::Voice).context("Opus signal type")?;
    let lookahead = encoder.lookahead().context("Opus look-ahead")? as usize;
    let scale = GRANULE_RATE / rate as u64;
    let pre_skip = (lookahead as u64 * scale) as u16;

    let mut out = ogg::writing::PacketWriter::new(Cursor::new(Vec::new()));
    out.write_packet(opus_head(pre_skip, rate), SERIAL, PacketWriteEndInfo::EndPage, 0)?;
    out.write_packet(opus_tags(), SERIAL, PacketWriteEndInfo::EndPage, 0)?;

    // Zeros after the speech push the encoder's look-ahead out; the granule trims them.
    let frame = rate as usize * FRAME_MS / 1000;
    let mut padded = samples.to_vec();
    let total = samples.len() + lookahead;
    padded.resize(total.div_ceil(frame).max(1) * frame, 0.0);
    let end_granule = pre_skip as u64 + samples.len() as u64 * scale;
    let frames = padded.len() / frame;
    let mut packet = vec![0u8; 4000];
    for (i, pcm) in padded.chunks_exact(frame).enumerate() {
        let n = encoder.encode_float(pcm, &mut packet).context("Opus encode")?;
        let last = i + 1 == frames;
        let granule = if last {
            end_granule
        } else {
            ((i + 1) * frame) as u64 * scale
        };
        let end = if last {
            PacketWriteEndInfo::EndStream
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        out.write_packet(packet[..n].to_vec(), SERIAL, end, granule)?;
    }
    Ok(out.into_inner().into_inner())
}

/// The identification header: version 1, mono, pre-skip, the input rate, no gain, family 0.
fn opus_head(pre_skip: u16, input_rate: u32) -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1);
    h.push(1);
    h.extend_from_slice(&pre_skip.to_le_bytes());
    h.extend_from_slice(&input_rate.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// The comment header: the vendor string and no comments.
fn opus_tags() -> Vec<u8> {
    let vendor = concat!("xttsd ", env!("CARGO_PKG_VERSION"));
    let mut t = b"OpusTags".to_vec();
    t.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    t.extend_from_slice(vendor.as_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t
}

/// Decodes an Ogg Opus file chunk by chunk, so a long file starts playing after its first
/// packets rather than after all of them.
pub struct OpusReader {
    packets: ogg::reading::PacketReader<Cursor<Vec<u8>>>,
    decoder: Decoder,
    rate: u32,
    /// Output samples still to drop at the start (the encoder's look-ahead).
    skip: usize,
    /// Pre-skip in 48 kHz samples, for the end trim.
    pre_skip: u64,
    /// Output samples handed out so far.
    produced: u64,
    done: bool,
    buf: Vec<f32>,
}

impl OpusReader {
    /// Reads the headers of `file`; the audio comes out at `rate` (an Opus rate).
    pub fn new(file: Vec<u8>, rate: u32) -> Result<Self> {
        let mut packets = ogg::reading::PacketReader::new(Cursor::new(file));
        let head = packets
            .read_packet()
            .context("Ogg page")?
            .ok_or_else(|| anyhow!("empty Ogg file"))?;
        let head = &head.data;
        ensure!(
            head.len() >= 19 && &head[..8] == b"OpusHead",
            "not an Ogg Opus file (no OpusHead)"
        );
        ensure!(head[9] == 1, "Opus file has {} channels, expected mono", head[9]);
        let pre_skip = u16::from_le_bytes([head[10], head[11]]) as u64;
        let tags = packets
            .read_packet()
            .context("Ogg page")?
            .ok_or_else(|| anyhow!("Ogg Opus file ends after its first header"))?;
        ensure!(tags.data.starts_with(b"OpusTags"), "Ogg Opus file has no OpusTags");
        Ok(Self {
            packets,
            decoder: Decoder::new(opus_rate(rate)?, Channels::Mono).context("Opus decoder")?,
            rate,
            skip: (pre_skip * rate as u64 / GRANULE_RATE) as usize,
            pre_skip,
            produced: 0,
            done: false,
            buf: vec![0.0; 5760],
        })
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The next decoded samples, at least `min_samples` of them unless the file ends first;
    /// None at the end.
    pub fn next_chunk(&mut self, min_samples: usize) -> Result<Option<Vec<f32>>> {
        let mut out = Vec::new();
        while !self.done && out.len() < min_samples.max(1) {
            let Some(packet) = self.packets.read_packet().context("Ogg page")? else {
                self.done = true;
                break;
            };
            let data = audiopus::packet::Packet::try_from(&packet.data[..]).context("Opus packet")?;
            let signals = audiopus::MutSignals::try_from(&mut self.buf[..]).context("Opus buffer")?;
            let n = self
                .decoder
                .decode_float(Some(data), signals, false)
                .context("Opus decode")?;
            let mut decoded = &self.buf[..n];
            let drop = self.skip.min(decoded.len());
            self.skip -= drop;
            decoded = &decoded[drop..];
            if packet.last_in_stream() {
                // The last granule position says where the audio really ends.
                let end = packet.absgp_page().saturating_sub(self.pre_skip) * self.rate as u64 / GRANULE_RATE;
                let room = end.saturating_sub(self.produced + out.len() as u64) as usize;
                decoded = &decoded[..decoded.len().min(room)];
                self.done = true;
            }
            out.extend_from_slice(decoded);
        }
        self.produced += out.len() as u64;
        Ok((!out.is_empty()).then_some(out))
    }

    /// Everything left in the file.
    pub fn read_all(mut self) -> Result<Vec<f32>> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk(usize::MAX)? {
            all.extend(chunk);
        }
        Ok(all)
    }
}

/// Decodes a whole Ogg Opus file at `rate`.
pub fn decode(file: Vec<u8>, rate: u32) -> Result<Vec<f32>> {
    OpusReader::new(file, rate)?.read_all()
}

/// Signal-to-noise ratio in dB of `decoded` against `reference`, over their common length.
pub fn snr_db(reference: &[f32], decoded: &[f32]) -> f64 {
    let n = reference.len().min(decoded.len());
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (r, d) in reference[..n].iter().zip(&decoded[..n]) {
        signal += (*r as f64).powi(2);
        noise += (*r as f64 - *d as f64).powi(2);
    }
    if noise == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (signal / noise).log10()
}

/// Refuses rates Opus does not run at, naming them.
pub fn check_rate(rate: u32) -> Result<()> {
    if opus_rate(rate).is_err() {
        bail!("Opus cannot run at {rate} Hz (8, 12, 16, 24 or 48 kHz)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech_fixture() -> Vec<f32> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ref_24k.wav");
        let (rate, samples) = crate::audio::wav::read_wav(&path).unwrap();
        assert_eq!(rate, 24000);
        samples.iter().map(|&s| s as f32 / 32768.0).collect()
    }

    #[test]
    fn round_trip_keeps_the_length_and_the_speech() {
        let speech = speech_fixture();
        let file = encode(&speech, 24000, BITRATE).unwrap();
        assert_eq!(&file[..4], b"OggS");
        let secs = speech.len() as f64 / 24000.0;
        let kbps = file.len() as f64 * 8.0 / secs / 1000.0;
        assert!((20.0..40.0).contains(&kbps), "{kbps:.1} kb/s at a {BITRATE} b/s target");
        let decoded = decode(file, 24000).unwrap();
        assert_eq!(decoded.len(), speech.len(), "pre-skip and end trim restore the length");
        // Opus is perceptual, so waveform SNR is modest; it must still be aligned speech,
        // not a shifted or garbled copy (a one-sample shift already drops it below 10 dB).
        let snr = snr_db(&speech, &decoded);
        eprintln!("Opus {BITRATE} b/s on {secs:.1} s of speech: {kbps:.1} kb/s, SNR {snr:.1} dB");
        assert!(snr > 12.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn chunked_reading_equals_whole_and_short_inputs_survive() {
        let speech = speech_fixture();
        let file = encode(&speech[..24000], 24000, BITRATE).unwrap();
        let whole = decode(file.clone(), 24000).unwrap();
        let mut reader = OpusReader::new(file, 24000).unwrap();
        let mut parts = Vec::new();
        while let Some(chunk) = reader.next_chunk(1000).unwrap() {
            assert!(!chunk.is_empty());
            parts.extend(chunk);
        }
        assert_eq!(parts, whole);
        for n in [0, 1, 479, 480, 481] {
            let decoded = decode(encode(&speech[..n], 24000, BITRATE).unwrap(), 24000).unwrap();
            assert_eq!(decoded.len(), n);
        }
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(encode(&[0.0; 10], 44100, BITRATE)
            .unwrap_err()
            .to_string()
            .contains("44100"));
        assert!(OpusReader::new(b"not ogg at all".to_vec(), 24000).is_err());
        let file = encode(&[0.0; 960], 24000, BITRATE).unwrap();
        assert!(OpusReader::new(file[..30].to_vec(), 24000).is_err());
    }
}
