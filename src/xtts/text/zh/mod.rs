//! Chinese: numbers to Chinese numerals and punctuation to "," (`normalize`), then Hanzi
//! to tone-numbered pinyin (TONE3, neutral tone as 5) as the reference's pypinyin reads
//! them: by phrase, with its own dictionary data.
//!
//! The data (pypinyin's `pinyin_dict.json` and `phrases_dict.json`, fetched by
//! `tools/fetch_text_data`) is installed once per process with `configure`. Without it
//! the reading falls back to one character at a time (`approximate`), which differs from
//! the reference on heteronyms inside words.

mod approximate;
mod dictionary;
mod normalize;
mod segment;
mod tone;

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Result;

pub use dictionary::PinyinDictionary;
pub use normalize::normalize;

/// The config key naming the dictionary directory, and its default.
pub const CONFIG_KEY: &str = "engine.chinese_dictionary";
pub const DEFAULT_DIR: &str = "models/text/pypinyin";

static DICTIONARY: OnceLock<PinyinDictionary> = OnceLock::new();

/// Loads the pinyin data from `dir` and installs it for the whole process. A directory
/// with missing or broken files is an error naming the file. The first successful
/// configuration stays: later calls do nothing (the data is the same released files).
pub fn configure(dir: &Path) -> Result<()> {
    if DICTIONARY.get().is_some() {
        return Ok(());
    }
    let dictionary = PinyinDictionary::load(dir)?;
    // Two threads may race to here; either result is the same data.
    let _ = DICTIONARY.set(dictionary);
    Ok(())
}

/// Configures the data from `dir` when the directory exists; when it does not, warns
/// once that Chinese is read approximately and returns false.
pub fn configure_if_present(dir: &Path) -> Result<bool> {
    super::configure_if_present(
        dir,
        CONFIG_KEY,
        "Chinese is read character by character, which can differ from the reference",
        configure,
    )
}

/// Hanzi to TONE3 pinyin; every other character passes through unchanged.
pub fn to_pinyin(text: &str) -> String {
    match DICTIONARY.get() {
        Some(dictionary) => dictionary.transliterate(text),
        None => approximate::to_pinyin(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directory_is_not_an_error() {
        assert!(!configure_if_present(Path::new("/nonexistent/models/text/pypinyin")).unwrap());
    }

    #[test]
    fn broken_directory_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(dictionary::CHARACTERS_FILE), "{}").unwrap();
        std::fs::write(dir.path().join(dictionary::PHRASES_FILE), "{\"中国\": 1}").unwrap();
        let err = PinyinDictionary::load(dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("phrases_dict.json"), "{err:#}");
        std::fs::remove_file(dir.path().join(dictionary::CHARACTERS_FILE)).unwrap();
        let err = PinyinDictionary::load(dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("pinyin_dict.json: cannot read"), "{err:#}");
    }
}
