//! Helpers for the QUIC driver tests: a cluster CA in a tempdir, sites with
//! an engine on `MemoryStorage` and a `Replication` on an ephemeral loopback
//! port, and polling with a deadline.

#![allow(dead_code)]

use bytes::Bytes;
use chorus_engine::id::SiteId;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::{Engine, EngineConfig, Reply};
use chorus_replication::quic::{tls, wall_ms, PeerStatus, Replication, ReplicationConfig};
use chorus_replication::TlsIdentity;
use parking_lot::Mutex;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

pub const CLUSTER: u64 = 0xC0FFEE;
/// How long a test waits for anything before failing.
pub const DEADLINE: Duration = Duration::from_secs(8);
const POLL: Duration = Duration::from_millis(20);

/// A cluster CA and the certificates it signs, in a tempdir.
pub struct Ca {
    dir: TempDir,
    name: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let dir = tempfile::tempdir().expect("tempdir");
        tls::generate_ca(&dir.path().join(name)).expect("generate CA");
        Ca {
            dir,
            name: name.to_string(),
        }
    }

    fn ca_dir(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }

    /// Generates and loads the TLS identity of `site`.
    pub fn identity(&self, site: SiteId) -> TlsIdentity {
        let out = self.dir.path().join(format!("site{site}"));
        tls::generate_site(&self.ca_dir(), site, &out).expect("generate site cert");
        TlsIdentity::load(
            &self.ca_dir().join("ca.pem"),
            &out.join("site.pem"),
            &out.join("site.key"),
        )
        .expect("load identity")
    }
}

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A driver config tuned for tests: fast heartbeats, timeouts and backoff.
pub fn config(site: SiteId, tls: TlsIdentity, listen: SocketAddr) -> ReplicationConfig {
    let mut c = ReplicationConfig::new(site, CLUSTER, listen, tls);
    c.keep_alive_ms = 300;
    c.idle_timeout_ms = 3_000;
    c.backoff_base_ms = 40;
    c.backoff_max_ms = 400;
    c.session.heartbeat_interval_ms = 200;
    c.session.idle_timeout_ms = 3_000;
    c
}

/// An engine under `appendfsync always`: the driver syncs remote ops before
/// it acks them, so acks go out at once.
pub fn engine(site: SiteId) -> Arc<Mutex<Engine>> {
    let mut cfg = EngineConfig::new(site);
    cfg.fsync = chorus_engine::Fsync::Always;
    let engine =
        Engine::open(Box::new(MemoryStorage::new()), cfg).expect("open engine on memory storage");
    Arc::new(Mutex::new(engine))
}

pub struct Site {
    pub id: SiteId,
    pub engine: Arc<Mutex<Engine>>,
    pub repl: Replication,
}

impl Site {
    pub async fn start(config: ReplicationConfig, engine: Arc<Mutex<Engine>>) -> Site {
        let id = config.site_id;
        let repl = Replication::start(config, engine.clone())
            .await
            .expect("start replication");
        Site { id, engine, repl }
    }

    pub fn addr(&self) -> SocketAddr {
        self.repl.local_addr()
    }

    /// One client command, synced like `appendfsync always`, then the driver
    /// is told (as the server does after writes and syncs).
    pub fn exec(&self, args: &[&str]) -> Reply {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
        let reply = {
            let mut e = self.engine.lock();
            let reply = e.execute(0, &args, wall_ms());
            e.sync().expect("sync");
            reply
        };
        self.repl.notify_local_write();
        reply
    }

    pub fn digest(&self) -> String {
        self.engine.lock().digest_hex()
    }

    pub fn dbsize(&self) -> usize {
        self.engine.lock().dbsize(0)
    }

    pub fn get(&self, key: &str) -> Reply {
        self.engine.lock().execute(
            0,
            &[Bytes::from("GET"), Bytes::from(key.to_string())],
            wall_ms(),
        )
    }

    pub fn peer(&self, site: SiteId) -> PeerStatus {
        self.repl.peer_status(site).expect("known peer")
    }
}

/// Polls `check` every few ms until it holds or `DEADLINE` passes.
pub async fn eventually<F: FnMut() -> bool>(mut check: F) -> bool {
    eventually_within(DEADLINE, &mut check).await
}

pub async fn eventually_within<F: FnMut() -> bool>(limit: Duration, mut check: F) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every site holds the same ops and the same state.
pub fn converged(sites: &[&Site]) -> bool {
    let first = sites[0].engine.lock();
    let (vv, digest) = (first.vv().clone(), first.digest_hex());
    drop(first);
    sites[1..].iter().all(|s| {
        let e = s.engine.lock();
        e.vv() == &vv && e.digest_hex() == digest
    })
}

/// Runs `f` with a hard bound so a hung driver fails the test instead of CI.
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test exceeded its hard time bound")
}

pub fn int(reply: Reply) -> i64 {
    match reply {
        Reply::Bulk(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("an integer value"),
        Reply::Int(i) => i,
        other => panic!("expected an integer, got {other:?}"),
    }
}
