//! Level shaping for telephony: float speech to i16 with headroom, and a fade at the end.
//!
//! G.711 clips at ±32 635 and sounds harsh near full scale, so speech is scaled by a fixed
//! gain that puts the engine's full scale (its vocoder ends in tanh, so |x| ≤ 1) at
//! `peak_dbfs`. Resampling can overshoot that by a little; a look-ahead-free limiter
//! catches it: when a sample would exceed the limit its gain drops to exactly the limit at
//! once, then recovers smoothly (about 50 ms), so there is no hard clipping and no pumping
//! on ordinary speech, which never reaches the limit. The state runs across chunk seams,
//! so no discontinuity is introduced there.
//!
//! The fade-out needs to know where speech ends, which streaming only learns at the end:
//! the last `fade_out_ms` of samples are held back until more audio arrives or `finish`.

use anyhow::{ensure, Result};

/// Time for the limiter's gain to recover most of the way after a peak.
const RELEASE_MS: f32 = 50.0;

pub struct Shaper {
    /// Fixed gain putting engine full scale at the peak level.
    gain: f32,
    /// Largest magnitude allowed out, as a fraction of full scale.
    limit: f32,
    /// Current limiter gain (1 = no reduction).
    limiter: f32,
    /// Per-sample recovery factor of the limiter.
    release: f32,
    /// Samples held back for the fade-out.
    tail: Vec<f32>,
    fade_len: usize,
}

/// Converts a float sample in [-1, 1] to i16, saturating outside.
pub fn to_i16(x: f32) -> i16 {
    (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

impl Shaper {
    pub fn new(peak_dbfs: f64, fade_out_ms: u32, rate: u32) -> Result<Self> {
        ensure!(
            peak_dbfs.is_finite() && (-60.0..=0.0).contains(&peak_dbfs),
            "audio.peak_dbfs must be between -60 and 0 dBFS, got {peak_dbfs}"
        );
        ensure!(rate > 0, "sample rate must be positive");
        let limit = 10f64.powf(peak_dbfs / 20.0) as f32;
        let release_samples = RELEASE_MS * rate as f32 / 1000.0;
        Ok(Self {
            gain: limit,
            limit,
            limiter: 1.0,
            release: (-1.0 / release_samples).exp(),
            tail: Vec::new(),
            fade_len: (fade_out_ms as u64 * rate as u64 / 1000) as usize,
        })
    }

    fn level(&mut self, x: f32) -> f32 {
        let y = x * self.gain;
        // Recover towards unity, then clamp the gain so this sample stays within the limit.
        self.limiter = 1.0 - (1.0 - self.limiter) * self.release;
        let wanted = y.abs() * self.limiter;
        if wanted > self.limit {
            self.limiter = self.limit / y.abs();
        }
        y * self.limiter
    }

    /// Shapes `input`; returns all but the last `fade_out_ms` seen so far.
    pub fn process(&mut self, input: &[f32]) -> Vec<i16> {
        for &x in input {
            let y = self.level(x);
            self.tail.push(y);
        }
        let ready = self.tail.len().saturating_sub(self.fade_len);
        self.tail.drain(..ready).map(to_i16).collect()
    }

    /// Returns the held-back end of the speech, faded to silence.
    pub fn finish(&mut self) -> Vec<i16> {
        let n = self.tail.len();
        self.tail
            .drain(..)
            .enumerate()
            .map(|(i, y)| to_i16(y * (n - i) as f32 / (n + 1) as f32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scale_lands_at_peak_level() {
        let mut s = Shaper::new(-3.0, 0, 8000).unwrap();
        let out = s.process(&[1.0, -1.0, 0.5]);
        let expect = (32767.0 * 10f64.powf(-3.0 / 20.0)).round() as i16;
        assert_eq!(out, vec![expect, -expect, (expect as f32 / 2.0).round() as i16]);
    }

    #[test]
    fn overshoot_is_limited_without_clipping_flat() {
        let mut s = Shaper::new(-6.0, 0, 8000).unwrap();
        let limit = 32767.0 * 10f32.powf(-6.0 / 20.0);
        let input: Vec<f32> = (0..800).map(|i| 1.3 * (i as f32 * 0.3).sin()).collect();
        let out = s.process(&input);
        let peak = out.iter().map(|v| (*v as f32).abs()).fold(0.0, f32::max);
        assert!(peak <= limit + 1.0, "peak {peak} above limit {limit}");
        assert!(peak > limit * 0.95, "limiter pulled the level far down: {peak}");
    }

    #[test]
    fn fade_out_holds_back_and_ramps_to_zero() {
        let mut s = Shaper::new(0.0, 10, 8000).unwrap();
        let out = s.process(&vec![0.5; 200]);
        assert_eq!(out.len(), 120, "10 ms at 8 kHz must be held back");
        let tail = s.finish();
        assert_eq!(tail.len(), 80);
        assert!(tail.windows(2).all(|w| w[1] <= w[0]), "fade must fall monotonically");
        assert!(tail[79].abs() < 300, "fade must end near zero, got {}", tail[79]);
        assert!(
            (tail[0] as i32 - out[119] as i32).abs() < 300,
            "fade must start where speech is"
        );
    }

    #[test]
    fn chunking_does_not_change_output() {
        let input: Vec<f32> = (0..3000).map(|i| 1.2 * (i as f32 * 0.05).sin()).collect();
        let mut a = Shaper::new(-3.0, 10, 24000).unwrap();
        let mut whole = a.process(&input);
        whole.extend(a.finish());
        let mut b = Shaper::new(-3.0, 10, 24000).unwrap();
        let mut parts = Vec::new();
        for chunk in input.chunks(37) {
            parts.extend(b.process(chunk));
        }
        parts.extend(b.finish());
        assert_eq!(whole, parts);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Shaper::new(3.0, 10, 8000).is_err());
        assert!(Shaper::new(f64::NAN, 10, 8000).is_err());
        assert!(Shaper::new(-3.0, 10, 0).is_err());
    }

    #[test]
    fn to_i16_saturates() {
        assert_eq!(to_i16(2.0), 32767);
        assert_eq!(to_i16(-2.0), -32768);
        assert_eq!(to_i16(0.0), 0);
    }
}
