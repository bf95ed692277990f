//! Parity of the GPT, sampling, vocoder and streaming with coqui-tts 0.28.0 goldens.
//!
//! Reads `$XTTSD_FIXTURE` (default `tests/fixtures/tiny`) with `model/` and `golden/` inside, so
//! the same checks run on the tiny committed fixture and on a full-size random checkpoint
//! (`tools/reference/parity --full`). Inputs are the goldens' text tokens and conditioning; every
//! comparison prints its max abs difference and correlation (`--nocapture`).
//!
//! Tolerances (fp32): prefill logits 1e-4; greedy codes identical; latents 1e-4; waveform
//! vocoded from the golden latents 1e-5, from our own latents 1e-3 with correlation >= 0.99999;
//! Reference-mode stream chunks identical lengths and 1e-5.

mod common;

use std::sync::{Mutex, OnceLock};

use common::*;
use tch::{Device, Kind, Tensor};
use xttsd::xtts::hifigan::apply_speed;
use xttsd::xtts::model::{StopReason, Xtts};
use xttsd::xtts::sampling::{process_logits, SamplingParams};
use xttsd::xtts::stream::{StreamMode, StreamOptions, StreamVocoder};
use xttsd::xtts::voice::Voice;

const LOGITS_TOL: f64 = 1e-4;
const LATENTS_TOL: f64 = 1e-4;
const VOCODER_TOL: f64 = 1e-5;
const WAV_TOL: f64 = 1e-3;
const WAV_MIN_CORR: f64 = 0.99999;
const STREAM_TOL: f64 = 1e-5;

/// One model for all tests (the full-size checkpoint takes seconds to load); the lock also
/// keeps the tests from competing for the CPU.
fn with_model<R>(f: impl FnOnce(&Xtts) -> R) -> R {
    static MODEL: OnceLock<Mutex<Xtts>> = OnceLock::new();
    let model = MODEL.get_or_init(|| {
        let threads = std::env::var("XTTSD_THREADS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(1);
        tch::set_num_threads(threads);
        let dir = model_dir();
        Mutex::new(Xtts::load(&dir, Device::Cpu).unwrap_or_else(|e| panic!("loading {}: {e:#}", dir.display())))
    });
    let guard = model.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&guard)
}

struct Case {
    label: String,
    text_tokens: Vec<i64>,
    codes: Vec<i64>,
    latents: Tensor,
    latents_scaled: Option<Tensor>,
    wav: Vec<f32>,
    prefill_logits: Vec<f32>,
    prefill_scores: Vec<f32>,
    repetition_penalty: f64,
    speed: f64,
    voice: Voice,
    min_margin: f64,
    stream_file: Option<String>,
}

fn cases() -> Vec<Case> {
    let golden = golden_dir();
    let meta = read_json(&golden.join("gen.json")).unwrap();
    let list = meta["cases"].as_array().expect("gen.json: 'cases' is a list");
    assert!(!list.is_empty(), "gen.json lists no cases");
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            let file = c["file"].as_str().expect("case has 'file'").to_string();
            let t = read_tensors(&golden.join(&file)).unwrap();
            let get = |name: &str| take(&t, name, &file).unwrap();
            Case {
                label: format!(
                    "case {i} ({}, rp {}, speed {})",
                    c["language"], c["repetition_penalty"], c["speed"]
                ),
                text_tokens: ids(&get("text_tokens")),
                codes: ids(&get("codes")),
                latents: get("latents"),
                latents_scaled: t.get("latents_scaled").map(|x| x.shallow_clone()),
                wav: floats(&get("wav")),
                prefill_logits: floats(&get("prefill_logits")),
                prefill_scores: floats(&get("prefill_scores")),
                repetition_penalty: c["repetition_penalty"].as_f64().expect("repetition_penalty"),
                speed: c["speed"].as_f64().expect("speed"),
                voice: golden_voice(c["voice"].as_str().expect("voice")).unwrap(),
                min_margin: c["min_greedy_margin"].as_f64().unwrap_or(f64::INFINITY),
                stream_file: c["stream_file"].as_str().map(String::from),
            }
        })
        .collect()
}

fn copy_voice(v: &Voice) -> Voice {
    Voice {
        gpt_cond_latent: v.gpt_cond_latent.copy(),
        speaker_embedding: v.speaker_embedding.copy(),
    }
}

#[test]
fn prefill_logits_match() {
    with_model(|m| {
        let _guard = tch::no_grad_guard();
        println!("prefill logits ({})", fixture_dir().display());
        let gpt = m.gpt();
        let start = gpt.config().start_audio_token;
        for case in cases() {
            let prefix = gpt
                .prefix_embeddings(&case.voice.gpt_cond_latent, &case.text_tokens)
                .unwrap();
            let start_emb = gpt
                .audio_embeddings(&Tensor::from_slice(&[start]).view([1, 1]), 0)
                .unwrap();
            let latent = gpt.forward(&Tensor::cat(&[prefix, start_emb], 1)).unwrap().last();
            let logits = gpt.mel_logits(&latent).unwrap().reshape([-1]);
            assert_close(
                &format!("{} logits", case.label),
                &floats(&logits),
                &case.prefill_logits,
                LOGITS_TOL,
                0.999999,
            );
            let params = SamplingParams::greedy(case.repetition_penalty);
            let scores = process_logits(&logits, &[1, start], &params).unwrap();
            assert_close(
                &format!("{} scores", case.label),
                &floats(&scores),
                &case.prefill_scores,
                LOGITS_TOL,
                0.999999,
            );
        }
    });
}

#[test]
fn greedy_codes_latents_and_wav_match() {
    with_model(|m| {
        println!("greedy synthesis ({})", fixture_dir().display());
        for case in cases() {
            let params = SamplingParams::greedy(case.repetition_penalty);
            let out = m
                .synthesize_tokens(&case.text_tokens, &case.voice, &params, case.speed)
                .unwrap();
            if out.codes != case.codes {
                let first = out.codes.iter().zip(&case.codes).position(|(a, b)| a != b);
                panic!(
                    "{}: codes differ (first divergence at {first:?}, lengths {} vs {}, smallest greedy margin {:.2e})",
                    case.label,
                    out.codes.len(),
                    case.codes.len(),
                    case.min_margin
                );
            }
            println!("  {} codes identical: {} codes", case.label, out.codes.len());
            assert_close(
                &format!("{} latents", case.label),
                &floats(&out.latents),
                &floats(&case.latents),
                LATENTS_TOL,
                0.999999,
            );
            // The vocoder alone, on the golden latents.
            let from_golden = m.vocode(&case.latents, &case.voice, case.speed).unwrap();
            assert_close(
                &format!("{} wav (golden latents)", case.label),
                &from_golden,
                &case.wav,
                VOCODER_TOL,
                0.9999999,
            );
            assert_close(
                &format!("{} wav", case.label),
                &out.wav,
                &case.wav,
                WAV_TOL,
                WAV_MIN_CORR,
            );
            if let Some(scaled) = &case.latents_scaled {
                let ours = apply_speed(&case.latents, case.speed).unwrap();
                assert_eq!(ours.size(), scaled.size(), "{}: speed-scaled latents shape", case.label);
                assert_close(
                    &format!("{} speed-scaled latents", case.label),
                    &floats(&ours),
                    &floats(scaled),
                    1e-6,
                    0.9999999,
                );
            }
        }
    });
}

#[test]
fn kv_cache_latents_equal_a_full_pass() {
    with_model(|m| {
        println!("KV cache vs full pass ({})", fixture_dir().display());
        for case in cases().into_iter().take(2) {
            let params = SamplingParams::greedy(case.repetition_penalty);
            let generation = m
                .generate(&case.text_tokens, &case.voice, &params, &mut |_, _| true)
                .unwrap();
            let full = m
                .latents_full_pass(&case.text_tokens, &case.voice, &generation.codes)
                .unwrap();
            assert_eq!(full.size(), generation.latents.size());
            assert_close(
                &format!("{} cached vs uncached", case.label),
                &floats(&generation.latents),
                &floats(&full),
                LATENTS_TOL,
                0.999999,
            );
        }
    });
}

/// The reference chunks for the golden latents: each chunk re-vocodes the whole prefix.
#[test]
fn reference_stream_chunks_match() {
    with_model(|m| {
        println!("reference streaming ({})", fixture_dir().display());
        let mut checked = 0;
        for case in cases() {
            let Some(file) = &case.stream_file else { continue };
            let golden = read_tensors(&golden_dir().join(file)).unwrap();
            let want: Vec<Vec<f32>> = (0..)
                .map_while(|i| golden.get(&format!("chunk_{i}")).map(floats))
                .collect();
            let opts = StreamOptions {
                speed: case.speed,
                ..StreamOptions::reference()
            };
            let mut vocoder = StreamVocoder::new(m.hifigan(), &case.voice.speaker_embedding, &opts).unwrap();
            let mut got = Vec::new();
            let n = case.latents.size()[1];
            for i in 0..n {
                if let Some(chunk) = vocoder.push(&case.latents.get(0).get(i)).unwrap() {
                    got.push(chunk);
                }
            }
            got.push(vocoder.finish().unwrap());
            let lengths = |c: &[Vec<f32>]| c.iter().map(Vec::len).collect::<Vec<_>>();
            assert_eq!(lengths(&got), lengths(&want), "{}: chunk lengths", case.label);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_close(&format!("{} chunk_{i}", case.label), g, w, STREAM_TOL, 0.9999999);
            }
            checked += 1;
        }
        assert!(checked > 0, "no case has streaming goldens");
    });
}

/// Streaming while generating, greedy, Reference mode: the chunks of the golden stream.
#[test]
fn stream_tokens_reproduces_reference_chunks() {
    with_model(|m| {
        println!("stream_tokens ({})", fixture_dir().display());
        let case = cases()
            .into_iter()
            .find(|c| c.stream_file.is_some())
            .expect("a streamed case");
        let golden = read_tensors(&golden_dir().join(case.stream_file.as_ref().unwrap())).unwrap();
        let want: Vec<Vec<f32>> = (0..)
            .map_while(|i| golden.get(&format!("chunk_{i}")).map(floats))
            .collect();
        let mut got = Vec::new();
        let params = SamplingParams::greedy(case.repetition_penalty);
        let stats = m
            .stream_tokens(
                &case.text_tokens,
                &case.voice,
                &params,
                &StreamOptions::reference(),
                &mut |c| {
                    got.push(c);
                    true
                },
            )
            .unwrap();
        assert_eq!(got.len(), want.len(), "chunk count");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), w.len(), "chunk {i} length");
            assert_close(&format!("streamed chunk_{i}"), g, w, WAV_TOL, WAV_MIN_CORR);
        }
        assert_eq!(stats.tokens, case.codes.len());
        assert_eq!(stats.chunks, got.len());
        assert_eq!(stats.samples, got.iter().map(Vec::len).sum::<usize>());
        assert_eq!(stats.vocoder_call_ms.len(), want.len());
        assert_eq!(stats.stop, Some(StopReason::StopToken));
        assert!(stats.first_chunk_ms.is_some());
        println!(
            "  first chunk {:.1} ms, prefill {:.1} ms, {:.2} ms/token, vocoder {:.1} ms in {} calls, RTF {:.3}",
            stats.first_chunk_ms.unwrap(),
            stats.prefill_ms,
            stats.ms_per_token(),
            stats.vocoder_ms,
            stats.vocoder_call_ms.len(),
            stats.real_time_factor()
        );
    });
}

#[test]
fn seeded_sampling_repeats_and_seeds_differ() {
    with_model(|m| {
        let case = cases().remove(0);
        let run = |seed| {
            let params = SamplingParams {
                seed: Some(seed),
                ..SamplingParams::default()
            };
            m.generate(&case.text_tokens, &case.voice, &params, &mut |_, _| true)
                .unwrap()
                .codes
        };
        let (a, b, c) = (run(7), run(7), run(8));
        println!(
            "seeded sampling: seed 7 -> {} codes twice, seed 8 -> {} codes",
            a.len(),
            c.len()
        );
        assert_eq!(a, b, "same seed, different codes");
        assert_ne!(a, c, "different seeds, same codes");
    });
}

/// Reference and Windowed streaming against a one-shot render: sample counts, max abs
/// difference, and vocoder cost per chunk. The utterance is kept short enough for a quick test
/// (Reference mode is quadratic); `examples/gen_timing.rs` measures the 602-code maximum.
#[test]
fn streaming_modes_against_one_shot() {
    with_model(|m| {
        let _guard = tch::no_grad_guard();
        println!("streaming modes vs one-shot ({})", fixture_dir().display());
        let case = cases().remove(0);
        let latents = repeat_latents(&case.latents, 120);
        for (speed, opts) in [
            (1.0, StreamOptions::reference()),
            (1.0, StreamOptions::windowed()),
            (1.3, StreamOptions::windowed()),
        ] {
            let one_shot = m.vocode(&latents, &case.voice, speed).unwrap();
            let opts = StreamOptions { speed, ..opts };
            let mut vocoder = StreamVocoder::new(m.hifigan(), &case.voice.speaker_embedding, &opts).unwrap();
            let mut audio = Vec::new();
            let mut chunk_ends = Vec::new();
            for i in 0..latents.size()[1] {
                if let Some(c) = vocoder.push(&latents.get(0).get(i)).unwrap() {
                    audio.extend(c);
                    chunk_ends.push(i as usize + 1);
                }
            }
            println!("  {:?} speed {speed}: chunks end at tokens {chunk_ends:?}", opts.mode);
            check_chunk_schedule(&opts, &chunk_ends);
            audio.extend(vocoder.finish().unwrap());
            let stats = vocoder.stats();
            println!(
                "  {:?} speed {speed}: {} vocoder calls, {:.1} ms total, first {:.1} / last {:.1} ms, frames per call {:?}",
                opts.mode,
                stats.call_ms.len(),
                stats.total_ms(),
                stats.call_ms[0],
                stats.call_ms[stats.call_ms.len() - 1],
                stats.call_frames
            );
            assert_eq!(audio.len(), one_shot.len(), "{:?}: total samples", opts.mode);
            let d = compare(&format!("{:?} speed {speed} vs one-shot", opts.mode), &audio, &one_shot);
            if opts.mode == StreamMode::Windowed {
                assert!(
                    d.max_abs <= 1e-4,
                    "windowed stream differs from one-shot by {:.3e}",
                    d.max_abs
                );
                // Constant cost: no call renders more than context + chunk + held-back latents.
                let interp = m.hifigan().interpolation();
                let stretched = ((opts.left_context + opts.chunk_tokens + opts.holdback) as f64 / speed).ceil() as i64;
                let bound = interp.frames(stretched + 1);
                let worst = *stats.call_frames.iter().max().unwrap();
                assert!(worst <= bound, "a windowed call rendered {worst} frames > {bound}");
            }
        }
    });
}

/// Reference: fixed chunks. Windowed: the first chunk, then chunks that grow, each no longer
/// than the audio already emitted (floored at the held-back latents), up to `chunk_tokens`.
fn check_chunk_schedule(opts: &StreamOptions, ends: &[usize]) {
    assert_eq!(ends[0], opts.first_chunk_tokens, "first chunk");
    let sizes: Vec<usize> = ends.windows(2).map(|w| w[1] - w[0]).collect();
    match opts.mode {
        StreamMode::Reference => assert!(sizes.iter().all(|&k| k == opts.chunk_tokens), "{sizes:?}"),
        StreamMode::Windowed => {
            for (i, &k) in sizes.iter().enumerate() {
                let emitted = ends[i] - opts.holdback;
                assert!(
                    k <= emitted.max(opts.holdback),
                    "chunk {k} after {emitted} emitted: {sizes:?}"
                );
                assert!(k <= opts.chunk_tokens, "{sizes:?}");
            }
            assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "chunks shrink: {sizes:?}");
            assert_eq!(
                sizes.last(),
                Some(&opts.chunk_tokens),
                "never reached full chunks: {sizes:?}"
            );
        }
    }
}

/// `latents` [1, N, D] repeated along time and cut to `n`.
fn repeat_latents(latents: &Tensor, n: i64) -> Tensor {
    let have = latents.size()[1];
    let copies: Vec<Tensor> = (0..(n + have - 1) / have).map(|_| latents.shallow_clone()).collect();
    Tensor::cat(&copies, 1).narrow(1, 0, n)
}

#[test]
fn bad_input_is_rejected_with_a_reason() {
    let empty = tempfile::tempdir().unwrap();
    let err = Xtts::load(empty.path(), Device::Cpu)
        .err()
        .expect("empty dir loads")
        .to_string();
    assert!(err.contains("config.json"), "{err}");
    with_model(|m| {
        let case = cases().remove(0);
        let params = SamplingParams::greedy(10.0);
        let limit = m.gpt().config().max_text_tokens as usize;
        let long = vec![case.text_tokens[1]; limit];
        let err = m
            .generate(&long, &case.voice, &params, &mut |_, _| true)
            .expect_err("over-long text accepted")
            .to_string();
        assert!(err.contains("at most"), "{err}");
        let wrong = Voice {
            gpt_cond_latent: case.voice.gpt_cond_latent.copy(),
            speaker_embedding: Tensor::zeros([1, 3, 1], (Kind::Float, Device::Cpu)),
        };
        assert!(m.synthesize_tokens(&case.text_tokens, &wrong, &params, 1.0).is_err());
        let wrong = Voice {
            gpt_cond_latent: Tensor::zeros([1, 32, 3], (Kind::Float, Device::Cpu)),
            speaker_embedding: case.voice.speaker_embedding.copy(),
        };
        assert!(m
            .generate(&case.text_tokens, &wrong, &params, &mut |_, _| true)
            .is_err());
        // A listener that stops after the first code ends generation there.
        let voice = copy_voice(&case.voice);
        let g = m
            .generate(&case.text_tokens, &voice, &params, &mut |_, _| false)
            .unwrap();
        assert_eq!((g.codes.len(), g.stop), (1, StopReason::Cancelled));
        assert!(m.vocode(&case.latents, &case.voice, 0.0).is_err());
    });
}
