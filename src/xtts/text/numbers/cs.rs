//! Czech (num2words `lang_CS`). num2words has no Czech ordinals (they raise), and only
//! CZK and EUR amounts.

use anyhow::{bail, Result};

use super::pyfloat;
use super::slavic::{self, ChunkWords};
use super::{Currency, NumberWords};

pub struct Czech;

const WORDS: ChunkWords = ChunkWords {
    zero: "nula",
    ones: ["jedna", "dva", "tři", "čtyři", "pět", "šest", "sedm", "osm", "devět"],
    teens: [
        "deset",
        "jedenáct",
        "dvanáct",
        "třináct",
        "čtrnáct",
        "patnáct",
        "šestnáct",
        "sedmnáct",
        "osmnáct",
        "devatenáct",
    ],
    tens: [
        "dvacet",
        "třicet",
        "čtyřicet",
        "padesát",
        "šedesát",
        "sedmdesát",
        "osmdesát",
        "devadesát",
    ],
    hundreds: [
        "sto",
        "dvěstě",
        "třista",
        "čtyřista",
        "pětset",
        "šestset",
        "sedmset",
        "osmset",
        "devětset",
    ],
    thousands: &[
        ("tisíc", "tisíce", "tisíc"),
        ("milion", "miliony", "milionů"),
        ("miliarda", "miliardy", "miliard"),
        ("bilion", "biliony", "bilionů"),
        ("biliarda", "biliardy", "biliard"),
        ("trilion", "triliony", "trilionů"),
        ("triliarda", "triliardy", "triliard"),
        ("kvadrilion", "kvadriliony", "kvadrilionů"),
        ("kvadriliarda", "kvadriliardy", "kvadriliard"),
        ("quintillion", "quintilliony", "quintillionů"),
    ],
};

impl NumberWords for Czech {
    fn cardinal(&self, n: u128) -> Result<String> {
        slavic::int_to_words(n, &WORDS)
    }

    fn ordinal(&self, _n: u128) -> Result<String> {
        bail!("num2words has no Czech ordinals")
    }

    fn decimal(&self, x: f64) -> Result<String> {
        slavic::decimal_words(&pyfloat::repr(x), "celá", &WORDS)
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        if currency != Currency::Eur {
            bail!("num2words has no Czech name for {currency:?}");
        }
        let (units, cents) = pyfloat::currency_parts(amount)?;
        Ok(format!(
            "{} {}, {} {}",
            self.cardinal(units)?,
            slavic::plural_form(units, ("euro", "euro", "euro")),
            self.cardinal(cents as u128)?,
            slavic::plural_form(cents as u128, ("cent", "centy", "centů"))
        ))
    }
}
