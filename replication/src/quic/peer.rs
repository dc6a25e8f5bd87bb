//! Per-peer tasks: dialing with backoff, taking accepted connections,
//! choosing one connection when both sides dialed, and moving bytes between
//! one QUIC stream and the peer's `PeerSession`.
//!
//! Locks: the engine lock is always taken before a peer's entry lock, both
//! only around synchronous calls, never across an await. Each connection
//! gets a generation number; a task holding an older one touches nothing.

use super::clock::{jitter, Clock};
use super::tls;
use super::{PeerMap, PeerStatus, ReplicationConfig};
use crate::backoff::Backoff;
use crate::session::{
    ConfigError, PeerSession, PeerState, SessionConfig, SessionEvent, SyncDirection,
};
use bytes::Bytes;
use chorus_engine::id::{SiteId, VersionVector};
use chorus_engine::{Engine, Fsync};
use parking_lot::Mutex;
use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinHandle;

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
}

impl Shared {
    pub(crate) fn new(
        config: &ReplicationConfig,
        session_template: SessionConfig,
        engine: Arc<Mutex<Engine>>,
        endpoint: Endpoint,
        clock: Clock,
    ) -> Shared {
        Shared {
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

    pub(crate) fn status(&self, only: Option<SiteId>) -> Vec<PeerStatus> {
        let peers: Vec<Arc<Peer>> = {
            let map = self.peers.lock();
            match only {
                Some(site) => map.get(&site).cloned().into_iter().collect(),
                None => map.values().cloned().collect(),
            }
        };
        let engine = self.engine.lock();
        let marks = self.lag_marks.lock();
        let now_ms = self.clock.now_ms();
        peers
            .iter()
            .map(|p| {
                let e = p.entry.lock();
                let stats = e.session.stats().clone();
                let acked = e.session.peer_acked_vv().clone();
                PeerStatus {
                    site_id: p.site,
                    addr: e.addr,
                    remote_addr: match e.link {
                        Link::Connected { remote, .. } => Some(remote),
                        _ => None,
                    },
                    dialed_by_us: match e.link {
                        Link::Connected { dialed_by_us, .. } => Some(dialed_by_us),
                        _ => None,
                    },
                    state: state_name(&e),
                    paused: e.session.is_paused(),
                    ops_lag: e.session.ops_lag(&engine),
                    time_lag_ms: time_lag_ms(engine.vv(), &acked, &marks, now_ms),
                    bytes_in: stats.bytes_in,
                    bytes_out: stats.bytes_out,
                    bytes_in_per_s: e.rate_per_s.0,
                    bytes_out_per_s: e.rate_per_s.1,
                    last_ack_ms: stats.last_ack_ms,
                    ops_sent: stats.ops_sent,
                    ops_received: stats.ops_received,
                    ops_applied: stats.ops_applied,
                    connects: stats.connects,
                    refused: e.refused,
                    refusals: e.refusals,
                    last_error: e.last_error.clone(),
                    last_refusal: e.last_refusal.clone(),
                    acked_vv: acked,
                    stats,
                }
            })
            .collect()
    }
}

fn state_name(e: &PeerEntry) -> &'static str {
    match e.session.state() {
        PeerState::Handshake => "handshake",
        PeerState::FullSync => "full-sync",
        PeerState::Streaming => "streaming",
        PeerState::Paused => "paused",
        PeerState::Connecting | PeerState::Down => match e.link {
            Link::Dialing => "connecting",
            // Never connected and no failure yet: still coming up.
            _ if e.gen == 0 && e.last_error.is_none() => "connecting",
            _ => "down",
        },
    }
}

/// How long the oldest op the peer has not durably acknowledged has been
/// here: the time since the engine last held only what the peer holds.
fn time_lag_ms(
    ours: &VersionVector,
    acked: &VersionVector,
    marks: &VecDeque<(VersionVector, u64)>,
    now_ms: u64,
) -> u64 {
    if acked.dominates(ours) {
        return 0;
    }
    match marks.iter().rev().find(|(vv, _)| acked.dominates(vv)) {
        Some(&(_, seen_ms)) => now_ms.saturating_sub(seen_ms),
        // Behind every mark: at least as old as the oldest.
        None => marks
            .front()
            .map_or(0, |&(_, at_ms)| now_ms.saturating_sub(at_ms)),
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

/// Acts on the session's events (under the entry lock).
fn drain_events(site: SiteId, peer: SiteId, e: &mut PeerEntry) {
    while let Some(event) = e.session.poll_event() {
        match event {
            SessionEvent::Connected { peer_site } => {
                // The session is pinned to the certificate's site, so this
                // holds; checked again because it is the security boundary.
                let check = match &e.cert {
                    Some(cert) => tls::check_peer_site(cert, peer_site).map_err(|x| x.to_string()),
                    None => Err("no peer certificate".to_string()),
                };
                match check {
                    Ok(()) => {
                        tracing::info!(site, peer, "replication connected");
                        e.backoff.reset();
                        e.refused = false;
                        e.last_error = None;
                        e.error_noted = false;
                    }
                    Err(why) => {
                        tracing::warn!(site, peer, %why, "peer certificate does not match its Hello");
                        e.note_failure(why.clone(), true);
                        e.close = Some((CLOSE_BAD_CERTIFICATE, why));
                    }
                }
            }
            SessionEvent::Refused { reason, by_peer } => {
                let why = if by_peer {
                    format!("refused by peer: {reason:?}")
                } else {
                    format!("refused peer: {reason:?}")
                };
                tracing::warn!(site, peer, "{why}");
                e.note_failure(why.clone(), true);
                e.close.get_or_insert((CLOSE_SESSION, why));
            }
            SessionEvent::Closed { error } => {
                let why = error.to_string();
                if matches!(error, crate::session::SessionError::OpIdConflict { .. }) {
                    tracing::error!(site, peer, error = %why, "replication refused: two different ops under one OpId");
                } else {
                    tracing::warn!(site, peer, error = %why, "replication session closed");
                }
                e.note_failure(why.clone(), false);
                e.close.get_or_insert((CLOSE_SESSION, why));
            }
            SessionEvent::FullSyncStarted {
                direction,
                rows_total,
            } => {
                tracing::info!(site, peer, ?direction, rows_total, "full sync started");
            }
            SessionEvent::FullSyncFinished { direction, rows } => {
                // Receiving: `merge_snapshot` checkpointed the merged state
                // before any ack can cover it; nothing left to do here.
                if direction == SyncDirection::Receiving {
                    tracing::info!(site, peer, rows, "full sync received and merged");
                } else {
                    tracing::info!(site, peer, rows, "full sync sent");
                }
            }
            SessionEvent::Lagging { ops_lag } => {
                tracing::warn!(site, peer, ops_lag, "peer is lagging");
            }
            SessionEvent::CaughtUp => tracing::info!(site, peer, "peer caught up"),
            SessionEvent::PeerWentBack { lost_ops, .. } => {
                tracing::warn!(
                    site,
                    peer,
                    lost_ops,
                    "the peer's handshake shows fewer ops than it acknowledged (its disk restored from an older copy, or a handshake that crossed an ack): sending it what it lacks again"
                );
            }
            SessionEvent::DigestMatched { db } => tracing::debug!(site, peer, db, "digest matched"),
            SessionEvent::DigestMismatch { db, buckets } => {
                tracing::error!(
                    site,
                    peer,
                    db,
                    ?buckets,
                    "DIGEST MISMATCH: leaves differ where both sites hold the same ops; repairing"
                );
            }
            SessionEvent::Repaired { db, buckets, rows } => {
                tracing::error!(
                    site,
                    peer,
                    db,
                    ?buckets,
                    rows,
                    "ANTI-ENTROPY REPAIR: rows differed where both sites hold the same ops and were joined with the peer's, keeping every entry (lost or damaged state at one site)"
                );
            }
            SessionEvent::RepairTooLarge { db, buckets } => {
                tracing::error!(
                    site,
                    peer,
                    db,
                    ?buckets,
                    "anti-entropy cannot repair these buckets: too large for one repair message (PEER RESYNC merges a full snapshot)"
                );
            }
        }
    }
}

/// A refusal (as opposed to a network failure) in a connection error.
fn refusal_of(e: &ConnectionError) -> Option<String> {
    let crypto = |code: u64| (0x100..0x200).contains(&code);
    match e {
        ConnectionError::TransportError(t) if crypto(t.code.into()) => {
            Some(format!("TLS handshake failed: {t}"))
        }
        ConnectionError::ConnectionClosed(c) if crypto(c.error_code.into()) => {
            Some(format!("TLS handshake refused by peer: {c}"))
        }
        ConnectionError::ApplicationClosed(a)
            if a.error_code == CLOSE_UNKNOWN_SITE || a.error_code == CLOSE_BAD_CERTIFICATE =>
        {
            Some(format!(
                "refused by peer: {}",
                String::from_utf8_lossy(&a.reason)
            ))
        }
        _ => None,
    }
}

fn peer_cert(connection: &Connection) -> Option<CertificateDer<'static>> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().cloned()
}

// ---- accepting -----------------------------------------------------------------

pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    let pending = Arc::new(Semaphore::new(HANDSHAKES_PENDING_MAX));
    while let Some(incoming) = shared.endpoint.accept().await {
        if shared.is_shut_down() {
            incoming.refuse();
            break;
        }
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            shared.note_refusal(format!(
                "refused {}: too many handshakes pending",
                incoming.remote_address()
            ));
            incoming.refuse();
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            accept_one(&shared, incoming).await;
            drop(permit);
        });
    }
}

async fn accept_one(shared: &Shared, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let timeout = Duration::from_millis(shared.handshake_timeout_ms);
    let connection = match tokio::time::timeout(timeout, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            match refusal_of(&e) {
                Some(why) => shared.note_refusal(format!("refused {remote}: {why}")),
                None => tracing::debug!(%remote, error = %e, "incoming connection failed"),
            }
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "incoming handshake timed out");
            return;
        }
    };
    // TLS verified the chain to the cluster CA; which site is this?
    let cert = peer_cert(&connection);
    let site = match cert.as_ref().map(tls::site_of_cert) {
        Some(Ok(site)) => site,
        Some(Err(e)) => {
            shared.note_refusal(format!("refused {remote}: {e}"));
            connection.close(CLOSE_BAD_CERTIFICATE, e.to_string().as_bytes());
            return;
        }
        None => {
            shared.note_refusal(format!("refused {remote}: no client certificate"));
            connection.close(CLOSE_BAD_CERTIFICATE, b"no client certificate");
            return;
        }
    };
    let Some(peer) = shared.peer(site) else {
        shared.note_refusal(format!("refused {remote}: site {site} is not a peer"));
        connection.close(
            CLOSE_UNKNOWN_SITE,
            format!("site {site} is not a peer of site {}", shared.site_id).as_bytes(),
        );
        return;
    };
    let (send, recv) = match tokio::time::timeout(timeout, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => {
            tracing::debug!(%remote, site, error = %e, "no stream on incoming connection");
            return;
        }
        Err(_) => {
            connection.close(CLOSE_NO_STREAM, b"no stream opened");
            return;
        }
    };
    let conn = NewConn {
        connection,
        send,
        recv,
        dialed_by_us: false,
        cert,
    };
    // The peer task is gone (removed, shutting down): the connection drops.
    let _ = peer.conn_tx.send(ConnEvent::Conn(conn)).await;
}

// ---- dialing -------------------------------------------------------------------

async fn dial(endpoint: Endpoint, site: SiteId, addr: SocketAddr, timeout_ms: u64) -> ConnEvent {
    let failed = |error: String, refused: bool| ConnEvent::DialFailed { error, refused };
    // The server name makes TLS check the peer's certificate names this site.
    let connecting = match endpoint.connect(addr, &tls::site_name(site)) {
        Ok(c) => c,
        Err(e) => return failed(format!("connect {addr}: {e}"), false),
    };
    let timeout = Duration::from_millis(timeout_ms);
    let connection = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return match refusal_of(&e) {
                Some(why) => failed(why, true),
                None => failed(format!("connect {addr}: {e}"), false),
            }
        }
        Err(_) => return failed(format!("connect {addr}: timed out"), false),
    };
    let cert = peer_cert(&connection);
    match connection.open_bi().await {
        Ok((send, recv)) => ConnEvent::Conn(NewConn {
            connection,
            send,
            recv,
            dialed_by_us: true,
            cert,
        }),
        Err(e) => failed(format!("open stream to {addr}: {e}"), false),
    }
}

// ---- the peer task -------------------------------------------------------------

enum ConnectionEnd {
    Ended,
    Replaced(NewConn),
}

async fn run_peer(shared: Arc<Shared>, peer: Arc<Peer>, mut conn_rx: mpsc::Receiver<ConnEvent>) {
    let mut changes = shared.changes.subscribe();
    let mut dialing = false;
    let mut next: Option<NewConn> = None;
    let salt = (u64::from(shared.site_id) << 16) | u64::from(peer.site);
    loop {
        if let Some((code, why)) = shared.stopping(&peer) {
            if let Some(c) = next.take() {
                c.connection.close(code, why.as_bytes());
            }
            break;
        }
        if let Some(conn) = next.take() {
            let end = run_connection(
                &shared,
                &peer,
                conn,
                &mut conn_rx,
                &mut changes,
                &mut dialing,
            )
            .await;
            match end {
                ConnectionEnd::Replaced(c) => next = Some(c),
                ConnectionEnd::Ended => {
                    let now_ms = shared.clock.now_ms();
                    let mut e = peer.entry.lock();
                    let delay = e.backoff.next_delay_ms(jitter(salt));
                    e.next_dial_ms = now_ms.saturating_add(delay);
                }
            }
            continue;
        }
        // Not connected: dial when due, take whatever connection comes first.
        let now_ms = shared.clock.now_ms();
        let dial_at = {
            let mut e = peer.entry.lock();
            match e.addr {
                Some(addr) if !dialing && now_ms >= e.next_dial_ms => {
                    dialing = true;
                    e.link = Link::Dialing;
                    let endpoint = shared.endpoint.clone();
                    let tx = peer.conn_tx.clone();
                    let (site, timeout_ms) = (peer.site, shared.handshake_timeout_ms);
                    tokio::spawn(async move {
                        let event = dial(endpoint, site, addr, timeout_ms).await;
                        let _ = tx.send(event).await;
                    });
                    None
                }
                Some(_) if !dialing => Some(e.next_dial_ms),
                _ => None,
            }
        };
        let sleep = async {
            match dial_at {
                Some(at) => tokio::time::sleep_until(shared.clock.instant_at(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = conn_rx.recv() => match event {
                Some(ConnEvent::Conn(c)) => {
                    if c.dialed_by_us {
                        dialing = false;
                    }
                    next = Some(c);
                }
                Some(ConnEvent::DialFailed { error, refused }) => {
                    dialing = false;
                    let now_ms = shared.clock.now_ms();
                    let mut e = peer.entry.lock();
                    if refused {
                        tracing::warn!(site = shared.site_id, peer = peer.site, %error, "dial refused");
                    } else {
                        tracing::debug!(site = shared.site_id, peer = peer.site, %error, "dial failed");
                    }
                    e.error_noted = false;
                    e.note_failure(error, refused);
                    e.link = Link::Idle;
                    let delay = e.backoff.next_delay_ms(jitter(salt));
                    e.next_dial_ms = now_ms.saturating_add(delay);
                }
                None => break,
            },
            () = sleep => {}
            () = peer.wake.notified() => {}
        }
    }
    let mut e = peer.entry.lock();
    e.link = Link::Idle;
    e.gen += 1;
}

/// What one round of output produced.
struct Round {
    frames: Vec<Bytes>,
    /// The byte budget ran out: poll again right after writing.
    more: bool,
    connected: bool,
    close: Option<(VarInt, String)>,
    deadline_ms: Option<u64>,
}

/// Runs the session over one connection until it ends or is replaced.
async fn run_connection(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    conn: NewConn,
    conn_rx: &mut mpsc::Receiver<ConnEvent>,
    changes: &mut watch::Receiver<u64>,
    dialing: &mut bool,
) -> ConnectionEnd {
    let NewConn {
        connection,
        mut send,
        recv,
        dialed_by_us,
        cert,
    } = conn;
    let remote = connection.remote_address();
    let gen = {
        let now_ms = shared.clock.now_ms();
        let mut e = peer.entry.lock();
        e.gen += 1;
        e.link = Link::Connected {
            remote,
            dialed_by_us,
        };
        e.cert = cert;
        e.close = None;
        e.error_noted = false;
        e.session.handle_connected(now_ms);
        e.gen
    };
    tracing::debug!(site = shared.site_id, peer = peer.site, %remote, dialed_by_us, "connection up");
    let mut reader = tokio::spawn(read_loop(shared.clone(), peer.clone(), recv, gen));
    // Every end closes the connection explicitly with a code the peer can
    // read (a dropped handle would close it with a bare 0).
    let ended = || (CLOSE_SESSION, String::from("connection ended"));
    let (end, close) = loop {
        let Some(round) = output_round(shared, peer, gen) else {
            break (ConnectionEnd::Ended, ended());
        };
        if !round.frames.is_empty() {
            let mut frames = round.frames;
            if let Err(e) = send.write_all_chunks(&mut frames).await {
                note_error(peer, gen, format!("write: {e}"));
                break (ConnectionEnd::Ended, ended());
            }
        }
        if let Some(close) = round.close {
            // Let our last frames (a refusal) reach the peer first.
            let _ = send.finish();
            let flush = Duration::from_millis(REFUSAL_FLUSH_MS);
            let _ = tokio::time::timeout(flush, send.stopped()).await;
            break (ConnectionEnd::Ended, close);
        }
        if !round.connected {
            break (ConnectionEnd::Ended, (CLOSE_SESSION, "session down".into()));
        }
        if round.more {
            continue;
        }
        if let Some((code, why)) = shared.stopping(peer) {
            break (ConnectionEnd::Ended, (code, why.into()));
        }
        let sleep = async {
            match round.deadline_ms {
                Some(at) => tokio::time::sleep_until(shared.clock.instant_at(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = peer.wake.notified() => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    break (ConnectionEnd::Ended, (CLOSE_SHUTDOWN, "shutdown".into()));
                }
            }
            () = sleep => {}
            _ = &mut reader => break (ConnectionEnd::Ended, ended()),
            _ = connection.closed() => break (ConnectionEnd::Ended, ended()),
            event = conn_rx.recv() => match event {
                Some(ConnEvent::Conn(new)) => {
                    if new.dialed_by_us {
                        *dialing = false;
                    }
                    // Both sides dialed: keep the lower site's outbound one;
                    // two in the same direction: the dialer gave up on the
                    // older one, keep the newer.
                    let keep_new = new.dialed_by_us == dialed_by_us
                        || preferred(shared.site_id, peer.site, new.dialed_by_us);
                    if keep_new {
                        tracing::debug!(site = shared.site_id, peer = peer.site, "replacing duplicate connection");
                        break (
                            ConnectionEnd::Replaced(new),
                            (CLOSE_DUPLICATE, "duplicate connection".into()),
                        );
                    }
                    tracing::debug!(site = shared.site_id, peer = peer.site, "closing duplicate connection");
                    new.connection.close(CLOSE_DUPLICATE, b"duplicate connection");
                }
                Some(ConnEvent::DialFailed { .. }) => *dialing = false,
                None => break (ConnectionEnd::Ended, (CLOSE_SHUTDOWN, "shutdown".into())),
            },
        }
    };
    reader.abort();
    // Why the connection died, if the peer or the transport closed it (read
    // before our own close, which would say "locally closed").
    let lost = connection.close_reason();
    connection.close(close.0, close.1.as_bytes());
    let now_ms = shared.clock.now_ms();
    let mut e = peer.entry.lock();
    if e.gen == gen {
        if let Some(error) = lost {
            match refusal_of(&error) {
                Some(why) => {
                    tracing::warn!(site = shared.site_id, peer = peer.site, %why, "connection refused");
                    e.note_failure(why, true);
                }
                None => e.note_failure(error.to_string(), false),
            }
        }
        e.session.handle_disconnected(now_ms);
        // Events of the last moments (e.g. a close) are for the operator only.
        drain_events(shared.site_id, peer.site, &mut e);
        e.link = Link::Idle;
        e.cert = None;
        e.close = None;
        // Stale readers and writers of this connection now touch nothing.
        e.gen += 1;
    }
    end
}

fn note_error(peer: &Peer, gen: u64, why: String) {
    let mut e = peer.entry.lock();
    if e.gen == gen {
        e.note_failure(why, false);
    }
}

/// Timeouts, then `poll_transmit` up to the round's byte budget, under the
/// engine lock; `None` when this connection no longer carries the session.
fn output_round(shared: &Shared, peer: &Peer, gen: u64) -> Option<Round> {
    let mut engine = shared.engine.lock();
    let mut e = peer.entry.lock();
    if e.gen != gen {
        return None;
    }
    let now_ms = shared.clock.now_ms();
    if e.session.poll_timeout().is_some_and(|at| now_ms >= at) {
        e.session.handle_timeout(now_ms, &mut engine);
    }
    let mut frames = Vec::new();
    let mut bytes = 0usize;
    while bytes < WRITE_ROUND_BYTES_MAX {
        match e.session.poll_transmit(now_ms, &engine) {
            Some(frame) => {
                bytes += frame.len();
                frames.push(Bytes::from(frame));
            }
            None => break,
        }
    }
    drain_events(shared.site_id, peer.site, &mut e);
    Some(Round {
        frames,
        more: bytes >= WRITE_ROUND_BYTES_MAX,
        connected: session_connected(e.session.state()),
        close: e.close.take(),
        deadline_ms: e.session.poll_timeout(),
    })
}

/// Reads the stream and feeds the session, applying each chunk in slices of
/// `APPLY_SLICE_OPS_MAX`; after each chunk wakes the writer, and every other
/// peer when the engine changed (their peers may need it).
async fn read_loop(shared: Arc<Shared>, peer: Arc<Peer>, mut recv: RecvStream, gen: u64) {
    loop {
        let chunk = match recv.read_chunk(READ_CHUNK_BYTES_MAX, true).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                note_error(&peer, gen, "peer finished the stream".into());
                break;
            }
            Err(e) => {
                note_error(&peer, gen, format!("read: {e}"));
                break;
            }
        };
        let mut pushed = false;
        let mut applied_in_chunk = false;
        loop {
            let (more, connected) = {
                let mut engine = shared.engine.lock();
                let mut e = peer.entry.lock();
                if e.gen != gen {
                    return;
                }
                let now_ms = shared.clock.now_ms();
                if !pushed {
                    e.session.push_bytes(now_ms, &chunk.bytes);
                    pushed = true;
                }
                let applied_before = engine.vv().total();
                let acks_before = e.session.stats().acks_received;
                let more = e
                    .session
                    .handle_received(now_ms, &mut engine, APPLY_SLICE_OPS_MAX);
                if e.session.stats().acks_received != acks_before {
                    shared.acks.send_modify(|v| *v = v.wrapping_add(1));
                }
                let applied = engine.vv().total() != applied_before;
                applied_in_chunk |= applied;
                if !more && applied_in_chunk && engine.config().fsync == Fsync::Always {
                    // Durable before anything else is sent: the ack can go at
                    // once. One fsync per read chunk, not per slice. The mode
                    // is the engine's: `CONFIG SET appendfsync` reaches it.
                    if let Err(err) = engine.sync() {
                        tracing::error!(site = shared.site_id, error = %err, "engine sync failed");
                    }
                }
                drain_events(shared.site_id, peer.site, &mut e);
                let connected = session_connected(e.session.state());
                drop(e);
                // Hand the engine to a waiting client rather than taking it
                // straight back for the next slice.
                parking_lot::MutexGuard::unlock_fair(engine);
                (more, connected)
            };
            if !connected {
                peer.wake.notify_one();
                return;
            }
            if !more {
                break;
            }
            // The writers are woken once per chunk, as before slicing: waking
            // them per slice only made them contend for the engine lock.
            tokio::task::yield_now().await;
        }
        if applied_in_chunk {
            shared.notify_engine_changed();
        }
        peer.wake.notify_one();
    }
    peer.wake.notify_one();
}

// ---- periodic bookkeeping ----------------------------------------------------------

/// Samples the engine's vector for `time_lag_ms` and the peers' byte rates.
pub(crate) async fn tick_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(LAG_MARK_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.is_shut_down() {
            break;
        }
        let vv = shared.engine.lock().vv().clone();
        let now_ms = shared.clock.now_ms();
        {
            let mut marks = shared.lag_marks.lock();
            match marks.back_mut() {
                Some((last, seen_ms)) if *last == vv => *seen_ms = now_ms,
                _ => {
                    if marks.len() >= LAG_MARKS_MAX {
                        marks.pop_front();
                    }
                    marks.push_back((vv, now_ms));
                }
            }
        }
        let peers: Vec<Arc<Peer>> = shared.peers.lock().values().cloned().collect();
        for p in peers {
            let mut e = p.entry.lock();
            let elapsed = now_ms.saturating_sub(e.rate_at_ms);
            if elapsed < RATE_INTERVAL_MS {
                continue;
            }
            let stats = e.session.stats();
            let (bytes_in, bytes_out) = (stats.bytes_in, stats.bytes_out);
            let per_s =
                |now: u64, before: u64| now.saturating_sub(before).saturating_mul(1000) / elapsed;
            e.rate_per_s = (
                per_s(bytes_in, e.rate_bytes.0),
                per_s(bytes_out, e.rate_bytes.1),
            );
            e.rate_bytes = (bytes_in, bytes_out);
            e.rate_at_ms = now_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_engine::id::Origin;

    fn vv(entries: &[(u16, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for &(s, q) in entries {
            v.set(Origin::new(s, 0), q);
        }
        v
    }

    #[test]
    fn time_lag_is_the_age_of_the_last_state_the_peer_holds() {
        let marks: VecDeque<_> = [
            (vv(&[(1, 5)]), 1_000),
            (vv(&[(1, 9)]), 1_300),
            (vv(&[(1, 12)]), 1_600),
        ]
        .into_iter()
        .collect();
        let ours = vv(&[(1, 12)]);
        assert_eq!(time_lag_ms(&ours, &vv(&[(1, 12)]), &marks, 2_000), 0);
        assert_eq!(time_lag_ms(&ours, &vv(&[(1, 10)]), &marks, 2_000), 700);
        assert_eq!(time_lag_ms(&ours, &vv(&[(1, 5)]), &marks, 2_000), 1_000);
        // Behind every mark: the oldest mark's age, a lower bound.
        assert_eq!(time_lag_ms(&ours, &vv(&[]), &marks, 2_000), 1_000);
        assert_eq!(time_lag_ms(&ours, &vv(&[]), &VecDeque::new(), 2_000), 0);
    }

    #[test]
    fn the_lower_sites_outbound_connection_is_preferred_on_both_sides() {
        // Site 1 keeps what it dialed; site 2 keeps what it accepted from 1.
        assert!(preferred(1, 2, true));
        assert!(!preferred(1, 2, false));
        assert!(preferred(2, 1, false));
        assert!(!preferred(2, 1, true));
    }
}
