//! chorus-engine: the typed CRDT keyspace of one Chorus site.
//!
//! It owns the in-memory keyspace (16 databases of rows, each row a set of typed
//! CRDT slots), the hybrid logical clock, op identity (`OpId`, version vectors),
//! the op log and its storage, and recovery. It never reads a clock, opens a
//! socket, spawns a thread or draws randomness: time is an argument.

pub mod anti_entropy;
pub mod cmd;
pub mod crdt;
pub mod engine;
pub mod hlc;
pub mod id;
pub mod keyspace;
pub mod ld;
pub mod log;
pub mod op;
pub mod redis;
pub mod reply;
pub mod stability;
pub mod storage;

pub use anti_entropy::{BucketRows, RepairError};
pub use engine::{
    Change, ChangeSink, ChangeSource, Engine, EngineCanaries, EngineConfig, EngineError,
    EventClass, Executed, KeyEvent, OpIdConflict, OpenError, RemoteOutcome, Snapshot, Txn,
};
pub use hlc::{Hlc, HlcClock};
pub use id::{OpId, Origin, SiteId, VersionVector};
pub use keyspace::value::set_hash_seed;
pub use op::{Effect, KeyEffect, Op, Value};
pub use redis::AppendFsync;
/// The `appendfsync` mode under the engine's older name.
pub use redis::AppendFsync as Fsync;
pub use reply::Reply;
