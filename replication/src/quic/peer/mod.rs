//! Per-peer tasks: dialing with backoff, taking accepted connections,
//! choosing one connection when both sides dialed, and moving bytes between
//! one QUIC stream and the peer's `PeerSession`.
//!
//! Locks: the engine lock is always taken before a peer's entry lock, both
//! only around synchronous calls, never across an await. Each connection
//! gets a generation number; a task holding an older one touches nothing.
//!
//! The code is split by concern: `connect` (accepting and dialing: TLS
//! handshakes, the site a certificate names, stream setup, refusals), `task`
//! (the peer task: dialing when due, taking connections), `connection` (one
//! connection carrying the session: the write loop, duplicates, teardown),
//! `read` (the read loop), `events` (acting on session events) and `status`
//! (what operators see, and the tick loop that samples lag and byte rates).
//! This file holds the constants, the shared state and the peer map.

mod connect;
mod connection;
mod events;
mod pubsub;
mod read;
mod status;
mod task;

use super::clock::Clock;
use super::{PeerMap, ReplicationConfig};
use crate::backoff::Backoff;
use crate::session::{ConfigError, PeerSession, PeerState, SessionConfig};
use chorus_engine::id::{SiteId, VersionVector};
use chorus_engine::Engine;
use parking_lot::Mutex;
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use task::run_peer;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

pub(crate) use connect::accept_loop;
pub use pubsub::PubSubSink;
use pubsub::{PeerPubSub, PubSubHub};
pub(crate) use status::tick_loop;

/// Application close codes on a replication connection.
pub(crate) const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(0);
pub(crate) const CLOSE_DUPLICATE: VarInt = VarInt::from_u32(1);
pub(crate) const CLOSE_UNKNOWN_SITE: VarInt = VarInt::from_u32(2);
pub(crate) const CLOSE_BAD_CERTIFICATE: VarInt = VarInt::from_u32(3);
pub(crate) const CLOSE_SESSION: VarInt = VarInt::from_u32(4);
pub(crate) const CLOSE_REMOVED: VarInt = VarInt::from_u32(5);
pub(crate) const CLOSE_NO_STREAM: VarInt = VarInt::from_u32(6);

/// Bytes of `poll_transmit` frames collected per write: the transport's
/// backpressure is felt at least this often (snapshots, catch-up).
pub const WRITE_ROUND_BYTES_MAX: usize = 4 << 20;
/// Largest chunk read from the stream at once.
pub const READ_CHUNK_BYTES_MAX: usize = 1 << 20;
/// Ops (or snapshot rows) the reader applies per hold of the engine lock: a
/// read chunk (~25,000 small ops) is applied in slices of about this size, the
/// lock handed over fairly between them, so the site's own clients wait for
/// one slice (~1–4 ms), not for a whole chunk. A single larger batch from the
/// peer is applied whole.
pub const APPLY_SLICE_OPS_MAX: usize = 1024;
/// Connection events queued for one peer task (dial results, accepted connections).
pub const CONN_EVENTS_QUEUED_MAX: usize = 8;
/// Accepted connections between TLS and stream setup at once.
pub const HANDSHAKES_PENDING_MAX: usize = 64;
/// How long a refused session's last frames (our `HelloRefused`) get to reach
/// the peer before the connection closes.
pub const REFUSAL_FLUSH_MS: u64 = 1_000;
/// Spacing of the (engine vector, time) marks behind `time_lag_ms`.
pub const LAG_MARK_INTERVAL_MS: u64 = 100;
/// Marks kept: `time_lag_ms` is exact to `LAG_MARK_INTERVAL_MS` up to
/// `LAG_MARKS_MAX * LAG_MARK_INTERVAL_MS` (a minute) and a lower bound beyond.
pub const LAG_MARKS_MAX: usize = 600;
/// Window of the bytes/s rates.
pub const RATE_INTERVAL_MS: u64 = 1_000;

/// A connection to a peer, ready to carry its session.
pub(crate) struct NewConn {
    connection: Connection,
    send: SendStream,
    recv: RecvStream,
    dialed_by_us: bool,
    cert: Option<CertificateDer<'static>>,
}

pub(crate) enum ConnEvent {
    Conn(NewConn),
    DialFailed { error: String, refused: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    Idle,
    Dialing,
    Connected {
        remote: SocketAddr,
        dialed_by_us: bool,
    },
}

/// One peer's state, shared by its task, its reader and the control calls.
pub(crate) struct PeerEntry {
    pub(crate) session: PeerSession,
    addr: Option<SocketAddr>,
    link: Link,
    /// Generation of the connection carrying the session (0: none yet).
    gen: u64,
    removed: bool,
    backoff: Backoff,
    next_dial_ms: u64,
    cert: Option<CertificateDer<'static>>,
    /// The session's events asked for the connection to close.
    close: Option<(VarInt, String)>,
    refused: bool,
    refusals: u64,
    last_error: Option<String>,
    last_refusal: Option<String>,
    /// `last_error` already says why the current connection or attempt
    /// failed: later, vaguer symptoms (stream ended) do not overwrite it.
    error_noted: bool,
    rate_at_ms: u64,
    rate_bytes: (u64, u64),
    rate_per_s: (u64, u64),
}

impl PeerEntry {
    /// Records why the current connection (or attempt) failed: the first
    /// reason wins, except that a refusal always does.
    fn note_failure(&mut self, why: String, refusal: bool) {
        if refusal {
            self.refused = true;
            self.refusals += 1;
            self.last_refusal = Some(why.clone());
        } else if self.error_noted {
            return;
        }
        self.last_error = Some(why);
        self.error_noted = true;
    }
}

pub(crate) struct Peer {
    pub(crate) site: SiteId,
    pub(crate) entry: Mutex<PeerEntry>,
    /// Control changes, reader progress, shutdown: look again.
    wake: Notify,
    conn_tx: mpsc::Sender<ConnEvent>,
    pub(crate) task: Mutex<Option<JoinHandle<()>>>,
    /// Pub/sub messages waiting for the peer, and its counters.
    pub(crate) pubsub: PeerPubSub,
}

/// State shared by all tasks of one `Replication`.
pub(crate) struct Shared {
    pub(crate) site_id: SiteId,
    pub(crate) cluster_id: u64,
    engine: Arc<Mutex<Engine>>,
    pub(crate) endpoint: Endpoint,
    pub(crate) clock: Clock,
    /// Every new peer's session starts from this (anti-entropy interval
    /// changes at runtime).
    pub(crate) session_template: Mutex<SessionConfig>,
    backoff_base_ms: u64,
    backoff_max_ms: u64,
    handshake_timeout_ms: u64,
    /// Bumped on every engine change that may give a session something to send.
    changes: watch::Sender<u64>,
    /// Bumped whenever a peer's ack arrived (sync writes wait on it).
    pub(crate) acks: watch::Sender<u64>,
    shutdown: AtomicBool,
    pub(crate) peers: Mutex<PeerMap>,
    /// (engine vector, last time it was seen), oldest first.
    lag_marks: Mutex<VecDeque<(VersionVector, u64)>>,
    pub(crate) handshakes_refused: AtomicU64,
    pub(crate) last_refusal: Mutex<Option<String>>,
    /// The runtime replication started on: peers added later (from a
    /// client's `PEER ADD`, on another runtime) run here too.
    runtime: tokio::runtime::Handle,
    /// Pub/sub across sites: numbering, de-duplication, local delivery.
    pub(crate) pubsub: PubSubHub,
}

impl Shared {
    pub(crate) fn new(
        config: &ReplicationConfig,
        session_template: SessionConfig,
        engine: Arc<Mutex<Engine>>,
        endpoint: Endpoint,
        clock: Clock,
    ) -> Shared {
        let incarnation = engine.lock().origin().incarnation;
        Shared {
            pubsub: PubSubHub::new(config.site_id, incarnation),
            site_id: config.site_id,
            cluster_id: config.cluster_id,
            engine,
            endpoint,
            clock,
            session_template: Mutex::new(session_template),
            backoff_base_ms: config.backoff_base_ms,
            backoff_max_ms: config.backoff_max_ms,
            handshake_timeout_ms: config.idle_timeout_ms,
            changes: watch::Sender::new(0),
            acks: watch::Sender::new(0),
            shutdown: AtomicBool::new(false),
            peers: Mutex::new(PeerMap::new()),
            lag_marks: Mutex::new(VecDeque::new()),
            handshakes_refused: AtomicU64::new(0),
            last_refusal: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for p in self.peers.lock().values() {
            p.wake.notify_one();
        }
    }

    pub(crate) fn notify_engine_changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(crate) fn peer(&self, site: SiteId) -> Option<Arc<Peer>> {
        self.peers.lock().get(&site).cloned()
    }

    /// Runs `f` on the peer's entry and wakes its task; false if unknown.
    pub(crate) fn with_peer(&self, site: SiteId, f: impl FnOnce(&mut PeerEntry)) -> bool {
        let Some(peer) = self.peer(site) else {
            return false;
        };
        f(&mut peer.entry.lock());
        peer.wake.notify_one();
        true
    }

    pub(crate) fn add_peer(
        self: &Arc<Self>,
        site: SiteId,
        addr: Option<SocketAddr>,
    ) -> Result<(), ConfigError> {
        let mut peers = self.peers.lock();
        if let Some(p) = peers.get(&site) {
            let mut e = p.entry.lock();
            e.addr = addr.or(e.addr);
            e.backoff.reset();
            e.next_dial_ms = 0;
            drop(e);
            p.wake.notify_one();
            return Ok(());
        }
        let mut session_config = self.session_template.lock().clone();
        session_config.peer_site_id = Some(site);
        let session = PeerSession::new(session_config)?;
        let (conn_tx, conn_rx) = mpsc::channel(CONN_EVENTS_QUEUED_MAX);
        let peer = Arc::new(Peer {
            site,
            entry: Mutex::new(PeerEntry {
                session,
                addr,
                link: Link::Idle,
                gen: 0,
                removed: false,
                backoff: Backoff::new(self.backoff_base_ms, self.backoff_max_ms),
                next_dial_ms: 0,
                cert: None,
                close: None,
                refused: false,
                refusals: 0,
                last_error: None,
                last_refusal: None,
                error_noted: false,
                rate_at_ms: self.clock.now_ms(),
                rate_bytes: (0, 0),
                rate_per_s: (0, 0),
            }),
            wake: Notify::new(),
            conn_tx,
            task: Mutex::new(None),
            pubsub: PeerPubSub::new(),
        });
        let task = self
            .runtime
            .spawn(run_peer(self.clone(), peer.clone(), conn_rx));
        *peer.task.lock() = Some(task);
        peers.insert(site, peer);
        Ok(())
    }

    pub(crate) fn remove_peer(&self, site: SiteId) -> bool {
        let Some(peer) = self.peers.lock().remove(&site) else {
            return false;
        };
        peer.entry.lock().removed = true;
        peer.wake.notify_one();
        true
    }

    fn note_refusal(&self, what: String) {
        tracing::warn!(site = self.site_id, "{what}");
        self.handshakes_refused.fetch_add(1, Ordering::Relaxed);
        *self.last_refusal.lock() = Some(what);
    }

    fn stopping(&self, peer: &Peer) -> Option<(VarInt, &'static str)> {
        if self.is_shut_down() {
            Some((CLOSE_SHUTDOWN, "shutdown"))
        } else if peer.entry.lock().removed {
            Some((CLOSE_REMOVED, "peer removed"))
        } else {
            None
        }
    }
}

/// Of two connections between the same sites, both keep the one dialed by the
/// lower site id.
fn preferred(us: SiteId, peer: SiteId, dialed_by_us: bool) -> bool {
    (us < peer) == dialed_by_us
}

fn session_connected(state: PeerState) -> bool {
    matches!(
        state,
        PeerState::Handshake | PeerState::FullSync | PeerState::Streaming | PeerState::Paused
    )
}

fn note_error(peer: &Peer, gen: u64, why: String) {
    let mut e = peer.entry.lock();
    if e.gen == gen {
        e.note_failure(why, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_sites_outbound_connection_is_preferred_on_both_sides() {
        // Site 1 keeps what it dialed; site 2 keeps what it accepted from 1.
        assert!(preferred(1, 2, true));
        assert!(!preferred(1, 2, false));
        assert!(preferred(2, 1, false));
        assert!(!preferred(2, 1, true));
    }
}
