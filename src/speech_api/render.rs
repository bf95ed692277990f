//! From the engine's 24 kHz float speech to the bytes the speech API answers with: whole
//! files (WAV 24 kHz, WAV 8 kHz, µ-law, sln16, Ogg Opus) and raw streams (L16, s16le, µ-law).
//!
//! Every segment goes through the call path's [`FramePipeline`] (resampling, peak limit, end
//! fade), so the API sounds like a call. Segments after the first also fade in, and a pause is
//! plain silence, so segments joined one after another never click.

use anyhow::{bail, Result};

use crate::audio::{g711, opus, wav, FramePipeline};
use crate::config::AudioConfig;

/// Fade-in at the start of every segment after the first.
const FADE_IN_MS: usize = 5;

/// A whole-file answer of `POST /v1/tts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Wav24,
    Wav8,
    Ulaw,
    Sln16,
    Opus,
}

impl FileFormat {
    pub const NAMES: &'static str = "wav24, wav8, ulaw, sln16, opus";

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "wav24" | "wav" => Self::Wav24,
            "wav8" => Self::Wav8,
            "ulaw" => Self::Ulaw,
            "sln16" => Self::Sln16,
            "opus" => Self::Opus,
            other => bail!("format must be one of {}, not '{other}'", Self::NAMES),
        })
    }

    /// The rate speech is rendered at for this format.
    pub fn rate(self) -> u32 {
        match self {
            Self::Wav24 | Self::Opus => 24000,
            Self::Wav8 | Self::Ulaw => 8000,
            Self::Sln16 => 16000,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Wav24 | Self::Wav8 => "audio/wav",
            Self::Ulaw => "audio/basic",
            Self::Sln16 => "audio/x-sln16",
            Self::Opus => "audio/ogg; codecs=opus",
        }
    }

    /// The file holding `pcm` (rendered at [`Self::rate`]).
    pub fn encode(self, pcm: &[i16]) -> Result<Vec<u8>> {
        Ok(match self {
            Self::Wav24 | Self::Wav8 => wav::wav_bytes(self.rate(), pcm)?,
            Self::Ulaw => g711::ulaw_encode_all(pcm),
            Self::Sln16 => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
            Self::Opus => {
                let samples: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
                opus::encode(&samples, self.rate(), opus::BITRATE)?
            }
        })
    }
}

/// A streamed answer: raw samples as they are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// 16-bit big-endian at 24 kHz, as `audio/L16` is defined (RFC 2586).
    L16,
    /// 16-bit little-endian at 24 kHz (OpenAI's `pcm`).
    Pcm,
    /// G.711 µ-law at 8 kHz.
    Ulaw,
}

impl StreamFormat {
    pub const NAMES: &'static str = "l16, pcm, ulaw";

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "l16" => Self::L16,
            "pcm" => Self::Pcm,
            "ulaw" => Self::Ulaw,
            other => bail!("format must be one of {}, not '{other}'", Self::NAMES),
        })
    }

    pub fn rate(self) -> u32 {
        match self {
            Self::L16 | Self::Pcm => 24000,
            Self::Ulaw => 8000,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::L16 => "audio/L16; rate=24000; channels=1",
            Self::Pcm => "audio/pcm",
            Self::Ulaw => "audio/PCMU; rate=8000",
        }
    }

    pub fn encode(self, pcm: &[i16]) -> Vec<u8> {
        match self {
            Self::L16 => pcm.iter().flat_map(|s| s.to_be_bytes()).collect(),
            Self::Pcm => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
            Self::Ulaw => g711::ulaw_encode_all(pcm),
        }
    }
}

/// Renders a sequence of segments and pauses at one output rate.
pub struct Renderer {
    engine_rate: u32,
    rate: u32,
    audio: AudioConfig,
    pipeline: Option<FramePipeline>,
    segments: usize,
    /// Engine samples of the current segment still to fade in.
    fade_left: usize,
}

impl Renderer {
    pub fn new(engine_rate: u32, rate: u32, audio: &AudioConfig) -> Self {
        Self {
            engine_rate,
            rate,
            audio: audio.clone(),
            pipeline: None,
            segments: 0,
            fade_left: 0,
        }
    }

    /// Starts a segment of speech.
    pub fn begin(&mut self) -> Result<()> {
        self.pipeline = Some(FramePipeline::new(self.engine_rate, self.rate, &self.audio)?);
        self.fade_left = if self.segments > 0 {
            FADE_IN_MS * self.engine_rate as usize / 1000
        } else {
            0
        };
        self.segments += 1;
        Ok(())
    }

    /// Feeds engine samples of the current segment; returns what is ready at the output rate.
    pub fn push(&mut self, chunk: &[f32]) -> Result<Vec<i16>> {
        let Some(pipeline) = self.pipeline.as_mut() else {
            bail!("audio outside a segment");
        };
        let total = FADE_IN_MS * self.engine_rate as usize / 1000;
        let mut chunk = chunk.to_vec();
        for x in chunk.iter_mut() {
            if self.fade_left == 0 {
                break;
            }
            *x *= (total - self.fade_left) as f32 / total as f32;
            self.fade_left -= 1;
        }
        Ok(pipeline.push(&chunk)?.concat())
    }

    /// Ends the current segment: the rest of it, faded out and padded to a whole frame.
    pub fn end(&mut self) -> Result<Vec<i16>> {
        match self.pipeline.take() {
            Some(mut p) => Ok(p.finish()?.concat()),
            None => Ok(Vec::new()),
        }
    }

    /// A pause.
    pub fn silence(&self, ms: u64) -> Vec<i16> {
        vec![0; (ms * self.rate as u64 / 1000) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize) -> Vec<f32> {
        (0..n).map(|i| 0.8 * (i as f32 * 0.1).sin()).collect()
    }

    #[test]
    fn segments_join_without_jumps() {
        let mut r = Renderer::new(24000, 24000, &AudioConfig::default());
        let mut out = Vec::new();
        for _ in 0..3 {
            r.begin().unwrap();
            // A segment that starts at full level: the fade-in must soften it.
            let loud: Vec<f32> = tone(2400).iter().map(|x| x.signum() * 0.9).collect();
            out.extend(r.push(&loud).unwrap());
            out.extend(r.end().unwrap());
            out.extend(r.silence(50));
        }
        let biggest_step = out.windows(2).map(|w| (w[1] as i32 - w[0] as i32).abs()).max().unwrap();
        // Inside a segment a square wave jumps by 2 x 0.9 x peak; at the seams the fades keep
        // steps far smaller than a jump from silence to full level would be.
        let seams: Vec<usize> = (1..3).map(|k| k * (2400 + 1200)).collect();
        for s in seams {
            let around = &out[s.saturating_sub(5)..s + 5];
            let step = around
                .windows(2)
                .map(|w| (w[1] as i32 - w[0] as i32).abs())
                .max()
                .unwrap();
            assert!(
                step < 5000,
                "click at seam {s}: step {step} (largest in speech {biggest_step})"
            );
        }
    }

    #[test]
    fn formats_parse_and_name_the_bad_one() {
        assert_eq!(FileFormat::parse("wav8").unwrap().rate(), 8000);
        assert!(FileFormat::parse("mp3").unwrap_err().to_string().contains("'mp3'"));
        assert_eq!(StreamFormat::parse("ulaw").unwrap().rate(), 8000);
        assert_eq!(StreamFormat::L16.encode(&[0x0102]), vec![1, 2]);
        assert_eq!(StreamFormat::Pcm.encode(&[0x0102]), vec![2, 1]);
    }
}
