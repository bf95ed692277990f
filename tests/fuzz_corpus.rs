//! Replays the fuzz corpora (fuzz/corpus/TARGET/, crash reproducers included) through the same
//! checks the fuzz targets run, so whatever the fuzzers found stays fixed.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} fails its check", path.display());
        inputs += 1;
    }
    assert!(inputs > 0, "{target}: empty corpus");
}

#[test]
fn audiosocket_codec_corpus() {
    replay("audiosocket_codec", checks::audiosocket_codec);
}

#[test]
fn agi_preamble_corpus() {
    replay("agi_preamble", checks::agi_preamble);
}

#[test]
fn agi_reply_corpus() {
    replay("agi_reply", checks::agi_reply);
}

#[test]
fn agi_script_corpus() {
    replay("agi_script", checks::agi_script);
}

#[test]
fn text_frontend_corpus() {
    replay("text_frontend", checks::text_frontend);
}

#[test]
fn control_api_corpus() {
    replay("control_api", checks::control_api);
}
