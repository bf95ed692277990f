//! Endings that do not babble. XTTS sometimes runs on past the end of a short text (a breath,
//! a mumble after a pause, seconds of near-silence before the stop token) or never stops.
//! Two pure checks, both off in the parity-proven `reference` stream mode:
//!
//! * [`code_budget`]: the most audio codes a sentence should need, from its length and the
//!   language's speaking rate: [`BUDGET_SLACK`] times the expected length plus
//!   [`BUDGET_FLOOR_S`]. A decoder stops a sentence there.
//! * [`speech_end`]: where the speech in a finished utterance ends. In 20 ms frames, a frame is
//!   speech when its RMS is within [`SPEECH_RANGE_DB`] of the utterance's loud level (the 90th
//!   percentile frame); after the last speech frame only [`KEEP_MS`] of decay is kept. A last
//!   burst shorter than [`BABBLE_MAX_MS`], quieter than the loud level by [`BABBLE_QUIETER_DB`]
//!   and after a pause of at least [`BABBLE_GAP_MS`] is run-on, not speech, and is cut too.

/// Audio codes per second of XTTS v2 speech (22 050 Hz audio, 1024 samples per code).
pub const CODES_PER_SECOND: f64 = 22050.0 / 1024.0;
/// Budget: this many times the expected duration...
pub const BUDGET_SLACK: f64 = 2.5;
/// ...plus this many seconds (short texts vary most).
pub const BUDGET_FLOOR_S: f64 = 1.5;

/// Frames quieter than the loud level by more than this are not speech.
pub const SPEECH_RANGE_DB: f64 = 35.0;
/// Decay kept after the last speech frame.
pub const KEEP_MS: usize = 80;
/// A run-on burst is at most this long...
pub const BABBLE_MAX_MS: usize = 300;
/// ...follows a pause at least this long...
pub const BABBLE_GAP_MS: usize = 500;
/// ...and is quieter than the loud level by at least this much.
pub const BABBLE_QUIETER_DB: f64 = 10.0;

const FRAME_MS: usize = 20;

/// Characters a second of ordinary speech, per language (hanzi, kana and hangul carry more
/// sound per character than alphabets).
pub fn chars_per_second(lang: &str) -> f64 {
    match lang.split('-').next().unwrap_or(lang) {
        "zh" => 4.5,
        "ja" => 7.0,
        "ko" => 6.5,
        "ar" | "hi" => 12.0,
        _ => 14.0,
    }
}

/// The most audio codes a sentence of `text` in `lang` at `speed` should take.
pub fn code_budget(text: &str, lang: &str, speed: f64) -> usize {
    let chars = text.chars().filter(|c| !c.is_whitespace()).count() as f64;
    let expected_s = chars / chars_per_second(lang) / speed.max(0.1);
    ((expected_s * BUDGET_SLACK + BUDGET_FLOOR_S) * CODES_PER_SECOND).ceil() as usize
}

/// The budget of one sentence, from what is spoken: its cleaned text (numbers and symbols
/// spelled out: "42" is two characters written, "forty-two" said), except in the languages
/// whose cleaning romanizes (zh, ja, ko), whose rates count characters of their own script:
/// there the written text. Speed 1: XTTS stretches the codes' latents in the vocoder, after
/// decoding, so the GPT makes as many codes at any speed.
pub fn sentence_budget(written: &str, cleaned: &str, lang: &str) -> usize {
    let romanized = matches!(lang.split('-').next(), Some("zh" | "ja" | "ko"));
    code_budget(if romanized { written } else { cleaned }, lang, 1.0)
}

fn frame_db(frame: &[f32]) -> f64 {
    let energy = frame.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / frame.len().max(1) as f64;
    10.0 * energy.max(1e-12).log10()
}

/// The number of samples of `samples` (at `rate`) that hold the speech: what follows is
/// silence or run-on. Never more than the input; all of it when nothing is loud.
pub fn speech_end(samples: &[f32], rate: u32) -> usize {
    let frame = rate as usize * FRAME_MS / 1000;
    if frame == 0 || samples.len() < frame {
        return samples.len();
    }
    let levels: Vec<f64> = samples.chunks(frame).map(frame_db).collect();
    let mut sorted = levels.clone();
    sorted.sort_by(f64::total_cmp);
    let loud = sorted[sorted.len() * 9 / 10];
    if loud < -60.0 {
        return samples.len(); // no speech at all: nothing to judge by
    }
    let is_speech = |db: f64| db > loud - SPEECH_RANGE_DB;
    let Some(mut last) = levels.iter().rposition(|&db| is_speech(db)) else {
        return samples.len();
    };
    // A short, quiet burst after a long pause is run-on: end before the pause.
    let frames = |ms: usize| ms / FRAME_MS;
    let burst_start = levels[..=last]
        .iter()
        .rposition(|&db| !is_speech(db))
        .map_or(0, |i| i + 1);
    let burst = &levels[burst_start..=last];
    if burst.len() <= frames(BABBLE_MAX_MS) && burst_start > 0 {
        let gap_start = levels[..burst_start]
            .iter()
            .rposition(|&db| is_speech(db))
            .map_or(0, |i| i + 1);
        let gap = burst_start - gap_start;
        let burst_level = burst.iter().cloned().fold(f64::MIN, f64::max);
        if gap_start > 0 && gap >= frames(BABBLE_GAP_MS) && burst_level < loud - BABBLE_QUIETER_DB {
            last = gap_start - 1;
        }
    }
    ((last + 1) * frame + rate as usize * KEEP_MS / 1000).min(samples.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 24000;

    fn tone(ms: usize, amp: f32) -> Vec<f32> {
        (0..ms * 24).map(|i| amp * (i as f32 * 0.13).sin()).collect()
    }

    fn silence(ms: usize) -> Vec<f32> {
        vec![0.0; ms * 24]
    }

    fn join(parts: &[Vec<f32>]) -> Vec<f32> {
        parts.concat()
    }

    #[test]
    fn trailing_silence_is_trimmed_to_the_decay() {
        let audio = join(&[tone(1000, 0.5), silence(1500)]);
        assert_eq!(speech_end(&audio, RATE), (1000 + KEEP_MS) * 24);
        // Faint noise is silence too (-50 dB below the speech).
        let noisy = join(&[tone(1000, 0.5), tone(1000, 0.0015)]);
        assert_eq!(speech_end(&noisy, RATE), (1000 + KEEP_MS) * 24);
    }

    #[test]
    fn a_quiet_burst_after_a_long_pause_is_cut() {
        let audio = join(&[tone(1000, 0.5), silence(700), tone(200, 0.05), silence(300)]);
        assert_eq!(speech_end(&audio, RATE), (1000 + KEEP_MS) * 24);
    }

    #[test]
    fn real_speech_is_kept() {
        // A pause inside the speech, then loud speech: kept.
        let pause_then_speech = join(&[tone(1000, 0.5), silence(700), tone(200, 0.5)]);
        assert_eq!(speech_end(&pause_then_speech, RATE), pause_then_speech.len());
        // A quiet word after a short pause: kept.
        let short_pause = join(&[tone(1000, 0.5), silence(300), tone(200, 0.05)]);
        assert_eq!(speech_end(&short_pause, RATE), short_pause.len());
        // A long quiet ending (over 300 ms) is speech, not a burst.
        let long_quiet = join(&[tone(1000, 0.5), silence(700), tone(600, 0.05)]);
        assert_eq!(speech_end(&long_quiet, RATE), long_quiet.len());
        // Nothing loud at all: left alone.
        assert_eq!(speech_end(&silence(500), RATE), 12000);
        assert_eq!(speech_end(&[0.1; 100], RATE), 100);
    }

    #[test]
    fn budgets_grow_with_text_and_language_density() {
        let en = code_budget("Press one for sales.", "en", 1.0);
        // 17 letters at 14/s = 1.2 s; x 2.5 + 1.5 s = 4.5 s = 98 codes.
        assert_eq!(en, 98);
        assert!(code_budget("Press one for sales and two for support.", "en", 1.0) > en);
        assert!(
            code_budget("Press one for sales.", "en", 0.5) > en,
            "slower speech needs more codes"
        );
        // Eight hanzi take longer to say than eight letters.
        assert!(code_budget("欢迎致电我们公司", "zh-cn", 1.0) > code_budget("abcdefgh", "en", 1.0));
        assert_eq!(code_budget("", "en", 1.0), 33, "the floor alone");
    }

    #[test]
    fn sentence_budgets_count_what_is_spoken() {
        // Numbers count as said.
        assert_eq!(
            sentence_budget("Room 42.", "room forty-two.", "en"),
            code_budget("room forty-two.", "en", 1.0)
        );
        // Romanized languages count their own script.
        assert_eq!(
            sentence_budget("你好", "ni3 hao3", "zh-cn"),
            code_budget("你好", "zh-cn", 1.0)
        );
        assert_eq!(
            sentence_budget("こんにちは", "konnichiha", "ja"),
            code_budget("こんにちは", "ja", 1.0)
        );
    }
}
