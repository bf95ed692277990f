//! The speech engine as the servers see it: requests in, 24 kHz float chunks out.
//! A worker thread owns the model (libtorch calls block); each request gets a channel of
//! audio chunks, and dropping that channel cancels the request at the next chunk.

use std::sync::Arc;
use std::thread;

use anyhow::Result;
use tokio::sync::mpsc;

/// What to say, in which voice and language.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechRequest {
    pub text: String,
    /// Language code as XTTS names it (`en`, `zh-cn`, ...).
    pub lang: String,
    /// A voice name: a clip in the speakers directory or a built-in studio voice.
    pub voice: String,
    /// Seed for sampling; None draws one.
    pub seed: Option<u64>,
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
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("engine busy: {0} requests already queued")]
    Busy(usize),
    #[error("engine stopped")]
    Stopped,
}

struct Job {
    req: SpeechRequest,
    out: mpsc::UnboundedSender<SpeechEvent>,
}

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

    /// Queues a request. Fails at once on invalid input or a full queue.
    pub fn speak(&self, req: SpeechRequest) -> Result<Speech, EngineError> {
        self.validate(&req)?;
        let (out, events) = mpsc::unbounded_channel();
        self.jobs.try_send(Job { req, out }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => EngineError::Busy(self.queue_limit),
            mpsc::error::TrySendError::Closed(_) => EngineError::Stopped,
        })?;
        Ok(Speech { events })
    }
}

/// The worker loop: one request at a time, in arrival order.
fn serve_jobs<B: SpeechBackend>(mut backend: B, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.blocking_recv() {
        if job.out.is_closed() {
            continue; // cancelled while queued
        }
        let out = job.out.clone();
        let mut emit = |samples: Vec<f32>| out.send(SpeechEvent::Audio(samples)).is_ok();
        let end = match backend.speak(&job.req, &mut emit) {
            Ok(()) => SpeechEvent::Done,
            Err(e) => {
                tracing::warn!(error = %e, "synthesis failed");
                SpeechEvent::Failed(format!("{e:#}"))
            }
        };
        let _ = job.out.send(end);
    }
}
