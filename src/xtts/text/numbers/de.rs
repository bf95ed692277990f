//! German (num2words `lang_DE`): compounds written as one word, capitalised big units.

use std::sync::LazyLock;

use anyhow::Result;
use regex::Regex;

use super::base::{self, CurrencyForms};
use super::cards::{self, Cards};
use super::{Currency, NumberWords};

pub struct German {
    cards: Cards,
}

impl German {
    pub fn new() -> Self {
        let lows = ["Non", "Okt", "Sept", "Sext", "Quint", "Quadr", "Tr", "B", "M"];
        let units = [
            "", "un", "duo", "tre", "quattuor", "quin", "sex", "sept", "okto", "novem",
        ];
        let tens = [
            "dez",
            "vigint",
            "trigint",
            "quadragint",
            "quinquagint",
            "sexagint",
            "septuagint",
            "oktogint",
            "nonagint",
        ];
        let mut high_words = vec!["zent".to_string()];
        high_words.extend(cards::latin_high_words(&units, &tens, &lows));
        let high = cards::long_scale(&high_words, Some("illiarde"), "illion");
        let mid = [
            (1000, "tausend"),
            (100, "hundert"),
            (90, "neunzig"),
            (80, "achtzig"),
            (70, "siebzig"),
            (60, "sechzig"),
            (50, "fünfzig"),
            (40, "vierzig"),
            (30, "dreißig"),
        ];
        let low = [
            "zwanzig",
            "neunzehn",
            "achtzehn",
            "siebzehn",
            "sechzehn",
            "fünfzehn",
            "vierzehn",
            "dreizehn",
            "zwölf",
            "elf",
            "zehn",
            "neun",
            "acht",
            "sieben",
            "sechs",
            "fünf",
            "vier",
            "drei",
            "zwei",
            "eins",
            "null",
        ];
        German {
            cards: Cards::new(high, &mid, &low),
        }
    }
}

const MILLION: u128 = 1_000_000;

fn merge((ctext, cnum): (&str, u128), (ntext, nnum): (&str, u128)) -> (String, u128) {
    let mut ctext = ctext.to_string();
    let mut ntext = ntext.to_string();
    if cnum == 1 {
        if nnum == 100 || nnum == 1000 {
            return (format!("ein{ntext}"), nnum);
        } else if nnum < MILLION {
            return (ntext, nnum);
        }
        ctext = "eine".into();
    }
    let val;
    if nnum > cnum {
        if nnum >= MILLION {
            if cnum > 1 {
                ntext.push_str(if ntext.ends_with('e') { "n" } else { "en" });
            }
            ctext.push(' ');
        }
        val = cnum * nnum;
    } else {
        if nnum < 10 && 10 < cnum && cnum < 100 {
            // "einundzwanzig": units first.
            if nnum == 1 {
                ntext = "ein".into();
            }
            (ntext, ctext) = (ctext, format!("{ntext}und"));
        } else if cnum >= MILLION {
            ctext.push(' ');
        }
        val = cnum + nnum;
    }
    (format!("{ctext}{ntext}"), val)
}

const ORDINAL_ENDINGS: [(&str, &str); 11] = [
    ("eins", "ers"),
    ("drei", "drit"),
    ("acht", "ach"),
    ("sieben", "sieb"),
    ("ig", "igs"),
    ("ert", "erts"),
    ("end", "ends"),
    ("ion", "ions"),
    ("nen", "ns"),
    ("rde", "rds"),
    ("rden", "rds"),
];

fn forms(currency: Currency) -> CurrencyForms {
    match currency {
        Currency::Eur => (("Euro", "Euro"), ("Cent", "Cent")),
        Currency::Gbp => (("Pfund", "Pfund"), ("Penny", "Pence")),
        Currency::Usd => (("Dollar", "Dollar"), ("Cent", "Cent")),
    }
}

/// Drops "eine " and the space before a final big-unit ordinal ("eine millionste" -> "millionste").
fn join_big_unit(res: &str) -> String {
    static EINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"eine ([a-z]+(illion|illiard)ste)$").unwrap());
    static SPACE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r" ([a-z]+(illion|illiard)ste)$").unwrap());
    let res = EINE.replace(res, "$1");
    SPACE.replace(&res, "$1").into_owned()
}

impl NumberWords for German {
    fn cardinal(&self, n: u128) -> Result<String> {
        self.cards.cardinal(n, &merge)
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        let mut word = self.cardinal(n)?.to_lowercase();
        for (end, repl) in ORDINAL_ENDINGS {
            if let Some(stem) = word.strip_suffix(end) {
                word = format!("{stem}{repl}");
                break;
            }
        }
        let mut res = format!("{word}te");
        if res == "eintausendste" || res == "einhundertste" {
            res = res.replacen("ein", "", 1);
        }
        Ok(join_big_unit(&res))
    }

    fn decimal(&self, x: f64) -> Result<String> {
        base::decimal(x, "Komma", &|n| self.cardinal(n))
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        let s = base::currency(amount, forms(currency), " und", &|n| self.cardinal(n), &base::plural_eu)?;
        Ok(s.replace("eins ", "ein "))
    }
}
