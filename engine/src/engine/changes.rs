//! Changed keys, reported as they are applied: local writes, ops from peers,
//! merges of a peer's state, active expiry, flushes.
//!
//! Off by default: an engine nobody listens to records nothing (one branch
//! per applied effect). Two ways to listen, both bounded and neither ever
//! blocks the engine:
//!
//! - pull: [`Engine::enable_changes`] keeps up to `capacity` changes, taken
//!   with [`Engine::drain_changes`]; changes beyond the bound are counted,
//!   and the next drain ends with [`Change::Lagged`];
//! - push: [`Engine::set_change_sink`] hands the changes of every engine
//!   call (a command, a MULTI group, a batch of remote ops, a merge) to a
//!   [`ChangeSink`] before the call returns, under the caller's hold of the
//!   engine; a sink that wants nothing ([`ChangeSink::wanted`]) costs one
//!   atomic load per applied effect.
//!
//! A change says which `(db, key)` changed and the keyspace event that
//! names what happened (`set`, `lpush`, `expired`...: see `events`), never
//! the new value: the reader reads the key. One effect may report up to
//! three changes (`new`, its own event, `del` when it emptied the key); an
//! effect that found and left the key absent reports none.
//! Whole-database events (FLUSHDB, FLUSHALL, a snapshot merge) are one
//! change each, whatever the number of keys.

use super::events::{KeyEvent, LocalCommand};
use super::Engine;
use crate::id::Origin;
use crate::op::Effect;
use bytes::Bytes;
use std::sync::Arc;

/// Where a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeSource {
    /// A command run at this site (active expiry included).
    Local,
    /// An op received from a peer, written at `Origin`'s site (which may not
    /// be the peer that sent it: ops are forwarded).
    Peer(Origin),
    /// A merge of a peer's state rather than of ops: a full snapshot or an
    /// anti-entropy repair. The writers are not known.
    Merge,
}

/// One reported change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key changed: written, deleted, expired, its TTL set or removed.
    Key {
        /// The database.
        db: u8,
        /// The key.
        key: Bytes,
        /// Where the change came from.
        source: ChangeSource,
        /// What happened, as a keyspace notification names it.
        event: KeyEvent,
    },
    /// Any key of `db` may have changed (FLUSHDB).
    Db {
        /// The database.
        db: u8,
        /// Where the change came from.
        source: ChangeSource,
    },
    /// Any key of any database may have changed (FLUSHALL, a snapshot merge).
    All {
        /// Where the change came from.
        source: ChangeSource,
    },
    /// This many changes were not reported (a bound was hit): anything may
    /// have changed, the listener must read again what it cares about.
    Lagged(u64),
}

impl Change {
    /// Where the change came from (`None` for [`Change::Lagged`]).
    pub fn source(&self) -> Option<ChangeSource> {
        match self {
            Change::Key { source, .. } | Change::Db { source, .. } | Change::All { source } => {
                Some(*source)
            }
            Change::Lagged(_) => None,
        }
    }

    /// True when this change may have changed `key` of `db`.
    pub fn may_touch(&self, db: u8, key: &[u8]) -> bool {
        match self {
            Change::Key { db: d, key: k, .. } => *d == db && k.as_ref() == key,
            Change::Db { db: d, .. } => *d == db,
            Change::All { .. } | Change::Lagged(_) => true,
        }
    }
}

/// Takes the changes of every engine call (see [`Engine::set_change_sink`]).
/// Both methods are called with the engine held: they must return at once.
pub trait ChangeSink: Send + Sync {
    /// True while someone listens; the engine records nothing otherwise.
    fn wanted(&self) -> bool;
    /// Takes the changes of one engine call, in the order they were applied.
    /// The engine clears `changes` afterwards (the sink may take them all).
    fn publish(&self, changes: &mut Vec<Change>);
}

/// The engine's side of the changes (see the module docs).
pub(super) struct Changes {
    buf: Vec<Change>,
    /// Changes kept at most (pull) or handed over at once (push).
    capacity: usize,
    /// Changes not kept since the last drain (pull only).
    lost: u64,
    sink: Option<Arc<dyn ChangeSink>>,
    /// The local command running, which names the events of its effects.
    command: Option<LocalCommand>,
    /// The event of the next local effect (`Some(None)`: none), set by a
    /// caller that knows better than the command (expiry's deletes, a
    /// re-add that changes nothing a reader sees).
    next_event: Option<Option<KeyEvent>>,
}

/// What the engine looked at before applying an effect, for
/// [`Engine::note_effect`]; `None` when nobody listens.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probe {
    /// The key existed (a live type, expired or not).
    existed: bool,
    /// The key's deadline had passed at the op's time.
    expired: bool,
}

impl Changes {
    fn push(&mut self, change: Change) {
        // Whole-database changes repeat (a MULTI flushing twice) and say
        // nothing new; a key's changes each are an event.
        if !matches!(change, Change::Key { .. }) && self.buf.last() == Some(&change) {
            return;
        }
        if self.buf.len() >= self.capacity {
            match &self.sink {
                Some(sink) => {
                    sink.publish(&mut self.buf);
                    self.buf.clear();
                }
                None => {
                    self.lost = self.lost.saturating_add(1);
                    return;
                }
            }
        }
        self.buf.push(change);
    }
}

impl Engine {
    /// Starts keeping changes for [`Engine::drain_changes`], at most
    /// `capacity` (at least 1) between two drains; replaces a sink.
    pub fn enable_changes(&mut self, capacity: usize) {
        self.changes = Some(Box::new(Changes {
            buf: Vec::new(),
            capacity: capacity.max(1),
            lost: 0,
            sink: None,
            command: None,
            next_event: None,
        }));
    }

    /// Hands the changes of every engine call to `sink` before the call
    /// returns, in batches of at most `batch` (at least 1); replaces
    /// [`Engine::enable_changes`]. Nothing is recorded while the sink does
    /// not want it.
    pub fn set_change_sink(&mut self, sink: Arc<dyn ChangeSink>, batch: usize) {
        self.changes = Some(Box::new(Changes {
            buf: Vec::new(),
            capacity: batch.max(1),
            lost: 0,
            sink: Some(sink),
            command: None,
            next_event: None,
        }));
    }

    /// Stops recording changes (and drops the sink, if any).
    pub fn disable_changes(&mut self) {
        self.changes = None;
    }

    /// True when changes are recorded (kept or handed to a sink).
    pub fn changes_enabled(&self) -> bool {
        self.changes.is_some()
    }

    /// Moves the changes kept since the last drain to `out`, oldest first;
    /// the last one is [`Change::Lagged`] when some were not kept. Nothing
    /// with a sink (it took them already) or when changes are off.
    pub fn drain_changes(&mut self, out: &mut Vec<Change>) {
        let Some(c) = self.changes.as_deref_mut() else {
            return;
        };
        out.append(&mut c.buf);
        if c.lost > 0 {
            out.push(Change::Lagged(c.lost));
            c.lost = 0;
        }
    }

    /// True when changes are recorded now (a sink that wants nothing
    /// records nothing).
    fn listening(&self) -> bool {
        self.changes.as_deref().is_some_and(|c| match &c.sink {
            Some(sink) => sink.wanted(),
            None => true,
        })
    }

    /// Names the local command about to run (`None` once it ran): its
    /// effects' events follow from it.
    pub(crate) fn set_local_command(&mut self, command: Option<(&'static str, &[Bytes])>) {
        if let Some(c) = self.changes.as_deref_mut() {
            c.command = command.map(|(name, args)| LocalCommand::of(name, args));
            c.next_event = None;
        }
    }

    /// The next local effect is `event` whatever the command (expiry's
    /// deletes are `expired`; `None`: it reports nothing).
    pub(crate) fn set_next_event(&mut self, event: Option<KeyEvent>) {
        if let Some(c) = self.changes.as_deref_mut() {
            c.next_event = Some(event);
        }
    }

    /// Looks at `key` before an effect is applied to it (`None` when nobody
    /// listens). `op_wall_ms`: the wall time of the op, against which a
    /// peer's delete is told to be expiry's.
    pub(crate) fn probe(&self, db: u8, key: &[u8], op_wall_ms: u64) -> Option<Probe> {
        // The cluster's own data is no client's key.
        if !self.listening() || db == crate::keyspace::CLUSTER_DB {
            return None;
        }
        let row = self.keyspace.db(db).rows.get(key);
        Some(Probe {
            existed: row.is_some_and(|r| r.kind().is_some()),
            expired: row
                .and_then(|r| r.deadline())
                .is_some_and(|d| d <= op_wall_ms),
        })
    }

    /// Records that an effect was applied to `key` of `db`, with what
    /// [`Engine::probe`] saw before (see the module docs for the changes
    /// one effect reports).
    pub(crate) fn note_effect(
        &mut self,
        db: u8,
        key: &[u8],
        effect: &Effect,
        src: ChangeSource,
        probe: Option<Probe>,
    ) {
        let Some(c) = self.changes.as_deref_mut() else {
            return;
        };
        let next_event = c.next_event.take();
        let Some(probe) = probe else {
            return;
        };
        let exists = self
            .keyspace
            .db(db)
            .rows
            .get(key)
            .is_some_and(|r| r.kind().is_some());
        match effect {
            Effect::FlushDb => return c.push(Change::Db { db, source: src }),
            Effect::FlushAll => return c.push(Change::All { source: src }),
            _ => {}
        }
        if !probe.existed && !exists {
            // Nothing visible happened: a delete of an absent key, or a
            // peer's write to a key deleted here since.
            return;
        }
        let event = match src {
            ChangeSource::Local => match next_event {
                Some(event) => event,
                None => match &c.command {
                    Some(command) => command.event(effect),
                    None => KeyEvent::of_remote(effect, false),
                },
            },
            ChangeSource::Peer(_) => KeyEvent::of_remote(effect, probe.expired),
            ChangeSource::Merge => Some(KeyEvent::Restore),
        };
        let Some(event) = event else { return };
        // A copy: a local key may be a slice of a client's buffer.
        let key = Bytes::copy_from_slice(key);
        let change = |event| Change::Key {
            db,
            key: key.clone(),
            source: src,
            event,
        };
        if !probe.existed {
            c.push(change(KeyEvent::New));
        }
        c.push(change(event));
        if !exists && !matches!(effect, Effect::Del) {
            // The effect emptied the key: an emptied container is gone.
            c.push(change(KeyEvent::Del));
        }
    }

    /// Records a change that is not one effect (a merge).
    pub(crate) fn note_change(&mut self, change: Change) {
        let Some(c) = self.changes.as_deref_mut() else {
            return;
        };
        if c.sink.as_ref().is_some_and(|s| !s.wanted()) {
            return;
        }
        c.push(change);
    }

    /// Hands the changes recorded so far to the sink, if there is one: at
    /// the end of every engine call that applies anything.
    pub(crate) fn publish_changes(&mut self) {
        let Some(c) = self.changes.as_deref_mut() else {
            return;
        };
        if let Some(sink) = &c.sink {
            if !c.buf.is_empty() {
                sink.publish(&mut c.buf);
                c.buf.clear();
            }
        }
    }
}
