//! Voicebots against the real daemon (`xttsd serve`, tiny fixture model) on loopback: the
//! bot of `xttsd call --bot` streams its reply at LLM speed while a leg plays Asterisk.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;
use xttsd::client::audiosocket::{run_leg, LegEnd, LegOptions, LegReport};
use xttsd::client::bot::{connect, drive, BotOptions, BotReport};
use xttsd::voicebot::protocol::{DoneReason, Event, HangupBy};

struct Daemon {
    child: Child,
    audiosocket: String,
    control: String,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_daemon() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let speakers = dir.path().join("speakers");
    std::fs::create_dir_all(&speakers).unwrap();
    std::fs::copy("tests/fixtures/ref_24k.wav", speakers.join("default.wav")).unwrap();
    let (a, g, c) = (free_port(), free_port(), free_port());
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/model");
    let config = format!(
        "[engine]\nmodel_dir = {model:?}\nspeakers_dir = {speakers:?}\ndevice = \"cpu\"\n\
         [audiosocket]\nlisten = \"127.0.0.1:{a}\"\n[agi]\nlisten = \"127.0.0.1:{g}\"\n\
         [control]\nlisten = \"127.0.0.1:{c}\"\n"
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xttsd"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let control = format!("127.0.0.1:{c}");
    let started = Instant::now();
    while TcpStream::connect(&control).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("daemon exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "daemon did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon {
        child,
        audiosocket: format!("127.0.0.1:{a}"),
        control,
        _dir: dir,
    }
}

/// Per received frame: arrival and whether any sample is not zero (silence is exact zeros).
fn frames(leg: &LegReport) -> Vec<(Duration, bool)> {
    let mut at = 0;
    leg.arrivals
        .iter()
        .map(|a| {
            let n = a.bytes / 2;
            let nonzero = leg.samples[at..at + n].iter().any(|&s| s != 0);
            at += n;
            (a.at, nonzero)
        })
        .collect()
}

/// The bot connects first (its reply is made ahead), then the call arrives.
async fn bot_call(d: &Daemon, text: &str, dtmf: &str) -> (BotReport, LegReport) {
    let call = Uuid::new_v4();
    let ws = connect(&format!("ws://{}", d.control), call, None).await.unwrap();
    let opts = BotOptions {
        text: text.into(),
        print: false,
        ..BotOptions::default()
    };
    let bot = tokio::spawn(async move { drive(ws, &opts).await.unwrap() });
    let leg = run_leg(
        &d.audiosocket,
        call,
        LegOptions {
            dtmf: dtmf.into(),
            timeout: Duration::from_secs(60),
            ..LegOptions::default()
        },
    )
    .await
    .unwrap();
    let bot = tokio::time::timeout(Duration::from_secs(10), bot)
        .await
        .unwrap()
        .unwrap();
    (bot, leg)
}

#[test]
fn a_streamed_reply_is_spoken_and_barge_in_stops_it_within_a_frame() {
    let d = start_daemon();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Streamed text, spoken whole; the bot hangs up when done.
        let text = "Hello there, thanks for calling. This is the tiny model, it sounds like noise. Goodbye!";
        let (bot, leg) = bot_call(&d, text, "").await;
        assert_eq!(leg.end, LegEnd::ServerHangup);
        let done = bot.events.iter().find_map(|(_, e)| match e {
            Event::SpeechDone {
                reason,
                played_ms,
                played_text,
                ..
            } => Some((*reason, *played_ms, played_text.clone())),
            _ => None,
        });
        let (reason, played_ms, played_text) = done.expect("speech.done");
        assert_eq!(reason, DoneReason::Completed);
        assert_eq!(played_text, text);
        let heard = frames(&leg).iter().filter(|(_, v)| *v).count() as u64 * 20;
        println!("played_ms {played_ms}, non-silent at Asterisk {heard} ms");
        assert!(
            played_ms.abs_diff(heard) <= 20,
            "played_ms {played_ms} vs {heard} ms heard"
        );
        let ttfa = bot.events.iter().find_map(|(_, e)| match e {
            Event::SpeechStarted { ttfa_ms, .. } => Some(*ttfa_ms),
            _ => None,
        });
        println!("ttfa {ttfa:?} ms");
        assert!(bot
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::Hangup { by: HangupBy::Bot, .. })));

        // The caller presses a key once speech is heard: the bot clears, the call goes silent.
        let (bot, leg) = bot_call(&d, text, "5").await;
        let (_, pressed) = leg.dtmf_sent[0];
        let cleared = bot.events.iter().find_map(|(_, e)| match e {
            Event::SpeechDone { reason, played_ms, .. } => Some((*reason, *played_ms)),
            _ => None,
        });
        let (reason, played_ms) = cleared.expect("speech.done");
        assert_eq!(reason, DoneReason::Cleared);
        let frames = frames(&leg);
        // The key travels leg -> daemon -> bot, the clear bot -> daemon (a few ms on loopback);
        // then at most the frame already on its way carries speech: nothing 60 ms after the press.
        let cleared_event_at = bot
            .events
            .iter()
            .find_map(|(at, e)| matches!(e, Event::Cleared { .. }).then_some(*at))
            .expect("cleared");
        let late = frames
            .iter()
            .filter(|(at, voiced)| *voiced && *at > pressed + Duration::from_millis(60))
            .count();
        println!("pressed at {pressed:?}, cleared seen by the bot at {cleared_event_at:?}, {late} late frames");
        assert_eq!(late, 0, "speech went on after the barge-in");
        let heard = frames.iter().filter(|(_, v)| *v).count() as u64 * 20;
        assert!(
            played_ms.abs_diff(heard) <= 20,
            "played_ms {played_ms} vs {heard} ms heard"
        );
    });
}
