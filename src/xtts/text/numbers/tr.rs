//! Turkish (num2words `lang_TR`): words run together without spaces ("binyüzyirmibir"),
//! "bir" is dropped before "yüz" and before a lone "bin", and an ordinal puts the suffix
//! on its last word only.

use anyhow::{bail, Result};

use super::{slavic, Currency, NumberWords};

pub struct Turkish;

const ONES: [&str; 10] = ["", "bir", "iki", "üç", "dört", "beş", "altı", "yedi", "sekiz", "dokuz"];
const ONES_ORDINAL: [&str; 10] = [
    "",
    "birinci",
    "ikinci",
    "üçüncü",
    "dördüncü",
    "beşinci",
    "altıncı",
    "yedinci",
    "sekizinci",
    "dokuzuncu",
];
const TENS: [&str; 10] = [
    "", "on", "yirmi", "otuz", "kırk", "elli", "altmış", "yetmiş", "seksen", "doksan",
];
const TENS_ORDINAL: [&str; 10] = [
    "",
    "onuncu",
    "yirminci",
    "otuzuncu",
    "kırkıncı",
    "ellinci",
    "altmışıncı",
    "yetmişinci",
    "sekseninci",
    "doksanıncı",
];
/// 1000^k for k = 1..=6.
const POWERS: [&str; 7] = ["", "bin", "milyon", "milyar", "trilyon", "katrilyon", "kentilyon"];
/// num2words leaves "kentilyon" without an ordinal suffix.
const POWERS_ORDINAL: [&str; 7] = [
    "",
    "bininci",
    "milyonuncu",
    "milyarıncı",
    "trilyonuncu",
    "katrilyonuncu",
    "kentilyon",
];

/// num2words reads numbers up to 10^21 - 2.
const MAX: u128 = 10u128.pow(21) - 1;

/// Reads `n` as num2words does.
fn words(n: u128, ordinal: bool) -> Result<String> {
    if n >= MAX {
        bail!("number {n} is too large for Turkish words (num2words stops at 10^21)");
    }
    if !ordinal && (n as f64) as u128 != n {
        // num2words treats a cardinal that no double holds exactly as "not a number"
        // and says nothing.
        return Ok(String::new());
    }
    if n == 0 {
        return Ok(if ordinal { "sıfırıncı" } else { "sıfır" }.into());
    }
    let chunks = slavic::chunks(n);
    let last_nonzero = chunks.iter().rposition(|&x| x != 0).expect("n > 0");
    let mut out = String::new();
    for (j, &x) in chunks.iter().enumerate() {
        if x == 0 {
            continue;
        }
        let k = chunks.len() - 1 - j;
        let (o, t, h) = slavic::digits(x);
        let is_last = ordinal && j == last_nonzero;
        // The ordinal suffix goes on the last word said: the power name, or the last
        // non-zero digit of the final chunk.
        let suffix_on_power = is_last && k > 0;
        let suffix_on_digit = is_last && k == 0;
        if h > 0 {
            if h > 1 {
                out.push_str(ONES[h]);
            }
            out.push_str(if suffix_on_digit && t == 0 && o == 0 {
                "yüzüncü"
            } else {
                "yüz"
            });
        }
        if t > 0 {
            out.push_str(if suffix_on_digit && o == 0 {
                TENS_ORDINAL[t]
            } else {
                TENS[t]
            });
        }
        let lone_thousand = k == 1 && h == 0 && t == 0 && o == 1;
        // num2words loses the digit of an inner "00x" chunk above the thousands:
        // 2_005_000_001 reads "ikimilyarmilyonbir" (reproduced as is); ordinals only
        // lose a "bir" there.
        let lost_digit = j > 0 && k >= 2 && h == 0 && t == 0 && j != last_nonzero && (!ordinal || o == 1);
        // ... and the "bir" ending a leading three-digit thousands chunk when more
        // follows: 121_463 reads "yüzyirmibindörtyüzaltmışüç".
        let lost_one = j == 0 && k == 1 && o == 1 && h > 0 && j != last_nonzero;
        if o > 0 && !lone_thousand && !lost_digit && !lost_one {
            out.push_str(if suffix_on_digit { ONES_ORDINAL[o] } else { ONES[o] });
        }
        if k > 0 {
            out.push_str(if suffix_on_power { POWERS_ORDINAL[k] } else { POWERS[k] });
        }
    }
    Ok(out)
}

impl NumberWords for Turkish {
    fn cardinal(&self, n: u128) -> Result<String> {
        words(n, false)
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        words(n, true)
    }

    /// The reference skips decimal expansion for Turkish, so this is never asked for.
    fn decimal(&self, x: f64) -> Result<String> {
        bail!("decimals such as {x} are not read out in Turkish")
    }

    /// num2words' Turkish `to_currency` takes no currency argument, so the reference's
    /// call always raises and amounts stay as written.
    fn currency(&self, _amount: f64, _currency: Currency) -> Result<String> {
        bail!("num2words cannot read currency amounts in Turkish")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_run_together_and_drop_a_lone_bir() {
        assert_eq!(Turkish.cardinal(1121).unwrap(), "binyüzyirmibir");
        assert_eq!(Turkish.cardinal(1_001_000).unwrap(), "birmilyonbin");
        assert_eq!(Turkish.ordinal(300_000).unwrap(), "üçyüzbininci");
        assert_eq!(Turkish.ordinal(0).unwrap(), "sıfırıncı");
    }

    #[test]
    fn too_large_and_currency_fail() {
        assert!(Turkish.cardinal(10u128.pow(21)).is_err());
        assert!(Turkish.currency(20.0, Currency::Usd).is_err());
    }
}
