//! Replies from Asterisk in arbitrary pieces: lines or errors, never a panic.
#![no_main]

// Each target uses one of the shared checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::agi_reply(data));
