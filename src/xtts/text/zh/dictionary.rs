//! The reference's pinyin data (pypinyin 0.55.0): a character table and a phrase table,
//! read from the JSON files its wheel ships, and the reading of text with them.
//!
//! `pinyin_dict.json` maps a code point, written in decimal, to the character's readings
//! ("12295": "líng,yuán,xīng"); the first is the one read. `phrases_dict.json` maps a
//! phrase to one list of readings per character ("中心": [["zhōng"], ["xīn"]]).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::segment::{self, PhraseLookup, Run};
use super::tone::tone3;

pub const CHARACTERS_FILE: &str = "pinyin_dict.json";
pub const PHRASES_FILE: &str = "phrases_dict.json";

pub struct PinyinDictionary {
    /// Code point -> first reading, tone-marked.
    characters: HashMap<u32, String>,
    /// Phrase -> first reading of each character, tone-marked.
    phrases: HashMap<String, Vec<String>>,
    /// Every non-empty prefix of every phrase, for the phrase cutter.
    prefixes: HashSet<String>,
}

impl PinyinDictionary {
    /// Reads `pinyin_dict.json` and `phrases_dict.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))
        };
        let characters = read(CHARACTERS_FILE)?;
        let phrases = read(PHRASES_FILE)?;
        let characters =
            parse_characters(&characters).with_context(|| format!("{}", dir.join(CHARACTERS_FILE).display()))?;
        let phrases = parse_phrases(&phrases).with_context(|| format!("{}", dir.join(PHRASES_FILE).display()))?;
        Ok(Self::new(characters, phrases))
    }

    /// Builds a dictionary from the two files' contents.
    pub fn from_json(characters: &str, phrases: &str) -> Result<Self> {
        let characters = parse_characters(characters).context(CHARACTERS_FILE)?;
        let phrases = parse_phrases(phrases).context(PHRASES_FILE)?;
        Ok(Self::new(characters, phrases))
    }

    fn new(characters: HashMap<u32, String>, phrases: HashMap<String, Vec<String>>) -> Self {
        let mut prefixes = HashSet::new();
        for phrase in phrases.keys() {
            for (i, c) in phrase.char_indices() {
                prefixes.insert(phrase[..i + c.len_utf8()].to_string());
            }
        }
        Self {
            characters,
            phrases,
            prefixes,
        }
    }

    /// Text to TONE3 pinyin as the reference's `chinese_transliterate`: Hanzi runs cut into
    /// phrases, each phrase read from the phrase table, other Hanzi one by one from the
    /// character table; everything else passes through unchanged.
    pub fn transliterate(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() * 2);
        for run in segment::runs(text) {
            match run {
                Run::Other(other) => out.push_str(other),
                Run::Hanzi(hanzi) => {
                    for word in segment::cut(hanzi, self) {
                        self.read_word(word, &mut out);
                    }
                }
            }
        }
        out
    }

    fn read_word(&self, word: &str, out: &mut String) {
        if let Some(readings) = self.phrases.get(word) {
            for reading in readings {
                out.push_str(&tone3(reading));
            }
            return;
        }
        for c in word.chars() {
            match self.characters.get(&(c as u32)) {
                Some(reading) => out.push_str(&tone3(reading)),
                // A Hanzi without a reading goes through the style conversion as it is.
                None => out.push_str(&tone3(c.encode_utf8(&mut [0; 4]))),
            }
        }
    }
}

impl PhraseLookup for PinyinDictionary {
    fn is_prefix(&self, prefix: &str) -> bool {
        self.prefixes.contains(prefix)
    }

    fn is_phrase(&self, word: &str) -> bool {
        self.phrases.contains_key(word)
    }
}

fn parse_characters(json: &str) -> Result<HashMap<u32, String>> {
    let raw: HashMap<String, String> = serde_json::from_str(json).context("not a map of code point to readings")?;
    raw.into_iter()
        .map(|(key, readings)| {
            let code: u32 = key
                .trim()
                .parse()
                .with_context(|| format!("key {key:?} is not a decimal code point"))?;
            let first = readings.split(',').next().unwrap_or_default().to_string();
            Ok((code, first))
        })
        .collect()
}

fn parse_phrases(json: &str) -> Result<HashMap<String, Vec<String>>> {
    let raw: HashMap<String, Vec<Vec<String>>> =
        serde_json::from_str(json).context("not a map of phrase to readings per character")?;
    raw.into_iter()
        .map(|(phrase, per_char)| {
            if per_char.len() != phrase.chars().count() {
                bail!(
                    "phrase {phrase:?} has {} readings for {} characters",
                    per_char.len(),
                    phrase.chars().count()
                );
            }
            let first = per_char
                .into_iter()
                .map(|readings| readings.into_iter().next())
                .collect::<Option<Vec<_>>>()
                .with_context(|| format!("phrase {phrase:?} has a character with no reading"))?;
            Ok((phrase, first))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHARACTERS: &str = r#"{"20013": "zhōng,zhòng", "22269": "guó", "20154": "rén", "30340": "de,dí,dì", "37325": "zhòng,chóng", "24198": "qìng"}"#;
    const PHRASES: &str = r#"{"中国": [["zhōng"], ["guó"]], "重庆": [["chóng"], ["qìng"]]}"#;

    fn dict() -> PinyinDictionary {
        PinyinDictionary::from_json(CHARACTERS, PHRASES).unwrap()
    }

    #[test]
    fn phrases_override_single_character_readings() {
        assert_eq!(dict().transliterate("重庆"), "chong2qing4");
        assert_eq!(dict().transliterate("重"), "zhong4");
        assert_eq!(dict().transliterate("中国人的"), "zhong1guo2ren2de5");
    }

    #[test]
    fn non_hanzi_passes_through_and_unknown_hanzi_gets_five() {
        assert_eq!(dict().transliterate("a中, 1b"), "azhong1, 1b");
        assert_eq!(dict().transliterate("中丁"), "zhong1丁5");
        assert_eq!(dict().transliterate(""), "");
    }

    #[test]
    fn broken_data_is_rejected_with_its_reason() {
        let err = PinyinDictionary::from_json(r#"{"x": "a"}"#, "{}").err().unwrap();
        assert!(format!("{err:#}").contains("decimal code point"), "{err:#}");
        let err = PinyinDictionary::from_json("{}", r#"{"中国": [["zhōng"]]}"#)
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("1 readings for 2 characters"), "{err:#}");
        let err = PinyinDictionary::from_json("{}", r#"{"中": [[]]}"#).err().unwrap();
        assert!(format!("{err:#}").contains("no reading"), "{err:#}");
        let err = PinyinDictionary::from_json("[]", "{}").err().unwrap();
        assert!(format!("{err:#}").contains(CHARACTERS_FILE), "{err:#}");
    }

    #[test]
    fn missing_directory_names_the_file() {
        let err = PinyinDictionary::load(Path::new("/nonexistent/pypinyin"))
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("pinyin_dict.json"), "{err:#}");
    }
}
