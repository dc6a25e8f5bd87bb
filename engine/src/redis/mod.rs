//! Redis 7.0's primitives, defined once for every Chorus crate: the glob
//! matcher, `string2ll` and the float formats, the error strings and their
//! builders, the database count, the `appendfsync` modes, and the command
//! table (Redis's captured `COMMAND` reply, with a RESP reply decoder to
//! read it).
//!
//! The server, the embedded site and the simulator import these; nothing
//! else in the workspace spells them again.

pub mod command_table;
pub mod decode;
pub mod errors;
pub mod fsync;
pub mod geohash;
pub mod glob;
pub mod hll;
pub mod limits;
pub mod num;
pub mod pqsort;

pub use command_table::{Command, CommandTable};
pub use fsync::AppendFsync;
pub use glob::glob_match;
pub use limits::DATABASES;
