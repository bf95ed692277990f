//! Japanese: romaji the way the reference's cleaner makes it (cutlet 0.5.2 over MeCab with
//! the unidic-lite dictionary, then lowercased).
//!
//! The text is normalised (NFKC, curly quotes to ASCII), split into words by MeCab with the
//! dictionary installed by [`configure`], and each word gets its dictionary reading in Hepburn
//! romaji, with cutlet's rules for particles, loanwords, unknown words and spacing.
//!
//! Without a configured dictionary the romaji is approximate: kana runs are romanised as they
//! stand (no word spacing, は read "ha") and kanji pass through unchanged.

mod kana;
mod mecab;
mod normalize;
mod words;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context, Result};

use super::pystr;
use mecab::Tagger;

/// The config key naming the dictionary directory, and its default.
pub const CONFIG_KEY: &str = "engine.japanese_dictionary";
pub const DEFAULT_DIR: &str = "models/text/unidic-lite";

/// The process-wide word splitter and the directory its dictionary came from, installed once
/// by [`configure`].
static TAGGER: OnceLock<(PathBuf, Mutex<Tagger>)> = OnceLock::new();

/// Loads the compiled MeCab dictionary in `dir` (unidic-lite's `dicdir`, fetched by
/// `tools/fetch_text_data` into `models/text/unidic-lite`) for every later [`romanize`].
/// A missing or broken dictionary is an error naming the file. The dictionary stays for the
/// life of the process: configuring the same directory again is a no-op, another one an error.
pub fn configure(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "Japanese dictionary {} is missing; run tools/fetch_text_data",
            dir.display()
        );
    }
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("Japanese dictionary {}", dir.display()))?;
    if TAGGER.get().is_none() {
        let tagger = Tagger::open(dir)?;
        // Two threads configuring at once: the first one stored wins, the other is dropped.
        let _ = TAGGER.set((canonical.clone(), Mutex::new(tagger)));
    }
    match TAGGER.get() {
        Some((loaded, _)) if *loaded != canonical => bail!(
            "Japanese dictionary {} requested, but {} is already loaded",
            dir.display(),
            loaded.display()
        ),
        _ => Ok(()),
    }
}

/// Configures the dictionary in `dir` when the directory exists; when it does not, warns
/// that Japanese is romanised approximately and returns false.
pub fn configure_if_present(dir: &Path) -> Result<bool> {
    super::configure_if_present(
        dir,
        CONFIG_KEY,
        "Japanese is romanised approximately (kana only, kanji unread)",
        configure,
    )
}

/// Whether [`configure`] installed a dictionary (else romaji are approximate).
pub fn is_configured() -> bool {
    TAGGER.get().is_some()
}

/// Romaji of lowercased `text`, lowercased, as the reference's Japanese cleaner gives them.
pub fn romanize(text: &str) -> Result<String> {
    if text.is_empty() {
        return Ok(String::new());
    }
    let Some((_, tagger)) = TAGGER.get() else {
        return Ok(pystr::lower(&approximate(text)));
    };
    let text = normalize::normalize(text);
    let words = {
        // A panic while parsing leaves MeCab's state rebuilt by the next parse: the lock stays usable.
        let mut tagger = tagger.lock().unwrap_or_else(|e| e.into_inner());
        tagger.parse(&text)
    }
    .context("splitting Japanese text into words")?;
    let roma = words::romanize(&words)?;
    Ok(pystr::lower(pystr::strip(&roma)))
}

/// Without a dictionary: each run of kana romanised on its own, everything else unchanged.
fn approximate(text: &str) -> String {
    let hiragana = kana::to_hiragana(text);
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in hiragana.chars() {
        if kana::table(&c.to_string()).is_some() || c == 'っ' {
            run.push(c);
            continue;
        }
        flush_kana(&mut run, &mut out);
        out.push(c);
    }
    flush_kana(&mut run, &mut out);
    out
}

fn flush_kana(run: &mut String, out: &mut String) {
    match kana::romanize(run) {
        Ok(roma) => out.push_str(&roma),
        Err(_) => out.push_str(run),
    }
    run.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dictionary `tools/fetch_text_data` unpacks; tests need it.
    fn dictionary() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_DIR);
        configure(&dir).unwrap_or_else(|e| panic!("{e:#} (run tools/fetch_text_data)"));
    }

    fn roma(text: &str) -> String {
        dictionary();
        romanize(text).unwrap()
    }

    #[test]
    fn approximation_reads_kana_runs_only() {
        assert_eq!(approximate("東京です。"), "東京desu.");
        assert_eq!(approximate("ちょっと待って"), "chotto待tte");
        assert_eq!(approximate(""), "");
    }

    #[test]
    fn missing_dictionary_is_an_error_naming_the_fetch_script() {
        let err = configure(Path::new("/nonexistent/unidic-lite"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tools/fetch_text_data"), "{err}");
    }

    #[test]
    fn missing_directory_at_start_is_only_a_warning() {
        assert!(!configure_if_present(Path::new("/nonexistent/unidic-lite")).unwrap());
    }

    #[test]
    fn broken_directory_at_start_is_an_error_naming_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", configure_if_present(dir.path()).unwrap_err());
        assert!(err.contains(CONFIG_KEY), "{err}");
        // Either the missing file, or (once loaded) the dictionary already in use.
        assert!(
            err.contains("missing sys.dic") || err.contains("already loaded"),
            "{err}"
        );
    }

    #[test]
    fn a_second_dictionary_is_refused() {
        dictionary();
        // The same directory by another spelling is the same dictionary.
        let same = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/text/../text/unidic-lite");
        configure(&same).unwrap();
        let other = tempfile::tempdir().unwrap();
        let err = configure(other.path()).unwrap_err().to_string();
        assert!(err.contains("already loaded"), "{err}");
        assert!(is_configured());
    }

    #[test]
    fn words_are_spaced_and_kanji_read() {
        assert_eq!(roma("東京に行きます。"), "tokyo ni ikimasu.");
        assert_eq!(roma("ちょっと待ってください"), "chotto matte kudasai");
    }

    #[test]
    fn topic_and_direction_particles() {
        assert_eq!(roma("私は学校へ行く"), "watakushi wa gakkou e iku");
    }

    #[test]
    fn loanwords_take_their_source_spelling() {
        assert_eq!(roma("カツカレーを食べた"), "cutlet curry wo tabeta");
    }

    #[test]
    fn unknown_words_and_ascii() {
        assert_eq!(roma("안녕"), "??");
        assert_eq!(roma("bob's cat"), "bob's cat");
        assert_eq!(roma("１２３"), "123");
        // Digits of other scripts stay as they are; other unknown characters become "?".
        assert_eq!(roma("弁٣"), "ben٣");
        assert_eq!(roma("弁ß"), "ben ?");
    }

    #[test]
    fn nul_ends_the_text_as_in_c() {
        assert_eq!(roma("ねこ\0いぬ"), roma("ねこ"));
    }
}
