//! What the caller heard of an utterance, in text: whole segments exactly (a segment whose
//! every frame was handed to Asterisk was heard), and inside a segment cut by `clear`, the
//! words that end within the played share of the segment's audio.
//!
//! The method for a cut segment: `share = played frames / segment frames`, where a segment
//! still being synthesized counts the larger of the frames made so far and an estimate from
//! its length (70 ms a character, 220 ms for Chinese and Japanese characters). The heard
//! prefix is `share x characters`, moved back to the end of the last whole word (text without
//! spaces is cut at that character).

use crate::audio::FRAME_MS;

/// One released segment and how much of it was played.
#[derive(Debug, Clone, Copy)]
pub struct SegmentPlay<'a> {
    pub text: &'a str,
    /// Frames made from its audio so far.
    pub frames: u64,
    /// Of those, frames handed to Asterisk.
    pub played: u64,
    /// Synthesis finished: `frames` is all there will be.
    pub synthesized: bool,
}

/// Frames a segment of `text` is expected to last, before its audio is all made.
pub fn estimated_frames(text: &str) -> u64 {
    let ms: u64 = text.trim().chars().map(|c| if is_wide(c) { 220 } else { 70 }).sum();
    ms.div_ceil(FRAME_MS as u64)
}

/// Chinese, Japanese and Korean characters: a syllable each.
fn is_wide(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

/// (played_text, unplayed_text) of an utterance: its released segments in order, then the
/// text it never released. The two put together are every character the bot sent.
pub fn split_heard(segments: &[SegmentPlay], unreleased: &str) -> (String, String) {
    let mut played = String::new();
    let mut unplayed = String::new();
    let mut cut = false;
    for s in segments {
        if cut {
            unplayed.push_str(s.text);
            continue;
        }
        let whole = s.synthesized && s.played >= s.frames;
        if whole {
            played.push_str(s.text);
            continue;
        }
        cut = true;
        let total = if s.synthesized {
            s.frames
        } else {
            s.frames.max(estimated_frames(s.text))
        };
        let at = heard_prefix(s.text, s.played, total);
        played.push_str(&s.text[..at]);
        unplayed.push_str(&s.text[at..]);
    }
    unplayed.push_str(unreleased);
    (played, unplayed)
}

/// Bytes of `text` heard after `played` of `total` frames.
fn heard_prefix(text: &str, played: u64, total: u64) -> usize {
    if played == 0 || total == 0 {
        return 0;
    }
    if played >= total {
        return text.len();
    }
    let chars = text.chars().count() as u64;
    let heard_chars = (chars * played / total) as usize;
    let limit = text.char_indices().nth(heard_chars).map_or(text.len(), |(i, _)| i);
    if !text.contains(char::is_whitespace) {
        return limit;
    }
    // A word ending at the limit was heard, with the spaces after it.
    let rest = &text[limit..];
    if rest.is_empty() || rest.starts_with(char::is_whitespace) {
        return limit + (rest.len() - rest.trim_start().len());
    }
    // Else back to the end of the last whole word before the limit.
    text[..limit]
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(text: &str, frames: u64, played: u64, synthesized: bool) -> SegmentPlay<'_> {
        SegmentPlay {
            text,
            frames,
            played,
            synthesized,
        }
    }

    #[test]
    fn whole_segments_are_exact() {
        let segs = [seg("Hello there. ", 50, 50, true), seg("How are you? ", 40, 0, true)];
        assert_eq!(
            split_heard(&segs, "Fine"),
            ("Hello there. ".to_string(), "How are you? Fine".to_string())
        );
        let all = [seg("Hello there. ", 50, 50, true), seg("Bye.", 40, 40, true)];
        assert_eq!(split_heard(&all, ""), ("Hello there. Bye.".to_string(), String::new()));
    }

    #[test]
    fn a_cut_segment_is_split_by_its_played_share_at_a_word() {
        // 24 characters, half its 100 frames played: 12 characters -> "one two " (8) since
        // "three" runs past character 12.
        let segs = [seg("one two three four five.", 100, 50, true)];
        let (p, u) = split_heard(&segs, " more");
        assert_eq!((p.as_str(), u.as_str()), ("one two ", "three four five. more"));
        // Nothing played: nothing heard.
        let segs = [seg("one two", 100, 0, true)];
        assert_eq!(split_heard(&segs, ""), (String::new(), "one two".to_string()));
    }

    #[test]
    fn a_segment_still_synthesizing_is_measured_against_its_estimate() {
        // 10 frames made and played, but "one two three four" should last about 63 frames.
        let segs = [seg("one two three four", 10, 10, false)];
        let (p, u) = split_heard(&segs, "");
        assert_eq!(p, "");
        assert_eq!(u, "one two three four");
        assert_eq!(estimated_frames("one two three four"), 63);
    }

    #[test]
    fn text_without_spaces_is_cut_at_the_character() {
        let segs = [seg("你好世界", 40, 20, true)];
        assert_eq!(split_heard(&segs, ""), ("你好".to_string(), "世界".to_string()));
    }
}
