//! Protocol-neutral replies. The engine answers every command with a `Reply`;
//! the server encodes it as RESP2 or RESP3 (a `Double` is a bulk string in
//! RESP2, a `Map` a flat array, and so on).

use bytes::Bytes;

/// One reply to one command, before encoding.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`
    Ok,
    /// A simple string such as `+PONG` or `+QUEUED`.
    Simple(String),
    /// An error reply; the text is sent as is after `-` (it starts with the
    /// error code, e.g. `ERR ...` or `WRONGTYPE ...`).
    Error(String),
    Int(i64),
    Bulk(Bytes),
    /// Null bulk string (RESP2 `$-1`, RESP3 `_`).
    Nil,
    /// Null array (RESP2 `*-1`, RESP3 `_`).
    NilArray,
    Array(Vec<Reply>),
    /// RESP3 double; RESP2 bulk string in Redis's float format.
    Double(f64),
    /// RESP3 map; RESP2 flat array of key, value, key, value...
    Map(Vec<(Reply, Reply)>),
    /// RESP3 set; RESP2 array.
    Set(Vec<Reply>),
    /// RESP3 boolean; RESP2 integer 1/0.
    Bool(bool),
    /// RESP3 verbatim string (`=`), RESP2 bulk string. Used by INFO-like text.
    Verbatim(String),
}

impl Reply {
    pub fn err(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }
    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// Redis's error strings, byte for byte (Redis 7.0).
pub mod errors {
    pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
    pub const NOT_FLOAT: &str = "ERR value is not a valid float";
    pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
    pub const SYNTAX: &str = "ERR syntax error";
    pub const NO_SUCH_KEY: &str = "ERR no such key";
    pub const HASH_NOT_INTEGER: &str = "ERR hash value is not an integer";
    pub const HASH_NOT_FLOAT: &str = "ERR hash value is not a float";
    pub const NAN_OR_INF: &str = "ERR increment would produce NaN or Infinity";
    pub const DB_INDEX: &str = "ERR DB index is out of range";
    pub const INVALID_EXPIRE: &str = "ERR invalid expire time in '{}' command";
    pub const MIN_MAX_NOT_FLOAT: &str = "ERR min or max is not a float";
    pub const MIN_MAX_NOT_STRING: &str = "ERR min or max not valid string range item";
    pub const OFFSET_OUT_OF_RANGE: &str = "ERR offset is out of range";
    pub const STRING_TOO_LONG: &str =
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

    /// `ERR wrong number of arguments for 'xxx' command` (name lower-cased).
    pub fn wrong_args(cmd: &str) -> String {
        format!(
            "ERR wrong number of arguments for '{}' command",
            cmd.to_ascii_lowercase()
        )
    }
}
