//! Which speech belongs to which AudioSocket call. A call is known by the UUID Asterisk sends
//! first on the socket. Speech for it comes from a request the AGI server parked under that
//! UUID, or from text the control API queued for it; otherwise the call is a test call.
//! A [`CallController`] (a voicebot) registered for a UUID takes over the call's audio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::engine::SpeechRequest;

/// How a played job ended, reported back to whoever queued it (the AGI session).
#[derive(Debug, Clone, PartialEq)]
pub struct PlayOutcome {
    /// `SUCCESS`, `HANGUP`, `INTERRUPTED` or `FAILED`.
    pub status: &'static str,
    /// The DTMF digit that interrupted playback, if any.
    pub digit: Option<char>,
    /// Audio played to the caller, in milliseconds.
    pub played_ms: u64,
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

/// Queued jobs wait this long for their call to connect before they are dropped.
const PENDING_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Inner {
    /// Calls with a live AudioSocket session: jobs go straight to it.
    live: HashMap<Uuid, mpsc::UnboundedSender<SpeakJob>>,
    /// Jobs for calls not connected yet, with the time they were queued.
    pending: HashMap<Uuid, Vec<(Instant, SpeakJob)>>,
    /// Calls (live or not yet) whose audio a controller drives.
    controllers: HashMap<Uuid, Arc<dyn CallController>>,
}

/// Shared registry of calls; cheap to clone.
#[derive(Clone, Default)]
pub struct CallRegistry {
    inner: Arc<Mutex<Inner>>,
}

/// A live call's inbox; dropping it detaches the call.
pub struct CallInbox {
    pub uuid: Uuid,
    pub jobs: mpsc::UnboundedReceiver<SpeakJob>,
    /// True when jobs were waiting for this call when it connected (AGI or API driven).
    pub had_pending: bool,
    registry: CallRegistry,
}

impl Drop for CallInbox {
    fn drop(&mut self) {
        self.registry.inner.lock().unwrap().live.remove(&self.uuid);
    }
}

impl CallRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a job for `uuid`: delivered at once to a live call, else kept until it connects.
    pub fn enqueue(&self, uuid: Uuid, job: SpeakJob) {
        let mut inner = self.inner.lock().unwrap();
        let job = match inner.live.get(&uuid) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let now = Instant::now();
        inner.pending.retain(|_, jobs| {
            jobs.retain(|(at, _)| now.duration_since(*at) < PENDING_TTL);
            !jobs.is_empty()
        });
        inner.pending.entry(uuid).or_default().push((now, job));
    }

    /// Registers a connected call and hands it the jobs already waiting for it.
    pub fn attach(&self, uuid: Uuid) -> CallInbox {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.inner.lock().unwrap();
        let waiting = inner.pending.remove(&uuid).unwrap_or_default();
        let had_pending = !waiting.is_empty();
        for (_, job) in waiting {
            let _ = tx.send(job);
        }
        inner.live.insert(uuid, tx);
        CallInbox {
            uuid,
            jobs: rx,
            had_pending,
            registry: self.clone(),
        }
    }

    /// Drops the jobs still waiting for `uuid` because its call never connected (their
    /// `done` senders go with them); returns how many there were.
    pub fn cancel(&self, uuid: &Uuid) -> usize {
        let mut inner = self.inner.lock().unwrap();
        inner.pending.remove(uuid).map_or(0, |jobs| jobs.len())
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
    fn cancel_drops_parked_jobs_and_tells_their_owner() {
        let calls = CallRegistry::new();
        let (parked, other) = (Uuid::new_v4(), Uuid::new_v4());
        let (a, mut a_done) = job();
        let (b, _b_done) = job();
        calls.enqueue(parked, a);
        calls.enqueue(other, b);
        assert_eq!(calls.cancel(&parked), 1);
        assert_eq!(calls.cancel(&parked), 0, "nothing left to cancel");
        assert!(matches!(a_done.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
        // A later connect with that UUID finds nothing; other calls keep theirs.
        assert!(!calls.attach(parked).had_pending);
        assert!(calls.attach(other).had_pending);
    }

    #[test]
    fn cancel_leaves_a_live_call_alone() {
        let calls = CallRegistry::new();
        let uuid = Uuid::new_v4();
        let mut inbox = calls.attach(uuid);
        let (a, _done) = job();
        calls.enqueue(uuid, a);
        assert_eq!(calls.cancel(&uuid), 0);
        assert!(calls.is_live(&uuid));
        assert!(inbox.jobs.try_recv().is_ok());
    }
}
