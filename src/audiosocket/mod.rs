//! AudioSocket: the wire codec, the per-call session and the TCP server.

pub mod codec;
pub mod reader;
pub mod server;
pub mod session;

pub use codec::{AudioSocketCodec, CodecError, Message};
pub use server::serve;
