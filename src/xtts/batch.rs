//! Continuous batching of GPT decoding: many generations share one batched forward per step.
//!
//! Keys and values live in a [`SlotCache`]: one preallocated slot per concurrently speaking
//! request, each long enough for the longest generation the config allows (conditioning +
//! text + start code + every audio code). Slots fill independently, so a generation can join
//! (its prefill runs alone in its slot) or leave (its slot is freed) between any two steps.
//! A decode step gathers the rows it runs, writes each row's new key/value at that row's own
//! position and masks every slot position the row has not filled.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::gpt::{layer_buffers, Gpt, GptConfig, KvStore, StepKeys};
use super::model::StopReason;
use super::sampling::{sample_rows, Sampler, SamplingParams};

/// Conditioning latents the perceiver resampler emits per voice (spec 3).
pub const COND_LATENTS: i64 = 32;

/// Positions one generation may need: conditioning, `[START] text [STOP]`, the start code and
/// every audio code.
pub fn slot_capacity(cfg: &GptConfig) -> i64 {
    COND_LATENTS + cfg.max_text_tokens + 2 + 1 + cfg.max_new_tokens
}

/// What the step under way writes.
enum SlotStep {
    /// `t` positions of each of `slots` from their start (rows shorter than `t` are padded at
    /// the end: causal masking keeps their real positions from seeing the padding).
    Prefill {
        slots: Tensor,
        lens: Vec<(usize, i64)>,
        t: i64,
        mask: Tensor,
    },
    /// One position for each of `rows`, at `positions`; keys are read over `span` positions.
    /// `run`: the rows are the consecutive slots `start..start + n`, read as a view, not a copy.
    Decode {
        rows: Tensor,
        positions: Tensor,
        span: i64,
        mask: Tensor,
        run: Option<(i64, i64)>,
    },
}

/// Keys and values of every layer for `slots` independent sequences of up to `capacity`
/// positions each, allocated once.
pub struct SlotCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    lens: Vec<i64>,
    capacity: i64,
    step: Option<SlotStep>,
}

impl SlotCache {
    /// Fails (instead of panicking) when the memory is not there.
    pub fn new(cfg: &GptConfig, slots: usize, capacity: i64, (kind, device): (Kind, Device)) -> Result<Self> {
        let shape = [slots as i64, cfg.heads, capacity, cfg.dim / cfg.heads];
        let context = || format!("allocating {slots} key/value slots of {capacity} positions");
        Ok(Self {
            keys: layer_buffers(cfg, shape, (kind, device)).with_context(context)?,
            values: layer_buffers(cfg, shape, (kind, device)).with_context(context)?,
            lens: vec![0; slots],
            capacity,
            step: None,
        })
    }

    pub fn slots(&self) -> usize {
        self.lens.len()
    }

    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Positions filled in `slot`.
    pub fn len(&self, slot: usize) -> i64 {
        self.lens[slot]
    }

    /// Bytes held by keys and values.
    pub fn bytes(&self) -> i64 {
        self.keys
            .iter()
            .chain(&self.values)
            .map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as i64)
            .sum()
    }

    /// Empties a slot for a new sequence (its old contents are masked, never read).
    pub fn clear(&mut self, slot: usize) {
        self.lens[slot] = 0;
    }

    /// Prepares a prefill of `lens[i].1` positions into each empty slot `lens[i].0`, run as one
    /// batch padded to the longest.
    fn begin_prefill(&mut self, lens: &[(usize, i64)]) -> Result<()> {
        for &(slot, t) in lens {
            if self.lens[slot] != 0 {
                bail!("slot {slot} is not empty");
            }
            if t > self.capacity {
                bail!("prefill of {t} positions exceeds the slot capacity {}", self.capacity);
            }
        }
        let t = lens.iter().map(|&(_, t)| t).max().unwrap_or(0);
        let device = self.keys[0].device();
        let mask = Tensor::f_ones([t, t], (Kind::Bool, device))?.f_tril(0)?;
        let slots: Vec<i64> = lens.iter().map(|&(s, _)| s as i64).collect();
        self.step = Some(SlotStep::Prefill {
            slots: Tensor::f_from_slice(&slots)?.f_to_device(device)?,
            lens: lens.to_vec(),
            t,
            mask,
        });
        Ok(())
    }

    /// Prepares one decode position for each slot of `rows`.
    fn begin_decode(&mut self, rows: &[usize]) -> Result<()> {
        let mut positions = Vec::with_capacity(rows.len());
        for &slot in rows {
            let pos = self.lens[slot];
            if pos == 0 {
                bail!("slot {slot} has no prefill");
            }
            if pos >= self.capacity {
                bail!("slot {slot} is full ({} positions)", self.capacity);
            }
            positions.push(pos);
        }
        let span = positions.iter().max().copied().unwrap_or(0) + 1;
        let device = self.keys[0].device();
        let idx: Vec<i64> = rows.iter().map(|&s| s as i64).collect();
        let rows_t = Tensor::f_from_slice(&idx)?.f_to_device(device)?;
        let positions_t = Tensor::f_from_slice(&positions)?.f_to_device(device)?;
        // Row b may see positions 0..=positions[b] of its own slot.
        let mask = Tensor::f_arange(span, (Kind::Int64, device))?
            .f_unsqueeze(0)?
            .f_le_tensor(&positions_t.f_unsqueeze(1)?)?
            .f_view([rows.len() as i64, 1, 1, span])?;
        let consecutive = rows.windows(2).all(|w| w[1] == w[0] + 1);
        self.step = Some(SlotStep::Decode {
            rows: rows_t,
            positions: positions_t,
            span,
            mask,
            run: consecutive.then(|| (rows[0] as i64, rows.len() as i64)),
        });
        Ok(())
    }

    /// Commits the step once every layer has written it.
    fn end_step(&mut self, rows: &[usize]) {
        match self.step.take() {
            Some(SlotStep::Prefill { lens, .. }) => lens.into_iter().for_each(|(slot, t)| self.lens[slot] = t),
            Some(SlotStep::Decode { .. }) => rows.iter().for_each(|&s| self.lens[s] += 1),
            None => {}
        }
    }
}

impl KvStore for SlotCache {
    fn append_layer(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<StepKeys> {
        match self.step.as_ref().context("no slot step was begun")? {
            SlotStep::Prefill { slots, t, mask, .. } => {
                // The rows attend only to their own new positions: to k and v themselves.
                let _ = self.keys[layer].f_narrow(2, 0, *t)?.f_index_copy_(0, slots, k)?;
                let _ = self.values[layer].f_narrow(2, 0, *t)?.f_index_copy_(0, slots, v)?;
                Ok((k.shallow_clone(), v.shallow_clone(), Some(mask.shallow_clone())))
            }
            SlotStep::Decode {
                rows,
                positions,
                span,
                mask,
                run,
            } => {
                let index = [Some(rows.shallow_clone()), None, Some(positions.shallow_clone())];
                // k, v: [B, H, 1, hd]; the indexed view is [B, H, hd].
                let _ = self.keys[layer].f_index_put_(&index, &k.f_squeeze_dim(2)?, false)?;
                let _ = self.values[layer].f_index_put_(&index, &v.f_squeeze_dim(2)?, false)?;
                // Gathering copies every cached key of the rows: avoid it when they are adjacent.
                let gather = |all: &Tensor| match run {
                    Some((start, n)) => all.f_narrow(0, *start, *n)?.f_narrow(2, 0, *span),
                    None => all.f_narrow(2, 0, *span)?.f_index_select(0, rows),
                };
                let (keys, values) = (gather(&self.keys[layer])?, gather(&self.values[layer])?);
                Ok((keys, values, Some(mask.shallow_clone())))
            }
        }
    }
}

/// One generated code of one row.
#[derive(Debug)]
pub struct Token {
    pub slot: usize,
    pub code: i64,
    /// The GPT output that produced the code, [1, D].
    pub latent: Tensor,
    /// Set on the row's last code; the row has left the batch and its slot is free.
    pub finished: Option<StopReason>,
    /// The row's code could not be chosen (its scores were not numbers): it has left the
    /// batch; the other rows of the step go on.
    pub failed: Option<String>,
}

/// What one generation asks for.
#[derive(Debug, Clone)]
pub struct RowOptions {
    pub params: SamplingParams,
    /// Emit exactly this many codes: the stop code is masked before, and forced as the last
    /// (to give synthetic models realistic lengths). None: stop when the model does.
    pub forced_tokens: Option<usize>,
    /// End the row after this many codes as if the stop code came there: the sentence's budget
    /// ([`crate::endings::code_budget`]), so a generation that runs on is cut. None: no budget.
    /// With `forced_tokens` too, the first limit reached ends the row.
    pub max_codes: Option<usize>,
}

struct Row {
    sampler: Sampler,
    forced_tokens: Option<usize>,
    max_codes: Option<usize>,
    /// HF's view of the ids so far (dummy prefix id, start code, codes).
    history: Vec<i64>,
    codes: usize,
    last_code: i64,
}

/// Time and work of the decoder so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DecoderStats {
    pub prefills: u64,
    pub steps: u64,
    /// Sum of the rows over every decode step (mean batch = rows / steps).
    pub rows: u64,
    pub tokens: u64,
    pub prefill_ms: f64,
    pub step_ms: f64,
}

/// Runs up to `slots` generations at once over one GPT.
pub struct BatchDecoder<'m> {
    gpt: &'m Gpt,
    cache: SlotCache,
    rows: Vec<Option<Row>>,
    stats: DecoderStats,
}

impl<'m> BatchDecoder<'m> {
    /// Allocates the key/value slots for `max_batch` generations of the config's longest size.
    pub fn new(gpt: &'m Gpt, max_batch: usize) -> Result<Self> {
        if max_batch == 0 {
            bail!("max_batch must be at least 1");
        }
        let cfg = gpt.config();
        let cache = SlotCache::new(cfg, max_batch, slot_capacity(cfg), (gpt.kind(), gpt.device()))?;
        Ok(Self::with_cache(gpt, cache))
    }

    /// A decoder over slots allocated earlier (empty ones).
    pub fn with_cache(gpt: &'m Gpt, cache: SlotCache) -> Self {
        let slots = cache.slots();
        Self {
            gpt,
            cache,
            rows: (0..slots).map(|_| None).collect(),
            stats: DecoderStats::default(),
        }
    }

    /// Gives the slots back (every generation is dropped), to build a decoder again later.
    pub fn into_cache(mut self) -> SlotCache {
        for slot in 0..self.rows.len() {
            self.release(slot);
        }
        self.cache
    }

    pub fn max_batch(&self) -> usize {
        self.rows.len()
    }

    pub fn free_slots(&self) -> usize {
        self.rows.iter().filter(|r| r.is_none()).count()
    }

    /// Slots generating now, in slot order.
    pub fn active(&self) -> Vec<usize> {
        (0..self.rows.len()).filter(|&s| self.rows[s].is_some()).collect()
    }

    pub fn cache(&self) -> &SlotCache {
        &self.cache
    }

    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Starts a generation from `prefix` ([1, P, D], conditioning + text): runs its prefill in
    /// a free slot and returns its first code. Fails when no slot is free or it cannot fit.
    pub fn admit(&mut self, prefix: &Tensor, opts: &RowOptions) -> Result<Token> {
        self.admit_many(&[(prefix, opts)]).remove(0)
    }

    /// Starts several generations with their prefills run as one batch; one result per request,
    /// in order. A request that cannot start (no free slot, too long, bad options) fails alone.
    pub fn admit_many(&mut self, requests: &[(&Tensor, &RowOptions)]) -> Vec<Result<Token>> {
        let _guard = tch::no_grad_guard();
        let started = Instant::now();
        let cfg = self.gpt.config();
        let mut free = (0..self.rows.len()).filter(|&s| self.rows[s].is_none());
        let mut results: Vec<Option<Result<Token>>> = Vec::with_capacity(requests.len());
        // (request index, slot, prefill length, sampler)
        let mut starting = Vec::new();
        for (i, (prefix, opts)) in requests.iter().enumerate() {
            let checked = (|| {
                let (_, p, _) = prefix.size3().context("prefix must be [1, P, D]")?;
                if p + 1 + cfg.max_new_tokens > self.cache.capacity() {
                    bail!(
                        "a prefix of {p} positions leaves no room for {} codes in a slot of {}",
                        cfg.max_new_tokens,
                        self.cache.capacity()
                    );
                }
                let sampler = Sampler::new(&opts.params)?;
                let slot = free.next().context("no free decoding slot")?;
                Ok((slot, p + 1, sampler))
            })();
            match checked {
                Ok((slot, t, sampler)) => {
                    starting.push((i, slot, t, sampler));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !starting.is_empty() {
            match self.prefill(requests, &starting) {
                Ok(latents) => {
                    let slots: Vec<usize> = starting.iter().map(|s| s.1).collect();
                    for (i, slot, _, sampler) in starting.drain(..) {
                        let opts = requests[i].1;
                        self.rows[slot] = Some(Row {
                            sampler,
                            forced_tokens: opts.forced_tokens.map(|t| t.clamp(1, cfg.max_new_tokens as usize)),
                            max_codes: opts.max_codes.map(|t| t.max(1)),
                            history: vec![1, cfg.start_audio_token],
                            codes: 0,
                            last_code: cfg.start_audio_token,
                        });
                    }
                    match self.pick(&slots, &latents) {
                        Ok(tokens) => {
                            let mut tokens = tokens.into_iter();
                            for r in results.iter_mut().filter(|r| r.is_none()) {
                                *r = tokens.next().map(Ok);
                            }
                        }
                        Err(e) => {
                            slots.iter().for_each(|&s| self.release(s));
                            let reason = format!("{e:#}");
                            for r in results.iter_mut().filter(|r| r.is_none()) {
                                *r = Some(Err(anyhow::anyhow!("sampling the first code: {reason}")));
                            }
                        }
                    }
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    for (_, slot, _, _) in &starting {
                        self.cache.clear(*slot);
                    }
                    for r in results.iter_mut().filter(|r| r.is_none()) {
                        *r = Some(Err(anyhow::anyhow!("prefill failed: {reason}")));
                    }
                }
            }
            self.stats.prefills += 1;
            self.stats.prefill_ms += started.elapsed().as_secs_f64() * 1e3;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("request was not started"))))
            .collect()
    }

    /// Runs the prefills of `starting` (request index, slot, length) as one padded batch and
    /// returns each one's last latent, [N, D].
    fn prefill(
        &mut self,
        requests: &[(&Tensor, &RowOptions)],
        starting: &[(usize, usize, i64, Sampler)],
    ) -> Result<Tensor> {
        let cfg = self.gpt.config();
        let device = self.gpt.device();
        let longest = starting.iter().map(|s| s.2).max().unwrap_or(0);
        let start = self.gpt.audio_embeddings_rows(&[cfg.start_audio_token], &[0])?;
        let rows = starting
            .iter()
            .map(|&(i, _, t, _)| {
                let parts = [requests[i].0.f_to_device(device)?, start.shallow_clone()];
                let row = Tensor::f_cat(&parts, 1)?;
                if t < longest {
                    let pad = Tensor::f_zeros([1, longest - t, cfg.dim], (row.kind(), device))?;
                    Tensor::f_cat(&[row, pad], 1)
                } else {
                    Ok(row)
                }
            })
            .collect::<Result<Vec<_>, tch::TchError>>()?;
        let embeds = Tensor::f_cat(&rows, 0)?;
        let lens: Vec<(usize, i64)> = starting.iter().map(|&(_, slot, t, _)| (slot, t)).collect();
        for &(slot, _) in &lens {
            self.cache.clear(slot);
        }
        self.cache.begin_prefill(&lens)?;
        let forward = self.gpt.forward_store(&mut self.cache, &embeds);
        self.cache.end_step(&[]);
        let latents = forward?.latents;
        let last: Vec<i64> = lens.iter().map(|&(_, t)| t - 1).collect();
        let last = Tensor::f_from_slice(&last)?
            .f_to_device(device)?
            .f_view([-1, 1, 1])?
            .f_expand([-1, 1, cfg.dim], false)?;
        Ok(latents.f_gather(1, &last, false)?.f_squeeze_dim(1)?)
    }

    /// Runs one decode step for the given active slots together; one token per slot.
    pub fn step(&mut self, slots: &[usize]) -> Result<Vec<Token>> {
        let _guard = tch::no_grad_guard();
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let mut codes = Vec::with_capacity(slots.len());
        let mut positions = Vec::with_capacity(slots.len());
        for &slot in slots {
            let row = self
                .rows
                .get(slot)
                .and_then(Option::as_ref)
                .with_context(|| format!("slot {slot} is not generating"))?;
            codes.push(row.last_code);
            positions.push(row.codes as i64);
        }
        let embeds = self.gpt.audio_embeddings_rows(&codes, &positions)?;
        self.cache.begin_decode(slots)?;
        let forward = self.gpt.forward_store(&mut self.cache, &embeds);
        self.cache.end_step(slots);
        let latents = forward?.last();
        let tokens = match self.pick(slots, &latents) {
            Ok(tokens) => tokens,
            Err(e) => {
                slots.iter().for_each(|&slot| self.release(slot));
                return Err(e.context("sampling"));
            }
        };
        self.stats.steps += 1;
        self.stats.rows += slots.len() as u64;
        self.stats.step_ms += started.elapsed().as_secs_f64() * 1e3;
        Ok(tokens)
    }

    /// Ends a generation early (the listener left); its slot is free for the next one.
    pub fn release(&mut self, slot: usize) {
        if let Some(row) = self.rows.get_mut(slot) {
            *row = None;
            self.cache.clear(slot);
        }
    }

    /// Chooses the next code of each of `slots` from its latent (row b of `latents`, [B, D])
    /// and records it. One logits matmul and one sampling pass for the whole batch.
    fn pick(&mut self, slots: &[usize], latents: &Tensor) -> Result<Vec<Token>> {
        let cfg = self.gpt.config();
        let (stop, max_new) = (cfg.stop_audio_token, cfg.max_new_tokens as usize);
        let logits = self.gpt.mel_logits(latents)?;
        let mut rows = Vec::with_capacity(slots.len());
        for (slot, row) in self.rows.iter_mut().enumerate() {
            if let Some(b) = slots.iter().position(|&s| s == slot) {
                rows.push((b, row.as_mut()));
            }
        }
        rows.sort_by_key(|(b, _)| *b);
        let mut rows = rows
            .into_iter()
            .map(|(b, row)| row.with_context(|| format!("slot {} is not generating", slots[b])))
            .collect::<Result<Vec<&mut Row>>>()?;
        if rows.len() != slots.len() {
            bail!("slots {slots:?}: some do not exist or repeat");
        }
        // Forced lengths: the stop code is masked until the last code, which is the stop code.
        // A row at its budget gets the stop code too (nothing is masked before it).
        let forced_stop: Vec<bool> = rows
            .iter()
            .map(|r| {
                let last = |limit: Option<usize>| limit.is_some_and(|t| r.codes + 1 >= t);
                last(r.forced_tokens) || last(r.max_codes)
            })
            .collect();
        let no_stop: Vec<bool> = rows
            .iter()
            .zip(&forced_stop)
            .map(|(r, &last)| r.forced_tokens.is_some() && !last)
            .collect();
        if no_stop.iter().any(|&m| m) {
            let mask = Tensor::f_from_slice(&no_stop)?
                .f_to_device(logits.device())?
                .f_view([-1, 1])?;
            let _ = logits.narrow(1, stop, 1).masked_fill_(&mask, f64::NEG_INFINITY);
        }
        let sampled = {
            let (mut samplers, histories): (Vec<&mut Sampler>, Vec<&[i64]>) = rows
                .iter_mut()
                .map(|r| {
                    let Row { sampler, history, .. } = &mut **r;
                    (sampler, history.as_slice())
                })
                .unzip();
            sample_rows(&mut samplers, &histories, &logits)?
        };
        let mut tokens = Vec::with_capacity(slots.len());
        let mut finished_slots = Vec::new();
        for (b, (row, sampled)) in rows.into_iter().zip(sampled).enumerate() {
            let sampled = match sampled {
                Ok(code) => code,
                Err(e) => {
                    finished_slots.push(slots[b]);
                    tokens.push(Token {
                        slot: slots[b],
                        code: stop,
                        latent: latents.narrow(0, b as i64, 1),
                        finished: Some(StopReason::Cancelled),
                        failed: Some(format!("{e:#}")),
                    });
                    continue;
                }
            };
            let mut code = if forced_stop[b] { stop } else { sampled };
            if no_stop[b] && code == stop {
                // Only possible when every other code was masked away by top-k/top-p.
                code = logits.get(b as i64).argmax(-1, false).int64_value(&[]);
            }
            let n = row.codes + 1;
            row.codes = n;
            row.history.push(code);
            row.last_code = code;
            let finished = if code == stop {
                Some(StopReason::StopToken)
            } else if n >= max_new {
                Some(StopReason::MaxTokens)
            } else {
                None
            };
            if finished.is_some() {
                finished_slots.push(slots[b]);
            }
            tokens.push(Token {
                slot: slots[b],
                code,
                latent: latents.narrow(0, b as i64, 1),
                finished,
                failed: None,
            });
        }
        self.stats.tokens += tokens.len() as u64;
        finished_slots.into_iter().for_each(|slot| self.release(slot));
        Ok(tokens)
    }
}
