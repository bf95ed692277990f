//! `config.json` of a released XTTS model, as coqpit writes it. Only the fields inference
//! reads are declared; the rest of the file is ignored. Defaults are the v2.0.3 release values,
//! so a config.json missing a field behaves as the released model.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct XttsConfig {
    pub model_args: ModelArgs,
    pub audio: AudioConfig,
    pub languages: Vec<String>,
    pub temperature: f64,
    pub length_penalty: f64,
    pub repetition_penalty: f64,
    pub top_k: i64,
    pub top_p: f64,
    pub gpt_cond_len: f64,
    pub gpt_cond_chunk_len: f64,
    pub max_ref_len: f64,
    pub sound_norm_refs: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ModelArgs {
    pub gpt_max_audio_tokens: i64,
    pub gpt_max_text_tokens: i64,
    pub gpt_layers: i64,
    pub gpt_n_model_channels: i64,
    pub gpt_n_heads: i64,
    pub gpt_number_text_tokens: Option<i64>,
    pub gpt_start_text_token: Option<i64>,
    pub gpt_stop_text_token: Option<i64>,
    pub gpt_num_audio_tokens: i64,
    pub gpt_start_audio_token: i64,
    pub gpt_stop_audio_token: i64,
    pub gpt_code_stride_len: i64,
    pub gpt_use_perceiver_resampler: bool,
    pub input_sample_rate: i64,
    pub output_sample_rate: i64,
    pub output_hop_length: i64,
    pub decoder_input_dim: i64,
    pub d_vector_dim: i64,
    pub cond_d_vector_in_each_upsampling_layer: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AudioConfig {
    pub sample_rate: i64,
    pub output_sample_rate: i64,
}

impl Default for XttsConfig {
    fn default() -> Self {
        Self {
            model_args: ModelArgs::default(),
            audio: AudioConfig::default(),
            languages: [
                "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            temperature: 0.75,
            length_penalty: 1.0,
            repetition_penalty: 5.0,
            top_k: 50,
            top_p: 0.85,
            gpt_cond_len: 30.0,
            gpt_cond_chunk_len: 4.0,
            max_ref_len: 30.0,
            sound_norm_refs: false,
        }
    }
}

impl Default for ModelArgs {
    fn default() -> Self {
        Self {
            gpt_max_audio_tokens: 605,
            gpt_max_text_tokens: 402,
            gpt_layers: 30,
            gpt_n_model_channels: 1024,
            gpt_n_heads: 16,
            gpt_number_text_tokens: Some(6681),
            gpt_start_text_token: None,
            gpt_stop_text_token: None,
            gpt_num_audio_tokens: 1026,
            gpt_start_audio_token: 1024,
            gpt_stop_audio_token: 1025,
            gpt_code_stride_len: 1024,
            gpt_use_perceiver_resampler: true,
            input_sample_rate: 22050,
            output_sample_rate: 24000,
            output_hop_length: 256,
            decoder_input_dim: 1024,
            d_vector_dim: 512,
            cond_d_vector_in_each_upsampling_layer: true,
        }
    }
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            sample_rate: 22050,
            output_sample_rate: 24000,
        }
    }
}

/// coqpit writes Python floats as `Infinity`, `-Infinity` and `NaN`, which JSON does not allow
/// (the released config has `max_audio_len: Infinity`). None of those fields matter for
/// inference, so they become `null` outside string literals.
fn replace_non_finite(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = json;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) = ["-Infinity", "Infinity", "NaN"].iter().find(|w| rest.starts_with(**w)) {
            out.push_str("null");
            rest = &rest[word.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

impl XttsConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&replace_non_finite(&text))
            .with_context(|| format!("{}: not a valid XTTS config", path.display()))
    }

    /// Positions of the learned text position table: max text tokens + start + stop.
    pub fn text_positions(&self) -> i64 {
        self.model_args.gpt_max_text_tokens + 2
    }

    /// Positions of the learned audio position table.
    pub fn mel_positions(&self) -> i64 {
        self.model_args.gpt_max_audio_tokens + 3
    }

    /// Most audio tokens one generation may emit, the stop token included.
    pub fn max_new_tokens(&self) -> i64 {
        self.model_args.gpt_max_audio_tokens - 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats_are_read() {
        let json = r#"{"max_audio_len": Infinity, "x": -Infinity, "y": NaN, "run_name": "Infinity \" NaN", "temperature": 0.5}"#;
        let cleaned = replace_non_finite(json);
        assert!(cleaned.contains(r#""run_name": "Infinity \" NaN""#), "{cleaned}");
        let cfg: XttsConfig = serde_json::from_str(&cleaned).unwrap();
        assert_eq!(cfg.temperature, 0.5);
    }

    #[test]
    fn coqpit_literals_become_null_outside_strings_only() {
        let json = r#"{"a": Infinity, "b": -Infinity, "c": NaN, "d": "Infinity \" NaN", "e": [1, Infinity]}"#;
        assert_eq!(
            replace_non_finite(json),
            r#"{"a": null, "b": null, "c": null, "d": "Infinity \" NaN", "e": [1, null]}"#
        );
    }

    #[test]
    fn fixture_config_loads() {
        let cfg = XttsConfig::from_file(Path::new("tests/fixtures/tiny/model/config.json")).unwrap();
        assert_eq!(cfg.model_args.gpt_num_audio_tokens, 1026);
        assert_eq!(cfg.languages.len(), 17);
    }
}
