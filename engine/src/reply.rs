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
    /// A double as Redis's `addReplyHumanLongDouble` sends it (GEO
    /// coordinates): `%.17Lf` with trailing zeros trimmed, as a RESP2 bulk
    /// string or a RESP3 double.
    HumanDouble(f64),
    /// RESP3 map; RESP2 flat array of key, value, key, value...
    Map(Vec<(Reply, Reply)>),
    /// Pairs such as member and score (`WITHSCORES`, `WITHVALUES`, ZPOPMIN
    /// with a count): RESP2 flat array (`a 1 b 2`), RESP3 array of
    /// two-element arrays (`[a 1] [b 2]`), as Redis 7.0 sends them.
    Pairs(Vec<(Reply, Reply)>),
    /// RESP3 set; RESP2 array.
    Set(Vec<Reply>),
    /// RESP3 boolean; RESP2 integer 1/0.
    Bool(bool),
    /// RESP3 verbatim string (`=`), RESP2 bulk string. Used by INFO-like text.
    Verbatim(String),
    /// RESP3 push (`>`), RESP2 array: what a subscriber is sent (pub/sub
    /// messages and subscription confirmations).
    Push(Vec<Reply>),
    /// Several replies to one command, sent one after the other (SUBSCRIBE
    /// with several channels confirms each one in a reply of its own).
    Frames(Vec<Reply>),
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

/// Redis's error strings (defined in [`crate::redis::errors`]).
pub use crate::redis::errors;
