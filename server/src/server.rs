//! The listener, the state every connection shares, and shutdown.
//!
//! One tokio task accepts on each bound address and spawns one task per
//! client ([`crate::connection::serve`]). `maxclients` is enforced at
//! accept: the client gets `-ERR max number of clients reached` and is
//! closed. `CONFIG SET port/bind` rebinds the listeners at runtime, as
//! Redis does.
//!
//! Shutdown (SIGTERM, SIGINT or `SHUTDOWN`) first calls the store's
//! shutdown hook (flush + fsync of the op log, optional checkpoint); only
//! if that succeeds (or FORCE) does it stop accepting, close every client
//! and return, so the process exits 0 with nothing acknowledged left
//! unwritten.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::clients::ClientRegistry;
use crate::config::{Cli, ConfigError, ConfigStore, LogLevel, Settings};
use crate::peers_file::{PeerOverrides, PeersFileError};
use crate::stats::Stats;
use crate::store::{Store, StoreError};
use crate::sync_write::SyncWriteStats;

/// How often the `instantaneous_*` rates are sampled (Redis samples in its
/// 100 ms cron).
pub const RATES_SAMPLE_INTERVAL_MS: u64 = 100;
/// The reply a client over `maxclients` receives before being closed.
pub const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Peers(#[from] PeersFileError),
    #[error("can't listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// What a shutdown should do beyond flushing the op log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownRequest {
    /// Write a checkpoint too.
    pub checkpoint: bool,
    /// Stop even if the flush fails.
    pub force: bool,
}

/// Changes the log filter at runtime (`CONFIG SET loglevel`); installed by
/// the binary, which owns the subscriber.
pub type LogLevelHook = Box<dyn Fn(LogLevel) + Send + Sync>;

/// State shared by every connection.
pub struct ServerState {
    pub config: RwLock<ConfigStore>,
    settings: RwLock<Arc<Settings>>,
    pub stats: Stats,
    pub clients: ClientRegistry,
    /// Who listens to which channel (pub/sub is never stored).
    pub pubsub: Arc<crate::pubsub::PubSub>,
    /// The Lua interpreter, its scripts and the running script's state.
    pub scripts: crate::script::Scripts,
    /// Clients waiting in BLPOP and the other blocking pops.
    pub blocked: crate::blocked::Blocked,
    pub store: Store,
    /// Runtime `PEER ADD/REMOVE` changes, kept in the data directory.
    pub peer_overrides: Mutex<PeerOverrides>,
    /// `write-mode sync` outcomes.
    pub sync_writes: SyncWriteStats,
    /// `SLOWLOG`.
    pub slowlog: crate::slowlog::SlowLog,
    /// `CLIENT PAUSE`.
    pub pause: crate::pause::Pause,
    /// `LATENCY`: the latency monitor's events.
    pub latency: crate::latency::Monitor,
    pub started: Instant,
    pub run_id: String,
    pub executable: String,
    last_save_unix: AtomicU64,
    shutdown_tx: watch::Sender<bool>,
    /// Bumped when the listeners must be replaced (`CONFIG SET port/bind`).
    listeners_tx: watch::Sender<u64>,
    local_addrs: Mutex<Vec<SocketAddr>>,
    log_level_hook: Option<LogLevelHook>,
    /// The `Arc` this state lives in, so `CONFIG SET` can spawn listeners.
    me: std::sync::Weak<ServerState>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 40 hex characters that differ between runs (Redis's `run_id`). The
/// std hasher is seeded randomly per process, which is all this needs.
fn new_run_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let state = RandomState::new();
    let mut out = String::with_capacity(48);
    for i in 0u64..3 {
        let mut h = state.build_hasher();
        h.write_u64(i);
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(40);
    out
}

/// Resolves one `bind` entry (`127.0.0.1`, `::1`, `*`, `::*`, `-addr` for
/// optional) to a socket address.
fn bind_target(entry: &str, port: u16) -> Option<(SocketAddr, bool)> {
    let (entry, optional) = match entry.strip_prefix('-') {
        Some(rest) => (rest, true),
        None => (entry, false),
    };
    let ip: IpAddr = match entry {
        "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "::*" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        other => other.parse().ok()?,
    };
    Some((SocketAddr::new(ip, port), optional))
}

/// Binds every `bind` address on `port` (0: the first picks a free port and
/// the others reuse it).
fn bind_all(bind: &[String], port: u16) -> Result<Vec<std::net::TcpListener>, StartError> {
    let mut listeners = Vec::new();
    let mut port = port;
    let entries: Vec<String> = if bind.is_empty() {
        vec!["127.0.0.1".to_string()]
    } else {
        bind.to_vec()
    };
    for entry in &entries {
        let Some((addr, optional)) = bind_target(entry, port) else {
            return Err(StartError::Bind {
                addr: entry.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP address"),
            });
        };
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => {
                if port == 0 {
                    port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                }
                listener
                    .set_nonblocking(true)
                    .map_err(|source| StartError::Bind {
                        addr: addr.to_string(),
                        source,
                    })?;
                listeners.push(listener);
            }
            Err(e) if optional => {
                tracing::warn!(%addr, error = %e, "optional bind address skipped")
            }
            Err(source) => {
                return Err(StartError::Bind {
                    addr: addr.to_string(),
                    source,
                })
            }
        }
    }
    Ok(listeners)
}

impl ServerState {
    pub fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read())
    }

    pub fn last_save_unix(&self) -> u64 {
        self.last_save_unix.load(Ordering::Relaxed)
    }

    pub fn note_saved(&self) {
        self.last_save_unix.store(unix_now(), Ordering::Relaxed);
    }

    /// Addresses the listeners are bound to.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local_addrs.lock().clone()
    }

    pub fn config_file_display(&self) -> String {
        self.config
            .read()
            .config_file()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// True if `save` has rules, i.e. Redis would save on a plain SHUTDOWN.
    pub fn save_points_configured(&self) -> bool {
        self.config
            .read()
            .get("save")
            .is_some_and(|v| !v.is_empty())
    }

    /// Makes a successful `CONFIG SET` take effect. On failure the caller
    /// restores the previous configuration and replies with the error.
    ///
    /// `store_held`: the caller holds the store (a CONFIG SET inside
    /// MULTI/EXEC). The settings the engine keeps (appendfsync, the clock
    /// skew bound, the backlog size) lock it, so they are left for the
    /// caller to pass to [`ServerState::apply_store_settings`] once the
    /// store is released; locking it again here would wait forever.
    pub fn apply_config_change(
        &self,
        changed: &[&str],
        store_held: bool,
    ) -> Result<(), (String, String)> {
        let new = Arc::new(self.config.read().settings());
        let old = self.settings();
        if changed.iter().any(|n| *n == "port" || *n == "bind")
            && (new.port != old.port || new.bind != old.bind)
        {
            self.rebind(&new).map_err(|reason| {
                let name = if new.port != old.port { "port" } else { "bind" };
                (name.to_string(), reason)
            })?;
        }
        if !store_held {
            self.apply_store_settings(&old, &new);
        }
        if new.anti_entropy_interval_secs != old.anti_entropy_interval_secs {
            if let Some(r) = self.store.replication() {
                r.set_anti_entropy_interval_ms(new.anti_entropy_interval_secs.saturating_mul(1000));
            }
        }
        if new.loglevel != old.loglevel {
            if let Some(hook) = &self.log_level_hook {
                hook(new.loglevel);
            }
        }
        self.configure_notifier(&new);
        *self.settings.write() = new;
        Ok(())
    }

    /// The part of a configuration change that the store keeps, from `old`
    /// to `new`. Takes the store's locks: never called while holding it.
    pub fn apply_store_settings(&self, old: &Settings, new: &Settings) {
        if new.appendfsync != old.appendfsync {
            self.store.set_appendfsync(new.appendfsync);
        }
        if new.repl_backlog_size != old.repl_backlog_size {
            self.store.set_backlog_bytes_max(new.repl_backlog_size);
        }
        if new.max_clock_skew_ms != old.max_clock_skew_ms {
            self.store.set_max_clock_skew(new.max_clock_skew_ms);
        }
    }

    /// Keyspace notifications follow `notify-keyspace-events` and the
    /// pub/sub output limit.
    fn configure_notifier(&self, settings: &Settings) {
        self.store.notifier().configure(
            settings.notify_keyspace_events,
            settings.pubsub_output_limit,
        );
    }

    fn rebind(&self, new: &Settings) -> Result<(), String> {
        let listeners = bind_all(&new.bind, new.port).map_err(|e| {
            tracing::warn!(error = %e, "rebinding failed");
            if new.port != self.settings().port {
                "Unable to listen on this port. Check server logs.".to_string()
            } else {
                "Failed to bind to specified addresses.".to_string()
            }
        })?;
        let generation = *self.listeners_tx.borrow() + 1;
        self.listeners_tx.send_replace(generation);
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        self.spawn_listeners(&runtime, listeners, generation)?;
        Ok(())
    }

    fn spawn_listeners(
        &self,
        runtime: &tokio::runtime::Handle,
        listeners: Vec<std::net::TcpListener>,
        generation: u64,
    ) -> Result<(), String> {
        let state = self.self_arc()?;
        let mut addrs = Vec::new();
        let _enter = runtime.enter();
        for listener in listeners {
            let listener = TcpListener::from_std(listener).map_err(|e| e.to_string())?;
            if let Ok(addr) = listener.local_addr() {
                addrs.push(addr);
            }
            runtime.spawn(accept_loop(Arc::clone(&state), listener, generation));
        }
        *self.local_addrs.lock() = addrs;
        Ok(())
    }

    fn self_arc(&self) -> Result<Arc<ServerState>, String> {
        self.me
            .upgrade()
            .ok_or_else(|| "server state not running".to_string())
    }

    /// Flushes the store and, if that works (or `force`), starts stopping
    /// the server. Safe to call more than once.
    pub fn shutdown(&self, request: ShutdownRequest) -> Result<(), StoreError> {
        if let Err(e) = self.store.shutdown(request.checkpoint) {
            if !request.force {
                return Err(e);
            }
            tracing::warn!(error = %e, "store shutdown failed; forcing");
        }
        self.shutdown_tx.send_replace(true);
        Ok(())
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown_tx.borrow()
    }

    pub fn subscribe_shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }
}

/// A started server: listening, not yet waiting for shutdown.
pub struct Server {
    pub state: Arc<ServerState>,
    /// SIGTERM and SIGINT, caught from the start: a signal that arrives
    /// once clients are served, before `run_until_shutdown` runs, must stop
    /// the server cleanly, not kill it.
    signals: Option<Signals>,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Option<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some(Signals { term, int }),
            _ => {
                tracing::warn!("can't install signal handlers; only SHUTDOWN stops the server");
                None
            }
        }
    }
}

impl Server {
    /// Loads the configuration, opens the store and binds the listeners.
    /// Must run inside a tokio runtime.
    pub fn start(cli: &Cli, log_level_hook: Option<LogLevelHook>) -> Result<Server, StartError> {
        let mut config = ConfigStore::from_cli(cli)?;
        let settings = config.settings();
        // Before the data is loaded, as Redis's `startup.allocated`.
        crate::memory::note_startup();
        let store = Store::open_with(
            &settings.dir,
            settings.site_id,
            settings.appendfsync,
            cli.salvage,
            Some(settings.repl_backlog_size),
            // No peer flag and no TLS: replication cannot start, so this
            // site is alone (a runtime PEER ADD needs TLS configured, and
            // the first peer session ends it anyway).
            cli.peers.is_empty() && cli.tls_ca.is_none(),
        )?;
        store.set_max_clock_skew(settings.max_clock_skew_ms);
        config.set_dir_absolute(store.dir());
        let peer_overrides = PeerOverrides::load(store.dir())?;
        // Before any listener accepts: see `Server::signals`.
        let signals = Signals::install();
        let listeners = bind_all(&settings.bind, settings.port)?;
        if let Some(port) = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
        {
            config.set_port_bound(port);
        }
        let settings = Arc::new(config.settings());
        let executable = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let (shutdown_tx, _) = watch::channel(false);
        let (listeners_tx, _) = watch::channel(0u64);
        let state = Arc::new_cyclic(|me| ServerState {
            config: RwLock::new(config),
            settings: RwLock::new(settings),
            stats: Stats::default(),
            clients: ClientRegistry::default(),
            pubsub: Arc::default(),
            scripts: crate::script::Scripts::default(),
            blocked: crate::blocked::Blocked::default(),
            store,
            peer_overrides: Mutex::new(peer_overrides),
            sync_writes: SyncWriteStats::default(),
            slowlog: crate::slowlog::SlowLog::default(),
            pause: crate::pause::Pause::default(),
            latency: crate::latency::Monitor::default(),
            started: Instant::now(),
            run_id: new_run_id(),
            executable,
            last_save_unix: AtomicU64::new(unix_now()),
            shutdown_tx,
            listeners_tx,
            local_addrs: Mutex::new(Vec::new()),
            log_level_hook,
            me: me.clone(),
        });
        state.store.notifier().bind(Arc::clone(&state.pubsub));
        state.configure_notifier(&state.settings());
        let runtime = tokio::runtime::Handle::current();
        state
            .spawn_listeners(&runtime, listeners, 0)
            .map_err(|e| StartError::Bind {
                addr: "listener".to_string(),
                source: std::io::Error::other(e),
            })?;
        tokio::spawn(sample_rates(Arc::clone(&state)));
        Ok(Server { state, signals })
    }

    /// Starts replication when peers (from `--peer` and the runtime changes
    /// kept in the data directory) or TLS are configured; returns a line
    /// saying where it listens.
    /// Starts replication when peers or TLS files are configured. Its tasks
    /// (the QUIC endpoint, one per peer) run on `runtime`.
    pub async fn start_replication(
        &self,
        cli: &Cli,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Option<String>, String> {
        use chorus_replication::quic::{Replication, ReplicationConfig, TlsIdentity};
        let flags = cli
            .peers
            .iter()
            .map(|p| crate::config::parse_peer(p))
            .collect::<Result<Vec<_>, _>>()?;
        let peers = self.state.peer_overrides.lock().apply(&flags);
        if peers.is_empty() && cli.tls_ca.is_none() {
            return Ok(None);
        }
        let (Some(ca), Some(cert), Some(key)) = (&cli.tls_ca, &cli.tls_cert, &cli.tls_key) else {
            return Err("replication needs --tls-ca, --tls-cert and --tls-key (make them with `chorus-server cert`)".into());
        };
        let tls = TlsIdentity::load(ca, cert, key).map_err(|e| e.to_string())?;
        let settings = self.state.settings();
        let port = match cli.repl_port {
            Some(p) => p,
            None if settings.port == 0 => 0,
            None => settings
                .port
                .checked_add(10000)
                .ok_or("--repl-port is needed when port + 10000 > 65535")?,
        };
        let host = settings
            .bind
            .first()
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into());
        let ip: std::net::IpAddr = host
            .trim_start_matches('-')
            .parse()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let mut config = ReplicationConfig::new(
            settings.site_id,
            cli.cluster_id.unwrap_or(1),
            SocketAddr::new(ip, port),
            tls,
        );
        config.peers = peers;
        config.session.anti_entropy_interval_ms =
            settings.anti_entropy_interval_secs.saturating_mul(1000);
        let engine = self.state.store.engine_handle();
        let r = runtime
            .spawn(Replication::start(config, engine))
            .await
            .map_err(|e| format!("replication did not start: {e}"))?
            .map_err(|e| e.to_string())?;
        let line = format!(
            "replication (site {}, cluster {}) listening on {} (QUIC, mutual TLS)",
            settings.site_id,
            cli.cluster_id.unwrap_or(1),
            r.local_addr()
        );
        // Messages published at other sites reach this site's subscribers.
        let state = Arc::downgrade(&self.state);
        r.set_pubsub_sink(Arc::new(move |p| {
            if let Some(state) = state.upgrade() {
                let limit = state.settings().pubsub_output_limit;
                state.pubsub.publish(&p.channel, &p.payload, p.shard, limit);
            }
        }));
        self.state.store.set_replication(r);
        self.announce_client_addr();
        Ok(Some(line))
    }

    /// Records where this site's clients connect, as cluster data, for the
    /// redirects of units this site is the home of: `replica-announce-ip`
    /// and `replica-announce-port` when set, else the first bind address
    /// and the port bound.
    fn announce_client_addr(&self) {
        let (host, port) = {
            let config = self.state.config.read();
            let settings = self.state.settings();
            let host = config
                .get("replica-announce-ip")
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .or_else(|| {
                    settings
                        .bind
                        .first()
                        .map(|b| b.trim_start_matches('-').to_owned())
                })
                .unwrap_or_else(|| "127.0.0.1".to_owned());
            let port = config
                .get("replica-announce-port")
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .unwrap_or(settings.port);
            (host, port)
        };
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let done = self
            .state
            .store
            .lock()
            .cluster_write(|e, now| e.announce_addr(&addr, now));
        if !matches!(done, Ok(Ok(()))) {
            tracing::warn!(
                addr,
                "could not record this site's client address for unit redirects"
            );
        }
    }

    /// The line printed at startup: where clients connect and where data is.
    pub fn startup_line(&self) -> String {
        let addrs: Vec<String> = self
            .state
            .local_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        format!(
            "chorus-server {} (site {}) listening on {} with data in {}",
            env!("CARGO_PKG_VERSION"),
            self.state.settings().site_id,
            addrs.join(", "),
            self.state.store.dir().display()
        )
    }

    /// Serves until SIGTERM, SIGINT or `SHUTDOWN`. Returns the process exit
    /// code: 0 after a clean stop, 1 if the final flush failed.
    pub async fn run_until_shutdown(self) -> i32 {
        let state = self.state;
        let mut shutdown = state.subscribe_shutdown();
        let signal = wait_for_signal(self.signals);
        tokio::pin!(signal);
        let code = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => 0,
            name = &mut signal => {
                tracing::info!(signal = name, "received signal, shutting down");
                let request = signal_shutdown_request(&state, name);
                match state.shutdown(request) {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::error!(error = %e, "flushing the op log failed during shutdown");
                        eprintln!("chorus-server: shutdown failed: {e}");
                        1
                    }
                }
            }
        };
        // Stop accepting and close every client; their tasks end on their own.
        state.shutdown_tx.send_replace(true);
        state.clients.kill_all();
        let deadline = Instant::now() + Duration::from_secs(2);
        while state.clients.count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        code
    }
}

/// The request a signal makes, from `shutdown-on-sigterm` /
/// `shutdown-on-sigint` (`default`: checkpoint if save points are set).
fn signal_shutdown_request(state: &ServerState, signal: &str) -> ShutdownRequest {
    let name = if signal == "SIGINT" {
        "shutdown-on-sigint"
    } else {
        "shutdown-on-sigterm"
    };
    let flags = state
        .config
        .read()
        .get(name)
        .unwrap_or("default")
        .to_string();
    let has = |f: &str| flags.split(' ').any(|w| w == f);
    ShutdownRequest {
        checkpoint: if has("save") {
            true
        } else if has("nosave") {
            false
        } else {
            state.save_points_configured()
        },
        force: has("force"),
    }
}

async fn wait_for_signal(signals: Option<Signals>) -> &'static str {
    match signals {
        Some(mut s) => tokio::select! {
            _ = s.term.recv() => "SIGTERM",
            _ = s.int.recv() => "SIGINT",
        },
        None => std::future::pending().await,
    }
}

async fn sample_rates(state: Arc<ServerState>) {
    let mut tick = tokio::time::interval(Duration::from_millis(RATES_SAMPLE_INTERVAL_MS));
    let mut shutdown = state.subscribe_shutdown();
    loop {
        tokio::select! {
            _ = tick.tick() => state.stats.sample_rates(Instant::now()),
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // Expiry and the group commit take the engine lock: keep them off
        // the async worker threads. A checkpoint runs on a thread of its own,
        // started from the tick itself, so the ticks go on meanwhile (the
        // store runs one checkpoint at a time).
        let st = Arc::clone(&state);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(job) = st.store.tick() {
                job.start();
            }
        })
        .await;
    }
}

async fn accept_loop(state: Arc<ServerState>, listener: TcpListener, generation: u64) {
    let mut shutdown = state.subscribe_shutdown();
    let mut listeners = state.listeners_tx.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|s| *s) => return,
            _ = listeners.wait_for(|g| *g != generation) => return,
        };
        match accepted {
            Ok((stream, addr)) => admit(&state, stream, addr).await,
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn admit(state: &Arc<ServerState>, mut stream: TcpStream, addr: SocketAddr) {
    use std::os::fd::AsRawFd;
    use tokio::io::AsyncWriteExt;
    let settings = state.settings();
    let local = stream.local_addr().unwrap_or(addr);
    let fd = stream.as_raw_fd();
    let Some(handle) = state
        .clients
        .register(addr, local, fd, settings.maxclients, Instant::now())
    else {
        Stats::add(&state.stats.rejected_connections, 1);
        // Best effort, like Redis: the client may already be gone.
        let _ = stream.write_all(MAX_CLIENTS_REPLY).await;
        let _ = stream.shutdown().await;
        return;
    };
    Stats::add(&state.stats.total_connections_received, 1);
    let _ = stream.set_nodelay(true);
    tokio::spawn(crate::connection::serve(Arc::clone(state), stream, handle));
}
