//! XTTS text front-end: per-language cleaning, number expansion, BPE tokens, sentence
//! splitting, reproducing the reference `VoiceBpeTokenizer` and `Xtts.inference` steps.

mod cleaners;
pub mod ja;
mod ko;
pub mod numbers;
mod pystr;
mod split;
mod tokenizer;
pub mod zh;

use anyhow::{bail, Context, Result};

pub use split::{sentences, split_sentences};
pub use tokenizer::{Sentence, TextFrontend};

/// The language codes XTTS v2 was trained on (`config.json` `languages`).
pub const LANGUAGES: [&str; 17] = [
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi",
];

/// The same languages by the base code the cleaners use (`zh-cn` -> `zh`).
const BASE_LANGUAGES: [&str; 17] = [
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh", "hu", "ko", "ja", "hi",
];

/// The most token ids one sentence may have, language token included (the reference
/// asserts `len(ids) < 402`).
pub const MAX_TEXT_TOKENS: usize = 401;

/// The base code of a language as the reference derives it (`"zh-cn"` -> `"zh"`,
/// `"pt-BR"` -> `"pt"`), or an error naming the supported languages.
pub fn base_language(lang: &str) -> Result<&'static str> {
    let base = lang.split('-').next().unwrap_or("");
    match BASE_LANGUAGES.iter().find(|l| **l == base) {
        Some(l) => Ok(l),
        None => bail!("unsupported language {lang:?}; supported: {}", LANGUAGES.join(", ")),
    }
}

/// Characters per sentence above which the reference warns (and at which it splits).
pub fn char_limit(lang: &str) -> usize {
    match lang.split('-').next().unwrap_or("") {
        "en" => 250,
        "de" => 253,
        "fr" => 273,
        "es" => 239,
        "it" => 213,
        "pt" => 203,
        "pl" => 224,
        "zh" => 82,
        "ar" => 166,
        "cs" => 186,
        "ru" => 182,
        "nl" => 251,
        "tr" => 226,
        "ja" => 71,
        "hu" => 224,
        "ko" => 95,
        "hi" => 150,
        _ => 250,
    }
}

/// The exact string the reference hands to the BPE for one sentence (after
/// `strip().lower()` and the language's cleaners, before the `[lang]` tag and `[SPACE]`).
pub fn clean(text: &str, lang: &str) -> Result<String> {
    let lang = base_language(lang)?;
    let text = pystr::lower(pystr::strip(text));
    match lang {
        "ja" => ja::romanize(&text),
        _ => {
            let text = cleaners::multilingual(&text, lang)?;
            Ok(match lang {
                "zh" => zh::to_pinyin(&text),
                "ko" => ko::romanize(&text),
                _ => text,
            })
        }
    }
}

/// Loads a language's data with `configure` when `dir` exists (an error names `key`); when it
/// does not, warns once what the language falls back to and returns false.
fn configure_if_present(
    dir: &std::path::Path,
    key: &str,
    fallback: &str,
    configure: impl FnOnce(&std::path::Path) -> Result<()>,
) -> Result<bool> {
    if !dir.exists() {
        tracing::warn!(
            "{key}: {} does not exist (run tools/fetch_text_data); {fallback}",
            dir.display()
        );
        return Ok(false);
    }
    configure(dir).with_context(|| format!("{key} = {}", dir.display()))?;
    Ok(true)
}

/// Fails with a clear message for text with nothing to say.
fn ensure_not_empty(text: &str) -> Result<()> {
    if pystr::strip(text).is_empty() {
        bail!("text is empty");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_resolve_to_base_codes() {
        assert_eq!(base_language("zh-cn").unwrap(), "zh");
        assert_eq!(base_language("pt-BR").unwrap(), "pt");
        let err = base_language("xx").unwrap_err().to_string();
        assert!(err.contains("unsupported language \"xx\""), "{err}");
        assert!(base_language("EN").is_err());
        assert!(base_language("").is_err());
    }

    #[test]
    fn char_limits_follow_the_reference_table() {
        assert_eq!(char_limit("zh-cn"), 82);
        assert_eq!(char_limit("ja"), 71);
        assert_eq!(char_limit("xx"), 250);
    }

    #[test]
    fn clean_rejects_unknown_language() {
        assert!(clean("hello", "klingon").is_err());
    }
}
