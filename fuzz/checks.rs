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
