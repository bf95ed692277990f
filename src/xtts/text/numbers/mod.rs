//! Number expansion (`expand_numbers_multilingual` of the reference): thousands separators,
//! currency amounts, decimals, ordinals and cardinals become words, with the wording of
//! Python num2words 0.5.14 for each language.

mod base;
mod cards;
mod pyfloat;
mod slavic;

mod ar;
mod cs;
mod de;
mod en;
mod es;
mod fr;
mod hu;
mod it;
mod ko;
mod nl;
mod pl;
mod pt;
mod ru;
mod tr;

use std::sync::LazyLock;

use anyhow::{anyhow, bail, Context, Result};
use regex::{Captures, Regex};

/// The currencies the reference reads out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Currency {
    Gbp,
    Usd,
    Eur,
}

/// One language's number words, as num2words 0.5.14 spells them. Every method can fail
/// where num2words raises; the caller decides whether that aborts the text.
pub trait NumberWords: Sync {
    /// `num2words(n, lang=..)`.
    fn cardinal(&self, n: u128) -> Result<String>;
    /// `num2words(n, lang=.., ordinal=True)`.
    fn ordinal(&self, n: u128) -> Result<String>;
    /// `num2words(float, lang=..)`.
    fn decimal(&self, x: f64) -> Result<String>;
    /// `num2words(float, to="currency", currency=.., lang=..)`.
    fn currency(&self, amount: f64, currency: Currency) -> Result<String>;
}

/// The number words for `lang` (a base code like "en"), if num2words has that language.
pub fn words_for(lang: &str) -> Option<&'static dyn NumberWords> {
    static EN: LazyLock<en::English> = LazyLock::new(en::English::new);
    static ES: LazyLock<es::Spanish> = LazyLock::new(es::Spanish::new);
    static FR: LazyLock<fr::French> = LazyLock::new(fr::French::new);
    static DE: LazyLock<de::German> = LazyLock::new(de::German::new);
    static PT: LazyLock<pt::Portuguese> = LazyLock::new(pt::Portuguese::new);
    static NL: LazyLock<nl::Dutch> = LazyLock::new(nl::Dutch::new);
    static HU: LazyLock<hu::Hungarian> = LazyLock::new(hu::Hungarian::new);
    static KO: LazyLock<ko::Korean> = LazyLock::new(ko::Korean::new);
    Some(match lang {
        "en" => &*EN,
        "es" => &*ES,
        "fr" => &*FR,
        "de" => &*DE,
        "it" => &it::Italian,
        "pt" => &*PT,
        "pl" => &pl::Polish,
        "nl" => &*NL,
        "cs" => &cs::Czech,
        "ru" => &ru::Russian,
        "tr" => &tr::Turkish,
        "hu" => &*HU,
        "ar" => &ar::Arabic,
        "ko" => &*KO,
        _ => return None,
    })
}

/// Words joining units and cents; a whole amount is cut at the last one of these.
fn and_separator(lang: &str) -> &'static str {
    match lang {
        "es" => " con ",
        "fr" => " et ",
        "de" => " und ",
        "pt" | "it" => " e ",
        _ => ", ",
    }
}

fn ordinal_regex(lang: &str) -> Option<&'static fancy_regex::Regex> {
    // These need look-ahead (`(?=\s|$)`), hence fancy_regex.
    static TABLE: LazyLock<Vec<(&'static str, fancy_regex::Regex)>> = LazyLock::new(|| {
        [
            ("en", r"([0-9]+)(st|nd|rd|th)"),
            ("es", r"([0-9]+)(º|ª|er|o|a|os|as)"),
            ("fr", r"([0-9]+)(º|ª|er|re|e|ème)"),
            ("de", r"([0-9]+)(st|nd|rd|th|º|ª|\.(?=\s|$))"),
            ("pt", r"([0-9]+)(º|ª|o|a|os|as)"),
            ("it", r"([0-9]+)(º|°|ª|o|a|i|e)"),
            ("pl", r"([0-9]+)(º|ª|st|nd|rd|th)"),
            ("ar", r"([0-9]+)(ون|ين|ث|ر|ى)"),
            ("cs", r"([0-9]+)\.(?=\s|$)"),
            ("ru", r"([0-9]+)(-й|-я|-е|-ое|-ье|-го)"),
            ("nl", r"([0-9]+)(de|ste|e)"),
            ("tr", r"([0-9]+)(\.|inci|nci|uncu|üncü|\.)"),
            ("hu", r"([0-9]+)(\.|adik|edik|odik|edik|ödik|ödike|ik)"),
            ("ko", r"([0-9]+)(번째|번|차|째)"),
            ("hi", r"([0-9]+)(st|nd|rd|th)"),
        ]
        .into_iter()
        .map(|(l, re)| (l, fancy_regex::Regex::new(&py_space(re)).expect("valid ordinal regex")))
        .collect()
    });
    TABLE.iter().find(|(l, _)| *l == lang).map(|(_, re)| re)
}

/// Python's `\s` also matches U+001C..U+001F; Rust's does not.
fn py_space(pattern: &str) -> String {
    pattern.replace(r"\s", r"[\s\x1C-\x1F]")
}

static COMMA_NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b\d{1,3}(,\d{3})*(\.\d+)?\b").unwrap());
// The reference leaves the first dot unescaped, so it matches any character; only literal
// dots are removed from the match.
static DOT_NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b\d{1,3}(.\d{3})*(,\d+)?\b").unwrap());
static DECIMAL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"([0-9]+[.,][0-9]+)").unwrap());
static INTEGER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9]+").unwrap());
static CURRENCIES: LazyLock<[(Currency, Regex); 3]> = LazyLock::new(|| {
    [
        (
            Currency::Gbp,
            Regex::new(r"((£[0-9.,]*[0-9]+)|([0-9.,]*[0-9]+£))").unwrap(),
        ),
        (
            Currency::Usd,
            Regex::new(r"((\$[0-9.,]*[0-9]+)|([0-9.,]*[0-9]+\$))").unwrap(),
        ),
        (
            Currency::Eur,
            Regex::new(r"(([0-9.,]*[0-9]+€)|((€[0-9.,]*[0-9]+)))").unwrap(),
        ),
    ]
});

/// `re.sub` with a fallible replacement: the first error aborts the whole substitution.
fn try_replace(re: &Regex, text: &str, f: impl Fn(&Captures) -> Result<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in re.captures_iter(text) {
        let m = caps.get(0).expect("group 0");
        out.push_str(&text[last..m.start()]);
        out.push_str(&f(&caps)?);
        last = m.end();
    }
    out.push_str(&text[last..]);
    Ok(out)
}

fn parse_int(digits: &str) -> Result<u128> {
    digits
        .parse::<u128>()
        .with_context(|| format!("number {digits:?} is too long to read out"))
}

/// Python's `float(str)` for the strings the patterns produce (digits and dots).
fn parse_float(s: &str) -> Result<f64> {
    if s.is_empty() || s == "." {
        bail!("not a number: {s:?}");
    }
    s.parse::<f64>().map_err(|_| anyhow!("not a number: {s:?}"))
}

fn expand_currency(caps: &Captures, lang: &str, words: &dyn NumberWords, currency: Currency) -> Result<String> {
    let raw = caps.get(0).expect("group 0").as_str().replace(',', ".");
    let kept: String = raw.chars().filter(|c| c.is_ascii_digit() || *c == '.').collect();
    let amount = parse_float(&kept)?;
    let mut spoken = words.currency(amount, currency)?;
    if amount.fract() == 0.0 {
        if let Some(pos) = spoken.rfind(and_separator(lang)) {
            spoken.truncate(pos);
        }
    }
    Ok(spoken)
}

/// An amount in `currency` read out as the reference reads `$12.50` in `lang` (a whole
/// amount without its zero cents).
pub fn currency_words(amount: f64, currency: Currency, lang: &str) -> Result<String> {
    let words = words_for(lang).ok_or_else(|| anyhow!("numbers cannot be read out in language {lang:?}"))?;
    let mut spoken = words.currency(amount, currency)?;
    if amount.fract() == 0.0 {
        if let Some(pos) = spoken.rfind(and_separator(lang)) {
            spoken.truncate(pos);
        }
    }
    Ok(spoken)
}

/// Expands numbers in already lowercased `text` for a language other than zh and ja.
pub fn expand_numbers(text: &str, lang: &str) -> Result<String> {
    let ordinal_re = ordinal_regex(lang).ok_or_else(|| anyhow!("no number rules for language {lang:?}"))?;
    let words = words_for(lang);
    let words = || words.ok_or_else(|| anyhow!("numbers cannot be read out in language {lang:?}"));

    let separators = if lang == "en" || lang == "ru" {
        &*COMMA_NUMBER
    } else {
        &*DOT_NUMBER
    };
    let sep_char = if lang == "en" || lang == "ru" { ',' } else { '.' };
    let mut text = separators
        .replace_all(text, |c: &Captures| c[0].replace(sep_char, ""))
        .into_owned();

    // The reference runs the three currency passes in one suppressed try block: the first
    // failure drops that pass and skips the remaining ones.
    for (currency, re) in CURRENCIES.iter() {
        let Ok(w) = words() else { break };
        match try_replace(re, &text, |c| expand_currency(c, lang, w, *currency)) {
            Ok(t) => text = t,
            Err(_) => break,
        }
    }
    if lang != "tr" {
        text = try_replace(&DECIMAL, &text, |c| {
            words()?.decimal(parse_float(&c[1].replace(',', "."))?)
        })?;
    }
    text = fancy_replace(ordinal_re, &text, |c| words()?.ordinal(parse_int(&c[1])?))?;
    try_replace(&INTEGER, &text, |c| words()?.cardinal(parse_int(&c[0])?))
}

fn fancy_replace(
    re: &fancy_regex::Regex,
    text: &str,
    f: impl Fn(&fancy_regex::Captures) -> Result<String>,
) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in re.captures_iter(text) {
        let caps = caps.context("ordinal pattern failed")?;
        let m = caps.get(0).expect("group 0");
        out.push_str(&text[last..m.start()]);
        out.push_str(&f(&caps)?);
        last = m.end();
    }
    out.push_str(&text[last..]);
    Ok(out)
}
