//! Hungarian (num2words `lang_HU`).

use anyhow::{anyhow, bail, Result};

use super::base;
use super::cards::{self, Cards};
use super::en::eu_forms;
use super::pyfloat;
use super::{Currency, NumberWords};

pub struct Hungarian {
    cards: Cards,
}

const UNITS: [&str; 9] = ["kilenc", "nyolc", "hét", "hat", "öt", "négy", "három", "kettő", "egy"];

impl Hungarian {
    pub fn new() -> Self {
        let high = cards::long_scale(&cards::eu_high_words(), Some("illiárd"), "illió");
        let mid = [
            (1000, "ezer"),
            (100, "száz"),
            (90, "kilencven"),
            (80, "nyolcvan"),
            (70, "hetven"),
            (60, "hatvan"),
            (50, "ötven"),
            (40, "negyven"),
            (30, "harminc"),
        ];
        let mut low: Vec<String> = UNITS.iter().map(|w| format!("huszon{w}")).collect();
        low.push("húsz".into());
        low.extend(UNITS.iter().map(|w| format!("tizen{w}")));
        low.push("tíz".into());
        low.extend(UNITS.iter().map(|w| w.to_string()));
        low.push("nulla".into());
        let low: Vec<&str> = low.iter().map(String::as_str).collect();
        Hungarian {
            cards: Cards::new(high, &mid, &low),
        }
    }

    fn card(&self, n: u128) -> Result<&str> {
        self.cards.get(n).ok_or_else(|| anyhow!("no Hungarian word for {n}"))
    }

    /// `to_cardinal(value, zero)`: inside compounds zero is silent and two is "két".
    fn words(&self, n: u128, zero: &str) -> Result<String> {
        Ok(match n {
            0 => zero.to_string(),
            2 if zero.is_empty() => "két".to_string(),
            1..30 => self.card(n)?.to_string(),
            30..100 => match self.cards.get(n) {
                Some(w) => w.to_string(),
                None => format!("{}{}", self.card(n / 10 * 10)?, self.words(n % 10, "nulla")?),
            },
            100..1000 => {
                let prefix = if n / 100 == 1 {
                    "száz".to_string()
                } else {
                    format!("{}száz", self.words(n / 100, "")?)
                };
                format!("{prefix}{}", self.words(n % 100, "")?)
            }
            1000..1_000_000 => {
                let prefix = if n / 1000 == 1 {
                    "ezer".to_string()
                } else {
                    format!("{}ezer", self.words(n / 1000, "")?)
                };
                let postfix = self.words(n % 1000, "")?;
                let dash = if n <= 2000 || postfix.is_empty() { "" } else { "-" };
                format!("{prefix}{dash}{postfix}")
            }
            _ => {
                let mut digits = n.to_string().len() as u32;
                if digits.is_multiple_of(3) {
                    digits -= 2;
                }
                let exp = 10u128.pow(digits / 3 * 3);
                let rest = self.words(n % exp, "")?;
                let dash_rest = if rest.is_empty() {
                    String::new()
                } else {
                    format!("-{rest}")
                };
                format!("{}{}{dash_rest}", self.words(n / exp, "")?, self.card(exp)?)
            }
        })
    }
}

const PARTIAL_ORDINALS: [(&str, &str); 23] = [
    ("nulla", "nullad"),
    ("egy", "egyed"),
    ("kettő", "ketted"),
    ("három", "harmad"),
    ("négy", "negyed"),
    ("öt", "ötöd"),
    ("hat", "hatod"),
    ("hét", "heted"),
    ("nyolc", "nyolcad"),
    ("kilenc", "kilenced"),
    ("tíz", "tized"),
    ("húsz", "huszad"),
    ("harminc", "harmincad"),
    ("negyven", "negyvened"),
    ("ötven", "ötvened"),
    ("hatvan", "hatvanad"),
    ("hetven", "hetvened"),
    ("nyolcvan", "nyolcvanad"),
    ("kilencven", "kilencvened"),
    ("száz", "század"),
    ("ezer", "ezred"),
    ("illió", "milliomod"),
    ("illiárd", "milliárdod"),
];

impl NumberWords for Hungarian {
    fn cardinal(&self, n: u128) -> Result<String> {
        self.words(n, "nulla")
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        match n {
            1 => return Ok("első".into()),
            2 => return Ok("második".into()),
            _ => {}
        }
        let mut out = self.cardinal(n)?;
        if let Some((card, ord)) = PARTIAL_ORDINALS.iter().find(|(card, _)| out.ends_with(card)) {
            out = format!("{}{ord}", &out[..out.len() - card.len()]);
        }
        Ok(format!("{out}ik"))
    }

    fn decimal(&self, x: f64) -> Result<String> {
        if x.fract() == 0.0 && x < 1e6 {
            return self.cardinal(x as u128);
        }
        // "<int> egész <fraction> <tized|század|ezred>"
        let repr = pyfloat::repr(x);
        let Some((left, right)) = repr.split_once('.') else {
            bail!("cannot read {repr} in Hungarian")
        };
        let denominator = self
            .card(10u128.pow(right.len() as u32))
            .map_err(|_| anyhow!("too many decimals: {repr}"))?;
        let part = PARTIAL_ORDINALS
            .iter()
            .find(|(card, _)| *card == denominator)
            .map(|(_, ord)| *ord)
            .ok_or_else(|| anyhow!("too many decimals: {repr}"))?;
        Ok(format!(
            "{} egész {} {part}",
            self.cardinal(left.parse()?)?,
            self.cardinal(right.parse()?)?
        ))
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        base::currency(amount, eu_forms(currency), ",", &|n| self.cardinal(n), &base::plural_eu)
    }
}
