//! FastAGI: the wire codec, the per-request session and the TCP server.
