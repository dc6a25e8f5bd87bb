//! The QUIC driver: runs one [`PeerSession`](crate::PeerSession) per peer
//! site over real QUIC with mutual TLS, for a site whose engine is shared with
//! the RESP server.
//!
//! It owns the sockets, the tasks and the clocks; every replication decision
//! stays in the sans-IO session. Per peer there is one long-lived task that
//! keeps the peer's `PeerSession` across connections (so a reconnect resumes
//! from what the peer acknowledged), dials with capped exponential backoff,
//! takes connections the accept loop hands it, and while connected writes what
//! `poll_transmit` yields; a reader task per connection feeds the bytes it
//! reads to `handle_bytes`. The engine lock is taken only around synchronous
//! session calls, never across an await.
//!
//! Invariants: at most one connection per peer carries a session; when two
//! exist (both sides dialed), the one dialed by the lower site id is kept on
//! both sides; an accepted connection is routed by the site its client
//! certificate names, and its session is pinned to that site, so no data from
//! a peer is applied before its certificate is known to name the site it
//! claims to be.

mod clock;
mod peer;
pub mod tls;
pub mod transport;

pub use clock::wall_ms;
pub use peer::{
    PubSubSink, CONN_EVENTS_QUEUED_MAX, HANDSHAKES_PENDING_MAX, LAG_MARKS_MAX,
    LAG_MARK_INTERVAL_MS, RATE_INTERVAL_MS, READ_CHUNK_BYTES_MAX, REFUSAL_FLUSH_MS,
    WRITE_ROUND_BYTES_MAX,
};
pub use tls::{TlsError, TlsIdentity};

use crate::backoff::{BACKOFF_BASE_MS_DEFAULT, BACKOFF_MAX_MS_DEFAULT};
use crate::pubsub::PubSubStats;
use crate::session::{ConfigError, SessionConfig, SessionStats};
use bytes::Bytes;
use chorus_engine::id::{Origin, SiteId, VersionVector};
use chorus_engine::Engine;
use clock::Clock;
use parking_lot::Mutex;
use peer::{Peer, Shared};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::task::JoinHandle;

/// How long `shutdown` waits for each peer task to close its connection.
pub const SHUTDOWN_WAIT_MS: u64 = 2_000;
/// How long `shutdown` then lets the endpoint drain. The close frames go out
/// at once; a half-open dial (no RTT sample yet) would otherwise take seconds
/// (3 PTOs at quinn's initial RTT) to drain, which helps nobody.
pub const CLOSE_DRAIN_MS: u64 = 500;
/// Default UDP socket buffer size requested from the kernel.
pub const UDP_BUFFER_BYTES_DEFAULT: usize = 4 << 20;

/// Everything a site needs to replicate over QUIC.
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    pub site_id: SiteId,
    pub cluster_id: u64,
    /// The replication port (UDP); port 0 picks one (see `Replication::local_addr`).
    pub listen: SocketAddr,
    /// Peers to dial. Only these sites (and those added with `add_peer`) are
    /// accepted when they dial us.
    pub peers: Vec<(SiteId, SocketAddr)>,
    pub tls: TlsIdentity,
    /// Template for every peer's session; `cluster_id` and `peer_site_id` are
    /// filled in per peer.
    pub session: SessionConfig,
    /// QUIC keep-alive interval (quinn `TransportConfig::keep_alive_interval`).
    pub keep_alive_ms: u64,
    /// QUIC idle timeout (the smaller of both sides' applies); also bounds a
    /// connection attempt.
    pub idle_timeout_ms: u64,
    /// Reconnect backoff: first delay and cap (`Backoff`).
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Requested UDP socket send and receive buffer size; 0 keeps the OS default.
    pub udp_buffer_bytes: usize,
}

impl ReplicationConfig {
    /// Defaults: session `SessionConfig::new(cluster_id)`, keep-alive 1 s, idle
    /// timeout 10 s, backoff 100 ms .. 30 s, no peers. Under the engine's
    /// `appendfsync always` (read from the engine, so a runtime change applies
    /// at once) remote ops are synced before anything else is sent.
    pub fn new(
        site_id: SiteId,
        cluster_id: u64,
        listen: SocketAddr,
        tls: TlsIdentity,
    ) -> ReplicationConfig {
        ReplicationConfig {
            site_id,
            cluster_id,
            listen,
            peers: Vec::new(),
            tls,
            session: SessionConfig::new(cluster_id),
            keep_alive_ms: 1_000,
            idle_timeout_ms: 10_000,
            backoff_base_ms: BACKOFF_BASE_MS_DEFAULT,
            backoff_max_ms: BACKOFF_MAX_MS_DEFAULT,
            udp_buffer_bytes: UDP_BUFFER_BYTES_DEFAULT,
        }
    }
}

/// Why the driver could not start or a control call was refused.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Session(#[from] ConfigError),
    #[error("invalid replication config: {0}")]
    Config(String),
    #[error("cannot bind the replication port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("config says site {config} but the engine is site {engine}")]
    SiteMismatch { config: SiteId, engine: SiteId },
    #[error("site {0} cannot be its own peer")]
    SelfPeer(SiteId),
    #[error("peer {0} is listed twice")]
    DuplicatePeer(SiteId),
    #[error("replication is shut down")]
    ShutDown,
}

/// One peer as operators see it (`INFO replication`, `PEER LIST`, `PEER LAG`).
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStatus {
    pub site_id: SiteId,
    /// Where we dial it.
    pub addr: Option<SocketAddr>,
    /// The other end of the current connection, if connected.
    pub remote_addr: Option<SocketAddr>,
    /// Whether we dialed the current connection (`None`: not connected).
    pub dialed_by_us: Option<bool>,
    /// `connecting`, `handshake`, `full-sync`, `streaming`, `paused` or `down`.
    pub state: &'static str,
    /// Data to this peer is paused by an operator (kept across reconnects).
    pub paused: bool,
    /// Ops we hold that the peer has not durably acknowledged.
    pub ops_lag: u64,
    /// How long the oldest op the peer has not durably acknowledged has been
    /// here, to within `LAG_MARK_INTERVAL_MS`; 0 when it holds everything.
    pub time_lag_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Averaged over the last `RATE_INTERVAL_MS`.
    pub bytes_in_per_s: u64,
    pub bytes_out_per_s: u64,
    /// Driver time (ms since the UNIX epoch) of the last ack from the peer.
    pub last_ack_ms: Option<u64>,
    pub ops_sent: u64,
    pub ops_received: u64,
    pub ops_applied: u64,
    /// Connections that reached the handshake.
    pub connects: u64,
    /// The last attempt was refused (TLS, unknown site, handshake) rather
    /// than merely failing; `last_error` says why.
    pub refused: bool,
    /// Refusals counted since start.
    pub refusals: u64,
    /// Why the current or last connection (or attempt) failed.
    pub last_error: Option<String>,
    /// Why the peer was last refused, by either side (kept after it connects).
    pub last_refusal: Option<String>,
    /// The peer's durable acknowledged vector (what `WAIT` relies on).
    pub acked_vv: VersionVector,
    /// All of the session's counters.
    pub stats: SessionStats,
    /// Pub/sub messages to and from the peer.
    pub pubsub: PubSubStats,
}

/// The endpoint as a whole: refusals that belong to no known peer (a TLS
/// handshake that failed before the peer's site was known, an unknown site).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStatus {
    pub local_addr: SocketAddr,
    pub handshakes_refused: u64,
    pub last_refusal: Option<String>,
}

/// A running QUIC replication driver. Dropping it closes the endpoint; call
/// [`Replication::shutdown`] to also wait for the peers to be told.
pub struct Replication {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("site_id", &self.shared.site_id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Replication {
    /// Binds the replication port, starts the accept loop and one task per
    /// configured peer. Must be called inside a tokio runtime.
    pub async fn start(
        config: ReplicationConfig,
        engine: Arc<Mutex<Engine>>,
    ) -> Result<Replication, Error> {
        let engine_site = engine.lock().site_id();
        if engine_site != config.site_id {
            return Err(Error::SiteMismatch {
                config: config.site_id,
                engine: engine_site,
            });
        }
        let mut session = config.session.clone();
        session.cluster_id = config.cluster_id;
        session.peer_site_id = None;
        session.validate()?;
        if config.keep_alive_ms == 0 || config.keep_alive_ms >= config.idle_timeout_ms {
            return Err(Error::Config(
                "keep_alive_ms must be positive and below idle_timeout_ms".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for &(site, _) in &config.peers {
            if site == config.site_id {
                return Err(Error::SelfPeer(site));
            }
            if !seen.insert(site) {
                return Err(Error::DuplicatePeer(site));
            }
        }
        let transport = transport::transport_config(config.keep_alive_ms, config.idle_timeout_ms)?;
        let endpoint = transport::bind(
            config.listen,
            &config.tls,
            transport,
            config.udp_buffer_bytes,
        )?;
        let local_addr = endpoint.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let shared = Arc::new(Shared::new(
            &config,
            session,
            engine,
            endpoint,
            Clock::new(),
        ));
        for &(site, addr) in &config.peers {
            if let Err(e) = shared.add_peer(site, Some(addr)) {
                shared.begin_shutdown();
                shared.endpoint.close(peer::CLOSE_SHUTDOWN, b"start failed");
                return Err(e.into());
            }
        }
        let background = vec![
            tokio::spawn(peer::accept_loop(shared.clone())),
            tokio::spawn(peer::tick_loop(shared.clone())),
        ];
        tracing::info!(
            site = config.site_id,
            %local_addr,
            peers = config.peers.len(),
            "replication listening"
        );
        Ok(Replication {
            shared,
            local_addr,
            background: Mutex::new(background),
        })
    }

    /// The bound replication address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn site_id(&self) -> SiteId {
        self.shared.site_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    /// Wakes every peer session to look at the engine again. Call after local
    /// writes and after every `engine.sync()` (acks carry the durable vector).
    /// Cheap and coalescing: many calls between two polls wake a peer once.
    pub fn notify_local_write(&self) {
        self.shared.notify_engine_changed();
    }

    /// Adds a peer, or changes the address of a known one (and dials it at once).
    pub fn add_peer(&self, site: SiteId, addr: SocketAddr) -> Result<(), Error> {
        if self.shared.is_shut_down() {
            return Err(Error::ShutDown);
        }
        if site == self.shared.site_id {
            return Err(Error::SelfPeer(site));
        }
        self.shared.add_peer(site, Some(addr))?;
        Ok(())
    }

    /// Removes a peer: closes its connection and forgets its session. Its
    /// connections are refused from now on. False if it was not a peer.
    pub fn remove_peer(&self, site: SiteId) -> bool {
        self.shared.remove_peer(site)
    }

    /// Stops sending data to the peer (the connection, acks and heartbeats
    /// stay; what the peer sends is still applied). False if unknown.
    /// Pub/sub messages to the peer are dropped (and counted) meanwhile.
    pub fn pause(&self, site: SiteId) -> bool {
        if let Some(p) = self.shared.peer(site) {
            p.pubsub.set_paused(true);
        }
        self.shared.with_peer(site, |e| e.session.pause())
    }

    pub fn resume(&self, site: SiteId) -> bool {
        if let Some(p) = self.shared.peer(site) {
            p.pubsub.set_paused(false);
        }
        self.shared.with_peer(site, |e| e.session.resume())
    }

    /// Publishes a message at this site (`PUBLISH`, or `SPUBLISH` with
    /// `shard`): `deliver_here` hands it to this site's subscribers and its
    /// result is returned; the message is then queued, numbered, to every
    /// peer that speaks pub/sub (dropped and counted for the others). Both
    /// happen under one lock, so every site sees this site's messages in
    /// the same order.
    pub fn publish<R>(
        &self,
        shard: bool,
        channel: &Bytes,
        payload: &Bytes,
        deliver_here: impl FnOnce() -> R,
    ) -> R {
        let mut relay = self.shared.pubsub.relay.lock();
        let receivers = deliver_here();
        let p = relay.publish(shard, channel.clone(), payload.clone());
        self.shared.fan_out(None, p);
        drop(relay);
        receivers
    }

    /// Where messages published at other sites are delivered (this site's
    /// subscribers); called in each origin's publish order, under the relay
    /// lock, so it must not block. Without a sink they are still relayed.
    pub fn set_pubsub_sink(&self, sink: PubSubSink) {
        self.shared.pubsub.set_sink(sink);
    }

    /// Asks the peer for a full snapshot (`PEER RESYNC`), now or on the next
    /// connection. False if unknown.
    pub fn resync(&self, site: SiteId) -> bool {
        self.shared
            .with_peer(site, |e| e.session.request_full_sync())
    }

    /// Asks the peer for its digest buckets of `db` (reported in the log as
    /// matched or, with the differing buckets, as a divergence).
    pub fn request_digest(&self, site: SiteId, db: u8) -> bool {
        self.shared
            .with_peer(site, |e| e.session.request_digest(db))
    }

    /// Changes the anti-entropy interval of every peer, current and future
    /// (0 = off).
    pub fn set_anti_entropy_interval_ms(&self, interval_ms: u64) {
        self.shared.session_template.lock().anti_entropy_interval_ms = interval_ms;
        let now_ms = self.shared.clock.now_ms();
        let peers: Vec<Arc<Peer>> = self.shared.peers.lock().values().cloned().collect();
        for p in peers {
            self.shared.with_peer(p.site, |e| {
                e.session.set_anti_entropy_interval(interval_ms, now_ms)
            });
        }
    }

    /// Starts an anti-entropy round with the peer now (if the link is quiet
    /// enough to compare). False if unknown.
    pub fn request_anti_entropy(&self, site: SiteId) -> bool {
        self.shared
            .with_peer(site, |e| e.session.request_anti_entropy())
    }

    /// Changes the data rate limit to the peer (bytes/s, 0 = none).
    pub fn set_rate_limit(&self, site: SiteId, bytes_per_s: u64) -> bool {
        let now_ms = self.shared.clock.now_ms();
        self.shared
            .with_peer(site, |e| e.session.set_rate_limit(bytes_per_s, now_ms))
    }

    /// Every peer, by site id.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.shared.status(None)
    }

    pub fn peer_status(&self, site: SiteId) -> Option<PeerStatus> {
        self.shared.status(Some(site)).into_iter().next()
    }

    /// [`Replication::status`] for a caller that holds the engine lock
    /// already (a command inside MULTI/EXEC or a script): `status` would
    /// wait for that lock for good.
    pub fn status_locked(&self, engine: &Engine) -> Vec<PeerStatus> {
        self.shared.status_with(engine, None)
    }

    /// [`Replication::peer_status`] for a caller that holds the engine lock.
    pub fn peer_status_locked(&self, engine: &Engine, site: SiteId) -> Option<PeerStatus> {
        self.shared
            .status_with(engine, Some(site))
            .into_iter()
            .next()
    }

    /// The peer's durable acknowledged vector (for `WAIT`).
    pub fn acked_vv(&self, site: SiteId) -> Option<VersionVector> {
        let peer = self.shared.peer(site)?;
        let entry = peer.entry.lock();
        Some(entry.session.peer_acked_vv().clone())
    }

    /// Configured peers.
    pub fn peer_count(&self) -> usize {
        self.shared.peers.lock().len()
    }

    /// Peers whose durable ack covers op `seq` of `origin` (and so every
    /// earlier op of that origin).
    pub fn peers_covering(&self, origin: Origin, seq: u64) -> usize {
        let peers: Vec<Arc<Peer>> = self.shared.peers.lock().values().cloned().collect();
        peers
            .iter()
            .filter(|p| p.entry.lock().session.peer_acked_vv().get(origin) >= seq)
            .count()
    }

    /// Waits until at least `peers_min` peers durably acknowledged op `seq`
    /// of `origin`, or `timeout` passed; returns how many had. Holds no lock
    /// while waiting: it sleeps on the ack notifications of the readers.
    pub async fn wait_acked(
        &self,
        origin: Origin,
        seq: u64,
        peers_min: usize,
        timeout: Duration,
    ) -> usize {
        // Subscribed before the first look, so no ack can slip in between.
        let mut acks = self.shared.acks.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.peers_covering(origin, seq);
            if got >= peers_min || self.shared.is_shut_down() {
                return got;
            }
            tokio::select! {
                changed = acks.changed() => {
                    if changed.is_err() {
                        return self.peers_covering(origin, seq);
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    return self.peers_covering(origin, seq);
                }
            }
        }
    }

    /// What peer `site` has durably acknowledged, if it is connected.
    pub fn peer_acked_vv(&self, site: SiteId) -> Option<VersionVector> {
        let peer = self.shared.peer(site)?;
        let acked = peer.entry.lock().session.peer_acked_vv().clone();
        Some(acked)
    }

    /// What every current peer has durably acknowledged (the meet of their
    /// acked vectors), for `Engine::trim_backlog`; `None` without peers.
    pub fn acked_by_all(&self) -> Option<VersionVector> {
        let peers: Vec<Arc<Peer>> = self.shared.peers.lock().values().cloned().collect();
        let mut all: Option<VersionVector> = None;
        for p in peers {
            let entry = p.entry.lock();
            let acked = entry.session.peer_acked_vv();
            all = Some(match all {
                None => acked.clone(),
                Some(v) => v.meet(acked),
            });
        }
        all
    }

    pub fn endpoint_status(&self) -> EndpointStatus {
        EndpointStatus {
            local_addr: self.local_addr,
            handshakes_refused: self.shared.handshakes_refused.load(Ordering::Relaxed),
            last_refusal: self.shared.last_refusal.lock().clone(),
        }
    }

    /// Closes every connection (telling peers why), stops the tasks and the
    /// endpoint; waits at most `SHUTDOWN_WAIT_MS` per peer plus
    /// `CLOSE_DRAIN_MS`. Idempotent.
    pub async fn shutdown(&self) {
        self.shared.begin_shutdown();
        let wait = Duration::from_millis(SHUTDOWN_WAIT_MS);
        let tasks: Vec<JoinHandle<()>> = {
            let mut peers = self.shared.peers.lock();
            let tasks = peers
                .values()
                .filter_map(|p| p.task.lock().take())
                .collect();
            peers.clear();
            tasks
        };
        for mut t in tasks {
            if tokio::time::timeout(wait, &mut t).await.is_err() {
                tracing::warn!("a peer task did not stop in time");
                t.abort();
            }
        }
        self.shared
            .endpoint
            .close(peer::CLOSE_SHUTDOWN, b"shutdown");
        let drain = Duration::from_millis(CLOSE_DRAIN_MS);
        let _ = tokio::time::timeout(drain, self.shared.endpoint.wait_idle()).await;
        for t in self.background.lock().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Replication {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
        self.shared
            .endpoint
            .close(peer::CLOSE_SHUTDOWN, b"shutdown");
        for t in self.background.get_mut().drain(..) {
            t.abort();
        }
        for p in std::mem::take(&mut *self.shared.peers.lock()).into_values() {
            if let Some(t) = p.task.lock().take() {
                t.abort();
            }
        }
    }
}

/// Ordered view of the peers for status (by site id).
pub(crate) type PeerMap = BTreeMap<SiteId, Arc<Peer>>;
