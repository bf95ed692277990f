//! The vocoder stage: turns each sentence's latents into audio on its own thread, so the
//! decoder's next step does not wait for it. Work is taken in deadline order: of the requests
//! with work waiting, the one whose listener runs dry first goes next (each request's work
//! stays in order). A vocoder error ends its request (the decode loop sees it through the
//! sink); a panic stops the engine (see [`super::Health`]).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use tch::Tensor;

use super::{AudioSink, Fault, Health, Metrics, METRICS};
use crate::xtts::hifigan::HifiGan;
use crate::xtts::stream::{StreamOptions, StreamVocoder};

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

/// Starts the vocoder thread; it runs until every sender of `work` is gone.
pub fn spawn(
    hifigan: HifiGan,
    opts: StreamOptions,
    work: Receiver<VocoderWork>,
    health: Arc<Health>,
    fault: Option<Fault>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("xtts-vocoder".into()).spawn(move || {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            vocoder_loop(&hifigan, &opts, work, fault)
        }));
        if let Err(panic) = run {
            health.stopped(&format!(
                "the vocoder thread panicked: {}",
                super::panic_message(panic.as_ref())
            ));
        }
    })
}

/// Work waiting, one queue per request, in arrival order within each.
#[derive(Default)]
struct Waiting {
    requests: Vec<(AudioSink, VecDeque<VocoderWork>)>,
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
        match self.requests.iter_mut().find(|(s, _)| s.same_request(&sink)) {
            Some((_, queue)) => queue.push_back(item),
            None => self.requests.push((sink, VecDeque::from([item]))),
        }
    }

    /// The next item of the request whose listener runs dry first.
    fn next(&mut self) -> Option<VocoderWork> {
        let now = Instant::now();
        let at = (0..self.requests.len()).min_by_key(|&i| self.requests[i].0.runs_dry_at(now))?;
        let item = self.requests[at].1.pop_front();
        if self.requests[at].1.is_empty() {
            self.requests.swap_remove(at);
        }
        item
    }
}

fn vocoder_loop(hifigan: &HifiGan, opts: &StreamOptions, work: Receiver<VocoderWork>, fault: Option<Fault>) {
    let _guard = tch::no_grad_guard();
    let mut sentences: HashMap<u64, (StreamVocoder, AudioSink)> = HashMap::new();
    let mut waiting = Waiting::default();
    loop {
        if waiting.requests.is_empty() {
            match work.recv() {
                Ok(item) => waiting.add(item),
                Err(_) => return,
            }
        }
        while let Ok(item) = work.try_recv() {
            waiting.add(item);
        }
        let Some(item) = waiting.next() else { continue };
        let started = Instant::now();
        match item {
            VocoderWork::Begin {
                id,
                speaker,
                speed,
                sink,
            } => match StreamVocoder::new(hifigan, &speaker, &with_speed(opts, speed)) {
                Ok(vocoder) => {
                    sentences.insert(id, (vocoder, sink));
                }
                Err(e) => sink.finish(Err(e.context("streaming vocoder"))),
            },
            VocoderWork::Latent { id, latent } => {
                if let Some((vocoder, sink)) = sentences.get_mut(&id) {
                    let delivered = match vocoder.push(&latent) {
                        Ok(Some(chunk)) => {
                            if fault == Some(Fault::PanicVocoder) {
                                panic!("fault injected: panic_vocoder");
                            }
                            chunk.is_empty() || sink.send_audio(chunk)
                        }
                        Ok(None) => true,
                        Err(e) => {
                            sink.finish(Err(e.context("streaming vocoder")));
                            false
                        }
                    };
                    if !delivered {
                        sentences.remove(&id);
                    }
                }
            }
            VocoderWork::End { id } => {
                if let Some((mut vocoder, sink)) = sentences.remove(&id) {
                    match vocoder.finish() {
                        Ok(last) if !last.is_empty() => {
                            sink.send_audio(last);
                        }
                        Ok(_) => {}
                        Err(e) => sink.finish(Err(e.context("streaming vocoder"))),
                    }
                }
            }
            VocoderWork::Finish { sink, result } => sink.finish(result),
            VocoderWork::Drop { id } => {
                sentences.remove(&id);
            }
        }
        Metrics::add(&METRICS.vocoder_us, started.elapsed().as_micros() as u64);
    }
}
