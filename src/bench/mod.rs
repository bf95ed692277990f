//! `xttsd bench`: load the model, start the AudioSocket server in-process on loopback, and
//! place N concurrent calls through it exactly as `xttsd call` does (each call's sentences are
//! queued through the call registry, as the control API queues them). For each N it reports
//! time to first audio, real-time factor, frames late, gaps, tokens per second and memory.
//! With `--reference` it then runs the reference implementation on the same sentences and
//! compares the one-call figures side by side. `--bot` runs voicebot calls instead, `--cached`
//! calls that play prompts from the prompt cache ([`cached`]).

pub mod bot;
pub mod cached;
pub mod faults;
pub mod reference;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::calls::SpeakJob;
use crate::client::audiosocket::{run_leg, LegEnd, LegOptions, LegReport};
use crate::config::Config;
use crate::engine::xtts_backend::{XttsBackend, XttsBackendConfig};
use crate::engine::{Engine, Metrics, SpeechOptions, SpeechRequest, METRICS};
use crate::serve::Services;
use crate::xtts::batch::{BatchDecoder, RowOptions};
use crate::xtts::sampling::SamplingParams;

/// Audio codes per second of speech (22050 Hz / 1024-sample code stride).
const TOKENS_PER_SECOND: f64 = 22_050.0 / 1024.0;

/// What the callers say, in turn; lengths vary like real prompts.
const SENTENCES: &[&str] = &[
    "Thank you for calling, how can I help you today?",
    "Your appointment is confirmed for Tuesday at three in the afternoon.",
    "Please hold while I transfer your call.",
    "I am sorry, I did not catch that. Could you say it again?",
    "Your balance is forty two dollars and seventeen cents.",
    "The office is open from nine to five, Monday to Friday.",
    "Press one for sales, two for support, or stay on the line.",
    "Goodbye, and have a nice day.",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model directory (config.json, model.pth, vocab.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Voice clip (WAV) the calls speak in.
    #[arg(long)]
    pub voice: PathBuf,
    /// Concurrent calls; a list such as `1,2,4,8` runs one round per value.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub calls: Vec<usize>,
    /// Spread each round's calls evenly over this many milliseconds (0: all connect in the same
    /// instant, the hardest start); every call still speaks for `--duration`.
    #[arg(long, default_value_t = 0)]
    pub spread_ms: u64,
    /// Length of each round's calls, in seconds (the callers hang up then).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Force this many audio codes per sentence (the stop code is masked until then), so a
    /// synthetic model speaks as long as the real one (about 21.5 codes per second).
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Requests decoded together at most (1 = one at a time).
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Requests the vocoder renders in one forward (0: measured at start, up to max-batch).
    #[arg(long, default_value_t = 0)]
    pub vocoder_batch: usize,
    /// Codes before a sentence's first chunk (default: the config's `first_chunk_tokens`).
    #[arg(long)]
    pub first_chunk_tokens: Option<usize>,
    /// Codes per later chunk (default: the config's `stream_chunk_tokens`).
    #[arg(long)]
    pub chunk_tokens: Option<usize>,
    /// libtorch CPU threads.
    #[arg(long, default_value_t = 1)]
    pub threads: i32,
    /// The GPT's float type: float32 | bfloat16 | float16.
    #[arg(long, default_value = "float32")]
    pub gpt_dtype: String,
    /// After the rounds, time the reference implementation (coqui-tts `inference_stream`) on the
    /// same model, voice, sentences, `--tokens`, device and threads, and compare it with the
    /// one-call round (run even when `--calls` lacks 1).
    #[arg(long)]
    pub reference: bool,
    /// Python that has coqui-tts (`tools/env.sh` puts the project's venv first on PATH).
    #[arg(long, default_value = "python3")]
    pub reference_python: PathBuf,
    /// The reference benchmark script.
    #[arg(long, default_value = reference::DEFAULT_SCRIPT)]
    pub reference_script: PathBuf,
    /// Voicebot calls instead: each call's bot streams its reply over the control API's
    /// WebSocket as an LLM would (3-5 character tokens at 40 tokens/s after 300 ms), then
    /// barges in; reports first token to first audio, clear to silence and segment sizes.
    #[arg(long)]
    pub bot: bool,
    /// Cached prompts instead: a menu is rendered once into a prompt cache, then timed from the
    /// cache to the socket (first audio, one call at a time), played to N concurrent calls (no
    /// engine request and no late frame allowed), and Opus encoding and decoding are timed.
    #[arg(long, conflicts_with_all = ["bot", "reference"])]
    pub cached: bool,
    /// Fault and load run instead: the real daemon (`xttsd serve`) as a child process on
    /// loopback under idle, trickling and garbage peers, poisoned options, an engine panic and
    /// SIGTERM, `--max-batch` calls at once (see `--scenarios`); `--duration` is each
    /// AudioSocket call's length.
    #[arg(long)]
    pub faults: bool,
    /// `--faults`: the scenarios to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "load,poison,panic,sigterm")]
    pub scenarios: Vec<faults::Scenario>,
    /// `--faults`: idle connections held on each listener in the load scenario.
    #[arg(long, default_value_t = 2000)]
    pub idle: usize,
}

/// Results of one round.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub calls: usize,
    pub max_batch: usize,
    pub device: String,
    pub gpt_dtype: String,
    pub wall_s: f64,
    /// First speech frame at the socket, from connecting, over the calls.
    pub ttfa_p50_ms: f64,
    pub ttfa_p95_ms: f64,
    pub ttfa_p99_ms: f64,
    /// Compute time of the busier engine thread (GPT worker or vocoder) over the speech time
    /// produced (below 1: faster than real time).
    pub rtf: f64,
    /// Seconds of compute in the GPT worker and in the vocoder thread.
    pub gpt_busy_s: f64,
    pub vocoder_busy_s: f64,
    /// Speech ticks at the socket with no audio ready, all calls together.
    pub frames_late: u64,
    /// Calls whose start waited so that the calls starting together kept their audio.
    pub starts_held: u64,
    /// Requests the engine refused as busy (a call speaks several, one per sentence).
    pub refused_busy: u64,
    /// Longest time between two frames at the socket.
    pub longest_gap_ms: f64,
    /// Longest silence inside a call once speech started (includes sentence changes).
    pub longest_silence_ms: f64,
    pub tokens: u64,
    /// Codes generated per wall-clock second (what the calls asked for).
    pub tokens_per_s: f64,
    /// Codes generated per second of GPT worker compute (the decoder's capacity).
    pub tokens_per_busy_s: f64,
    /// Rows per batched decode step, on average.
    pub mean_batch: f64,
    /// Chunks per vocoder forward, on average.
    pub vocoder_mean_batch: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    /// GPU memory used by this process (nvidia-smi), when on CUDA.
    pub gpu_mib: Option<f64>,
    pub failed_calls: usize,
    /// 1-minute load average when the round started.
    pub load_before: f64,
}

pub fn run(args: Args) -> Result<()> {
    if args.faults {
        return faults::run(&args);
    }
    anyhow::ensure!(!args.calls.is_empty(), "--calls needs at least one number");
    anyhow::ensure!(args.calls.iter().all(|&n| n > 0), "--calls values must be at least 1");
    anyhow::ensure!(
        args.duration.is_finite() && args.duration > 0.0,
        "--duration must be a positive number of seconds"
    );
    anyhow::ensure!(args.max_batch > 0, "--max-batch must be at least 1");
    anyhow::ensure!(args.tokens != Some(0), "--tokens must be at least 1");
    anyhow::ensure!(
        matches!(args.device.as_str(), "cpu" | "cuda"),
        "--device must be cpu or cuda, not '{}'",
        args.device
    );
    anyhow::ensure!(args.voice.is_file(), "--voice {}: no such file", args.voice.display());
    // The comparison with the reference needs a round with one call.
    let mut round_calls = args.calls.clone();
    if args.reference && !round_calls.contains(&1) {
        round_calls.insert(0, 1);
    }
    let speakers = tempfile::tempdir().context("creating a speakers folder")?;
    std::fs::copy(&args.voice, speakers.path().join("bench.wav"))
        .with_context(|| format!("copying {}", args.voice.display()))?;

    let mut config = Config::default();
    config.engine.model_dir = args.model.clone();
    config.engine.speakers_dir = speakers.path().to_path_buf();
    config.engine.device = args.device.parse()?;
    config.engine.max_batch = args.max_batch;
    config.engine.vocoder_batch = args.vocoder_batch;
    if let Some(n) = args.first_chunk_tokens {
        config.engine.first_chunk_tokens = n;
    }
    if let Some(n) = args.chunk_tokens {
        config.engine.stream_chunk_tokens = n;
    }
    config.engine.gpt_dtype = args.gpt_dtype.parse()?;
    config.engine.default_voice = "bench".into();
    // The benchmark measures synthesis: no request may be served from the prompt cache, except
    // with `--cached`, which gets a fresh one.
    let cache_dir = tempfile::tempdir().context("creating a prompt cache folder")?;
    config.prompts.cache_dir = if args.cached {
        cache_dir.path().join("prompts")
    } else {
        PathBuf::new()
    };
    let mut synth_cfg = XttsBackendConfig::from_engine(&config.engine);
    synth_cfg.forced_tokens = args.tokens;
    synth_cfg.cpu_threads = args.threads.max(1) as usize;
    let queue_limit = config.engine.queue_limit;
    eprintln!("loading {} on {} ...", args.model.display(), args.device);
    let engine = Engine::spawn(
        move || {
            let mut synth = XttsBackend::load(&synth_cfg)?;
            synth.warm_up("bench", "en")?;
            let validator = synth.validator();
            Ok((synth, validator))
        },
        queue_limit,
    )?;
    let services = Services::new(config, engine);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.bot {
        return rt.block_on(bot::run(services, &round_calls, &args));
    }
    if args.cached {
        return rt.block_on(cached::run(services, &round_calls, &args));
    }
    let rounds = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding loopback")?;
        let addr = listener.local_addr()?.to_string();
        tokio::spawn(crate::audiosocket::serve(listener, services.audiosocket()));
        let mut rounds = Vec::new();
        for &n in &round_calls {
            let round = run_round(&services, &addr, n, &args).await?;
            eprintln!("{n} calls done");
            rounds.push(round);
        }
        anyhow::Ok(rounds)
    })?;
    println!("{}", table(&rounds));
    // The calls above are paced by real time, so the decoder mostly idles; its capacity with
    // every slot busy is measured on its own, without audio.
    let capacity = decoder_capacity(&args)?;
    println!("GPT decode capacity, every row busy (no vocoder, no sockets):");
    for c in &capacity {
        println!(
            "  batch {:>3}: {:>8.1} tokens/s  ({:.2} ms per step)",
            c.batch, c.tokens_per_s, c.ms_per_step
        );
    }
    let comparison = args.reference.then(|| compare_with_reference(&args, &rounds));
    let mut json = serde_json::json!({ "rounds": rounds, "decoder_capacity": capacity });
    match &comparison {
        Some(Ok(c)) => {
            println!("{}", reference::table(c));
            json["reference"] = serde_json::to_value(c)?;
        }
        Some(Err(e)) => json["reference"] = serde_json::json!({ "error": format!("{e:#}") }),
        None => {}
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    match comparison {
        Some(Err(e)) => Err(e.context("reference benchmark")),
        _ => Ok(()),
    }
}

/// Runs the reference on the sentences the calls spoke and compares it with the one-call round.
fn compare_with_reference(args: &Args, rounds: &[Round]) -> Result<reference::Comparison> {
    let one_call = rounds
        .iter()
        .find(|r| r.calls == 1)
        .context("no round with one call to compare with")?;
    eprintln!("running the reference on the same sentences ...");
    let opts = reference::ReferenceOptions {
        python: args.reference_python.clone(),
        script: args.reference_script.clone(),
        model: args.model.clone(),
        voice: args.voice.clone(),
        tokens: args.tokens,
        threads: args.threads.max(1),
        device: args.device.clone(),
    };
    let summary = reference::run(&opts, SENTENCES)?;
    Ok(reference::compare(one_call, summary))
}

/// Decode throughput of the GPT at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub batch: usize,
    pub tokens_per_s: f64,
    pub ms_per_step: f64,
}

/// Runs `batch` rows of `--tokens` codes (64 by default) through a [`BatchDecoder`] for each
/// batch size of `--calls` (and 1), with a neutral conditioning: throughput does not depend on it.
fn decoder_capacity(args: &Args) -> Result<Vec<Capacity>> {
    let device = crate::engine::xtts_backend::torch_device(args.device.parse()?)?;
    tch::set_num_threads(args.threads);
    let kind = crate::engine::xtts_backend::torch_kind(args.gpt_dtype.parse()?);
    let model = crate::xtts::model::Xtts::load_as(&args.model, device, kind)?;
    let gpt = model.gpt();
    let cfg = gpt.config();
    let cond = tch::Tensor::zeros(
        [1, crate::xtts::batch::COND_LATENTS, cfg.dim],
        (tch::Kind::Float, device),
    );
    let prefix = gpt.prefix_embeddings(&cond, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])?;
    let tokens = args.tokens.unwrap_or(64).max(2);
    let opts = RowOptions {
        params: SamplingParams {
            seed: Some(1),
            ..SamplingParams::default()
        },
        forced_tokens: Some(tokens),
        max_codes: None,
    };
    let mut sizes: Vec<usize> = std::iter::once(1).chain(args.calls.iter().copied()).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut out = Vec::new();
    for batch in sizes {
        let mut decoder = BatchDecoder::new(gpt, batch)?;
        let started = Instant::now();
        let mut slots = Vec::new();
        for _ in 0..batch {
            slots.push(decoder.admit(&prefix, &opts)?.slot);
        }
        let decode_started = Instant::now();
        let mut steps = 0;
        while !decoder.active().is_empty() {
            let active = decoder.active();
            decoder.step(&active)?;
            steps += 1;
        }
        let total = started.elapsed().as_secs_f64();
        out.push(Capacity {
            batch,
            tokens_per_s: (batch * tokens) as f64 / total,
            ms_per_step: decode_started.elapsed().as_secs_f64() * 1e3 / steps.max(1) as f64,
        });
    }
    Ok(out)
}

/// Counter values at one moment.
#[derive(Clone, Copy)]
struct Snapshot {
    tokens: u64,
    steps: u64,
    step_rows: u64,
    busy_us: u64,
    vocoder_us: u64,
    vocoder_forwards: u64,
    vocoder_windows: u64,
    underruns: u64,
    starts_held: u64,
    refused_busy: u64,
}

impl Snapshot {
    fn now() -> Self {
        let get = |c: &AtomicU64| Metrics::get(c);
        Self {
            tokens: get(&METRICS.tokens),
            steps: get(&METRICS.steps),
            step_rows: get(&METRICS.step_rows),
            busy_us: get(&METRICS.busy_us),
            vocoder_us: get(&METRICS.vocoder_us),
            vocoder_forwards: get(&METRICS.vocoder_forwards),
            vocoder_windows: get(&METRICS.vocoder_windows),
            underruns: get(&METRICS.underruns),
            starts_held: get(&METRICS.starts_held),
            refused_busy: get(&METRICS.refused_busy),
        }
    }
}

async fn run_round(services: &Arc<Services>, addr: &str, n: usize, args: &Args) -> Result<Round> {
    let load_before = load_average();
    let duration = Duration::from_secs_f64(args.duration);
    // More sentences than a call can play in its time: the engine always has work.
    let per_call = (args.duration / 2.0).ceil() as usize + 2;
    let before = Snapshot::now();
    let started = Instant::now();
    let mut legs = tokio::task::JoinSet::new();
    for call in 0..n {
        let uuid = Uuid::new_v4();
        for k in 0..per_call {
            let text = SENTENCES[(call * 3 + k) % SENTENCES.len()];
            services.calls.enqueue(
                uuid,
                SpeakJob {
                    request: SpeechRequest {
                        text: text.into(),
                        lang: "en".into(),
                        voice: "bench".into(),
                        options: SpeechOptions {
                            seed: Some((call * 1000 + k) as u64),
                            ..SpeechOptions::default()
                        },
                    },
                    escape_digits: String::new(),
                    hangup_after: false,
                    done: None,
                },
            )?;
        }
        let opts = LegOptions {
            hangup_after: Some(duration),
            timeout: duration + Duration::from_secs(30),
            ..LegOptions::default()
        };
        let addr = addr.to_string();
        let connects_after = Duration::from_millis(args.spread_ms * call as u64 / n.max(1) as u64);
        legs.spawn(async move {
            tokio::time::sleep(connects_after).await;
            run_leg(&addr, uuid, opts).await
        });
    }
    let mut reports: Vec<LegReport> = Vec::new();
    let mut failed = 0;
    while let Some(done) = legs.join_next().await {
        match done? {
            Ok(leg) if !matches!(leg.end, LegEnd::Error(_)) => reports.push(leg),
            Ok(leg) => {
                tracing::warn!(end = ?leg.end, "call failed");
                failed += 1;
            }
            Err(e) => {
                tracing::warn!("call failed: {e:#}");
                failed += 1;
            }
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    // Let the engine notice the hang-ups before the next round.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = Snapshot::now();

    let mut ttfa: Vec<f64> = reports.iter().filter_map(|r| r.report.first_voice_ms).collect();
    ttfa.sort_by(f64::total_cmp);
    let tokens = after.tokens - before.tokens;
    let busy_s = (after.busy_us - before.busy_us) as f64 / 1e6;
    let vocoder_s = (after.vocoder_us - before.vocoder_us) as f64 / 1e6;
    let steps = after.steps - before.steps;
    let speech_s = tokens as f64 / TOKENS_PER_SECOND;
    let (rss_mib, peak_rss_mib) = rss_mib();
    Ok(Round {
        calls: n,
        max_batch: args.max_batch,
        device: args.device.clone(),
        gpt_dtype: args.gpt_dtype.clone(),
        wall_s,
        ttfa_p50_ms: percentile(&ttfa, 50.0),
        ttfa_p95_ms: percentile(&ttfa, 95.0),
        ttfa_p99_ms: percentile(&ttfa, 99.0),
        rtf: if speech_s > 0.0 {
            busy_s.max(vocoder_s) / speech_s
        } else {
            f64::NAN
        },
        gpt_busy_s: busy_s,
        vocoder_busy_s: vocoder_s,
        frames_late: after.underruns - before.underruns,
        starts_held: after.starts_held - before.starts_held,
        refused_busy: after.refused_busy - before.refused_busy,
        longest_gap_ms: reports.iter().map(|r| r.report.longest_gap_ms).fold(0.0, f64::max),
        longest_silence_ms: reports.iter().map(longest_silence_ms).fold(0.0, f64::max),
        tokens,
        tokens_per_s: tokens as f64 / wall_s,
        tokens_per_busy_s: if busy_s > 0.0 { tokens as f64 / busy_s } else { 0.0 },
        mean_batch: if steps > 0 {
            (after.step_rows - before.step_rows) as f64 / steps as f64
        } else {
            0.0
        },
        vocoder_mean_batch: match after.vocoder_forwards - before.vocoder_forwards {
            0 => 0.0,
            forwards => (after.vocoder_windows - before.vocoder_windows) as f64 / forwards as f64,
        },
        rss_mib,
        peak_rss_mib,
        gpu_mib: (args.device == "cuda").then(gpu_mib).flatten(),
        failed_calls: failed,
        load_before,
    })
}

/// Longest run of silent frames between the first and last speech frame of a call.
fn longest_silence_ms(leg: &LegReport) -> f64 {
    let first = leg.arrivals.iter().position(|a| a.voiced);
    let last = leg.arrivals.iter().rposition(|a| a.voiced);
    let (Some(first), Some(last)) = (first, last) else {
        return 0.0;
    };
    let mut longest = Duration::ZERO;
    let mut run = Duration::ZERO;
    for a in &leg.arrivals[first..=last] {
        if a.voiced {
            run = Duration::ZERO;
        } else {
            run += a.media();
            longest = longest.max(run);
        }
    }
    longest.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted values (NaN when there are none).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Current and peak resident memory of this process, MiB (0 where /proc is missing).
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// GPU memory this process holds, from nvidia-smi (libtorch's C API exposes no allocator stats).
fn gpu_mib() -> Option<f64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    let pid = std::process::id().to_string();
    String::from_utf8_lossy(&out.stdout).lines().find_map(|line| {
        let (p, mem) = line.split_once(',')?;
        (p.trim() == pid).then(|| mem.trim().parse().ok()).flatten()
    })
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The rounds as a fixed-width table.
pub fn table(rounds: &[Round]) -> String {
    let mut out = format!(
        "{:>5} {:>5} {:>9} {:>9} {:>9} {:>6} {:>5} {:>8} {:>9} {:>8} {:>9} {:>6} {:>5} {:>5} {:>5} {:>7} {:>8} {:>6} {:>5}\n",
        "calls",
        "batch",
        "ttfa50ms",
        "ttfa95ms",
        "ttfa99ms",
        "rtf",
        "late",
        "gap_ms",
        "silenceMs",
        "tok/s",
        "tok/busy",
        "meanB",
        "gpt%",
        "voc%",
        "held",
        "refused",
        "rss_MiB",
        "load",
        "fail"
    );
    for r in rounds {
        out.push_str(&format!(
            "{:>5} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>6.3} {:>5} {:>8.1} {:>9.1} {:>8.1} {:>9.1} {:>6.2} {:>5.0} {:>5.0} {:>5} {:>7} {:>8.0} {:>6.2} {:>5}\n",
            r.calls,
            r.max_batch,
            r.ttfa_p50_ms,
            r.ttfa_p95_ms,
            r.ttfa_p99_ms,
            r.rtf,
            r.frames_late,
            r.longest_gap_ms,
            r.longest_silence_ms,
            r.tokens_per_s,
            r.tokens_per_busy_s,
            r.mean_batch,
            100.0 * r.gpt_busy_s / r.wall_s,
            100.0 * r.vocoder_busy_s / r.wall_s,
            r.starts_held,
            r.refused_busy,
            r.peak_rss_mib,
            r.load_before,
            r.failed_calls
        ));
    }
    if let Some(gpu) = rounds.iter().filter_map(|r| r.gpu_mib).reduce(f64::max) {
        out.push_str(&format!("GPU memory (nvidia-smi): {gpu:.0} MiB\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::report::{Arrival, PacingReport};

    #[test]
    fn percentiles_use_nearest_rank() {
        let v = [10.0, 20.0, 30.0, 40.0];
        assert_eq!(percentile(&v, 50.0), 20.0);
        assert_eq!(percentile(&v, 99.0), 40.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn silence_is_counted_between_speech_only() {
        let frame = |i: u64, voiced| Arrival {
            at: Duration::from_millis(20 * i),
            bytes: 320,
            rate: 8000,
            voiced,
        };
        let pattern = [false, false, true, false, false, false, true, false, true, false, false];
        let arrivals: Vec<Arrival> = pattern.iter().enumerate().map(|(i, &v)| frame(i as u64, v)).collect();
        let leg = LegReport {
            samples: Vec::new(),
            rate: 8000,
            report: PacingReport::from_arrivals(&arrivals, Duration::from_millis(220)),
            end: LegEnd::CallerHangup,
            arrivals,
            dtmf_sent: Vec::new(),
        };
        assert_eq!(longest_silence_ms(&leg), 60.0);
    }
}
