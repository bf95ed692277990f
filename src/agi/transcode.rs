//! The engine's float audio as the bytes of the files Asterisk plays: `.ulaw` (8 kHz G.711
//! µ-law) and `.sln16` (16 kHz signed 16-bit little-endian).
//!
//! The resampler and µ-law encoder here are private stand-ins for the crate's shared audio
//! path (`crate::audio::resample::resample_all`, `crate::audio::g711::ulaw_encode`); each of
//! the two public functions is the single place to switch over.

use anyhow::{Context, Result};
use rubato::{FftFixedIn, Resampler};

/// File formats Asterisk's `format_pcm` / `format_sln` read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Ulaw,
    Sln16,
}

impl FileFormat {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "ulaw" => Ok(FileFormat::Ulaw),
            "sln16" => Ok(FileFormat::Sln16),
            other => anyhow::bail!("file format must be ulaw or sln16, not '{other}'"),
        }
    }

    /// The extension Asterisk probes for; STREAM FILE gets the name without it.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Ulaw => "ulaw",
            FileFormat::Sln16 => "sln16",
        }
    }

    pub fn sample_rate(self) -> u32 {
        match self {
            FileFormat::Ulaw => 8000,
            FileFormat::Sln16 => 16000,
        }
    }

    pub fn bytes_per_sample(self) -> usize {
        match self {
            FileFormat::Ulaw => 1,
            FileFormat::Sln16 => 2,
        }
    }

    /// Encodes mono float samples at `rate` into this format.
    pub fn encode(self, samples: &[f32], rate: u32) -> Result<Vec<u8>> {
        match self {
            FileFormat::Ulaw => to_ulaw_8k(samples, rate),
            FileFormat::Sln16 => to_sln16(samples, rate),
        }
    }
}

/// 8 kHz µ-law bytes, one per sample.
pub fn to_ulaw_8k(samples: &[f32], rate: u32) -> Result<Vec<u8>> {
    let narrow = resample_all(samples, rate, 8000)?;
    Ok(narrow
        .iter()
        .map(|&s| audio_codec_algorithms::encode_ulaw(to_i16(s)))
        .collect())
}

/// 16 kHz signed 16-bit little-endian bytes.
pub fn to_sln16(samples: &[f32], rate: u32) -> Result<Vec<u8>> {
    let wide = resample_all(samples, rate, 16000)?;
    Ok(wide.iter().flat_map(|&s| to_i16(s).to_le_bytes()).collect())
}

fn to_i16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// Resamples a whole clip (band-limited FFT resampler), output aligned with the input and
/// `len * to / from` samples long.
pub fn resample_all(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    const CHUNK: usize = 1024;
    let mut resampler = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1)
        .with_context(|| format!("cannot resample {from} Hz to {to} Hz"))?;
    let delay = resampler.output_delay();
    let wanted = (samples.len() as u64 * to as u64 / from as u64) as usize;
    let mut out = Vec::with_capacity(wanted + delay + CHUNK);
    let mut input = samples.chunks(CHUNK);
    // Feed the clip, then silence until the delayed output is complete.
    while out.len() < wanted + delay {
        let block: Vec<f32> = match input.next() {
            Some(c) => {
                let mut c = c.to_vec();
                c.resize(CHUNK, 0.0);
                c
            }
            None => vec![0.0; CHUNK],
        };
        let produced = resampler.process(&[block], None).context("resampling failed")?;
        out.extend_from_slice(&produced[0]);
    }
    Ok(out[delay..delay + wanted].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, rate: u32, secs: f32, amp: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    /// Amplitude of `freq` in `x` (single-bin DFT).
    fn level(x: &[f32], rate: u32, freq: f32) -> f32 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (i, &s) in x.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * freq as f64 * i as f64 / rate as f64;
            re += s as f64 * ph.cos();
            im += s as f64 * ph.sin();
        }
        (2.0 * (re * re + im * im).sqrt() / x.len() as f64) as f32
    }

    #[test]
    fn resampling_keeps_length_and_tone_and_removes_alias() {
        let x = tone(1000.0, 24000, 0.5, 0.5);
        let y = resample_all(&x, 24000, 8000).unwrap();
        assert_eq!(y.len(), 4000);
        let mid = &y[400..3600];
        assert!((level(mid, 8000, 1000.0) - 0.5).abs() < 0.02);
        // 6 kHz cannot exist at 8 kHz: it must be filtered, not folded to 2 kHz.
        let hi = resample_all(&tone(6000.0, 24000, 0.5, 0.5), 24000, 8000).unwrap();
        assert!(level(&hi[400..3600], 8000, 2000.0) < 0.01);
    }

    #[test]
    fn ulaw_silence_and_length() {
        let bytes = to_ulaw_8k(&vec![0.0; 2400], 24000).unwrap();
        assert_eq!(bytes.len(), 800);
        assert!(bytes.iter().all(|&b| b == 0xFF), "µ-law silence is 0xFF");
    }

    #[test]
    fn sln16_is_little_endian_at_16k() {
        let bytes = to_sln16(&tone(500.0, 24000, 0.1, 0.5), 24000).unwrap();
        assert_eq!(bytes.len(), 1600 * 2);
        let samples: Vec<f32> = bytes
            .chunks(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32767.0)
            .collect();
        assert!((level(&samples[200..1400], 16000, 500.0) - 0.5).abs() < 0.02);
    }

    #[test]
    fn unknown_format_is_named() {
        let err = FileFormat::parse("mp3").unwrap_err();
        assert!(err.to_string().contains("mp3"));
    }
}
