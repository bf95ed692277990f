//! Requests between the servers and the engine thread: the bounded queue they wait in, and
//! where each one's audio goes ([`AudioSink`]), with how much of it the listener has played
//! ([`Playout`]), which the scheduler reads to know when a listener runs dry.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc;

use super::{EngineError, SpeechEvent, SpeechRequest};

/// How far a request's audio has got: sent by the engine, played at the listener. Shared by the
/// engine (which adds what it sends) and the listener's [`super::Speech`] (which adds what it plays).
#[derive(Debug)]
pub struct Playout {
    sample_rate: u32,
    sent_samples: AtomicU64,
    played_us: AtomicU64,
    first_audio: OnceLock<Instant>,
}

impl Playout {
    pub fn new(sample_rate: u32) -> Self {
        Self {
            sample_rate: sample_rate.max(1),
            sent_samples: AtomicU64::new(0),
            played_us: AtomicU64::new(0),
            first_audio: OnceLock::new(),
        }
    }

    fn sent(&self, samples: usize) {
        let _ = self.first_audio.get_or_init(Instant::now);
        self.sent_samples.fetch_add(samples as u64, Ordering::Relaxed);
    }

    /// The listener played `d` more of this request's audio.
    pub fn played(&self, d: Duration) {
        self.played_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Audio handed to the listener so far.
    pub fn sent_duration(&self) -> Duration {
        let samples = self.sent_samples.load(Ordering::Relaxed);
        Duration::from_micros(samples * 1_000_000 / self.sample_rate as u64)
    }

    /// Audio the listener reported as played (zero until it reports).
    pub fn played_duration(&self) -> Duration {
        Duration::from_micros(self.played_us.load(Ordering::Relaxed))
    }

    /// When the first audio was sent, if it was.
    pub fn first_audio(&self) -> Option<Instant> {
        self.first_audio.get().copied()
    }

    /// When the listener runs out of audio. Before any audio: `origin + first_audio_target`
    /// (`origin`: when the listener starts waiting). Without reports from the listener it is
    /// assumed to play in real time from the first chunk (or from `origin`, if later).
    pub fn runs_dry_at(&self, origin: Instant, first_audio_target: Duration, now: Instant) -> Instant {
        let Some(first) = self.first_audio() else {
            return origin + first_audio_target;
        };
        let sent = self.sent_duration();
        let played = self.played_duration();
        if played.is_zero() {
            first.max(origin) + sent
        } else {
            now + sent.saturating_sub(played)
        }
    }
}

/// Where a request's events go. Clones share the request: once one of them ends it, or the
/// listener is gone, every clone reports it over.
#[derive(Clone)]
pub struct AudioSink {
    out: mpsc::UnboundedSender<SpeechEvent>,
    ended: Arc<AtomicBool>,
    playout: Arc<Playout>,
    /// When the listener starts waiting for audio.
    origin: Instant,
}

impl AudioSink {
    fn new(out: mpsc::UnboundedSender<SpeechEvent>, playout: Arc<Playout>, origin: Instant) -> Self {
        Self {
            out,
            ended: Arc::new(AtomicBool::new(false)),
            playout,
            origin,
        }
    }

    /// When the listener runs out of audio (see [`Playout::runs_dry_at`]); a listener still
    /// waiting for its first audio is due `first_audio_target` after it started waiting.
    pub fn runs_dry_at(&self, first_audio_target: Duration, now: Instant) -> Instant {
        self.playout.runs_dry_at(self.origin, first_audio_target, now)
    }

    /// How far its audio has got.
    pub fn playout(&self) -> &Playout {
        &self.playout
    }

    /// When its listener starts waiting for audio.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The same request (clones of one sink).
    pub fn same_request(&self, other: &AudioSink) -> bool {
        Arc::ptr_eq(&self.ended, &other.ended)
    }

    /// The request ended (Done or Failed sent) or its listener hung up.
    pub fn is_over(&self) -> bool {
        self.ended.load(Ordering::Relaxed) || self.out.is_closed()
    }

    /// Hands a chunk to the listener; false when it is gone or the request has ended.
    pub fn send_audio(&self, samples: Vec<f32>) -> bool {
        let n = samples.len();
        let sent = !self.ended.load(Ordering::Relaxed) && self.out.send(SpeechEvent::Audio(samples)).is_ok();
        if sent {
            self.playout.sent(n);
        }
        sent
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

/// A request asked at most this long before its audio plays continues a listener's speech.
const CONTINUES_WITHIN: Duration = Duration::from_secs(60);

/// A queued request and where its events go.
pub struct Job {
    pub req: SpeechRequest,
    sink: AudioSink,
    /// When it was queued.
    pub queued_at: Instant,
}

impl Job {
    pub(super) fn new(req: SpeechRequest, out: mpsc::UnboundedSender<SpeechEvent>, playout: Arc<Playout>) -> Self {
        let queued_at = Instant::now();
        let origin = queued_at + req.options.plays_in;
        Self {
            req,
            sink: AudioSink::new(out, playout, origin),
            queued_at,
        }
    }

    /// Stop working on it: the listener is gone (its [`super::Speech`] was dropped) or it has ended.
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

    /// How far its audio has got.
    pub fn playout(&self) -> &Playout {
        &self.sink.playout
    }

    /// It continues a listener already being served: asked ahead while the listener's current
    /// speech still plays (a call's next prompt, a bot's next sentence), not a pre-rendered
    /// prompt asked far ahead of any playing.
    pub fn continues_speech(&self) -> bool {
        let ahead = self.req.options.plays_in;
        !ahead.is_zero() && ahead <= CONTINUES_WITHIN
    }

    /// When its listener starts waiting for audio (now, or later for a request asked ahead).
    pub fn listener_waits_from(&self) -> Instant {
        self.queued_at + self.req.options.plays_in
    }

    /// Ends the request with its result.
    pub fn finish(self, result: Result<()>) {
        self.sink.finish(result);
    }
}

/// The bounded queue of requests waiting for the engine, shared by every [`super::Engine`]
/// handle (producers) and the engine thread (consumer).
pub(super) struct RequestQueue {
    state: Mutex<QueueState>,
    /// Wakes the engine thread: a job arrived or the queue closed.
    arrived: Condvar,
    /// Wakes producers waiting for room.
    room: tokio::sync::Notify,
    limit: usize,
}

struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl RequestQueue {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                closed: false,
            }),
            arrived: Condvar::new(),
            room: tokio::sync::Notify::new(),
            limit: limit.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // A panic while holding this lock cannot leave the queue inconsistent (push/pop only).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job`, or gives it back with the reason it was refused.
    pub(super) fn push(&self, job: Job) -> Result<(), (Box<Job>, EngineError)> {
        let mut state = self.lock();
        if state.closed {
            return Err((Box::new(job), EngineError::Stopped));
        }
        if state.jobs.len() >= self.limit {
            let why = format!(
                "every speaking slot is taken and {} requests are already queued",
                state.jobs.len()
            );
            return Err((Box::new(job), EngineError::Busy(why)));
        }
        state.jobs.push_back(job);
        drop(state);
        self.arrived.notify_one();
        Ok(())
    }

    /// Queues `job`, waiting up to `patience` for room.
    pub(super) async fn push_within(&self, mut job: Job, patience: Duration) -> Result<(), EngineError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.push(job) {
                Ok(()) => return Ok(()),
                Err((back, EngineError::Busy(why))) => {
                    if tokio::time::timeout_at(deadline, room).await.is_err() {
                        return Err(EngineError::Busy(why));
                    }
                    job = *back;
                }
                Err((_, e)) => return Err(e),
            }
        }
    }

    fn took_one(&self) {
        self.room.notify_waiters();
    }

    /// The next job if one waits now.
    pub(super) fn try_next(&self) -> Option<Job> {
        let job = self.lock().jobs.pop_front();
        if job.is_some() {
            self.took_one();
        }
        job
    }

    /// Blocks until a job arrives or `timeout` passes; None also once the queue is closed and empty.
    pub(super) fn wait(&self, timeout: Option<Duration>) -> Option<Job> {
        let mut state = self.lock();
        let until = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                self.took_one();
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = match until {
                None => self.arrived.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.arrived
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Blocks until a job is waiting (or the queue closed) or `timeout` passes.
    pub(super) fn wait_until_queued(&self, timeout: Duration) {
        let state = self.lock();
        if !state.jobs.is_empty() || state.closed {
            return;
        }
        let _ = self.arrived.wait_timeout(state, timeout);
    }

    /// The first waiting job for which `wanted` holds, taken out of its place.
    pub(super) fn take_first(&self, wanted: impl Fn(&Job) -> bool) -> Option<Job> {
        let mut state = self.lock();
        let at = state.jobs.iter().position(wanted)?;
        let job = state.jobs.remove(at);
        drop(state);
        self.took_one();
        job
    }

    /// Removes the waiting jobs for which `expired` holds.
    pub(super) fn take_expired(&self, expired: impl Fn(&Job) -> bool) -> Vec<Job> {
        let mut state = self.lock();
        let (gone, kept): (VecDeque<Job>, VecDeque<Job>) = state.jobs.drain(..).partition(|j| expired(j));
        state.jobs = kept;
        drop(state);
        if !gone.is_empty() {
            self.took_one();
        }
        gone.into()
    }

    pub(super) fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    pub(super) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// No more jobs are accepted; the waiting ones are handed back.
    pub(super) fn close(&self) -> Vec<Job> {
        let mut state = self.lock();
        state.closed = true;
        let left = state.jobs.drain(..).collect();
        drop(state);
        self.arrived.notify_all();
        self.room.notify_waiters();
        left
    }
}

/// The engine thread's side of the request queue.
pub struct JobQueue {
    pub(super) queue: Arc<RequestQueue>,
}

impl JobQueue {
    /// Blocks until a job arrives; None once every [`super::Engine`] handle is gone.
    pub fn wait(&mut self) -> Option<Job> {
        self.queue.wait(None)
    }

    /// Blocks until a job arrives or `timeout` passes.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Job> {
        self.queue.wait(Some(timeout))
    }

    /// Blocks until a job is waiting, without taking it, or `timeout` passes.
    pub fn wait_until_queued(&mut self, timeout: Duration) {
        self.queue.wait_until_queued(timeout)
    }

    /// A job if one is waiting now.
    pub fn try_next(&mut self) -> Option<Job> {
        self.queue.try_next()
    }

    /// The first waiting job for which `wanted` holds, ahead of the others.
    pub fn take_first(&mut self, wanted: impl Fn(&Job) -> bool) -> Option<Job> {
        self.queue.take_first(wanted)
    }

    /// Jobs waiting now.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Every handle is gone: no job will come.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Removes and returns the waiting jobs for which `expired` holds.
    pub fn take_expired(&mut self, expired: impl Fn(&Job) -> bool) -> Vec<Job> {
        self.queue.take_expired(expired)
    }
}
