//! AudioSocket messages from a peer, arriving in arbitrary pieces: never a panic, and every
//! message decoded encodes back to exactly the bytes it was read from.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};
use xttsd::audiosocket::codec::AudioSocketCodec;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else { return };
    let piece = piece as usize % 64 + 1;
    let mut codec = AudioSocketCodec::new(32_000);
    let mut buf = BytesMut::new();
    let mut consumed = 0;
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(message)) => {
                    let used = before - buf.len();
                    let mut again = BytesMut::new();
                    codec.encode(message, &mut again).expect("a decoded message encodes");
                    assert_eq!(&again[..], &stream[consumed..consumed + used]);
                    consumed += used;
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
