//! The shipped dialplan, read as Asterisk would follow it: branches that must not be taken
//! by accident, and voices that must exist.

use std::path::Path;

const DIALPLAN: &str = include_str!("../dialplan/extensions_xttsd.conf");

/// `(context, extension, line)` of every `exten =>` / `same =>` line, comments removed.
fn lines() -> Vec<(String, String, String)> {
    let mut out = vec![];
    let (mut context, mut exten) = (String::new(), String::new());
    for raw in DIALPLAN.lines() {
        let line = raw.split(';').next().unwrap().trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            context = name.to_string();
        } else if let Some(rest) = line.strip_prefix("exten =>") {
            exten = rest.trim().split(',').next().unwrap().to_string();
            out.push((context.clone(), exten.clone(), rest.trim().to_string()));
        } else if let Some(rest) = line.strip_prefix("same =>") {
            out.push((context.clone(), exten.clone(), rest.trim().to_string()));
        }
    }
    out
}

/// After `WaitExten` times out, Asterisk may go on at the next priority: that must not be
/// the failure branch (9850 played "an error has occurred" when the caller pressed nothing).
#[test]
fn menu_without_a_key_never_reaches_the_failure_branch() {
    let all = lines();
    for (i, (context, exten, line)) in all.iter().enumerate() {
        if !line.contains("WaitExten(") {
            continue;
        }
        let next = all
            .get(i + 1)
            .filter(|(c, e, _)| c == context && e == exten)
            .map(|(_, _, l)| l.as_str())
            .unwrap_or("");
        assert!(
            next.contains("Goto(") && !next.contains("failed") && !next.contains("error"),
            "[{context}] {exten}: after WaitExten comes {next:?}"
        );
    }
}

/// Every `voice=` the dialplan names is a clip shipped in speakers/ (9851 named "anna", which
/// is not); the default voice needs no name.
#[test]
fn dialplan_names_only_shipped_voices() {
    let speakers = Path::new(env!("CARGO_MANIFEST_DIR")).join("speakers");
    for (context, exten, line) in lines() {
        for part in line.split(['?', '&', ',']) {
            if let Some(voice) = part.strip_prefix("voice=") {
                let shipped = speakers.join(format!("{voice}.wav")).is_file() || speakers.join(voice).is_dir();
                assert!(
                    shipped,
                    "[{context}] {exten} names voice '{voice}', which is not shipped"
                );
            }
        }
    }
}
