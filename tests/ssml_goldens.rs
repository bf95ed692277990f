//! SSML parse and expansion goldens: every element in every XTTS language, compared with
//! tests/fixtures/ssml/goldens.tsv (`LANG<TAB>SSML<TAB>ITEMS`). After a deliberate change,
//! `XTTSD_BLESS=1 cargo test --release --test ssml_goldens` rewrites the file for review.

use std::fmt::Write;
use std::path::PathBuf;

use xttsd::ssml::{parse, Item};
use xttsd::xtts::text::LANGUAGES;

/// One case per element (and per say-as kind), spoken in the language under test.
const CASES: &[&str] = &[
    r#"A <break time="300ms"/> B"#,
    r#"A <break strength="strong"/> B <break/> C"#,
    r#"<say-as interpret-as="digits">2026 15</say-as>"#,
    r#"<say-as interpret-as="characters">AB12</say-as>"#,
    r#"<say-as interpret-as="telephone">+49 (30) 1234567</say-as>"#,
    r#"<say-as interpret-as="telephone">5551234567</say-as>"#,
    r#"<say-as interpret-as="cardinal">1234</say-as>"#,
    r#"<say-as interpret-as="cardinal">-3.5</say-as>"#,
    r#"<say-as interpret-as="ordinal">21</say-as>"#,
    r#"<say-as interpret-as="date">2026-03-01</say-as>"#,
    r#"<say-as interpret-as="date" format="dm">24.12</say-as>"#,
    r#"<say-as interpret-as="time">14:05</say-as>"#,
    r#"<say-as interpret-as="time">9:00</say-as>"#,
    r#"<say-as interpret-as="currency">$12.50</say-as>"#,
    r#"<say-as interpret-as="currency">3 €</say-as>"#,
    r#"<prosody rate="fast">A</prosody> <prosody rate="80%">B</prosody>"#,
    r#"A <lang xml:lang="en-GB">B</lang> <lang xml:lang="fr-FR">C</lang>"#,
    r#"A <voice name="anna">B</voice>"#,
    r#"<sub alias="B">A</sub>"#,
    r#"<p><s>A</s><s>B</s></p><p>C</p>"#,
    r#"<emphasis>A</emphasis> <unknown-element>B</unknown-element>"#,
];

fn render(items: &[Item]) -> String {
    let mut out = String::new();
    for item in items {
        if !out.is_empty() {
            out.push_str(" + ");
        }
        match item {
            Item::Break(d) => write!(out, "<{} ms>", d.as_millis()).unwrap(),
            Item::Speak(s) => write!(out, "[{}/{}/{}] {}", s.voice, s.lang, s.rate, s.text).unwrap(),
        }
    }
    out
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ssml/goldens.tsv")
}

fn actual() -> Vec<String> {
    let mut lines = Vec::new();
    for lang in LANGUAGES {
        for case in CASES {
            let ssml = format!(r#"<speak xml:lang="{lang}">{case}</speak>"#);
            let spoken = match parse(&ssml, "default", "en") {
                Ok(items) => render(&items),
                Err(e) => format!("ERROR {e}"),
            };
            lines.push(format!("{lang}\t{case}\t{spoken}"));
        }
    }
    lines
}

#[test]
fn every_element_in_every_language_matches_the_goldens() {
    let actual = actual();
    if std::env::var_os("XTTSD_BLESS").is_some() {
        std::fs::create_dir_all(golden_path().parent().unwrap()).unwrap();
        std::fs::write(golden_path(), actual.join("\n") + "\n").unwrap();
        return;
    }
    let golden = std::fs::read_to_string(golden_path()).expect("goldens missing: run with XTTSD_BLESS=1");
    let golden: Vec<&str> = golden.lines().collect();
    assert_eq!(golden.len(), actual.len(), "case count changed");
    let mut wrong = Vec::new();
    for (g, a) in golden.iter().zip(&actual) {
        if g != a {
            wrong.push(format!("golden: {g}\nactual: {a}"));
        }
    }
    assert!(wrong.is_empty(), "{} lines differ:\n{}", wrong.len(), wrong.join("\n"));
    // Every element works in every language: no golden is an error.
    let errors: Vec<&&str> = golden.iter().filter(|l| l.contains("\tERROR ")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn ssml_errors_in_every_language_name_the_position() {
    for lang in LANGUAGES {
        for (case, column) in [
            (r#"<say-as interpret-as="date">31-31-31</say-as>"#, 20),
            (r#"<say-as interpret-as="time">25:00</say-as>"#, 20),
            (r#"<say-as interpret-as="cardinal">twelve</say-as>"#, 20),
            (r#"<say-as interpret-as="currency">12</say-as>"#, 20),
            (r#"<break time="-1s"/>"#, 20),
            (r#"<voice>x</voice>"#, 20),
            (r#"<sub>x</sub>"#, 20),
            (r#"<lang>x</lang>"#, 20),
        ] {
            let ssml = format!(r#"<speak xml:lang="{lang}">{case}</speak>"#);
            let err = parse(&ssml, "default", "en").unwrap_err();
            let expect = column + lang.len();
            assert_eq!((err.line, err.column), (1, expect as u32), "{ssml}: {err}");
        }
    }
}
