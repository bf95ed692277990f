//! Timing of generation and streaming for the model at `$XTTSD_FIXTURE` (default
//! `tests/fixtures/tiny`; `model/` and `golden/` inside).
//!
//!     cargo run --release --example gen_timing
//!
//! Environment: `XTTSD_DEVICE` = `cpu` | `cuda` (default: CUDA when available),
//! `XTTSD_THREADS` (CPU threads, default 1), `XTTSD_SEED` (default 1).
//! Text tokens and voice are those of the goldens' first case. Prints, per streaming mode, the
//! first-chunk latency, real-time factor and per-stage times; then the vocoder cost per chunk of
//! both modes over a 602-latent utterance and their difference from a one-shot render.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use tch::{Device, Tensor};
use xttsd::xtts::model::Xtts;
use xttsd::xtts::sampling::SamplingParams;
use xttsd::xtts::stream::{StreamOptions, StreamVocoder};
use xttsd::xtts::voice::Voice;

fn main() -> Result<()> {
    let dir = std::env::var_os("XTTSD_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny"));
    let device = match std::env::var("XTTSD_DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        Ok("cuda") => Device::Cuda(0),
        _ => Device::cuda_if_available(),
    };
    let threads = std::env::var("XTTSD_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let seed = std::env::var("XTTSD_SEED")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    tch::set_num_threads(threads);

    let started = Instant::now();
    let model = Xtts::load(&dir.join("model"), device)?;
    println!(
        "model {} on {device:?} ({threads} CPU threads): loaded in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    let (tokens, voice) = golden_input(&dir.join("golden"), device)?;
    let params = SamplingParams {
        seed: Some(seed),
        ..SamplingParams::default()
    };

    // Warm-up: first calls allocate and pick kernels.
    model.stream_tokens(&tokens, &voice, &params, &StreamOptions::reference(), &mut |_| true)?;

    for opts in [StreamOptions::reference(), StreamOptions::windowed()] {
        let stats = model.stream_tokens(&tokens, &voice, &params, &opts, &mut |_| true)?;
        let calls = &stats.vocoder_call_ms;
        println!(
            "{:?}: {} tokens, {:.2} s audio in {} chunks | first chunk {:.1} ms | RTF {:.3} | prefill {:.1} ms | {:.2} ms/token | vocoder {:.1} ms in {} calls (first {:.1}, last {:.1})",
            opts.mode,
            stats.tokens,
            stats.audio_seconds(),
            stats.chunks,
            stats.first_chunk_ms.unwrap_or(f64::NAN),
            stats.real_time_factor(),
            stats.prefill_ms,
            stats.ms_per_token(),
            stats.vocoder_ms,
            calls.len(),
            calls.first().copied().unwrap_or(f64::NAN),
            calls.last().copied().unwrap_or(f64::NAN),
        );
    }

    // Vocoder cost per chunk over the longest utterance (602 latents).
    let generation = model.generate(&tokens, &voice, &params, &mut |_, _| true)?;
    let max = model.gpt().config().max_new_tokens;
    let have = generation.latents.size()[1];
    let copies: Vec<Tensor> = (0..(max + have - 1) / have)
        .map(|_| generation.latents.shallow_clone())
        .collect();
    let latents = Tensor::cat(&copies, 1).narrow(1, 0, max);
    let t = Instant::now();
    let one_shot = model.vocode(&latents, &voice, 1.0)?;
    println!(
        "one-shot vocoder, {max} latents ({:.2} s audio): {:.1} ms",
        one_shot.len() as f64 / model.sample_rate() as f64,
        t.elapsed().as_secs_f64() * 1e3
    );
    for opts in [StreamOptions::reference(), StreamOptions::windowed()] {
        let mut vocoder = StreamVocoder::new(model.hifigan(), &voice.speaker_embedding, &opts)?;
        let mut audio = Vec::new();
        for i in 0..max {
            if let Some(chunk) = vocoder.push(&latents.get(0).get(i))? {
                audio.extend(chunk);
            }
        }
        audio.extend(vocoder.finish()?);
        let stats = vocoder.stats();
        let max_abs = audio
            .iter()
            .zip(&one_shot)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let ms: Vec<String> = stats.call_ms.iter().map(|m| format!("{m:.0}")).collect();
        println!(
            "{:?} over {max} latents: {} samples (one-shot {}), max abs diff vs one-shot {max_abs:.3e}, vocoder {:.1} ms total, per chunk ms [{}]",
            opts.mode,
            audio.len(),
            one_shot.len(),
            stats.total_ms(),
            ms.join(", ")
        );
    }
    Ok(())
}

/// The first golden case's text tokens and the voice it used.
fn golden_input(golden: &Path, device: Device) -> Result<(Vec<i64>, Voice)> {
    let read = |name: &str| -> Result<Vec<(String, Tensor)>> {
        let path = golden.join(name);
        Tensor::read_safetensors(&path).with_context(|| format!("{}: cannot read", path.display()))
    };
    let find = |tensors: &[(String, Tensor)], name: &str, file: &str| -> Result<Tensor> {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.to_device(device))
            .with_context(|| format!("{file}: no tensor '{name}'"))
    };
    let gen = read("gen_0.safetensors")?;
    let tokens = Vec::<i64>::try_from(find(&gen, "text_tokens", "gen_0.safetensors")?.to_device(Device::Cpu))?;
    let cond = read("cond.safetensors")?;
    let voice = Voice {
        gpt_cond_latent: find(&cond, "cond_latent", "cond.safetensors")?,
        speaker_embedding: find(&cond, "speaker_embedding", "cond.safetensors")?,
    };
    Ok((tokens, voice))
}
