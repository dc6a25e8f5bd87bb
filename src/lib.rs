//! Chorus: a conflict-free multi-master key-value store.
//!
//! This facade crate re-exports the engine so that Rust programs can embed a
//! site with one dependency; it also owns the end-to-end tests in `tests/` and
//! the benches in `benches/`.

pub use chorus_engine as engine;
