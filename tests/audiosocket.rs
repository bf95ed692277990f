//! The AudioSocket server driven over loopback exactly as Asterisk drives it, with a tone
//! generator standing in for the speech model.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{timeout, Instant};
use uuid::Uuid;

use xttsd::audiosocket::session::{self, SessionEnd};
use xttsd::calls::{FailReason, PlayOutcome, SpeakJob};
use xttsd::client::audiosocket::{run_leg, LegEnd, LegOptions, LegReport};
use xttsd::config::Config;
use xttsd::engine::{Engine, SpeechBackend, SpeechRequest};
use xttsd::serve::{Services, SharedServices};

const ENGINE_RATE: u32 = 24000;
const TONE_AMPLITUDE: f32 = 0.5;

/// What the tone backend saw.
#[derive(Default)]
struct Probe {
    requests: Mutex<Vec<String>>,
    /// Each request's `plays_in` (how far ahead of its playback it was asked for).
    plays_in: Mutex<Vec<Duration>>,
    /// Requests that stopped because `emit` returned false.
    cancelled: AtomicUsize,
    finished: AtomicUsize,
}

/// Speaks a text as a 1 kHz tone. `"<N> ms"` in the text sets the duration (default
/// 300 ms); `"slow"` produces audio at half real time; `"fail"` fails after its first two
/// chunks (250 ms); `"late"` waits 250 ms before its first chunk.
/// Chunks come in varying sizes with a short delay each, as a streaming model delivers them.
struct ToneBackend {
    probe: Arc<Probe>,
}

fn duration_ms(text: &str) -> usize {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1] == "ms")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(300)
}

impl SpeechBackend for ToneBackend {
    fn sample_rate(&self) -> u32 {
        ENGINE_RATE
    }

    fn speak(&mut self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        self.probe.requests.lock().unwrap().push(req.text.clone());
        self.probe.plays_in.lock().unwrap().push(req.options.plays_in);
        let total = duration_ms(&req.text) * ENGINE_RATE as usize / 1000;
        let fail_at = req.text.contains("fail").then_some(ENGINE_RATE as usize / 4);
        let slow = req.text.contains("slow");
        if req.text.contains("late") {
            std::thread::sleep(Duration::from_millis(250));
        }
        let sizes = [1200, 4800, 2400, 7200, 600];
        let mut at = 0;
        let mut i = 0;
        while at < total {
            if fail_at.is_some_and(|f| at >= f) {
                anyhow::bail!("tone generator told to fail");
            }
            let n = sizes[i % sizes.len()].min(total - at);
            let chunk: Vec<f32> = (at..at + n)
                .map(|k| TONE_AMPLITUDE * (2.0 * std::f32::consts::PI * 1000.0 * k as f32 / ENGINE_RATE as f32).sin())
                .collect();
            let chunk_ms = (n * 1000 / ENGINE_RATE as usize) as u64;
            std::thread::sleep(Duration::from_millis(if slow { chunk_ms * 2 } else { chunk_ms / 4 }));
            if !emit(chunk) {
                self.probe.cancelled.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            at += n;
            i += 1;
        }
        self.probe.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn validate(req: &SpeechRequest) -> Result<()> {
    anyhow::ensure!(req.voice != "missing", "unknown voice '{}'", req.voice);
    Ok(())
}

fn test_config(test_call: bool) -> Config {
    let mut config = Config::from_toml(
        r#"
        [audiosocket]
        uuid_timeout_ms = 300
        payload_timeout_ms = 100
        [test_call]
        greeting = "greeting 300 ms"
        "#,
    )
    .unwrap();
    config.test_call.enabled = test_call;
    config
}

fn services(config: Config) -> (SharedServices, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let engine = Engine::start(ToneBackend { probe: probe.clone() }, validate, 8);
    let services = Services::new(config, engine);
    (services, probe)
}

async fn start_server(config: Config) -> (SocketAddr, SharedServices, Arc<Probe>) {
    let (services, probe) = services(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xttsd::audiosocket::serve(listener, services.audiosocket()));
    (addr, services, probe)
}

fn job(text: &str, escape: &str, hangup_after: bool) -> (SpeakJob, oneshot::Receiver<PlayOutcome>) {
    let (tx, rx) = oneshot::channel();
    let job = SpeakJob {
        request: SpeechRequest {
            text: text.into(),
            lang: "en".into(),
            voice: "default".into(),
            options: Default::default(),
        },
        escape_digits: escape.into(),
        hangup_after,
        done: Some(tx),
    };
    (job, rx)
}

async fn leg(addr: SocketAddr, uuid: Uuid, opts: LegOptions) -> LegReport {
    timeout(Duration::from_secs(10), run_leg(&addr.to_string(), uuid, opts))
        .await
        .expect("call leg did not finish")
        .expect("call leg failed")
}

fn hang_up_after(ms: u64) -> LegOptions {
    LegOptions {
        hangup_after: Some(Duration::from_millis(ms)),
        timeout: Duration::from_secs(8),
        ..LegOptions::default()
    }
}

async fn outcome(rx: oneshot::Receiver<PlayOutcome>) -> PlayOutcome {
    timeout(Duration::from_secs(5), rx)
        .await
        .expect("no outcome reported")
        .expect("job dropped without an outcome")
}

/// Waits (bounded) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn uuid_message(uuid: Uuid) -> Vec<u8> {
    let mut m = vec![0x01, 0x00, 0x10];
    m.extend_from_slice(uuid.as_bytes());
    m
}

/// Reads and discards until the server closes; returns bytes read, or panics after 2 s.
async fn read_until_closed(stream: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match timeout(deadline - Instant::now(), stream.read(&mut buf)).await {
            Err(_) => panic!("server did not close the connection"),
            Ok(Ok(0)) | Ok(Err(_)) => return total,
            Ok(Ok(n)) => total += n,
        }
    }
}

/// Level of a 1 kHz component (Goertzel), as an amplitude.
fn tone_amplitude(samples: &[i16], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate as f64;
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s = x as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    2.0 * power.sqrt() / samples.len() as f64
}

fn voiced_samples(leg: &LegReport) -> Vec<i16> {
    let mut out = Vec::new();
    let mut at = 0;
    for a in &leg.arrivals {
        let n = a.bytes / 2;
        if a.voiced {
            out.extend_from_slice(&leg.samples[at..at + n]);
        }
        at += n;
    }
    out
}

/// Loopback pacing: frames on a 20 ms beat without drift, never more than two frames ahead
/// of the clock, and no gap that would make Asterisk's RTP side start a new talk spurt
/// (80 ms). Client and server share a small test host that is often busy (load ≫ cores),
/// so frames knocked off the beat by scheduling are tolerated as long as the absolute
/// clock catches up; a sender that sleeps in a loop drifts, one that bursts runs ahead,
/// and one that stops sending when idle leaves gaps: each fails.
fn assert_paced(leg: &LegReport) {
    let r = &leg.report;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let intervals = leg.arrivals.len().saturating_sub(1);
    let off_beat = leg
        .arrivals
        .windows(2)
        .filter(|w| (ms(w[1].at - w[0].at) - ms(w[0].media())).abs() > 5.0)
        .count();
    let (first, last) = (&leg.arrivals[0], &leg.arrivals[intervals]);
    let media: f64 = leg.arrivals[..intervals].iter().map(|a| ms(a.media())).sum();
    let drift = ms(last.at - first.at) - media;
    assert!(
        r.jitter_p50_ms < 3.0,
        "pacing jitter p50 {:.2} ms\n{r}",
        r.jitter_p50_ms
    );
    assert!(
        off_beat <= 2.max(intervals / 5),
        "{off_beat} of {intervals} frames more than 5 ms off the 20 ms beat\n{r}"
    );
    assert!(drift.abs() < 25.0, "clock drifted by {drift:.1} ms\n{r}");
    assert!(
        r.max_lead_ms <= 40.0 + 5.0,
        "sender ran {:.1} ms ahead\n{r}",
        r.max_lead_ms
    );
    assert!(r.gaps_over_40ms <= 1 && r.longest_gap_ms < 80.0, "gaps\n{r}");
}

/// Calls are timed in real time: run them one test at a time so the tests do not starve
/// each other of the CPU.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn test_call_at_8k_greets_with_paced_320_byte_frames() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, _services, probe) = start_server(test_config(true)).await;
    let leg = leg(addr, Uuid::new_v4(), hang_up_after(1200)).await;
    let r = &leg.report;
    assert_eq!(leg.end, LegEnd::CallerHangup);
    assert_eq!(r.frame_sizes.keys().copied().collect::<Vec<_>>(), vec![320], "{r}");
    assert_eq!(r.rates.iter().copied().collect::<Vec<_>>(), vec![8000]);
    assert!((55..=62).contains(&r.frames), "{} frames in 1.2 s\n{r}", r.frames);
    // 300 ms of tone: 15 frames (the last one faded).
    assert!((14..=15).contains(&r.voiced_frames), "{r}");
    assert!(r.first_voice_ms.unwrap() < 300.0, "{r}");
    assert_paced(&leg);
    // The tone arrives at the configured peak level: 0.5 × −3 dBFS.
    let voiced = voiced_samples(&leg);
    let middle = &voiced[400..voiced.len() - 400];
    let amp = tone_amplitude(middle, 8000, 1000.0);
    let expect = TONE_AMPLITUDE as f64 * 10f64.powf(-3.0 / 20.0) * 32767.0;
    assert!(
        (amp / expect - 1.0).abs() < 0.03,
        "1 kHz amplitude {amp:.0}, expected {expect:.0}"
    );
    assert_eq!(probe.requests.lock().unwrap().as_slice(), ["greeting 300 ms"]);
}

#[tokio::test]
async fn call_at_16k_is_answered_at_16k() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, _services, _probe) = start_server(test_config(true)).await;
    let opts = LegOptions {
        rate: 16000,
        ..hang_up_after(800)
    };
    let leg = leg(addr, Uuid::new_v4(), opts).await;
    let speech: Vec<_> = leg.arrivals.iter().filter(|a| a.voiced).collect();
    assert!(speech.len() >= 14, "{}", leg.report);
    assert!(
        speech.iter().all(|a| a.bytes == 640 && a.rate == 16000),
        "{}",
        leg.report
    );
    // Once the caller's 16 kHz audio has been seen, every frame (silence too) is 16 kHz.
    let late: Vec<_> = leg
        .arrivals
        .iter()
        .filter(|a| a.at > Duration::from_millis(100))
        .collect();
    assert!(late.iter().all(|a| a.bytes == 640 && a.rate == 16000), "{}", leg.report);
    assert_paced(&leg);
}

#[tokio::test]
async fn idle_call_gets_silence_every_20ms() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, _services, probe) = start_server(test_config(false)).await;
    let opts = LegOptions {
        send_audio: false, // a silent caller: Asterisk sends nothing at all
        ..hang_up_after(1000)
    };
    let leg = leg(addr, Uuid::new_v4(), opts).await;
    let r = &leg.report;
    assert!((48..=52).contains(&r.frames), "{r}");
    assert_eq!(r.voiced_frames, 0);
    assert!(leg.samples.iter().all(|&s| s == 0));
    assert!(r.first_frame_ms.unwrap() < 50.0, "{r}");
    assert_paced(&leg);
    assert!(probe.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn test_call_reads_digits_back() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, _services, probe) = start_server(test_config(true)).await;
    let opts = LegOptions {
        dtmf: "1#".into(),
        dtmf_gap: Duration::from_millis(100),
        ..hang_up_after(2000)
    };
    let leg = leg(addr, Uuid::new_v4(), opts).await;
    assert_eq!(leg.dtmf_sent.iter().map(|d| d.0).collect::<String>(), "1#");
    assert_eq!(
        probe.requests.lock().unwrap().as_slice(),
        ["greeting 300 ms", "You pressed 1.", "You pressed pound."]
    );
    // Greeting plus two read-backs of 300 ms each: 45 frames of speech.
    assert!((43..=45).contains(&leg.report.voiced_frames), "{}", leg.report);
    assert_paced(&leg);
}

#[tokio::test]
async fn escape_digit_interrupts_and_cancels_synthesis() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, services, probe) = start_server(test_config(true)).await;
    let uuid = Uuid::new_v4();
    let (job, done) = job("long 3000 ms", "5#", false);
    services.calls.enqueue(uuid, job).unwrap();
    let opts = LegOptions {
        dtmf: "#".into(),
        ..hang_up_after(1000)
    };
    let leg = leg(addr, uuid, opts).await;
    let outcome = outcome(done).await;
    assert_eq!(outcome.status, "INTERRUPTED");
    assert_eq!(outcome.digit, Some('#'));
    assert!(outcome.played_ms < 300, "{outcome:?}");
    let pressed = leg.dtmf_sent[0].1;
    let last_voice = leg.arrivals.iter().filter(|a| a.voiced).map(|a| a.at).max().unwrap();
    assert!(
        last_voice <= pressed + Duration::from_millis(50),
        "speech went on {:?} after the digit",
        last_voice - pressed
    );
    // The call goes on with silence (no hangup_after), and the engine was told to stop.
    assert_eq!(leg.end, LegEnd::CallerHangup);
    assert!(leg.report.frames >= 45, "{}", leg.report);
    eventually("synthesis cancelled", || probe.cancelled.load(Ordering::SeqCst) == 1).await;
    assert_eq!(probe.finished.load(Ordering::SeqCst), 0);
    // Not the test call: no greeting, no read-back.
    assert_eq!(probe.requests.lock().unwrap().as_slice(), ["long 3000 ms"]);
}

/// Speech queued behind other speech is synthesized while the first still plays, so the two
/// follow each other without silence even when the second is slow to start.
#[tokio::test]
async fn queued_speech_follows_without_a_gap() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, services, probe) = start_server(test_config(false)).await;
    let uuid = Uuid::new_v4();
    let (first, first_done) = job("first 600 ms", "", false);
    let (second, second_done) = job("second late 400 ms", "", true);
    services.calls.enqueue(uuid, first).unwrap();
    services.calls.enqueue(uuid, second).unwrap();
    let leg = leg(addr, uuid, LegOptions::default()).await;
    assert_eq!(outcome(first_done).await.status, "SUCCESS");
    assert_eq!(outcome(second_done).await.status, "SUCCESS");
    assert_eq!(leg.end, LegEnd::ServerHangup);
    let voiced: Vec<usize> = (0..leg.arrivals.len()).filter(|&i| leg.arrivals[i].voiced).collect();
    // From 200 ms into the first speech (its own start may stutter: the tone backend's first
    // chunk is short) to the end of the second, every frame is speech.
    let (from, end) = (voiced[0] + 10, *voiced.last().unwrap());
    let silent: Vec<usize> = (from..=end).filter(|&i| !leg.arrivals[i].voiced).collect();
    assert!(
        silent.is_empty(),
        "silent frames {silent:?} between the speeches\n{}",
        leg.report
    );
    // 600 ms + 400 ms of speech, 20 ms per frame.
    assert!((48..=52).contains(&voiced.len()), "{} voiced frames", voiced.len());
    assert_eq!(
        probe.requests.lock().unwrap().as_slice(),
        ["first 600 ms", "second late 400 ms"]
    );
    // The second was asked for while the first still had audio to play, and said how much.
    let plays_in = probe.plays_in.lock().unwrap().clone();
    assert_eq!(plays_in[0], Duration::ZERO);
    assert!(
        plays_in[1] >= Duration::from_millis(200) && plays_in[1] <= Duration::from_millis(600),
        "{plays_in:?}"
    );
}

#[tokio::test]
async fn caller_hangup_mid_speech_cancels_synthesis() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, services, probe) = start_server(test_config(true)).await;
    let uuid = Uuid::new_v4();
    let (job, done) = job("long 3000 ms", "", false);
    services.calls.enqueue(uuid, job).unwrap();
    let leg = leg(addr, uuid, hang_up_after(300)).await;
    assert!(leg.report.voiced_frames > 5, "{}", leg.report);
    let outcome = outcome(done).await;
    assert_eq!(outcome.status, "HANGUP");
    assert!(outcome.played_ms > 100 && outcome.played_ms <= 320, "{outcome:?}");
    eventually("synthesis cancelled", || probe.cancelled.load(Ordering::SeqCst) == 1).await;
    eventually("call detached", || !services.calls.is_live(&uuid)).await;
}

#[tokio::test]
async fn hangup_after_job_ends_the_session() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, services, _probe) = start_server(test_config(true)).await;
    let uuid = Uuid::new_v4();
    let (first, first_done) = job("first 200 ms", "", false);
    let (last, last_done) = job("last 400 ms", "", true);
    services.calls.enqueue(uuid, first).unwrap();
    services.calls.enqueue(uuid, last).unwrap();
    let leg = leg(addr, uuid, hang_up_after(5000)).await;
    assert_eq!(leg.end, LegEnd::ServerHangup);
    assert_eq!(
        outcome(first_done).await,
        PlayOutcome {
            status: "SUCCESS",
            digit: None,
            played_ms: 200,
            failure: None,
            engine: Some("xtts"),
        }
    );
    assert_eq!(
        outcome(last_done).await,
        PlayOutcome {
            status: "SUCCESS",
            digit: None,
            played_ms: 400,
            failure: None,
            engine: Some("xtts"),
        }
    );
    assert_eq!(leg.report.voiced_frames, 30, "{}", leg.report);
    assert!(leg.report.duration_ms < 1500.0, "{}", leg.report);
    assert_paced(&leg);
}

#[tokio::test]
async fn failed_and_refused_speech_is_reported_and_the_call_goes_on() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, services, _probe) = start_server(test_config(true)).await;
    let uuid = Uuid::new_v4();
    let (refused, refused_done) = job("hello", "", false);
    let refused = SpeakJob {
        request: SpeechRequest {
            voice: "missing".into(),
            ..refused.request
        },
        ..refused
    };
    let (failing, failing_done) = job("fail 1000 ms", "", false);
    services.calls.enqueue(uuid, refused).unwrap();
    services.calls.enqueue(uuid, failing).unwrap();
    let leg = leg(addr, uuid, hang_up_after(1000)).await;
    assert_eq!(outcome(refused_done).await.status, "FAILED");
    let failed = outcome(failing_done).await;
    assert_eq!(failed.status, "FAILED");
    // 250 ms were delivered before the failure: 12.5 frames, the last padded.
    assert_eq!(failed.played_ms, 260, "{failed:?}");
    assert_eq!(leg.end, LegEnd::CallerHangup);
    assert!(leg.report.frames >= 45, "{}", leg.report);
    assert_paced(&leg);
}

#[tokio::test]
async fn missing_or_bad_uuid_closes_the_connection() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, _services, probe) = start_server(test_config(true)).await;
    // Audio before any UUID.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x10, 0x01, 0x40]).await.unwrap();
    s.write_all(&[0u8; 320]).await.unwrap();
    assert_eq!(read_until_closed(&mut s).await, 0);
    // A UUID message with 15 bytes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut m = vec![0x01, 0x00, 0x0f];
    m.extend([0xab; 15]);
    s.write_all(&m).await.unwrap();
    assert_eq!(read_until_closed(&mut s).await, 0);
    // Nothing at all: closed after the UUID timeout (300 ms here).
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_until_closed(&mut s).await, 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    assert!(
        probe.requests.lock().unwrap().is_empty(),
        "no call may start without a UUID"
    );
}

#[tokio::test]
async fn bad_frames_close_only_their_own_call() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, _services, _probe) = start_server(test_config(false)).await;
    let good = tokio::spawn(async move { leg(addr, Uuid::new_v4(), hang_up_after(1500)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let bad_inputs: [(&str, Vec<u8>); 6] = [
        ("zero-length audio", vec![0x10, 0x00, 0x00]),
        ("unknown kind", vec![0x05, 0x00, 0x02, 0, 0]),
        ("odd length", vec![0x10, 0x00, 0x03, 0, 0, 0]),
        ("oversized", vec![0x10, 0xff, 0xfe]),
        ("second UUID", uuid_message(Uuid::new_v4())),
        ("DTMF that is no digit", vec![0x03, 0x00, 0x01, b'x']),
    ];
    for (what, bytes) in bad_inputs {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&uuid_message(Uuid::new_v4())).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let started = Instant::now();
        read_until_closed(&mut s).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{what}: closed too late"
        );
    }
    // Truncated: the caller's side ends in the middle of a frame.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&uuid_message(Uuid::new_v4())).await.unwrap();
    s.write_all(&[0x10, 0x01, 0x40]).await.unwrap();
    s.write_all(&[0u8; 100]).await.unwrap();
    s.shutdown().await.unwrap();
    read_until_closed(&mut s).await;
    // Slow sender: header and part of the payload, then a stall past the payload timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&uuid_message(Uuid::new_v4())).await.unwrap();
    s.write_all(&[0x10, 0x01, 0x40, 0, 0, 0, 0]).await.unwrap();
    let started = Instant::now();
    read_until_closed(&mut s).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(90) && waited < Duration::from_millis(600),
        "{waited:?}"
    );

    let good = timeout(Duration::from_secs(5), good).await.unwrap().unwrap();
    assert_eq!(good.end, LegEnd::CallerHangup);
    assert!((72..=77).contains(&good.report.frames), "{}", good.report);
    assert_paced(&good);
}

#[tokio::test]
async fn slow_engine_underruns_are_filled_with_silence_and_counted() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (services, _probe) = services(test_config(false));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let uuid = Uuid::new_v4();
    let (job, done) = job("slow 400 ms", "", true);
    services.calls.enqueue(uuid, job).unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        session::run(stream, services.audiosocket()).await
    });
    let leg = leg(addr, uuid, hang_up_after(5000)).await;
    let report = timeout(Duration::from_secs(2), server).await.unwrap().unwrap();
    assert_eq!(report.uuid, Some(uuid));
    assert_eq!(report.end, SessionEnd::ServerHangup);
    assert!(report.stats.underruns > 0, "{:?}", report.stats);
    assert_eq!(report.stats.speech_frames, 20);
    assert_eq!(
        report.stats.frames,
        report.stats.speech_frames + report.stats.silence_frames
    );
    assert_eq!(outcome(done).await.status, "SUCCESS");
    // Frames never stopped coming while the engine lagged.
    assert_paced(&leg);
    assert_eq!(leg.end, LegEnd::ServerHangup);
}

#[tokio::test]
async fn calls_are_not_test_calls_unless_configured() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // The shipped default: a call with nothing queued hears silence, and the engine is idle.
    let (addr, _services, probe) = start_server(Config::default()).await;
    let quiet = leg(addr, Uuid::new_v4(), hang_up_after(600)).await;
    assert_eq!(quiet.report.voiced_frames, 0, "{}", quiet.report);
    assert!(probe.requests.lock().unwrap().is_empty());
    // With a UUID prefix configured, only matching calls are test calls.
    let mut config = test_config(true);
    config.test_call.uuid_prefix = "7e57".into();
    let (addr, _services, probe) = start_server(config).await;
    let other = Uuid::parse_str("12345678-0000-4000-8000-000000000000").unwrap();
    leg(addr, other, hang_up_after(400)).await;
    assert!(probe.requests.lock().unwrap().is_empty());
    let test = Uuid::parse_str("7e570000-0000-4000-8000-000000000000").unwrap();
    let greeted = leg(addr, test, hang_up_after(800)).await;
    assert!(greeted.report.voiced_frames > 0, "{}", greeted.report);
}

#[tokio::test]
async fn speech_queued_for_a_test_call_ends_the_test_call() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut config = test_config(true);
    config.test_call.greeting = "greeting 3000 ms".into();
    let (addr, services, probe) = start_server(config).await;
    let uuid = Uuid::new_v4();
    let call = tokio::spawn(async move {
        let opts = LegOptions {
            dtmf: "12".into(),
            ..hang_up_after(2000)
        };
        leg(addr, uuid, opts).await
    });
    eventually("greeting started", || probe.requests.lock().unwrap().len() == 1).await;
    let (real, real_done) = job("real 300 ms", "", false);
    services.calls.enqueue(uuid, real).unwrap();
    assert_eq!(outcome(real_done).await.status, "SUCCESS");
    let leg = call.await.unwrap();
    let said = probe.requests.lock().unwrap().clone();
    assert_eq!(
        said,
        vec!["greeting 3000 ms", "real 300 ms"],
        "no digits read back after real speech"
    );
    // The greeting was cut off: 300 ms of real speech and less than 3 s in all.
    assert!(leg.report.voiced_frames < 100, "{}", leg.report);
}

#[tokio::test]
async fn a_second_connection_with_the_same_uuid_is_refused() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, services, _probe) = start_server(test_config(false)).await;
    let uuid = Uuid::new_v4();
    let first = tokio::spawn(async move { leg(addr, uuid, hang_up_after(1500)).await });
    eventually("first call connected", || services.calls.is_live(&uuid)).await;
    // The duplicate gets a hangup message and is closed at once.
    let mut dup = TcpStream::connect(addr).await.unwrap();
    dup.write_all(&uuid_message(uuid)).await.unwrap();
    let mut head = [0u8; 3];
    timeout(Duration::from_secs(2), dup.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head, [0, 0, 0], "a hangup message");
    read_until_closed(&mut dup).await;
    // Speech queued afterwards still reaches the first call, which stays registered.
    let (speech, done) = job("for the first 300 ms", "", false);
    services.calls.enqueue(uuid, speech).unwrap();
    assert_eq!(outcome(done).await.status, "SUCCESS");
    assert!(services.calls.is_live(&uuid));
    let first = first.await.unwrap();
    assert_eq!(first.report.voiced_frames, 15, "{}", first.report);
    eventually("first call detached", || !services.calls.is_live(&uuid)).await;
}

#[tokio::test]
async fn drain_lets_speech_finish_then_hangs_up() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, services, _probe) = start_server(test_config(false)).await;
    let (speaking, idle) = (Uuid::new_v4(), Uuid::new_v4());
    let (speech, done) = job("speech 600 ms", "", false);
    services.calls.enqueue(speaking, speech).unwrap();
    let a = tokio::spawn(async move { leg(addr, speaking, hang_up_after(5000)).await });
    let b = tokio::spawn(async move { leg(addr, idle, hang_up_after(5000)).await });
    eventually("both connected", || services.calls.live_count() == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    services.shutdown.begin(Duration::from_secs(5));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(
        outcome(done).await.status,
        "SUCCESS",
        "the speech under way was said whole"
    );
    assert_eq!(a.end, LegEnd::ServerHangup);
    assert_eq!(a.report.voiced_frames, 30, "{}", a.report);
    assert_eq!(b.end, LegEnd::ServerHangup, "an idle call is hung up at once");
    assert!(started.elapsed() < Duration::from_secs(2));
    timeout(Duration::from_secs(2), services.shutdown.wait()).await.unwrap();
    // Nothing new is accepted.
    assert!(timeout(Duration::from_millis(500), async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(&uuid_message(Uuid::new_v4())).await.ok()?;
        let mut b = [0u8; 1];
        s.read(&mut b).await.ok().filter(|&n| n > 0)
    })
    .await
    .map_or(true, |read| read.is_none()));
}

#[tokio::test]
async fn drain_deadline_ends_long_speech_with_shutdown() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (addr, services, _probe) = start_server(test_config(false)).await;
    let uuid = Uuid::new_v4();
    let (speech, done) = job("long 4000 ms", "", true);
    let (next, next_done) = job("next 300 ms", "", true);
    services.calls.enqueue(uuid, speech).unwrap();
    services.calls.enqueue(uuid, next).unwrap();
    let call = tokio::spawn(async move { leg(addr, uuid, hang_up_after(8000)).await });
    eventually("connected", || services.calls.is_live(&uuid)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    services.shutdown.begin(Duration::from_millis(300));
    let leg = call.await.unwrap();
    assert_eq!(leg.end, LegEnd::ServerHangup);
    let cut = outcome(done).await;
    assert_eq!(cut.status, "FAILED");
    assert_eq!(cut.failure.as_ref().map(|f| f.0), Some(FailReason::Shutdown), "{cut:?}");
    assert!(cut.played_ms > 0 && cut.played_ms < 2000, "{cut:?}");
    let never = outcome(next_done).await;
    assert_eq!(never.failure.map(|f| f.0), Some(FailReason::Shutdown));
    assert!(leg.report.duration_ms < 2000.0, "{}", leg.report);
}
