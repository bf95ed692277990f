//! Speaker encoder of the XTTS HiFi-GAN decoder: an SE-ResNet over a log-mel spectrogram of
//! 16 kHz audio with attentive statistics pooling (H/ASP). The pre-emphasis kernel, window and
//! mel filterbank are read from the checkpoint; the layer widths and block counts are inferred
//! from the state dict, so narrow test models load as well as the release.

use anyhow::{bail, ensure, Context, Result};
use tch::Tensor;

use super::checkpoint::Weights;
use super::config::XttsConfig;

const PREFIX: &str = "hifigan_decoder.speaker_encoder";

/// The encoder's audio rate and hop: fixed in the decoder definition, not stored anywhere.
pub const SPEAKER_SAMPLE_RATE: u32 = 16000;
const HOP: i64 = 160;
const EPS: f64 = 1e-5;

/// Eval-mode BatchNorm (1d or 2d) with its running statistics.
#[derive(Debug)]
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    mean: Tensor,
    var: Tensor,
}

impl BatchNorm {
    fn new(weights: &Weights, prefix: &str, channels: i64) -> Result<Self> {
        let get = |name: &str| weights.get_shaped(&format!("{prefix}.{name}"), &[channels]);
        Ok(Self {
            weight: get("weight")?,
            bias: get("bias")?,
            mean: get("running_mean")?,
            var: get("running_var")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.mean),
            Some(&self.var),
            false,
            0.1,
            EPS,
            true,
        )
    }
}

/// Squeeze-and-excitation basic block: conv-ReLU-BN, conv-BN, channel gate, residual, ReLU.
#[derive(Debug)]
struct SeBlock {
    conv1: Tensor,
    bn1: BatchNorm,
    conv2: Tensor,
    bn2: BatchNorm,
    se_fc1: (Tensor, Tensor),
    se_fc2: (Tensor, Tensor),
    downsample: Option<(Tensor, BatchNorm)>,
    stride: i64,
}

impl SeBlock {
    fn new(weights: &Weights, prefix: &str, in_ch: i64, stride: i64) -> Result<Self> {
        let conv1 = weights.get(&format!("{prefix}.conv1.weight"))?;
        let planes = conv1.size()[0];
        let conv1 = weights.get_shaped(&format!("{prefix}.conv1.weight"), &[planes, in_ch, 3, 3])?;
        let se_fc1_w = weights.get(&format!("{prefix}.se.fc.0.weight"))?;
        let reduced = se_fc1_w.size()[0];
        let se_fc1_w = weights.get_shaped(&format!("{prefix}.se.fc.0.weight"), &[reduced, planes])?;
        let downsample = if weights.contains(&format!("{prefix}.downsample.0.weight")) {
            Some((
                weights.get_shaped(&format!("{prefix}.downsample.0.weight"), &[planes, in_ch, 1, 1])?,
                BatchNorm::new(weights, &format!("{prefix}.downsample.1"), planes)?,
            ))
        } else {
            ensure!(
                stride == 1 && in_ch == planes,
                "{prefix}: changes shape ({in_ch} -> {planes} channels, stride {stride}) but has no downsample"
            );
            None
        };
        Ok(Self {
            conv1,
            bn1: BatchNorm::new(weights, &format!("{prefix}.bn1"), planes)?,
            conv2: weights.get_shaped(&format!("{prefix}.conv2.weight"), &[planes, planes, 3, 3])?,
            bn2: BatchNorm::new(weights, &format!("{prefix}.bn2"), planes)?,
            se_fc1: (
                se_fc1_w,
                weights.get_shaped(&format!("{prefix}.se.fc.0.bias"), &[reduced])?,
            ),
            se_fc2: (
                weights.get_shaped(&format!("{prefix}.se.fc.2.weight"), &[planes, reduced])?,
                weights.get_shaped(&format!("{prefix}.se.fc.2.bias"), &[planes])?,
            ),
            downsample,
            stride,
        })
    }

    fn planes(&self) -> i64 {
        self.conv1.size()[0]
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let s = [self.stride, self.stride];
        let o = x.conv2d::<Tensor>(&self.conv1, None, s, [1, 1], [1, 1], 1).relu();
        let o = self.bn1.forward(&o);
        let o = o.conv2d::<Tensor>(&self.conv2, None, [1, 1], [1, 1], [1, 1], 1);
        let o = self.bn2.forward(&o);
        let (b, c) = (o.size()[0], o.size()[1]);
        let pooled = o.mean_dim(&[2i64, 3][..], false, tch::Kind::Float);
        let gate = pooled
            .linear(&self.se_fc1.0, Some(&self.se_fc1.1))
            .relu()
            .linear(&self.se_fc2.0, Some(&self.se_fc2.1))
            .sigmoid()
            .view([b, c, 1, 1]);
        let o = o * gate;
        let residual = match &self.downsample {
            Some((conv, bn)) => bn.forward(&x.conv2d::<Tensor>(conv, None, s, [0, 0], [1, 1], 1)),
            None => x.shallow_clone(),
        };
        (o + residual).relu()
    }
}

/// 16 kHz audio `[1, L]` → L2-normalised speaker embedding `[1, d, 1]`.
#[derive(Debug)]
pub struct SpeakerEncoder {
    preemphasis: Tensor,
    window: Tensor,
    filterbank: Tensor,
    n_fft: i64,
    conv1: (Tensor, Tensor),
    bn1: BatchNorm,
    layers: Vec<Vec<SeBlock>>,
    attn_conv1: (Tensor, Tensor),
    attn_bn: BatchNorm,
    attn_conv2: (Tensor, Tensor),
    fc: (Tensor, Tensor),
}

impl SpeakerEncoder {
    pub fn new(weights: &Weights, cfg: &XttsConfig) -> Result<Self> {
        let p = |name: &str| format!("{PREFIX}.{name}");
        let preemphasis = weights.get_shaped(&p("torch_spec.0.filter"), &[1, 1, 2])?;
        let window = weights.get(&p("torch_spec.1.spectrogram.window"))?;
        ensure!(
            window.dim() == 1,
            "{}: window must be 1-D, got {:?}",
            p("torch_spec.1.spectrogram.window"),
            window.size()
        );
        let filterbank = weights.get(&p("torch_spec.1.mel_scale.fb"))?;
        let fb_dims = filterbank.size();
        ensure!(
            fb_dims.len() == 2 && fb_dims[0] >= 2,
            "{}: expected [n_freqs, n_mels], got {fb_dims:?}",
            p("torch_spec.1.mel_scale.fb")
        );
        let n_fft = (fb_dims[0] - 1) * 2;
        let n_mels = fb_dims[1];
        ensure!(
            window.size()[0] <= n_fft,
            "speaker encoder window of {} is longer than n_fft {n_fft}",
            window.size()[0]
        );

        let conv1_w = weights.get(&p("conv1.weight"))?;
        let stem = conv1_w.size()[0];
        let conv1 = (
            weights.get_shaped(&p("conv1.weight"), &[stem, 1, 3, 3])?,
            weights.get_shaped(&p("conv1.bias"), &[stem])?,
        );
        let bn1 = BatchNorm::new(weights, &p("bn1"), stem)?;

        // four stages; the first keeps the resolution, the others halve it in their first block
        let mut layers = Vec::new();
        let mut channels = stem;
        let mut freq = n_mels;
        for layer in 1..=4 {
            let stage = p(&format!("layer{layer}"));
            let n_blocks = (0..)
                .take_while(|b| weights.contains(&format!("{stage}.{b}.conv1.weight")))
                .count();
            if n_blocks == 0 {
                bail!("speaker encoder: no blocks in '{stage}' ('{stage}.0.conv1.weight' missing)");
            }
            let mut blocks = Vec::with_capacity(n_blocks);
            for b in 0..n_blocks {
                let stride = if layer > 1 && b == 0 { 2 } else { 1 };
                let block = SeBlock::new(weights, &format!("{stage}.{b}"), channels, stride)
                    .with_context(|| format!("speaker encoder block {stage}.{b}"))?;
                channels = block.planes();
                blocks.push(block);
            }
            if layer > 1 {
                freq = (freq + 1) / 2;
            }
            layers.push(blocks);
        }

        // attention pooling over channel-major (channel, frequency) features
        let features = channels * freq;
        let a0 = weights.get(&p("attention.0.weight"))?;
        let hidden = a0.size()[0];
        let attn_conv1 = (
            weights.get_shaped(&p("attention.0.weight"), &[hidden, features, 1])?,
            weights.get_shaped(&p("attention.0.bias"), &[hidden])?,
        );
        let attn_bn = BatchNorm::new(weights, &p("attention.2"), hidden)?;
        let attn_conv2 = (
            weights.get_shaped(&p("attention.3.weight"), &[features, hidden, 1])?,
            weights.get_shaped(&p("attention.3.bias"), &[features])?,
        );
        let d = cfg.model_args.d_vector_dim;
        let fc = (
            weights.get_shaped(&p("fc.weight"), &[d, 2 * features])?,
            weights.get_shaped(&p("fc.bias"), &[d])?,
        );
        Ok(Self {
            preemphasis,
            window,
            filterbank,
            n_fft,
            conv1,
            bn1,
            layers,
            attn_conv1,
            attn_bn,
            attn_conv2,
            fc,
        })
    }

    /// Log-mel features after instance norm: `[1, L]` → `[1, n_mels, 1 + L / 160]`.
    pub fn features(&self, audio: &Tensor) -> Result<Tensor> {
        let dims = audio.size();
        ensure!(
            dims.len() == 2 && dims[1] >= 2,
            "speaker encoder expects [B, samples], got {dims:?}"
        );
        // pre-emphasis y[n] = x[n] - 0.97 x[n-1], with x[-1] reflected from x[1]
        let x = audio
            .unsqueeze(1)
            .reflection_pad1d([1, 0])
            .conv1d::<Tensor>(&self.preemphasis, None, [1], [0], [1], 1)
            .squeeze_dim(1);
        let spec =
            super::dsp::power_spectrogram(&x, self.n_fft, HOP, &self.window).context("speaker encoder spectrogram")?;
        let mel = super::dsp::apply_filterbank(&spec, &self.filterbank);
        let mel = (mel + 1e-6).log();
        Ok(mel.instance_norm::<Tensor>(None, None, None, None, true, 0.1, EPS, true))
    }

    pub fn forward(&self, audio: &Tensor) -> Result<Tensor> {
        let x = self.features(audio)?.unsqueeze(1);
        let x = x
            .conv2d(&self.conv1.0, Some(&self.conv1.1), [1, 1], [1, 1], [1, 1], 1)
            .relu();
        let mut x = self.bn1.forward(&x);
        for block in self.layers.iter().flatten() {
            x = block.forward(&x);
        }
        let (b, frames) = (x.size()[0], x.size()[3]);
        let x = x.reshape([b, -1, frames]);
        let hidden = x
            .conv1d(&self.attn_conv1.0, Some(&self.attn_conv1.1), [1], [0], [1], 1)
            .relu();
        let w = self
            .attn_bn
            .forward(&hidden)
            .conv1d(&self.attn_conv2.0, Some(&self.attn_conv2.1), [1], [0], [1], 1)
            .softmax(2, tch::Kind::Float);
        let mu = (&x * &w).sum_dim_intlist(2, false, tch::Kind::Float);
        let sg = ((x.pow_tensor_scalar(2) * &w).sum_dim_intlist(2, false, tch::Kind::Float) - mu.pow_tensor_scalar(2))
            .clamp_min(1e-5)
            .sqrt();
        let e = Tensor::cat(&[mu, sg], 1).linear(&self.fc.0, Some(&self.fc.1));
        let norm = e.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        Ok((e / norm).unsqueeze(-1))
    }
}
