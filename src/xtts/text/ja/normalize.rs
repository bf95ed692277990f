//! The reference romaniser's text normalisation: NFKC (full-width letters and digits to
//! ASCII, half-width kana to full width, compatibility forms such as ㋿ spelt out), then the
//! curly quotes its width conversion turns into ASCII.
//!
//! The reference runs on Python 3.11, whose NFKC follows Unicode 14. Characters assigned
//! later are unknown there and pass unchanged, so they are kept out of NFKC here too.

use unicode_normalization::UnicodeNormalization;

/// `text` normalised as the reference does before MeCab.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut segment = String::new();
    for c in text.chars() {
        if after_unicode_14(c) {
            out.extend(segment.nfkc());
            segment.clear();
            out.push(c);
        } else {
            segment.push(c);
        }
    }
    out.extend(segment.nfkc());
    out.chars().map(quote_to_ascii).collect()
}

fn quote_to_ascii(c: char) -> char {
    match c {
        '\u{2018}' => '`',
        '\u{2019}' => '\'',
        '\u{201d}' => '"',
        _ => c,
    }
}

/// Whether `c` is one of the characters that NFKC changes or reorders in the Unicode of the
/// normalisation crate but that Unicode 14 had not assigned yet.
fn after_unicode_14(c: char) -> bool {
    let c = c as u32;
    NEWER_THAN_UNICODE_14
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

#[rustfmt::skip]
const NEWER_THAN_UNICODE_14: [(u32, u32); 43] = [
    (0x0558, 0x0558), (0x058B, 0x058C), (0x05C8, 0x05C9), (0x0897, 0x0897), (0x1ACF, 0x1AF0),
    (0x209D, 0x209F), (0xA7F1, 0xA7F1), (0x105C9, 0x105C9), (0x105E4, 0x105E4), (0x107BB, 0x107BF),
    (0x10D69, 0x10D6D), (0x10ECB, 0x10ECF), (0x10EF0, 0x10EFB), (0x10EFD, 0x10EFF), (0x11383, 0x11383),
    (0x11385, 0x11385), (0x1138E, 0x1138E), (0x11391, 0x11391), (0x113C5, 0x113C5), (0x113C7, 0x113C8),
    (0x113CE, 0x113D0), (0x11F41, 0x11F42), (0x16121, 0x16128), (0x1612F, 0x1612F), (0x16D68, 0x16D6A),
    (0x1B123, 0x1B126), (0x1CCD6, 0x1CCF9), (0x1D127, 0x1D128), (0x1D250, 0x1D252), (0x1D25B, 0x1D25C),
    (0x1D25F, 0x1D25F), (0x1D280, 0x1D281), (0x1D6A6, 0x1D6A6), (0x1DF95, 0x1DF95), (0x1DFCD, 0x1DFFF),
    (0x1E030, 0x1E06D), (0x1E08F, 0x1E08F), (0x1E4EC, 0x1E4EF), (0x1E5EE, 0x1E5EF), (0x1E6E3, 0x1E6E3),
    (0x1E6E6, 0x1E6E6), (0x1E6EE, 0x1E6EF), (0x1E6F5, 0x1E6F5),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_and_compatibility_forms() {
        assert_eq!(normalize("ｶﾞｯｺｳ’"), "ガッコウ'");
        assert_eq!(normalize("ＡＢＣ１２３"), "ABC123");
        assert_eq!(normalize("㋿"), "令和");
        assert_eq!(normalize("‘x”“"), "`x\"“");
    }

    #[test]
    fn characters_newer_than_unicode_14_stay() {
        assert_eq!(normalize("\u{1b123}"), "\u{1b123}");
        assert_eq!(normalize("ｶ\u{1ccf0}ｶ"), "カ\u{1ccf0}カ");
    }
}
