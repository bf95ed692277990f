//! How the reference cuts text before reading it: runs of Hanzi apart from everything
//! else, then each Hanzi run into dictionary phrases by forward maximum matching.

/// Code points the reference treats as Hanzi (characters it looks up for pinyin).
const HANZI_RANGES: [(u32, u32); 19] = [
    (0x3007, 0x3007), // 〇
    (0xE815, 0xE864),
    (0xFA18, 0xFA18),
    (0x3400, 0x4DBF),   // CJK extension A
    (0x4E00, 0x9FFF),   // CJK unified ideographs
    (0xF900, 0xFAFF),   // CJK compatibility ideographs
    (0x20000, 0x2A6DF), // extension B
    (0x2A703, 0x2B73F), // extension C
    (0x2B740, 0x2B81D), // extension D
    (0x2B825, 0x2BF6E), // extension E
    (0x2C029, 0x2CE93), // extension F
    (0x2D016, 0x2D016),
    (0x2D11B, 0x2EBD9),
    (0x2F80A, 0x2FA1F), // compatibility supplement
    (0x30000, 0x3134A), // extension G
    (0x300F7, 0x31288),
    (0x30EDD, 0x30EDD),
    (0x30EDE, 0x30EDE),
    (0x31350, 0x32389),
];

pub fn is_hanzi(c: char) -> bool {
    let c = c as u32;
    HANZI_RANGES.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// A maximal run of Hanzi, or of anything else.
#[derive(Debug, PartialEq)]
pub enum Run<'a> {
    Hanzi(&'a str),
    Other(&'a str),
}

/// Splits text into alternating Hanzi and non-Hanzi runs.
pub fn runs(text: &str) -> Vec<Run<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut current: Option<bool> = None;
    for (i, c) in text.char_indices() {
        let hanzi = is_hanzi(c);
        if current.is_some_and(|h| h != hanzi) {
            out.push(run(&text[start..i], !hanzi));
            start = i;
        }
        current = Some(hanzi);
    }
    if let Some(hanzi) = current {
        out.push(run(&text[start..], hanzi));
    }
    out
}

fn run(text: &str, hanzi: bool) -> Run<'_> {
    if hanzi {
        Run::Hanzi(text)
    } else {
        Run::Other(text)
    }
}

/// What the phrase cutter needs from a dictionary.
pub trait PhraseLookup {
    /// Whether some phrase starts with `prefix` (a phrase is a prefix of itself).
    fn is_prefix(&self, prefix: &str) -> bool;
    fn is_phrase(&self, word: &str) -> bool;
}

/// Cuts a Hanzi run into words, left to right: at each point the text is extended one
/// character at a time while it is still the start of some phrase, and the longest
/// extension that is a whole phrase is taken; with none, one character is taken. When the
/// rest of the text is itself the start of a phrase without containing one, it is all
/// taken character by character (the reference does not look further inside it).
pub fn cut<'a>(text: &'a str, dict: &impl PhraseLookup) -> Vec<&'a str> {
    let mut words = Vec::new();
    let mut remain = text;
    while !remain.is_empty() {
        // Byte length of the longest phrase found so far at the start of `remain`.
        let mut longest_phrase = None;
        let mut still_prefix = true;
        let ends = remain.char_indices().skip(1).map(|(i, _)| i).chain([remain.len()]);
        for end in ends {
            let word = &remain[..end];
            if !dict.is_prefix(word) {
                still_prefix = false;
                break;
            }
            if dict.is_phrase(word) {
                longest_phrase = Some(end);
            }
        }
        let take = match longest_phrase {
            Some(end) => end,
            None if still_prefix => {
                words.extend(remain.char_indices().map(|(i, c)| &remain[i..i + c.len_utf8()]));
                break;
            }
            None => remain.chars().next().map_or(0, char::len_utf8),
        };
        words.push(&remain[..take]);
        remain = &remain[take..];
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Phrases(Vec<&'static str>);

    impl PhraseLookup for Phrases {
        fn is_prefix(&self, prefix: &str) -> bool {
            self.0.iter().any(|p| p.starts_with(prefix))
        }
        fn is_phrase(&self, word: &str) -> bool {
            self.0.contains(&word)
        }
    }

    #[test]
    fn runs_alternate_between_hanzi_and_the_rest() {
        assert_eq!(
            runs("ab你好, 世界!"),
            vec![
                Run::Other("ab"),
                Run::Hanzi("你好"),
                Run::Other(", "),
                Run::Hanzi("世界"),
                Run::Other("!")
            ]
        );
        assert_eq!(runs("〇𠀀"), vec![Run::Hanzi("〇𠀀")]);
        assert!(runs("").is_empty());
        // Japanese kana and full-width digits are not Hanzi.
        assert_eq!(runs("か１"), vec![Run::Other("か１")]);
    }

    #[test]
    fn longest_phrase_wins() {
        let dict = Phrases(vec!["中国", "中国人", "人民"]);
        assert_eq!(cut("中国人民", &dict), vec!["中国人", "民"]);
        assert_eq!(cut("我中国", &dict), vec!["我", "中国"]);
    }

    #[test]
    fn a_prefix_that_runs_to_the_end_without_a_phrase_is_split_into_characters() {
        // 中华人 starts 中华人民 but contains no phrase: the reference gives up on it
        // character by character, even though 华人 is a phrase.
        let dict = Phrases(vec!["中华人民", "华人"]);
        assert_eq!(cut("中华人", &dict), vec!["中", "华", "人"]);
        // With more text after it the prefix breaks, and the cut resumes after 中.
        assert_eq!(cut("中华人好", &dict), vec!["中", "华人", "好"]);
    }

    #[test]
    fn a_phrase_ending_the_text_is_taken_whole() {
        let dict = Phrases(vec!["一个", "个人", "人们"]);
        assert_eq!(cut("一个人们好个人", &dict), vec!["一个", "人们", "好", "个人"]);
    }
}
