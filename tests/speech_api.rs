//! The HTTP speech API over a real loopback socket with a real HTTP client (hyper), a tone
//! generator standing in for the model.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use xttsd::config::Config;
use xttsd::engine::{Engine, SpeechBackend, SpeechRequest};
use xttsd::serve::Services;
use xttsd::xtts::sampling::SamplingParams;

const RATE: u32 = 24000;

/// What the backend was asked.
type Seen = Arc<Mutex<Vec<SpeechRequest>>>;

/// A 1 kHz tone, 300 ms long unless the text says `<N> ms`, in 50 ms chunks produced at
/// twice real time; `slow` produces it at real time.
struct Tone(Seen);

fn duration_ms(text: &str) -> usize {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1] == "ms")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(300)
}

impl SpeechBackend for Tone {
    fn sample_rate(&self) -> u32 {
        RATE
    }
    fn speak(&mut self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        self.0.lock().unwrap().push(req.clone());
        let total = duration_ms(&req.text) * RATE as usize / 1000;
        let pace = if req.text.contains("slow") { 50 } else { 25 };
        let mut at = 0;
        while at < total {
            let n = 1200.min(total - at);
            std::thread::sleep(Duration::from_millis(pace));
            let chunk = (at..at + n)
                .map(|k| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * k as f32 / RATE as f32).sin())
                .collect();
            if !emit(chunk) {
                return Ok(());
            }
            at += n;
        }
        Ok(())
    }
}

fn validate(req: &SpeechRequest) -> Result<()> {
    anyhow::ensure!(!req.text.trim().is_empty(), "text is empty");
    req.options.validate(&SamplingParams::default())?;
    anyhow::ensure!(
        ["en", "de", "fr"].contains(&req.lang.as_str()),
        "unknown language '{}'",
        req.lang
    );
    anyhow::ensure!(
        ["default", "anna"].contains(&req.voice.as_str()),
        "unknown voice '{}'",
        req.voice
    );
    Ok(())
}

struct Server {
    addr: SocketAddr,
    seen: Seen,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let speakers = dir.path().join("speakers");
    std::fs::create_dir_all(&speakers).unwrap();
    for name in ["default", "anna", "bogus"] {
        std::fs::write(speakers.join(format!("{name}.wav")), name).unwrap();
    }
    let mut config = Config::default();
    config.engine.speakers_dir = speakers;
    config.prompts.cache_dir = dir.path().join("cache");
    let seen = Seen::default();
    let services = Services::new(config, Engine::start(Tone(seen.clone()), validate, 8));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xttsd::control::serve(
        listener,
        services.control(),
        services.speech_api(),
    ));
    Server { addr, seen, _dir: dir }
}

type Response = hyper::Response<hyper::body::Incoming>;

async fn post(addr: SocketAddr, path: &str, body: Value, headers: &[(&str, &str)]) -> Response {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::post(format!("http://{addr}{path}")).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("no answer")
        .unwrap()
}

async fn body_of(resp: Response) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn content_type(resp: &Response) -> String {
    resp.headers()["content-type"].to_str().unwrap().to_string()
}

/// Amplitude of 1 kHz in `x` at `rate`, in units of full scale.
fn level_1k(x: &[f32], rate: u32) -> f32 {
    let (mut re, mut im) = (0.0f64, 0.0f64);
    for (i, &s) in x.iter().enumerate() {
        let ph = 2.0 * std::f64::consts::PI * 1000.0 * i as f64 / rate as f64;
        re += s as f64 * ph.cos();
        im += s as f64 * ph.sin();
    }
    (2.0 * (re * re + im * im).sqrt() / x.len() as f64) as f32
}

fn check_tone(samples: &[f32], rate: u32, ms: usize) {
    let expect = ms * rate as usize / 1000;
    assert!(
        samples.len() >= expect && samples.len() <= expect + rate as usize / 50,
        "{} samples at {rate} Hz for {ms} ms",
        samples.len()
    );
    // 0.5 from the engine, put at -3 dBFS by the shaping: about 0.35.
    let level = level_1k(&samples[expect / 10..expect * 9 / 10], rate);
    assert!((0.3..0.4).contains(&level), "1 kHz level {level} at {rate} Hz");
}

fn i16s(bytes: &[u8], big_endian: bool) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| {
            let v = if big_endian {
                i16::from_be_bytes([b[0], b[1]])
            } else {
                i16::from_le_bytes([b[0], b[1]])
            };
            v as f32 / 32768.0
        })
        .collect()
}

#[tokio::test]
async fn every_file_format_decodes_to_the_speech() {
    let server = start().await;
    for (format, mime) in [
        ("wav24", "audio/wav"),
        ("wav8", "audio/wav"),
        ("ulaw", "audio/basic"),
        ("sln16", "audio/x-sln16"),
        ("opus", "audio/ogg; codecs=opus"),
    ] {
        let resp = post(
            server.addr,
            "/v1/tts",
            json!({"text": "Hello 400 ms", "format": format}),
            &[],
        )
        .await;
        assert_eq!(resp.status(), 200, "{format}");
        assert_eq!(content_type(&resp), mime);
        let bytes = body_of(resp).await;
        let (rate, samples) = match format {
            "wav24" | "wav8" => {
                let reader = hound::WavReader::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
                let spec = reader.spec();
                assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
                let s: Vec<f32> = reader
                    .into_samples::<i16>()
                    .map(|s| s.unwrap() as f32 / 32768.0)
                    .collect();
                (spec.sample_rate, s)
            }
            "ulaw" => (
                8000,
                xttsd::audio::g711::ulaw_decode_all(&bytes)
                    .iter()
                    .map(|&s| s as f32 / 32768.0)
                    .collect(),
            ),
            "sln16" => (16000, i16s(&bytes, false)),
            _ => (24000, xttsd::audio::opus::decode(bytes.to_vec(), 24000).unwrap()),
        };
        assert_eq!(
            rate,
            if format.ends_with('8') || format == "ulaw" {
                8000
            } else if format == "sln16" {
                16000
            } else {
                24000
            }
        );
        check_tone(&samples, rate, 400);
    }
}

#[tokio::test]
async fn the_stream_starts_before_synthesis_ends() {
    let server = start().await;
    // 1 s of speech made at real time: the first bytes must come long before the last.
    let started = Instant::now();
    let resp = post(server.addr, "/v1/tts/stream", json!({"text": "slow 1000 ms"}), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(content_type(&resp), "audio/L16; rate=24000; channels=1");
    let mut body = resp.into_body();
    let mut first_at = None;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            if !data.is_empty() {
                first_at.get_or_insert_with(|| started.elapsed());
                bytes.extend_from_slice(&data);
            }
        }
    }
    let first_at = first_at.expect("no audio");
    let ended_at = started.elapsed();
    assert!(first_at < Duration::from_millis(400), "first audio after {first_at:?}");
    assert!(ended_at > Duration::from_millis(900), "whole stream in {ended_at:?}");
    check_tone(&i16s(&bytes, true), 24000, 1000);

    // The same speech as little-endian PCM and as 8 kHz µ-law.
    let pcm = body_of(
        post(
            server.addr,
            "/v1/tts/stream",
            json!({"text": "x 300 ms", "format": "pcm"}),
            &[],
        )
        .await,
    )
    .await;
    check_tone(&i16s(&pcm, false), 24000, 300);
    let resp = post(
        server.addr,
        "/v1/tts/stream",
        json!({"text": "x 300 ms", "format": "ulaw"}),
        &[],
    )
    .await;
    assert_eq!(content_type(&resp), "audio/PCMU; rate=8000");
    let ulaw = body_of(resp).await;
    let samples: Vec<f32> = xttsd::audio::g711::ulaw_decode_all(&ulaw)
        .iter()
        .map(|&s| s as f32 / 32768.0)
        .collect();
    check_tone(&samples, 8000, 300);
}

#[tokio::test]
async fn an_openai_client_request_is_accepted() {
    let server = start().await;
    // What OpenAI's client libraries send for audio.speech.create(...).
    let openai_headers = [
        ("authorization", "Bearer sk-anything"),
        ("user-agent", "OpenAI/Python 1.54.0"),
        ("x-stainless-lang", "python"),
        ("accept", "application/octet-stream"),
    ];
    let resp = post(
        server.addr,
        "/v1/audio/speech",
        json!({"model": "tts-1", "input": "Hello 300 ms", "voice": "alloy", "response_format": "wav", "speed": 1.0}),
        &openai_headers,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(content_type(&resp), "audio/wav");
    let wav = body_of(resp).await;
    let reader = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).unwrap();
    assert_eq!(reader.spec().sample_rate, 24000);
    // alloy is not a voice here: the default voice speaks; a voice that exists is used.
    let resp = post(
        server.addr,
        "/v1/audio/speech",
        json!({"model": "gpt-4o-mini-tts", "input": "Hi", "voice": "anna", "response_format": "pcm", "instructions": "cheerful"}),
        &openai_headers,
    )
    .await;
    assert_eq!(resp.status(), 200);
    check_tone(&i16s(&body_of(resp).await, false), 24000, 300);
    let resp = post(
        server.addr,
        "/v1/audio/speech",
        json!({"model": "tts-1", "input": "Hi", "voice": "nova", "response_format": "opus"}),
        &openai_headers,
    )
    .await;
    assert_eq!(content_type(&resp), "audio/ogg; codecs=opus");
    let voices: Vec<String> = server.seen.lock().unwrap().iter().map(|r| r.voice.clone()).collect();
    assert_eq!(voices, ["default", "anna", "default"]);

    // Errors in OpenAI's shape, naming the parameter.
    for (body, param) in [
        (
            json!({"model": "tts-1", "input": "Hi", "voice": "alloy", "response_format": "mp3"}),
            "response_format",
        ),
        (
            json!({"model": "tts-1", "input": "Hi", "voice": "alloy", "speed": 4.0}),
            "speed",
        ),
        (json!({"model": "tts-1", "voice": "alloy"}), "input"),
        (json!({"model": "tts-1", "input": "Hi", "voice": "bob"}), "voice"),
    ] {
        let resp = post(server.addr, "/v1/audio/speech", body.clone(), &openai_headers).await;
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = serde_json::from_slice(&body_of(resp).await).unwrap();
        assert_eq!(err["error"]["param"], param, "{err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert!(err["error"]["message"].as_str().unwrap().len() > 5);
    }
}

#[tokio::test]
async fn bad_requests_get_json_naming_the_field() {
    let server = start().await;
    let cases = [
        (json!({"voice": "anna"}), "text"),
        (json!({"text": "  "}), "text"),
        (json!({"text": "Hi", "colour": "red"}), "colour"),
        (json!({"text": "Hi", "format": "mp3"}), "format"),
        (json!({"text": "Hi", "lang": "xx"}), "lang"),
        (json!({"text": "Hi", "voice": "bob"}), "voice"),
        (json!({"text": "Hi", "options": {"speed": 9}}), "options"),
        (json!({"text": "Hi", "options": {"pitch": 2}}), "options.pitch"),
        (json!({"text": "Hi", "options": {"seed": "x"}}), "options.seed"),
        (json!({"text": "Hi", "cache": "sometimes"}), "cache"),
        (json!({"text": 5}), "text"),
        (json!({"text": "<speak>Hi <break time='2x'/></speak>"}), "text"),
        (json!({"text": "<lang>x</lang>", "ssml": true}), "text"),
        (json!(["text"]), "body"),
    ];
    for (body, field) in cases {
        for path in ["/v1/tts", "/v1/tts/stream"] {
            let resp = post(server.addr, path, body.clone(), &[]).await;
            assert_eq!(resp.status(), 400, "{path} {body}");
            let err: Value = serde_json::from_slice(&body_of(resp).await).unwrap();
            assert_eq!(err["field"], field, "{path} {body}: {err}");
            assert!(!err["error"].as_str().unwrap().is_empty());
        }
    }
    let resp = post(
        server.addr,
        "/v1/tts",
        json!({"text": "<speak>Hi <break time='2x'/></speak>"}),
        &[],
    )
    .await;
    let err: Value = serde_json::from_slice(&body_of(resp).await).unwrap();
    assert!(
        err["error"].as_str().unwrap().starts_with("SSML line 1, column 11"),
        "{err}"
    );
    assert!(
        server.seen.lock().unwrap().is_empty(),
        "refused requests must not reach the engine"
    );
}

#[tokio::test]
async fn seeded_requests_are_served_from_the_cache() {
    let server = start().await;
    let body = json!({"text": "Press one 300 ms", "options": {"seed": 4}, "format": "wav8"});
    let first = body_of(post(server.addr, "/v1/tts", body.clone(), &[]).await).await;
    // The cache is filled in the background once synthesis ends.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let again = body_of(post(server.addr, "/v1/tts", body.clone(), &[]).await).await;
        assert_eq!(again.len(), first.len());
    }
    let stream = post(
        server.addr,
        "/v1/tts/stream",
        json!({"text": "Press one 300 ms", "options": {"seed": 4}}),
        &[],
    )
    .await;
    check_tone(&i16s(&body_of(stream).await, true), 24000, 300);
    assert_eq!(server.seen.lock().unwrap().len(), 1, "hits make no engine request");
    // Unseeded, cache=off and refresh go to the engine.
    for extra in [
        json!({}),
        json!({"cache": "off", "options": {"seed": 4}}),
        json!({"cache": "refresh", "options": {"seed": 4}}),
    ] {
        let mut b = json!({"text": "Press one 300 ms"});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        assert_eq!(post(server.addr, "/v1/tts", b, &[]).await.status(), 200);
    }
    assert_eq!(server.seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn ssml_segments_are_spoken_separately_and_joined() {
    let server = start().await;
    let ssml = r#"<speak>First 200 ms <break time="500ms"/><voice name="anna"><prosody rate="fast">Second 300 ms</prosody></voice> <lang xml:lang="de-DE">Dritte 100 ms</lang></speak>"#;
    let resp = post(server.addr, "/v1/tts", json!({"text": ssml, "format": "wav24"}), &[]).await;
    assert_eq!(resp.status(), 200);
    let wav = body_of(resp).await;
    let samples: Vec<i16> = hound::WavReader::new(std::io::Cursor::new(wav.to_vec()))
        .unwrap()
        .into_samples::<i16>()
        .map(|s| s.unwrap())
        .collect();
    let seen = server.seen.lock().unwrap().clone();
    let got: Vec<_> = seen
        .iter()
        .map(|r| (r.text.as_str(), r.voice.as_str(), r.lang.as_str(), r.options.speed))
        .collect();
    assert_eq!(
        got,
        [
            ("First 200 ms", "default", "en", None),
            ("Second 300 ms", "anna", "en", Some(1.25)),
            ("Dritte 100 ms", "default", "de", None),
        ]
    );
    // 200 + 500 + 300 + 100 ms, each segment padded to a whole 20 ms frame at most.
    let ms = samples.len() * 1000 / 24000;
    assert!((1100..1160).contains(&ms), "{ms} ms");
    // The pause is silent.
    assert!(samples[24000 * 250 / 1000..24000 * 650 / 1000].iter().all(|&s| s == 0));
}

#[tokio::test]
async fn voices_lists_what_the_engine_accepts() {
    let server = start().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client
        .get(format!("http://{}/v1/voices", server.addr).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = serde_json::from_slice(&body_of(resp).await).unwrap();
    let names: Vec<&str> = v["voices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["anna", "default"]);
    assert_eq!(v["languages"], json!(["en", "fr", "de"]));
    assert_eq!(
        (v["default_voice"].as_str(), v["default_language"].as_str()),
        (Some("default"), Some("en"))
    );
}
