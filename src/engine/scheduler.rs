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
/// then every `chunk`, or (`grow`) chunks growing from `first` to `chunk`, each no longer than
/// the audio already rendered (the windowed stream's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    pub first: usize,
    pub chunk: usize,
    pub grow: bool,
}

impl ChunkPlan {
    /// Codes to decode before the next chunk, once `rendered` of the sentence's `decoded` codes
    /// are rendered (`rendered` is a chunk boundary).
    fn next_chunk_len(&self, rendered: usize) -> usize {
        if rendered == 0 {
            self.first.max(1)
        } else if self.grow {
            rendered.max(self.first).min(self.chunk).max(1)
        } else {
            self.chunk.max(1)
        }
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
        };
        let ends: Vec<usize> = (1..=80).filter(|&n| plan.completes_chunk(n)).collect();
        assert_eq!(ends, vec![8, 16, 32, 52, 72]);
        assert_eq!(plan.to_next_chunk(0), 8);
        assert_eq!(plan.to_next_chunk(9), 7);
        let fixed = ChunkPlan { grow: false, ..plan };
        let ends: Vec<usize> = (1..=50).filter(|&n| fixed.completes_chunk(n)).collect();
        assert_eq!(ends, vec![8, 28, 48]);
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

/// The scheduler against a fake decoder (fixed costs per step and batch size) on a simulated
/// clock, with callers that play their audio in real time.
#[cfg(test)]
pub(crate) mod simulation {
    use std::collections::VecDeque;

    use super::*;
    use crate::engine::capacity::{Admission, CODES_PER_SECOND};

    /// Audio kept in hand by the scheduler in the simulation.
    pub const HORIZON_S: f64 = 2.0;

    /// One caller: when it asks, and the codes of each of its sentences.
    #[derive(Debug, Clone)]
    pub struct Call {
        pub arrival: f64,
        pub sentences: Vec<usize>,
    }

    #[derive(Debug, Clone)]
    pub struct Setup {
        pub policy: Policy,
        pub costs: CostModel,
        pub max_batch: usize,
        pub chunks: ChunkPlan,
        /// None: admit while a slot is free (the former engine).
        pub admission: Option<Admission>,
        pub first_audio_target: f64,
        /// How long a caller may wait in the queue before it is refused.
        pub queue_patience: f64,
        /// Delay between a chunk's last code and its audio at the caller (vocoder, delivery).
        pub delivery: f64,
    }

    #[derive(Debug, Default, Clone, PartialEq)]
    pub struct Outcome {
        pub calls: usize,
        pub refused: usize,
        /// Times a caller's audio ran out before the speech ended, and the silence in total.
        pub underruns: usize,
        pub silence_s: f64,
        pub first_audio_p95: f64,
        pub busy_s: f64,
        pub sim_s: f64,
    }

    struct Row {
        id: RowId,
        call: Call,
        queued: f64,
        phase: Phase,
        sentence: usize,
        decoded: usize,
        rendered: usize,
        /// When the caller's buffered audio runs out (None before any audio).
        plays_until: Option<f64>,
        first_audio: Option<f64>,
        /// Chunks rendered but not yet at the caller: (arrival time, seconds of audio).
        in_flight: VecDeque<(f64, f64)>,
    }

    impl Row {
        fn deadline(&self, target: f64) -> f64 {
            self.plays_until.unwrap_or(self.queued + target)
        }
    }

    pub fn run(setup: &Setup, calls: &[Call]) -> Outcome {
        let mut sched = Scheduler::new(setup.policy, 0.02, HORIZON_S, 8.0);
        let mut out = Outcome {
            calls: calls.len(),
            ..Outcome::default()
        };
        let mut arrivals: VecDeque<&Call> = calls.iter().collect();
        let mut queue: VecDeque<(f64, Call)> = VecDeque::new();
        let mut rows: Vec<Row> = Vec::new();
        let mut first_audio = Vec::new();
        let mut now = 0.0f64;
        let mut next_id = 0;
        loop {
            while arrivals.front().is_some_and(|c| c.arrival <= now) {
                let c = arrivals.pop_front().unwrap();
                queue.push_back((c.arrival, c.clone()));
            }
            // Callers that waited too long are refused.
            let before = queue.len();
            queue.retain(|(at, _)| now - at <= setup.queue_patience);
            out.refused += before - queue.len();
            while let Some((at, _)) = queue.front() {
                let room =
                    rows.len() < setup.max_batch && setup.admission.is_none_or(|a| a.admits(&setup.costs, rows.len()));
                if !room {
                    break;
                }
                let queued = *at;
                let (_, call) = queue.pop_front().unwrap();
                next_id += 1;
                rows.push(Row {
                    id: next_id,
                    call,
                    queued,
                    phase: Phase::Prefill,
                    sentence: 0,
                    decoded: 0,
                    rendered: 0,
                    plays_until: None,
                    first_audio: None,
                    in_flight: VecDeque::new(),
                });
            }
            deliver(&mut rows, now, &mut out, &mut first_audio);
            rows.retain(|r| !(r.sentence >= r.call.sentences.len() && r.in_flight.is_empty()));
            let views: Vec<RowView> = rows
                .iter()
                .filter(|r| r.sentence < r.call.sentences.len())
                .map(|r| RowView {
                    id: r.id,
                    phase: r.phase,
                    deadline: r.deadline(setup.first_audio_target),
                    to_chunk: setup.chunks.to_next_chunk(r.decoded),
                    fresh: r.first_audio.is_none() && r.sentence == 0 && r.rendered == 0,
                })
                .collect();
            let action = sched.plan(now, &views, &setup.costs);
            let (ran, cost) = match &action {
                Action::Prefill(ids) => (ids.clone(), setup.costs.prefill(ids.len())),
                Action::Step(ids) => (ids.clone(), setup.costs.step(ids.len())),
                Action::Idle(wake) => {
                    let next_event = [
                        arrivals.front().map(|c| c.arrival),
                        *wake,
                        rows.iter()
                            .filter_map(|r| r.in_flight.front().map(|c| c.0))
                            .reduce(f64::min),
                        queue.front().map(|(at, _)| at + setup.queue_patience + 1e-9),
                    ]
                    .into_iter()
                    .flatten()
                    .reduce(f64::min);
                    match next_event {
                        // At least a microsecond: a wake-up rounded to now would spin.
                        Some(t) => now = t.max(now + 1e-6),
                        None => break,
                    }
                    continue;
                }
            };
            now += cost;
            out.busy_s += cost;
            for r in rows.iter_mut().filter(|r| ran.contains(&r.id)) {
                // A prefill yields the sentence's first code, as the real decoder does.
                r.phase = Phase::Decode;
                r.decoded += 1;
                let len = r.call.sentences[r.sentence];
                let ends_sentence = r.decoded >= len;
                if setup.chunks.completes_chunk(r.decoded) || ends_sentence {
                    let audio = (r.decoded - r.rendered) as f64 / CODES_PER_SECOND;
                    r.in_flight.push_back((now + setup.delivery, audio));
                    r.rendered = r.decoded;
                }
                if ends_sentence {
                    r.sentence += 1;
                    r.decoded = 0;
                    r.rendered = 0;
                    r.phase = Phase::Prefill;
                }
            }
        }
        out.sim_s = now;
        first_audio.sort_by(f64::total_cmp);
        if !first_audio.is_empty() {
            let rank = ((0.95 * first_audio.len() as f64).ceil() as usize).clamp(1, first_audio.len());
            out.first_audio_p95 = first_audio[rank - 1];
        }
        out
    }

    /// Chunks reach their callers; a chunk arriving after the caller ran dry is an underrun.
    fn deliver(rows: &mut [Row], now: f64, out: &mut Outcome, first_audio: &mut Vec<f64>) {
        for r in rows.iter_mut() {
            while r.in_flight.front().is_some_and(|c| c.0 <= now) {
                let (at, audio) = r.in_flight.pop_front().unwrap();
                r.plays_until = Some(match r.plays_until {
                    None => {
                        r.first_audio = Some(at);
                        first_audio.push(at - r.queued);
                        at + audio
                    }
                    Some(until) if at > until + 1e-9 => {
                        if std::env::var("SIM_DEBUG").is_ok() {
                            eprintln!(
                                "underrun row {} at {at:.3} until {until:.3} sentence {} decoded {} audio {audio:.3}",
                                r.id, r.sentence, r.decoded
                            );
                        }
                        out.underruns += 1;
                        out.silence_s += at - until;
                        at + audio
                    }
                    Some(until) => until + audio,
                });
            }
        }
    }

    /// A deterministic stream of pseudo-random numbers in [0, 1).
    pub struct Lcg(pub u64);

    impl Lcg {
        pub fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Sentences of a call: short prompts and long readings mixed.
    pub fn text(rng: &mut Lcg) -> Vec<usize> {
        if rng.next() < 0.5 {
            vec![25 + (rng.next() * 30.0) as usize]
        } else {
            (0..2 + (rng.next() * 3.0) as usize)
                .map(|_| 40 + (rng.next() * 60.0) as usize)
                .collect()
        }
    }

    /// Mean speech per call of [`text`], seconds.
    pub fn mean_call_s() -> f64 {
        let mut rng = Lcg(99);
        let n = 10_000;
        let codes: usize = (0..n).map(|_| text(&mut rng).iter().sum::<usize>()).sum();
        codes as f64 / n as f64 / CODES_PER_SECOND
    }

    /// Poisson arrivals for `span` seconds keeping `concurrent` calls speaking on average.
    pub fn poisson(concurrent: f64, span: f64, seed: u64) -> Vec<Call> {
        let mut rng = Lcg(seed);
        let rate = concurrent / mean_call_s();
        let mut t = 0.0;
        let mut calls = Vec::new();
        loop {
            t += -(1.0 - rng.next()).ln() / rate;
            if t > span {
                return calls;
            }
            calls.push(Call {
                arrival: t,
                sentences: text(&mut rng),
            });
        }
    }

    /// Arrivals evenly spaced, for the same average.
    pub fn steady(concurrent: f64, span: f64, seed: u64) -> Vec<Call> {
        let mut rng = Lcg(seed);
        let gap = mean_call_s() / concurrent;
        (0..(span / gap) as usize)
            .map(|i| Call {
                arrival: i as f64 * gap,
                sentences: text(&mut rng),
            })
            .collect()
    }

    /// `size` calls at once every `every` seconds.
    pub fn bursts(size: usize, every: f64, span: f64, seed: u64) -> Vec<Call> {
        let mut rng = Lcg(seed);
        let mut calls = Vec::new();
        let mut t = 0.0;
        while t < span {
            for _ in 0..size {
                calls.push(Call {
                    arrival: t,
                    sentences: text(&mut rng),
                });
            }
            t += every;
        }
        calls
    }
}

/// The simulation's verdict: zero underruns at every load, up to 90% of the fake engine's
/// capacity and beyond it (where calls are refused instead); every steady call admitted up to
/// 80%; the former rule fails the same runs. With chunks that grow as long as the audio
/// already sent (the shipped windowed plan) a starting call needs the decoder at about 1.5
/// times real time, so near capacity underruns remain whatever the order: see
/// `growing_chunks_for_the_record`.
/// `cargo test --release --lib engine::scheduler::simulation_tests -- --nocapture` prints the table.
#[cfg(test)]
mod simulation_tests {
    use super::simulation::*;
    use super::*;
    use crate::engine::capacity::Admission;

    const SPAN_S: f64 = 240.0;
    const SENTENCE_S: f64 = 2.5;

    /// Chunks that never outgrow the audio a caller has in hand: a fixed 8 codes
    /// (`stream_chunk_tokens = first_chunk_tokens = 8`).
    const STEADY_CHUNKS: ChunkPlan = ChunkPlan {
        first: 8,
        chunk: 8,
        grow: false,
    };
    /// The shipped windowed plan: 8 codes first, then chunks growing to 20, each as long as
    /// the audio already sent.
    const GROWING_CHUNKS: ChunkPlan = ChunkPlan {
        first: 8,
        chunk: 20,
        grow: true,
    };

    /// A fake decoder: 4 ms + 2.5 ms per row and step, 10 ms + 5 ms per row and prefill.
    fn setup(policy: Policy) -> Setup {
        let costs = CostModel::linear(16, (0.004, 0.0025), (0.010, 0.005));
        Setup {
            policy,
            admission: match policy {
                Policy::EarliestDeadline => Some(Admission {
                    max_load: 0.85,
                    sentence_s: SENTENCE_S,
                }),
                Policy::FirstChunkFirst { .. } => None,
            },
            costs,
            max_batch: 16,
            chunks: STEADY_CHUNKS,
            first_audio_target: 0.25,
            queue_patience: 1.0,
            delivery: 0.01,
        }
    }

    /// Calls the fake engine holds in real time with all of its time.
    fn capacity() -> f64 {
        setup(Policy::EarliestDeadline).costs.real_time_rows(1.0, SENTENCE_S) as f64
    }

    fn patterns(load: f64, seed: u64) -> Vec<(&'static str, Vec<Call>)> {
        let concurrent = load * capacity();
        vec![
            ("poisson", poisson(concurrent, SPAN_S, seed)),
            ("steady", steady(concurrent, SPAN_S, seed)),
            (
                "bursts",
                bursts(concurrent.round().max(1.0) as usize, 1.5 * mean_call_s(), SPAN_S, seed),
            ),
        ]
    }

    fn table(policy: Policy, chunks: ChunkPlan, loads: &[f64]) -> Vec<(f64, &'static str, Outcome)> {
        let s = Setup {
            chunks,
            ..setup(policy)
        };
        let mut rows = Vec::new();
        for &load in loads {
            for (name, calls) in patterns(load, 7) {
                let out = run(&s, &calls);
                eprintln!(
                    "{policy:?} chunks {}/{} load {:>4.0}% {name:>8}: calls {:>4} refused {:>4} underruns {:>4} silence {:>6.2}s ttfa95 {:>5.0}ms busy {:>3.0}%",
                    chunks.first,
                    chunks.chunk,
                    load * 100.0,
                    out.calls,
                    out.refused,
                    out.underruns,
                    out.silence_s,
                    out.first_audio_p95 * 1e3,
                    100.0 * out.busy_s / out.sim_s
                );
                rows.push((load, name, out));
            }
        }
        rows
    }

    #[test]
    fn earliest_deadline_never_runs_a_caller_dry() {
        eprintln!("fake engine capacity: {} calls", capacity());
        let rows = table(
            Policy::EarliestDeadline,
            STEADY_CHUNKS,
            &[0.3, 0.5, 0.7, 0.8, 0.9, 1.2, 1.5],
        );
        for (load, name, out) in &rows {
            assert_eq!(out.underruns, 0, "load {load} {name}: {out:?}");
            if *load <= 0.5 {
                assert_eq!(out.refused, 0, "load {load} {name}: refused below capacity");
            }
            if *load <= 0.8 && *name == "steady" {
                assert_eq!(out.refused, 0, "load {load} {name}: steady load below capacity refused");
            }
            if *load > 1.0 && *name != "bursts" {
                assert!(out.refused > 0, "load {load} {name}: overload must be refused: {out:?}");
            }
        }
    }

    /// Chunks that grow as long as the audio already sent need the decoder at about 1.5 times
    /// real time while a call starts: with many calls starting at once near capacity, no order
    /// of steps avoids running dry. Printed for the record; not a pass/fail check.
    #[test]
    fn growing_chunks_for_the_record() {
        let rows = table(Policy::EarliestDeadline, GROWING_CHUNKS, &[0.5, 0.7, 0.9]);
        assert_eq!(rows.len(), 9);
    }

    #[test]
    fn former_policy_fails_the_same_runs() {
        let rows = table(
            Policy::FirstChunkFirst { first_chunk_tokens: 8 },
            STEADY_CHUNKS,
            &[0.5, 0.7, 0.8, 0.9, 1.2],
        );
        let below: usize = rows.iter().filter(|r| r.0 <= 0.9).map(|r| r.2.underruns).sum();
        assert!(
            below > 0,
            "the former rule was expected to run callers dry below capacity"
        );
    }
}
