//! Wire format between two peer sessions: messages and their framing.
//!
//! A connection carries a reliable, ordered byte stream of frames:
//! `len: u32 LE | payload`, where `payload` is `WIRE_VERSION | postcard(Message)`.
//! Ops travel as the engine encoded them ([`chorus_engine::log::encode_op`]), so a
//! site forwards the very bytes it logged, never a re-encoding.
//!
//! Invariants:
//! * every size is bounded by a named constant, and the bounds fit inside one
//!   frame (checked at compile time below);
//! * [`Message::check`] holds before a message is encoded and after it is
//!   decoded, so a session only ever sees messages within the bounds;
//! * decoding never panics and never allocates more than the frame it was given
//!   (postcard caps preallocation; a frame is bounded by [`FRAME_BYTES_MAX`]).
//!
//! The variant order of [`Message`] *is* the wire format (postcard encodes the
//! variant index). `Hello` and `HelloRefused` stay variants 0 and 1 in every
//! protocol version, so two versions can always tell each other why they refuse.

use bytes::{Buf, Bytes, BytesMut};
use chorus_engine::hlc::Hlc;
use chorus_engine::id::{SiteId, VersionVector};
use chorus_engine::keyspace::{ALL_DBS as DBS, DIGEST_LEAVES};
use chorus_engine::stability::{Report, REPORTS_MAX};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// First byte of every frame payload: the encoding of the message that follows.
pub const WIRE_VERSION: u8 = 1;
/// The protocol this build speaks (sent in `Hello`). Version 2 added the
/// anti-entropy messages `DigestQuery` and `RepairRows`; version 3 carries
/// float increments as exact binary fractions (op format 2, row images with
/// `fctr`); version 4 compares leaf digests at a common cut and repairs by
/// a union that never deletes (`Digest` and `RepairRows` changed meaning);
/// version 5 carries lists (list effects in ops, `list` in row images);
/// version 6 carries folded counter entries (`ctr_lo`/`fctr_lo` in row
/// images); version 7 carries the cluster's own database (rows of database
/// 16, digest masks of 32 bits), stability `Reports` and the `Removed`
/// refusal; version 8 relays pub/sub messages (`Publish`, on a stream of
/// their own: see [`PUBSUB_PROTOCOL_VERSION`]) and carries HyperLogLogs
/// (the `HllRaise` effect in ops, `hll` after the other fields of row
/// images).
pub const PROTOCOL_VERSION: u16 = 8;
/// The oldest protocol this build still accepts from a peer: a version 7
/// peer can decode neither an `HllRaise` op nor the HyperLogLog of a row
/// image (it would drop it unseen); a version 6 peer neither knows the
/// cluster's database nor reports what it applied.
pub const PROTOCOL_VERSION_MIN: u16 = 8;
/// The first protocol whose sites relay pub/sub messages: a site sends
/// `Publish` only to a peer whose `Hello` names this version or a later one.
pub const PUBSUB_PROTOCOL_VERSION: u16 = 8;

/// The `u32 LE` length in front of every frame.
pub const FRAME_HEADER_BYTES: usize = 4;
/// Largest postcard varint of a length or a `u64`.
pub const VARINT_BYTES_MAX: usize = 10;
/// Upper bound of what a message adds around its variable-size parts: the
/// version byte, the variant tag, fixed fields (ids, HLC, counts) and their varints.
pub const MESSAGE_OVERHEAD_BYTES_MAX: usize = 64;

/// Largest encoded op (the engine's own bound for ops from disk or a peer).
pub const OP_BYTES_MAX: usize = chorus_engine::log::OP_BYTES_MAX;
/// Most ops in one `OpBatch`.
pub const BATCH_OPS_MAX: usize = 4096;
/// Most op bytes in one `OpBatch` of two or more ops. A single op larger than
/// this travels alone in its own batch (up to [`OP_BYTES_MAX`]).
pub const BATCH_BYTES_MAX: usize = 8 << 20;

/// Most entries in a version vector from a peer (origins: sites x incarnations).
pub const VV_ENTRIES_MAX: usize = 65_536;
/// Largest encoding of one entry: origin (u16 + u32 varints) and seq (u64 varint).
pub const VV_ENTRY_BYTES_MAX: usize = 3 + 5 + VARINT_BYTES_MAX;
/// Largest encoding of a version vector.
pub const VV_BYTES_MAX: usize = VARINT_BYTES_MAX + VV_ENTRIES_MAX * VV_ENTRY_BYTES_MAX;

/// Most rows in one `SnapshotChunk`.
pub const SNAPSHOT_CHUNK_ROWS_MAX: usize = 65_536;
/// Most row bytes (key + image) in one `SnapshotChunk` of two or more rows.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 8 << 20;
/// Largest single row (key + image); a larger row cannot be shipped in a snapshot.
pub const SNAPSHOT_ROW_BYTES_MAX: usize = OP_BYTES_MAX;
/// Bytes one row adds on the wire around its key and image (db, two lengths).
pub const SNAPSHOT_ROW_OVERHEAD_BYTES: usize = 1 + 2 * VARINT_BYTES_MAX;
/// Most rows a snapshot may announce.
pub const SNAPSHOT_ROWS_MAX: u64 = 1 << 32;
/// Most digest leaves in one `Digest` (one database's leaves).
pub const DIGEST_BUCKETS_MAX: usize = DIGEST_LEAVES;
/// Most row bytes (key + image) in one `RepairRows`; a bucket larger than
/// this cannot be repaired by anti-entropy (a full sync still can).
pub const REPAIR_BYTES_MAX: usize = 32 << 20;
/// Most rows in one `RepairRows`.
pub const REPAIR_ROWS_MAX: usize = 1 << 20;

/// Most bytes of one relayed pub/sub message (channel + payload). A larger
/// message reaches the subscribers of its own site only.
pub const PUBSUB_MESSAGE_BYTES_MAX: usize = 8 << 20;
/// Largest frame payload on the pub/sub stream: one `Publish` of the largest
/// message (the decoder there refuses a larger header before buffering).
pub const PUBSUB_FRAME_BYTES_MAX: usize =
    PUBSUB_MESSAGE_BYTES_MAX + 2 * VARINT_BYTES_MAX + MESSAGE_OVERHEAD_BYTES_MAX;

/// Largest frame payload (after the length header). Big enough for the largest
/// op alone in a batch, which is the largest message.
pub const FRAME_BYTES_MAX: usize = OP_BYTES_MAX + (1 << 20);

const _: () = {
    assert!(
        FRAME_BYTES_MAX <= u32::MAX as usize,
        "frame length must fit the u32 header"
    );
    assert!(BATCH_OPS_MAX >= 1 && BATCH_BYTES_MAX >= 1);
    // A full batch of small ops fits one frame.
    assert!(
        BATCH_BYTES_MAX + BATCH_OPS_MAX * VARINT_BYTES_MAX + MESSAGE_OVERHEAD_BYTES_MAX
            <= FRAME_BYTES_MAX
    );
    // The largest op alone fits one frame.
    assert!(OP_BYTES_MAX + VARINT_BYTES_MAX + MESSAGE_OVERHEAD_BYTES_MAX <= FRAME_BYTES_MAX);
    assert!(BATCH_BYTES_MAX <= OP_BYTES_MAX);
    // A full snapshot chunk, and the largest row alone, fit one frame.
    assert!(
        SNAPSHOT_CHUNK_BYTES_MAX
            + SNAPSHOT_CHUNK_ROWS_MAX * SNAPSHOT_ROW_OVERHEAD_BYTES
            + MESSAGE_OVERHEAD_BYTES_MAX
            <= FRAME_BYTES_MAX
    );
    assert!(
        SNAPSHOT_ROW_BYTES_MAX + SNAPSHOT_ROW_OVERHEAD_BYTES + MESSAGE_OVERHEAD_BYTES_MAX
            <= FRAME_BYTES_MAX
    );
    // An ack (two vectors) and a digest (a vector and the buckets) fit one frame.
    assert!(2 * VV_BYTES_MAX + MESSAGE_OVERHEAD_BYTES_MAX <= FRAME_BYTES_MAX);
    assert!(VV_BYTES_MAX + DIGEST_BUCKETS_MAX * 16 + MESSAGE_OVERHEAD_BYTES_MAX <= FRAME_BYTES_MAX);
    // A full repair (a vector, the bucket list, the rows) fits one frame.
    assert!(
        VV_BYTES_MAX
            + DIGEST_BUCKETS_MAX * 3
            + REPAIR_BYTES_MAX
            + REPAIR_ROWS_MAX * SNAPSHOT_ROW_OVERHEAD_BYTES
            + MESSAGE_OVERHEAD_BYTES_MAX
            <= FRAME_BYTES_MAX
    );
    assert!(PUBSUB_FRAME_BYTES_MAX <= FRAME_BYTES_MAX);
    assert!(DIGEST_BUCKETS_MAX <= u16::MAX as usize);
    assert!(DBS <= u8::MAX as usize);
};

/// Why a site refuses a peer's `Hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum RefuseReason {
    #[error("cluster id mismatch: ours is {ours}, the peer's is {theirs}")]
    ClusterMismatch { ours: u64, theirs: u64 },
    #[error("duplicate site id {site_id}: the peer claims our own site id")]
    DuplicateSiteId { site_id: SiteId },
    #[error("unexpected site id: expected {expected}, the peer is {got}")]
    UnexpectedSite { expected: SiteId, got: SiteId },
    #[error("unsupported protocol version {got} (supported {min}..={max})")]
    ProtocolVersion { min: u16, max: u16, got: u16 },
    #[error("site {site_id} was removed from the cluster (MEMBER REMOVE)")]
    Removed { site_id: SiteId },
}

/// The first message each side sends on a new connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub cluster_id: u64,
    pub site_id: SiteId,
    pub protocol_version: u16,
    /// The ops the sender holds (applied): the peer streams from here.
    pub vv: VersionVector,
}

/// One pub/sub message relayed between sites: published at `origin` (in its
/// incarnation `incarnation`) as that start's `seq`-th message (from 1).
/// Sites de-duplicate by `(origin, incarnation, seq)`; see `crate::pubsub`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub origin: SiteId,
    pub incarnation: u32,
    pub seq: u64,
    /// `SPUBLISH` (a shard channel) rather than `PUBLISH`.
    pub shard: bool,
    pub channel: Bytes,
    pub payload: Bytes,
}

impl Published {
    /// Bytes counted against `PUBSUB_MESSAGE_BYTES_MAX`.
    pub fn bytes(&self) -> usize {
        self.channel.len().saturating_add(self.payload.len())
    }
}

/// One row of a snapshot: its database, key, and canonical image
/// (`RowImage::encode`), shipped as bytes so chunks are bounded exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub db: u8,
    pub key: Bytes,
    pub image: Bytes,
}

impl SnapshotRow {
    /// Bytes counted against chunk and snapshot bounds.
    pub fn bytes(&self) -> usize {
        self.key.len() + self.image.len()
    }
}

/// One message between peer sessions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    HelloRefused {
        reason: RefuseReason,
    },
    /// Encoded ops (`chorus_engine::log::encode_op`), in the sender's apply order.
    OpBatch {
        ops: Vec<Bytes>,
    },
    /// `vv`: what the receiver holds *durably*; `applied_vv`: what it has applied
    /// (for flow control only; never taken as a durability promise).
    Ack {
        vv: VersionVector,
        applied_vv: VersionVector,
    },
    /// The receiver dropped ops (causal buffer full): stream again from `vv`.
    Rewind {
        vv: VersionVector,
    },
    /// Please send me a full snapshot (operator `PEER RESYNC`).
    SnapshotRequest,
    SnapshotBegin {
        vv: VersionVector,
        hlc: Hlc,
        rows_total: u64,
    },
    SnapshotChunk {
        rows: Vec<SnapshotRow>,
    },
    SnapshotEnd,
    /// Please send the digest of database `db` (at the cut the answerer
    /// takes: what both sides hold as far as it knows).
    DigestRequest {
        db: u8,
    },
    /// The digest of database `db` at the cut `vv`: `(leaf, digest)` of
    /// every leaf with rows, and the leaves ops beyond the cut changed at
    /// the sender (`unsettled`). With `comparable: false` the sender could
    /// not give it (it does not hold the cut, or is still hashing changed
    /// rows): ask again later. `dbs`: the sender's databases that hold rows
    /// (one bit each), so rounds ask only for databases either side uses.
    Digest {
        vv: VersionVector,
        db: u8,
        buckets: Vec<(u16, u64)>,
        unsettled: Vec<u16>,
        comparable: bool,
        dbs: u32,
    },
    Heartbeat {
        hlc: Hlc,
    },
    /// What each site the sender knows of had durably applied, the
    /// sender's own report among them (see `chorus_engine::stability`);
    /// `hlc` is the sender's clock, as in a heartbeat (reports go out every
    /// heartbeat interval, so they often stand in for one).
    Reports {
        hlc: Hlc,
        reports: Vec<Report>,
    },
    /// Anti-entropy: "send your digest of `db` at the cut `vv`" (a vector
    /// both sides hold). The answer is a `Digest`.
    DigestQuery {
        vv: VersionVector,
        db: u8,
    },
    /// Anti-entropy repair: every row the sender holds in the digest leaves
    /// `buckets` (ascending) of `db`, each settled at the sender for the cut
    /// `vv`. The receiver joins them into the leaves settled for `vv` there
    /// (a union that deletes nothing); with `reply` it then sends its rows of
    /// the leaves it merged back (with `reply: false`).
    RepairRows {
        vv: VersionVector,
        db: u8,
        buckets: Vec<u16>,
        rows: Vec<SnapshotRow>,
        reply: bool,
    },
    /// The receiver joined late: the sender made reports before it knew
    /// it, some site may have folded counters with them, and the receiver
    /// lacks ops they cover. It takes no writes until it holds `vv`.
    CatchUp {
        vv: VersionVector,
    },
    /// A pub/sub message (protocol 8). Travels only on the pub/sub stream,
    /// never on the op stream (where it closes the session).
    Publish(Published),
}

/// What is wrong with a frame or a message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("empty frame")]
    EmptyFrame,
    #[error("unknown wire version {0}")]
    Version(u8),
    #[error("message does not decode: {0}")]
    Decode(postcard::Error),
    #[error("message does not encode: {0}")]
    Encode(postcard::Error),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error("message out of bounds: {0}")]
    Limit(&'static str),
}

fn check_vv(vv: &VersionVector) -> Result<(), WireError> {
    if !vv.is_canonical() {
        return Err(WireError::Limit("version vector not canonical"));
    }
    if vv.iter().count() > VV_ENTRIES_MAX {
        return Err(WireError::Limit("version vector has too many entries"));
    }
    Ok(())
}

/// `RepairRows` bounds: whole buckets of one database, every row in one of
/// them (a row outside would be joined against the wrong set of rows).
fn check_repair(
    vv: &VersionVector,
    db: u8,
    buckets: &[u16],
    rows: &[SnapshotRow],
) -> Result<(), WireError> {
    check_vv(vv)?;
    if db as usize >= DBS {
        return Err(WireError::Limit("repair db index"));
    }
    if buckets.is_empty() || buckets.len() > DIGEST_BUCKETS_MAX {
        return Err(WireError::Limit("repair bucket count"));
    }
    if buckets.iter().any(|&b| b as usize >= DIGEST_LEAVES)
        || buckets.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(WireError::Limit(
            "repair buckets out of range or not ascending",
        ));
    }
    if rows.len() > REPAIR_ROWS_MAX {
        return Err(WireError::Limit("repair row count"));
    }
    let mut total = 0usize;
    for row in rows {
        if row.db != db {
            return Err(WireError::Limit("repair row of another db"));
        }
        if row.image.is_empty() {
            return Err(WireError::Limit("repair row size"));
        }
        total = total.saturating_add(row.bytes());
        let bucket = chorus_engine::keyspace::leaf_of(&row.key) as u16;
        if buckets.binary_search(&bucket).is_err() {
            return Err(WireError::Limit("repair row outside its buckets"));
        }
    }
    if total > REPAIR_BYTES_MAX {
        return Err(WireError::Limit("repair bytes"));
    }
    Ok(())
}

impl Message {
    /// Name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::HelloRefused { .. } => "HelloRefused",
            Message::OpBatch { .. } => "OpBatch",
            Message::Ack { .. } => "Ack",
            Message::Rewind { .. } => "Rewind",
            Message::SnapshotRequest => "SnapshotRequest",
            Message::SnapshotBegin { .. } => "SnapshotBegin",
            Message::SnapshotChunk { .. } => "SnapshotChunk",
            Message::SnapshotEnd => "SnapshotEnd",
            Message::DigestRequest { .. } => "DigestRequest",
            Message::Digest { .. } => "Digest",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::Reports { .. } => "Reports",
            Message::DigestQuery { .. } => "DigestQuery",
            Message::CatchUp { .. } => "CatchUp",
            Message::RepairRows { .. } => "RepairRows",
            Message::Publish(_) => "Publish",
        }
    }

    /// Roughly the encoded size, to allocate a frame once.
    pub fn size_hint(&self) -> usize {
        let vv = |v: &VersionVector| v.iter().count() * 8;
        MESSAGE_OVERHEAD_BYTES_MAX
            + match self {
                Message::Hello(h) => vv(&h.vv),
                Message::OpBatch { ops } => ops.iter().map(|o| o.len() + 4).sum(),
                Message::Ack {
                    vv: a,
                    applied_vv: b,
                } => vv(a) + vv(b),
                Message::Rewind { vv: v }
                | Message::SnapshotBegin { vv: v, .. }
                | Message::CatchUp { vv: v } => vv(v),
                Message::SnapshotChunk { rows } => rows.iter().map(|r| r.bytes() + 8).sum(),
                Message::Reports { reports, .. } => reports.iter().map(|r| 24 + vv(&r.vv)).sum(),
                Message::Digest {
                    vv: v,
                    buckets,
                    unsettled,
                    ..
                } => vv(v) + buckets.len() * 13 + unsettled.len() * 3,
                Message::DigestQuery { vv: v, .. } => vv(v),
                Message::RepairRows {
                    vv: v,
                    buckets,
                    rows,
                    ..
                } => vv(v) + buckets.len() * 3 + rows.iter().map(|r| r.bytes() + 8).sum::<usize>(),
                Message::Publish(p) => p.bytes(),
                _ => 0,
            }
    }

    /// Checks every bound of the message (before encoding, after decoding).
    pub fn check(&self) -> Result<(), WireError> {
        match self {
            Message::Hello(h) => check_vv(&h.vv),
            Message::OpBatch { ops } => {
                if ops.is_empty() || ops.len() > BATCH_OPS_MAX {
                    return Err(WireError::Limit("batch op count"));
                }
                let mut total = 0usize;
                for op in ops {
                    if op.is_empty() || op.len() > OP_BYTES_MAX {
                        return Err(WireError::Limit("op size"));
                    }
                    total = total.saturating_add(op.len());
                }
                if ops.len() > 1 && total > BATCH_BYTES_MAX {
                    return Err(WireError::Limit("batch bytes"));
                }
                Ok(())
            }
            Message::Ack { vv, applied_vv } => {
                check_vv(vv)?;
                check_vv(applied_vv)
            }
            Message::Rewind { vv } => check_vv(vv),
            Message::SnapshotBegin { vv, rows_total, .. } => {
                check_vv(vv)?;
                if *rows_total > SNAPSHOT_ROWS_MAX {
                    return Err(WireError::Limit("snapshot row count"));
                }
                Ok(())
            }
            Message::SnapshotChunk { rows } => {
                if rows.is_empty() || rows.len() > SNAPSHOT_CHUNK_ROWS_MAX {
                    return Err(WireError::Limit("chunk row count"));
                }
                let mut total = 0usize;
                for row in rows {
                    if row.db as usize >= DBS {
                        return Err(WireError::Limit("snapshot row db index"));
                    }
                    if row.image.is_empty() || row.bytes() > SNAPSHOT_ROW_BYTES_MAX {
                        return Err(WireError::Limit("snapshot row size"));
                    }
                    total = total.saturating_add(row.bytes());
                }
                if rows.len() > 1 && total > SNAPSHOT_CHUNK_BYTES_MAX {
                    return Err(WireError::Limit("chunk bytes"));
                }
                Ok(())
            }
            Message::DigestRequest { db } => {
                if *db as usize >= DBS {
                    return Err(WireError::Limit("digest db index"));
                }
                Ok(())
            }
            Message::Digest {
                vv,
                db,
                buckets,
                unsettled,
                ..
            } => {
                check_vv(vv)?;
                if *db as usize >= DBS {
                    return Err(WireError::Limit("digest db index"));
                }
                if buckets.len() > DIGEST_BUCKETS_MAX || unsettled.len() > DIGEST_BUCKETS_MAX {
                    return Err(WireError::Limit("digest leaf count"));
                }
                let ascending = |v: &mut dyn Iterator<Item = u16>| {
                    let v: Vec<u16> = v.collect();
                    v.windows(2).all(|w| w[0] < w[1])
                        && v.last().map_or(true, |&l| (l as usize) < DIGEST_LEAVES)
                };
                if !ascending(&mut buckets.iter().map(|b| b.0))
                    || !ascending(&mut unsettled.iter().copied())
                {
                    return Err(WireError::Limit(
                        "digest leaves not ascending or out of range",
                    ));
                }
                Ok(())
            }
            Message::DigestQuery { vv, db } => {
                check_vv(vv)?;
                if *db as usize >= DBS {
                    return Err(WireError::Limit("digest db index"));
                }
                Ok(())
            }
            Message::RepairRows {
                vv,
                db,
                buckets,
                rows,
                ..
            } => check_repair(vv, *db, buckets, rows),
            Message::CatchUp { vv } => check_vv(vv),
            Message::Reports { reports, .. } => {
                if reports.len() > REPORTS_MAX {
                    return Err(WireError::Limit("report count"));
                }
                for r in reports {
                    check_vv(&r.vv)?;
                }
                Ok(())
            }
            Message::Publish(p) => {
                if p.origin == 0 || p.seq == 0 {
                    return Err(WireError::Limit("publish origin or sequence is zero"));
                }
                if p.bytes() > PUBSUB_MESSAGE_BYTES_MAX {
                    return Err(WireError::Limit("publish bytes"));
                }
                Ok(())
            }
            Message::HelloRefused { .. }
            | Message::SnapshotRequest
            | Message::SnapshotEnd
            | Message::Heartbeat { .. } => Ok(()),
        }
    }
}

/// Encodes one message as a whole frame (header included).
pub fn encode_frame(msg: &Message) -> Result<Vec<u8>, WireError> {
    msg.check()?;
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + msg.size_hint());
    buf.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    buf.push(WIRE_VERSION);
    let mut buf = postcard::to_extend(msg, buf).map_err(WireError::Encode)?;
    let len = buf.len() - FRAME_HEADER_BYTES;
    if len > FRAME_BYTES_MAX {
        return Err(WireError::FrameTooLarge {
            len,
            max: FRAME_BYTES_MAX,
        });
    }
    buf[..FRAME_HEADER_BYTES].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(buf)
}

/// Decodes one frame payload (after the header): version byte, message, bounds.
pub fn decode_payload(payload: &[u8]) -> Result<Message, WireError> {
    let (&version, rest) = payload.split_first().ok_or(WireError::EmptyFrame)?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let (msg, trailing): (Message, &[u8]) =
        postcard::take_from_bytes(rest).map_err(WireError::Decode)?;
    if !trailing.is_empty() {
        return Err(WireError::Trailing(trailing.len()));
    }
    msg.check()?;
    Ok(msg)
}

/// Cuts a byte stream into frames. Holds at most one partial frame beyond what
/// has been pushed and not yet taken; a header announcing more than the limit is
/// an error (the connection must be closed: the stream cannot be resynchronised).
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    frame_bytes_max: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        FrameDecoder::with_limit(FRAME_BYTES_MAX)
    }

    /// A decoder with a smaller frame limit (tests, constrained peers).
    pub fn with_limit(frame_bytes_max: usize) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            frame_bytes_max: frame_bytes_max.min(FRAME_BYTES_MAX),
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forgets everything buffered (a new connection).
    pub fn clear(&mut self) {
        self.buf = BytesMut::new();
    }

    /// The next whole frame's payload, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, WireError> {
        let Some(header) = self.buf.get(..FRAME_HEADER_BYTES) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > self.frame_bytes_max {
            return Err(WireError::FrameTooLarge {
                len,
                max: self.frame_bytes_max,
            });
        }
        if len == 0 {
            return Err(WireError::EmptyFrame);
        }
        if self.buf.len() < FRAME_HEADER_BYTES + len {
            // No reservation for the announced length: memory follows the bytes
            // that actually arrive, not what a header claims.
            return Ok(None);
        }
        self.buf.advance(FRAME_HEADER_BYTES);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// The next whole message, `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        match self.next_frame()? {
            Some(payload) => decode_payload(&payload).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_engine::id::Origin;
    use proptest::prelude::*;

    fn vv(entries: &[(u16, u32, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for &(s, i, q) in entries {
            v.set(Origin::new(s, i), q);
        }
        v
    }

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                cluster_id: 7,
                site_id: 2,
                protocol_version: PROTOCOL_VERSION,
                vv: vv(&[(1, 0, 5), (2, 1, 9)]),
            }),
            Message::HelloRefused {
                reason: RefuseReason::DuplicateSiteId { site_id: 3 },
            },
            Message::OpBatch {
                ops: vec![Bytes::from_static(b"\x01abc"), Bytes::from_static(b"\x01d")],
            },
            Message::Ack {
                vv: vv(&[(1, 0, 3)]),
                applied_vv: vv(&[(1, 0, 4)]),
            },
            Message::Rewind {
                vv: vv(&[(4, 0, 1)]),
            },
            Message::SnapshotRequest,
            Message::SnapshotBegin {
                vv: vv(&[(1, 0, 1)]),
                hlc: Hlc::new(1000, 3),
                rows_total: 2,
            },
            Message::SnapshotChunk {
                rows: vec![SnapshotRow {
                    db: 3,
                    key: Bytes::from_static(b"k"),
                    image: Bytes::from_static(b"\x00\x00"),
                }],
            },
            Message::SnapshotEnd,
            Message::DigestRequest { db: 0 },
            Message::Digest {
                vv: VersionVector::new(),
                db: 15,
                buckets: vec![(1, 7), (2, u64::MAX >> 1), (4095, 9)],
                unsettled: vec![3, 4096 - 2],
                comparable: true,
                dbs: 0b101,
            },
            Message::Heartbeat {
                hlc: Hlc::new(5, 5),
            },
            Message::DigestQuery {
                vv: vv(&[(1, 0, 2)]),
                db: 4,
            },
            Message::RepairRows {
                vv: vv(&[(1, 0, 2)]),
                db: 1,
                buckets: vec![bucket_of(b"k")],
                rows: vec![SnapshotRow {
                    db: 1,
                    key: Bytes::from_static(b"k"),
                    image: Bytes::from_static(b"\x00\x00"),
                }],
                reply: true,
            },
            Message::Publish(Published {
                origin: 3,
                incarnation: 7,
                seq: 42,
                shard: false,
                channel: Bytes::from_static(b"news"),
                payload: Bytes::from_static(b"hello"),
            }),
        ]
    }

    fn bucket_of(key: &[u8]) -> u16 {
        chorus_engine::keyspace::leaf_of(key) as u16
    }

    #[test]
    fn every_message_roundtrips_through_frames() {
        let mut stream = Vec::new();
        for m in samples() {
            stream.extend_from_slice(&encode_frame(&m).unwrap());
        }
        let mut dec = FrameDecoder::new();
        // Feed one byte at a time: frames split anywhere must reassemble.
        let mut got = Vec::new();
        for b in &stream {
            dec.push(std::slice::from_ref(b));
            while let Some(m) = dec.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, samples());
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn hello_is_variant_zero_and_refused_variant_one() {
        let f = encode_frame(&samples()[0]).unwrap();
        assert_eq!(f[FRAME_HEADER_BYTES], WIRE_VERSION);
        assert_eq!(f[FRAME_HEADER_BYTES + 1], 0);
        let f = encode_frame(&samples()[1]).unwrap();
        assert_eq!(f[FRAME_HEADER_BYTES + 1], 1);
    }

    #[test]
    fn oversized_header_is_rejected_before_buffering_the_payload() {
        let mut dec = FrameDecoder::with_limit(100);
        dec.push(&101u32.to_le_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(WireError::FrameTooLarge { len: 101, max: 100 })
        );
        let mut dec = FrameDecoder::new();
        dec.push(&u32::MAX.to_le_bytes());
        assert!(matches!(
            dec.next_frame(),
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn bad_version_empty_and_trailing_bytes_are_rejected() {
        assert_eq!(decode_payload(&[]), Err(WireError::EmptyFrame));
        assert_eq!(decode_payload(&[9, 0]), Err(WireError::Version(9)));
        let mut f = encode_frame(&Message::SnapshotEnd).unwrap();
        f.push(0);
        assert_eq!(
            decode_payload(&f[FRAME_HEADER_BYTES..]),
            Err(WireError::Trailing(1))
        );
        let mut dec = FrameDecoder::new();
        dec.push(&0u32.to_le_bytes());
        assert_eq!(dec.next_frame(), Err(WireError::EmptyFrame));
    }

    #[test]
    fn out_of_bounds_messages_are_refused_both_ways() {
        let empty = Message::OpBatch { ops: vec![] };
        assert!(matches!(encode_frame(&empty), Err(WireError::Limit(_))));
        let too_many = Message::OpBatch {
            ops: vec![Bytes::from_static(b"x"); BATCH_OPS_MAX + 1],
        };
        assert!(matches!(encode_frame(&too_many), Err(WireError::Limit(_))));
        let big = Bytes::from(vec![1u8; BATCH_BYTES_MAX]);
        let too_big = Message::OpBatch {
            ops: vec![big.clone(), big.clone()],
        };
        assert!(matches!(encode_frame(&too_big), Err(WireError::Limit(_))));
        // One op above the batch bound still travels alone.
        assert!(encode_frame(&Message::OpBatch { ops: vec![big] }).is_ok());
        // A bad message that arrives anyway is refused after decoding.
        let mut payload = vec![WIRE_VERSION];
        payload = postcard::to_extend(&Message::DigestRequest { db: 17 }, payload).unwrap();
        assert!(matches!(decode_payload(&payload), Err(WireError::Limit(_))));
        let bad_row = Message::SnapshotChunk {
            rows: vec![SnapshotRow {
                db: 99,
                key: Bytes::new(),
                image: Bytes::from_static(b"x"),
            }],
        };
        assert!(matches!(encode_frame(&bad_row), Err(WireError::Limit(_))));
    }

    #[test]
    fn publish_is_variant_sixteen_and_bounded() {
        let publish = samples().pop().unwrap();
        let f = encode_frame(&publish).unwrap();
        assert_eq!(f[FRAME_HEADER_BYTES + 1], 16);
        let Message::Publish(p) = publish else {
            unreachable!()
        };
        let zero_seq = Message::Publish(Published {
            seq: 0,
            ..p.clone()
        });
        assert!(matches!(encode_frame(&zero_seq), Err(WireError::Limit(_))));
        let too_big = Message::Publish(Published {
            payload: Bytes::from(vec![0u8; PUBSUB_MESSAGE_BYTES_MAX]),
            ..p.clone()
        });
        assert!(matches!(encode_frame(&too_big), Err(WireError::Limit(_))));
        let largest = Message::Publish(Published {
            channel: Bytes::new(),
            payload: Bytes::from(vec![0u8; PUBSUB_MESSAGE_BYTES_MAX]),
            ..p
        });
        let f = encode_frame(&largest).unwrap();
        let mut dec = FrameDecoder::with_limit(PUBSUB_FRAME_BYTES_MAX);
        dec.push(&f);
        assert_eq!(dec.next_message().unwrap(), Some(largest));
    }

    #[test]
    fn repair_rows_must_hold_whole_ascending_buckets_of_one_db() {
        let row = |db: u8, key: &'static [u8]| SnapshotRow {
            db,
            key: Bytes::from_static(key),
            image: Bytes::from_static(b"\x00"),
        };
        let repair = |buckets: Vec<u16>, rows: Vec<SnapshotRow>| Message::RepairRows {
            vv: VersionVector::new(),
            db: 2,
            buckets,
            rows,
            reply: false,
        };
        let b = bucket_of(b"k");
        let other = (b + 1) % DIGEST_LEAVES as u16;
        assert!(repair(vec![b], vec![row(2, b"k")]).check().is_ok());
        // An empty bucket is a valid repair: "I hold nothing there".
        assert!(repair(vec![other], vec![]).check().is_ok());
        let bad = [
            repair(vec![], vec![]),
            repair(vec![other], vec![row(2, b"k")]),
            repair(vec![b], vec![row(3, b"k")]),
            repair(vec![b, b], vec![]),
            repair(vec![DIGEST_LEAVES as u16], vec![]),
        ];
        for m in bad {
            assert!(matches!(m.check(), Err(WireError::Limit(_))), "{m:?}");
        }
    }

    proptest! {
        #[test]
        fn decoder_never_panics_on_random_bytes(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
        ) {
            let mut dec = FrameDecoder::with_limit(1 << 16);
            'outer: for c in chunks {
                dec.push(&c);
                loop {
                    match dec.next_message() {
                        Ok(Some(m)) => prop_assert!(m.check().is_ok()),
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
        }

        #[test]
        fn payload_decoder_never_panics_on_random_bytes(
            tag in 0u8..16,
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut payload = vec![WIRE_VERSION, tag];
            payload.extend_from_slice(&body);
            if let Ok(m) = decode_payload(&payload) {
                prop_assert!(m.check().is_ok());
            }
        }

        #[test]
        fn mutated_frames_never_panic(idx in 0usize..15, pos in any::<usize>(), byte in any::<u8>()) {
            let msgs = samples();
            let mut f = encode_frame(&msgs[idx % msgs.len()]).unwrap();
            let p = pos % f.len();
            f[p] = byte;
            let mut dec = FrameDecoder::with_limit(1 << 16);
            dec.push(&f);
            let _ = dec.next_message();
        }

        #[test]
        fn batches_roundtrip(ops in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 1..50)) {
            let msg = Message::OpBatch { ops: ops.into_iter().map(Bytes::from).collect() };
            let f = encode_frame(&msg).unwrap();
            let mut dec = FrameDecoder::new();
            dec.push(&f);
            prop_assert_eq!(dec.next_message().unwrap(), Some(msg));
        }
    }
}
