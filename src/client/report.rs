//! Pacing statistics of a recorded call.
