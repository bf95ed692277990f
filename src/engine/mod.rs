//! The speech engine as the servers see it: requests in, 24 kHz float chunks out.
//!
//! Read top-down:
//! - this module: the request API ([`Engine`], [`SpeechRequest`], [`Speech`]) and the
//!   [`SpeechBackend`] trait a model implements (a fake one drives the servers' tests);
//! - [`queue`]: the bounded queue requests wait in and where their audio goes;
//! - [`scheduler`]: which rows the batched decoder runs next (earliest deadline first), pure;
//! - [`capacity`]: the decoder's measured costs and the admission rule drawn from them;
//! - [`start`]: when a new call may start, so that calls starting together never outrun the
//!   vocoder, pure;
//! - [`decode`]: the decode loop that drives the XTTS model with the scheduler;
//! - [`vocoder`]: the vocoder stage, on its own thread;
//! - [`render_order`]: which waiting chunk the vocoder renders next, pure;
//! - [`xtts_backend`]: loading the model and voices, checking requests.
//!
//! A worker thread owns the model (libtorch calls block); each request gets a channel of
//! audio chunks, and dropping that channel cancels the request at the next step. At most
//! `queue_limit` requests wait; beyond that a request is refused with [`EngineError::Busy`].

pub mod capacity;
pub mod decode;
pub mod queue;
pub mod render_order;
pub mod scheduler;
#[cfg(test)]
mod simulation;
pub mod start;
pub mod vocoder;
pub mod xtts_backend;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc;

use queue::RequestQueue;
pub use queue::{AudioSink, Job, JobQueue, Playout};

use crate::xtts::sampling::SamplingParams;

/// What to say, in which voice and language.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechRequest {
    pub text: String,
    /// Language code as XTTS names it (`en`, `zh-cn`, ...).
    pub lang: String,
    /// A voice name: a clip in the speakers directory or a built-in studio voice.
    pub voice: String,
    /// This request's own sampling and speed; unset fields keep the engine's configuration.
    pub options: SpeechOptions,
}

/// Slowest and fastest speaking rate a request may ask for: beyond these the stretched
/// latents no longer sound like speech.
pub use crate::config::{FallbackPolicy, SPEED_RANGE};

/// Per-request settings. Every field is optional: None keeps what `[engine]` configures
/// (whose defaults follow the reference's `inference_stream()`).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechOptions {
    /// Seed of the request's sampler; None draws one (the same seed repeats the same audio).
    pub seed: Option<u64>,
    pub temperature: Option<f64>,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    /// Argmax decoding instead of sampling.
    pub greedy: Option<bool>,
    /// Speaking rate, 1.0 normal; see [`SPEED_RANGE`].
    pub speed: Option<f64>,
    /// How long after the request its audio starts playing: set by a server that asks ahead
    /// (the next speech while the current one still plays), never by callers. The scheduler
    /// counts its deadlines from then, so it never goes before a listener waiting now.
    #[serde(skip)]
    pub plays_in: std::time::Duration,
}

impl SpeechOptions {
    /// Names accepted by [`Self::set`], as they appear in URLs and JSON.
    pub const NAMES: &'static [&'static str] = &[
        "seed",
        "temperature",
        "top_k",
        "top_p",
        "repetition_penalty",
        "greedy",
        "speed",
    ];

    /// Sets one option from its text form (an AGI URL parameter, say).
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
            value
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{name}: '{value}' is not a valid value"))
        }
        match name {
            "seed" => self.seed = Some(parse(name, value)?),
            "temperature" => self.temperature = Some(parse(name, value)?),
            "top_k" => self.top_k = Some(parse(name, value)?),
            "top_p" => self.top_p = Some(parse(name, value)?),
            "repetition_penalty" => self.repetition_penalty = Some(parse(name, value)?),
            "greedy" => {
                self.greedy = Some(match value.trim() {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    other => anyhow::bail!("greedy: '{other}' is not 0/1 or true/false"),
                })
            }
            "speed" => self.speed = Some(parse(name, value)?),
            other => anyhow::bail!("unknown option '{other}' (known: {})", Self::NAMES.join(", ")),
        }
        Ok(())
    }

    /// The sampling parameters of a request: `base` (the engine's) with this request's overrides.
    pub fn sampling(&self, base: &SamplingParams) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature.unwrap_or(base.temperature),
            top_k: self.top_k.unwrap_or(base.top_k),
            top_p: self.top_p.unwrap_or(base.top_p),
            repetition_penalty: self.repetition_penalty.unwrap_or(base.repetition_penalty),
            length_penalty: base.length_penalty,
            do_sample: !self.greedy.unwrap_or(!base.do_sample),
            seed: self.seed.or(base.seed),
        }
    }

    /// The sampling parameters of the request's sentence `sentence`: one seed per request, and
    /// each sentence its own stream of it.
    pub fn sentence_sampling(&self, base: &SamplingParams, sentence: usize) -> SamplingParams {
        SamplingParams {
            seed: self.seed.map(|s| s.wrapping_add(sentence as u64)),
            ..self.sampling(base)
        }
    }

    /// Checks the overrides against `base`, naming the option at fault.
    pub fn validate(&self, base: &SamplingParams) -> Result<()> {
        if let Some(speed) = self.speed {
            anyhow::ensure!(
                SPEED_RANGE.contains(&speed),
                "speed must be between {} and {}, got {speed}",
                SPEED_RANGE.start(),
                SPEED_RANGE.end()
            );
        }
        self.sampling(base).validate()
    }
}

/// One event of a request's output.
#[derive(Debug)]
pub enum SpeechEvent {
    /// Mono float samples at the backend's sample rate, in [-1, 1].
    Audio(Vec<f32>),
    /// The request finished; no more events follow.
    Done,
    /// The request failed; no more events follow.
    Failed(String),
}

/// A model that turns a request into streamed audio. It is built on, and never leaves, the
/// engine's worker thread (libtorch tensors are not thread-safe), so it need not be `Send`.
pub trait SpeechBackend: 'static {
    /// Sample rate of the audio the backend emits.
    fn sample_rate(&self) -> u32;
    /// Synthesizes `req`, handing each chunk to `emit` as soon as it exists; stops early when
    /// `emit` returns false (the listener is gone).
    fn speak(&mut self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()>;

    /// Gets ready to serve (allocates what serving needs, starts its threads: they report a
    /// panic to `health`) before the engine reports ready; an error here fails the start.
    fn start(&mut self, _health: &Arc<Health>) -> Result<()> {
        Ok(())
    }

    /// Serves jobs until the queue closes. The default runs one request at a time, in arrival
    /// order; a backend that interleaves requests overrides it. `health` is beaten between jobs.
    fn serve(&mut self, jobs: &mut JobQueue, health: &Arc<Health>) {
        while let Some(job) = next_live_job(jobs, health) {
            let result = self.speak(&job.req, &mut |samples| job.send_audio(samples));
            job.finish(result);
        }
    }
}

/// The next job whose listener is still there, beating `health` while it waits; None once
/// the queue has closed.
pub fn next_live_job(jobs: &mut JobQueue, health: &Health) -> Option<Job> {
    loop {
        health.beat();
        match jobs.wait_timeout(HEARTBEAT_EVERY) {
            Some(job) if !job.is_cancelled() => {
                health.beat();
                return Some(job);
            }
            Some(_) => continue,
            None if jobs.is_closed() => return None,
            None => continue,
        }
    }
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The reason says what is full.
    #[error("engine busy: {0}")]
    Busy(String),
    #[error("engine stopped")]
    Stopped,
}

/// How often an idle engine thread shows it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);

/// Seconds from `now` to `at`, negative once past.
fn secs_until(at: Instant, now: Instant) -> f64 {
    if at >= now {
        (at - now).as_secs_f64()
    } else {
        -(now - at).as_secs_f64()
    }
}

/// Whether the engine's threads are alive: a dead one (a panic, or an exit) marks it stopped,
/// and the engine loop beats between steps so a stuck one shows too.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    alive: AtomicBool,
    /// Milliseconds from `epoch` of the last beat.
    last_beat_ms: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            alive: AtomicBool::new(true),
            last_beat_ms: AtomicU64::new(0),
        }
    }
}

impl Health {
    /// The engine thread is working: called between steps.
    pub fn beat(&self) {
        self.last_beat_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// A thread of the engine died: no request can be served any more.
    pub fn stopped(&self, why: &str) {
        if self.alive.swap(false, Ordering::Relaxed) {
            tracing::error!("engine stopped: {why}");
        }
    }

    /// The engine finished serving (its queue closed): no longer alive, and nothing to report.
    pub fn ended(&self) {
        self.alive.store(false, Ordering::Relaxed);
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Time since the engine thread last showed it is working.
    pub fn since_last_beat(&self) -> Duration {
        let last = Duration::from_millis(self.last_beat_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// An engine thread that has not beaten for this long is stuck: the daemon stops reporting
/// ready and stops pinging systemd's watchdog, which then restarts it. No single step or
/// prefill comes near it (they take milliseconds to a few seconds even on a CPU).
pub const STALLED_AFTER: Duration = Duration::from_secs(20);

/// What [`Engine::heartbeat`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heartbeat {
    /// Every engine thread is running.
    pub alive: bool,
    /// Time since the engine thread last showed it is working (it beats at least every
    /// [`HEARTBEAT_EVERY`] when idle, and between decode steps).
    pub since_last_beat: Duration,
}

impl Heartbeat {
    /// Alive and beating recently: able to serve.
    pub fn is_healthy(&self) -> bool {
        self.alive && self.since_last_beat < STALLED_AFTER
    }
}

/// Counters shared by the engine and the servers, read by `xttsd bench`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Audio codes generated.
    pub tokens: AtomicU64,
    /// Batched decode steps, and the rows they ran (mean batch = rows / steps).
    pub steps: AtomicU64,
    pub step_rows: AtomicU64,
    /// Microseconds the worker spent computing (prefills, decode steps).
    pub busy_us: AtomicU64,
    /// Microseconds spent vocoding (on its own thread).
    pub vocoder_us: AtomicU64,
    /// Vocoder forwards, and the chunks they rendered (mean vocoder batch = windows / forwards).
    pub vocoder_forwards: AtomicU64,
    pub vocoder_windows: AtomicU64,
    /// Microseconds the vocoder's renders would have taken at their rehearsed speed (the
    /// measured time over this is how much slower it runs in service).
    pub vocoder_expected_us: AtomicU64,
    /// AudioSocket ticks where speech was under way but no audio was ready (frames late).
    pub underruns: AtomicU64,
    /// Requests refused because the engine was full (queue or capacity).
    pub refused_busy: AtomicU64,
    /// Calls held back at their start so that calls starting together keep their audio.
    pub starts_held: AtomicU64,
    /// Requests admitted and not yet over (a gauge, set by the decode loop each turn).
    pub speaking: AtomicU64,
    /// Voices served from memory or the disk cache, and voices computed from their clips.
    pub voice_hits: AtomicU64,
    pub voice_computed: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The process's counters (one engine per process).
pub static METRICS: Metrics = Metrics {
    tokens: AtomicU64::new(0),
    steps: AtomicU64::new(0),
    step_rows: AtomicU64::new(0),
    busy_us: AtomicU64::new(0),
    vocoder_us: AtomicU64::new(0),
    vocoder_forwards: AtomicU64::new(0),
    vocoder_windows: AtomicU64::new(0),
    vocoder_expected_us: AtomicU64::new(0),
    underruns: AtomicU64::new(0),
    refused_busy: AtomicU64::new(0),
    starts_held: AtomicU64::new(0),
    speaking: AtomicU64::new(0),
    voice_hits: AtomicU64::new(0),
    voice_computed: AtomicU64::new(0),
};

/// Checks a request before it is queued, on the caller's side, so bad input fails at once with
/// a clear reason. It must not need the model (lists of languages and voices are enough).
pub type Validator = Arc<dyn Fn(&SpeechRequest) -> Result<()> + Send + Sync>;

/// Handle to the engine worker; cheap to clone. The queue closes when the last handle goes.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    /// Which engine this is (`xtts`, `builtin`), as logs, health and the dialplan name it.
    name: &'static str,
    /// Requests this engine has accepted.
    served: Arc<AtomicU64>,
    /// The engine that stands in when this one cannot serve.
    fallback: Option<Arc<Fallback>>,
}

struct Shared {
    queue: Arc<RequestQueue>,
    validate: Validator,
    sample_rate: u32,
    health: Arc<Health>,
}

struct Fallback {
    engine: Engine,
    policy: FallbackPolicy,
    /// Voices the primary engine lacks that requests may still name (the default voice
    /// before its clip is recorded): the fallback speaks them when `when_absent`.
    absent_voices: Vec<String>,
}

/// What `/v1/health` tells of the engines.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EngineStatus {
    pub engine: &'static str,
    /// `ready`, or `down` once its worker has stopped.
    pub state: &'static str,
    pub served: u64,
    pub fallback: Option<Box<EngineStatus>>,
}

/// Why a request went to the fallback engine.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Detour {
    Absent,
    Down,
}

impl Shared {
    /// Closes the queue: the requests still waiting end as stopped, later ones are refused.
    fn stop_taking(&self) {
        for job in self.queue.close() {
            job.finish(Err(anyhow::anyhow!("engine stopped")));
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop_taking();
    }
}

/// A request's output: receive events until Done or Failed. Dropping it cancels.
pub struct Speech {
    events: mpsc::UnboundedReceiver<SpeechEvent>,
    playout: Arc<Playout>,
    engine: &'static str,
}

impl Speech {
    pub async fn next(&mut self) -> Option<SpeechEvent> {
        self.events.recv().await
    }

    /// The engine that speaks it (`xtts`, `builtin`).
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// The listener played `d` more of this speech's audio. Reporting it lets the engine
    /// serve first the listeners about to run dry; without reports it assumes real-time
    /// playout from the first chunk.
    pub fn played(&self, d: Duration) {
        self.playout.played(d);
    }

    /// A handle for reporting playout from elsewhere (the pacer), valid after this is dropped.
    pub fn playout(&self) -> Arc<Playout> {
        self.playout.clone()
    }
}

impl Engine {
    /// Starts the worker thread with a backend built elsewhere.
    pub fn start<B, V>(backend: B, validator: V, queue_limit: usize) -> Engine
    where
        B: SpeechBackend + Send,
        V: Fn(&SpeechRequest) -> Result<()> + Send + Sync + 'static,
    {
        Self::spawn(move || Ok((backend, Arc::new(validator) as Validator)), queue_limit)
            .expect("a ready backend cannot fail to load")
    }

    /// Starts the worker thread and builds the backend on it with `load`, waiting until it is
    /// ready; a load error is returned here. A panic on the worker thread stops the engine:
    /// queued and later requests fail with [`EngineError::Stopped`] and [`Engine::heartbeat`]
    /// says it is dead.
    pub fn spawn<B, F>(load: F, queue_limit: usize) -> Result<Engine>
    where
        B: SpeechBackend,
        F: FnOnce() -> Result<(B, Validator)> + Send + 'static,
    {
        let queue = Arc::new(RequestQueue::new(queue_limit));
        let health = Arc::new(Health::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (worker_queue, worker_health) = (queue.clone(), health.clone());
        thread::Builder::new().name("xtts-engine".into()).spawn(move || {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match load()
                    .and_then(|(mut backend, validator)| backend.start(&worker_health).map(|()| (backend, validator)))
                {
                    Ok((mut backend, validator)) => {
                        let _ = ready_tx.send(Ok((backend.sample_rate(), validator)));
                        let mut jobs = JobQueue {
                            queue: worker_queue.clone(),
                        };
                        backend.serve(&mut jobs, &worker_health);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            }));
            match &run {
                // Every handle is gone (or the backend could not start, which it logged).
                Ok(()) => worker_health.ended(),
                Err(panic) => worker_health.stopped(&format!(
                    "the engine thread panicked: {}",
                    panic_message(panic.as_ref())
                )),
            }
            for job in worker_queue.close() {
                job.finish(Err(anyhow::anyhow!("engine stopped")));
            }
        })?;
        let (sample_rate, validate) = ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("engine thread died while loading"))??;
        Ok(Engine {
            shared: Arc::new(Shared {
                queue,
                validate,
                sample_rate,
                health,
            }),
            name: "xtts",
            served: Arc::new(AtomicU64::new(0)),
            fallback: None,
        })
    }

    /// The same engine under another name (`builtin` for the built-in voice).
    pub fn named(self, name: &'static str) -> Engine {
        Engine { name, ..self }
    }

    /// This engine, with `fallback` speaking whenever `policy` says so. The two must emit the
    /// same sample rate.
    pub fn with_fallback(self, fallback: Engine, policy: FallbackPolicy, absent_voices: Vec<String>) -> Result<Engine> {
        anyhow::ensure!(
            fallback.sample_rate() == self.sample_rate(),
            "the fallback engine emits {} Hz, the engine {} Hz",
            fallback.sample_rate(),
            self.sample_rate()
        );
        Ok(Engine {
            fallback: Some(Arc::new(Fallback {
                engine: fallback,
                policy,
                absent_voices,
            })),
            ..self
        })
    }

    /// The engine's name: `xtts` or `builtin`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The engines' state and what each has served, for health checks.
    pub fn status(&self) -> EngineStatus {
        EngineStatus {
            engine: self.name,
            state: if self.is_alive() { "ready" } else { "down" },
            served: self.served.load(Ordering::Relaxed),
            fallback: self.fallback.as_ref().map(|f| Box::new(f.engine.status())),
        }
    }

    /// Whether this request goes straight to the fallback, and why.
    fn detour(&self, req: &SpeechRequest) -> Option<(&Engine, Detour)> {
        let fallback = self.fallback.as_ref()?;
        if fallback.policy.when_down && !self.is_alive() {
            return Some((&fallback.engine, Detour::Down));
        }
        if fallback.policy.when_absent && fallback.absent_voices.contains(&req.voice) {
            return Some((&fallback.engine, Detour::Absent));
        }
        None
    }

    /// The fallback, when the policy lets it take a request this engine refused as busy.
    fn busy_fallback(&self) -> Option<&Engine> {
        let fallback = self.fallback.as_ref()?;
        fallback.policy.when_busy.then_some(&fallback.engine)
    }

    /// Hands a request this engine refused as busy to the fallback, when allowed.
    fn refused_busy(&self, refused: EngineError, spare: Option<SpeechRequest>) -> Result<Speech, EngineError> {
        match (self.busy_fallback(), spare, &refused) {
            (Some(fallback), Some(req), EngineError::Busy(_)) => {
                tracing::info!(
                    engine = fallback.name(),
                    "{} is busy: the built-in voice speaks",
                    self.name()
                );
                fallback.speak(req)
            }
            _ => Err(refused),
        }
    }

    /// Speaks a request another engine could not take.
    fn speak_as_fallback(&self, req: SpeechRequest, why: Detour) -> Result<Speech, EngineError> {
        let reason = match why {
            Detour::Absent => "the voice or model is absent",
            Detour::Down => "the engine is down",
        };
        tracing::info!(engine = self.name(), voice = %req.voice, "{reason}: the built-in voice speaks");
        self.speak(req)
    }

    pub fn sample_rate(&self) -> u32 {
        self.shared.sample_rate
    }

    /// Whether the engine can serve: false once a thread of it has died.
    pub fn is_alive(&self) -> bool {
        self.shared.health.is_alive()
    }

    /// Stops taking requests and waits up to `within` for the engine's threads to finish, so
    /// that the process never exits while libtorch is mid-operation on one of them (its
    /// teardown then crashes the exit).
    pub fn close(&self, within: Duration) {
        self.shared.stop_taking();
        let until = Instant::now() + within;
        while self.shared.health.is_alive() && Instant::now() < until {
            thread::sleep(Duration::from_millis(10));
        }
        if let Some(fallback) = &self.fallback {
            fallback.engine.close(until.saturating_duration_since(Instant::now()));
        }
    }

    /// Requests waiting in the queue for the engine to take them.
    pub fn queued(&self) -> usize {
        self.shared.queue.len()
    }

    /// Liveness for health checks and a watchdog.
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            alive: self.shared.health.is_alive(),
            since_last_beat: self.shared.health.since_last_beat(),
        }
    }

    /// Checks a request (language, voice, text) without queueing it, against the engine that
    /// would speak it.
    pub fn validate(&self, req: &SpeechRequest) -> Result<(), EngineError> {
        if let Some((fallback, _)) = self.detour(req) {
            return fallback.validate(req);
        }
        (self.shared.validate)(req).map_err(|e| EngineError::Invalid(format!("{e:#}")))
    }

    fn job(&self, req: SpeechRequest) -> Result<(Job, Speech), EngineError> {
        if !self.is_alive() {
            return Err(EngineError::Stopped);
        }
        self.validate(&req)?;
        let (out, events) = mpsc::unbounded_channel();
        let playout = Arc::new(Playout::new(self.shared.sample_rate));
        let speech = Speech {
            events,
            playout: playout.clone(),
            engine: self.name,
        };
        Ok((Job::new(req, out, playout), speech))
    }

    /// Queues a request, waiting at most `patience` for room in a full queue before it is
    /// refused with [`EngineError::Busy`] (or handed to the fallback, as configured).
    pub async fn speak_within(&self, req: SpeechRequest, patience: Duration) -> Result<Speech, EngineError> {
        if let Some((fallback, why)) = self.detour(&req) {
            return fallback.speak_as_fallback(req, why);
        }
        let spare = self.busy_fallback().map(|_| req.clone());
        let (job, speech) = self.job(req)?;
        match self.shared.queue.push_within(job, patience).await {
            Ok(()) => Ok(self.accepted(speech)),
            Err(e) => {
                count_busy(&e);
                self.refused_busy(e, spare)
            }
        }
    }

    /// Queues a request. Fails at once on invalid input or a full queue (or hands it to the
    /// fallback, as configured).
    pub fn speak(&self, req: SpeechRequest) -> Result<Speech, EngineError> {
        if let Some((fallback, why)) = self.detour(&req) {
            return fallback.speak_as_fallback(req, why);
        }
        let (job, speech) = self.job(req)?;
        match self.shared.queue.push(job) {
            Ok(()) => Ok(self.accepted(speech)),
            Err((job, e)) => {
                count_busy(&e);
                self.refused_busy(e, Some(job.req.clone()))
            }
        }
    }

    fn accepted(&self, speech: Speech) -> Speech {
        self.served.fetch_add(1, Ordering::Relaxed);
        speech
    }
}

fn count_busy(e: &EngineError) {
    if matches!(e, EngineError::Busy(_)) {
        Metrics::add(&METRICS.refused_busy, 1);
    }
}

/// The text of a panic's payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// A fault injected for tests of supervision, from `XTTSD_FAULT` (read once at start):
/// `panic_step` panics in the first decode step that runs two rows or more, `panic_vocoder`
/// in the vocoder's first chunk, `panic_prepare` while preparing the first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    PanicStep,
    PanicVocoder,
    PanicPrepare,
}

impl Fault {
    pub fn from_env() -> Option<Fault> {
        match std::env::var("XTTSD_FAULT").ok()?.as_str() {
            "panic_step" => Some(Fault::PanicStep),
            "panic_vocoder" => Some(Fault::PanicVocoder),
            "panic_prepare" => Some(Fault::PanicPrepare),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speaks a constant: one chunk of `level` per request.
    struct Constant(f32);

    impl SpeechBackend for Constant {
        fn sample_rate(&self) -> u32 {
            24_000
        }
        fn speak(&mut self, _: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
            emit(vec![self.0; 240]);
            Ok(())
        }
    }

    /// Takes no job until `release` is dropped: its queue fills up.
    struct Stalled(std::sync::mpsc::Receiver<()>);

    impl SpeechBackend for Stalled {
        fn sample_rate(&self) -> u32 {
            24_000
        }
        fn speak(&mut self, _: &SpeechRequest, _: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
            Ok(())
        }
        fn serve(&mut self, _: &mut JobQueue, _: &Arc<Health>) {
            let _ = self.0.recv();
        }
    }

    /// Its worker stops at once, as a crashed engine's does.
    struct Dead;

    impl SpeechBackend for Dead {
        fn sample_rate(&self) -> u32 {
            24_000
        }
        fn speak(&mut self, _: &SpeechRequest, _: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
            Ok(())
        }
        fn serve(&mut self, _: &mut JobQueue, _: &Arc<Health>) {}
    }

    fn request(voice: &str) -> SpeechRequest {
        SpeechRequest {
            text: "hello".into(),
            lang: "en".into(),
            voice: voice.into(),
            options: SpeechOptions::default(),
        }
    }

    fn known_voice_only(req: &SpeechRequest) -> Result<()> {
        anyhow::ensure!(req.voice == "anna", "unknown voice '{}'", req.voice);
        Ok(())
    }

    fn builtin() -> Engine {
        Engine::start(Constant(0.5), |_: &SpeechRequest| Ok(()), 8).named("builtin")
    }

    async fn first_level(mut speech: Speech) -> f32 {
        match speech.next().await {
            Some(SpeechEvent::Audio(chunk)) => chunk[0],
            other => panic!("expected audio, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn busy_engine_hands_over_to_the_fallback_when_allowed() {
        let (_release, stalled) = std::sync::mpsc::channel();
        let primary = Engine::start(Stalled(stalled), known_voice_only, 1);
        let queued = primary.speak(request("anna")).unwrap();
        assert_eq!(queued.engine(), "xtts");
        assert!(matches!(primary.speak(request("anna")), Err(EngineError::Busy(_))));

        let policy = FallbackPolicy::default();
        let engine = primary.clone().with_fallback(builtin(), policy, vec![]).unwrap();
        let speech = engine.speak(request("anna")).unwrap();
        assert_eq!(speech.engine(), "builtin");
        assert_eq!(first_level(speech).await, 0.5);
        let speech = engine
            .speak_within(request("anna"), Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(speech.engine(), "builtin");

        let never_when_busy = FallbackPolicy {
            when_busy: false,
            ..policy
        };
        let engine = primary.with_fallback(builtin(), never_when_busy, vec![]).unwrap();
        assert!(matches!(engine.speak(request("anna")), Err(EngineError::Busy(_))));
    }

    #[tokio::test]
    async fn stopped_engine_hands_over_to_the_fallback_when_allowed() {
        let primary = Engine::start(Dead, known_voice_only, 4);
        for _ in 0..200 {
            if !primary.is_alive() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!primary.is_alive());
        assert!(matches!(primary.speak(request("anna")), Err(EngineError::Stopped)));
        let engine = primary
            .clone()
            .with_fallback(builtin(), FallbackPolicy::default(), vec![])
            .unwrap();
        // The built-in voice takes any voice name while it stands in.
        engine.validate(&request("somebody")).unwrap();
        let speech = engine.speak(request("somebody")).unwrap();
        assert_eq!(speech.engine(), "builtin");
        assert_eq!(first_level(speech).await, 0.5);
        let status = engine.status();
        assert_eq!((status.engine, status.state), ("xtts", "down"));
        assert_eq!(status.fallback.unwrap().served, 1);

        let never_when_down = FallbackPolicy {
            when_down: false,
            ..FallbackPolicy::default()
        };
        let engine = primary.with_fallback(builtin(), never_when_down, vec![]).unwrap();
        assert!(matches!(engine.speak(request("anna")), Err(EngineError::Stopped)));
    }

    #[tokio::test]
    async fn an_absent_default_voice_is_spoken_by_the_fallback_and_others_are_not() {
        let primary = Engine::start(Constant(0.25), known_voice_only, 4);
        let engine = primary
            .with_fallback(builtin(), FallbackPolicy::default(), vec!["default".into()])
            .unwrap();
        let speech = engine.speak(request("default")).unwrap();
        assert_eq!((speech.engine(), first_level(speech).await), ("builtin", 0.5));
        let speech = engine.speak(request("anna")).unwrap();
        assert_eq!((speech.engine(), first_level(speech).await), ("xtts", 0.25));
        // Bad input stays bad input: an unknown voice is refused, not handed over.
        assert!(matches!(engine.speak(request("nobody")), Err(EngineError::Invalid(_))));
        let status = engine.status();
        assert_eq!((status.served, status.fallback.unwrap().served), (1, 1));
    }

    #[test]
    fn fallback_must_speak_at_the_same_rate() {
        struct Slow;
        impl SpeechBackend for Slow {
            fn sample_rate(&self) -> u32 {
                8_000
            }
            fn speak(&mut self, _: &SpeechRequest, _: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
                Ok(())
            }
        }
        let primary = Engine::start(Constant(0.1), |_: &SpeechRequest| Ok(()), 1);
        let other = Engine::start(Slow, |_: &SpeechRequest| Ok(()), 1);
        assert!(primary.with_fallback(other, FallbackPolicy::default(), vec![]).is_err());
    }

    #[test]
    fn options_parse_from_text_and_name_the_bad_one() {
        let mut o = SpeechOptions::default();
        for (name, value) in [("speed", "0.9"), ("seed", "12"), ("top_k", "30"), ("greedy", "yes")] {
            o.set(name, value).unwrap();
        }
        assert_eq!(
            (o.speed, o.seed, o.top_k, o.greedy),
            (Some(0.9), Some(12), Some(30), Some(true))
        );
        let err = |name: &str, value: &str| SpeechOptions::default().set(name, value).unwrap_err().to_string();
        assert!(err("speed", "fast").contains("speed: 'fast'"));
        assert!(err("seed", "-1").contains("seed"));
        assert!(err("greedy", "2").contains("greedy"));
        assert!(err("pitch", "1").contains("unknown option 'pitch'"));
    }

    #[test]
    fn options_override_only_what_they_set() {
        let base = SamplingParams::default();
        assert_eq!(SpeechOptions::default().sampling(&base), base);
        let o = SpeechOptions {
            temperature: Some(0.5),
            greedy: Some(true),
            seed: Some(3),
            ..SpeechOptions::default()
        };
        let p = o.sampling(&base);
        assert_eq!((p.temperature, p.do_sample, p.seed), (0.5, false, Some(3)));
        assert_eq!(
            (p.top_k, p.top_p, p.repetition_penalty),
            (base.top_k, base.top_p, base.repetition_penalty)
        );
    }

    #[test]
    fn options_are_range_checked() {
        let base = SamplingParams::default();
        let check = |o: SpeechOptions| o.validate(&base).map_err(|e| e.to_string());
        assert!(check(SpeechOptions::default()).is_ok());
        for speed in [0.5, 1.0, 2.0] {
            assert!(check(SpeechOptions {
                speed: Some(speed),
                ..Default::default()
            })
            .is_ok());
        }
        for speed in [0.4, 2.1, f64::NAN, -1.0] {
            let e = check(SpeechOptions {
                speed: Some(speed),
                ..Default::default()
            })
            .unwrap_err();
            assert!(e.contains("speed must be between 0.5 and 2"), "{e}");
        }
        let e = check(SpeechOptions {
            top_k: Some(-1),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("top_k"), "{e}");
        let e = check(SpeechOptions {
            repetition_penalty: Some(0.0),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("repetition_penalty"), "{e}");
    }

    /// Values that pass as f64 but become 0 or infinite in the float32 kernels would turn a
    /// whole batch's logits into NaN: they are refused, naming the option.
    #[test]
    fn options_that_break_float32_are_refused() {
        let base = SamplingParams::default();
        for (o, name) in [
            (
                SpeechOptions {
                    temperature: Some(1e-300),
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SpeechOptions {
                    temperature: Some(1e300),
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SpeechOptions {
                    repetition_penalty: Some(1e-300),
                    ..Default::default()
                },
                "repetition_penalty",
            ),
            (
                SpeechOptions {
                    repetition_penalty: Some(1e39),
                    ..Default::default()
                },
                "repetition_penalty",
            ),
        ] {
            let e = o.validate(&base).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }
}
