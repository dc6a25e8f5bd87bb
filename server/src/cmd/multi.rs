//! MULTI, EXEC, DISCARD, WATCH, UNWATCH (Redis 7.0 `multi.c`).
//!
//! Commands are checked (name, arity, auth) when queued, as in Redis; a
//! failed check marks the transaction and EXEC answers `EXECABORT`. A
//! failed check of EXEC itself (`EXEC x`, NOAUTH), even outside MULTI,
//! answers `EXECABORT` at once and forgets the transaction and WATCHes. EXEC
//! holds the store lock for the whole transaction, so data commands of one
//! transaction are applied together at this site. WATCH records each key's
//! version from the store; EXEC aborts with a null array if any changed.
//!
//! Bounded: the queue counts against `client-query-buffer-limit` (as Redis
//! counts `mstate.argv_len_sums`) and holds at most
//! [`MULTI_QUEUE_COMMANDS_MAX`] commands; past either bound the connection
//! is closed.

use bytes::Bytes;
use chorus_engine::Reply;

use super::table::{CommandSpec, CommandTable};
use super::{call, lookup, unknown_command, Ctx};
use crate::connection::{MultiState, WatchedKey};

/// Most commands one transaction may queue.
pub const MULTI_QUEUE_COMMANDS_MAX: usize = 1 << 20;
/// Most keys one connection may watch.
pub const WATCHED_KEYS_MAX: usize = 1 << 16;

pub fn multi(ctx: &mut Ctx<'_>) -> Reply {
    if ctx.session.multi.is_some() {
        return Reply::err("ERR MULTI calls can not be nested");
    }
    ctx.session.multi = Some(MultiState::default());
    ctx.session.sync_multi_view();
    Reply::Ok
}

pub fn queue(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Reply {
    let bytes: usize = args.iter().map(Bytes::len).sum();
    let Some(multi) = ctx.session.multi.as_mut() else {
        return unknown_command(args);
    };
    multi.queued_flags |= spec.flags;
    multi.queued_bytes = multi.queued_bytes.saturating_add(bytes);
    multi.queued.push(args.to_vec());
    if multi.queued.len() > MULTI_QUEUE_COMMANDS_MAX {
        ctx.session.close_now = true;
    }
    ctx.session.sync_multi_view();
    Reply::Simple("QUEUED".to_string())
}

pub fn discard(ctx: &mut Ctx<'_>) -> Reply {
    if ctx.session.multi.take().is_none() {
        return Reply::err("ERR DISCARD without MULTI");
    }
    ctx.session.watched.clear();
    ctx.session.sync_multi_view();
    Reply::Ok
}

pub fn watch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if ctx.session.multi.is_some() {
        return Reply::err("ERR WATCH inside MULTI is not allowed");
    }
    // Watching a key another site is the home of would watch a copy
    // that site writes: the client is sent to the home.
    let keys: Vec<&[u8]> = args.iter().skip(1).map(|k| &k[..]).collect();
    if let Err(e) = super::unit::check_queued(ctx, &keys, None) {
        return e;
    }
    let db = ctx.session.db;
    for key in args.iter().skip(1) {
        let already = ctx
            .session
            .watched
            .iter()
            .any(|w| w.db == db && w.key == key);
        if already {
            continue;
        }
        if ctx.session.watched.len() >= WATCHED_KEYS_MAX {
            return Reply::err("ERR too many watched keys");
        }
        let version = ctx.server.store.key_version(db, key);
        ctx.session.watched.push(WatchedKey {
            db,
            key: key.clone(),
            version,
        });
    }
    Reply::Ok
}

pub fn unwatch(ctx: &mut Ctx<'_>) -> Reply {
    ctx.session.watched.clear();
    Reply::Ok
}

/// A rejected EXEC (Redis's `execCommandAbort`), inside MULTI or not: the
/// transaction and the watched keys are discarded and the answer is
/// `EXECABORT Transaction discarded because of: <error>`. Redis words its
/// own rejections (wrong arity) without the `ERR ` code, which it adds only
/// when sending them as they are, and keeps the code of the others
/// (`NOAUTH Authentication required.`).
pub fn exec_abort(ctx: &mut Ctx<'_>, error: &Reply) -> Reply {
    ctx.session.multi = None;
    ctx.session.watched.clear();
    ctx.session.sync_multi_view();
    let text = match error {
        Reply::Error(text) => text.strip_prefix("ERR ").unwrap_or(text),
        _ => "",
    };
    Reply::Error(format!(
        "EXECABORT Transaction discarded because of: {text}"
    ))
}

pub fn exec(ctx: &mut Ctx<'_>) -> Reply {
    let Some(multi) = ctx.session.multi.take() else {
        return Reply::err("ERR EXEC without MULTI");
    };
    ctx.session.sync_multi_view();
    let watched = std::mem::take(&mut ctx.session.watched);
    if multi.aborted {
        return Reply::err("EXECABORT Transaction discarded because of previous errors.");
    }
    // One lock for the whole transaction: watched versions are compared
    // and the queued writes applied with no other client in between.
    let server = ctx.server;
    let guard = server.store.lock();
    let changed = watched
        .iter()
        .any(|w| guard.key_version(w.db, &w.key) != w.version);
    if changed {
        return Reply::NilArray;
    }
    ctx.store = Some(guard);
    if let Some(guard) = ctx.store.as_mut() {
        guard.begin_transaction();
    }
    let table = CommandTable::redis();
    let mut replies = Vec::with_capacity(multi.queued.len());
    for args in multi.queued {
        // Every queued command passed these checks when it was queued.
        let reply = match lookup(table, &args) {
            Ok(spec) => {
                ctx.session.note_command(spec);
                call(ctx, spec, &args)
            }
            Err(reply) => reply,
        };
        replies.push(reply);
    }
    if let Some(mut guard) = ctx.store.take() {
        guard.commit_transaction();
        ctx.session.write_mark = guard.take_write();
    }
    if let Some(before) = ctx.session.store_settings_pending.take() {
        server.apply_store_settings(&before, &server.settings());
    }
    Reply::Array(replies)
}
