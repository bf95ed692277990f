//! One bot controlling one call. Independent of the socket it runs on (the WebSocket a bot
//! opened, or one xttsd dialled): messages come in on a channel and events go out on
//! another. Utterances play in the order they were created; each is released to the engine
//! in segments by its [`Releaser`], one synthesis at a time in queue order, and its frames
//! go to the [`Tap`], where the call's clock takes them.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;
use uuid::Uuid;

use super::heard::{split_heard, SegmentPlay};
use super::protocol::{
    parse_bot_message, parse_options, AudioSettings, BotMessage, DoneReason, ErrorCode, Event, HangupBy, Pressure,
    Refusal,
};
use super::release::{ReleaseConfig, Releaser};
use super::tap::{Tap, TapEvent};
use super::SharedBots;
use crate::audio::{slin_bytes, FramePipeline, FRAME_MS};
use crate::calls::CallController;
use crate::engine::{EngineError, SpeechEvent, SpeechOptions, SpeechRequest};
use crate::prompt_cache::{CacheMode, CachedSpeech};

/// A call whose media is not there assumes this rate in `session.started`.
const NOMINAL_RATE: u32 = 8000;
/// A refused (busy) engine request is asked again after this long.
const BUSY_RETRY: Duration = Duration::from_millis(50);
/// After the bot's socket closes, the call gets this long to hang up.
const HANGUP_GRACE: Duration = Duration::from_secs(1);
/// A connection to a call that is already live waits this long for its first frame.
const LIVE_ATTACH_WAIT: Duration = Duration::from_millis(200);
/// Events waiting for a bot that does not read its socket, before the session gives up on it.
pub const OUTBOUND_QUEUE: usize = 4096;
/// Utterances and marks queued per call.
const MAX_QUEUED_ITEMS: usize = 1000;
/// Ended utterance ids remembered per call (for `utterance_closed` rather than a new one).
const MAX_CLOSED_IDS: usize = 10_000;

/// Sizes of the segments released to the engine, over every call (read by `xttsd bench --bot`).
#[derive(Debug, Default)]
pub struct SegmentStats {
    pub first: AtomicU64,
    pub first_chars: AtomicU64,
    pub later: AtomicU64,
    pub later_chars: AtomicU64,
    pub max_chars: AtomicU64,
}

pub static SEGMENTS: SegmentStats = SegmentStats {
    first: AtomicU64::new(0),
    first_chars: AtomicU64::new(0),
    later: AtomicU64::new(0),
    later_chars: AtomicU64::new(0),
    max_chars: AtomicU64::new(0),
};

impl SegmentStats {
    fn record(&self, first: bool, chars: usize) {
        let chars = chars as u64;
        if first {
            self.first.fetch_add(1, Ordering::Relaxed);
            self.first_chars.fetch_add(chars, Ordering::Relaxed);
        } else {
            self.later.fetch_add(1, Ordering::Relaxed);
            self.later_chars.fetch_add(chars, Ordering::Relaxed);
        }
        self.max_chars.fetch_max(chars, Ordering::Relaxed);
    }
}

/// What the socket reader hands the session.
#[derive(Debug)]
pub enum Inbound {
    Text(String),
    /// A binary frame (bots send none), with its size.
    Binary(usize),
    /// The bot's socket closed or failed.
    Closed,
}

/// What the session hands the socket writer (caller audio goes on its own channel).
#[derive(Debug)]
pub enum Outbound {
    Event(Event),
    /// Close the socket with this code and reason; nothing follows.
    Close(u16, String),
}

/// The session's ends of its socket: messages in, events out, caller audio out.
pub struct Links {
    pub inbound: mpsc::Receiver<Inbound>,
    /// Bounded ([`OUTBOUND_QUEUE`]): a bot that stops reading its socket is dropped.
    pub outbound: mpsc::Sender<Outbound>,
    pub audio: mpsc::Sender<Bytes>,
}

/// Which call a session controls, and how it starts.
#[derive(Debug)]
pub struct Start {
    pub call_id: Uuid,
    /// Sent to the bot in `session.started` (FastAGI: caller ID, DNID, uniqueid...).
    pub vars: BTreeMap<String, String>,
    /// Defaults for this call instead of the engine's (a dialplan's `lang=`, `voice=`).
    pub voice: Option<String>,
    pub lang: Option<String>,
    /// Told whether the session took control of the call (before anything else happens).
    pub registered: Option<oneshot::Sender<bool>>,
}

impl Start {
    pub fn new(call_id: Uuid) -> Self {
        Self {
            call_id,
            vars: BTreeMap::new(),
            voice: None,
            lang: None,
            registered: None,
        }
    }
}

/// Runs a bot's control of a call to its end: the call hung up (either side) or the bot
/// went away.
pub async fn run(bots: SharedBots, start: Start, links: Links) {
    let Links {
        mut inbound,
        outbound,
        audio,
    } = links;
    let Start {
        call_id,
        vars,
        voice,
        lang,
        registered,
    } = start;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let tap = Arc::new(Tap::new(events_tx, audio));
    let controller: Arc<dyn CallController> = tap.clone();
    let took = bots.calls.set_controller(call_id, controller.clone());
    if let Some(registered) = registered {
        let _ = registered.send(took);
    }
    if !took {
        let _ = outbound.try_send(Outbound::Event(Event::Error {
            code: ErrorCode::AlreadyControlled,
            message: "another connection controls this call".into(),
            field: None,
            utterance_id: None,
            ref_id: None,
            fatal: true,
        }));
        let _ = outbound.try_send(Outbound::Close(4409, "call already controlled".into()));
        return;
    }
    let mut session = Session::new(bots.clone(), call_id, tap, outbound);
    if let Some(voice) = voice.filter(|v| !v.is_empty()) {
        session.voice = voice;
    }
    if let Some(lang) = lang.filter(|l| !l.is_empty()) {
        session.lang = lang;
    }
    // A call already live attaches at its next tick: say so in session.started.
    let mut early = Vec::new();
    if bots.calls.is_live(&call_id) {
        let wait = tokio::time::sleep(LIVE_ATTACH_WAIT);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                Some(event) = events.recv() => {
                    let attached = matches!(event, TapEvent::Attached { .. });
                    early.push(event);
                    if attached {
                        break;
                    }
                }
            }
        }
    }
    let attached = early.iter().find_map(|e| match e {
        TapEvent::Attached { rate, at } => Some((*rate, *at)),
        _ => None,
    });
    if let Some((rate, at)) = attached {
        session.on_attached(rate, at, false);
    }
    session.send(Event::SessionStarted {
        call_id: call_id.to_string(),
        attached: attached.is_some(),
        rate: attached.map_or(NOMINAL_RATE, |(rate, _)| rate),
        encoding: session.tap.encoding(),
        frame_ms: FRAME_MS,
        vars,
    });
    for event in early.into_iter().filter(|e| !matches!(e, TapEvent::Attached { .. })) {
        session.on_tap(event);
    }
    session.run(&mut inbound, &mut events).await;
    bots.calls.remove_controller(&call_id, &controller);
}

/// A released piece of an utterance and its audio.
struct Segment {
    text: String,
    /// Asked of the engine (or found empty).
    started: bool,
    /// The engine is done with it: `frames` is final once its stash is converted.
    synthesized: bool,
    frames: u64,
    pipeline: Option<FramePipeline>,
    /// Engine audio that arrived before the call's rate was known.
    stash: Vec<Vec<f32>>,
}

impl Segment {
    fn new(text: String) -> Self {
        Self {
            text,
            started: false,
            synthesized: false,
            frames: 0,
            pipeline: None,
            stash: Vec::new(),
        }
    }
}

struct Utterance {
    id: String,
    serial: u64,
    voice: String,
    lang: String,
    options: SpeechOptions,
    cache: CacheMode,
    releaser: Releaser,
    first_text_at: Option<Instant>,
    segments: Vec<Segment>,
    played_frames: u64,
    started: bool,
    /// Synthesis failed: nothing more is released; what was made still plays.
    failed: bool,
}

impl Utterance {
    fn total_frames(&self) -> u64 {
        self.segments.iter().map(|s| s.frames).sum()
    }

    fn stashed_samples(&self) -> usize {
        self.segments.iter().flat_map(|s| &s.stash).map(Vec::len).sum()
    }

    /// Every character released, synthesized and played.
    fn is_complete(&self, synthesizing: bool) -> bool {
        (self.releaser.is_drained() || self.failed)
            && !synthesizing
            && self
                .segments
                .iter()
                .all(|s| s.synthesized || (self.failed && !s.started))
            && self.stashed_samples() == 0
            && self.played_frames >= self.total_frames()
    }

    /// (played_text, unplayed_text), see [`split_heard`].
    fn heard(&self) -> (String, String) {
        let mut left = self.played_frames;
        let plays: Vec<SegmentPlay> = self
            .segments
            .iter()
            .map(|s| {
                let played = left.min(s.frames);
                left -= played;
                SegmentPlay {
                    text: &s.text,
                    frames: s.frames,
                    played,
                    synthesized: s.synthesized,
                }
            })
            .collect();
        split_heard(&plays, self.releaser.pending())
    }
}

enum Item {
    Utterance(Box<Utterance>),
    Mark(String),
}

/// The segment being synthesized (or read from the prompt cache).
struct Inflight {
    serial: u64,
    segment: usize,
    speech: CachedSpeech,
}

struct Session {
    bots: SharedBots,
    call_id: Uuid,
    tap: Arc<Tap>,
    out: mpsc::Sender<Outbound>,
    epoch: Instant,
    voice: String,
    lang: String,
    options: SpeechOptions,
    cache: CacheMode,
    release: ReleaseConfig,
    queue: VecDeque<Item>,
    closed_ids: HashSet<String>,
    next_serial: u64,
    inflight: Option<Inflight>,
    /// The call's rate once its media arrived.
    rate: Option<u32>,
    attached_at: Option<Instant>,
    retry_at: Option<Instant>,
    busy_reported: bool,
    paused: bool,
    /// The bot asked to hang up (or its socket closed).
    hangup_requested: bool,
    /// The bot's socket is gone: waiting for the call to end, until this time.
    bot_gone_until: Option<Instant>,
    finished: bool,
}

impl Session {
    fn new(bots: SharedBots, call_id: Uuid, tap: Arc<Tap>, out: mpsc::Sender<Outbound>) -> Self {
        let engine = &bots.engine_config;
        Self {
            voice: engine.default_voice.clone(),
            lang: engine.default_language.clone(),
            bots,
            call_id,
            tap,
            out,
            epoch: Instant::now(),
            options: SpeechOptions::default(),
            cache: CacheMode::Auto,
            release: ReleaseConfig::default(),
            queue: VecDeque::new(),
            closed_ids: HashSet::new(),
            next_serial: 1,
            inflight: None,
            rate: None,
            attached_at: None,
            retry_at: None,
            busy_reported: false,
            paused: false,
            hangup_requested: false,
            bot_gone_until: None,
            finished: false,
        }
    }

    fn send(&mut self, event: Event) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.out.try_send(Outbound::Event(event)) {
            tracing::warn!(call = %self.call_id, "voicebot does not read its socket; dropping it");
            self.on_bot_gone();
        }
    }

    fn refuse(&mut self, refusal: Refusal, ref_id: Option<serde_json::Value>) {
        tracing::debug!(call = %self.call_id, code = ?refusal.code, message = %refusal.message, "voicebot message refused");
        self.send(refusal.event(ref_id));
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// `at` on the call clock.
    fn call_ms(&self, at: Instant) -> u64 {
        self.attached_at
            .map_or(0, |start| at.saturating_duration_since(start).as_millis() as u64)
    }

    async fn run(&mut self, inbound: &mut mpsc::Receiver<Inbound>, events: &mut mpsc::UnboundedReceiver<TapEvent>) {
        let mut inbound_open = true;
        while !self.finished {
            self.pump();
            if self.finished {
                break;
            }
            let deadline = self.next_deadline();
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Some(event) => self.on_tap(event),
                    None => self.finished = true,
                },
                message = inbound.recv(), if inbound_open => match message {
                    Some(Inbound::Text(text)) => {
                        // Frames played up to now count before the message acts.
                        while let Ok(event) = events.try_recv() {
                            self.on_tap(event);
                        }
                        self.on_text(&text);
                    }
                    Some(Inbound::Binary(n)) => self.refuse(
                        Refusal::new(ErrorCode::BadMessage, format!("binary frames ({n} bytes) are not accepted from a bot")),
                        None,
                    ),
                    Some(Inbound::Closed) | None => {
                        inbound_open = false;
                        self.on_bot_gone();
                    }
                },
                event = next_speech_event(&mut self.inflight) => self.on_speech(event),
                _ = sleep_until(deadline.map_or(far, tokio::time::Instant::from_std)) => {
                    if self.bot_gone_until.is_some_and(|t| Instant::now() >= t) {
                        self.finished = true;
                    }
                }
            }
        }
    }

    /// The earliest timer: a releaser's, a busy retry, the grace after the bot left.
    fn next_deadline(&self) -> Option<Instant> {
        let now_ms = self.now_ms();
        let release = self
            .synthesis_candidate()
            .and_then(|u| u.releaser.next_deadline())
            .filter(|&d| d > now_ms)
            .map(|d| self.epoch + Duration::from_millis(d));
        [release, self.retry_at, self.bot_gone_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// The utterance whose text is released next: the first one not yet fully released.
    fn synthesis_candidate(&self) -> Option<&Utterance> {
        self.queue.iter().find_map(|item| match item {
            Item::Utterance(u) if !u.failed && !u.releaser.is_drained() => Some(&**u),
            _ => None,
        })
    }

    fn find(&mut self, id: &str) -> Option<&mut Utterance> {
        self.queue.iter_mut().find_map(|item| match item {
            Item::Utterance(u) if u.id == id => Some(&mut **u),
            _ => None,
        })
    }

    fn find_serial(&mut self, serial: u64) -> Option<&mut Utterance> {
        self.queue.iter_mut().find_map(|item| match item {
            Item::Utterance(u) if u.serial == serial => Some(&mut **u),
            _ => None,
        })
    }

    fn buffered_chars(&self) -> usize {
        self.queue
            .iter()
            .map(|item| match item {
                Item::Utterance(u) => u.releaser.pending().chars().count(),
                Item::Mark(_) => 0,
            })
            .sum()
    }

    /// Audio made and not yet played: queued at the tap, or waiting for the call's rate.
    fn unplayed_ms(&self) -> u64 {
        let queued = self.tap.queued_frames() as u64 * FRAME_MS as u64;
        let stashed: usize = self
            .queue
            .iter()
            .map(|item| match item {
                Item::Utterance(u) => u.stashed_samples(),
                Item::Mark(_) => 0,
            })
            .sum();
        queued + stashed as u64 * 1000 / self.bots.engine.sample_rate() as u64
    }

    // ---- messages from the bot ----

    fn on_text(&mut self, text: &str) {
        let limit = self.bots.config.max_message_bytes;
        if text.len() > limit {
            let refusal = Refusal::new(
                ErrorCode::BadMessage,
                format!("message of {} bytes is over the {limit}-byte limit", text.len()),
            );
            return self.refuse(refusal, None);
        }
        let (message, id) = match parse_bot_message(text) {
            Ok(parsed) => parsed,
            Err((refusal, id)) => return self.refuse(refusal, id),
        };
        if let Err(refusal) = self.on_message(message) {
            self.refuse(refusal, id);
        }
    }

    fn on_message(&mut self, message: BotMessage) -> Result<(), Refusal> {
        match message {
            BotMessage::SessionUpdate {
                voice,
                lang,
                options,
                release,
                audio,
                cache,
            } => self.on_update(voice, lang, options, release, audio, cache),
            BotMessage::Speak {
                utterance_id,
                text,
                voice,
                lang,
                options,
                cache,
                flush,
                end,
            } => self.on_speak(utterance_id, text, voice, lang, options, cache, flush, end),
            BotMessage::Flush { utterance_id } => {
                self.open_utterance(&utterance_id)?.releaser.flush();
                Ok(())
            }
            BotMessage::End { utterance_id } => {
                self.open_utterance(&utterance_id)?.releaser.end();
                Ok(())
            }
            BotMessage::Clear { utterance_id } => self.on_clear(utterance_id),
            BotMessage::Mark { name } => {
                self.check_queue_room()?;
                self.queue.push_back(Item::Mark(name));
                Ok(())
            }
            BotMessage::Hangup => {
                self.hangup_requested = true;
                if self.attached_at.is_some() {
                    self.tap.request_hangup();
                } else {
                    // No media yet: nothing to hang up but this session.
                    self.end_call(HangupBy::Bot, Instant::now());
                }
                Ok(())
            }
            BotMessage::Ping => {
                self.send(Event::Pong);
                Ok(())
            }
        }
    }

    /// An utterance the bot may still add text to.
    fn open_utterance(&mut self, id: &str) -> Result<&mut Utterance, Refusal> {
        if self.closed_ids.contains(id) {
            return Err(Refusal::new(ErrorCode::UtteranceClosed, format!("utterance '{id}' has ended")).utterance(id));
        }
        let Some(u) = self.find(id) else {
            return Err(
                Refusal::new(ErrorCode::UnknownUtterance, format!("no utterance '{id}'"))
                    .field("utterance_id")
                    .utterance(id),
            );
        };
        if u.releaser.is_ended() || u.failed {
            return Err(Refusal::new(ErrorCode::UtteranceClosed, format!("utterance '{id}' has ended")).utterance(id));
        }
        Ok(u)
    }

    /// Checks a voice, language and options before they are used, naming what is wrong.
    fn check_speech(&self, voice: &str, lang: &str, options: &SpeechOptions) -> Result<(), Refusal> {
        let engine = &self.bots.engine;
        let cfg = &self.bots.engine_config;
        let probe = |voice: &str, lang: &str, options: &SpeechOptions| {
            engine.validate(&SpeechRequest {
                text: "test".into(),
                voice: voice.into(),
                lang: lang.into(),
                options: options.clone(),
            })
        };
        if let Err(e) = probe(&cfg.default_voice, lang, &SpeechOptions::default()) {
            if crate::xtts::text::base_language(lang).is_err()
                || probe(&cfg.default_voice, &cfg.default_language, &SpeechOptions::default()).is_ok()
            {
                return Err(Refusal::new(ErrorCode::UnsupportedLanguage, e.to_string()).field("lang"));
            }
        }
        if let Err(e) = probe(voice, &cfg.default_language, &SpeechOptions::default()) {
            return Err(Refusal::new(ErrorCode::UnknownVoice, e.to_string()).field("voice"));
        }
        if let Err(e) = options.validate(&cfg.sampling()) {
            return Err(Refusal::new(ErrorCode::BadField, format!("options: {e:#}")).field("options"));
        }
        if let Err(e) = probe(voice, lang, options) {
            return Err(Refusal::new(ErrorCode::BadField, e.to_string()).field("options"));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_update(
        &mut self,
        voice: Option<String>,
        lang: Option<String>,
        options: Option<serde_json::Value>,
        release: Option<ReleaseConfig>,
        audio: Option<AudioSettings>,
        cache: Option<String>,
    ) -> Result<(), Refusal> {
        let voice = voice.unwrap_or_else(|| self.voice.clone());
        let lang = lang.unwrap_or_else(|| self.lang.clone());
        let options = match options {
            Some(value) => parse_options(&value)?,
            None => self.options.clone(),
        };
        self.check_speech(&voice, &lang, &options)?;
        self.cache = parse_cache(cache.as_deref(), self.cache)?;
        if let Some(release) = &release {
            release
                .validate()
                .map_err(|e| Refusal::new(ErrorCode::BadField, e).field("release"))?;
        }
        (self.voice, self.lang, self.options) = (voice, lang, options);
        if let Some(release) = release {
            self.release = release;
        }
        if let Some(audio) = audio {
            let forward = audio.forward.unwrap_or_default();
            let encoding = audio.encoding.unwrap_or_else(|| self.tap.encoding());
            self.tap.set_audio(forward, encoding);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_speak(
        &mut self,
        id: String,
        text: String,
        voice: Option<String>,
        lang: Option<String>,
        options: Option<serde_json::Value>,
        cache: Option<String>,
        flush: bool,
        end: bool,
    ) -> Result<(), Refusal> {
        if id.is_empty() {
            return Err(Refusal::new(ErrorCode::BadField, "utterance_id is empty").field("utterance_id"));
        }
        let cfg = &self.bots.config;
        let chars = text.chars().count();
        if chars > cfg.max_text_chars {
            return Err(Refusal::new(
                ErrorCode::TextTooLong,
                format!(
                    "text of {chars} characters is over the {} limit of one message",
                    cfg.max_text_chars
                ),
            )
            .field("text")
            .utterance(&id));
        }
        let buffered = self.buffered_chars();
        if buffered + chars > cfg.max_buffered_chars {
            return Err(Refusal::new(
                ErrorCode::BufferFull,
                format!(
                    "{buffered} characters wait to be spoken; {chars} more would pass the limit of {}",
                    cfg.max_buffered_chars
                ),
            )
            .field("text")
            .utterance(&id));
        }
        let now_ms = self.now_ms();
        let now = Instant::now();
        if self.find(&id).is_some() || self.closed_ids.contains(&id) {
            let u = self.open_utterance(&id)?;
            if voice.as_ref().is_some_and(|v| *v != u.voice) || lang.as_ref().is_some_and(|l| *l != u.lang) {
                let field = if voice.as_ref().is_some_and(|v| *v != u.voice) {
                    "voice"
                } else {
                    "lang"
                };
                return Err(Refusal::new(
                    ErrorCode::BadField,
                    format!("{field} is fixed once an utterance has begun"),
                )
                .field(field)
                .utterance(&id));
            }
            append(u, &text, flush, end, now_ms, now);
        } else {
            let voice = voice.unwrap_or_else(|| self.voice.clone());
            let lang = lang.unwrap_or_else(|| self.lang.clone());
            let options = match options {
                Some(value) => parse_options(&value).map_err(|r| r.utterance(&id))?,
                None => self.options.clone(),
            };
            self.check_speech(&voice, &lang, &options)
                .map_err(|r| r.utterance(&id))?;
            let cache = parse_cache(cache.as_deref(), self.cache).map_err(|r| r.utterance(&id))?;
            self.check_queue_room().map_err(|r| r.utterance(&id))?;
            let limit = crate::xtts::text::char_limit(&lang);
            let mut u = Utterance {
                id,
                serial: self.next_serial,
                voice,
                lang,
                options,
                cache,
                releaser: Releaser::new(self.release.clone(), limit),
                first_text_at: None,
                segments: Vec::new(),
                played_frames: 0,
                started: false,
                failed: false,
            };
            self.next_serial += 1;
            append(&mut u, &text, flush, end, now_ms, now);
            self.queue.push_back(Item::Utterance(Box::new(u)));
        }
        self.check_pressure();
        Ok(())
    }

    fn check_queue_room(&self) -> Result<(), Refusal> {
        if self.queue.len() >= MAX_QUEUED_ITEMS {
            return Err(Refusal::new(
                ErrorCode::BufferFull,
                format!("{MAX_QUEUED_ITEMS} utterances and marks are queued already"),
            ));
        }
        Ok(())
    }

    fn check_pressure(&mut self) {
        let buffered = self.buffered_chars();
        let pause = self.bots.config.pause_chars;
        let state = if !self.paused && buffered >= pause {
            Pressure::Pause
        } else if self.paused && buffered < pause / 2 {
            Pressure::Resume
        } else {
            return;
        };
        self.paused = state == Pressure::Pause;
        self.send(Event::Backpressure {
            state,
            buffered_chars: buffered,
            queued_audio_ms: self.unplayed_ms(),
        });
    }

    /// Barge-in: the named utterance (or all) stops at the next frame; its text and its
    /// engine request are dropped. Marks fire (cleared) when everything is cleared.
    fn on_clear(&mut self, id: Option<String>) -> Result<(), Refusal> {
        if let Some(id) = &id {
            if self.find(id).is_none() {
                if self.closed_ids.contains(id) {
                    let at_ms = self.call_ms(Instant::now());
                    self.send(Event::Cleared {
                        utterance_ids: vec![],
                        at_ms,
                    });
                    return Ok(());
                }
                return Err(
                    Refusal::new(ErrorCode::UnknownUtterance, format!("no utterance '{id}'"))
                        .field("utterance_id")
                        .utterance(id),
                );
            }
        }
        self.clear(id.as_deref());
        Ok(())
    }

    fn clear(&mut self, only: Option<&str>) {
        let serials: HashSet<u64> = self
            .queue
            .iter()
            .filter_map(|item| match item {
                Item::Utterance(u) if only.is_none_or(|id| id == u.id) => Some(u.serial),
                _ => None,
            })
            .collect();
        self.tap.remove(|serial| serials.contains(&serial));
        if self.inflight.as_ref().is_some_and(|f| serials.contains(&f.serial)) {
            // Dropping the Speech cancels the request at the engine's next step.
            self.inflight = None;
        }
        let now = Instant::now();
        let at_ms = self.call_ms(now);
        let mut ids = Vec::new();
        let mut kept = VecDeque::new();
        for item in std::mem::take(&mut self.queue) {
            match item {
                Item::Utterance(u) if serials.contains(&u.serial) => {
                    ids.push(u.id.clone());
                    self.finish_utterance(*u, DoneReason::Cleared);
                }
                Item::Mark(name) if only.is_none() => self.send(Event::Mark {
                    name,
                    at_ms,
                    cleared: true,
                }),
                other => kept.push_back(other),
            }
        }
        self.queue = kept;
        self.send(Event::Cleared {
            utterance_ids: ids,
            at_ms,
        });
        self.check_pressure();
    }

    /// Sends `speech.done` for an utterance leaving the queue.
    fn finish_utterance(&mut self, u: Utterance, reason: DoneReason) {
        let (played_text, unplayed_text) = u.heard();
        self.send(Event::SpeechDone {
            utterance_id: u.id.clone(),
            reason,
            played_ms: u.played_frames * FRAME_MS as u64,
            played_text,
            unplayed_text,
        });
        if self.closed_ids.len() < MAX_CLOSED_IDS {
            self.closed_ids.insert(u.id);
        }
    }

    fn on_bot_gone(&mut self) {
        tracing::info!(call = %self.call_id, "voicebot disconnected; ending the call");
        self.hangup_requested = true;
        if self.attached_at.is_some() {
            self.tap.request_hangup();
            self.bot_gone_until = Some(Instant::now() + HANGUP_GRACE);
        } else {
            self.finished = true;
        }
    }

    // ---- events from the call ----

    fn on_tap(&mut self, event: TapEvent) {
        match event {
            TapEvent::Attached { rate, at } => self.on_attached(rate, at, true),
            TapEvent::Played { serial, at } => {
                let at_ms = self.call_ms(at);
                if let Some(u) = self.find_serial(serial) {
                    u.played_frames += 1;
                    if !u.started {
                        u.started = true;
                        let ttfa_ms = u
                            .first_text_at
                            .map_or(0, |t| at.saturating_duration_since(t).as_millis() as u64);
                        let utterance_id = u.id.clone();
                        self.send(Event::SpeechStarted {
                            utterance_id,
                            at_ms,
                            ttfa_ms,
                        });
                    }
                }
            }
            TapEvent::Dtmf { digit, at } => {
                let at_ms = self.call_ms(at);
                if self.bots.config.barge_in_digits.contains(digit) && !self.queue.is_empty() {
                    self.clear(None);
                }
                self.send(Event::Dtmf {
                    digit: digit.to_string(),
                    at_ms,
                });
            }
            TapEvent::Ended { by_caller, at } => {
                let by = if by_caller {
                    HangupBy::Caller
                } else if self.hangup_requested {
                    HangupBy::Bot
                } else {
                    HangupBy::Xttsd
                };
                self.end_call(by, at);
            }
            TapEvent::AudioOverflow => self.refuse(
                Refusal::new(
                    ErrorCode::AudioOverflow,
                    "caller audio dropped: the bot reads its socket too slowly",
                ),
                None,
            ),
        }
    }

    /// The call's media arrived: audio made ahead is converted to the call's rate.
    fn on_attached(&mut self, rate: u32, at: Instant, announce: bool) {
        if self.attached_at.is_some() {
            return;
        }
        self.rate = Some(rate);
        self.attached_at = Some(at);
        if announce {
            self.send(Event::CallAttached { at_ms: 0, rate });
        }
        let mut failures = Vec::new();
        for item in self.queue.iter_mut() {
            let Item::Utterance(u) = item else { continue };
            let serial = u.serial;
            for seg in u.segments.iter_mut() {
                if seg.stash.is_empty() {
                    continue;
                }
                let stash = std::mem::take(&mut seg.stash);
                let finish = seg.synthesized;
                if let Err(e) = feed(&self.bots, &self.tap, serial, seg, rate, &stash, finish) {
                    failures.push((u.id.clone(), e));
                }
            }
        }
        for (id, e) in failures {
            self.refuse(
                Refusal::new(ErrorCode::SynthesisFailed, format!("audio path: {e:#}")).utterance(&id),
                None,
            );
        }
    }

    fn end_call(&mut self, by: HangupBy, at: Instant) {
        if self.finished {
            return;
        }
        self.inflight = None;
        self.tap.remove(|_| true);
        let at_ms = self.call_ms(at);
        for item in std::mem::take(&mut self.queue) {
            match item {
                Item::Utterance(u) => self.finish_utterance(*u, DoneReason::Hangup),
                Item::Mark(name) => self.send(Event::Mark {
                    name,
                    at_ms,
                    cleared: true,
                }),
            }
        }
        self.send(Event::Hangup { by, at_ms });
        let _ = self.out.try_send(Outbound::Close(1000, "call ended".into()));
        self.finished = true;
    }

    fn on_speech(&mut self, event: Option<SpeechEvent>) {
        let Some(flight) = self.inflight.as_ref() else { return };
        let (serial, index) = (flight.serial, flight.segment);
        let rate = self.rate;
        let bots = self.bots.clone();
        let tap = self.tap.clone();
        let Some(u) = self.find_serial(serial) else {
            self.inflight = None;
            return;
        };
        let id = u.id.clone();
        let seg = &mut u.segments[index];
        let (result, failure) = match event {
            Some(SpeechEvent::Audio(chunk)) => match rate {
                Some(rate) => (feed(&bots, &tap, serial, seg, rate, &[chunk], false), None),
                None => {
                    seg.stash.push(chunk);
                    (Ok(()), None)
                }
            },
            Some(SpeechEvent::Done) => {
                seg.synthesized = true;
                (finish_segment(&bots, &tap, serial, seg, rate), None)
            }
            Some(SpeechEvent::Failed(why)) => {
                seg.synthesized = true;
                (finish_segment(&bots, &tap, serial, seg, rate), Some(why))
            }
            None => {
                seg.synthesized = true;
                (
                    finish_segment(&bots, &tap, serial, seg, rate),
                    Some("engine stopped".to_string()),
                )
            }
        };
        let failure = failure.or_else(|| result.err().map(|e| format!("audio path: {e:#}")));
        let over = seg.synthesized || failure.is_some();
        seg.synthesized |= over;
        if failure.is_some() {
            u.failed = true;
        }
        if over {
            self.inflight = None;
        }
        if let Some(why) = failure {
            tracing::warn!(call = %self.call_id, utterance = %id, reason = %why, "voicebot speech failed");
            self.refuse(Refusal::new(ErrorCode::SynthesisFailed, why).utterance(&id), None);
        }
    }

    // ---- releasing text and completing utterances ----

    fn pump(&mut self) {
        self.release_next();
        self.complete_front();
    }

    /// Starts the next synthesis when none is running: a segment released earlier, or one
    /// the release policy lets go now.
    fn release_next(&mut self) {
        let now = Instant::now();
        if self.finished || self.inflight.is_some() || self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        self.retry_at = None;
        let now_ms = self.now_ms();
        let unplayed = self.unplayed_ms();
        loop {
            let mut started = None;
            let mut released_any = false;
            for item in self.queue.iter_mut() {
                let Item::Utterance(u) = item else { continue };
                if u.failed {
                    continue;
                }
                if let Some(i) = u.segments.iter().position(|s| !s.started) {
                    started = Some((u.serial, i));
                    break;
                }
                if let Some(text) = u.releaser.poll(now_ms, unplayed) {
                    SEGMENTS.record(u.segments.is_empty(), text.trim().chars().count());
                    u.segments.push(Segment::new(text));
                    started = Some((u.serial, u.segments.len() - 1));
                    released_any = true;
                    break;
                }
                if !u.releaser.is_drained() {
                    break;
                }
            }
            let Some((serial, index)) = started else { break };
            if released_any {
                self.check_pressure();
            }
            if self.start(serial, index, unplayed) {
                break;
            }
            if self.retry_at.is_some() {
                break;
            }
        }
    }

    /// Asks the engine for one segment (through the prompt cache: a stored segment makes no
    /// engine request); true when its speech is now in flight.
    fn start(&mut self, serial: u64, index: usize, unplayed_ms: u64) -> bool {
        let bots = self.bots.clone();
        let Some(u) = self.find_serial(serial) else {
            return false;
        };
        let text = u.segments[index].text.trim().to_string();
        if text.is_empty() {
            let seg = &mut u.segments[index];
            seg.started = true;
            seg.synthesized = true;
            return false;
        }
        let mut options = u.options.clone();
        options.plays_in = Duration::from_millis(unplayed_ms);
        let request = SpeechRequest {
            text,
            lang: u.lang.clone(),
            voice: u.voice.clone(),
            options,
        };
        let id = u.id.clone();
        match crate::prompt_cache::speak(bots.cache.as_ref(), &bots.engine, request, u.cache) {
            Ok(speech) => {
                u.segments[index].started = true;
                self.inflight = Some(Inflight {
                    serial,
                    segment: index,
                    speech,
                });
                true
            }
            Err(EngineError::Busy(_)) => {
                self.retry_at = Some(Instant::now() + BUSY_RETRY);
                if !self.busy_reported {
                    self.busy_reported = true;
                    self.refuse(
                        Refusal::new(ErrorCode::EngineBusy, "the engine is busy; the speech waits its turn")
                            .utterance(&id),
                        None,
                    );
                }
                false
            }
            Err(e) => {
                let seg = &mut u.segments[index];
                seg.started = true;
                seg.synthesized = true;
                u.failed = true;
                let message = e.to_string();
                let code = if message.contains("too long") || message.contains("tokens") {
                    ErrorCode::TextTooLong
                } else {
                    ErrorCode::SynthesisFailed
                };
                self.refuse(Refusal::new(code, message).utterance(&id), None);
                false
            }
        }
    }

    /// Utterances and marks at the head of the queue whose time has come.
    fn complete_front(&mut self) {
        let at_ms = self.call_ms(Instant::now());
        loop {
            let synthesizing =
                |serial: u64, inflight: &Option<Inflight>| inflight.as_ref().is_some_and(|f| f.serial == serial);
            match self.queue.front() {
                Some(Item::Mark(_)) => {
                    let Some(Item::Mark(name)) = self.queue.pop_front() else {
                        unreachable!()
                    };
                    self.send(Event::Mark {
                        name,
                        at_ms,
                        cleared: false,
                    });
                }
                Some(Item::Utterance(u)) if u.is_complete(synthesizing(u.serial, &self.inflight)) => {
                    let Some(Item::Utterance(u)) = self.queue.pop_front() else {
                        unreachable!()
                    };
                    let reason = if u.failed {
                        DoneReason::Error
                    } else {
                        DoneReason::Completed
                    };
                    self.finish_utterance(*u, reason);
                }
                _ => break,
            }
        }
    }
}

/// Adds a `speak` message's text to its utterance.
fn append(u: &mut Utterance, text: &str, flush: bool, end: bool, now_ms: u64, now: Instant) {
    if !text.is_empty() && u.first_text_at.is_none() {
        u.first_text_at = Some(now);
    }
    u.releaser.push(text, now_ms);
    if flush {
        u.releaser.flush();
    }
    if end {
        u.releaser.end();
    }
}

/// Runs engine audio through the segment's pipeline at the call's rate and queues the frames.
fn feed(
    bots: &SharedBots,
    tap: &Tap,
    serial: u64,
    seg: &mut Segment,
    rate: u32,
    chunks: &[Vec<f32>],
    finish: bool,
) -> anyhow::Result<()> {
    if seg.pipeline.is_none() {
        seg.pipeline = Some(FramePipeline::new(bots.engine.sample_rate(), rate, &bots.audio)?);
    }
    let pipeline = seg.pipeline.as_mut().expect("created above");
    let out_rate = pipeline.rate();
    let mut frames = Vec::new();
    for chunk in chunks {
        frames.extend(pipeline.push(chunk)?);
    }
    if finish {
        frames.extend(pipeline.finish()?);
    }
    seg.frames += frames.len() as u64;
    tap.push(serial, out_rate, frames.iter().map(|f| slin_bytes(f)));
    Ok(())
}

/// The engine is done with a segment: its last frames (faded out), if the rate is known.
fn finish_segment(
    bots: &SharedBots,
    tap: &Tap,
    serial: u64,
    seg: &mut Segment,
    rate: Option<u32>,
) -> anyhow::Result<()> {
    match (rate, seg.pipeline.is_some()) {
        (Some(rate), _) => feed(bots, tap, serial, seg, rate, &[], true),
        (None, _) => Ok(()),
    }
}

/// A `cache` field: `auto`, `off` or `refresh`; absent keeps `current`.
fn parse_cache(value: Option<&str>, current: CacheMode) -> Result<CacheMode, Refusal> {
    match value {
        None => Ok(current),
        Some(text) => {
            CacheMode::parse(text).map_err(|e| Refusal::new(ErrorCode::BadField, e.to_string()).field("cache"))
        }
    }
}

async fn next_speech_event(inflight: &mut Option<Inflight>) -> Option<SpeechEvent> {
    match inflight.as_mut() {
        Some(flight) => flight.speech.next().await,
        None => std::future::pending().await,
    }
}
