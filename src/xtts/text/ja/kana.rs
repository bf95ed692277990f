//! Kana to Hepburn romaji with the reference romaniser's (cutlet 0.5.2) rules: digraphs
//! (しゃ -> sha), a kana followed by a small kana (きょ -> kyo), the geminate っ (doubles the
//! next consonant, "t" before ち), the long-vowel mark ー (repeats the vowel before it),
//! ん before a vowel or y ("n'"), and the iteration marks ゝ/ゞ.

use anyhow::{bail, Result};

/// Romaji of one kana, a two-kana digraph, or a Japanese punctuation mark (the reference's
/// Hepburn table).
pub fn table(key: &str) -> Option<&'static str> {
    Some(match key {
        "あ" => "a",
        "い" => "i",
        "う" => "u",
        "え" => "e",
        "お" => "o",
        "か" => "ka",
        "き" => "ki",
        "く" => "ku",
        "け" => "ke",
        "こ" => "ko",
        "が" => "ga",
        "ぎ" => "gi",
        "ぐ" => "gu",
        "げ" => "ge",
        "ご" => "go",
        "さ" => "sa",
        "し" => "shi",
        "す" => "su",
        "せ" => "se",
        "そ" => "so",
        "ざ" => "za",
        "じ" => "ji",
        "ず" => "zu",
        "ぜ" => "ze",
        "ぞ" => "zo",
        "た" => "ta",
        "ち" => "chi",
        "つ" => "tsu",
        "て" => "te",
        "と" => "to",
        "だ" => "da",
        "ぢ" => "ji",
        "づ" => "zu",
        "で" => "de",
        "ど" => "do",
        "な" => "na",
        "に" => "ni",
        "ぬ" => "nu",
        "ね" => "ne",
        "の" => "no",
        "は" => "ha",
        "ひ" => "hi",
        "ふ" => "fu",
        "へ" => "he",
        "ほ" => "ho",
        "ば" => "ba",
        "び" => "bi",
        "ぶ" => "bu",
        "べ" => "be",
        "ぼ" => "bo",
        "ぱ" => "pa",
        "ぴ" => "pi",
        "ぷ" => "pu",
        "ぺ" => "pe",
        "ぽ" => "po",
        "ま" => "ma",
        "み" => "mi",
        "む" => "mu",
        "め" => "me",
        "も" => "mo",
        "や" => "ya",
        "ゆ" => "yu",
        "よ" => "yo",
        "ら" => "ra",
        "り" => "ri",
        "る" => "ru",
        "れ" => "re",
        "ろ" => "ro",
        "わ" => "wa",
        "ゐ" => "wi",
        "ゑ" => "we",
        "を" => "wo",
        "ん" => "n",
        // obsolete and unusual kana
        "ゔ" => "vu",
        "ヸ" => "vi",
        "ヷ" | "わ\u{3099}" => "va",
        "ヹ" | "ゑ\u{3099}" => "ve",
        "ヺ" | "を\u{3099}" => "vo",
        // small kana
        "ゃ" => "ya",
        "ゅ" => "yu",
        "ょ" => "yo",
        "ぁ" => "a",
        "ぃ" => "i",
        "ぅ" => "u",
        "ぇ" => "e",
        "ぉ" => "o",
        "ゎ" => "wa",
        "ゕ" => "ka",
        "ゖ" => "ke",
        "ヶ" => "ga",
        // small katakana of Ainu and Taiwanese spellings
        "ㇰ" => "k",
        "ㇱ" => "shi",
        "ㇲ" => "su",
        "ㇳ" => "to",
        "ㇴ" => "nu",
        "ㇵ" => "ha",
        "ㇶ" => "hi",
        "ㇷ" => "fu",
        "ㇸ" => "he",
        "ㇹ" => "ho",
        "ㇺ" => "mu",
        "ㇻ" => "ra",
        "ㇼ" => "ri",
        "ㇽ" => "ru",
        "ㇾ" => "re",
        "ㇿ" => "ro",
        "ㇷ\u{309a}" => "p",
        // small kana extension block
        "\u{1b150}" | "\u{1b164}" => "wi",
        "\u{1b151}" | "\u{1b165}" => "we",
        "\u{1b152}" | "\u{1b166}" => "wo",
        "\u{1b167}" => "n",
        // digraphs spelt differently from their parts
        "しゃ" => "sha",
        "しゅ" => "shu",
        "しょ" => "sho",
        "じゃ" => "ja",
        "じゅ" => "ju",
        "じょ" => "jo",
        "ちゃ" => "cha",
        "ちゅ" => "chu",
        "ちょ" => "cho",
        // punctuation; ー alone (a repeated mark) is a dash
        "ー" => "-",
        "。" => ".",
        "、" => ",",
        "？" => "?",
        "！" => "!",
        "「" | "」" | "『" | "』" => "\"",
        "：" => ":",
        "（" | "《" => "(",
        "）" | "》" => ")",
        "【" => "[",
        "】" => "]",
        "・" => "/",
        "，" => ",",
        // combining (han)dakuten on their own are dropped
        "\u{309a}" | "\u{3099}" => "",
        _ => return None,
    })
}

/// Small kana that modify the kana before them.
const SMALL_KANA: &str = "ゃゅょぁぃぅぇぉ";
/// Iteration marks (repeat the kana or kanji before them).
const ITERATION_MARKS: &str = "々〃ゝゞヽゞ";
const UNVOICED: &str = "かきくけこさしすせそたちつてとはひふへほ";
const VOICED: &str = "がぎぐげござじずぜぞだぢづでどばびぶべぼ";

/// Katakana become hiragana (the same syllables 0x60 code points lower), as the reference's
/// jaconv does; ー, ・ and the rare voiced ヷ..ヺ stay.
pub fn to_hiragana(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'ァ'..='ヶ' | 'ヽ' | 'ヾ' => char::from_u32(c as u32 - 0x60).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Romaji of a hiragana reading. A kana the table lacks is an error, as in the reference.
pub fn romanize(kana: &str) -> Result<String> {
    let chars: Vec<char> = kana.chars().collect();
    let mut out = String::with_capacity(kana.len());
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        out.push_str(&romaji_of(prev, c, next)?);
    }
    Ok(out)
}

/// Romaji of `c` between `prev` and `next`.
fn romaji_of(prev: Option<char>, c: char, next: Option<char>) -> Result<String> {
    if ITERATION_MARKS.contains(c) {
        return Ok(iteration(prev, c));
    }
    if let Some(digraph) = prev.and_then(|p| table(&format!("{p}{c}"))) {
        return Ok(digraph.into());
    }
    if next.is_some_and(|n| table(&format!("{c}{n}")).is_some()) {
        return Ok(String::new());
    }
    if let Some(small) = next.filter(|n| SMALL_KANA.contains(*n)) {
        if c == 'っ' {
            return Ok(String::new());
        }
        // き + ょ -> kyo: the kana without its vowel, then the small kana.
        let own = lookup(c)?;
        return Ok(format!("{}{}", without_last(own), lookup(small)?));
    }
    if SMALL_KANA.contains(c) {
        return Ok(String::new());
    }
    Ok(match c {
        'ー' => match prev.and_then(|p| table(&p.to_string())) {
            Some(p) => last_char(p, 'ー')?.to_string(),
            None => "-".into(),
        },
        'っ' => match next {
            Some('ち') => "t".into(),
            Some(n) if "あいうえおっ".contains(n) => "-".into(),
            // The first letter of the next kana's romaji.
            Some(n) => first_char(lookup(n)?, n)?.to_string(),
            // Left for the word after (乗っ|た): the caller joins across words.
            None => "っ".into(),
        },
        'ん' if next.is_some_and(|n| "あいうえおやゆよ".contains(n)) => "n'".into(),
        _ => lookup(c)?.into(),
    })
}

/// ゝ repeats the kana before it as written, ゞ voices it; 々 and 〃 span an unknown
/// stretch and are dropped.
fn iteration(prev: Option<char>, c: char) -> String {
    let Some(p) = prev else { return String::new() };
    match c {
        'ゝ' | 'ヽ' => p.to_string(),
        'ゞ' | 'ヾ' => UNVOICED
            .chars()
            .position(|u| u == p)
            .and_then(|i| VOICED.chars().nth(i))
            .and_then(|v| table(&v.to_string()))
            .unwrap_or("")
            .into(),
        _ => String::new(),
    }
}

fn lookup(c: char) -> Result<&'static str> {
    match table(&c.to_string()) {
        Some(r) => Ok(r),
        None => bail!("no romaji for {c:?} (U+{:04X})", c as u32),
    }
}

fn without_last(s: &str) -> &str {
    s.char_indices().last().map_or(s, |(i, _)| &s[..i])
}

fn first_char(s: &str, of: char) -> Result<char> {
    match s.chars().next() {
        Some(c) => Ok(c),
        None => bail!("{of:?} has an empty romaji to double"),
    }
}

fn last_char(s: &str, of: char) -> Result<char> {
    match s.chars().last() {
        Some(c) => Ok(c),
        None => bail!("{of:?} follows a mark with an empty romaji"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roma(kana: &str) -> String {
        romanize(&to_hiragana(kana)).unwrap()
    }

    #[test]
    fn hiragana_and_katakana_read_alike() {
        assert_eq!(roma("すみません"), "sumimasen");
        assert_eq!(roma("スミマセン"), "sumimasen");
    }

    #[test]
    fn digraphs_geminates_and_long_vowels() {
        assert_eq!(roma("ちょっと"), "chotto");
        assert_eq!(roma("ガッコウ"), "gakkou");
        assert_eq!(roma("まっちゃ"), "matcha");
        assert_eq!(roma("きょう"), "kyou");
        assert_eq!(roma("ラーメン"), "raamen");
        assert_eq!(roma("きんえん"), "kin'en");
        assert_eq!(roma("ーあ"), "-a");
        assert_eq!(roma("あっ"), "aっ");
        assert_eq!(roma("あっあ"), "a-a");
    }

    #[test]
    fn iteration_marks() {
        assert_eq!(roma("いすゞ"), "isuzu");
        assert_eq!(roma("こゝろ"), "koこro");
        assert_eq!(roma("ゝ"), "");
        assert_eq!(roma("あ々"), "a");
    }

    #[test]
    fn combining_voicing_marks() {
        assert_eq!(roma("わ\u{3099}"), "va");
        assert_eq!(roma("\u{3099}"), "");
    }

    #[test]
    fn unmapped_characters_are_errors() {
        let err = romanize("か犬").unwrap_err().to_string();
        assert!(err.contains("no romaji for '犬'"), "{err}");
        // The long-vowel mark after a bare combining mark has no vowel to repeat.
        assert!(romanize("\u{3099}ー").is_err());
        assert!(romanize("っ\u{3099}").is_err());
    }
}
