//! The three-digit-chunk reading num2words uses for Polish and Czech (and, with grammatical
//! cases, Russian): hundreds, tens, teens and units per chunk, then the chunk's power of a
//! thousand in the plural form the chunk's value asks for.

use anyhow::{anyhow, Result};

/// One language's word tables for [`int_to_words`].
pub struct ChunkWords {
    pub zero: &'static str,
    /// 1..=9
    pub ones: [&'static str; 9],
    /// 10..=19
    pub teens: [&'static str; 10],
    /// 20, 30, ..., 90
    pub tens: [&'static str; 8],
    /// 100, 200, ..., 900
    pub hundreds: [&'static str; 9],
    /// Forms of 1000^k for k = 1, 2, ...: (one, few, many).
    pub thousands: &'static [(&'static str, &'static str, &'static str)],
}

/// The chunks of `n` in groups of three digits, most significant first (`splitbyx`).
pub fn chunks(n: u128) -> Vec<u32> {
    let s = n.to_string();
    let head = s.len() % 3;
    let mut out = Vec::new();
    if s.len() > 3 && head > 0 {
        out.push(s[..head].parse().expect("digits"));
    }
    let start = if s.len() > 3 { head } else { 0 };
    let mut i = start;
    while i < s.len() {
        let end = if s.len() > 3 { (i + 3).min(s.len()) } else { s.len() };
        out.push(s[i..end].parse().expect("digits"));
        i = end;
    }
    out
}

/// (ones, tens, hundreds) digits of a chunk (`get_digits`).
pub fn digits(x: u32) -> (usize, usize, usize) {
    ((x % 10) as usize, (x / 10 % 10) as usize, (x / 100 % 10) as usize)
}

/// Polish/Czech plural choice: 1 -> one, 2-4 (not 12-14) -> few, else many.
pub fn plural_form<'a>(n: u128, forms: (&'a str, &'a str, &'a str)) -> &'a str {
    if n == 1 {
        forms.0
    } else if (2..5).contains(&(n % 10)) && (n % 100 < 10 || n % 100 > 20) {
        forms.1
    } else {
        forms.2
    }
}

/// `_int2word` of lang_PL / lang_CS.
pub fn int_to_words(n: u128, w: &ChunkWords) -> Result<String> {
    if n == 0 {
        return Ok(w.zero.to_string());
    }
    let chunks = chunks(n);
    let mut words: Vec<&str> = Vec::new();
    let mut i = chunks.len();
    for &x in &chunks {
        i -= 1;
        if x == 0 {
            continue;
        }
        let (n1, n2, n3) = digits(x);
        if n3 > 0 {
            words.push(w.hundreds[n3 - 1]);
        }
        if n2 > 1 {
            words.push(w.tens[n2 - 2]);
        }
        if n2 == 1 {
            words.push(w.teens[n1]);
        } else if n1 > 0 && !(i > 0 && x == 1) {
            words.push(w.ones[n1 - 1]);
        }
        if i > 0 {
            let forms = w
                .thousands
                .get(i - 1)
                .ok_or_else(|| anyhow!("number {n} is too large for words"))?;
            words.push(plural_form(x as u128, *forms));
        }
    }
    Ok(words.join(" "))
}

/// `to_cardinal(float)` of lang_PL / lang_CS: "<int> <point> <zeros> <fraction as integer>",
/// read from Python's `str(float)`.
pub fn decimal_words(repr: &str, pointword: &str, w: &ChunkWords) -> Result<String> {
    let n = repr.replace(',', ".");
    let Some((left, right)) = n.split_once('.') else {
        return int_to_words(n.parse().map_err(|_| anyhow!("cannot read {repr}"))?, w);
    };
    let zeros = right.len() - right.trim_start_matches('0').len();
    let fraction = int_to_words(right.parse().map_err(|_| anyhow!("cannot read {repr}"))?, w)?;
    let int = int_to_words(left.parse().map_err(|_| anyhow!("cannot read {repr}"))?, w)?;
    Ok(format!(
        "{int} {pointword} {}{fraction}",
        format!("{} ", w.zero).repeat(zeros)
    ))
}
