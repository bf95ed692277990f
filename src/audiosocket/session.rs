//! One AudioSocket call: UUID first, then speech (queued jobs or the test call) paced out
//! in 20 ms frames on an absolute clock, silence whenever there is nothing to say, DTMF for
//! barge-in and read-back, and a clean end on either side's hangup or a bad frame. When the
//! daemon drains, a call finishes what it was asked to say and hangs up; at the drain deadline
//! it stops at once, telling whoever queued its speech (`SHUTDOWN`), and hangs up.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use uuid::Uuid;

use super::codec::{encode_message, AudioSocketCodec, Message};
use super::reader::MessageReader;
use super::SharedAudioSocketContext;
use crate::audio::{frame_samples, slin_bytes, FramePipeline, FRAME_MS};
use crate::calls::{AttachError, CallInbox, FailReason, PlayOutcome, SpeakJob};
use crate::engine::{Playout, SpeechEvent, SpeechRequest};
use crate::metrics::METRICS;
use crate::prompt_cache::{CacheMode, CachedSpeech};

/// Call rate until the caller's audio says otherwise (kind 0x10).
const DEFAULT_RATE: u32 = 8000;
const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);
/// Further behind the clock than this, the schedule restarts instead of catching up in a burst.
const MAX_BEHIND: Duration = Duration::from_millis(100);
/// A write that cannot complete in this time means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Digits of a test call waiting to be read back; further presses are ignored until these
/// are said, so a peer pressing keys cannot queue unbounded synthesis.
const MAX_TEST_READBACKS: usize = 4;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEnd {
    /// Closed before a valid UUID arrived.
    NoUuid(String),
    /// The caller went away: end of stream, reset, or a failed write.
    CallerGone(String),
    /// We ended it with a hangup message after a `hangup_after` job.
    ServerHangup,
    /// The peer sent something invalid.
    ProtocolError(String),
    /// A call with this UUID is already connected; this connection was refused.
    Duplicate,
    /// The daemon drained: we hung up once the speech was said, or at the drain deadline.
    Shutdown,
}

impl SessionEnd {
    /// A short name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            SessionEnd::NoUuid(_) => "NO_UUID",
            SessionEnd::CallerGone(_) => "CALLER_HANGUP",
            SessionEnd::ServerHangup => "SERVER_HANGUP",
            SessionEnd::ProtocolError(_) => "PROTOCOL_ERROR",
            SessionEnd::Duplicate => "DUPLICATE",
            SessionEnd::Shutdown => "SHUTDOWN",
        }
    }
}

/// Counters of one session, logged when it ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionStats {
    pub frames: u64,
    pub speech_frames: u64,
    pub silence_frames: u64,
    /// Ticks where speech was under way but the engine had no audio ready.
    pub underruns: u64,
    /// Times the sender fell so far behind that the schedule restarted.
    pub clock_resets: u64,
}

#[derive(Debug)]
pub struct SessionReport {
    pub uuid: Option<Uuid>,
    pub end: SessionEnd,
    pub stats: SessionStats,
}

/// Messages from the socket reader to the call.
enum Inbound {
    Dtmf(char),
    /// The caller's audio kind changed (or was first seen).
    Rate(u32),
    Closed(SessionEnd),
}

/// Aborts the reader task when the call is dropped, whatever path ended it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one call to its end. Never fails: every ending is a `SessionEnd`.
pub async fn run(stream: TcpStream, ctx: SharedAudioSocketContext) -> SessionReport {
    let cfg = &ctx.config;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let (rd, wr) = stream.into_split();
    let codec = AudioSocketCodec::new(cfg.max_payload_bytes);
    let mut reader = MessageReader::new(rd, codec.clone(), Duration::from_millis(cfg.payload_timeout_ms));
    let no_uuid = |why: String| SessionReport {
        uuid: None,
        end: SessionEnd::NoUuid(why),
        stats: SessionStats::default(),
    };
    let uuid_timeout = Duration::from_millis(cfg.uuid_timeout_ms);
    let uuid = match timeout(uuid_timeout, reader.next()).await {
        Err(_) => return no_uuid(format!("no UUID within {uuid_timeout:?}")),
        Ok(Ok(Some(Message::Uuid(uuid)))) => uuid,
        Ok(Ok(Some(other))) => return no_uuid(format!("first message was {}, not a UUID", describe(&other))),
        Ok(Ok(None)) => return no_uuid("closed before sending a UUID".into()),
        Ok(Err(e)) => return no_uuid(format!("bad first message: {e}")),
    };
    tracing::Span::current().record("uuid", tracing::field::display(uuid));
    let inbox = match ctx.calls.attach(uuid) {
        Ok(inbox) => inbox,
        Err(AttachError::Duplicate(_)) => {
            tracing::warn!("a call with this UUID is already connected; refusing the second connection");
            let mut wr = wr;
            let mut codec = codec;
            if let Ok(bytes) = encode_message(&mut codec, Message::Hangup) {
                let _ = timeout(WRITE_TIMEOUT, wr.write_all(&bytes)).await;
            }
            let _ = wr.shutdown().await;
            return SessionReport {
                uuid: Some(uuid),
                end: SessionEnd::Duplicate,
                stats: SessionStats::default(),
            };
        }
    };
    if !inbox.had_pending {
        crate::voicebot::dial::dial_audiosocket_call(&ctx.bots, uuid).await;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let _reader = AbortOnDrop(tokio::spawn(read_loop(reader, tx, ctx.calls.clone(), uuid)));
    // A call a voicebot drives is never a test call.
    let controlled = ctx.calls.controller(&uuid).is_some();
    let test_call = !controlled && is_test_call(&ctx, uuid, inbox.had_pending);
    let mut call = Call::new(ctx.clone(), wr, codec, test_call, uuid);
    let end = call.run(rx, inbox).await;
    if let Some(controller) = ctx.calls.controller(&uuid) {
        controller.ended(matches!(end, SessionEnd::CallerGone(_) | SessionEnd::ProtocolError(_)));
    }
    SessionReport {
        uuid: Some(uuid),
        end,
        stats: call.stats,
    }
}

/// Test calls only when configured, only for matching UUIDs, and never for a call with
/// speech waiting for it.
fn is_test_call(ctx: &SharedAudioSocketContext, uuid: Uuid, had_pending: bool) -> bool {
    let test = &ctx.test_call;
    test.enabled && !had_pending && uuid.to_string().starts_with(&test.uuid_prefix.to_ascii_lowercase())
}

fn describe(message: &Message) -> String {
    match message {
        Message::Hangup => "a hangup".into(),
        Message::Uuid(_) => "a UUID".into(),
        Message::Dtmf(d) => format!("DTMF '{d}'"),
        Message::Audio { rate, pcm } => format!("{} bytes of {rate} Hz audio", pcm.len()),
        Message::Error(code) => format!("an error ({code:?})"),
    }
}

/// Forwards what the caller sends (audio also to the call's controller, if one drives it);
/// ends with exactly one `Closed`.
async fn read_loop(
    mut reader: MessageReader<OwnedReadHalf>,
    tx: mpsc::UnboundedSender<Inbound>,
    calls: crate::calls::CallRegistry,
    uuid: Uuid,
) {
    let mut rate = None;
    let end = loop {
        match reader.next().await {
            Ok(Some(Message::Audio { rate: r, pcm })) => {
                if let Some(controller) = calls.controller(&uuid) {
                    controller.caller_audio(r, &pcm);
                }
                if rate != Some(r) {
                    rate = Some(r);
                    let _ = tx.send(Inbound::Rate(r));
                }
            }
            Ok(Some(Message::Dtmf(d))) => {
                let _ = tx.send(Inbound::Dtmf(d));
            }
            Ok(Some(Message::Hangup)) => break SessionEnd::CallerGone("hangup message".into()),
            Ok(Some(Message::Error(code))) => break SessionEnd::CallerGone(format!("error message {code:?}")),
            Ok(Some(Message::Uuid(_))) => break SessionEnd::ProtocolError("second UUID".into()),
            Ok(None) => break SessionEnd::CallerGone("end of stream".into()),
            Err(super::reader::ReadError::Codec(super::CodecError::Io(e))) => {
                break SessionEnd::CallerGone(format!("read failed: {e}"))
            }
            Err(e) => break SessionEnd::ProtocolError(e.to_string()),
        }
    };
    let _ = tx.send(Inbound::Closed(end));
}

/// The absolute 20 ms schedule: frame n goes out at `start + n × 20 ms`.
struct Pacer {
    start: Instant,
    sent: u32,
}

impl Pacer {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            sent: 0,
        }
    }

    fn deadline(&self) -> Instant {
        self.start + FRAME * self.sent
    }

    /// Counts a sent frame; returns true when the schedule had to restart.
    fn sent_one(&mut self, now: Instant) -> bool {
        self.sent += 1;
        if now > self.deadline() + MAX_BEHIND {
            self.start = now;
            self.sent = 0;
            return true;
        }
        false
    }
}

/// A job being played.
struct Playback {
    job: SpeakJob,
    /// Part of the test call (greeting, digits read back), not speech someone queued.
    test: bool,
    /// When synthesis was asked for, until the first frame is sent (time to first audio).
    asked: Option<Instant>,
    /// The engine's output; None once it has ended. Dropping it cancels synthesis.
    speech: Option<CachedSpeech>,
    /// The engine that speaks it (`xtts`, `builtin`, `cache`), reported with the outcome.
    engine: &'static str,
    /// Created at the first audio chunk, at the call's rate then.
    pipeline: Option<FramePipeline>,
    frames: VecDeque<(u32, Bytes)>,
    played_frames: u64,
    failure: Option<String>,
    /// Where the played audio is reported, so the engine serves first who is about to run dry.
    /// Where played frames are reported to the engine (None: a stored prompt, or shared).
    playout: Option<std::sync::Arc<Playout>>,
}

impl Playback {
    fn new(job: SpeakJob, test: bool, speech: CachedSpeech) -> Self {
        tracing::debug!(text = %job.request.text, "speaking");
        Self {
            job,
            test,
            asked: Some(Instant::now()),
            engine: speech.engine(),
            playout: speech.playout(),
            speech: Some(speech),
            pipeline: None,
            frames: VecDeque::new(),
            played_frames: 0,
            failure: None,
        }
    }

    fn played_ms(&self) -> u64 {
        self.played_frames * FRAME_MS as u64
    }

    fn is_complete(&self) -> bool {
        self.speech.is_none() && self.frames.is_empty()
    }

    /// Audio is under way but the engine has not delivered the next frame in time.
    fn is_starved(&self) -> bool {
        self.speech.is_some() && self.pipeline.is_some() && self.frames.is_empty()
    }
}

/// `engine`: the one that spoke, None when the job never reached one.
fn report(job: SpeakJob, engine: Option<&'static str>, status: &'static str, digit: Option<char>, played_ms: u64) {
    job.report(PlayOutcome::ended(status, digit, played_ms).spoken_by(engine));
}

fn report_failure(job: SpeakJob, engine: Option<&'static str>, reason: FailReason, message: String, played_ms: u64) {
    METRICS.failed(reason);
    job.report(PlayOutcome::failed(reason, message, played_ms).spoken_by(engine));
}

/// What "1", "#" etc. are read back as.
fn spoken_digit(d: char) -> String {
    match d {
        '*' => "star".into(),
        '#' => "pound".into(),
        other => other.to_string(),
    }
}

type Step = Result<(), SessionEnd>;

struct Call {
    ctx: SharedAudioSocketContext,
    writer: OwnedWriteHalf,
    codec: AudioSocketCodec,
    /// The rate of the caller's audio; ours follows it.
    rate: u32,
    /// No speech was queued for this call: greet and read digits back.
    test_call: bool,
    /// Jobs to play, each marked whether it belongs to the test call.
    queue: VecDeque<(SpeakJob, bool)>,
    /// The daemon is draining: hang up once nothing is left to say.
    draining: bool,
    current: Option<Playback>,
    /// The next job, synthesized once the current one's synthesis is done, so that it plays
    /// without a gap when the current one's audio runs out.
    upcoming: Option<Playback>,
    pacer: Pacer,
    stats: SessionStats,
    uuid: Uuid,
    /// A controller (voicebot) has taken over the call's audio.
    controlled: bool,
}

impl Call {
    fn new(
        ctx: SharedAudioSocketContext,
        writer: OwnedWriteHalf,
        codec: AudioSocketCodec,
        test_call: bool,
        uuid: Uuid,
    ) -> Self {
        let test = &ctx.test_call;
        let mut call = Self {
            writer,
            codec,
            rate: DEFAULT_RATE,
            test_call,
            queue: VecDeque::new(),
            draining: false,
            current: None,
            upcoming: None,
            pacer: Pacer::new(),
            stats: SessionStats::default(),
            ctx: ctx.clone(),
            uuid,
            controlled: ctx.calls.controller(&uuid).is_some(),
        };
        if test_call && !test.greeting.trim().is_empty() {
            let greeting = call.test_call_job(test.greeting.clone());
            call.queue.push_back((greeting, true));
        }
        call
    }

    fn test_call_job(&self, text: String) -> SpeakJob {
        let engine = &self.ctx.engine_config;
        let test = &self.ctx.test_call;
        let pick = |own: &String, default: &String| if own.is_empty() { default.clone() } else { own.clone() };
        SpeakJob {
            request: SpeechRequest {
                text,
                lang: pick(&test.language, &engine.default_language),
                voice: pick(&test.voice, &engine.default_voice),
                options: Default::default(),
            },
            escape_digits: String::new(),
            hangup_after: false,
            done: None,
        }
    }

    async fn run(&mut self, mut inbound: mpsc::UnboundedReceiver<Inbound>, mut inbox: CallInbox) -> SessionEnd {
        let end = loop {
            if let Err(end) = self.step(&mut inbound, &mut inbox).await {
                break end;
            }
        };
        // Whatever was still to play will not be: tell whoever queued it.
        inbox.jobs.close();
        while let Ok(job) = inbox.jobs.try_recv() {
            self.queue.push_back((job, false));
        }
        let playing = [self.current.take(), self.upcoming.take()].into_iter().flatten();
        let unplayed = playing
            .map(|p| {
                let played = p.played_ms();
                (p.job, Some(p.engine), played)
            })
            .chain(self.queue.drain(..).map(|(job, _)| (job, None, 0)));
        for (job, engine, played) in unplayed {
            if end == SessionEnd::Shutdown {
                report_failure(job, engine, FailReason::Shutdown, "shutdown".into(), played);
            } else {
                report(job, engine, "HANGUP", None, played);
            }
        }
        end
    }

    /// Drops what belongs to the test call: speech someone queued takes over the call.
    fn end_test_call(&mut self) {
        if !self.test_call {
            return;
        }
        tracing::info!("speech queued for this call: the test call stops");
        self.test_call = false;
        self.queue.retain(|(_, test)| !test);
        for slot in [&mut self.current, &mut self.upcoming] {
            if slot.as_ref().is_some_and(|p| p.test) {
                *slot = None;
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.current.is_none() && self.upcoming.is_none() && self.queue.is_empty()
    }

    /// Once draining, a call with nothing left to say hangs up.
    async fn hang_up_if_drained(&mut self) -> Step {
        if self.draining && self.is_idle() {
            self.send(Message::Hangup).await?;
            let _ = self.writer.shutdown().await;
            return Err(SessionEnd::Shutdown);
        }
        Ok(())
    }

    async fn step(&mut self, inbound: &mut mpsc::UnboundedReceiver<Inbound>, inbox: &mut CallInbox) -> Step {
        self.start_next_job().await?;
        self.hang_up_if_drained().await?;
        let shutdown = self.ctx.shutdown.clone();
        // Jobs stay in the bounded inbox until there is room to play them (so a peer cannot
        // queue more than limits.max_jobs_per_call); a test call reads at once, to stop.
        let want_jobs = self.queue.is_empty() || self.test_call;
        tokio::select! {
            biased;
            _ = shutdown.ended() => {
                self.send(Message::Hangup).await?;
                let _ = self.writer.shutdown().await;
                Err(SessionEnd::Shutdown)
            }
            _ = shutdown.draining(), if !self.draining => {
                tracing::info!("draining: finishing the speech under way, then hanging up");
                self.draining = true;
                self.test_call = false;
                self.queue.retain(|(_, test)| !test);
                Ok(())
            }
            event = inbound.recv() => match event {
                Some(Inbound::Dtmf(d)) => self.on_dtmf(d).await,
                Some(Inbound::Rate(rate)) => {
                    tracing::debug!(rate, "caller audio rate");
                    self.rate = rate;
                    Ok(())
                }
                Some(Inbound::Closed(end)) => Err(end),
                None => Err(SessionEnd::CallerGone("reader stopped".into())),
            },
            _ = sleep_until(self.pacer.deadline()) => self.tick().await,
            event = next_speech_event(&mut self.current) => {
                if let Some(p) = self.current.as_mut() {
                    on_speech_event(p, event, self.rate, &self.ctx);
                }
                self.send_first_frame_now().await?;
                self.check_complete().await
            }
            event = next_speech_event(&mut self.upcoming) => {
                if let Some(p) = self.upcoming.as_mut() {
                    on_speech_event(p, event, self.rate, &self.ctx);
                }
                Ok(())
            }
            Some(job) = inbox.jobs.recv(), if want_jobs => {
                self.end_test_call();
                self.queue.push_back((job, false));
                Ok(())
            }
        }
    }

    /// Speech for a request: from the prompt cache when stored there, else from the engine.
    fn speak(&self, request: SpeechRequest) -> Result<CachedSpeech, crate::engine::EngineError> {
        let cache = self.ctx.cache.clone();
        crate::prompt_cache::speak(cache.as_ref(), &self.ctx.engine, request, CacheMode::Auto)
    }

    /// Starts queued jobs until one is playing or none are left, and starts synthesizing the
    /// next one once the playing one has all its audio.
    async fn start_next_job(&mut self) -> Step {
        if self.controlled {
            // Jobs wait while a controller drives the call.
            return Ok(());
        }
        while self.current.is_none() {
            if let Some(next) = self.upcoming.take() {
                self.current = Some(next);
                break;
            }
            let Some((job, test)) = self.queue.pop_front() else {
                return Ok(());
            };
            match self.speak(job.request.clone()) {
                Ok(speech) => self.current = Some(Playback::new(job, test, speech)),
                Err(e) => {
                    tracing::warn!(error = %e, "speech request refused");
                    let hangup = job.hangup_after;
                    report_failure(job, None, FailReason::of(&e), e.to_string(), 0);
                    if hangup {
                        return self.hang_up().await;
                    }
                }
            }
        }
        let synthesized = self
            .current
            .as_ref()
            .is_some_and(|p| p.speech.is_none() && !p.job.hangup_after);
        if synthesized && self.upcoming.is_none() {
            if let Some((job, test)) = self.queue.pop_front() {
                let mut request = job.request.clone();
                let buffered = self.current.as_ref().map_or(0, |p| p.frames.len() as u32);
                request.options.plays_in = FRAME * buffered;
                match self.speak(request) {
                    Ok(speech) => self.upcoming = Some(Playback::new(job, test, speech)),
                    // Refused now (engine busy): ask again when it is its turn to play.
                    Err(_) => self.queue.push_front((job, test)),
                }
            }
        }
        Ok(())
    }

    async fn on_dtmf(&mut self, digit: char) -> Step {
        tracing::debug!(%digit, "DTMF");
        if let Some(controller) = self.ctx.calls.controller(&self.uuid) {
            controller.dtmf(digit);
            return Ok(());
        }
        if let Some(p) = self.current.as_ref() {
            if p.job.escape_digits.contains(digit) {
                // Barge-in: drop the playback (and with it the Speech, so synthesis stops)
                // and stop sending it at once; the next tick is silence.
                let p = self.current.take().expect("checked above");
                let played = p.played_ms();
                let hangup = p.job.hangup_after;
                tracing::info!(%digit, played_ms = played, "playback interrupted");
                report(p.job, Some(p.engine), "INTERRUPTED", Some(digit), played);
                return if hangup { self.hang_up().await } else { Ok(()) };
            }
        }
        if self.test_call && self.queue.len() < MAX_TEST_READBACKS {
            let job = self.test_call_job(format!("You pressed {}.", spoken_digit(digit)));
            self.queue.push_back((job, true));
        }
        Ok(())
    }

    /// A controller took the call over: what was playing or queued here stops.
    fn hand_over(&mut self) {
        self.controlled = true;
        self.test_call = false;
        for p in [self.current.take(), self.upcoming.take()].into_iter().flatten() {
            let played = p.played_ms();
            report(p.job, Some(p.engine), "INTERRUPTED", None, played);
        }
        for (job, _) in self.queue.drain(..) {
            report(job, None, "INTERRUPTED", None, 0);
        }
    }

    /// One 20 ms deadline: send the next speech frame, or silence.
    async fn tick(&mut self) -> Step {
        let controller = self.ctx.calls.controller(&self.uuid);
        if let Some(controller) = &controller {
            if !self.controlled {
                self.hand_over();
            }
            if controller.wants_hangup() {
                return self.hang_up().await;
            }
        } else {
            self.controlled = false;
        }
        let frame = match &controller {
            Some(controller) => controller.next_frame(self.rate),
            None => self.current.as_mut().and_then(|p| p.frames.pop_front()),
        };
        let speech = frame.is_some();
        let (rate, pcm) = match frame {
            Some(frame) => frame,
            None => {
                if self.current.as_ref().is_some_and(Playback::is_starved) {
                    self.stats.underruns += 1;
                    crate::engine::Metrics::add(&crate::engine::METRICS.underruns, 1);
                    METRICS.late_frames.inc();
                }
                (self.rate, Bytes::from(vec![0u8; frame_samples(self.rate) * 2]))
            }
        };
        self.send(Message::Audio { rate, pcm }).await?;
        if self.pacer.sent_one(Instant::now()) {
            self.stats.clock_resets += 1;
            tracing::warn!("fell behind the 20 ms clock; restarting the schedule");
        }
        self.stats.frames += 1;
        if speech {
            self.stats.speech_frames += 1;
            if let Some(p) = self.current.as_mut().filter(|_| controller.is_none()) {
                p.played_frames += 1;
                if let Some(asked) = p.asked.take() {
                    METRICS.first_audio_seconds.observe(asked.elapsed().as_secs_f64());
                }
                if let Some(playout) = &p.playout {
                    playout.played(FRAME);
                }
            }
        } else {
            self.stats.silence_frames += 1;
        }
        self.check_complete().await
    }

    /// The first frame of speech goes out as soon as it exists instead of at the next 20 ms
    /// deadline: it takes that deadline's place, so the stream never runs more than one frame
    /// ahead of the clock, and a cached prompt reaches the caller without the wait.
    async fn send_first_frame_now(&mut self) -> Step {
        let first = self
            .current
            .as_ref()
            .is_some_and(|p| p.played_frames == 0 && !p.frames.is_empty());
        if first && !self.controlled && self.pacer.deadline() > Instant::now() {
            return self.tick().await;
        }
        Ok(())
    }

    /// Reports a finished job and, if it asks for it, ends the session.
    async fn check_complete(&mut self) -> Step {
        if !self.current.as_ref().is_some_and(Playback::is_complete) {
            return Ok(());
        }
        let p = self.current.take().expect("checked above");
        let played = p.played_ms();
        let hangup = p.job.hangup_after;
        match p.failure {
            Some(why) => {
                tracing::warn!(reason = %why, played_ms = played, "speech failed");
                report_failure(p.job, Some(p.engine), FailReason::Engine, why, played);
            }
            None => report(p.job, Some(p.engine), "SUCCESS", None, played),
        }
        if hangup {
            return self.hang_up().await;
        }
        Ok(())
    }

    async fn hang_up(&mut self) -> Step {
        self.send(Message::Hangup).await?;
        let _ = self.writer.shutdown().await;
        Err(SessionEnd::ServerHangup)
    }

    /// Writes one whole message in a single write.
    async fn send(&mut self, message: Message) -> Step {
        let buf = encode_message(&mut self.codec, message)
            .map_err(|e| SessionEnd::ProtocolError(format!("cannot encode our own message: {e}")))?;
        match timeout(WRITE_TIMEOUT, self.writer.write_all(&buf)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SessionEnd::CallerGone(format!("write failed: {e}"))),
            Err(_) => Err(SessionEnd::CallerGone(format!("write blocked for {WRITE_TIMEOUT:?}"))),
        }
    }
}

/// Feeds one engine event into a playback's frames.
fn on_speech_event(p: &mut Playback, event: Option<SpeechEvent>, call_rate: u32, ctx: &SharedAudioSocketContext) {
    let result = match event {
        Some(SpeechEvent::Audio(chunk)) => push_chunk(p, &chunk, call_rate, ctx),
        Some(SpeechEvent::Done) => finish_speech(p),
        Some(SpeechEvent::Failed(why)) => {
            p.failure = Some(why);
            finish_speech(p)
        }
        None => {
            p.failure = Some("engine stopped".into());
            finish_speech(p)
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %format!("{e:#}"), "audio path failed");
        p.failure = Some(format!("{e:#}"));
        p.speech = None;
        p.frames.clear();
    }
}

/// The next event of a playback's speech (the playing one or the one asked ahead); never
/// resolves when there is none.
async fn next_speech_event(current: &mut Option<Playback>) -> Option<SpeechEvent> {
    match current.as_mut().and_then(|p| p.speech.as_mut()) {
        Some(speech) => speech.next().await,
        None => std::future::pending().await,
    }
}

fn push_chunk(p: &mut Playback, chunk: &[f32], call_rate: u32, ctx: &SharedAudioSocketContext) -> anyhow::Result<()> {
    if p.pipeline.is_none() {
        p.pipeline = Some(FramePipeline::new(ctx.engine.sample_rate(), call_rate, &ctx.audio)?);
    }
    let pipeline = p.pipeline.as_mut().expect("created above");
    let rate = pipeline.rate();
    for frame in pipeline.push(chunk)? {
        p.frames.push_back((rate, slin_bytes(&frame)));
    }
    Ok(())
}

fn finish_speech(p: &mut Playback) -> anyhow::Result<()> {
    p.speech = None;
    if let Some(pipeline) = p.pipeline.as_mut() {
        let rate = pipeline.rate();
        for frame in pipeline.finish()? {
            p.frames.push_back((rate, slin_bytes(&frame)));
        }
    }
    Ok(())
}
