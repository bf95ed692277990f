//! Replies from Asterisk in arbitrary pieces: lines or errors, never a panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use xttsd::agi::codec::{parse_line, AgiCodec};

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else { return };
    let piece = piece as usize % 128 + 1;
    let mut codec = AgiCodec;
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(line)) => {
                    let _ = line.result_code();
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(stream) {
        let _ = parse_line(text);
    }
});
