//! `xttsd bench --reference`: runs the reference implementation's streaming benchmark
//! (`tools/reference/bench`, coqui-tts `Xtts.inference_stream`) on the same checkpoint, voice,
//! sentences, token count, device and threads, and sets its first-chunk latency and real-time
//! factor beside xttsd's one-call figures.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::{percentile, Round};

/// The reference benchmark script of this source tree.
pub const DEFAULT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/reference/bench");

/// How to run the reference benchmark.
#[derive(Debug, Clone)]
pub struct ReferenceOptions {
    pub python: PathBuf,
    pub script: PathBuf,
    pub model: PathBuf,
    pub voice: PathBuf,
    pub tokens: Option<usize>,
    pub threads: i32,
    pub device: String,
}

/// The reference's figures over the sentences it spoke.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceSummary {
    pub implementation: String,
    pub device: String,
    pub sentences: usize,
    /// Time from the call of `inference_stream` to its first chunk, over the sentences.
    pub first_chunk_p50_ms: f64,
    pub first_chunk_p95_ms: f64,
    /// Synthesis time over audio time, all sentences together.
    pub rtf: f64,
    pub audio_s: f64,
}

/// xttsd's one-call round beside the reference.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Time to first audio at the socket, from the round with one call.
    pub xttsd_ttfa_p50_ms: f64,
    pub xttsd_ttfa_p95_ms: f64,
    pub xttsd_rtf: f64,
    pub reference: ReferenceSummary,
    /// Reference first chunk / xttsd first audio: above 1, xttsd answers sooner.
    pub ratio_p50: f64,
    pub ratio_p95: f64,
}

/// The parts of the script's JSON report that the comparison reads.
#[derive(Deserialize)]
struct RawReport {
    #[serde(default)]
    implementation: String,
    #[serde(default)]
    device: String,
    sentences: Vec<RawSentence>,
}

#[derive(Deserialize)]
struct RawSentence {
    first_chunk_s: f64,
    total_s: f64,
    audio_s: f64,
}

/// Reads the reference script's JSON report.
pub fn parse_report(json: &str) -> Result<ReferenceSummary> {
    let raw: RawReport = serde_json::from_str(json).context("reference JSON report")?;
    ensure!(!raw.sentences.is_empty(), "reference JSON report: no sentences");
    for (i, s) in raw.sentences.iter().enumerate() {
        let finite = [s.first_chunk_s, s.total_s, s.audio_s]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0);
        ensure!(
            finite,
            "reference JSON report: sentences[{i}] has a negative or non-finite time"
        );
    }
    let audio_s: f64 = raw.sentences.iter().map(|s| s.audio_s).sum();
    ensure!(audio_s > 0.0, "reference JSON report: the sentences produced no audio");
    let total_s: f64 = raw.sentences.iter().map(|s| s.total_s).sum();
    let mut first: Vec<f64> = raw.sentences.iter().map(|s| s.first_chunk_s * 1e3).collect();
    first.sort_by(f64::total_cmp);
    Ok(ReferenceSummary {
        implementation: raw.implementation,
        device: raw.device,
        sentences: raw.sentences.len(),
        first_chunk_p50_ms: percentile(&first, 50.0),
        first_chunk_p95_ms: percentile(&first, 95.0),
        rtf: total_s / audio_s,
        audio_s,
    })
}

/// Sets the one-call round beside the reference.
pub fn compare(one_call: &Round, reference: ReferenceSummary) -> Comparison {
    Comparison {
        xttsd_ttfa_p50_ms: one_call.ttfa_p50_ms,
        xttsd_ttfa_p95_ms: one_call.ttfa_p95_ms,
        xttsd_rtf: one_call.rtf,
        ratio_p50: ratio(reference.first_chunk_p50_ms, one_call.ttfa_p50_ms),
        ratio_p95: ratio(reference.first_chunk_p95_ms, one_call.ttfa_p95_ms),
        reference,
    }
}

/// `reference / xttsd`, NaN when xttsd has no positive figure.
fn ratio(reference: f64, xttsd: f64) -> f64 {
    if xttsd.is_finite() && xttsd > 0.0 {
        reference / xttsd
    } else {
        f64::NAN
    }
}

/// The comparison as a small table.
pub fn table(c: &Comparison) -> String {
    let r = &c.reference;
    let mut out = format!(
        "One call, side by side (reference: {}, {} sentences, {})\n",
        r.implementation, r.sentences, r.device
    );
    out.push_str(&format!("{:<36} {:>9} {:>9} {:>7}\n", "", "p50 ms", "p95 ms", "rtf"));
    out.push_str(&format!(
        "{:<36} {:>9.1} {:>9.1} {:>7.3}\n",
        "xttsd: first audio at the socket", c.xttsd_ttfa_p50_ms, c.xttsd_ttfa_p95_ms, c.xttsd_rtf
    ));
    out.push_str(&format!(
        "{:<36} {:>9.1} {:>9.1} {:>7.3}\n",
        "reference: first chunk", r.first_chunk_p50_ms, r.first_chunk_p95_ms, r.rtf
    ));
    out.push_str(&format!(
        "{:<36} {:>9.2} {:>9.2}\n",
        "ratio reference / xttsd", c.ratio_p50, c.ratio_p95
    ));
    out
}

/// Runs the reference benchmark on `sentences` and reads its report. Its progress lines are
/// passed on to stderr; on failure the error carries its last line (e.g. the Python exception).
pub fn run(opts: &ReferenceOptions, sentences: &[&str]) -> Result<ReferenceSummary> {
    ensure!(
        opts.script.is_file(),
        "reference script {} not found (set --reference-script)",
        opts.script.display()
    );
    let dir = tempfile::tempdir().context("creating a folder for the reference run")?;
    let sentences_path = dir.path().join("sentences.txt");
    let json_path = dir.path().join("reference.json");
    std::fs::write(&sentences_path, sentences.join("\n") + "\n")
        .with_context(|| format!("writing {}", sentences_path.display()))?;

    let mut command = Command::new(&opts.python);
    command
        .arg(&opts.script)
        .arg("--model")
        .arg(&opts.model)
        .arg("--voice")
        .arg(&opts.voice)
        .arg("--sentences")
        .arg(&sentences_path)
        .arg("--json")
        .arg(&json_path)
        .args(["--threads", &opts.threads.to_string(), "--device", &opts.device]);
    if let Some(tokens) = opts.tokens {
        command.args(["--tokens", &tokens.to_string()]);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {} (set --reference-python)", opts.python.display()))?;
    let mut last_line = String::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("reading the reference's output")?;
            eprintln!("reference: {line}");
            if !line.trim().is_empty() {
                last_line = line.trim().to_string();
            }
        }
    }
    let status = child.wait().context("waiting for the reference")?;
    let script = opts.script.display();
    if !status.success() {
        let hint = if last_line.contains("No module named") {
            " (is coqui-tts installed for this python? see tools/reference/requirements.txt)"
        } else {
            ""
        };
        bail!("{script} failed ({status}): {last_line}{hint}");
    }
    let json = std::fs::read_to_string(&json_path)
        .with_context(|| format!("{script} wrote no report {}", json_path.display()))?;
    parse_report(&json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentence(first: f64, total: f64, audio: f64) -> serde_json::Value {
        serde_json::json!({ "text": "x", "chunks": 3, "first_chunk_s": first, "total_s": total, "audio_s": audio, "rtf": total / audio })
    }

    fn report(sentences: Vec<serde_json::Value>) -> String {
        serde_json::json!({
            "implementation": "coqui-tts reference (Xtts.inference_stream)",
            "device": "cpu",
            "threads": 1,
            "sentences": sentences,
            "summary": {},
        })
        .to_string()
    }

    fn one_call_round(ttfa_p50_ms: f64, ttfa_p95_ms: f64, rtf: f64) -> Round {
        Round {
            calls: 1,
            max_batch: 8,
            device: "cpu".into(),
            gpt_dtype: "float32".into(),
            wall_s: 6.0,
            ttfa_p50_ms,
            ttfa_p95_ms,
            ttfa_p99_ms: ttfa_p95_ms,
            rtf,
            gpt_busy_s: 1.0,
            vocoder_busy_s: 1.0,
            frames_late: 0,
            starts_held: 0,
            refused_busy: 0,
            longest_gap_ms: 20.0,
            longest_silence_ms: 0.0,
            tokens: 100,
            tokens_per_s: 16.0,
            tokens_per_busy_s: 100.0,
            mean_batch: 1.0,
            vocoder_mean_batch: 1.0,
            rss_mib: 100.0,
            peak_rss_mib: 100.0,
            gpu_mib: None,
            failed_calls: 0,
            load_before: 0.0,
        }
    }

    #[test]
    fn report_gives_percentiles_and_pooled_rtf() {
        // Unsorted first chunks 0.3, 0.1, 0.2, 0.4 s: nearest-rank p50 is the 2nd, p95 the 4th.
        let json = report(vec![
            sentence(0.3, 1.0, 2.0),
            sentence(0.1, 1.0, 1.0),
            sentence(0.2, 2.0, 1.0),
            sentence(0.4, 1.0, 4.0),
        ]);
        let s = parse_report(&json).unwrap();
        assert_eq!(s.sentences, 4);
        assert!((s.first_chunk_p50_ms - 200.0).abs() < 1e-9);
        assert!((s.first_chunk_p95_ms - 400.0).abs() < 1e-9);
        // 5 s of synthesis for 8 s of audio, not the mean of the per-sentence factors.
        assert!((s.rtf - 5.0 / 8.0).abs() < 1e-12);
        assert_eq!(s.device, "cpu");
    }

    #[test]
    fn ratio_is_reference_over_xttsd() {
        let s = parse_report(&report(vec![sentence(0.5, 1.0, 2.0), sentence(0.9, 1.0, 2.0)])).unwrap();
        let c = compare(&one_call_round(250.0, 300.0, 0.2), s);
        assert!((c.ratio_p50 - 2.0).abs() < 1e-12);
        assert!((c.ratio_p95 - 3.0).abs() < 1e-12);
        assert_eq!(c.xttsd_rtf, 0.2);
        assert!((c.reference.rtf - 0.5).abs() < 1e-12);
        let printed = table(&c);
        assert!(printed.contains("2.00") && printed.contains("3.00"), "{printed}");
    }

    #[test]
    fn ratio_without_xttsd_audio_is_nan() {
        let s = parse_report(&report(vec![sentence(0.5, 1.0, 2.0)])).unwrap();
        let c = compare(&one_call_round(f64::NAN, f64::NAN, f64::NAN), s);
        assert!(c.ratio_p50.is_nan() && c.ratio_p95.is_nan());
    }

    #[test]
    fn bad_reports_are_refused_with_the_reason() {
        let err = |json: &str| format!("{:#}", parse_report(json).unwrap_err());
        assert!(err("not json").contains("reference JSON report"));
        assert!(err(r#"{"device": "cpu"}"#).contains("missing field `sentences`"));
        assert!(err(&report(vec![])).contains("no sentences"));
        let missing = serde_json::json!({ "sentences": [{ "total_s": 1.0, "audio_s": 1.0 }] }).to_string();
        assert!(err(&missing).contains("first_chunk_s"));
        let text = serde_json::json!({ "sentences": [{ "first_chunk_s": "fast", "total_s": 1.0, "audio_s": 1.0 }] });
        assert!(err(&text.to_string()).contains("invalid type"));
        assert!(err(&report(vec![sentence(-0.1, 1.0, 1.0)])).contains("sentences[0]"));
        assert!(err(&report(vec![sentence(0.1, 1.0, 0.0)])).contains("no audio"));
    }

    #[test]
    fn missing_python_is_a_clear_error() {
        let opts = ReferenceOptions {
            python: "/nonexistent/python3".into(),
            script: DEFAULT_SCRIPT.into(),
            model: "model".into(),
            voice: "voice.wav".into(),
            tokens: Some(10),
            threads: 1,
            device: "cpu".into(),
        };
        let e = format!("{:#}", run(&opts, &["Hello."]).unwrap_err());
        assert!(e.contains("cannot run /nonexistent/python3"), "{e}");
        let e = format!(
            "{:#}",
            run(
                &ReferenceOptions {
                    script: "/nonexistent/bench".into(),
                    ..opts
                },
                &["Hello."]
            )
            .unwrap_err()
        );
        assert!(e.contains("/nonexistent/bench not found"), "{e}");
    }
}
