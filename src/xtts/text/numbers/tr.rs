//! Turkish (num2words `lang_TR`): not ported yet; every reading fails clearly.

use anyhow::{bail, Result};

use super::{Currency, NumberWords};

pub struct Turkish;

impl NumberWords for Turkish {
    fn cardinal(&self, _n: u128) -> Result<String> {
        bail!("Turkish number words are not available yet")
    }

    fn ordinal(&self, _n: u128) -> Result<String> {
        bail!("Turkish number words are not available yet")
    }

    fn decimal(&self, _x: f64) -> Result<String> {
        bail!("Turkish number words are not available yet")
    }

    fn currency(&self, _amount: f64, _currency: Currency) -> Result<String> {
        bail!("Turkish number words are not available yet")
    }
}
