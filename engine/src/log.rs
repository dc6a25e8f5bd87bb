//! Op log records: framing, checksums and the in-memory backlog.
//!
//! A record on disk is `len: u32 LE | crc32: u32 LE | payload` where payload is
//! the postcard encoding of an `Op` (version byte first). Records are appended in
//! local apply order, which is a causal order, so replaying the log in order never
//! meets an op before its deps. The backlog keeps the encoded ops still wanted by
//! peers, bounded by the bytes of their records in the log, and finds them
//! in the log again (see [`Backlog`]); a peer behind the backlog needs a full
//! sync.

use crate::id::{OpId, VersionVector};
use crate::op::Op;
use bytes::Bytes;
use std::collections::VecDeque;
use thiserror::Error;

/// Version byte in front of every encoded op (disk and wire). Version 2:
/// float increments carry exact binary fractions (version 1 carried f64s).
pub const OP_FORMAT_VERSION: u8 = 2;
/// Header bytes of one log record.
pub const RECORD_HEADER_BYTES: usize = 8;
/// Largest encoded op accepted from disk or a peer.
pub const OP_BYTES_MAX: usize = 512 << 20;

#[derive(Clone, Debug, Error, PartialEq)]
pub enum DecodeError {
    #[error("unknown op format version {0}")]
    Version(u8),
    #[error("empty op encoding")]
    Empty,
    #[error("op does not decode: {0}")]
    Postcard(String),
    #[error("op is malformed: {0}")]
    Malformed(&'static str),
}

/// Encodes an op: version byte + postcard.
pub fn encode_op(op: &Op) -> Bytes {
    let mut v = Vec::with_capacity(op.size_hint() + 8);
    v.push(OP_FORMAT_VERSION);
    codec::put_op(&mut v, op);
    Bytes::from(v)
}

/// Encodes an op straight into a framed log record (`len | crc32 | payload`,
/// the payload being [`encode_op`]'s bytes) at the end of `out`; returns the
/// payload's range in `out`.
pub fn encode_record(op: &Op, out: &mut Vec<u8>) -> std::ops::Range<usize> {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    out.push(OP_FORMAT_VERSION);
    codec::put_op(out, op);
    let payload = start + RECORD_HEADER_BYTES..out.len();
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(&out[payload.clone()]).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc);
    payload
}

/// A hand-written postcard encoder for ops: the exact bytes
/// `postcard::to_allocvec(op)` produces (a property test holds it to that),
/// at a fraction of serde's cost. It runs once per write; decoding stays with
/// postcard (untrusted input, validated).
mod codec {
    use crate::id::{OpId, Origin, VersionVector};
    use crate::keyspace::value::list::Level;
    use crate::op::{Effect, KeyEffect, Op, Value};

    #[inline]
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    #[inline]
    fn zigzag(out: &mut Vec<u8>, v: i64) {
        varint(out, ((v << 1) ^ (v >> 63)) as u64);
    }
    #[inline]
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    #[inline]
    fn f64le(out: &mut Vec<u8>, f: f64) {
        out.extend_from_slice(&f.to_le_bytes());
    }
    #[inline]
    fn origin(out: &mut Vec<u8>, o: Origin) {
        varint(out, o.site as u64);
        varint(out, o.incarnation as u64);
    }
    #[inline]
    fn op_id(out: &mut Vec<u8>, id: OpId) {
        origin(out, id.origin);
        varint(out, id.seq);
    }
    fn vv(out: &mut Vec<u8>, vv: &VersionVector) {
        varint(out, vv.len() as u64);
        for (o, seq) in vv.iter() {
            origin(out, o);
            varint(out, seq);
        }
    }
    fn list(out: &mut Vec<u8>, v: &[bytes::Bytes]) {
        varint(out, v.len() as u64);
        for b in v {
            bytes(out, b);
        }
    }
    fn pairs(out: &mut Vec<u8>, v: &[(bytes::Bytes, bytes::Bytes)]) {
        varint(out, v.len() as u64);
        for (a, b) in v {
            bytes(out, a);
            bytes(out, b);
        }
    }
    fn scored(out: &mut Vec<u8>, v: &[(bytes::Bytes, f64)]) {
        varint(out, v.len() as u64);
        for (a, s) in v {
            bytes(out, a);
            f64le(out, *s);
        }
    }
    fn levels(out: &mut Vec<u8>, v: &[Level]) {
        varint(out, v.len() as u64);
        for l in v {
            zigzag(out, l.d);
            op_id(out, l.op);
            varint(out, u64::from(l.i));
        }
    }
    /// Variant indexes are declaration order, as serde numbers them.
    fn effect(out: &mut Vec<u8>, e: &Effect) {
        match e {
            Effect::SetString { value, keep_ttl } => {
                varint(out, 0);
                bytes(out, value);
                out.push(*keep_ttl as u8);
            }
            Effect::IncrInt(d) => {
                varint(out, 1);
                zigzag(out, *d);
            }
            Effect::IncrFloat(d) => {
                varint(out, 2);
                crate::ld::put_postcard(out, d);
            }
            Effect::Del => varint(out, 3),
            Effect::Expire(d) => {
                varint(out, 4);
                match d {
                    None => out.push(0),
                    Some(d) => {
                        out.push(1);
                        varint(out, *d);
                    }
                }
            }
            Effect::HSet(v) => {
                varint(out, 5);
                pairs(out, v);
            }
            Effect::HDel(v) => {
                varint(out, 6);
                list(out, v);
            }
            Effect::HIncrInt(f, d) => {
                varint(out, 7);
                bytes(out, f);
                zigzag(out, *d);
            }
            Effect::HIncrFloat(f, d) => {
                varint(out, 8);
                bytes(out, f);
                crate::ld::put_postcard(out, d);
            }
            Effect::SAdd(v) => {
                varint(out, 9);
                list(out, v);
            }
            Effect::SRem(v) => {
                varint(out, 10);
                list(out, v);
            }
            Effect::ZAdd(v) => {
                varint(out, 11);
                scored(out, v);
            }
            Effect::ZIncr(m, d) => {
                varint(out, 12);
                bytes(out, m);
                f64le(out, *d);
            }
            Effect::ZRem(v) => {
                varint(out, 13);
                list(out, v);
            }
            Effect::Replace { value, keep_ttl } => {
                varint(out, 14);
                match value {
                    Value::Str(b) => {
                        varint(out, 0);
                        bytes(out, b);
                    }
                    Value::Hash(v) => {
                        varint(out, 1);
                        pairs(out, v);
                    }
                    Value::Set(v) => {
                        varint(out, 2);
                        list(out, v);
                    }
                    Value::ZSet(v) => {
                        varint(out, 3);
                        scored(out, v);
                    }
                    Value::List(v) => {
                        varint(out, 4);
                        list(out, v);
                    }
                }
                out.push(*keep_ttl as u8);
            }
            Effect::FlushDb => varint(out, 15),
            Effect::FlushAll => varint(out, 16),
            Effect::ListInsert {
                place,
                first,
                values,
            } => {
                varint(out, 17);
                levels(out, &place.prefix);
                zigzag(out, place.d);
                varint(out, u64::from(*first));
                list(out, values);
            }
            Effect::ListRemove { spans, pop } => {
                varint(out, 18);
                varint(out, spans.len() as u64);
                for s in spans {
                    levels(out, &s.prefix);
                    zigzag(out, s.d);
                    op_id(out, s.op);
                    varint(out, u64::from(s.first));
                    varint(out, u64::from(s.len));
                }
                out.push(*pop as u8);
            }
            Effect::ListSet { pos, value } => {
                varint(out, 19);
                levels(out, pos);
                bytes(out, value);
            }
            Effect::HllRaise { regs, replace } => {
                varint(out, 20);
                varint(out, regs.len() as u64);
                for &(i, r) in regs {
                    varint(out, u64::from(i));
                    out.push(r);
                }
                out.push(*replace as u8);
            }
        }
    }
    fn key_effect(out: &mut Vec<u8>, e: &KeyEffect) {
        out.push(e.db);
        bytes(out, &e.key);
        effect(out, &e.effect);
    }

    pub fn put_op(out: &mut Vec<u8>, op: &Op) {
        op_id(out, op.id);
        varint(out, op.hlc.0);
        vv(out, &op.deps);
        varint(out, op.effects.len() as u64);
        for e in &op.effects {
            key_effect(out, e);
        }
    }
}

/// Decodes and validates an op from untrusted bytes.
pub fn decode_op(bytes: &[u8]) -> Result<Op, DecodeError> {
    let (&v, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if v != OP_FORMAT_VERSION {
        return Err(DecodeError::Version(v));
    }
    let (op, trailing): (Op, &[u8]) =
        postcard::take_from_bytes(rest).map_err(|e| DecodeError::Postcard(e.to_string()))?;
    // Received ops are logged and forwarded as they came: nothing but the op.
    if !trailing.is_empty() {
        return Err(DecodeError::Malformed("bytes after the op"));
    }
    if op.id.seq == 0 {
        return Err(DecodeError::Malformed("seq 0"));
    }
    if !op.deps.is_canonical() {
        return Err(DecodeError::Malformed("deps not canonical"));
    }
    if op.deps.get(op.id.origin) != 0 {
        return Err(DecodeError::Malformed("deps name the op's own origin"));
    }
    if op.effects.is_empty() || op.effects.len() > crate::op::OP_EFFECTS_MAX {
        return Err(DecodeError::Malformed("effect count"));
    }
    if op
        .effects
        .iter()
        .any(|e| e.db as usize >= crate::keyspace::ALL_DBS)
    {
        return Err(DecodeError::Malformed("db index"));
    }
    Ok(op)
}

/// Frames an encoded op as a log record.
pub fn frame_record(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Result of scanning log bytes.
#[derive(Debug)]
pub enum RecordScan<'a> {
    /// A whole, checksummed record and the offset just past it.
    Record(&'a [u8], usize),
    /// The bytes end inside a record (a torn tail): stop here.
    Incomplete,
    /// The checksum or length is wrong at this point.
    Corrupt(&'static str),
}

/// Reads the record at `pos` of `buf`.
pub fn scan_record(buf: &[u8], pos: usize) -> RecordScan<'_> {
    let Some(header) = buf.get(pos..pos + RECORD_HEADER_BYTES) else {
        return RecordScan::Incomplete;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > OP_BYTES_MAX {
        return RecordScan::Corrupt("record length out of range");
    }
    let start = pos + RECORD_HEADER_BYTES;
    let Some(payload) = buf.get(start..start + len) else {
        return RecordScan::Incomplete;
    };
    if crc32fast::hash(payload) != crc {
        return RecordScan::Corrupt("checksum mismatch");
    }
    RecordScan::Record(payload, start + len)
}

/// Reads the OpId at the front of an encoded op (version byte, then the
/// postcard varints of site, incarnation and seq), without decoding the rest:
/// a record read back from the log is checked against the op the backlog
/// expects there. `None` when the bytes do not start like an op.
pub fn op_id_of(payload: &[u8]) -> Option<OpId> {
    fn varint(bytes: &[u8], pos: &mut usize, bits: u32) -> Option<u64> {
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let b = *bytes.get(*pos)?;
            *pos += 1;
            if shift >= bits {
                return None;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        if bits < 64 && v >> bits != 0 {
            return None;
        }
        Some(v)
    }
    if payload.first() != Some(&OP_FORMAT_VERSION) {
        return None;
    }
    let mut pos = 1;
    let site = varint(payload, &mut pos, 16)?;
    let incarnation = varint(payload, &mut pos, 32)?;
    let seq = varint(payload, &mut pos, 64)?;
    Some(OpId::new(
        crate::id::Origin::new(u16::try_from(site).ok()?, u32::try_from(incarnation).ok()?),
        seq,
    ))
}

/// Where one op kept for peers is: its id and the offset of its record in
/// the op log. This is all the backlog keeps per op (24 bytes); the op's
/// bytes are read back from the log, or from the newest ops kept in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BacklogEntry {
    pub id: OpId,
    /// Offset of the op's record in the op log.
    pub log_offset: u64,
}

/// An op read from the backlog for a peer: its id and its encoded bytes,
/// exactly as they were logged.
#[derive(Clone, Debug)]
pub struct BacklogOp {
    pub id: OpId,
    pub bytes: Bytes,
}

/// The ops kept for peers, in local apply order (the log's order), addressed
/// by absolute position.
///
/// Every op of the backlog is a record of the op log, and the records of
/// consecutive entries are consecutive in the log: the log is what serves a
/// peer that is behind. In memory the backlog keeps, per op, only a
/// [`BacklogEntry`]; besides, the encoded bytes of the newest ops (the
/// *tail*, at most `tail_bytes_max` bytes), which peers that keep up read
/// without touching the disk, and the bytes of ops that are not in the log
/// (their append failed, or the storage refuses appends since an error):
/// for those the memory is the only copy. Those come only after every
/// logged op, since an error is sticky until restart.
#[derive(Debug, Default)]
pub struct Backlog {
    entries: VecDeque<BacklogEntry>,
    /// Absolute position of `entries[0]`.
    base: u64,
    /// Log offset just past the newest logged record of the backlog.
    log_end: u64,
    /// Encoded bytes of the newest ops: positions `end() - tail.len()..end()`.
    tail: VecDeque<Bytes>,
    tail_bytes: usize,
    tail_bytes_max: usize,
    /// Ops that are in no log, with their positions (ascending).
    unlogged: VecDeque<(u64, Bytes)>,
    unlogged_bytes: usize,
    /// Per origin, the highest seq that is *not* in the backlog (trimmed, or
    /// received through a snapshot): a peer below it needs a full sync.
    pub floor: VersionVector,
}

impl Backlog {
    /// An empty backlog that keeps the bytes of its newest ops in memory up
    /// to `tail_bytes_max`.
    pub fn new(tail_bytes_max: usize) -> Backlog {
        Backlog {
            tail_bytes_max,
            ..Backlog::default()
        }
    }

    /// Adds an op whose record of `record_bytes` bytes is at `log_offset` in
    /// the log; `payload`, its encoded bytes, joins the tail when given.
    pub fn push_logged(
        &mut self,
        id: OpId,
        log_offset: u64,
        record_bytes: usize,
        payload: Option<Bytes>,
    ) {
        debug_assert!(
            self.unlogged.is_empty(),
            "an unlogged op precedes a logged one"
        );
        debug_assert!(self.entries.is_empty() || log_offset == self.log_end);
        self.entries.push_back(BacklogEntry { id, log_offset });
        self.log_end = log_offset + record_bytes as u64;
        match payload {
            // The tail is the newest positions: an op without bytes in
            // memory ends it.
            Some(bytes) if self.tail_bytes_max > 0 => {
                self.tail_bytes += bytes.len();
                self.tail.push_back(bytes);
                while self.tail_bytes > self.tail_bytes_max {
                    self.pop_tail_front();
                }
            }
            _ => self.drop_tail(),
        }
    }

    /// Adds an op that is not in the log (at `log_offset`, where it would
    /// have been): its bytes stay in memory while it is in the backlog.
    pub fn push_unlogged(&mut self, id: OpId, log_offset: u64, payload: Bytes) {
        self.drop_tail();
        let pos = self.end();
        self.entries.push_back(BacklogEntry { id, log_offset });
        self.unlogged_bytes += payload.len();
        self.unlogged.push_back((pos, payload));
    }

    fn drop_tail(&mut self) {
        self.tail.clear();
        self.tail_bytes = 0;
    }

    fn pop_tail_front(&mut self) {
        if let Some(b) = self.tail.pop_front() {
            self.tail_bytes -= b.len();
        }
    }

    /// Changes the bound on the tail's bytes; a smaller one applies at once.
    pub fn set_tail_bytes_max(&mut self, bytes: usize) {
        self.tail_bytes_max = bytes;
        while self.tail_bytes > self.tail_bytes_max {
            self.pop_tail_front();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// What the backlog holds, counted against `repl-backlog-size`: the
    /// bytes of its records in the log, and of its ops in no log.
    pub fn bytes(&self) -> usize {
        usize::try_from(self.log_bytes())
            .unwrap_or(usize::MAX)
            .saturating_add(self.unlogged_bytes)
    }
    /// Bytes of the log (record headers included) from the oldest op of the
    /// backlog to its newest logged one.
    pub fn log_bytes(&self) -> u64 {
        self.entries
            .front()
            .map_or(0, |f| self.log_end.saturating_sub(f.log_offset))
    }
    /// Bytes of the newest ops' encodings held in memory.
    pub fn tail_bytes(&self) -> usize {
        self.tail_bytes
    }
    /// Memory the backlog holds: its entries, the tail and the ops in no
    /// log (the allocations' capacity, with the bytes' lengths; a tail
    /// slice may keep a little more of the buffer it was cut from alive).
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<BacklogEntry>()
            + self.tail.capacity() * std::mem::size_of::<Bytes>()
            + self.tail_bytes
            + self.unlogged.capacity() * std::mem::size_of::<(u64, Bytes)>()
            + self.unlogged_bytes
    }
    /// Absolute position one past the newest entry.
    pub fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }
    pub fn start(&self) -> u64 {
        self.base
    }

    /// Drops the oldest entry, raising the floor.
    pub fn pop_front(&mut self) -> Option<BacklogEntry> {
        let e = self.entries.pop_front()?;
        self.base += 1;
        if self.tail.len() > self.entries.len() {
            self.pop_tail_front();
        }
        while self.unlogged.front().is_some_and(|(p, _)| *p < self.base) {
            if let Some((_, b)) = self.unlogged.pop_front() {
                self.unlogged_bytes -= b.len();
            }
        }
        self.floor.raise(e.id.origin, e.id.seq);
        Some(e)
    }

    /// Gives back the spare capacity a long backlog left once it is short
    /// again (the queues never shrink by themselves).
    pub fn shrink(&mut self) {
        const KEEP_MIN: usize = 1024;
        if self.entries.capacity() > 4 * self.entries.len().max(KEEP_MIN) {
            self.entries.shrink_to(2 * self.entries.len().max(KEEP_MIN));
        }
        if self.tail.capacity() > 4 * self.tail.len().max(KEEP_MIN) {
            self.tail.shrink_to(2 * self.tail.len().max(KEEP_MIN));
        }
        if self.unlogged.is_empty() {
            self.unlogged.shrink_to_fit();
        }
    }

    pub fn front(&self) -> Option<&BacklogEntry> {
        self.entries.front()
    }

    /// True when every op a peer at `peer_vv` lacks (of those `have` covers) is
    /// still in the backlog.
    pub fn can_serve(&self, peer_vv: &VersionVector, have: &VersionVector) -> bool {
        have.iter().all(|(o, q)| {
            let p = peer_vv.get(o);
            p >= q || p >= self.floor.get(o)
        })
    }

    /// First position at or after `from` holding an op `peer_vv` lacks.
    pub fn seek(&self, from: u64, peer_vv: &VersionVector) -> u64 {
        let mut pos = from.max(self.base);
        while let Some(e) = self.get(pos) {
            if !peer_vv.covers(e.id) {
                break;
            }
            pos += 1;
        }
        pos
    }

    pub fn get(&self, pos: u64) -> Option<BacklogEntry> {
        let i = pos.checked_sub(self.base)?;
        self.entries.get(usize::try_from(i).ok()?).copied()
    }

    /// The encoded bytes of the op at `pos` when memory holds them (it is in
    /// the tail, or in no log); otherwise they are read from the log.
    pub fn held(&self, pos: u64) -> Option<&Bytes> {
        if let Some(i) = pos.checked_sub(self.end() - self.tail.len() as u64) {
            return self.tail.get(usize::try_from(i).ok()?);
        }
        let first = self.unlogged.front()?.0;
        let i = usize::try_from(pos.checked_sub(first)?).ok()?;
        // Positions of ops in no log are consecutive (they follow every
        // logged op), so the index is the distance from the first.
        match self.unlogged.get(i) {
            Some((p, b)) if *p == pos => Some(b),
            _ => None,
        }
    }

    /// Marks everything up to `vv` as not servable from the backlog (after a
    /// snapshot merge brought ops that never went through it).
    pub fn raise_floor(&mut self, vv: &VersionVector) {
        self.floor.join(vv);
    }

    /// Checks the backlog's own invariants (tests, debug builds); O(1), as
    /// it runs after every engine mutation.
    pub fn invariants_hold(&self) -> bool {
        let unlogged_consecutive = match (self.unlogged.front(), self.unlogged.back()) {
            (Some(f), Some(b)) => {
                f.0 >= self.base
                    && b.0 < self.end()
                    && b.0 - f.0 + 1 == self.unlogged.len() as u64
                    && self.tail.is_empty()
            }
            _ => self.unlogged_bytes == 0,
        };
        self.tail.len() <= self.entries.len()
            && self.tail_bytes <= self.tail_bytes_max
            && unlogged_consecutive
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::id::{OpId, Origin};
    use crate::keyspace::value::list::{Level, Place, Span};
    use crate::op::{Effect, KeyEffect, Value};
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
    }
    fn list() -> impl Strategy<Value = Vec<Bytes>> {
        proptest::collection::vec(bytes(), 0..4)
    }
    fn pairs() -> impl Strategy<Value = Vec<(Bytes, Bytes)>> {
        proptest::collection::vec((bytes(), bytes()), 0..4)
    }
    fn scored() -> impl Strategy<Value = Vec<(Bytes, f64)>> {
        proptest::collection::vec((bytes(), any::<f64>()), 0..4)
    }
    /// Exact increments as the engine makes them: differences of two values.
    fn exact() -> impl Strategy<Value = crate::ld::Exact> {
        (any::<f64>(), any::<f64>())
            .prop_map(|(a, b)| crate::ld::Exact::from_f64(a).sub(&crate::ld::Exact::from_f64(b)))
    }
    fn effect() -> impl Strategy<Value = Effect> {
        prop_oneof![
            (bytes(), any::<bool>())
                .prop_map(|(value, keep_ttl)| Effect::SetString { value, keep_ttl }),
            any::<i64>().prop_map(Effect::IncrInt),
            exact().prop_map(Effect::IncrFloat),
            Just(Effect::Del),
            any::<Option<u64>>().prop_map(Effect::Expire),
            pairs().prop_map(Effect::HSet),
            list().prop_map(Effect::HDel),
            (bytes(), any::<i64>()).prop_map(|(f, d)| Effect::HIncrInt(f, d)),
            (bytes(), exact()).prop_map(|(f, d)| Effect::HIncrFloat(f, d)),
            list().prop_map(Effect::SAdd),
            list().prop_map(Effect::SRem),
            scored().prop_map(Effect::ZAdd),
            (bytes(), any::<f64>()).prop_map(|(m, d)| Effect::ZIncr(m, d)),
            list().prop_map(Effect::ZRem),
            (
                prop_oneof![
                    bytes().prop_map(Value::Str),
                    pairs().prop_map(Value::Hash),
                    list().prop_map(Value::Set),
                    scored().prop_map(Value::ZSet),
                    list().prop_map(Value::List),
                ],
                any::<bool>()
            )
                .prop_map(|(value, keep_ttl)| Effect::Replace { value, keep_ttl }),
            Just(Effect::FlushDb),
            Just(Effect::FlushAll),
            (levels(), any::<i64>(), any::<u32>(), list()).prop_map(
                |(prefix, d, first, values)| {
                    Effect::ListInsert {
                        place: Place { prefix, d },
                        first,
                        values,
                    }
                }
            ),
            (
                proptest::collection::vec((levels(), any::<i64>(), level(), any::<u32>()), 0..3),
                any::<bool>()
            )
                .prop_map(|(spans, pop)| Effect::ListRemove {
                    spans: spans
                        .into_iter()
                        .map(|(prefix, d, l, len)| Span {
                            prefix,
                            d,
                            op: l.op,
                            first: l.i,
                            len,
                        })
                        .collect(),
                    pop,
                }),
            (levels(), bytes()).prop_map(|(pos, value)| Effect::ListSet { pos, value }),
            (
                proptest::collection::vec(any::<(u16, u8)>(), 0..40),
                any::<bool>()
            )
                .prop_map(|(regs, replace)| Effect::HllRaise { regs, replace }),
        ]
    }
    fn level() -> impl Strategy<Value = Level> {
        (any::<i64>(), any::<(u16, u32, u64)>(), any::<u32>()).prop_map(|(d, (s, inc, seq), i)| {
            Level {
                d,
                op: OpId::new(Origin::new(s, inc), seq),
                i,
            }
        })
    }
    fn levels() -> impl Strategy<Value = Vec<Level>> {
        proptest::collection::vec(level(), 0..3)
    }
    fn op() -> impl Strategy<Value = Op> {
        (
            any::<(u16, u32, u64, u64)>(),
            proptest::collection::vec((any::<u16>(), any::<u32>(), 1..u64::MAX), 0..4),
            proptest::collection::vec((any::<u8>(), bytes(), effect()), 1..4),
        )
            .prop_map(|((site, inc, seq, hlc), deps, effects)| {
                let mut vv = VersionVector::new();
                for (s, i, q) in deps {
                    vv.set(Origin::new(s, i), q);
                }
                Op {
                    id: OpId::new(Origin::new(site, inc), seq),
                    hlc: Hlc(hlc),
                    deps: vv,
                    effects: effects
                        .into_iter()
                        .map(|(db, key, effect)| KeyEffect { db, key, effect })
                        .collect(),
                }
            })
    }

    proptest! {
        /// The hand-written encoder writes exactly postcard's bytes.
        #[test]
        fn hand_encoder_matches_postcard(op in op()) {
            let mut expected = vec![OP_FORMAT_VERSION];
            expected.extend(postcard::to_allocvec(&op).expect("postcard encodes"));
            let got = encode_op(&op);
            prop_assert_eq!(got.as_ref(), expected.as_slice());
            let mut framed = Vec::new();
            let range = encode_record(&op, &mut framed);
            let mut reference = Vec::new();
            frame_record(&expected, &mut reference);
            prop_assert_eq!(&framed, &reference);
            prop_assert_eq!(&framed[range], expected.as_slice());
            prop_assert_eq!(op_id_of(&got), Some(op.id));
        }
    }
}
