//! `xttsd say`: synthesize text to a file from the command line, printing timings.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::audio::{g711, resample::resample_all, shaping, wav};
use crate::config::{DeviceSetting, GptDtype, StreamModeSetting};
use crate::engine::xtts_backend::{XttsBackend, XttsBackendConfig};
use crate::engine::SpeechOptions;
use crate::xtts::stream::StreamOptions;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model directory (config.json, model.pth, vocab.json).
    #[arg(long)]
    pub model: PathBuf,
    /// A voice clip (WAV), a folder of clips, or a voice name (built-in or in --speakers);
    /// repeat to clone from several clips.
    #[arg(long, required = true)]
    pub voice: Vec<String>,
    /// Directory of named voices.
    #[arg(long, default_value = "speakers")]
    pub speakers: PathBuf,
    /// MeCab dictionary for Japanese (tools/fetch_text_data); approximate romaji without it.
    #[arg(long, default_value = "models/text/unidic-lite")]
    pub japanese_dictionary: PathBuf,
    #[arg(long, default_value = "en")]
    pub lang: String,
    #[arg(long)]
    pub text: String,
    #[arg(long)]
    pub out: PathBuf,
    /// wav24k | wav8k | ulaw8k (raw G.711 µ-law) | slin8k (raw 16-bit LE).
    #[arg(long, default_value = "wav24k")]
    pub format: String,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Greedy decoding (deterministic; only the repetition penalty applies).
    #[arg(long)]
    pub greedy: bool,
    /// Speaking rate (0.5 to 2.0; 1.0 normal).
    #[arg(long)]
    pub speed: Option<f64>,
    #[arg(long, value_enum, default_value_t = DeviceSetting::Auto)]
    pub device: DeviceSetting,
    /// Streaming mode for the timings.
    #[arg(long, value_enum, default_value_t = StreamModeSetting::Windowed)]
    pub stream_mode: StreamModeSetting,
    /// pypinyin's pinyin tables for Chinese (tools/fetch_text_data).
    #[arg(long, default_value = "models/text/pypinyin")]
    pub chinese_dictionary: PathBuf,
    /// The GPT's float type.
    #[arg(long, value_enum, default_value_t = GptDtype::Float32)]
    pub gpt_dtype: GptDtype,
}

pub fn run(args: Args) -> Result<()> {
    if !matches!(args.format.as_str(), "wav24k" | "wav8k" | "ulaw8k" | "slin8k") {
        bail!(
            "unknown --format '{}': use wav24k, wav8k, ulaw8k or slin8k",
            args.format
        );
    }
    if args.text.trim().is_empty() {
        bail!("--text is empty");
    }
    let t0 = Instant::now();
    let cfg = XttsBackendConfig {
        model_dir: args.model.clone(),
        speakers_dir: args.speakers.clone(),
        japanese_dictionary: args.japanese_dictionary.clone(),
        device: args.device,
        stream: match args.stream_mode {
            StreamModeSetting::Windowed => StreamOptions::windowed(),
            StreamModeSetting::Reference => StreamOptions::reference(),
        },
        chinese_dictionary: args.chinese_dictionary.clone(),
        gpt_dtype: args.gpt_dtype,
        ..XttsBackendConfig::default()
    };
    let mut synth = XttsBackend::load(&cfg)?;
    let load_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let voice = synth.resolve_voice(&args.voice)?;
    let cond_s = t1.elapsed().as_secs_f64();

    let opts = SpeechOptions {
        seed: args.seed,
        greedy: Some(args.greedy),
        speed: args.speed,
        ..SpeechOptions::default()
    };
    let t2 = Instant::now();
    let mut first_chunk_s = None;
    let mut audio: Vec<f32> = Vec::new();
    synth.speak_with_voice(&args.text, &args.lang, &voice, &opts, &mut |chunk: Vec<f32>| {
        first_chunk_s.get_or_insert_with(|| t2.elapsed().as_secs_f64());
        audio.extend_from_slice(&chunk);
        true
    })?;
    let total_s = t2.elapsed().as_secs_f64();
    let rate = synth.sample_rate();
    let audio_s = audio.len() as f64 / rate as f64;

    write_output(&args.out, &args.format, &audio, rate)?;
    println!("load          {:8.3} s", load_s);
    println!("conditioning  {:8.3} s", cond_s);
    println!("first chunk   {:8.3} s", first_chunk_s.unwrap_or(total_s));
    println!("total         {:8.3} s for {:.2} s of audio", total_s, audio_s);
    println!(
        "real-time factor {:.3} (synthesis time / audio time)",
        total_s / audio_s.max(1e-9)
    );
    println!("wrote {} ({})", args.out.display(), args.format);
    Ok(())
}

fn write_output(path: &std::path::Path, format: &str, audio: &[f32], rate: u32) -> Result<()> {
    let to_i16 = |x: &[f32]| -> Vec<i16> { x.iter().map(|&s| shaping::to_i16(s)).collect() };
    match format {
        "wav24k" => wav::write_wav(path, rate, &to_i16(audio)),
        _ => {
            let pcm8k = to_i16(&resample_all(audio, rate, 8000)?);
            match format {
                "wav8k" => wav::write_wav(path, 8000, &pcm8k),
                "ulaw8k" => {
                    let bytes: Vec<u8> = pcm8k.iter().map(|&s| g711::ulaw_encode(s)).collect();
                    std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
                }
                _ => {
                    let bytes: Vec<u8> = pcm8k.iter().flat_map(|s| s.to_le_bytes()).collect();
                    std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
                }
            }
        }
    }
}
