//! The properties each fuzz target checks, one function per target. Shared by the fuzz targets
//! (fuzz_targets/) and by the regression test that replays the corpora (tests/fuzz_corpus.rs).

use bytes::BytesMut;
use std::sync::OnceLock;
use tokio_util::codec::{Decoder, Encoder};
use xttsd::agi::codec::PreambleDecoder;
use xttsd::agi::codec::Script;
use xttsd::agi::codec::{parse_line, AgiCodec};
use xttsd::audiosocket::codec::AudioSocketCodec;
use xttsd::engine::{SpeechOptions, SPEED_RANGE};
use xttsd::xtts::sampling::SamplingParams;
use xttsd::xtts::text::{split_sentences, TextFrontend, LANGUAGES};

/// AudioSocket messages from a peer, arriving in arbitrary pieces: never a panic, and every
/// message decoded encodes into bytes that decode to the same message. (Not always the same
/// bytes: an error message keeps only its first payload byte, the error code.)
pub fn audiosocket_codec(data: &[u8]) {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = piece as usize % 64 + 1;
    let mut codec = AudioSocketCodec::new(32_000);
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(message)) => {
                    assert!(before > buf.len(), "a message consumed no bytes");
                    let mut again = BytesMut::new();
                    codec
                        .encode(message.clone(), &mut again)
                        .expect("a decoded message encodes");
                    assert_eq!(
                        codec.decode(&mut again).expect("re-encoded bytes decode"),
                        Some(message)
                    );
                    assert!(again.is_empty());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// A FastAGI peer's preamble in arbitrary pieces: a preamble or an error, never a panic, and
/// the buffer never grows past the preamble limit without an error.
pub fn agi_preamble(data: &[u8]) {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = piece as usize % 256 + 1;
    let mut decoder = PreambleDecoder::default();
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        match decoder.decode(&mut buf) {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => assert!(buf.len() <= 64 * 1024 + piece, "{} bytes buffered", buf.len()),
        }
    }
}

/// Replies from Asterisk in arbitrary pieces: lines or errors, never a panic.
pub fn agi_reply(data: &[u8]) {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = piece as usize % 128 + 1;
    let mut codec = AgiCodec::default();
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(line)) => {
                    let _ = line.result_code();
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(stream) {
        let _ = parse_line(text);
    }
}

/// The script part of an AGI URL (`say?voice=...&speed=...`) and the options it sets: parsed or
/// refused with an error, never a panic; options that pass validation stay in their ranges.
pub fn agi_script(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(script) = Script::parse(text) else { return };
    let mut options = SpeechOptions::default();
    for (key, value) in &script.params {
        let _ = options.set(key, value);
    }
    if options.validate(&SamplingParams::default()).is_ok() {
        if let Some(speed) = options.speed {
            assert!(SPEED_RANGE.contains(&speed));
        }
    }
}

fn frontend() -> &'static TextFrontend {
    static FRONTEND: OnceLock<TextFrontend> = OnceLock::new();
    FRONTEND.get_or_init(|| {
        // Built from fuzz/ or, for the corpus test, from the project root.
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let vocab = [
            "tests/fixtures/tiny/model/vocab.json",
            "../tests/fixtures/tiny/model/vocab.json",
        ]
        .iter()
        .map(|p| here.join(p))
        .find(|p| p.is_file())
        .expect("the tiny fixture model's vocab.json");
        TextFrontend::from_file(&vocab).expect("the fixture vocabulary loads")
    })
}

/// Any text in any of the 17 languages through the front-end (cleaning, numbers, sentence
/// splitting, tokens): token ids or an error, never a panic or a hang.
pub fn text_frontend(data: &[u8]) {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let lang = LANGUAGES[pick as usize % LANGUAGES.len()];
    for sentence in split_sentences(text, lang) {
        // Empty only for text that is all whitespace as Python sees it (the reference's
        // `str.strip`), which includes the ASCII separators U+001C..U+001F.
        let python_space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
        assert!(!sentence.is_empty() || text.chars().all(python_space));
    }
    let _ = frontend().encode_sentences(text, lang, true);
}

/// Speaks a short tone for any request at once, so the HTTP routes run to their end without
/// a model.
struct ToneVoice;

impl xttsd::engine::SpeechBackend for ToneVoice {
    fn sample_rate(&self) -> u32 {
        24_000
    }
    fn speak(
        &mut self,
        req: &xttsd::engine::SpeechRequest,
        emit: &mut dyn FnMut(Vec<f32>) -> bool,
    ) -> anyhow::Result<()> {
        // Longer text, more audio, within bounds: 10 ms per character, at most 1 s.
        let samples = (req.text.chars().count() * 240).clamp(240, 24_000);
        emit((0..samples).map(|i| (i as f32 * 0.05).sin() * 0.3).collect());
        Ok(())
    }
}

/// The engine the control API talks to: the tone voice behind the checks the daemon's
/// validator makes without a model (text, options, language), knowing one voice.
fn tone_engine() -> &'static xttsd::engine::Engine {
    static ENGINE: OnceLock<xttsd::engine::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        xttsd::engine::Engine::start(
            ToneVoice,
            |req: &xttsd::engine::SpeechRequest| {
                anyhow::ensure!(!req.text.trim().is_empty(), "text is empty");
                req.options.validate(&SamplingParams::default())?;
                xttsd::xtts::text::base_language(&req.lang)?;
                anyhow::ensure!(req.voice == "default", "unknown voice '{}'", req.voice);
                Ok(())
            },
            64,
        )
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// The routes of the control listener that take a JSON body, and the voicebot's WebSocket
/// messages.
const CONTROL_ROUTES: [&str; 4] = [
    "/v1/calls/5a0d6a4e-2f55-4a43-9b8e-2b1b3b6c0d11/say",
    "/v1/tts",
    "/v1/tts/stream",
    "/v1/audio/speech",
];

/// Any bytes as the body of a control API request (the first byte picks the route, or the
/// voicebot's message parser): an answer, never a panic, a hang or a server error. Refusals
/// are 400 with JSON naming the field; nothing is busy, since the tone voice is always free.
pub fn control_api(data: &[u8]) {
    use axum::http::{Request, StatusCode};
    use tower_service::Service;

    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let Some(path) = CONTROL_ROUTES.get(pick as usize % (CONTROL_ROUTES.len() + 1)) else {
        if let Ok(text) = std::str::from_utf8(body) {
            let _ = xttsd::voicebot::protocol::parse_bot_message(text);
        }
        return;
    };
    let mut config = xttsd::config::Config::default();
    config.prompts.cache_dir = std::path::PathBuf::new();
    let services = xttsd::serve::Services::new(config, tone_engine().clone());
    let mut router = xttsd::control::router(services.control(), services.speech_api());
    let request = Request::post(*path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_vec()))
        .expect("a request");
    let answered = runtime().block_on(async {
        let answer = async {
            let response = router.call(request).await.expect("the router is infallible");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await;
            (status, bytes)
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), answer).await
    });
    let (status, bytes) = answered.expect("the control API answers within 10 s");
    let bytes = bytes.expect("the body is read to its end");
    assert!(
        matches!(
            status,
            StatusCode::OK | StatusCode::ACCEPTED | StatusCode::BAD_REQUEST | StatusCode::TOO_MANY_REQUESTS
        ),
        "{path}: status {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    if status == StatusCode::BAD_REQUEST {
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("a refusal is JSON");
        assert!(json.get("error").is_some(), "a refusal says why: {json}");
    }
}
