//! The script part of an AGI URL (`say?voice=...&speed=...`) and the options it sets: parsed or
//! refused with an error, never a panic; options that pass validation stay in their ranges.
#![no_main]

// Each target uses one of the shared checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::agi_script(data));
