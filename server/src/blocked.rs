//! Clients blocked in BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN,
//! BZPOPMAX and BZMPOP, and what wakes them.
//!
//! A blocking command first runs once like any data command (the engine owns
//! its parsing and its attempt: `chorus_engine::cmd::blocking`). When it
//! found nothing and may block (not inside MULTI), the connection registers a
//! waiter here and waits for its reply, its deadline, `CLIENT UNBLOCK`, a
//! disconnect or shutdown. The waiters of each key form a FIFO queue.
//!
//! What wakes them is the site's change feed, so a push replicated from a
//! peer wakes a client as a local push does: while any client is blocked a
//! thread (`chorus-unblock`) holds a subscription, and for every changed key
//! runs the blocked commands of that key again, oldest first, under the
//! engine lock, handing each reply to its connection. A waiter is served
//! (and removed) under this registry's lock, so a reply is never lost to a
//! timeout or a disconnect that races with it. With no client blocked the
//! thread ends and drops the subscription: the engine then records no
//! changes (the feed costs nothing).
//!
//! Lock order: this registry, then the engine. A connection never holds the
//! engine while it takes the registry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use chorus_engine::cmd::blocking::is_empty_reply;
use chorus_engine::cmd::DataCommand;
use chorus_engine::engine::Change;
use chorus_engine::Reply;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::server::ServerState;
use crate::store;

/// How long the unblock thread waits for a change before it checks whether
/// any client is still blocked.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// One blocked command.
struct Waiter {
    db: u8,
    data: &'static DataCommand,
    args: Vec<Bytes>,
    keys: Vec<Bytes>,
    tx: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct Inner {
    /// Waiters by id; ids grow, so the map's order is arrival order.
    waiters: BTreeMap<u64, Waiter>,
    /// The FIFO queue of each `(db, key)`.
    by_key: HashMap<(u8, Bytes), VecDeque<u64>>,
    next_id: u64,
    /// The unblock thread is running (and holds a subscription).
    thread_running: bool,
}

/// The registry of blocked clients (one per server).
#[derive(Default)]
pub struct Blocked {
    inner: Mutex<Inner>,
}

/// A registered waiter: its id and the receiver of its reply.
pub struct Registration {
    pub id: u64,
    pub reply: oneshot::Receiver<Reply>,
}

impl Blocked {
    /// Clients blocked now (INFO `blocked_clients`).
    pub fn len(&self) -> usize {
        self.inner.lock().waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a blocked command, makes sure changes are watched, then runs
    /// it once more: a push between its first attempt and the subscription
    /// is not missed.
    pub fn block(
        &self,
        state: &Arc<ServerState>,
        db: u8,
        data: &'static DataCommand,
        args: Vec<Bytes>,
        keys: Vec<Bytes>,
    ) -> Registration {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        for k in &keys {
            inner
                .by_key
                .entry((db, k.clone()))
                .or_default()
                .push_back(id);
        }
        inner.waiters.insert(
            id,
            Waiter {
                db,
                data,
                args,
                keys,
                tx,
            },
        );
        if !inner.thread_running {
            let sub = state.store.subscribe();
            let weak = Arc::downgrade(state);
            let started = std::thread::Builder::new()
                .name("chorus-unblock".into())
                .spawn(move || unblock_loop(weak, sub));
            match started {
                Ok(_) => inner.thread_running = true,
                Err(e) => tracing::error!(error = %e, "cannot start the unblock thread"),
            }
        }
        serve(&mut inner, state, &[id]);
        Registration { id, reply: rx }
    }

    /// Removes a waiter (timeout, disconnect, CLIENT UNBLOCK). False when it
    /// was served first: its reply is then in its channel.
    pub fn cancel(&self, id: u64) -> bool {
        let mut inner = self.inner.lock();
        remove(&mut inner, id).is_some()
    }

    /// Runs the blocked commands waiting on `key` of `db` (all of them when
    /// `key` is `None`), oldest first.
    fn serve_key(&self, state: &Arc<ServerState>, db: Option<u8>, key: Option<&Bytes>) {
        let mut inner = self.inner.lock();
        let ids: Vec<u64> = match (db, key) {
            (Some(db), Some(k)) => match inner.by_key.get(&(db, k.clone())) {
                Some(q) => q.iter().copied().collect(),
                None => return,
            },
            (Some(db), None) => inner
                .waiters
                .iter()
                .filter(|(_, w)| w.db == db)
                .map(|(id, _)| *id)
                .collect(),
            _ => inner.waiters.keys().copied().collect(),
        };
        serve(&mut inner, state, &ids);
    }
}

fn remove(inner: &mut Inner, id: u64) -> Option<Waiter> {
    let w = inner.waiters.remove(&id)?;
    for k in &w.keys {
        let slot = (w.db, k.clone());
        if let Some(q) = inner.by_key.get_mut(&slot) {
            q.retain(|x| *x != id);
            if q.is_empty() {
                inner.by_key.remove(&slot);
            }
        }
    }
    Some(w)
}

/// Runs the waiters `ids` in order; each that gets something (an element,
/// not the empty reply nor an error: a key of another type keeps it
/// blocked, as in Redis) is removed and answered.
fn serve(inner: &mut Inner, state: &ServerState, ids: &[u64]) {
    for id in ids {
        let Some(w) = inner.waiters.get(id) else {
            continue;
        };
        let (reply, durable) = {
            let mut guard = state.store.lock();
            guard.begin_batch(store::now_ms());
            let reply = guard.execute(w.db, w.data, &w.args);
            (reply, guard.end_batch())
        };
        if is_empty_reply(&reply) || reply.is_error() {
            continue;
        }
        let reply = match durable {
            Err(misconf) => misconf,
            Ok(()) => reply,
        };
        if let Some(w) = remove(inner, *id) {
            // The connection may be gone; the reply then goes nowhere, as
            // Redis's does to a client that disconnects while served.
            let _ = w.tx.send(reply);
        }
    }
}

fn unblock_loop(state: Weak<ServerState>, sub: chorus_site::Subscription) {
    loop {
        let change = sub.recv_timeout(IDLE_CHECK);
        let Some(state) = state.upgrade() else { return };
        let blocked = &state.blocked;
        match change {
            Ok(Change::Key { db, key, .. }) => blocked.serve_key(&state, Some(db), Some(&key)),
            Ok(Change::Db { db, .. }) => blocked.serve_key(&state, Some(db), None),
            Ok(_) => blocked.serve_key(&state, None, None),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let mut inner = blocked.inner.lock();
                if inner.waiters.is_empty() {
                    inner.thread_running = false;
                    return;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                blocked.inner.lock().thread_running = false;
                return;
            }
        }
    }
}
