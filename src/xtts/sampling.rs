//! Choosing the next audio code from the GPT's logits (spec 4.3), as HF `generate` does:
//! repetition penalty, then (when sampling) temperature, top-k, top-p and a multinomial draw.
//!
//! The draw uses a per-request seeded generator on the CPU (a uniform number inverted through
//! the cumulative distribution), so concurrent requests never disturb each other's sequences
//! and a fixed seed repeats run to run on any device.

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use super::config::XttsConfig;

/// Decoding parameters of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Divides the logits before top-k/top-p; only used when sampling.
    pub temperature: f64,
    /// Keep the `top_k` highest scores (ties with the k-th kept); 0 disables.
    pub top_k: i64,
    /// Nucleus: keep the smallest set of codes whose probability reaches `top_p`; 1.0 disables.
    pub top_p: f64,
    /// HF/CTRL repetition penalty over every distinct id seen so far (including the
    /// dummy prefix ids HF feeds, spec 4.3); 1.0 disables. Applied in greedy mode too.
    pub repetition_penalty: f64,
    /// Only meaningful for beam search, which XTTS does not use: kept for completeness, no effect.
    pub length_penalty: f64,
    /// false: greedy (argmax after the repetition penalty only), as the reference's
    /// non-streaming `inference(do_sample=False)`.
    pub do_sample: bool,
    /// Seed of the request's generator; None draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    /// The defaults of the reference `inference()` / `inference_stream()` signatures, which
    /// streaming servers use: repetition penalty 10 (config.json says 5, see [`Self::from_config`]).
    fn default() -> Self {
        Self {
            temperature: 0.75,
            top_k: 50,
            top_p: 0.85,
            repetition_penalty: 10.0,
            length_penalty: 1.0,
            do_sample: true,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// The values of `config.json`, as the reference `synthesize()` / TTS API passes them
    /// (repetition penalty 5.0 in the release).
    pub fn from_config(cfg: &XttsConfig) -> Self {
        Self {
            temperature: cfg.temperature,
            top_k: cfg.top_k,
            top_p: cfg.top_p,
            repetition_penalty: cfg.repetition_penalty,
            length_penalty: cfg.length_penalty,
            do_sample: true,
            seed: None,
        }
    }

    /// Greedy decoding with the given repetition penalty (the parity baseline).
    pub fn greedy(repetition_penalty: f64) -> Self {
        Self {
            do_sample: false,
            repetition_penalty,
            ..Self::default()
        }
    }

    /// Temperatures accepted: below, float32 logits overflow; above, sampling is noise.
    pub const TEMPERATURE: std::ops::RangeInclusive<f64> = 0.01..=100.0;
    /// Repetition penalties accepted (1.0: none).
    pub const REPETITION_PENALTY: std::ops::RangeInclusive<f64> = 0.01..=100.0;

    pub fn validate(&self) -> Result<()> {
        // The batched kernels compute in float32: a value that is fine as f64 can become 0 or
        // infinite there and turn a whole batch's logits into NaN.
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            bail!("repetition_penalty must be > 0, got {}", self.repetition_penalty);
        }
        if !Self::REPETITION_PENALTY.contains(&self.repetition_penalty) {
            bail!(
                "repetition_penalty must be between {} and {}, got {}",
                Self::REPETITION_PENALTY.start(),
                Self::REPETITION_PENALTY.end(),
                self.repetition_penalty
            );
        }
        if self.do_sample {
            if !(self.temperature.is_finite() && self.temperature > 0.0) {
                bail!("temperature must be > 0, got {}", self.temperature);
            }
            if !Self::TEMPERATURE.contains(&self.temperature) {
                bail!(
                    "temperature must be between {} and {}, got {}",
                    Self::TEMPERATURE.start(),
                    Self::TEMPERATURE.end(),
                    self.temperature
                );
            }
            if self.top_k < 0 {
                bail!("top_k must be >= 0, got {}", self.top_k);
            }
            if !(self.top_p > 0.0 && self.top_p <= 1.0) {
                bail!("top_p must be in (0, 1], got {}", self.top_p);
            }
        }
        Ok(())
    }
}

/// Picks codes for one sequence; owns the request's random generator.
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = match params.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        Ok(Self {
            params: params.clone(),
            rng,
        })
    }

    /// The next code for `logits` ([V] or [1, V]) given the ids seen so far (`history`,
    /// distinct or not; see [`SamplingParams::repetition_penalty`]).
    pub fn next(&mut self, logits: &Tensor, history: &[i64]) -> Result<i64> {
        let logits = logits.reshape([1, -1]);
        sample_rows(&mut [self], &[history], &logits)?.remove(0)
    }
}

/// The next code of every row of `logits` ([B, V]), row b with `samplers[b]` and
/// `histories[b]`. The scores are processed on the logits' device in a few batched kernels and
/// come back to the host once: per-row processing costs a launch and a sync per row.
/// A row whose scores cannot be sampled (NaN or no mass) fails alone: its entry is an error.
pub fn sample_rows(samplers: &mut [&mut Sampler], histories: &[&[i64]], logits: &Tensor) -> Result<Vec<Result<i64>>> {
    let params: Vec<&SamplingParams> = samplers.iter().map(|s| &s.params).collect();
    let scores = process_logits_rows(logits, histories, &params)?;
    let greedy = scores.argmax(-1, false).to_device(Device::Cpu);
    let probs = scores.softmax(-1, Kind::Float).to_device(Device::Cpu);
    let vocab = scores.size()[1] as usize;
    let probs = Vec::<f32>::try_from(probs.reshape([-1]))?;
    let mut codes = Vec::with_capacity(samplers.len());
    for (b, sampler) in samplers.iter_mut().enumerate() {
        let row = &probs[b * vocab..(b + 1) * vocab];
        codes.push(if sampler.params.do_sample {
            let u: f64 = sampler.rng.random();
            draw(row, u)
        } else if row.iter().any(|p| p.is_nan()) {
            Err(anyhow::anyhow!("cannot pick a code: the scores are not numbers"))
        } else {
            Ok(greedy.int64_value(&[b as i64]))
        });
    }
    Ok(codes)
}

/// The processed scores ([V], float32) that greedy takes the argmax of, or that sampling
/// turns into probabilities: HF's processor order.
pub fn process_logits(logits: &Tensor, history: &[i64], p: &SamplingParams) -> Result<Tensor> {
    Ok(process_logits_rows(&logits.reshape([1, -1]), &[history], &[p])?.reshape([-1]))
}

/// [`process_logits`] for every row of `logits` ([B, V]) with its own history and parameters.
/// A parameter that disables a step for a row (penalty 1, temperature 1, top-k 0, top-p 1,
/// greedy) leaves that row's scores exactly as they are.
pub fn process_logits_rows(logits: &Tensor, histories: &[&[i64]], params: &[&SamplingParams]) -> Result<Tensor> {
    let (rows, vocab) = logits.size2().context("logits must be [B, V]")?;
    if vocab == 0 {
        bail!("empty logits");
    }
    if histories.len() as i64 != rows || params.len() as i64 != rows {
        bail!(
            "{rows} rows of logits, {} histories, {} parameter sets",
            histories.len(),
            params.len()
        );
    }
    let device = logits.device();
    // One value per row, [B, 1]. Floats go as float32: the scalar the single-row kernels (and
    // HF's processors) compare and divide with is rounded to float32 too.
    let column = |values: &[f32]| Tensor::from_slice(values).to_device(device).view([rows, 1]);
    let flags = |values: &[bool]| Tensor::from_slice(values).to_device(device).view([rows, 1]);
    let mut scores = logits.to_kind(Kind::Float);

    // Repetition penalty over each row's distinct history ids.
    let mut seen = vec![false; (rows * vocab) as usize];
    for (b, history) in histories.iter().enumerate() {
        if params[b].repetition_penalty == 1.0 {
            continue;
        }
        for &id in history.iter() {
            if id < 0 || id >= vocab {
                bail!("history id {id} is outside the {vocab} logits");
            }
            seen[b * vocab as usize + id as usize] = true;
        }
    }
    if seen.iter().any(|&s| s) {
        let seen = Tensor::from_slice(&seen).to_device(device).view([rows, vocab]);
        let penalty: Vec<f32> = params.iter().map(|p| p.repetition_penalty as f32).collect();
        let penalty = column(&penalty);
        let penalised = (&scores * &penalty).where_self(&scores.lt(0.0), &(&scores / &penalty));
        scores = penalised.where_self(&seen, &scores);
    }
    if !params.iter().any(|p| p.do_sample) {
        return Ok(scores);
    }
    // Greedy rows get neutral values below: their scores pass through unchanged.
    let per_row = |f: &dyn Fn(&SamplingParams) -> f64, neutral: f64| -> Vec<f64> {
        params
            .iter()
            .map(|p| if p.do_sample { f(p) } else { neutral })
            .collect()
    };

    let temperature = per_row(&|p| p.temperature, 1.0);
    if temperature.iter().any(|&t| t != 1.0) {
        let temperature: Vec<f32> = temperature.iter().map(|&t| t as f32).collect();
        scores = &scores / column(&temperature);
    }

    // Top-k: keep scores at or above each row's k-th best (ties kept); k = 0 keeps all.
    let top_k: Vec<i64> = per_row(&|p| p.top_k.min(vocab) as f64, 0.0)
        .iter()
        .map(|&k| k as i64)
        .collect();
    let widest = top_k.iter().copied().max().unwrap_or(0);
    if widest > 0 {
        let (top, _) = scores.topk(widest, -1, true, true);
        let kth_index: Vec<i64> = top_k.iter().map(|&k| k.max(1) - 1).collect();
        let kth_index = Tensor::from_slice(&kth_index).to_device(device).view([rows, 1]);
        let kth = top.gather(1, &kth_index, false);
        let filtered: Vec<bool> = top_k.iter().map(|&k| k > 0).collect();
        let below = scores.lt_tensor(&kth).logical_and(&flags(&filtered));
        scores = scores.masked_fill(&below, f64::NEG_INFINITY);
    }

    // Top-p: drop the least likely codes whose total stays within 1 - top_p; the most likely
    // code always survives. top_p = 1 drops nothing.
    let top_p = per_row(&|p| p.top_p, 1.0);
    if top_p.iter().any(|&p| p < 1.0) {
        let (sorted, order) = scores.sort(-1, false);
        let cumulative = sorted.softmax(-1, Kind::Float).cumsum(-1, Kind::Float);
        let limit: Vec<f32> = top_p.iter().map(|&p| (1.0 - p) as f32).collect();
        let filtered: Vec<bool> = top_p.iter().map(|&p| p < 1.0).collect();
        let drop_sorted = cumulative.le_tensor(&column(&limit)).logical_and(&flags(&filtered));
        let _ = drop_sorted.narrow(1, vocab - 1, 1).fill_(0);
        let drop = drop_sorted.scatter(1, &order, &drop_sorted);
        scores = scores.masked_fill(&drop, f64::NEG_INFINITY);
    }
    Ok(scores)
}

/// Inverts the cumulative distribution of `probs` at `u` in [0, 1).
fn draw(probs: &[f32], u: f64) -> Result<i64> {
    let total: f64 = probs.iter().map(|&p| p as f64).sum();
    if !(total.is_finite() && total > 0.0) {
        bail!("cannot sample: the probabilities sum to {total}");
    }
    let target = u * total;
    let mut cumulative = 0.0;
    let mut last_positive = None;
    for (i, &p) in probs.iter().enumerate() {
        if p <= 0.0 {
            continue;
        }
        cumulative += p as f64;
        last_positive = Some(i as i64);
        if target < cumulative {
            return Ok(i as i64);
        }
    }
    // Rounding can leave the target just past the sum: the last possible code.
    last_positive.ok_or_else(|| anyhow::anyhow!("cannot sample: no code has a positive probability"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t).unwrap()
    }

    #[test]
    fn defaults_follow_the_reference_signatures_and_config() {
        let d = SamplingParams::default();
        assert_eq!(
            (
                d.temperature,
                d.top_k,
                d.top_p,
                d.repetition_penalty,
                d.length_penalty,
                d.do_sample
            ),
            (0.75, 50, 0.85, 10.0, 1.0, true)
        );
        let c = SamplingParams::from_config(&XttsConfig::default());
        assert_eq!(c.repetition_penalty, 5.0);
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_once() {
        let logits = Tensor::from_slice(&[2.0f32, -2.0, 4.0, 1.0]);
        let p = SamplingParams::greedy(2.0);
        // id 0 repeated: penalised once, not twice.
        let out = vals(&process_logits(&logits, &[0, 0, 1], &p).unwrap());
        assert_eq!(out, vec![1.0, -4.0, 4.0, 1.0]);
    }

    #[test]
    fn greedy_ignores_temperature_and_top_k() {
        let logits = Tensor::from_slice(&[2.0f32, 3.0, 1.0]);
        let mut p = SamplingParams::greedy(1.0);
        p.temperature = 0.1;
        p.top_k = 1;
        let out = vals(&process_logits(&logits, &[], &p).unwrap());
        assert_eq!(out, vec![2.0, 3.0, 1.0]);
        let mut s = Sampler::new(&p).unwrap();
        assert_eq!(s.next(&logits, &[]).unwrap(), 1);
        // Penalising the winner moves the argmax.
        let mut s = Sampler::new(&SamplingParams::greedy(2.0)).unwrap();
        assert_eq!(s.next(&logits, &[1]).unwrap(), 0);
    }

    #[test]
    fn top_k_keeps_ties_with_the_kth_score() {
        let logits = Tensor::from_slice(&[1.0f32, 3.0, 2.0, 2.0, 0.5]);
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            repetition_penalty: 1.0,
            ..SamplingParams::default()
        };
        let out = vals(&process_logits(&logits, &[], &p).unwrap());
        let kept: Vec<bool> = out.iter().map(|v| v.is_finite()).collect();
        assert_eq!(kept, vec![false, true, true, true, false]);
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // Probabilities 0.5, 0.3, 0.15, 0.05.
        let probs = [0.5f32, 0.3, 0.15, 0.05];
        let logits = Tensor::from_slice(&probs.map(|p| p.ln()));
        let p = |top_p| SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p,
            repetition_penalty: 1.0,
            ..SamplingParams::default()
        };
        let kept = |top_p| -> Vec<bool> {
            vals(&process_logits(&logits, &[], &p(top_p)).unwrap())
                .iter()
                .map(|v| v.is_finite())
                .collect()
        };
        assert_eq!(kept(0.7), vec![true, true, false, false]);
        assert_eq!(kept(0.85), vec![true, true, true, false]);
        // Even a tiny nucleus keeps the most likely code.
        assert_eq!(kept(0.01), vec![true, false, false, false]);
    }

    #[test]
    fn seeded_sampling_repeats_and_seeds_differ() {
        tch::manual_seed(3);
        let logits = Tensor::randn([200], (Kind::Float, tch::Device::Cpu));
        let run = |seed| {
            let params = SamplingParams {
                seed: Some(seed),
                top_k: 0,
                top_p: 1.0,
                temperature: 2.0,
                repetition_penalty: 1.0,
                ..SamplingParams::default()
            };
            let mut s = Sampler::new(&params).unwrap();
            (0..40).map(|_| s.next(&logits, &[]).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }

    /// Rows with different settings, processed together, give each row exactly what it gets
    /// alone, and drawing them together draws what each sampler draws alone.
    #[test]
    fn batched_rows_equal_rows_alone() {
        tch::manual_seed(5);
        let logits = Tensor::randn([5, 60], (Kind::Float, tch::Device::Cpu)) * 3.0;
        let params = [
            SamplingParams {
                seed: Some(1),
                ..SamplingParams::default()
            },
            SamplingParams::greedy(2.0),
            SamplingParams {
                temperature: 1.3,
                top_k: 0,
                top_p: 0.5,
                seed: Some(2),
                ..SamplingParams::default()
            },
            SamplingParams {
                top_k: 5,
                top_p: 1.0,
                repetition_penalty: 1.0,
                seed: Some(3),
                ..SamplingParams::default()
            },
            SamplingParams {
                top_k: 200,
                seed: Some(4),
                ..SamplingParams::default()
            },
        ];
        let histories: [&[i64]; 5] = [&[1, 7, 7, 9], &[3, 4], &[], &[0, 59], &[10]];
        let refs: Vec<&SamplingParams> = params.iter().collect();
        let together = process_logits_rows(&logits, &histories, &refs).unwrap();
        for b in 0..5 {
            let alone = process_logits(&logits.get(b as i64), histories[b], &params[b]).unwrap();
            let (x, y) = (vals(&together.get(b as i64)), vals(&alone));
            assert_eq!(x.len(), y.len());
            for (i, (a, c)) in x.iter().zip(&y).enumerate() {
                assert!(
                    a == c || (a.is_infinite() && c.is_infinite()),
                    "row {b} code {i}: {a} vs {c}"
                );
            }
        }
        let mut batch: Vec<Sampler> = params.iter().map(|p| Sampler::new(p).unwrap()).collect();
        let mut single: Vec<Sampler> = params.iter().map(|p| Sampler::new(p).unwrap()).collect();
        for _ in 0..20 {
            let mut refs: Vec<&mut Sampler> = batch.iter_mut().collect();
            let codes = sample_rows(&mut refs, &histories, &logits).unwrap();
            for b in 0..5 {
                assert_eq!(
                    *codes[b].as_ref().unwrap(),
                    single[b].next(&logits.get(b as i64), histories[b]).unwrap()
                );
            }
        }
    }

    #[test]
    fn draw_inverts_the_cdf_and_skips_zero_mass() {
        let probs = [0.0f32, 0.25, 0.0, 0.75];
        assert_eq!(draw(&probs, 0.0).unwrap(), 1);
        assert_eq!(draw(&probs, 0.24).unwrap(), 1);
        assert_eq!(draw(&probs, 0.26).unwrap(), 3);
        assert_eq!(draw(&probs, 0.999_999_9).unwrap(), 3);
        assert!(draw(&[0.0, 0.0], 0.5).is_err());
    }

    #[test]
    fn a_row_that_cannot_be_sampled_fails_alone() {
        let logits = Tensor::from_slice(&[1.0f32, 2.0, 3.0, f32::NAN, 0.5, 0.5]).view([3, 2]);
        let p = SamplingParams {
            repetition_penalty: 1.0,
            seed: Some(1),
            ..SamplingParams::default()
        };
        let (mut a, mut b, mut c) = (
            Sampler::new(&p).unwrap(),
            Sampler::new(&p).unwrap(),
            Sampler::new(&SamplingParams::greedy(1.0)).unwrap(),
        );
        let codes = sample_rows(&mut [&mut a, &mut b, &mut c], &[&[], &[], &[]], &logits).unwrap();
        assert!(codes[0].is_ok() && codes[2].is_ok(), "{codes:?}");
        assert!(codes[1].is_err(), "{codes:?}");
    }

    #[test]
    fn bad_parameters_and_history_are_rejected() {
        let bad = SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        };
        assert!(Sampler::new(&bad).is_err());
        let bad = SamplingParams {
            top_p: 1.5,
            ..SamplingParams::default()
        };
        assert!(Sampler::new(&bad).is_err());
        let logits = Tensor::from_slice(&[1.0f32, 2.0]);
        assert!(process_logits(&logits, &[5], &SamplingParams::default()).is_err());
    }
}
