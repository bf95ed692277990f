//! The set-up scripts on a machine that has nothing yet: no venv, an empty HOME. A script that
//! dies silently there blocks every new user, and a machine that keeps ~/.cache never shows it.

use std::path::Path;
use std::process::{Command, Output};

fn bash(script: &str, home: &Path) -> Output {
    Command::new("bash")
        .args(["-c", script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HOME", home)
        .env_remove("XTTSD_VENV")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn env_sh_can_be_sourced_before_the_venv_exists() {
    let home = tempfile::tempdir().unwrap();
    let out = bash(
        "set -euo pipefail; LD_LIBRARY_PATH=/keep; source tools/env.sh; \
         echo \"venv=$XTTSD_VENV lib=[$XTTSD_TORCH_LIB] ld=$LD_LIBRARY_PATH torch=$LIBTORCH_USE_PYTORCH\"",
        home.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let expected = format!(
        "venv={}/.cache/xttsd/venv lib=[] ld=/keep torch=1",
        home.path().display()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected, "{}", text(&out));
}

#[test]
fn env_sh_finds_torch_lib_once_the_venv_has_it() {
    let home = tempfile::tempdir().unwrap();
    let lib = home
        .path()
        .join(".cache/xttsd/venv/lib/python3.11/site-packages/torch/lib");
    std::fs::create_dir_all(&lib).unwrap();
    let out = bash(
        "set -euo pipefail; unset LD_LIBRARY_PATH; source tools/env.sh; echo \"$LD_LIBRARY_PATH\"",
        home.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), lib.display().to_string());
}

#[test]
fn the_test_command_says_what_is_missing_instead_of_dying_silently() {
    let home = tempfile::tempdir().unwrap();
    let out = bash("tools/test", home.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run tools/setup first"), "{}", text(&out));
}

#[test]
fn every_script_parses() {
    for script in [
        "tools/setup",
        "tools/test",
        "tools/run",
        "tools/env.sh",
        "tools/fetch_text_data",
        ".ci/run",
    ] {
        let out = Command::new("bash")
            .args(["-n", script])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", text(&out));
    }
}
