//! The vocoder stage: turns each sentence's latents into audio on its own thread, so the
//! decoder's next step does not wait for it. Work is taken in rounds, in [`render_order`]
//! (deadline order, first audio ahead while the calls under way can spare it): the requests
//! first in it each contribute their next chunk, and those chunks are rendered in one batched
//! forward (one forward of several calls costs far less than one each); each request's work
//! stays in order. The stage is not always busy when it could be: a forward waits, within what
//! its own windows can spare, for a window nearly due whose codes are still being decoded. A
//! vocoder error ends its request (the decode loop sees it through the sink); a panic stops
//! the engine (see [`super::Health`]).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tch::Tensor;

use super::capacity::Slowdown;
use super::render_order::{hold_until, joins_forward, render_order, Forwards, Waiting as Pending};
use super::scheduler::ChunkPlan;
use super::start::{PlannedWindow, StartProfile};
use super::{secs_until, AudioSink, Fault, Health, Metrics, METRICS};
use crate::xtts::hifigan::HifiGan;
use crate::xtts::stream::{render_windows, render_windows_padded, StreamOptions, StreamVocoder, Window};

/// Work for the vocoder thread, in order.
pub enum VocoderWork {
    /// A sentence starts: its speaker and where its audio goes.
    Begin {
        id: u64,
        speaker: Tensor,
        speed: Option<f64>,
        sink: AudioSink,
    },
    /// The latent of the sentence's next code.
    Latent { id: u64, latent: Tensor },
    /// The sentence's codes are complete: render the rest of its audio.
    End { id: u64 },
    /// The request is over; sent after its last sentence's work.
    Finish { sink: AudioSink, result: Result<()> },
    /// The listener left: forget the sentence.
    Drop { id: u64 },
}

/// The streaming options at a request's speed (None: the configured one).
pub fn with_speed(stream: &StreamOptions, speed: Option<f64>) -> StreamOptions {
    let mut stream = stream.clone();
    stream.speed = speed.unwrap_or(stream.speed);
    stream
}

/// Where a sentence's chunks end and what they emit, as the stream `opts` renders them.
pub fn chunk_plan(opts: &StreamOptions) -> ChunkPlan {
    ChunkPlan {
        first: opts.first_chunk_tokens,
        chunk: opts.chunk_tokens,
        grow: opts.ramp,
        holdback: opts.holdback,
    }
}

/// Rehearses the start of a sentence of `codes` codes (silent latents, a neutral speaker):
/// every window's codes, render time and audio, the second of two runs (the first pays
/// libtorch's warm-up). Windows after the chunks stop growing are left out but the first.
/// Then forwards of several copies of its last window, and of its first, up to `batch_limit`.
pub fn rehearse_start(
    hifigan: &HifiGan,
    opts: &StreamOptions,
    sample_rate: u32,
    codes: usize,
    batch_limit: usize,
) -> Result<StartProfile> {
    let _guard = tch::no_grad_guard();
    let options = (tch::Kind::Float, hifigan.device());
    let speaker = Tensor::f_zeros([1, hifigan.speaker_dim(), 1], options)?;
    let latent = Tensor::f_zeros([hifigan.latent_dim()], options)?;
    let mut profile = StartProfile::default();
    for _ in 0..2 {
        let mut vocoder = StreamVocoder::new(hifigan, &speaker, opts)?;
        profile.windows.clear();
        for n in 1..=codes {
            let Some(window) = vocoder.add(&latent)? else { continue };
            let frames = window.frames();
            let started = Instant::now();
            let wav = render_windows(hifigan, &[&window])?.remove(0);
            let render_s = started.elapsed().as_secs_f64();
            let audio_s = vocoder.complete(window, &wav).len() as f64 / sample_rate as f64;
            let grew = profile
                .windows
                .last()
                .is_none_or(|w: &PlannedWindow| audio_s > w.audio_s + 1e-6);
            profile.windows.push(PlannedWindow {
                codes: n,
                frames,
                render_s,
                audio_s,
            });
            if !grew {
                break;
            }
        }
    }
    if let (Some(first), Some(last)) = (profile.windows.first(), profile.windows.last()) {
        let (first, last) = (first.codes, last.codes);
        profile.batches = rehearse_batches(hifigan, opts, &speaker, &latent, last, batch_limit, 2)?;
        // A first window renders in a few milliseconds on a CPU, where one run is too noisy.
        profile.first_batches = rehearse_batches(hifigan, opts, &speaker, &latent, first, batch_limit, 5)?;
    }
    Ok(profile)
}

/// Forwards of 2, 4, 8... copies of the window due at `codes` codes, up to `limit` and while
/// the time per window still falls: (copies, time over the window alone), each the fastest of
/// `runs` runs.
fn rehearse_batches(
    hifigan: &HifiGan,
    opts: &StreamOptions,
    speaker: &Tensor,
    latent: &Tensor,
    codes: usize,
    limit: usize,
    runs: usize,
) -> Result<Vec<(usize, f64)>> {
    let timed = |windows: &[&Window]| -> Result<f64> {
        let mut fastest = f64::INFINITY;
        for _ in 0..runs.max(1) {
            let started = Instant::now();
            render_windows(hifigan, windows)?;
            fastest = fastest.min(started.elapsed().as_secs_f64());
        }
        Ok(fastest)
    };
    let mut vocoder = StreamVocoder::new(hifigan, speaker, opts)?;
    for n in 1..=codes {
        let Some(window) = vocoder.add(latent)? else { continue };
        if n < codes {
            let wav = render_windows(hifigan, &[&window])?.remove(0);
            vocoder.complete(window, &wav);
            continue;
        }
        let alone = timed(&[&window])?.max(1e-9);
        let mut batches = Vec::new();
        let mut per_window = 1.0;
        let mut copies = 2;
        while copies <= limit {
            let factor = timed(&vec![&window; copies])? / alone;
            batches.push((copies, factor));
            if factor / copies as f64 >= per_window || copies == limit {
                break;
            }
            per_window = factor / copies as f64;
            copies = (copies * 2).min(limit);
        }
        return Ok(batches);
    }
    Ok(Vec::new())
}

/// Renders a forward of every shape the stage will use for a start, at every batch from 1 to
/// `batch`, so that no call waits for a shape's first forward: on a CPU, oneDNN sets up each
/// new shape's convolutions at several times the cost of the forward, and keeps that set-up
/// per thread (a tiny model's first two-window forward: about 60 ms on the vocoder's thread
/// after a warm-up on another, 12 ms after one on its own). So the stage warms on its thread.
/// First windows are warmed up to `first_batch` copies.
fn warm_shapes(hifigan: &HifiGan, profile: &StartProfile, batch: usize, first_batch: usize) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let options = (tch::Kind::Float, hifigan.device());
    let speaker = Tensor::f_zeros([1, hifigan.speaker_dim(), 1], options)?;
    let first_frames = profile.windows.first().map(|w| w.frames);
    for frames in profile.forward_shapes() {
        let latents = Tensor::f_zeros([1, hifigan.latent_dim(), frames], options)?;
        let most = if Some(frames) == first_frames {
            batch.max(first_batch)
        } else {
            batch
        };
        for copies in 1..=most.max(1) {
            let _wav = hifigan.generate_padded(&vec![(&latents, &speaker); copies], frames)?;
        }
    }
    Ok(())
}

/// How the vocoder stage renders and orders its work.
#[derive(Debug, Clone)]
pub struct StageSettings {
    pub opts: StreamOptions,
    /// Requests whose chunks share one forward, at most.
    pub max_batch: usize,
    /// Requests whose first windows share one forward, at most (a forward that starts with a
    /// first window renders only first windows).
    pub first_batch: usize,
    /// A request's first audio is due this long after its listener starts waiting.
    pub first_audio_target: Duration,
    /// Each chunk reaches its listener this long before its audio before runs out (the call's
    /// audio path, delivery, jitter).
    pub margin: Duration,
    /// The rehearsed start, whose render times say what a window should cost.
    pub start: StartProfile,
    pub fault: Option<Fault>,
}

/// Starts the vocoder thread; it runs until every sender of `work` is gone. Each round renders
/// the due chunks of up to `max_batch` requests in one forward. Before its first round the
/// thread renders each shape of a start once (`warm_shapes`) and says how long that took, or
/// why it failed (then it ends), on `warmed`.
pub fn spawn(
    hifigan: HifiGan,
    settings: StageSettings,
    work: Receiver<VocoderWork>,
    warmed: Sender<Result<Duration>>,
    health: Arc<Health>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("xtts-vocoder".into()).spawn(move || {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let warming = Instant::now();
            let warm = warm_shapes(&hifigan, &settings.start, settings.max_batch, settings.first_batch)
                .map(|()| warming.elapsed());
            let failed = warm.is_err();
            let _ = warmed.send(warm);
            if failed {
                return;
            }
            let _guard = tch::no_grad_guard();
            let mut stage = Stage::new(&hifigan, &settings);
            // Until when the last round held its forward back, waiting for a window.
            let mut hold: Option<Instant> = None;
            loop {
                if stage.is_idle() {
                    match work.recv() {
                        Ok(item) => stage.add(item),
                        Err(_) => return,
                    }
                } else if let Some(until) = hold {
                    match work.recv_timeout(until.saturating_duration_since(Instant::now())) {
                        Ok(item) => stage.add(item),
                        Err(RecvTimeoutError::Timeout) => {}
                        // No more work will come: the hold simply runs out.
                        Err(RecvTimeoutError::Disconnected) => {
                            std::thread::sleep(until.saturating_duration_since(Instant::now()))
                        }
                    }
                }
                while let Ok(item) = work.try_recv() {
                    stage.add(item);
                }
                hold = stage.round();
            }
        }));
        if let Err(panic) = run {
            health.stopped(&format!(
                "the vocoder thread panicked: {}",
                super::panic_message(panic.as_ref())
            ));
        }
    })
}

/// A request's work: its items in arrival order, and its next window once one is due (made
/// from the items before it, and rendered in a later forward if the vocoder waits).
struct RequestWork {
    sink: AudioSink,
    queue: VecDeque<VocoderWork>,
    ready: Option<Due>,
}

/// Work waiting, one queue per request.
#[derive(Default)]
struct Waiting {
    requests: Vec<RequestWork>,
    /// The request of each sentence id.
    sentence_sinks: HashMap<u64, AudioSink>,
}

impl Waiting {
    fn add(&mut self, item: VocoderWork) {
        let sink = match &item {
            VocoderWork::Begin { id, sink, .. } => {
                self.sentence_sinks.insert(*id, sink.clone());
                sink.clone()
            }
            VocoderWork::Finish { sink, .. } => sink.clone(),
            VocoderWork::Latent { id, .. } | VocoderWork::End { id } | VocoderWork::Drop { id } => {
                match self.sentence_sinks.get(id) {
                    Some(sink) => sink.clone(),
                    // Its sentence is gone already: nothing to do.
                    None => return,
                }
            }
        };
        if let VocoderWork::End { id } | VocoderWork::Drop { id } = &item {
            self.sentence_sinks.remove(id);
        }
        match self.requests.iter_mut().find(|r| r.sink.same_request(&sink)) {
            Some(request) => request.queue.push_back(item),
            None => self.requests.push(RequestWork {
                sink,
                queue: VecDeque::from([item]),
                ready: None,
            }),
        }
    }

    /// The requests with work in [`render_order`], and each one's urgency (indexed as
    /// `requests`, deadlines in seconds from `now`). A listener's deadline is when it runs out
    /// of audio (without audio yet: its first-audio target).
    /// `next_window_s` estimates a request's next window from the audio it has sent.
    fn in_render_order(
        &self,
        now: Instant,
        first_audio_target: Duration,
        forwards: &Forwards,
        next_window_s: impl Fn(f64) -> f64,
    ) -> (Vec<usize>, Vec<Pending>) {
        // Each deadline is read once: listeners report playout while the order is drawn.
        let pending: Vec<Pending> = self
            .requests
            .iter()
            .map(|RequestWork { sink, .. }| {
                let dry = sink.runs_dry_at(first_audio_target, now);
                let playout = sink.playout();
                Pending {
                    deadline: secs_until(dry, now),
                    first: playout.first_audio().is_none() && sink.origin() <= now,
                    render_s: next_window_s(playout.sent_duration().as_secs_f64()),
                }
            })
            .collect();
        (render_order(0.0, &pending, forwards), pending)
    }
}

/// A sentence being vocoded and where its audio goes.
struct Sentence<'a> {
    vocoder: StreamVocoder<'a>,
    sink: AudioSink,
}

/// A chunk due this round: whose it is, its render, and whether it ends its sentence.
struct Due {
    id: u64,
    window: Window,
    last: bool,
}

/// The vocoder stage: the sentences under way and the work waiting for them.
struct Stage<'a> {
    hifigan: &'a HifiGan,
    opts: &'a StreamOptions,
    /// Requests whose chunks share one forward, at most.
    max_batch: usize,
    /// Requests whose first windows share one forward, at most.
    first_batch: usize,
    first_audio_target: Duration,
    margin: Duration,
    start: &'a StartProfile,
    /// How much slower than rehearsed its forwards run now, forward by forward.
    slowdown: Slowdown,
    fault: Option<Fault>,
    sentences: HashMap<u64, Sentence<'a>>,
    waiting: Waiting,
    /// Generator forwards run.
    forwards: u64,
}

impl<'a> Stage<'a> {
    fn new(hifigan: &'a HifiGan, settings: &'a StageSettings) -> Self {
        Self {
            hifigan,
            opts: &settings.opts,
            max_batch: settings.max_batch.max(1),
            first_batch: settings.first_batch.max(settings.max_batch).max(1),
            first_audio_target: settings.first_audio_target,
            margin: settings.margin,
            start: &settings.start,
            slowdown: Slowdown::default(),
            fault: settings.fault,
            sentences: HashMap::new(),
            waiting: Waiting::default(),
            forwards: 0,
        }
    }

    fn add(&mut self, item: VocoderWork) {
        self.waiting.add(item);
    }

    fn is_idle(&self) -> bool {
        self.waiting.requests.is_empty()
    }

    /// One round. Each request's work is applied up to its next window (the latents before it
    /// are only collected), which waits as the request's ready window. The requests are then
    /// visited in [`render_order`]: the first with a window ready and those that
    /// [`joins_forward`] lets join it, up to [`Forwards::limit`] (`first_batch` first windows,
    /// else `max_batch`), are rendered in one forward and delivered in that order, unless
    /// [`hold_until`] says to wait for a listener nearly due whose window is not ready: then
    /// nothing is rendered and the round says until when to wait. A request's later work waits
    /// for a later round, so its chunks stay in order.
    fn round(&mut self) -> Option<Instant> {
        let started = Instant::now();
        for i in 0..self.waiting.requests.len() {
            while self.waiting.requests[i].ready.is_none() {
                let Some(item) = self.waiting.requests[i].queue.pop_front() else {
                    break;
                };
                self.waiting.requests[i].ready = self.apply(item);
            }
        }
        let forwards = Forwards {
            batch: self.max_batch,
            batch_factor: self.start.batch_factor(self.max_batch),
            first_batch: self.first_batch,
            first_batch_factor: self.start.first_batch_factor(self.first_batch),
            margin_s: self.margin.as_secs_f64(),
        };
        // Deadlines, and a hold, count from this instant.
        let now = Instant::now();
        let (order, pending) = self
            .waiting
            .in_render_order(now, self.first_audio_target, &forwards, |sent_s| {
                self.next_window_s(sent_s)
            });
        let is_ready = |i: usize| self.waiting.requests[i].ready.is_some();
        // The requests whose windows are in the forward, its head (the first ready) first.
        let mut members: Vec<usize> = Vec::new();
        let mut forward: Vec<Pending> = Vec::new();
        for i in order.into_iter().filter(|&i| is_ready(i)) {
            let joins = forward.first().is_none_or(|head| {
                forward.len() < forwards.limit(head) && joins_forward(0.0, &forward, &pending[i], &pending, &forwards)
            });
            if joins {
                members.push(i);
                forward.push(pending[i]);
            }
        }
        let not_ready: Vec<Pending> = (0..pending.len())
            .filter(|&i| !is_ready(i) && !pending[i].first)
            .map(|i| pending[i])
            .collect();
        // An estimate out of any clock's range is no reason to wait.
        let hold = hold_until(0.0, &forward, &not_ready, &forwards)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .and_then(|wait| now.checked_add(wait));
        if hold.is_none() && !members.is_empty() {
            let due: Vec<Due> = members
                .iter()
                .filter_map(|&i| self.waiting.requests[i].ready.take())
                .collect();
            let windows: Vec<&Window> = due.iter().map(|d| &d.window).collect();
            let rendered = self.render(&windows);
            for (d, wav) in due.into_iter().zip(rendered) {
                self.deliver(d, wav);
            }
        }
        self.waiting
            .requests
            .retain(|r| r.ready.is_some() || !r.queue.is_empty());
        Metrics::add(&METRICS.vocoder_us, started.elapsed().as_micros() as u64);
        hold
    }

    /// Seconds the next window of a request that has sent `sent_s` seconds of audio should
    /// take, at the slowdown seen lately.
    fn next_window_s(&self, sent_s: f64) -> f64 {
        self.start.next_window_s(sent_s) * self.slowdown.get()
    }

    /// Applies one item of work; returns the chunk it makes due, if any.
    fn apply(&mut self, item: VocoderWork) -> Option<Due> {
        match item {
            VocoderWork::Begin {
                id,
                speaker,
                speed,
                sink,
            } => match StreamVocoder::new(self.hifigan, &speaker, &with_speed(self.opts, speed)) {
                Ok(vocoder) => {
                    self.sentences.insert(id, Sentence { vocoder, sink });
                }
                Err(e) => sink.finish(Err(e.context("streaming vocoder"))),
            },
            VocoderWork::Latent { id, latent } => {
                let sentence = self.sentences.get_mut(&id)?;
                if sentence.sink.is_over() {
                    // Nobody listens: render nothing more for it.
                    self.sentences.remove(&id);
                    return None;
                }
                match sentence.vocoder.add(&latent) {
                    Ok(Some(window)) => {
                        return Some(Due {
                            id,
                            window,
                            last: false,
                        })
                    }
                    Ok(None) => {}
                    Err(e) => self.fail(id, e),
                }
            }
            VocoderWork::End { id } => {
                let sentence = self.sentences.get_mut(&id)?;
                match sentence.vocoder.last_window() {
                    Ok(Some(window)) => return Some(Due { id, window, last: true }),
                    Ok(None) => {
                        self.sentences.remove(&id);
                    }
                    Err(e) => self.fail(id, e),
                }
            }
            VocoderWork::Finish { sink, result } => sink.finish(result),
            VocoderWork::Drop { id } => {
                self.sentences.remove(&id);
            }
        }
        None
    }

    /// Renders the windows in one forward. A failed batch (out of memory, say) is retried one
    /// window at a time, so only a window that fails alone fails its request.
    fn render(&mut self, windows: &[&Window]) -> Vec<Result<Vec<f32>>> {
        self.forwards += 1;
        Metrics::add(&METRICS.vocoder_forwards, 1);
        Metrics::add(&METRICS.vocoder_windows, windows.len() as u64);
        // Windows of a forward are padded to the longest, and that to a shape seen before.
        let longest = windows.iter().map(|w| w.frames()).max().unwrap_or(0);
        let frames = self.start.forward_frames(longest);
        let expected = self.start.render_estimate(frames) * self.start.batch_factor(windows.len());
        Metrics::add(&METRICS.vocoder_expected_us, (expected * 1e6) as u64);
        let started = Instant::now();
        match render_windows_padded(self.hifigan, windows, frames) {
            Ok(wavs) => {
                self.slowdown.observe(started.elapsed().as_secs_f64() / expected);
                wavs.into_iter().map(Ok).collect()
            }
            Err(e) if windows.len() == 1 => vec![Err(e)],
            Err(_) => windows
                .iter()
                .map(|w| {
                    self.forwards += 1;
                    render_windows_padded(self.hifigan, &[w], frames).map(|mut wavs| wavs.remove(0))
                })
                .collect(),
        }
    }

    /// Hands a rendered chunk to its listener.
    fn deliver(&mut self, due: Due, wav: Result<Vec<f32>>) {
        let wav = match wav {
            Ok(wav) => wav,
            Err(e) => return self.fail(due.id, e),
        };
        if self.fault == Some(Fault::PanicVocoder) {
            panic!("fault injected: panic_vocoder");
        }
        let Some(sentence) = self.sentences.get_mut(&due.id) else {
            return;
        };
        let chunk = sentence.vocoder.complete(due.window, &wav);
        let delivered = chunk.is_empty() || sentence.sink.send_audio(chunk);
        if !delivered || due.last {
            self.sentences.remove(&due.id);
        }
    }

    /// Ends a sentence's request with a vocoder error.
    fn fail(&mut self, id: u64, e: anyhow::Error) {
        if let Some(sentence) = self.sentences.remove(&id) {
            sentence.sink.finish(Err(e.context("streaming vocoder")));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use super::*;
    use crate::engine::{Job, Playout, SpeechEvent, SpeechOptions, SpeechRequest};
    use crate::xtts::stream::tests::{chunks_alone, max_abs_diff, random_sentence, tiny_model, BATCH_TOL};

    fn settings(max_batch: usize) -> StageSettings {
        StageSettings {
            opts: StreamOptions::windowed(),
            max_batch,
            first_batch: max_batch,
            first_audio_target: Duration::from_millis(250),
            margin: Duration::from_millis(80),
            start: StartProfile::default(),
            fault: None,
        }
    }

    /// A request whose listener starts waiting `plays_in` from now.
    fn request(plays_in: Duration) -> (AudioSink, UnboundedReceiver<SpeechEvent>) {
        let (out, events) = unbounded_channel();
        let req = SpeechRequest {
            text: "hello".into(),
            lang: "en".into(),
            voice: "anna".into(),
            options: SpeechOptions {
                plays_in,
                ..SpeechOptions::default()
            },
        };
        let job = Job::new(req, out, Arc::new(Playout::new(24_000)));
        (job.sink(), events)
    }

    /// One sentence's whole work, as the decode loop sends it.
    fn sentence_work(id: u64, latents: &Tensor, speaker: &Tensor, sink: &AudioSink) -> Vec<VocoderWork> {
        let mut work = vec![VocoderWork::Begin {
            id,
            speaker: speaker.shallow_clone(),
            speed: None,
            sink: sink.clone(),
        }];
        for i in 0..latents.size()[0] {
            work.push(VocoderWork::Latent {
                id,
                latent: latents.get(i),
            });
        }
        work.push(VocoderWork::End { id });
        work.push(VocoderWork::Finish {
            sink: sink.clone(),
            result: Ok(()),
        });
        work
    }

    fn events(rx: &mut UnboundedReceiver<SpeechEvent>) -> Vec<SpeechEvent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn audio(events: &[SpeechEvent]) -> Vec<&Vec<f32>> {
        events
            .iter()
            .filter_map(|e| match e {
                SpeechEvent::Audio(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    /// Three requests, two rendered per forward: the two whose listeners run dry first share
    /// each round's forward (nobody is nearly due, see [`joins_forward`]), the third waits;
    /// every request gets the chunks it would get alone, in order, then its end.
    #[test]
    fn chunks_of_several_requests_share_a_forward_in_deadline_order() {
        let _guard = tch::no_grad_guard();
        let model = tiny_model();
        let hifigan = model.hifigan();
        let settings = settings(2);
        let mut stage = Stage::new(hifigan, &settings);
        // Listeners waiting in 1 s (b), in 5 s (c) and in 10 s (a).
        let plays_in = [10_000, 1_000, 5_000];
        let lengths = [23, 37, 30];
        let mut requests = Vec::new();
        for (i, (&ms, &n)) in plays_in.iter().zip(&lengths).enumerate() {
            let (latents, speaker) = random_sentence(10 + i as i64, n, hifigan.latent_dim(), hifigan.speaker_dim());
            let (sink, rx) = request(Duration::from_millis(ms));
            for item in sentence_work(i as u64, &latents, &speaker, &sink) {
                stage.add(item);
            }
            let alone: Vec<Vec<f32>> = chunks_alone(hifigan, &latents, &speaker, &settings.opts)
                .into_iter()
                .filter(|c| !c.is_empty())
                .collect();
            requests.push((rx, alone, Vec::new()));
        }

        stage.round();
        assert_eq!(stage.forwards, 1);
        for (i, (rx, _, got)) in requests.iter_mut().enumerate() {
            got.extend(events(rx));
            // b and c go first; a's listener waits longest.
            assert_eq!(audio(got).len(), usize::from(i != 0), "request {i} after one round");
        }

        let mut rounds = 1;
        while !stage.is_idle() {
            stage.round();
            rounds += 1;
            assert!(rounds < 100, "the stage never empties");
        }
        let mut chunks = 0;
        for (i, (rx, alone, got)) in requests.iter_mut().enumerate() {
            got.extend(events(rx));
            assert!(
                matches!(got.last(), Some(SpeechEvent::Done)),
                "request {i} does not end with Done"
            );
            let got = audio(got);
            assert_eq!(got.len(), alone.len(), "request {i}: chunk count");
            for (k, (g, a)) in got.iter().zip(alone.iter()).enumerate() {
                let d = max_abs_diff(g, a);
                assert!(d <= BATCH_TOL, "request {i} chunk {k}: differs from alone by {d:.3e}");
            }
            chunks += alone.len() as u64;
        }
        assert!(
            stage.forwards < chunks,
            "{} forwards for {chunks} chunks: nothing was batched",
            stage.forwards
        );
    }

    /// A listener under way with 100 ms of audio left and its next window not ready yet: the
    /// stage renders nothing for a listener with seconds to spare but waits for it, and renders
    /// its window as soon as it is ready.
    #[test]
    fn the_stage_waits_for_a_window_nearly_due() {
        let _guard = tch::no_grad_guard();
        let model = tiny_model();
        let hifigan = model.hifigan();
        // Windows that take 30 ms each.
        let start = StartProfile {
            windows: vec![PlannedWindow {
                codes: 8,
                frames: 32,
                render_s: 0.030,
                audio_s: 0.139,
            }],
            ..StartProfile::default()
        };
        let settings = StageSettings { start, ..settings(2) };
        let mut stage = Stage::new(hifigan, &settings);
        let (latents, speaker) = random_sentence(30, 12, hifigan.latent_dim(), hifigan.speaker_dim());
        // Under way: 100 ms of audio sent; the first 4 codes of its next sentence decoded.
        let (urgent, mut urgent_rx) = request(Duration::ZERO);
        assert!(urgent.send_audio(vec![0.0; 2_400]));
        let mut work = sentence_work(1, &latents, &speaker, &urgent).into_iter();
        work.by_ref().take(5).for_each(|item| stage.add(item));
        // A listener waiting in 2 s, its whole sentence ready.
        let (relaxed, mut relaxed_rx) = request(Duration::from_secs(2));
        for item in sentence_work(2, &latents, &speaker, &relaxed) {
            stage.add(item);
        }
        let asked = Instant::now();
        let hold = stage.round().expect("the stage waits for the urgent window");
        assert_eq!(stage.forwards, 0, "nothing rendered while waiting");
        assert!(hold > asked + Duration::from_secs(1), "it can afford to wait: {hold:?}");
        assert!(audio(&events(&mut relaxed_rx)).is_empty());
        // The urgent window is ready: it goes now, first.
        work.for_each(|item| stage.add(item));
        assert_eq!(stage.round(), None);
        assert_eq!(stage.forwards, 1);
        assert_eq!(
            audio(&events(&mut urgent_rx)).len(),
            2,
            "the 100 ms sent, then its chunk"
        );
    }

    /// Requests still waiting for their first audio share a forward of first windows up to
    /// `first_batch`, although other chunks go one per forward; each first chunk is what it
    /// would be alone. A forward of first windows takes no other chunk.
    #[test]
    fn first_windows_share_a_forward_of_their_own() {
        let _guard = tch::no_grad_guard();
        let model = tiny_model();
        let hifigan = model.hifigan();
        let settings = StageSettings {
            first_batch: 3,
            ..settings(1)
        };
        let mut stage = Stage::new(hifigan, &settings);
        let mut requests = Vec::new();
        for i in 0..4u64 {
            let (latents, speaker) = random_sentence(20 + i as i64, 30, hifigan.latent_dim(), hifigan.speaker_dim());
            let (sink, rx) = request(Duration::ZERO);
            for item in sentence_work(i, &latents, &speaker, &sink) {
                stage.add(item);
            }
            let alone = chunks_alone(hifigan, &latents, &speaker, &settings.opts);
            requests.push((rx, alone));
        }
        stage.round();
        assert_eq!(stage.forwards, 1);
        let got: Vec<Vec<SpeechEvent>> = requests.iter_mut().map(|(rx, _)| events(rx)).collect();
        let served: Vec<usize> = (0..4).filter(|&i| !audio(&got[i]).is_empty()).collect();
        assert_eq!(served.len(), 3, "three first windows in the first forward");
        for &i in &served {
            let first = audio(&got[i]);
            assert_eq!(first.len(), 1, "request {i}: its first chunk only");
            let d = max_abs_diff(first[0], &requests[i].1[0]);
            assert!(d <= BATCH_TOL, "request {i}: differs from alone by {d:.3e}");
        }
        // Then one chunk per forward: the fourth's first window, or a second one.
        stage.round();
        assert_eq!(stage.forwards, 2);
        let more: usize = requests.iter_mut().map(|(rx, _)| audio(&events(rx)).len()).sum();
        assert_eq!(more, 1);
    }

    /// The rehearsed start has the windows a real sentence gets: at the codes where its chunks
    /// complete, each as long in audio as the chunk it emits, growing until the full size.
    #[test]
    fn a_rehearsed_start_has_the_windows_of_a_real_sentence() {
        let model = tiny_model();
        let hifigan = model.hifigan();
        let opts = StreamOptions {
            first_chunk_tokens: 8,
            ..StreamOptions::windowed()
        };
        let profile = rehearse_start(hifigan, &opts, 24_000, 80, 4).unwrap();
        let codes: Vec<usize> = profile.windows.iter().map(|w| w.codes).collect();
        // The same sentence streamed for real: where its chunks come out, and their lengths.
        let (latents, speaker) = random_sentence(3, 80, hifigan.latent_dim(), hifigan.speaker_dim());
        let _guard = tch::no_grad_guard();
        let mut vocoder = StreamVocoder::new(hifigan, &speaker, &opts).unwrap();
        let mut real = Vec::new();
        for n in 1..=80 {
            if let Some(chunk) = vocoder.push(&latents.get(n as i64 - 1)).unwrap() {
                real.push((n, chunk.len()));
            }
        }
        assert_eq!(codes, real[..codes.len()].iter().map(|r| r.0).collect::<Vec<_>>());
        // The decoder's plan of the same stream: its chunks end where the real ones do, and
        // each emits the audio of the codes the plan says.
        let plan = chunk_plan(&opts);
        let ends: Vec<usize> = (1..=80).filter(|&n| plan.completes_chunk(n)).collect();
        assert_eq!(ends, real.iter().map(|r| r.0).collect::<Vec<_>>());
        let samples_per_code = 24_000.0 / crate::engine::capacity::CODES_PER_SECOND;
        let mut emitted = 0;
        for &(n, samples) in &real {
            let codes = plan.emitted(n) - emitted;
            emitted = plan.emitted(n);
            let expected = codes as f64 * samples_per_code;
            assert!(
                (samples as f64 - expected).abs() <= samples_per_code,
                "at {n}: {samples} samples for {codes} codes"
            );
        }
        for (w, (_, samples)) in profile.windows.iter().zip(&real) {
            assert!(
                (w.audio_s - *samples as f64 / 24_000.0).abs() < 1e-9,
                "{w:?} vs {samples}"
            );
            assert!(w.render_s > 0.0);
        }
        let audio: Vec<f64> = profile.windows.iter().map(|w| w.audio_s).collect();
        let n = audio.len();
        assert!(n >= 3, "{codes:?}");
        assert!(audio[..n - 1].windows(2).all(|p| p[1] > p[0]), "grows: {audio:?}");
        assert!(
            (audio[n - 1] - audio[n - 2]).abs() < 1e-9,
            "ends at the first full-size chunk: {audio:?}"
        );
        assert!(profile.s_per_audio_s().unwrap() > 0.0);
        // Batches of the last window: 2 copies first, doubling up to the limit of 4 at most.
        let copies: Vec<usize> = profile.batches.iter().map(|b| b.0).collect();
        assert!(copies == [2] || copies == [2, 4], "{:?}", profile.batches);
        assert!(profile.batches.iter().all(|b| b.1 > 0.0), "{:?}", profile.batches);
        // And of the first window, the same way.
        let copies: Vec<usize> = profile.first_batches.iter().map(|b| b.0).collect();
        assert!(copies == [2] || copies == [2, 4], "{:?}", profile.first_batches);
        assert!(
            profile.first_batches.iter().all(|b| b.1 > 0.0),
            "{:?}",
            profile.first_batches
        );
        let one = rehearse_start(hifigan, &opts, 24_000, 80, 1).unwrap();
        assert!(one.batches.is_empty(), "a limit of one measures no batch");
        assert!(one.first_batches.is_empty());
    }

    /// The tiny fixture's vocoder, owned (as the engine hands it to the thread).
    fn owned_vocoder() -> HifiGan {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/model");
        let config = crate::xtts::config::XttsConfig::from_file(&dir.join("config.json")).unwrap();
        let path = dir.join("model.pth");
        let state = crate::xtts::checkpoint::load_model_state(&path).unwrap();
        let weights = crate::xtts::checkpoint::Weights::new(state, &path, tch::Device::Cpu);
        let _guard = tch::no_grad_guard();
        HifiGan::new(&weights, &config).unwrap()
    }

    /// The thread renders each shape of a start before its first round and says so, then
    /// serves; a shape it cannot render ends it with the reason (the engine fails its start),
    /// not a panic.
    #[test]
    fn the_thread_warms_before_serving_and_reports_a_failed_warm_up() {
        let window = PlannedWindow {
            codes: 8,
            frames: 32,
            render_s: 0.01,
            audio_s: 0.1,
        };
        let spawned = |frames: i64| {
            let settings = StageSettings {
                start: StartProfile {
                    windows: vec![PlannedWindow { frames, ..window }],
                    batches: vec![(2, 1.5)],
                    first_batches: vec![(2, 1.5)],
                },
                ..settings(2)
            };
            let health = Arc::new(Health::default());
            let (to_stage, work) = std::sync::mpsc::channel();
            let (warmed, warm) = std::sync::mpsc::channel();
            let thread = spawn(owned_vocoder(), settings, work, warmed, health.clone()).unwrap();
            let warm = warm.recv().expect("the thread says how the warm-up went");
            (warm, to_stage, thread, health)
        };
        let (warm, to_stage, thread, health) = spawned(32);
        assert!(warm.is_ok(), "{warm:?}");
        let model = tiny_model();
        let hifigan = model.hifigan();
        let (latents, speaker) = random_sentence(5, 12, hifigan.latent_dim(), hifigan.speaker_dim());
        let (sink, mut rx) = request(Duration::ZERO);
        for item in sentence_work(1, &latents, &speaker, &sink) {
            to_stage.send(item).unwrap();
        }
        drop(to_stage);
        thread.join().unwrap();
        let got = events(&mut rx);
        assert!(matches!(got.last(), Some(SpeechEvent::Done)), "{got:?}");
        assert!(!audio(&got).is_empty());
        assert!(health.is_alive());

        let (warm, _to_stage, thread, health) = spawned(-4);
        let why = format!("{:#}", warm.expect_err("no generator renders -4 frames"));
        assert!(why.contains("negative"), "{why}");
        thread.join().expect("the thread ends without a panic");
        assert!(health.is_alive(), "a failed warm-up is reported, not a dead engine");
    }

    /// A chunk that cannot be rendered fails its own request; the requests it was batched
    /// with still get their audio.
    #[test]
    fn a_failing_chunk_fails_only_its_request() {
        let _guard = tch::no_grad_guard();
        let model = tiny_model();
        let hifigan = model.hifigan();
        let settings = settings(4);
        let mut stage = Stage::new(hifigan, &settings);
        let (dim, speaker_dim) = (hifigan.latent_dim(), hifigan.speaker_dim());
        let mut requests = Vec::new();
        // The middle request's latents are one wider than the vocoder takes.
        for (i, width) in [dim, dim + 1, dim].into_iter().enumerate() {
            let (latents, speaker) = random_sentence(20 + i as i64, 12, width, speaker_dim);
            let (sink, rx) = request(Duration::ZERO);
            for item in sentence_work(i as u64, &latents, &speaker, &sink) {
                stage.add(item);
            }
            requests.push(rx);
        }
        while !stage.is_idle() {
            stage.round();
        }
        for (i, rx) in requests.iter_mut().enumerate() {
            let got = events(rx);
            match got.last() {
                Some(SpeechEvent::Failed(why)) if i == 1 => assert!(why.contains("vocoder"), "{why}"),
                Some(SpeechEvent::Done) if i != 1 => assert!(!audio(&got).is_empty()),
                other => panic!("request {i} ended with {other:?}"),
            }
        }
    }
}
