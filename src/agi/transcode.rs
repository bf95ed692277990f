//! The engine's float audio as the bytes of the files Asterisk plays: `.ulaw` (8 kHz G.711
//! µ-law) and `.sln16` (16 kHz signed 16-bit little-endian).
//!
//! Files go through the same path as AudioSocket frames (`crate::audio::render`: resampling,
//! peak limit and end fade from `[audio]`), so both modes sound alike.

use anyhow::Result;

use crate::audio::{g711, render};
use crate::config::AudioConfig;

/// File formats Asterisk's `format_pcm` / `format_sln` read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Ulaw,
    Sln16,
}

impl From<crate::config::SpoolFormat> for FileFormat {
    fn from(format: crate::config::SpoolFormat) -> Self {
        match format {
            crate::config::SpoolFormat::Ulaw => FileFormat::Ulaw,
            crate::config::SpoolFormat::Sln16 => FileFormat::Sln16,
        }
    }
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

    /// Encodes mono float samples at `rate` into this format, shaped as `audio` asks.
    pub fn encode(self, samples: &[f32], rate: u32, audio: &AudioConfig) -> Result<Vec<u8>> {
        let to = self.sample_rate();
        let mut pcm = render(samples, rate, to, audio)?;
        // A file needs no frame padding: keep just the speech, so sentences follow each
        // other without added silence.
        let speech = (samples.len() as u64 * to as u64).div_ceil(rate.max(1) as u64) as usize;
        pcm.truncate(speech);
        Ok(match self {
            FileFormat::Ulaw => g711::ulaw_encode_all(&pcm),
            FileFormat::Sln16 => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
        })
    }
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

    /// Amplitude of `freq` in `x` (single-bin DFT), in i16 units.
    fn level(x: &[i16], rate: u32, freq: f32) -> f32 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (i, &s) in x.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * freq as f64 * i as f64 / rate as f64;
            re += s as f64 * ph.cos();
            im += s as f64 * ph.sin();
        }
        (2.0 * (re * re + im * im).sqrt() / x.len() as f64) as f32
    }

    fn audio(peak_dbfs: f64, fade_out_ms: u32) -> AudioConfig {
        AudioConfig { peak_dbfs, fade_out_ms }
    }

    #[test]
    fn ulaw_silence_and_length() {
        let bytes = FileFormat::Ulaw
            .encode(&vec![0.0; 2400], 24000, &audio(-3.0, 10))
            .unwrap();
        assert_eq!(bytes.len(), 800);
        assert!(bytes.iter().all(|&b| b == 0xFF), "µ-law silence is 0xFF");
    }

    #[test]
    fn files_hold_exactly_the_speech_without_frame_padding() {
        // 130 ms: six and a half 20 ms frames.
        let speech = tone(440.0, 24000, 0.13, 0.5);
        assert_eq!(
            FileFormat::Ulaw.encode(&speech, 24000, &audio(-3.0, 10)).unwrap().len(),
            1040
        );
        assert_eq!(
            FileFormat::Sln16
                .encode(&speech, 24000, &audio(-3.0, 10))
                .unwrap()
                .len(),
            2080 * 2
        );
    }

    #[test]
    fn sln16_is_little_endian_at_16k_with_the_configured_gain() {
        let bytes = FileFormat::Sln16
            .encode(&tone(500.0, 24000, 0.1, 0.5), 24000, &audio(-6.0, 10))
            .unwrap();
        assert_eq!(bytes.len(), 1600 * 2);
        let samples: Vec<i16> = bytes.chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        // Half scale in, engine full scale put at -6 dBFS.
        let want = 0.5 * 32767.0 * 10f32.powf(-6.0 / 20.0);
        let got = level(&samples[200..1400], 16000, 500.0);
        assert!((got - want).abs() < want * 0.03, "level {got}, want {want}");
    }

    #[test]
    fn loud_input_is_limited_and_faded_at_the_end() {
        let pcm_of = |bytes: Vec<u8>| g711::ulaw_decode_all(&bytes);
        let loud = tone(700.0, 24000, 0.2, 1.4);
        let pcm = pcm_of(FileFormat::Ulaw.encode(&loud, 24000, &audio(-3.0, 10)).unwrap());
        assert_eq!(pcm.len(), 1600);
        let limit = 32767.0 * 10f32.powf(-3.0 / 20.0);
        let peak = pcm.iter().map(|&s| (s as f32).abs()).fold(0.0, f32::max);
        // µ-law steps are ~3 % near the top of the range.
        assert!(peak <= limit * 1.04, "peak {peak} above limit {limit}");
        let end_peak = pcm[1590..].iter().map(|&s| (s as f32).abs()).fold(0.0, f32::max);
        assert!(
            end_peak < limit * 0.15,
            "last 10 samples must be faded, peak {end_peak}"
        );
        let middle_peak = pcm[700..900].iter().map(|&s| (s as f32).abs()).fold(0.0, f32::max);
        assert!(middle_peak > limit * 0.9, "middle must stay loud, peak {middle_peak}");
    }

    #[test]
    fn bad_audio_settings_are_refused() {
        let err = FileFormat::Ulaw.encode(&[0.0; 10], 24000, &audio(6.0, 10)).unwrap_err();
        assert!(err.to_string().contains("peak_dbfs"), "{err}");
    }

    #[test]
    fn unknown_format_is_named() {
        let err = FileFormat::parse("mp3").unwrap_err();
        assert!(err.to_string().contains("mp3"));
    }
}
