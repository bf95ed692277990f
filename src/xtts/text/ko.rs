//! Hangul to Latin letters, the "academic" variant of the Revised Romanization the
//! reference uses: one syllable at a time, with a hyphen before a syllable whose initial
//! is silent or whose final+initial letters could be split two ways.

const INITIALS: [&str; 19] = [
    "g", "kk", "n", "d", "tt", "l", "m", "b", "pp", "s", "ss", "", "j", "jj", "ch", "k", "t", "p", "h",
];
const VOWELS: [&str; 21] = [
    "a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae", "oe", "yo", "u", "wo", "we", "wi", "yu", "eu",
    "ui", "i",
];
const FINALS: [&str; 28] = [
    "", "g", "kk", "gs", "n", "nj", "nh", "d", "l", "lg", "lm", "lb", "ls", "lt", "lp", "lh", "m", "b", "bs", "s",
    "ss", "ng", "j", "ch", "k", "t", "p", "h",
];

const FIRST_SYLLABLE: u32 = 0xAC00; // 가
const LAST_SYLLABLE: u32 = 0xD7A3; // 힣

/// (initial, vowel, final) indices of a precomposed Hangul syllable.
fn decompose(c: char) -> Option<(usize, usize, usize)> {
    let code = c as u32;
    if !(FIRST_SYLLABLE..=LAST_SYLLABLE).contains(&code) {
        return None;
    }
    let index = (code - FIRST_SYLLABLE) as usize;
    Some((index / 588, (index / 28) % 21, index % 28))
}

/// Whether `letters` (a final followed by an initial) splits into final + initial in more
/// than one way, so the reader needs a hyphen to know where the syllable starts.
fn ambiguous(letters: &str) -> bool {
    (0..letters.len())
        .filter(|&i| letters.is_char_boundary(i))
        .filter(|&i| FINALS.contains(&&letters[..i]) && INITIALS.contains(&&letters[i..]))
        .count()
        > 1
}

/// Romanizes every Hangul syllable of `text`; other characters pass through.
pub fn romanize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut prev_final: Option<usize> = None;
    for c in text.chars() {
        let Some((initial, vowel, fin)) = decompose(c) else {
            out.push(c);
            prev_final = None;
            continue;
        };
        if let Some(pf) = prev_final {
            let joined = format!("{}{}", FINALS[pf], INITIALS[initial]);
            if INITIALS[initial].is_empty() || ambiguous(&joined) {
                out.push('-');
            }
        }
        out.push_str(INITIALS[initial]);
        out.push_str(VOWELS[vowel]);
        out.push_str(FINALS[fin]);
        prev_final = Some(fin);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn romanizes_syllables_with_academic_hyphens() {
        assert_eq!(romanize("안녕하세요"), "annyeonghase-yo");
        assert_eq!(romanize("물엿"), "mul-yeos");
        assert_eq!(romanize("한국어 abc!"), "hangug-eo abc!");
    }
}
