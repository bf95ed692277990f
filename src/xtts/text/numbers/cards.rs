//! The table-driven cardinal engine shared by the num2words languages that describe
//! numbers as a card table plus a pairwise `merge` rule (en, fr, de, es, pt, nl, ko).
//!
//! A number is split recursively into (multiplier, card, remainder) groups, then adjacent
//! (word, value) pairs are merged left to right by the language's rule. The order of the
//! merges is part of the output (it decides where "and", hyphens and spaces go), so it
//! follows num2words' `splitnum` / `clean` exactly.

use anyhow::{anyhow, Result};

/// A (words, value) pair or a nested group still to be merged.
enum Node {
    Pair(String, u128),
    Group(Vec<Node>),
}

/// A language's rule joining two adjacent (words, value) pairs into one.
pub type Merge = dyn Fn((&str, u128), (&str, u128)) -> (String, u128);

/// Number words keyed by value, largest first.
pub struct Cards {
    entries: Vec<(u128, String)>,
}

impl Cards {
    /// Builds the table from "high" words (`10^k` powers, already computed), the mid words
    /// and the low words (listed from the largest value down to zero).
    pub fn new(high: Vec<(u128, String)>, mid: &[(u128, &str)], low: &[&str]) -> Self {
        let mut entries = high;
        entries.extend(mid.iter().map(|(n, w)| (*n, w.to_string())));
        let top = low.len() as u128;
        entries.extend(
            low.iter()
                .enumerate()
                .map(|(i, w)| (top - 1 - i as u128, w.to_string())),
        );
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        Cards { entries }
    }

    pub fn get(&self, value: u128) -> Option<&str> {
        self.entries.iter().find(|(n, _)| *n == value).map(|(_, w)| w.as_str())
    }

    fn word(&self, value: u128) -> Result<&str> {
        self.get(value).ok_or_else(|| anyhow!("no number word for {value}"))
    }

    fn split(&self, value: u128) -> Result<Vec<Node>> {
        for (card, word) in &self.entries {
            if *card > value {
                continue;
            }
            let (div, rem) = if value == 0 {
                (1, 0)
            } else {
                (value / card, value % card)
            };
            let mut out = Vec::new();
            if div == 1 {
                out.push(Node::Pair(self.word(1)?.to_string(), 1));
            } else {
                if div == value {
                    // Tally systems only; repeats the unit word.
                    return Ok(vec![Node::Pair(word.repeat(div as usize), div * card)]);
                }
                out.push(Node::Group(self.split(div)?));
            }
            out.push(Node::Pair(word.clone(), *card));
            if rem != 0 {
                out.push(Node::Group(self.split(rem)?));
            }
            return Ok(out);
        }
        Err(anyhow!("no number word at or below {value}"))
    }

    /// Cardinal words for `value` using `merge` to join pairs.
    pub fn cardinal(&self, value: u128, merge: &Merge) -> Result<String> {
        let nodes = self.split(value)?;
        match clean(nodes, merge) {
            Node::Pair(words, _) => Ok(words),
            Node::Group(_) => Err(anyhow!("number {value} did not reduce to words")),
        }
    }
}

/// num2words' `clean`: merge the first two pairs, flatten one level of groups, repeat.
fn clean(mut val: Vec<Node>, merge: &Merge) -> Node {
    loop {
        if val.len() == 1 {
            return val.pop().expect("one element");
        }
        let mut out = Vec::new();
        if let (Node::Pair(lw, ln), Node::Pair(rw, rn)) = (&val[0], &val[1]) {
            let (w, n) = merge((lw, *ln), (rw, *rn));
            out.push(Node::Pair(w, n));
            let rest: Vec<Node> = val.drain(2..).collect();
            if !rest.is_empty() {
                out.push(Node::Group(rest));
            }
        } else {
            for elem in val {
                match elem {
                    Node::Group(mut inner) if inner.len() == 1 => out.push(inner.pop().expect("one element")),
                    Node::Group(inner) => out.push(clean(inner, merge)),
                    pair => out.push(pair),
                }
            }
        }
        val = out;
    }
}

/// `10^exp` when it fits in u128.
pub fn pow10(exp: u32) -> Option<u128> {
    10u128.checked_pow(exp)
}

/// The Latin prefixes num2words' European languages build their big-number names from,
/// ordered from the largest (`novemnonagint`) down to `m`. `units`/`tens`/`lows` are the
/// language's spellings.
pub fn latin_high_words(units: &[&str], tens: &[&str], lows: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = tens
        .iter()
        .flat_map(|t| units.iter().map(move |u| format!("{u}{t}")))
        .collect();
    out.reverse();
    out.extend(lows.iter().map(|s| s.to_string()));
    out
}

/// Long-scale names (`Num2Word_EU.set_high_numwords`): each prefix gives `10^n` (giga
/// suffix) and `10^(n-3)` (mega suffix), n = 3 + 6 * count, counting down by 6.
pub fn long_scale(high: &[String], giga: Option<&str>, mega: &str) -> Vec<(u128, String)> {
    let cap = 3 + 6 * high.len() as u32;
    let mut out = Vec::new();
    for (i, word) in high.iter().enumerate() {
        let n = cap - 6 * i as u32;
        if let (Some(g), Some(v)) = (giga, pow10(n)) {
            out.push((v, format!("{word}{g}")));
        }
        if let Some(v) = pow10(n - 3) {
            out.push((v, format!("{word}{mega}")));
        }
    }
    out
}

/// Short-scale names (`Num2Word_EN.set_high_numwords`): `10^n` for n = 3 + 3 * count down to 6.
pub fn short_scale(high: &[String], suffix: &str) -> Vec<(u128, String)> {
    let cap = 3 + 3 * high.len() as u32;
    high.iter()
        .enumerate()
        .filter_map(|(i, word)| pow10(cap - 3 * i as u32).map(|v| (v, format!("{word}{suffix}"))))
        .collect()
}

/// The standard European prefix table (`Num2Word_EU.setup`), including the leading "cent".
pub fn eu_high_words() -> Vec<String> {
    let lows = ["non", "oct", "sept", "sext", "quint", "quadr", "tr", "b", "m"];
    let units = [
        "", "un", "duo", "tre", "quattuor", "quin", "sex", "sept", "octo", "novem",
    ];
    let tens = [
        "dec",
        "vigint",
        "trigint",
        "quadragint",
        "quinquagint",
        "sexagint",
        "septuagint",
        "octogint",
        "nonagint",
    ];
    let mut high = vec!["cent".to_string()];
    high.extend(latin_high_words(&units, &tens, &lows));
    high
}
