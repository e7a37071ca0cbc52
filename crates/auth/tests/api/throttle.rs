//! Brute-force defence.
