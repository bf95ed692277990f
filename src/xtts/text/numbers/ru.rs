//! Russian (num2words `lang_RU`): not ported yet; every reading fails clearly.

use anyhow::{bail, Result};

use super::{Currency, NumberWords};

pub struct Russian;

impl NumberWords for Russian {
    fn cardinal(&self, _n: u128) -> Result<String> {
        bail!("Russian number words are not available yet")
    }

    fn ordinal(&self, _n: u128) -> Result<String> {
        bail!("Russian number words are not available yet")
    }

    fn decimal(&self, _x: f64) -> Result<String> {
        bail!("Russian number words are not available yet")
    }

    fn currency(&self, _amount: f64, _currency: Currency) -> Result<String> {
        bail!("Russian number words are not available yet")
    }
}
