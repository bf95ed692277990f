//! Polish (num2words `lang_PL`).

use anyhow::{anyhow, bail, Result};

use super::pyfloat;
use super::slavic::{self, ChunkWords};
use super::{Currency, NumberWords};

pub struct Polish;

/// 10^(3k) names: tysiąc, then mi-lion, mi-liard, bi-lion, ... as num2words builds them.
const THOUSANDS: [(&str, &str, &str); 21] = [
    ("tysiąc", "tysiące", "tysięcy"),
    ("milion", "miliony", "milionów"),
    ("miliard", "miliardy", "miliardów"),
    ("bilion", "biliony", "bilionów"),
    ("biliard", "biliardy", "biliardów"),
    ("trylion", "tryliony", "trylionów"),
    ("tryliard", "tryliardy", "tryliardów"),
    ("kwadrylion", "kwadryliony", "kwadrylionów"),
    ("kwadryliard", "kwadryliardy", "kwadryliardów"),
    ("kwintylion", "kwintyliony", "kwintylionów"),
    ("kwintyliard", "kwintyliardy", "kwintyliardów"),
    ("sekstylion", "sekstyliony", "sekstylionów"),
    ("sekstyliard", "sekstyliardy", "sekstyliardów"),
    ("septylion", "septyliony", "septylionów"),
    ("septyliard", "septyliardy", "septyliardów"),
    ("oktylion", "oktyliony", "oktylionów"),
    ("oktyliard", "oktyliardy", "oktyliardów"),
    ("nonylion", "nonyliony", "nonylionów"),
    ("nonyliard", "nonyliardy", "nonyliardów"),
    ("decylion", "decyliony", "decylionów"),
    ("decyliard", "decyliardy", "decyliardów"),
];

const WORDS: ChunkWords = ChunkWords {
    zero: "zero",
    ones: [
        "jeden",
        "dwa",
        "trzy",
        "cztery",
        "pięć",
        "sześć",
        "siedem",
        "osiem",
        "dziewięć",
    ],
    teens: [
        "dziesięć",
        "jedenaście",
        "dwanaście",
        "trzynaście",
        "czternaście",
        "piętnaście",
        "szesnaście",
        "siedemnaście",
        "osiemnaście",
        "dziewiętnaście",
    ],
    tens: [
        "dwadzieścia",
        "trzydzieści",
        "czterdzieści",
        "pięćdziesiąt",
        "sześćdziesiąt",
        "siedemdziesiąt",
        "osiemdziesiąt",
        "dziewięćdziesiąt",
    ],
    hundreds: [
        "sto",
        "dwieście",
        "trzysta",
        "czterysta",
        "pięćset",
        "sześćset",
        "siedemset",
        "osiemset",
        "dziewięćset",
    ],
    thousands: &THOUSANDS,
};

/// Ordinal words 1..=19: (standalone, compound prefix).
const ONES_ORDINALS: [(&str, &str); 19] = [
    ("pierwszy", "pierwszo"),
    ("drugi", "dwu"),
    ("trzeci", "trzy"),
    ("czwarty", "cztero"),
    ("piąty", "pięcio"),
    ("szósty", "sześcio"),
    ("siódmy", "siedmio"),
    ("ósmy", "ośmio"),
    ("dziewiąty", "dziewięcio"),
    ("dziesiąty", "dziesięcio"),
    ("jedenasty", "jedenasto"),
    ("dwunasty", "dwunasto"),
    ("trzynasty", "trzynasto"),
    ("czternasty", "czternasto"),
    ("piętnasty", "piętnasto"),
    ("szesnasty", "szesnasto"),
    ("siedemnasty", "siedemnasto"),
    ("osiemnasty", "osiemnasto"),
    ("dziewiętnasty", "dziewiętnasto"),
];
/// 20, 30, ..., 90.
const TENS_ORDINALS: [(&str, &str); 8] = [
    ("dwudziesty", "dwudziesto"),
    ("trzydziesty", "trzydiesto"),
    ("czterdziesty", "czterdziesto"),
    ("pięćdziesiąty", "pięćdziesięcio"),
    ("sześćdziesiąty", "sześćdziesięcio"),
    ("siedemdziesiąty", "siedemdziesięcio"),
    ("osiemdziesiąty", "osiemdziesięcio"),
    ("dziewięćdziesiąty", "dziewięćdziesięcio"),
];
/// 100, ..., 900.
const HUNDREDS_ORDINALS: [(&str, &str); 9] = [
    ("setny", "stu"),
    ("dwusetny", "dwustu"),
    ("trzysetny", "trzystu"),
    ("czterysetny", "czterystu"),
    ("pięćsetny", "pięcset"),
    ("sześćsetny", "sześćset"),
    ("siedemsetny", "siedemset"),
    ("osiemsetny", "ośiemset"),
    ("dziewięćsetny", "dziewięćset"),
];
/// Ordinal of 1000^level, level 1..=3.
const POWER_ORDINALS: [&str; 3] = ["tysięczny", "milionowy", "milairdowy"];

fn pick(pair: (&'static str, &'static str), compound: bool) -> &'static str {
    if compound {
        pair.1
    } else {
        pair.0
    }
}

/// `last_fragment_to_ordinal`: the ordinal words of the last non-zero chunk.
fn last_chunk_ordinal(last: u32, words: &mut Vec<String>, compound: bool) -> Result<()> {
    let (n1, n2, n3) = slavic::digits(last);
    let last_two = n2 * 10 + n1;
    if last_two == 0 {
        words.push(pick(HUNDREDS_ORDINALS[n3 - 1], compound).into());
    } else if compound && last == 1 {
        return Ok(());
    } else if last_two < 20 {
        if n3 > 0 {
            if compound {
                // num2words indexes a one-element tuple here and raises.
                bail!("num2words cannot read this Polish ordinal");
            }
            words.push(WORDS.hundreds[n3 - 1].into());
        }
        words.push(pick(ONES_ORDINALS[last_two - 1], compound).into());
    } else if last_two % 10 == 0 {
        if n3 > 0 {
            if compound {
                bail!("num2words cannot read this Polish ordinal");
            }
            words.push(WORDS.hundreds[n3 - 1].into());
        }
        words.push(pick(TENS_ORDINALS[n2 - 2], compound).into());
    } else {
        if n3 > 0 {
            words.push(WORDS.hundreds[n3 - 1].into());
        }
        words.push(TENS_ORDINALS[n2 - 2].0.into());
        words.push(ONES_ORDINALS[n1 - 1].0.into());
    }
    Ok(())
}

/// (one, few, many) forms of a name.
type Forms3 = (&'static str, &'static str, &'static str);

fn forms(currency: Currency) -> Result<(Forms3, Forms3)> {
    Ok(match currency {
        Currency::Eur => (("euro", "euro", "euro"), ("cent", "centy", "centów")),
        Currency::Usd => (
            ("dolar amerykański", "dolary amerykańskie", "dolarów amerykańskich"),
            ("cent", "centy", "centów"),
        ),
        Currency::Gbp => bail!("num2words has no Polish name for GBP"),
    })
}

impl NumberWords for Polish {
    fn cardinal(&self, n: u128) -> Result<String> {
        slavic::int_to_words(n, &WORDS)
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        let mut chunks = slavic::chunks(n);
        let mut level = 0usize;
        while chunks.last() == Some(&0) {
            level += 1;
            chunks.pop();
        }
        let last = *chunks
            .last()
            .ok_or_else(|| anyhow!("num2words cannot read the Polish ordinal of 0"))?;
        let mut words = Vec::new();
        if chunks.len() > 1 {
            words.push(self.cardinal(n - last as u128 * 1000u128.pow(level as u32))?);
        }
        last_chunk_ordinal(last, &mut words, level > 0)?;
        let mut out = words.join(" ");
        if last == 1 && level > 0 && !out.is_empty() {
            out.push(' ');
        }
        if level > 0 {
            let power = POWER_ORDINALS
                .get(level - 1)
                .ok_or_else(|| anyhow!("number {n} is too large for an ordinal"))?;
            out.push_str(power);
        }
        Ok(out)
    }

    fn decimal(&self, x: f64) -> Result<String> {
        slavic::decimal_words(&pyfloat::repr(x), "przecinek", &WORDS)
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        let (unit, cent) = forms(currency)?;
        let (units, cents) = pyfloat::currency_parts(amount)?;
        Ok(format!(
            "{} {}, {} {}",
            self.cardinal(units)?,
            slavic::plural_form(units, unit),
            self.cardinal(cents as u128)?,
            slavic::plural_form(cents as u128, cent)
        ))
    }
}
