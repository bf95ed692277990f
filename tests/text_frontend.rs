//! The text front-end against the reference (coqui-tts 0.28.0) on the fixtures written by
//! `tools/reference/text_goldens.py`: `cases.json` (sentences per language) and
//! `numbers.json` (one number reading per case). The cleaned string and, where recorded,
//! the token ids must be identical for every case. Cases the reference
//! rejects must be rejected too. Cases marked `known_mismatch` are reported, and must still
//! differ, so that a fix is noticed and the mark removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use serde::Deserialize;
use xttsd::xtts::text::{clean, ja, zh, TextFrontend};

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    lang: String,
    text: String,
    cleaned: Option<String>,
    tokens: Option<Vec<i64>>,
    error: Option<String>,
    known_mismatch: Option<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Installs the fetched dictionaries the reference's readings need. Missing data is a
/// failure, not a skip: the cases below are only exact with it.
fn configure_dictionaries() {
    static CONFIGURED: Once = Once::new();
    CONFIGURED.call_once(|| {
        let dir = root().join(zh::DEFAULT_DIR);
        zh::configure(&dir)
            .unwrap_or_else(|e| panic!("Chinese pinyin tables: {e:#}\nrun tools/fetch_text_data to fetch them"));
        let dir = root().join(ja::DEFAULT_DIR);
        ja::configure(&dir).unwrap_or_else(|e| panic!("Japanese dictionary: {e:#}"));
    });
}

fn load_fixture(name: &str) -> Fixture {
    configure_dictionaries();
    let path = root().join("tests/fixtures/text").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn vocab() -> Option<TextFrontend> {
    let path = root().join("tests/fixtures/tiny/model/vocab.json");
    Path::exists(&path).then(|| TextFrontend::from_file(&path).expect("tiny vocab loads"))
}

/// What differs from the reference for this case, or None when identical.
fn compare(case: &Case, frontend: Option<&TextFrontend>) -> Option<String> {
    let ours = clean(&case.text, &case.lang);
    if let Some(kind) = &case.error {
        return match ours {
            Err(_) => None,
            Ok(s) => Some(format!("reference raises {kind}, we give {s:?}")),
        };
    }
    let expected = case.cleaned.as_deref().expect("fixture case has cleaned text");
    let ours = match ours {
        Ok(s) => s,
        Err(e) => return Some(format!("error: {e:#}")),
    };
    if ours != expected {
        return Some(format!("cleaned\n      ours: {ours:?}\n       ref: {expected:?}"));
    }
    if let (Some(frontend), Some(tokens)) = (frontend, &case.tokens) {
        match frontend.encode(&case.text, &case.lang) {
            Ok(ids) if &ids == tokens => {}
            Ok(ids) => return Some(format!("tokens\n      ours: {ids:?}\n       ref: {tokens:?}")),
            Err(e) => return Some(format!("encode error: {e:#}")),
        }
    }
    None
}

/// Compares every case of a fixture, prints a per-language tally, fails on any unexpected
/// difference.
fn check_fixture(name: &str, frontend: Option<&TextFrontend>) {
    let fixture = load_fixture(name);
    // lang -> (exact, known mismatches, total)
    let mut tally: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &fixture.cases {
        let entry = tally.entry(case.lang.as_str()).or_default();
        entry.2 += 1;
        let diff = compare(case, frontend);
        match (&case.known_mismatch, diff) {
            (None, None) => entry.0 += 1,
            (None, Some(d)) => failures.push(format!("[{}] {:?}: {d}", case.lang, case.text)),
            (Some(reason), Some(_)) => {
                entry.1 += 1;
                eprintln!("known mismatch [{}] {:?}: {reason}", case.lang, case.text);
            }
            (Some(reason), None) => failures.push(format!(
                "[{}] {:?} now matches the reference; remove its known_mismatch ({reason})",
                case.lang, case.text
            )),
        }
    }
    eprintln!("{name}:");
    for (lang, (exact, known, total)) in &tally {
        eprintln!("{lang:>6}: {exact}/{total} exact, {known} known mismatches");
    }
    assert!(
        failures.is_empty(),
        "{name}: {} cases differ from the reference:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn sentences_match_reference_cleaning_and_tokens() {
    let frontend = vocab();
    if frontend.is_none() {
        eprintln!("tests/fixtures/tiny/model/vocab.json is missing: comparing cleaned text only");
    }
    check_fixture("cases.json", frontend.as_ref());
}

#[test]
fn numbers_match_reference_readings() {
    check_fixture("numbers.json", None);
}

#[test]
fn rejects_unknown_language_and_empty_text() {
    let Some(frontend) = vocab() else { return };
    let err = frontend.encode_sentences("hello", "xx", false).unwrap_err().to_string();
    assert!(err.contains("unsupported language"), "{err}");
    let err = frontend.encode_sentences("  \n ", "en", false).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    assert!(clean("hello", "EN").is_err());
}

#[test]
fn rejects_text_over_the_token_limit() {
    let Some(frontend) = vocab() else { return };
    // Every letter is at least one id; 500 letters cannot fit in 401 ids.
    let long = "a".repeat(500);
    let err = frontend.encode_sentences(&long, "en", false).unwrap_err();
    assert!(format!("{err:#}").contains("too long"), "{err:#}");
    // Digits expand to words first, as in the reference: 120 digits are far over the limit.
    let digits = "7 ".repeat(120);
    assert!(frontend.encode_sentences(&digits, "en", false).is_err());
    // Split mode cuts the text into chunks that each fit.
    let sentences = "This is a short sentence. ".repeat(40);
    let chunks = frontend
        .encode_sentences(&sentences, "en", true)
        .expect("split text fits");
    assert!(chunks.len() > 1);
    assert!(chunks.iter().all(|ids| ids.len() <= 401));
}

#[test]
fn every_chunk_starts_with_the_language_token() {
    let Some(frontend) = vocab() else { return };
    let en = frontend.encode_sentences("Hello there.", "en", false).unwrap();
    let zh = frontend.encode_sentences("你好", "zh-cn", false).unwrap();
    assert_ne!(en[0][0], zh[0][0]);
    assert!(frontend.has_language_token("zh-cn"));
    assert!(!frontend.has_language_token("xx"));
}

#[derive(Deserialize)]
struct BulkCase {
    source: String,
    text: String,
    pinyin: String,
    cleaned: Option<String>,
}

/// One-off bulk comparison on thousands of sentences written by
/// `tools/reference/zh_bulk.py` (default `target/zh_bulk.json`, or `XTTSD_ZH_BULK`):
/// the bare pinyin reading and the full cleaning, with the match rate per source.
#[test]
#[ignore = "needs target/zh_bulk.json from tools/reference/zh_bulk.py"]
fn zh_bulk_matches_reference() {
    configure_dictionaries();
    let path = std::env::var_os("XTTSD_ZH_BULK").map_or_else(|| root().join("target/zh_bulk.json"), PathBuf::from);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let cases: Vec<BulkCase> = serde_json::from_str(&text).expect("bulk cases parse");
    // source -> (pinyin exact, cleaned exact, total)
    let mut tally: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let mut differences = Vec::new();
    for case in &cases {
        let entry = tally.entry(case.source.as_str()).or_default();
        entry.2 += 1;
        let pinyin = zh::to_pinyin(&case.text);
        if pinyin == case.pinyin {
            entry.0 += 1;
        } else {
            differences.push(format!(
                "pinyin {:?}\n  ours {pinyin:?}\n   ref {:?}",
                case.text, case.pinyin
            ));
        }
        let cleaned = clean(&case.text, "zh-cn").ok();
        if cleaned == case.cleaned {
            entry.1 += 1;
        } else {
            differences.push(format!(
                "cleaned {:?}\n  ours {cleaned:?}\n   ref {:?}",
                case.text, case.cleaned
            ));
        }
    }
    for (source, (pinyin, cleaned, total)) in &tally {
        eprintln!("{source:>7}: pinyin {pinyin}/{total} exact, cleaned {cleaned}/{total} exact");
    }
    for d in differences.iter().take(20) {
        eprintln!("{d}");
    }
    assert!(
        differences.is_empty(),
        "{} differences from the reference",
        differences.len()
    );
}

/// One-off bulk comparison of the Japanese front-end with the reference on the set written by
/// `tools/reference/ja_bulk.py` (real sentences and random character mixes): prints the match
/// rate and the first differences. Run with `-- --ignored --nocapture`.
#[test]
#[ignore]
fn japanese_bulk_comparison() {
    #[derive(Deserialize)]
    struct Line {
        text: String,
        cleaned: Option<String>,
    }
    configure_dictionaries();
    let path = std::env::var("JA_BULK").map_or_else(|_| root().join("target/ja_bulk.jsonl"), PathBuf::from);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e} (run tools/reference/ja_bulk.py)", path.display()));
    let (mut exact, mut total) = (0, 0);
    let mut differences = Vec::new();
    for line in text.lines() {
        let line: Line = serde_json::from_str(line).expect("bulk line parses");
        total += 1;
        let ours = clean(&line.text, "ja").ok();
        if ours == line.cleaned {
            exact += 1;
        } else if differences.len() < 20 {
            differences.push(format!("{:?}\n  ours: {ours:?}\n   ref: {:?}", line.text, line.cleaned));
        }
    }
    eprintln!("{}", differences.join("\n"));
    eprintln!(
        "japanese bulk: {exact}/{total} exact ({:.2}%)",
        100.0 * exact as f64 / total as f64
    );
    assert!(total > 0, "{} is empty", path.display());
}
