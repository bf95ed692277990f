//! A FastAGI peer's preamble in arbitrary pieces: a preamble or an error, never a panic, and
//! the buffer never grows past the preamble limit without an error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use xttsd::agi::codec::PreambleDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else { return };
    let piece = piece as usize % 256 + 1;
    let mut decoder = PreambleDecoder;
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        match decoder.decode(&mut buf) {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => assert!(buf.len() <= 64 * 1024 + piece, "{} bytes buffered", buf.len()),
        }
    }
});
