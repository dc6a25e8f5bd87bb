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
//!
//! The code is split by concern, each child module holding `impl PeerSession`
//! blocks: `handshake` (connection up/down, `Hello`, refusals),
//! `inbound` (bytes in, messages dispatched, op batches, acks), `outbound`
//! (`poll_transmit`, flow control, op batches out), `snapshot` (full sync
//! both ways), `anti_entropy` (digest rounds and repairs) and `timers` (the
//! timer table, `poll_timeout`, `handle_timeout`). This file holds the types,
//! construction, operator controls, observers and the connection helpers.

mod anti_entropy;
mod clock;
mod handshake;
mod inbound;
mod outbound;
mod snapshot;
mod timers;

use crate::rate_limit::TokenBucket;
use crate::wire::{
    FrameDecoder, Message, RefuseReason, SnapshotRow, WireError, BATCH_BYTES_MAX, BATCH_OPS_MAX,
    PUBSUB_PROTOCOL_VERSION, SNAPSHOT_CHUNK_BYTES_MAX,
};
use bytes::Bytes;
use chorus_engine::hlc::Hlc;
use chorus_engine::id::{SiteId, VersionVector};
use chorus_engine::keyspace::image::RowImage;
use chorus_engine::keyspace::ALL_DBS as DBS;
use chorus_engine::Engine;
use std::collections::VecDeque;
use thiserror::Error;
use timers::{Timer, Timers};

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
const ALL_DBS: u32 = if DBS >= 32 {
    u32::MAX
} else {
    (1u32 << DBS) - 1
};
const _: () = assert!(DBS <= 32, "digest query masks hold one bit per database");

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
    /// CANARY (simulator only): every `Ack` the peer sends is ignored (a
    /// dispatch bug), so batches stay in flight for good: resent after each
    /// `ACK_WAIT_MS`, never retired.
    pub canary_ignore_acks: bool,
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
            canary_ignore_acks: false,
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
    /// The peer sent a stamp absurdly far ahead of our clock (more than
    /// `chorus_engine::hlc::CLOCK_AHEAD_ABSURD_MS`): its clock is wrong by
    /// a year or more. Nothing it carried was applied; the session is
    /// refused until the clock is fixed.
    #[error("clock of site {peer} is {ahead_ms} ms ahead of ours (absurd): fix its clock; its ops were not applied")]
    ClockAbsurd { peer: SiteId, ahead_ms: u64 },
    #[error("site {site} was removed from the cluster (MEMBER REMOVE)")]
    Removed { site: SiteId },
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
    /// The peer's stamps ran ahead of our clock by more than the engine's
    /// `max_clock_skew_ms` (at most one event a minute): its ops are
    /// applied, but our own stamps stop at our clock plus the bound.
    ClockAhead {
        /// How far ahead the newest such stamp was.
        ahead_ms: u64,
        /// Ops stamped ahead by more than the bound so far.
        ops_ahead: u64,
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
    /// Handshakes with a peer that was new to this site's reports and
    /// lacked ops they covered: told to catch up before it writes.
    pub newcomer_catch_ups: u64,
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
    /// How far the newest stamp from the peer (op, heartbeat or snapshot)
    /// ran ahead of our clock when it arrived; 0 if it was not ahead.
    pub clock_skew_ms: u64,
    /// Ops whose stamp ran ahead of our clock by more than the engine's
    /// `max_clock_skew_ms` (applied all the same).
    pub ops_stamped_ahead: u64,
}

/// How long in-flight batches may go unacknowledged on a live connection
/// before the session resends from what the peer confirmed. A reliable
/// stream never loses a batch, but a peer that dropped one (or a stream that
/// lost it across a reset) would otherwise stall the link forever; resent ops
/// are dropped by the peer's version vector.
pub const ACK_WAIT_MS: u64 = 5_000;

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
    /// The protocol version of the peer's accepted `Hello` on this
    /// connection (0 before the handshake).
    peer_protocol_version: u16,
    rx: FrameDecoder,
    timers: Timers,
    last_recv_ms: u64,
    heartbeat_due: bool,
    /// The stability reports are due (see `Timer::Reports`).
    reports_due: bool,
    /// Report messages still to send this round.
    reports_out: Vec<Message>,
    /// A `CatchUp` to send the peer (see `Engine::newcomer_catch_up`).
    catch_up_out: Option<VersionVector>,
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
    digest_queries_out: u32,
    /// The cut of the round in progress: what both sides hold.
    round_cut: VersionVector,
    /// The peer's databases that hold rows, from its last digest.
    peer_dbs: u32,
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
    /// When the last `ClockAhead` event was raised.
    clock_warned_ms: Option<u64>,
    /// Wall-clock milliseconds minus the driver's `now_ms` (see
    /// [`PeerSession::set_wall_clock`]); 0 when `now_ms` is wall time.
    wall_offset_ms: i64,
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
            peer_protocol_version: 0,
            rx: FrameDecoder::new(),
            timers: Timers::default(),
            last_recv_ms: 0,
            heartbeat_due: false,
            reports_due: false,
            reports_out: Vec::new(),
            catch_up_out: None,
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
            clock_warned_ms: None,
            wall_offset_ms: 0,
            stats: SessionStats::default(),
        };
        debug_assert!(session.invariants_hold());
        Ok(session)
    }

    // ---- outputs -------------------------------------------------------------

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
    /// The handshake on this connection is done and the peer relays pub/sub
    /// messages (its `Hello` named `PUBSUB_PROTOCOL_VERSION` or later): the
    /// driver may carry `Publish` frames to it on their own stream.
    pub fn peer_speaks_pubsub(&self) -> bool {
        self.link == Link::Up && self.peer_protocol_version >= PUBSUB_PROTOCOL_VERSION
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
        self.peer_protocol_version = 0;
        self.timers.clear();
        self.heartbeat_due = false;
        self.reports_due = false;
        self.reports_out.clear();
        self.catch_up_out = None;
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
