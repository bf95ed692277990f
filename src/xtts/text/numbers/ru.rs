//! Russian (num2words `lang_RU`): three-digit chunks with grammatical case and gender.
//! The reference only ever asks for the nominative and the genitive, so those are the two
//! cases kept here.

use anyhow::{anyhow, bail, Result};

use super::{pyfloat, slavic};
use super::{Currency, NumberWords};

pub struct Russian;

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Nominative,
    Genitive,
}

/// Grammatical slot of a word: masculine, feminine, neuter, or plural.
#[derive(Clone, Copy, PartialEq)]
enum Slot {
    M,
    F,
    N,
    Plural,
}

#[derive(Clone, Copy)]
struct Infl {
    case: Case,
    slot: Slot,
}

const NOM_M: Infl = Infl {
    case: Case::Nominative,
    slot: Slot::M,
};
const NOM_F: Infl = Infl {
    case: Case::Nominative,
    slot: Slot::F,
};

/// 0..=9 as cardinals.
fn ones(n: usize, i: Infl) -> &'static str {
    const NOM: [&str; 10] = ["ноль", "", "", "", "", "пять", "шесть", "семь", "восемь", "девять"];
    const GEN: [&str; 10] = ["ноля", "", "", "", "", "пяти", "шести", "семи", "восьми", "девяти"];
    // 1..=4 change with gender: [m, f, n, plural].
    const NOM_LOW: [[&str; 4]; 4] = [
        ["один", "одна", "одно", "одни"],
        ["два", "две", "два", "двое"],
        ["три", "три", "три", "трое"],
        ["четыре", "четыре", "четыре", "четверо"],
    ];
    const GEN_LOW: [[&str; 4]; 4] = [
        ["одного", "одной", "одного", "одних"],
        ["двух", "двух", "двух", "двоих"],
        ["трёх", "трёх", "трёх", "троих"],
        ["четырёх", "четырёх", "четырёх", "четверых"],
    ];
    match (n, i.case) {
        (1..=4, Case::Nominative) => NOM_LOW[n - 1][i.slot as usize],
        (1..=4, Case::Genitive) => GEN_LOW[n - 1][i.slot as usize],
        (_, Case::Nominative) => NOM[n],
        (_, Case::Genitive) => GEN[n],
    }
}

/// Stems shared by 11..=19 ("один" + "надцать").
const TEEN_STEMS: [&str; 9] = ["один", "две", "три", "четыр", "пят", "шест", "сем", "восем", "девят"];

/// 10 + `n` for n in 0..=9.
fn teens(n: usize, case: Case) -> String {
    match (n, case) {
        (0, Case::Nominative) => "десять".into(),
        (0, Case::Genitive) => "десяти".into(),
        (_, Case::Nominative) => format!("{}надцать", TEEN_STEMS[n - 1]),
        (_, Case::Genitive) => format!("{}надцати", TEEN_STEMS[n - 1]),
    }
}

/// 20, 30, ..., 90 (`n` = 2..=9).
fn tens(n: usize, case: Case) -> &'static str {
    const NOM: [&str; 8] = [
        "двадцать",
        "тридцать",
        "сорок",
        "пятьдесят",
        "шестьдесят",
        "семьдесят",
        "восемьдесят",
        "девяносто",
    ];
    const GEN: [&str; 8] = [
        "двадцати",
        "тридцати",
        "сорока",
        "пятидесяти",
        "шестидесяти",
        "семидесяти",
        "восьмидесяти",
        "девяноста",
    ];
    match case {
        Case::Nominative => NOM[n - 2],
        Case::Genitive => GEN[n - 2],
    }
}

/// 100, ..., 900 (`n` = 1..=9).
fn hundreds(n: usize, case: Case) -> &'static str {
    const NOM: [&str; 9] = [
        "сто",
        "двести",
        "триста",
        "четыреста",
        "пятьсот",
        "шестьсот",
        "семьсот",
        "восемьсот",
        "девятьсот",
    ];
    const GEN: [&str; 9] = [
        "ста",
        "двухсот",
        "трёхсот",
        "четырёхсот",
        "пятисот",
        "шестисот",
        "семисот",
        "восьмисот",
        "девятисот",
    ];
    match case {
        Case::Nominative => NOM[n - 1],
        Case::Genitive => GEN[n - 1],
    }
}

/// Stems of 1000^k, k >= 2.
const POWER_STEMS: [&str; 9] = [
    "миллион",
    "миллиард",
    "триллион",
    "квадриллион",
    "квинтиллион",
    "секстиллион",
    "септиллион",
    "октиллион",
    "нониллион",
];

/// The (one, few, many) forms of 1000^k.
fn thousands(k: usize, case: Case) -> Result<[String; 3]> {
    if k == 1 {
        let forms = match case {
            Case::Nominative => ["тысяча", "тысячи", "тысяч"],
            Case::Genitive => ["тысячи", "тысяч", "тысяч"],
        };
        return Ok(forms.map(String::from));
    }
    let stem = POWER_STEMS
        .get(k.wrapping_sub(2))
        .ok_or_else(|| anyhow!("num2words has no Russian name for 1000^{k}"))?;
    let endings = match case {
        Case::Nominative => ["", "а", "ов"],
        Case::Genitive => ["а", "ов", "ов"],
    };
    Ok(endings.map(|e| format!("{stem}{e}")))
}

/// Russian plural choice: 1 -> one, 2..4 -> few, else many (11..14 are many).
fn plural_index(n: u128) -> usize {
    if (11..=14).contains(&(n % 100)) {
        2
    } else if n % 10 == 1 {
        0
    } else if (2..=4).contains(&(n % 10)) {
        1
    } else {
        2
    }
}

/// Adjective ending of an ordinal. `soft` picks "-ый" over "-ой" for the masculine
/// nominative (stressed endings take "-ой").
fn ordinal_ending(i: Infl, soft: bool) -> &'static str {
    match (i.case, i.slot) {
        (Case::Nominative, Slot::M) if soft => "ый",
        (Case::Nominative, Slot::M) => "ой",
        (Case::Nominative, Slot::F) => "ая",
        (Case::Nominative, Slot::N) => "ое",
        (Case::Nominative, Slot::Plural) => "ые",
        (Case::Genitive, Slot::F) => "ой",
        (Case::Genitive, Slot::Plural) => "ых",
        (Case::Genitive, _) => "ого",
    }
}

/// 0..=9 as ordinals.
fn ones_ordinal(n: usize, i: Infl) -> String {
    if n == 3 {
        let forms = match i.case {
            Case::Nominative => ["третий", "третья", "третье", "третьи"],
            Case::Genitive => ["третьего", "третьей", "третьего", "третьих"],
        };
        return forms[i.slot as usize].into();
    }
    // (stem, takes "-ый")
    const STEMS: [(&str, bool); 10] = [
        ("нулев", false),
        ("перв", true),
        ("втор", false),
        ("", false),
        ("четвёрт", true),
        ("пят", true),
        ("шест", false),
        ("седьм", false),
        ("восьм", false),
        ("девят", true),
    ];
    let (stem, soft) = STEMS[n];
    format!("{stem}{}", ordinal_ending(i, soft))
}

fn teens_ordinal(n: usize, i: Infl) -> String {
    let stem = if n == 0 {
        "десят".to_string()
    } else {
        format!("{}надцат", TEEN_STEMS[n - 1])
    };
    format!("{stem}{}", ordinal_ending(i, true))
}

fn tens_ordinal(n: usize, i: Infl) -> String {
    const STEMS: [&str; 8] = [
        "двадцат",
        "тридцат",
        "сороков",
        "пятидесят",
        "шестидесят",
        "семидесят",
        "восьмидесят",
        "девяност",
    ];
    format!("{}{}", STEMS[n - 2], ordinal_ending(i, n != 4))
}

fn hundreds_ordinal(n: usize, i: Infl) -> String {
    let stem = if n == 1 { "сот" } else { hundreds(n, Case::Genitive) };
    format!("{stem}{}", ordinal_ending(i, true))
}

fn thousands_ordinal(k: usize, i: Infl) -> Result<String> {
    let stem = if k == 1 {
        "тысячн".to_string()
    } else {
        let stem = POWER_STEMS
            .get(k.wrapping_sub(2))
            .ok_or_else(|| anyhow!("num2words has no Russian name for 1000^{k}"))?;
        format!("{stem}н")
    };
    Ok(format!("{stem}{}", ordinal_ending(i, true)))
}

/// Words of one non-zero chunk of a cardinal; `k` is the chunk's power of a thousand.
fn chunk_cardinal(x: u32, k: usize, i: Infl, words: &mut Vec<String>) {
    let (n1, n2, n3) = slavic::digits(x);
    if n3 > 0 {
        words.push(hundreds(n3, i.case).into());
    }
    if n2 > 1 {
        words.push(tens(n2, i.case).into());
    }
    if n2 == 1 {
        words.push(teens(n1, i.case));
    } else if n1 > 0 {
        // Thousands are feminine (a plural request stays plural).
        let i = if k == 1 && i.slot != Slot::Plural {
            Infl { slot: Slot::F, ..i }
        } else {
            i
        };
        words.push(ones(n1, i).into());
    }
}

/// Words of one chunk of an ordinal that is not the final, joined one. Only the words
/// that end the number take the ordinal form; inner ones stay nominative cardinals.
fn chunk_ordinal(x: u32, k: usize, i: Infl, words: &mut Vec<String>) {
    let (n1, n2, n3) = slavic::digits(x);
    if n3 > 0 {
        words.push(if n2 == 0 && n1 == 0 {
            hundreds_ordinal(n3, i)
        } else {
            hundreds(n3, Case::Nominative).into()
        });
    }
    if n2 > 1 {
        words.push(if n1 == 0 {
            tens_ordinal(n2, i)
        } else {
            tens(n2, Case::Nominative).into()
        });
    }
    if n2 == 1 {
        words.push(teens_ordinal(n1, i));
    } else if n1 > 0 {
        if k == 0 {
            words.push(ones_ordinal(n1, i));
        } else if n1 == 1 && n3 == 0 && n2 == 0 {
            // "тысячный", not "одна тысячный"
        } else if k == 1 {
            words.push(ones(n1, NOM_F).into());
        } else {
            words.push(ones(n1, NOM_M).into());
        }
    }
}

/// The last non-zero chunk of an ordinal ending in zeros, written as one word with its
/// power: "двухсоттысячный".
fn chunk_ordinal_joined(x: u32, k: usize, i: Infl) -> Result<String> {
    let (n1, n2, n3) = slavic::digits(x);
    let mut out = String::new();
    if n3 > 1 {
        out.push_str(hundreds(n3, Case::Genitive));
    } else if n3 == 1 {
        out.push_str("сто");
    }
    if n2 == 9 {
        out.push_str("девяносто");
    } else if n2 > 1 {
        out.push_str(tens(n2, Case::Genitive));
    }
    if n2 == 1 {
        out.push_str(&teens(n1, Case::Genitive));
    } else if n1 > 0 {
        if k == 0 {
            out.push_str(&ones_ordinal(n1, i));
        } else if n1 == 1 {
            if n2 != 0 || n3 != 0 {
                out.push_str(ones(
                    1,
                    Infl {
                        case: Case::Nominative,
                        slot: Slot::N,
                    },
                ));
            }
        } else {
            out.push_str(ones(
                n1,
                Infl {
                    case: Case::Genitive,
                    slot: Slot::M,
                },
            ));
        }
    }
    if k > 0 {
        out.push_str(&thousands_ordinal(k, i)?);
    }
    Ok(out)
}

/// `Num2Word_RU._int2word`.
fn int_to_words(n: u128, cardinal: bool, i: Infl) -> Result<String> {
    if n == 0 {
        return Ok(if cardinal {
            ones(0, i).into()
        } else {
            ones_ordinal(0, i)
        });
    }
    let chunks = slavic::chunks(n);
    let ends_in_zeros = chunks.last() == Some(&0);
    let last_nonzero = chunks.len() - 1 - chunks.iter().rposition(|&x| x != 0).expect("n > 0");
    let mut words: Vec<String> = Vec::new();
    let mut k = chunks.len();
    for &x in &chunks {
        k -= 1;
        if x == 0 {
            continue;
        }
        if cardinal {
            chunk_cardinal(x, k, i, &mut words);
            if k > 0 {
                words.push(thousands(k, i.case)?[plural_index(x as u128)].clone());
            }
        } else if !(ends_in_zeros && last_nonzero == k) {
            chunk_ordinal(x, k, i, &mut words);
            if k > 0 {
                let case = if last_nonzero == k { i.case } else { Case::Nominative };
                words.push(thousands(k, case)?[plural_index(x as u128)].clone());
            }
        } else {
            words.push(chunk_ordinal_joined(x, k, i)?);
        }
    }
    Ok(words.join(" "))
}

/// The denominator word of a decimal fraction with `digits` fractional digits:
/// "десятая" after a count ending in one, "десятых" otherwise.
fn fraction_name(fraction: &str) -> Result<String> {
    let power = 10u128
        .checked_pow(fraction.len() as u32)
        .ok_or_else(|| anyhow!("fraction {fraction:?} has too many digits"))?;
    if fraction.ends_with('1') && !fraction.ends_with("11") {
        int_to_words(power, false, NOM_F)
    } else {
        int_to_words(
            power,
            false,
            Infl {
                case: Case::Genitive,
                slot: Slot::Plural,
            },
        )
    }
}

fn parse_digits(s: &str, repr: &str) -> Result<u128> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("num2words cannot read {repr} in Russian");
    }
    s.parse().map_err(|_| anyhow!("number {repr} is too long to read out"))
}

impl NumberWords for Russian {
    fn cardinal(&self, n: u128) -> Result<String> {
        int_to_words(n, true, NOM_M)
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        int_to_words(n, false, NOM_M)
    }

    /// "<int, feminine> целая/целых <fraction, feminine> <десятая/десятых ...>", read
    /// from Python's `str(float)` (a float in exponent form cannot be read).
    fn decimal(&self, x: f64) -> Result<String> {
        let repr = pyfloat::repr(x);
        let Some((left, right)) = repr.split_once('.') else {
            return self.cardinal(parse_digits(&repr, &repr)?);
        };
        let left = parse_digits(left, &repr)?;
        let right_value = parse_digits(right, &repr)?;
        const POINT: [&str; 3] = ["целая", "целых", "целых"];
        Ok(format!(
            "{} {} {} {}",
            int_to_words(left, true, NOM_F)?,
            POINT[plural_index(left)],
            int_to_words(right_value, true, NOM_F)?,
            fraction_name(right)?
        ))
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        let (unit, cent) = match currency {
            Currency::Eur => (["евро", "евро", "евро"], ["цент", "цента", "центов"]),
            Currency::Usd => (["доллар", "доллара", "долларов"], ["цент", "цента", "центов"]),
            Currency::Gbp => bail!("num2words has no Russian name for GBP"),
        };
        let (units, cents) = pyfloat::currency_parts(amount)?;
        Ok(format!(
            "{} {}, {} {}",
            self.cardinal(units)?,
            unit[plural_index(units)],
            self.cardinal(cents as u128)?,
            cent[plural_index(cents as u128)]
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genders_and_plurals_follow_the_chunk() {
        let ru = Russian;
        assert_eq!(ru.cardinal(2001).unwrap(), "две тысячи один");
        assert_eq!(ru.cardinal(21_000_000).unwrap(), "двадцать один миллион");
        assert_eq!(ru.ordinal(3).unwrap(), "третий");
        assert_eq!(ru.ordinal(200_000).unwrap(), "двухсоттысячный");
        assert_eq!(ru.decimal(0.01).unwrap(), "ноль целых одна сотая");
    }

    #[test]
    fn unreadable_values_fail() {
        assert!(Russian.cardinal(10u128.pow(36)).is_err());
        assert!(Russian.decimal(1e-5).is_err());
        assert!(Russian.currency(1.0, Currency::Gbp).is_err());
    }
}
