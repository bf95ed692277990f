//! Words to romaji with the reference romaniser's (cutlet 0.5.2, Hepburn, foreign spellings
//! on, non-ASCII replaced) word-level rules: which reading a word gets (particles は/へ as
//! "wa"/"e", loanwords in their source spelling, unknown words), and where spaces go
//! between words.

use anyhow::Result;

use super::kana;
use super::mecab::Word;

// UniDic feature fields the rules read.
const POS1: usize = 0;
const POS2: usize = 1;
const LEMMA: usize = 7;
const PRON: usize = 9;
const KANA: usize = 17;

// MeCab character classes of UniDic's char.def.
const CHAR_ALPHA: u8 = 5;
const CHAR_HIRAGANA: u8 = 6;
const CHAR_KATAKANA: u8 = 7;

/// Whole words with a fixed spelling (cutlet's exceptions list).
fn exception(surface: &str) -> Option<&'static str> {
    Some(match surface {
        "ホッピー" => "Hoppy",
        "東京" => "Tokyo",
        "大阪" => "Osaka",
        "京都" => "Kyoto",
        "柔道" => "judo",
        "弁当" => "bento",
        "ヒルズ" => "hills",
        "カービィ" => "Kirby",
        _ => return None,
    })
}

/// One word's romaji and whether a space follows it.
struct Token {
    text: String,
    space: bool,
}

impl Token {
    fn new(text: impl Into<String>, space: bool) -> Self {
        Self {
            text: text.into(),
            space,
        }
    }
}

/// The romaji of `words` (MeCab's split of normalised text), before lowercasing.
pub fn romanize(words: &[Word]) -> Result<String> {
    let mut out: Vec<Token> = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let next = words.get(i + 1);
        // A possessive apostrophe joins the words either side: "bob's".
        if word.surface == "'"
            && !word.space_before
            && next.is_some_and(|n| n.char_type == CHAR_ALPHA && !n.space_before)
        {
            if let Some(prev) = out.last_mut() {
                prev.space = false;
            }
            out.push(Token::new("'", false));
            continue;
        }
        let roma = word_romaji(word)?;
        // A verb split as 乗っ|た: the trailing っ doubles this word's first letter.
        if let (Some(first), Some(prev)) = (roma.chars().next(), out.last_mut()) {
            if prev.text.ends_with('っ') {
                prev.text.pop();
                prev.text.push(first);
            }
        }
        let foreign = foreign_spelling(word).is_some();
        // Opening quotes and brackets (and words with no romaji) take a space before, none after.
        if "「『".contains(word.surface.as_str()) || "([".contains(roma.as_str()) {
            if let Some(prev) = out.last_mut() {
                prev.space = true;
            }
            out.push(Token::new(roma, false));
            continue;
        }
        if roma == "/" {
            out.push(Token::new(roma, false));
            continue;
        }
        // Between ASCII words, keep the spacing of the input.
        if let Some(n) = next.filter(|n| word.surface.is_ascii() && n.surface.is_ascii()) {
            out.push(Token::new(word.surface.as_str(), n.space_before));
            continue;
        }
        let space = space_after(word, next, foreign && roma.ends_with('-'));
        out.push(Token::new(roma, space));
    }
    // A っ with no word after it has nothing to double.
    let mut text = String::new();
    for token in &out {
        text.extend(token.text.chars().filter(|&c| c != 'っ'));
        if token.space {
            text.push(' ');
        }
    }
    Ok(text)
}

/// Whether a space follows `word`: not after prefixes, not before punctuation, suffixes,
/// conjunctive particles or auxiliaries that continue a verb or adjective, not inside a
/// number, not after a loanword prefix ending in "-".
fn space_after(word: &Word, next: Option<&Word>, foreign_prefix: bool) -> bool {
    if word.feature(POS1) == Some("接頭辞") {
        return false;
    }
    let Some(next) = next else { return true };
    if matches!(next.feature(POS1), Some("補助記号" | "接尾辞")) || next.surface == "," || foreign_prefix {
        return false;
    }
    // The reference tests the next word's class as a substring of 接続助詞.
    if next.feature(POS2).is_some_and(|p| "接続助詞".contains(p)) {
        return false;
    }
    if is_digits(&word.surface) && is_digits(&next.surface) {
        return false;
    }
    let inflecting = matches!(word.feature(POS1), Some("動詞" | "助動詞" | "形容詞"));
    !(inflecting && next.feature(POS1) == Some("助動詞") && next.surface != "です")
}

/// The romaji of one word.
fn word_romaji(word: &Word) -> Result<String> {
    let surface = word.surface.as_str();
    if let Some(spelling) = exception(surface) {
        return Ok(spelling.into());
    }
    if is_digits(surface) || surface.is_ascii() {
        return Ok(surface.into());
    }
    if matches!(surface, "€" | "¥") {
        return Ok(String::new());
    }
    if word.unknown {
        if matches!(word.char_type, CHAR_HIRAGANA | CHAR_KATAKANA) {
            return kana::romanize(&kana::to_hiragana(surface));
        }
        // Unknown kanji, hangul, ...: one "?" per character.
        return Ok("?".repeat(surface.chars().count()));
    }
    let pos1 = word.feature(POS1);
    if pos1 == Some("補助記号") {
        // Punctuation without a romaji is dropped.
        return Ok(kana::table(surface).unwrap_or("").into());
    }
    if pos1 == Some("助詞") {
        match word.feature(PRON) {
            Some("ワ") => return Ok("wa".into()),
            Some("エ") => return Ok("e".into()),
            _ => {}
        }
    }
    if let Some(spelling) = foreign_spelling(word) {
        return Ok(spelling.into());
    }
    match word.feature(KANA).filter(|k| !k.is_empty()) {
        Some(reading) => kana::romanize(&kana::to_hiragana(reading)),
        None => Ok(surface.into()),
    }
}

/// The source-language spelling UniDic gives a loanword in its lemma (`カツ` has lemma
/// `カツ-cutlet`); other hyphenated lemmas (`ジル-外国`, `私-代名詞`) are not spellings.
fn foreign_spelling(word: &Word) -> Option<&str> {
    if word.surface.contains('-') {
        return None;
    }
    let (_, spelling) = word.feature(LEMMA)?.split_once('-')?;
    spelling.is_ascii().then_some(spelling)
}

/// Python's `str.isdigit()` for text after NFKC: ASCII digits and other scripts' digits.
fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_digit)
}

fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    let c = c as u32;
    NON_ASCII_DIGITS
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// The non-ASCII characters that Python 3.11 (Unicode 14) counts as digits (numeric type
/// Decimal or Digit) and that NFKC leaves as they are: digits of other scripts and the
/// few circled digits without a compatibility form.
#[rustfmt::skip]
const NON_ASCII_DIGITS: [(u32, u32); 67] = [
    (0x0660, 0x0669), (0x06F0, 0x06F9), (0x07C0, 0x07C9), (0x0966, 0x096F), (0x09E6, 0x09EF),
    (0x0A66, 0x0A6F), (0x0AE6, 0x0AEF), (0x0B66, 0x0B6F), (0x0BE6, 0x0BEF), (0x0C66, 0x0C6F),
    (0x0CE6, 0x0CEF), (0x0D66, 0x0D6F), (0x0DE6, 0x0DEF), (0x0E50, 0x0E59), (0x0ED0, 0x0ED9),
    (0x0F20, 0x0F29), (0x1040, 0x1049), (0x1090, 0x1099), (0x1369, 0x1371), (0x17E0, 0x17E9),
    (0x1810, 0x1819), (0x1946, 0x194F), (0x19D0, 0x19DA), (0x1A80, 0x1A89), (0x1A90, 0x1A99),
    (0x1B50, 0x1B59), (0x1BB0, 0x1BB9), (0x1C40, 0x1C49), (0x1C50, 0x1C59), (0x24F5, 0x24FD),
    (0x24FF, 0x24FF), (0x2776, 0x277E), (0x2780, 0x2788), (0x278A, 0x2792), (0xA620, 0xA629),
    (0xA8D0, 0xA8D9), (0xA900, 0xA909), (0xA9D0, 0xA9D9), (0xA9F0, 0xA9F9), (0xAA50, 0xAA59),
    (0xABF0, 0xABF9), (0x104A0, 0x104A9), (0x10A40, 0x10A43), (0x10D30, 0x10D39), (0x10E60, 0x10E68),
    (0x11052, 0x1105A), (0x11066, 0x1106F), (0x110F0, 0x110F9), (0x11136, 0x1113F), (0x111D0, 0x111D9),
    (0x112F0, 0x112F9), (0x11450, 0x11459), (0x114D0, 0x114D9), (0x11650, 0x11659), (0x116C0, 0x116C9),
    (0x11730, 0x11739), (0x118E0, 0x118E9), (0x11950, 0x11959), (0x11C50, 0x11C59), (0x11D50, 0x11D59),
    (0x11DA0, 0x11DA9), (0x16A60, 0x16A69), (0x16AC0, 0x16AC9), (0x16B50, 0x16B59), (0x1E140, 0x1E149),
    (0x1E2F0, 0x1E2F9), (0x1E950, 0x1E959),
];
