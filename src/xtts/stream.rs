//! Turning latents into audio chunks while the GPT is still generating (spec 6).
//!
//! Two modes:
//! * [`StreamMode::Reference`] reproduces the reference `inference_stream` chunk for chunk: every
//!   chunk re-vocodes all latents so far and is cut and cross-faded by [`OverlapChunker`]. The
//!   vocoder cost per chunk grows with the utterance (quadratic in total).
//! * [`StreamMode::Windowed`] vocodes only the frames it needs: the new latents, some left
//!   context, and the held-back latents whose right context is still missing (their audio is
//!   rendered but emitted only with the next chunk). The cost per chunk stays constant and,
//!   with enough context, the audio equals a one-shot render up to float rounding; the seams
//!   are still cross-faded over a few samples.

use std::time::Instant;

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::hifigan::{apply_speed, HifiGan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    Reference,
    Windowed,
}

/// How latents are grouped into chunks and vocoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamOptions {
    pub mode: StreamMode,
    /// Latents (tokens) between two chunks.
    pub chunk_tokens: usize,
    /// Latents before the first chunk; smaller than `chunk_tokens` for a quicker start.
    pub first_chunk_tokens: usize,
    /// Cross-fade length in output samples (Reference: the held-back overlap, 1024).
    pub overlap_samples: usize,
    /// Windowed: latents of already emitted audio re-vocoded as left context.
    pub left_context: usize,
    /// Windowed: newest latents whose audio waits for the next chunk (missing right context).
    pub holdback: usize,
    /// Grow the chunks from the first one up to `chunk_tokens`, each at most as long as the
    /// audio already emitted: a listener then never starves while generation keeps up with
    /// real time (a full-size chunk right after a small first one needs several times that).
    pub ramp: bool,
    /// Speaking rate; the latents are stretched by 1 / speed (spec 4.5).
    pub speed: f64,
}

impl StreamOptions {
    /// The reference `inference_stream` defaults: 20 tokens per chunk, 1024-sample overlap.
    pub fn reference() -> Self {
        Self {
            mode: StreamMode::Reference,
            chunk_tokens: 20,
            first_chunk_tokens: 20,
            overlap_samples: 1024,
            left_context: 0,
            holdback: 0,
            ramp: false,
            speed: 1.0,
        }
    }

    /// Constant-cost streaming. The vocoder sees about ±3 latents around a sample, and the
    /// latent interpolation one more: 8 latents of left context and 5 held back keep every
    /// emitted sample equal to the one-shot render.
    pub fn windowed() -> Self {
        Self {
            mode: StreamMode::Windowed,
            chunk_tokens: 20,
            first_chunk_tokens: 10,
            overlap_samples: 256,
            left_context: 8,
            holdback: 5,
            ramp: true,
            speed: 1.0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.chunk_tokens == 0 || self.first_chunk_tokens == 0 {
            bail!("chunk sizes must be at least one token");
        }
        if !self.speed.is_finite() || self.speed <= 0.0 {
            bail!("speed must be a positive number, got {}", self.speed);
        }
        if self.mode == StreamMode::Windowed && self.first_chunk_tokens <= self.holdback {
            bail!(
                "first chunk of {} tokens holds back {} and would never emit early",
                self.first_chunk_tokens,
                self.holdback
            );
        }
        Ok(())
    }
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self::windowed()
    }
}

/// `torch.linspace(start, end, steps)` in float32 as PyTorch's CPU kernel computes it (the
/// second half counted back from `end`), so the reference cross-fade is reproduced bit for bit.
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

/// Python slice bounds `[start:end]` on a sequence of `len` items (negative = from the end).
fn py_range(len: usize, start: isize, end: Option<isize>) -> std::ops::Range<usize> {
    let clamp = |i: isize| -> usize {
        let i = if i < 0 { i + len as isize } else { i };
        i.clamp(0, len as isize) as usize
    };
    let s = clamp(start);
    let e = end.map_or(len, clamp);
    s..e.max(s)
}

/// The reference's `handle_chunks` (coqui-tts 0.28, with `is_final`): cuts each full re-render
/// into the part not yet emitted, holding back the last `overlap` samples to cross-fade them
/// with the next render.
pub struct OverlapChunker {
    overlap: usize,
    prev_len: Option<usize>,
    held: Option<Vec<f32>>,
    fade_in: Vec<f32>,
    fade_out: Vec<f32>,
}

impl OverlapChunker {
    pub fn new(overlap: usize) -> Self {
        Self {
            overlap,
            prev_len: None,
            held: None,
            fade_in: linspace_f32(0.0, 1.0, overlap),
            fade_out: linspace_f32(1.0, 0.0, overlap),
        }
    }

    /// The chunk to emit for `wav`, the render of every latent so far.
    pub fn push(&mut self, wav: &[f32], is_final: bool) -> Vec<f32> {
        let ov = self.overlap as isize;
        let start = self.prev_len.map_or(0, |p| p as isize - ov);
        let end = if is_final { None } else { Some(-ov) };
        let mut chunk = wav[py_range(wav.len(), start, end)].to_vec();
        if let Some(held) = self.held.take() {
            if self.overlap > chunk.len() {
                // Too short to cross-fade: pass the whole tail through and stop overlapping.
                let chunk = wav[py_range(wav.len(), start, None)].to_vec();
                self.prev_len = Some(wav.len());
                return chunk;
            }
            for i in 0..self.overlap {
                chunk[i] = held[i] * self.fade_out[i] + chunk[i] * self.fade_in[i];
            }
        }
        if !is_final {
            self.held = Some(wav[py_range(wav.len(), -ov, None)].to_vec());
        }
        self.prev_len = Some(wav.len());
        chunk
    }
}

/// Vocoder work done while streaming.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VocoderStats {
    /// Wall time of each vocoder call, ms.
    pub call_ms: Vec<f64>,
    /// Generator frames rendered by each call.
    pub call_frames: Vec<i64>,
}

impl VocoderStats {
    pub fn total_ms(&self) -> f64 {
        self.call_ms.iter().sum()
    }
}

/// Collects latents one by one and emits audio chunks as they become due.
pub struct StreamVocoder<'a> {
    hifigan: &'a HifiGan,
    speaker: Tensor,
    opts: StreamOptions,
    latents: Vec<Tensor>,
    /// Latents covered by the last render (the ones after it are pending).
    rendered_upto: usize,
    emitted_any: bool,
    /// Latents whose audio has been emitted.
    emitted_latents: usize,
    reference: OverlapChunker,
    /// Windowed: generator frames already emitted.
    emitted_frames: i64,
    /// Windowed: rendered samples right after the emitted end, cross-faded into the next chunk.
    tail: Vec<f32>,
    stats: VocoderStats,
}

impl<'a> StreamVocoder<'a> {
    pub fn new(hifigan: &'a HifiGan, speaker_embedding: &Tensor, opts: &StreamOptions) -> Result<Self> {
        opts.validate()?;
        Ok(Self {
            hifigan,
            speaker: hifigan.speaker(speaker_embedding)?,
            opts: opts.clone(),
            latents: Vec::new(),
            rendered_upto: 0,
            emitted_any: false,
            emitted_latents: 0,
            reference: OverlapChunker::new(opts.overlap_samples),
            emitted_frames: 0,
            tail: Vec::new(),
            stats: VocoderStats::default(),
        })
    }

    pub fn stats(&self) -> &VocoderStats {
        &self.stats
    }

    /// Adds the latent of one generated token ([D] or [1, D]); returns a chunk when one is due.
    pub fn push(&mut self, latent: &Tensor) -> Result<Option<Vec<f32>>> {
        self.latents.push(latent.reshape([-1]));
        if self.latents.len() - self.rendered_upto < self.next_chunk_tokens() {
            return Ok(None);
        }
        let chunk = self.render(false)?;
        if chunk.is_some() {
            let upto = self.latents.len();
            self.rendered_upto = upto;
            self.emitted_any = true;
            self.emitted_latents = upto - self.opts.holdback.min(upto);
        }
        Ok(chunk)
    }

    /// Latents to collect before the next chunk.
    fn next_chunk_tokens(&self) -> usize {
        if !self.emitted_any {
            self.opts.first_chunk_tokens
        } else if self.opts.ramp {
            // Never fewer than the held-back latents: smaller renders would mostly redo context.
            let floor = self.opts.holdback.max(1);
            self.emitted_latents.max(floor).min(self.opts.chunk_tokens)
        } else {
            self.opts.chunk_tokens
        }
    }

    /// The last chunk, once generation has ended. Like the reference, the final render always
    /// happens, even with nothing pending.
    pub fn finish(&mut self) -> Result<Vec<f32>> {
        if self.latents.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.render(true)?.unwrap_or_default())
    }

    /// All latents so far, stretched for the speed: [1, M, D].
    fn all_latents(&self) -> Result<Tensor> {
        apply_speed(&Tensor::stack(&self.latents, 0).unsqueeze(0), self.opts.speed)
    }

    fn render(&mut self, is_final: bool) -> Result<Option<Vec<f32>>> {
        match self.opts.mode {
            StreamMode::Reference => {
                let started = Instant::now();
                let latents = self.all_latents()?;
                let frames = self.hifigan.interpolation().frames(latents.size()[1]);
                let wav = to_vec(&self.hifigan.decode(&latents, &self.speaker)?)?;
                self.record(started, frames);
                Ok(Some(self.reference.push(&wav, is_final)))
            }
            StreamMode::Windowed => self.render_window(is_final),
        }
    }

    /// Number of latents after the speed stretch for `n` input latents.
    fn stretched(&self, n: usize) -> i64 {
        let scale = 1.0 / self.opts.speed.max(0.05);
        if scale == 1.0 {
            n as i64
        } else {
            (n as f64 * scale).floor() as i64
        }
    }

    fn render_window(&mut self, is_final: bool) -> Result<Option<Vec<f32>>> {
        let interp = self.hifigan.interpolation();
        let hop = self.hifigan.hop() as usize;
        let available = self.latents.len();
        let total_frames = interp.frames(self.stretched(available));
        let emit_end = if is_final {
            total_frames
        } else {
            interp.frames(self.stretched(available.saturating_sub(self.opts.holdback)))
        };
        if emit_end <= self.emitted_frames {
            return Ok(if is_final { Some(Vec::new()) } else { None });
        }
        let started = Instant::now();
        let context = interp.frames(self.stretched(self.opts.left_context));
        let first = (self.emitted_frames - context).max(0);
        // The interpolation is cheap and position-dependent: run it over everything, then
        // vocode only the window.
        let z = interp.apply(&self.all_latents()?);
        let window = z.narrow(2, first, total_frames - first);
        let wav = to_vec(&self.hifigan.generate(&window, &self.speaker)?)?;
        self.record(started, total_frames - first);

        let offset = (self.emitted_frames - first) as usize * hop;
        let end = (emit_end - first) as usize * hop;
        let mut chunk = wav[offset..end].to_vec();
        let fade = self.tail.len().min(chunk.len());
        if fade > 0 {
            let fade_in = linspace_f32(0.0, 1.0, fade + 2);
            for i in 0..fade {
                let w = fade_in[i + 1];
                chunk[i] = self.tail[i] * (1.0 - w) + chunk[i] * w;
            }
        }
        self.tail = if is_final {
            Vec::new()
        } else {
            wav[end..(end + self.opts.overlap_samples).min(wav.len())].to_vec()
        };
        self.emitted_frames = emit_end;
        Ok(Some(chunk))
    }

    fn record(&mut self, started: Instant, frames: i64) {
        self.stats.call_ms.push(started.elapsed().as_secs_f64() * 1e3);
        self.stats.call_frames.push(frames);
    }
}

fn to_vec(wav: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        wav.reshape([-1]).to_kind(Kind::Float).to_device(tch::Device::Cpu),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_torch_endpoints_and_symmetry() {
        let up = linspace_f32(0.0, 1.0, 1024);
        assert_eq!((up[0], up[1023]), (0.0, 1.0));
        assert!((up[1] - 1.0 / 1023.0).abs() < 1e-7);
        let down = linspace_f32(1.0, 0.0, 1024);
        assert_eq!((down[0], down[1023]), (1.0, 0.0));
    }

    #[test]
    fn python_slices() {
        assert_eq!(py_range(10, 0, Some(-3)), 0..7);
        assert_eq!(py_range(10, 8, Some(-3)), 8..8);
        assert_eq!(py_range(2, 0, Some(-3)), 0..0);
        assert_eq!(py_range(10, -4, None), 6..10);
        assert_eq!(py_range(3, -4, None), 0..3);
    }

    /// Renders that agree on their common prefix must come out as that signal, cut at the
    /// reference's boundaries, with every held-back overlap emitted exactly once.
    #[test]
    fn overlap_chunker_reassembles_consistent_renders() {
        let signal: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.01).sin()).collect();
        let mut c = OverlapChunker::new(100);
        let a = c.push(&signal[..1500], false);
        assert_eq!(a.len(), 1400);
        let b = c.push(&signal[..3000], false);
        assert_eq!(b.len(), 1500);
        let last = c.push(&signal[..5000], true);
        assert_eq!(last.len(), 2100);
        let joined: Vec<f32> = [a, b, last].concat();
        assert_eq!(joined.len(), signal.len());
        let err = joined
            .iter()
            .zip(&signal)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-6, "max error {err}");
    }

    #[test]
    fn overlap_chunker_cross_fades_differing_renders() {
        let mut c = OverlapChunker::new(4);
        let first = c.push(&[1.0; 10], false);
        assert_eq!(first, vec![1.0; 6]);
        let second = c.push(&[0.0; 16], false);
        // The held-back ones fade out while the new render fades in.
        let expected_head: Vec<f32> = linspace_f32(1.0, 0.0, 4);
        assert_eq!(&second[..4], &expected_head[..]);
        assert_eq!(second, [&expected_head[..], &[0.0, 0.0]].concat());
    }

    #[test]
    fn overlap_chunker_short_final_passes_the_tail_through() {
        let mut c = OverlapChunker::new(4);
        c.push(&[1.0; 10], false);
        // 2 new samples plus the 4 held back: long enough to cross-fade.
        let last = c.push(&[2.0; 12], true);
        assert_eq!(last.len(), 6);
        let mut c = OverlapChunker::new(4);
        c.push(&[1.0; 10], false);
        // A final render no longer than the previous one leaves fewer than 4 samples.
        let last = c.push(&[3.0; 9], true);
        assert_eq!(last, vec![3.0; 3]);
    }

    #[test]
    fn options_are_checked() {
        assert!(StreamOptions::reference().validate().is_ok());
        assert!(StreamOptions::windowed().validate().is_ok());
        let bad = StreamOptions {
            chunk_tokens: 0,
            ..StreamOptions::windowed()
        };
        assert!(bad.validate().is_err());
        let bad = StreamOptions {
            first_chunk_tokens: 5,
            holdback: 5,
            ..StreamOptions::windowed()
        };
        assert!(bad.validate().is_err());
        let bad = StreamOptions {
            speed: 0.0,
            ..StreamOptions::reference()
        };
        assert!(bad.validate().is_err());
    }
}
