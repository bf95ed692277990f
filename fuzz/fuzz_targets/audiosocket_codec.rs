//! AudioSocket messages from a peer, arriving in arbitrary pieces: never a panic, and every
//! message decoded encodes into bytes that decode to the same message. (Not always the same
//! bytes: an error message keeps only its first payload byte, the error code.)
#![no_main]

// Each target uses one of the shared checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::audiosocket_codec(data));
