//! The meeting point of a bot's session and its AudioSocket call: the bot's frames wait here
//! until the call's 20 ms clock takes them, one per tick, and the caller's audio leaves from
//! here for the bot. Because the call takes frames from this queue at the moment it sends
//! them, a `clear` that empties the queue silences the call from the next frame, and every
//! frame taken is a frame handed to Asterisk (`played_ms` counts exactly those).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::protocol::{encode_audio_frame, Encoding, Forward, FLAG_BOT_SPEAKING};
use crate::audio::{frame_samples, g711};
use crate::calls::CallController;

/// A call that never sends audio counts as attached this long after its first tick, at the
/// rate the call assumes.
const SILENT_ATTACH: Duration = Duration::from_millis(100);

/// What the call tells the bot's session.
#[derive(Debug)]
pub enum TapEvent {
    /// The call's media arrived: frames are taken from now on, at this rate.
    Attached {
        rate: u32,
        at: Instant,
    },
    /// A frame of utterance `serial` was handed to Asterisk.
    Played {
        serial: u64,
        at: Instant,
    },
    Dtmf {
        digit: char,
        at: Instant,
    },
    Ended {
        by_caller: bool,
        at: Instant,
    },
    /// Caller audio was dropped: the bot does not read fast enough. Sent once per episode.
    AudioOverflow,
}

struct Frame {
    serial: u64,
    rate: u32,
    pcm: Bytes,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Frame>,
    attached_at: Option<Instant>,
    first_tick: Option<Instant>,
    hangup: bool,
    ended: bool,
    /// The last tick sent one of the bot's frames.
    speaking: bool,
    forward: Forward,
    encoding: Encoding,
    /// Caller audio short of a whole 20 ms frame, at `caller_rate`.
    partial: Vec<u8>,
    caller_rate: u32,
    /// Caller frames seen since the call attached (forwarded or not): the call clock.
    seq: u32,
    overflowing: bool,
}

pub struct Tap {
    state: Mutex<State>,
    events: mpsc::UnboundedSender<TapEvent>,
    audio: mpsc::Sender<Bytes>,
}

impl Tap {
    /// `events` goes to the bot's session, `audio` (bounded) to its socket writer.
    pub fn new(events: mpsc::UnboundedSender<TapEvent>, audio: mpsc::Sender<Bytes>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            events,
            audio,
        }
    }

    /// Queues frames of utterance `serial` behind those already queued.
    pub fn push(&self, serial: u64, rate: u32, frames: impl IntoIterator<Item = Bytes>) {
        let mut st = self.state.lock().unwrap();
        st.frames
            .extend(frames.into_iter().map(|pcm| Frame { serial, rate, pcm }));
    }

    /// Drops the queued frames of the utterances `which` accepts; returns how many.
    pub fn remove(&self, which: impl Fn(u64) -> bool) -> usize {
        let mut st = self.state.lock().unwrap();
        let before = st.frames.len();
        st.frames.retain(|f| !which(f.serial));
        before - st.frames.len()
    }

    /// Frames waiting for the call's clock.
    pub fn queued_frames(&self) -> usize {
        self.state.lock().unwrap().frames.len()
    }

    pub fn set_audio(&self, forward: Forward, encoding: Encoding) {
        let mut st = self.state.lock().unwrap();
        st.forward = forward;
        st.encoding = encoding;
    }

    pub fn encoding(&self) -> Encoding {
        self.state.lock().unwrap().encoding
    }

    /// Asks the call to hang up at its next tick.
    pub fn request_hangup(&self) {
        self.state.lock().unwrap().hangup = true;
    }

    pub fn attached_at(&self) -> Option<Instant> {
        self.state.lock().unwrap().attached_at
    }

    fn attach(&self, st: &mut State, rate: u32) {
        if st.attached_at.is_none() {
            let at = Instant::now();
            st.attached_at = Some(at);
            let _ = self.events.send(TapEvent::Attached { rate, at });
        }
    }
}

impl CallController for Tap {
    fn next_frame(&self, rate: u32) -> Option<(u32, Bytes)> {
        let mut st = self.state.lock().unwrap();
        if st.attached_at.is_none() {
            let first = *st.first_tick.get_or_insert_with(Instant::now);
            if first.elapsed() < SILENT_ATTACH {
                return None;
            }
            self.attach(&mut st, rate);
        }
        let frame = st.frames.pop_front();
        st.speaking = frame.is_some();
        let frame = frame?;
        // Sent under the lock: a `clear` that takes the lock after this has the event queued.
        let _ = self.events.send(TapEvent::Played {
            serial: frame.serial,
            at: Instant::now(),
        });
        Some((frame.rate, frame.pcm))
    }

    fn wants_hangup(&self) -> bool {
        self.state.lock().unwrap().hangup
    }

    fn caller_audio(&self, rate: u32, pcm: &[u8]) {
        let mut st = self.state.lock().unwrap();
        self.attach(&mut st, rate);
        if st.caller_rate != rate {
            st.caller_rate = rate;
            st.partial.clear();
        }
        st.partial.extend_from_slice(pcm);
        let frame_bytes = frame_samples(rate) * 2;
        while st.partial.len() >= frame_bytes {
            let frame: Vec<u8> = st.partial.drain(..frame_bytes).collect();
            let seq = st.seq;
            st.seq = st.seq.wrapping_add(1);
            if st.forward != Forward::Caller {
                continue;
            }
            let payload = match st.encoding {
                Encoding::Pcm16 => frame,
                Encoding::Ulaw => {
                    let samples: Vec<i16> = frame
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    g711::ulaw_encode_all(&samples)
                }
            };
            let flags = if st.speaking { FLAG_BOT_SPEAKING } else { 0 };
            match self.audio.try_send(encode_audio_frame(seq, flags, &payload)) {
                Ok(()) => st.overflowing = false,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if !st.overflowing {
                        st.overflowing = true;
                        let _ = self.events.send(TapEvent::AudioOverflow);
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    fn dtmf(&self, digit: char) {
        let _ = self.events.send(TapEvent::Dtmf {
            digit,
            at: Instant::now(),
        });
    }

    fn ended(&self, by_caller: bool) {
        let mut st = self.state.lock().unwrap();
        if !st.ended {
            st.ended = true;
            let _ = self.events.send(TapEvent::Ended {
                by_caller,
                at: Instant::now(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voicebot::protocol::decode_audio_frame;

    fn tap(audio_slots: usize) -> (Tap, mpsc::UnboundedReceiver<TapEvent>, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (atx, arx) = mpsc::channel(audio_slots);
        (Tap::new(tx, atx), rx, arx)
    }

    #[test]
    fn frames_go_out_one_per_tick_and_clear_stops_them_at_once() {
        let (tap, mut events, _audio) = tap(4);
        tap.caller_audio(8000, &[0; 320]);
        assert!(matches!(events.try_recv(), Ok(TapEvent::Attached { rate: 8000, .. })));
        let frame = Bytes::from(vec![1u8; 320]);
        tap.push(1, 8000, vec![frame.clone(); 3]);
        tap.push(2, 8000, vec![frame.clone(); 2]);
        assert!(tap.next_frame(8000).is_some());
        assert!(matches!(events.try_recv(), Ok(TapEvent::Played { serial: 1, .. })));
        assert_eq!(tap.remove(|s| s == 1), 2);
        // The next tick already plays utterance 2.
        assert!(tap.next_frame(8000).is_some());
        assert!(matches!(events.try_recv(), Ok(TapEvent::Played { serial: 2, .. })));
        assert_eq!(tap.remove(|_| true), 1);
        assert!(tap.next_frame(8000).is_none());
    }

    #[test]
    fn caller_audio_is_reframed_numbered_and_dropped_when_the_reader_is_slow() {
        let (tap, mut events, mut audio) = tap(2);
        tap.set_audio(Forward::Caller, Encoding::Pcm16);
        // 30 ms then 30 ms of 8 kHz audio: three 20 ms frames.
        let pcm: Vec<u8> = (0..480u32).map(|i| i as u8).collect();
        tap.caller_audio(8000, &pcm);
        tap.caller_audio(8000, &pcm);
        let a = audio.try_recv().unwrap();
        let b = audio.try_recv().unwrap();
        assert!(audio.try_recv().is_err(), "the third did not fit");
        let (seq_a, _, pcm_a) = decode_audio_frame(&a).unwrap();
        let (seq_b, _, pcm_b) = decode_audio_frame(&b).unwrap();
        assert_eq!((seq_a, seq_b), (0, 1));
        assert_eq!([pcm_a, pcm_b].concat(), [&pcm[..], &pcm[..160]].concat());
        let overflow = std::iter::from_fn(|| events.try_recv().ok())
            .filter(|e| matches!(e, TapEvent::AudioOverflow))
            .count();
        assert_eq!(overflow, 1);
        // Room again: the next frame carries its place on the call clock (3: one was dropped).
        tap.caller_audio(8000, &[0; 320]);
        let (seq, _, _) = decode_audio_frame(&audio.try_recv().unwrap()).unwrap();
        assert_eq!(seq, 3);
    }

    #[test]
    fn caller_audio_in_ulaw_carries_the_bot_speaking_flag() {
        let (tap, _events, mut audio) = tap(4);
        tap.set_audio(Forward::Caller, Encoding::Ulaw);
        tap.caller_audio(8000, &[0; 320]);
        tap.push(1, 8000, vec![Bytes::from(vec![1u8; 320])]);
        std::thread::sleep(SILENT_ATTACH);
        assert!(tap.next_frame(8000).is_some());
        let samples: Vec<i16> = (0..160).map(|i| i * 100 - 8000).collect();
        let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        tap.caller_audio(8000, &pcm);
        let (seq0, flags0, first) = decode_audio_frame(&audio.try_recv().unwrap())
            .map(|(a, b, c)| (a, b, c.to_vec()))
            .unwrap();
        assert_eq!((seq0, flags0, first.len()), (0, 0, 160));
        let frame = audio.try_recv().unwrap();
        let (seq, flags, payload) = decode_audio_frame(&frame).unwrap();
        assert_eq!((seq, flags), (1, FLAG_BOT_SPEAKING));
        assert_eq!(payload, g711::ulaw_encode_all(&samples));
    }
}
