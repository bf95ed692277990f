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

/// One sentence's next render, ready for the generator: its frames and speaker, and how its
/// output becomes a chunk. Renders of several sentences can share one forward
/// ([`render_windows`]); each window goes back to its [`StreamVocoder::complete`].
pub struct Window {
    /// Generator input [1, D, T].
    frames: Tensor,
    speaker: Tensor,
    cut: Cut,
    started: Instant,
}

impl Window {
    /// Generator frames it renders.
    pub fn frames(&self) -> i64 {
        self.frames.size()[2]
    }
}

/// Which part of a render is the chunk.
enum Cut {
    /// A re-render of every latent, cut by the overlap chunker.
    Reference { is_final: bool },
    /// Samples `emit` are new audio; the `overlap` after them fade into the next chunk.
    Windowed {
        emit: std::ops::Range<usize>,
        overlap: usize,
    },
}

/// Renders the windows of several sentences in one generator forward; each window's samples,
/// in order.
pub fn render_windows(hifigan: &HifiGan, windows: &[&Window]) -> Result<Vec<Vec<f32>>> {
    render_windows_padded(hifigan, windows, 0)
}

/// [`render_windows`] in a forward of at least `frames` frames (see [`HifiGan::generate_padded`]).
pub fn render_windows_padded(hifigan: &HifiGan, windows: &[&Window], frames: i64) -> Result<Vec<Vec<f32>>> {
    let inputs: Vec<(&Tensor, &Tensor)> = windows.iter().map(|w| (&w.frames, &w.speaker)).collect();
    let wav = hifigan.generate_padded(&inputs, frames)?;
    let row = wav.size()[2] as usize;
    let samples = to_vec(&wav)?;
    let hop = hifigan.hop() as usize;
    Ok(windows
        .iter()
        .enumerate()
        .map(|(i, w)| samples[i * row..i * row + (w.frames() as usize * hop).min(row)].to_vec())
        .collect())
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
    /// Windowed: generator frames already emitted (counted when their window is made).
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
        match self.add(latent)? {
            Some(window) => self.render_alone(window).map(Some),
            None => Ok(None),
        }
    }

    /// The last chunk, once generation has ended. Like the reference, the final render always
    /// happens, even with nothing pending.
    pub fn finish(&mut self) -> Result<Vec<f32>> {
        match self.last_window()? {
            Some(window) => self.render_alone(window),
            None => Ok(Vec::new()),
        }
    }

    fn render_alone(&mut self, window: Window) -> Result<Vec<f32>> {
        let wav = render_windows(self.hifigan, &[&window])?.remove(0);
        Ok(self.complete(window, &wav))
    }

    /// Adds the latent of one generated token ([D] or [1, D]); returns the window to render
    /// when a chunk is due. Its render must go to [`Self::complete`] before the next window.
    pub fn add(&mut self, latent: &Tensor) -> Result<Option<Window>> {
        self.latents.push(latent.f_reshape([-1])?);
        if self.latents.len() - self.rendered_upto < self.next_chunk_tokens() {
            return Ok(None);
        }
        let window = self.window(false)?;
        if window.is_some() {
            let upto = self.latents.len();
            self.rendered_upto = upto;
            self.emitted_any = true;
            self.emitted_latents = upto - self.opts.holdback.min(upto);
        }
        Ok(window)
    }

    /// The window of the last chunk, once generation has ended; None when nothing is left to
    /// emit (the last chunk is empty).
    pub fn last_window(&mut self) -> Result<Option<Window>> {
        if self.latents.is_empty() {
            return Ok(None);
        }
        self.window(true)
    }

    /// The chunk of a window, given its render (from [`render_windows`]).
    pub fn complete(&mut self, window: Window, wav: &[f32]) -> Vec<f32> {
        self.record(window.started, window.frames());
        match window.cut {
            Cut::Reference { is_final } => self.reference.push(wav, is_final),
            Cut::Windowed { emit, overlap } => {
                let mut chunk = wav[emit.clone()].to_vec();
                let fade = self.tail.len().min(chunk.len());
                if fade > 0 {
                    let fade_in = linspace_f32(0.0, 1.0, fade + 2);
                    for i in 0..fade {
                        let w = fade_in[i + 1];
                        chunk[i] = self.tail[i] * (1.0 - w) + chunk[i] * w;
                    }
                }
                self.tail = wav[emit.end..(emit.end + overlap).min(wav.len())].to_vec();
                chunk
            }
        }
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

    /// All latents so far, stretched for the speed: [1, M, D].
    fn all_latents(&self) -> Result<Tensor> {
        apply_speed(&Tensor::f_stack(&self.latents, 0)?.f_unsqueeze(0)?, self.opts.speed)
    }

    fn window(&mut self, is_final: bool) -> Result<Option<Window>> {
        match self.opts.mode {
            StreamMode::Reference => {
                let started = Instant::now();
                let frames = self.hifigan.interpolation().apply(&self.all_latents()?)?;
                if frames.size()[2] == 0 {
                    bail!("{} latents are too few to vocode", self.latents.len());
                }
                Ok(Some(self.make_window(frames, Cut::Reference { is_final }, started)))
            }
            StreamMode::Windowed => self.next_window(is_final),
        }
    }

    fn make_window(&self, frames: Tensor, cut: Cut, started: Instant) -> Window {
        Window {
            frames,
            speaker: self.speaker.shallow_clone(),
            cut,
            started,
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

    fn next_window(&mut self, is_final: bool) -> Result<Option<Window>> {
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
            return Ok(None);
        }
        let started = Instant::now();
        let context = interp.frames(self.stretched(self.opts.left_context));
        let first = (self.emitted_frames - context).max(0);
        // The interpolation is cheap and position-dependent: run it over everything, then
        // vocode only the window.
        let z = interp.apply(&self.all_latents()?)?;
        let frames = z.f_narrow(2, first, total_frames - first)?;
        let offset = (self.emitted_frames - first) as usize * hop;
        let end = (emit_end - first) as usize * hop;
        let overlap = if is_final { 0 } else { self.opts.overlap_samples };
        self.emitted_frames = emit_end;
        Ok(Some(self.make_window(
            frames,
            Cut::Windowed {
                emit: offset..end,
                overlap,
            },
            started,
        )))
    }

    fn record(&mut self, started: Instant, frames: i64) {
        self.stats.call_ms.push(started.elapsed().as_secs_f64() * 1e3);
        self.stats.call_frames.push(frames);
    }
}

fn to_vec(wav: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        wav.f_reshape([-1])?.f_totype(Kind::Float)?.f_to(tch::Device::Cpu)?,
    )?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use crate::xtts::model::Xtts;

    /// The tiny fixture model (`$XTTSD_FIXTURE`, default `tests/fixtures/tiny`).
    pub(crate) fn tiny_model() -> Xtts {
        tch::set_num_threads(1);
        let dir = std::env::var("XTTSD_FIXTURE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny"));
        Xtts::load(&dir.join("model"), tch::Device::Cpu).unwrap()
    }

    /// Reproducible random latents [n, dim] and a speaker embedding [1, speaker_dim, 1].
    pub(crate) fn random_sentence(seed: i64, n: i64, dim: i64, speaker_dim: i64) -> (Tensor, Tensor) {
        tch::manual_seed(seed);
        let latents = Tensor::randn([n, dim], (Kind::Float, tch::Device::Cpu));
        let speaker = Tensor::randn([1, speaker_dim, 1], (Kind::Float, tch::Device::Cpu));
        (latents, speaker)
    }

    /// Every chunk of a sentence rendered on its own.
    pub(crate) fn chunks_alone(
        hifigan: &HifiGan,
        latents: &Tensor,
        speaker: &Tensor,
        opts: &StreamOptions,
    ) -> Vec<Vec<f32>> {
        let mut vocoder = StreamVocoder::new(hifigan, speaker, opts).unwrap();
        let mut chunks: Vec<Vec<f32>> = (0..latents.size()[0])
            .filter_map(|i| vocoder.push(&latents.get(i)).unwrap())
            .collect();
        chunks.push(vocoder.finish().unwrap());
        chunks
    }

    /// How far a chunk rendered in a batch may be from the same chunk rendered alone: the
    /// bound the windowed stream keeps against a one-shot render. CPU kernels batched over rows
    /// land at about 3e-5; padding leaking into a row shows at full scale (about 2).
    pub(crate) const BATCH_TOL: f32 = 1e-4;

    pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "lengths differ");
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// Sentences of different lengths, speakers, speeds and modes fed in lockstep, every due
    /// window of a step rendered in one forward: each chunk equals the sentence's chunk
    /// rendered alone (the padding of the shorter windows, or of a whole forward to a larger
    /// shape, never leaks into their audio).
    #[test]
    fn batched_windows_render_as_each_alone() {
        let _guard = tch::no_grad_guard();
        let model = tiny_model();
        let hifigan = model.hifigan();
        let (dim, speaker_dim) = (hifigan.latent_dim(), hifigan.speaker_dim());
        let sentences: Vec<(Tensor, Tensor, StreamOptions)> = [
            (57, StreamOptions::windowed()),
            (
                44,
                StreamOptions {
                    speed: 1.3,
                    ..StreamOptions::windowed()
                },
            ),
            (
                31,
                StreamOptions {
                    speed: 0.8,
                    ..StreamOptions::windowed()
                },
            ),
            (45, StreamOptions::reference()),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (n, opts))| {
            let (latents, speaker) = random_sentence(i as i64 + 1, n, dim, speaker_dim);
            (latents, speaker, opts)
        })
        .collect();
        let alone: Vec<Vec<Vec<f32>>> = sentences
            .iter()
            .map(|(latents, speaker, opts)| chunks_alone(hifigan, latents, speaker, opts))
            .collect();

        let mut vocoders: Vec<StreamVocoder> = sentences
            .iter()
            .map(|(_, speaker, opts)| StreamVocoder::new(hifigan, speaker, opts).unwrap())
            .collect();
        let mut batched: Vec<Vec<Vec<f32>>> = vec![Vec::new(); sentences.len()];
        let (mut shared, mut mixed_lengths, mut padded_alone) = (0, 0, 0);
        let longest = sentences.iter().map(|(l, _, _)| l.size()[0]).max().unwrap();
        for step in 0..=longest {
            let mut due = Vec::new();
            for (i, (latents, _, _)) in sentences.iter().enumerate() {
                let n = latents.size()[0];
                let window = if step < n {
                    vocoders[i].add(&latents.get(step)).unwrap()
                } else if step == n {
                    // The last chunk; an empty one is what the sentence alone ends with too.
                    let last = vocoders[i].last_window().unwrap();
                    if last.is_none() {
                        batched[i].push(Vec::new());
                    }
                    last
                } else {
                    None
                };
                if let Some(window) = window {
                    due.push((i, window));
                }
            }
            if due.is_empty() {
                continue;
            }
            let windows: Vec<&Window> = due.iter().map(|(_, w)| w).collect();
            if windows.len() > 1 {
                shared += 1;
                if windows.iter().any(|w| w.frames() != windows[0].frames()) {
                    mixed_lengths += 1;
                }
            }
            // Every other forward is padded past its longest window, as the engine pads its
            // forwards to shapes it has seen; a window alone is padded then too.
            let longest_window = windows.iter().map(|w| w.frames()).max().unwrap();
            let pad_to = if step % 2 == 1 {
                padded_alone += usize::from(windows.len() == 1);
                longest_window + 16
            } else {
                0
            };
            let wavs = render_windows_padded(hifigan, &windows, pad_to).unwrap();
            for ((i, window), wav) in due.into_iter().zip(wavs) {
                batched[i].push(vocoders[i].complete(window, &wav));
            }
        }
        assert!(
            shared > 3 && mixed_lengths > 0 && padded_alone > 0,
            "{shared} shared forwards, {mixed_lengths} padded, {padded_alone} alone padded"
        );
        for (i, (alone, batched)) in alone.iter().zip(&batched).enumerate() {
            assert_eq!(alone.len(), batched.len(), "sentence {i}: chunk count");
            for (k, (a, b)) in alone.iter().zip(batched).enumerate() {
                let d = max_abs_diff(a, b);
                assert!(d <= BATCH_TOL, "sentence {i} chunk {k}: batched differs by {d:.3e}");
            }
        }
    }

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
