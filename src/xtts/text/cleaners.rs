//! `multilingual_cleaners` of the reference: quotes, lowercase, numbers, abbreviations,
//! symbols and whitespace, with the per-language tables.

use std::sync::LazyLock;

use anyhow::Result;
use regex::Regex;

use super::{numbers, pystr, zh};

/// Abbreviations (without the trailing dot) and their expansion, in the order applied.
fn abbreviations(lang: &str) -> &'static [(&'static str, &'static str)] {
    match lang {
        "en" => &[
            ("mrs", "misess"),
            ("mr", "mister"),
            ("dr", "doctor"),
            ("st", "saint"),
            ("co", "company"),
            ("jr", "junior"),
            ("maj", "major"),
            ("gen", "general"),
            ("drs", "doctors"),
            ("rev", "reverend"),
            ("lt", "lieutenant"),
            ("hon", "honorable"),
            ("sgt", "sergeant"),
            ("capt", "captain"),
            ("esq", "esquire"),
            ("ltd", "limited"),
            ("col", "colonel"),
            ("ft", "fort"),
        ],
        "es" => &[
            ("sra", "señora"),
            ("sr", "señor"),
            ("dr", "doctor"),
            ("dra", "doctora"),
            ("st", "santo"),
            ("co", "compañía"),
            ("jr", "junior"),
            ("ltd", "limitada"),
        ],
        "fr" => &[
            ("mme", "madame"),
            ("mr", "monsieur"),
            ("dr", "docteur"),
            ("st", "saint"),
            ("co", "compagnie"),
            ("jr", "junior"),
            ("ltd", "limitée"),
        ],
        "de" => &[
            ("fr", "frau"),
            ("dr", "doktor"),
            ("st", "sankt"),
            ("co", "firma"),
            ("jr", "junior"),
        ],
        "pt" => &[
            ("sra", "senhora"),
            ("sr", "senhor"),
            ("dr", "doutor"),
            ("dra", "doutora"),
            ("st", "santo"),
            ("co", "companhia"),
            ("jr", "júnior"),
            ("ltd", "limitada"),
        ],
        "it" => &[
            ("sig", "signore"),
            ("dr", "dottore"),
            ("st", "santo"),
            ("co", "compagnia"),
            ("jr", "junior"),
            ("ltd", "limitata"),
        ],
        "pl" => &[
            ("p", "pani"),
            ("m", "pan"),
            ("dr", "doktor"),
            ("sw", "święty"),
            ("jr", "junior"),
        ],
        "cs" => &[("dr", "doktor"), ("ing", "inženýr"), ("p", "pan")],
        "ru" => &[("г-жа", "госпожа"), ("г-н", "господин"), ("д-р", "доктор")],
        "nl" => &[
            ("dhr", "de heer"),
            ("mevr", "mevrouw"),
            ("dr", "dokter"),
            ("jhr", "jonkheer"),
        ],
        "tr" => &[("b", "bay"), ("byk", "büyük"), ("dr", "doktor")],
        "hu" => &[("dr", "doktor"), ("b", "bácsi"), ("nőv", "nővér")],
        _ => &[],
    }
}

/// Words for `& @ % # $ £ °`, in that order.
fn symbols(lang: &str) -> Option<[&'static str; 7]> {
    Some(match lang {
        "en" => ["and", "at", "percent", "hash", "dollar", "pound", "degree"],
        "es" => ["y", "arroba", "por ciento", "numeral", "dolar", "libra", "grados"],
        "fr" => ["et", "arobase", "pour cent", "dièse", "dollar", "livre", "degrés"],
        "de" => ["und", "at", "prozent", "raute", "dollar", "pfund", "grad"],
        "pt" => ["e", "arroba", "por cento", "cardinal", "dólar", "libra", "graus"],
        "it" => [
            "e",
            "chiocciola",
            "per cento",
            "cancelletto",
            "dollaro",
            "sterlina",
            "gradi",
        ],
        "pl" => ["i", "małpa", "procent", "krzyżyk", "dolar", "funt", "stopnie"],
        "ar" => ["و", "على", "في المئة", "رقم", "دولار", "جنيه", "درجة"],
        "zh" => ["和", "在", "百分之", "号", "美元", "英镑", "度"],
        "cs" => ["a", "na", "procento", "křížek", "dolar", "libra", "stupně"],
        "ru" => ["и", "собака", "процентов", "номер", "доллар", "фунт", "градус"],
        "nl" => ["en", "bij", "procent", "hekje", "dollar", "pond", "graden"],
        "tr" => ["ve", "at", "yüzde", "diyez", "dolar", "sterlin", "derece"],
        "hu" => ["és", "kukac", "százalék", "kettőskereszt", "dollár", "font", "fok"],
        "ko" => ["그리고", "에", "퍼센트", "번호", "달러", "파운드", "도"],
        "hi" => ["और", "ऐट दी रेट", "प्रतिशत", "हैश", "डॉलर", "पाउंड", "डिग्री"],
        _ => return None,
    })
}

/// Compiled abbreviation patterns of one language with their replacements.
type AbbreviationPatterns = Vec<(Regex, &'static str)>;

const SYMBOL_CHARS: [char; 7] = ['&', '@', '%', '#', '$', '£', '°'];

/// Compiled abbreviation patterns per language: `\b<abbr>\.` (Russian: `\b<abbr>\b`),
/// case-insensitive as in the reference.
fn abbreviation_patterns(lang: &str) -> &'static [(Regex, &'static str)] {
    static TABLE: LazyLock<Vec<(&'static str, AbbreviationPatterns)>> = LazyLock::new(|| {
        super::BASE_LANGUAGES
            .iter()
            .map(|lang| {
                let tail = if *lang == "ru" { r"\b" } else { r"\." };
                let patterns = abbreviations(lang)
                    .iter()
                    .map(|(abbr, word)| {
                        let re =
                            Regex::new(&format!(r"(?i)\b{}{tail}", regex::escape(abbr))).expect("valid abbreviation");
                        (re, *word)
                    })
                    .collect();
                (*lang, patterns)
            })
            .collect()
    });
    TABLE
        .iter()
        .find(|(l, _)| *l == lang)
        .map(|(_, p)| p.as_slice())
        .unwrap_or(&[])
}

fn expand_abbreviations(text: &str, lang: &str) -> String {
    let mut text = text.to_string();
    for (re, word) in abbreviation_patterns(lang) {
        text = re.replace_all(&text, regex::NoExpand(word)).into_owned();
    }
    text
}

fn expand_symbols(text: &str, lang: &str) -> String {
    let mut text = text.to_string();
    if let Some(words) = symbols(lang) {
        for (symbol, word) in SYMBOL_CHARS.iter().zip(words) {
            text = text.replace(*symbol, &format!(" {word} "));
            // One pass, as in the reference: "   " becomes "  ", not " ".
            text = text.replace("  ", " ");
        }
    }
    pystr::strip(&text).to_string()
}

/// The reference's `multilingual_cleaners` for every language except ja.
pub fn multilingual(text: &str, lang: &str) -> Result<String> {
    let mut text = text.replace('"', "");
    if lang == "tr" {
        text = text.replace('İ', "i").replace('Ö', "ö").replace('Ü', "ü");
    }
    text = pystr::lower(&text);
    text = if lang == "zh" {
        zh::normalize(&text)?
    } else {
        numbers::expand_numbers(&text, lang)?
    };
    text = expand_abbreviations(&text, lang);
    text = expand_symbols(&text, lang);
    Ok(pystr::collapse_whitespace(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abbreviations_need_word_start_and_dot() {
        assert_eq!(
            expand_abbreviations("mr. smith and dr. who", "en"),
            "mister smith and doctor who"
        );
        assert_eq!(expand_abbreviations("hammr. x", "en"), "hammr. x");
        assert_eq!(
            expand_abbreviations("здравствуйте г-н иванов", "ru"),
            "здравствуйте господин иванов"
        );
    }

    #[test]
    fn symbols_collapse_one_double_space_per_symbol() {
        assert_eq!(expand_symbols("14% battery", "en"), "14 percent battery");
        assert_eq!(expand_symbols("a&b@c", "pt"), "a e b arroba c");
        assert_eq!(expand_symbols("x", "ja"), "x");
    }
}
