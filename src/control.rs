//! Local HTTP control API.
