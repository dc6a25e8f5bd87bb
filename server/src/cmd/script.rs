//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT LOAD | EXISTS | FLUSH |
//! KILL | HELP, with Redis 7.0's replies and errors (`eval.c`,
//! `script_lua.c`). The interpreter is [`crate::script`].
//!
//! A script runs under the store lock, inside one engine transaction, as
//! EXEC runs its queue (inside EXEC, under EXEC's): its writes are one op.
//! Lock order: the store, then the interpreter; SCRIPT KILL takes neither.

use std::sync::Arc;

use bytes::Bytes;
use chorus_engine::Reply;
use mlua::{Lua, Value};

use super::client::help_reply;
use super::table::{flag, CommandTable};
use super::{call, lower, Ctx, Handler};
use crate::resp::parse::parse_i64_strict;
use crate::script::{convert, KillOutcome, ScriptRun, NOTBUSY_ERROR, UNKILLABLE_ERROR};

const HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

const NOSCRIPT_ERROR: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// What EVAL* or FCALL* runs.
enum Target {
    /// A script body (EVAL) or its sha (EVALSHA).
    Script { body: Bytes, by_sha: bool },
    /// A function registered by FUNCTION LOAD.
    Function(String),
}

/// `numkeys key... arg...` from `args[2..]`.
fn keys_and_args(args: &[Bytes]) -> Result<(&[Bytes], &[Bytes]), Reply> {
    let Some(numkeys) = args.get(2) else {
        return Err(super::wrong_arity("eval"));
    };
    let Some(numkeys) = parse_i64_strict(numkeys) else {
        return Err(Reply::err(chorus_engine::reply::errors::NOT_INTEGER));
    };
    let rest = args.get(3..).unwrap_or_default();
    if numkeys < 0 {
        return Err(Reply::err("ERR Number of keys can't be negative"));
    }
    usize::try_from(numkeys)
        .ok()
        .filter(|&n| n <= rest.len())
        .map(|n| rest.split_at(n))
        .ok_or_else(|| Reply::err("ERR Number of keys can't be greater than number of args"))
}

/// EVAL / EVALSHA / EVAL_RO / EVALSHA_RO.
pub fn eval(ctx: &mut Ctx<'_>, args: &[Bytes], by_sha: bool, read_only: bool) -> Reply {
    let body = args.get(1).cloned().unwrap_or_default();
    run(ctx, args, Target::Script { body, by_sha }, read_only)
}

/// FCALL / FCALL_RO.
pub fn fcall(ctx: &mut Ctx<'_>, args: &[Bytes], read_only: bool) -> Reply {
    let name = String::from_utf8_lossy(args.get(1).map(|a| a.as_ref()).unwrap_or_default());
    run(ctx, args, Target::Function(name.into_owned()), read_only)
}

fn run(ctx: &mut Ctx<'_>, args: &[Bytes], target: Target, read_only: bool) -> Reply {
    let (keys, argv) = match keys_and_args(args) {
        Ok(split) => split,
        Err(reply) => return reply,
    };
    let server = ctx.server;
    // Lock order: the store (EXEC's, or ours), then the interpreter.
    let own_lock = ctx.store.is_none();
    if own_lock {
        let threshold_ms = ctx.settings.busy_reply_threshold_ms;
        match server
            .store
            .lock_unless(|| server.scripts.run.busy(threshold_ms))
        {
            Some(guard) => ctx.store = Some(guard),
            None => return Reply::err(crate::script::BUSY_ERROR),
        }
    }
    let mut vm = server.scripts.vm.lock();
    if vm.is_none() {
        match crate::script::ScriptVm::new() {
            Ok(new) => *vm = Some(new),
            Err(e) => {
                drop(vm);
                ctx.store = None;
                return Reply::Error(format!("ERR {e}"));
            }
        }
    }
    let Some(vm) = vm.as_mut() else {
        ctx.store = None;
        return Reply::err("ERR scripting unavailable");
    };
    // Resolve what to run; a refusal releases our lock untouched.
    let resolved = match &target {
        Target::Script { body, by_sha: true } => {
            let sha = String::from_utf8_lossy(body).to_ascii_lowercase();
            if sha.len() == 40 && vm.exists(&sha) {
                Ok((sha, read_only))
            } else {
                Err(Reply::err(NOSCRIPT_ERROR))
            }
        }
        Target::Script {
            body,
            by_sha: false,
        } => vm
            .load(body, true)
            .map(|sha| (sha, read_only))
            .map_err(Reply::Error),
        Target::Function(name) => match vm.functions.function(name) {
            None => Err(Reply::err("ERR Function not found")),
            Some(f) if read_only && !f.no_writes() => Err(Reply::err(
                "ERR Can not execute a script with write flag using *_ro command.",
            )),
            Some(f) => Ok((name.clone(), read_only || f.no_writes())),
        },
    };
    let (id, read_only) = match resolved {
        Ok(found) => found,
        Err(reply) => {
            if own_lock {
                ctx.store = None;
            }
            return reply;
        }
    };
    if own_lock {
        if let Some(guard) = ctx.store.as_mut() {
            guard.begin_transaction();
        }
    }
    // SELECT inside a script changes the script's database only.
    let db = ctx.session.db;
    let run = Arc::clone(&server.scripts.run);
    let mut call_from_script =
        |lua: &Lua, resp3: bool, args: Vec<Bytes>| -> mlua::Result<(Value, bool)> {
            let reply = script_command(ctx, &args, read_only, &run);
            let failed = reply.is_error();
            let value = convert::reply_to_lua(lua, &reply, resp3, 0)?;
            Ok((value, failed))
        };
    let outcome = server.scripts.running(|| match target {
        Target::Script { .. } => vm.run(&id, keys, argv, &run, &mut call_from_script),
        Target::Function(_) => vm.call_function(&id, keys, argv, &run, &mut call_from_script),
    });
    if ctx.session.db != db {
        ctx.session.set_db(db);
    }
    if own_lock {
        if let Some(mut guard) = ctx.store.take() {
            guard.commit_transaction();
            ctx.session.write_mark = guard.take_write();
        }
    }
    match outcome {
        Some(Ok(reply)) => reply,
        Some(Err(error)) => Reply::Error(error),
        None => Reply::err(NOSCRIPT_ERROR),
    }
}

/// One `redis.call` / `redis.pcall`: Redis's checks for scripts, then the
/// command, through the same `call` as a client's.
fn script_command(ctx: &mut Ctx<'_>, args: &[Bytes], read_only: bool, run: &ScriptRun) -> Reply {
    let Ok(spec) = CommandTable::redis().resolve(args) else {
        return Reply::err("ERR Unknown Redis command called from script");
    };
    if !spec.arity_ok(args.len()) {
        return Reply::err("ERR Wrong number of args calling Redis command from script");
    }
    if spec.has_flag(flag::NO_SCRIPT) {
        return Reply::err("ERR This Redis command is not allowed from script");
    }
    if !runs_in_scripts(spec.handler) {
        return Reply::err("ERR Chorus does not run this command from scripts");
    }
    if spec.has_flag(flag::WRITE) {
        if read_only {
            return Reply::err("ERR Write commands are not allowed from read-only scripts.");
        }
        run.note_write();
    }
    ctx.session.note_command(spec);
    call(ctx, spec, args)
}

/// Server commands a script may call. A script holds the store (and the
/// engine) while it runs; the other server commands take one of them again
/// (INFO's replication figures, CONFIG SET appendfsync, SAVE...) or wait
/// for peers (WAIT), so they are refused instead of stalling the site.
fn runs_in_scripts(handler: Handler) -> bool {
    matches!(
        handler,
        Handler::Data
            | Handler::Ping
            | Handler::Echo
            | Handler::Time
            | Handler::Select
            | Handler::Dbsize
            | Handler::Pubsub
            | Handler::Client
    )
}

/// SCRIPT LOAD | EXISTS | FLUSH | KILL | HELP.
pub fn script(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = args.get(1).map(|a| lower(a)).unwrap_or_default();
    let scripts = &ctx.server.scripts;
    match (sub.as_str(), args.len()) {
        ("help", 2) => help_reply(HELP),
        ("kill", 2) => match scripts.run.kill() {
            KillOutcome::Killed => Reply::Ok,
            KillOutcome::NotBusy => Reply::err(NOTBUSY_ERROR),
            KillOutcome::Unkillable => Reply::err(UNKILLABLE_ERROR),
        },
        ("flush", 2 | 3) => {
            if let Some(mode) = args.get(2) {
                if !matches!(lower(mode).as_str(), "sync" | "async") {
                    return Reply::err("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
                }
            }
            match scripts.with_vm(|vm| vm.flush()) {
                Ok(()) => Reply::Ok,
                Err(e) => Reply::Error(e),
            }
        }
        ("exists", n) if n > 2 => {
            let found = scripts.with_vm(|vm| {
                args.iter()
                    .skip(2)
                    .map(|sha| Reply::Int(i64::from(vm.exists(&String::from_utf8_lossy(sha)))))
                    .collect::<Vec<_>>()
            });
            match found {
                Ok(items) => Reply::Array(items),
                Err(e) => Reply::Error(e),
            }
        }
        ("load", 3) => {
            let body = args.get(2).cloned().unwrap_or_default();
            match scripts.with_vm(|vm| vm.load(&body, false)) {
                Ok(Ok(sha)) => Reply::Bulk(Bytes::from(sha)),
                Ok(Err(e)) | Err(e) => Reply::Error(e),
            }
        }
        ("debug", _) => Reply::err("ERR SCRIPT DEBUG is not supported by Chorus"),
        _ => super::subcommand_syntax_error(args),
    }
}
