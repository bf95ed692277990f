//! Voice conditioning parity with the reference goldens: resampled audio, the conditioning
//! mel, GPT conditioning latents and speaker embeddings for one and for two clips, plus the
//! legacy weight-norm key layout. Reads `$XTTSD_FIXTURE` (default `tests/fixtures/tiny`), with
//! `model/`, `model_legacy/` and `golden/` inside and the clips one level up.
//!
//! Tolerances (fp32, CPU): resampled audio ≤ 1e-6 absolute; conditioning mel ≤ 1e-5 relative
//! to its largest magnitude; latents and embeddings ≤ 1e-5 absolute; correlation ≥ 0.99999.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};
use xttsd::xtts::checkpoint::{load_model_state, Weights};
use xttsd::xtts::config::XttsConfig;
use xttsd::xtts::voice::{load_clip, ConditioningOptions, VoiceEncoder};

fn fixture_dir() -> PathBuf {
    match std::env::var("XTTSD_FIXTURE") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny"),
    }
}

fn clip_path(name: &str) -> PathBuf {
    fixture_dir().join("..").join(name)
}

fn goldens() -> HashMap<String, Tensor> {
    let path = fixture_dir().join("golden/cond.safetensors");
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn golden<'a>(g: &'a HashMap<String, Tensor>, name: &str) -> &'a Tensor {
    g.get(name).unwrap_or_else(|| panic!("golden '{name}' missing"))
}

fn encoder() -> (VoiceEncoder, XttsConfig) {
    tch::set_num_threads(1);
    let dir = fixture_dir().join("model");
    let cfg = XttsConfig::from_file(&dir.join("config.json")).unwrap();
    let state = load_model_state(&dir.join("model.pth")).unwrap();
    let weights = Weights::new(state, &dir.join("model.pth"), Device::Cpu);
    (VoiceEncoder::new(&weights, &cfg).unwrap(), cfg)
}

/// Prints and returns (max abs diff, correlation).
fn compare(name: &str, ours: &Tensor, reference: &Tensor) -> (f64, f64) {
    assert_eq!(ours.size(), reference.size(), "{name}: shape");
    let a = ours.to_kind(Kind::Double).flatten(0, -1);
    let b = reference.to_kind(Kind::Double).flatten(0, -1);
    let diff = (&a - &b).abs().max().double_value(&[]);
    let (ac, bc) = (&a - a.mean(Kind::Double), &b - b.mean(Kind::Double));
    let corr = ((&ac * &bc).sum(Kind::Double) / (ac.norm() * bc.norm())).double_value(&[]);
    let scale = b.abs().max().double_value(&[]);
    println!(
        "{name:<24} shape {:?}  max|diff| {diff:.3e}  (max|ref| {scale:.3e})  corr {corr:.9}",
        ours.size()
    );
    (diff, corr)
}

fn assert_close(name: &str, ours: &Tensor, reference: &Tensor, tol: f64) {
    let (diff, corr) = compare(name, ours, reference);
    assert!(diff <= tol, "{name}: max abs diff {diff:e} above {tol:e}");
    assert!(corr >= 0.99999, "{name}: correlation {corr}");
}

#[test]
fn single_clip_matches_reference() {
    let (enc, cfg) = encoder();
    let g = goldens();
    let opts = ConditioningOptions::from_config(&cfg);
    let clip = load_clip(&clip_path("ref_24k.wav")).unwrap();

    let audio = enc.prepare_clip(&clip, &opts).unwrap();
    assert_close("audio_22k", &audio, golden(&g, "audio_22k"), 1e-6);
    let audio_16k = enc.resample(&audio, 22050, 16000).unwrap();
    assert_close("audio_16k", &audio_16k, golden(&g, "audio_16k"), 1e-6);

    let chunk = (22050.0 * opts.gpt_cond_chunk_len) as i64;
    let mel0 = enc.cond_mel(&audio.narrow(1, 0, chunk.min(audio.size()[1]))).unwrap();
    let mel_ref = golden(&g, "cond_mel0");
    let mel_scale = mel_ref.abs().max().double_value(&[]);
    assert_close("cond_mel0", &mel0, mel_ref, 1e-5 * mel_scale);

    let voice = enc.encode(&[clip], &opts).unwrap();
    assert_close("cond_latent", &voice.gpt_cond_latent, golden(&g, "cond_latent"), 1e-5);
    assert_close(
        "speaker_embedding",
        &voice.speaker_embedding,
        golden(&g, "speaker_embedding"),
        1e-5,
    );
}

#[test]
fn two_clips_match_reference() {
    let (enc, cfg) = encoder();
    let g = goldens();
    let opts = ConditioningOptions::from_config(&cfg);
    let clips = [
        load_clip(&clip_path("ref_24k.wav")).unwrap(),
        load_clip(&clip_path("ref2_16k.wav")).unwrap(),
    ];
    let voice = enc.encode(&clips, &opts).unwrap();
    assert_close(
        "cond_latent_multi",
        &voice.gpt_cond_latent,
        golden(&g, "cond_latent_multi"),
        1e-5,
    );
    assert_close(
        "speaker_embedding_multi",
        &voice.speaker_embedding,
        golden(&g, "speaker_embedding_multi"),
        1e-5,
    );
}

/// The legacy container (`weight_g` / `weight_v`, pickled config object) and the current one
/// (`parametrizations.weight.original0/1`) hold the same HiFi-GAN weights once folded.
#[test]
fn legacy_weight_norm_folds_to_the_same_weights() {
    tch::set_num_threads(1);
    let load = |sub: &str| {
        let path = fixture_dir().join(sub).join("model.pth");
        Weights::new(load_model_state(&path).unwrap(), &path, Device::Cpu)
    };
    let current = load("model");
    let legacy = load("model_legacy");
    let gen = "hifigan_decoder.waveform_decoder";
    let layers = [
        format!("{gen}.ups.0"),
        format!("{gen}.ups.3"),
        format!("{gen}.resblocks.0.convs1.0"),
        format!("{gen}.resblocks.5.convs2.1"),
        format!("{gen}.resblocks.11.convs2.2"),
    ];
    for layer in &layers {
        // make sure each file really uses its own naming, or the comparison proves nothing
        assert!(
            current.contains(&format!("{layer}.parametrizations.weight.original0")),
            "{layer}"
        );
        assert!(legacy.contains(&format!("{layer}.weight_g")), "{layer}");
        assert!(
            !legacy.contains(&format!("{layer}.parametrizations.weight.original0")),
            "{layer}"
        );
        let a = current.weight_norm(layer).unwrap();
        let b = legacy.weight_norm(layer).unwrap();
        let (diff, _) = compare(layer, &a, &b);
        assert_eq!(diff, 0.0, "{layer}: folded weights differ");
        // the fold is not the identity: g rescales v
        let v = current
            .get(&format!("{layer}.parametrizations.weight.original1"))
            .unwrap();
        assert!(
            (&a - &v).abs().max().double_value(&[]) > 0.0,
            "{layer}: fold changed nothing"
        );
    }
    // the speaker encoder and conditioning tensors are the same in both files too
    let cfg = XttsConfig::from_file(&fixture_dir().join("model/config.json")).unwrap();
    let a = VoiceEncoder::new(&current, &cfg).unwrap();
    let b = VoiceEncoder::new(&legacy, &cfg).unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
}
