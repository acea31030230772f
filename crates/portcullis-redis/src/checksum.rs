//! Redis store: checksum (being built).
