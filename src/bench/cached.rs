//! `xttsd bench --cached`: prompts played from the prompt cache. A menu of seeded prompts is
//! rendered once through the engine into a prompt cache (a temporary folder), then:
//!
//! * **hit**: in process, a cached request to its first audio chunk (lookup, checksum, the
//!   first Opus packets decoded), and the whole prompt decoded;
//! * **first audio at the socket**: one call at a time, already up and idle, is queued the menu;
//!   the time from queueing to the first voiced frame at the socket (the call's 20 ms clock
//!   included), and from connecting to the first voiced frame for a call that arrives with the
//!   menu waiting;
//! * **rounds**: N calls (one per `--calls` value) connect 10 ms apart and each hears the whole
//!   menu; no engine request may be made and no frame may be late;
//! * **Opus**: encoding and decoding speed of one core, in seconds of audio per second.
//!
//! Any engine request or late frame after the menu is rendered makes the run fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use tokio::net::TcpListener;
use uuid::Uuid;

use super::{percentile, Args, Snapshot, SENTENCES};
use crate::audio::opus;
use crate::calls::SpeakJob;
use crate::client::audiosocket::{run_leg, LegEnd, LegOptions, LegReport};
use crate::engine::{SpeechEvent, SpeechOptions, SpeechRequest};
use crate::prompt_cache::{CacheMode, PromptCache, CACHE_RATE};
use crate::serve::Services;

/// Prompts of the menu: the bench's sentences that sound like one.
const MENU: [usize; 3] = [0, 6, 7];
/// Hits timed in process.
const HITS: usize = 200;
/// Calls timed one at a time for first audio.
const SINGLE_CALLS: usize = 30;
/// An idle call waits this long before its menu is queued (so it is up and ticking).
const IDLE_BEFORE_QUEUE: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Serialize)]
pub struct CachedFigures {
    pub menu_s: f64,
    /// Cached request to its first audio chunk, in process.
    pub hit_first_chunk_p50_ms: f64,
    pub hit_first_chunk_p99_ms: f64,
    /// Cached request to all its audio, in process.
    pub hit_whole_p50_ms: f64,
    /// Menu queued on an idle call to its first voiced frame at the socket.
    pub queued_to_voice_p50_ms: f64,
    pub queued_to_voice_p99_ms: f64,
    /// Connecting with the menu waiting to the first voiced frame at the socket.
    pub connect_to_voice_p50_ms: f64,
    pub connect_to_voice_p99_ms: f64,
    pub rounds: Vec<CachedRound>,
    /// Seconds of 24 kHz audio one core encodes (32 kb/s) and decodes per second.
    pub opus_encode_x: f64,
    pub opus_decode_x: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CachedRound {
    pub calls: usize,
    pub engine_requests: u64,
    pub frames_late: u64,
    pub failed_calls: usize,
    pub connect_to_voice_p50_ms: f64,
    pub connect_to_voice_p99_ms: f64,
    pub longest_gap_ms: f64,
    pub jitter_p99_ms: f64,
    /// 1-minute load average when the round started.
    pub load_before: f64,
}

fn menu() -> Vec<SpeechRequest> {
    MENU.iter()
        .map(|&i| SpeechRequest {
            text: SENTENCES[i].into(),
            lang: "en".into(),
            voice: "bench".into(),
            options: SpeechOptions {
                seed: Some(1),
                ..SpeechOptions::default()
            },
        })
        .collect()
}

/// Queues the menu on a call; the call hangs up after its last prompt.
fn queue_menu(services: &Services, uuid: Uuid) -> Result<()> {
    let prompts = menu();
    let last = prompts.len() - 1;
    for (i, request) in prompts.into_iter().enumerate() {
        services.calls.enqueue(
            uuid,
            SpeakJob {
                request,
                escape_digits: String::new(),
                hangup_after: i == last,
                done: None,
            },
        )?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// The call played the whole menu and was hung up on by the server.
fn check_leg(leg: &LegReport) -> Result<()> {
    let hung_up = match &leg.end {
        LegEnd::ServerHangup | LegEnd::Closed => true,
        LegEnd::Error(e) => e.contains("Broken pipe") || e.contains("reset"),
        _ => false,
    };
    ensure!(hung_up, "the call ended with {:?}", leg.end);
    ensure!(leg.report.voiced_frames > 0, "the call heard nothing");
    Ok(())
}

pub async fn run(services: Arc<Services>, rounds: &[usize], args: &Args) -> Result<()> {
    let cache = services.cache.clone().context("the prompt cache is off")?;
    let engine = services.engine.clone();
    eprintln!("rendering the menu ({} prompts) ...", MENU.len());
    let mut menu_samples = Vec::new();
    for req in menu() {
        let speech = cache.speak(&engine, req, CacheMode::Auto)?;
        menu_samples.extend(speech.collect().await?);
    }
    wait_stored(&cache, MENU.len() as u64).await?;
    let served = || engine.status().served;
    let served_before = served();
    let menu_s = menu_samples.len() as f64 / CACHE_RATE as f64;

    // In process: a hit to its first chunk, and to its end.
    let mut first_chunk = Vec::new();
    let mut whole = Vec::new();
    for i in 0..HITS {
        let started = Instant::now();
        let mut speech = cache.speak(&engine, menu()[i % MENU.len()].clone(), CacheMode::Auto)?;
        ensure!(speech.from_cache, "a rendered prompt was not a hit");
        match speech.next().await {
            Some(SpeechEvent::Audio(_)) => first_chunk.push(ms(started.elapsed())),
            other => bail!("a hit gave {other:?} first"),
        }
        speech.collect().await?;
        whole.push(ms(started.elapsed()));
    }
    let (first_chunk, whole) = (sorted(first_chunk), sorted(whole));

    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding loopback")?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(crate::audiosocket::serve(listener, services.audiosocket()));
    let leg_options = LegOptions {
        timeout: Duration::from_secs_f64(menu_s + 30.0),
        ..LegOptions::default()
    };

    // One call at a time: queued on an idle call, and waiting when the call arrives.
    let mut queued_to_voice = Vec::new();
    let mut connect_to_voice = Vec::new();
    for _ in 0..SINGLE_CALLS {
        let uuid = Uuid::new_v4();
        let connected = Instant::now();
        let leg = tokio::spawn(run_leg_owned(addr.clone(), uuid, leg_options.clone()));
        tokio::time::sleep(IDLE_BEFORE_QUEUE).await;
        let queued = connected.elapsed();
        queue_menu(&services, uuid)?;
        let leg = leg.await??;
        check_leg(&leg)?;
        let voice = leg.report.first_voice_ms.context("no voiced frame")?;
        queued_to_voice.push(voice - ms(queued));

        let uuid = Uuid::new_v4();
        queue_menu(&services, uuid)?;
        let leg = run_leg(&addr, uuid, leg_options.clone()).await?;
        check_leg(&leg)?;
        connect_to_voice.push(leg.report.first_voice_ms.context("no voiced frame")?);
    }
    let (queued_to_voice, connect_to_voice) = (sorted(queued_to_voice), sorted(connect_to_voice));

    let mut round_figures = Vec::new();
    for &n in rounds {
        let round = run_round(&services, &addr, n, &leg_options, served).await?;
        eprintln!("{n} cached calls done");
        round_figures.push(round);
    }

    let (opus_encode_x, opus_decode_x) = tokio::task::spawn_blocking(move || opus_speed(&menu_samples)).await??;
    let figures = CachedFigures {
        menu_s,
        hit_first_chunk_p50_ms: percentile(&first_chunk, 50.0),
        hit_first_chunk_p99_ms: percentile(&first_chunk, 99.0),
        hit_whole_p50_ms: percentile(&whole, 50.0),
        queued_to_voice_p50_ms: percentile(&queued_to_voice, 50.0),
        queued_to_voice_p99_ms: percentile(&queued_to_voice, 99.0),
        connect_to_voice_p50_ms: percentile(&connect_to_voice, 50.0),
        connect_to_voice_p99_ms: percentile(&connect_to_voice, 99.0),
        rounds: round_figures,
        opus_encode_x,
        opus_decode_x,
    };
    println!("{}", report(&figures));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({ "cached": figures }))?;
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let requests = served() - served_before;
    ensure!(requests == 0, "cached prompts made {requests} engine requests");
    let late: u64 = figures.rounds.iter().map(|r| r.frames_late).sum();
    ensure!(late == 0, "{late} frames were late");
    Ok(())
}

/// `run_leg` with owned arguments, for spawning.
async fn run_leg_owned(addr: String, uuid: Uuid, opts: LegOptions) -> Result<LegReport> {
    run_leg(&addr, uuid, opts).await
}

async fn wait_stored(cache: &PromptCache, n: u64) -> Result<()> {
    for _ in 0..3000 {
        if cache.stats().stored >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the menu was not stored in the prompt cache within 30 s")
}

async fn run_round(
    services: &Arc<Services>,
    addr: &str,
    n: usize,
    leg_options: &LegOptions,
    served: impl Fn() -> u64,
) -> Result<CachedRound> {
    let load_before = super::load_average();
    let before = Snapshot::now();
    let served_before = served();
    let mut legs = tokio::task::JoinSet::new();
    for _ in 0..n {
        let uuid = Uuid::new_v4();
        queue_menu(services, uuid)?;
        legs.spawn(run_leg_owned(addr.to_string(), uuid, leg_options.clone()));
        // Calls arrive 100 a second, as at a busy contact centre's opening hour.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut firsts = Vec::new();
    let (mut gap, mut jitter, mut failed) = (0.0f64, 0.0f64, 0);
    while let Some(done) = legs.join_next().await {
        match done?.and_then(|leg| check_leg(&leg).map(|()| leg)) {
            Ok(leg) => {
                firsts.extend(leg.report.first_voice_ms);
                gap = gap.max(leg.report.longest_gap_ms);
                jitter = jitter.max(leg.report.jitter_p99_ms);
            }
            Err(e) => {
                tracing::warn!("cached call failed: {e:#}");
                failed += 1;
            }
        }
    }
    let after = Snapshot::now();
    let firsts = sorted(firsts);
    Ok(CachedRound {
        calls: n,
        engine_requests: served() - served_before,
        frames_late: after.underruns - before.underruns,
        failed_calls: failed,
        connect_to_voice_p50_ms: percentile(&firsts, 50.0),
        connect_to_voice_p99_ms: percentile(&firsts, 99.0),
        longest_gap_ms: gap,
        jitter_p99_ms: jitter,
        load_before,
    })
}

/// Seconds of audio per second of one core: encoding `samples` at the cache's bitrate, and
/// decoding the result (each repeated until a second has passed).
fn opus_speed(samples: &[f32]) -> Result<(f64, f64)> {
    ensure!(!samples.is_empty(), "no audio to time");
    let audio_s = samples.len() as f64 / CACHE_RATE as f64;
    let timed = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let started = Instant::now();
        let mut runs = 0;
        while runs == 0 || started.elapsed() < Duration::from_secs(1) {
            f()?;
            runs += 1;
        }
        Ok(audio_s * runs as f64 / started.elapsed().as_secs_f64())
    };
    let file = opus::encode(samples, CACHE_RATE, opus::BITRATE)?;
    let encode = timed(&mut || opus::encode(samples, CACHE_RATE, opus::BITRATE).map(drop))?;
    let decode = timed(&mut || opus::decode(file.clone(), CACHE_RATE).map(drop))?;
    Ok((encode, decode))
}

fn report(f: &CachedFigures) -> String {
    let mut out = format!(
        "menu: {} prompts, {:.1} s of audio\n\
         hit, request to first chunk (in process): p50 {:.2} ms, p99 {:.2} ms; whole prompt p50 {:.2} ms\n\
         menu queued on an idle call to first voiced frame at the socket: p50 {:.1} ms, p99 {:.1} ms\n\
         call connecting with the menu waiting to first voiced frame: p50 {:.1} ms, p99 {:.1} ms\n\
         Opus (24 kHz, {} kb/s), one core: encode {:.0} x real time, decode {:.0} x real time\n",
        MENU.len(),
        f.menu_s,
        f.hit_first_chunk_p50_ms,
        f.hit_first_chunk_p99_ms,
        f.hit_whole_p50_ms,
        f.queued_to_voice_p50_ms,
        f.queued_to_voice_p99_ms,
        f.connect_to_voice_p50_ms,
        f.connect_to_voice_p99_ms,
        opus::BITRATE / 1000,
        f.opus_encode_x,
        f.opus_decode_x,
    );
    out.push_str(&format!(
        "{:>5} {:>8} {:>5} {:>5} {:>10} {:>10} {:>8} {:>9} {:>5}\n",
        "calls", "requests", "late", "fail", "voice50ms", "voice99ms", "gap_ms", "jitter99", "load"
    ));
    for r in &f.rounds {
        out.push_str(&format!(
            "{:>5} {:>8} {:>5} {:>5} {:>10.1} {:>10.1} {:>8.1} {:>9.1} {:>5.2}\n",
            r.calls,
            r.engine_requests,
            r.frames_late,
            r.failed_calls,
            r.connect_to_voice_p50_ms,
            r.connect_to_voice_p99_ms,
            r.longest_gap_ms,
            r.jitter_p99_ms,
            r.load_before
        ));
    }
    out
}
