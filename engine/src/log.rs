//! Op log records: framing, checksums and the in-memory backlog.
//!
//! A record on disk is `len: u32 LE | crc32: u32 LE | payload` where payload is
//! the postcard encoding of an `Op` (version byte first). Records are appended in
//! local apply order, which is a causal order, so replaying the log in order never
//! meets an op before its deps. The backlog keeps the encoded ops still wanted by
//! peers, bounded in bytes; a peer behind the backlog needs a full sync.

use crate::id::{OpId, VersionVector};
use crate::op::Op;
use bytes::Bytes;
use std::collections::VecDeque;
use thiserror::Error;

/// Version byte in front of every encoded op (disk and wire).
pub const OP_FORMAT_VERSION: u8 = 1;
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
    match postcard::to_extend(op, v) {
        Ok(v) => Bytes::from(v),
        // Encoding into a Vec cannot fail for these types; an empty payload is
        // rejected by `decode_op`, so a bug here is loud, not silent.
        Err(_) => Bytes::new(),
    }
}

/// Decodes and validates an op from untrusted bytes.
pub fn decode_op(bytes: &[u8]) -> Result<Op, DecodeError> {
    let (&v, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if v != OP_FORMAT_VERSION {
        return Err(DecodeError::Version(v));
    }
    let op: Op = postcard::from_bytes(rest).map_err(|e| DecodeError::Postcard(e.to_string()))?;
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
        .any(|e| e.db as usize >= crate::keyspace::DBS)
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

/// One op kept for peers.
#[derive(Clone, Debug)]
pub struct BacklogEntry {
    pub id: OpId,
    pub bytes: Bytes,
    /// Offset of the record in the op log (for trimming the disk log).
    pub log_offset: u64,
}

/// Encoded ops in local apply order, addressed by absolute position.
#[derive(Debug, Default)]
pub struct Backlog {
    entries: VecDeque<BacklogEntry>,
    /// Absolute position of `entries[0]`.
    base: u64,
    bytes: usize,
    /// Per origin, the highest seq that is *not* in the backlog (trimmed, or
    /// received through a snapshot): a peer below it needs a full sync.
    pub floor: VersionVector,
}

impl Backlog {
    pub fn push(&mut self, e: BacklogEntry) {
        self.bytes += e.bytes.len() + 64;
        self.entries.push_back(e);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn bytes(&self) -> usize {
        self.bytes
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
        self.bytes = self.bytes.saturating_sub(e.bytes.len() + 64);
        self.floor.raise(e.id.origin, e.id.seq);
        Some(e)
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

    pub fn get(&self, pos: u64) -> Option<&BacklogEntry> {
        let i = pos.checked_sub(self.base)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// Up to `ops_max` ops / `bytes_max` bytes from `pos` on that `peer_vv`
    /// lacks; returns them and the position after the last one looked at.
    pub fn read(
        &self,
        pos: u64,
        peer_vv: &VersionVector,
        ops_max: usize,
        bytes_max: usize,
    ) -> (Vec<BacklogEntry>, u64) {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut p = pos.max(self.base);
        while let Some(e) = self.get(p) {
            if out.len() >= ops_max || (!out.is_empty() && bytes + e.bytes.len() > bytes_max) {
                break;
            }
            if !peer_vv.covers(e.id) {
                bytes += e.bytes.len();
                out.push(e.clone());
            }
            p += 1;
        }
        (out, p)
    }

    /// Marks everything up to `vv` as not servable from the backlog (after a
    /// snapshot merge brought ops that never went through it).
    pub fn raise_floor(&mut self, vv: &VersionVector) {
        self.floor.join(vv);
    }
}
