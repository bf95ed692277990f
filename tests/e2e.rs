//! End to end: the real daemon (`xttsd serve`) on loopback with the tiny fixture model, driven
//! as Asterisk drives it, over AudioSocket and FastAGI (stream and file mode) and the control API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;
use xttsd::client::agi::{call, CallOptions};
use xttsd::client::audiosocket::{run_leg, LegEnd, LegOptions};

/// One daemon at a time: each loads a model and paces calls in real time, and on a small
/// machine several at once would measure the machine rather than the daemon.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Daemon {
    _turn: std::sync::MutexGuard<'static, ()>,
    child: Child,
    audiosocket: String,
    agi: String,
    control: String,
    spool: PathBuf,
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
    start_daemon_with("")
}

/// The daemon with `extra` appended to its config file (whole sections).
fn start_daemon_with(extra: &str) -> Daemon {
    start_daemon_env(extra, &[])
}

/// The daemon with `extra` in its config file and `env` set in its environment.
fn start_daemon_env(extra: &str, env: &[(&str, &str)]) -> Daemon {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let speakers = dir.path().join("speakers");
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&speakers).unwrap();
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::copy("tests/fixtures/ref_24k.wav", speakers.join("default.wav")).unwrap();
    let (a, g, c) = (free_port(), free_port(), free_port());
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/model");
    let config = format!(
        "[engine]\nmodel_dir = {model:?}\nspeakers_dir = {speakers:?}\ndevice = \"cpu\"\n\
         [audiosocket]\nlisten = \"127.0.0.1:{a}\"\n\
         [agi]\nlisten = \"127.0.0.1:{g}\"\naudiosocket_address = \"127.0.0.1:{a}\"\nspool_dir = {spool:?}\n\
         [control]\nlisten = \"127.0.0.1:{c}\"\n\
         [test_call]\nenabled = true\ngreeting = \"Hello, press a key.\"\n\
         [prompts]\ncache_dir = \"\"\n{extra}"
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xttsd"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let audiosocket = format!("127.0.0.1:{a}");
    let started = Instant::now();
    while TcpStream::connect(&audiosocket).is_err() {
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
        _turn: turn,
        child,
        audiosocket,
        agi: format!("127.0.0.1:{g}"),
        control: format!("127.0.0.1:{c}"),
        spool,
        _dir: dir,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// POSTs JSON to the control API and returns (status, body).
fn post(addr: &str, path: &str, json: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    // Audio bodies are binary: read bytes, keep them as text only for the assertions.
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    (code, String::from_utf8_lossy(&rest).into_owned())
}

fn var<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[test]
fn audiosocket_test_call_speaks_and_is_paced() {
    let daemon = start_daemon();
    let report = runtime()
        .block_on(run_leg(
            &daemon.audiosocket,
            Uuid::new_v4(),
            LegOptions {
                dtmf: "1".into(),
                hangup_after: Some(Duration::from_secs(8)),
                timeout: Duration::from_secs(30),
                ..LegOptions::default()
            },
        ))
        .unwrap();
    let r = &report.report;
    println!("test call: {r}");
    assert_eq!(report.end, LegEnd::CallerHangup, "the daemon kept the call up");
    assert_eq!(
        r.frame_sizes.keys().copied().collect::<Vec<_>>(),
        vec![320],
        "20 ms slin frames only"
    );
    assert!(
        r.voiced_frames > 10,
        "the greeting was heard ({} voiced frames)",
        r.voiced_frames
    );
    // Silence fill: frames every 20 ms for the whole call, speech or not.
    assert!(
        r.frames as f64 >= r.duration_ms / 20.0 * 0.9,
        "{} frames in {} ms",
        r.frames,
        r.duration_ms
    );
    assert!(r.longest_gap_ms < 80.0, "gap of {} ms", r.longest_gap_ms);
    assert!(r.max_lead_ms <= 45.0, "ran {} ms ahead of real time", r.max_lead_ms);
}

#[test]
fn control_api_speech_plays_on_its_call() {
    let daemon = start_daemon();
    let uuid = Uuid::new_v4();
    let (code, body) = post(
        &daemon.control,
        &format!("/v1/calls/{uuid}/say"),
        r#"{"text": "Your order has shipped."}"#,
    );
    assert_eq!(code, 202, "{body}");
    let (code, body) = post(
        &daemon.control,
        &format!("/v1/calls/{uuid}/say"),
        r#"{"text": "Hi", "lang": "xx"}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("lang"), "{body}");
    let report = runtime()
        .block_on(run_leg(
            &daemon.audiosocket,
            uuid,
            LegOptions {
                hangup_after: Some(Duration::from_secs(6)),
                timeout: Duration::from_secs(30),
                ..LegOptions::default()
            },
        ))
        .unwrap();
    println!("queued speech: {}", report.report);
    // Sampling decides how long the random-weight model speaks; any speech proves delivery.
    assert!(report.report.voiced_frames > 0);
    assert!(report.report.first_voice_ms.is_some());
}

#[test]
fn agi_stream_mode_plays_through_audiosocket() {
    let daemon = start_daemon();
    let record = runtime()
        .block_on(call(&CallOptions {
            // Seeded: the random-weight model's length is the sampler's draw, and an unseeded
            // draw sometimes stops before 200 ms.
            url: format!("agi://{}/say?voice=default&lang=en&seed=1", daemon.agi),
            text: "Welcome to the service.".into(),
            dtmf: String::new(),
            hangup_after: None,
        }))
        .unwrap();
    println!("agi stream: commands {:?} vars {:?}", record.commands, record.variables);
    assert!(
        record.commands.iter().any(|c| c.starts_with("EXEC AudioSocket ")),
        "{:?}",
        record.commands
    );
    assert_eq!(var(&record.variables, "XTTS_STATUS"), Some("SUCCESS"));
    let ms: u64 = var(&record.variables, "XTTS_DURATION").unwrap().parse().unwrap();
    assert!(ms > 200, "played {ms} ms");
    assert!(record.audio.iter().any(|&s| s.abs() > 100), "speech heard");
}

#[test]
fn agi_file_mode_spools_plays_and_cleans_up() {
    let daemon = start_daemon();
    let record = runtime()
        .block_on(call(&CallOptions {
            url: format!("agi://{}/say?voice=default&lang=de&mode=file", daemon.agi),
            text: "Guten Tag. Bitte warten.".into(),
            dtmf: String::new(),
            hangup_after: None,
        }))
        .unwrap();
    println!("agi file: commands {:?} vars {:?}", record.commands, record.variables);
    let plays = record.commands.iter().filter(|c| c.starts_with("STREAM FILE ")).count();
    assert_eq!(plays, 2, "one file per sentence: {:?}", record.commands);
    assert_eq!(var(&record.variables, "XTTS_STATUS"), Some("SUCCESS"));
    assert!(record.audio.iter().any(|&s| s.abs() > 100), "speech heard");
    let left: Vec<_> = std::fs::read_dir(&daemon.spool).unwrap().collect();
    assert!(left.is_empty(), "spool files left behind: {left:?}");
}

#[test]
fn caller_hangup_mid_speech_frees_the_engine_and_bad_frames_end_only_that_call() {
    let daemon = start_daemon();
    let rt = runtime();
    // A long utterance, hung up on after half a second.
    let uuid = Uuid::new_v4();
    let long = "This is a long announcement. ".repeat(6);
    let (code, _) = post(
        &daemon.control,
        &format!("/v1/calls/{uuid}/say"),
        &format!(r#"{{"text": "{long}"}}"#),
    );
    assert_eq!(code, 202);
    let first = rt
        .block_on(run_leg(
            &daemon.audiosocket,
            uuid,
            LegOptions {
                hangup_after: Some(Duration::from_millis(500)),
                ..LegOptions::default()
            },
        ))
        .unwrap();
    assert_eq!(first.end, LegEnd::CallerHangup);

    // A caller sending a zero-length audio message is dropped...
    let mut bad = TcpStream::connect(&daemon.audiosocket).unwrap();
    let mut msg = vec![0x01, 0x00, 0x10];
    msg.extend_from_slice(Uuid::new_v4().as_bytes());
    msg.extend_from_slice(&[0x10, 0x00, 0x00]);
    bad.write_all(&msg).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    let closed = bad.read_to_end(&mut sink).is_ok();
    assert!(closed, "the daemon closed the bad call");

    // ...while the next call is served at once: the hung-up synthesis no longer holds the engine.
    let uuid = Uuid::new_v4();
    let (code, _) = post(
        &daemon.control,
        &format!("/v1/calls/{uuid}/say"),
        r#"{"text": "Next caller."}"#,
    );
    assert_eq!(code, 202);
    let next = rt
        .block_on(run_leg(
            &daemon.audiosocket,
            uuid,
            LegOptions {
                hangup_after: Some(Duration::from_secs(5)),
                ..LegOptions::default()
            },
        ))
        .unwrap();
    println!("after hangup: {}", next.report);
    let first_voice = next.report.first_voice_ms.expect("the next call was spoken to");
    assert!(
        first_voice < 4000.0,
        "first audio after {first_voice} ms: the cancelled request still ran"
    );
}

/// SIGTERM with calls up: the idle call is hung up at once with a hangup message, the AGI
/// request speaking gets until the drain deadline and then a result the dialplan can read
/// (never an empty XTTS_STATUS), nothing new is accepted, and the process exits 0.
#[test]
fn sigterm_drains_calls_and_exits_cleanly() {
    let mut daemon = start_daemon_with("[daemon]\ndrain_timeout_ms = 1500\n");
    let rt = runtime();
    let long = "This is a very long announcement that keeps going for quite a while. ".repeat(8);
    let opts = CallOptions {
        url: format!("agi://{}/say?voice=default&lang=en", daemon.agi),
        text: long,
        dtmf: String::new(),
        hangup_after: None,
    };
    let agi = rt.spawn(async move { call(&opts).await });
    let audiosocket = daemon.audiosocket.clone();
    let idle = rt.spawn(async move {
        let uuid = Uuid::parse_str("00000000-0000-4000-8000-000000000001").unwrap();
        let opts = LegOptions {
            hangup_after: Some(Duration::from_secs(20)),
            timeout: Duration::from_secs(30),
            ..LegOptions::default()
        };
        run_leg(&audiosocket, uuid, opts).await
    });
    std::thread::sleep(Duration::from_millis(1500));
    let asked = Instant::now();
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) };
    let idle = rt.block_on(idle).unwrap().unwrap();
    println!("idle call: {:?} after {:?}", idle.end, asked.elapsed());
    // The test line was speaking its greeting or idle: either way it ends with a hangup message.
    assert_eq!(idle.end, LegEnd::ServerHangup);
    let record = rt.block_on(agi).unwrap().unwrap();
    println!("agi: vars {:?} after {:?}", record.variables, asked.elapsed());
    let status = var(&record.variables, "XTTS_STATUS").unwrap_or("");
    match status {
        "SUCCESS" => {}
        "FAILED" => {
            assert_eq!(
                var(&record.variables, "XTTS_REASON"),
                Some("SHUTDOWN"),
                "{:?}",
                record.variables
            );
            assert_eq!(var(&record.variables, "XTTS_ERROR"), Some("shutdown"));
        }
        other => panic!("XTTS_STATUS {other:?}: {:?}", record.variables),
    }
    assert!(
        asked.elapsed() < Duration::from_secs(6),
        "the drain deadline was not kept"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit after the drain");
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("exit: {exit:?} after {:?}", asked.elapsed());
    assert!(TcpStream::connect(&daemon.agi).is_err(), "still accepting after exit");
    assert!(exit.success(), "exit status {exit:?}");
}

/// A dead engine thread (a vocoder panic, injected) takes the daemon down with a non-zero exit,
/// so systemd restarts it, instead of leaving a process that answers and fails every call; the
/// call that was speaking ends with a hangup message.
#[test]
fn a_dead_engine_thread_exits_the_daemon_non_zero() {
    let mut daemon = start_daemon_env(
        "[daemon]\ndrain_timeout_ms = 1000\n",
        &[("XTTSD_FAULT", "panic_vocoder")],
    );
    let rt = runtime();
    let audiosocket = daemon.audiosocket.clone();
    let leg = rt.spawn(async move {
        let uuid = Uuid::parse_str("00000000-0000-4000-8000-000000000002").unwrap();
        let opts = LegOptions {
            hangup_after: Some(Duration::from_secs(20)),
            timeout: Duration::from_secs(30),
            ..LegOptions::default()
        };
        run_leg(&audiosocket, uuid, opts).await
    });
    let asked = Instant::now();
    let deadline = asked + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon kept running with a dead engine");
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("exit: {exit:?} after {:?}", asked.elapsed());
    assert!(!exit.success(), "a dead engine must exit non-zero, got {exit:?}");
    assert_eq!(exit.code(), Some(1), "an orderly exit, not a crash: {exit:?}");
    let leg = rt.block_on(leg).unwrap().unwrap();
    assert_eq!(leg.end, LegEnd::ServerHangup, "the call was not ended cleanly");
}

/// A panic while preparing one request (text front-end or voice conditioning) fails that
/// request only: the daemon stays ready and the next request is spoken.
#[test]
fn a_panic_preparing_one_request_fails_only_that_request() {
    let daemon = start_daemon_env("", &[("XTTSD_FAULT", "panic_prepare")]);
    let body = r#"{"text": "Your order has shipped.", "format": "sln16", "cache": "off"}"#;
    let (code, first) = post(&daemon.control, "/v1/tts", body);
    assert!(code >= 500, "the request that panicked must fail: {code} {first}");
    assert!(first.contains("panic"), "the error names the panic: {first}");
    let (code, second) = post(&daemon.control, "/v1/tts", body);
    assert_eq!(code, 200, "the next request is spoken: {second}");
    let length: usize = second
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(length / 2 > 800, "audio came back ({length} bytes)");
}
