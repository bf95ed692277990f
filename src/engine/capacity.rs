//! What the engine can do per second, measured: the time of a decode step and of a prefill at
//! each batch size (at start, then as a running average of what it observes), and of the
//! vocoder per second of audio. Admission follows from it: a call is admitted only if every
//! admitted call still gets its audio in real time.

/// Audio codes per second of speech at speed 1 (22050 Hz / 1024-sample code stride).
pub const CODES_PER_SECOND: f64 = 22_050.0 / 1024.0;

/// Weight of a new observation in the running averages.
const SMOOTHING: f64 = 0.05;
/// Weight of a new observation of the vocoder's slowdown, which follows the load quickly.
const SLOWDOWN_SMOOTHING: f64 = 0.3;

/// How much slower than rehearsed the vocoder renders (sharing the cores with the decoder,
/// say): a running average of observed ratios, each clamped to 0.5-4 (one observation being
/// a forward or a few).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slowdown(f64);

impl Default for Slowdown {
    fn default() -> Self {
        Slowdown(1.0)
    }
}

impl Slowdown {
    /// The vocoder rendered `ratio` times slower than rehearsed (a ratio that is not finite
    /// and positive is ignored).
    pub fn observe(&mut self, ratio: f64) {
        if ratio.is_finite() && ratio > 0.0 {
            let ratio = ratio.clamp(0.5, 4.0);
            self.0 += SLOWDOWN_SMOOTHING * (ratio - self.0);
        }
    }

    pub fn get(&self) -> f64 {
        self.0
    }
}

/// Costs in seconds, per batch size from 1 to the decoder's slots.
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    step_s: Vec<f64>,
    prefill_s: Vec<f64>,
    /// Seconds of vocoder work per second of audio, per call: a running average of what it
    /// took in service.
    vocoder_s_per_audio_s: f64,
    /// The same over a sentence as rehearsed at start, and how much slower the vocoder
    /// renders in service than rehearsed (sharing the cores, say): their product reacts
    /// within a few renders, where the running average takes seconds.
    vocoder_rehearsed_s_per_audio_s: f64,
    vocoder_slowdown: Slowdown,
}

impl CostModel {
    /// Costs that grow linearly with the batch: `fixed + per_row * rows`.
    pub fn linear(max_batch: usize, step: (f64, f64), prefill: (f64, f64)) -> Self {
        let line = |(fixed, per_row): (f64, f64)| (1..=max_batch.max(1)).map(|b| fixed + per_row * b as f64).collect();
        Self {
            step_s: line(step),
            prefill_s: line(prefill),
            vocoder_s_per_audio_s: 0.0,
            vocoder_rehearsed_s_per_audio_s: 0.0,
            vocoder_slowdown: Slowdown::default(),
        }
    }

    /// Costs measured at some batch sizes (`(rows, seconds)`, any order), filled in between by
    /// straight lines and held flat beyond the ends.
    pub fn from_samples(max_batch: usize, steps: &[(usize, f64)], prefills: &[(usize, f64)]) -> Self {
        Self {
            step_s: interpolate(max_batch, steps),
            prefill_s: interpolate(max_batch, prefills),
            vocoder_s_per_audio_s: 0.0,
            vocoder_rehearsed_s_per_audio_s: 0.0,
            vocoder_slowdown: Slowdown::default(),
        }
    }

    /// The vocoder's cost per second of audio as rehearsed at start.
    pub fn with_vocoder(mut self, s_per_audio_s: f64) -> Self {
        self.vocoder_s_per_audio_s = s_per_audio_s.max(0.0);
        self.vocoder_rehearsed_s_per_audio_s = self.vocoder_s_per_audio_s;
        self
    }

    pub fn max_batch(&self) -> usize {
        self.step_s.len()
    }

    fn at(costs: &[f64], rows: usize) -> f64 {
        if rows == 0 {
            return 0.0;
        }
        costs[rows.min(costs.len()) - 1]
    }

    /// Seconds of one decode step of `rows` rows.
    pub fn step(&self, rows: usize) -> f64 {
        Self::at(&self.step_s, rows)
    }

    /// Seconds of one prefill of `rows` rows.
    pub fn prefill(&self, rows: usize) -> f64 {
        Self::at(&self.prefill_s, rows)
    }

    /// Seconds of vocoder work per second of one call's audio: the larger of the running
    /// average and the rehearsed cost at the vocoder's present slowdown. (Its busy share per
    /// call is no measure: a new call's vocoder works seconds ahead of its listener.)
    pub fn vocoder_s_per_audio_s(&self) -> f64 {
        self.vocoder_s_per_audio_s
            .max(self.vocoder_rehearsed_s_per_audio_s * self.vocoder_slowdown.get())
    }

    /// The vocoder rendered `ratio` times slower than rehearsed over its last stretch of work
    /// (a few forwards).
    pub fn observe_vocoder_slowdown(&mut self, ratio: f64) {
        self.vocoder_slowdown.observe(ratio);
    }

    /// How much slower than rehearsed the vocoder renders now.
    pub fn vocoder_slowdown(&self) -> f64 {
        self.vocoder_slowdown.get()
    }

    fn observe(costs: &mut [f64], rows: usize, secs: f64) {
        if rows == 0 || rows > costs.len() || !secs.is_finite() || secs < 0.0 {
            return;
        }
        let c = &mut costs[rows - 1];
        *c += SMOOTHING * (secs - *c);
    }

    /// A decode step of `rows` rows took `secs`.
    pub fn observe_step(&mut self, rows: usize, secs: f64) {
        Self::observe(&mut self.step_s, rows, secs);
    }

    /// A prefill of `rows` rows took `secs`.
    pub fn observe_prefill(&mut self, rows: usize, secs: f64) {
        Self::observe(&mut self.prefill_s, rows, secs);
    }

    /// The vocoder took `secs` for `audio_s` seconds of one call's audio.
    pub fn observe_vocoder(&mut self, secs: f64, audio_s: f64) {
        if audio_s > 0.0 && secs.is_finite() && secs >= 0.0 {
            let v = secs / audio_s;
            self.vocoder_s_per_audio_s += SMOOTHING * (v - self.vocoder_s_per_audio_s);
        }
    }

    /// Share of the engine's time `rows` calls speaking at once need (1.0: all of it), for the
    /// busier stage: the decoder (one step per code, and one prefill per sentence of
    /// `sentence_s` seconds) or the vocoder.
    pub fn load(&self, rows: usize, sentence_s: f64) -> f64 {
        if rows == 0 {
            return 0.0;
        }
        let steps = CODES_PER_SECOND * self.step(rows);
        // Sentences start spread out: one prefill of one row each, per row and sentence.
        let prefills = rows as f64 * self.prefill(1) / sentence_s.max(0.1);
        let vocoder = rows as f64 * self.vocoder_s_per_audio_s();
        (steps + prefills).max(vocoder)
    }

    /// The most calls that can speak at once within `max_load` of the engine's time.
    pub fn real_time_rows(&self, max_load: f64, sentence_s: f64) -> usize {
        (1..=self.max_batch())
            .take_while(|&rows| self.load(rows, sentence_s) <= max_load)
            .last()
            .unwrap_or(0)
    }
}

/// Values at every batch size from 1 to `max_batch` from samples at some of them.
fn interpolate(max_batch: usize, samples: &[(usize, f64)]) -> Vec<f64> {
    let mut points: Vec<(usize, f64)> = samples
        .iter()
        .copied()
        .filter(|&(b, s)| b > 0 && s.is_finite())
        .collect();
    points.sort_by_key(|p| p.0);
    points.dedup_by_key(|p| p.0);
    (1..=max_batch.max(1))
        .map(|b| match points.iter().position(|&(pb, _)| pb >= b) {
            None => points.last().map_or(0.0, |p| p.1),
            Some(0) => points[0].1,
            Some(i) => {
                let (b0, s0) = points[i - 1];
                let (b1, s1) = points[i];
                s0 + (s1 - s0) * (b - b0) as f64 / (b1 - b0) as f64
            }
        })
        .collect()
}

/// Whether one more call may start now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admission {
    /// Share of the engine's time the admitted calls may need at most (below 1: kept for jitter).
    pub max_load: f64,
    /// Typical length of a sentence, seconds (how often a call needs a prefill).
    pub sentence_s: f64,
}

impl Admission {
    /// May a call join `speaking` others? One call is always admitted (nothing to protect).
    pub fn admits(&self, costs: &CostModel, speaking: usize) -> bool {
        speaking == 0 || costs.load(speaking + 1, self.sentence_s) <= self.max_load
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_interpolated_and_held_beyond_the_ends() {
        let c = CostModel::from_samples(8, &[(2, 0.010), (4, 0.020), (8, 0.060)], &[(1, 0.1)]);
        let steps: Vec<f64> = (1..=8).map(|b| (c.step(b) * 1e3).round()).collect();
        assert_eq!(steps, vec![10.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
        assert_eq!(c.prefill(8), 0.1);
        assert_eq!(c.step(20), c.step(8), "beyond the slots: the largest batch");
    }

    #[test]
    fn admission_stops_where_real_time_would_be_lost() {
        // 46.4 ms per code is real time; 4 ms + 4 ms per row reaches it past 10 rows.
        let c = CostModel::linear(16, (0.004, 0.004), (0.0, 0.0));
        assert_eq!(c.real_time_rows(1.0, 3.0), 10);
        let a = Admission {
            max_load: 1.0,
            sentence_s: 3.0,
        };
        assert!(a.admits(&c, 9));
        assert!(!a.admits(&c, 10));
        assert!(a.admits(&c, 0), "a lone call is always admitted");
        // The vocoder can be the slower stage.
        let mut slow_vocoder = c.clone().with_vocoder(0.2);
        assert_eq!(slow_vocoder.real_time_rows(1.0, 3.0), 5);
        // Twice slower in service than rehearsed, for a while: half the calls.
        slow_vocoder.observe_vocoder_slowdown(2.0);
        assert!(slow_vocoder.vocoder_slowdown() > 1.0 && slow_vocoder.vocoder_slowdown() < 2.0);
        for _ in 0..30 {
            slow_vocoder.observe_vocoder_slowdown(2.0);
        }
        assert!((slow_vocoder.vocoder_slowdown() - 2.0).abs() < 1e-3);
        assert_eq!(slow_vocoder.real_time_rows(1.0, 3.0), 2);
        slow_vocoder.observe_vocoder_slowdown(f64::NAN);
        slow_vocoder.observe_vocoder_slowdown(100.0);
        assert!(
            slow_vocoder.vocoder_slowdown() <= 4.0,
            "one stretch moves it at most to 4"
        );
    }

    #[test]
    fn observations_move_the_running_average() {
        let mut c = CostModel::linear(4, (0.010, 0.0), (0.0, 0.0));
        for _ in 0..200 {
            c.observe_step(2, 0.030);
        }
        assert!((c.step(2) - 0.030).abs() < 1e-4, "{}", c.step(2));
        assert_eq!(c.step(1), 0.010, "other sizes untouched");
        c.observe_step(9, 1.0);
        c.observe_step(3, f64::NAN);
        assert_eq!(c.step(3), 0.010);
    }
}
