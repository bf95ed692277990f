//! Korean (num2words `lang_KO`): Sino-Korean cardinals grouped by 10^4, native ordinals.

use anyhow::{anyhow, bail, Result};

use super::base;
use super::cards::{pow10, Cards};
use super::pyfloat;
use super::{Currency, NumberWords};

pub struct Korean {
    cards: Cards,
}

const HIGH: [&str; 17] = [
    "무량대수",
    "불가사의",
    "나유타",
    "아승기",
    "항하사",
    "극",
    "재",
    "정",
    "간",
    "구",
    "양",
    "자",
    "해",
    "경",
    "조",
    "억",
    "만",
];

impl Korean {
    pub fn new() -> Self {
        let top = 4 * HIGH.len() as u32;
        let high = HIGH
            .iter()
            .enumerate()
            .filter_map(|(i, w)| pow10(top - 4 * i as u32).map(|v| (v, w.to_string())))
            .collect();
        let low = ["십", "구", "팔", "칠", "육", "오", "사", "삼", "이", "일", "영"];
        Korean {
            cards: Cards::new(high, &[(1000, "천"), (100, "백")], &low),
        }
    }
}

fn merge((ltext, lnum): (&str, u128), (rtext, rnum): (&str, u128)) -> (String, u128) {
    if lnum == 1 && rnum <= 10000 {
        (rtext.to_string(), rnum)
    } else if 10000 > lnum && lnum > rnum {
        (format!("{ltext}{rtext}"), lnum + rnum)
    } else if lnum >= 10000 && lnum > rnum {
        (format!("{ltext} {rtext}"), lnum + rnum)
    } else {
        (format!("{ltext}{rtext}"), lnum * rnum)
    }
}

/// Native Korean counting words used for ordinals.
fn native(word: &str) -> Option<&'static str> {
    Some(match word {
        "일" => "한",
        "이" => "두",
        "삼" => "세",
        "사" => "네",
        "오" => "다섯",
        "육" => "여섯",
        "칠" => "일곱",
        "팔" => "여덟",
        "구" => "아홉",
        "십" => "열",
        "이십" => "스물",
        "삼십" => "서른",
        "사십" => "마흔",
        "오십" => "쉰",
        "육십" => "예순",
        "칠십" => "일흔",
        "팔십" => "여든",
        "구십" => "아흔",
        _ => return None,
    })
}

impl NumberWords for Korean {
    fn cardinal(&self, n: u128) -> Result<String> {
        self.cards.cardinal(n, &merge)
    }

    fn ordinal(&self, n: u128) -> Result<String> {
        if n == 1 {
            return Ok("첫 번째".into());
        }
        let card = self.cardinal(n)?;
        let mut words: Vec<String> = card.split(' ').map(str::to_string).collect();
        let last = words.pop().unwrap_or_default();
        let mut parts: Vec<String> = last.split('백').map(str::to_string).collect();
        let tail = parts.pop().unwrap_or_default();
        let missing = || anyhow!("no Korean ordinal for {n}");
        let new_tail = if tail.contains('십') {
            let (tens, ones) = tail.split_once('십').expect("contains 십");
            let tens_word = native(&format!("{tens}십")).ok_or_else(missing)?;
            match native(ones) {
                Some(o) => format!("{}{o}", tens_word.replace("스무", "스물")),
                None => format!("{tens_word}{ones}"),
            }
        } else {
            native(&tail).ok_or_else(missing)?.to_string()
        };
        parts.push(new_tail);
        words.push(parts.join("백 "));
        Ok(format!("{} 번째", words.join(" ")))
    }

    fn decimal(&self, x: f64) -> Result<String> {
        base::decimal(x, "점", &|n| self.cardinal(n))
    }

    fn currency(&self, amount: f64, currency: Currency) -> Result<String> {
        if currency != Currency::Usd {
            bail!("num2words has no Korean name for {currency:?}");
        }
        let (units, cents) = pyfloat::currency_parts(amount)?;
        let units: String = self.cardinal(units)?.split_whitespace().collect();
        Ok(format!("{units}달러 {}센트", self.cardinal(cents as u128)?))
    }
}
