//! Continuous batching on the tiny model: padding/masking correctness (a generation yields the
//! same greedy codes in a batch as alone, joining and leaving at any step), slot accounting,
//! cancellation and admission control through the engine.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use tch::{Device, Tensor};
use xttsd::engine::start::{PlannedWindow, StartProfile};
use xttsd::engine::xtts_backend::{XttsBackend, XttsBackendConfig};
use xttsd::engine::{Engine, EngineError, Fault, SpeechEvent, SpeechOptions, SpeechRequest, METRICS};
use xttsd::xtts::batch::{BatchDecoder, RowOptions};
use xttsd::xtts::model::{StopReason, Xtts};
use xttsd::xtts::sampling::SamplingParams;
use xttsd::xtts::stream::StreamOptions;
use xttsd::xtts::voice::Voice;

fn tiny_model() -> Xtts {
    tch::set_num_threads(1);
    Xtts::load(&model_dir(), Device::Cpu).expect("tiny model loads")
}

fn greedy() -> RowOptions {
    RowOptions {
        params: SamplingParams::greedy(10.0),
        forced_tokens: None,
        max_codes: None,
    }
}

/// Runs `texts` through one decoder: text `i` joins after `joins[i]` steps of the others
/// (texts joining at the same step are prefilled together). Returns every text's codes.
fn decode_batched(model: &Xtts, voice: &Voice, texts: &[Vec<i64>], joins: &[usize], max_batch: usize) -> Vec<Vec<i64>> {
    let mut decoder = BatchDecoder::new(model.gpt(), max_batch).unwrap();
    let mut codes: Vec<Vec<i64>> = vec![Vec::new(); texts.len()];
    let mut slot_of: Vec<Option<usize>> = vec![None; texts.len()];
    let mut admitted = vec![false; texts.len()];
    let mut step = 0;
    loop {
        let joining: Vec<usize> = (0..texts.len()).filter(|&i| !admitted[i] && joins[i] <= step).collect();
        let prefixes: Vec<Tensor> = joining
            .iter()
            .map(|&i| {
                model
                    .gpt()
                    .prefix_embeddings(&voice.gpt_cond_latent, &texts[i])
                    .unwrap()
            })
            .collect();
        let opts = greedy();
        let requests: Vec<(&Tensor, &RowOptions)> = prefixes.iter().map(|p| (p, &opts)).collect();
        for (&i, token) in joining.iter().zip(decoder.admit_many(&requests)) {
            let token = token.unwrap();
            admitted[i] = true;
            codes[i].push(token.code);
            slot_of[i] = token.finished.is_none().then_some(token.slot);
        }
        let slots: Vec<usize> = slot_of.iter().flatten().copied().collect();
        if slots.is_empty() && admitted.iter().all(|&a| a) {
            return codes;
        }
        for token in decoder.step(&slots).unwrap() {
            let i = slot_of.iter().position(|s| *s == Some(token.slot)).unwrap();
            codes[i].push(token.code);
            if token.finished.is_some() {
                slot_of[i] = None;
            }
        }
        step += 1;
    }
}

fn texts() -> Vec<Vec<i64>> {
    vec![
        vec![5, 17, 42, 99, 3, 120, 7],
        vec![250, 33],
        vec![61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73],
    ]
}

#[test]
fn batch_of_one_matches_plain_generation() {
    let model = tiny_model();
    let voice = golden_voice("single").unwrap();
    for text in texts() {
        let plain = model
            .generate(&text, &voice, &SamplingParams::greedy(10.0), &mut |_, _| true)
            .unwrap()
            .codes;
        let alone = decode_batched(&model, &voice, std::slice::from_ref(&text), &[0], 1);
        assert!(plain.len() > 1, "the check needs more than one code");
        assert_eq!(alone[0], plain, "text {text:?}");
    }
}

#[test]
fn codes_in_a_batch_equal_codes_alone() {
    let model = tiny_model();
    let voice = golden_voice("single").unwrap();
    let texts = texts();
    let alone: Vec<Vec<i64>> = texts
        .iter()
        .map(|t| decode_batched(&model, &voice, std::slice::from_ref(t), &[0], 1).remove(0))
        .collect();
    // Different prefix lengths, joining at different steps (mid-generation of the others).
    let together = decode_batched(&model, &voice, &texts, &[0, 3, 11], 4);
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a, b, "text {i} decoded differently in a batch");
    }
    // Prefilled together: three prefix lengths padded into one prefill.
    let prefilled_together = decode_batched(&model, &voice, &texts, &[0, 0, 0], 3);
    for (i, (a, b)) in alone.iter().zip(&prefilled_together).enumerate() {
        assert_eq!(a, b, "text {i} decoded differently after a batched prefill");
    }
    // The rows must really have overlapped for the check to mean anything.
    assert!(alone.iter().all(|c| c.len() > 11), "generations too short to overlap");
}

/// In a batch of admissions, a request that cannot start fails alone.
#[test]
fn batched_admission_fails_per_request() {
    let model = tiny_model();
    let voice = golden_voice("single").unwrap();
    let mut decoder = BatchDecoder::new(model.gpt(), 2).unwrap();
    let short = model.gpt().prefix_embeddings(&voice.gpt_cond_latent, &[5, 6]).unwrap();
    let long = model
        .gpt()
        .prefix_embeddings(&voice.gpt_cond_latent, &[7, 8, 9, 10, 11])
        .unwrap();
    let flat = Tensor::zeros([4], (tch::Kind::Float, Device::Cpu));
    let opts = greedy();
    let results = decoder.admit_many(&[(&flat, &opts), (&short, &opts), (&long, &opts), (&short, &opts)]);
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| format!("{e:#}")))
        .collect();
    assert!(
        results[0].is_err() && errors[0].contains("prefix must be [1, P, D]"),
        "{errors:?}"
    );
    assert!(results[1].is_ok() && results[2].is_ok());
    assert!(errors[1].contains("no free decoding slot"), "{errors:?}");
    assert_eq!(decoder.free_slots(), 0);
    // The two that started decode as they would alone.
    let alone = |prefix: &Tensor| {
        let mut d = BatchDecoder::new(model.gpt(), 1).unwrap();
        d.admit(prefix, &opts).unwrap().code
    };
    assert_eq!(results[1].as_ref().unwrap().code, alone(&short));
    assert_eq!(results[2].as_ref().unwrap().code, alone(&long));
}

#[test]
fn slots_are_bounded_and_freed() {
    let model = tiny_model();
    let voice = golden_voice("single").unwrap();
    let mut decoder = BatchDecoder::new(model.gpt(), 2).unwrap();
    let prefix = model.gpt().prefix_embeddings(&voice.gpt_cond_latent, &[5, 6]).unwrap();
    let long = RowOptions {
        params: SamplingParams::greedy(10.0),
        forced_tokens: Some(50),
        max_codes: None,
    };
    let a = decoder.admit(&prefix, &long).unwrap();
    let b = decoder.admit(&prefix, &long).unwrap();
    assert_ne!(a.slot, b.slot);
    assert_eq!(decoder.free_slots(), 0);
    let err = decoder.admit(&prefix, &long).unwrap_err();
    assert!(format!("{err:#}").contains("no free decoding slot"), "{err:#}");
    decoder.step(&[a.slot, b.slot]).unwrap();
    decoder.release(a.slot);
    assert_eq!(decoder.active(), vec![b.slot]);
    assert!(decoder.step(&[a.slot]).is_err(), "a released slot must not step");
    let c = decoder.admit(&prefix, &long).unwrap();
    assert_eq!(c.slot, a.slot, "the freed slot is reused");
    // The reused slot starts from scratch: same codes as a fresh decoder gives.
    let mut fresh = BatchDecoder::new(model.gpt(), 1).unwrap();
    let f = fresh.admit(&prefix, &long).unwrap();
    assert_eq!(c.code, f.code);
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for i in 0..10 {
        // Both orders: adjacent slots are read as a view, others gathered.
        let order = if i % 2 == 0 { [c.slot, b.slot] } else { [b.slot, c.slot] };
        let tokens = decoder.step(&order).unwrap();
        got.push(tokens.iter().find(|t| t.slot == c.slot).unwrap().code);
        want.push(fresh.step(&[f.slot]).unwrap()[0].code);
    }
    assert_eq!(got, want);
}

#[test]
fn forced_tokens_fix_the_length() {
    let model = tiny_model();
    let voice = golden_voice("single").unwrap();
    let stop = model.gpt().config().stop_audio_token;
    let mut decoder = BatchDecoder::new(model.gpt(), 1).unwrap();
    let prefix = model
        .gpt()
        .prefix_embeddings(&voice.gpt_cond_latent, &[9, 8, 7])
        .unwrap();
    let opts = RowOptions {
        params: SamplingParams {
            seed: Some(3),
            ..SamplingParams::default()
        },
        forced_tokens: Some(30),
        max_codes: None,
    };
    let mut codes = vec![decoder.admit(&prefix, &opts).unwrap()];
    while codes.last().unwrap().finished.is_none() {
        let slot = codes[0].slot;
        codes.extend(decoder.step(&[slot]).unwrap());
    }
    assert_eq!(codes.len(), 30);
    assert!(
        codes[..29].iter().all(|t| t.code != stop),
        "stop code before the forced length"
    );
    assert_eq!(codes[29].code, stop);
    assert_eq!(decoder.free_slots(), 1);
}

/// Decodes one row from `prefix` to its end; its tokens.
fn decode_alone(model: &Xtts, prefix: &Tensor, opts: &RowOptions) -> Vec<xttsd::xtts::batch::Token> {
    let mut decoder = BatchDecoder::new(model.gpt(), 1).unwrap();
    let mut tokens = vec![decoder.admit(prefix, opts).unwrap()];
    while tokens.last().unwrap().finished.is_none() {
        let slot = tokens[0].slot;
        tokens.extend(decoder.step(&[slot]).unwrap());
    }
    assert_eq!(decoder.free_slots(), 1);
    tokens
}

#[test]
fn a_row_ends_at_its_budget_of_codes() {
    let model = tiny_model();
    let voice = golden_voice("single").unwrap();
    let stop = model.gpt().config().stop_audio_token;
    let prefix = model
        .gpt()
        .prefix_embeddings(&voice.gpt_cond_latent, &[9, 8, 7])
        .unwrap();
    let free = decode_alone(&model, &prefix, &greedy());
    assert!(free.len() > 8, "the row stops by itself after {} codes", free.len());
    let budgeted = decode_alone(
        &model,
        &prefix,
        &RowOptions {
            max_codes: Some(5),
            ..greedy()
        },
    );
    assert_eq!(budgeted.len(), 5);
    let codes = |t: &[xttsd::xtts::batch::Token]| t.iter().map(|t| t.code).collect::<Vec<_>>();
    assert_eq!(
        codes(&budgeted[..4]),
        codes(&free[..4]),
        "the budget changes nothing before it"
    );
    // Ended as if the stop code came.
    assert_eq!(budgeted[4].code, stop);
    assert_eq!(budgeted[4].finished, Some(StopReason::StopToken));
}

#[test]
fn bad_input_is_refused() {
    let model = tiny_model();
    assert!(BatchDecoder::new(model.gpt(), 0).is_err());
    let mut decoder = BatchDecoder::new(model.gpt(), 1).unwrap();
    let dim = model.gpt().config().dim;
    let huge = Tensor::zeros([1, decoder.cache().capacity(), dim], (tch::Kind::Float, Device::Cpu));
    let err = decoder.admit(&huge, &greedy()).unwrap_err();
    assert!(format!("{err:#}").contains("no room"), "{err:#}");
    assert!(decoder.step(&[0]).is_err(), "stepping an empty slot");
    assert!(decoder.step(&[5]).is_err(), "stepping a slot that does not exist");
    assert_eq!(decoder.free_slots(), 1);
}

/// The engine and the speakers folder it reads (removed when dropped).
/// An engine that closes when its test ends and waits for its threads: a test binary must not
/// exit while an engine thread is inside libtorch (libtorch's teardown then crashes the exit).
struct TestEngine(Engine);

impl std::ops::Deref for TestEngine {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.0
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        self.0.close(Duration::from_secs(10));
    }
}

fn engine(max_batch: usize, queue_limit: usize, forced_tokens: usize) -> (TestEngine, tempfile::TempDir) {
    engine_with(max_batch, queue_limit, forced_tokens, |_| {})
}

fn engine_with(
    max_batch: usize,
    queue_limit: usize,
    forced_tokens: usize,
    adjust: impl FnOnce(&mut XttsBackendConfig),
) -> (TestEngine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("tests/fixtures/ref_24k.wav", dir.path().join("default.wav")).unwrap();
    let mut cfg = XttsBackendConfig {
        model_dir: model_dir(),
        speakers_dir: dir.path().to_path_buf(),
        device: xttsd::config::DeviceSetting::Cpu,
        max_batch,
        forced_tokens: Some(forced_tokens),
        ..XttsBackendConfig::default()
    };
    cfg.stream.first_chunk_tokens = 6;
    // Chunks far apart: a hang-up must be noticed between steps, not only when a chunk bounces.
    cfg.stream.chunk_tokens = 150;
    adjust(&mut cfg);
    let engine = Engine::spawn(
        move || {
            tch::set_num_threads(1);
            let mut synth = XttsBackend::load(&cfg)?;
            synth.resolve_voice(&["default".into()])?;
            let validator = synth.validator();
            Ok((synth, validator))
        },
        queue_limit,
    )
    .unwrap();
    (TestEngine(engine), dir)
}

fn request(text: &str) -> SpeechRequest {
    SpeechRequest {
        text: text.into(),
        lang: "en".into(),
        voice: "default".into(),
        options: SpeechOptions {
            seed: Some(1),
            ..SpeechOptions::default()
        },
    }
}

const LONG: &str = "This is a sentence that takes a while to say.";

/// The token counter is process-wide: tests that run an engine take turns.
static ONE_ENGINE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_up_frees_the_slot_and_admission_is_bounded() {
    const FORCED: u64 = 400;
    let _turn = ONE_ENGINE_AT_A_TIME.lock().await;
    let (engine, _speakers) = engine(1, 1, FORCED as usize);
    // The counter is process-wide: count from here (other engine tests ran before).
    let start = METRICS.tokens.load(Ordering::Relaxed);
    let mut a = engine.speak(request(LONG)).unwrap();
    match tokio::time::timeout(Duration::from_secs(30), a.next()).await.unwrap() {
        Some(SpeechEvent::Audio(samples)) => assert!(!samples.is_empty()),
        other => panic!("expected audio first, got {other:?}"),
    }
    // One speaking (the only slot), one queued (the whole queue): the next is refused.
    let b = engine.speak(request("Waiting in the queue.")).unwrap();
    match engine.speak(request("One too many.")) {
        Err(EngineError::Busy(why)) => assert!(why.contains("1 requests are already queued"), "{why}"),
        Err(e) => panic!("expected Busy, got {e}"),
        Ok(_) => panic!("a request beyond the slot and queue was accepted"),
    }
    let refused = engine
        .speak_within(request("Still too many."), Duration::from_millis(50))
        .await;
    assert!(
        matches!(refused, Err(EngineError::Busy(_))),
        "waited request not refused"
    );
    drop(b);

    // Hang up A mid-speech; C must be admitted into the freed slot and run to its end.
    let at_hangup = METRICS.tokens.load(Ordering::Relaxed);
    drop(a);
    // B (hung up while queued) holds the queue's place until the worker skips it: wait for room.
    let mut c = engine
        .speak_within(request("Short one."), Duration::from_secs(10))
        .await
        .unwrap();
    let mut audio = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(60), c.next()).await.unwrap() {
            Some(SpeechEvent::Audio(s)) => audio += s.len(),
            Some(SpeechEvent::Done) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(audio > 0);
    let after = METRICS.tokens.load(Ordering::Relaxed);
    assert!(
        at_hangup - start + 10 < FORCED,
        "A was nearly done at hang-up ({} tokens); the check says nothing",
        at_hangup - start
    );
    // C's own tokens, plus at most the step A was in when it hung up.
    assert!(
        after - at_hangup <= FORCED + 2,
        "A kept decoding after hanging up: {} tokens since",
        after - at_hangup
    );
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn assert_same_audio(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let d = max_abs_diff(a, b);
    assert!(d < 1e-4, "{what}: audio differs by {d}");
}

/// Collects a request's audio to its end.
async fn speak_all(engine: &Engine, req: SpeechRequest) -> Vec<f32> {
    let mut speech = engine.speak(req).unwrap();
    let mut audio = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(60), speech.next())
            .await
            .unwrap()
        {
            Some(SpeechEvent::Audio(s)) => audio.extend(s),
            Some(SpeechEvent::Done) => return audio,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_options_apply_and_bad_ones_are_refused() {
    let _turn = ONE_ENGINE_AT_A_TIME.lock().await;
    let (engine, _speakers) = engine(2, 4, 40);
    let with = |options: SpeechOptions| SpeechRequest {
        options,
        ..request("Options apply per request.")
    };
    let seeded = |seed, speed| SpeechOptions {
        seed: Some(seed),
        speed,
        ..SpeechOptions::default()
    };
    let normal = speak_all(&engine, with(seeded(5, None))).await;
    let again = speak_all(&engine, with(seeded(5, None))).await;
    // Chunk boundaries follow the vocoder's timing; the windowed render does not depend on them
    // beyond float rounding.
    assert_same_audio(&normal, &again, "the same seed");
    // 40 codes either way: twice the speed is half the audio (within a vocoder frame per seam).
    let fast = speak_all(&engine, with(seeded(5, Some(2.0)))).await;
    let ratio = fast.len() as f64 / normal.len() as f64;
    assert!(
        (0.45..0.55).contains(&ratio),
        "speed 2.0 gave {} vs {} samples",
        fast.len(),
        normal.len()
    );
    // Greedy ignores the seed.
    let greedy = |seed| SpeechOptions {
        seed: Some(seed),
        greedy: Some(true),
        ..SpeechOptions::default()
    };
    let g1 = speak_all(&engine, with(greedy(1))).await;
    let g2 = speak_all(&engine, with(greedy(2))).await;
    assert_same_audio(&g1, &g2, "greedy with two seeds");
    let other = speak_all(&engine, with(seeded(6, None))).await;
    assert!(
        max_abs_diff(&normal, &other) > 1e-2,
        "seeds 5 and 6 gave the same audio"
    );

    for (bad, reason) in [
        (seeded(1, Some(3.0)), "speed must be between"),
        (
            SpeechOptions {
                top_p: Some(1.5),
                ..SpeechOptions::default()
            },
            "top_p",
        ),
        (
            SpeechOptions {
                temperature: Some(0.0),
                ..SpeechOptions::default()
            },
            "temperature",
        ),
    ] {
        match engine.speak(with(bad)) {
            Err(EngineError::Invalid(e)) => assert!(e.contains(reason), "{e}"),
            Err(e) => panic!("expected Invalid, got {e}"),
            Ok(_) => panic!("bad options accepted ({reason})"),
        }
    }
}

/// A sentence decodes at most its budget of codes; the reference stream mode decodes as the
/// reference does, to the stop code or the model's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentences_stop_at_their_budget_but_not_in_reference_mode() {
    let _turn = ONE_ENGINE_AT_A_TIME.lock().await;
    let text = "Hi.";
    let cleaned = xttsd::xtts::text::clean(text, "en").unwrap();
    let budget = xttsd::endings::sentence_budget(text, &cleaned, "en") as u64;
    let codes = |reference: bool| async move {
        let (engine, _speakers) = engine_with(1, 4, 1, |cfg| {
            cfg.forced_tokens = None;
            if reference {
                cfg.stream = StreamOptions::reference();
            }
        });
        // Greedy: the tiny model runs on past the budget (72 codes for this text).
        let mut req = request(text);
        req.options.greedy = Some(true);
        let start = METRICS.tokens.load(Ordering::Relaxed);
        assert!(!speak_all(&engine, req).await.is_empty());
        METRICS.tokens.load(Ordering::Relaxed) - start
    };
    let reference = codes(true).await;
    assert!(
        reference > budget,
        "the model stops by itself within the budget ({reference} codes, budget {budget}): the check says nothing"
    );
    assert_eq!(codes(false).await, budget);
}

/// A panic in the middle of a batched step stops the engine: the requests in it end, later
/// ones are refused as stopped, and the heartbeat says the engine is dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_mid_batch_stops_the_engine_visibly() {
    let _turn = ONE_ENGINE_AT_A_TIME.lock().await;
    // No start check: both requests decode together, so the step that panics holds both.
    let (engine, _speakers) = engine_with(2, 4, 40, |cfg| {
        cfg.fault = Some(Fault::PanicStep);
        cfg.start_profile = Some(StartProfile::default());
    });
    assert!(engine.is_alive() && engine.heartbeat().alive);
    let mut a = engine.speak(request(LONG)).unwrap();
    let mut b = engine.speak(request(LONG)).unwrap();
    for speech in [&mut a, &mut b] {
        loop {
            match tokio::time::timeout(Duration::from_secs(60), speech.next())
                .await
                .unwrap()
            {
                Some(SpeechEvent::Audio(_)) => continue,
                Some(SpeechEvent::Done) => panic!("a request in the failed batch finished"),
                Some(SpeechEvent::Failed(_)) | None => break,
            }
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while engine.is_alive() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!engine.heartbeat().alive, "the engine still says it is alive");
    assert!(matches!(engine.speak(request("After.")), Err(EngineError::Stopped)));
}

/// A request that cannot be admitted within `admit_within` is refused as busy, with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_too_long_is_refused_busy() {
    let _turn = ONE_ENGINE_AT_A_TIME.lock().await;
    let (engine, _speakers) = engine_with(1, 4, 400, |cfg| cfg.admit_within = Duration::from_millis(200));
    let mut a = engine.speak(request(LONG)).unwrap();
    match tokio::time::timeout(Duration::from_secs(30), a.next()).await.unwrap() {
        Some(SpeechEvent::Audio(_)) => {}
        other => panic!("expected audio first, got {other:?}"),
    }
    let mut b = engine.speak(request("Waiting.")).unwrap();
    match tokio::time::timeout(Duration::from_secs(10), b.next()).await.unwrap() {
        Some(SpeechEvent::Failed(why)) => assert!(why.contains("engine busy"), "{why}"),
        other => {
            let mut a_events = Vec::new();
            while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), a.next()).await {
                a_events.push(match e {
                    SpeechEvent::Audio(s) => format!("audio {}", s.len()),
                    other => format!("{other:?}"),
                });
            }
            panic!(
                "expected a busy refusal, got {:?}; A then: {a_events:?}",
                other.map(|_| ())
            );
        }
    }
    drop(a);
}

/// Calls starting together must not outrun the vocoder. Given a start whose windows take the
/// vocoder 10 s each (it cannot serve two calls), a second call waits until the first one's
/// start is over (here: its speech), then speaks; past `admit_within` it is refused busy instead, and the first
/// call is untouched either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_starts_only_when_the_vocoder_keeps_every_starting_call_fed() {
    let _turn = ONE_ENGINE_AT_A_TIME.lock().await;
    // A (18 s of speech) stays in its start until it is over. The last window is long and
    // cheap, so that admission (which counts the start's cost per second of audio) lets B in
    // and the start check is what holds it.
    let window = |codes, render_s, audio_s| PlannedWindow {
        codes,
        frames: 40,
        render_s,
        audio_s,
    };
    let slow_start = StartProfile {
        windows: vec![
            window(6, 10.0, 5.0),
            window(11, 10.0, 5.0),
            window(17, 10.0, 5.0),
            window(29, 0.01, 1000.0),
        ],
        ..StartProfile::default()
    };
    for (admit_within, refused) in [(Duration::from_millis(300), true), (Duration::from_secs(60), false)] {
        let profile = slow_start.clone();
        let (engine, _speakers) = engine_with(2, 4, 400, move |cfg| {
            cfg.start_profile = Some(profile);
            cfg.admit_within = admit_within;
        });
        let held_before = METRICS.starts_held.load(Ordering::Relaxed);
        let mut a = engine.speak(request(LONG)).unwrap();
        // B asks while A waits for its first audio: both are starting.
        let mut b = engine.speak(request("Waiting.")).unwrap();
        let first = tokio::time::timeout(Duration::from_secs(30), a.next()).await.unwrap();
        assert!(matches!(first, Some(SpeechEvent::Audio(_))), "A spoke first");
        let b_first = tokio::time::timeout(Duration::from_secs(60), b.next()).await.unwrap();
        assert!(
            METRICS.starts_held.load(Ordering::Relaxed) > held_before,
            "B's start was not held"
        );
        if refused {
            match b_first {
                Some(SpeechEvent::Failed(why)) => assert!(why.contains("engine busy"), "{why}"),
                other => panic!("expected B refused busy, got {:?}", other.map(|_| ())),
            }
        } else {
            assert!(
                matches!(b_first, Some(SpeechEvent::Audio(_))),
                "B spoke once A's start was over"
            );
        }
        let mut a_done = false;
        while let Some(e) = tokio::time::timeout(Duration::from_secs(60), a.next()).await.unwrap() {
            match e {
                SpeechEvent::Audio(_) => {}
                SpeechEvent::Done => {
                    a_done = true;
                    break;
                }
                other => panic!("A: {other:?}"),
            }
        }
        assert!(a_done, "A finished");
    }
}

/// A listener's next speech, asked while its current one plays, goes ahead of new calls and
/// past the load check: with the engine full (a load limit only one call fits), the new call
/// waits and is refused busy, the continuation speaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_next_speech_goes_ahead_of_new_calls() {
    let _turn = ONE_ENGINE_AT_A_TIME.lock().await;
    let (engine, _speakers) = engine_with(4, 8, 400, |cfg| {
        cfg.max_load = 1e-9;
        cfg.admit_within = Duration::from_millis(500);
    });
    let mut a = engine.speak(request(LONG)).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), a.next()).await.unwrap();
    assert!(matches!(first, Some(SpeechEvent::Audio(_))), "A spoke first");
    // B, a new call, asks first; then A's next speech, due in a second.
    let mut b = engine.speak(request("A new caller.")).unwrap();
    let mut next = request("And then this.");
    next.options.plays_in = Duration::from_secs(1);
    let mut a_next = engine.speak(next).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), a_next.next())
        .await
        .unwrap();
    assert!(
        matches!(got, Some(SpeechEvent::Audio(_))),
        "the continuation waited: {:?}",
        got.map(|_| ())
    );
    match tokio::time::timeout(Duration::from_secs(30), b.next()).await.unwrap() {
        Some(SpeechEvent::Failed(why)) => assert!(why.contains("engine busy"), "{why}"),
        other => panic!("expected the new call refused busy, got {:?}", other.map(|_| ())),
    }
    drop(a);
}
