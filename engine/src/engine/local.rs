//! Local writes: commands and MULTI/EXEC groups run as a [`Txn`], whose
//! effects become one op, logged and kept for peers; and active expiry,
//! which deletes through a `Txn` too.

use super::{ChangeSource, Engine, EngineStats};
use crate::cmd::{self, DataCommand};
use crate::crdt::Ctx;
use crate::id::{OpId, SiteId};
use crate::keyspace::{Keyspace, ALL_DBS};
use crate::log;
use crate::op::{Effect, KeyEffect, Op};
use crate::reply::Reply;
use bytes::Bytes;

/// A kept effect list is at most this long (a huge MULTI does not pin memory).
const SPARE_EFFECTS_CAPACITY_MAX: usize = 64;

/// Size of the chunks the backlog's in-memory copies of new ops are cut
/// from. A chunk is freed once every op cut from it left the backlog's
/// tail (they leave in order).
const BACKLOG_CHUNK_BYTES: usize = 64 << 10;

/// What a command (or a MULTI/EXEC group) did: its reply, and the op it
/// wrote, if it wrote one. Inside a group a command's op is the group's,
/// reported by [`Engine::end_group`].
#[derive(Clone, Debug, PartialEq)]
pub struct Executed {
    pub reply: Reply,
    pub written: Option<OpId>,
}

impl Engine {
    /// Executes one command (`args[0]` is the name) against `db`: one
    /// lookup in the command table (Redis's unknown-command and arity
    /// errors), then [`Engine::execute_resolved`]. For embedders and tests;
    /// the server resolves the command itself.
    pub fn execute(&mut self, db: u8, args: &[Bytes], now_ms: u64) -> Reply {
        match cmd::resolve(args) {
            Ok(data) => self.execute_resolved(db, data, args, now_ms).reply,
            Err(reply) => reply,
        }
    }

    /// Executes a command already resolved in the command table (see
    /// [`crate::redis::CommandTable`]) whose arity was checked: not looked
    /// up or checked again.
    pub fn execute_resolved(
        &mut self,
        db: u8,
        data: &DataCommand,
        args: &[Bytes],
        now_ms: u64,
    ) -> Executed {
        self.set_local_command(Some((data.name, args)));
        let mut txn = Txn::new(self, now_ms);
        let reply = cmd::run(&mut txn, db, data, args);
        let written = txn.commit();
        self.set_local_command(None);
        Executed { reply, written }
    }

    /// Executes a MULTI/EXEC group atomically: one op for all its writes.
    /// Each command is resolved as [`Engine::execute`] does.
    pub fn execute_multi(&mut self, cmds: &[(u8, Vec<Bytes>)], now_ms: u64) -> Vec<Reply> {
        let mut txn = Txn::new(self, now_ms);
        let replies = cmds
            .iter()
            .map(|(db, args)| match cmd::resolve(args) {
                Ok(data) => {
                    txn.engine.set_local_command(Some((data.name, args)));
                    cmd::run(&mut txn, *db, data, args)
                }
                Err(reply) => reply,
            })
            .collect();
        txn.commit();
        self.set_local_command(None);
        replies
    }

    /// True when the command name (upper or lower case) is a data command the
    /// engine implements.
    pub fn is_data_command(name: &[u8]) -> bool {
        cmd::find(name).is_some()
    }

    fn finish_local_op(&mut self, op: Op) {
        self.append_op(&op);
        // The next op reuses the effect list's allocation.
        let mut effects = op.effects;
        effects.clear();
        if effects.capacity() <= SPARE_EFFECTS_CAPACITY_MAX {
            self.spare_effects = effects;
        }
        self.vv.set(self.origin, op.id.seq);
        self.next_seq = op.id.seq + 1;
        self.op_completed();
        self.stats.ops_local += 1;
        debug_assert!(self.invariants_hold());
    }

    /// Appends an op to the log and the backlog: encoded once, straight into
    /// the framed record; the backlog's tail keeps a copy of the payload, cut
    /// from a shared chunk.
    pub(super) fn append_op(&mut self, op: &Op) {
        self.record_buf.clear();
        let payload = log::encode_record(op, &mut self.record_buf);
        let payload = &self.record_buf[payload];
        if self.backlog_chunk.capacity() - self.backlog_chunk.len() < payload.len() {
            self.backlog_chunk =
                bytes::BytesMut::with_capacity(BACKLOG_CHUNK_BYTES.max(payload.len()));
        }
        self.backlog_chunk.extend_from_slice(payload);
        let bytes = self.backlog_chunk.split().freeze();
        self.log_and_keep(op.id, bytes);
    }

    /// Appends the framed record in `record_buf` to the log, and the op to
    /// the backlog: with its payload in the tail, or, when the append did
    /// not happen, as the only copy of the op peers can be served from.
    pub(super) fn log_and_keep(&mut self, id: OpId, bytes: Bytes) {
        self.note_tip(id, &bytes);
        let offset = self.storage.log_len();
        let logged = self.poisoned.is_none()
            && match self.storage.log_append(&self.record_buf) {
                Ok(()) => true,
                Err(e) => {
                    self.poison(e);
                    false
                }
            };
        if logged {
            self.backlog
                .push_logged(id, offset, self.record_buf.len(), Some(bytes));
        } else {
            self.backlog.push_unlogged(id, offset, bytes);
        }
        while self.backlog.bytes() > self.config.backlog_bytes_max && self.backlog.len() > 1 {
            self.backlog.pop_front();
        }
    }

    /// Opens a MULTI/EXEC group: every `execute` until `end_group` adds its
    /// effects to one op, replicated and applied as a unit.
    pub fn begin_group(&mut self) {
        self.end_group();
        self.group = Some(None);
    }

    /// Closes the group and logs its op (if it wrote anything): the op's id.
    pub fn end_group(&mut self) -> Option<OpId> {
        let op = self.group.take()??;
        let id = op.id;
        self.finish_local_op(op);
        Some(id)
    }

    // ---- expiry ------------------------------------------------------------------

    /// Active expiry: deletes up to `budget` keys whose deadline passed, and
    /// replicates the deletes. Readers everywhere hide a key once their own
    /// clock passes its deadline; this is the physical delete, which must
    /// happen even when the site that wrote the winning deadline is gone, and
    /// must not come early because that site's clock runs fast:
    /// - the site that wrote the winning deadline (its *owner*) deletes the
    ///   key once its clock passes the deadline plus `max_clock_skew_ms`, so
    ///   a clock fast by up to the bound never deletes a key before the other
    ///   sites' clocks reached its deadline;
    /// - any other site deletes it [`EXPIRY_TAKEOVER_MS`] later, so a key
    ///   whose owner is down or was removed is still deleted (and DBSIZE no
    ///   longer counts it), while an owner that is up deletes first and the
    ///   others see its delete instead of sending their own.
    ///
    /// Each delete is an ordinary observed-remove DEL: a write concurrent
    /// with it survives, and two sites deleting the same key converge.
    /// Looks at most `budget * EXPIRY_SCAN_FACTOR` entries of the deadline
    /// index per call. Returns how many keys were deleted.
    pub fn expire_cycle(&mut self, now_ms: u64, budget: usize) -> usize {
        let margin = self.config.max_clock_skew_ms;
        let takeover = margin.saturating_add(EXPIRY_TAKEOVER_MS);
        let scan_max = budget.saturating_mul(EXPIRY_SCAN_FACTOR);
        let mut due: Vec<(u8, Bytes, bool)> = Vec::new();
        let mut scanned = 0usize;
        'dbs: for db in 0..ALL_DBS as u8 {
            for (deadline, key) in self.keyspace.db(db).expires.iter() {
                if deadline.saturating_add(margin) > now_ms || due.len() >= budget {
                    break;
                }
                scanned += 1;
                if scanned > scan_max {
                    break 'dbs;
                }
                let owner = self
                    .keyspace
                    .db(db)
                    .rows
                    .get(key)
                    .and_then(|r| r.deadline_owner())
                    .map(|s| s.dot.origin.site);
                let mine = owner == Some(self.config.site_id);
                if mine || deadline.saturating_add(takeover) <= now_ms {
                    due.push((db, key.clone(), !mine));
                }
            }
        }
        let n = due.len();
        if n > 0 {
            let mut txn = Txn::new(self, now_ms);
            for (db, key, taken_over) in due {
                txn.emit_expired(db, &key);
                txn.engine.stats.expired_keys += 1;
                txn.engine.stats.expired_keys_taken_over += u64::from(taken_over);
            }
            txn.commit();
        }
        n
    }
}

/// How long after the owner of a key's winning deadline would have deleted
/// it (deadline plus `max_clock_skew_ms`) any other site deletes it: the
/// owner may be down, partitioned away or removed from the cluster.
pub const EXPIRY_TAKEOVER_MS: u64 = 10_000;

/// `expire_cycle` looks at most `budget` times this many entries of the
/// deadline index per call (keys another site will delete first are looked
/// at and skipped): a bounded cost per housekeeping tick.
pub const EXPIRY_SCAN_FACTOR: usize = 16;

/// A local transaction: the engine seen by one command (or one MULTI group).
/// Effects are applied as they are emitted, so later reads see them; they are
/// recorded in one op, logged at `commit`.
pub struct Txn<'e> {
    pub(crate) engine: &'e mut Engine,
    pub now_ms: u64,
    op: Option<Op>,
}

impl<'e> Txn<'e> {
    fn new(engine: &'e mut Engine, now_ms: u64) -> Txn<'e> {
        let op = engine.group.as_mut().and_then(|g| g.take());
        Txn { engine, now_ms, op }
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.engine.keyspace
    }

    pub fn site_id(&self) -> SiteId {
        self.engine.config.site_id
    }

    /// Writes are refused after a storage error.
    pub fn write_refused(&self) -> Option<String> {
        if let Some(p) = self.engine.poisoned.as_ref() {
            return Some(format!(
                "MISCONF Errors writing to the op log: {p}; writes are refused until restart"
            ));
        }
        if self.engine.catching_up {
            return Some("LOADING Chorus is catching up from its peers after its op log was salvaged; writes resume after a full sync".to_owned());
        }
        self.engine
            .catch_up_to
            .as_ref()
            .filter(|t| !self.engine.vv.dominates(t))
            .map(|_| {
                "LOADING Chorus is catching up with the cluster it just joined; writes resume once it holds what its peers reported".to_owned()
            })
    }

    /// Applies an effect now and records it in this transaction's op.
    ///
    /// A local write never leaves a key-less row (expiry entries without a
    /// key, see [`Db`](crate::keyspace::Db)) behind, as Redis never keeps
    /// the TTL of a key that is gone:
    /// - a write that keeps the TTL, to a key-less row, starts a new key:
    ///   the row's expiry entries (left by a delete concurrent with an
    ///   EXPIRE) are removed first, so they do not carry over to it;
    /// - an effect that removes the last element of a key with a TTL (HDEL,
    ///   SREM, ZPOPMIN...) deletes the key, TTL included, as Redis deletes
    ///   an emptied key.
    ///
    /// Both are a `Del` recorded in the op (an observed-remove: writes
    /// concurrent with it at other sites survive), so every site applies the
    /// same effects and converges.
    pub fn emit(&mut self, db: u8, key: &Bytes, effect: Effect) {
        if effect.keeps_ttl() && self.engine.keyspace.db(db).is_keyless(key) {
            self.record(db, key, Effect::Del);
        }
        if self.record(db, key, effect) {
            self.record(db, key, Effect::Del);
        }
    }

    /// Deletes `key` because its deadline passed (active expiry, or a write
    /// that finds it expired): an ordinary `Del`, reported as `expired`.
    pub fn emit_expired(&mut self, db: u8, key: &Bytes) {
        self.engine.set_next_event(Some(super::KeyEvent::Expired));
        self.emit(db, key, Effect::Del);
    }

    /// Emits a write that changes nothing a reader sees (SADD of a member
    /// already there, which still refreshes the add-wins set's dots):
    /// replicated as any write, but it fires no keyspace event, as Redis
    /// fires none for it.
    pub fn emit_quiet(&mut self, db: u8, key: &Bytes, effect: Effect) {
        self.engine.set_next_event(None);
        self.emit(db, key, effect);
    }

    /// Applies an effect and adds it to this transaction's op; true when it
    /// left a key-less row.
    fn record(&mut self, db: u8, key: &Bytes, effect: Effect) -> bool {
        let engine = &mut *self.engine;
        let op = self.op.get_or_insert_with(|| Op {
            id: OpId::new(engine.origin, engine.next_seq),
            hlc: engine.clock.tick(self.now_ms),
            deps: engine.vv.without(engine.origin),
            effects: std::mem::take(&mut engine.spare_effects),
        });
        let ctx = Ctx {
            deps: &op.deps,
            own: op.id,
            hlc: op.hlc,
            fold: engine.keyspace.fold,
        };
        // The op may hold slices of the client's read buffer until it is
        // encoded at commit; the keyspace stores its own copies.
        let probe = engine.probe(db, key, 0);
        let keyless = engine
            .keyspace
            .apply_effect(db, key, &effect, &ctx, &engine.vv);
        engine.note_effect(db, key, &effect, ChangeSource::Local, probe);
        op.effects.push(KeyEffect {
            db,
            key: key.clone(),
            effect,
        });
        keyless
    }

    /// Logs the op (if any effect was emitted) and returns its id; inside a
    /// group the op stays open (logged by `end_group`) and this is `None`.
    pub fn commit(mut self) -> Option<OpId> {
        let op = self.op.take();
        let id = match &mut self.engine.group {
            Some(g) => {
                *g = op;
                None
            }
            None => op.map(|op| {
                let id = op.id;
                self.engine.finish_local_op(op);
                id
            }),
        };
        self.engine.publish_changes();
        id
    }

    /// The first element index a new list run of this op may use: one past
    /// every element the op's list effects named so far (see
    /// `Effect::ListInsert`; `Replace` with a list starts at 0).
    pub fn list_next_index(&self) -> u32 {
        let Some(op) = &self.op else { return 0 };
        op.effects
            .iter()
            .map(|e| match &e.effect {
                Effect::ListInsert { first, values, .. } => {
                    first.saturating_add(values.len() as u32)
                }
                Effect::Replace {
                    value: crate::op::Value::List(v),
                    ..
                } => v.len() as u32,
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    pub fn stats_mut(&mut self) -> &mut EngineStats {
        &mut self.engine.stats
    }
}
