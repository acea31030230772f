//! Redis store: greylist (being built).
