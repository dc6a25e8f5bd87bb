//! chorus-server: the RESP server of one Chorus site.
//!
//! Layout: `resp/` owns the wire format (request parser, reply encoder and
//! decoder), `config` the flags, config file and `CONFIG` parameter store,
//! `cmd/` one file per command group (each returns a `Reply`, so every
//! command is testable without a socket), `connection` the per-client loop,
//! `server` the listener, shared state, replication start and shutdown,
//! `peers_file` the runtime peer list kept in the data directory, `sync_write`
//! the reply release of `write-mode sync`, `clients` the client
//! registry, `blocked` the clients waiting in blocking pops, `pubsub` the channels' subscribers and their bounded outboxes,
//! `script` the Lua interpreter of EVAL and SCRIPT, `stats` and `memory` the INFO figures, and `store` the single
//! entry point through which data commands reach the engine.

pub mod blocked;
pub mod clients;
pub mod cmd;
pub mod cmdstats;
pub mod config;
pub mod connection;
pub mod latency;
pub mod memory;
pub mod notify;
pub mod pause;
pub mod peers_file;
pub mod pubsub;
pub mod resp;
pub mod script;
pub mod server;
pub mod slowlog;
pub mod stats;
pub mod store;
pub mod sync_write;
