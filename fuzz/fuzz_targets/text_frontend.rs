//! Any text in any of the 17 languages through the front-end (cleaning, numbers, sentence
//! splitting, tokens): token ids or an error, never a panic or a hang.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use xttsd::xtts::text::{split_sentences, TextFrontend, LANGUAGES};

fn frontend() -> &'static TextFrontend {
    static FRONTEND: OnceLock<TextFrontend> = OnceLock::new();
    FRONTEND.get_or_init(|| {
        let vocab = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny/model/vocab.json");
        TextFrontend::from_file(std::path::Path::new(vocab)).expect("the fixture vocabulary loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let lang = LANGUAGES[pick as usize % LANGUAGES.len()];
    for sentence in split_sentences(text, lang) {
        assert!(!sentence.is_empty() || text.trim().is_empty());
    }
    let _ = frontend().encode_sentences(text, lang, true);
});
