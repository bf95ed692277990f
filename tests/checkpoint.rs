//! The checkpoint reader on the released container forms: the form coqui-tts rewrites
//! (config as a dict, `parametrizations.*` weight-norm keys) and the original release form
//! (pickled config object, legacy `weight_g`/`weight_v` keys).

use std::path::Path;

use tch::Device;
use xttsd::xtts::checkpoint::{load_model_state, load_speakers, Weights};

const CURRENT: &str = "tests/fixtures/tiny/model/model.pth";
const LEGACY: &str = "tests/fixtures/tiny/model_legacy/model.pth";

#[test]
fn both_container_forms_load_the_same_weights() {
    let current = load_model_state(Path::new(CURRENT)).unwrap();
    let legacy = load_model_state(Path::new(LEGACY)).unwrap();
    assert_eq!(current.len(), legacy.len(), "same number of tensors");
    assert!(current.keys().any(|k| k.contains(".parametrizations.weight.original0")));
    assert!(legacy.keys().any(|k| k.ends_with(".weight_g")));
    assert!(current.contains_key("mel_stats"));

    let current = Weights::new(current, Path::new(CURRENT), Device::Cpu);
    let legacy = Weights::new(legacy, Path::new(LEGACY), Device::Cpu);
    for prefix in [
        "hifigan_decoder.waveform_decoder.ups.0",
        "hifigan_decoder.waveform_decoder.resblocks.5.convs1.2",
    ] {
        let a = current.weight_norm(prefix).unwrap();
        let b = legacy.weight_norm(prefix).unwrap();
        assert_eq!(a.size(), b.size());
        let diff = (a - b).abs().max().double_value(&[]);
        assert_eq!(diff, 0.0, "{prefix}: folded weights differ by {diff}");
    }
    let a = current.get("gpt.mel_head.weight").unwrap();
    let b = legacy.get("gpt.mel_head.weight").unwrap();
    assert!(a.equal(&b));
}

#[test]
fn weight_norm_fold_matches_definition() {
    let w = Weights::new(
        load_model_state(Path::new(CURRENT)).unwrap(),
        Path::new(CURRENT),
        Device::Cpu,
    );
    let p = "hifigan_decoder.waveform_decoder.ups.1";
    let g = w.get(&format!("{p}.parametrizations.weight.original0")).unwrap();
    let v = w.get(&format!("{p}.parametrizations.weight.original1")).unwrap();
    // ||v|| over every dim but 0, per slice of dim 0.
    let norm = v
        .pow_tensor_scalar(2)
        .sum_dim_intlist(&[1i64, 2][..], true, tch::Kind::Float)
        .sqrt();
    let expected = &g * &v / norm;
    let got = w.weight_norm(p).unwrap();
    let diff = (got - expected).abs().max().double_value(&[]);
    assert!(diff < 1e-6, "fold differs by {diff}");
}

#[test]
fn missing_tensor_is_named() {
    let w = Weights::new(
        load_model_state(Path::new(CURRENT)).unwrap(),
        Path::new(CURRENT),
        Device::Cpu,
    );
    let err = w.get("gpt.no_such_layer.weight").unwrap_err().to_string();
    assert!(
        err.contains("gpt.no_such_layer.weight") && err.contains("model.pth"),
        "{err}"
    );
    let err = w.get_shaped("gpt.mel_head.weight", &[3, 3]).unwrap_err().to_string();
    assert!(err.contains("gpt.mel_head.weight") && err.contains("expected"), "{err}");
}

#[test]
fn not_a_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("model.pth");
    std::fs::write(&bogus, b"not a zip file at all").unwrap();
    let err = format!("{:#}", load_model_state(&bogus).unwrap_err());
    assert!(
        err.contains("model.pth") && err.contains("not a torch zip checkpoint"),
        "{err}"
    );
    let err = format!("{:#}", load_model_state(&dir.path().join("absent.pth")).unwrap_err());
    assert!(err.contains("absent.pth"), "{err}");
}

#[test]
fn builtin_speakers_load() {
    let speakers = load_speakers(Path::new("tests/fixtures/tiny/model/speakers_xtts.pth")).unwrap();
    assert_eq!(speakers.len(), 2);
    for (name, tensors) in &speakers {
        let latent = &tensors["gpt_cond_latent"];
        let emb = &tensors["speaker_embedding"];
        assert_eq!(latent.size()[..2], [1, 32], "{name}");
        assert_eq!(emb.size()[0], 1, "{name}");
        assert_eq!(emb.size()[2], 1, "{name}");
    }
}
