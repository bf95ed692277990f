//! European Portuguese (num2words `lang_PT`).

use anyhow::Result;
use regex::Regex;

use super::base::{self, CurrencyForms};
use super::cards::{self, Cards};
use super::{Currency, NumberWords};

pub struct Portuguese {
    cards: Cards,
}

impl Portuguese {
    pub fn new() -> Self {
        let lows: Vec<String> = ["quatr", "tr", "b", "m"].iter().map(|s| s.to_string()).collect();
        let high = cards::long_scale(&lows, None, "ilião");
        let mid = [
            (1000, "mil"),
            (100, "cem"),
            (90, "noventa"),
            (80, "oitenta"),
            (70, "setenta"),
            (60, "sessenta"),
            (50, "cinquenta"),
            (40, "quarenta"),
            (30, "trinta"),
        ];
        let low = [
            "vinte",
            "dezanove",
            "dezoito",
            "dezassete",
            "dezasseis",
            "quinze",
            "catorze",
            "treze",
            "doze",
            "onze",
            "dez",
            "nove",
            "oito",
            "sete",
            "seis",
            "cinco",
            "quatro",
            "três",
            "dois",
            "um",
            "zero",
        ];
        Portuguese {
            cards: Cards::new(high, &mid, &low),
        }
    }
}

const HUNDREDS: [&str; 10] = [
    "",
    "cento",
    "duzentos",
    "trezentos",
    "quatrocentos",
    "quinhentos",
    "seiscentos",
    "setecentos",
    "oitocentos",
    "novecentos",
];

/// Drops the last `n` characters.
fn cut(s: &str, n: usize) -> String {
    s.chars().take(s.chars().count().saturating_sub(n)).collect()
}

fn merge((ctext, cnum): (&str, u128), (ntext, nnum): (&str, u128)) -> (String, u128) {
    let mut ctext = ctext.to_string();
    let mut ntext = ntext.to_string();
    if cnum == 1 {
        if nnum < 1_000_000 {
            return (ntext, nnum);
        }
        ctext = "um".into();
    } else if cnum == 100 && nnum % 1000 != 0 {
        ctext = "cento".into();
    }
    if nnum < cnum {
        return (format!("{ctext} e {ntext}"), cnum + nnum);
    } else if nnum % 1_000_000_000 == 0 && cnum > 1 {
        ntext = format!("{}liões", cut(&ntext, 4));
    } else if nnum % 1_000_000 == 0 && cnum > 1 {
        ntext = format!("{}lhões", cut(&ntext, 4));
    }
    if ntext == "milião" {
        ntext = "milhão".into();
    }
    if nnum == 100 {
        ctext = HUNDREDS.get(cnum as usize).copied().unwrap_or("").to_string();
        ntext = String::new();
    } else {
        ntext = format!(" {ntext}");
    }
    (format!("{ctext}{ntext}"), cnum * nnum)
}

const ORD_UNITS: [&str; 10] = [
    "", "primeiro", "segundo", "terceiro", "quarto", "quinto", "sexto", "sétimo", "oitavo", "nono",
];
const ORD_TENS: [&str; 10] = [
    "",
    "décimo",
    "vigésimo",
    "trigésimo",
    "quadragésimo",
    "quinquagésimo",
    "sexagésimo",
    "septuagésimo",
    "octogésimo",
    "nonagésimo",
];
const ORD_HUNDREDS: [&str; 10] = [
    "",
    "centésimo",
    "ducentésimo",
    "tricentésimo",
    "quadrigentésimo",
    "quingentésimo",
    "seiscentésimo",
    "septigentésimo",
    "octigentésimo",
    "nongentésimo",
];

fn thousand_separator(idx: usize) -> Option<&'static str> {
    Some(match idx {
        3 => "milésimo",
        6 => "milionésimo",
        9 => "milésimo milionésimo",
        12 => "bilionésimo",
        15 => "milésimo bilionésimo",
        _ => return None,
    })
}

fn forms(currency: Currency) -> CurrencyForms {
    match currency {
        Currency::Eur => (("euro", "euros"), ("cêntimo", "cêntimos")),
        Currency::Usd => (("dólar", "dólares"), ("cêntimo", "cêntimos")),
        Currency::Gbp => (("libra", "libras"), ("péni", "pence")),
    }
}

impl NumberWords for Portuguese {
    fn cardinal(&self, n: u128) -> Result<String> {
        let mut result = self.cards.cardinal(n, &merge)?;
        // "mil e duzentos e ..." -> "mil duzentos e ...": drop the "e" after a big unit when
        // a hundreds word follows and another "e" comes later.
        for ext in [
            "mil",
            "milhão",
            "milhões",
            "mil milhões",
            "bilião",
            "biliões",
            "mil biliões",
        ] {
            let re = Regex::new(&format!(r"^.*{ext} e \w*entos? .*e")).expect("valid pattern");
            if re.is_match(&result) {
                result = result.replace(&format!("{ext} e"), ext);
            }
        }
        Ok(result)
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        let digits: Vec<u32> = n
            .to_string()
            .chars()
            .rev()
            .map(|c| c.to_digit(10).unwrap_or(0))
            .collect();
        let mut parts: Vec<&str> = Vec::new();
        let mut separator: Option<&str> = None;
        for (idx, d) in digits.iter().enumerate() {
            if idx > 0 && idx % 3 == 0 {
                separator = Some(
                    thousand_separator(idx).ok_or_else(|| anyhow::anyhow!("number {n} too large for an ordinal"))?,
                );
            }
            if *d != 0 {
                if let Some(sep) = separator.take() {
                    parts.push(sep);
                }
            }
            let table = [&ORD_UNITS, &ORD_TENS, &ORD_HUNDREDS][idx % 3];
            parts.push(table[*d as usize]);
        }
        parts.reverse();
        let joined = parts.join(" ");
        let result = joined.split_whitespace().collect::<Vec<_>>().join(" ");
        if result.starts_with("primeiro") && n != 1 {
            return Ok(result.chars().skip(9).collect());
        }
        Ok(result)
    }

    fn decimal(&self, x: f64) -> Result<String> {
        base::decimal(x, "vírgula", &|n| self.cardinal(n))
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        let (unit, _) = forms(currency);
        let mut result = base::currency(amount, forms(currency), " e", &|n| self.cardinal(n), &base::plural_eu)?;
        for ext in ["milhão", "milhões", "bilião", "biliões", "trilião", "triliões"] {
            let re = Regex::new(&format!(r"^.*{ext} {}", regex::escape(unit.1))).expect("valid pattern");
            if re.is_match(&result) {
                result = result.replacen(ext, &format!("{ext} de"), 1);
            }
        }
        Ok(result.replace(" e zero cêntimos", ""))
    }
}
