//! Python float behaviour that num2words output depends on: `repr()`, the precision that
//! `Decimal(str(x))` implies, `float2tuple`, and the exact-decimal cent rounding of
//! `Decimal(x).quantize(Decimal(".01"), ROUND_HALF_UP)`.

use anyhow::{bail, Result};

/// Python's `repr(float)` for finite values: shortest round-trip digits, positional for
/// 1e-4 <= |x| < 1e16 (always with a fractional part), scientific otherwise.
pub fn repr(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{:e}", x.abs()); // e.g. "1.25e1", "1e-5"
    let (mantissa, exp) = sci.split_once('e').expect("float formats with an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if x < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else if exp + 1 >= n {
            format!("{}{}.0", digits, "0".repeat((exp + 1 - n) as usize))
        } else {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

/// `abs(Decimal(str(x)).as_tuple().exponent)`: the number of fractional digits num2words
/// reads out.
pub fn precision(x: f64) -> u32 {
    let r = repr(x);
    let (mantissa, exp) = match r.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().unwrap_or(0)),
        None => (r.clone(), 0),
    };
    let frac_digits = mantissa.split_once('.').map(|(_, f)| f.len() as i32).unwrap_or(0);
    (exp - frac_digits).unsigned_abs()
}

/// `Num2Word_Base.float2tuple`: the integer part and the fractional digits as an integer,
/// rounded when within 0.01 of a whole number (float noise), else floored.
pub fn float2tuple(x: f64) -> Result<(u128, u128, u32)> {
    if !(0.0..1e38).contains(&x) {
        bail!("number {x} is out of range for words");
    }
    let pre = x.trunc();
    let prec = precision(x);
    if prec > 38 {
        bail!("number {x} has too many digits for words");
    }
    let post = (x - pre).abs() * 10f64.powi(prec as i32);
    let rounded = post.round_ties_even();
    let post = if (rounded - post).abs() < 0.01 {
        rounded
    } else {
        post.floor()
    };
    Ok((pre as u128, post as u128, prec))
}

/// Whole units and cents of an amount, rounding the *exact* binary value half-up at the
/// cent, as `parse_currency_parts` does with `Decimal(float)`.
pub fn currency_parts(x: f64) -> Result<(u128, u32)> {
    if !(0.0..1e36).contains(&x) {
        bail!("amount {x} is out of range for words");
    }
    // x = mantissa / 2^shift exactly; then x*100 = q + r / 2^shift.
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let mut mantissa = (bits & ((1u64 << 52) - 1)) as u128;
    if exp != 0 {
        mantissa |= 1u128 << 52;
    }
    let e2 = if exp == 0 { -1074 } else { exp - 1075 };
    let total_cents = if e2 >= 0 {
        (mantissa << e2) * 100
    } else {
        let shift = (-e2) as u32;
        if shift >= 120 {
            // Below 2^-67: rounds to zero cents.
            0
        } else {
            let scaled = mantissa * 100;
            let q = scaled >> shift;
            let r = scaled - (q << shift);
            if r << 1 >= 1u128 << shift {
                q + 1
            } else {
                q
            }
        }
    };
    Ok((total_cents / 100, (total_cents % 100) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_python() {
        assert_eq!(repr(12.0), "12.0");
        assert_eq!(repr(12.5), "12.5");
        assert_eq!(repr(0.0001), "0.0001");
        assert_eq!(repr(0.00001), "1e-05");
        assert_eq!(repr(1e16), "1e+16");
        assert_eq!(repr(123456789012345678.5), "1.2345678901234568e+17");
        assert_eq!(repr(100000.5), "100000.5");
    }

    #[test]
    fn precision_follows_decimal_exponent() {
        assert_eq!(precision(12.5), 1);
        assert_eq!(precision(12.0), 1);
        assert_eq!(precision(2.25), 2);
        assert_eq!(precision(1e-05), 5);
        assert_eq!(precision(1e16), 16);
    }

    #[test]
    fn cents_round_the_exact_binary_value() {
        assert_eq!(currency_parts(20.15).unwrap(), (20, 15));
        // 1.005 is stored as 1.00499999999999989...; half-up of the exact value gives 1.00
        assert_eq!(currency_parts(1.005).unwrap(), (1, 0));
        // 0.125 is exact; half-up gives 0.13
        assert_eq!(currency_parts(0.125).unwrap(), (0, 13));
        assert_eq!(currency_parts(1234.56).unwrap(), (1234, 56));
        assert_eq!(currency_parts(1e20).unwrap(), (100_000_000_000_000_000_000, 0));
        assert!(currency_parts(f64::NAN).is_err());
    }
}
