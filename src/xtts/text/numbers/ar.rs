//! Arabic (num2words `lang_AR`): groups of three digits read from the lowest up, joined
//! with "و", with the dual and plural forms of the group names. Every currency the
//! reference asks for (USD, EUR, GBP) comes out in num2words' default, the Saudi riyal.
//!
//! num2words divides with Python's 28-digit `Decimal` context, so numbers of more than 28
//! digits may differ from it (there the result even depends on earlier input); these are
//! read exactly here.

use anyhow::{bail, Result};

use super::{Currency, NumberWords};

pub struct Arabic;

const ONES: [&str; 20] = [
    "",
    "واحد",
    "اثنان",
    "ثلاثة",
    "أربعة",
    "خمسة",
    "ستة",
    "سبعة",
    "ثمانية",
    "تسعة",
    "عشرة",
    "أحد عشر",
    "اثنا عشر",
    "ثلاثة عشر",
    "أربعة عشر",
    "خمسة عشر",
    "ستة عشر",
    "سبعة عشر",
    "ثمانية عشر",
    "تسعة عشر",
];
const FEMININE_ONES: [&str; 20] = [
    "",
    "إحدى",
    "اثنتان",
    "ثلاث",
    "أربع",
    "خمس",
    "ست",
    "سبع",
    "ثمان",
    "تسع",
    "عشر",
    "إحدى عشرة",
    "اثنتا عشرة",
    "ثلاث عشرة",
    "أربع عشرة",
    "خمس عشرة",
    "ست عشرة",
    "سبع عشرة",
    "ثماني عشرة",
    "تسع عشرة",
];
const ORDINALS: [&str; 20] = [
    "",
    "اول",
    "ثاني",
    "ثالث",
    "رابع",
    "خامس",
    "سادس",
    "سابع",
    "ثامن",
    "تاسع",
    "عاشر",
    "حادي عشر",
    "ثاني عشر",
    "ثالث عشر",
    "رابع عشر",
    "خامس عشر",
    "سادس عشر",
    "سابع عشر",
    "ثامن عشر",
    "تاسع عشر",
];
/// 20, 30, ..., 90.
const TENS: [&str; 8] = ["عشرون", "ثلاثون", "أربعون", "خمسون", "ستون", "سبعون", "ثمانون", "تسعون"];
const HUNDREDS: [&str; 10] = [
    "",
    "مائة",
    "مئتان",
    "ثلاثمائة",
    "أربعمائة",
    "خمسمائة",
    "ستمائة",
    "سبعمائة",
    "ثمانمائة",
    "تسعمائة",
];
/// Group names by level (0 = hundreds, 1 = thousands, ...): singular, dual in
/// construct state, dual, accusative singular (after 11..99), plural (after 3..10).
/// Some num2words entries carry a trailing space; it is kept.
const GROUPS: [(&str, &str, &str, &str, &str); 17] = [
    ("مائة", "مئتا", "مئتان", "", ""),
    ("ألف", "ألفا", "ألفان", "ألفاً", "آلاف"),
    ("مليون", "مليونا", "مليونان", "مليوناً", "ملايين"),
    ("مليار", "مليارا", "ملياران", "ملياراً", "مليارات"),
    ("تريليون", "تريليونا", "تريليونان", "تريليوناً", "تريليونات"),
    (
        "كوادريليون",
        "كوادريليونا",
        "كوادريليونان",
        "كوادريليوناً",
        "كوادريليونات",
    ),
    ("كوينتليون", "كوينتليونا", "كوينتليونان", "كوينتليوناً", "كوينتليونات"),
    ("سكستيليون", "سكستيليونا", "سكستيليونان", "سكستيليوناً", "سكستيليونات"),
    ("سبتيليون", "سبتيليونا", "سبتيليونان", "سبتيليوناً", "سبتيليونات"),
    ("أوكتيليون", "أوكتيليونا ", "أوكتيليونان ", "أوكتيليوناً", "أوكتيليونات"),
    ("نونيليون", "نونيليونا", "نونيليونان ", "نونيليوناً", "نونيليونات"),
    ("ديسيليون", "ديسيليونا", "ديسيليونان", "ديسيليوناً", "ديسيليونات"),
    ("أندسيليون", "أندسيليونا", "أندسيليونان", "أندسيليوناً", "أندسيليونات"),
    (
        "دوديسيليون",
        "دوديسيليونا",
        "دوديسيليونان",
        "دوديسيليوناً",
        "دوديسيليونات",
    ),
    (
        "تريديسيليون",
        "تريديسيليونا",
        "تريديسيليونان",
        "تريديسيليوناً",
        "تريديسيليونات",
    ),
    (
        "كوادريسيليون",
        "كوادريسيليونا",
        "كوادريسيليونان",
        "كوادريسيليوناً",
        "كوادريسيليونات",
    ),
    (
        "كوينتينيليون",
        "كوينتينيليونا",
        "كوينتينيليونان",
        "كوينتينيليوناً",
        "كوينتينيليونات",
    ),
];

/// Riyal and halala: (one, two, 3..10, 11..99).
const RIYAL: [&str; 4] = ["ريال", "ريالان", "ريالات", "ريالاً"];
const HALALA: [&str; 4] = ["هللة", "هللتان", "هللات", "هللة"];

/// Which gender the units take.
#[derive(Clone, Copy, PartialEq)]
enum Gender {
    Masculine,
    Feminine,
}

/// A value split the way num2words' `to_str` and `decimal_value` split it: the integer and
/// the first two decimal digits.
struct Parts {
    integer: u128,
    hundredths: u32,
    /// The whole value, fraction included, is zero.
    zero: bool,
}

impl Parts {
    fn whole(n: u128) -> Self {
        Parts {
            integer: n,
            hundredths: 0,
            zero: n == 0,
        }
    }

    /// The fraction is rounded to nine digits, trailing zeros dropped, then cut or padded
    /// to two digits.
    fn from_float(x: f64) -> Result<Self> {
        if !(0.0..1e38).contains(&x) {
            bail!("number {x} is out of range for Arabic words");
        }
        let integer = x.trunc();
        let nanos = ((x - integer) * 1e9).round_ties_even() as u64;
        let digits = format!("{nanos:09}");
        let digits = digits.trim_end_matches('0');
        let two: String = digits.chars().chain("00".chars()).take(2).collect();
        Ok(Parts {
            integer: integer as u128,
            hundredths: two.parse().expect("two digits"),
            zero: x == 0.0,
        })
    }
}

/// `process_arabic_group`: one group of up to three digits at `level` (-1 = the
/// fraction, 0 = units, 1 = thousands, ...).
fn group_words(x: u32, level: i32, whole: u128, units: Gender) -> String {
    let tens = x % 100;
    let hundreds = (x / 100) as usize;
    let mut out = String::new();
    if hundreds > 0 {
        if tens == 0 && hundreds == 2 {
            out.push_str(GROUPS[0].1);
        } else {
            out.push_str(HUNDREDS[hundreds]);
            if tens != 0 {
                out.push_str(" و ");
            }
        }
    }
    let digit = |d: u32| -> &'static str {
        let feminine = level == -1 || (level == 0 && units == Gender::Feminine);
        if feminine {
            FEMININE_ONES[d as usize]
        } else {
            ONES[d as usize]
        }
    };
    if tens > 0 && tens < 20 {
        if tens == 2 && hundreds == 0 && level > 0 {
            // "ألفا" for exactly 2000, 2 000 000, ...; "ألفان" otherwise.
            let exact_two = whole > 10 && is_two_times_power_of_thousand(whole);
            let forms = GROUPS[level as usize];
            out = if exact_two { forms.1 } else { forms.2 }.to_string();
        } else if tens == 1 && level > 0 {
            out.push_str(GROUPS[level as usize].0);
        } else {
            out.push_str(digit(tens));
        }
    } else if tens >= 20 {
        let ones = tens % 10;
        if ones > 0 {
            out.push_str(digit(ones));
        }
        if !out.is_empty() && ones != 0 {
            out.push_str(" و ");
        }
        out.push_str(TENS[(tens / 10 - 2) as usize]);
    }
    out
}

fn is_two_times_power_of_thousand(n: u128) -> bool {
    let mut p = 2u128;
    while p < n {
        match p.checked_mul(1000) {
            Some(next) => p = next,
            None => return false,
        }
    }
    p == n
}

/// The form of a counted name after `n`: (one, two, 3..10, 11..99).
fn counted(forms: [&'static str; 4], n: u128, exact_two_is_dual: bool) -> &'static str {
    match n % 100 {
        0 | 1 => forms[0],
        2 if exact_two_is_dual => forms[1],
        2 => forms[0],
        3..=10 => forms[2],
        _ => forms[3],
    }
}

/// `convert_to_arabic`: the integer groups from the highest down, then the unit name,
/// then the fraction with its sub-unit name. Without names (cardinals) the result has
/// the same spacing as num2words before its final strip.
fn convert(
    parts: &Parts,
    units: Gender,
    names: Option<([&'static str; 4], [&'static str; 4])>,
    sep: &str,
) -> Result<String> {
    if parts.zero {
        return Ok("صفر".into());
    }
    let mut ret = String::new();
    let mut rest = parts.integer;
    let mut level = 0usize;
    while rest > 0 {
        let x = (rest % 1000) as u32;
        rest /= 1000;
        let description = group_words(x, level as i32, parts.integer, units);
        if !description.is_empty() {
            if level > 0 {
                if level >= GROUPS.len() {
                    bail!("number {} is too large for Arabic words", parts.integer);
                }
                if !ret.is_empty() {
                    ret = format!("و {ret}");
                }
                if x != 1 && x != 2 {
                    let name = if x % 100 == 1 {
                        GROUPS[level].0
                    } else if (3..=10).contains(&x) {
                        GROUPS[level].4
                    } else if !ret.is_empty() {
                        GROUPS[level].3
                    } else {
                        GROUPS[level].0
                    };
                    ret = format!("{name} {ret}");
                }
            }
            ret = format!("{description} {ret}");
        }
        level += 1;
    }
    if let Some((unit, _)) = names {
        if parts.integer != 0 {
            ret.push_str(counted(unit, parts.integer, parts.integer == 2));
        }
    }
    if parts.hundredths != 0 {
        ret.push_str(&format!(" {sep} "));
        ret.push_str(&group_words(parts.hundredths, -1, parts.integer, units));
        ret.push(' ');
        if let Some((_, sub)) = names {
            ret.push_str(counted(sub, parts.hundredths as u128, true));
        }
    }
    Ok(ret)
}

/// `to_cardinal`: masculine units, "," before the fraction, outer spaces trimmed.
fn cardinal_parts(parts: &Parts) -> Result<String> {
    Ok(convert(parts, Gender::Masculine, None, ",")?.trim().to_string())
}

impl NumberWords for Arabic {
    fn cardinal(&self, n: u128) -> Result<String> {
        cardinal_parts(&Parts::whole(n))
    }

    /// Ordinal words up to 19; above, the cardinal (feminine units below 100).
    fn ordinal(&self, n: u128) -> Result<String> {
        if n <= 19 {
            return Ok(ORDINALS[n as usize].into());
        }
        let units = if n < 100 { Gender::Feminine } else { Gender::Masculine };
        Ok(convert(&Parts::whole(n), units, None, ",")?.trim().to_string())
    }

    fn decimal(&self, x: f64) -> Result<String> {
        cardinal_parts(&Parts::from_float(x)?)
    }

    fn currency(&self, amount: f64, _currency: Currency) -> Result<String> {
        let parts = Parts::from_float(amount)?;
        convert(&parts, Gender::Masculine, Some((RIYAL, HALALA)), "و")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duals_and_plurals_of_group_names() {
        assert_eq!(Arabic.cardinal(2000).unwrap(), "ألفا");
        assert_eq!(Arabic.cardinal(10_000).unwrap(), "عشرة آلاف");
        assert_eq!(Arabic.ordinal(2).unwrap(), "ثاني");
    }

    #[test]
    fn fractions_are_read_in_hundredths() {
        assert_eq!(Parts::from_float(3.27).unwrap().hundredths, 27);
        assert_eq!(Parts::from_float(12.5).unwrap().hundredths, 50);
        assert_eq!(Parts::from_float(0.001).unwrap().hundredths, 0);
        assert!(Parts::from_float(f64::NAN).is_err());
    }
}
