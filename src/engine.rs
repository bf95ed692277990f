//! The speech engine as the servers see it: requests in, 24 kHz float chunks out.
//! A worker thread owns the model (libtorch calls block); each request gets a channel of
//! audio chunks, and dropping that channel cancels the request at the next step.
//!
//! Admission is bounded twice: the backend decides how many requests it runs at once (the
//! synthesizer: `engine.max_batch` preallocated decoding slots), and at most `queue_limit`
//! more wait in a bounded queue; beyond that a request is refused with [`EngineError::Busy`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;

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
pub const SPEED_RANGE: std::ops::RangeInclusive<f64> = 0.5..=2.0;

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
    /// (the next speech while the current one still plays), never by callers. Such a request
    /// gets none of the decode steps reserved for listeners waiting for their first audio.
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

    /// Serves jobs until the queue closes. The default runs one request at a time, in arrival
    /// order; a backend that interleaves requests overrides it.
    fn serve(&mut self, jobs: &mut JobQueue) {
        while let Some(job) = jobs.wait() {
            if job.is_cancelled() {
                continue;
            }
            let result = self.speak(&job.req, &mut |samples| job.send_audio(samples));
            job.finish(result);
        }
    }
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("engine busy: every speaking slot is taken and {0} requests are already queued")]
    Busy(usize),
    #[error("engine stopped")]
    Stopped,
}

/// Where a request's events go. Clones share the request: once one of them ends it, or the
/// listener is gone, every clone reports it over.
#[derive(Clone)]
pub struct AudioSink {
    out: mpsc::UnboundedSender<SpeechEvent>,
    ended: Arc<AtomicBool>,
}

impl AudioSink {
    /// A sink sending to `out`.
    fn new(out: mpsc::UnboundedSender<SpeechEvent>) -> Self {
        Self {
            out,
            ended: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The request ended (Done or Failed sent) or its listener hung up.
    pub fn is_over(&self) -> bool {
        self.ended.load(Ordering::Relaxed) || self.out.is_closed()
    }

    /// Hands a chunk to the listener; false when it is gone or the request has ended.
    pub fn send_audio(&self, samples: Vec<f32>) -> bool {
        !self.ended.load(Ordering::Relaxed) && self.out.send(SpeechEvent::Audio(samples)).is_ok()
    }

    /// Ends the request with its result; later calls do nothing.
    pub fn finish(&self, result: Result<()>) {
        if self.ended.swap(true, Ordering::Relaxed) {
            return;
        }
        let end = match result {
            Ok(()) => SpeechEvent::Done,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "synthesis failed");
                SpeechEvent::Failed(format!("{e:#}"))
            }
        };
        let _ = self.out.send(end);
    }
}

/// A queued request and where its events go.
pub struct Job {
    pub req: SpeechRequest,
    sink: AudioSink,
}

impl Job {
    fn new(req: SpeechRequest, out: mpsc::UnboundedSender<SpeechEvent>) -> Self {
        Self {
            req,
            sink: AudioSink::new(out),
        }
    }

    /// Stop working on it: the listener is gone (its [`Speech`] was dropped) or it has ended.
    pub fn is_cancelled(&self) -> bool {
        self.sink.is_over()
    }

    /// Hands a chunk to the listener; false when it is gone.
    pub fn send_audio(&self, samples: Vec<f32>) -> bool {
        self.sink.send_audio(samples)
    }

    /// A handle for sending this request's audio from elsewhere (another thread).
    pub fn sink(&self) -> AudioSink {
        self.sink.clone()
    }

    /// Ends the request with its result.
    pub fn finish(self, result: Result<()>) {
        self.sink.finish(result);
    }
}

/// The worker's side of the bounded request queue.
pub struct JobQueue {
    rx: mpsc::Receiver<Job>,
}

impl JobQueue {
    /// Blocks until a job arrives; None once every [`Engine`] handle is gone.
    pub fn wait(&mut self) -> Option<Job> {
        self.rx.blocking_recv()
    }

    /// A job if one is waiting now.
    pub fn try_next(&mut self) -> Option<Job> {
        self.rx.try_recv().ok()
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
    /// AudioSocket ticks where speech was under way but no audio was ready (frames late).
    pub underruns: AtomicU64,
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
    underruns: AtomicU64::new(0),
};

/// Checks a request before it is queued, on the caller's side, so bad input fails at once with
/// a clear reason. It must not need the model (lists of languages and voices are enough).
pub type Validator = Arc<dyn Fn(&SpeechRequest) -> Result<()> + Send + Sync>;

/// Handle to the engine worker; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
    validate: Validator,
    sample_rate: u32,
    queue_limit: usize,
}

/// A request's output: receive events until Done or Failed. Dropping it cancels.
pub struct Speech {
    events: mpsc::UnboundedReceiver<SpeechEvent>,
}

impl Speech {
    pub async fn next(&mut self) -> Option<SpeechEvent> {
        self.events.recv().await
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
    /// ready; a load error is returned here.
    pub fn spawn<B, F>(load: F, queue_limit: usize) -> Result<Engine>
    where
        B: SpeechBackend,
        F: FnOnce() -> Result<(B, Validator)> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Job>(queue_limit.max(1));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        thread::Builder::new()
            .name("xtts-engine".into())
            .spawn(move || match load() {
                Ok((backend, validator)) => {
                    let _ = ready_tx.send(Ok((backend.sample_rate(), validator)));
                    serve_jobs(backend, rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })?;
        let (sample_rate, validate) = ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("engine thread died while loading"))??;
        Ok(Engine {
            jobs: tx,
            validate,
            sample_rate,
            queue_limit,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Checks a request (language, voice, text) without queueing it.
    pub fn validate(&self, req: &SpeechRequest) -> Result<(), EngineError> {
        (self.validate)(req).map_err(|e| EngineError::Invalid(format!("{e:#}")))
    }

    /// Queues a request, waiting at most `patience` for room in a full queue before it is
    /// refused with [`EngineError::Busy`].
    pub async fn speak_within(&self, req: SpeechRequest, patience: Duration) -> Result<Speech, EngineError> {
        self.validate(&req)?;
        let (out, events) = mpsc::unbounded_channel();
        self.jobs
            .send_timeout(Job::new(req, out), patience)
            .await
            .map_err(|e| match e {
                mpsc::error::SendTimeoutError::Timeout(_) => EngineError::Busy(self.queue_limit),
                mpsc::error::SendTimeoutError::Closed(_) => EngineError::Stopped,
            })?;
        Ok(Speech { events })
    }

    /// Queues a request. Fails at once on invalid input or a full queue.
    pub fn speak(&self, req: SpeechRequest) -> Result<Speech, EngineError> {
        self.validate(&req)?;
        let (out, events) = mpsc::unbounded_channel();
        self.jobs.try_send(Job::new(req, out)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => EngineError::Busy(self.queue_limit),
            mpsc::error::TrySendError::Closed(_) => EngineError::Stopped,
        })?;
        Ok(Speech { events })
    }
}

/// The worker loop: the backend serves the queue until every handle is gone.
fn serve_jobs<B: SpeechBackend>(mut backend: B, jobs: mpsc::Receiver<Job>) {
    backend.serve(&mut JobQueue { rx: jobs });
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
