//! Pacing statistics of a recorded call: when audio started, how evenly frames arrived,
//! and whether the sender ever ran ahead of real time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// A frame is speech (not silence) when some sample exceeds this (about −54 dBFS).
pub const VOICE_THRESHOLD: i16 = 64;

/// One received audio frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Since the call connected.
    pub at: Duration,
    pub bytes: usize,
    pub rate: u32,
    pub voiced: bool,
}

impl Arrival {
    /// Media time the frame holds.
    pub fn media(&self) -> Duration {
        Duration::from_secs_f64(self.bytes as f64 / 2.0 / self.rate as f64)
    }
}

/// Whether 16-bit samples hold more than silence.
pub fn is_voiced(samples: &[i16]) -> bool {
    samples.iter().any(|s| s.unsigned_abs() > VOICE_THRESHOLD as u16)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PacingReport {
    pub frames: usize,
    pub voiced_frames: usize,
    /// Payload size in bytes → count.
    pub frame_sizes: BTreeMap<usize, usize>,
    pub rates: BTreeSet<u32>,
    pub first_frame_ms: Option<f64>,
    pub first_voice_ms: Option<f64>,
    /// Inter-arrival times.
    pub interval_p50_ms: f64,
    pub interval_p99_ms: f64,
    /// |inter-arrival − the earlier frame's duration|.
    pub jitter_p50_ms: f64,
    pub jitter_p99_ms: f64,
    pub longest_gap_ms: f64,
    pub gaps_over_40ms: usize,
    /// Largest amount by which the media received ran ahead of the wall clock, counted
    /// from the first frame: 0 for a perfectly paced sender, ≈ n·20 for a burst of n+1.
    pub max_lead_ms: f64,
    /// The whole call, connect to end.
    pub duration_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl PacingReport {
    pub fn from_arrivals(arrivals: &[Arrival], duration: Duration) -> Self {
        let mut report = PacingReport {
            frames: arrivals.len(),
            voiced_frames: arrivals.iter().filter(|a| a.voiced).count(),
            first_frame_ms: arrivals.first().map(|a| ms(a.at)),
            first_voice_ms: arrivals.iter().find(|a| a.voiced).map(|a| ms(a.at)),
            duration_ms: ms(duration),
            ..Default::default()
        };
        for a in arrivals {
            *report.frame_sizes.entry(a.bytes).or_default() += 1;
            report.rates.insert(a.rate);
        }
        let mut intervals = Vec::new();
        let mut jitter = Vec::new();
        for pair in arrivals.windows(2) {
            let gap = ms(pair[1].at.saturating_sub(pair[0].at));
            intervals.push(gap);
            jitter.push((gap - ms(pair[0].media())).abs());
            report.longest_gap_ms = report.longest_gap_ms.max(gap);
            if gap > 40.0 {
                report.gaps_over_40ms += 1;
            }
        }
        intervals.sort_by(f64::total_cmp);
        jitter.sort_by(f64::total_cmp);
        report.interval_p50_ms = percentile(&intervals, 50.0);
        report.interval_p99_ms = percentile(&intervals, 99.0);
        report.jitter_p50_ms = percentile(&jitter, 50.0);
        report.jitter_p99_ms = percentile(&jitter, 99.0);
        if let Some(first) = arrivals.first() {
            let mut media_before = 0.0;
            for a in arrivals {
                let elapsed = ms(a.at.saturating_sub(first.at));
                report.max_lead_ms = report.max_lead_ms.max(media_before - elapsed);
                media_before += ms(a.media());
            }
        }
        report
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} ms"))
}

impl fmt::Display for PacingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: Vec<String> = self.frame_sizes.iter().map(|(s, n)| format!("{s} B × {n}")).collect();
        let rates: Vec<String> = self.rates.iter().map(|r| format!("{r} Hz")).collect();
        writeln!(f, "first audio frame:     {}", opt_ms(self.first_frame_ms))?;
        writeln!(f, "first speech frame:    {}", opt_ms(self.first_voice_ms))?;
        writeln!(
            f,
            "frames:                {} ({} speech)",
            self.frames, self.voiced_frames
        )?;
        writeln!(f, "frame sizes:           {}", sizes.join(", "))?;
        writeln!(f, "rates:                 {}", rates.join(", "))?;
        writeln!(
            f,
            "inter-arrival:         p50 {:.2} ms, p99 {:.2} ms",
            self.interval_p50_ms, self.interval_p99_ms
        )?;
        writeln!(
            f,
            "jitter:                p50 {:.2} ms, p99 {:.2} ms",
            self.jitter_p50_ms, self.jitter_p99_ms
        )?;
        writeln!(f, "longest gap:           {:.1} ms", self.longest_gap_ms)?;
        writeln!(f, "gaps > 40 ms:          {}", self.gaps_over_40ms)?;
        writeln!(f, "max lead:              {:.1} ms", self.max_lead_ms)?;
        write!(f, "duration:              {:.1} ms", self.duration_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(at_ms: u64, voiced: bool) -> Arrival {
        Arrival {
            at: Duration::from_millis(at_ms),
            bytes: 320,
            rate: 8000,
            voiced,
        }
    }

    #[test]
    fn even_pacing() {
        let arrivals: Vec<Arrival> = (0..50).map(|i| frame(100 + i * 20, i >= 10)).collect();
        let r = PacingReport::from_arrivals(&arrivals, Duration::from_millis(1200));
        assert_eq!(r.frames, 50);
        assert_eq!(r.voiced_frames, 40);
        assert_eq!(r.first_frame_ms, Some(100.0));
        assert_eq!(r.first_voice_ms, Some(300.0));
        assert_eq!(r.frame_sizes, BTreeMap::from([(320, 50)]));
        assert!((r.interval_p50_ms - 20.0).abs() < 1e-9 && (r.interval_p99_ms - 20.0).abs() < 1e-9);
        assert!(r.jitter_p99_ms < 1e-9);
        assert_eq!(r.gaps_over_40ms, 0);
        assert!(r.max_lead_ms.abs() < 1e-9);
    }

    #[test]
    fn gaps_and_bursts_show() {
        // 10 paced frames, an 80 ms gap, then 8 frames at once.
        let mut arrivals: Vec<Arrival> = (0..10).map(|i| frame(i * 20, true)).collect();
        arrivals.extend((0..8).map(|_| frame(260, true)));
        let r = PacingReport::from_arrivals(&arrivals, Duration::from_millis(300));
        assert_eq!(r.longest_gap_ms, 80.0);
        assert_eq!(r.gaps_over_40ms, 1);
        // The last frame arrives 260 ms after the first, with 340 ms of media before it.
        assert!((r.max_lead_ms - 80.0).abs() < 1e-6, "{}", r.max_lead_ms);
        assert_eq!(r.interval_p50_ms, 20.0);
    }

    #[test]
    fn empty_call() {
        let r = PacingReport::from_arrivals(&[], Duration::from_millis(5));
        assert_eq!(r.frames, 0);
        assert_eq!(r.first_frame_ms, None);
        assert!(r.to_string().contains("first audio frame:     -"));
    }

    #[test]
    fn voice_detection() {
        assert!(!is_voiced(&[0, 10, -64]));
        assert!(is_voiced(&[0, -65]));
    }
}
