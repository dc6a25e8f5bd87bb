//! The registry of connected clients, for `CLIENT LIST/INFO/KILL`, `INFO
//! clients` and the `maxclients` limit.
//!
//! Each connection owns its [`Session`](crate::connection::Session); what
//! other connections may read or act on lives in a shared [`ClientHandle`]:
//! the fields `CLIENT LIST` prints, and a kill switch. Ids start at 1 and are
//! never reused, like Redis's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::cmd::table::CommandSpec;

/// What `CLIENT LIST` shows about a client that changes rarely (on
/// `CLIENT SETNAME`, `SELECT`, `HELLO`, `MULTI`...), updated by its
/// connection under a lock. What changes on every command or read lives in
/// atomics of [`ClientHandle`] instead, so the hot path takes no lock.
#[derive(Clone, Debug, Default)]
pub struct ClientView {
    pub name: Option<Bytes>,
    pub db: u8,
    pub resp: i64,
    /// Commands queued by MULTI, or -1 outside MULTI.
    pub multi: i64,
    pub no_evict: bool,
    /// Channels, patterns and shard channels subscribed to.
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
}

impl ClientView {
    /// Subscribed to anything: Redis's `pubsub` client type.
    pub fn is_pubsub(&self) -> bool {
        self.sub + self.psub + self.ssub > 0
    }
}

/// Query buffer figures of `CLIENT LIST` (`qbuf`, `qbuf-free`, `argv-mem`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryBufferFigures {
    pub query_buffer_bytes: usize,
    pub query_buffer_free_bytes: usize,
    pub argv_bytes: usize,
}

#[derive(Debug)]
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub fd: i32,
    pub created: Instant,
    /// Milliseconds from `created` to the last read.
    last_interaction_ms: AtomicU64,
    /// The last command's spec (always from the static command table), or
    /// null before the first command.
    last_command: AtomicPtr<CommandSpec>,
    query_buffer_bytes: AtomicUsize,
    query_buffer_free_bytes: AtomicUsize,
    argv_bytes: AtomicUsize,
    view: Mutex<ClientView>,
    killed: AtomicBool,
    kill_signal: Notify,
    /// Waiting in a blocking command (BLPOP...).
    blocked: AtomicBool,
    /// `CLIENT UNBLOCK`: `Some(true)` to answer an error, `Some(false)` as
    /// if the timeout passed.
    unblock: Mutex<Option<bool>>,
    unblock_signal: Notify,
}

impl ClientHandle {
    pub fn view(&self) -> ClientView {
        self.view.lock().clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut ClientView)) {
        f(&mut self.view.lock());
    }

    /// Records the command being run (one relaxed store, no lock).
    pub fn note_command(&self, spec: &'static CommandSpec) {
        self.last_command
            .store(std::ptr::from_ref(spec).cast_mut(), Ordering::Relaxed);
    }

    /// Full name of the last command (`client|list`), if any.
    pub fn last_command(&self) -> Option<&'static str> {
        let ptr = self.last_command.load(Ordering::Relaxed);
        // SAFETY: the only non-null values ever stored come from
        // `note_command`, which takes a `&'static CommandSpec`.
        unsafe { ptr.cast_const().as_ref() }.map(|spec| spec.name.as_str())
    }

    pub fn set_query_buffer(&self, figures: QueryBufferFigures) {
        self.query_buffer_bytes
            .store(figures.query_buffer_bytes, Ordering::Relaxed);
        self.query_buffer_free_bytes
            .store(figures.query_buffer_free_bytes, Ordering::Relaxed);
        self.argv_bytes.store(figures.argv_bytes, Ordering::Relaxed);
    }

    pub fn query_buffer(&self) -> QueryBufferFigures {
        QueryBufferFigures {
            query_buffer_bytes: self.query_buffer_bytes.load(Ordering::Relaxed),
            query_buffer_free_bytes: self.query_buffer_free_bytes.load(Ordering::Relaxed),
            argv_bytes: self.argv_bytes.load(Ordering::Relaxed),
        }
    }

    pub fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.created).as_millis();
        self.last_interaction_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn idle_secs(&self, now: Instant) -> u64 {
        let age_ms = now.saturating_duration_since(self.created).as_millis();
        let age_ms = u64::try_from(age_ms).unwrap_or(u64::MAX);
        age_ms.saturating_sub(self.last_interaction_ms.load(Ordering::Relaxed)) / 1000
    }

    /// Asks the connection to close (`CLIENT KILL`, shutdown).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_signal.notify_one();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Resolves once [`ClientHandle::kill`] has been called.
    pub async fn killed(&self) {
        while !self.is_killed() {
            self.kill_signal.notified().await;
        }
    }

    /// Marks the client as waiting in a blocking command, or no longer.
    pub fn set_blocked(&self, blocked: bool) {
        *self.unblock.lock() = None;
        self.blocked.store(blocked, Ordering::SeqCst);
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::SeqCst)
    }

    /// `CLIENT UNBLOCK`: true if the client was blocked (it then answers
    /// the unblock error when `error`, else its timeout reply).
    pub fn request_unblock(&self, error: bool) -> bool {
        if !self.is_blocked() {
            return false;
        }
        *self.unblock.lock() = Some(error);
        self.unblock_signal.notify_one();
        true
    }

    /// Resolves once [`ClientHandle::request_unblock`] was called, with its
    /// `error` flag.
    pub async fn unblock_requested(&self) -> bool {
        loop {
            if let Some(error) = *self.unblock.lock() {
                return error;
            }
            self.unblock_signal.notified().await;
        }
    }

    /// Redis's `client-list` line (without the trailing newline).
    pub fn describe(&self, now: Instant) -> String {
        let v = self.view();
        let name = v
            .name
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        // Redis's letters, in its order: P pubsub, x MULTI, b blocked,
        // e no-evict; N for none.
        let mut flags = String::new();
        for (on, letter) in [
            (v.is_pubsub(), 'P'),
            (v.multi >= 0, 'x'),
            (self.is_blocked(), 'b'),
            (v.no_evict, 'e'),
        ] {
            if on {
                flags.push(letter);
            }
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let cmd = self.last_command().unwrap_or("NULL");
        let q = self.query_buffer();
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} qbuf={} qbuf-free={} argv-mem={} multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem={} events=r cmd={} user=default redir=-1 resp={}",
            self.id,
            self.addr,
            self.local_addr,
            self.fd,
            name,
            now.saturating_duration_since(self.created).as_secs(),
            self.idle_secs(now),
            flags,
            v.db,
            v.sub,
            v.psub,
            v.ssub,
            v.multi,
            q.query_buffer_bytes,
            q.query_buffer_free_bytes,
            q.argv_bytes,
            q.query_buffer_bytes + q.query_buffer_free_bytes + q.argv_bytes,
            cmd,
            v.resp,
        )
    }
}

#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
}

impl ClientRegistry {
    /// Registers a new connection if fewer than `max` are connected.
    pub fn register(
        &self,
        addr: SocketAddr,
        local_addr: SocketAddr,
        fd: i32,
        max: u64,
        now: Instant,
    ) -> Option<Arc<ClientHandle>> {
        let mut clients = self.clients.lock();
        if clients.len() as u64 >= max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let handle = Arc::new(ClientHandle {
            id,
            addr,
            local_addr,
            fd,
            created: now,
            last_interaction_ms: AtomicU64::new(0),
            last_command: AtomicPtr::new(std::ptr::null_mut()),
            query_buffer_bytes: AtomicUsize::new(0),
            query_buffer_free_bytes: AtomicUsize::new(0),
            argv_bytes: AtomicUsize::new(0),
            view: Mutex::new(ClientView {
                resp: 2,
                multi: -1,
                ..ClientView::default()
            }),
            killed: AtomicBool::new(false),
            kill_signal: Notify::new(),
            blocked: AtomicBool::new(false),
            unblock: Mutex::new(None),
            unblock_signal: Notify::new(),
        });
        clients.insert(id, Arc::clone(&handle));
        Some(handle)
    }

    pub fn unregister(&self, id: u64) {
        self.clients.lock().remove(&id);
    }

    pub fn count(&self) -> usize {
        self.clients.lock().len()
    }

    /// All clients, by id.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.clients.lock().values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.clients.lock().get(&id).cloned()
    }

    /// Asks every connection to close.
    pub fn kill_all(&self) {
        for client in self.all() {
            client.kill();
        }
    }
}
