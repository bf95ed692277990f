//! GPT conditioning of XTTS v2: the conditioning encoder (a 1x1 conv followed by self-attention
//! blocks over mel frames) and the perceiver resampler that squeezes any number of frames into a
//! fixed set of latents. Sizes come from `model_args` and the tensor shapes.

use anyhow::{bail, ensure, Result};
use tch::Tensor;

use super::checkpoint::Weights;
use super::config::XttsConfig;

const ENCODER: &str = "gpt.conditioning_encoder";
const PERCEIVER: &str = "gpt.conditioning_perceiver";

/// Mel bins of the conditioning input.
pub const COND_MELS: i64 = 80;
/// Attention heads of the perceiver: fixed in the model definition, not in the config.
pub const PERCEIVER_HEADS: i64 = 8;

/// Number of consecutive `{prefix}.{i}.{suffix}` entries starting at 0.
fn count_indexed(weights: &Weights, prefix: &str, suffix: &str) -> usize {
    (0..)
        .take_while(|i| weights.contains(&format!("{prefix}.{i}.{suffix}")))
        .count()
}

/// Group count of the Tortoise `normalization()` helper: 32, fewer for narrow layers, halved
/// until it divides the channels.
pub fn norm_groups(channels: i64) -> Result<i64> {
    let mut groups = if channels <= 16 {
        8
    } else if channels <= 64 {
        16
    } else {
        32
    };
    while channels % groups != 0 {
        groups /= 2;
    }
    ensure!(groups > 2, "no valid GroupNorm group count for {channels} channels");
    Ok(groups)
}

fn conv1x1(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Tensor {
    x.conv1d(weight, Some(bias), [1], [0], [1], 1)
}

/// Self-attention over time with the legacy head layout (heads split before q/k/v), and the
/// residual taken from the normalised input.
#[derive(Debug)]
struct AttentionBlock {
    norm_weight: Tensor,
    norm_bias: Tensor,
    groups: i64,
    qkv_weight: Tensor,
    qkv_bias: Tensor,
    proj_weight: Tensor,
    proj_bias: Tensor,
    heads: i64,
}

impl AttentionBlock {
    fn new(weights: &Weights, prefix: &str, channels: i64, heads: i64) -> Result<Self> {
        Ok(Self {
            norm_weight: weights.get_shaped(&format!("{prefix}.norm.weight"), &[channels])?,
            norm_bias: weights.get_shaped(&format!("{prefix}.norm.bias"), &[channels])?,
            groups: norm_groups(channels)?,
            qkv_weight: weights.get_shaped(&format!("{prefix}.qkv.weight"), &[3 * channels, channels, 1])?,
            qkv_bias: weights.get_shaped(&format!("{prefix}.qkv.bias"), &[3 * channels])?,
            proj_weight: weights.get_shaped(&format!("{prefix}.proj_out.weight"), &[channels, channels, 1])?,
            proj_bias: weights.get_shaped(&format!("{prefix}.proj_out.bias"), &[channels])?,
            heads,
        })
    }

    /// `[B, C, T]` → `[B, C, T]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, t) = x.size3().expect("attention block input is [B, C, T]");
        let xn = x.group_norm(self.groups, Some(&self.norm_weight), Some(&self.norm_bias), 1e-5, true);
        let qkv = conv1x1(&xn, &self.qkv_weight, &self.qkv_bias);
        let ch = c / self.heads;
        let qkv = qkv.reshape([b * self.heads, 3 * ch, t]);
        let (q, k, v) = (qkv.narrow(1, 0, ch), qkv.narrow(1, ch, ch), qkv.narrow(1, 2 * ch, ch));
        // scaling both sides by ch^-1/4 mirrors the reference's float rounding
        let scale = 1.0 / (ch as f64).sqrt().sqrt();
        let w = (q * scale)
            .transpose(1, 2)
            .bmm(&(k * scale))
            .softmax(-1, tch::Kind::Float);
        let a = v.bmm(&w.transpose(1, 2)).reshape([b, c, t]);
        xn + conv1x1(&a, &self.proj_weight, &self.proj_bias)
    }
}

/// Mel frames `[B, 80, T]` → features `[B, D, T]`.
#[derive(Debug)]
pub struct ConditioningEncoder {
    init_weight: Tensor,
    init_bias: Tensor,
    blocks: Vec<AttentionBlock>,
}

impl ConditioningEncoder {
    pub fn new(weights: &Weights, cfg: &XttsConfig) -> Result<Self> {
        let dim = cfg.model_args.gpt_n_model_channels;
        let heads = cfg.model_args.gpt_n_heads;
        ensure!(
            heads > 0 && dim % heads == 0,
            "gpt_n_model_channels {dim} is not divisible by gpt_n_heads {heads}"
        );
        let n_blocks = count_indexed(weights, &format!("{ENCODER}.attn"), "norm.weight");
        if n_blocks == 0 {
            bail!("no conditioning encoder attention blocks ('{ENCODER}.attn.0.norm.weight' missing)");
        }
        let blocks = (0..n_blocks)
            .map(|i| AttentionBlock::new(weights, &format!("{ENCODER}.attn.{i}"), dim, heads))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            init_weight: weights.get_shaped(&format!("{ENCODER}.init.weight"), &[dim, COND_MELS, 1])?,
            init_bias: weights.get_shaped(&format!("{ENCODER}.init.bias"), &[dim])?,
            blocks,
        })
    }

    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let dims = mel.size();
        ensure!(
            dims.len() == 3 && dims[1] == COND_MELS,
            "conditioning encoder expects [B, {COND_MELS}, T], got {dims:?}"
        );
        let mut h = conv1x1(mel, &self.init_weight, &self.init_bias);
        for block in &self.blocks {
            h = block.forward(&h);
        }
        Ok(h)
    }
}

/// One perceiver layer: cross-attention of the latents over `[latents; context]`, then a
/// GEGLU feed-forward, both residual.
#[derive(Debug)]
struct PerceiverLayer {
    to_q: Tensor,
    to_kv: Tensor,
    to_out: Tensor,
    ff_in_weight: Tensor,
    ff_in_bias: Tensor,
    ff_out_weight: Tensor,
    ff_out_bias: Tensor,
    inner: i64,
}

impl PerceiverLayer {
    fn new(weights: &Weights, prefix: &str, dim: i64) -> Result<Self> {
        let to_q = weights.get(&format!("{prefix}.0.to_q.weight"))?;
        let inner = to_q.size()[0];
        ensure!(
            inner % PERCEIVER_HEADS == 0,
            "{prefix}.0.to_q.weight: {inner} rows do not split into {PERCEIVER_HEADS} heads"
        );
        let to_q = weights.get_shaped(&format!("{prefix}.0.to_q.weight"), &[inner, dim])?;
        let ff_in_bias = weights.get(&format!("{prefix}.1.0.bias"))?;
        let ff2 = ff_in_bias.size()[0];
        ensure!(ff2 % 2 == 0, "{prefix}.1.0.bias: odd GEGLU width {ff2}");
        Ok(Self {
            to_q,
            to_kv: weights.get_shaped(&format!("{prefix}.0.to_kv.weight"), &[2 * inner, dim])?,
            to_out: weights.get_shaped(&format!("{prefix}.0.to_out.weight"), &[dim, inner])?,
            ff_in_weight: weights.get_shaped(&format!("{prefix}.1.0.weight"), &[ff2, dim])?,
            ff_in_bias,
            ff_out_weight: weights.get_shaped(&format!("{prefix}.1.2.weight"), &[dim, ff2 / 2])?,
            ff_out_bias: weights.get_shaped(&format!("{prefix}.1.2.bias"), &[dim])?,
            inner,
        })
    }

    /// `[B, N, H*dh]` → `[B, H, N, dh]`.
    fn split_heads(x: &Tensor) -> Tensor {
        let (b, n, _) = x.size3().expect("[B, N, C]");
        x.reshape([b, n, PERCEIVER_HEADS, -1]).transpose(1, 2)
    }

    fn forward(&self, latents: &Tensor, context: &Tensor) -> Tensor {
        let (b, n, _) = latents.size3().expect("latents are [B, N, D]");
        let ctx = Tensor::cat(&[latents, context], 1);
        let q = latents.linear::<Tensor>(&self.to_q, None);
        let kv = ctx.linear::<Tensor>(&self.to_kv, None);
        let (k, v) = (kv.narrow(-1, 0, self.inner), kv.narrow(-1, self.inner, self.inner));
        let (q, k, v) = (Self::split_heads(&q), Self::split_heads(&k), Self::split_heads(&v));
        let dim_head = self.inner / PERCEIVER_HEADS;
        let sim = q.matmul(&k.transpose(-1, -2)) * (dim_head as f64).powf(-0.5);
        let out = sim.softmax(-1, tch::Kind::Float).matmul(&v);
        let out = out.transpose(1, 2).reshape([b, n, self.inner]);
        let latents = out.linear::<Tensor>(&self.to_out, None) + latents;

        let u = latents.linear(&self.ff_in_weight, Some(&self.ff_in_bias));
        let half = u.size()[2] / 2;
        let gated = u.narrow(-1, 0, half) * u.narrow(-1, half, half).gelu("none");
        gated.linear(&self.ff_out_weight, Some(&self.ff_out_bias)) + latents
    }
}

/// Encoder features `[B, T, D]` → `[B, N, D]` latents (N = 32 in the release).
#[derive(Debug)]
pub struct PerceiverResampler {
    latents: Tensor,
    layers: Vec<PerceiverLayer>,
    gamma: Tensor,
    dim: i64,
}

impl PerceiverResampler {
    pub fn new(weights: &Weights, cfg: &XttsConfig) -> Result<Self> {
        if !cfg.model_args.gpt_use_perceiver_resampler {
            bail!("config: gpt_use_perceiver_resampler is false (XTTS v1 layout), which is not supported");
        }
        let dim = cfg.model_args.gpt_n_model_channels;
        let latents = weights.get(&format!("{PERCEIVER}.latents"))?;
        let n_latents = latents.size()[0];
        let latents = weights.get_shaped(&format!("{PERCEIVER}.latents"), &[n_latents, dim])?;
        let n_layers = count_indexed(weights, &format!("{PERCEIVER}.layers"), "0.to_q.weight");
        if n_layers == 0 {
            bail!("no perceiver layers ('{PERCEIVER}.layers.0.0.to_q.weight' missing)");
        }
        let layers = (0..n_layers)
            .map(|i| PerceiverLayer::new(weights, &format!("{PERCEIVER}.layers.{i}"), dim))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            latents,
            layers,
            gamma: weights.get_shaped(&format!("{PERCEIVER}.norm.gamma"), &[dim])?,
            dim,
        })
    }

    /// Number of output latents.
    pub fn num_latents(&self) -> i64 {
        self.latents.size()[0]
    }

    pub fn forward(&self, context: &Tensor) -> Result<Tensor> {
        let dims = context.size();
        ensure!(
            dims.len() == 3 && dims[2] == self.dim,
            "perceiver expects [B, T, {}], got {dims:?}",
            self.dim
        );
        let mut lat = self.latents.unsqueeze(0).expand([dims[0], -1, -1], false);
        for layer in &self.layers {
            lat = layer.forward(&lat, context);
        }
        // RMSNorm: unit L2 norm per latent, times sqrt(D) and the learned gain
        let norm = lat.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12);
        Ok(lat / norm * (self.dim as f64).sqrt() * &self.gamma)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_counts_follow_the_tortoise_rule() {
        assert_eq!(norm_groups(1024).unwrap(), 32);
        assert_eq!(norm_groups(64).unwrap(), 16);
        assert_eq!(norm_groups(16).unwrap(), 8);
        assert_eq!(norm_groups(48).unwrap(), 16);
        assert_eq!(norm_groups(96).unwrap(), 32);
        assert_eq!(norm_groups(40).unwrap(), 8);
        assert!(norm_groups(6).is_err());
    }
}
