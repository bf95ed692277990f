//! Italian (num2words `lang_IT`): words built by concatenation with vowel elision, and a
//! final accent on compounds ending in "tre".

use anyhow::{bail, Result};

use super::base::{self, CurrencyForms};
use super::pyfloat;
use super::{Currency, NumberWords};

pub struct Italian;

const CARDINAL_WORDS: [&str; 20] = [
    "zero",
    "uno",
    "due",
    "tre",
    "quattro",
    "cinque",
    "sei",
    "sette",
    "otto",
    "nove",
    "dieci",
    "undici",
    "dodici",
    "tredici",
    "quattordici",
    "quindici",
    "sedici",
    "diciassette",
    "diciotto",
    "diciannove",
];
const ORDINAL_WORDS: [&str; 20] = [
    "zero",
    "primo",
    "secondo",
    "terzo",
    "quarto",
    "quinto",
    "sesto",
    "settimo",
    "ottavo",
    "nono",
    "decimo",
    "undicesimo",
    "dodicesimo",
    "tredicesimo",
    "quattordicesimo",
    "quindicesimo",
    "sedicesimo",
    "diciassettesimo",
    "diciottesimo",
    "diciannovesimo",
];
const EXPONENT_PREFIXES: [&str; 11] = [
    "zero", "m", "b", "tr", "quadr", "quint", "sest", "sett", "ott", "nov", "dec",
];

/// Elides the vowel clash where two parts meet ("ventiotto" -> "ventotto").
fn contract(s: &str) -> String {
    s.replace("oo", "o")
        .replace("ao", "o")
        .replace("io", "o")
        .replace("au", "u")
        .replace("iu", "u")
}

fn omit_zero(s: String) -> String {
    if s == "zero" {
        String::new()
    } else {
        s
    }
}

/// Without its last `n` characters.
fn cut(s: &str, n: usize) -> String {
    s.chars().take(s.chars().count().saturating_sub(n)).collect()
}

/// Accent on a final "tre" of a compound ("ventitré"), none elsewhere.
fn accentuate(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            if w.ends_with("tre") && w.chars().count() > 3 {
                format!("{}tré", cut(&w.replace("tré", "tre"), 3))
            } else {
                w.replace("tré", "tre")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn exponent_name(len: usize) -> Result<String> {
    let Some(prefix) = EXPONENT_PREFIXES.get(len / 6) else {
        bail!("number too large for Italian words")
    };
    Ok(if len.is_multiple_of(6) {
        format!("{prefix}ilione")
    } else {
        format!("{prefix}iliardo")
    })
}

impl Italian {
    fn tens(&self, n: u128) -> String {
        let (tens, units) = ((n / 10) as usize, (n % 10) as usize);
        let prefix = match tens {
            2 => "venti".to_string(),
            3 => "trenta".to_string(),
            4 => "quaranta".to_string(),
            6 => "sessanta".to_string(),
            _ => format!("{}anta", cut(CARDINAL_WORDS[tens], 1)),
        };
        contract(&format!("{prefix}{}", omit_zero(CARDINAL_WORDS[units].to_string())))
    }

    fn hundreds(&self, n: u128) -> Result<String> {
        let h = (n / 100) as usize;
        let prefix = if h == 1 {
            "cento".to_string()
        } else {
            format!("{}cento", CARDINAL_WORDS[h])
        };
        Ok(contract(&format!("{prefix}{}", omit_zero(self.cardinal(n % 100)?))))
    }

    fn thousands(&self, n: u128) -> Result<String> {
        let t = n / 1000;
        let prefix = if t == 1 {
            "mille".to_string()
        } else {
            format!("{}mila", self.cardinal(t)?)
        };
        Ok(format!("{prefix}{}", omit_zero(self.cardinal(n % 1000)?)))
    }

    fn big(&self, n: u128) -> Result<String> {
        let digits = n.to_string();
        let len = digits.len();
        let head_len = if len.is_multiple_of(3) { 3 } else { len % 3 };
        let (head, rest) = digits.split_at(head_len);
        let mut infix = exponent_name(rest.len())?;
        let prefix = if head == "1" {
            "un ".to_string()
        } else {
            infix = format!(" {}i", cut(&infix, 1));
            self.cardinal(head.parse()?)?
        };
        let postfix = if rest.chars().all(|c| c == '0') {
            String::new()
        } else {
            let p = self.cardinal(rest.parse()?)?;
            infix.push_str(if p.contains(" e ") { ", " } else { " e " });
            p
        };
        Ok(format!("{prefix}{infix}{postfix}"))
    }
}

fn forms(currency: Currency) -> CurrencyForms {
    match currency {
        Currency::Eur => (("euro", "euro"), ("centesimo", "centesimi")),
        Currency::Usd => (("dollaro", "dollari"), ("centesimo", "centesimi")),
        Currency::Gbp => (("sterlina", "sterline"), ("penny", "penny")),
    }
}

impl NumberWords for Italian {
    fn cardinal(&self, n: u128) -> Result<String> {
        let s = match n {
            0..20 => CARDINAL_WORDS[n as usize].to_string(),
            20..100 => self.tens(n),
            100..1000 => self.hundreds(n)?,
            1000..1_000_000 => self.thousands(n)?,
            _ => self.big(n)?,
        };
        Ok(accentuate(&s))
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        let tens = n % 100;
        let outside_teens = !(10 < tens && tens < 20);
        if n < 20 {
            return Ok(ORDINAL_WORDS[n as usize].to_string());
        }
        let card = self.cardinal(n)?;
        if outside_teens && tens % 10 == 3 {
            return Ok(format!("{}eesimo", cut(&card, 1)));
        }
        if outside_teens && tens % 10 == 6 {
            return Ok(format!("{card}esimo"));
        }
        let mut stem = cut(&card, 1);
        if stem.ends_with("mil") {
            stem.push('l');
        }
        Ok(format!("{stem}esimo"))
    }

    fn decimal(&self, x: f64) -> Result<String> {
        // Every float is read as "<int> virgola <digits>", even a whole one ("dodici virgola zero").
        let repr = pyfloat::repr(x);
        let Some((_, frac)) = repr.split_once('.') else {
            bail!("cannot read {repr} in Italian")
        };
        let mut digits = Vec::new();
        for c in frac.chars() {
            let Some(d) = c.to_digit(10) else {
                bail!("cannot read {repr} in Italian")
            };
            digits.push(self.cardinal(d as u128)?);
        }
        let int = self.cardinal(x.trunc() as u128)?;
        Ok(accentuate(&format!("{int} virgola {}", digits.join(" "))))
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        let mut s = base::currency(amount, forms(currency), " e", &|n| self.cardinal(n), &base::plural_eu)?;
        if currency == Currency::Gbp {
            let mut words: Vec<&str> = s.split(' ').collect();
            if words[0] == "uno" {
                words[0] = "una";
                s = words.join(" ");
            }
        }
        Ok(s.replace("uno", "un"))
    }
}
