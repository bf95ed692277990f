//! Helpers shared by the parity tests: fixture paths, golden files, tensor comparison.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tch::{Device, Kind, Tensor};
use xttsd::xtts::voice::Voice;

/// `$XTTSD_FIXTURE`, or the committed tiny fixture; holds `model/` and `golden/`.
pub fn fixture_dir() -> PathBuf {
    match std::env::var_os("XTTSD_FIXTURE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny"),
    }
}

pub fn model_dir() -> PathBuf {
    fixture_dir().join("model")
}

pub fn golden_dir() -> PathBuf {
    fixture_dir().join("golden")
}

/// All tensors of a safetensors file by name.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let tensors = Tensor::read_safetensors(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(tensors.into_iter().collect())
}

/// A tensor that must exist in a golden file.
pub fn take(tensors: &HashMap<String, Tensor>, name: &str, file: &str) -> Result<Tensor> {
    tensors
        .get(name)
        .map(|t| t.shallow_clone())
        .ok_or_else(|| anyhow!("{file}: no tensor '{name}'"))
}

pub fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}

/// The golden voices from `cond.safetensors`: `single` and `multi`.
pub fn golden_voice(kind: &str) -> Result<Voice> {
    let path = golden_dir().join("cond.safetensors");
    let tensors = read_tensors(&path)?;
    let suffix = match kind {
        "single" => "",
        "multi" => "_multi",
        other => bail!("unknown voice kind '{other}'"),
    };
    let file = path.display().to_string();
    Ok(Voice {
        gpt_cond_latent: take(&tensors, &format!("cond_latent{suffix}"), &file)?,
        speaker_embedding: take(&tensors, &format!("speaker_embedding{suffix}"), &file)?,
    })
}

pub fn ids(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.to_kind(Kind::Int64).reshape([-1]).to_device(Device::Cpu)).expect("int64 tensor")
}

pub fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).reshape([-1]).to_device(Device::Cpu)).expect("float tensor")
}

/// How far two tensors are apart.
#[derive(Debug, Clone, Copy)]
pub struct Diff {
    pub max_abs: f64,
    pub correlation: f64,
}

/// Compares `got` with `want` (same number of elements), prints the figures under `label`.
pub fn compare(label: &str, got: &[f32], want: &[f32]) -> Diff {
    assert_eq!(
        got.len(),
        want.len(),
        "{label}: length {} vs golden {}",
        got.len(),
        want.len()
    );
    let n = got.len().max(1) as f64;
    let max_abs = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0.0, f64::max);
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let (ma, mb) = (mean(got), mean(want));
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (a, b) in got.iter().zip(want) {
        let (da, db) = (*a as f64 - ma, *b as f64 - mb);
        cov += da * db;
        va += da * da;
        vb += db * db;
    }
    let correlation = if va > 0.0 && vb > 0.0 {
        cov / (va.sqrt() * vb.sqrt())
    } else if va == vb {
        1.0
    } else {
        0.0
    };
    println!(
        "  {label:<40} n={:<8} max_abs={max_abs:.3e} corr={correlation:.9}",
        got.len()
    );
    Diff { max_abs, correlation }
}

/// Compares and asserts `max_abs <= tol` and `correlation >= min_corr`.
pub fn assert_close(label: &str, got: &[f32], want: &[f32], tol: f64, min_corr: f64) -> Diff {
    let d = compare(label, got, want);
    assert!(d.max_abs <= tol, "{label}: max abs diff {:.3e} > {tol:.1e}", d.max_abs);
    assert!(
        d.correlation >= min_corr,
        "{label}: correlation {:.9} < {min_corr}",
        d.correlation
    );
    d
}
