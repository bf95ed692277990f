//! Audio front-ends of the voice conditioning: the band-limited sinc resampler of torchaudio,
//! the STFT power spectrogram, the mel filterbank of the GPT conditioning and its log-mel.
//! Everything is fp32 on the device of its inputs; the numerics follow torchaudio so that the
//! conditioning matches the reference to float rounding.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::f64::consts::PI;
use std::sync::Mutex;

use anyhow::{bail, ensure, Result};
use tch::{Device, Kind, Tensor};

/// Zero crossings of the sinc kept on each side (torchaudio `lowpass_filter_width`).
const LOWPASS_WIDTH: f64 = 6.0;
/// Cut-off as a fraction of the lower Nyquist frequency (torchaudio `rolloff`).
const ROLLOFF: f64 = 0.99;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Polyphase windowed-sinc resampler between two integer rates (torchaudio
/// `functional.resample`, method `sinc_interp_hann`, width 6, rolloff 0.99).
#[derive(Debug)]
pub struct SincResampler {
    /// Input rate divided by gcd: the conv stride.
    orig: i64,
    /// Output rate divided by gcd: the number of phases.
    new: i64,
    /// Half-width of the filter in input samples.
    width: i64,
    /// `[new, 1, 2 * width + orig]`, or None when both rates are equal.
    kernel: Option<Tensor>,
}

impl SincResampler {
    pub fn new(orig_rate: u32, new_rate: u32, device: Device) -> Result<Self> {
        ensure!(
            orig_rate > 0 && new_rate > 0,
            "sample rates must be positive (got {orig_rate} -> {new_rate})"
        );
        if orig_rate == new_rate {
            return Ok(Self {
                orig: 1,
                new: 1,
                width: 0,
                kernel: None,
            });
        }
        let g = gcd(orig_rate as u64, new_rate as u64);
        let orig = (orig_rate as u64 / g) as i64;
        let new = (new_rate as u64 / g) as i64;
        let base = orig.min(new) as f64 * ROLLOFF;
        let width = (LOWPASS_WIDTH * orig as f64 / base).ceil() as i64;
        // torchaudio builds the kernel in the waveform's dtype (float32) with torch ops; the
        // same ops here on the CPU give the same bits, which float64 maths would not.
        let cpu = (Kind::Float, Device::Cpu);
        let idx = Tensor::arange_start(-width, width + orig, cpu).view([1, 1, -1]) / orig as f64;
        let phase = Tensor::arange_start_step(0, -new, -1, cpu).view([-1, 1, 1]) / new as f64;
        let t = ((phase + idx) * base).clamp(-LOWPASS_WIDTH, LOWPASS_WIDTH);
        let window = (&t * PI / LOWPASS_WIDTH / 2.0).cos().pow_tensor_scalar(2);
        let t = t * PI;
        let sinc = (t.sin() / &t).where_self(&t.ne(0.0), &t.ones_like());
        let kernel = (sinc * (window * (base / orig as f64))).to_device(device);
        Ok(Self {
            orig,
            new,
            width,
            kernel: Some(kernel),
        })
    }

    /// Resamples `x` of shape `[B, L]` (or `[L]`) along its last axis.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let Some(kernel) = &self.kernel else {
            return x.shallow_clone();
        };
        let shape = x.size();
        let len = *shape.last().unwrap_or(&0);
        let batch = x.reshape([-1, len]);
        let rows = batch.size()[0];
        let padded = batch.constant_pad_nd([self.width, self.width + self.orig]).unsqueeze(1);
        let y = padded.conv1d(kernel, None::<Tensor>, [self.orig], [0], [1], 1);
        let y = y.transpose(1, 2).reshape([rows, -1]);
        let target = (self.new as f64 * len as f64 / self.orig as f64).ceil() as i64;
        let y = y.narrow(1, 0, target.min(y.size()[1]));
        let mut out_shape = shape[..shape.len() - 1].to_vec();
        out_shape.push(-1);
        y.reshape(out_shape.as_slice())
    }
}

/// Resamplers by rate pair, built on first use and kept: building the 22.05 -> 16 kHz kernel
/// is far more work than applying it to a clip.
#[derive(Debug)]
pub struct ResamplerCache {
    device: Device,
    kernels: Mutex<HashMap<(u32, u32), SincResampler>>,
}

impl ResamplerCache {
    pub fn new(device: Device) -> Self {
        Self {
            device,
            kernels: Mutex::new(HashMap::new()),
        }
    }

    /// `x` `[B, L]` from `orig_rate` to `new_rate`.
    pub fn resample(&self, x: &Tensor, orig_rate: u32, new_rate: u32) -> Result<Tensor> {
        let mut kernels = self.kernels.lock().unwrap_or_else(|e| e.into_inner());
        let resampler = match kernels.entry((orig_rate, new_rate)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(SincResampler::new(orig_rate, new_rate, self.device)?),
        };
        Ok(resampler.forward(x))
    }

    /// Number of distinct rate pairs built so far.
    pub fn len(&self) -> usize {
        self.kernels.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `|STFT(x)|²` of `x` `[B, L]` → `[B, n_fft/2 + 1, 1 + L / hop]`, with the window zero-padded
/// to `n_fft` in the middle and the signal reflect-padded by `n_fft/2` on both sides (what
/// `center=True` does; tch cannot call that variant, see the module notes of the spec).
pub fn power_spectrogram(x: &Tensor, n_fft: i64, hop: i64, window: &Tensor) -> Result<Tensor> {
    let dims = x.size();
    ensure!(
        dims.len() == 2,
        "power_spectrogram expects [batch, samples], got {dims:?}"
    );
    let pad = n_fft / 2;
    // reflect padding needs more samples than the pad on each side
    if dims[1] <= pad {
        bail!(
            "audio too short for the spectrogram: {} samples, need more than {pad}",
            dims[1]
        );
    }
    let win_len = window.size()[0];
    ensure!(win_len <= n_fft, "window of {win_len} longer than n_fft {n_fft}");
    let padded = x.reflection_pad1d([pad, pad]);
    let spec = padded.stft(n_fft, hop, win_len, Some(window), false, true, true, false);
    Ok(spec.abs().pow_tensor_scalar(2.0))
}

/// Triangular mel filterbank on the HTK mel scale, optionally Slaney area-normalised:
/// torchaudio `melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm, "htk")`.
/// Returns `[n_freqs, n_mels]`, computed in float32 on the CPU like torchaudio does.
pub fn mel_filterbank(
    n_freqs: i64,
    f_min: f64,
    f_max: f64,
    n_mels: i64,
    sample_rate: i64,
    slaney_norm: bool,
) -> Tensor {
    let opts = (Kind::Float, Device::Cpu);
    let hz_to_mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
    let freqs = Tensor::linspace(0.0, (sample_rate / 2) as f64, n_freqs, opts);
    let mels = Tensor::linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, opts);
    let f_pts = (Tensor::pow_scalar(10.0, &(mels / 2595.0)) - 1.0) * 700.0;
    let f_diff = f_pts.narrow(0, 1, n_mels + 1) - f_pts.narrow(0, 0, n_mels + 1);
    let slopes = f_pts.unsqueeze(0) - freqs.unsqueeze(1);
    let down = -slopes.narrow(1, 0, n_mels) / f_diff.narrow(0, 0, n_mels);
    let up = slopes.narrow(1, 2, n_mels) / f_diff.narrow(0, 1, n_mels);
    let fb = down.minimum(&up).clamp_min(0.0);
    if slaney_norm {
        let width = f_pts.narrow(0, 2, n_mels) - f_pts.narrow(0, 0, n_mels);
        let enorm = width.full_like(2.0) / &width;
        fb * enorm.unsqueeze(0)
    } else {
        fb
    }
}

/// Applies a `[n_freqs, n_mels]` filterbank to a power spectrogram `[B, n_freqs, F]` → `[B, n_mels, F]`.
pub fn apply_filterbank(spec: &Tensor, fb: &Tensor) -> Tensor {
    spec.transpose(-1, -2).matmul(fb).transpose(-1, -2)
}

/// Normalised log-mel of the GPT conditioning: `log(clamp(mel, 1e-5)) / mel_stats`.
/// `mel` is `[B, n_mels, F]`, `mel_stats` `[n_mels]`.
pub fn log_mel(mel: &Tensor, mel_stats: &Tensor) -> Tensor {
    mel.clamp_min(1e-5).log() / mel_stats.view([1, -1, 1])
}

/// Mel spectrogram of the GPT conditioning: 22.05 kHz, n_fft 2048, hop 256, periodic Hann
/// window of 1024, power 2, 80 HTK mels with Slaney norm between 0 and 8 kHz.
#[derive(Debug)]
pub struct CondMelSpectrogram {
    window: Tensor,
    filterbank: Tensor,
}

impl CondMelSpectrogram {
    pub const SAMPLE_RATE: i64 = 22050;
    pub const N_FFT: i64 = 2048;
    pub const HOP: i64 = 256;
    pub const WIN: i64 = 1024;
    pub const N_MELS: i64 = 80;

    pub fn new(device: Device) -> Self {
        let window = Tensor::hann_window(Self::WIN, (Kind::Float, device));
        let filterbank = mel_filterbank(Self::N_FFT / 2 + 1, 0.0, 8000.0, Self::N_MELS, Self::SAMPLE_RATE, true);
        Self {
            window,
            filterbank: filterbank.to_device(device),
        }
    }

    /// `[B, L]` audio at 22.05 kHz → `[B, 80, 1 + L / 256]` mel power.
    pub fn forward(&self, audio: &Tensor) -> Result<Tensor> {
        let spec = power_spectrogram(audio, Self::N_FFT, Self::HOP, &self.window)?;
        Ok(apply_filterbank(&spec, &self.filterbank))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn kernel_size_for_22050_to_16000() {
        let r = SincResampler::new(22050, 16000, Device::Cpu).unwrap();
        assert_eq!((r.orig, r.new, r.width), (441, 320, 9));
        assert_eq!(r.kernel.as_ref().unwrap().size(), [320, 1, 459]);
    }

    #[test]
    fn output_length_is_ceil_of_ratio() {
        let r = SincResampler::new(24000, 22050, Device::Cpu).unwrap();
        let x = Tensor::zeros([2, 1001], (Kind::Float, Device::Cpu));
        // 1001 * 147 / 160 = 919.66
        assert_eq!(r.forward(&x).size(), [2, 920]);
        let one_d = Tensor::zeros([1001], (Kind::Float, Device::Cpu));
        assert_eq!(r.forward(&one_d).size(), [920]);
    }

    #[test]
    fn equal_rates_pass_through() {
        let r = SincResampler::new(16000, 16000, Device::Cpu).unwrap();
        let x = Tensor::randn([1, 100], (Kind::Float, Device::Cpu));
        assert_eq!(max_abs_diff(&r.forward(&x), &x), 0.0);
    }

    #[test]
    fn zero_rate_is_an_error() {
        assert!(SincResampler::new(0, 16000, Device::Cpu).is_err());
    }

    #[test]
    fn low_tone_survives_resampling() {
        // a 440 Hz tone well inside both bands keeps its amplitude and phase
        let (fi, fo) = (24000.0, 16000.0);
        let n = 24000;
        let tone = |rate: f64, len: i64| {
            let t = Tensor::arange(len, (Kind::Double, Device::Cpu)) / rate;
            (t * (2.0 * PI * 440.0)).sin().to_kind(Kind::Float).unsqueeze(0)
        };
        let r = SincResampler::new(fi as u32, fo as u32, Device::Cpu).unwrap();
        let y = r.forward(&tone(fi, n));
        let expected = tone(fo, 16000);
        // ignore the edges, where the zero padding bends the signal
        let inner = |t: &Tensor| t.narrow(1, 200, 15600);
        assert!(max_abs_diff(&inner(&y), &inner(&expected)) < 2e-3);
    }

    #[test]
    fn cache_builds_each_pair_once() {
        let cache = ResamplerCache::new(Device::Cpu);
        assert!(cache.is_empty());
        let x = Tensor::randn([1, 500], (Kind::Float, Device::Cpu));
        let a = cache.resample(&x, 22050, 16000).unwrap();
        let b = cache.resample(&x, 22050, 16000).unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(max_abs_diff(&a, &b), 0.0);
        let _ = cache.resample(&x, 16000, 22050).unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.resample(&x, 0, 22050).is_err());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn spectrogram_frames_and_bins() {
        let x = Tensor::randn([1, 22050], (Kind::Float, Device::Cpu));
        let w = Tensor::hann_window(1024, (Kind::Float, Device::Cpu));
        let s = power_spectrogram(&x, 2048, 256, &w).unwrap();
        assert_eq!(s.size(), [1, 1025, 1 + 22050 / 256]);
        assert!(power_spectrogram(&x.narrow(1, 0, 100), 2048, 256, &w).is_err());
        assert!(power_spectrogram(&x.squeeze(), 2048, 256, &w).is_err());
    }

    #[test]
    fn spectrogram_energy_matches_parseval() {
        // With a rectangular window covering n_fft, a frame's two-sided energy equals
        // n_fft times its sample energy; check it on the middle frame of white noise.
        let n_fft = 64;
        let x = Tensor::randn([1, 640], (Kind::Double, Device::Cpu)).to_kind(Kind::Float);
        let w = Tensor::ones([n_fft], (Kind::Float, Device::Cpu));
        let s = power_spectrogram(&x, n_fft, 32, &w).unwrap();
        let frame = 10;
        let col = s.select(2, frame).squeeze();
        // one-sided bins: DC and Nyquist once, the others twice
        let two_sided = col.sum(Kind::Double) * 2.0 - col.get(0) - col.get(n_fft / 2);
        let start = frame * 32 - n_fft / 2;
        let energy = x.narrow(1, start, n_fft).pow_tensor_scalar(2).sum(Kind::Double) * n_fft as f64;
        let rel = ((two_sided - &energy).abs() / energy).double_value(&[]);
        assert!(rel < 1e-5, "relative error {rel}");
    }

    #[test]
    fn slaney_filterbank_shape_and_area() {
        let fb = mel_filterbank(1025, 0.0, 8000.0, 80, 22050, true);
        assert_eq!(fb.size(), [1025, 80]);
        assert!(fb.min().double_value(&[]) >= 0.0);
        // nothing above f_max: bin of 8 kHz is 8000 / 11025 * 1024 = 743
        assert_eq!(fb.narrow(0, 744, 281).abs().max().double_value(&[]), 0.0);
        // Slaney norm: each triangle has (approximately) unit area in Hz times 2/width, i.e.
        // sum over bins * bin width ≈ 1
        let bin_hz = 11025.0 / 1024.0;
        let areas = fb.sum_dim_intlist(0, false, Kind::Double) * bin_hz;
        let worst = (areas - 1.0).abs().narrow(0, 10, 70).max().double_value(&[]);
        assert!(worst < 0.05, "area error {worst}");
    }

    #[test]
    fn htk_filterbank_peaks_at_one() {
        let fb = mel_filterbank(257, 0.0, 8000.0, 64, 16000, false);
        assert_eq!(fb.size(), [257, 64]);
        assert!(fb.max().double_value(&[]) <= 1.0 + 1e-6);
        // wide upper filters cover several bins, so their peak is close to 1
        let peak = fb.select(1, 60).max().double_value(&[]);
        assert!(peak > 0.8, "peak {peak}");
    }

    #[test]
    fn log_mel_clamps_and_divides() {
        let mel = Tensor::from_slice(&[0.0f32, 1.0, std::f32::consts::E]).view([1, 1, 3]);
        let stats = Tensor::from_slice(&[2.0f32]);
        let out = Vec::<f32>::try_from(log_mel(&mel, &stats).flatten(0, -1)).unwrap();
        assert!((out[0] - (1e-5f32).ln() / 2.0).abs() < 1e-5);
        assert_eq!(out[1], 0.0);
        assert!((out[2] - 0.5).abs() < 1e-6);
    }
}
