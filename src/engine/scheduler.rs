//! Which rows the batched decoder runs next. Pure: it sees each row's deadline and progress and
//! the decoder's measured costs, never a tensor or a clock of its own, so a simulation with a
//! fake decoder drives it as the engine does (see the tests below).
//!
//! Earliest deadline first. A row's deadline is when its listener runs out of audio (before
//! its first audio: when the listener starts waiting plus the first-audio target). A step runs
//! every speaking row: batching makes the extra rows nearly free. Work that leaves rows behind
//! (a prefill for a new request or a row's next sentence; steps of only the rows still waiting
//! for their first audio) goes first only while every other row's slack covers its cost; when
//! the slack runs out, the row with the earliest deadline decides.

use super::capacity::CostModel;

/// A row as the driver names it.
pub type RowId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its next sentence needs a prefill (a new request, or the next sentence of one).
    Prefill,
    /// It holds a slot and decodes one code per step.
    Decode,
}

/// What the scheduler knows of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowView {
    pub id: RowId,
    pub phase: Phase,
    /// When its listener runs out of audio, in seconds on the driver's clock.
    pub deadline: f64,
    /// Codes still to decode before its next chunk of audio can be rendered.
    pub to_chunk: usize,
    /// Its listener waits for its first audio now.
    pub fresh: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Prefill these rows together.
    Prefill(Vec<RowId>),
    /// One decode step of these rows together.
    Step(Vec<RowId>),
    /// Nothing to do before this time (None: before new work arrives).
    Idle(Option<f64>),
}

/// Codes after which the vocoder renders a sentence's chunks: the first after `first` codes,
/// then every `chunk`, or (`grow`) chunks growing up to `chunk`, each no longer than the audio
/// already emitted (the windowed stream's rule). The newest `holdback` codes of each chunk wait
/// for the next one (their audio needs the codes after them), all of them at the sentence's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    pub first: usize,
    pub chunk: usize,
    pub grow: bool,
    pub holdback: usize,
}

impl ChunkPlan {
    /// Codes to decode before the next chunk, once `rendered` of the sentence's `decoded` codes
    /// are rendered (`rendered` is a chunk boundary).
    fn next_chunk_len(&self, rendered: usize) -> usize {
        if rendered == 0 {
            self.first.max(1)
        } else if self.grow {
            // Never fewer than the held-back codes: smaller chunks would mostly redo context.
            self.emitted(rendered).max(self.holdback.max(1)).min(self.chunk)
        } else {
            self.chunk.max(1)
        }
    }

    /// Codes whose audio the listener has once the chunk that ends at code `decoded` is
    /// rendered (at the sentence's end: every code).
    pub fn emitted(&self, decoded: usize) -> usize {
        decoded.saturating_sub(self.holdback)
    }

    /// Where the chunk that holds code `decoded + 1` ends: (its start, its length).
    pub fn chunk_around(&self, decoded: usize) -> (usize, usize) {
        let mut start = 0;
        loop {
            let len = self.next_chunk_len(start);
            if decoded < start + len {
                return (start, len);
            }
            start += len;
        }
    }

    /// Codes still to decode, after `decoded`, before the next chunk is complete.
    pub fn to_next_chunk(&self, decoded: usize) -> usize {
        let (start, len) = self.chunk_around(decoded);
        start + len - decoded
    }

    /// Whether code number `decoded` (1-based) completes a chunk.
    pub fn completes_chunk(&self, decoded: usize) -> bool {
        decoded > 0 && self.to_next_chunk(decoded - 1) == 1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Earliest deadline first (the engine's).
    EarliestDeadline,
    /// The former rule, kept for comparison: every prefill at once, and rows without audio
    /// get up to `first_chunk_tokens` steps of their own before each step of every row.
    FirstChunkFirst { first_chunk_tokens: usize },
}

/// Decides the decoder's next action from the rows' state.
#[derive(Debug, Clone)]
pub struct Scheduler {
    policy: Policy,
    /// Seconds kept in hand beyond a row's own decoding (the vocoder, delivery, jitter).
    margin: f64,
    /// Work starts when a row's slack falls to this: rows keep about this much audio in hand.
    horizon: f64,
    /// A row with more audio than this buffered ahead of its listener sits out the steps.
    ahead: f64,
    /// FirstChunkFirst: steps the started rows have sat out.
    steady_waited: usize,
}

impl Scheduler {
    pub fn new(policy: Policy, margin: f64, horizon: f64, ahead: f64) -> Self {
        Self {
            policy,
            margin,
            horizon,
            ahead,
            steady_waited: 0,
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn plan(&mut self, now: f64, rows: &[RowView], costs: &CostModel) -> Action {
        match self.policy {
            Policy::EarliestDeadline => self.earliest_deadline(now, rows, costs),
            Policy::FirstChunkFirst { first_chunk_tokens } => self.first_chunk_first(rows, first_chunk_tokens),
        }
    }

    fn earliest_deadline(&self, now: f64, rows: &[RowView], costs: &CostModel) -> Action {
        let prefill: Vec<&RowView> = rows.iter().filter(|r| r.phase == Phase::Prefill).collect();
        let (decoding, resting): (Vec<&RowView>, Vec<&RowView>) = rows
            .iter()
            .filter(|r| r.phase == Phase::Decode)
            .partition(|r| r.deadline - now <= self.ahead);
        if decoding.is_empty() && prefill.is_empty() {
            let wake = resting.iter().map(|r| r.deadline - self.ahead).reduce(f64::min);
            return Action::Idle(wake);
        }
        let step_all = costs.step(decoding.len().max(1));
        // Time a row has to spare if every step from now runs every row.
        let slack = |r: &RowView| r.deadline - now - r.to_chunk as f64 * step_all - self.margin;
        let least = |rows: &[&RowView]| rows.iter().map(|r| slack(r)).fold(f64::INFINITY, f64::min);
        let earliest = |rows: &[&RowView]| rows.iter().map(|r| r.deadline).fold(f64::INFINITY, f64::min);
        let least_decoding = least(&decoding);
        let mut least_prefill = f64::INFINITY;
        if !prefill.is_empty() {
            let cost = costs.prefill(prefill.len());
            least_prefill = least(&prefill) - cost;
            // Prefills wait until one is due, so that they run together; then they go first
            // if every decoding row can spare the time, or if they are the more urgent.
            let due = least_prefill <= self.horizon || decoding.is_empty();
            if due && (least_decoding >= cost || earliest(&prefill) <= earliest(&decoding)) {
                return Action::Prefill(ids(&prefill));
            }
        }
        // Rows that stepping everyone would make late (a new call's first audio, a call whose
        // chunks are still growing) step alone, on the time the others can spare.
        let (late, others): (Vec<&RowView>, Vec<&RowView>) = decoding.iter().partition(|r| slack(r) < 0.0);
        if !late.is_empty() && !others.is_empty() {
            let alone = costs.step(late.len());
            let spare = others
                .iter()
                .map(|r| r.deadline - now - r.to_chunk as f64 * step_all - self.margin - alone)
                .fold(f64::INFINITY, f64::min);
            if spare >= 0.0 {
                return Action::Step(ids(&late));
            }
        }
        // Every row steps together, when the first of them is due: rows stay in step with
        // their listeners and batches stay full.
        if least_decoding <= self.horizon {
            return Action::Step(ids(&decoding));
        }
        Action::Idle(Some(now + least_decoding.min(least_prefill) - self.horizon))
    }

    fn first_chunk_first(&mut self, rows: &[RowView], first_chunk_tokens: usize) -> Action {
        let prefill: Vec<&RowView> = rows.iter().filter(|r| r.phase == Phase::Prefill).collect();
        if !prefill.is_empty() {
            return Action::Prefill(ids(&prefill));
        }
        let decoding: Vec<&RowView> = rows.iter().filter(|r| r.phase == Phase::Decode).collect();
        if decoding.is_empty() {
            return Action::Idle(None);
        }
        let fresh: Vec<&RowView> = decoding.iter().copied().filter(|r| r.fresh).collect();
        if !fresh.is_empty() && fresh.len() < decoding.len() && self.steady_waited < first_chunk_tokens {
            self.steady_waited += 1;
            Action::Step(ids(&fresh))
        } else {
            self.steady_waited = 0;
            Action::Step(ids(&decoding))
        }
    }
}

fn ids(rows: &[&RowView]) -> Vec<RowId> {
    rows.iter().map(|r| r.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: RowId, phase: Phase, deadline: f64, to_chunk: usize, fresh: bool) -> RowView {
        RowView {
            id,
            phase,
            deadline,
            to_chunk,
            fresh,
        }
    }

    fn costs() -> CostModel {
        CostModel::linear(8, (0.004, 0.002), (0.010, 0.005))
    }

    #[test]
    fn chunks_grow_like_the_windowed_stream() {
        let plan = ChunkPlan {
            first: 8,
            chunk: 20,
            grow: true,
            holdback: 0,
        };
        let ends: Vec<usize> = (1..=80).filter(|&n| plan.completes_chunk(n)).collect();
        assert_eq!(ends, vec![8, 16, 32, 52, 72]);
        assert_eq!(plan.to_next_chunk(0), 8);
        assert_eq!(plan.to_next_chunk(9), 7);
        let fixed = ChunkPlan { grow: false, ..plan };
        let ends: Vec<usize> = (1..=50).filter(|&n| fixed.completes_chunk(n)).collect();
        assert_eq!(ends, vec![8, 28, 48]);
        // 5 codes held back: each chunk grows to the audio emitted, at least 5 codes.
        let held = ChunkPlan { holdback: 5, ..plan };
        let ends: Vec<usize> = (1..=80).filter(|&n| held.completes_chunk(n)).collect();
        assert_eq!(ends, vec![8, 13, 21, 37, 57, 77]);
        assert_eq!(held.emitted(8), 3);
        assert_eq!(held.emitted(3), 0);
    }

    #[test]
    fn prefill_goes_first_while_nobody_is_about_to_run_dry() {
        let mut s = Scheduler::new(Policy::EarliestDeadline, 0.02, 1.0, 10.0);
        let rows = [
            row(1, Phase::Decode, 2.0, 5, false),
            row(2, Phase::Prefill, 0.5, 8, true),
        ];
        assert_eq!(s.plan(0.0, &rows, &costs()), Action::Prefill(vec![2]));
        // Row 1 runs dry before a prefill and its own five codes: it steps first.
        let rows = [
            row(1, Phase::Decode, 0.045, 5, false),
            row(2, Phase::Prefill, 0.5, 8, true),
        ];
        assert_eq!(s.plan(0.0, &rows, &costs()), Action::Step(vec![1]));
        // The new request's own deadline is earlier: it goes first anyway.
        let rows = [
            row(1, Phase::Decode, 0.045, 5, false),
            row(2, Phase::Prefill, 0.03, 8, true),
        ];
        assert_eq!(s.plan(0.0, &rows, &costs()), Action::Prefill(vec![2]));
    }

    #[test]
    fn fresh_rows_step_alone_only_on_others_slack() {
        let mut s = Scheduler::new(Policy::EarliestDeadline, 0.02, 1.0, 10.0);
        // Row 2 would miss its first-audio deadline if both stepped; row 1 can wait.
        let relaxed = [
            row(1, Phase::Decode, 3.0, 10, false),
            row(2, Phase::Decode, 0.07, 8, true),
        ];
        assert_eq!(s.plan(0.0, &relaxed, &costs()), Action::Step(vec![2]));
        // Row 2 is on time when everyone steps: everyone steps.
        let on_time = [
            row(1, Phase::Decode, 0.5, 10, false),
            row(2, Phase::Decode, 0.4, 8, true),
        ];
        assert_eq!(s.plan(0.0, &on_time, &costs()), Action::Step(vec![1, 2]));
        let tight = [
            row(1, Phase::Decode, 0.1, 10, false),
            row(2, Phase::Decode, 0.07, 8, true),
        ];
        assert_eq!(s.plan(0.0, &tight, &costs()), Action::Step(vec![1, 2]));
    }

    #[test]
    fn rows_far_ahead_rest_until_their_listener_catches_up() {
        let mut s = Scheduler::new(Policy::EarliestDeadline, 0.02, 1.0, 5.0);
        let rows = [
            row(1, Phase::Decode, 9.0, 10, false),
            row(2, Phase::Decode, 1.0, 10, false),
        ];
        assert_eq!(s.plan(0.0, &rows, &costs()), Action::Step(vec![2]));
        assert_eq!(s.plan(0.0, &rows[..1], &costs()), Action::Idle(Some(4.0)));
        // Nobody due within the horizon: wait until the first is.
        let rows = [row(1, Phase::Decode, 3.0, 10, false)];
        match s.plan(0.0, &rows, &costs()) {
            Action::Idle(Some(t)) => assert!((t - (3.0 - 0.06 - 0.02 - 1.0)).abs() < 1e-9, "{t}"),
            other => panic!("expected to idle, got {other:?}"),
        }
        assert_eq!(s.plan(0.0, &[], &costs()), Action::Idle(None));
    }

    #[test]
    fn former_policy_gives_new_rows_exclusive_steps() {
        let mut s = Scheduler::new(Policy::FirstChunkFirst { first_chunk_tokens: 2 }, 0.0, 1.0, 10.0);
        let rows = [
            row(1, Phase::Decode, 0.0, 1, false),
            row(2, Phase::Decode, 5.0, 8, true),
        ];
        let plans: Vec<Action> = (0..3).map(|_| s.plan(0.0, &rows, &costs())).collect();
        assert_eq!(
            plans,
            vec![Action::Step(vec![2]), Action::Step(vec![2]), Action::Step(vec![1, 2])]
        );
    }
}
