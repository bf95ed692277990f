//! French (num2words `lang_FR`).

use anyhow::Result;

use super::base::{self, CurrencyForms};
use super::cards::{self, Cards};
use super::{Currency, NumberWords};

pub struct French {
    cards: Cards,
}

impl French {
    pub fn new() -> Self {
        let high = cards::long_scale(&cards::eu_high_words(), Some("illiard"), "illion");
        let mid = [
            (1000, "mille"),
            (100, "cent"),
            (80, "quatre-vingts"),
            (60, "soixante"),
            (50, "cinquante"),
            (40, "quarante"),
            (30, "trente"),
        ];
        let low = [
            "vingt", "dix-neuf", "dix-huit", "dix-sept", "seize", "quinze", "quatorze", "treize", "douze", "onze",
            "dix", "neuf", "huit", "sept", "six", "cinq", "quatre", "trois", "deux", "un", "zéro",
        ];
        French {
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
    } else {
        // "quatre-vingts"/"cents" lose their plural s when something follows.
        let drops_s = (cnum >= 80 && (cnum - 80) % 100 == 0) || (cnum % 100 == 0 && cnum < 1000);
        if drops_s && nnum < 1_000_000 && ctext.ends_with('s') {
            ctext.pop();
        }
        if cnum < 1000 && nnum != 1000 && !ntext.ends_with('s') && nnum % 100 == 0 {
            ntext.push('s');
        }
    }
    if nnum < cnum && cnum < 100 {
        if nnum % 10 == 1 && cnum != 80 {
            return (format!("{ctext} et {ntext}"), cnum + nnum);
        }
        return (format!("{ctext}-{ntext}"), cnum + nnum);
    }
    if nnum > cnum {
        return (format!("{ctext} {ntext}"), cnum * nnum);
    }
    (format!("{ctext} {ntext}"), cnum + nnum)
}

fn forms(currency: Currency) -> CurrencyForms {
    match currency {
        Currency::Eur => (("euro", "euros"), ("centime", "centimes")),
        Currency::Usd => (("dollar", "dollars"), ("cent", "cents")),
        Currency::Gbp => (("livre", "livres"), ("penny", "pence")),
    }
}

impl NumberWords for French {
    fn cardinal(&self, n: u128) -> Result<String> {
        self.cards.cardinal(n, &merge)
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        if n == 1 {
            return Ok("premier".into());
        }
        let word = self.cardinal(n)?;
        if let Some(stem) = word.strip_suffix("cinq") {
            return Ok(format!("{stem}cinquième"));
        }
        if let Some(stem) = word.strip_suffix("neuf") {
            return Ok(format!("{stem}neuvième"));
        }
        let stem = word.strip_suffix('e').unwrap_or(&word);
        Ok(format!("{stem}ième"))
    }

    fn decimal(&self, x: f64) -> Result<String> {
        base::decimal(x, "virgule", &|n| self.cardinal(n))
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        base::currency(amount, forms(currency), " et", &|n| self.cardinal(n), &base::plural_eu)
    }
}
