//! The fallback used when no pinyin dictionary is configured: each Hanzi read on its own
//! with the `pinyin` crate. Heteronyms inside words (重庆 chong2, 一个 yi2) can differ from
//! the reference, which reads by phrase; see `dictionary` for the exact reading.

use pinyin::ToPinyin;

/// Each Hanzi becomes its most common pinyin with the tone number at the end (5 for the
/// neutral tone); other characters pass through unchanged.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_hanzi_and_keeps_the_rest() {
        assert_eq!(to_pinyin("你好, ab"), "ni3hao3, ab");
        assert_eq!(to_pinyin("绿"), "lv4");
    }
}
