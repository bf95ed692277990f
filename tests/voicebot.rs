//! Voicebots end to end on loopback: the AudioSocket server and the control API in-process
//! with a tone generator standing in for the model, a fake Asterisk leg that sends patterned
//! caller audio and records every frame it gets, and a bot on the call's WebSocket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

use xttsd::audio::{frame_samples, slin_samples};
use xttsd::audiosocket::codec::{encode_message, AudioSocketCodec, Message};
use xttsd::audiosocket::reader::MessageReader;
use xttsd::config::Config;
use xttsd::engine::{Engine, SpeechBackend, SpeechRequest};
use xttsd::serve::{Services, SharedServices};
use xttsd::voicebot::protocol::{decode_audio_frame, DoneReason, ErrorCode, Event, HangupBy};

const ENGINE_RATE: u32 = 24000;
const FRAME: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Probe {
    requests: Mutex<Vec<String>>,
    langs: Mutex<Vec<String>>,
    cancelled: AtomicUsize,
}

/// Speaks a text as a 1 kHz tone: `"<N> ms"` in it sets the duration (default 300 ms).
/// `"slow"` produces audio in real time (so a long one is still being made when cleared).
struct ToneBackend {
    probe: Arc<Probe>,
}

fn duration_ms(text: &str) -> usize {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_matches(|c: char| !c.is_alphanumeric()) == "ms")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(300)
}

impl SpeechBackend for ToneBackend {
    fn sample_rate(&self) -> u32 {
        ENGINE_RATE
    }

    fn speak(&mut self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        self.probe.requests.lock().unwrap().push(req.text.clone());
        self.probe.langs.lock().unwrap().push(req.lang.clone());
        let total = duration_ms(&req.text) * ENGINE_RATE as usize / 1000;
        let slow = req.text.contains("slow");
        let chunk = ENGINE_RATE as usize / 10; // 100 ms
        let mut at = 0;
        while at < total {
            let n = chunk.min(total - at);
            let samples: Vec<f32> = (at..at + n)
                .map(|k| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * k as f32 / ENGINE_RATE as f32).sin())
                .collect();
            std::thread::sleep(Duration::from_millis(if slow { 100 } else { 10 }));
            if !emit(samples) {
                self.probe.cancelled.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            at += n;
        }
        Ok(())
    }
}

fn validate(req: &SpeechRequest) -> Result<()> {
    anyhow::ensure!(req.voice != "missing", "unknown voice '{}'", req.voice);
    anyhow::ensure!(
        ["en", "de", "zh-cn", "ja"].contains(&req.lang.as_str()),
        "unsupported language {:?}",
        req.lang
    );
    Ok(())
}

struct Daemon {
    audiosocket: SocketAddr,
    control: SocketAddr,
    agi: SocketAddr,
    probe: Arc<Probe>,
    services: SharedServices,
}

async fn start(extra_config: &str) -> Daemon {
    let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let g = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (audiosocket, control, agi) = (
        a.local_addr().unwrap(),
        c.local_addr().unwrap(),
        g.local_addr().unwrap(),
    );
    let config = Config::from_toml(&format!(
        "[audiosocket]\nuuid_timeout_ms = 1000\n[agi]\naudiosocket_address = \"{audiosocket}\"\n\
         [test_call]\nenabled = false\n{extra_config}"
    ))
    .unwrap();
    let probe = Arc::new(Probe::default());
    let engine = Engine::start(ToneBackend { probe: probe.clone() }, validate, 256);
    let services: SharedServices = Services::new(config, engine);
    tokio::spawn(xttsd::audiosocket::serve(a, services.audiosocket()));
    tokio::spawn(xttsd::agi::serve(g, services.agi()));
    tokio::spawn(xttsd::control::serve(c, services.control(), services.speech_api()));
    Daemon {
        audiosocket,
        control,
        agi,
        probe,
        services,
    }
}

// ---- the bot ----

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

struct Bot {
    ws: Ws,
    /// Every event, with when it arrived.
    events: Vec<(Instant, Event)>,
    /// Caller audio: (seq, flags, bytes).
    audio: Vec<(u32, u16, Vec<u8>)>,
    closed: Option<u16>,
}

impl Bot {
    async fn connect(control: SocketAddr, call: Uuid) -> Bot {
        let url = format!("ws://{control}/v1/calls/{call}/ws");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("bot connects");
        Bot {
            ws,
            events: Vec::new(),
            audio: Vec::new(),
            closed: None,
        }
    }

    async fn send(&mut self, message: Value) {
        self.ws.send(WsMessage::Text(message.to_string().into())).await.unwrap();
    }

    async fn send_raw(&mut self, text: &str) {
        self.ws.send(WsMessage::Text(text.to_string().into())).await.unwrap();
    }

    /// The next event (caller audio is collected on the way); None once closed.
    async fn next(&mut self) -> Option<Event> {
        while let Some(message) = self.ws.next().await {
            match message {
                Ok(WsMessage::Text(text)) => {
                    let event: Event = serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad event {text}: {e}"));
                    self.events.push((Instant::now(), event.clone()));
                    return Some(event);
                }
                Ok(WsMessage::Binary(data)) => {
                    let (seq, flags, pcm) = decode_audio_frame(&data).expect("audio header");
                    self.audio.push((seq, flags, pcm.to_vec()));
                }
                Ok(WsMessage::Close(frame)) => {
                    self.closed = Some(frame.map_or(1005, |f| u16::from(f.code)));
                    return None;
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Waits (at most 10 s) for the first event `f` accepts.
    async fn wait(&mut self, what: &str, f: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match timeout(deadline - Instant::now(), self.next()).await {
                Err(_) => panic!("timed out waiting for {what}; got {:#?}", self.events),
                Ok(None) => panic!("socket closed waiting for {what}; got {:#?}", self.events),
                Ok(Some(e)) if f(&e) => return e,
                Ok(Some(_)) => {}
            }
        }
    }

    /// Reads until the socket closes (at most 5 s).
    async fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while timeout(deadline - Instant::now(), self.next())
            .await
            .expect("socket did not close")
            .is_some()
        {}
    }
}

fn done_of<'a>(events: &'a [(Instant, Event)], id: &str) -> Vec<&'a Event> {
    events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, Event::SpeechDone { utterance_id, .. } if utterance_id == id))
        .collect()
}

// ---- the Asterisk leg ----

#[derive(Default, Clone)]
struct LegPlan {
    /// Press these digits at these times after connecting.
    dtmf: Vec<(Duration, char)>,
    /// Send a hangup message at this time.
    hangup_at: Option<Duration>,
    /// Stop (close) at this time.
    until: Duration,
}

#[derive(Debug)]
struct LegResult {
    /// Every frame received: arrival, and whether any sample is not zero.
    frames: Vec<(Instant, bool)>,
    /// The caller audio sent, as bytes.
    sent: Vec<u8>,
    server_hangup: bool,
}

impl LegResult {
    fn voiced(&self) -> usize {
        self.frames.iter().filter(|(_, v)| *v).count()
    }
}

/// Caller audio that differs in every sample: frame n, sample k.
fn caller_frame(n: u32) -> Vec<u8> {
    (0..frame_samples(8000) as u32)
        .flat_map(|k| (((n * 160 + k) % 20000) as i16 - 10000).to_le_bytes())
        .collect()
}

async fn leg(addr: SocketAddr, uuid: Uuid, plan: LegPlan, stop: Option<oneshot::Receiver<()>>) -> LegResult {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut codec = AudioSocketCodec::new(65535);
    let mut reader = MessageReader::new(rd, codec.clone(), Duration::from_secs(1));
    let start = Instant::now();
    wr.write_all(&encode_message(&mut codec, Message::Uuid(uuid)).unwrap())
        .await
        .unwrap();
    let mut result = LegResult {
        frames: Vec::new(),
        sent: Vec::new(),
        server_hangup: false,
    };
    let mut n = 0u32;
    let mut dtmf = plan.dtmf.clone();
    let mut stop = stop;
    loop {
        let next_frame = start + FRAME * n;
        let next_dtmf = dtmf.first().map(|(at, _)| start + *at);
        let hangup = plan.hangup_at.map(|at| start + at);
        let far = start + Duration::from_secs(3600);
        tokio::select! {
            message = reader.next() => match message {
                Ok(Some(Message::Audio { pcm, .. })) => {
                    let samples = slin_samples(&pcm).unwrap();
                    result.frames.push((Instant::now(), samples.iter().any(|&s| s != 0)));
                }
                Ok(Some(Message::Hangup)) => {
                    result.server_hangup = true;
                    break;
                }
                Ok(Some(other)) => panic!("server sent {other:?}"),
                Ok(None) | Err(_) => break,
            },
            _ = sleep_until(next_frame) => {
                let pcm = caller_frame(n);
                result.sent.extend_from_slice(&pcm);
                let m = encode_message(&mut codec, Message::Audio { rate: 8000, pcm: pcm.into() }).unwrap();
                if wr.write_all(&m).await.is_err() {
                    break;
                }
                n += 1;
            }
            _ = sleep_until(next_dtmf.unwrap_or(far)), if next_dtmf.is_some() => {
                let (_, digit) = dtmf.remove(0);
                let m = encode_message(&mut codec, Message::Dtmf(digit)).unwrap();
                let _ = wr.write_all(&m).await;
            }
            _ = sleep_until(hangup.unwrap_or(far)), if hangup.is_some() => {
                let m = encode_message(&mut codec, Message::Hangup).unwrap();
                let _ = wr.write_all(&m).await;
                // Asterisk closes the socket after its hangup; frames in flight are dropped.
                break;
            }
            _ = sleep_until(start + plan.until) => break,
            _ = async { stop.as_mut().unwrap().await }, if stop.is_some() => break,
        }
    }
    result
}

fn speak(id: &str, text: &str) -> Value {
    json!({"type": "speak", "utterance_id": id, "text": text})
}

/// Streams `text` in 4-character pieces every 25 ms (an LLM's pace), then ends it.
async fn stream_text(bot: &mut Bot, id: &str, text: &str) {
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(4) {
        let piece: String = piece.iter().collect();
        bot.send(speak(id, &piece)).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bot.send(json!({"type": "end", "utterance_id": id})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamed_text_is_spoken_and_played_ms_matches_the_frames_asterisk_got() {
    let d = start("").await;
    let call = Uuid::new_v4();
    // The bot is there before the call: its greeting is made ahead.
    let mut bot = Bot::connect(d.control, call).await;
    let started = bot
        .wait("session.started", |e| matches!(e, Event::SessionStarted { .. }))
        .await;
    assert!(
        matches!(
            started,
            Event::SessionStarted {
                attached: false,
                frame_ms: 20,
                ..
            }
        ),
        "{started:?}"
    );
    let text = "Hello there, thanks for calling, this is 400 ms. And here is 300 ms more. Bye now, 200 ms!";
    stream_text(&mut bot, "greeting", text).await;
    let (stop_tx, stop_rx) = oneshot::channel();
    let leg_task = tokio::spawn(leg(
        d.audiosocket,
        call,
        LegPlan {
            until: Duration::from_secs(10),
            ..Default::default()
        },
        Some(stop_rx),
    ));
    let attached = bot
        .wait("call.attached", |e| matches!(e, Event::CallAttached { .. }))
        .await;
    assert!(matches!(attached, Event::CallAttached { rate: 8000, .. }));
    let s = bot
        .wait("speech.started", |e| matches!(e, Event::SpeechStarted { .. }))
        .await;
    let Event::SpeechStarted { utterance_id, .. } = s else {
        unreachable!()
    };
    assert_eq!(utterance_id, "greeting");
    let done = bot.wait("speech.done", |e| matches!(e, Event::SpeechDone { .. })).await;
    // Let the last frames arrive, then hang up.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop_tx.send(());
    let leg = leg_task.await.unwrap();
    let Event::SpeechDone {
        reason,
        played_ms,
        played_text,
        unplayed_text,
        ..
    } = done
    else {
        unreachable!()
    };
    assert_eq!(reason, DoneReason::Completed);
    assert_eq!(played_text, text, "the whole text was played");
    assert_eq!(unplayed_text, "");
    let voiced_ms = leg.voiced() as u64 * 20;
    println!("played_ms {played_ms}, voiced at Asterisk {voiced_ms} ms");
    assert!(
        played_ms.abs_diff(voiced_ms) <= 20,
        "played_ms {played_ms} vs {voiced_ms} ms voiced at Asterisk"
    );
    // Segments as the release policy cut them, each a tone of the duration it names.
    let requests = d.probe.requests.lock().unwrap().clone();
    assert!(requests.len() >= 2, "{requests:?}");
    assert_eq!(requests.join(" "), text);
    let expected: u64 = requests.iter().map(|r| duration_ms(r) as u64).sum();
    assert!(
        voiced_ms >= expected && voiced_ms <= expected + 40 * requests.len() as u64,
        "{expected} ms of tone expected, {voiced_ms} heard"
    );
}

/// A seeded utterance is rendered once: the same words again come from the prompt cache with no
/// engine request and play the same; `"cache": "off"` goes to the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seeded_utterance_said_again_comes_from_the_prompt_cache() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(&format!("[prompts]\ncache_dir = {:?}\n", dir.path().join("prompts"))).await;
    let cache = xttsd::prompt_cache::PromptCache::shared(&d.services.config).expect("the cache is on");
    let call = Uuid::new_v4();
    let (stop_tx, stop_rx) = oneshot::channel();
    let leg_task = tokio::spawn(leg(
        d.audiosocket,
        call,
        LegPlan {
            until: Duration::from_secs(10),
            ..Default::default()
        },
        Some(stop_rx),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut bot = Bot::connect(d.control, call).await;
    bot.wait("session.started", |e| {
        matches!(e, Event::SessionStarted { attached: true, .. })
    })
    .await;
    bot.send(json!({"type": "session.update", "options": {"seed": 7}}))
        .await;
    let text = "Welcome back, this is 400 ms.";
    let mut played = Vec::new();
    for (id, cache_field) in [("first", None), ("again", None), ("uncached", Some("off"))] {
        let mut message = json!({"type": "speak", "utterance_id": id, "text": text, "end": true});
        if let Some(mode) = cache_field {
            message["cache"] = json!(mode);
        }
        bot.send(message).await;
        let done = bot
            .wait(
                "speech.done",
                |e| matches!(e, Event::SpeechDone { utterance_id, .. } if utterance_id == id),
            )
            .await;
        let Event::SpeechDone { reason, played_ms, .. } = done else {
            unreachable!()
        };
        assert_eq!(reason, DoneReason::Completed, "{id}");
        played.push(played_ms);
        if id == "first" {
            // Stored once the synthesis has ended.
            for _ in 0..300 {
                if cache.stats().stored == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(cache.stats().stored, 1, "the utterance was not stored");
        }
    }
    let _ = stop_tx.send(());
    leg_task.await.unwrap();
    let requests = d.probe.requests.lock().unwrap().clone();
    assert_eq!(requests, vec![text, text], "the cached utterance went to the engine");
    assert_eq!(cache.stats().hits, 1);
    assert!(
        played.iter().all(|&ms| ms.abs_diff(played[0]) <= 20),
        "played {played:?} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clear_mid_sentence_silences_the_call_from_the_next_frame() {
    let d = start("").await;
    let call = Uuid::new_v4();
    let leg_task = tokio::spawn(leg(
        d.audiosocket,
        call,
        LegPlan {
            until: Duration::from_millis(2500),
            ..Default::default()
        },
        None,
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut bot = Bot::connect(d.control, call).await;
    bot.wait("session.started", |e| {
        matches!(e, Event::SessionStarted { attached: true, .. })
    })
    .await;
    let text = "This slow sentence lasts 3000 ms, and the caller will cut it short before the end.";
    bot.send(json!({"type": "speak", "utterance_id": "u1", "text": text, "end": true}))
        .await;
    bot.send(json!({"type": "mark", "name": "after-u1"})).await;
    bot.wait("speech.started", |e| matches!(e, Event::SpeechStarted { .. }))
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cleared_at = Instant::now();
    bot.send(json!({"type": "clear"})).await;
    let cleared = bot.wait("cleared", |e| matches!(e, Event::Cleared { .. })).await;
    assert!(
        matches!(&cleared, Event::Cleared { utterance_ids, .. } if utterance_ids == &["u1"]),
        "{cleared:?}"
    );
    let leg = leg_task.await.unwrap();
    // At Asterisk: at most the frame already on its way when the clear arrived is voiced.
    let late: Vec<Duration> = leg
        .frames
        .iter()
        .filter(|(at, voiced)| *voiced && *at > cleared_at)
        .map(|(at, _)| *at - cleared_at)
        .collect();
    assert!(
        late.len() <= 1 && late.iter().all(|d| *d <= FRAME + Duration::from_millis(10)),
        "voiced frames after clear: {late:?}"
    );
    let dones = done_of(&bot.events, "u1");
    assert_eq!(dones.len(), 1, "exactly one speech.done");
    let Event::SpeechDone {
        reason,
        played_ms,
        played_text,
        unplayed_text,
        ..
    } = dones[0]
    else {
        unreachable!()
    };
    assert_eq!(*reason, DoneReason::Cleared);
    let voiced_ms = leg.voiced() as u64 * 20;
    assert!(
        played_ms.abs_diff(voiced_ms) <= 20,
        "played_ms {played_ms} vs {voiced_ms} voiced"
    );
    assert!((300..2000).contains(played_ms), "{played_ms}");
    assert_eq!(format!("{played_text}{unplayed_text}"), text);
    assert!(!unplayed_text.is_empty());
    // The mark behind the cleared speech fires, marked cleared.
    assert!(bot
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::Mark { name, cleared: true, .. } if name == "after-u1")));
    // The engine stopped making the cleared speech.
    let deadline = Instant::now() + Duration::from_secs(2);
    while d.probe.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "synthesis was not cancelled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marks_fire_in_order_and_after_the_speech_before_them() {
    let d = start("").await;
    let call = Uuid::new_v4();
    let mut bot = Bot::connect(d.control, call).await;
    bot.wait("session.started", |e| matches!(e, Event::SessionStarted { .. }))
        .await;
    bot.send(json!({"type": "mark", "name": "m0"})).await;
    bot.send(json!({"type": "speak", "utterance_id": "a", "text": "First part, 200 ms.", "end": true}))
        .await;
    bot.send(json!({"type": "mark", "name": "m1"})).await;
    bot.send(json!({"type": "speak", "utterance_id": "b", "text": "Second part, 200 ms.", "end": true}))
        .await;
    bot.send(json!({"type": "mark", "name": "m2"})).await;
    let leg_task = tokio::spawn(leg(
        d.audiosocket,
        call,
        LegPlan {
            until: Duration::from_secs(3),
            ..Default::default()
        },
        None,
    ));
    bot.wait("m2", |e| matches!(e, Event::Mark { name, .. } if name == "m2"))
        .await;
    let order: Vec<String> = bot
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Mark {
                name, cleared: false, ..
            } => Some(name.clone()),
            Event::SpeechDone { utterance_id, .. } => Some(format!("done:{utterance_id}")),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["m0", "done:a", "m1", "done:b", "m2"]);
    let at: Vec<u64> = bot
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Mark { at_ms, .. } => Some(*at_ms),
            _ => None,
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
    // m2 comes once the last of the 400 ms of speech (20 frames) was handed over.
    assert!(at[2] >= 380, "m2 after 400 ms of speech: {at:?}");
    drop(leg_task);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caller_audio_reaches_the_bot_byte_for_byte_with_consecutive_sequence_numbers() {
    let d = start("").await;
    let call = Uuid::new_v4();
    let mut bot = Bot::connect(d.control, call).await;
    bot.wait("session.started", |e| matches!(e, Event::SessionStarted { .. }))
        .await;
    bot.send(json!({"type": "session.update", "audio": {"forward": "caller", "encoding": "pcm16"}}))
        .await;
    bot.send(json!({"type": "ping"})).await;
    bot.wait("pong", |e| matches!(e, Event::Pong)).await;
    let leg = leg(
        d.audiosocket,
        call,
        LegPlan {
            hangup_at: Some(Duration::from_millis(1010)),
            until: Duration::from_secs(3),
            ..Default::default()
        },
        None,
    )
    .await;
    bot.drain().await;
    assert!(bot.audio.len() >= 45, "{} frames", bot.audio.len());
    let seqs: Vec<u32> = bot.audio.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>());
    let got: Vec<u8> = bot.audio.iter().flat_map(|(_, _, pcm)| pcm.clone()).collect();
    assert_eq!(got.len(), seqs.len() * 320);
    assert_eq!(got, leg.sent[..got.len()], "caller audio changed on the way");
    assert!(
        bot.audio.iter().all(|(_, flags, _)| *flags == 0),
        "the bot was not speaking"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hangup_from_either_side_ends_both() {
    let d = start("").await;
    // The caller hangs up mid-speech.
    let call = Uuid::new_v4();
    let mut bot = Bot::connect(d.control, call).await;
    bot.send(json!({"type": "speak", "utterance_id": "u", "text": "A slow one of 2000 ms.", "end": true}))
        .await;
    let leg_result = leg(
        d.audiosocket,
        call,
        LegPlan {
            hangup_at: Some(Duration::from_millis(600)),
            until: Duration::from_secs(3),
            ..Default::default()
        },
        None,
    )
    .await;
    assert!(!leg_result.server_hangup);
    bot.drain().await;
    assert_eq!(bot.closed, Some(1000));
    let hangup = bot.events.iter().find_map(|(_, e)| match e {
        Event::Hangup { by, .. } => Some(*by),
        _ => None,
    });
    assert_eq!(hangup, Some(HangupBy::Caller));
    let dones = done_of(&bot.events, "u");
    assert!(
        matches!(
            dones[..],
            [Event::SpeechDone {
                reason: DoneReason::Hangup,
                ..
            }]
        ),
        "{dones:?}"
    );

    // The bot hangs up: Asterisk gets the hangup message.
    let call = Uuid::new_v4();
    let mut bot = Bot::connect(d.control, call).await;
    bot.wait("session.started", |e| matches!(e, Event::SessionStarted { .. }))
        .await;
    let leg_task = tokio::spawn(leg(
        d.audiosocket,
        call,
        LegPlan {
            until: Duration::from_secs(5),
            ..Default::default()
        },
        None,
    ));
    bot.wait("call.attached", |e| matches!(e, Event::CallAttached { .. }))
        .await;
    bot.send(json!({"type": "hangup"})).await;
    bot.drain().await;
    let leg_result = timeout(Duration::from_secs(3), leg_task).await.unwrap().unwrap();
    assert!(leg_result.server_hangup, "Asterisk got no hangup");
    assert!(bot
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::Hangup { by: HangupBy::Bot, .. })));
    assert_eq!(bot.closed, Some(1000));

    // The bot's socket goes away: the call is hung up too.
    let call = Uuid::new_v4();
    let mut bot = Bot::connect(d.control, call).await;
    bot.wait("session.started", |e| matches!(e, Event::SessionStarted { .. }))
        .await;
    let leg_task = tokio::spawn(leg(
        d.audiosocket,
        call,
        LegPlan {
            until: Duration::from_secs(5),
            ..Default::default()
        },
        None,
    ));
    bot.wait("call.attached", |e| matches!(e, Event::CallAttached { .. }))
        .await;
    drop(bot);
    let leg_result = timeout(Duration::from_secs(3), leg_task).await.unwrap().unwrap();
    assert!(leg_result.server_hangup, "Asterisk got no hangup after the bot left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clearing_one_utterance_lets_the_next_play() {
    let d = start("").await;
    let call = Uuid::new_v4();
    let mut bot = Bot::connect(d.control, call).await;
    bot.wait("session.started", |e| matches!(e, Event::SessionStarted { .. }))
        .await;
    let leg_task = tokio::spawn(leg(
        d.audiosocket,
        call,
        LegPlan {
            until: Duration::from_secs(4),
            ..Default::default()
        },
        None,
    ));
    bot.send(json!({"type": "speak", "utterance_id": "a", "text": "A slow and long one of 3000 ms.", "end": true}))
        .await;
    bot.send(json!({"type": "speak", "utterance_id": "b", "text": "Then this, 200 ms.", "end": true}))
        .await;
    bot.wait(
        "a started",
        |e| matches!(e, Event::SpeechStarted { utterance_id, .. } if utterance_id == "a"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bot.send(json!({"type": "clear", "utterance_id": "a"})).await;
    let cleared = bot.wait("cleared", |e| matches!(e, Event::Cleared { .. })).await;
    assert!(
        matches!(&cleared, Event::Cleared { utterance_ids, .. } if utterance_ids == &["a"]),
        "{cleared:?}"
    );
    let done_b = bot
        .wait(
            "b done",
            |e| matches!(e, Event::SpeechDone { utterance_id, .. } if utterance_id == "b"),
        )
        .await;
    assert!(
        matches!(&done_b, Event::SpeechDone { reason: DoneReason::Completed, played_ms, .. } if *played_ms >= 200),
        "{done_b:?}"
    );
    let done_a = done_of(&bot.events, "a");
    assert!(
        matches!(
            done_a[..],
            [Event::SpeechDone {
                reason: DoneReason::Cleared,
                ..
            }]
        ),
        "{done_a:?}"
    );
    // Clearing an utterance that has ended is answered with nothing cleared; an unknown one is an error.
    bot.send(json!({"type": "clear", "utterance_id": "a"})).await;
    let again = bot.wait("cleared again", |e| matches!(e, Event::Cleared { .. })).await;
    assert!(
        matches!(&again, Event::Cleared { utterance_ids, .. } if utterance_ids.is_empty()),
        "{again:?}"
    );
    bot.send(json!({"type": "clear", "utterance_id": "zzz"})).await;
    let err = bot.wait("error", |e| matches!(e, Event::Error { .. })).await;
    assert!(
        matches!(
            err,
            Event::Error {
                code: ErrorCode::UnknownUtterance,
                ..
            }
        ),
        "{err:?}"
    );
    drop(leg_task);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_messages_get_errors_and_the_call_goes_on() {
    let d = start("[voicebot]\nmax_text_chars = 50\nbarge_in_digits = \"#\"\n").await;
    let call = Uuid::new_v4();
    let mut bot = Bot::connect(d.control, call).await;
    bot.wait("session.started", |e| matches!(e, Event::SessionStarted { .. }))
        .await;
    let mut expect = Vec::new();
    bot.send_raw("{not json").await;
    expect.push(ErrorCode::BadMessage);
    bot.send(json!({"type": "dance", "id": 5})).await;
    expect.push(ErrorCode::UnknownType);
    bot.send(json!({"type": "flush", "utterance_id": "nope"})).await;
    expect.push(ErrorCode::UnknownUtterance);
    bot.send(json!({"type": "speak", "utterance_id": "v", "text": "hi", "voice": "missing"}))
        .await;
    expect.push(ErrorCode::UnknownVoice);
    bot.send(json!({"type": "speak", "utterance_id": "l", "text": "hi", "lang": "xx"}))
        .await;
    expect.push(ErrorCode::UnsupportedLanguage);
    bot.send(speak("long", &"a".repeat(51))).await;
    expect.push(ErrorCode::TextTooLong);
    bot.send(json!({"type": "speak", "utterance_id": "o", "text": "hi", "options": {"pitch": 1}}))
        .await;
    expect.push(ErrorCode::BadField);
    bot.send(json!({"type": "speak", "utterance_id": "e", "text": "done 100 ms.", "end": true}))
        .await;
    bot.send(speak("e", "more")).await;
    expect.push(ErrorCode::UtteranceClosed);
    let mut got = Vec::new();
    while got.len() < expect.len() {
        if let Event::Error {
            code, fatal, ref_id, ..
        } = bot.wait("error", |e| matches!(e, Event::Error { .. })).await
        {
            assert!(!fatal);
            if code == ErrorCode::UnknownType {
                assert_eq!(ref_id, Some(json!(5)));
            }
            got.push(code);
        }
    }
    assert_eq!(got, expect);
    // A second controller for the same call is refused with 4409; the first goes on.
    let mut other = Bot::connect(d.control, call).await;
    other.drain().await;
    assert_eq!(other.closed, Some(4409));
    // The call still works: speech, and '#' barges in.
    let leg_task = tokio::spawn(leg(
        d.audiosocket,
        call,
        LegPlan {
            dtmf: vec![(Duration::from_millis(1200), '#')],
            until: Duration::from_secs(3),
            ..Default::default()
        },
        None,
    ));
    bot.send(json!({"type": "speak", "utterance_id": "ok", "text": "Now a slow 3000 ms.", "end": true}))
        .await;
    bot.wait(
        "speech.started ok",
        |e| matches!(e, Event::SpeechStarted { utterance_id, .. } if utterance_id == "ok"),
    )
    .await;
    let done = bot
        .wait(
            "done ok",
            |e| matches!(e, Event::SpeechDone { utterance_id, .. } if utterance_id == "ok"),
        )
        .await;
    assert!(
        matches!(
            done,
            Event::SpeechDone {
                reason: DoneReason::Cleared,
                ..
            }
        ),
        "{done:?}"
    );
    bot.wait("dtmf", |e| matches!(e, Event::Dtmf { digit, .. } if digit == "#"))
        .await;
    drop(leg_task);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_bots_on_a_hundred_calls_all_get_their_speech() {
    let d = start("").await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (control, audiosocket) = (d.control, d.audiosocket);
        tasks.push(tokio::spawn(async move {
            let call = Uuid::new_v4();
            let mut bot = Bot::connect(control, call).await;
            bot.send(
                json!({"type": "speak", "utterance_id": "u", "text": format!("Call {i} is 100 ms."), "end": true}),
            )
            .await;
            let leg_task = tokio::spawn(leg(
                audiosocket,
                call,
                LegPlan {
                    until: Duration::from_secs(30),
                    ..Default::default()
                },
                None,
            ));
            let done = bot.wait("speech.done", |e| matches!(e, Event::SpeechDone { .. })).await;
            bot.send(json!({"type": "hangup"})).await;
            bot.drain().await;
            let leg = leg_task.await.unwrap();
            (done, leg.voiced())
        }));
    }
    for task in tasks {
        let (done, voiced) = task.await.unwrap();
        let Event::SpeechDone { reason, played_ms, .. } = done else {
            unreachable!()
        };
        assert_eq!(reason, DoneReason::Completed);
        assert!(
            played_ms >= 100 && played_ms.abs_diff(voiced as u64 * 20) <= 20,
            "{played_ms} vs {voiced}"
        );
    }
}

/// A bot server that xttsd dials: records the path and token it was called with and the
/// `session.started` it got, says one sentence, and hangs up once it was played.
// tungstenite's handshake callback returns its (large) HTTP response type as the error.
#[allow(clippy::result_large_err)]
async fn bot_server() -> (SocketAddr, tokio::task::JoinHandle<(String, String, Event, Vec<Event>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let seen = Arc::new(Mutex::new((String::new(), String::new())));
        let record = seen.clone();
        let callback = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                             resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            let auth = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            *record.lock().unwrap() = (req.uri().path().to_string(), auth);
            Ok(resp)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback).await.unwrap();
        let mut events = Vec::new();
        let mut started = None;
        while let Some(Ok(message)) = ws.next().await {
            let WsMessage::Text(text) = message else { continue };
            let event: Event = serde_json::from_str(&text).unwrap();
            match &event {
                Event::SessionStarted { .. } => {
                    started = Some(event.clone());
                    let speak = json!({"type": "speak", "utterance_id": "hi", "text": "Hello from the bot, 300 ms.", "end": true});
                    ws.send(WsMessage::Text(speak.to_string().into())).await.unwrap();
                }
                Event::SpeechDone { .. } => {
                    ws.send(WsMessage::Text(json!({"type": "hangup"}).to_string().into()))
                        .await
                        .unwrap();
                }
                _ => {}
            }
            events.push(event);
        }
        let (path, auth) = seen.lock().unwrap().clone();
        (path, auth, started.expect("session.started"), events)
    });
    (addr, task)
}

fn agi_variable<'a>(vars: &'a [(String, String)], name: &str) -> &'a str {
    vars.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dialplan_sends_a_call_to_a_configured_bot() {
    let (bot_addr, bot) = bot_server().await;
    let d = start(&format!(
        "[voicebot.bots.support]\nurl = \"ws://{bot_addr}/calls/{{call_id}}\"\ntoken = \"t0k\"\n"
    ))
    .await;
    let record = xttsd::client::agi::call(&xttsd::client::agi::CallOptions {
        url: format!("agi://{}/voicebot?bot=support&lang=de", d.agi),
        text: String::new(),
        dtmf: String::new(),
        hangup_after: None,
    })
    .await
    .unwrap();
    assert_eq!(
        agi_variable(&record.variables, "XTTS_STATUS"),
        "SUCCESS",
        "{:?}",
        record.variables
    );
    assert!(
        record.commands.iter().any(|c| c.starts_with("EXEC AudioSocket")),
        "{:?}",
        record.commands
    );
    let voiced = record.arrivals.iter().filter(|a| a.voiced).count();
    assert!(voiced >= 14, "the caller heard {voiced} voiced frames");
    let (path, auth, started, events) = timeout(Duration::from_secs(5), bot).await.unwrap().unwrap();
    assert!(
        path.starts_with("/calls/") && Uuid::parse_str(&path[7..]).is_ok(),
        "{path}"
    );
    assert_eq!(auth, "Bearer t0k");
    let Event::SessionStarted { vars, call_id, .. } = started else {
        unreachable!()
    };
    assert_eq!(path[7..], call_id);
    assert_eq!(vars.get("uniqueid").map(String::as_str), Some("1700000000.1"));
    assert!(vars.contains_key("caller_id") && vars.contains_key("dnid"), "{vars:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Hangup { by: HangupBy::Bot, .. })),
        "{events:?}"
    );
    // lang=de from the dialplan became the call's language.
    assert_eq!(*d.probe.langs.lock().unwrap(), ["de"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_bot_fails_the_dialplan_request_with_the_reason() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let d = start(&format!("[voicebot.bots.gone]\nurl = \"ws://{closed}/{{call_id}}\"\n")).await;
    let record = xttsd::client::agi::call(&xttsd::client::agi::CallOptions {
        url: format!("agi://{}/voicebot?bot=gone", d.agi),
        text: String::new(),
        dtmf: String::new(),
        hangup_after: None,
    })
    .await
    .unwrap();
    assert_eq!(agi_variable(&record.variables, "XTTS_STATUS"), "FAILED");
    let error = agi_variable(&record.variables, "XTTS_ERROR");
    assert!(error.contains("bot 'gone'") && error.contains("unreachable"), "{error}");
    assert!(
        !record.commands.iter().any(|c| c.starts_with("EXEC")),
        "{:?}",
        record.commands
    );
    // An unknown bot name is named too.
    let record = xttsd::client::agi::call(&xttsd::client::agi::CallOptions {
        url: format!("agi://{}/voicebot?bot=nobody", d.agi),
        text: String::new(),
        dtmf: String::new(),
        hangup_after: None,
    })
    .await
    .unwrap();
    assert!(agi_variable(&record.variables, "XTTS_ERROR").contains("no bot named 'nobody'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_audiosocket_call_goes_to_the_configured_bot() {
    let (bot_addr, bot) = bot_server().await;
    let d = start(&format!(
        "[voicebot]\naudiosocket_bot = \"front\"\n[voicebot.bots.front]\nurl = \"ws://{bot_addr}/{{call_id}}\"\n"
    ))
    .await;
    let call = Uuid::new_v4();
    let leg = leg(
        d.audiosocket,
        call,
        LegPlan {
            until: Duration::from_secs(5),
            ..Default::default()
        },
        None,
    )
    .await;
    assert!(leg.server_hangup, "the bot hung up after its sentence");
    assert!(leg.voiced() >= 14, "{} voiced frames", leg.voiced());
    let (path, auth, started, _) = timeout(Duration::from_secs(5), bot).await.unwrap().unwrap();
    assert_eq!(path, format!("/{call}"));
    assert_eq!(auth, "");
    assert!(
        matches!(started, Event::SessionStarted { attached: true, .. }),
        "{started:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buffered_text_is_bounded_with_backpressure_before_refusal() {
    let d = start("[voicebot]\nmax_buffered_chars = 200\npause_chars = 100\n").await;
    let call = Uuid::new_v4();
    let mut bot = Bot::connect(d.control, call).await;
    bot.wait("session.started", |e| matches!(e, Event::SessionStarted { .. }))
        .await;
    let piece = "word ".repeat(12); // 60 characters, no sentence end: nothing is released yet
    for _ in 0..4 {
        bot.send(speak("u", &piece)).await;
    }
    let pause = bot.wait("pause", |e| matches!(e, Event::Backpressure { .. })).await;
    assert!(
        matches!(
            pause,
            Event::Backpressure {
                state: xttsd::voicebot::protocol::Pressure::Pause,
                buffered_chars: 120,
                ..
            }
        ),
        "{pause:?}"
    );
    let refused = bot.wait("buffer_full", |e| matches!(e, Event::Error { .. })).await;
    assert!(
        matches!(
            refused,
            Event::Error {
                code: ErrorCode::BufferFull,
                fatal: false,
                ..
            }
        ),
        "{refused:?}"
    );
    bot.send(json!({"type": "end", "utterance_id": "u"})).await;
    let resume = bot.wait("resume", |e| matches!(e, Event::Backpressure { .. })).await;
    assert!(
        matches!(
            resume,
            Event::Backpressure {
                state: xttsd::voicebot::protocol::Pressure::Resume,
                ..
            }
        ),
        "{resume:?}"
    );
    // The refused piece was not added: 180 characters went to the engine.
    let leg_task = tokio::spawn(leg(
        d.audiosocket,
        call,
        LegPlan {
            until: Duration::from_secs(5),
            ..Default::default()
        },
        None,
    ));
    let done = bot.wait("done", |e| matches!(e, Event::SpeechDone { .. })).await;
    let Event::SpeechDone { played_text, .. } = done else {
        unreachable!()
    };
    assert_eq!(played_text, piece.repeat(3));
    drop(leg_task);
}
