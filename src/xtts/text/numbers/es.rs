//! Spanish (num2words `lang_ES`).

use anyhow::{anyhow, Result};

use super::base::{self, CurrencyForms};
use super::cards::{self, Cards};
use super::{Currency, NumberWords};

pub struct Spanish {
    cards: Cards,
}

impl Spanish {
    pub fn new() -> Self {
        let lows: Vec<String> = ["cuatr", "tr", "b", "m"].iter().map(|s| s.to_string()).collect();
        let high = cards::long_scale(&lows, None, "illón");
        let mid = [
            (1000, "mil"),
            (100, "cien"),
            (90, "noventa"),
            (80, "ochenta"),
            (70, "setenta"),
            (60, "sesenta"),
            (50, "cincuenta"),
            (40, "cuarenta"),
            (30, "treinta"),
        ];
        let low = [
            "veintinueve",
            "veintiocho",
            "veintisiete",
            "veintiséis",
            "veinticinco",
            "veinticuatro",
            "veintitrés",
            "veintidós",
            "veintiuno",
            "veinte",
            "diecinueve",
            "dieciocho",
            "diecisiete",
            "dieciséis",
            "quince",
            "catorce",
            "trece",
            "doce",
            "once",
            "diez",
            "nueve",
            "ocho",
            "siete",
            "seis",
            "cinco",
            "cuatro",
            "tres",
            "dos",
            "uno",
            "cero",
        ];
        Spanish {
            cards: Cards::new(high, &mid, &low),
        }
    }
}

fn merge((ctext, cnum): (&str, u128), (ntext, nnum): (&str, u128)) -> (String, u128) {
    let mut ctext = ctext.to_string();
    let mut ntext = ntext.to_string();
    if cnum == 1 {
        if nnum < 1_000_000 {
            return (ntext, nnum);
        }
        ctext = "un".into();
    } else if cnum == 100 && nnum % 1000 != 0 {
        ctext.push_str("to");
    }
    if nnum < cnum {
        if cnum < 100 {
            return (format!("{ctext} y {ntext}"), cnum + nnum);
        }
        return (format!("{ctext} {ntext}"), cnum + nnum);
    } else if nnum % 1_000_000 == 0 && cnum > 1 {
        // "millón" -> "millones"
        let keep: String = ntext.chars().take(ntext.chars().count().saturating_sub(3)).collect();
        ntext = format!("{keep}lones");
    }
    if nnum == 100 {
        match cnum {
            5 => {
                ctext = "quinien".into();
                ntext = String::new();
            }
            7 => ctext = "sete".into(),
            9 => ctext = "nove".into(),
            _ => {}
        }
        ntext.push_str("tos");
    } else {
        ntext = format!(" {ntext}");
    }
    (format!("{ctext}{ntext}"), cnum * nnum)
}

/// Ordinal stems by value (masculine "-o" is added by the caller).
fn ordinal_stem(n: u128) -> Option<&'static str> {
    Some(match n {
        1 => "primer",
        2 => "segund",
        3 => "tercer",
        4 => "cuart",
        5 => "quint",
        6 => "sext",
        7 => "séptim",
        8 => "octav",
        9 => "noven",
        10 => "décim",
        20 => "vigésim",
        30 => "trigésim",
        40 => "quadragésim",
        50 => "quincuagésim",
        60 => "sexagésim",
        70 => "septuagésim",
        80 => "octogésim",
        90 => "nonagésim",
        100 => "centésim",
        200 => "ducentésim",
        300 => "tricentésim",
        400 => "cuadrigentésim",
        500 => "quingentésim",
        600 => "sexcentésim",
        700 => "septigentésim",
        800 => "octigentésim",
        900 => "noningentésim",
        1_000 => "milésim",
        1_000_000 => "millonésim",
        1_000_000_000 => "billonésim",
        1_000_000_000_000 => "trillonésim",
        1_000_000_000_000_000 => "cuadrillonésim",
        _ => return None,
    })
}

fn stem(n: u128) -> Result<&'static str> {
    ordinal_stem(n).ok_or_else(|| anyhow!("no Spanish ordinal stem for {n}"))
}

fn forms(currency: Currency) -> CurrencyForms {
    match currency {
        Currency::Eur => (("euro", "euros"), ("céntimo", "céntimos")),
        Currency::Usd => (("dólar", "dólares"), ("centavo", "centavos")),
        Currency::Gbp => (("libra", "libras"), ("penique", "peniques")),
    }
}

impl Spanish {
    fn ordinal_text(&self, n: u128) -> Result<String> {
        let text = if n == 0 {
            String::new()
        } else if n <= 10 {
            format!("{}o", stem(n)?)
        } else if n <= 12 {
            format!("{}o{}", stem(10)?, self.ordinal_text(n - 10)?)
        } else if n <= 100 {
            let dec = n / 10 * 10;
            format!("{}o {}", stem(dec)?, self.ordinal_text(n - dec)?)
        } else if n <= 1000 {
            let cen = n / 100 * 100;
            format!("{}o {}", stem(cen)?, self.ordinal_text(n - cen)?)
        } else if n < 1_000_000_000_000_000_000 {
            // 1000 ** int(math.log(n, 1000)), in floating point as the reference computes it.
            let power = ((n as f64).ln() / 1000f64.ln()) as u32;
            let dec = 1000u128.pow(power);
            let (high, low) = (n / dec, n % dec);
            let cardinal = if high != 1 { self.cardinal(high)? } else { String::new() };
            format!("{cardinal}{}o {}", stem(dec)?, self.ordinal_text(low)?)
        } else {
            self.cardinal(n)?
        };
        Ok(text.trim().to_string())
    }
}

impl NumberWords for Spanish {
    fn cardinal(&self, n: u128) -> Result<String> {
        self.cards.cardinal(n, &merge)
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        self.ordinal_text(n)
    }

    fn decimal(&self, x: f64) -> Result<String> {
        base::decimal(x, "punto", &|n| self.cardinal(n))
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        let separator = " con";
        let s = base::currency(
            amount,
            forms(currency),
            separator,
            &|n| self.cardinal(n),
            &base::plural_eu,
        )?;
        let joint = format!("{separator} ");
        let mut parts: Vec<String> = s.split(&joint).map(str::to_string).collect();
        // Feminine units ("una libra") and the apocopated "un"/"veintiún".
        if currency == Currency::Gbp {
            parts[0] = parts[0].replace("uno", "una").replace("cientos", "cientas");
        }
        for part in parts.iter_mut().take(2) {
            *part = part.replace("veintiuno", "veintiún").replace("uno", "un");
        }
        Ok(parts.join(&joint))
    }
}
