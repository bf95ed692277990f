//! English (num2words `lang_EN`): short scale, "and" after hundreds, commas between groups.

use anyhow::Result;

use super::base::{self, CurrencyForms};
use super::cards::{self, Cards};
use super::{Currency, NumberWords};

pub struct English {
    cards: Cards,
}

impl English {
    pub fn new() -> Self {
        let high = cards::short_scale(&cards::eu_high_words(), "illion");
        let mid = [
            (1000, "thousand"),
            (100, "hundred"),
            (90, "ninety"),
            (80, "eighty"),
            (70, "seventy"),
            (60, "sixty"),
            (50, "fifty"),
            (40, "forty"),
            (30, "thirty"),
        ];
        let low = [
            "twenty",
            "nineteen",
            "eighteen",
            "seventeen",
            "sixteen",
            "fifteen",
            "fourteen",
            "thirteen",
            "twelve",
            "eleven",
            "ten",
            "nine",
            "eight",
            "seven",
            "six",
            "five",
            "four",
            "three",
            "two",
            "one",
            "zero",
        ];
        English {
            cards: Cards::new(high, &mid, &low),
        }
    }
}

fn merge((ltext, lnum): (&str, u128), (rtext, rnum): (&str, u128)) -> (String, u128) {
    if lnum == 1 && rnum < 100 {
        (rtext.to_string(), rnum)
    } else if 100 > lnum && lnum > rnum {
        (format!("{ltext}-{rtext}"), lnum + rnum)
    } else if lnum >= 100 && 100 > rnum {
        (format!("{ltext} and {rtext}"), lnum + rnum)
    } else if rnum > lnum {
        (format!("{ltext} {rtext}"), lnum * rnum)
    } else {
        (format!("{ltext}, {rtext}"), lnum + rnum)
    }
}

fn ordinal_word(word: &str) -> String {
    let irregular = [
        ("one", "first"),
        ("two", "second"),
        ("three", "third"),
        ("four", "fourth"),
        ("five", "fifth"),
        ("six", "sixth"),
        ("seven", "seventh"),
        ("eight", "eighth"),
        ("nine", "ninth"),
        ("ten", "tenth"),
        ("eleven", "eleventh"),
        ("twelve", "twelfth"),
    ];
    if let Some((_, ord)) = irregular.iter().find(|(card, _)| *card == word) {
        return ord.to_string();
    }
    match word.strip_suffix('y') {
        Some(stem) => format!("{stem}ieth"),
        None => format!("{word}th"),
    }
}

const FORMS_USD: CurrencyForms = (("dollar", "dollars"), ("cent", "cents"));
const FORMS_GBP: CurrencyForms = (("pound sterling", "pounds sterling"), ("penny", "pence"));
const FORMS_EUR: CurrencyForms = (("euro", "euro"), ("cent", "cents"));

/// The unit names `Num2Word_EU` gives English and every language that keeps its table.
pub fn eu_forms(currency: Currency) -> CurrencyForms {
    match currency {
        Currency::Usd => FORMS_USD,
        Currency::Gbp => FORMS_GBP,
        Currency::Eur => FORMS_EUR,
    }
}

impl NumberWords for English {
    fn cardinal(&self, n: u128) -> Result<String> {
        self.cards.cardinal(n, &merge)
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        // Replace the last word (after the last space and hyphen) by its ordinal.
        let words = self.cardinal(n)?;
        let (head, last) = match words.rfind([' ', '-']) {
            Some(i) => words.split_at(i + 1),
            None => ("", words.as_str()),
        };
        Ok(format!("{head}{}", ordinal_word(last)))
    }

    fn decimal(&self, x: f64) -> Result<String> {
        base::decimal(x, "point", &|n| self.cardinal(n))
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        base::currency(amount, eu_forms(currency), ",", &|n| self.cardinal(n), &base::plural_eu)
    }
}
