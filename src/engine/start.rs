//! When a new call may start speaking. A call's first chunks are short and each costs the
//! vocoder a whole window of context, so a call that starts needs the vocoder at several
//! times real time for its first second; calls that start in the same instant can outrun it
//! although it keeps up with all of them once they are under way. The engine rehearses one
//! sentence's start when it loads ([`StartProfile`]: every window's codes, render time and
//! audio), and before a new call's first prefill it replays the vocoder's next moments, in
//! deadline order, with the calls already starting and the new one. (The vocoder lets first
//! audio go ahead of that order only while every call under way keeps its margin, see
//! [`super::render_order`]; the replay keeps the order that serves the calls under way
//! first.) The call starts only if it makes no listener run drier than its own start would
//! alone on an idle engine ([`may_start`]); otherwise it waits (and past `admit_within` is
//! refused busy).
//! Pure: no tensor and no clock of its own, so it is tested with made-up profiles.

/// Forwards longer than every rehearsed window are padded to a multiple of this many frames.
pub const FRAME_STEP: i64 = 16;

/// One window of a sentence's start, as rehearsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedWindow {
    /// Codes of the sentence decoded when the window can be rendered.
    pub codes: usize,
    /// Generator frames it renders.
    pub frames: i64,
    /// Seconds the vocoder took to render it, alone.
    pub render_s: f64,
    /// Seconds of audio it hands to the listener.
    pub audio_s: f64,
}

/// A sentence's start: its windows in order, up to where the chunks stop growing; and what a
/// forward of several windows costs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartProfile {
    pub windows: Vec<PlannedWindow>,
    /// Forwards of several copies of the start's last window, as rehearsed: (windows, time
    /// over one window alone), in growing windows. Empty: a batch costs its windows one by one.
    pub batches: Vec<(usize, f64)>,
    /// The same for the start's first window: small windows batch better on a CPU (a forward's
    /// fixed cost weighs more), and first windows of calls that start together share forwards.
    pub first_batches: Vec<(usize, f64)>,
}

impl StartProfile {
    /// Seconds of vocoder work per second of audio over the whole start, about one sentence
    /// (every sentence starts this way), or None for an empty profile.
    pub fn s_per_audio_s(&self) -> Option<f64> {
        let render: f64 = self.windows.iter().map(|w| w.render_s).sum();
        let audio: f64 = self.windows.iter().map(|w| w.audio_s).sum();
        (audio > 0.0).then(|| render / audio)
    }

    /// Seconds the vocoder takes for a window of `frames` frames: the least-squares line
    /// through the rehearsed windows (0 for an empty profile).
    pub fn render_estimate(&self, frames: i64) -> f64 {
        let n = self.windows.len() as f64;
        if n == 0.0 {
            return 0.0;
        }
        let mean_x = self.windows.iter().map(|w| w.frames as f64).sum::<f64>() / n;
        let mean_y = self.windows.iter().map(|w| w.render_s).sum::<f64>() / n;
        let sxx: f64 = self.windows.iter().map(|w| (w.frames as f64 - mean_x).powi(2)).sum();
        let sxy: f64 = self
            .windows
            .iter()
            .map(|w| (w.frames as f64 - mean_x) * (w.render_s - mean_y))
            .sum();
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        (mean_y + slope * (frames as f64 - mean_x)).max(0.0)
    }

    /// Time of a forward of `k` windows over one of them alone, as rehearsed.
    pub fn batch_factor(&self, k: usize) -> f64 {
        batch_factor(&self.batches, k)
    }

    /// The same for forwards of first windows.
    pub fn first_batch_factor(&self, k: usize) -> f64 {
        batch_factor(&self.first_batches, k)
    }

    /// Windows one forward should render, at most `limit`: the rehearsed batch cheapest per
    /// window, taken larger only for a saving of a tenth per window.
    pub fn best_batch(&self, limit: usize) -> usize {
        best_batch(&self.batches, limit)
    }

    /// First windows one forward should render, at most `limit`; never fewer than
    /// [`Self::best_batch`]. Only as many as the vocoder can follow up: first windows rendered
    /// together bring their second windows due together, and those must reach their listeners
    /// within the first chunk's audio, less `margin_s`, in forwards of `vocoder_batch`.
    pub fn best_first_batch(&self, limit: usize, vocoder_batch: usize, margin_s: f64) -> usize {
        let followed = match (self.windows.first(), self.windows.get(1)) {
            (Some(first), Some(second)) => {
                let batch = vocoder_batch.max(1);
                let per_window = second.render_s * self.batch_factor(batch) / batch as f64;
                ((first.audio_s - margin_s).max(0.0) / per_window.max(1e-9)) as usize
            }
            _ => limit,
        };
        let best = best_batch(&self.first_batches, limit.min(followed));
        best.max(self.best_batch(limit))
    }

    /// Frames a forward of windows up to `longest` frames is padded to, so that the vocoder
    /// sees few shapes: the smallest rehearsed window that holds them, else `longest` rounded
    /// up to a multiple of [`FRAME_STEP`] (an empty profile pads nothing).
    pub fn forward_frames(&self, longest: i64) -> i64 {
        if self.windows.is_empty() {
            return longest;
        }
        let rehearsed = self.windows.iter().map(|w| w.frames).filter(|&f| f >= longest).min();
        rehearsed.unwrap_or_else(|| (longest + FRAME_STEP - 1) / FRAME_STEP * FRAME_STEP)
    }

    /// Seconds the decoder keeps each chunk ahead of its listener's need: the vocoder's time
    /// for it (the forward under way, then its own, each a full batch of `vocoder_batch`
    /// full-size windows, as rehearsed) and `audio_path_s` after it. A decoder that cut it
    /// finer would hand chunks to a busy vocoder too late to be rendered in time.
    pub fn scheduling_margin(&self, vocoder_batch: usize, audio_path_s: f64) -> f64 {
        let forward = self.windows.last().map_or(0.0, |w| w.render_s) * self.batch_factor(vocoder_batch);
        audio_path_s + 2.0 * forward
    }

    /// Seconds of a forward of `under_way` calls' full-size windows, at most `vocoder_batch`
    /// of them, as rehearsed (0 with none under way).
    pub fn under_way_forward_s(&self, under_way: usize, vocoder_batch: usize) -> f64 {
        if under_way == 0 {
            return 0.0;
        }
        let windows = under_way.min(vocoder_batch.max(1));
        self.windows.last().map_or(0.0, |w| w.render_s) * self.batch_factor(windows)
    }

    /// The frames of the forwards a sentence's start uses, each once, in growing order.
    pub fn forward_shapes(&self) -> Vec<i64> {
        let mut frames: Vec<i64> = self.windows.iter().map(|w| w.frames).collect();
        frames.sort_unstable();
        frames.dedup();
        frames
    }

    /// Seconds the next window of a listener that has received `sent_s` seconds should take
    /// alone, as rehearsed: its window of the start, or past the start the start's last (chunks
    /// stop growing there); 0 for an empty profile.
    pub fn next_window_s(&self, sent_s: f64) -> f64 {
        let next = self.windows.get(self.delivered(sent_s)).or(self.windows.last());
        next.map_or(0.0, |w| w.render_s)
    }

    /// Windows already handed to a listener that has received `sent_s` seconds of the sentence.
    pub fn delivered(&self, sent_s: f64) -> usize {
        let mut audio = 0.0;
        self.windows
            .iter()
            .take_while(|w| {
                audio += w.audio_s;
                audio <= sent_s + 1e-3
            })
            .count()
    }
}

/// Time of a forward of `k` windows over one of them alone, from rehearsed `batches`: the
/// rehearsed points, linear between them; past the last, each further window at the last
/// point's cost per window; without any, `k` windows cost `k` times one.
fn batch_factor(batches: &[(usize, f64)], k: usize) -> f64 {
    let k = k.max(1) as f64;
    let mut below = (1.0, 1.0);
    for &(n, factor) in batches {
        let n = n as f64;
        if n >= k {
            let share = if n > below.0 {
                (k - below.0) / (n - below.0)
            } else {
                0.0
            };
            return below.1 + share * (factor - below.1);
        }
        below = (n, factor);
    }
    if batches.is_empty() {
        k
    } else {
        below.1 * k / below.0
    }
}

/// Windows one forward should render, at most `limit`: the rehearsed batch cheapest per
/// window, taken larger only for a saving of a tenth per window (a batch keeps its most
/// urgent window until the whole forward is done).
fn best_batch(batches: &[(usize, f64)], limit: usize) -> usize {
    let mut best = (1, 1.0);
    for &(n, factor) in batches.iter().filter(|b| b.0 <= limit) {
        let per_window = factor / n as f64;
        if per_window < 0.9 * best.1 {
            best = (n, per_window);
        }
    }
    best.0
}

/// A call in its start, as the check sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Starting {
    /// Codes of its first sentence decoded so far.
    pub decoded: usize,
    /// Windows of the profile its listener has received.
    pub delivered: usize,
    /// Seconds of audio its listener holds; None before its first audio.
    pub in_hand: Option<f64>,
    /// Seconds from now to its first-audio target (negative once past): the vocoder serves
    /// first audio by this deadline, among the others' (no listener runs dry meanwhile).
    pub first_due: f64,
}

impl Starting {
    /// A call that has not decoded anything yet, due its first audio `first_due` from now.
    pub fn new(first_due: f64) -> Self {
        Starting {
            decoded: 0,
            delivered: 0,
            in_hand: None,
            first_due,
        }
    }
}

/// The machine the replay runs on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StartCosts {
    /// Seconds per decode step of the calls decoding now, for every code a window waits for.
    pub step_s: f64,
    /// What one more decoding call adds to each step.
    pub added_step_s: f64,
    /// Seconds of a decode step of one call alone: a start's own pace on an idle engine.
    pub lone_step_s: f64,
    /// Seconds of the prefill a new call waits for before its first code.
    pub prefill_s: f64,
    /// What each further new call adds to that prefill (new calls prefill together).
    pub prefill_row_s: f64,
    /// Share of the vocoder the calls already under way leave free (their steady load).
    pub vocoder_free: f64,
    /// Seconds (as rehearsed) a forward of the calls under way may still hold the vocoder when
    /// a start's window is ready: their share is an average, but their forwards come whole.
    pub under_way_forward_s: f64,
    /// Measured vocoder time over rehearsed time (above 1: slower than at load, as when
    /// the decoder shares the cores).
    pub vocoder_scale: f64,
    /// Seconds each window must reach its listener ahead of its need (delivery, jitter).
    pub margin_s: f64,
    /// Windows the vocoder renders in one forward, at most; first windows share forwards of
    /// their own, of up to `first_batch`.
    pub vocoder_batch: usize,
    pub first_batch: usize,
}

/// Seconds within which a new call's start counts as making no listener later.
const SAME_LATENESS_S: f64 = 0.001;

/// May `new` start beside the calls `starting` now? Only if the replay with it finds no
/// listener later than its start alone on an idle engine would be: with a start the vocoder
/// serves in time (the usual case) no listener may run dry; with one too short for any
/// vocoder (a first chunk shorter than the margin) calls still start, as they would alone.
/// While the calls starting already run late (the replay is an estimate, and their start
/// went worse than it), no new call joins them: it would take the time they are short of.
pub fn may_start(profile: &StartProfile, starting: &[Starting], new: Starting, costs: &StartCosts) -> bool {
    if costs.vocoder_free <= 0.0 {
        return false;
    }
    // The new call's row slows every step.
    let slower = StartCosts {
        step_s: costs.step_s + costs.added_step_s.max(0.0),
        ..*costs
    };
    let idle = StartCosts {
        step_s: costs.lone_step_s,
        vocoder_free: 1.0,
        under_way_forward_s: 0.0,
        ..*costs
    };
    let alone = lateness(profile, &[new], &idle).max(0.0);
    let with_new = [starting, &[new]].concat();
    lateness(profile, &with_new, &slower) <= alone + SAME_LATENESS_S
}

/// A call held before its first prefill, as the start check sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Held {
    /// Seconds from now to its first-audio target (negative once past).
    pub first_due: f64,
    /// Asked while its listener's current speech still plays: it has time, so it starts at
    /// once and does not count as starting.
    pub asked_ahead: bool,
}

/// Which of the `held` calls (oldest first) may start now beside `starting`, the calls
/// already in their start. A call asked ahead, or any call when no start was rehearsed,
/// starts at once; so does a call when no other is starting (nothing to protect). Any other
/// starts only if [`may_start`], and the first one refused holds the later ones behind it:
/// the oldest starts first. Each call cleared decodes too, so the next one's steps are
/// slower: `step(n)` is the seconds of a decode step of `n` calls, and `decoding` the calls
/// decoding now.
pub fn clearable(
    profile: &StartProfile,
    mut starting: Vec<Starting>,
    held: &[Held],
    decoding: usize,
    mut costs: StartCosts,
    step: impl Fn(usize) -> f64,
) -> Vec<bool> {
    let mut decoding = decoding;
    let mut holding = false;
    held.iter()
        .map(|call| {
            let new = Starting::new(call.first_due);
            costs.step_s = step(decoding.max(1));
            costs.added_step_s = step(decoding + 1) - costs.step_s;
            costs.lone_step_s = step(1);
            let clear = profile.windows.is_empty()
                || call.asked_ahead
                || (!holding && (starting.is_empty() || may_start(profile, &starting, new, &costs)));
            if clear {
                decoding += 1;
                if !call.asked_ahead {
                    starting.push(new);
                }
            } else {
                holding = true;
            }
            clear
        })
        .collect()
}

/// How late the worst window of the starting listeners would reach its listener (seconds,
/// the margin included; zero or less: every listener keeps its audio) if the vocoder served
/// them from now on as it does: in forwards of the most urgent windows ready, one per
/// listener, each delivered when its forward ends. A window is due when the audio before it runs
/// out; a first window when its listener's first-audio target comes, but it is never late
/// (its listener has no audio to lose: waiting is the price of holding a call). A window is
/// ready once its codes are decoded, after the new calls' prefills.
pub fn lateness(profile: &StartProfile, calls: &[Starting], costs: &StartCosts) -> f64 {
    if costs.vocoder_free <= 0.0 {
        return f64::INFINITY;
    }
    let slowdown = costs.vocoder_scale.max(0.0) / costs.vocoder_free;
    struct Call {
        next: usize,
        decoded: usize,
        new: bool,
        /// When its audio runs out, once it has some.
        dry_at: Option<f64>,
        first_due: f64,
    }
    let mut state: Vec<Call> = calls
        .iter()
        .map(|c| Call {
            next: c.delivered,
            decoded: c.decoded,
            new: c.decoded == 0 && c.in_hand.is_none(),
            dry_at: c.in_hand,
            first_due: c.first_due,
        })
        .collect();
    // When a call's next window can be rendered: its codes decoded, after the new calls'
    // prefills (which pause every row's decoding).
    let prefills = match state.iter().filter(|c| c.new).count() {
        0 => 0.0,
        n => costs.prefill_s + (n - 1) as f64 * costs.prefill_row_s.max(0.0),
    };
    let released = |c: &Call, w: &PlannedWindow| prefills + w.codes.saturating_sub(c.decoded) as f64 * costs.step_s;
    // A forward of the calls under way may have just begun, at the measured slowdown.
    let mut now = costs.under_way_forward_s.max(0.0) * costs.vocoder_scale.max(0.0);
    let mut worst = f64::NEG_INFINITY;
    loop {
        let pending: Vec<(usize, f64, f64)> = state
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let w = profile.windows.get(c.next)?;
                Some((i, released(c, w), c.dry_at.unwrap_or(c.first_due)))
            })
            .collect();
        if pending.is_empty() {
            return worst;
        }
        let mut ready: Vec<(usize, f64, f64)> = pending.iter().copied().filter(|p| p.1 <= now).collect();
        if ready.is_empty() {
            now = pending.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            continue;
        }
        ready.sort_by(|a, b| a.2.total_cmp(&b.2));
        // A forward of first windows renders first windows only, as the vocoder's does.
        let is_first = |i: usize| state[i].dry_at.is_none();
        let of_first_windows = is_first(ready[0].0);
        if of_first_windows {
            ready.retain(|r| is_first(r.0));
            ready.truncate(costs.first_batch.max(1));
        } else {
            ready.truncate(costs.vocoder_batch.max(1));
        }
        // Windows of a forward are padded to the longest.
        let longest = ready
            .iter()
            .map(|&(i, _, _)| profile.windows[state[i].next].render_s)
            .fold(0.0, f64::max);
        let factor = match of_first_windows {
            true => profile.first_batch_factor(ready.len()),
            false => profile.batch_factor(ready.len()),
        };
        now += longest * factor * slowdown;
        for (i, _, due) in ready {
            let c = &mut state[i];
            let w = profile.windows[c.next];
            // A first window has no deadline to miss: its listener hears nothing until it comes.
            if c.dry_at.is_some() {
                worst = worst.max(now + costs.margin_s - due);
            }
            c.dry_at = Some(c.dry_at.map_or(now, |d| d.max(now)) + w.audio_s);
            c.next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped shape: 3 codes of audio after 8, then 5, 8, 16, 20 (about 46 ms each),
    /// each window rendering its chunk, 8 codes of context and 5 held back.
    fn profile(per_code_s: f64) -> StartProfile {
        let code = 1.0 / 21.5;
        let windows = [(8, 8, 3), (13, 13, 5), (21, 21, 8), (37, 29, 16), (57, 33, 20)]
            .into_iter()
            .map(|(codes, rendered, emitted)| PlannedWindow {
                codes,
                frames: rendered * 4,
                render_s: rendered as f64 * per_code_s,
                audio_s: emitted as f64 * code,
            })
            .collect();
        StartProfile {
            windows,
            batches: Vec::new(),
            first_batches: Vec::new(),
        }
    }

    fn costs() -> StartCosts {
        StartCosts {
            step_s: 0.004,
            added_step_s: 0.0,
            lone_step_s: 0.004,
            prefill_s: 0.010,
            prefill_row_s: 0.002,
            vocoder_free: 1.0,
            under_way_forward_s: 0.0,
            vocoder_scale: 1.0,
            margin_s: 0.02,
            vocoder_batch: 1,
            first_batch: 1,
        }
    }

    #[test]
    fn a_profile_counts_what_a_listener_received() {
        let p = profile(0.001);
        assert_eq!(p.delivered(0.0), 0);
        assert_eq!(p.delivered(3.0 / 21.5), 1);
        assert_eq!(p.delivered(8.0 / 21.5 + 0.01), 2);
        assert_eq!(p.delivered(100.0), 5);
        let per_audio_s = p.s_per_audio_s().unwrap();
        assert!(
            (per_audio_s - 0.001 * 104.0 / (52.0 / 21.5)).abs() < 1e-9,
            "{per_audio_s}"
        );
        assert_eq!(StartProfile::default().s_per_audio_s(), None);
        // Render time is 0.25 ms per frame here: the line through the windows says so.
        assert!((p.render_estimate(100) - 0.025).abs() < 1e-9);
        assert_eq!(StartProfile::default().render_estimate(100), 0.0);
    }

    /// Forwards are padded to a rehearsed window's shape, or past the longest to a multiple of
    /// 16 frames: the vocoder sees few shapes, all but the longest ones warmed at start.
    #[test]
    fn forwards_are_padded_to_shapes_seen_before() {
        let p = profile(0.001);
        assert_eq!(p.forward_shapes(), vec![32, 52, 84, 116, 132]);
        assert_eq!(p.forward_frames(32), 32);
        assert_eq!(p.forward_frames(33), 52);
        assert_eq!(p.forward_frames(100), 116);
        assert_eq!(p.forward_frames(133), 144);
        assert_eq!(p.forward_frames(144), 144);
        assert_eq!(StartProfile::default().forward_frames(37), 37);
        assert!(StartProfile::default().forward_shapes().is_empty());
    }

    /// A new call's prefill pauses every row's decoding: the next window of a call already
    /// starting comes later by it.
    #[test]
    fn a_new_calls_prefill_delays_the_others() {
        let p = profile(0.0005);
        let c = StartCosts {
            prefill_s: 0.05,
            ..costs()
        };
        let under_way = Starting {
            decoded: 12,
            delivered: 1,
            in_hand: Some(0.1),
            first_due: 0.0,
        };
        let alone = lateness(&p, &[under_way], &c);
        let with_new = lateness(&p, &[under_way, Starting::new(0.25)], &c);
        assert!(with_new > alone + 0.045, "{with_new} vs {alone}");
    }

    #[test]
    fn a_batch_costs_what_was_rehearsed() {
        let p = StartProfile {
            batches: vec![(2, 1.5), (4, 2.4), (8, 5.0)],
            ..profile(0.001)
        };
        assert_eq!(p.batch_factor(1), 1.0);
        assert!((p.batch_factor(3) - 1.95).abs() < 1e-9);
        assert!(
            (p.batch_factor(16) - 10.0).abs() < 1e-9,
            "past the last: its cost per window"
        );
        // Per window: 1, 0.75, 0.6, 0.625; 8 saves nothing over 4.
        assert_eq!(p.best_batch(16), 4);
        assert_eq!(p.best_batch(3), 2);
        assert_eq!(p.best_batch(1), 1);
        let unmeasured = profile(0.001);
        assert_eq!(unmeasured.batch_factor(5), 5.0, "one by one");
        assert_eq!(unmeasured.best_batch(16), 1);
        // A saving under a tenth per window is not worth holding the most urgent window.
        let marginal = StartProfile {
            batches: vec![(2, 1.9)],
            ..profile(0.001)
        };
        assert_eq!(marginal.best_batch(16), 1);
    }

    /// A vocoder whose forward of 8 windows costs 2 windows alone serves 8 starts where one
    /// window at a time serves a few: the replay renders as the vocoder does.
    #[test]
    fn a_vocoder_that_batches_starts_more_calls_together() {
        let serial = profile(0.002);
        let batched = StartProfile {
            batches: vec![(2, 1.2), (4, 1.5), (8, 2.0)],
            ..profile(0.002)
        };
        let one_by_one = started_together(&serial, 8, &costs());
        assert!(one_by_one < 8, "{one_by_one}");
        let eight = StartCosts {
            vocoder_batch: 8,
            ..costs()
        };
        assert_eq!(started_together(&batched, 8, &eight), 8);
        assert!(keeps_up(&batched, &[Starting::new(0.25); 8], &eight));
        // The same vocoder rendering one window per forward does not.
        assert_eq!(started_together(&batched, 8, &costs()), one_by_one);
    }

    fn keeps_up(p: &StartProfile, calls: &[Starting], costs: &StartCosts) -> bool {
        lateness(p, calls, costs) <= 0.0
    }

    /// `n` calls arriving together, the first starting alone and the others held behind it:
    /// how many start.
    fn started_together(p: &StartProfile, n: usize, costs: &StartCosts) -> usize {
        let cleared = clearable(p, vec![Starting::new(0.25)], &vec![held(); n - 1], 1, *costs, |_| {
            costs.step_s
        });
        1 + cleared.iter().filter(|&&c| c).count()
    }

    fn held() -> Held {
        Held {
            first_due: 0.25,
            asked_ahead: false,
        }
    }

    /// The oldest held call starts first and holds the later ones; a call asked ahead of its
    /// playing starts wherever it waits and leaves the vocoder's start to the others.
    #[test]
    fn held_calls_start_oldest_first_and_asked_ahead_at_once() {
        let p = profile(0.002);
        let c = costs();
        let most = started_together(&p, 16, &c);
        assert!((2..16).contains(&most), "{most}");
        let step = |_| c.step_s;
        let mut calls = vec![held(); 15];
        calls[0].asked_ahead = true;
        calls[14].asked_ahead = true;
        let cleared = clearable(&p, vec![Starting::new(0.25)], &calls, 1, c, step);
        let expected: Vec<bool> = (0..15).map(|i| i == 0 || i == 14 || i < most).collect();
        assert_eq!(cleared, expected, "most {most}");
        // Nothing starting: the first call starts alone, and holds nobody it could not serve.
        let alone = clearable(&p, Vec::new(), &[held(); 15], 0, c, step);
        assert_eq!(alone.iter().filter(|&&c| c).count(), most);
        // No start rehearsed: every call starts.
        let unmeasured = clearable(
            &StartProfile::default(),
            vec![Starting::new(0.25); 8],
            &[held(); 4],
            8,
            c,
            step,
        );
        assert_eq!(unmeasured, vec![true; 4]);
    }

    #[test]
    fn one_call_starts_on_a_vocoder_that_keeps_up() {
        assert!(keeps_up(&profile(0.002), &[Starting::new(0.25)], &costs()));
    }

    /// 2 ms per rendered code: 8 calls' first windows and second windows take 336 ms, far more
    /// than the first chunks' 140 ms of audio leave; a few fit.
    #[test]
    fn calls_starting_together_are_held_to_what_the_vocoder_serves() {
        let p = profile(0.002);
        assert!(keeps_up(&p, &[Starting::new(0.25); 2], &costs()));
        assert!(
            !keeps_up(&p, &[Starting::new(0.25); 8], &costs()),
            "8 at once outrun it"
        );
        let most = started_together(&p, 16, &costs());
        assert!((2..8).contains(&most), "{most}");
        assert!(keeps_up(&p, &vec![Starting::new(0.25); most], &costs()));
        // Half the vocoder taken by calls under way: fewer start together.
        let busy = StartCosts {
            vocoder_free: 0.5,
            ..costs()
        };
        let most_busy = started_together(&p, 16, &busy);
        assert!(most_busy < most, "{most_busy} vs {most}");
        let full = StartCosts {
            vocoder_free: 0.0,
            ..costs()
        };
        assert!(!may_start(&p, &[Starting::new(0.25)], Starting::new(0.25), &full));
    }

    /// A call with more than half a second of audio in hand leaves room for a new one; one
    /// whose next window would come just in time does not when the new call's first audio is
    /// due first, and does when it can wait (the vocoder serves in deadline order).
    #[test]
    fn calls_under_way_are_counted_by_the_audio_they_hold() {
        let p = profile(0.004);
        let comfortable = Starting {
            decoded: 21,
            delivered: 3,
            in_hand: Some(0.6),
            first_due: 0.0,
        };
        assert!(may_start(&p, &[comfortable], Starting::new(0.25), &costs()));
        // Its next window is decoded; its render takes 29 codes at 4 ms: 116 ms, 156 ms
        // with the margin. A new call's first window (8 codes decoded) takes 32 ms.
        let short = Starting {
            decoded: 37,
            in_hand: Some(0.17),
            ..comfortable
        };
        let ready = Starting {
            decoded: 8,
            ..Starting::new(0.0)
        };
        assert!(keeps_up(&p, &[short], &costs()), "alone it keeps up");
        assert!(
            !may_start(&p, &[short], ready, &costs()),
            "first audio due now goes first"
        );
        let can_wait = Starting {
            first_due: 0.25,
            ..ready
        };
        assert!(may_start(&p, &[short], can_wait, &costs()), "served in deadline order");
    }

    /// A start too short for any vocoder (its first chunk's audio is shorter than the margin)
    /// does not hold every other call: a call starts if it makes nobody later than the worst
    /// already is.
    #[test]
    fn a_start_no_vocoder_can_serve_still_lets_calls_start() {
        let tight = StartCosts {
            margin_s: 0.5,
            ..costs()
        };
        let p = profile(0.0001);
        assert!(!keeps_up(&p, &[Starting::new(0.25)], &tight));
        assert!(may_start(&p, &[Starting::new(0.25)], Starting::new(0.25), &tight));
        // But not one that makes it worse: a vocoder that is slow as well.
        let slow = profile(0.004);
        assert!(!may_start(
            &slow,
            &[Starting::new(0.25); 3],
            Starting::new(0.25),
            &tight
        ));
    }

    /// A call already starting whose next window will come late (its start went worse than
    /// the replay that let it start said): no new call joins it, even one whose own windows
    /// would not make it later, until it is back on time.
    #[test]
    fn no_call_joins_a_start_already_running_late() {
        let p = profile(0.004);
        // No prefill to pause it: the new call changes nothing for it.
        let c = StartCosts {
            prefill_s: 0.0,
            prefill_row_s: 0.0,
            ..costs()
        };
        // Its next window (29 codes, 116 ms, 136 ms with the margin) against 100 ms in hand.
        let late = Starting {
            decoded: 37,
            delivered: 3,
            in_hand: Some(0.10),
            first_due: 0.0,
        };
        assert!(lateness(&p, &[late], &c) > 0.0);
        // The new call's windows come after it in deadline order and make it no later.
        let new = Starting::new(0.25);
        assert!(lateness(&p, &[late, new], &c) <= lateness(&p, &[late], &c) + SAME_LATENESS_S);
        assert!(!may_start(&p, &[late], new, &c));
        // Back on time, it lets the new call start.
        let on_time = Starting {
            in_hand: Some(0.30),
            ..late
        };
        assert!(may_start(&p, &[on_time], new, &c));
    }

    /// The calls under way take their share of the vocoder in whole forwards: a window of a
    /// start may wait for one that has just begun.
    #[test]
    fn a_forward_under_way_delays_the_starts() {
        let p = profile(0.002);
        let starting = Starting {
            decoded: 13,
            delivered: 1,
            in_hand: Some(0.12),
            first_due: 0.0,
        };
        assert!(may_start(&p, &[starting], Starting::new(0.25), &costs()));
        let lump = StartCosts {
            under_way_forward_s: p.under_way_forward_s(2, 2),
            ..costs()
        };
        assert!(lump.under_way_forward_s > 0.06, "{}", lump.under_way_forward_s);
        assert!(!may_start(&p, &[starting], Starting::new(0.25), &lump));
        assert_eq!(p.under_way_forward_s(0, 2), 0.0, "nothing under way");
    }

    /// First windows that share a forward reach their listeners together, and so their
    /// second windows fall due together: the replay batches them as the vocoder does, and
    /// fewer calls start at once than one first window per forward would let.
    #[test]
    fn first_windows_in_one_forward_bring_the_second_ones_due_together() {
        let p = StartProfile {
            first_batches: vec![(2, 1.2), (4, 1.5), (8, 2.5)],
            ..profile(0.002)
        };
        let serial = costs();
        let together = StartCosts {
            first_batch: 8,
            ..costs()
        };
        // Five calls keep up with one first window per forward; batched, their second
        // windows come too late.
        let five = vec![Starting::new(0.25); 5];
        assert!(keeps_up(&p, &five, &serial));
        assert!(!keeps_up(&p, &five, &together));
        assert!(started_together(&p, 8, &together) < started_together(&p, 8, &serial));
    }

    /// First windows batch as far as the rehearsal says it saves time, and only as far as the
    /// vocoder can render their second windows within the first chunks' audio.
    #[test]
    fn first_windows_batch_as_far_as_their_second_ones_can_follow() {
        let batches = vec![(2, 1.2), (4, 1.5), (8, 2.5)];
        let slow = StartProfile {
            first_batches: batches.clone(),
            ..profile(0.002)
        };
        // First audio 140 ms; second windows 26 ms each, one per forward.
        assert_eq!(slow.best_first_batch(16, 1, 0.02), 4, "(140 - 20) / 26 ms: 4 follow");
        assert_eq!(slow.best_first_batch(16, 1, 0.08), 2, "(140 - 80) / 26 ms: 2 follow");
        assert_eq!(slow.best_first_batch(3, 1, 0.02), 2, "the limit holds");
        let fast = StartProfile {
            first_batches: batches,
            ..profile(0.0002)
        };
        assert_eq!(fast.best_first_batch(16, 1, 0.08), 8);
        // Never fewer than the batch of other windows; nothing rehearsed: that batch.
        let unmeasured = profile(0.002);
        assert_eq!(unmeasured.best_first_batch(16, 1, 0.08), 1);
    }

    /// Each call that starts slows every decode step: calls start only while the decoder,
    /// with them, still decodes every starting call's windows in time.
    #[test]
    fn each_new_call_slows_the_decoder() {
        let p = profile(0.0005);
        let started = |added_step_s: f64| {
            let calls = [held(); 15];
            let step = |n: usize| 0.004 + added_step_s * n as f64;
            let cleared = clearable(&p, vec![Starting::new(0.25)], &calls, 1, costs(), step);
            1 + cleared.iter().filter(|&&c| c).count()
        };
        let free = started(0.0);
        let slowed = started(0.006);
        assert!(slowed < free, "{slowed} vs {free}");
        assert!((1..=4).contains(&slowed), "{slowed}");
    }

    /// The decoder counts too: windows wait for their codes.
    #[test]
    fn a_slow_decoder_delays_the_windows() {
        let p = profile(0.0005);
        let slow = StartCosts {
            step_s: 0.040,
            ..costs()
        };
        assert!(keeps_up(&p, &[Starting::new(0.25)], &costs()));
        assert!(
            !keeps_up(&p, &[Starting::new(0.25)], &slow),
            "a decoder slower than real time runs dry"
        );
    }
}
