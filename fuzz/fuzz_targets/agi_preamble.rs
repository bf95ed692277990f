//! A FastAGI peer's preamble in arbitrary pieces: a preamble or an error, never a panic, and
//! the buffer never grows past the preamble limit without an error.
#![no_main]

// Each target uses one of the shared checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::agi_preamble(data));
