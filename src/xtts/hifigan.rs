//! The HiFi-GAN decoder (spec 5): GPT latents + speaker embedding to a 24 kHz waveform.
//!
//! Every width and kernel comes from the state dict (the release and the test fixtures differ in
//! size); only what the file cannot express is fixed: ResBlock type 1 with dilations 1, 3, 5, and
//! upsampling strides of half the kernel, which together must multiply to the output hop.

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

use super::checkpoint::Weights;
use super::config::XttsConfig;

const PREFIX: &str = "hifigan_decoder.waveform_decoder";
const RESBLOCK_DILATIONS: [i64; 3] = [1, 3, 5];
const LRELU_SLOPE: f64 = 0.1;

/// The latent sequence at the GPT's rate is stretched twice before the generator: to hop-sized
/// frames (code stride / hop) and from the GPT's to the output sample rate (spec 5.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatentInterpolation {
    pub frames_per_latent: f64,
    pub rate_ratio: f64,
}

impl LatentInterpolation {
    pub fn from_config(cfg: &XttsConfig) -> Result<Self> {
        let a = &cfg.model_args;
        if a.output_hop_length <= 0 || a.input_sample_rate <= 0 || a.gpt_code_stride_len <= 0 {
            bail!("config.json: output_hop_length, input_sample_rate and gpt_code_stride_len must be positive");
        }
        Ok(Self {
            frames_per_latent: a.gpt_code_stride_len as f64 / a.output_hop_length as f64,
            rate_ratio: a.output_sample_rate as f64 / a.input_sample_rate as f64,
        })
    }

    /// Number of generator frames for `n` latents, computed as PyTorch does (double products,
    /// truncated).
    pub fn frames(&self, n: i64) -> i64 {
        let n1 = (n as f64 * self.frames_per_latent).floor() as i64;
        if self.rate_ratio == 1.0 {
            n1
        } else {
            (n1 as f64 * self.rate_ratio).floor() as i64
        }
    }

    /// Latents [1, N, D] to generator input [1, D, frames(N)].
    pub fn apply(&self, latents: &Tensor) -> Result<Tensor> {
        let z = latents.f_transpose(1, 2)?;
        let n = z.size()[2];
        let n1 = (n as f64 * self.frames_per_latent).floor() as i64;
        let z = z.f_upsample_linear1d([n1], false, self.frames_per_latent)?;
        if self.rate_ratio == 1.0 {
            return Ok(z);
        }
        let n2 = (n1 as f64 * self.rate_ratio).floor() as i64;
        Ok(z.f_upsample_linear1d([n2], false, self.rate_ratio)?)
    }
}

/// Stretches latents [1, N, D] in time by `1 / speed` (spec 4.5); pitch is unchanged.
/// Returns the input itself for speed 1.
pub fn apply_speed(latents: &Tensor, speed: f64) -> Result<Tensor> {
    if !speed.is_finite() || speed <= 0.0 {
        bail!("speed must be a positive number, got {speed}");
    }
    let length_scale = 1.0 / speed.max(0.05);
    if length_scale == 1.0 {
        return Ok(latents.shallow_clone());
    }
    let n = latents.size()[1];
    let out = (n as f64 * length_scale).floor() as i64;
    if out == 0 {
        bail!("speed {speed} leaves no latent of {n}");
    }
    Ok(latents
        .f_transpose(1, 2)?
        .f_upsample_linear1d([out], false, length_scale)?
        .f_transpose(1, 2)?)
}

fn leaky(x: &Tensor) -> Result<Tensor> {
    // Equals leaky_relu(x, 0.1) exactly; tch's leaky_relu is fixed at slope 0.01.
    Ok(x.f_maximum(&x.f_mul_scalar(LRELU_SLOPE)?)?)
}

/// Zeroes the padding of the shorter rows of a batch (None: no row is padded).
fn masked(x: Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        Some(mask) => Ok(x.f_mul(mask)?),
        None => Ok(x),
    }
}

/// Which positions of a right-padded batch are real, at each resolution of the generator:
/// [B, 1, T] of ones up to each row's length and zeros after. Zeroing the padding after every
/// conv gives each row exactly the zero padding its convs would see if it ran alone, so a row's
/// audio does not depend on the rows it is batched with.
struct PaddingMasks {
    /// Before the first upsampling, then after each; empty when every row has the same length.
    masks: Vec<Tensor>,
}

impl PaddingMasks {
    /// Masks for rows of `frames` frames each, padded to `longest`.
    fn new(frames: &[i64], longest: i64, strides: &[i64], device: tch::Device) -> Result<Self> {
        if frames.iter().all(|&t| t == longest) {
            return Ok(Self { masks: Vec::new() });
        }
        let mut masks = Vec::with_capacity(strides.len() + 1);
        let mut scale = 1;
        for step in 0..=strides.len() {
            let ends: Vec<i64> = frames.iter().map(|&t| t * scale).collect();
            let ends = Tensor::f_from_slice(&ends)?.f_to(device)?.f_view([-1, 1, 1])?;
            let positions = Tensor::f_arange(longest * scale, (Kind::Int64, device))?.f_view([1, 1, -1])?;
            masks.push(positions.f_lt_tensor(&ends)?.f_totype(Kind::Float)?);
            if let Some(stride) = strides.get(step) {
                scale *= stride;
            }
        }
        Ok(Self { masks })
    }

    /// The mask after `upsamplings` upsampling layers.
    fn at(&self, upsamplings: usize) -> Option<&Tensor> {
        self.masks.get(upsamplings)
    }
}

struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: i64,
    dilation: i64,
}

impl Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_conv1d(
            &self.weight,
            self.bias.as_ref(),
            [1],
            [self.padding],
            [self.dilation],
            1,
        )?)
    }
}

/// Loads a 1-D conv whose weight must be [out, in, k]; `bias` optional in the file layout.
fn conv(w: &Weights, prefix: &str, weight: Tensor, n_in: i64, dilation: i64, with_bias: bool) -> Result<Conv> {
    let size = weight.size();
    if size.len() != 3 || size[1] != n_in {
        bail!("{prefix}: weight has shape {size:?}, expected [out, {n_in}, k]");
    }
    let (out, k) = (size[0], size[2]);
    let bias = if with_bias {
        Some(w.get_shaped(&format!("{prefix}.bias"), &[out])?)
    } else {
        None
    };
    Ok(Conv {
        weight,
        bias,
        padding: (k * dilation - dilation) / 2,
        dilation,
    })
}

struct ResBlock {
    convs1: Vec<Conv>,
    convs2: Vec<Conv>,
}

impl ResBlock {
    fn new(w: &Weights, prefix: &str, channels: i64) -> Result<Self> {
        let count = (0..)
            .take_while(|j| w.contains(&format!("{prefix}.convs1.{j}.bias")))
            .count();
        if count != RESBLOCK_DILATIONS.len() {
            bail!(
                "{prefix}: found {count} dilated convs, expected {} (ResBlock type 1)",
                RESBLOCK_DILATIONS.len()
            );
        }
        let mut convs1 = Vec::new();
        let mut convs2 = Vec::new();
        for (j, &d) in RESBLOCK_DILATIONS.iter().enumerate() {
            let p1 = format!("{prefix}.convs1.{j}");
            convs1.push(conv(w, &p1, w.weight_norm(&p1)?, channels, d, true)?);
            let p2 = format!("{prefix}.convs2.{j}");
            convs2.push(conv(w, &p2, w.weight_norm(&p2)?, channels, 1, true)?);
        }
        Ok(Self { convs1, convs2 })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for (c1, c2) in self.convs1.iter().zip(&self.convs2) {
            let t = masked(c1.forward(&leaky(&x)?)?, mask)?;
            let t = c2.forward(&leaky(&t)?)?;
            // Not in place: `x` starts as the caller's tensor.
            x = masked(x.f_add(&t)?, mask)?;
        }
        Ok(x)
    }
}

struct Upsample {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
}

impl Upsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_conv_transpose1d(
            &self.weight,
            Some(&self.bias),
            [self.stride],
            [self.padding],
            [0],
            1,
            [1],
        )?)
    }
}

struct Stage {
    up: Upsample,
    cond: Option<Conv>,
    resblocks: Vec<ResBlock>,
}

/// The generator with its speaker conditioning and the latent interpolation in front.
pub struct HifiGan {
    conv_pre: Conv,
    cond_layer: Conv,
    stages: Vec<Stage>,
    conv_post: Conv,
    interpolation: LatentInterpolation,
    latent_dim: i64,
    speaker_dim: i64,
}

impl HifiGan {
    pub fn new(w: &Weights, cfg: &XttsConfig) -> Result<Self> {
        let a = &cfg.model_args;
        let (latent_dim, speaker_dim) = (a.decoder_input_dim, a.d_vector_dim);
        let conv_pre = conv(
            w,
            &format!("{PREFIX}.conv_pre"),
            w.weight_norm(&format!("{PREFIX}.conv_pre"))?,
            latent_dim,
            1,
            true,
        )?;
        let mut channels = conv_pre.weight.size()[0];
        let cond_layer = conv(
            w,
            &format!("{PREFIX}.cond_layer"),
            w.get_shaped(&format!("{PREFIX}.cond_layer.weight"), &[channels, speaker_dim, 1])?,
            speaker_dim,
            1,
            true,
        )?;

        let num_ups = (0..)
            .take_while(|i| w.contains(&format!("{PREFIX}.ups.{i}.bias")))
            .count();
        let num_resblocks = (0..)
            .take_while(|r| w.contains(&format!("{PREFIX}.resblocks.{r}.convs1.0.bias")))
            .count();
        if num_ups == 0 || num_resblocks == 0 || num_resblocks % num_ups != 0 {
            bail!("{PREFIX}: {num_ups} upsampling layers and {num_resblocks} resblocks do not form a HiFi-GAN");
        }
        let per_stage = num_resblocks / num_ups;

        let mut stages = Vec::new();
        let mut total_stride = 1;
        for i in 0..num_ups {
            let p = format!("{PREFIX}.ups.{i}");
            // ConvTranspose1d weight: [in, out, k].
            let weight = w.weight_norm(&p)?;
            let size = weight.size();
            if size.len() != 3 || size[0] != channels {
                bail!("{p}: weight has shape {size:?}, expected [{channels}, out, k]");
            }
            let (out, k) = (size[1], size[2]);
            if k % 2 != 0 {
                bail!("{p}: odd kernel {k}; the stride (kernel / 2) cannot be inferred");
            }
            let stride = k / 2;
            total_stride *= stride;
            let up = Upsample {
                weight,
                bias: w.get_shaped(&format!("{p}.bias"), &[out])?,
                stride,
                padding: (k - stride) / 2,
            };
            let cond = if a.cond_d_vector_in_each_upsampling_layer {
                let pc = format!("{PREFIX}.conds.{i}");
                Some(conv(
                    w,
                    &pc,
                    w.get_shaped(&format!("{pc}.weight"), &[out, speaker_dim, 1])?,
                    speaker_dim,
                    1,
                    true,
                )?)
            } else {
                None
            };
            let resblocks = (0..per_stage)
                .map(|j| ResBlock::new(w, &format!("{PREFIX}.resblocks.{}", i * per_stage + j), out))
                .collect::<Result<Vec<_>>>()?;
            stages.push(Stage { up, cond, resblocks });
            channels = out;
        }
        if total_stride != a.output_hop_length {
            bail!(
                "{PREFIX}: the upsampling layers multiply to {total_stride}, config.json's output_hop_length is {}",
                a.output_hop_length
            );
        }
        let post = format!("{PREFIX}.conv_post");
        let post_weight = w.weight_norm(&post)?;
        let conv_post = conv(w, &post, post_weight, channels, 1, w.contains(&format!("{post}.bias")))?;
        if conv_post.weight.size()[0] != 1 {
            bail!(
                "{post}: expected one output channel, weight is {:?}",
                conv_post.weight.size()
            );
        }
        Ok(Self {
            conv_pre,
            cond_layer,
            stages,
            conv_post,
            interpolation: LatentInterpolation::from_config(cfg)?,
            latent_dim,
            speaker_dim,
        })
    }

    pub fn interpolation(&self) -> LatentInterpolation {
        self.interpolation
    }

    /// Width of the latents it vocodes.
    pub fn latent_dim(&self) -> i64 {
        self.latent_dim
    }

    /// Width of the speaker embeddings it takes.
    pub fn speaker_dim(&self) -> i64 {
        self.speaker_dim
    }

    /// Where its weights live.
    pub fn device(&self) -> tch::Device {
        self.conv_post.weight.device()
    }

    /// Output samples per generator frame (the product of the strides).
    pub fn hop(&self) -> i64 {
        self.stages.iter().map(|s| s.up.stride).product()
    }

    /// Checks a speaker embedding [1, d, 1] and moves it to the model's device.
    pub fn speaker(&self, g: &Tensor) -> Result<Tensor> {
        if g.size() != [1, self.speaker_dim, 1] {
            bail!(
                "speaker embedding has shape {:?}, expected [1, {}, 1]",
                g.size(),
                self.speaker_dim
            );
        }
        Ok(g.f_totype(Kind::Float)?.f_to(self.conv_pre.weight.device())?)
    }

    /// Generator on already interpolated frames `z` [1, D, T]: waveform [1, 1, hop · T].
    pub fn generate(&self, z: &Tensor, g: &Tensor) -> Result<Tensor> {
        self.generate_batch(&[(z, g)])
    }

    /// The generator on several inputs in one forward: each `(z, g)` is frames [1, D, T] with
    /// its own speaker embedding. Returns [B, 1, hop · T_max]: row i is input i's waveform in its
    /// first hop · T_i samples (shorter inputs are padded, and the padding masked at every conv,
    /// so each row equals the input's render alone up to float rounding).
    pub fn generate_batch(&self, inputs: &[(&Tensor, &Tensor)]) -> Result<Tensor> {
        self.generate_padded(inputs, 0)
    }

    /// [`Self::generate_batch`] with every input padded to at least `frames` frames: a forward
    /// of a shape seen before. On a CPU each new input shape costs oneDNN a one-off set-up of
    /// every convolution, several times the forward itself, so the engine keeps its shapes few.
    pub fn generate_padded(&self, inputs: &[(&Tensor, &Tensor)], frames: i64) -> Result<Tensor> {
        if inputs.is_empty() {
            bail!("no vocoder input");
        }
        let device = self.conv_pre.weight.device();
        let mut lengths = Vec::with_capacity(inputs.len());
        for (z, _) in inputs {
            let size = z.size();
            if size.len() != 3 || size[0] != 1 || size[1] != self.latent_dim || size[2] == 0 {
                bail!(
                    "vocoder input has shape {size:?}, expected [1, {}, T > 0]",
                    self.latent_dim
                );
            }
            lengths.push(size[2]);
        }
        let speakers = inputs
            .iter()
            .map(|(_, g)| self.speaker(g))
            .collect::<Result<Vec<_>>>()?;
        let longest = lengths.iter().copied().max().unwrap_or(0).max(frames);
        if inputs.len() == 1 && lengths[0] == longest {
            return self.forward(
                &inputs[0].0.f_to(device)?,
                &speakers[0],
                &PaddingMasks { masks: Vec::new() },
            );
        }
        let padded = inputs
            .iter()
            .zip(&lengths)
            .map(|((z, _), &t)| Ok(z.f_to(device)?.f_constant_pad_nd([0, longest - t])?))
            .collect::<Result<Vec<_>>>()?;
        let strides: Vec<i64> = self.stages.iter().map(|s| s.up.stride).collect();
        let masks = PaddingMasks::new(&lengths, longest, &strides, device)?;
        self.forward(&Tensor::f_cat(&padded, 0)?, &Tensor::f_cat(&speakers, 0)?, &masks)
    }

    fn forward(&self, z: &Tensor, g: &Tensor, masks: &PaddingMasks) -> Result<Tensor> {
        let o = self.conv_pre.forward(z)?.f_add(&self.cond_layer.forward(g)?)?;
        let mut o = masked(o, masks.at(0))?;
        for (i, stage) in self.stages.iter().enumerate() {
            let mask = masks.at(i + 1);
            o = stage.up.forward(&leaky(&o)?)?;
            if let Some(cond) = &stage.cond {
                o = o.f_add(&cond.forward(g)?)?;
            }
            o = masked(o, mask)?;
            let mut sum = stage.resblocks[0].forward(&o, mask)?;
            for rb in &stage.resblocks[1..] {
                sum = sum.f_add(&rb.forward(&o, mask)?)?;
            }
            o = sum.f_div_scalar(stage.resblocks.len() as f64)?;
        }
        // The last activation uses the default slope 0.01.
        Ok(self.conv_post.forward(&o.f_leaky_relu()?)?.f_tanh()?)
    }

    /// Latents [1, N, D] to a waveform [1, 1, hop · frames(N)] (interpolation + generator).
    pub fn decode(&self, latents: &Tensor, g: &Tensor) -> Result<Tensor> {
        let size = latents.size();
        if size.len() != 3 || size[0] != 1 || size[2] != self.latent_dim {
            bail!("latents have shape {size:?}, expected [1, N, {}]", self.latent_dim);
        }
        if self.interpolation.frames(size[1]) == 0 {
            bail!("{} latents are too few to vocode", size[1]);
        }
        self.generate(&self.interpolation.apply(latents)?, g)
            .context("vocoding the latents")
    }
}
