//! Calls playing prompts from the prompt cache: over AudioSocket, a prompt rendered once is
//! played to later calls through the same pacer with no engine request at all.
//! `XTTSD_CACHED_CALLS=200 cargo test --release --test cached_calls -- --nocapture` runs the
//! many-calls check with 200 calls and prints the figures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::net::TcpListener;
use tokio::time::timeout;
use uuid::Uuid;
use xttsd::calls::SpeakJob;
use xttsd::client::audiosocket::{run_leg, LegEnd, LegOptions, LegReport};
use xttsd::config::Config;
use xttsd::engine::{Engine, SpeechBackend, SpeechOptions, SpeechRequest, METRICS};
use xttsd::prompt_cache::PromptCache;
use xttsd::serve::{Services, SharedServices};

const RATE: u32 = 24000;

/// A 1 kHz tone of 3 s in 100 ms chunks at four times real time; counts its requests.
struct Tone(Arc<AtomicUsize>);

impl SpeechBackend for Tone {
    fn sample_rate(&self) -> u32 {
        RATE
    }
    fn speak(&mut self, _req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        for c in 0..30 {
            std::thread::sleep(Duration::from_millis(25));
            let chunk = (0..2400)
                .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * (c * 2400 + i) as f32 / RATE as f32).sin())
                .collect();
            if !emit(chunk) {
                break;
            }
        }
        Ok(())
    }
}

struct Daemon {
    addr: String,
    services: SharedServices,
    requests: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

async fn start() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.prompts.cache_dir = dir.path().join("cache");
    config.test_call.enabled = false;
    let requests = Arc::new(AtomicUsize::new(0));
    let services = Services::new(
        config,
        Engine::start(Tone(requests.clone()), |_: &SpeechRequest| Ok(()), 8),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(xttsd::audiosocket::serve(listener, services.audiosocket()));
    Daemon {
        addr,
        services,
        requests,
        _dir: dir,
    }
}

/// The menu prompt: seeded, so the cache takes it.
fn menu_job() -> SpeakJob {
    SpeakJob {
        request: SpeechRequest {
            text: "Press one for sales.".into(),
            lang: "en".into(),
            voice: "default".into(),
            options: SpeechOptions {
                seed: Some(11),
                ..Default::default()
            },
        },
        escape_digits: String::new(),
        hangup_after: true,
        done: None,
    }
}

async fn call(d: &Daemon) -> LegReport {
    let uuid = Uuid::new_v4();
    d.services.calls.enqueue(uuid, menu_job()).unwrap();
    let opts = LegOptions {
        timeout: Duration::from_secs(30),
        // XTTSD_SILENT_CALLERS=1: callers send nothing, halving the load of the test's own client side.
        send_audio: std::env::var_os("XTTSD_SILENT_CALLERS").is_none(),
        ..LegOptions::default()
    };
    let leg = timeout(Duration::from_secs(40), run_leg(&d.addr, uuid, opts))
        .await
        .expect("call did not end")
        .expect("call failed");
    // The server hangs up after the prompt; the caller may notice it first as a write to the
    // closed socket failing.
    let hung_up = match &leg.end {
        LegEnd::ServerHangup | LegEnd::Closed => true,
        LegEnd::Error(e) => e.contains("Broken pipe") || e.contains("reset"),
        _ => false,
    };
    assert!(hung_up, "{:?}", leg.end);
    leg
}

async fn rendered_once(d: &Daemon) {
    call(d).await;
    assert_eq!(d.requests.load(Ordering::SeqCst), 1);
    let cache = PromptCache::shared(&d.services.config).unwrap();
    for _ in 0..300 {
        if cache.stats().stored == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the prompt was not stored");
}

#[tokio::test]
async fn a_cached_prompt_plays_with_no_engine_request() {
    let d = start().await;
    let first = call(&d).await;
    let cache = PromptCache::shared(&d.services.config).unwrap();
    for _ in 0..300 {
        if cache.stats().stored == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut firsts = Vec::new();
    for _ in 0..5 {
        let again = call(&d).await;
        // 3 s of speech: 150 frames, the same as when it was synthesized.
        assert_eq!(
            again.report.voiced_frames, first.report.voiced_frames,
            "{}",
            again.report
        );
        assert!((149..=151).contains(&again.report.voiced_frames), "{}", again.report);
        // The pacing bound the other end-to-end tests hold (the client shares this process's
        // two cores, so a lone late wake-up of its own is not the server's).
        assert!(again.report.longest_gap_ms < 80.0, "{}", again.report);
        firsts.push(again.report.first_voice_ms.unwrap());
    }
    assert_eq!(
        d.requests.load(Ordering::SeqCst),
        1,
        "cached calls made engine requests"
    );
    assert_eq!(cache.stats().hits, 5);
    firsts.sort_by(f64::total_cmp);
    eprintln!(
        "cached prompt, connect to first voiced frame: median {:.1} ms, max {:.1} ms (synthesized: {:.1} ms)",
        firsts[2],
        firsts[4],
        first.report.first_voice_ms.unwrap()
    );
    // The first voiced frame goes out on the first 20 ms tick after the UUID arrives.
    assert!(firsts[2] < 45.0, "{firsts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_play_a_cached_menu_on_time() {
    let calls: usize = std::env::var("XTTSD_CACHED_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let d = Arc::new(start().await);
    rendered_once(&d).await;
    let underruns = METRICS.underruns.load(Ordering::Relaxed);
    // Calls arrive 10 ms apart (100 a second) and each hears 3 s: all of them play at once
    // for the last second of the ramp.
    let mut legs = Vec::new();
    for _ in 0..calls {
        let d = d.clone();
        legs.push(tokio::spawn(async move { call(&d).await }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut worst_gap: f64 = 0.0;
    let mut worst_jitter: f64 = 0.0;
    let mut firsts = Vec::new();
    let mut first_frames = Vec::new();
    for leg in legs {
        let leg = leg.await.unwrap();
        assert!((149..=151).contains(&leg.report.voiced_frames), "{}", leg.report);
        worst_gap = worst_gap.max(leg.report.longest_gap_ms);
        worst_jitter = worst_jitter.max(leg.report.jitter_p99_ms);
        firsts.push(leg.report.first_voice_ms.unwrap());
        first_frames.push(leg.report.first_frame_ms.unwrap());
    }
    firsts.sort_by(f64::total_cmp);
    first_frames.sort_by(f64::total_cmp);
    eprintln!("first frame (voiced or not) p50 {:.1} ms", first_frames[calls / 2]);
    let late = METRICS.underruns.load(Ordering::Relaxed) - underruns;
    eprintln!(
        "{calls} concurrent cached calls: engine requests {}, late frames {late}, first voice p50 {:.1} ms p99 {:.1} ms, longest gap {worst_gap:.1} ms, jitter p99 {worst_jitter:.1} ms",
        d.requests.load(Ordering::SeqCst) - 1,
        firsts[calls / 2],
        firsts[calls * 99 / 100],
    );
    assert_eq!(
        d.requests.load(Ordering::SeqCst),
        1,
        "no engine request for cached calls"
    );
    assert_eq!(late, 0, "frames were late");
}
