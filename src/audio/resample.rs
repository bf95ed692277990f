//! Streaming sample-rate conversion from the engine's rate to a call's rate.
//!
//! A windowed-sinc resampler (rubato) with its cut-off just below the lower Nyquist
//! frequency, so speech energy above 4 kHz is removed before going to 8 kHz rather than
//! folded back into the band. The input is re-blocked into fixed chunks internally, so the
//! output depends only on the concatenated input, never on how it was split into pushes:
//! one `StreamResampler` lives for a whole utterance and engine chunk seams stay seamless.

use anyhow::{ensure, Context, Result};
use rubato::{Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction};

/// Length of the sinc filter in taps; long enough for ≥ 40 dB stop-band at the call rates.
const SINC_LEN: usize = 256;
/// Input frames per internal resampler call.
const CHUNK: usize = 256;
/// Largest rate accepted on either side (AudioSocket's highest kind is 192 kHz).
const MAX_RATE: u32 = 384_000;

/// Converts a mono stream from `from` Hz to `to` Hz, chunk by chunk.
pub struct StreamResampler {
    from: u32,
    to: u32,
    /// None when the rates are equal: samples pass through untouched.
    sinc: Option<SincFixedIn<f32>>,
    /// Input not yet handed to the resampler (less than one chunk).
    pending: Vec<f32>,
    /// Leading output samples still to drop: the filter's group delay.
    skip: usize,
    /// Input samples received so far.
    consumed: u64,
    /// Output samples returned so far.
    produced: u64,
    finished: bool,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self> {
        ensure!(
            (1..=MAX_RATE).contains(&from) && (1..=MAX_RATE).contains(&to),
            "sample rates must be between 1 and {MAX_RATE} Hz, got {from} -> {to}"
        );
        let sinc = if from == to {
            None
        } else {
            // Output instants fall on multiples of 1/(to/gcd) input samples, so with that
            // oversampling factor "nearest" picks exact filter phases (synchronous
            // resampling); for awkward ratios fall back to cubic interpolation.
            let phases = (to / gcd(from, to)) as usize;
            let (oversampling_factor, interpolation) = if phases <= 1024 {
                (phases, SincInterpolationType::Nearest)
            } else {
                (256, SincInterpolationType::Cubic)
            };
            let window = WindowFunction::BlackmanHarris2;
            let params = SincInterpolationParameters {
                sinc_len: SINC_LEN,
                f_cutoff: rubato::calculate_cutoff(SINC_LEN, window),
                oversampling_factor,
                interpolation,
                window,
            };
            let ratio = to as f64 / from as f64;
            let sinc = SincFixedIn::<f32>::new(ratio, 1.0, params, CHUNK, 1)
                .with_context(|| format!("creating a {from} -> {to} Hz resampler"))?;
            Some(sinc)
        };
        let skip = sinc.as_ref().map_or(0, |s| s.output_delay());
        Ok(Self {
            from,
            to,
            sinc,
            pending: Vec::new(),
            skip,
            consumed: 0,
            produced: 0,
            finished: false,
        })
    }

    pub fn input_rate(&self) -> u32 {
        self.from
    }

    pub fn output_rate(&self) -> u32 {
        self.to
    }

    /// Output samples the input so far corresponds to (rounded up).
    fn expected_output(&self) -> u64 {
        (self.consumed * self.to as u64).div_ceil(self.from as u64)
    }

    /// Runs every whole chunk waiting in `pending` through the filter.
    fn run_chunks(&mut self) -> Result<Vec<f32>> {
        let Some(sinc) = self.sinc.as_mut() else {
            return Ok(std::mem::take(&mut self.pending));
        };
        let mut out = Vec::new();
        let mut start = 0;
        while self.pending.len() - start >= CHUNK {
            let chunk = &self.pending[start..start + CHUNK];
            let mut result = sinc.process(&[chunk], None).context("resampling")?;
            let samples = std::mem::take(&mut result[0]);
            let dropped = self.skip.min(samples.len());
            self.skip -= dropped;
            out.extend_from_slice(&samples[dropped..]);
            start += CHUNK;
        }
        self.pending.drain(..start);
        Ok(out)
    }

    /// Feeds `input` and returns the output that is ready now.
    pub fn process(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        ensure!(!self.finished, "resampler already finished");
        self.consumed += input.len() as u64;
        self.pending.extend_from_slice(input);
        let out = self.run_chunks()?;
        self.produced += out.len() as u64;
        Ok(out)
    }

    /// Flushes the filter: returns the rest, so that the total output is exactly
    /// `ceil(input_len * to / from)` samples.
    pub fn finish(&mut self) -> Result<Vec<f32>> {
        ensure!(!self.finished, "resampler already finished");
        self.finished = true;
        let target = self.expected_output();
        let mut out = Vec::new();
        // Push silence until the delayed tail has come out; the bound only guards against
        // a filter that never produces.
        for _ in 0..64 {
            if self.produced + out.len() as u64 >= target {
                break;
            }
            self.pending
                .resize(self.pending.len().next_multiple_of(CHUNK).max(CHUNK), 0.0);
            out.extend(self.run_chunks()?);
        }
        ensure!(
            self.produced + out.len() as u64 >= target,
            "resampler produced too little output while flushing"
        );
        out.truncate((target - self.produced) as usize);
        self.produced += out.len() as u64;
        Ok(out)
    }
}

/// Resamples a whole signal at once (same output as streaming it).
pub fn resample_all(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    let mut rs = StreamResampler::new(from, to)?;
    let mut out = rs.process(samples)?;
    out.extend(rs.finish()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, secs: f64, amp: f32) -> Vec<f32> {
        let n = (rate as f64 * secs) as usize;
        (0..n)
            .map(|i| amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin() as f32)
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }

    #[test]
    fn tone_in_band_keeps_its_level() {
        for to in [8000, 12000, 16000, 48000] {
            let input = tone(1000.0, 24000, 1.0, 0.5);
            let out = resample_all(&input, 24000, to).unwrap();
            assert_eq!(out.len(), to as usize, "{to}");
            // Skip the edges, where the filter sees the start/end of the signal.
            let edge = to as usize / 20;
            let level = db(rms(&out[edge..out.len() - edge]) / rms(&input));
            assert!(level.abs() < 0.1, "1 kHz at {to} Hz changed by {level:.3} dB");
        }
    }

    #[test]
    fn tone_above_nyquist_is_removed() {
        let input = tone(6000.0, 24000, 1.0, 0.5);
        let out = resample_all(&input, 24000, 8000).unwrap();
        let edge = 400;
        let attenuation = db(rms(&out[edge..out.len() - edge]) / rms(&input));
        assert!(
            attenuation < -40.0,
            "6 kHz folded into 8 kHz output at {attenuation:.1} dB"
        );
    }

    #[test]
    fn output_does_not_depend_on_chunking() {
        let input: Vec<f32> = tone(440.0, 24000, 0.7, 0.3)
            .iter()
            .zip(tone(2900.0, 24000, 0.7, 0.2))
            .map(|(a, b)| a + b)
            .collect();
        for to in [8000, 16000, 44100] {
            let whole = resample_all(&input, 24000, to).unwrap();
            let mut rs = StreamResampler::new(24000, to).unwrap();
            let mut pieces = Vec::new();
            let sizes = [1, 7, 480, 1000, 3, 4410, 2, 959];
            let mut at = 0;
            let mut i = 0;
            while at < input.len() {
                let n = sizes[i % sizes.len()].min(input.len() - at);
                pieces.extend(rs.process(&input[at..at + n]).unwrap());
                at += n;
                i += 1;
            }
            pieces.extend(rs.finish().unwrap());
            assert_eq!(whole.len(), pieces.len(), "{to}");
            assert!(whole == pieces, "chunked output differs at {to} Hz");
        }
    }

    #[test]
    fn lengths_round_up() {
        assert_eq!(resample_all(&[0.1; 1], 24000, 8000).unwrap().len(), 1);
        assert_eq!(resample_all(&[0.1; 4], 24000, 8000).unwrap().len(), 2);
        assert_eq!(resample_all(&[], 24000, 8000).unwrap().len(), 0);
        assert_eq!(resample_all(&[0.1; 441], 24000, 44100).unwrap().len(), 811);
        assert_eq!(resample_all(&[0.25; 10], 8000, 8000).unwrap(), vec![0.25; 10]);
    }

    #[test]
    fn bad_rates_are_refused() {
        assert!(StreamResampler::new(0, 8000).is_err());
        assert!(StreamResampler::new(24000, 1_000_000).is_err());
        let mut rs = StreamResampler::new(24000, 8000).unwrap();
        rs.finish().unwrap();
        assert!(rs.process(&[0.0]).is_err());
    }
}
