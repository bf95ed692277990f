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
            out.push(Token {
                text: "'".into(),
                space: false,
            });
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
            out.push(Token {
                text: roma,
                space: false,
            });
            continue;
        }
        if roma == "/" {
            out.push(Token {
                text: roma,
                space: false,
            });
            continue;
        }
        // Between ASCII words, keep the spacing of the input.
        if let Some(n) = next.filter(|n| word.surface.is_ascii() && n.surface.is_ascii()) {
            out.push(Token {
                text: word.surface.clone(),
                space: n.space_before,
            });
            continue;
        }
        let space = space_after(word, next, foreign && roma.ends_with('-'));
        out.push(Token { text: roma, space });
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

/// Python's `str.isdigit()` for the digits MeCab's input holds after NFKC: ASCII digits.
fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}
