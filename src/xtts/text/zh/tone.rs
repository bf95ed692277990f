//! Tone-marked pinyin ("zhōng", as the dictionaries store it) to the reference's TONE3
//! style with `neutral_tone_with_five`: the tone as a digit after the syllable ("zhong1"),
//! ü written v, and 5 for a syllable without a tone mark ("de5").

use std::sync::LazyLock;

use regex::Regex;

/// One letter with a tone mark and what it becomes: the bare letter and the tone digit.
const MARKED_LETTERS: [(char, &str); 31] = [
    ('ā', "a1"),
    ('á', "a2"),
    ('ǎ', "a3"),
    ('à', "a4"),
    ('ē', "e1"),
    ('é', "e2"),
    ('ě', "e3"),
    ('è', "e4"),
    ('ō', "o1"),
    ('ó', "o2"),
    ('ǒ', "o3"),
    ('ò', "o4"),
    ('ī', "i1"),
    ('í', "i2"),
    ('ǐ', "i3"),
    ('ì', "i4"),
    ('ū', "u1"),
    ('ú', "u2"),
    ('ǔ', "u3"),
    ('ù', "u4"),
    ('ü', "v"),
    ('ǖ', "v1"),
    ('ǘ', "v2"),
    ('ǚ', "v3"),
    ('ǜ', "v4"),
    ('ń', "n2"),
    ('ň', "n3"),
    ('ǹ', "n4"),
    ('ḿ', "m2"),
    ('ế', "ê2"),
    ('ề', "ê4"),
];

/// Marks written as a letter plus a combining accent (no precomposed character exists).
const MARKED_SEQUENCES: [(&str, &str); 4] = [
    ("m\u{304}", "m1"),
    ("m\u{300}", "m4"),
    ("ê\u{304}", "ê1"),
    ("ê\u{30c}", "ê3"),
];

/// Letters, one tone digit, letters: the digit moves to the end. Anything else (a
/// character with no pinyin, two digits) is left as it is.
static TONE_INSIDE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([a-zêü]+)([1-5])([a-zêü]*)$").expect("valid tone pattern"));
/// Any decimal digit (Unicode Nd, as the reference's `\d`): the syllable has a tone.
static DIGIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d").expect("valid digit pattern"));

/// "zhōng" -> "zhong1", "lǜ" -> "lv4", "de" -> "de5". Text that is not pinyin (a Hanzi the
/// character table lacks) goes through the same steps, so it comes out with a 5 appended,
/// as in the reference.
pub fn tone3(marked: &str) -> String {
    let mut numbered = String::with_capacity(marked.len() + 1);
    for c in marked.chars() {
        match MARKED_LETTERS.iter().find(|(m, _)| *m == c) {
            Some((_, plain)) => numbered.push_str(plain),
            None => numbered.push(c),
        }
    }
    for (sequence, plain) in MARKED_SEQUENCES {
        if numbered.contains(sequence) {
            numbered = numbered.replace(sequence, plain);
        }
    }
    let mut out = TONE_INSIDE.replace(&numbered, "${1}${3}${2}").into_owned();
    if !out.is_empty() && !DIGIT.is_match(&out) {
        out.push('5');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_digit_goes_to_the_end() {
        assert_eq!(tone3("zhōng"), "zhong1");
        assert_eq!(tone3("guó"), "guo2");
        assert_eq!(tone3("hǎo"), "hao3");
        assert_eq!(tone3("shuì"), "shui4");
    }

    #[test]
    fn u_umlaut_is_written_v() {
        assert_eq!(tone3("lǜ"), "lv4");
        assert_eq!(tone3("nüè"), "nve4");
        assert_eq!(tone3("lü"), "lv5");
    }

    #[test]
    fn unmarked_syllable_is_neutral_tone_five() {
        assert_eq!(tone3("de"), "de5");
        assert_eq!(tone3("er"), "er5");
    }

    #[test]
    fn nasal_syllables_and_e_circumflex() {
        assert_eq!(tone3("ń"), "n2");
        assert_eq!(tone3("m\u{304}"), "m1");
        assert_eq!(tone3("hm\u{300}"), "hm4");
        assert_eq!(tone3("ê\u{30c}"), "ê3");
        assert_eq!(tone3("ế"), "ê2");
        assert_eq!(tone3("ê"), "ê5");
    }

    #[test]
    fn text_that_is_not_pinyin_gets_a_five() {
        assert_eq!(tone3("\u{e815}"), "\u{e815}5");
        assert_eq!(tone3(""), "");
    }
}
