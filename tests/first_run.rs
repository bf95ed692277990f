//! A first run: the real daemon with no XTTS model speaks with the built-in voice, and with the
//! (tiny) XTTS model speaks through XTTS; `/v1/health` and the call itself tell which one spoke.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;
use xttsd::client::audiosocket::{run_leg, LegOptions};

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

/// Starts `xttsd serve` with `model_dir` (absent or the tiny fixture) and a speakers folder
/// that has no default voice unless `with_default_voice`.
fn start_daemon(model_dir: &Path, with_default_voice: bool, extra: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let speakers = dir.path().join("speakers");
    std::fs::create_dir_all(&speakers).unwrap();
    if with_default_voice {
        std::fs::copy("tests/fixtures/ref_24k.wav", speakers.join("default.wav")).unwrap();
    }
    let (a, g, c) = (free_port(), free_port(), free_port());
    let config = format!(
        "[engine]\nmodel_dir = {model_dir:?}\nspeakers_dir = {speakers:?}\ndevice = \"cpu\"\n\
         [audiosocket]\nlisten = \"127.0.0.1:{a}\"\n\
         [agi]\nlisten = \"127.0.0.1:{g}\"\naudiosocket_address = \"127.0.0.1:{a}\"\n\
         [control]\nlisten = \"127.0.0.1:{c}\"\n{extra}"
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

/// One HTTP/1.1 request to the control API: (status, body).
fn http(addr: &str, method: &str, path: &str, json: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let body = rest.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (code, body)
}

fn health(daemon: &Daemon) -> serde_json::Value {
    let (code, body) = http(&daemon.control, "GET", "/v1/health", "");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Queues `text` for a call over the control API, then plays the call for `secs` seconds:
/// returns the 8 kHz samples heard.
fn speak_on_a_call(daemon: &Daemon, text: &str, secs: u64) -> Vec<i16> {
    let uuid = Uuid::new_v4();
    let body = serde_json::json!({ "text": text }).to_string();
    let (code, reply) = http(&daemon.control, "POST", &format!("/v1/calls/{uuid}/say"), &body);
    assert_eq!(code, 202, "{reply}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let leg = rt
        .block_on(run_leg(
            &daemon.audiosocket,
            uuid,
            LegOptions {
                hangup_after: Some(Duration::from_secs(secs)),
                timeout: Duration::from_secs(secs + 20),
                ..LegOptions::default()
            },
        ))
        .unwrap();
    leg.samples
}

fn rms(samples: &[i16]) -> f64 {
    (samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

/// Fraction of 20 ms frames whose level is above `floor` (speech, not silence).
fn voiced_fraction(samples: &[i16], floor: f64) -> f64 {
    let frames: Vec<&[i16]> = samples.chunks(160).collect();
    frames.iter().filter(|f| rms(f) > floor).count() as f64 / frames.len().max(1) as f64
}

#[test]
fn without_a_model_the_built_in_voice_answers() {
    let daemon = start_daemon(Path::new("/nonexistent/xtts_v2"), false, "");
    let h = health(&daemon);
    assert_eq!(h["engine"]["engine"], "builtin", "{h}");
    let heard = speak_on_a_call(&daemon, "Thank you for calling. Please hold while we connect you.", 6);
    let voiced = voiced_fraction(&heard, 300.0);
    println!(
        "built-in voice: {:.2} s heard, RMS {:.0}, voiced {:.0}%",
        heard.len() as f64 / 8000.0,
        rms(&heard),
        voiced * 100.0
    );
    // About 3 s of speech in a 6 s call: speech, then silence.
    assert!((0.25..0.9).contains(&voiced), "voiced fraction {voiced}");
    assert_eq!(health(&daemon)["engine"]["served"], 1);
}

#[test]
fn with_the_model_xtts_speaks_and_the_built_in_voice_covers_a_missing_default_voice() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/model");
    // The tiny model has studio voices, so name a default voice that is neither a clip nor one of them.
    let daemon = start_daemon(&model, false, "");
    let h = health(&daemon);
    assert_eq!(
        (h["engine"]["engine"].as_str(), h["engine"]["state"].as_str()),
        (Some("xtts"), Some("ready")),
        "{h}"
    );
    assert_eq!(h["engine"]["fallback"]["engine"], "builtin", "{h}");
    // No speakers/default.wav: the default voice is spoken by the built-in voice.
    let heard = speak_on_a_call(&daemon, "Hello there.", 3);
    assert!(rms(&heard) > 100.0, "silent call");
    let h = health(&daemon);
    assert_eq!(
        (
            h["engine"]["served"].as_u64(),
            h["engine"]["fallback"]["served"].as_u64()
        ),
        (Some(0), Some(1)),
        "{h}"
    );
}

#[test]
fn with_the_model_and_a_voice_xtts_speaks() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/model");
    let daemon = start_daemon(&model, true, "");
    let heard = speak_on_a_call(&daemon, "Hello there.", 3);
    assert!(rms(&heard) > 10.0, "silent call");
    let h = health(&daemon);
    assert_eq!(
        (
            h["engine"]["served"].as_u64(),
            h["engine"]["fallback"]["served"].as_u64()
        ),
        (Some(1), Some(0)),
        "{h}"
    );
}

#[test]
fn without_a_model_and_no_fallback_the_start_fails_naming_the_download() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        "[engine]\nmodel_dir = \"/nonexistent/xtts_v2\"\n[fallback]\nwhen_absent = false\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xttsd"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json") && err.contains("huggingface.co/coqui/XTTS-v2"),
        "{err}"
    );
}
