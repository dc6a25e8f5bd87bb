//! chorus-engine: the typed CRDT keyspace of one Chorus site.
//!
//! It owns the in-memory keyspace (16 databases of rows, each row a set of typed
//! CRDT slots), the hybrid logical clock, op identity (`OpId`, version vectors),
//! the op log and its storage, and recovery. It never reads a clock, opens a
//! socket, spawns a thread or draws randomness: time is an argument.

pub mod reply;
pub mod storage;

pub use reply::Reply;
