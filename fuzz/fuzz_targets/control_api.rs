//! Bodies of the control API's JSON routes (`/v1/calls/{uuid}/say`, the speech API's `/v1/tts`,
//! `/v1/tts/stream` and `/v1/audio/speech`) through the real router, and the voicebot's
//! WebSocket messages: an answer or a refusal naming the field, never a panic, a hang or a
//! server error.
#![no_main]

// Each target uses one of the shared checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::control_api(data));
