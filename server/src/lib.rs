//! chorus-server: the RESP server of one Chorus site.
//!
//! Layout: `resp/` owns the wire format (request parser, reply encoder),
//! `config` the flags, config file and `CONFIG` parameter store, `cmd/` one
//! file per command group (each returns a `Reply`, so every command is
//! testable without a socket), `connection` the per-client loop, `server`
//! the listener, shared state and shutdown, and `store` the single entry
//! point through which data commands reach the engine.

pub mod config;
pub mod glob;
pub mod resp;
