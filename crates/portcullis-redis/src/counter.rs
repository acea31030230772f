//! Redis store: counter (being built).
