//! Audio path from the engine's 24 kHz float to what a call carries.
