//! FastAGI: the wire codec, the per-request session and the TCP server.

pub mod codec;
pub mod file_mode;
pub mod server;
pub mod session;
pub mod transcode;

pub use server::serve;
