//! Chinese number normalisation into Chinese numerals (the reference's
//! `zh_num2words.TextNorm()` with its default options), and punctuation to ",".
//!
//! The passes run in the reference's order, each finding its matches first and then
//! replacing the first occurrence of every matched string, as the reference does: dates,
//! money, mobile and fixed-line numbers, fractions, percentages, numbers before a measure
//! word, digit strings of 4 to 32 digits (read digit by digit), remaining numbers.

use std::sync::LazyLock;

use anyhow::{anyhow, Result};
use regex::{Captures, Regex};

/// Money units that may follow an amount (亿 etc. alone also count, as in the reference).
const CURRENCY_UNITS: &str = "((亿|千万|百万|万|千|百)|(亿|千万|百万|万|千|百|)元|(亿|千万|百万|万|千|百|)块|角|毛|分)";

/// Measure words after which a number is read as a quantity rather than digit by digit.
const MEASURE_WORDS: &str = concat!(
    "(匹|张|座|回|场|尾|条|个|首|阙|阵|网|炮|顶|丘|棵|只|支|袭|辆|挑|担|颗|壳|窠|曲|墙|群|腔|",
    "砣|座|客|贯|扎|捆|刀|令|打|手|罗|坡|山|岭|江|溪|钟|队|单|双|对|出|口|头|脚|板|跳|枝|件|贴|",
    "针|线|管|名|位|身|堂|课|本|页|家|户|层|丝|毫|厘|分|钱|两|斤|担|铢|石|钧|锱|忽|(千|毫|微)克|",
    "毫|厘|分|寸|尺|丈|里|寻|常|铺|程|(千|分|厘|毫|微)米|撮|勺|合|升|斗|石|盘|碗|碟|叠|桶|笼|盆|",
    "盒|杯|钟|斛|锅|簋|篮|盘|桶|罐|瓶|壶|卮|盏|箩|箱|煲|啖|袋|钵|年|月|日|季|刻|时|周|天|秒|分|旬|",
    "纪|岁|世|更|夜|春|夏|秋|冬|代|伏|辈|丸|泡|粒|颗|幢|堆|条|根|支|道|面|片|张|颗|块)"
);

/// Punctuation that becomes ",": Chinese stops and marks, then ASCII punctuation.
const PUNCTUATION: &str = concat!(
    "！？｡。",
    "＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏·〈〉-",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
);

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid zh pattern")
}

static DATE: LazyLock<Regex> = LazyLock::new(|| regex(r"\D+((([089]\d|(19|20)\d{2})年)?(\d{1,2}月(\d{1,2}[日号])?)?)"));
static MONEY: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r"\D+((\d+(\.\d+)?)[多余几]?{CURRENCY_UNITS}(\d{CURRENCY_UNITS}?)?)"
    ))
});
static MOBILE: LazyLock<Regex> = LazyLock::new(|| regex(r"\D((\+?86 ?)?1([38]\d|5[0-35-9]|7[678]|9[89])\d{8})\D"));
static FIXED_LINE: LazyLock<Regex> = LazyLock::new(|| regex(r"\D((0(10|2[1-3]|[3-9]\d{2})-?)?[1-9]\d{6,7})\D"));
static FRACTION: LazyLock<Regex> = LazyLock::new(|| regex(r"(\d+/\d+)"));
static PERCENT: LazyLock<Regex> = LazyLock::new(|| regex(r"(\d+(\.\d+)?%)"));
static QUANTITY: LazyLock<Regex> = LazyLock::new(|| regex(&format!(r"(\d+(\.\d+)?)[多余几]?{MEASURE_WORDS}")));
static DIGITS: LazyLock<Regex> = LazyLock::new(|| regex(r"(\d{4,32})"));
static NUMBER: LazyLock<Regex> = LazyLock::new(|| regex(r"(\d+(\.\d+)?)"));
static NUMBER_IN_MONEY: LazyLock<Regex> = LazyLock::new(|| regex(r"(\d+(\.\d+)?)"));
/// "p2p", "b2b": letters around a 2 that the number passes turned into 二.
static LETTERS_TWO_LETTERS: LazyLock<Regex> = LazyLock::new(|| regex(r"(([a-zA-Z]+)二([a-zA-Z]+))"));

/// One token of a Chinese numeral.
#[derive(Clone, Copy, PartialEq)]
enum Symbol {
    Digit(u32),
    /// 10^power: 十 百 千 万, then 亿 (10^8) and up in steps of 10^4.
    Unit(u32),
    Point,
    /// 两, the counting form of 2.
    Liang,
}

const UNIT_POWERS: [u32; 14] = [1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44];

impl Symbol {
    fn as_char(self) -> char {
        match self {
            Symbol::Digit(d) => "零一二三四五六七八九".chars().nth(d as usize).expect("digit 0..=9"),
            Symbol::Unit(p) => {
                let i = UNIT_POWERS.iter().position(|&u| u == p).expect("known unit");
                "十百千万亿兆京垓秭穰沟涧正载".chars().nth(i).expect("unit char")
            }
            Symbol::Point => '点',
            Symbol::Liang => '两',
        }
    }
}

/// The value of a decimal digit as Python's `int()` reads it (ASCII or full-width).
fn digit_value(c: char) -> Result<u32> {
    match c {
        '0'..='9' => Ok(c as u32 - '0' as u32),
        '０'..='９' => Ok(c as u32 - '０' as u32),
        _ => Err(anyhow!("cannot read the digit {c:?} in Chinese text")),
    }
}

/// Digits with units: "12034" -> 一万二千零三十四 (before the 两 and 十 adjustments).
fn with_units(digits: &[char]) -> Result<Vec<Symbol>> {
    let start = digits.iter().position(|&c| c != '0').unwrap_or(digits.len());
    let significant = &digits[start..];
    match significant.len() {
        0 => Ok(Vec::new()),
        1 => {
            let digit = Symbol::Digit(digit_value(significant[0])?);
            // A zero is said where leading zeros were dropped: "05" -> 零五.
            Ok(if start > 0 {
                vec![Symbol::Digit(0), digit]
            } else {
                vec![digit]
            })
        }
        len => {
            let power = *UNIT_POWERS
                .iter()
                .rev()
                .find(|&&p| (p as usize) < len)
                .expect("十 fits any length above one");
            let split = digits.len() - power as usize;
            let mut out = with_units(&digits[..split])?;
            out.push(Symbol::Unit(power));
            out.extend(with_units(&significant[len - power as usize..])?);
            Ok(out)
        }
    }
}

/// The reference's `num2chn` for a number string of digits with at most one ".".
/// `units` false reads the integer digit by digit; `liang` uses 两 for a 2 before
/// 百 and larger units.
fn to_chinese(number: &str, units: bool, liang: bool) -> Result<String> {
    let (int, dec) = match number.split_once('.') {
        Some((int, dec)) if !dec.contains('.') => (int, dec),
        Some(_) => return Err(anyhow!("number {number:?} has more than one point")),
        None => (number, ""),
    };
    let int: Vec<char> = int.chars().collect();
    let mut symbols = if units && int.len() > 1 {
        with_units(&int)?
    } else {
        int.iter()
            .map(|&c| digit_value(c).map(Symbol::Digit))
            .collect::<Result<_>>()?
    };
    if !dec.is_empty() {
        symbols.push(Symbol::Point);
        for c in dec.chars() {
            symbols.push(Symbol::Digit(digit_value(c)?));
        }
    }
    if liang {
        for i in 0..symbols.len() {
            if symbols[i] != Symbol::Digit(2) {
                continue;
            }
            let next_is_big_unit = matches!(symbols.get(i + 1), Some(Symbol::Unit(p)) if *p != 1);
            let previous_ok = match i.checked_sub(1).map(|j| symbols[j]) {
                None => true,
                Some(Symbol::Unit(p)) => p != 1,
                Some(_) => false,
            };
            if next_is_big_unit && previous_ok {
                symbols[i] = Symbol::Liang;
            }
        }
    }
    let mut out: String = symbols.iter().map(|s| s.as_char()).collect();
    if out.starts_with('点') {
        out.insert(0, '零');
    }
    // 一十 at the start is said 十: 10..19, 十万, ...
    if out.starts_with("一十") {
        out.remove(0);
    }
    Ok(out)
}

/// A number as a quantity: units and 两.
fn cardinal(number: &str) -> Result<String> {
    to_chinese(number, true, true)
}

/// A digit string read digit by digit.
fn digit_by_digit(number: &str) -> Result<String> {
    to_chinese(number, false, false)
}

/// Finds every match of `re` in `text`, then replaces the first occurrence of each
/// match's group 1 with `f(captures)`.
fn replace_each_first(text: String, re: &Regex, f: impl Fn(&Captures) -> Result<String>) -> Result<String> {
    let found: Vec<(String, String)> = re
        .captures_iter(&text)
        .map(|c| Ok((c[1].to_string(), f(&c)?)))
        .collect::<Result<_>>()?;
    let mut text = text;
    for (from, to) in found {
        text = text.replacen(&from, &to, 1);
    }
    Ok(text)
}

/// "2023年5月1日" -> 二零二三年五月一日.
fn date(date: &str) -> Result<String> {
    let date = date.trim();
    let (year, rest) = match date.split_once('年') {
        Some((year, rest)) => (format!("{}年", digit_by_digit(year)?), rest),
        None => (String::new(), date),
    };
    let mut out = year;
    if let Some((month, day)) = rest.trim().split_once('月') {
        out.push_str(&cardinal(month)?);
        out.push('月');
        if let Some(last) = day.chars().last() {
            out.push_str(&cardinal(&day[..day.len() - last.len_utf8()])?);
            out.push(last);
        }
    }
    Ok(out)
}

/// Every number inside a money phrase as a quantity, all occurrences.
fn money(phrase: &str) -> Result<String> {
    let mut out = phrase.to_string();
    for c in NUMBER_IN_MONEY.captures_iter(phrase) {
        out = out.replace(&c[1], &cardinal(&c[1])?);
    }
    Ok(out)
}

/// The reference's `normalize_nsw`.
fn normalize_numbers(text: &str) -> Result<String> {
    let mut t = format!("^{text}$");
    t = replace_each_first(t, &DATE, |c| date(&c[1]))?;
    t = replace_each_first(t, &MONEY, |c| money(&c[1]))?;
    t = replace_each_first(t, &MOBILE, |c| {
        let parts: Vec<String> = c[1]
            .trim_matches('+')
            .split_whitespace()
            .map(digit_by_digit)
            .collect::<Result<_>>()?;
        Ok(parts.concat())
    })?;
    t = replace_each_first(t, &FIXED_LINE, |c| {
        let parts: Vec<String> = c[1].split('-').map(digit_by_digit).collect::<Result<_>>()?;
        Ok(parts.concat())
    })?;
    t = replace_each_first(t, &FRACTION, |c| {
        let (numerator, denominator) = c[1].split_once('/').expect("pattern has a slash");
        Ok(format!("{}分之{}", cardinal(denominator)?, cardinal(numerator)?))
    })?;
    t = t.replace('％', "%");
    t = replace_each_first(t, &PERCENT, |c| {
        Ok(format!("百分之{}", cardinal(c[1].trim().trim_matches('%'))?))
    })?;
    t = replace_each_first(t, &QUANTITY, |c| cardinal(&c[1]))?;
    t = replace_each_first(t, &DIGITS, |c| digit_by_digit(&c[1]))?;
    t = replace_each_first(t, &NUMBER, |c| cardinal(&c[1]))?;
    t = replace_each_first(t, &LETTERS_TWO_LETTERS, |c| Ok(format!("{}2{}", &c[2], &c[3])))?;
    Ok(t.trim_start_matches('^').trim_end_matches('$').to_string())
}

/// The reference's `zh_num2words.TextNorm()`: numbers to Chinese numerals, punctuation to ",".
pub fn normalize(text: &str) -> Result<String> {
    let text = normalize_numbers(text)?;
    Ok(text
        .chars()
        .map(|c| if PUNCTUATION.contains(c) { ',' } else { c })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerals_use_units_liang_and_leading_shi() {
        assert_eq!(cardinal("12").unwrap(), "十二");
        assert_eq!(cardinal("2000").unwrap(), "两千");
        assert_eq!(cardinal("1005").unwrap(), "一千零五");
        assert_eq!(cardinal("12.5").unwrap(), "十二点五");
        assert_eq!(digit_by_digit("2010").unwrap(), "二零一零");
        assert!(cardinal("1.2.3").is_err());
    }

    #[test]
    fn punctuation_becomes_commas() {
        assert_eq!(normalize("好！是吗？a-b").unwrap(), "好,是吗,a,b");
    }
}
