//! `xttsd bench --faults` in its smallest form: the poisoned-options scenario with a batch of
//! two, against the real daemon with the tiny fixture model. The command exits non-zero when a
//! call fails, a bad option is not refused as invalid, or no normal call succeeds afterwards.

use std::path::Path;
use std::process::Command;

#[test]
fn poisoned_options_are_refused_and_the_batch_speaks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("faults.json");
    let out = Command::new(env!("CARGO_BIN_EXE_xttsd"))
        .args([
            "bench",
            "--faults",
            "--scenarios",
            "poison",
            "--max-batch",
            "2",
            "--duration",
            "3",
        ])
        .arg("--model")
        .arg(root.join("tests/fixtures/tiny/model"))
        .arg("--voice")
        .arg(root.join("tests/fixtures/ref_24k.wav"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bench --faults failed");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let scenario = &report["scenarios"][0];
    let calls = scenario["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["completed"] == true), "{calls:?}");
    let refusals = scenario["refusals"].as_array().unwrap();
    assert!(refusals.len() >= 10);
    assert!(refusals.iter().all(|r| r["refused_invalid"] == true), "{refusals:?}");
    assert_eq!(scenario["normal_call_ok"], true);
}
