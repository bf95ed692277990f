//! `<say-as>`: digits, characters, telephone numbers, cardinals, ordinals, dates, times and
//! currency amounts as words of the segment's language, with the text front-end's number
//! words (num2words' wording) for the 14 languages that have them. Chinese, Japanese and
//! Hindi get their digit words, and dates and times in their own pattern with numerals the
//! front-end reads.

use crate::xtts::text::numbers::{currency_words, words_for, Currency, NumberWords};

/// The text of `<say-as interpret-as=KIND format=FORMAT>TEXT</say-as>` in `lang` (a base code);
/// None for a kind not handled here (the text is kept as written).
pub fn expand(kind: &str, format: Option<&str>, text: &str, lang: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    Ok(Some(match kind {
        "digits" => digits(text, lang)?,
        "characters" | "spell-out" | "verbatim" => characters(text, lang),
        "telephone" => telephone(text, lang)?,
        "cardinal" | "number" => cardinal(text, lang)?,
        "ordinal" => ordinal(text, lang)?,
        "date" => date(text, format, lang)?,
        "time" => time(text, lang)?,
        "currency" => currency(text, lang)?,
        _ => return Ok(None),
    }))
}

fn words(lang: &str) -> Option<&'static dyn NumberWords> {
    words_for(lang)
}

fn spoken_number(n: u128, lang: &str) -> Result<String, String> {
    match words(lang) {
        Some(w) => w.cardinal(n).map_err(|e| e.to_string()),
        None => Ok(n.to_string()),
    }
}

/// One digit as a word.
fn digit_word(d: u32, lang: &str) -> String {
    const ZH: [&str; 10] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
    const JA: [&str; 10] = [
        "ぜろ",
        "いち",
        "に",
        "さん",
        "よん",
        "ご",
        "ろく",
        "なな",
        "はち",
        "きゅう",
    ];
    const HI: [&str; 10] = ["शून्य", "एक", "दो", "तीन", "चार", "पाँच", "छह", "सात", "आठ", "नौ"];
    match lang {
        "zh" => ZH[d as usize].to_string(),
        "ja" => JA[d as usize].to_string(),
        "hi" => HI[d as usize].to_string(),
        _ => spoken_number(d as u128, lang).unwrap_or_else(|_| d.to_string()),
    }
}

/// Digit words of a group, one by one.
fn read_digits(group: &str, lang: &str) -> String {
    group
        .chars()
        .filter_map(|c| c.to_digit(10))
        .map(|d| digit_word(d, lang))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A pause between groups the engine hears as one.
const GROUP_SEPARATOR: &str = ", ";

fn digits(text: &str, lang: &str) -> Result<String, String> {
    let groups: Vec<String> = text
        .split_whitespace()
        .map(|g| read_digits(g, lang))
        .filter(|g| !g.is_empty())
        .collect();
    if groups.is_empty() {
        return Err(format!("'{text}' has no digits"));
    }
    Ok(groups.join(GROUP_SEPARATOR))
}

fn characters(text: &str, lang: &str) -> String {
    text.split_whitespace()
        .map(|word| {
            word.chars()
                .filter(|c| c.is_alphanumeric())
                .map(|c| match c.to_digit(10) {
                    Some(d) => digit_word(d, lang),
                    None => c.to_uppercase().to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(GROUP_SEPARATOR)
}

fn plus_word(lang: &str) -> &'static str {
    match lang {
        "es" => "más",
        "it" => "più",
        "pt" => "mais",
        "ru" => "плюс",
        "tr" => "artı",
        "hu" => "plusz",
        "ar" => "زائد",
        "ko" => "플러스",
        "zh" => "加",
        "ja" => "ぷらす",
        "hi" => "प्लस",
        _ => "plus",
    }
}

fn minus_word(lang: &str) -> &'static str {
    match lang {
        "fr" => "moins",
        "es" | "pt" => "menos",
        "it" => "meno",
        "nl" => "min",
        "cs" => "mínus",
        "ru" => "минус",
        "tr" => "eksi",
        "hu" => "mínusz",
        "ar" => "سالب",
        "ko" => "마이너스",
        "zh" => "负",
        "ja" => "まいなす",
        "hi" => "ऋण",
        _ => "minus",
    }
}

/// Groups as written (split at anything but digits); a long unbroken run is read in threes
/// with the last group up to four digits, as numbers are usually dictated.
fn telephone(text: &str, lang: &str) -> Result<String, String> {
    let mut groups = Vec::new();
    if text.starts_with('+') {
        groups.push(plus_word(lang).to_string());
    }
    for run in text.split(|c: char| !c.is_ascii_digit()).filter(|r| !r.is_empty()) {
        let mut rest = run;
        while rest.len() > 4 {
            groups.push(read_digits(&rest[..3], lang));
            rest = &rest[3..];
        }
        groups.push(read_digits(rest, lang));
    }
    if groups.len() <= usize::from(text.starts_with('+')) {
        return Err(format!("'{text}' is not a telephone number"));
    }
    Ok(groups.join(GROUP_SEPARATOR))
}

/// An integer or decimal as written: `1,234`, `1.234`, `1 234`, `-3`, `3.5`, `3,5`.
enum Number {
    Integer(u128),
    Decimal(f64),
}

fn parse_number(text: &str) -> Result<(bool, Number), String> {
    let bad = || format!("'{text}' is not a number");
    let compact: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '_' | '\''))
        .collect();
    let (negative, body) = match compact.strip_prefix(['-', '−']) {
        Some(rest) => (true, rest),
        None => (false, compact.as_str()),
    };
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit() || c == '.' || c == ',') {
        return Err(bad());
    }
    let parts: Vec<&str> = body.split(['.', ',']).collect();
    let thousands = parts.len() > 1 && parts[0].len() <= 3 && parts[1..].iter().all(|p| p.len() == 3);
    let number = if parts.len() == 1 || thousands {
        Number::Integer(parts.concat().parse().map_err(|_| bad())?)
    } else if parts.len() == 2 && !parts[0].is_empty() && !parts[1].is_empty() {
        Number::Decimal(format!("{}.{}", parts[0], parts[1]).parse().map_err(|_| bad())?)
    } else {
        return Err(bad());
    };
    Ok((negative, number))
}

fn cardinal(text: &str, lang: &str) -> Result<String, String> {
    let (negative, number) = parse_number(text)?;
    let spoken = match (number, words(lang)) {
        (Number::Integer(n), _) => spoken_number(n, lang)?,
        (Number::Decimal(x), Some(w)) => match w.decimal(x) {
            Ok(spoken) => spoken,
            // num2words has no decimals in some languages (Turkish): whole part, the decimal
            // sign, then the decimals digit by digit.
            Err(_) => {
                let (whole, decimals) = text
                    .trim_start_matches(['-', '−'])
                    .split_once(['.', ','])
                    .unwrap_or((text, ""));
                let whole: u128 = whole.parse().map_err(|_| format!("'{text}' is not a number"))?;
                format!(
                    "{} {} {}",
                    spoken_number(whole, lang)?,
                    decimal_sign(lang),
                    read_digits(decimals, lang)
                )
            }
        },
        (Number::Decimal(x), None) => x.to_string(),
    };
    Ok(if negative {
        format!("{} {spoken}", minus_word(lang))
    } else {
        spoken
    })
}

/// Currency and cent names where num2words has none.
fn unit_names(currency: Currency, lang: &str) -> (&'static str, &'static str) {
    match (lang, currency) {
        ("ar", Currency::Usd) => ("دولار", "سنت"),
        ("ar", Currency::Eur) => ("يورو", "سنت"),
        ("ar", Currency::Gbp) => ("جنيه إسترليني", "بنس"),
        ("cs", Currency::Usd) => ("dolarů", "centů"),
        ("cs", Currency::Eur) => ("eur", "centů"),
        ("cs", Currency::Gbp) => ("liber", "pencí"),
        ("hu", Currency::Usd) => ("dollár", "cent"),
        ("hu", Currency::Eur) => ("euró", "cent"),
        ("hu", Currency::Gbp) => ("font", "penny"),
        ("ko", Currency::Usd) => ("달러", "센트"),
        ("ko", Currency::Eur) => ("유로", "센트"),
        ("ko", Currency::Gbp) => ("파운드", "펜스"),
        ("tr", Currency::Usd) => ("dolar", "sent"),
        ("tr", Currency::Eur) => ("avro", "sent"),
        ("tr", Currency::Gbp) => ("sterlin", "peni"),
        (_, Currency::Usd) => ("dollars", "cents"),
        (_, Currency::Eur) => ("euros", "cents"),
        (_, Currency::Gbp) => ("pounds", "pence"),
    }
}

/// The word for the decimal sign.
fn decimal_sign(lang: &str) -> &'static str {
    match lang {
        "tr" => "virgül",
        "de" | "nl" => "komma",
        "fr" => "virgule",
        "es" => "coma",
        "it" => "virgola",
        "pt" => "vírgula",
        "pl" => "przecinek",
        "cs" => "celá",
        "ru" => "целых",
        "hu" => "egész",
        "ar" => "فاصلة",
        "ko" => "점",
        _ => "point",
    }
}

fn ordinal(text: &str, lang: &str) -> Result<String, String> {
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u128 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not an ordinal number"))?;
    ordinal_words(n, lang)
}

fn ordinal_words(n: u128, lang: &str) -> Result<String, String> {
    match words(lang) {
        // num2words has no ordinals in some languages (Czech): the cardinal is understood.
        Some(w) => w.ordinal(n).or_else(|_| w.cardinal(n)).map_err(|e| e.to_string()),
        None => Ok(match lang {
            "zh" => format!("第{n}"),
            "ja" => format!("{n}番目"),
            _ => n.to_string(),
        }),
    }
}

/// Month names as a date reads them (genitive where the language declines them).
fn month_name(lang: &str, month: u32) -> &'static str {
    const EN: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const ES: [&str; 12] = [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ];
    const FR: [&str; 12] = [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ];
    const DE: [&str; 12] = [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ];
    const IT: [&str; 12] = [
        "gennaio",
        "febbraio",
        "marzo",
        "aprile",
        "maggio",
        "giugno",
        "luglio",
        "agosto",
        "settembre",
        "ottobre",
        "novembre",
        "dicembre",
    ];
    const PT: [&str; 12] = [
        "janeiro",
        "fevereiro",
        "março",
        "abril",
        "maio",
        "junho",
        "julho",
        "agosto",
        "setembro",
        "outubro",
        "novembro",
        "dezembro",
    ];
    const PL: [&str; 12] = [
        "stycznia",
        "lutego",
        "marca",
        "kwietnia",
        "maja",
        "czerwca",
        "lipca",
        "sierpnia",
        "września",
        "października",
        "listopada",
        "grudnia",
    ];
    const NL: [&str; 12] = [
        "januari",
        "februari",
        "maart",
        "april",
        "mei",
        "juni",
        "juli",
        "augustus",
        "september",
        "oktober",
        "november",
        "december",
    ];
    const CS: [&str; 12] = [
        "ledna",
        "února",
        "března",
        "dubna",
        "května",
        "června",
        "července",
        "srpna",
        "září",
        "října",
        "listopadu",
        "prosince",
    ];
    const RU: [&str; 12] = [
        "января",
        "февраля",
        "марта",
        "апреля",
        "мая",
        "июня",
        "июля",
        "августа",
        "сентября",
        "октября",
        "ноября",
        "декабря",
    ];
    const TR: [&str; 12] = [
        "Ocak", "Şubat", "Mart", "Nisan", "Mayıs", "Haziran", "Temmuz", "Ağustos", "Eylül", "Ekim", "Kasım", "Aralık",
    ];
    const HU: [&str; 12] = [
        "január",
        "február",
        "március",
        "április",
        "május",
        "június",
        "július",
        "augusztus",
        "szeptember",
        "október",
        "november",
        "december",
    ];
    const AR: [&str; 12] = [
        "يناير",
        "فبراير",
        "مارس",
        "أبريل",
        "مايو",
        "يونيو",
        "يوليو",
        "أغسطس",
        "سبتمبر",
        "أكتوبر",
        "نوفمبر",
        "ديسمبر",
    ];
    const HI: [&str; 12] = [
        "जनवरी",
        "फ़रवरी",
        "मार्च",
        "अप्रैल",
        "मई",
        "जून",
        "जुलाई",
        "अगस्त",
        "सितंबर",
        "अक्टूबर",
        "नवंबर",
        "दिसंबर",
    ];
    let table = match lang {
        "es" => &ES,
        "fr" => &FR,
        "de" => &DE,
        "it" => &IT,
        "pt" => &PT,
        "pl" => &PL,
        "nl" => &NL,
        "cs" => &CS,
        "ru" => &RU,
        "tr" => &TR,
        "hu" => &HU,
        "ar" => &AR,
        "hi" => &HI,
        _ => &EN,
    };
    table[month as usize - 1]
}

/// A date of `format` (letters y, m, d in the order written: `dmy`, `mdy`, `ymd`, `ym`, `md`,
/// ...; default `ymd` for `2026-03-07`, else `mdy` in English and `dmy` elsewhere), read in
/// the language's order.
fn date(text: &str, format: Option<&str>, lang: &str) -> Result<String, String> {
    let parts: Vec<&str> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .collect();
    let format = match format {
        Some(f) => f.to_string(),
        None if parts.first().is_some_and(|p| p.len() == 4) => "ymd".into(),
        None if lang == "en" => "mdy".into(),
        None => "dmy".into(),
    };
    if format.is_empty() || !format.chars().all(|c| matches!(c, 'y' | 'm' | 'd')) || format.len() != parts.len() {
        return Err(format!("date '{text}' does not match format '{format}'"));
    }
    let (mut y, mut m, mut d) = (None, None, None);
    for (letter, part) in format.chars().zip(&parts) {
        let n: u32 = part
            .parse()
            .map_err(|_| format!("date '{text}': '{part}' is not a number"))?;
        match letter {
            'y' => y = Some(n),
            'm' => m = Some(n),
            _ => d = Some(n),
        }
    }
    if m.is_some_and(|m| !(1..=12).contains(&m)) {
        return Err(format!("date '{text}': month {} is not 1 to 12", m.unwrap_or(0)));
    }
    if d.is_some_and(|d| !(1..=31).contains(&d)) {
        return Err(format!("date '{text}': day {} is not 1 to 31", d.unwrap_or(0)));
    }
    let num = |n: u32| spoken_number(n as u128, lang);
    let year = y.map(num).transpose()?;
    let month = m.map(|m| month_name(lang, m).to_string());
    let day = match d {
        None => None,
        Some(d) => Some(match lang {
            "en" => ordinal_words(d as u128, lang)?,
            // A day is a masculine ordinal in German ("erster März"), genitive in Polish
            // ("pierwszego marca") and Czech ("prvního března"), neuter in Russian ("первое марта").
            "de" => {
                let o = ordinal_words(d as u128, lang)?;
                if o.ends_with('e') {
                    format!("{o}r")
                } else {
                    o
                }
            }
            "pl" => ordinal_words(d as u128, lang)?
                .split(' ')
                .map(|w| match w.strip_suffix('y') {
                    Some(stem) => format!("{stem}ego"),
                    None if w.ends_with('i') => format!("{w}ego"),
                    None => w.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" "),
            "cs" => czech_day(d),
            "ru" => {
                let o = ordinal_words(d as u128, lang)?;
                match (
                    o.strip_suffix("ий"),
                    o.strip_suffix("ый").or_else(|| o.strip_suffix("ой")),
                ) {
                    (Some(stem), _) => format!("{stem}ье"),
                    (None, Some(stem)) => format!("{stem}ое"),
                    _ => o,
                }
            }
            "fr" if d == 1 => "premier".to_string(),
            "it" if d == 1 => "primo".to_string(),
            _ => num(d)?,
        }),
    };
    // Korean, Chinese and Japanese read counters after each number.
    let counted = |n: Option<String>, unit: &str| n.map(|n| format!("{n}{unit}"));
    let order: Vec<Option<String>> = match lang {
        "en" => {
            let md = match (month, day) {
                (Some(m), Some(d)) => Some(format!("{m} {d}")),
                (m, d) => m.or(d),
            };
            match (md, year) {
                (Some(md), Some(y)) => vec![Some(format!("{md},")), Some(y)],
                (md, y) => vec![md, y],
            }
        }
        "es" | "pt" => {
            let de = |x: Option<String>| x.map(|x| format!("de {x}"));
            match (day, month, year) {
                (Some(d), m, y) => vec![Some(d), de(m), de(y)],
                (None, Some(m), y) => vec![Some(m), de(y)],
                (None, None, y) => vec![y],
            }
        }
        "hu" => vec![year, month, day],
        "ko" => vec![
            counted(y.map(num).transpose()?, "년"),
            counted(m.map(num).transpose()?, "월"),
            counted(d.map(num).transpose()?, "일"),
        ],
        "zh" | "ja" => {
            return Ok([
                counted(y.map(|n| n.to_string()), "年"),
                counted(m.map(|n| n.to_string()), "月"),
                counted(d.map(|n| n.to_string()), "日"),
            ]
            .into_iter()
            .flatten()
            .collect());
        }
        _ => vec![day, month, year],
    };
    Ok(order.into_iter().flatten().collect::<Vec<_>>().join(" "))
}

/// A day of the month as Czech dates read it: the genitive ordinal ("prvního").
fn czech_day(d: u32) -> String {
    const UNITS: [&str; 10] = [
        "",
        "prvního",
        "druhého",
        "třetího",
        "čtvrtého",
        "pátého",
        "šestého",
        "sedmého",
        "osmého",
        "devátého",
    ];
    const TEENS: [&str; 10] = [
        "desátého",
        "jedenáctého",
        "dvanáctého",
        "třináctého",
        "čtrnáctého",
        "patnáctého",
        "šestnáctého",
        "sedmnáctého",
        "osmnáctého",
        "devatenáctého",
    ];
    match d {
        1..=9 => UNITS[d as usize].to_string(),
        10..=19 => TEENS[d as usize - 10].to_string(),
        _ => {
            let tens = if d >= 30 { "třicátého" } else { "dvacátého" };
            match d % 10 {
                0 => tens.to_string(),
                u => format!("{tens} {}", UNITS[u as usize]),
            }
        }
    }
}

/// `14:30`, `14:30:15`, `2:30 pm`, `2pm`: hours and minutes in the language's way.
fn time(text: &str, lang: &str) -> Result<String, String> {
    let lower = text.to_lowercase();
    let suffix = ["a.m.", "p.m.", "am", "pm"]
        .into_iter()
        .find(|s| lower.trim_end().ends_with(s));
    let clock = match suffix {
        Some(s) => lower.trim_end().trim_end_matches(s).trim(),
        None => lower.trim(),
    };
    let parts: Vec<&str> = clock.split([':', '.', 'h']).collect();
    let bad = || format!("'{text}' is not a time of day");
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(bad());
    }
    let n: Vec<u32> = parts
        .iter()
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (h, m, s) = (n[0], n.get(1).copied().unwrap_or(0), n.get(2).copied().unwrap_or(0));
    let hour_limit = if suffix.is_some() { 12 } else { 23 };
    if h > hour_limit || m > 59 || s > 59 {
        return Err(bad());
    }
    let num = |n: u32| spoken_number(n as u128, lang);
    let (hw, mw) = (num(h)?, num(m)?);
    let mut spoken = match lang {
        "en" => match m {
            0 if suffix.is_some() => hw,
            0 => format!("{hw} o'clock"),
            1..=9 => format!("{hw} oh {mw}"),
            _ => format!("{hw} {mw}"),
        },
        "de" => join_nonzero(format!("{hw} Uhr"), m, mw),
        "fr" => {
            let hours = if h == 1 {
                "une heure".to_string()
            } else {
                format!("{hw} heures")
            };
            join_nonzero(hours, m, mw)
        }
        "es" => {
            let hours = if h == 1 {
                "la una".to_string()
            } else {
                format!("las {hw}")
            };
            if m == 0 {
                format!("{hours} en punto")
            } else {
                format!("{hours} y {mw}")
            }
        }
        "it" => join_nonzero(
            if h == 1 {
                "l'una".to_string()
            } else {
                format!("le {hw}")
            },
            m,
            format!("e {mw}"),
        ),
        "pt" => {
            let hours = if h == 1 {
                "uma hora".to_string()
            } else {
                format!("{hw} horas")
            };
            join_nonzero(hours, m, format!("e {mw}"))
        }
        "nl" => join_nonzero(format!("{hw} uur"), m, mw),
        "tr" => join_nonzero(format!("saat {hw}"), m, mw),
        "hu" => join_nonzero(format!("{hw} óra"), m, format!("{mw} perc")),
        "ar" => join_nonzero(format!("الساعة {hw}"), m, format!("و {mw} دقيقة")),
        "ko" => join_nonzero(format!("{hw}시"), m, format!("{mw}분")),
        "zh" => join_nonzero(format!("{h}点"), m, format!("{m}分")),
        "ja" => join_nonzero(format!("{h}時"), m, format!("{m}分")),
        "hi" => join_nonzero(format!("{h} बजकर"), m, format!("{m} मिनट")),
        // Polish, Czech, Russian: hours and minutes as numbers, as spoken on the phone
        // ("четырнадцать ноль пять").
        _ if m < 10 => join_nonzero(hw, m, format!("{} {mw}", digit_word(0, lang))),
        _ => join_nonzero(hw, m, mw),
    };
    if s > 0 {
        spoken = format!("{spoken} {}", num(s)?);
    }
    if let Some(sfx) = suffix {
        if lang == "en" {
            spoken.push_str(if sfx.starts_with('a') { " a m" } else { " p m" });
        }
    }
    Ok(spoken)
}

fn join_nonzero(hours: String, minutes: u32, minute_words: String) -> String {
    if minutes == 0 {
        hours
    } else {
        format!("{hours} {minute_words}")
    }
}

/// `$12.50`, `12,50 €`, `EUR 12.50`, `£3`: the amount with its unit. The front-end's
/// currencies (dollars, euros, pounds) are read; others are refused by name.
fn currency(text: &str, lang: &str) -> Result<String, String> {
    let upper = text.to_uppercase();
    let unit = [
        ("$", Currency::Usd),
        ("USD", Currency::Usd),
        ("€", Currency::Eur),
        ("EUR", Currency::Eur),
        ("£", Currency::Gbp),
        ("GBP", Currency::Gbp),
    ]
    .into_iter()
    .find(|(mark, _)| upper.contains(mark));
    let Some((mark, currency)) = unit else {
        let code: String = upper.chars().filter(|c| c.is_alphabetic()).collect();
        return Err(if code.is_empty() {
            format!("'{text}' names no currency ($, €, £, USD, EUR or GBP)")
        } else {
            format!("currency '{code}' cannot be read out (USD, EUR and GBP can)")
        });
    };
    let amount_text = upper.replace(mark, "");
    let (negative, amount) = parse_number(amount_text.trim())?;
    let amount = match amount {
        Number::Integer(n) => n as f64,
        Number::Decimal(x) => x,
    };
    if words(lang).is_none() {
        return Ok(text.to_string());
    }
    // num2words reads every amount as riyals in Arabic, and with English unit names in Czech,
    // Hungarian and (for euros) Korean: those languages get their own unit names.
    let own_units = matches!(lang, "ar" | "cs" | "hu" | "ko");
    let spoken = match currency_words(amount, currency, lang) {
        Ok(spoken) if !own_units => spoken,
        // num2words has no currency wording in some languages (Turkish): amount and unit.
        _ => {
            let (unit, cents) = unit_names(currency, lang);
            let whole = amount.trunc() as u128;
            let fraction = ((amount - amount.trunc()) * 100.0).round() as u128;
            let mut spoken = format!("{} {unit}", spoken_number(whole, lang)?);
            if fraction > 0 {
                spoken = format!("{spoken} {} {cents}", spoken_number(fraction, lang)?);
            }
            spoken
        }
    };
    Ok(if negative {
        format!("{} {spoken}", minus_word(lang))
    } else {
        spoken
    })
}
