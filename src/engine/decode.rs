//! The decode loop: drives the batched XTTS decoder with the [`Scheduler`]. Each turn it drops
//! rows whose listener left, refuses requests that waited too long, admits new ones while the
//! measured capacity allows, and runs what the scheduler picks (a batched prefill or step).
//! Text and voices are prepared on their own thread and audio rendered on the vocoder's: this
//! loop only decodes.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tch::Tensor;

use super::capacity::{Admission, CostModel, CODES_PER_SECOND};
use super::scheduler::{Action, ChunkPlan, Phase, RowId, RowView, Scheduler};
use super::start::{clearable, Held, StartCosts, StartProfile, Starting};
use super::vocoder::VocoderWork;
use super::{AudioSink, Fault, Health, Job, JobQueue, Metrics, SpeechOptions, HEARTBEAT_EVERY, METRICS};
use crate::xtts::batch::{BatchDecoder, RowOptions, Token, COND_LATENTS};
use crate::xtts::model::Xtts;
use crate::xtts::sampling::SamplingParams;
use crate::xtts::voice::Voice;

/// A request ready to decode: its sentences' text tokens, their budgets of codes
/// ([`crate::endings::sentence_budget`]) and its voice.
pub struct Prepared {
    pub sentences: Vec<Vec<i64>>,
    pub budgets: Vec<usize>,
    pub voice: Voice,
}

/// How the loop schedules and admits.
#[derive(Debug, Clone)]
pub struct DecodeSettings {
    pub sampling: SamplingParams,
    pub forced_tokens: Option<usize>,
    /// Stop each sentence at its budget of codes. Off in the parity-proven reference stream
    /// mode, and with forced lengths (which fix the length themselves).
    pub code_budget: bool,
    pub chunks: ChunkPlan,
    /// The configured speaking rate (a request may set its own).
    pub speed: f64,
    /// Target time from a request to its first audio (the deadline of a new request).
    pub first_audio_target: Duration,
    /// How long a request may wait for admission before it is refused as busy.
    pub admit_within: Duration,
    pub admission: Admission,
    /// A sentence's start as the vocoder rehearsed it (empty: every call starts at once).
    pub start: StartProfile,
    /// Seconds each window must reach its listener ahead of its need, in the start check.
    pub start_margin_s: f64,
    /// Windows the vocoder renders in one forward, at most, and first windows.
    pub vocoder_batch: usize,
    pub vocoder_first_batch: usize,
    pub fault: Option<Fault>,
}

/// A request that is admitted: preparing, waiting for a prefill, or decoding in a slot.
struct Speaking {
    row: RowId,
    job: Job,
    sentences: Vec<Vec<i64>>,
    budgets: Vec<usize>,
    /// Index of the sentence being decoded.
    sentence: usize,
    voice: Voice,
    phase: Phase,
    slot: usize,
    /// The sentence's id at the vocoder.
    id: u64,
    /// Codes of the sentence so far.
    decoded: usize,
    /// Codes of the sentence whose audio its complete chunks emit (the newest codes of a
    /// chunk wait for the next one).
    chunked: usize,
    /// Seconds of audio in complete chunks, over every sentence: what the listener will have
    /// once the vocoder has rendered what it was given.
    committed_s: f64,
    /// It may start: its start keeps every starting listener fed (see [`super::start`]).
    cleared: bool,
    /// The start check has held it back at least once.
    held: bool,
}

pub struct DecodeLoop<'m> {
    model: &'m Xtts,
    decoder: BatchDecoder<'m>,
    settings: DecodeSettings,
    vocoder: Sender<VocoderWork>,
    prepare: Sender<Job>,
    prepared: Receiver<(Job, anyhow::Result<Prepared>)>,
    /// Jobs handed to the preparing thread and not back yet.
    preparing: usize,
    rows: Vec<Speaking>,
    scheduler: Scheduler,
    costs: CostModel,
    epoch: Instant,
    next_id: u64,
    /// Vocoder time and codes when its cost was last observed.
    vocoder_seen: (u64, u64),
    /// Requests decoded to their end whose audio the vocoder has not finished: they still
    /// cost it, so admission counts them, and they may still be in their start (the decoder
    /// can finish a sentence long before its audio is rendered).
    vocoding: Vec<AudioSink>,
    /// Vocoder time and its rehearsed estimate when the slowdown was last observed.
    vocoder_timed: (u64, u64),
}

impl<'m> DecodeLoop<'m> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: &'m Xtts,
        decoder: BatchDecoder<'m>,
        settings: DecodeSettings,
        scheduler: Scheduler,
        costs: CostModel,
        vocoder: Sender<VocoderWork>,
        prepare: Sender<Job>,
        prepared: Receiver<(Job, anyhow::Result<Prepared>)>,
    ) -> Self {
        Self {
            model,
            decoder,
            settings,
            vocoder,
            prepare,
            prepared,
            preparing: 0,
            rows: Vec::new(),
            scheduler,
            costs,
            epoch: Instant::now(),
            next_id: 0,
            vocoder_seen: (Metrics::get(&METRICS.vocoder_us), Metrics::get(&METRICS.tokens)),
            vocoder_timed: (
                Metrics::get(&METRICS.vocoder_us),
                Metrics::get(&METRICS.vocoder_expected_us),
            ),
            vocoding: Vec::new(),
        }
    }

    /// Serves until the queue closes and every admitted request is over, or an engine thread dies.
    pub fn run(&mut self, jobs: &mut JobQueue, health: &Health) {
        while health.is_alive() {
            health.beat();
            self.drop_cancelled();
            self.refuse_expired(jobs);
            self.collect_prepared();
            self.admit(jobs);
            self.observe_vocoder();
            self.clear_starts();
            METRICS
                .speaking
                .store((self.rows.len() + self.preparing) as u64, Ordering::Relaxed);
            let now = Instant::now();
            let views = self.views(now);
            match self.scheduler.plan(self.secs(now), &views, &self.costs) {
                Action::Prefill(rows) => self.prefill(&rows),
                Action::Step(rows) => self.step(&rows),
                Action::Idle(wake) => {
                    if self.rows.is_empty() && self.preparing == 0 && jobs.is_closed() {
                        return;
                    }
                    let wait = wake.map_or(HEARTBEAT_EVERY, |w| {
                        Duration::from_secs_f64((w - self.secs(now)).clamp(0.0, HEARTBEAT_EVERY.as_secs_f64()))
                    });
                    self.idle(jobs, wait);
                }
            }
        }
    }

    fn secs(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.epoch).as_secs_f64()
    }

    /// Waits for work: a prepared request, or a queued one.
    fn idle(&mut self, jobs: &mut JobQueue, wait: Duration) {
        if self.preparing > 0 {
            let wait = wait.min(Duration::from_millis(5));
            if let Ok(done) = self.prepared.recv_timeout(wait) {
                self.take_prepared(done);
            }
        } else if jobs.waiting() > 0 {
            // Requests wait beyond the capacity: nothing to do until a row is due or one expires.
            std::thread::sleep(wait.min(Duration::from_millis(2)));
        } else {
            jobs.wait_until_queued(wait);
        }
    }

    fn vocode(&self, work: VocoderWork) {
        // Sending fails only when the vocoder thread is gone, which stops the engine.
        let _ = self.vocoder.send(work);
    }

    /// Seconds of vocoder work per second of audio, from its running totals; and how much
    /// slower than rehearsed it renders now (sharing the cores with the decoder, say).
    fn observe_vocoder(&mut self) {
        let took = (
            Metrics::get(&METRICS.vocoder_us),
            Metrics::get(&METRICS.vocoder_expected_us),
        );
        let (us, expected_us) = (took.0 - self.vocoder_timed.0, took.1 - self.vocoder_timed.1);
        if expected_us >= 20_000 {
            self.costs.observe_vocoder_slowdown(us as f64 / expected_us as f64);
            self.vocoder_timed = took;
        }
        let now = (Metrics::get(&METRICS.vocoder_us), Metrics::get(&METRICS.tokens));
        let (us, tokens) = (now.0 - self.vocoder_seen.0, now.1 - self.vocoder_seen.1);
        if tokens >= 200 {
            self.costs
                .observe_vocoder(us as f64 / 1e6, tokens as f64 / CODES_PER_SECOND);
            self.vocoder_seen = now;
        }
    }

    fn views(&self, now: Instant) -> Vec<RowView> {
        let target = self.settings.first_audio_target;
        self.rows
            .iter()
            .filter(|s| s.cleared)
            .map(|s| {
                let playout = s.job.playout();
                // Planned on the decoder's side: audio in complete chunks counts, rendered or
                // not (the margin covers the vocoder), minus what the listener has played.
                let origin = s.job.listener_waits_from();
                let committed = Duration::from_secs_f64(s.committed_s);
                let played = playout.played_duration();
                let dry = match playout.first_audio() {
                    None => origin + target,
                    Some(_) if !played.is_zero() => now + committed.saturating_sub(played),
                    Some(first) => first.max(origin) + committed,
                };
                RowView {
                    id: s.row,
                    phase: s.phase,
                    deadline: self.secs(dry),
                    to_chunk: self.settings.chunks.to_next_chunk(s.decoded),
                    fresh: playout.first_audio().is_none() && s.job.req.options.plays_in.is_zero(),
                }
            })
            .collect()
    }

    /// Frees the slots of requests whose listener hung up (or that failed in the vocoder).
    fn drop_cancelled(&mut self) {
        let (gone, kept): (Vec<Speaking>, Vec<Speaking>) = std::mem::take(&mut self.rows)
            .into_iter()
            .partition(|s| s.job.is_cancelled());
        self.rows = kept;
        for s in gone {
            if s.phase == Phase::Decode {
                self.decoder.release(s.slot);
                self.vocode(VocoderWork::Drop { id: s.id });
            }
        }
    }

    /// Refuses requests that waited longer than the engine may keep a listener waiting.
    fn refuse_expired(&mut self, jobs: &mut JobQueue) {
        let now = Instant::now();
        let within = self.settings.admit_within;
        let mut expired = jobs.take_expired(|job| now > job.listener_waits_from() + within);
        // Calls held back at their start, too.
        let (held, kept): (Vec<Speaking>, Vec<Speaking>) = std::mem::take(&mut self.rows)
            .into_iter()
            .partition(|s| !s.cleared && now > s.job.listener_waits_from() + within);
        self.rows = kept;
        expired.extend(held.into_iter().map(|s| s.job));
        for job in expired {
            Metrics::add(&METRICS.refused_busy, 1);
            let speaking = self.rows.len() + self.preparing + self.vocoding.len();
            job.finish(Err(anyhow!(
                "engine busy: no room within {} ms ({speaking} requests being served, the most the engine holds in real time)",
                within.as_millis()
            )));
        }
    }

    /// Admits queued requests while a slot is free and every admitted call keeps real time. A
    /// listener's next speech, asked while its current one plays, goes first and past the
    /// load check: its listener is served already, and it must not fall silent behind new calls.
    fn admit(&mut self, jobs: &mut JobQueue) {
        loop {
            let speaking = self.rows.len() + self.preparing;
            if speaking >= self.decoder.max_batch() {
                return;
            }
            let job = match jobs.take_first(Job::continues_speech) {
                Some(job) => job,
                None => {
                    let served = speaking + self.vocoding.len();
                    if !self.settings.admission.admits(&self.costs, served) {
                        return;
                    }
                    let Some(job) = jobs.try_next() else { return };
                    job
                }
            };
            if job.is_cancelled() {
                continue;
            }
            match self.prepare.send(job) {
                Ok(()) => self.preparing += 1,
                Err(e) => e.0.finish(Err(anyhow!("the text and voice thread stopped"))),
            }
        }
    }

    /// Clears held calls to start, oldest first, while the vocoder keeps every starting
    /// listener fed with them ([`may_start`]). A call starts at once when no other is starting
    /// (nothing to protect), when it is asked ahead of its playing (it has time) or when no
    /// start was rehearsed.
    fn clear_starts(&mut self) {
        let now = Instant::now();
        self.vocoding.retain(|sink| !sink.is_over());
        if self.rows.iter().all(|s| s.cleared) {
            return;
        }
        let profile = &self.settings.start;
        let mut starting = Vec::new();
        let mut steady = 0;
        for s in self.rows.iter().filter(|s| s.cleared) {
            let decoded = match (s.sentence, s.phase) {
                // Past its first sentence: every window of the start is decoded.
                (1.., _) => usize::MAX,
                (0, Phase::Decode) => s.decoded,
                (0, Phase::Prefill) => 0,
            };
            match self.starting(&s.job.sink(), decoded, now) {
                Some(call) => starting.push(call),
                None => steady += 1,
            }
        }
        for sink in &self.vocoding {
            match self.starting(sink, usize::MAX, now) {
                Some(call) => starting.push(call),
                None => steady += 1,
            }
        }
        let costs = StartCosts {
            step_s: 0.0,
            added_step_s: 0.0,
            lone_step_s: 0.0,
            prefill_s: self.costs.prefill(1),
            prefill_row_s: self.costs.prefill(2) - self.costs.prefill(1),
            vocoder_free: 1.0 - steady as f64 * self.costs.vocoder_s_per_audio_s(),
            under_way_forward_s: profile.under_way_forward_s(steady, self.settings.vocoder_batch),
            vocoder_scale: self.costs.vocoder_slowdown(),
            margin_s: self.settings.start_margin_s,
            vocoder_batch: self.settings.vocoder_batch,
            first_batch: self.settings.vocoder_first_batch,
        };
        let mut held: Vec<usize> = (0..self.rows.len()).filter(|&i| !self.rows[i].cleared).collect();
        held.sort_by_key(|&i| self.rows[i].job.listener_waits_from());
        let calls: Vec<Held> = held
            .iter()
            .map(|&i| Held {
                first_due: self.first_due(self.rows[i].job.listener_waits_from(), now),
                asked_ahead: !self.rows[i].job.req.options.plays_in.is_zero(),
            })
            .collect();
        // Held calls do not decode: the steps are those of the cleared ones.
        let decoding = self.rows.iter().filter(|s| s.cleared).count();
        let cleared = clearable(profile, starting, &calls, decoding, costs, |n| self.costs.step(n));
        for (&i, clear) in held.iter().zip(cleared) {
            if clear {
                self.rows[i].cleared = true;
            } else if !self.rows[i].held {
                // Counted once per call, however long it waits.
                self.rows[i].held = true;
                Metrics::add(&METRICS.starts_held, 1);
            }
        }
    }

    /// A request still in its start, as the start check sees it, with `decoded` codes of its
    /// first sentence (None: under way, or asked ahead of its playing). Its audio tells, not
    /// its decoding: the decoder may be sentences ahead of the vocoder.
    fn starting(&self, sink: &AudioSink, decoded: usize, now: Instant) -> Option<Starting> {
        let playout = sink.playout();
        let delivered = self.settings.start.delivered(playout.sent_duration().as_secs_f64());
        if delivered >= self.settings.start.windows.len() || sink.origin() > now {
            return None;
        }
        let in_hand = playout.first_audio().map(|_| {
            playout
                .runs_dry_at(sink.origin(), Duration::ZERO, now)
                .saturating_duration_since(now)
                .as_secs_f64()
        });
        Some(Starting {
            decoded,
            delivered,
            in_hand,
            first_due: self.first_due(sink.origin(), now),
        })
    }

    /// Seconds from now to the first-audio target of a listener waiting from `origin`
    /// (negative once past).
    fn first_due(&self, origin: Instant, now: Instant) -> f64 {
        super::secs_until(origin + self.settings.first_audio_target, now)
    }

    fn collect_prepared(&mut self) {
        while let Ok(done) = self.prepared.try_recv() {
            self.take_prepared(done);
        }
    }

    fn take_prepared(&mut self, (job, prepared): (Job, anyhow::Result<Prepared>)) {
        self.preparing -= 1;
        match prepared {
            Ok(p) if p.sentences.is_empty() => job.finish(Ok(())),
            Ok(p) => {
                self.next_id += 1;
                self.rows.push(Speaking {
                    row: self.next_id,
                    job,
                    sentences: p.sentences,
                    budgets: p.budgets,
                    sentence: 0,
                    voice: p.voice,
                    phase: Phase::Prefill,
                    slot: 0,
                    id: 0,
                    decoded: 0,
                    chunked: 0,
                    committed_s: 0.0,
                    cleared: false,
                    held: false,
                });
            }
            Err(e) => job.finish(Err(e)),
        }
    }

    fn row_options(&self, s: &Speaking) -> RowOptions {
        row_options(&self.settings, &s.job.req.options, s.sentence, &s.budgets)
    }

    fn take_rows(&mut self, ids: &[RowId]) -> Vec<Speaking> {
        let (taken, kept): (Vec<Speaking>, Vec<Speaking>) = std::mem::take(&mut self.rows)
            .into_iter()
            .partition(|s| ids.contains(&s.row));
        self.rows = kept;
        taken
    }

    /// Prefills each row's current sentence, all in one batch, and hands on their first codes.
    fn prefill(&mut self, ids: &[RowId]) {
        let started = Instant::now();
        let mut ready = Vec::new();
        for s in self.take_rows(ids) {
            let opts = self.row_options(&s);
            let prefix = self
                .model
                .gpt()
                .prefix_embeddings(&s.voice.gpt_cond_latent, &s.sentences[s.sentence]);
            match prefix {
                Ok(prefix) => ready.push((s, prefix, opts)),
                Err(e) => self.vocode(VocoderWork::Finish {
                    sink: s.job.sink(),
                    result: Err(e),
                }),
            }
        }
        let requests: Vec<(&Tensor, &RowOptions)> = ready.iter().map(|(_, p, o)| (p, o)).collect();
        let firsts = self.decoder.admit_many(&requests);
        let n = ready.len();
        for ((s, _, _), first) in ready.into_iter().zip(firsts) {
            self.start_with(s, first);
        }
        let secs = started.elapsed().as_secs_f64();
        self.costs.observe_prefill(n, secs);
        Metrics::add(&METRICS.busy_us, (secs * 1e6) as u64);
    }

    /// Hands on a sentence's first code (or its failure).
    fn start_with(&mut self, mut s: Speaking, first: anyhow::Result<Token>) {
        let first = match first {
            Ok(first) => first,
            Err(e) => {
                return self.vocode(VocoderWork::Finish {
                    sink: s.job.sink(),
                    result: Err(e),
                })
            }
        };
        self.next_id += 1;
        s.id = self.next_id;
        s.slot = first.slot;
        s.phase = Phase::Decode;
        s.decoded = 0;
        s.chunked = 0;
        self.vocode(VocoderWork::Begin {
            id: s.id,
            speaker: s.voice.speaker_embedding.shallow_clone(),
            speed: s.job.req.options.speed,
            sink: s.job.sink(),
        });
        self.advance(s, first);
    }

    /// Passes one code's latent to the vocoder; at the end of a sentence the row waits for
    /// the next one's prefill, and at the end of the last the request is over.
    fn advance(&mut self, mut s: Speaking, token: Token) {
        if let Some(why) = token.failed {
            // The decoder has freed the row's slot; the rest of the batch goes on.
            self.vocode(VocoderWork::Drop { id: s.id });
            return self.vocode(VocoderWork::Finish {
                sink: s.job.sink(),
                result: Err(anyhow!("decoding failed: {why}")),
            });
        }
        Metrics::add(&METRICS.tokens, 1);
        s.decoded += 1;
        if token.finished.is_some() || self.settings.chunks.completes_chunk(s.decoded) {
            let speed = s.job.req.options.speed.unwrap_or(self.settings.speed);
            let emitted = match token.finished {
                Some(_) => s.decoded,
                None => self.settings.chunks.emitted(s.decoded),
            };
            s.committed_s += emitted.saturating_sub(s.chunked) as f64 / CODES_PER_SECOND / speed;
            s.chunked = s.chunked.max(emitted);
        }
        self.vocode(VocoderWork::Latent {
            id: s.id,
            latent: token.latent,
        });
        if token.finished.is_none() {
            return self.rows.push(s);
        }
        self.vocode(VocoderWork::End { id: s.id });
        s.sentence += 1;
        if s.sentence >= s.sentences.len() {
            self.vocoding.push(s.job.sink());
            return self.vocode(VocoderWork::Finish {
                sink: s.job.sink(),
                result: Ok(()),
            });
        }
        s.phase = Phase::Prefill;
        s.decoded = 0;
        self.rows.push(s);
    }

    /// One batched decode step of the given rows.
    fn step(&mut self, ids: &[RowId]) {
        let started = Instant::now();
        let slots: Vec<usize> = self
            .rows
            .iter()
            .filter(|s| ids.contains(&s.row) && s.phase == Phase::Decode)
            .map(|s| s.slot)
            .collect();
        if self.settings.fault == Some(Fault::PanicStep) && slots.len() >= 2 {
            panic!("fault injected: panic_step");
        }
        Metrics::add(&METRICS.steps, 1);
        Metrics::add(&METRICS.step_rows, slots.len() as u64);
        let result = self.decoder.step(&slots);
        let secs = started.elapsed().as_secs_f64();
        self.costs.observe_step(slots.len(), secs);
        Metrics::add(&METRICS.busy_us, (secs * 1e6) as u64);
        let tokens = match result {
            Ok(tokens) => tokens,
            Err(e) => {
                // A failed step leaves its rows unusable: end those requests.
                for s in self.take_rows(ids) {
                    self.decoder.release(s.slot);
                    self.vocode(VocoderWork::Drop { id: s.id });
                    self.vocode(VocoderWork::Finish {
                        sink: s.job.sink(),
                        result: Err(anyhow!("decoding step failed: {e:#}")),
                    });
                }
                return;
            }
        };
        for token in tokens {
            let Some(at) = self
                .rows
                .iter()
                .position(|s| s.phase == Phase::Decode && s.slot == token.slot)
            else {
                continue;
            };
            let s = self.rows.swap_remove(at);
            self.advance(s, token);
        }
    }
}

/// How one sentence of a request decodes: its sampling, and where it must stop.
fn row_options(settings: &DecodeSettings, opts: &SpeechOptions, sentence: usize, budgets: &[usize]) -> RowOptions {
    RowOptions {
        params: opts.sentence_sampling(&settings.sampling, sentence),
        forced_tokens: settings.forced_tokens,
        max_codes: if settings.code_budget {
            budgets.get(sentence).copied()
        } else {
            None
        },
    }
}

/// Times the decoder at start (prefills of one row and of every slot; steps at batch sizes
/// from 1 to every slot), so admission knows the capacity before the first call. The slots
/// are left empty.
pub fn measure_costs(model: &Xtts, decoder: &mut BatchDecoder) -> anyhow::Result<CostModel> {
    let gpt = model.gpt();
    let cfg = gpt.config();
    let cond = Tensor::f_zeros([1, COND_LATENTS, cfg.dim], (gpt.kind(), gpt.device()))?;
    let text: Vec<i64> = (1..=24).collect();
    let prefix = gpt.prefix_embeddings(&cond, &text)?;
    let opts = RowOptions {
        params: SamplingParams {
            seed: Some(0),
            ..SamplingParams::default()
        },
        forced_tokens: Some(cfg.max_new_tokens as usize),
        max_codes: None,
    };
    let max = decoder.max_batch();
    let timed = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let started = Instant::now();
        f()?;
        Ok(started.elapsed().as_secs_f64())
    };
    // The first prefill pays libtorch's warm-up: run it once untimed.
    let slot = decoder.admit(&prefix, &opts)?.slot;
    decoder.release(slot);
    let mut prefills = Vec::new();
    let mut slots = Vec::new();
    prefills.push((
        1,
        timed(&mut || {
            slots.push(decoder.admit(&prefix, &opts)?.slot);
            Ok(())
        })?,
    ));
    if max > 1 {
        let rest: Vec<(&Tensor, &RowOptions)> = (1..max).map(|_| (&prefix, &opts)).collect();
        let mut batch = Vec::new();
        let secs = timed(&mut || {
            batch = decoder.admit_many(&rest);
            Ok(())
        })?;
        for first in batch {
            slots.push(first?.slot);
        }
        prefills.push((max - 1, secs));
    }
    let mut steps = Vec::new();
    let mut rows = 1;
    loop {
        let run = &slots[..rows];
        decoder.step(run)?;
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            best = best.min(timed(&mut || decoder.step(run).map(drop))?);
        }
        steps.push((rows, best));
        if rows == max {
            break;
        }
        rows = (rows * 2).min(max);
    }
    slots.iter().for_each(|&s| decoder.release(s));
    Ok(CostModel::from_samples(max, &steps, &prefills))
}
