//! An embedded site: the engine, its housekeeping and (optionally) QUIC
//! replication with mutual TLS, in the calling process.
//!
//! [`Site::open`] recovers the data directory and starts a housekeeping
//! thread (`chorus-site`): the same policy chorus-server runs (everysec group
//! commit, active expiry, checkpoints captured in slices and written off the
//! engine lock, backlog trimming). With [`Peering`] it also starts a tokio
//! runtime of its own for replication, so the caller needs none.
//!
//! Every data command of chorus-server is available through
//! [`Site::execute`]; the common ones have typed methods. Writes are applied
//! at once, replicated to peers and merged there by Chorus's CRDT rules.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chorus_engine::{Engine, EngineConfig, Fsync, Origin, Reply, VersionVector};
use chorus_replication::{Replication, ReplicationConfig, TlsIdentity};
use chorus_site::{ChangeFeed, Housekeeping, Now, SiteConfig, Subscription, Work};
use parking_lot::{Condvar, Mutex};

/// Why an embedded site failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory could not be opened.
    #[error(transparent)]
    Open(#[from] chorus_site::OpenError),
    /// Replication could not start (bad config, port in use, ...).
    #[error("replication: {0}")]
    Replication(#[from] chorus_replication::quic::Error),
    /// The certificates could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] chorus_replication::quic::tls::TlsError),
    /// A thread or the replication runtime could not be started.
    #[error("can't start the replication runtime: {0}")]
    Runtime(std::io::Error),
    /// The command's error reply, as a Redis client would see it.
    #[error("{0}")]
    Command(String),
    /// A reply of a shape the typed method did not expect.
    #[error("unexpected reply {0:?}")]
    Reply(Reply),
    /// The op log or a checkpoint could not be written: the site refuses
    /// writes until it is reopened.
    #[error("the op log or a checkpoint could not be written: {0}")]
    Storage(String),
}

/// How to open an embedded site ([`Site::open`]).
#[derive(Clone, Debug)]
pub struct SiteOptions {
    /// This site's id (1..65535), unique in the cluster.
    pub site_id: u16,
    /// Redis's `appendfsync`: `EverySec` (the default) makes writes durable
    /// within a second; `Always` before [`Site::execute`] returns.
    pub appendfsync: Fsync,
    /// Replication to other sites; `None` runs the site alone.
    pub peering: Option<Peering>,
}

impl SiteOptions {
    /// Site `site_id`, `appendfsync everysec`, no peers.
    pub fn new(site_id: u16) -> SiteOptions {
        SiteOptions {
            site_id,
            appendfsync: Fsync::Everysec,
            peering: None,
        }
    }
}

/// Replication over QUIC with mutual TLS, as chorus-server's `--peer`,
/// `--repl-port` and `--tls-*` flags set it up.
#[derive(Clone, Debug)]
pub struct Peering {
    /// Every site of one cluster shares it.
    pub cluster_id: u64,
    /// The UDP address to listen on (port 0 picks one: see
    /// [`Site::replication_addr`]).
    pub listen: SocketAddr,
    /// Peers to dial, by site id. Only these (and those added with
    /// [`Site::add_peer`]) are accepted when they dial in.
    pub peers: Vec<(u16, SocketAddr)>,
    /// The cluster CA certificate (PEM, `ca.pem` of `chorus-server cert ca`).
    pub ca: PathBuf,
    /// This site's certificate chain (`site.pem` of `chorus-server cert site`).
    pub cert: PathBuf,
    /// This site's private key (`site.key`).
    pub key: PathBuf,
}

/// Housekeeping period: the server's tick.
const TICK: Duration = Duration::from_millis(100);

struct Shared {
    engine: Arc<Mutex<Engine>>,
    /// Lock order: this, then the engine.
    housekeeping: Mutex<Housekeeping>,
    replication: Option<Replication>,
    runtime: Option<tokio::runtime::Runtime>,
    opened: Instant,
    stop: AtomicBool,
    stop_lock: Mutex<()>,
    stop_signal: Condvar,
    /// The op the last write through this handle made.
    last_write: Mutex<Option<(Origin, u64)>>,
    /// The change feed the engine publishes to (see [`Site::subscribe`]).
    changes: ChangeFeed,
}

/// A running embedded site (see the module docs). Cheap to share across
/// threads behind an `Arc`; every call takes the engine lock for its
/// duration, as a chorus-server command does.
pub struct Site {
    shared: Arc<Shared>,
    ticker: Option<JoinHandle<()>>,
    dir: PathBuf,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shared {
    fn now(&self) -> Now {
        Now {
            mono_ms: self.opened.elapsed().as_millis() as u64,
            wall_ms: wall_ms(),
        }
    }

    fn trim_to(&self, engine: &Engine) -> Option<VersionVector> {
        match &self.replication {
            Some(r) => r.acked_by_all(),
            None => Some(engine.vv().clone()),
        }
    }

    fn wake_peers(&self) {
        if let Some(r) = &self.replication {
            r.notify_local_write();
        }
    }

    /// One housekeeping tick, with its work run here: fsyncs and
    /// checkpoint writes without the engine lock, a capture one slice per
    /// hold of it.
    fn tick(&self) {
        let mut hk = self.housekeeping.lock();
        let mut engine = self.engine.lock();
        let trim_to = self.trim_to(&engine);
        hk.tick(&mut engine, self.now(), trim_to.as_ref());
        while let Some(work) = hk.poll_work() {
            match work {
                Work::WakePeers => self.wake_peers(),
                Work::ReleaseMemory => {}
                Work::Sync(sync) => {
                    drop(engine);
                    drop(hk);
                    let done = sync.wait();
                    hk = self.housekeeping.lock();
                    engine = self.engine.lock();
                    let trim_to = self.trim_to(&engine);
                    hk.sync_done(&mut engine, done, self.now(), trim_to.as_ref());
                }
                Work::Checkpoint => {
                    drop(engine);
                    drop(hk);
                    self.checkpoint();
                    hk = self.housekeeping.lock();
                    engine = self.engine.lock();
                }
            }
        }
    }

    /// Captures the checkpoint begun by the housekeeping a slice at a time,
    /// writes it without the engine lock and records it.
    fn checkpoint(&self) {
        let (pending, _) = chorus_site::capture_in_slices(|| {
            let mut hk = self.housekeeping.lock();
            let mut engine = self.engine.lock();
            hk.capture(&mut engine)
        });
        let Some(pending) = pending else {
            return;
        };
        let done = pending.write();
        let mut hk = self.housekeeping.lock();
        let mut engine = self.engine.lock();
        hk.checkpoint_done(&mut engine, done, self.now());
    }
}

impl Site {
    /// Opens (creating if needed) the site's data directory, recovers the
    /// engine and starts its housekeeping, and its replication if `peering`
    /// is set. Every open takes a new incarnation (wall-clock seconds at
    /// least), so a restored directory never reissues an OpId.
    pub fn open(dir: impl AsRef<Path>, options: SiteOptions) -> Result<Site, Error> {
        let mut config = EngineConfig::new(options.site_id);
        config.fsync = options.appendfsync;
        // Without replication the site is alone: counters fold at once.
        config.alone = options.peering.is_none();
        let (dir, mut engine) = chorus_site::open_engine(dir.as_ref(), config, wall_ms())?;
        // Every change the engine applies, whoever applies it (a command
        // here, the replication driver, the housekeeping's expiry), is
        // published before the engine is released.
        let changes = ChangeFeed::default();
        changes.attach(&mut engine);
        let opened = Instant::now();
        let now = Now {
            mono_ms: 0,
            wall_ms: wall_ms(),
        };
        let site_config = SiteConfig {
            // Giving freed memory back is the server's business (its
            // allocator); an embedding program has its own.
            release_memory: false,
            ..SiteConfig::default()
        };
        let mut housekeeping = Housekeeping::new(site_config, &engine, now, 0);
        let engine = Arc::new(Mutex::new(engine));
        let (runtime, replication) = match &options.peering {
            None => {
                // No peer reads the backlog of a site without replication.
                let mut e = engine.lock();
                e.set_backlog_bytes_max(0);
                e.set_backlog_tail_bytes_max(0);
                drop(e);
                (None, None)
            }
            Some(p) => {
                let tls = TlsIdentity::load(&p.ca, &p.cert, &p.key)?;
                let mut rc = ReplicationConfig::new(options.site_id, p.cluster_id, p.listen, tls);
                rc.peers = p.peers.clone();
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("chorus-repl")
                    .enable_all()
                    .build()
                    .map_err(Error::Runtime)?;
                let r = runtime.block_on(Replication::start(rc, Arc::clone(&engine)))?;
                housekeeping.set_replicating(true);
                (Some(runtime), Some(r))
            }
        };
        let shared = Arc::new(Shared {
            engine,
            housekeeping: Mutex::new(housekeeping),
            replication,
            runtime,
            opened,
            stop: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop_signal: Condvar::new(),
            last_write: Mutex::new(None),
            changes,
        });
        let theirs = Arc::clone(&shared);
        let ticker = std::thread::Builder::new()
            .name("chorus-site".into())
            .spawn(move || loop {
                {
                    let mut g = theirs.stop_lock.lock();
                    if theirs.stop.load(Ordering::Acquire) {
                        return;
                    }
                    theirs.stop_signal.wait_for(&mut g, TICK);
                    if theirs.stop.load(Ordering::Acquire) {
                        return;
                    }
                }
                theirs.tick();
            })
            .map_err(Error::Runtime)?;
        Ok(Site {
            shared,
            ticker: Some(ticker),
            dir,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs one data command in database `db`, as chorus-server would
    /// (`args[0]` is the command name: `execute(0, &[b"SET", b"k", b"v"])`),
    /// and returns its reply. A write is replicated to the peers; under
    /// `appendfsync always` it is durable before this returns.
    pub fn execute(&self, db: u8, args: &[&[u8]]) -> Reply {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        let mut engine = self.shared.engine.lock();
        let before = engine.last_local_seq();
        let reply = engine.execute(db, &args, wall_ms());
        let seq = engine.last_local_seq();
        if seq != before {
            *self.shared.last_write.lock() = Some((engine.origin(), seq));
            if engine.config().fsync == Fsync::Always {
                if let Err(e) = engine.sync() {
                    return Reply::err(format!(
                        "MISCONF Errors writing to the op log: {e}; the write is applied in memory but not durable"
                    ));
                }
            }
            drop(engine);
            self.shared.wake_peers();
        }
        reply
    }

    /// Runs several commands as one MULTI/EXEC transaction: one op,
    /// applied atomically here and at every peer. Returns each reply.
    pub fn transaction(&self, db: u8, commands: &[&[&[u8]]]) -> Vec<Reply> {
        let cmds: Vec<(u8, Vec<Bytes>)> = commands
            .iter()
            .map(|c| (db, c.iter().map(|a| Bytes::copy_from_slice(a)).collect()))
            .collect();
        let mut engine = self.shared.engine.lock();
        let before = engine.last_local_seq();
        let replies = engine.execute_multi(&cmds, wall_ms());
        let seq = engine.last_local_seq();
        if seq != before {
            *self.shared.last_write.lock() = Some((engine.origin(), seq));
            if engine.config().fsync == Fsync::Always {
                if let Err(e) = engine.sync() {
                    tracing::error!(error = %e, "op log sync failed; writes are refused");
                }
            }
            drop(engine);
            self.shared.wake_peers();
        }
        replies
    }

    fn call(&self, args: &[&[u8]]) -> Result<Reply, Error> {
        match self.execute(0, args) {
            Reply::Error(e) => Err(Error::Command(e)),
            r => Ok(r),
        }
    }

    /// `GET key` (database 0).
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, Error> {
        match self.call(&[b"GET", key])? {
            Reply::Bulk(b) => Ok(Some(b)),
            Reply::Nil => Ok(None),
            r => Err(Error::Reply(r)),
        }
    }

    /// `SET key value`.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.call(&[b"SET", key, value]).map(|_| ())
    }

    /// `DEL key`: true if the key existed.
    pub fn del(&self, key: &[u8]) -> Result<bool, Error> {
        int(self.call(&[b"DEL", key])?).map(|n| n > 0)
    }

    /// `INCRBY key by`: the new value. Concurrent increments at several
    /// sites all count.
    pub fn incr_by(&self, key: &[u8], by: i64) -> Result<i64, Error> {
        int(self.call(&[b"INCRBY", key, by.to_string().as_bytes()])?)
    }

    /// `HSET key field value`: true if the field is new.
    pub fn hset(&self, key: &[u8], field: &[u8], value: &[u8]) -> Result<bool, Error> {
        int(self.call(&[b"HSET", key, field, value])?).map(|n| n > 0)
    }

    /// `HGET key field`.
    pub fn hget(&self, key: &[u8], field: &[u8]) -> Result<Option<Bytes>, Error> {
        match self.call(&[b"HGET", key, field])? {
            Reply::Bulk(b) => Ok(Some(b)),
            Reply::Nil => Ok(None),
            r => Err(Error::Reply(r)),
        }
    }

    /// `HGETALL key` as field-value pairs.
    pub fn hgetall(&self, key: &[u8]) -> Result<Vec<(Bytes, Bytes)>, Error> {
        match self.call(&[b"HGETALL", key])? {
            Reply::Map(kv) => kv
                .into_iter()
                .map(|(k, v)| match (k, v) {
                    (Reply::Bulk(k), Reply::Bulk(v)) => Ok((k, v)),
                    (k, _) => Err(Error::Reply(k)),
                })
                .collect(),
            r => Ok(pairs(bulks(r)?)),
        }
    }

    /// `SADD key member`: true if the member is new.
    pub fn sadd(&self, key: &[u8], member: &[u8]) -> Result<bool, Error> {
        int(self.call(&[b"SADD", key, member])?).map(|n| n > 0)
    }

    /// `SREM key member`: true if the member was there.
    pub fn srem(&self, key: &[u8], member: &[u8]) -> Result<bool, Error> {
        int(self.call(&[b"SREM", key, member])?).map(|n| n > 0)
    }

    /// `SMEMBERS key`, sorted (Redis leaves the order open).
    pub fn smembers(&self, key: &[u8]) -> Result<Vec<Bytes>, Error> {
        let mut m = bulks(self.call(&[b"SMEMBERS", key])?)?;
        m.sort();
        Ok(m)
    }

    /// `ZADD key score member`: true if the member is new.
    pub fn zadd(&self, key: &[u8], score: f64, member: &[u8]) -> Result<bool, Error> {
        int(self.call(&[b"ZADD", key, score.to_string().as_bytes(), member])?).map(|n| n > 0)
    }

    /// `ZSCORE key member`.
    pub fn zscore(&self, key: &[u8], member: &[u8]) -> Result<Option<f64>, Error> {
        match self.call(&[b"ZSCORE", key, member])? {
            Reply::Nil => Ok(None),
            r => score(r).map(Some),
        }
    }

    /// `ZRANGE key start stop WITHSCORES` as member-score pairs.
    pub fn zrange_with_scores(
        &self,
        key: &[u8],
        start: i64,
        stop: i64,
    ) -> Result<Vec<(Bytes, f64)>, Error> {
        let (a, b) = (start.to_string(), stop.to_string());
        let items = match self.call(&[b"ZRANGE", key, a.as_bytes(), b.as_bytes(), b"WITHSCORES"])? {
            Reply::Array(items) => items,
            Reply::Pairs(pairs) => pairs.into_iter().flat_map(|(m, s)| [m, s]).collect(),
            r => return Err(Error::Reply(r)),
        };
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(m), Some(s)) = (it.next(), it.next()) {
            match m {
                Reply::Bulk(m) => out.push((m, score(s)?)),
                other => return Err(Error::Reply(other)),
            }
        }
        Ok(out)
    }

    /// Keys in database 0 (`DBSIZE`).
    pub fn dbsize(&self) -> usize {
        self.shared.engine.lock().dbsize(0)
    }

    /// `DEBUG DIGEST`: equal at two sites that hold the same ops.
    pub fn digest(&self) -> String {
        self.shared.engine.lock().digest_hex()
    }

    /// The ops this site holds, per origin.
    pub fn version_vector(&self) -> VersionVector {
        self.shared.engine.lock().vv().clone()
    }

    /// Makes every write so far durable (an fsync of the op log).
    pub fn wait_durable(&self) -> Result<(), Error> {
        let sync = self
            .shared
            .engine
            .lock()
            .sync_begin()
            .map_err(|e| Error::Storage(e.to_string()))?;
        if let Some(sync) = sync {
            let done = sync.wait();
            self.shared
                .engine
                .lock()
                .sync_finish(done)
                .map_err(|e| Error::Storage(e.to_string()))?;
        }
        self.shared.wake_peers();
        Ok(())
    }

    /// Waits until at least `peers` peers durably hold the last write made
    /// through this handle, or `timeout` passed; returns how many do (as
    /// Redis's `WAIT`). Without peers or writes: 0 at once.
    pub fn wait_replicated(&self, peers: usize, timeout: Duration) -> usize {
        let (Some(r), Some(rt)) = (&self.shared.replication, &self.shared.runtime) else {
            return 0;
        };
        let Some((origin, seq)) = *self.shared.last_write.lock() else {
            return 0;
        };
        rt.block_on(r.wait_acked(origin, seq, peers, timeout))
    }

    /// The bound replication address (with port 0 in [`Peering::listen`]).
    pub fn replication_addr(&self) -> Option<SocketAddr> {
        self.shared
            .replication
            .as_ref()
            .map(Replication::local_addr)
    }

    /// Subscribes to this site's changes, local and replicated: every key
    /// written, deleted or expired here or by a peer's op, with where the
    /// change came from ([`ChangeSource::Local`](crate::ChangeSource::Local),
    /// or [`ChangeSource::Peer`](crate::ChangeSource::Peer) and the origin
    /// of the op). The subscription
    /// sees every change applied after this returns, in the order applied;
    /// it never slows the site down: past its bound (4096 changes) it
    /// receives [`Change::Lagged`](crate::Change::Lagged) instead, and should read again what it
    /// watches. It ends (`recv` returns `Err`) when the site stops; drop it
    /// to unsubscribe.
    ///
    /// ```no_run
    /// # use chorus::{Change, ChangeSource, Site, SiteOptions};
    /// # let site = Site::open("/tmp/chorus-doc-subscribe", SiteOptions::new(1))?;
    /// let changes = site.subscribe();
    /// site.set(b"k", b"v")?;
    /// match changes.recv_timeout(std::time::Duration::from_secs(1)) {
    ///     Ok(Change::Key { key, source: ChangeSource::Local, .. }) => assert_eq!(&key[..], b"k"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), chorus::Error>(())
    /// ```
    pub fn subscribe(&self) -> Subscription {
        // With the engine held: no change is half-applied.
        let _engine = self.shared.engine.lock();
        self.shared.changes.subscribe()
    }

    /// Adds (or re-addresses) a peer at runtime, as `PEER ADD` does; it is
    /// dialled and accepted from now on.
    pub fn add_peer(&self, site_id: u16, addr: SocketAddr) -> Result<(), Error> {
        match &self.shared.replication {
            Some(r) => r.add_peer(site_id, addr).map_err(Error::from),
            None => Err(Error::Command(
                "ERR this site was opened without peering".into(),
            )),
        }
    }

    /// Stops cleanly: replication closed, the housekeeping thread stopped,
    /// the op log synced, a checkpoint written and the stop marked clean.
    pub fn close(mut self) -> Result<(), Error> {
        self.stop_background();
        let mut engine = self.shared.engine.lock();
        engine
            .shutdown(wall_ms())
            .map_err(|e| Error::Storage(e.to_string()))
    }

    fn stop_background(&mut self) {
        {
            let _g = self.shared.stop_lock.lock();
            self.shared.stop.store(true, Ordering::Release);
            self.shared.stop_signal.notify_all();
        }
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let (Some(r), Some(rt)) = (&self.shared.replication, &self.shared.runtime) {
            rt.block_on(r.shutdown());
        }
        // Nothing applies changes any more: subscriptions end.
        self.shared.changes.close();
    }
}

impl Drop for Site {
    /// Without [`Site::close`]: background work stops, writes synced under
    /// `everysec` within the last second are durable, the rest is recovered
    /// from peers or lost as after a crash.
    fn drop(&mut self) {
        if self.ticker.is_some() {
            self.stop_background();
        }
    }
}

fn int(r: Reply) -> Result<i64, Error> {
    match r {
        Reply::Int(n) => Ok(n),
        r => Err(Error::Reply(r)),
    }
}

fn bulks(r: Reply) -> Result<Vec<Bytes>, Error> {
    match r {
        Reply::Array(items) | Reply::Set(items) => items
            .into_iter()
            .map(|i| match i {
                Reply::Bulk(b) => Ok(b),
                other => Err(Error::Reply(other)),
            })
            .collect(),
        r => Err(Error::Reply(r)),
    }
}

fn pairs(items: Vec<Bytes>) -> Vec<(Bytes, Bytes)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    out
}

/// A score: a double (RESP3) or its text (RESP2's bulk string).
fn score(r: Reply) -> Result<f64, Error> {
    match r {
        Reply::Double(d) => Ok(d),
        Reply::Bulk(b) => parse_f64(&b),
        r => Err(Error::Reply(r)),
    }
}

fn parse_f64(b: &[u8]) -> Result<f64, Error> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| match s {
            "inf" | "+inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            s => s.parse().ok(),
        })
        .ok_or_else(|| Error::Reply(Reply::Bulk(Bytes::copy_from_slice(b))))
}
