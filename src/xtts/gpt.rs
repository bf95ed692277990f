//! The autoregressive GPT that turns conditioning + text into audio codes (spec 4).
//!
//! A GPT-2 core whose token and position embeddings are removed; XTTS adds its own text and
//! audio-code embeddings with learned position tables, a second LayerNorm (`final_norm`) after
//! `ln_f`, and `mel_head`. Linear layers of the core are HF `Conv1D` (weight `[in, out]`).
//!
//! Decoding uses a preallocated [`KvCache`] with a batch dimension and a per-slot validity mask,
//! so rows whose prefixes differ in length can later share one decode step (left padding).

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::checkpoint::Weights;
use super::config::XttsConfig;

const LN_EPS: f64 = 1e-5;

/// Sizes and special tokens of the GPT, from `config.json` and `vocab.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct GptConfig {
    pub layers: i64,
    pub dim: i64,
    pub heads: i64,
    pub num_text_tokens: i64,
    pub num_audio_tokens: i64,
    pub start_text_token: i64,
    pub stop_text_token: i64,
    pub start_audio_token: i64,
    pub stop_audio_token: i64,
    /// Length of the learned text position table (max text tokens + start + stop).
    pub text_positions: i64,
    /// Length of the learned audio position table.
    pub mel_positions: i64,
    /// Most codes one generation may emit, the stop token included.
    pub max_new_tokens: i64,
    /// Encoded text (before start/stop are added) must be shorter than this.
    pub max_text_tokens: i64,
}

impl GptConfig {
    /// Sizes from `config.json`. Text token ids left unset there (`null` in the release) must be
    /// supplied from the vocabulary: `number_text_tokens` = max id + 1, `[START]`, `[STOP]`.
    pub fn from_config(cfg: &XttsConfig, vocab: Option<(i64, i64, i64)>) -> Result<Self> {
        let a = &cfg.model_args;
        let (num_text, start_text, stop_text) = match vocab {
            Some(v) => v,
            None => (
                a.gpt_number_text_tokens
                    .context("config.json: model_args.gpt_number_text_tokens is not set and no vocabulary was given")?,
                a.gpt_start_text_token
                    .context("config.json: model_args.gpt_start_text_token is not set and no vocabulary was given")?,
                a.gpt_stop_text_token
                    .context("config.json: model_args.gpt_stop_text_token is not set and no vocabulary was given")?,
            ),
        };
        if a.gpt_n_heads <= 0 || a.gpt_n_model_channels % a.gpt_n_heads != 0 {
            bail!(
                "config.json: gpt_n_model_channels {} is not divisible by gpt_n_heads {}",
                a.gpt_n_model_channels,
                a.gpt_n_heads
            );
        }
        Ok(Self {
            layers: a.gpt_layers,
            dim: a.gpt_n_model_channels,
            heads: a.gpt_n_heads,
            num_text_tokens: num_text,
            num_audio_tokens: a.gpt_num_audio_tokens,
            start_text_token: start_text,
            stop_text_token: stop_text,
            start_audio_token: a.gpt_start_audio_token,
            stop_audio_token: a.gpt_stop_audio_token,
            text_positions: cfg.text_positions(),
            mel_positions: cfg.mel_positions(),
            max_new_tokens: cfg.max_new_tokens(),
            max_text_tokens: a.gpt_max_text_tokens,
        })
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn new(w: &Weights, prefix: &str, dim: i64) -> Result<Self> {
        Ok(Self {
            weight: w.get_shaped(&format!("{prefix}.weight"), &[dim])?,
            bias: w.get_shaped(&format!("{prefix}.bias"), &[dim])?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dim = self.weight.size()[0];
        Ok(x.f_layer_norm([dim], Some(&self.weight), Some(&self.bias), LN_EPS, true)?)
    }
}

/// HF `Conv1D`: a linear layer stored as `[in, out]`, so `y = x · W + b`.
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1D {
    fn new(w: &Weights, prefix: &str, n_in: i64, n_out: i64) -> Result<Self> {
        Ok(Self {
            weight: w.get_shaped(&format!("{prefix}.weight"), &[n_in, n_out])?,
            bias: w.get_shaped(&format!("{prefix}.bias"), &[n_out])?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_matmul(&self.weight)?.f_add(&self.bias)?)
    }
}

/// Storage for the keys and values of a cached forward pass.
pub trait KvStore {
    /// Stores `k`, `v` ([B, H, T, hd]) of layer `layer` for the step under way; returns the keys
    /// and values to attend over and the step's "may attend" mask (None: every key).
    fn append_layer(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<StepKeys>;
}

/// Keys and values a step attends over, with its "may attend" mask (None: every key).
pub type StepKeys = (Tensor, Tensor, Option<Tensor>);

/// One zeroed buffer of `shape` per GPT layer, allocated with fallible ops (keys or values of a
/// cache).
pub fn layer_buffers(cfg: &GptConfig, shape: [i64; 4], options: (Kind, Device)) -> Result<Vec<Tensor>, tch::TchError> {
    (0..cfg.layers).map(|_| Tensor::f_zeros(shape, options)).collect()
}

/// Where attention keys come from: a store at layer `layer`, or the current tokens only.
enum KvSource<'a> {
    Cache(&'a mut dyn KvStore, usize),
    None,
}

struct Attention {
    c_attn: Conv1D,
    c_proj: Conv1D,
    heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(w: &Weights, prefix: &str, cfg: &GptConfig) -> Result<Self> {
        Ok(Self {
            c_attn: Conv1D::new(w, &format!("{prefix}.c_attn"), cfg.dim, 3 * cfg.dim)?,
            c_proj: Conv1D::new(w, &format!("{prefix}.c_proj"), cfg.dim, cfg.dim)?,
            heads: cfg.heads,
            head_dim: cfg.dim / cfg.heads,
        })
    }

    /// `x`: [B, T, D]. With a cache, the new keys/values are written at the cache's fill
    /// position and attention runs over everything cached so far.
    fn forward(&self, x: &Tensor, kv: KvSource) -> Result<Tensor> {
        let (b, t, d) = x.size3().context("attention input must be [B, T, D]")?;
        let qkv = self.c_attn.forward(x)?;
        let split = |i: i64| -> Result<Tensor> {
            Ok(qkv
                .f_narrow(2, i * d, d)?
                .f_view([b, t, self.heads, self.head_dim])?
                .f_transpose(1, 2)?)
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let out = match kv {
            KvSource::Cache(store, layer) => {
                let (keys, values, mask) = store.append_layer(layer, &k, &v)?;
                attend(&q, &keys, &values, mask.as_ref())?
            }
            KvSource::None => {
                let mask = Tensor::f_ones([t, t], (Kind::Bool, x.device()))?.f_tril(0)?;
                attend(&q, &k, &v, Some(&mask))?
            }
        };
        let out = out.f_transpose(1, 2)?.f_contiguous()?.f_view([b, t, d])?;
        self.c_proj.forward(&out)
    }
}

/// Scaled dot-product attention with an optional boolean "may attend" mask broadcastable to
/// [B, H, Tq, Tk] (None: every key). Masked scores get the lowest finite float rather than -inf,
/// so a padding query that may see nothing yields finite garbage instead of NaN (which would
/// leak through its keys/values).
/// Scores and softmax run in float32 whatever the model's type (a reduced-precision model
/// keeps its weights and cache in that type, not its attention weights).
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let head_dim = q.size()[3] as f64;
    let mut scores = q
        .f_matmul(&k.f_transpose(-1, -2)?)?
        .f_to_kind(Kind::Float)?
        .f_div_scalar(head_dim.sqrt())?;
    if let Some(mask) = mask {
        scores = scores.f_masked_fill(&mask.f_logical_not()?, f32::MIN as f64)?;
    }
    Ok(scores.f_softmax(-1, Kind::Float)?.f_to_kind(v.kind())?.f_matmul(v)?)
}

struct Mlp {
    c_fc: Conv1D,
    c_proj: Conv1D,
}

impl Mlp {
    fn new(w: &Weights, prefix: &str, cfg: &GptConfig) -> Result<Self> {
        let inner = 4 * cfg.dim;
        Ok(Self {
            c_fc: Conv1D::new(w, &format!("{prefix}.c_fc"), cfg.dim, inner)?,
            c_proj: Conv1D::new(w, &format!("{prefix}.c_proj"), inner, cfg.dim)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // GPT-2's gelu_new is the tanh approximation.
        self.c_proj.forward(&self.c_fc.forward(x)?.f_gelu("tanh")?)
    }
}

struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(w: &Weights, prefix: &str, cfg: &GptConfig) -> Result<Self> {
        Ok(Self {
            ln_1: LayerNorm::new(w, &format!("{prefix}.ln_1"), cfg.dim)?,
            attn: Attention::new(w, &format!("{prefix}.attn"), cfg)?,
            ln_2: LayerNorm::new(w, &format!("{prefix}.ln_2"), cfg.dim)?,
            mlp: Mlp::new(w, &format!("{prefix}.mlp"), cfg)?,
        })
    }

    fn forward(&self, x: &Tensor, kv: KvSource) -> Result<Tensor> {
        let h = x.f_add(&self.attn.forward(&self.ln_1.forward(x)?, kv)?)?;
        Ok(h.f_add(&self.mlp.forward(&self.ln_2.forward(&h)?)?)?)
    }
}

/// Keys and values of every layer, preallocated for `capacity` positions per row.
///
/// All rows advance together, one column per decode step; `valid` marks the slots a row may
/// attend to, so a shorter prefix can be left-padded with invalid slots.
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    /// [B, capacity] bool: slot holds a real position of that row.
    valid: Tensor,
    /// Some slot was reserved as padding: steps need the validity mask.
    padded: bool,
    /// Mask of the step being run, [B, 1, T, filled + T]; None when every key may be seen.
    step_mask: Option<Tensor>,
    filled: i64,
    capacity: i64,
}

impl KvCache {
    pub fn new(cfg: &GptConfig, batch: i64, capacity: i64, (kind, device): (Kind, Device)) -> Result<Self> {
        let head_dim = cfg.dim / cfg.heads;
        let shape = [batch, cfg.heads, capacity, head_dim];
        let context = || format!("allocating a key/value cache of {batch} rows x {capacity} positions");
        Ok(Self {
            keys: layer_buffers(cfg, shape, (kind, device)).with_context(context)?,
            values: layer_buffers(cfg, shape, (kind, device)).with_context(context)?,
            valid: Tensor::f_zeros([batch, capacity], (Kind::Bool, device)).with_context(context)?,
            padded: false,
            step_mask: None,
            filled: 0,
            capacity,
        })
    }

    /// Positions written so far (the same for every row).
    pub fn len(&self) -> i64 {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    pub fn batch(&self) -> i64 {
        self.valid.size()[0]
    }

    /// Prepares a step of `t` positions: marks which of the next slots hold real positions
    /// (`valid` [B, t] bool, None = all; padding is for left-padded prefixes) and builds the
    /// step's attention mask once for all layers.
    fn reserve(&mut self, t: i64, valid: Option<&Tensor>) -> Result<()> {
        let mut slots = self.valid.f_narrow(1, self.filled, t)?;
        match valid {
            Some(v) => {
                slots.f_copy_(v)?;
                self.padded = true;
            }
            None => {
                let _ = slots.f_fill_(1)?;
            }
        }
        let start = self.filled;
        let total = start + t;
        let device = self.valid.device();
        // Query i (absolute position start + i) sees keys 0..=start + i that are valid.
        self.step_mask = match (self.padded, t) {
            (false, 1) => None,
            (false, _) => Some(Tensor::f_ones([t, total], (Kind::Bool, device))?.f_tril(start)?),
            (true, _) => {
                let causal = Tensor::f_ones([t, total], (Kind::Bool, device))?.f_tril(start)?;
                let mask = causal
                    .f_unsqueeze(0)?
                    .f_logical_and(&self.valid.f_narrow(1, 0, total)?.f_unsqueeze(1)?)?;
                Some(mask.f_unsqueeze(1)?)
            }
        };
        Ok(())
    }

    /// Writes `k`, `v` ([B, H, T, hd]) of one layer after the filled part; returns all keys
    /// and values so far.
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.size()[2];
        let start = self.filled;
        self.keys[layer].f_narrow(2, start, t)?.f_copy_(k)?;
        self.values[layer].f_narrow(2, start, t)?.f_copy_(v)?;
        let total = start + t;
        Ok((
            self.keys[layer].f_narrow(2, 0, total)?,
            self.values[layer].f_narrow(2, 0, total)?,
        ))
    }

    /// Commits `t` positions once every layer has appended them.
    fn advance(&mut self, t: i64) {
        self.filled += t;
    }
}

impl KvStore for KvCache {
    fn append_layer(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<StepKeys> {
        let (keys, values) = self.append(layer, k, v)?;
        Ok((keys, values, self.step_mask.as_ref().map(Tensor::shallow_clone)))
    }
}

/// Output of a forward pass: the latents `z` (after `final_norm`) of every fed position.
pub struct GptOutput {
    /// [B, T, D]
    pub latents: Tensor,
}

impl GptOutput {
    /// Latent of the last fed position, [B, D].
    pub fn last(&self) -> Tensor {
        let t = self.latents.size()[1];
        self.latents.select(1, t - 1)
    }
}

/// The GPT with its XTTS embeddings and heads.
pub struct Gpt {
    cfg: GptConfig,
    text_embedding: Tensor,
    mel_embedding: Tensor,
    text_pos_embedding: Tensor,
    mel_pos_embedding: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    final_norm: LayerNorm,
    mel_head_weight: Tensor,
    mel_head_bias: Tensor,
}

impl Gpt {
    pub fn new(w: &Weights, cfg: GptConfig) -> Result<Self> {
        let d = cfg.dim;
        let blocks = (0..cfg.layers)
            .map(|i| Block::new(w, &format!("gpt.gpt.h.{i}"), &cfg))
            .collect::<Result<Vec<_>>>()?;
        if w.contains(&format!("gpt.gpt.h.{}.ln_1.weight", cfg.layers)) {
            bail!(
                "the checkpoint has more GPT blocks than config.json's gpt_layers = {}",
                cfg.layers
            );
        }
        Ok(Self {
            text_embedding: w.get_shaped("gpt.text_embedding.weight", &[cfg.num_text_tokens, d])?,
            mel_embedding: w.get_shaped("gpt.mel_embedding.weight", &[cfg.num_audio_tokens, d])?,
            text_pos_embedding: w.get_shaped("gpt.text_pos_embedding.emb.weight", &[cfg.text_positions, d])?,
            mel_pos_embedding: w.get_shaped("gpt.mel_pos_embedding.emb.weight", &[cfg.mel_positions, d])?,
            blocks,
            ln_f: LayerNorm::new(w, "gpt.gpt.ln_f", d)?,
            final_norm: LayerNorm::new(w, "gpt.final_norm", d)?,
            mel_head_weight: w.get_shaped("gpt.mel_head.weight", &[cfg.num_audio_tokens, d])?,
            mel_head_bias: w.get_shaped("gpt.mel_head.bias", &[cfg.num_audio_tokens])?,
            cfg,
        })
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    pub fn device(&self) -> Device {
        self.mel_head_weight.device()
    }

    /// The float type of the weights, the key/value cache and the activations.
    pub fn kind(&self) -> Kind {
        self.mel_head_weight.kind()
    }

    /// The conditioning + text prefix `[cond(32), text_emb(Nt + 2)]`, [1, 32 + Nt + 2, D].
    /// `text_tokens` are the encoded ids without `[START]`/`[STOP]`, which are added here.
    pub fn prefix_embeddings(&self, cond_latent: &Tensor, text_tokens: &[i64]) -> Result<Tensor> {
        let c = &self.cfg;
        let size = cond_latent.size();
        if size.len() != 3 || size[0] != 1 || size[2] != c.dim {
            bail!("conditioning latent has shape {size:?}, expected [1, N, {}]", c.dim);
        }
        if text_tokens.len() as i64 >= c.max_text_tokens {
            bail!(
                "text is {} tokens long; at most {} are allowed",
                text_tokens.len(),
                c.max_text_tokens - 1
            );
        }
        if let Some(bad) = text_tokens.iter().find(|&&id| id < 0 || id >= c.num_text_tokens) {
            bail!(
                "text token id {bad} is outside the vocabulary (0..{})",
                c.num_text_tokens
            );
        }
        let mut ids = Vec::with_capacity(text_tokens.len() + 2);
        ids.push(c.start_text_token);
        ids.extend_from_slice(text_tokens);
        ids.push(c.stop_text_token);
        let n = ids.len() as i64;
        let dev = self.device();
        let ids = Tensor::f_from_slice(&ids)?.f_to_device(dev)?;
        let text = self
            .text_embedding
            .f_index_select(0, &ids)?
            .f_add(&self.text_pos_embedding.f_narrow(0, 0, n)?)?;
        let cond = cond_latent.f_to_device(dev)?.f_to_kind(self.kind())?;
        Ok(Tensor::f_cat(&[cond, text.f_unsqueeze(0)?], 1)?)
    }

    /// Embeddings of audio codes `codes` ([B, T] int64) placed at audio positions
    /// `first_position..first_position + T`, [B, T, D].
    pub fn audio_embeddings(&self, codes: &Tensor, first_position: i64) -> Result<Tensor> {
        let (b, t) = codes.size2().context("audio codes must be [B, T]")?;
        if first_position < 0 || first_position + t > self.cfg.mel_positions {
            bail!(
                "audio positions {first_position}..{} exceed the {} learned positions",
                first_position + t,
                self.cfg.mel_positions
            );
        }
        let flat = codes.f_reshape([-1])?.f_to_device(self.device())?;
        let emb = self
            .mel_embedding
            .f_index_select(0, &flat)?
            .f_view([b, t, self.cfg.dim])?;
        let positions = self.mel_pos_embedding.f_narrow(0, first_position, t)?.f_unsqueeze(0)?;
        Ok(emb.f_add(&positions)?)
    }

    /// Embeddings [B, 1, D] of one audio code per row, row b at audio position `positions[b]`:
    /// two gathers for the whole batch.
    pub fn audio_embeddings_rows(&self, codes: &[i64], positions: &[i64]) -> Result<Tensor> {
        if codes.len() != positions.len() {
            bail!("{} codes for {} positions", codes.len(), positions.len());
        }
        let last = self.cfg.mel_positions;
        if let Some(bad) = positions.iter().find(|&&p| p < 0 || p >= last) {
            bail!("audio position {bad} exceeds the {last} learned positions");
        }
        let dev = self.device();
        let codes = Tensor::f_from_slice(codes)?.f_to_device(dev)?;
        let positions = Tensor::f_from_slice(positions)?.f_to_device(dev)?;
        let emb = self
            .mel_embedding
            .f_index_select(0, &codes)?
            .f_add(&self.mel_pos_embedding.f_index_select(0, &positions)?)?;
        Ok(emb.f_unsqueeze(1)?)
    }

    /// Runs `embeds` ([B, T, D]) after what `cache` holds, storing their keys and values.
    /// `valid` ([B, T] bool) marks padding in a batched, left-padded prefill; None = all real.
    pub fn forward_cached(&self, cache: &mut KvCache, embeds: &Tensor, valid: Option<&Tensor>) -> Result<GptOutput> {
        let (b, t, d) = embeds.size3().context("GPT input must be [B, T, D]")?;
        if d != self.cfg.dim || b != cache.batch() {
            bail!(
                "GPT input has shape [{b}, {t}, {d}], the model and cache expect [{}, T, {}]",
                cache.batch(),
                self.cfg.dim
            );
        }
        if cache.len() + t > cache.capacity() {
            bail!(
                "KV cache overflow: {} positions cached + {t} new > capacity {}",
                cache.len(),
                cache.capacity()
            );
        }
        cache.reserve(t, valid)?;
        let out = self.forward_store(cache, embeds)?;
        cache.advance(t);
        Ok(out)
    }

    /// Runs `embeds` ([B, T, D]) through every block with keys and values kept in `store`,
    /// which has been told beforehand where this step's rows and positions go.
    pub fn forward_store(&self, store: &mut dyn KvStore, embeds: &Tensor) -> Result<GptOutput> {
        let mut h = embeds.shallow_clone();
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward(&h, KvSource::Cache(&mut *store, i))?;
        }
        self.output(&h)
    }

    /// `final_norm(ln_f(h))` in float32.
    fn output(&self, h: &Tensor) -> Result<GptOutput> {
        let latents = self.final_norm.forward(&self.ln_f.forward(h)?)?;
        Ok(GptOutput {
            latents: latents.f_to_kind(Kind::Float)?,
        })
    }

    /// A full causal pass over `embeds` ([B, T, D]) without any cache.
    pub fn forward(&self, embeds: &Tensor) -> Result<GptOutput> {
        let (_, _, d) = embeds.size3().context("GPT input must be [B, T, D]")?;
        if d != self.cfg.dim {
            bail!("GPT input width {d}, the model expects {}", self.cfg.dim);
        }
        let mut h = embeds.shallow_clone();
        for block in &self.blocks {
            h = block.forward(&h, KvSource::None)?;
        }
        self.output(&h)
    }

    /// Audio-code logits for latents [.., D], float32.
    pub fn mel_logits(&self, latents: &Tensor) -> Result<Tensor> {
        let logits = latents
            .f_to_kind(self.kind())?
            .f_matmul(&self.mel_head_weight.f_tr()?)?
            .f_add(&self.mel_head_bias)?;
        Ok(logits.f_to_kind(Kind::Float)?)
    }

    /// A cache large enough for one generation from a prefix of `prefix_len` positions:
    /// the prefix, the start token and every decode step.
    pub fn cache_for(&self, batch: i64, prefix_len: i64) -> Result<KvCache> {
        KvCache::new(
            &self.cfg,
            batch,
            prefix_len + 1 + self.cfg.max_new_tokens,
            (self.kind(), self.device()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xtts::checkpoint::StateDict;
    use std::path::Path;

    fn tiny_cfg() -> GptConfig {
        GptConfig {
            layers: 2,
            dim: 16,
            heads: 4,
            num_text_tokens: 20,
            num_audio_tokens: 12,
            start_text_token: 18,
            stop_text_token: 0,
            start_audio_token: 10,
            stop_audio_token: 11,
            text_positions: 12,
            mel_positions: 30,
            max_new_tokens: 27,
            max_text_tokens: 10,
        }
    }

    fn random_weights(cfg: &GptConfig) -> Weights {
        tch::manual_seed(7);
        let d = cfg.dim;
        let mut sd = StateDict::new();
        let mut put = |name: String, shape: &[i64]| {
            sd.insert(name, Tensor::randn(shape, (Kind::Float, Device::Cpu)) * 0.3);
        };
        put("gpt.text_embedding.weight".into(), &[cfg.num_text_tokens, d]);
        put("gpt.mel_embedding.weight".into(), &[cfg.num_audio_tokens, d]);
        put("gpt.text_pos_embedding.emb.weight".into(), &[cfg.text_positions, d]);
        put("gpt.mel_pos_embedding.emb.weight".into(), &[cfg.mel_positions, d]);
        for ln in ["gpt.gpt.ln_f", "gpt.final_norm"] {
            put(format!("{ln}.weight"), &[d]);
            put(format!("{ln}.bias"), &[d]);
        }
        put("gpt.mel_head.weight".into(), &[cfg.num_audio_tokens, d]);
        put("gpt.mel_head.bias".into(), &[cfg.num_audio_tokens]);
        for i in 0..cfg.layers {
            let p = format!("gpt.gpt.h.{i}");
            for ln in ["ln_1", "ln_2"] {
                put(format!("{p}.{ln}.weight"), &[d]);
                put(format!("{p}.{ln}.bias"), &[d]);
            }
            for (name, n_in, n_out) in [
                ("attn.c_attn", d, 3 * d),
                ("attn.c_proj", d, d),
                ("mlp.c_fc", d, 4 * d),
                ("mlp.c_proj", 4 * d, d),
            ] {
                put(format!("{p}.{name}.weight"), &[n_in, n_out]);
                put(format!("{p}.{name}.bias"), &[n_out]);
            }
        }
        Weights::new(sd, Path::new("random"), Device::Cpu)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn cached_decode_matches_full_pass() {
        let cfg = tiny_cfg();
        let gpt = Gpt::new(&random_weights(&cfg), cfg.clone()).unwrap();
        let cond = Tensor::randn([1, 3, cfg.dim], (Kind::Float, Device::Cpu));
        let prefix = gpt.prefix_embeddings(&cond, &[3, 4, 5]).unwrap();
        let codes = Tensor::from_slice(&[10i64, 2, 7, 7, 1]).view([1, 5]);
        let audio = gpt.audio_embeddings(&codes, 0).unwrap();
        let full = gpt.forward(&Tensor::cat(&[&prefix, &audio], 1)).unwrap().latents;

        let p = prefix.size()[1];
        let mut cache = gpt.cache_for(1, p).unwrap();
        let mut steps = vec![gpt
            .forward_cached(&mut cache, &Tensor::cat(&[&prefix, &audio.narrow(1, 0, 1)], 1), None)
            .unwrap()
            .last()];
        for k in 1..5 {
            let out = gpt.forward_cached(&mut cache, &audio.narrow(1, k, 1), None).unwrap();
            steps.push(out.last());
        }
        assert_eq!(cache.len(), p + 5);
        let cached = Tensor::stack(&steps, 1);
        let diff = max_diff(&cached, &full.narrow(1, p, 5));
        assert!(diff < 1e-5, "cached vs full pass differ by {diff}");
    }

    /// A reduced-precision GPT runs the same computation: its latents follow the float32 ones
    /// closely (not exactly), its cache is in its own type, and its outputs are float32.
    #[test]
    fn reduced_precision_follows_float32() {
        let cfg = tiny_cfg();
        let weights = random_weights(&cfg);
        let full = Gpt::new(&weights, cfg.clone()).unwrap();
        let cond = Tensor::randn([1, 3, cfg.dim], (Kind::Float, Device::Cpu));
        let codes = Tensor::from_slice(&[10i64, 2, 7, 7, 1]).view([1, 5]);
        let run = |gpt: &Gpt| {
            let prefix = gpt.prefix_embeddings(&cond, &[3, 4, 5]).unwrap();
            let audio = gpt.audio_embeddings(&codes, 0).unwrap();
            let mut cache = gpt.cache_for(1, prefix.size()[1]).unwrap();
            let out = gpt
                .forward_cached(&mut cache, &Tensor::cat(&[&prefix, &audio], 1), None)
                .unwrap()
                .latents;
            (out, cache.keys[0].kind())
        };
        let (reference, _) = run(&full);
        for kind in [Kind::BFloat16, Kind::Half] {
            let gpt = Gpt::new(&weights.with_kind(kind), cfg.clone()).unwrap();
            assert_eq!(gpt.kind(), kind);
            let (latents, cache_kind) = run(&gpt);
            assert_eq!((latents.kind(), cache_kind), (Kind::Float, kind));
            let err = max_diff(&latents, &reference) / reference.abs().max().double_value(&[]);
            let a = latents.reshape([-1]);
            let b = reference.reshape([-1]);
            let corr = (&a * &b).sum(Kind::Double).double_value(&[])
                / (a.norm().double_value(&[]) * b.norm().double_value(&[]));
            assert!(
                err < 0.05 && corr > 0.999,
                "{kind:?}: relative error {err:.4}, correlation {corr:.6}"
            );
            assert!(err > 0.0, "{kind:?} computed in float32 after all");
            assert_eq!(full.mel_logits(&reference).unwrap().kind(), Kind::Float);
            assert_eq!(gpt.mel_logits(&latents).unwrap().kind(), Kind::Float);
        }
    }

    #[test]
    fn left_padded_batch_row_matches_single_row() {
        let cfg = tiny_cfg();
        let gpt = Gpt::new(&random_weights(&cfg), cfg.clone()).unwrap();
        let cond = Tensor::randn([1, 3, cfg.dim], (Kind::Float, Device::Cpu));
        let long = gpt.prefix_embeddings(&cond, &[3, 4, 5, 6]).unwrap();
        let short = gpt.prefix_embeddings(&cond, &[3, 4]).unwrap();
        let (pl, ps) = (long.size()[1], short.size()[1]);
        let pad = Tensor::zeros([1, pl - ps, cfg.dim], (Kind::Float, Device::Cpu));
        let batch = Tensor::cat(&[long.shallow_clone(), Tensor::cat(&[&pad, &short], 1)], 0);
        let valid = Tensor::ones([2, pl], (Kind::Bool, Device::Cpu));
        let _ = valid.get(1).narrow(0, 0, pl - ps).fill_(0);
        let mut cache = gpt.cache_for(2, pl).unwrap();
        gpt.forward_cached(&mut cache, &batch, Some(&valid)).unwrap();
        let step = gpt
            .audio_embeddings(&Tensor::from_slice(&[10i64, 10]).view([2, 1]), 0)
            .unwrap();
        let batched = gpt.forward_cached(&mut cache, &step, None).unwrap().last();

        let mut single = gpt.cache_for(1, ps).unwrap();
        gpt.forward_cached(&mut single, &short, None).unwrap();
        let alone = gpt
            .forward_cached(&mut single, &step.narrow(0, 1, 1), None)
            .unwrap()
            .last();
        let diff = max_diff(&batched.narrow(0, 1, 1), &alone);
        assert!(diff < 1e-5, "padded row differs from the unpadded run by {diff}");
    }

    #[test]
    fn bad_inputs_fail_cleanly() {
        let cfg = tiny_cfg();
        let gpt = Gpt::new(&random_weights(&cfg), cfg.clone()).unwrap();
        let cond = Tensor::randn([1, 3, cfg.dim], (Kind::Float, Device::Cpu));
        assert!(
            gpt.prefix_embeddings(&cond, &[0; 10]).is_err(),
            "too long text accepted"
        );
        assert!(gpt.prefix_embeddings(&cond, &[25]).is_err(), "out-of-vocab id accepted");
        let wrong = Tensor::randn([1, 3, cfg.dim + 1], (Kind::Float, Device::Cpu));
        assert!(
            gpt.prefix_embeddings(&wrong, &[1]).is_err(),
            "wrong latent width accepted"
        );
        let codes = Tensor::from_slice(&[1i64]).view([1, 1]);
        assert!(gpt.audio_embeddings(&codes, cfg.mel_positions).is_err());
        let mut cache = KvCache::new(&cfg, 1, 2, (Kind::Float, Device::Cpu)).unwrap();
        let x = Tensor::zeros([1, 3, cfg.dim], (Kind::Float, Device::Cpu));
        let err = gpt.forward_cached(&mut cache, &x, None).err().unwrap().to_string();
        assert!(err.contains("overflow"), "{err}");
    }

    #[test]
    fn missing_or_misshaped_weights_name_the_key() {
        let cfg = tiny_cfg();
        let mut bigger = cfg.clone();
        bigger.dim = 20;
        let err = Gpt::new(&random_weights(&cfg), bigger).err().unwrap().to_string();
        assert!(err.contains("gpt.gpt.h.0.ln_1.weight"), "{err}");
        let mut more = cfg.clone();
        more.layers = 3;
        let err = Gpt::new(&random_weights(&cfg), more).err().unwrap().to_string();
        assert!(err.contains("gpt.gpt.h.2"), "{err}");
    }
}
