//! A `say` request checked before anything is sent to the channel: the script, its query
//! and the text, and whether the engine can say it.

use anyhow::{Context, Result};

use super::codec::{Preamble, Script};
use super::AgiContext;
use crate::calls::check_voice_name;
use crate::engine::{SpeechOptions, SpeechRequest};

pub use crate::config::AgiMode as Mode;

/// Digits Asterisk can report as DTMF.
const DTMF_DIGITS: &str = "0123456789*#ABCD";
/// Query parameters the `say` script understands, besides the [`SpeechOptions`] names.
const PARAMS: [&str; 5] = ["voice", "lang", "mode", "escape", "control"];

/// What a `say` request asks for, checked before anything is sent to the channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub request: SpeechRequest,
    pub mode: Mode,
    /// DTMF digits that stop playback.
    pub escape_digits: String,
    /// File mode: `CONTROL STREAM FILE` instead of `STREAM FILE`.
    pub control: bool,
}
/// Checks the script, its query and the text, and asks the engine whether it can say it.
pub fn plan(preamble: &Preamble, ctx: &AgiContext) -> Result<Plan> {
    let script = Script::parse(&preamble.network_script).context("bad agi_network_script")?;
    anyhow::ensure!(
        script.name == "say",
        "unknown AGI script '{}': use agi://HOST:PORT/say?voice=NAME&lang=xx",
        script.name
    );
    let mut options = SpeechOptions::default();
    for (key, value) in &script.params {
        if SpeechOptions::NAMES.contains(&key.as_str()) {
            options.set(key, value).context("bad AGI URL parameter")?;
        } else if !PARAMS.contains(&key.as_str()) {
            anyhow::bail!(
                "unknown parameter '{key}' in the AGI URL (known: {}, {})",
                PARAMS.join(", "),
                SpeechOptions::NAMES.join(", ")
            );
        }
    }
    let cfg: &AgiContext = ctx;
    let mode = match script.param("mode") {
        None => cfg.config.mode,
        Some("stream") => Mode::Stream,
        Some("file") => Mode::File,
        Some(other) => anyhow::bail!("mode must be stream or file, not '{other}'"),
    };
    let escape_digits = script.param("escape").unwrap_or("").to_string();
    if let Some(bad) = escape_digits.chars().find(|c| !DTMF_DIGITS.contains(*c)) {
        anyhow::bail!("escape digit '{bad}' is not a DTMF digit ({DTMF_DIGITS})");
    }
    let control = match script.param("control").unwrap_or("0") {
        "0" => false,
        "1" => true,
        other => anyhow::bail!("control must be 0 or 1, not '{other}'"),
    };
    // Asterisk splits AGI()'s arguments on commas, so text with commas arrives in pieces:
    // join them back with the comma and one space.
    let pieces: Vec<&str> = preamble
        .args
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .collect();
    let text = pieces.join(", ");
    anyhow::ensure!(!text.is_empty(), "no text to say: pass it as the AGI() arguments");
    let chars = text.chars().count();
    let limit = cfg.max_text_chars;
    anyhow::ensure!(
        chars <= limit,
        "text is {chars} characters long; at most {limit} may be said at once (limits.max_text_chars)"
    );
    let request = SpeechRequest {
        text,
        lang: non_empty(script.param("lang"))
            .unwrap_or(&cfg.engine_config.default_language)
            .to_string(),
        voice: non_empty(script.param("voice"))
            .unwrap_or(&cfg.engine_config.default_voice)
            .to_string(),
        options,
    };
    check_voice_name(&request.voice)?;
    ctx.engine.validate(&request)?;
    Ok(Plan {
        request,
        mode,
        escape_digits,
        control,
    })
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}
