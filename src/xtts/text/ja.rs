//! Japanese: kana to Hepburn romaji, with the kana rules of the reference's romaniser
//! (cutlet): digraphs (きょ -> kyo), small kana, the geminate っ (with "tch" before ち),
//! the long-vowel mark ー, and ん before a vowel or y as "n'".
//!
//! The reference first splits the text into words with MeCab and a dictionary, which
//! gives word spacing, the particles は/へ as "wa"/"e", foreign spellings for loanwords
//! and readings for kanji. None of that is available here: kana are read as one run,
//! and kanji pass through unchanged.

use anyhow::Result;

/// Hepburn romaji of single hiragana, small kana and Japanese punctuation.
fn single(c: char) -> Option<&'static str> {
    Some(match c {
        'あ' => "a",
        'い' => "i",
        'う' => "u",
        'え' => "e",
        'お' => "o",
        'か' => "ka",
        'き' => "ki",
        'く' => "ku",
        'け' => "ke",
        'こ' => "ko",
        'が' => "ga",
        'ぎ' => "gi",
        'ぐ' => "gu",
        'げ' => "ge",
        'ご' => "go",
        'さ' => "sa",
        'し' => "shi",
        'す' => "su",
        'せ' => "se",
        'そ' => "so",
        'ざ' => "za",
        'じ' => "ji",
        'ず' => "zu",
        'ぜ' => "ze",
        'ぞ' => "zo",
        'た' => "ta",
        'ち' => "chi",
        'つ' => "tsu",
        'て' => "te",
        'と' => "to",
        'だ' => "da",
        'ぢ' => "ji",
        'づ' => "zu",
        'で' => "de",
        'ど' => "do",
        'な' => "na",
        'に' => "ni",
        'ぬ' => "nu",
        'ね' => "ne",
        'の' => "no",
        'は' => "ha",
        'ひ' => "hi",
        'ふ' => "fu",
        'へ' => "he",
        'ほ' => "ho",
        'ば' => "ba",
        'び' => "bi",
        'ぶ' => "bu",
        'べ' => "be",
        'ぼ' => "bo",
        'ぱ' => "pa",
        'ぴ' => "pi",
        'ぷ' => "pu",
        'ぺ' => "pe",
        'ぽ' => "po",
        'ま' => "ma",
        'み' => "mi",
        'む' => "mu",
        'め' => "me",
        'も' => "mo",
        'や' => "ya",
        'ゆ' => "yu",
        'よ' => "yo",
        'ら' => "ra",
        'り' => "ri",
        'る' => "ru",
        'れ' => "re",
        'ろ' => "ro",
        'わ' => "wa",
        'ゐ' => "wi",
        'ゑ' => "we",
        'を' => "wo",
        'ん' => "n",
        'ゔ' => "vu",
        'ゃ' => "ya",
        'ゅ' => "yu",
        'ょ' => "yo",
        'ぁ' => "a",
        'ぃ' => "i",
        'ぅ' => "u",
        'ぇ' => "e",
        'ぉ' => "o",
        'ゎ' => "wa",
        'ゕ' => "ka",
        'ゖ' => "ke",
        'ー' => "-",
        '。' => ".",
        '、' => ",",
        '？' => "?",
        '！' => "!",
        '「' | '」' | '『' | '』' => "\"",
        '：' => ":",
        '（' | '《' => "(",
        '）' | '》' => ")",
        '【' => "[",
        '】' => "]",
        '・' => "/",
        '，' => ",",
        _ => return None,
    })
}

/// Two kana read as one syllable with their own spelling.
fn digraph(a: char, b: char) -> Option<&'static str> {
    Some(match (a, b) {
        ('し', 'ゃ') => "sha",
        ('し', 'ゅ') => "shu",
        ('し', 'ょ') => "sho",
        ('じ', 'ゃ') => "ja",
        ('じ', 'ゅ') => "ju",
        ('じ', 'ょ') => "jo",
        ('ち', 'ゃ') => "cha",
        ('ち', 'ゅ') => "chu",
        ('ち', 'ょ') => "cho",
        _ => return None,
    })
}

const SMALL_KANA: &str = "ゃゅょぁぃぅぇぉ";

/// Katakana become hiragana (the same syllables 0x60 code points lower).
fn to_hiragana(c: char) -> char {
    match c {
        'ァ'..='ヶ' => char::from_u32(c as u32 - 0x60).unwrap_or(c),
        _ => c,
    }
}

/// The romaji of kana `c` between `prev` and `next`; characters that are not kana come
/// back unchanged.
fn romaji_of(prev: Option<char>, c: char, next: Option<char>) -> String {
    if let Some(p) = prev {
        if let Some(d) = digraph(p, c) {
            return d.into();
        }
    }
    if let Some(n) = next {
        if digraph(c, n).is_some() {
            return String::new();
        }
    }
    let own = match single(c) {
        Some(own) => own,
        // The geminate mark has no spelling of its own; it doubles what follows.
        None if c == 'っ' => "",
        None => return c.to_string(),
    };
    if let Some(n) = next.filter(|n| SMALL_KANA.contains(*n)) {
        if c == 'っ' {
            return String::new();
        }
        // き + ょ -> kyo: drop the vowel, add the small kana.
        let small = single(n).expect("small kana are mapped");
        return format!("{}{small}", &own[..own.len() - 1]);
    }
    if SMALL_KANA.contains(c) {
        return String::new();
    }
    match c {
        // The long-vowel mark repeats the vowel of the kana before it.
        'ー' => match prev.and_then(single) {
            Some(p) => p[p.len() - 1..].into(),
            None => "-".into(),
        },
        'っ' => match next {
            Some('ち') => "t".into(),
            Some(n) if "あいうえおっ".contains(n) => "-".into(),
            Some(n) => match single(n) {
                Some(r) => r[..1].into(),
                None => "っ".into(),
            },
            None => "っ".into(),
        },
        'ん' if next.is_some_and(|n| "あいうえおやゆよ".contains(n)) => "n'".into(),
        _ => own.into(),
    }
}

/// Romaji for lowercased `text`, lowercased as the reference's Japanese cleaner does.
pub fn romanize(text: &str) -> Result<String> {
    let kana: Vec<char> = text.chars().map(to_hiragana).collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in kana.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| kana[j]);
        let next = kana.get(i + 1).copied();
        out.push_str(&romaji_of(prev, c, next));
    }
    Ok(out.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hiragana_and_katakana_read_alike() {
        assert_eq!(romanize("すみません").unwrap(), "sumimasen");
        assert_eq!(romanize("スミマセン").unwrap(), "sumimasen");
    }

    #[test]
    fn digraphs_geminates_and_long_vowels() {
        assert_eq!(romanize("ちょっと").unwrap(), "chotto");
        assert_eq!(romanize("ガッコウ").unwrap(), "gakkou");
        assert_eq!(romanize("まっちゃ").unwrap(), "matcha");
        assert_eq!(romanize("きょう").unwrap(), "kyou");
        assert_eq!(romanize("ラーメン").unwrap(), "raamen");
        assert_eq!(romanize("きんえん").unwrap(), "kin'en");
    }

    #[test]
    fn other_characters_pass_through() {
        assert_eq!(romanize("東京です。").unwrap(), "東京desu.");
        assert_eq!(romanize("").unwrap(), "");
    }
}
