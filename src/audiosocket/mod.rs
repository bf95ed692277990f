//! AudioSocket: the wire codec, the per-call session and the TCP server.
