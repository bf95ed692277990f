//! The whole path of one utterance: engine floats → call rate → level/fade → 20 ms frames.
//! One pipeline per utterance, fed every engine chunk in order, so the resampler and the
//! limiter run continuously across chunk seams.

use anyhow::Result;

use super::frames::Framer;
use super::resample::StreamResampler;
use super::shaping::Shaper;
use crate::config::AudioConfig;

pub struct FramePipeline {
    resampler: StreamResampler,
    shaper: Shaper,
    framer: Framer,
}

impl FramePipeline {
    pub fn new(engine_rate: u32, call_rate: u32, audio: &AudioConfig) -> Result<Self> {
        Ok(Self {
            resampler: StreamResampler::new(engine_rate, call_rate)?,
            shaper: Shaper::new(audio.peak_dbfs, audio.fade_out_ms, call_rate)?,
            framer: Framer::new(call_rate)?,
        })
    }

    /// The rate frames come out at.
    pub fn rate(&self) -> u32 {
        self.resampler.output_rate()
    }

    /// Feeds an engine chunk; returns the frames completed so far.
    pub fn push(&mut self, chunk: &[f32]) -> Result<Vec<Vec<i16>>> {
        let resampled = self.resampler.process(chunk)?;
        let shaped = self.shaper.process(&resampled);
        Ok(self.framer.push(&shaped))
    }

    /// Ends the utterance: the remaining frames, faded out, the last padded with silence.
    pub fn finish(&mut self) -> Result<Vec<Vec<i16>>> {
        let resampled = self.resampler.finish()?;
        let mut shaped = self.shaper.process(&resampled);
        shaped.extend(self.shaper.finish());
        let mut frames = self.framer.push(&shaped);
        frames.extend(self.framer.finish());
        Ok(frames)
    }
}

/// Runs a whole utterance through the pipeline, returning its samples at the call rate
/// (padded to whole frames).
pub fn render(samples: &[f32], engine_rate: u32, call_rate: u32, audio: &AudioConfig) -> Result<Vec<i16>> {
    let mut p = FramePipeline::new(engine_rate, call_rate, audio)?;
    let mut frames = p.push(samples)?;
    frames.extend(p.finish()?);
    Ok(frames.concat())
}
