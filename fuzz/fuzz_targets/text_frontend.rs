//! Any text in any of the 17 languages through the front-end (cleaning, numbers, sentence
//! splitting, tokens): token ids or an error, never a panic or a hang.
#![no_main]

// Each target uses one of the shared checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::text_frontend(data));
