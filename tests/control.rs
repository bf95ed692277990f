//! The control HTTP API over a real loopback socket, with plain HTTP/1.1 requests.

use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use uuid::Uuid;
use xttsd::config::Config;
use xttsd::engine::{Engine, SpeechBackend, SpeechRequest};
use xttsd::serve::{Services, SharedServices};
use xttsd::xtts::sampling::SamplingParams;

/// The API never synthesises itself; a backend that would fail the test if it were asked.
struct Unused;

impl SpeechBackend for Unused {
    fn sample_rate(&self) -> u32 {
        24000
    }
    fn speak(&mut self, _req: &SpeechRequest, _emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        panic!("the control API must only queue speech")
    }
}

fn validate(req: &SpeechRequest) -> Result<()> {
    anyhow::ensure!(
        ["en", "de"].contains(&req.lang.as_str()),
        "unknown language '{}'",
        req.lang
    );
    anyhow::ensure!(
        ["default", "anna"].contains(&req.voice.as_str()),
        "unknown voice '{}'",
        req.voice
    );
    anyhow::ensure!(req.text.chars().count() <= 200, "text longer than 200 characters");
    req.options.validate(&SamplingParams::default())
}

async fn start() -> (std::net::SocketAddr, SharedServices) {
    start_with(Config::default()).await
}

async fn start_with(config: Config) -> (std::net::SocketAddr, SharedServices) {
    let services = Services::new(config, Engine::start(Unused, validate, 4));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xttsd::control::serve(
        listener,
        services.control(),
        services.speech_api(),
    ));
    (addr, services)
}

/// The raw `GET /metrics` response, status line and headers included.
async fn metrics(addr: std::net::SocketAddr) -> String {
    timeout(Duration::from_secs(5), async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        raw
    })
    .await
    .unwrap()
}

/// One HTTP/1.1 request; returns the status and the JSON body.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        String::from_utf8(raw).unwrap()
    };
    let raw = timeout(Duration::from_secs(5), exchange).await.expect("no HTTP answer");
    let status: u16 = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn say_for_a_call_not_connected_yet_waits_for_it() {
    let (addr, services) = start().await;
    let uuid = Uuid::new_v4();
    let (status, body) = http(
        addr,
        "POST",
        &format!("/v1/calls/{uuid}/say"),
        r#"{"text": " Hallo Welt ", "voice": "anna", "lang": "de", "options": {"speed": 1.25, "seed": 9}}"#,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, serde_json::json!({"queued": true, "live": false}));
    let mut inbox = services.calls.attach(uuid).unwrap();
    assert!(inbox.had_pending);
    let job = inbox.jobs.try_recv().unwrap();
    assert_eq!(job.request.text, "Hallo Welt");
    assert_eq!((job.request.voice.as_str(), job.request.lang.as_str()), ("anna", "de"));
    assert_eq!(
        (job.request.options.speed, job.request.options.seed),
        (Some(1.25), Some(9))
    );
    assert!(!job.hangup_after && job.done.is_none() && job.escape_digits.is_empty());
}

#[tokio::test]
async fn say_reaches_a_live_call_with_defaults() {
    let (addr, services) = start().await;
    let uuid = Uuid::new_v4();
    let mut inbox = services.calls.attach(uuid).unwrap();
    let (status, body) = http(addr, "POST", &format!("/v1/calls/{uuid}/say"), r#"{"text": "Hello"}"#).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["live"], true);
    let job = timeout(Duration::from_secs(2), inbox.jobs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.request.text, "Hello");
    assert_eq!(
        (job.request.voice.as_str(), job.request.lang.as_str()),
        ("default", "en")
    );
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field() {
    let (addr, services) = start().await;
    let uuid = Uuid::new_v4();
    let path = format!("/v1/calls/{uuid}/say");
    let long = format!(r#"{{"text": "{}"}}"#, "a".repeat(300));
    let cases: Vec<(String, &str, &str)> = vec![
        ("/v1/calls/not-a-uuid/say".into(), r#"{"text": "Hi"}"#, "uuid"),
        (path.clone(), r#"{"voice": "anna"}"#, "text"),
        (path.clone(), r#"{"text": "   "}"#, "text"),
        (path.clone(), &long, "text"),
        (path.clone(), r#"{"text": "Hi", "lang": "xx"}"#, "lang"),
        (path.clone(), r#"{"text": "Hi", "voice": "nobody"}"#, "voice"),
        (path.clone(), r#"{"text": "Hi", "voice": ".."}"#, "voice"),
        (path.clone(), r#"{"text": "Hi", "voice": "/etc/passwd"}"#, "voice"),
        (path.clone(), r#"{"text": "Hi", "speed": 2}"#, "speed"),
        (path.clone(), r#"{"text": "Hi", "options": {"speed": 5}}"#, "options"),
        (path.clone(), r#"{"text": "Hi", "options": {"top_p": 0}}"#, "options"),
        (path.clone(), r#"{"text": "Hi", "options": {"sped": 1}}"#, "sped"),
        (path.clone(), r#"{"text": 5}"#, "body"),
        (path.clone(), "not json", "body"),
    ];
    for (path, body, field) in &cases {
        let (status, reply) = http(addr, "POST", path, body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["field"], *field, "{body}: {reply}");
        assert!(!reply["error"].as_str().unwrap().is_empty());
    }
    // Nothing was queued for the call.
    assert!(!services.calls.attach(uuid).unwrap().had_pending);
}

#[tokio::test]
async fn health_reports_rate_and_version() {
    let (addr, _) = start().await;
    let (status, body) = http(addr, "GET", "/v1/health", "").await;
    assert_eq!(status, 200);
    assert_eq!(body["sample_rate"], 24000);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let (status, _) = http(addr, "GET", "/v1/nothing", "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn text_length_and_queued_speech_are_bounded() {
    let mut config = Config::default();
    config.limits.max_text_chars = 10;
    config.limits.max_jobs_per_call = 2;
    let (addr, services) = start_with(config).await;
    let uuid = Uuid::new_v4();
    let path = format!("/v1/calls/{uuid}/say");
    let (status, reply) = http(addr, "POST", &path, r#"{"text": "eleven char"}"#).await;
    assert_eq!((status, reply["field"].as_str()), (400, Some("text")), "{reply}");
    for _ in 0..2 {
        let (status, reply) = http(addr, "POST", &path, r#"{"text": "Hi"}"#).await;
        assert_eq!(status, 202, "{reply}");
    }
    let (status, reply) = http(addr, "POST", &path, r#"{"text": "Hi"}"#).await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(services.calls.pending_count(), 2);
}

#[tokio::test]
async fn ready_metrics_and_drain() {
    let (addr, services) = start().await;
    let (status, body) = http(addr, "GET", "/v1/ready", "").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    let raw = metrics(addr).await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    // (Families with labels appear once they have a value.)
    for family in [
        "xttsd_busy_refusals",
        "xttsd_time_to_first_audio_seconds",
        "xttsd_late_frames",
        "xttsd_pending_jobs",
        "xttsd_engine_queued",
        "xttsd_engine_speaking",
        "xttsd_voice_cache_hits",
    ] {
        assert!(raw.contains(&format!("# TYPE {family}")), "{family} missing:\n{raw}");
    }
    // Draining: not ready, and the listener stops accepting.
    services.shutdown.begin(Duration::from_secs(5));
    let refused = timeout(Duration::from_secs(2), async {
        loop {
            match TcpStream::connect(addr).await {
                Err(_) => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the control listener still accepts after the drain began"
    );
}

/// A dead engine thread is seen from outside: not ready (with the reason), `engine_up` 0 in the
/// metrics, and the health check names the engine down; liveness itself still answers.
#[tokio::test]
async fn a_dead_engine_is_not_ready() {
    let (addr, services) = start().await;
    let request = SpeechRequest {
        text: "Hello.".into(),
        voice: "default".into(),
        lang: "en".into(),
        options: Default::default(),
    };
    // The backend panics when asked to speak: the engine thread dies. (The request is kept:
    // a request whose listener left is skipped, never spoken.)
    let _speech = services.engine.speak(request).unwrap();
    timeout(Duration::from_secs(5), async {
        while services.engine.is_alive() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the engine thread did not die");
    let (status, body) = http(addr, "GET", "/v1/ready", "").await;
    assert_eq!((status, body["status"].as_str()), (503, Some("engine down")), "{body}");
    let (status, body) = http(addr, "GET", "/v1/health", "").await;
    assert_eq!(
        (status, body["engine"]["state"].as_str()),
        (200, Some("down")),
        "{body}"
    );
    let raw = metrics(addr).await;
    assert!(raw.contains("\nxttsd_engine_up 0\n"), "{raw}");
}
