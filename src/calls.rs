//! Which speech belongs to which AudioSocket call. A call is known by the UUID Asterisk sends
//! first on the socket. Speech for it comes from a request the AGI server parked under that
//! UUID, or from text the control API queued for it; otherwise the call may be a test call.
//!
//! Everything a peer can push here is bounded: jobs per call (live or not yet connected), jobs
//! waiting in total, and how long a job waits for its call (swept on a timer and on attach).
//! A [`CallController`] (a voicebot) registered for a UUID takes over the call's audio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::LimitsConfig;
use crate::engine::{EngineError, SpeechRequest};

/// Why speech failed, as the dialplan sees it in `XTTS_REASON`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The engine had no room for the request, or too much was queued.
    Busy,
    /// The request itself is wrong (unknown voice or language, bad option, text too long).
    Invalid,
    /// Synthesis or the audio path failed.
    Engine,
    /// A peer did not answer in time.
    Timeout,
    /// The daemon is shutting down.
    Shutdown,
    /// Asterisk refused or failed a command (no app_audiosocket, a spool file it cannot read).
    Asterisk,
    /// The voicebot a call was routed to could not be reached.
    Bot,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Busy => "BUSY",
            FailReason::Invalid => "INVALID",
            FailReason::Engine => "ENGINE",
            FailReason::Timeout => "TIMEOUT",
            FailReason::Shutdown => "SHUTDOWN",
            FailReason::Asterisk => "ASTERISK",
            FailReason::Bot => "BOT",
        }
    }

    pub fn of(e: &EngineError) -> Self {
        match e {
            EngineError::Invalid(_) => FailReason::Invalid,
            EngineError::Busy(_) => FailReason::Busy,
            EngineError::Stopped => FailReason::Engine,
        }
    }
}

/// How a played job ended, reported back to whoever queued it (the AGI session).
#[derive(Debug, Clone, PartialEq)]
pub struct PlayOutcome {
    /// `SUCCESS`, `HANGUP`, `INTERRUPTED` or `FAILED`.
    pub status: &'static str,
    /// The DTMF digit that interrupted playback, if any.
    pub digit: Option<char>,
    /// Audio played to the caller, in milliseconds.
    pub played_ms: u64,
    /// Why it failed (status `FAILED`), and the message.
    pub failure: Option<(FailReason, String)>,
    /// The engine that spoke (`xtts`, `builtin`); None when nothing was synthesized.
    pub engine: Option<&'static str>,
}

impl PlayOutcome {
    pub fn ended(status: &'static str, digit: Option<char>, played_ms: u64) -> Self {
        Self {
            status,
            digit,
            played_ms,
            failure: None,
            engine: None,
        }
    }

    /// The same outcome, naming the engine that spoke.
    pub fn spoken_by(self, engine: Option<&'static str>) -> Self {
        Self { engine, ..self }
    }

    pub fn failed(reason: FailReason, message: impl Into<String>, played_ms: u64) -> Self {
        Self {
            status: "FAILED",
            digit: None,
            played_ms,
            failure: Some((reason, message.into())),
            engine: None,
        }
    }
}

/// Speech to play on a call.
#[derive(Debug)]
pub struct SpeakJob {
    pub request: SpeechRequest,
    /// Digits that stop this job's playback (AGI escape digits); empty: none.
    pub escape_digits: String,
    /// End the AudioSocket session (send hangup) when this job finishes.
    pub hangup_after: bool,
    /// Told how playback ended.
    pub done: Option<oneshot::Sender<PlayOutcome>>,
}

impl SpeakJob {
    /// Tells whoever queued the job how it ended (nothing if nobody listens).
    pub fn report(self, outcome: PlayOutcome) {
        if let Some(done) = self.done {
            let _ = done.send(outcome);
        }
    }
}

/// Checks that a voice is a name, not a path: `..`, `/etc/x` or `a/b` would reach outside the
/// speakers directory.
pub fn check_voice_name(voice: &str) -> anyhow::Result<()> {
    let is_path = voice.contains(['/', '\\', '\0']) || voice.starts_with('.') || voice.contains("..");
    anyhow::ensure!(
        !is_path,
        "voice must be a name from the speakers directory, not a path: '{voice}'"
    );
    Ok(())
}

/// Bounds on queued speech.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Jobs one call may have waiting (not yet playing).
    pub jobs_per_call: usize,
    /// Jobs waiting for calls that have not connected, all calls together.
    pub pending_jobs: usize,
    /// How long a job waits for its call to connect.
    pub pending_ttl: Duration,
}

impl From<&LimitsConfig> for CallLimits {
    fn from(cfg: &LimitsConfig) -> Self {
        Self {
            jobs_per_call: cfg.max_jobs_per_call,
            pending_jobs: cfg.max_pending_jobs,
            pending_ttl: Duration::from_millis(cfg.pending_ttl_ms),
        }
    }
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            jobs_per_call: 16,
            pending_jobs: 1024,
            pending_ttl: Duration::from_secs(60),
        }
    }
}

/// Why a job was not queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("call {0} already has {1} speech requests waiting")]
    CallFull(Uuid, usize),
    #[error("{0} speech requests are already waiting for calls to connect")]
    TooManyPending(usize),
}

/// Why a connecting call was refused.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("call {0} is already connected")]
    Duplicate(Uuid),
}

struct Live {
    /// Tells this connection apart from a later one with the same UUID.
    id: u64,
    jobs: mpsc::Sender<SpeakJob>,
}

/// Drives a call's audio in place of queued jobs (a voicebot): supplies each 20 ms frame and
/// hears what the caller sends. Called from the call's tasks; no method may block.
pub trait CallController: Send + Sync {
    /// The frame to send at this 20 ms tick as (rate, slin bytes), or None for silence.
    /// `rate` is the call's rate.
    fn next_frame(&self, rate: u32) -> Option<(u32, Bytes)>;
    /// The controller asks to end the call (sent as an AudioSocket hangup).
    fn wants_hangup(&self) -> bool;
    /// Caller audio, one message as received.
    fn caller_audio(&self, rate: u32, pcm: &[u8]);
    /// A DTMF digit the caller pressed.
    fn dtmf(&self, digit: char);
    /// The call ended; `by_caller`: the caller hung up or went away.
    fn ended(&self, by_caller: bool);
}

#[derive(Default)]
struct Inner {
    /// Calls with a live AudioSocket session: jobs go straight to it.
    live: HashMap<Uuid, Live>,
    /// Jobs for calls not connected yet, with the time they were queued.
    pending: HashMap<Uuid, Vec<(Instant, SpeakJob)>>,
    pending_count: usize,
    next_id: u64,
    /// Calls (live or not yet) whose audio a controller drives.
    controllers: HashMap<Uuid, Arc<dyn CallController>>,
}

impl Inner {
    /// Drops jobs that waited longer than `ttl` (their owners hear of it: `done` is dropped).
    fn sweep(&mut self, ttl: Duration) -> usize {
        let now = Instant::now();
        let mut dropped = 0;
        self.pending.retain(|_, jobs| {
            let before = jobs.len();
            jobs.retain(|(at, _)| now.duration_since(*at) < ttl);
            dropped += before - jobs.len();
            !jobs.is_empty()
        });
        self.pending_count -= dropped;
        dropped
    }
}

/// Shared registry of calls; cheap to clone.
#[derive(Clone, Default)]
pub struct CallRegistry {
    inner: Arc<Mutex<Inner>>,
    limits: CallLimits,
}

/// A live call's inbox; dropping it detaches the call.
pub struct CallInbox {
    pub uuid: Uuid,
    pub jobs: mpsc::Receiver<SpeakJob>,
    /// True when jobs were waiting for this call when it connected (AGI or API driven).
    pub had_pending: bool,
    id: u64,
    registry: CallRegistry,
}

impl Drop for CallInbox {
    fn drop(&mut self) {
        let mut inner = self.registry.inner.lock().unwrap();
        // Only this connection's entry: never one registered under the same UUID since.
        if inner.live.get(&self.uuid).is_some_and(|live| live.id == self.id) {
            inner.live.remove(&self.uuid);
        }
    }
}

impl CallRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: CallLimits) -> Self {
        Self {
            inner: Default::default(),
            limits,
        }
    }

    pub fn limits(&self) -> CallLimits {
        self.limits
    }

    /// Queues a job for `uuid`: delivered at once to a live call, else kept until it connects.
    /// Refused when the call, or all calls not connected yet, have too much waiting.
    pub fn enqueue(&self, uuid: Uuid, job: SpeakJob) -> Result<(), EnqueueError> {
        let mut inner = self.inner.lock().unwrap();
        let job = match inner.live.get(&uuid) {
            Some(live) => match live.jobs.try_send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(EnqueueError::CallFull(uuid, self.limits.jobs_per_call))
                }
                // The session is ending: keep the job for a reconnect, like any other.
                Err(mpsc::error::TrySendError::Closed(job)) => job,
            },
            None => job,
        };
        inner.sweep(self.limits.pending_ttl);
        if inner.pending_count >= self.limits.pending_jobs {
            return Err(EnqueueError::TooManyPending(self.limits.pending_jobs));
        }
        let waiting = inner.pending.entry(uuid).or_default();
        if waiting.len() >= self.limits.jobs_per_call {
            return Err(EnqueueError::CallFull(uuid, self.limits.jobs_per_call));
        }
        waiting.push((Instant::now(), job));
        inner.pending_count += 1;
        Ok(())
    }

    /// Registers a connected call and hands it the jobs still waiting for it. A second
    /// connection with the UUID of a live call is refused: it must not take that call's speech.
    pub fn attach(&self, uuid: Uuid) -> Result<CallInbox, AttachError> {
        let mut inner = self.inner.lock().unwrap();
        if inner.live.get(&uuid).is_some_and(|live| !live.jobs.is_closed()) {
            return Err(AttachError::Duplicate(uuid));
        }
        inner.sweep(self.limits.pending_ttl);
        let (tx, rx) = mpsc::channel(self.limits.jobs_per_call.max(1));
        let waiting = inner.pending.remove(&uuid).unwrap_or_default();
        inner.pending_count -= waiting.len();
        let had_pending = !waiting.is_empty();
        for (_, job) in waiting {
            // At most jobs_per_call were kept, so they fit.
            let _ = tx.try_send(job);
        }
        inner.next_id += 1;
        let id = inner.next_id;
        inner.live.insert(uuid, Live { id, jobs: tx });
        Ok(CallInbox {
            uuid,
            jobs: rx,
            had_pending,
            id,
            registry: self.clone(),
        })
    }

    /// Drops the jobs still waiting for `uuid` because its call never connected (their
    /// `done` senders go with them); returns how many there were.
    pub fn cancel(&self, uuid: &Uuid) -> usize {
        let mut inner = self.inner.lock().unwrap();
        let n = inner.pending.remove(uuid).map_or(0, |jobs| jobs.len());
        inner.pending_count -= n;
        n
    }

    /// Whether jobs are waiting for `uuid` to connect.
    pub fn is_pending(&self, uuid: &Uuid) -> bool {
        self.inner.lock().unwrap().pending.contains_key(uuid)
    }

    /// Hands the call's audio to `controller`; false (and nothing changes) when another
    /// controller has it already.
    pub fn set_controller(&self, uuid: Uuid, controller: Arc<dyn CallController>) -> bool {
        let mut inner = self.inner.lock().unwrap();
        if inner.controllers.contains_key(&uuid) {
            return false;
        }
        inner.controllers.insert(uuid, controller);
        true
    }

    /// Removes `controller` from the call, if it is still the one registered.
    pub fn remove_controller(&self, uuid: &Uuid, controller: &Arc<dyn CallController>) {
        let mut inner = self.inner.lock().unwrap();
        if inner.controllers.get(uuid).is_some_and(|c| Arc::ptr_eq(c, controller)) {
            inner.controllers.remove(uuid);
        }
    }

    /// The controller driving the call, if any.
    pub fn controller(&self, uuid: &Uuid) -> Option<Arc<dyn CallController>> {
        self.inner.lock().unwrap().controllers.get(uuid).cloned()
    }

    /// Whether a call with this UUID is connected now.
    pub fn is_live(&self, uuid: &Uuid) -> bool {
        self.inner.lock().unwrap().live.contains_key(uuid)
    }

    /// Calls connected now.
    pub fn live_count(&self) -> usize {
        self.inner.lock().unwrap().live.len()
    }

    /// Jobs waiting for calls to connect.
    pub fn pending_count(&self) -> usize {
        self.inner.lock().unwrap().pending_count
    }

    /// Drops jobs that waited too long for their call; returns how many.
    pub fn sweep(&self) -> usize {
        self.inner.lock().unwrap().sweep(self.limits.pending_ttl)
    }

    /// Sweeps expired jobs every `period` until `stop` resolves: a job whose call never
    /// comes is dropped even when nothing else is queued after it.
    pub async fn sweep_every(self, period: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut timer = tokio::time::interval(period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = timer.tick() => {
                    let n = self.sweep();
                    if n > 0 {
                        tracing::info!(dropped = n, "dropped speech whose call never connected");
                    }
                }
                _ = &mut stop => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> (SpeakJob, oneshot::Receiver<PlayOutcome>) {
        let (tx, rx) = oneshot::channel();
        let job = SpeakJob {
            request: SpeechRequest {
                text: "hello".into(),
                lang: "en".into(),
                voice: "default".into(),
                options: Default::default(),
            },
            escape_digits: String::new(),
            hangup_after: true,
            done: Some(tx),
        };
        (job, rx)
    }

    #[test]
    fn voice_paths_are_refused() {
        for bad in ["..", "../x", "/etc/passwd", "a/b", ".hidden", "a\\b"] {
            assert!(check_voice_name(bad).is_err(), "{bad}");
        }
        for good in ["default", "anna", "Claribel Dervla", "x.y"] {
            assert!(check_voice_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn cancel_drops_parked_jobs_and_tells_their_owner() {
        let calls = CallRegistry::new();
        let (parked, other) = (Uuid::new_v4(), Uuid::new_v4());
        let (a, mut a_done) = job();
        let (b, _b_done) = job();
        calls.enqueue(parked, a).unwrap();
        calls.enqueue(other, b).unwrap();
        assert_eq!(calls.cancel(&parked), 1);
        assert_eq!(calls.cancel(&parked), 0, "nothing left to cancel");
        assert!(matches!(a_done.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
        // A later connect with that UUID finds nothing; other calls keep theirs.
        assert!(!calls.attach(parked).unwrap().had_pending);
        assert!(calls.attach(other).unwrap().had_pending);
        assert_eq!(calls.pending_count(), 0);
    }

    #[test]
    fn cancel_leaves_a_live_call_alone() {
        let calls = CallRegistry::new();
        let uuid = Uuid::new_v4();
        let mut inbox = calls.attach(uuid).unwrap();
        let (a, _done) = job();
        calls.enqueue(uuid, a).unwrap();
        assert_eq!(calls.cancel(&uuid), 0);
        assert!(calls.is_live(&uuid));
        assert!(inbox.jobs.try_recv().is_ok());
    }

    #[test]
    fn a_second_connection_with_a_live_uuid_is_refused_and_cannot_detach_the_first() {
        let calls = CallRegistry::new();
        let uuid = Uuid::new_v4();
        let mut first = calls.attach(uuid).unwrap();
        assert!(matches!(calls.attach(uuid), Err(AttachError::Duplicate(u)) if u == uuid));
        // The first call still gets its speech.
        let (a, _done) = job();
        calls.enqueue(uuid, a).unwrap();
        assert!(first.jobs.try_recv().is_ok());
        assert!(calls.is_live(&uuid));
        // Once it has gone, the UUID may connect again.
        drop(first);
        assert!(!calls.is_live(&uuid));
        let _again = calls.attach(uuid).unwrap();
        assert!(calls.is_live(&uuid));
    }

    #[test]
    fn jobs_per_call_and_pending_in_total_are_bounded() {
        let calls = CallRegistry::with_limits(CallLimits {
            jobs_per_call: 2,
            pending_jobs: 3,
            pending_ttl: Duration::from_secs(60),
        });
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        calls.enqueue(a, job().0).unwrap();
        calls.enqueue(a, job().0).unwrap();
        assert!(matches!(calls.enqueue(a, job().0), Err(EnqueueError::CallFull(..))));
        calls.enqueue(b, job().0).unwrap();
        assert!(matches!(
            calls.enqueue(Uuid::new_v4(), job().0),
            Err(EnqueueError::TooManyPending(3))
        ));
        // A live call's inbox is bounded the same way.
        let _inbox = calls.attach(a).unwrap();
        assert!(matches!(calls.enqueue(a, job().0), Err(EnqueueError::CallFull(..))));
    }

    #[tokio::test]
    async fn expired_jobs_are_swept_on_a_timer_and_on_attach() {
        let calls = CallRegistry::with_limits(CallLimits {
            pending_ttl: Duration::from_millis(50),
            ..Default::default()
        });
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (ja, mut a_done) = job();
        calls.enqueue(a, ja).unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        // Checked on attach: the stale job is not played.
        assert!(!calls.attach(a).unwrap().had_pending);
        assert!(matches!(a_done.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
        // And swept by the background task with nothing else happening.
        let (jb, mut b_done) = job();
        calls.enqueue(b, jb).unwrap();
        let stop = tokio::time::sleep(Duration::from_millis(300));
        calls.clone().sweep_every(Duration::from_millis(20), stop).await;
        assert_eq!(calls.pending_count(), 0);
        assert!(matches!(b_done.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
    }
}
