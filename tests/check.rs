//! `xttsd check` on each broken case: one finding per problem, naming what to fix.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use xttsd::check::{check, Level, Report};

struct Site {
    dir: tempfile::TempDir,
}

/// What a test changes in the site's config.toml.
#[derive(Default)]
struct Changes<'a> {
    model_dir: Option<&'a Path>,
    engine: &'a str,
    agi: &'a str,
    agi_listen: Option<String>,
    device: Option<&'a str>,
    more: &'a str,
}

impl Site {
    /// A working site: the tiny model, a good voice clip, the spool directory, free ports.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("speakers")).unwrap();
        std::fs::create_dir_all(dir.path().join("spool")).unwrap();
        std::fs::copy("tests/fixtures/ref_24k.wav", dir.path().join("speakers/default.wav")).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes config.toml with the site's paths and `changes`, and checks it.
    fn check(&self, changes: Changes) -> Report {
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/model");
        let model = changes.model_dir.unwrap_or(&tiny);
        let port = || {
            format!(
                "127.0.0.1:{}",
                TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
            )
        };
        let config = format!(
            "[engine]\nmodel_dir = {model:?}\nspeakers_dir = {:?}\ndevice = \"{}\"\n{}\n\
             [audiosocket]\nlisten = \"{}\"\n[agi]\nlisten = \"{}\"\nspool_dir = {:?}\n{}\n\
             [control]\nlisten = \"{}\"\n{}",
            self.path("speakers"),
            changes.device.unwrap_or("cpu"),
            changes.engine,
            port(),
            changes.agi_listen.unwrap_or_else(port),
            self.path("spool"),
            changes.agi,
            port(),
            changes.more,
        );
        let path = self.path("config.toml");
        std::fs::write(&path, config).unwrap();
        check(&path)
    }
}

fn errors(report: &Report) -> Vec<String> {
    report.errors().map(|f| f.to_string()).collect()
}

fn write_clip(path: &Path, rate: u32, secs: f64, amplitude: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(rate as f64 * secs) as usize {
        let t = i as f64 / rate as f64;
        w.write_sample((amplitude * 32767.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn a_working_site_has_no_errors() {
    let site = Site::new();
    let report = site.check(Changes::default());
    assert!(errors(&report).is_empty(), "{:?}", errors(&report));
    assert!(report.has(Level::Ok, "engine.model_dir"));
    assert!(report.has(Level::Ok, "builtin.program"));
}

#[test]
fn a_broken_config_is_one_error_naming_the_key() {
    let site = Site::new();
    let report = site.check(Changes {
        engine: "temprature = 0.5",
        ..Changes::default()
    });
    let errs = errors(&report);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("temprature"), "{errs:?}");
}

#[test]
fn missing_model_files_are_named_with_the_download_command() {
    let site = Site::new();
    let model = site.path("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy("tests/fixtures/tiny/model/config.json", model.join("config.json")).unwrap();
    let report = site.check(Changes {
        model_dir: Some(&model),
        ..Changes::default()
    });
    let errs = errors(&report);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("model.pth: missing")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("vocab.json: missing")), "{errs:?}");
    assert!(errs.iter().all(|e| e.contains("curl -L")), "{errs:?}");
}

#[test]
fn an_absent_model_is_a_warning_while_the_built_in_voice_stands_in_and_an_error_otherwise() {
    let site = Site::new();
    let absent = Path::new("/nonexistent/xtts_v2");
    let report = site.check(Changes {
        model_dir: Some(absent),
        ..Changes::default()
    });
    assert!(report.has(Level::Warning, "engine.model_dir"), "{:?}", report.findings);
    assert!(errors(&report).is_empty(), "{:?}", errors(&report));
    let report = site.check(Changes {
        model_dir: Some(absent),
        more: "[fallback]\nwhen_absent = false\n",
        ..Changes::default()
    });
    assert!(report.has(Level::Error, "engine.model_dir"), "{:?}", report.findings);
}

#[test]
fn voice_clips_are_checked_for_length_level_and_rate() {
    let site = Site::new();
    write_clip(&site.path("speakers/short.wav"), 24_000, 1.0, 0.3);
    write_clip(&site.path("speakers/silent.wav"), 24_000, 8.0, 0.001);
    write_clip(&site.path("speakers/narrow.wav"), 8_000, 8.0, 0.3);
    std::fs::write(site.path("speakers/broken.wav"), b"not a wav").unwrap();
    let report = site.check(Changes::default());
    let subject = |name: &str| site.path("speakers").join(name).display().to_string();
    assert!(report.has(Level::Error, &subject("short.wav")), "{:?}", report.findings);
    assert!(
        report.has(Level::Error, &subject("silent.wav")),
        "{:?}",
        report.findings
    );
    assert!(
        report.has(Level::Warning, &subject("narrow.wav")),
        "{:?}",
        report.findings
    );
    assert!(
        report.has(Level::Error, &subject("broken.wav")),
        "{:?}",
        report.findings
    );
    assert!(report.has(Level::Ok, &subject("default.wav")), "{:?}", report.findings);
    assert_eq!(errors(&report).len(), 3, "{:?}", errors(&report));
}

#[test]
fn broken_language_data_and_a_missing_spool_dir_in_file_mode_are_errors() {
    let site = Site::new();
    std::fs::create_dir_all(site.path("pinyin")).unwrap();
    std::fs::remove_dir(site.path("spool")).unwrap();
    let engine = format!("chinese_dictionary = {:?}", site.path("pinyin"));
    let report = site.check(Changes {
        engine: &engine,
        ..Changes::default()
    });
    assert!(
        report.has(Level::Error, "engine.chinese_dictionary"),
        "{:?}",
        report.findings
    );
    // Stream mode only uses the spool directory when a request asks for file mode.
    assert!(report.has(Level::Warning, "agi.spool_dir"), "{:?}", report.findings);
    let report = site.check(Changes {
        agi: "mode = \"file\"",
        ..Changes::default()
    });
    assert!(report.has(Level::Error, "agi.spool_dir"), "{:?}", report.findings);
}

#[test]
fn a_port_in_use_is_named() {
    let site = Site::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let report = site.check(Changes {
        agi_listen: Some(addr.clone()),
        ..Changes::default()
    });
    let errs = errors(&report);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("error: agi.listen") && errs[0].contains(&addr),
        "{errs:?}"
    );
}

#[test]
fn cuda_asked_for_without_a_device_is_an_error() {
    if tch::Cuda::is_available() {
        return; // a machine with a GPU has nothing to report here
    }
    let site = Site::new();
    let report = site.check(Changes {
        device: Some("cuda"),
        ..Changes::default()
    });
    assert!(report.has(Level::Error, "engine.device"), "{:?}", report.findings);
}

#[test]
fn the_command_exits_non_zero_with_one_line_per_problem() {
    let site = Site::new();
    write_clip(&site.path("speakers/short.wav"), 24_000, 1.0, 0.3);
    site.check(Changes {
        more: "[builtin]\nprogram = \"/nonexistent/espeak-ng\"\n",
        ..Changes::default()
    });
    let out = Command::new(env!("CARGO_BIN_EXE_xttsd"))
        .args(["check", "--config"])
        .arg(site.path("config.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let error_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(error_lines.len(), 2, "{stdout}");
    assert!(error_lines.iter().any(|l| l.contains("builtin.program")), "{stdout}");
    assert!(error_lines.iter().any(|l| l.contains("short.wav")), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 problem(s) found"));
}
