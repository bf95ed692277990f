//! When streamed text goes to the synthesizer: one [`Releaser`] per utterance collects the
//! pieces a bot sends and hands out segments, early for the first (time to first audio),
//! whole sentences later (better prosody), never splitting "3.5", "Dr.", "U.S.", "10:30",
//! an e-mail address or a URL. Pure: time comes in as milliseconds from the caller.
//!
//! Every segment is an exact slice of the text received, whitespace included, so the
//! segments of an utterance put back together are its text.

use serde::{Deserialize, Serialize};

/// The policy's knobs; a bot may change them with `session.update { release: {...} }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReleaseConfig {
    /// The first segment goes at a sentence end once it holds this many characters...
    pub first_sentence_chars: usize,
    /// ... or at a clause end once it holds this many ...
    pub first_clause_chars: usize,
    /// ... else this long after it reached `first_clause_chars`, up to the last whole word.
    pub first_wait_ms: u64,
    /// Later segments (whole sentences) go once less unplayed audio than this is ahead ...
    pub lookahead_ms: u64,
    /// ... or once a whole sentence has waited this long.
    pub later_wait_ms: u64,
    /// Segments are packed up to this fraction of the language's XTTS character limit.
    pub pack_ratio: f64,
    /// A period at the end of the text so far (nothing after it yet) counts as a sentence
    /// end after this long without more text.
    pub confirm_ms: u64,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        Self {
            first_sentence_chars: 12,
            first_clause_chars: 24,
            first_wait_ms: 250,
            lookahead_ms: 1500,
            later_wait_ms: 800,
            pack_ratio: 0.8,
            confirm_ms: 300,
        }
    }
}

impl ReleaseConfig {
    /// Checks the values, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.pack_ratio > 0.0 && self.pack_ratio <= 1.0) {
            return Err(format!("release.pack_ratio must be in (0, 1], got {}", self.pack_ratio));
        }
        if self.first_sentence_chars == 0 || self.first_clause_chars == 0 {
            return Err("release.first_sentence_chars and first_clause_chars must be at least 1".into());
        }
        Ok(())
    }
}

/// Words ending in a period that do not end a sentence (compared lowercased, without the dot).
/// Single letters and dotted initials ("U.S", "e.g") are recognised by shape.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "no", "nr", "fig", "approx", "ca", "inc", "ltd",
    "co", "corp", "dept", "est", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "mon", "tue", "wed", "thu", "fri", "sat", "sun", "tel", "ext", "bzw", "usw", "evtl", "ggf", "hr", "fr", "frau",
    "mme", "mlle", "sra", "srta", "av", "avda", "sig", "dott", "ing", "str", "vol", "pp", "cf", "al", "gen", "col",
    "lt", "sgt", "capt", "rev", "hon", "dra", "inkl", "mo", "di", "ggü", "ca", "tsd",
];

/// Sentence ends that need no space after them (CJK full stops, Devanagari danda).
fn is_closed_sentence_end(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '．' | '।')
}

/// Clause ends that need no space after them.
fn is_closed_clause_end(c: char) -> bool {
    matches!(c, '，' | '、' | '；' | '：')
}

/// Sentence ends that count only when followed by a space.
fn is_open_sentence_end(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '؟')
}

/// Clause ends that count only when followed by a space.
fn is_open_clause_end(c: char) -> bool {
    matches!(c, ',' | ';' | ':' | '—' | '–' | '،')
}

/// Closing quotes and brackets that stay with the punctuation before them.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '”' | '’' | ')' | ']' | '}' | '»' | '」' | '』' | '）' | '》' | '】' | '〉'
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundaryKind {
    Sentence,
    Clause,
}

/// A place the text may be cut: `end` is a byte offset just past the punctuation, its
/// closers and the spaces after them; `chars` counts the characters before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    pub end: usize,
    pub chars: usize,
    pub kind: BoundaryKind,
}

/// The word a period ends ("U.S" for "...the U.S."), without opening quotes or brackets.
fn word_before(text: &str, dot: usize) -> &str {
    let start = text[..dot]
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace() || matches!(c, '(' | '[' | '"' | '“' | '‘' | '«' | '¿' | '¡'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    &text[start..dot]
}

/// Whether a period after `word` belongs to the word (an abbreviation or initials).
fn is_abbreviation(word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    let lower = word.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return true;
    }
    // Initials and dotted abbreviations: "J", "U.S", "e.g", "p.m".
    word.split('.').all(|part| {
        let mut chars = part.chars();
        matches!((chars.next(), chars.next()), (Some(c), None) if c.is_alphabetic())
    })
}

/// Where `text` may be cut. `final_ok`: a period at the very end (nothing after it) counts
/// (its confirmation timer ran out, or no more text will come).
pub fn boundaries(text: &str, final_ok: bool) -> Vec<Boundary> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let closed_sentence = is_closed_sentence_end(c);
        let closed_clause = is_closed_clause_end(c);
        let open_sentence = is_open_sentence_end(c);
        let open_clause = is_open_clause_end(c);
        if !(closed_sentence || closed_clause || open_sentence || open_clause) {
            i += 1;
            continue;
        }
        // The whole run of punctuation and closers ("?!", "...", ".\"", "。」").
        let mut j = i + 1;
        while j < chars.len() {
            let d = chars[j].1;
            if is_open_sentence_end(d) || is_closed_sentence_end(d) || is_closer(d) {
                j += 1;
            } else {
                break;
            }
        }
        let run: String = chars[i..j].iter().map(|(_, c)| *c).collect();
        let kind = if run
            .chars()
            .any(|c| is_open_sentence_end(c) || is_closed_sentence_end(c))
        {
            BoundaryKind::Sentence
        } else {
            BoundaryKind::Clause
        };
        let mut k = j;
        while k < chars.len() && chars[k].1.is_whitespace() {
            k += 1;
        }
        let spaced = k > j;
        let at_end = k == chars.len();
        let closed = run
            .chars()
            .any(|c| is_closed_sentence_end(c) || is_closed_clause_end(c));
        let single_period = run.trim_end_matches(is_closer) == ".";
        let ok = if closed {
            true
        } else if !spaced && !at_end {
            // "3.5", "3,5", "10:30", "example.com", "a—b": not a boundary.
            false
        } else if kind == BoundaryKind::Clause {
            // A comma at the very end may yet be "3,5".
            spaced
        } else if single_period {
            let word = word_before(text, at);
            if is_abbreviation(word) {
                false
            } else if at_end {
                // Nothing after the period yet: "3." may become "3.5", "sentence." may
                // go on with " more": wait for the next character or the timer.
                final_ok && !word.chars().last().is_some_and(|c| c.is_ascii_digit())
            } else {
                // Sentences do not go on in lowercase ("approx. five", "etc. and").
                !chars[k].1.is_lowercase()
            }
        } else {
            // "!", "?", "…" and "...": a sentence end once a space or the end follows.
            spaced || final_ok
        };
        if ok {
            let end = if k < chars.len() { chars[k].0 } else { text.len() };
            out.push(Boundary { end, chars: k, kind });
        }
        i = j;
    }
    out
}

/// The byte offset of the `n`th character of `text` (its length when shorter).
fn byte_at(text: &str, n: usize) -> usize {
    text.char_indices().nth(n).map_or(text.len(), |(i, _)| i)
}

/// Streamed text of one utterance and the segments released from it.
#[derive(Debug, Clone)]
pub struct Releaser {
    cfg: ReleaseConfig,
    /// Longest segment, in characters (the language's XTTS limit times `pack_ratio`).
    limit: usize,
    /// Text received and not yet released.
    buf: String,
    segments: usize,
    /// `flush` asked for everything now; cleared once the buffer is empty.
    flushing: bool,
    /// `end`: no more text comes.
    ended: bool,
    /// When text last arrived.
    last_text_ms: u64,
    /// First segment: when the buffer reached `first_clause_chars` without a boundary.
    long_since_ms: Option<u64>,
    /// Later segments: when a whole sentence became ready.
    ready_since_ms: Option<u64>,
}

impl Releaser {
    /// `char_limit`: the language's XTTS character limit.
    pub fn new(cfg: ReleaseConfig, char_limit: usize) -> Self {
        let limit = ((char_limit as f64 * cfg.pack_ratio) as usize).max(8);
        Self {
            cfg,
            limit,
            buf: String::new(),
            segments: 0,
            flushing: false,
            ended: false,
            last_text_ms: 0,
            long_since_ms: None,
            ready_since_ms: None,
        }
    }

    /// Appends a piece of text received at `now_ms`.
    pub fn push(&mut self, text: &str, now_ms: u64) {
        self.buf.push_str(text);
        if !text.is_empty() {
            self.last_text_ms = now_ms;
        }
        if self.segments == 0 && self.long_since_ms.is_none() && self.buf.chars().count() >= self.cfg.first_clause_chars
        {
            self.long_since_ms = Some(now_ms);
        }
    }

    /// Release everything buffered now; more text may follow.
    pub fn flush(&mut self) {
        self.flushing = true;
    }

    /// No more text: release the rest.
    pub fn end(&mut self) {
        self.ended = true;
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Ended and every character released.
    pub fn is_drained(&self) -> bool {
        self.ended && self.buf.is_empty()
    }

    /// Text not released yet.
    pub fn pending(&self) -> &str {
        &self.buf
    }

    /// Drops the text not released yet (barge-in), returning it.
    pub fn drop_pending(&mut self) -> String {
        self.ended = true;
        std::mem::take(&mut self.buf)
    }

    /// Segments released so far.
    pub fn released(&self) -> usize {
        self.segments
    }

    /// The next segment to synthesize, if one is due at `now_ms` with `unplayed_ms` of audio
    /// still ahead of the caller.
    pub fn poll(&mut self, now_ms: u64, unplayed_ms: u64) -> Option<String> {
        if self.buf.is_empty() {
            self.flushing = false;
            return None;
        }
        let confirmed = now_ms >= self.last_text_ms + self.cfg.confirm_ms;
        let everything = self.flushing || self.ended;
        let bounds = boundaries(&self.buf, confirmed || everything);
        let total = self.buf.chars().count();
        if everything {
            if total <= self.limit {
                return self.take(self.buf.len());
            }
            let cut = self.cut_within_limit(&bounds);
            return self.take(cut);
        }
        if self.buf.trim().is_empty() {
            return None;
        }
        if self.segments == 0 {
            return self.poll_first(&bounds, total, now_ms);
        }
        self.poll_later(&bounds, total, now_ms, unplayed_ms)
    }

    fn poll_first(&mut self, bounds: &[Boundary], total: usize, now_ms: u64) -> Option<String> {
        let early = bounds.iter().find(|b| match b.kind {
            BoundaryKind::Sentence => b.chars >= self.cfg.first_sentence_chars,
            BoundaryKind::Clause => b.chars >= self.cfg.first_clause_chars,
        });
        if let Some(b) = early {
            let end = if b.chars <= self.limit {
                b.end
            } else {
                self.cut_within_limit(bounds)
            };
            return self.take(end);
        }
        if total > self.limit {
            let cut = self.cut_within_limit(bounds);
            return self.take(cut);
        }
        if total >= self.cfg.first_clause_chars {
            let since = *self.long_since_ms.get_or_insert(now_ms);
            if now_ms >= since + self.cfg.first_wait_ms {
                // Up to the last whole word: the word after the last space may be half a token.
                if let Some(cut) = self.last_word_end(self.buf.len()) {
                    return self.take(cut);
                }
            }
        }
        None
    }

    fn poll_later(&mut self, bounds: &[Boundary], total: usize, now_ms: u64, unplayed_ms: u64) -> Option<String> {
        let sentences: Vec<&Boundary> = bounds.iter().filter(|b| b.kind == BoundaryKind::Sentence).collect();
        let Some(first) = sentences.first() else {
            self.ready_since_ms = None;
            if total > self.limit {
                let cut = self.cut_within_limit(bounds);
                return self.take(cut);
            }
            return None;
        };
        if first.chars > self.limit {
            let cut = self.cut_within_limit(bounds);
            return self.take(cut);
        }
        let since = *self.ready_since_ms.get_or_insert(now_ms);
        let packed = sentences
            .iter()
            .rev()
            .find(|b| b.chars <= self.limit)
            .expect("the first fits");
        // Nothing more can be packed once the text runs past the limit.
        let full = total > self.limit;
        if unplayed_ms < self.cfg.lookahead_ms || now_ms >= since + self.cfg.later_wait_ms || full {
            return self.take(packed.end);
        }
        None
    }

    /// When a timer may release something without more text (None: only text, `flush`,
    /// `end` or played audio can).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.buf.trim().is_empty() {
            return None;
        }
        let mut deadlines = Vec::new();
        let tail = self.buf.trim_end().trim_end_matches(is_closer);
        if tail.ends_with(is_open_sentence_end) {
            deadlines.push(self.last_text_ms + self.cfg.confirm_ms);
        }
        if let Some(since) = self.long_since_ms {
            deadlines.push(since + self.cfg.first_wait_ms);
        }
        if let Some(since) = self.ready_since_ms {
            deadlines.push(since + self.cfg.later_wait_ms);
        }
        deadlines.into_iter().min()
    }

    /// Where to cut text longer than the limit: the last sentence end within it, else the
    /// last clause end, else the last whole word, else (text without spaces, as Chinese
    /// without punctuation) at the limit.
    fn cut_within_limit(&self, bounds: &[Boundary]) -> usize {
        let within = |kind| bounds.iter().rev().find(|b| b.kind == kind && b.chars <= self.limit);
        if let Some(b) = within(BoundaryKind::Sentence).or_else(|| within(BoundaryKind::Clause)) {
            return b.end;
        }
        let hard = byte_at(&self.buf, self.limit);
        self.last_word_end(hard).unwrap_or(hard)
    }

    /// The offset just past the spaces after the last whole word of `buf[..upto]`, never
    /// right after an abbreviation ("Dr. | Smith") or a number ("4 | p.m.", "3 | kg").
    fn last_word_end(&self, upto: usize) -> Option<usize> {
        let mut head = &self.buf[..upto];
        loop {
            let cut = head.trim_end_matches(|c: char| !c.is_whitespace());
            let word_part = cut.trim_end();
            if word_part.is_empty() {
                return None;
            }
            let word = word_part.rsplit(char::is_whitespace).next().unwrap_or("");
            let abbreviation = word
                .strip_suffix('.')
                .is_some_and(|w| is_abbreviation(w.trim_start_matches(|c: char| !c.is_alphanumeric())));
            let number = word.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | ':'));
            if !abbreviation && !number {
                return Some(cut.len());
            }
            head = word_part;
        }
    }

    fn take(&mut self, end: usize) -> Option<String> {
        if end == 0 {
            return None;
        }
        let rest = self.buf.split_off(end);
        let segment = std::mem::replace(&mut self.buf, rest);
        self.segments += 1;
        self.long_since_ms = None;
        self.ready_since_ms = None;
        if self.buf.is_empty() {
            self.flushing = false;
        }
        Some(segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuts(text: &str) -> Vec<usize> {
        boundaries(text, true).iter().map(|b| b.end).collect()
    }

    #[test]
    fn sentence_and_clause_ends() {
        let t = "Hello there, friend. How are you? Fine!";
        let b = boundaries(t, true);
        let kinds: Vec<_> = b.iter().map(|b| (&t[..b.end], b.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("Hello there, ", BoundaryKind::Clause),
                ("Hello there, friend. ", BoundaryKind::Sentence),
                ("Hello there, friend. How are you? ", BoundaryKind::Sentence),
                (t, BoundaryKind::Sentence),
            ]
        );
    }

    #[test]
    fn never_inside_numbers_abbreviations_times_addresses() {
        for text in [
            "It costs 3.5 dollars",
            "Es kostet 3,5 Euro",
            "Ask Dr. Smith about it",
            "Made in the U.S. by hand",
            "Come at 10:30 sharp",
            "Write to jane.doe@example.com today",
            "See https://example.com/a.b?c=d,e today",
            "There are 1,000,000 people",
            "Use e.g. salt",
            "It is approx. five",
        ] {
            assert_eq!(cuts(text), Vec::<usize>::new(), "{text}");
        }
    }

    #[test]
    fn a_final_period_waits_for_what_follows() {
        // "3." may still become "3.5": not even the timer cuts after a digit.
        assert!(boundaries("The total is 3.", true).is_empty());
        assert!(boundaries("The end.", false).is_empty());
        assert_eq!(cuts("The end."), vec![8]);
        assert_eq!(cuts("The end. Next"), vec![9]);
    }

    #[test]
    fn cjk_punctuation_needs_no_space() {
        let t = "你好，世界。今天天气很好！";
        let ends: Vec<&str> = cuts(t).iter().map(|&e| &t[..e]).collect();
        assert_eq!(ends, vec!["你好，", "你好，世界。", t]);
        let t = "「こんにちは。」と言った。";
        let ends: Vec<&str> = cuts(t).iter().map(|&e| &t[..e]).collect();
        assert_eq!(ends, vec!["「こんにちは。」", t]);
    }

    #[test]
    fn first_segment_goes_at_the_first_sentence_of_twelve_characters() {
        let mut r = Releaser::new(ReleaseConfig::default(), 250);
        r.push("Hi. ", 0);
        assert_eq!(r.poll(0, 0), None, "3 characters is too short");
        r.push("How are you today? I", 10);
        assert_eq!(r.poll(10, 0).as_deref(), Some("Hi. How are you today? "));
        assert_eq!(r.pending(), "I");
    }

    #[test]
    fn first_segment_at_a_clause_or_after_the_wait() {
        let mut r = Releaser::new(ReleaseConfig::default(), 250);
        r.push("Well, thanks for calling us today, we", 0);
        assert_eq!(r.poll(0, 0).as_deref(), Some("Well, thanks for calling us today, "));
        let mut r = Releaser::new(ReleaseConfig::default(), 250);
        r.push("thanks for calling us about your ord", 0);
        assert_eq!(r.poll(100, 0), None);
        assert_eq!(r.next_deadline(), Some(250));
        assert_eq!(r.poll(250, 0).as_deref(), Some("thanks for calling us about your "));
    }

    #[test]
    fn later_segments_wait_for_lookahead_or_timer() {
        let mut r = Releaser::new(ReleaseConfig::default(), 250);
        r.push("Hello there, my friend. This is the second one. And", 0);
        assert_eq!(r.poll(0, 0).as_deref(), Some("Hello there, my friend. "));
        // Plenty of audio ahead: wait.
        assert_eq!(r.poll(10, 5000), None);
        // Little audio ahead: the whole sentences go together.
        assert_eq!(r.poll(20, 1000).as_deref(), Some("This is the second one. "));
        r.push(" a third. Then", 30);
        assert_eq!(r.poll(40, 5000), None);
        assert_eq!(r.next_deadline(), Some(40 + 800));
        assert_eq!(r.poll(40 + 800, 5000).as_deref(), Some("And a third. "));
    }

    #[test]
    fn flush_and_end_release_everything_in_pieces_within_the_limit() {
        let mut r = Releaser::new(ReleaseConfig::default(), 50); // limit 40
        let text = "one two three four five six seven eight nine ten eleven twelve";
        r.push(text, 0);
        r.end();
        let mut out = Vec::new();
        while let Some(s) = r.poll(0, 0) {
            assert!(s.chars().count() <= 40, "{s}");
            out.push(s);
        }
        assert_eq!(out.concat(), text);
        assert!(r.is_drained());
    }

    /// The streamed-text corpus: every text fed in random token-sized pieces at LLM speed,
    /// with audio playing out in real time, must come back whole, cut only where allowed.
    mod corpus {
        use super::super::*;
        use rand::{Rng, SeedableRng};
        use rand_chacha::ChaCha8Rng;
        use regex::Regex;

        /// Spans no cut may fall inside: numbers with a separator, times, initials and
        /// abbreviations with the word after them, e-mail addresses and URLs.
        fn protected(text: &str) -> Vec<(usize, usize)> {
            let patterns = [
                r"\d[.,:]\d",
                r"\b(?:[A-Za-z]\.){2,}\s*\S",
                r"\b[A-Z]\.\s+\S",
                r"(?i)\b(?:dr|dra|mr|mrs|prof|st|sra|dott|mme|approx|inkl|bzw|jan|mon|mo|fr|fri)\.\s+\S",
                r"https?://[A-Za-z0-9./?=&%_:,~#-]*[A-Za-z0-9/]",
                r"\bwww\.[A-Za-z0-9./?=&%_:~#-]*[A-Za-z0-9/]",
                r"[A-Za-z0-9._+-]+@[A-Za-z0-9.-]*[A-Za-z0-9]",
            ];
            patterns
                .iter()
                .flat_map(|p| {
                    Regex::new(p)
                        .unwrap()
                        .find_iter(text)
                        .map(|m| (m.start(), m.end()))
                        .collect::<Vec<_>>()
                })
                .collect()
        }

        fn corpus() -> Vec<(String, String)> {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/voicebot/release_corpus.tsv"
            );
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .map(|l| {
                    let (lang, text) = l.split_once('\t').expect("lang<TAB>text");
                    (lang.to_string(), text.to_string())
                })
                .collect()
        }

        /// Audio a segment makes, roughly: 70 ms a character, 220 for Chinese and Japanese.
        fn audio_ms(lang: &str, segment: &str) -> u64 {
            let per_char = if matches!(lang, "zh" | "ja") { 220 } else { 70 };
            segment.trim().chars().count() as u64 * per_char
        }

        /// Streams `text` as 1-5 character tokens every 25 ms (40 tokens/s), playing the
        /// released audio in real time; returns (released at ms, segment).
        fn stream(lang: &str, text: &str, rng: &mut ChaCha8Rng) -> Vec<(u64, String)> {
            let limit = crate::xtts::text::char_limit(lang);
            let mut r = Releaser::new(ReleaseConfig::default(), limit);
            let chars: Vec<char> = text.chars().collect();
            let mut out = Vec::new();
            let mut now = 0u64;
            let mut audio_until = 0u64;
            let mut at = 0;
            let release = |r: &mut Releaser, now: u64, audio_until: &mut u64, out: &mut Vec<(u64, String)>| {
                while let Some(seg) = r.poll(now, audio_until.saturating_sub(now)) {
                    *audio_until = (*audio_until).max(now) + audio_ms(lang, &seg);
                    out.push((now, seg));
                }
            };
            while at < chars.len() {
                let n = rng.random_range(1..=5).min(chars.len() - at);
                let piece: String = chars[at..at + n].iter().collect();
                at += n;
                r.push(&piece, now);
                release(&mut r, now, &mut audio_until, &mut out);
                let next_piece = now + 25;
                // Timers that fall before the next token.
                while let Some(d) = r.next_deadline().filter(|&d| d > now && d < next_piece) {
                    now = d;
                    release(&mut r, now, &mut audio_until, &mut out);
                }
                now = next_piece;
            }
            // The LLM is done: the bot sends `end`.
            r.end();
            release(&mut r, now, &mut audio_until, &mut out);
            assert!(r.is_drained());
            out
        }

        #[test]
        fn every_text_comes_back_whole_and_is_cut_only_where_allowed() {
            let texts = corpus();
            assert!(texts.len() >= 200, "corpus has {} texts", texts.len());
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut first_chars = Vec::new();
            let mut first_at = Vec::new();
            let mut segments = 0;
            for (lang, text) in &texts {
                for round in 0..3 {
                    let out = stream(lang, text, &mut rng);
                    let joined: String = out.iter().map(|(_, s)| s.as_str()).collect();
                    assert_eq!(&joined, text, "[{lang}] text changed");
                    let spans = protected(text);
                    let limit = (crate::xtts::text::char_limit(lang) as f64 * 0.8) as usize;
                    let mut cut = 0;
                    for (i, (_, seg)) in out.iter().enumerate() {
                        assert!(
                            seg.chars().count() <= limit,
                            "[{lang}] segment over {limit} chars: {seg:?}"
                        );
                        cut += seg.len();
                        if i + 1 == out.len() {
                            break;
                        }
                        for &(a, b) in &spans {
                            assert!(
                                !(a < cut && cut < b),
                                "[{lang}] cut inside {:?}: {:?} | {:?}",
                                &text[a..b],
                                &text[..cut],
                                &text[cut..]
                            );
                        }
                        let before = text[..cut].chars().last().unwrap();
                        assert!(
                            before.is_whitespace()
                                || is_closed_sentence_end(before)
                                || is_closed_clause_end(before)
                                || is_closer(before),
                            "[{lang}] cut inside a word: {:?} | {:?}",
                            &text[..cut],
                            &text[cut..]
                        );
                    }
                    if round == 0 {
                        let shown: Vec<&str> = out.iter().map(|(_, s)| s.as_str()).collect();
                        println!("[{lang}] {}", shown.join(" | "));
                    }
                    first_chars.push(out[0].1.chars().count());
                    first_at.push(out[0].0);
                    segments += out.len();
                }
            }
            first_at.sort_unstable();
            first_chars.sort_unstable();
            let median = |v: &[u64]| v[v.len() / 2];
            println!(
                "{} streams, {segments} segments; first segment released at median {} ms (p95 {} ms) after the first token, median {} chars",
                first_at.len(),
                median(&first_at),
                first_at[first_at.len() * 95 / 100],
                first_chars[first_chars.len() / 2]
            );
        }

        /// The same text cut the same way however the tokens fall, once it is all there.
        #[test]
        fn whole_text_at_once_gives_sentence_segments() {
            let text =
                "Dr. Patel will see you at 10:30 a.m. on Tuesday. The fee is 3.5 dollars, paid at the U.S. desk. Bye!";
            let mut r = Releaser::new(ReleaseConfig::default(), 250);
            r.push(text, 0);
            let first = r.poll(0, 0).unwrap();
            assert_eq!(first, "Dr. Patel will see you at 10:30 a.m. on Tuesday. ");
            r.end();
            let rest: Vec<String> = std::iter::from_fn(|| r.poll(0, 0)).collect();
            assert_eq!(
                rest,
                vec!["The fee is 3.5 dollars, paid at the U.S. desk. Bye!".to_string()]
            );
        }
    }
}
