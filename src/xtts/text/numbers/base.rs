//! Behaviour num2words' `Num2Word_Base` gives every language that does not override it:
//! the float reading ("<int> <point> <digit> <digit>") and the currency phrase.

use anyhow::Result;

use super::pyfloat;

/// Currency forms: (singular, plural) for the unit and the sub-unit.
pub type CurrencyForms = ((&'static str, &'static str), (&'static str, &'static str));

/// `to_cardinal(float)` of the base class: whole values read as integers, others as the
/// integer part, the point word and each fractional digit.
pub fn decimal(x: f64, pointword: &str, cardinal: &dyn Fn(u128) -> Result<String>) -> Result<String> {
    if x.fract() == 0.0 && x.abs() < 1e38 {
        return cardinal(x as u128);
    }
    float_digits(x, pointword, cardinal)
}

/// `Num2Word_Base.to_cardinal_float`.
pub fn float_digits(x: f64, pointword: &str, cardinal: &dyn Fn(u128) -> Result<String>) -> Result<String> {
    let (pre, post, precision) = pyfloat::float2tuple(x)?;
    let post = post.to_string();
    let padded = format!(
        "{}{}",
        "0".repeat((precision as usize).saturating_sub(post.len())),
        post
    );
    let mut out = vec![cardinal(pre)?];
    if precision > 0 {
        out.push(pointword.to_string());
    }
    for digit in padded.chars().take(precision as usize) {
        out.push(cardinal(digit.to_digit(10).unwrap_or(0) as u128)?);
    }
    Ok(out.join(" "))
}

/// `Num2Word_EU.pluralize`: singular for exactly one, plural otherwise.
pub fn plural_eu<'a>(n: u128, forms: (&'a str, &'a str)) -> &'a str {
    if n == 1 {
        forms.0
    } else {
        forms.1
    }
}

/// `Num2Word_Base.to_currency` with verbose cents:
/// "<units> <unit name><separator> <cents> <cent name>".
pub fn currency(
    amount: f64,
    forms: CurrencyForms,
    separator: &str,
    cardinal: &dyn Fn(u128) -> Result<String>,
    plural: &dyn Fn(u128, (&'static str, &'static str)) -> &'static str,
) -> Result<String> {
    let (units, cents) = pyfloat::currency_parts(amount)?;
    Ok(format!(
        "{} {}{} {} {}",
        cardinal(units)?,
        plural(units, forms.0),
        separator,
        cardinal(cents as u128)?,
        plural(cents as u128, forms.1)
    ))
}
