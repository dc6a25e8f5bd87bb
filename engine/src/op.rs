//! Ops: the replicated effect of one client write (or one MULTI/EXEC group).
//!
//! An op is `(OpId, hlc, deps, effects)`. `deps` is the origin's version vector
//! when it made the op, without the origin's own entry (its own `seq - 1` is
//! implied). It serves twice: causality (an op is applied only after its deps)
//! and observed-remove (a removal removes exactly the entries whose dots its
//! origin had seen: `deps` plus the op itself). Effects are applied in order.

use crate::hlc::Hlc;
use crate::id::{OpId, VersionVector};
use crate::keyspace::value::list::{Level, Place, Span};
use crate::ld::Exact;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Largest number of effects in one op (one MULTI/EXEC, one FLUSHALL…).
pub const OP_EFFECTS_MAX: usize = 1 << 20;

/// One replicated op.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub id: OpId,
    pub hlc: Hlc,
    pub deps: VersionVector,
    pub effects: Vec<KeyEffect>,
}

/// One effect on one key of one database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyEffect {
    pub db: u8,
    pub key: Bytes,
    pub effect: Effect,
}

/// A whole value, written by RESTORE, COPY, RENAME, *STORE commands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Str(Bytes),
    Hash(Vec<(Bytes, Bytes)>),
    Set(Vec<Bytes>),
    ZSet(Vec<(Bytes, f64)>),
    /// Elements from the head: one run of the op, at the start of an empty list.
    List(Vec<Bytes>),
}

/// What an op does to one key. Every effect that writes a type also drops the
/// entries of *other* types that its origin had seen (they were invisible there,
/// or the command would have failed with WRONGTYPE).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    /// Observed-remove of the whole key (and of its TTL unless `keep_ttl`), then
    /// a string register write.
    SetString {
        value: Bytes,
        keep_ttl: bool,
    },
    /// Adds to the string's counter (INCR family).
    IncrInt(i64),
    /// Adds to the string's float counter (INCRBYFLOAT): the exact change the
    /// origin made (see `crdt::counter`).
    IncrFloat(Exact),
    /// Observed-remove of the whole key.
    Del,
    /// `Some(deadline_ms)`: EXPIRE family; `None`: PERSIST.
    Expire(Option<u64>),
    HSet(Vec<(Bytes, Bytes)>),
    HDel(Vec<Bytes>),
    HIncrInt(Bytes, i64),
    /// HINCRBYFLOAT: the exact change, as `IncrFloat`.
    HIncrFloat(Bytes, Exact),
    SAdd(Vec<Bytes>),
    SRem(Vec<Bytes>),
    /// Adds members and sets their scores (register).
    ZAdd(Vec<(Bytes, f64)>),
    /// Adds the member (if absent) and adds to its score (counter).
    ZIncr(Bytes, f64),
    ZRem(Vec<Bytes>),
    /// Observed-remove of the whole key (TTL included unless `keep_ttl`), then
    /// writes a whole value.
    Replace {
        value: Value,
        keep_ttl: bool,
    },
    /// Observed-remove of every key of `db` (the key is empty).
    FlushDb,
    /// Observed-remove of every key of every db (db and key are empty).
    FlushAll,
    /// LPUSH, RPUSH, LINSERT, the push of LMOVE: a run of elements, the
    /// op's elements `first..first + values.len()`, at `place` (see
    /// `keyspace::value::list`).
    ListInsert {
        place: Place,
        first: u32,
        values: Vec<Bytes>,
    },
    /// Removes the named elements (LPOP, LREM, LTRIM...). `pop`: the
    /// elements were handed to a client, so one already removed here by a
    /// concurrent op is a pop conflict.
    ListRemove {
        spans: Vec<Span>,
        pop: bool,
    },
    /// LSET of one element (a register: the greatest `(hlc, origin)` shows).
    ListSet {
        pos: Vec<Level>,
        value: Bytes,
    },
    /// PFADD, PFMERGE: the `(register, rank)` pairs of a HyperLogLog the
    /// write raised, sorted by register (see `keyspace::value::hll`). It
    /// removes the string its origin had seen. `replace`: the key showed a
    /// string holding HLL bytes, which this write turns into registers: the
    /// op carries every register and removes the HLL entries its origin had
    /// seen too (that string had hidden them).
    HllRaise {
        regs: Vec<(u16, u8)>,
        replace: bool,
    },
}

impl Op {
    /// Rough size in memory/on the wire, for batch and backlog bounds.
    pub fn size_hint(&self) -> usize {
        32 + self
            .effects
            .iter()
            .map(|e| 16 + e.key.len() + e.effect.size_hint())
            .sum::<usize>()
    }
}

impl Effect {
    /// A write that keeps the TTL of the key it writes (HSET, SADD, INCR,
    /// SET KEEPTTL...): on a key that does not exist it starts a new key,
    /// which has no TTL.
    pub fn keeps_ttl(&self) -> bool {
        match self {
            Effect::SetString { keep_ttl, .. } | Effect::Replace { keep_ttl, .. } => *keep_ttl,
            Effect::IncrInt(_)
            | Effect::IncrFloat(_)
            | Effect::HSet(_)
            | Effect::HIncrInt(..)
            | Effect::HIncrFloat(..)
            | Effect::SAdd(_)
            | Effect::ZAdd(_)
            | Effect::ZIncr(..)
            | Effect::ListInsert { .. }
            | Effect::ListSet { .. }
            | Effect::HllRaise { .. } => true,
            Effect::Del
            | Effect::Expire(_)
            | Effect::HDel(_)
            | Effect::SRem(_)
            | Effect::ZRem(_)
            | Effect::FlushDb
            | Effect::FlushAll
            | Effect::ListRemove { .. } => false,
        }
    }

    pub fn size_hint(&self) -> usize {
        fn pairs(v: &[(Bytes, Bytes)]) -> usize {
            v.iter().map(|(a, b)| a.len() + b.len() + 8).sum()
        }
        fn list(v: &[Bytes]) -> usize {
            v.iter().map(|a| a.len() + 4).sum()
        }
        fn scored(v: &[(Bytes, f64)]) -> usize {
            v.iter().map(|(a, _)| a.len() + 12).sum()
        }
        match self {
            Effect::SetString { value, .. } => value.len() + 4,
            Effect::HSet(v) => pairs(v),
            Effect::HDel(v) | Effect::SAdd(v) | Effect::SRem(v) | Effect::ZRem(v) => list(v),
            Effect::HIncrInt(f, _) | Effect::ZIncr(f, _) => f.len() + 12,
            Effect::HIncrFloat(f, d) => f.len() + d.size_hint(),
            Effect::IncrFloat(d) => d.size_hint(),
            Effect::ZAdd(v) => scored(v),
            Effect::Replace { value, .. } => match value {
                Value::Str(b) => b.len(),
                Value::Hash(v) => pairs(v),
                Value::Set(v) => list(v),
                Value::ZSet(v) => scored(v),
                Value::List(v) => list(v),
            },
            Effect::ListInsert { place, values, .. } => 16 + place.prefix.len() * 24 + list(values),
            Effect::ListRemove { spans, .. } => {
                spans.iter().map(|s| 40 + s.prefix.len() * 24).sum()
            }
            Effect::ListSet { pos, value } => pos.len() * 24 + value.len() + 4,
            Effect::HllRaise { regs, .. } => regs.len() * 4 + 4,
            _ => 12,
        }
    }
}
