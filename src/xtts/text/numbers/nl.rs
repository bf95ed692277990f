//! Dutch (num2words `lang_NL`).

use anyhow::Result;

use super::base::{self, CurrencyForms};
use super::cards::{self, Cards};
use super::{Currency, NumberWords};

pub struct Dutch {
    cards: Cards,
}

impl Dutch {
    pub fn new() -> Self {
        let lows = ["non", "okt", "sept", "sext", "quint", "quadr", "tr", "b", "m"];
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
        let mut high_words = vec!["zend".to_string()];
        high_words.extend(cards::latin_high_words(&units, &tens, &lows));
        let high = cards::long_scale(&high_words, Some("iljard"), "iljoen");
        let mid = [
            (1000, "duizend"),
            (100, "honderd"),
            (90, "negentig"),
            (80, "tachtig"),
            (70, "zeventig"),
            (60, "zestig"),
            (50, "vijftig"),
            (40, "veertig"),
            (30, "dertig"),
        ];
        let low = [
            "twintig",
            "negentien",
            "achttien",
            "zeventien",
            "zestien",
            "vijftien",
            "veertien",
            "dertien",
            "twaalf",
            "elf",
            "tien",
            "negen",
            "acht",
            "zeven",
            "zes",
            "vijf",
            "vier",
            "drie",
            "twee",
            "één",
            "nul",
        ];
        Dutch {
            cards: Cards::new(high, &mid, &low),
        }
    }
}

const MILLION: u128 = 1_000_000;

fn merge((ctext, cnum): (&str, u128), (ntext, nnum): (&str, u128)) -> (String, u128) {
    let mut ctext = ctext.to_string();
    let mut ntext = ntext.to_string();
    if cnum == 1 {
        if nnum < MILLION {
            return (ntext, nnum);
        }
        ctext = "een".into();
    }
    let val;
    if nnum > cnum {
        if nnum >= MILLION {
            ctext.push(' ');
        }
        val = cnum * nnum;
    } else {
        if nnum < 10 && 10 < cnum && cnum < 100 {
            // "eenentwintig": units, "en", tens.
            if nnum == 1 {
                ntext = "een".into();
            }
            ntext.push_str(if ntext.ends_with('e') { "ën" } else { "en" });
            (ntext, ctext) = (ctext, ntext);
        } else if cnum >= MILLION {
            ctext.push(' ');
        }
        val = cnum + nnum;
    }
    (format!("{ctext}{ntext}"), val)
}

const ORDINAL_ENDINGS: [(&str, &str); 18] = [
    ("nul", "nuld"),
    ("één", "eerst"),
    ("twee", "tweed"),
    ("drie", "derd"),
    ("vier", "vierd"),
    ("vijf", "vijfd"),
    ("zes", "zesd"),
    ("zeven", "zevend"),
    ("acht", "achtst"),
    ("negen", "negend"),
    ("tien", "tiend"),
    ("elf", "elfd"),
    ("twaalf", "twaalfd"),
    ("ig", "igst"),
    ("erd", "erdst"),
    ("end", "endst"),
    ("joen", "joenst"),
    ("rd", "rdst"),
];

fn forms(currency: Currency) -> CurrencyForms {
    match currency {
        Currency::Eur => (("euro", "euro"), ("cent", "cent")),
        Currency::Gbp => (("pond", "pond"), ("penny", "pence")),
        Currency::Usd => (("dollar", "dollar"), ("cent", "cent")),
    }
}

impl NumberWords for Dutch {
    fn cardinal(&self, n: u128) -> Result<String> {
        self.cards.cardinal(n, &merge)
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        let mut word = self.cardinal(n)?;
        for (end, repl) in ORDINAL_ENDINGS {
            if let Some(stem) = word.strip_suffix(end) {
                word = format!("{stem}{repl}");
                break;
            }
        }
        Ok(format!("{word}e"))
    }

    fn decimal(&self, x: f64) -> Result<String> {
        base::decimal(x, "komma", &|n| self.cardinal(n))
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        // Dutch always uses the singular unit name.
        base::currency(amount, forms(currency), ",", &|n| self.cardinal(n), &|_, forms| forms.0)
    }
}
