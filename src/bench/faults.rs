//! `xttsd bench --faults`: the daemon under faults and load, as an operator would see it. Each
//! scenario starts the real daemon (`xttsd serve`, this same binary) as a child process on
//! loopback with its own configuration, places calls through it as Asterisk does (AudioSocket
//! calls with speech queued over the control API, and FastAGI calls in stream mode), and
//! reports the calls that completed, those that failed and why, frames late, the daemon's
//! memory and descriptors before and after, and whether it answered a normal call afterwards:
//!
//! - `load`: idle connections on each listener (AudioSocket, FastAGI, control), peers that
//!   trickle one byte a second and peers that send random bytes, while the calls speak;
//! - `poison`: extreme options in a full batch: what the option bounds refuse is refused
//!   (INVALID), what they accept speaks, and the other calls complete;
//! - `panic`: an engine panic mid-batch (`XTTSD_FAULT=panic_step`): calls fail (ENGINE),
//!   health says so, and the daemon exits non-zero so that systemd restarts it;
//! - `sigterm`: SIGTERM with calls speaking: every call ends cleanly (a hangup message, or
//!   `XTTS_STATUS`) and the daemon exits 0.
//!
//! The fallback voice is off in these daemons, so faults of XTTS show as they are.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use uuid::Uuid;

use super::{Args, SENTENCES};
use crate::client::agi::{call as agi_call, CallOptions};
use crate::client::audiosocket::{run_leg, LegEnd, LegOptions};
use crate::xtts::sampling::SamplingParams;

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Load,
    Poison,
    Panic,
    Sigterm,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Load => "load",
            Scenario::Poison => "poison",
            Scenario::Panic => "panic",
            Scenario::Sigterm => "sigterm",
        }
    }
}

/// The drain deadline of the daemons: short, so that SIGTERM ends calls still speaking.
const DRAIN_TIMEOUT_MS: u64 = 3000;
/// Peers of each kind (trickling, garbage) per listener in the load scenario.
const PEERS_PER_LISTENER: usize = 16;

/// One call placed in a scenario, and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct CallResult {
    /// `audiosocket` or `agi`.
    pub transport: &'static str,
    /// Options that make it special (a poisoned request), else empty.
    pub options: String,
    pub completed: bool,
    /// How it ended: the AudioSocket leg's end and speech heard, or the AGI variables.
    pub how: String,
    pub voiced_frames: usize,
    /// Client-side gaps over 40 ms between frames.
    pub gaps_over_40ms: usize,
}

/// A request the option bounds must refuse, and what the daemon answered.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub transport: &'static str,
    pub options: String,
    /// The request was refused as invalid (HTTP 400, or `XTTS_REASON=INVALID`).
    pub refused_invalid: bool,
    pub answer: String,
}

/// What the peers on one listener did in the load scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Flood {
    pub listener: String,
    /// Idle connections open when the calls started and when they ended.
    pub idle_open_at_start: u64,
    pub idle_open_at_end: u64,
    /// Idle connections the daemon closed (each is reopened a second later).
    pub idle_closed_by_daemon: u64,
    pub connect_failures: u64,
    /// Trickling peers (one byte a second): closed by the daemon, and after how long (median).
    pub trickle_closed: u64,
    pub trickle_close_median_s: f64,
    /// Garbage peers: connections made, closed by the daemon, bytes sent.
    pub garbage_connections: u64,
    pub garbage_closed_by_daemon: u64,
    pub garbage_bytes: u64,
}

/// One health probe during a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub at_s: f64,
    /// `/v1/health`'s status and engine state (`ready`/`down`), `/v1/ready`'s status; 0 when
    /// the daemon did not answer.
    pub health: u16,
    pub engine_state: String,
    pub ready: u16,
}

/// The results of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: Scenario,
    pub calls: Vec<CallResult>,
    pub refusals: Vec<Refusal>,
    pub floods: Vec<Flood>,
    /// Daemon counters over the scenario (the last scrape when it exited): calls by transport
    /// and outcome, synthesis failures by reason, busy refusals.
    pub counters: BTreeMap<String, f64>,
    /// `xttsd_late_frames` over the scenario.
    pub frames_late: f64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub fds_before: usize,
    pub fds_after: usize,
    /// Changes of health and readiness seen while the scenario ran.
    pub probes: Vec<Probe>,
    /// How the daemon ended, when it did during the scenario (or at SIGTERM).
    pub daemon_exit: Option<String>,
    pub exit_after_s: Option<f64>,
    /// A normal call after the scenario (on a restarted daemon when it had exited).
    pub normal_call_after: String,
    pub normal_call_ok: bool,
    /// What did not go as the issue asks; empty when it did.
    pub problems: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    anyhow::ensure!(args.max_batch > 0, "--max-batch must be at least 1");
    anyhow::ensure!(
        args.duration.is_finite() && args.duration > 0.0,
        "--duration must be a positive number of seconds"
    );
    anyhow::ensure!(args.voice.is_file(), "--voice {}: no such file", args.voice.display());
    // Every idle connection is a descriptor here and one in the daemon (which inherits the limit).
    raise_fd_limit((3 * args.idle + 4096) as u64)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut reports = Vec::new();
    for &scenario in &args.scenarios {
        eprintln!("scenario {} ...", scenario.name());
        let report = rt.block_on(run_scenario(args, scenario))?;
        eprintln!("{}", details(&report));
        reports.push(report);
    }
    println!("{}", table(&reports));
    for r in &reports {
        println!("{}", details(r));
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({ "scenarios": reports }))?;
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.problems.is_empty())
        .map(|r| r.scenario.name())
        .collect();
    anyhow::ensure!(failed.is_empty(), "scenarios with problems: {}", failed.join(", "));
    Ok(())
}

/// Raises this process's soft limit of open files to `want` (at most the hard limit); children
/// inherit it.
fn raise_fd_limit(want: u64) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        anyhow::bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if limit.rlim_cur >= want as libc::rlim_t {
        return Ok(());
    }
    limit.rlim_cur = (want as libc::rlim_t).min(limit.rlim_max);
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        anyhow::bail!("setrlimit: {}", std::io::Error::last_os_error());
    }
    anyhow::ensure!(
        limit.rlim_cur >= want as libc::rlim_t,
        "open files are limited to {} (hard limit); --idle {} needs about {want}",
        limit.rlim_cur,
        want.saturating_sub(4096) / 3
    );
    Ok(())
}

/// A daemon started for a scenario, killed when dropped.
struct Daemon {
    child: Child,
    audiosocket: SocketAddr,
    agi: SocketAddr,
    control: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Daemon {
    /// Starts `xttsd serve` (this binary) with a configuration for `args` and waits until it
    /// is ready; `fault` goes to `XTTSD_FAULT`.
    async fn start(args: &Args, fault: Option<&str>) -> Result<Daemon> {
        let dir = tempfile::tempdir()?;
        let speakers = dir.path().join("speakers");
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&speakers)?;
        std::fs::create_dir_all(&spool)?;
        std::fs::copy(&args.voice, speakers.join("default.wav"))
            .with_context(|| format!("copying {}", args.voice.display()))?;
        let (a, g, c) = (free_port()?, free_port()?, free_port()?);
        // Room for the idle connections, the peers and the calls.
        let max_connections = args.idle + 2 * PEERS_PER_LISTENER + 4 * args.max_batch + 16;
        let model = std::fs::canonicalize(&args.model).with_context(|| format!("--model {}", args.model.display()))?;
        let config = format!(
            "[engine]\nmodel_dir = {model:?}\nspeakers_dir = {speakers:?}\ndevice = {device:?}\n\
             max_batch = {batch}\ncpu_threads = {threads}\ngpt_dtype = {dtype:?}\n\
             [audiosocket]\nlisten = \"127.0.0.1:{a}\"\nmax_connections = {max_connections}\n\
             [agi]\nlisten = \"127.0.0.1:{g}\"\naudiosocket_address = \"127.0.0.1:{a}\"\n\
             spool_dir = {spool:?}\nmax_connections = {max_connections}\n\
             [control]\nlisten = \"127.0.0.1:{c}\"\nmax_connections = {max_connections}\n\
             [daemon]\ndrain_timeout_ms = {DRAIN_TIMEOUT_MS}\n\
             [prompts]\ncache_dir = \"\"\n\
             [fallback]\nwhen_absent = false\nwhen_down = false\nwhen_busy = false\n",
            device = args.device,
            batch = args.max_batch,
            threads = args.threads.max(1),
            dtype = args.gpt_dtype,
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config)?;
        let log = dir.path().join("daemon.log");
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .env_remove("XTTSD_FAULT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        if let Some(fault) = fault {
            command.env("XTTSD_FAULT", fault);
        }
        let child = command.spawn().context("starting xttsd serve")?;
        let mut daemon = Daemon {
            child,
            audiosocket: format!("127.0.0.1:{a}").parse()?,
            agi: format!("127.0.0.1:{g}").parse()?,
            control: format!("127.0.0.1:{c}").parse()?,
            log,
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = daemon.child.try_wait()? {
                anyhow::bail!("the daemon exited at start ({status}):\n{}", daemon.log_tail());
            }
            if matches!(http(daemon.control, "GET", "/v1/ready", "").await, Ok((200, _))) {
                return Ok(daemon);
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(180),
                "the daemon was not ready after 180 s:\n{}",
                daemon.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the daemon logged.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, signal);
        }
    }

    /// Waits up to `limit` for the daemon to exit.
    async fn wait_exit(&mut self, limit: Duration) -> Result<Option<ExitStatus>> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if started.elapsed() > limit {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the daemon with SIGTERM (SIGKILL after 30 s).
    async fn stop(mut self) -> Result<()> {
        self.signal(libc::SIGTERM);
        if self.wait_exit(Duration::from_secs(30)).await?.is_none() {
            let _ = self.child.kill();
        }
        Ok(())
    }
}

/// Resident memory of a process in MiB, and its open descriptors.
fn rss_and_fds(pid: u32) -> (f64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

/// One HTTP/1.1 request with `Connection: close`: (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("not an HTTP answer: {text:.80}"))?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .context("no HTTP answer within 10 s")?
}

/// The daemon's counters (`/metrics`), by series.
async fn scrape(control: SocketAddr) -> Result<BTreeMap<String, f64>> {
    let (status, body) = http(control, "GET", "/metrics", "").await?;
    anyhow::ensure!(status == 200, "/metrics answered {status}");
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect())
}

/// The series of interest that changed between two scrapes.
fn counter_changes(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let wanted = [
        "calls_total",
        "synthesis_failures_total",
        "busy_refusals_total",
        "refused_connections_total",
    ];
    after
        .iter()
        .filter(|(name, _)| wanted.iter().any(|w| name.contains(w)))
        .map(|(name, v)| (name.clone(), v - before.get(name).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

fn late_frames(m: &BTreeMap<String, f64>) -> f64 {
    m.iter()
        .filter(|(name, _)| name.starts_with("xttsd_late_frames"))
        .map(|(_, v)| v)
        .sum()
}

/// The calls' texts: two sentences each, different per call.
fn call_text(n: usize) -> (String, String) {
    (
        SENTENCES[n % SENTENCES.len()].to_string(),
        SENTENCES[(n + 3) % SENTENCES.len()].to_string(),
    )
}

/// An AudioSocket call: speech queued over the control API (with `options`, a JSON object's
/// inside), then a caller who listens for `hold`.
async fn audiosocket_call(d: &Endpoints, n: usize, options: &str, hold: Duration) -> CallResult {
    let uuid = Uuid::new_v4();
    let (first, second) = call_text(n);
    let mut result = CallResult {
        transport: "audiosocket",
        options: options.to_string(),
        completed: false,
        how: String::new(),
        voiced_frames: 0,
        gaps_over_40ms: 0,
    };
    for (k, text) in [first, second].iter().enumerate() {
        let sep = if options.is_empty() { "" } else { ", " };
        let body = format!(
            r#"{{"text": {text:?}, "options": {{"seed": {}{sep}{options}}}}}"#,
            n * 10 + k
        );
        match http(d.control, "POST", &format!("/v1/calls/{uuid}/say"), &body).await {
            Ok((202, _)) => {}
            Ok((code, body)) => {
                result.how = format!("control API {code}: {}", body.trim());
                return result;
            }
            Err(e) => {
                result.how = format!("control API: {e:#}");
                return result;
            }
        }
    }
    let opts = LegOptions {
        hangup_after: Some(hold),
        timeout: hold + Duration::from_secs(60),
        ..LegOptions::default()
    };
    match run_leg(&d.audiosocket.to_string(), uuid, opts).await {
        Ok(leg) => {
            result.voiced_frames = leg.report.voiced_frames;
            result.gaps_over_40ms = leg.report.gaps_over_40ms;
            // The caller hung up, or the daemon did (at a drain): after speech either way.
            result.completed =
                leg.report.voiced_frames > 0 && matches!(leg.end, LegEnd::CallerHangup | LegEnd::ServerHangup);
            result.how = format!("{:?}, {} speech frames", leg.end, leg.report.voiced_frames);
        }
        Err(e) => result.how = format!("leg failed: {e:#}"),
    }
    result
}

/// A FastAGI call in stream mode with `query` added to the script's (`&temperature=...`).
async fn agi_call_result(d: &Endpoints, n: usize, query: &str) -> CallResult {
    let (first, second) = call_text(n);
    let opts = CallOptions {
        url: format!("agi://{}/say?seed={n}{query}", d.agi),
        text: format!("{first} {second}"),
        dtmf: String::new(),
        hangup_after: None,
    };
    let mut result = CallResult {
        transport: "agi",
        options: query.trim_start_matches('&').to_string(),
        completed: false,
        how: String::new(),
        voiced_frames: 0,
        gaps_over_40ms: 0,
    };
    match tokio::time::timeout(Duration::from_secs(120), agi_call(&opts)).await {
        Ok(Ok(record)) => {
            let var = |name: &str| {
                record
                    .variables
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map_or(String::new(), |(_, v)| v.clone())
            };
            let pacing = record.pacing();
            result.voiced_frames = pacing.voiced_frames;
            result.gaps_over_40ms = pacing.gaps_over_40ms;
            result.completed = var("XTTS_STATUS") == "SUCCESS";
            result.how = format!(
                "XTTS_STATUS={} XTTS_REASON={} XTTS_ERROR={}",
                var("XTTS_STATUS"),
                var("XTTS_REASON"),
                var("XTTS_ERROR")
            );
        }
        Ok(Err(e)) => result.how = format!("AGI call failed: {e:#}"),
        Err(_) => result.how = "AGI call still running after 120 s".into(),
    }
    result
}

/// Where a daemon listens (copied out of [`Daemon`] for the tasks).
#[derive(Clone, Copy)]
struct Endpoints {
    audiosocket: SocketAddr,
    agi: SocketAddr,
    control: SocketAddr,
}

impl From<&Daemon> for Endpoints {
    fn from(d: &Daemon) -> Self {
        Endpoints {
            audiosocket: d.audiosocket,
            agi: d.agi,
            control: d.control,
        }
    }
}

/// `n` calls at once, alternating AudioSocket and FastAGI; `special(i)` gives call i's options
/// (the control API's JSON and the AGI query), if any.
async fn place_calls(
    d: Endpoints,
    n: usize,
    hold: Duration,
    special: impl Fn(usize) -> Option<(&'static str, &'static str)>,
) -> Vec<CallResult> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (json, query) = special(i).unwrap_or(("", ""));
        set.spawn(async move {
            let result = if i % 2 == 0 {
                audiosocket_call(&d, i, json, hold).await
            } else {
                agi_call_result(&d, i, query).await
            };
            (i, result)
        });
    }
    let mut results: Vec<(usize, CallResult)> = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Ok(r) = done {
            results.push(r);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Health, readiness, counters and memory, sampled every 200 ms while a scenario runs.
struct Watcher {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Watched>,
}

#[derive(Default)]
struct Watched {
    probes: Vec<Probe>,
    last_metrics: Option<BTreeMap<String, f64>>,
    last_rss: Option<(f64, usize)>,
}

impl Watcher {
    fn start(d: Endpoints, pid: u32) -> Watcher {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut seen = Watched::default();
            loop {
                let (health, engine_state) = match http(d.control, "GET", "/v1/health", "").await {
                    Ok((code, body)) => {
                        let state = serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["engine"]["state"].as_str().map(str::to_string))
                            .unwrap_or_default();
                        (code, state)
                    }
                    Err(_) => (0, String::new()),
                };
                let ready = http(d.control, "GET", "/v1/ready", "").await.map_or(0, |(c, _)| c);
                let changed = seen
                    .probes
                    .last()
                    .is_none_or(|p| (p.health, &p.engine_state, p.ready) != (health, &engine_state, ready));
                if changed {
                    seen.probes.push(Probe {
                        at_s: started.elapsed().as_secs_f64(),
                        health,
                        engine_state,
                        ready,
                    });
                }
                if let Ok(m) = scrape(d.control).await {
                    seen.last_metrics = Some(m);
                }
                let (rss, fds) = rss_and_fds(pid);
                if rss > 0.0 {
                    seen.last_rss = Some((rss, fds));
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stopped.changed() => return seen,
                }
            }
        });
        Watcher { stop, task }
    }

    async fn finish(self) -> Watched {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

async fn run_scenario(args: &Args, scenario: Scenario) -> Result<ScenarioReport> {
    let fault = (scenario == Scenario::Panic).then_some("panic_step");
    let mut daemon = Daemon::start(args, fault).await?;
    let d = Endpoints::from(&daemon);
    let hold = Duration::from_secs_f64(args.duration);
    let (rss_before, fds_before) = rss_and_fds(daemon.pid());
    let before = scrape(d.control).await?;
    let watcher = Watcher::start(d, daemon.pid());
    let started = Instant::now();
    let mut report = ScenarioReport {
        scenario,
        calls: Vec::new(),
        refusals: Vec::new(),
        floods: Vec::new(),
        counters: BTreeMap::new(),
        frames_late: 0.0,
        rss_before_mib: rss_before,
        rss_after_mib: 0.0,
        fds_before,
        fds_after: 0,
        probes: Vec::new(),
        daemon_exit: None,
        exit_after_s: None,
        normal_call_after: String::new(),
        normal_call_ok: false,
        problems: Vec::new(),
    };
    let n = args.max_batch;
    match scenario {
        Scenario::Load => {
            let flood = FloodRun::start(d, args.idle).await;
            let at_start = flood.idle_open();
            report.calls = place_calls(d, n, hold, |_| None).await;
            report.floods = flood.finish(at_start).await;
        }
        Scenario::Poison => {
            let calls = tokio::spawn(place_calls(d, n, hold, poisoned_but_valid));
            // The refused ones arrive while the batch speaks.
            tokio::time::sleep(Duration::from_millis(500)).await;
            report.refusals = refused_requests(d).await;
            report.calls = calls.await?;
        }
        Scenario::Panic => {
            report.calls = place_calls(d, n, hold, |_| None).await;
            if let Some(status) = daemon.wait_exit(Duration::from_secs(5)).await? {
                report.daemon_exit = Some(status.to_string());
                report.exit_after_s = Some(started.elapsed().as_secs_f64());
            }
        }
        Scenario::Sigterm => {
            let calls = tokio::spawn(place_calls(d, n, hold, |_| None));
            // SIGTERM once the calls are speaking.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let signalled = Instant::now();
            daemon.signal(libc::SIGTERM);
            report.calls = calls.await?;
            let status = daemon.wait_exit(Duration::from_secs(30)).await?;
            report.daemon_exit = Some(status.map_or("still running 30 s after SIGTERM".into(), |s| s.to_string()));
            report.exit_after_s = status.map(|_| signalled.elapsed().as_secs_f64());
        }
    }
    let watched = watcher.finish().await;
    report.probes = watched.probes;
    let alive = daemon.child.try_wait()?.is_none();
    if alive {
        // Let the daemon see the last hang-ups before it is measured.
        tokio::time::sleep(Duration::from_secs(1)).await;
    } else if report.daemon_exit.is_none() {
        report.daemon_exit = Some(daemon.child.wait()?.to_string());
    }
    let after = if alive { scrape(d.control).await.ok() } else { None };
    let after = after.or(watched.last_metrics).unwrap_or_default();
    report.counters = counter_changes(&before, &after);
    report.frames_late = late_frames(&after) - late_frames(&before);
    let (rss_after, fds_after) = if alive {
        rss_and_fds(daemon.pid())
    } else {
        watched.last_rss.unwrap_or_default()
    };
    report.rss_after_mib = rss_after;
    report.fds_after = fds_after;
    // A normal call afterwards: on this daemon if it is still up, else on a restarted one (as
    // systemd would restart it).
    let normal = if alive {
        audiosocket_call(&d, 100, "", Duration::from_secs(4)).await
    } else {
        let restarted = Daemon::start(args, None).await?;
        let call = audiosocket_call(&Endpoints::from(&restarted), 100, "", Duration::from_secs(4)).await;
        restarted.stop().await?;
        CallResult {
            how: format!("on a restarted daemon: {}", call.how),
            ..call
        }
    };
    report.normal_call_ok = normal.completed;
    report.normal_call_after = normal.how;
    report.problems = problems(&report);
    if !report.problems.is_empty() {
        report
            .problems
            .push(format!("daemon log (last lines):\n{}", daemon.log_tail()));
    }
    if alive {
        daemon.stop().await?;
    }
    Ok(report)
}

/// Options at the edges of what the bounds accept, for some calls of a full batch: they must
/// speak like any other. (Greedy ignores temperature, so 1e-300 passes with it.)
fn poisoned_but_valid(i: usize) -> Option<(&'static str, &'static str)> {
    match i {
        0 => Some((r#""top_p": 1e-300, "top_k": 9223372036854775807"#, "")),
        1 => Some(("", "&greedy=1&temperature=1e-300")),
        2 => Some((r#""temperature": 100.0, "repetition_penalty": 100.0, "speed": 2.0"#, "")),
        3 => Some(("", "&temperature=0.01&repetition_penalty=0.01&speed=0.5")),
        _ => None,
    }
}

/// Options the bounds refuse, over the control API (JSON) and FastAGI (query): each must be
/// refused as invalid, touching no batch.
async fn refused_requests(d: Endpoints) -> Vec<Refusal> {
    let (t, r) = (SamplingParams::TEMPERATURE, SamplingParams::REPETITION_PENALTY);
    let json = [
        r#""temperature": 1e-300"#.to_string(),
        r#""temperature": 1e300"#.to_string(),
        r#""repetition_penalty": 1e-300"#.to_string(),
        r#""repetition_penalty": 1e39"#.to_string(),
        format!(r#""temperature": {}"#, t.start() / 2.0),
        format!(r#""repetition_penalty": {}"#, r.end() * 2.0),
        r#""top_p": 0"#.to_string(),
        r#""top_k": -1"#.to_string(),
        r#""speed": 1e308"#.to_string(),
    ];
    let query = [
        "&temperature=1e-300",
        "&repetition_penalty=1e-300",
        "&top_p=nan",
        "&speed=inf",
        "&temperature=-0",
    ];
    let mut out = Vec::new();
    for options in json {
        let body = format!(r#"{{"text": "Hello.", "options": {{{options}}}}}"#);
        let uuid = Uuid::new_v4();
        let answer = http(d.control, "POST", &format!("/v1/calls/{uuid}/say"), &body).await;
        out.push(Refusal {
            transport: "control",
            options,
            refused_invalid: matches!(answer, Ok((400, _))),
            answer: match answer {
                Ok((code, body)) => format!("{code} {}", body.trim()),
                Err(e) => format!("{e:#}"),
            },
        });
    }
    for (k, q) in query.into_iter().enumerate() {
        let call = agi_call_result(&d, 50 + k, q).await;
        out.push(Refusal {
            transport: "agi",
            options: call.options,
            refused_invalid: call.how.contains("XTTS_STATUS=FAILED XTTS_REASON=INVALID"),
            answer: call.how,
        });
    }
    out
}

/// What went against the issue's expectations.
fn problems(r: &ScenarioReport) -> Vec<String> {
    let mut out = Vec::new();
    if !r.normal_call_ok {
        out.push(format!("no normal call afterwards: {}", r.normal_call_after));
    }
    let failed: Vec<String> = r
        .calls
        .iter()
        .filter(|c| !c.completed)
        .map(|c| format!("{} {}: {}", c.transport, c.options, c.how))
        .collect();
    match r.scenario {
        Scenario::Load | Scenario::Poison => {
            if !failed.is_empty() {
                out.push(format!("calls failed: {}", failed.join("; ")));
            }
            for refusal in r.refusals.iter().filter(|x| !x.refused_invalid) {
                out.push(format!(
                    "not refused as invalid: {} {}: {}",
                    refusal.transport, refusal.options, refusal.answer
                ));
            }
        }
        Scenario::Panic => {
            let engine_failures = r.calls.iter().filter(|c| c.how.contains("XTTS_REASON=ENGINE")).count();
            let agi_calls = r.calls.iter().filter(|c| c.transport == "agi").count();
            if engine_failures == 0 && agi_calls > 0 {
                out.push("no AGI call failed with XTTS_REASON=ENGINE".into());
            }
            let down_seen = r.probes.iter().any(|p| p.engine_state == "down" || p.ready == 503);
            let exited_nonzero = r.daemon_exit.as_deref().is_some_and(|s| !s.contains("exit status: 0"));
            if !exited_nonzero {
                out.push(format!(
                    "the daemon did not exit non-zero after the engine panic ({})",
                    r.daemon_exit.as_deref().unwrap_or("still running")
                ));
            }
            if !down_seen && !exited_nonzero {
                out.push("health and readiness never reported the dead engine".into());
            }
        }
        Scenario::Sigterm => {
            if r.daemon_exit.as_deref() != Some("exit status: 0") {
                out.push(format!(
                    "exit after SIGTERM: {}",
                    r.daemon_exit.as_deref().unwrap_or("unknown")
                ));
            }
            let unclean: Vec<String> = r
                .calls
                .iter()
                .filter(|c| {
                    if c.transport == "agi" {
                        !(c.how.contains("XTTS_STATUS=SUCCESS") || c.how.contains("XTTS_REASON=SHUTDOWN"))
                    } else {
                        !c.how.starts_with("ServerHangup") && !c.completed
                    }
                })
                .map(|c| format!("{}: {}", c.transport, c.how))
                .collect();
            if !unclean.is_empty() {
                out.push(format!("calls not ended cleanly: {}", unclean.join("; ")));
            }
        }
    }
    out
}

/// The peers of the load scenario, on every listener.
struct FloodRun {
    stop: watch::Sender<bool>,
    stats: Vec<(&'static str, Arc<FloodStats>)>,
    tasks: tokio::task::JoinSet<()>,
}

#[derive(Default)]
struct FloodStats {
    idle_open: AtomicU64,
    idle_closed: AtomicU64,
    connect_failures: AtomicU64,
    trickle_closed_after_ms: Mutex<Vec<u64>>,
    garbage_connections: AtomicU64,
    garbage_closed: AtomicU64,
    garbage_bytes: AtomicU64,
}

impl FloodRun {
    /// Opens `idle` connections on each listener (waiting until they are open) and starts
    /// the trickling and garbage peers.
    async fn start(d: Endpoints, idle: usize) -> FloodRun {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let mut stats = Vec::new();
        let listeners = [("audiosocket", d.audiosocket), ("agi", d.agi), ("control", d.control)];
        for (name, addr) in listeners {
            let s = Arc::new(FloodStats::default());
            // Connect in waves, so the listen backlog is not what is measured.
            for wave in (0..idle).collect::<Vec<_>>().chunks(200) {
                let mut opened = tokio::task::JoinSet::new();
                for _ in wave {
                    opened.spawn(TcpStream::connect(addr));
                }
                while let Some(done) = opened.join_next().await {
                    match done {
                        Ok(Ok(stream)) => {
                            tasks.spawn(idle_peer(addr, stream, s.clone(), stopped.clone()));
                        }
                        _ => {
                            s.connect_failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            for k in 0..PEERS_PER_LISTENER {
                tasks.spawn(trickle_peer(name, addr, s.clone(), stopped.clone()));
                tasks.spawn(garbage_peer(addr, k as u64, s.clone(), stopped.clone()));
            }
            stats.push((name, s));
        }
        FloodRun { stop, stats, tasks }
    }

    fn idle_open(&self) -> Vec<u64> {
        self.stats
            .iter()
            .map(|(_, s)| s.idle_open.load(Ordering::Relaxed))
            .collect()
    }

    async fn finish(mut self, at_start: Vec<u64>) -> Vec<Flood> {
        let at_end = self.idle_open();
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.stats
            .iter()
            .zip(at_start.iter().zip(at_end))
            .map(|((name, s), (&start, end))| {
                let mut closed = s.trickle_closed_after_ms.lock().unwrap().clone();
                closed.sort_unstable();
                Flood {
                    listener: name.to_string(),
                    idle_open_at_start: start,
                    idle_open_at_end: end,
                    idle_closed_by_daemon: s.idle_closed.load(Ordering::Relaxed),
                    connect_failures: s.connect_failures.load(Ordering::Relaxed),
                    trickle_closed: closed.len() as u64,
                    trickle_close_median_s: closed.get(closed.len() / 2).map_or(f64::NAN, |&ms| ms as f64 / 1e3),
                    garbage_connections: s.garbage_connections.load(Ordering::Relaxed),
                    garbage_closed_by_daemon: s.garbage_closed.load(Ordering::Relaxed),
                    garbage_bytes: s.garbage_bytes.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

/// Waits until the peer is closed by the daemon (true) or the run stops (false).
async fn closed_by_daemon(stream: &mut TcpStream, stopped: &mut watch::Receiver<bool>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            },
            _ = stopped.changed() => return false,
        }
    }
}

/// An idle connection: sends nothing; reopened a second after the daemon closes it.
async fn idle_peer(addr: SocketAddr, stream: TcpStream, s: Arc<FloodStats>, mut stopped: watch::Receiver<bool>) {
    let mut stream = Some(stream);
    loop {
        let mut conn = match stream.take() {
            Some(c) => c,
            None => match TcpStream::connect(addr).await {
                Ok(c) => c,
                Err(_) => {
                    s.connect_failures.fetch_add(1, Ordering::Relaxed);
                    if pause_or_stop(&mut stopped, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            },
        };
        s.idle_open.fetch_add(1, Ordering::Relaxed);
        let closed = closed_by_daemon(&mut conn, &mut stopped).await;
        s.idle_open.fetch_sub(1, Ordering::Relaxed);
        if !closed {
            return;
        }
        s.idle_closed.fetch_add(1, Ordering::Relaxed);
        if pause_or_stop(&mut stopped, Duration::from_secs(1)).await {
            return;
        }
    }
}

/// Sleeps `d`; true when the run stopped meanwhile.
async fn pause_or_stop(stopped: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}

/// A plausible start of each listener's protocol, sent one byte a second.
fn trickle_bytes(listener: &str) -> Vec<u8> {
    match listener {
        "audiosocket" => {
            let mut b = vec![0x01, 0x00, 0x10];
            b.extend_from_slice(Uuid::new_v4().as_bytes());
            b
        }
        "agi" => b"agi_network: yes\nagi_network_script: say\nagi_request: agi://x/say\n".to_vec(),
        _ => format!(
            "POST /v1/calls/{}/say HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{{\"text\": \"trickle\"}}",
            Uuid::new_v4()
        )
        .into_bytes(),
    }
}

/// A peer that sends one byte a second until the daemon closes it (once per run).
async fn trickle_peer(
    listener: &'static str,
    addr: SocketAddr,
    s: Arc<FloodStats>,
    mut stopped: watch::Receiver<bool>,
) {
    let Ok(mut conn) = TcpStream::connect(addr).await else {
        s.connect_failures.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    for byte in trickle_bytes(listener).into_iter().cycle() {
        if conn.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::select! {
            read = conn.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopped.changed() => return,
        }
    }
    s.trickle_closed_after_ms
        .lock()
        .unwrap()
        .push(started.elapsed().as_millis() as u64);
}

/// A peer that sends random bytes (1 KiB every 10 ms) until closed, then reconnects.
async fn garbage_peer(addr: SocketAddr, seed: u64, s: Arc<FloodStats>, mut stopped: watch::Receiver<bool>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut chunk = [0u8; 1024];
    loop {
        let Ok(mut conn) = TcpStream::connect(addr).await else {
            s.connect_failures.fetch_add(1, Ordering::Relaxed);
            if pause_or_stop(&mut stopped, Duration::from_millis(100)).await {
                return;
            }
            continue;
        };
        s.garbage_connections.fetch_add(1, Ordering::Relaxed);
        loop {
            rng.fill(&mut chunk[..]);
            let write = tokio::time::timeout(Duration::from_secs(1), conn.write_all(&chunk)).await;
            match write {
                Ok(Ok(())) => {
                    s.garbage_bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                // Closed, or the daemon stopped reading: both end this connection.
                _ => break,
            }
            if pause_or_stop(&mut stopped, Duration::from_millis(10)).await {
                return;
            }
        }
        s.garbage_closed.fetch_add(1, Ordering::Relaxed);
        if pause_or_stop(&mut stopped, Duration::from_millis(100)).await {
            return;
        }
    }
}

/// One line per scenario.
pub fn table(reports: &[ScenarioReport]) -> String {
    let mut out = format!(
        "{:<8} {:>5} {:>6} {:>6} {:>10} {:>10} {:>7} {:>7} {:<22} {:<6} {:<8}\n",
        "scenario", "calls", "done", "failed", "late", "rss_MiB", "rss_aft", "fds", "daemon", "normal", "verdict"
    );
    for r in reports {
        let done = r.calls.iter().filter(|c| c.completed).count();
        out.push_str(&format!(
            "{:<8} {:>5} {:>6} {:>6} {:>10} {:>10.0} {:>7.0} {:>7} {:<22} {:<6} {:<8}\n",
            r.scenario.name(),
            r.calls.len(),
            done,
            r.calls.len() - done,
            r.frames_late,
            r.rss_before_mib,
            r.rss_after_mib,
            format!("{}>{}", r.fds_before, r.fds_after),
            r.daemon_exit.as_deref().unwrap_or("running"),
            if r.normal_call_ok { "ok" } else { "FAILED" },
            if r.problems.is_empty() { "ok" } else { "PROBLEMS" },
        ));
    }
    out
}

/// Every call, refusal, peer count, health change and problem of a scenario.
pub fn details(r: &ScenarioReport) -> String {
    let mut out = format!("== {} ==\n", r.scenario.name());
    for c in &r.calls {
        out.push_str(&format!(
            "  call {:<11} {:<5} gaps>40ms {:>3}  {}{}\n",
            c.transport,
            if c.completed { "done" } else { "FAIL" },
            c.gaps_over_40ms,
            c.how,
            if c.options.is_empty() {
                String::new()
            } else {
                format!("  [{}]", c.options)
            }
        ));
    }
    for x in &r.refusals {
        out.push_str(&format!(
            "  refused {:<7} {:<5} [{}]  {}\n",
            x.transport,
            if x.refused_invalid { "ok" } else { "NO" },
            x.options,
            x.answer.chars().take(160).collect::<String>()
        ));
    }
    for f in &r.floods {
        out.push_str(&format!(
            "  peers {:<11} idle open {}->{} (closed by daemon {}), connect failures {}, \
             trickle closed {}/{} (median {:.1} s), garbage conns {} closed {} ({} KiB sent)\n",
            f.listener,
            f.idle_open_at_start,
            f.idle_open_at_end,
            f.idle_closed_by_daemon,
            f.connect_failures,
            f.trickle_closed,
            PEERS_PER_LISTENER,
            f.trickle_close_median_s,
            f.garbage_connections,
            f.garbage_closed_by_daemon,
            f.garbage_bytes / 1024
        ));
    }
    for (name, delta) in &r.counters {
        out.push_str(&format!("  counter {name} +{delta}\n"));
    }
    for p in &r.probes {
        out.push_str(&format!(
            "  at {:>6.2} s: health {} engine {:<5} ready {}\n",
            p.at_s, p.health, p.engine_state, p.ready
        ));
    }
    if let Some(exit) = &r.daemon_exit {
        out.push_str(&format!(
            "  daemon exit: {exit}{}\n",
            r.exit_after_s.map_or(String::new(), |s| format!(" after {s:.2} s"))
        ));
    }
    out.push_str(&format!("  normal call afterwards: {}\n", r.normal_call_after));
    for p in &r.problems {
        out.push_str(&format!("  PROBLEM: {p}\n"));
    }
    out
}
