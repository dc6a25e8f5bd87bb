//! `PeerSession`: the sans-IO replication state machine for one peer connection.
//!
//! In the style of `quinn-proto`: the driver (QUIC or the simulator) feeds inputs
//! with `handle_*(now_ms, …)` and takes outputs with [`PeerSession::poll_transmit`]
//! (framed bytes to write, in order, on one reliable ordered stream),
//! [`PeerSession::poll_timeout`] (when to call `handle_timeout`) and
//! [`PeerSession::poll_event`]. Time is an argument; nothing here reads a clock,
//! spawns, touches a socket or draws randomness.
//!
//! Each direction is independent. *Sending*: after the handshake, stream the ops
//! the peer lacks from the engine's backlog, in apply order (a causal order),
//! ours and forwarded ones alike; what the peer lacks is estimated as
//! `Hello.vv ⊔ acks ⊔ what we sent`, so nothing is sent twice on one connection;
//! a peer behind the backlog gets a snapshot instead. *Receiving*: apply batches
//! through `Engine::apply_remote`, merge snapshots, and acknowledge with the
//! engine's **durable** version vector only.
//!
//! Flow control: a batch goes out while fewer than `inflight_batches_max`
//! batches and fewer than `inflight_bytes_max` frame bytes are unacknowledged,
//! so the window follows the bytes on the wire, not how the stream happened to
//! be cut into batches (many small batches of a paced load never fill it).
//!
//! Invariants (checked by [`PeerSession::invariants_hold`] after every public
//! mutator): at most `inflight_batches_max` unacknowledged batches, and all
//! but the newest of them within `inflight_bytes_max` bytes; every
//! in-flight mark is covered by the peer estimate; a snapshot being received
//! stays within its announced row count and `snapshot_bytes_max`; queues are
//! bounded; a session that is not connected holds no connection state.
//!
//! Driver contract: call `poll_transmit` until it returns `None` after every
//! input *and* after every engine change (local writes, `engine.sync()`), call
//! `handle_timeout` once `poll_timeout` is reached, and close the connection
//! (after writing what `poll_transmit` still returns) on `Refused` or `Closed`.
//! Call `poll_transmit` only while the transport can take more bytes: that is
//! the backpressure for snapshots.

use crate::rate_limit::TokenBucket;
use crate::wire::{
    encode_frame, FrameDecoder, Hello, Message, RefuseReason, SnapshotRow, WireError,
    BATCH_BYTES_MAX, BATCH_OPS_MAX, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN, REPAIR_BYTES_MAX,
    REPAIR_ROWS_MAX, SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_CHUNK_ROWS_MAX, SNAPSHOT_ROW_BYTES_MAX,
};
use bytes::Bytes;
use chorus_engine::anti_entropy::LeafSummary;
use chorus_engine::hlc::Hlc;
use chorus_engine::id::{SiteId, VersionVector};
use chorus_engine::keyspace::image::RowImage;
use chorus_engine::keyspace::DBS;
use chorus_engine::log::decode_op;
use chorus_engine::{BucketRows, Engine, EngineError, Snapshot};
use std::collections::VecDeque;
use thiserror::Error;

/// Upper bound for `SessionConfig::inflight_batches_max`.
pub const INFLIGHT_BATCHES_MAX: usize = 4096;
/// Upper bound for `SessionConfig::inflight_bytes_max`.
pub const INFLIGHT_BYTES_MAX: usize = 256 << 20;
/// Events kept until the driver polls them; older ones are dropped (and counted).
pub const EVENTS_QUEUED_MAX: usize = 1024;
/// Default bound on the bytes of one snapshot being received.
pub const SNAPSHOT_BYTES_MAX_DEFAULT: u64 = 4 << 30;
/// Bytes of bookkeeping counted per received snapshot row on top of its key and
/// image, so that many tiny rows are bounded too.
pub const SNAPSHOT_ROW_ACCOUNTING_BYTES: u64 = 64;
/// Default `SessionConfig::anti_entropy_interval_ms`.
pub const ANTI_ENTROPY_INTERVAL_MS_DEFAULT: u64 = 60_000;
/// How soon an anti-entropy round is tried again when the link was busy or
/// the two vectors differed (capped by the interval itself).
pub const ANTI_ENTROPY_RETRY_MS: u64 = 1_000;
/// Every database, one bit each (digest queries).
const ALL_DBS: u16 = if DBS >= 16 {
    u16::MAX
} else {
    (1u16 << DBS) - 1
};
const _: () = assert!(DBS <= 16, "digest query masks hold one bit per database");

/// Per-peer settings. `SessionConfig::new(cluster_id)` gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub cluster_id: u64,
    /// When set, a peer with another site id is refused.
    pub peer_site_id: Option<SiteId>,
    /// Ops per batch, `1..=BATCH_OPS_MAX`.
    pub batch_ops_max: usize,
    /// Op bytes per batch of two or more ops, `1..=BATCH_BYTES_MAX`.
    pub batch_bytes_max: usize,
    /// Batches sent and not yet acknowledged (applied) by the peer.
    pub inflight_batches_max: usize,
    /// Frame bytes of batches sent and not yet acknowledged (applied) by the
    /// peer, `1..=INFLIGHT_BYTES_MAX`; one batch may cross it.
    pub inflight_bytes_max: usize,
    /// Least time between two acks that only report applied ops; an ack whose
    /// durable vector moved goes out at once.
    pub ack_interval_ms: u64,
    /// Send a heartbeat after this long without sending anything.
    pub heartbeat_interval_ms: u64,
    /// The connection is dead after this long without receiving anything.
    pub idle_timeout_ms: u64,
    /// Data bytes per second to this peer; 0 = unlimited.
    pub rate_limit_bytes_per_s: u64,
    /// Row bytes per snapshot chunk, `1..=SNAPSHOT_CHUNK_BYTES_MAX`.
    pub snapshot_chunk_bytes_max: usize,
    /// Bytes of one incoming snapshot held until it is merged; more aborts it.
    pub snapshot_bytes_max: u64,
    /// Report `Lagging` when the peer's durable ack is this many ops behind.
    pub lag_ops_alert: u64,
    /// Compare digests with the peer this often and repair differences
    /// (anti-entropy); 0 = never.
    pub anti_entropy_interval_ms: u64,
    /// CANARY (simulator only): ack the applied vector instead of the durable
    /// one, which breaks "no acknowledged write is lost".
    pub canary_ack_before_durable: bool,
}

impl SessionConfig {
    pub fn new(cluster_id: u64) -> SessionConfig {
        SessionConfig {
            cluster_id,
            peer_site_id: None,
            batch_ops_max: 1024,
            batch_bytes_max: 1 << 20,
            // Bytes bind first: 8 MiB is ~200,000 small ops, far more than
            // an ack interval of any steady stream, and within QUIC's 16 MiB
            // stream window; the batch count only bounds the marks kept.
            inflight_batches_max: 1024,
            inflight_bytes_max: 8 << 20,
            ack_interval_ms: 5,
            heartbeat_interval_ms: 1000,
            idle_timeout_ms: 10_000,
            rate_limit_bytes_per_s: 0,
            snapshot_chunk_bytes_max: 1 << 20,
            snapshot_bytes_max: SNAPSHOT_BYTES_MAX_DEFAULT,
            lag_ops_alert: 100_000,
            anti_entropy_interval_ms: ANTI_ENTROPY_INTERVAL_MS_DEFAULT,
            canary_ack_before_durable: false,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what| Err(ConfigError(what));
        if !(1..=BATCH_OPS_MAX).contains(&self.batch_ops_max) {
            return bad("batch_ops_max must be in 1..=BATCH_OPS_MAX");
        }
        if !(1..=BATCH_BYTES_MAX).contains(&self.batch_bytes_max) {
            return bad("batch_bytes_max must be in 1..=BATCH_BYTES_MAX");
        }
        if !(1..=INFLIGHT_BATCHES_MAX).contains(&self.inflight_batches_max) {
            return bad("inflight_batches_max must be in 1..=INFLIGHT_BATCHES_MAX");
        }
        if !(1..=INFLIGHT_BYTES_MAX).contains(&self.inflight_bytes_max) {
            return bad("inflight_bytes_max must be in 1..=INFLIGHT_BYTES_MAX");
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.idle_timeout_ms {
            return bad("heartbeat_interval_ms must be positive and below idle_timeout_ms");
        }
        if !(1..=SNAPSHOT_CHUNK_BYTES_MAX).contains(&self.snapshot_chunk_bytes_max) {
            return bad("snapshot_chunk_bytes_max must be in 1..=SNAPSHOT_CHUNK_BYTES_MAX");
        }
        if self.snapshot_bytes_max == 0 {
            return bad("snapshot_bytes_max must be positive");
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid session config: {0}")]
pub struct ConfigError(pub &'static str);

/// What operators see (`INFO replication`, `PEER LIST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// Never connected yet.
    Connecting,
    /// Connected, the peer's `Hello` not accepted yet.
    Handshake,
    /// A snapshot is being sent or received.
    FullSync,
    Streaming,
    /// Connected, sending no data by operator request.
    Paused,
    /// Disconnected, refused, timed out or closed on an error.
    Down,
}

impl PeerState {
    pub fn name(self) -> &'static str {
        match self {
            PeerState::Connecting => "connecting",
            PeerState::Handshake => "handshake",
            PeerState::FullSync => "full_sync",
            PeerState::Streaming => "streaming",
            PeerState::Paused => "paused",
            PeerState::Down => "down",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncDirection {
    /// We send our snapshot to the peer.
    Sending,
    /// We receive the peer's snapshot.
    Receiving,
}

/// Why a session closed on its own.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum SessionError {
    #[error("bad frame from peer: {0}")]
    Wire(#[from] WireError),
    #[error("unexpected {message} while {state}")]
    UnexpectedMessage {
        message: &'static str,
        state: &'static str,
    },
    #[error("bad op from peer: {0}")]
    Op(String),
    #[error("bad snapshot row from peer: {0}")]
    SnapshotRow(String),
    #[error("incoming snapshot exceeds {max} bytes")]
    SnapshotTooLarge { max: u64 },
    #[error("snapshot announced {announced} rows but sent {got}")]
    SnapshotRowCount { announced: u64, got: u64 },
    #[error("row of {bytes} bytes in db {db} is too large for a snapshot")]
    SnapshotRowTooLarge { db: u8, bytes: usize },
    #[error("nothing received for {silent_ms} ms")]
    IdleTimeout { silent_ms: u64 },
    #[error("local engine error: {0}")]
    Engine(String),
    /// Two different ops under one OpId: a site's disk went back (restored,
    /// rolled back or cloned) and it issued OpIds again. Never merged.
    #[error("OpIds issued twice between site {ours} and site {peer}: {detail}")]
    OpIdConflict {
        ours: SiteId,
        peer: SiteId,
        detail: String,
    },
}

/// Something the driver or an operator should know.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionEvent {
    /// The peer's `Hello` was accepted.
    Connected {
        peer_site: SiteId,
    },
    /// The handshake failed; `by_peer`: the peer refused us (else we refused it).
    /// The session is down: write what `poll_transmit` returns, then close.
    Refused {
        reason: RefuseReason,
        by_peer: bool,
    },
    /// The session closed on an error or timeout; close the connection.
    Closed {
        error: SessionError,
    },
    FullSyncStarted {
        direction: SyncDirection,
        rows_total: u64,
    },
    FullSyncFinished {
        direction: SyncDirection,
        rows: u64,
    },
    /// The peer's durable ack is more than `lag_ops_alert` ops behind us.
    Lagging {
        ops_lag: u64,
    },
    /// Back under half the alert threshold after `Lagging`.
    CaughtUp,
    /// The peer's handshake shows fewer ops than it had durably acknowledged:
    /// its disk went back (restored from an older copy). What it lost is
    /// streamed to it again, or sent by full sync.
    PeerWentBack {
        peer_site: SiteId,
        lost_ops: u64,
    },
    /// Same version vector, same digest buckets of `db`.
    DigestMatched {
        db: u8,
    },
    /// Same version vector, different buckets of `db`: divergence (a bug).
    /// Anti-entropy repairs the buckets next.
    DigestMismatch {
        db: u8,
        buckets: Vec<u16>,
    },
    /// Anti-entropy changed `rows` rows of ours in `buckets` of `db`, joining
    /// the peer's rows at the same vector. Never happens on a correct system.
    Repaired {
        db: u8,
        buckets: Vec<u16>,
        rows: u64,
    },
    /// These buckets differ but are too large for one `RepairRows`
    /// (`REPAIR_BYTES_MAX`): anti-entropy cannot repair them.
    RepairTooLarge {
        db: u8,
        buckets: Vec<u16>,
    },
}

/// Counters for operators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub connects: u64,
    /// Sessions stopped because two different ops shared an OpId.
    pub opid_conflicts: u64,
    /// Handshakes in which the peer held less than it had acknowledged.
    pub peer_regressions: u64,
    pub ops_sent: u64,
    pub batches_sent: u64,
    pub ops_received: u64,
    pub ops_applied: u64,
    pub ops_duplicate: u64,
    pub ops_buffered: u64,
    pub ops_dropped: u64,
    pub batches_received: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub acks_sent: u64,
    pub acks_received: u64,
    /// When the last ack from the peer arrived (`now_ms` of the driver).
    pub last_ack_ms: Option<u64>,
    pub snapshots_sent: u64,
    pub snapshots_received: u64,
    pub rewinds_sent: u64,
    pub rewinds_received: u64,
    /// Times in-flight batches went unacknowledged for `ACK_WAIT_MS` and were resent.
    pub ack_timeouts: u64,
    /// Latest HLC the peer reported (heartbeat, snapshot) and when it arrived:
    /// the time lag is roughly `wall_now - peer_hlc.wall_ms()`.
    pub peer_hlc: Option<Hlc>,
    pub peer_hlc_at_ms: Option<u64>,
    /// Digests answered without buckets or at another vector (not compared).
    pub digests_incomparable: u64,
    /// Anti-entropy rounds started (digest queries sent for every database).
    pub anti_entropy_rounds: u64,
    /// Digests of one database compared at equal vectors.
    pub anti_entropy_checks: u64,
    /// Buckets found different by those comparisons.
    pub anti_entropy_mismatches: u64,
    /// Repairs that changed our state (each a `Repaired` event).
    pub anti_entropy_repairs: u64,
    /// Rows of ours those repairs changed.
    pub anti_entropy_rows_repaired: u64,
    /// Repair rows not merged because the vectors had moved apart.
    pub anti_entropy_deferred: u64,
    /// Leaves left out of comparisons because ops beyond the cut changed
    /// them (compared in a later round).
    pub anti_entropy_unsettled: u64,
    pub events_dropped: u64,
}

/// The session's timers, one slot each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Nothing received for `idle_timeout_ms`: the connection is dead.
    Idle = 0,
    /// Nothing sent for `heartbeat_interval_ms`: send a heartbeat.
    Heartbeat = 1,
    /// An ack was held back by `ack_interval_ms`.
    Ack = 2,
    /// Data was held back by the rate limit.
    RateLimit = 3,
    /// Batches are in flight and no ack has made progress for
    /// `ACK_WAIT_MS`: resend from what the peer confirmed.
    AckWait = 4,
    /// Time for an anti-entropy round.
    AntiEntropy = 5,
}

const TIMERS: usize = 6;

/// How long in-flight batches may go unacknowledged on a live connection
/// before the session resends from what the peer confirmed. A reliable
/// stream never loses a batch, but a peer that dropped one (or a stream that
/// lost it across a reset) would otherwise stall the link forever; resent ops
/// are dropped by the peer's version vector.
pub const ACK_WAIT_MS: u64 = 5_000;

#[derive(Clone, Debug, Default)]
struct Timers {
    at: [Option<u64>; TIMERS],
}

impl Timers {
    fn set(&mut self, t: Timer, at_ms: u64) {
        self.at[t as usize] = Some(at_ms);
    }
    fn stop(&mut self, t: Timer) {
        self.at[t as usize] = None;
    }
    fn expired(&self, t: Timer, now_ms: u64) -> bool {
        self.at[t as usize].is_some_and(|at| at <= now_ms)
    }
    fn next(&self) -> Option<u64> {
        self.at.iter().flatten().min().copied()
    }
    fn clear(&mut self) {
        self.at = [None; TIMERS];
    }
    fn is_clear(&self) -> bool {
        self.at.iter().all(Option::is_none)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Connecting,
    Handshake,
    Up,
    Down,
}

/// A snapshot being sent: rows are dropped as they go out.
#[derive(Debug)]
struct OutgoingSnapshot {
    vv: VersionVector,
    hlc: Hlc,
    rows_total: u64,
    rows: VecDeque<(u8, Bytes, RowImage)>,
    /// A row encoded for the last chunk that did not fit it.
    pending: Option<SnapshotRow>,
    begun: bool,
}

#[derive(Debug)]
enum Outbound {
    /// Before the handshake.
    Idle,
    /// Streaming from the backlog; `None`: seek the cursor on the next read.
    Streaming {
        cursor: Option<u64>,
    },
    FullSync(Box<OutgoingSnapshot>),
}

/// A snapshot being received.
#[derive(Debug)]
struct IncomingSnapshot {
    vv: VersionVector,
    hlc: Hlc,
    rows_total: u64,
    rows: Vec<(u8, Bytes, RowImage)>,
    bytes: u64,
}

/// Replication with one peer over one connection at a time.
#[derive(Debug)]
pub struct PeerSession {
    config: SessionConfig,
    link: Link,
    paused: bool,
    peer_site: Option<SiteId>,
    rx: FrameDecoder,
    timers: Timers,
    last_recv_ms: u64,
    heartbeat_due: bool,
    rate: TokenBucket,

    // Sending.
    outbound: Outbound,
    /// What the peer holds as far as we know: its Hello, its acks, what we sent.
    peer_known: VersionVector,
    /// The peer's latest durable ack (kept across reconnects).
    peer_acked: VersionVector,
    /// Everything the peer confirmed holding (durable or applied) in acks.
    peer_confirmed: VersionVector,
    /// `peer_known` after each unacknowledged batch and the batch's frame
    /// bytes, oldest first.
    inflight: VecDeque<(VersionVector, usize)>,
    /// Sum of the frame bytes in `inflight`.
    inflight_bytes: usize,
    peer_wants_snapshot: bool,

    // Receiving.
    /// A decoded message held back by `handle_received`'s budget.
    received_held: Option<Box<Message>>,
    incoming: Option<Box<IncomingSnapshot>>,
    /// Last ack sent: (durable, applied).
    ack_sent: Option<(VersionVector, VersionVector)>,
    /// A batch arrived since the last ack: ack even if nothing changed (all
    /// duplicates), so the sender retires it instead of waiting `ACK_WAIT_MS`.
    ack_wanted: bool,
    last_ack_sent_ms: Option<u64>,

    // Control messages waiting to go out (flags: each is bounded to one).
    hello_pending: bool,
    refuse_pending: Option<RefuseReason>,
    rewind_pending: bool,
    snapshot_request_pending: bool,
    digest_request_pending: Option<u8>,

    // Anti-entropy (see `docs/replication.md`).
    /// The timer fired: start a round at the next `poll_transmit`.
    anti_entropy_due: bool,
    /// Databases to send a `DigestQuery` for (one bit each), at `round_cut`.
    digest_queries_out: u16,
    /// The cut of the round in progress: what both sides hold.
    round_cut: VersionVector,
    /// The peer's databases that hold rows, from its last digest.
    peer_dbs: u16,
    /// Our answers to the peer's digest queries (at most one per database).
    digest_answers: VecDeque<Box<Message>>,
    /// Leaves found different, per database (at most one entry per db), with
    /// the cut they were compared at, to send as `RepairRows`.
    repairs_out: VecDeque<(u8, Vec<u16>, VersionVector)>,
    /// Our rows for a peer's `RepairRows` that asked for them, taken before
    /// theirs were merged (at most one).
    repair_reply: Option<Box<Message>>,

    events: VecDeque<SessionEvent>,
    lagging: bool,
    stats: SessionStats,
}

impl PeerSession {
    pub fn new(config: SessionConfig) -> Result<PeerSession, ConfigError> {
        config.validate()?;
        let session = PeerSession {
            rate: TokenBucket::new(config.rate_limit_bytes_per_s, 0),
            config,
            link: Link::Connecting,
            paused: false,
            peer_site: None,
            rx: FrameDecoder::new(),
            timers: Timers::default(),
            last_recv_ms: 0,
            heartbeat_due: false,
            outbound: Outbound::Idle,
            peer_known: VersionVector::new(),
            peer_acked: VersionVector::new(),
            peer_confirmed: VersionVector::new(),
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            peer_wants_snapshot: false,
            received_held: None,
            incoming: None,
            ack_sent: None,
            ack_wanted: false,
            last_ack_sent_ms: None,
            hello_pending: false,
            refuse_pending: None,
            rewind_pending: false,
            snapshot_request_pending: false,
            digest_request_pending: None,
            anti_entropy_due: false,
            digest_queries_out: 0,
            round_cut: VersionVector::new(),
            peer_dbs: ALL_DBS,
            digest_answers: VecDeque::new(),
            repairs_out: VecDeque::new(),
            repair_reply: None,
            events: VecDeque::new(),
            lagging: false,
            stats: SessionStats::default(),
        };
        debug_assert!(session.invariants_hold());
        Ok(session)
    }

    // ---- inputs ------------------------------------------------------------

    /// A new connection to the peer is up: start the handshake.
    pub fn handle_connected(&mut self, now_ms: u64) {
        self.reset_connection();
        self.link = Link::Handshake;
        self.hello_pending = true;
        self.last_recv_ms = now_ms;
        self.timers.set(
            Timer::Idle,
            now_ms.saturating_add(self.config.idle_timeout_ms),
        );
        self.stats.connects += 1;
        debug_assert!(self.invariants_hold());
    }

    /// The connection is gone (closed by either side or by the driver).
    pub fn handle_disconnected(&mut self, _now_ms: u64) {
        self.reset_connection();
        self.link = Link::Down;
        debug_assert!(self.invariants_hold());
    }

    /// Bytes read from the connection, in order: handles every whole message.
    pub fn handle_bytes(&mut self, now_ms: u64, bytes: &[u8], engine: &mut Engine) {
        self.push_bytes(now_ms, bytes);
        self.handle_received(now_ms, engine, usize::MAX);
    }

    /// Bytes read from the connection, in order, buffered without handling
    /// them: follow with [`PeerSession::handle_received`] until it returns
    /// `false`. Lets a driver apply a large read in slices and release the
    /// engine between them.
    pub fn push_bytes(&mut self, now_ms: u64, bytes: &[u8]) {
        if !self.is_connected() {
            return;
        }
        self.stats.bytes_in += bytes.len() as u64;
        self.note_received(now_ms);
        self.rx.push(bytes);
        debug_assert!(self.invariants_hold());
    }

    /// Handles buffered messages until they are used up or about `work_max`
    /// ops and rows were handled: a message is held back for the next call
    /// when it would cross `work_max` (a single larger message is handled
    /// alone). Returns `true` when it stopped for the budget, i.e. call again.
    pub fn handle_received(&mut self, now_ms: u64, engine: &mut Engine, work_max: usize) -> bool {
        let mut work = 0usize;
        let mut more = false;
        while self.is_connected() {
            let msg = match self.received_held.take() {
                Some(msg) => *msg,
                None => match self.rx.next_message() {
                    Ok(Some(msg)) => msg,
                    Ok(None) => break,
                    Err(e) => {
                        self.close(SessionError::Wire(e));
                        break;
                    }
                },
            };
            let w = message_work(&msg);
            if work > 0 && work.saturating_add(w) > work_max {
                self.received_held = Some(Box::new(msg));
                more = true;
                break;
            }
            work = work.saturating_add(w);
            self.on_message(now_ms, msg, engine);
        }
        debug_assert!(self.invariants_hold());
        more
    }

    /// One decoded message (for drivers that frame messages themselves). It
    /// must satisfy [`Message::check`]; one that does not closes the session.
    pub fn handle_message(&mut self, now_ms: u64, msg: Message, engine: &mut Engine) {
        if !self.is_connected() {
            return;
        }
        self.note_received(now_ms);
        match msg.check() {
            Ok(()) => self.on_message(now_ms, msg, engine),
            Err(e) => self.close(SessionError::Wire(e)),
        }
        debug_assert!(self.invariants_hold());
    }

    /// Call once `now_ms` reaches `poll_timeout()`; an early call does nothing.
    pub fn handle_timeout(&mut self, now_ms: u64, _engine: &mut Engine) {
        if !self.is_connected() {
            return;
        }
        if self.timers.expired(Timer::Idle, now_ms) {
            self.close(SessionError::IdleTimeout {
                silent_ms: now_ms.saturating_sub(self.last_recv_ms),
            });
            debug_assert!(self.invariants_hold());
            return;
        }
        if self.timers.expired(Timer::Heartbeat, now_ms) {
            self.timers.stop(Timer::Heartbeat);
            self.heartbeat_due = true;
        }
        if self.timers.expired(Timer::AckWait, now_ms) {
            self.timers.stop(Timer::AckWait);
            if !self.inflight.is_empty() {
                self.stats.ack_timeouts += 1;
                self.peer_known = self.peer_confirmed.clone();
                self.clear_inflight();
                if let Outbound::Streaming { cursor } = &mut self.outbound {
                    *cursor = None;
                }
            }
        }
        if self.timers.expired(Timer::AntiEntropy, now_ms) {
            self.timers.stop(Timer::AntiEntropy);
            self.anti_entropy_due = true;
        }
        // One-shot wake-ups: `poll_transmit` re-arms them if still held back.
        for t in [Timer::Ack, Timer::RateLimit] {
            if self.timers.expired(t, now_ms) {
                self.timers.stop(t);
            }
        }
        debug_assert!(self.invariants_hold());
    }

    // ---- outputs -------------------------------------------------------------

    /// The next frame to write to the connection, if any. Call until `None`.
    pub fn poll_transmit(&mut self, now_ms: u64, engine: &Engine) -> Option<Vec<u8>> {
        let frame = self.next_frame(now_ms, engine);
        if !self.inflight.is_empty() && self.timers.at[Timer::AckWait as usize].is_none() {
            self.timers
                .set(Timer::AckWait, now_ms.saturating_add(ACK_WAIT_MS));
        }
        if let Some(f) = &frame {
            self.stats.bytes_out += f.len() as u64;
            self.heartbeat_due = false;
            if self.link == Link::Up {
                self.timers.set(
                    Timer::Heartbeat,
                    now_ms.saturating_add(self.config.heartbeat_interval_ms),
                );
            }
        }
        debug_assert!(self.invariants_hold());
        frame
    }

    /// When to call `handle_timeout` next (`now_ms` units), if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.is_connected() {
            self.timers.next()
        } else {
            None
        }
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        let e = self.events.pop_front();
        debug_assert!(self.invariants_hold());
        e
    }

    // ---- operator controls -------------------------------------------------

    /// Stops sending data (ops, snapshots) to the peer; the connection stays up
    /// (heartbeats, acks) and data from the peer is still applied.
    pub fn pause(&mut self) {
        self.paused = true;
        debug_assert!(self.invariants_hold());
    }

    pub fn resume(&mut self) {
        self.paused = false;
        debug_assert!(self.invariants_hold());
    }

    /// Asks the peer to send us a full snapshot (`PEER RESYNC`). Takes effect on
    /// the current connection, or on the next one when not connected.
    pub fn request_full_sync(&mut self) {
        self.snapshot_request_pending = true;
        debug_assert!(self.invariants_hold());
    }

    /// Asks the peer for the digest buckets of `db`; the answer is compared
    /// with ours and reported as `DigestMatched` / `DigestMismatch`.
    pub fn request_digest(&mut self, db: u8) {
        if (db as usize) < DBS {
            self.digest_request_pending = Some(db);
        }
        debug_assert!(self.invariants_hold());
    }

    /// Changes the anti-entropy interval (0 = off); the next round is due one
    /// interval from `now_ms`.
    pub fn set_anti_entropy_interval(&mut self, interval_ms: u64, now_ms: u64) {
        self.config.anti_entropy_interval_ms = interval_ms;
        self.arm_anti_entropy(now_ms, false);
        debug_assert!(self.invariants_hold());
    }

    /// Starts an anti-entropy round at the next `poll_transmit` (if the link is
    /// quiet enough to compare), instead of waiting for the timer.
    pub fn request_anti_entropy(&mut self) {
        if self.link == Link::Up {
            self.anti_entropy_due = true;
        }
        debug_assert!(self.invariants_hold());
    }

    /// Changes the rate limit (bytes/s, 0 = unlimited).
    pub fn set_rate_limit(&mut self, rate_bytes_per_s: u64, now_ms: u64) {
        self.config.rate_limit_bytes_per_s = rate_bytes_per_s;
        self.rate.set_rate(rate_bytes_per_s, now_ms);
        debug_assert!(self.invariants_hold());
    }

    // ---- observers -------------------------------------------------------------

    pub fn state(&self) -> PeerState {
        match self.link {
            Link::Connecting => PeerState::Connecting,
            Link::Handshake => PeerState::Handshake,
            Link::Down => PeerState::Down,
            Link::Up if self.paused => PeerState::Paused,
            Link::Up
                if self.incoming.is_some() || matches!(self.outbound, Outbound::FullSync(_)) =>
            {
                PeerState::FullSync
            }
            Link::Up => PeerState::Streaming,
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }
    pub fn is_paused(&self) -> bool {
        self.paused
    }
    /// The peer's site id, once a handshake succeeded.
    pub fn peer_site(&self) -> Option<SiteId> {
        self.peer_site
    }
    /// The peer's latest durable ack: what `WAIT` and backlog trimming may rely on.
    pub fn peer_acked_vv(&self) -> &VersionVector {
        &self.peer_acked
    }
    /// What we believe the peer holds (acks plus what we sent it).
    pub fn peer_known_vv(&self) -> &VersionVector {
        &self.peer_known
    }
    /// Ops we hold that the peer has not durably acknowledged.
    pub fn ops_lag(&self, engine: &Engine) -> u64 {
        engine.vv().ops_ahead_of(&self.peer_acked)
    }
    pub fn inflight_batches(&self) -> usize {
        self.inflight.len()
    }
    /// Frame bytes of the batches sent and not yet acknowledged.
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes
    }

    pub fn invariants_hold(&self) -> bool {
        let connection_clean = matches!(self.outbound, Outbound::Idle)
            && self.incoming.is_none()
            && self.received_held.is_none()
            && self.inflight.is_empty()
            && self.timers.is_clear();
        let link_ok = match self.link {
            Link::Connecting | Link::Down => connection_clean,
            Link::Handshake => matches!(self.outbound, Outbound::Idle) && self.incoming.is_none(),
            Link::Up => !matches!(self.outbound, Outbound::Idle),
        };
        let incoming_ok = self.incoming.as_ref().map_or(true, |i| {
            i.rows.len() as u64 <= i.rows_total
                && i.bytes <= self.config.snapshot_bytes_max
                && i.vv.is_canonical()
        });
        self.config.validate().is_ok()
            && link_ok
            && incoming_ok
            && self.inflight.len() <= self.config.inflight_batches_max
            && self.inflight.iter().map(|(_, b)| b).sum::<usize>() == self.inflight_bytes
            && self.inflight.back().map_or(true, |(_, newest)| {
                self.inflight_bytes - newest < self.config.inflight_bytes_max
            })
            && self
                .inflight
                .iter()
                .all(|(m, _)| self.peer_known.dominates(m))
            && self.peer_known.is_canonical()
            && self.peer_acked.is_canonical()
            && self.events.len() <= EVENTS_QUEUED_MAX
            && self.rate.invariants_hold()
            && self.repairs_out.len() <= DBS
            && self.digest_answers.len() <= DBS + 1
            && self
                .repairs_out
                .iter()
                .all(|(db, b, _)| (*db as usize) < DBS && !b.is_empty())
            && (self.link == Link::Up
                || (self.repairs_out.is_empty()
                    && self.repair_reply.is_none()
                    && self.digest_answers.is_empty()
                    && self.digest_queries_out == 0
                    && !self.anti_entropy_due))
    }

    // ---- internals: connection -------------------------------------------------

    fn is_connected(&self) -> bool {
        matches!(self.link, Link::Handshake | Link::Up)
    }

    fn note_received(&mut self, now_ms: u64) {
        self.last_recv_ms = now_ms;
        self.timers.set(
            Timer::Idle,
            now_ms.saturating_add(self.config.idle_timeout_ms),
        );
    }

    /// Forgets everything that belongs to one connection. Kept: config, pause,
    /// the peer's durable ack, a pending resync request, stats.
    fn reset_connection(&mut self) {
        self.rx.clear();
        self.timers.clear();
        self.heartbeat_due = false;
        self.outbound = Outbound::Idle;
        self.peer_known = VersionVector::new();
        self.clear_inflight();
        self.peer_wants_snapshot = false;
        self.received_held = None;
        self.incoming = None;
        self.ack_sent = None;
        self.ack_wanted = false;
        self.last_ack_sent_ms = None;
        self.hello_pending = false;
        self.refuse_pending = None;
        self.rewind_pending = false;
        self.digest_request_pending = None;
        self.anti_entropy_due = false;
        self.digest_queries_out = 0;
        self.peer_dbs = ALL_DBS;
        self.digest_answers.clear();
        self.repairs_out.clear();
        self.repair_reply = None;
    }

    fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    fn push_event(&mut self, e: SessionEvent) {
        if self.events.len() >= EVENTS_QUEUED_MAX {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    /// Closes on an error: nothing more is sent or accepted on this connection.
    fn close(&mut self, error: SessionError) {
        self.reset_connection();
        self.link = Link::Down;
        self.push_event(SessionEvent::Closed { error });
    }

    /// Refuses the peer's Hello: our refusal (and our Hello, if not yet out)
    /// are still written, then the connection is done.
    fn refuse(&mut self, reason: RefuseReason) {
        let hello_pending = self.hello_pending;
        self.reset_connection();
        self.link = Link::Down;
        self.hello_pending = hello_pending;
        self.refuse_pending = Some(reason.clone());
        self.push_event(SessionEvent::Refused {
            reason,
            by_peer: false,
        });
    }

    // ---- internals: receiving ------------------------------------------------

    fn on_message(&mut self, now_ms: u64, msg: Message, engine: &mut Engine) {
        if self.link == Link::Handshake {
            match msg {
                Message::Hello(h) => self.on_hello(now_ms, h, engine),
                Message::HelloRefused { reason } => self.on_refused(reason),
                other => self.close(SessionError::UnexpectedMessage {
                    message: other.name(),
                    state: "waiting for Hello",
                }),
            }
            return;
        }
        match msg {
            Message::Hello(_) => self.close(SessionError::UnexpectedMessage {
                message: "Hello",
                state: "connected",
            }),
            Message::HelloRefused { reason } => self.on_refused(reason),
            Message::OpBatch { ops } => self.on_batch(ops, engine),
            Message::Ack { vv, applied_vv } => self.on_ack(now_ms, vv, applied_vv),
            Message::Rewind { vv } => self.on_rewind(vv),
            Message::SnapshotRequest => self.peer_wants_snapshot = true,
            Message::SnapshotBegin {
                vv,
                hlc,
                rows_total,
            } => self.on_snapshot_begin(now_ms, vv, hlc, rows_total),
            Message::SnapshotChunk { rows } => self.on_snapshot_chunk(rows),
            Message::SnapshotEnd => self.on_snapshot_end(engine),
            Message::DigestRequest { db } => {
                let cut = engine.vv().meet(&self.peer_confirmed);
                self.answer_digest(cut, db, engine);
            }
            Message::Digest {
                vv,
                db,
                buckets,
                unsettled,
                comparable,
                dbs,
            } => {
                self.peer_dbs = dbs;
                let theirs = comparable.then_some(LeafSummary {
                    leaves: buckets,
                    unsettled,
                });
                self.on_digest(now_ms, vv, db, theirs, engine)
            }
            Message::DigestQuery { vv, db } => self.on_digest_query(now_ms, vv, db, engine),
            Message::RepairRows {
                vv,
                db,
                buckets,
                rows,
                reply,
            } => self.on_repair_rows(vv, db, buckets, rows, reply, engine),
            Message::Heartbeat { hlc } => {
                self.stats.peer_hlc = Some(hlc);
                self.stats.peer_hlc_at_ms = Some(now_ms);
            }
        }
    }

    fn on_hello(&mut self, now_ms: u64, h: Hello, engine: &mut Engine) {
        let refusal = if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&h.protocol_version) {
            Some(RefuseReason::ProtocolVersion {
                min: PROTOCOL_VERSION_MIN,
                max: PROTOCOL_VERSION,
                got: h.protocol_version,
            })
        } else if h.cluster_id != self.config.cluster_id {
            Some(RefuseReason::ClusterMismatch {
                ours: self.config.cluster_id,
                theirs: h.cluster_id,
            })
        } else if h.site_id == engine.site_id() {
            Some(RefuseReason::DuplicateSiteId { site_id: h.site_id })
        } else {
            match self.config.peer_site_id {
                Some(expected) if expected != h.site_id => Some(RefuseReason::UnexpectedSite {
                    expected,
                    got: h.site_id,
                }),
                _ => None,
            }
        };
        if let Some(reason) = refusal {
            self.refuse(reason);
            return;
        }
        // A site that lost its history (wiped disk) must not reissue OpIds the
        // peer already holds: the engine moves to a fresh incarnation.
        match engine.observe_peer_vv(&h.vv) {
            Ok(_) => {}
            Err(e @ EngineError::ReissuedOpIds { .. }) => {
                self.stats.opid_conflicts += 1;
                self.close(SessionError::OpIdConflict {
                    ours: engine.site_id(),
                    peer: h.site_id,
                    detail: e.to_string(),
                });
                return;
            }
            Err(e) => {
                self.close(SessionError::Engine(e.to_string()));
                return;
            }
        }
        // A peer whose durable state went back (its disk restored from an
        // older copy, or wiped) no longer holds what it acknowledged: forget
        // its acks, and stream it what it lacks (a full sync where the
        // backlog no longer has it).
        if !h.vv.dominates(&self.peer_acked) {
            self.stats.peer_regressions += 1;
            self.push_event(SessionEvent::PeerWentBack {
                peer_site: h.site_id,
                lost_ops: self.peer_acked.ops_ahead_of(&h.vv),
            });
            // What it holds durably now is unknown (its Hello shows what it
            // applied): nothing, until its next ack says.
            self.peer_acked = VersionVector::new();
        }
        self.link = Link::Up;
        self.peer_site = Some(h.site_id);
        self.peer_known = h.vv;
        self.peer_confirmed = self.peer_known.clone();
        self.outbound = Outbound::Streaming { cursor: None };
        self.timers.set(
            Timer::Heartbeat,
            now_ms.saturating_add(self.config.heartbeat_interval_ms),
        );
        // The lower site runs the rounds; the higher one only when those
        // stop coming (see `on_digest_query`).
        self.arm_anti_entropy(now_ms, h.site_id < engine.site_id());
        self.push_event(SessionEvent::Connected {
            peer_site: h.site_id,
        });
    }

    fn on_refused(&mut self, reason: RefuseReason) {
        self.reset_connection();
        self.link = Link::Down;
        self.push_event(SessionEvent::Refused {
            reason,
            by_peer: true,
        });
    }

    fn on_batch(&mut self, ops: Vec<Bytes>, engine: &mut Engine) {
        if self.incoming.is_some() {
            self.close(SessionError::UnexpectedMessage {
                message: "OpBatch",
                state: "receiving a snapshot",
            });
            return;
        }
        // Decode the whole batch before applying any of it: a bad op closes the
        // session with nothing of the batch applied.
        let mut decoded = Vec::with_capacity(ops.len());
        for bytes in &ops {
            match decode_op(bytes) {
                Ok(op) => decoded.push(op),
                Err(e) => {
                    self.close(SessionError::Op(e.to_string()));
                    return;
                }
            }
        }
        // The peer holds what it sends us, and everything before it: never echo
        // these back while its ack is on the way.
        for op in &decoded {
            self.peer_known.raise(op.id.origin, op.id.seq);
            self.peer_known.join(&op.deps);
        }
        let n = decoded.len() as u64;
        self.ack_wanted = true;
        // The ops are logged and kept for our peers as they came: no second
        // encoding.
        let outcome = engine.apply_remote_encoded(decoded.into_iter().zip(ops).collect());
        if let Some(conflict) = &outcome.conflict {
            self.stats.opid_conflicts += 1;
            let error = SessionError::OpIdConflict {
                ours: engine.site_id(),
                peer: self.peer_site.unwrap_or(0),
                detail: conflict.to_string(),
            };
            self.close(error);
            return;
        }
        self.stats.batches_received += 1;
        self.stats.ops_received += n;
        self.stats.ops_applied += outcome.applied as u64;
        self.stats.ops_duplicate += outcome.duplicates as u64;
        self.stats.ops_buffered += outcome.buffered as u64;
        if outcome.dropped > 0 {
            // The causal buffer overflowed: what was dropped must come again.
            self.stats.ops_dropped += outcome.dropped as u64;
            self.rewind_pending = true;
        }
    }

    fn on_ack(&mut self, now_ms: u64, vv: VersionVector, applied_vv: VersionVector) {
        self.stats.acks_received += 1;
        self.stats.last_ack_ms = Some(now_ms);
        let mut holds = applied_vv;
        holds.join(&vv);
        self.peer_known.join(&holds);
        self.peer_confirmed.join(&holds);
        let before = self.inflight.len();
        while self
            .inflight
            .front()
            .is_some_and(|(mark, _)| holds.dominates(mark))
        {
            if let Some((_, bytes)) = self.inflight.pop_front() {
                self.inflight_bytes -= bytes;
            }
        }
        if self.inflight.is_empty() {
            self.timers.stop(Timer::AckWait);
        } else if self.inflight.len() != before {
            self.timers
                .set(Timer::AckWait, now_ms.saturating_add(ACK_WAIT_MS));
        }
        self.peer_acked = vv;
    }

    fn on_rewind(&mut self, vv: VersionVector) {
        self.stats.rewinds_received += 1;
        self.peer_confirmed = vv.clone();
        self.peer_known = vv;
        self.clear_inflight();
        if let Outbound::Streaming { cursor } = &mut self.outbound {
            *cursor = None;
        }
    }

    fn on_snapshot_begin(&mut self, now_ms: u64, vv: VersionVector, hlc: Hlc, rows_total: u64) {
        if self.incoming.is_some() {
            self.close(SessionError::UnexpectedMessage {
                message: "SnapshotBegin",
                state: "receiving a snapshot",
            });
            return;
        }
        // The peer holds everything its snapshot covers: no need to send it back.
        self.peer_known.join(&vv);
        self.stats.peer_hlc = Some(hlc);
        self.stats.peer_hlc_at_ms = Some(now_ms);
        self.incoming = Some(Box::new(IncomingSnapshot {
            vv,
            hlc,
            rows_total,
            rows: Vec::new(),
            bytes: 0,
        }));
        self.push_event(SessionEvent::FullSyncStarted {
            direction: SyncDirection::Receiving,
            rows_total,
        });
    }

    fn on_snapshot_chunk(&mut self, rows: Vec<SnapshotRow>) {
        let max = self.config.snapshot_bytes_max;
        let Some(inc) = self.incoming.as_mut() else {
            self.close(SessionError::UnexpectedMessage {
                message: "SnapshotChunk",
                state: "not receiving a snapshot",
            });
            return;
        };
        let mut error = None;
        for row in rows {
            if inc.rows.len() as u64 >= inc.rows_total {
                error = Some(SessionError::SnapshotRowCount {
                    announced: inc.rows_total,
                    got: inc.rows.len() as u64 + 1,
                });
                break;
            }
            let bytes = inc.bytes + row.bytes() as u64 + SNAPSHOT_ROW_ACCOUNTING_BYTES;
            if bytes > max {
                error = Some(SessionError::SnapshotTooLarge { max });
                break;
            }
            match RowImage::decode(&row.image) {
                Ok(image) => {
                    inc.bytes = bytes;
                    inc.rows.push((row.db, row.key, image));
                }
                Err(e) => {
                    error = Some(SessionError::SnapshotRow(e.to_string()));
                    break;
                }
            }
        }
        if let Some(e) = error {
            self.close(e);
        }
    }

    fn on_snapshot_end(&mut self, engine: &mut Engine) {
        let Some(inc) = self.incoming.take() else {
            self.close(SessionError::UnexpectedMessage {
                message: "SnapshotEnd",
                state: "not receiving a snapshot",
            });
            return;
        };
        let got = inc.rows.len() as u64;
        if got != inc.rows_total {
            self.close(SessionError::SnapshotRowCount {
                announced: inc.rows_total,
                got,
            });
            return;
        }
        engine.merge_snapshot(Snapshot {
            vv: inc.vv,
            hlc: inc.hlc,
            rows: inc.rows,
        });
        self.stats.snapshots_received += 1;
        self.push_event(SessionEvent::FullSyncFinished {
            direction: SyncDirection::Receiving,
            rows: got,
        });
    }

    fn on_digest(
        &mut self,
        now_ms: u64,
        cut: VersionVector,
        db: u8,
        theirs: Option<LeafSummary>,
        engine: &mut Engine,
    ) {
        let Some(theirs) = theirs else {
            // The peer does not hold the cut yet, or is still hashing rows
            // changed since its last digest: try again soon.
            self.stats.digests_incomparable += 1;
            self.retry_anti_entropy(now_ms);
            return;
        };
        let ours = match engine.leaf_summary(db, &cut) {
            Ok(ours) => ours,
            Err(_) => {
                self.stats.digests_incomparable += 1;
                self.retry_anti_entropy(now_ms);
                return;
            }
        };
        self.stats.anti_entropy_checks += 1;
        let unsettled = ours.unsettled.len().max(theirs.unsettled.len());
        self.stats.anti_entropy_unsettled += unsettled as u64;
        // Leaves that ops beyond the cut changed are compared in the next
        // round (not sooner: under constant writes some always are).
        let differing = ours.differing(&theirs);
        if differing.is_empty() {
            self.push_event(SessionEvent::DigestMatched { db });
            return;
        }
        self.stats.anti_entropy_mismatches += differing.len() as u64;
        self.push_event(SessionEvent::DigestMismatch {
            db,
            buckets: differing.clone(),
        });
        // Repair: send our rows of those leaves, asking for theirs.
        self.repairs_out.retain(|(d, _, _)| *d != db);
        self.repairs_out.push_back((db, differing, cut));
    }

    fn on_digest_query(&mut self, now_ms: u64, cut: VersionVector, db: u8, engine: &mut Engine) {
        self.answer_digest(cut, db, engine);
        // The peer's round covers this pair (repairs go both ways): ours
        // waits until the peer's next one is overdue, so one side runs the
        // rounds while it can.
        self.arm_anti_entropy(now_ms, true);
    }

    /// Queues our digest of `db` at `cut` (not comparable when we do not
    /// hold the cut or are still hashing changed rows).
    fn answer_digest(&mut self, cut: VersionVector, db: u8, engine: &mut Engine) {
        let db = db % DBS as u8;
        let (summary, comparable) = match engine.leaf_summary(db, &cut) {
            Ok(s) => (s, true),
            Err(_) => (LeafSummary::default(), false),
        };
        // One answer per database: a newer query replaces an older answer.
        self.digest_answers
            .retain(|m| !matches!(&**m, Message::Digest { db: d, .. } if *d == db));
        if self.digest_answers.len() > DBS {
            self.digest_answers.pop_front();
        }
        self.digest_answers.push_back(Box::new(Message::Digest {
            vv: cut,
            db,
            buckets: summary.leaves,
            unsettled: summary.unsettled,
            comparable,
            dbs: nonempty_dbs(engine),
        }));
    }

    fn on_repair_rows(
        &mut self,
        cut: VersionVector,
        db: u8,
        leaves: Vec<u16>,
        rows: Vec<SnapshotRow>,
        reply: bool,
        engine: &mut Engine,
    ) {
        if !engine.vv().dominates(&cut) {
            // We do not hold every op of the cut (our state went back since
            // the round began): the next round compares again.
            self.stats.anti_entropy_deferred += 1;
            return;
        }
        let mut decoded = Vec::with_capacity(rows.len());
        for row in rows {
            match RowImage::decode(&row.image) {
                Ok(image) => decoded.push((row.key, image)),
                Err(e) => {
                    self.close(SessionError::SnapshotRow(e.to_string()));
                    return;
                }
            }
        }
        let outcome = match engine.merge_bucket_rows(db, &leaves, &cut, decoded) {
            Ok(o) => o,
            Err(e) => {
                self.close(SessionError::Engine(e.to_string()));
                return;
            }
        };
        self.stats.anti_entropy_deferred += outcome.unsettled.len() as u64;
        if outcome.changed > 0 {
            self.stats.anti_entropy_repairs += 1;
            self.stats.anti_entropy_rows_repaired += outcome.changed as u64;
            self.push_event(SessionEvent::Repaired {
                db,
                buckets: outcome.merged.clone(),
                rows: outcome.changed as u64,
            });
        }
        if reply && !outcome.merged.is_empty() {
            if self.repair_reply.is_none() {
                // Ours after the join: the peer joins them in and both sides
                // hold the union.
                let mine = engine.bucket_rows(
                    db,
                    &outcome.merged,
                    &cut,
                    REPAIR_BYTES_MAX,
                    REPAIR_ROWS_MAX,
                );
                if !mine.too_large.is_empty() {
                    self.push_event(SessionEvent::RepairTooLarge {
                        db,
                        buckets: mine.too_large.clone(),
                    });
                }
                if !mine.buckets.is_empty() {
                    self.repair_reply = Some(Box::new(repair_message(&cut, db, mine)));
                }
            } else {
                self.stats.anti_entropy_deferred += 1;
            }
        }
    }

    /// Arms the anti-entropy timer one interval from now (or stops it).
    /// `yielding`: a quarter interval later, so that the peer's round, which
    /// covers the pair, comes first (see `on_digest_query`).
    fn arm_anti_entropy(&mut self, now_ms: u64, yielding: bool) {
        let interval = self.config.anti_entropy_interval_ms;
        if self.link != Link::Up || interval == 0 {
            self.timers.stop(Timer::AntiEntropy);
            return;
        }
        let delay = if yielding {
            interval.saturating_add(interval / 4)
        } else {
            interval
        };
        self.timers
            .set(Timer::AntiEntropy, now_ms.saturating_add(delay));
    }

    /// Brings the next anti-entropy round forward to `ANTI_ENTROPY_RETRY_MS`.
    fn retry_anti_entropy(&mut self, now_ms: u64) {
        let interval = self.config.anti_entropy_interval_ms;
        if self.link != Link::Up || interval == 0 {
            return;
        }
        let at = now_ms.saturating_add(ANTI_ENTROPY_RETRY_MS.min(interval));
        let sooner = self.timers.at[Timer::AntiEntropy as usize].map_or(true, |t| at < t);
        if sooner {
            self.timers.set(Timer::AntiEntropy, at);
        }
    }

    /// A round needs the link up and streaming: not paused, no snapshot on
    /// its way in either direction (writes on both sides are fine: leaves
    /// they change are left for a later round).
    fn link_ready_for_anti_entropy(&self) -> bool {
        self.link == Link::Up
            && !self.paused
            && self.incoming.is_none()
            && !self.peer_wants_snapshot
            && matches!(self.outbound, Outbound::Streaming { .. })
    }

    /// The timer fired (or an operator asked): query every database's
    /// digest if the link is quiet, else try again soon (never with the
    /// interval at 0: an operator's request is then tried once).
    fn start_anti_entropy(&mut self, now_ms: u64, engine: &Engine) {
        self.anti_entropy_due = false;
        if self.link_ready_for_anti_entropy() && self.digest_queries_out == 0 {
            self.stats.anti_entropy_rounds += 1;
            // Compare what both sides hold: our ops the peer confirmed.
            self.round_cut = engine.vv().meet(&self.peer_confirmed);
            // Databases either side holds rows in (all of them until the
            // peer's first answer says which it uses).
            self.digest_queries_out = nonempty_dbs(engine) | self.peer_dbs;
            self.arm_anti_entropy(now_ms, false);
        } else {
            self.timers.stop(Timer::AntiEntropy);
            self.retry_anti_entropy(now_ms);
        }
    }

    // ---- internals: sending ------------------------------------------------------

    fn encode(&mut self, msg: Message) -> Option<Vec<u8>> {
        match encode_frame(&msg) {
            Ok(frame) => Some(frame),
            Err(e) => {
                self.close(SessionError::Wire(e));
                None
            }
        }
    }

    fn next_frame(&mut self, now_ms: u64, engine: &Engine) -> Option<Vec<u8>> {
        // The handshake goes out even on a session that is refusing the peer.
        if self.hello_pending {
            self.hello_pending = false;
            let hello = Hello {
                cluster_id: self.config.cluster_id,
                site_id: engine.site_id(),
                protocol_version: PROTOCOL_VERSION,
                vv: engine.vv().clone(),
            };
            return self.encode(Message::Hello(hello));
        }
        if let Some(reason) = self.refuse_pending.take() {
            return self.encode(Message::HelloRefused { reason });
        }
        if self.link != Link::Up {
            return None;
        }
        self.check_lag(engine);
        if self.rewind_pending {
            self.rewind_pending = false;
            self.stats.rewinds_sent += 1;
            return self.encode(Message::Rewind {
                vv: engine.vv().clone(),
            });
        }
        if self.snapshot_request_pending {
            self.snapshot_request_pending = false;
            return self.encode(Message::SnapshotRequest);
        }
        if let Some(db) = self.digest_request_pending.take() {
            return self.encode(Message::DigestRequest { db });
        }
        if self.anti_entropy_due {
            self.start_anti_entropy(now_ms, engine);
        }
        if self.digest_queries_out != 0 {
            let db = self.digest_queries_out.trailing_zeros() as u8;
            self.digest_queries_out &= !(1u16 << db);
            return self.encode(Message::DigestQuery {
                vv: self.round_cut.clone(),
                db,
            });
        }
        if let Some(msg) = self.digest_answers.pop_front() {
            return self.encode(*msg);
        }
        if let Some(frame) = self.ack_if_due(now_ms, engine) {
            return Some(frame);
        }
        if !self.paused {
            if let Some(frame) = self.data_frame(now_ms, engine) {
                return Some(frame);
            }
            if self.link != Link::Up {
                return None;
            }
        }
        if self.heartbeat_due || self.timers.expired(Timer::Heartbeat, now_ms) {
            return self.encode(Message::Heartbeat {
                hlc: engine.clock(),
            });
        }
        None
    }

    fn check_lag(&mut self, engine: &Engine) {
        let lag = self.ops_lag(engine);
        if !self.lagging && lag > self.config.lag_ops_alert {
            self.lagging = true;
            self.push_event(SessionEvent::Lagging { ops_lag: lag });
        } else if self.lagging && lag <= self.config.lag_ops_alert / 2 {
            self.lagging = false;
            self.push_event(SessionEvent::CaughtUp);
        }
    }

    /// An ack when what we hold changed since the last one: at once when the
    /// durable vector moved (`WAIT` and sync writes wait for it; it moves at
    /// most once per fsync, so these coalesce by themselves), otherwise once
    /// `ack_interval_ms` has passed. `vv` is the *durable* vector: never
    /// promise what a crash could still take away.
    fn ack_if_due(&mut self, now_ms: u64, engine: &Engine) -> Option<Vec<u8>> {
        let applied = engine.vv();
        let durable = if self.config.canary_ack_before_durable {
            applied
        } else {
            engine.durable_vv()
        };
        let durable_moved = self.ack_sent.as_ref().map_or(true, |(d, _)| d != durable);
        let changed = durable_moved
            || self.ack_wanted
            || self.ack_sent.as_ref().map_or(true, |(_, a)| a != applied);
        if !changed {
            self.timers.stop(Timer::Ack);
            return None;
        }
        if let (false, Some(last)) = (durable_moved, self.last_ack_sent_ms) {
            let due = last.saturating_add(self.config.ack_interval_ms);
            if now_ms < due {
                self.timers.set(Timer::Ack, due);
                return None;
            }
        }
        self.timers.stop(Timer::Ack);
        self.ack_wanted = false;
        self.ack_sent = Some((durable.clone(), applied.clone()));
        self.last_ack_sent_ms = Some(now_ms);
        self.stats.acks_sent += 1;
        self.encode(Message::Ack {
            vv: durable.clone(),
            applied_vv: applied.clone(),
        })
    }

    fn data_frame(&mut self, now_ms: u64, engine: &Engine) -> Option<Vec<u8>> {
        if !self.rate.ready(now_ms) {
            self.timers
                .set(Timer::RateLimit, self.rate.ready_at(now_ms));
            return None;
        }
        self.timers.stop(Timer::RateLimit);
        if self.peer_wants_snapshot && !matches!(self.outbound, Outbound::FullSync(_)) {
            self.peer_wants_snapshot = false;
            self.start_snapshot(engine);
        }
        if let Some(frame) = self.next_repair_frame(engine) {
            self.rate.spend(frame.len(), now_ms);
            return Some(frame);
        }
        let frame = match self.outbound {
            Outbound::Idle => None,
            Outbound::Streaming { .. } => self.next_batch(engine),
            Outbound::FullSync(_) => self.next_snapshot_frame(),
        }?;
        self.rate.spend(frame.len(), now_ms);
        Some(frame)
    }

    /// A pending repair: our answer to the peer's rows first, then our own
    /// rows of buckets we found different (asking for the peer's).
    fn next_repair_frame(&mut self, engine: &Engine) -> Option<Vec<u8>> {
        if let Some(msg) = self.repair_reply.take() {
            return self.encode(*msg);
        }
        let (db, buckets, cut) = self.repairs_out.pop_front()?;
        let rows = engine.bucket_rows(db, &buckets, &cut, REPAIR_BYTES_MAX, REPAIR_ROWS_MAX);
        if !rows.too_large.is_empty() {
            self.push_event(SessionEvent::RepairTooLarge {
                db,
                buckets: rows.too_large.clone(),
            });
        }
        if !rows.deferred.is_empty() {
            // The rest goes in the next message.
            self.repairs_out
                .push_front((db, rows.deferred.clone(), cut.clone()));
        }
        if rows.buckets.is_empty() {
            return None;
        }
        let mut msg = repair_message(&cut, db, rows);
        if let Message::RepairRows { reply, .. } = &mut msg {
            *reply = true;
        }
        self.encode(msg)
    }

    fn next_batch(&mut self, engine: &Engine) -> Option<Vec<u8>> {
        if self.inflight.len() >= self.config.inflight_batches_max
            || self.inflight_bytes >= self.config.inflight_bytes_max
        {
            return None;
        }
        let Outbound::Streaming { cursor } = self.outbound else {
            return None;
        };
        // The backlog must still hold every op the peer lacks; otherwise (ops
        // trimmed, or received through a snapshot) only a full sync can help.
        let servable = engine.backlog().can_serve(&self.peer_known, engine.vv());
        let cursor = if servable {
            cursor.or_else(|| engine.backlog_cursor(&self.peer_known))
        } else {
            None
        };
        let read = cursor.and_then(|c| {
            engine.backlog_read(
                c,
                &self.peer_known,
                self.config.batch_ops_max,
                self.config.batch_bytes_max,
            )
        });
        let Some((entries, next)) = read else {
            self.start_snapshot(engine);
            return self.next_snapshot_frame();
        };
        self.outbound = Outbound::Streaming { cursor: Some(next) };
        if entries.is_empty() {
            return None;
        }
        let mut known = self.peer_known.clone();
        for e in &entries {
            if known.get(e.id.origin) + 1 != e.id.seq {
                // A gap: the peer would buffer these forever. Cannot happen when
                // the backlog serves the peer; fall back to a full sync anyway.
                self.start_snapshot(engine);
                return self.next_snapshot_frame();
            }
            known.set(e.id.origin, e.id.seq);
        }
        let n = entries.len() as u64;
        let frame = self.encode(Message::OpBatch {
            ops: entries.into_iter().map(|e| e.bytes).collect(),
        })?;
        self.peer_known = known;
        self.inflight_bytes += frame.len();
        self.inflight
            .push_back((self.peer_known.clone(), frame.len()));
        self.stats.ops_sent += n;
        self.stats.batches_sent += 1;
        Some(frame)
    }

    fn start_snapshot(&mut self, engine: &Engine) {
        let snapshot = engine.snapshot();
        let rows_total = snapshot.rows.len() as u64;
        self.outbound = Outbound::FullSync(Box::new(OutgoingSnapshot {
            vv: snapshot.vv,
            hlc: snapshot.hlc,
            rows_total,
            rows: snapshot.rows.into(),
            pending: None,
            begun: false,
        }));
        self.push_event(SessionEvent::FullSyncStarted {
            direction: SyncDirection::Sending,
            rows_total,
        });
    }

    fn next_snapshot_frame(&mut self) -> Option<Vec<u8>> {
        let Outbound::FullSync(out) = &mut self.outbound else {
            return None;
        };
        if !out.begun {
            out.begun = true;
            let msg = Message::SnapshotBegin {
                vv: out.vv.clone(),
                hlc: out.hlc,
                rows_total: out.rows_total,
            };
            return self.encode(msg);
        }
        let chunk_bytes_max = self.config.snapshot_chunk_bytes_max;
        let mut rows: Vec<SnapshotRow> = Vec::new();
        let mut bytes = 0usize;
        let mut too_large = None;
        loop {
            if rows.len() >= SNAPSHOT_CHUNK_ROWS_MAX {
                break;
            }
            let row = match out.pending.take() {
                Some(row) => row,
                None => match out.rows.pop_front() {
                    Some((db, key, image)) => SnapshotRow {
                        db,
                        key,
                        image: Bytes::from(image.encode()),
                    },
                    None => break,
                },
            };
            if row.bytes() > SNAPSHOT_ROW_BYTES_MAX {
                too_large = Some(SessionError::SnapshotRowTooLarge {
                    db: row.db,
                    bytes: row.bytes(),
                });
                break;
            }
            if !rows.is_empty() && bytes + row.bytes() > chunk_bytes_max {
                out.pending = Some(row);
                break;
            }
            bytes += row.bytes();
            rows.push(row);
        }
        if let Some(e) = too_large {
            self.close(e);
            return None;
        }
        if !rows.is_empty() {
            return self.encode(Message::SnapshotChunk { rows });
        }
        // Every row is out: the peer will hold the snapshot's vector, and
        // streaming resumes from there.
        let Outbound::FullSync(out) =
            std::mem::replace(&mut self.outbound, Outbound::Streaming { cursor: None })
        else {
            return None;
        };
        self.peer_known.join(&out.vv);
        self.stats.snapshots_sent += 1;
        self.push_event(SessionEvent::FullSyncFinished {
            direction: SyncDirection::Sending,
            rows: out.rows_total,
        });
        self.encode(Message::SnapshotEnd)
    }
}

/// A `RepairRows` (without `reply`) carrying `rows`.
/// The apply work a received message costs: its ops or rows.
fn message_work(msg: &Message) -> usize {
    match msg {
        Message::OpBatch { ops } => ops.len(),
        Message::SnapshotChunk { rows } | Message::RepairRows { rows, .. } => rows.len(),
        _ => 0,
    }
}

/// This site's databases that hold rows, one bit each.
fn nonempty_dbs(engine: &Engine) -> u16 {
    (0..DBS as u8)
        .filter(|&db| !engine.keyspace().db(db).is_empty())
        .fold(0, |m, db| m | 1 << db)
}

fn repair_message(vv: &VersionVector, db: u8, rows: BucketRows) -> Message {
    Message::RepairRows {
        vv: vv.clone(),
        db,
        buckets: rows.buckets,
        rows: rows
            .rows
            .into_iter()
            .map(|(key, image)| SnapshotRow {
                db,
                key,
                image: Bytes::from(image),
            })
            .collect(),
        reply: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_bad_ones_are_refused() {
        assert!(SessionConfig::new(1).validate().is_ok());
        let mut c = SessionConfig::new(1);
        c.batch_ops_max = 0;
        assert!(PeerSession::new(c).is_err());
        let mut c = SessionConfig::new(1);
        c.heartbeat_interval_ms = c.idle_timeout_ms;
        assert!(PeerSession::new(c).is_err());
        let mut c = SessionConfig::new(1);
        c.inflight_batches_max = INFLIGHT_BATCHES_MAX + 1;
        assert!(PeerSession::new(c).is_err());
    }

    #[test]
    fn a_new_session_is_connecting_and_quiet() {
        let s = PeerSession::new(SessionConfig::new(1)).unwrap();
        assert_eq!(s.state(), PeerState::Connecting);
        assert_eq!(s.poll_timeout(), None);
        assert!(s.invariants_hold());
    }

    #[test]
    fn timers_table_gives_the_earliest_deadline() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Idle, 50);
        t.set(Timer::Ack, 20);
        assert_eq!(t.next(), Some(20));
        assert!(t.expired(Timer::Ack, 20) && !t.expired(Timer::Idle, 49));
        t.stop(Timer::Ack);
        assert_eq!(t.next(), Some(50));
    }
}
