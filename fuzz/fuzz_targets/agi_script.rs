//! The script part of an AGI URL (`say?voice=...&speed=...`) and the options it sets: parsed or
//! refused with an error, never a panic; options that pass validation stay in their ranges.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xttsd::agi::codec::Script;
use xttsd::engine::{SpeechOptions, SPEED_RANGE};
use xttsd::xtts::sampling::SamplingParams;

fuzz_target!(|data: &[u8]| {
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
});
