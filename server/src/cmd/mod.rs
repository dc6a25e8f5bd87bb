//! Command dispatch: from a parsed request to a [`Reply`], with Redis 7.0's
//! checks in Redis's order (`processCommand` in `server.c`):
//!
//! 1. look the name up in Redis's table, then the subcommand: unknown ->
//!    `ERR unknown command ...` / `ERR unknown subcommand ...`;
//! 2. arity -> `ERR wrong number of arguments for '...' command`;
//! 3. authentication -> `NOAUTH Authentication required.` (except no-auth
//!    commands: AUTH, HELLO, QUIT, RESET);
//! 4. inside MULTI: `no-multi` commands are refused, everything except
//!    EXEC/DISCARD/MULTI/WATCH/QUIT/RESET is queued (`+QUEUED`);
//! 5. run it: the server's own commands in this folder, one file per group;
//!    every data command through [`call`] -> [`Store`](crate::store::Store),
//!    the one place the engine is plugged in.
//!
//! A rejection in steps 1-4 inside MULTI marks the transaction so EXEC
//! answers `EXECABORT`, as in Redis; a rejection of EXEC itself answers
//! `EXECABORT` at once, inside MULTI or not. Every function here returns a `Reply`
//! and never touches the socket.

pub mod client;
pub mod config;
pub mod connection;
pub mod function;
pub mod info;
pub mod latency;
pub mod member;
pub mod memory;
pub mod multi;
pub mod object;
pub mod peer;
pub mod pubsub;
pub mod script;
pub mod server;
pub mod slowlog;
pub mod table;
pub mod unit;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chorus_engine::redis::Command;
use chorus_engine::Reply;

use crate::config::Settings;
use crate::connection::Session;
use crate::server::ServerState;
use crate::slowlog::{Call as SlowCall, Redact};
use crate::store::StoreGuard;
use table::{flag, CommandSpec, CommandTable};

/// What runs a command, decided once per table entry from its top-level
/// name: the server itself (one variant per command it runs), the engine
/// (`Data`), or nothing (`Unimplemented`: in Redis's table, not served by
/// Chorus, so it gets the unknown-command error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    Auth,
    Bgsave,
    Client,
    Command,
    Config,
    Dbsize,
    Debug,
    Discard,
    Echo,
    Eval,
    Exec,
    Fcall,
    Function,
    Hello,
    Info,
    Lastsave,
    Latency,
    Memory,
    Role,
    Multi,
    Object,
    Peer,
    Member,
    Unit,
    Ping,
    Pubsub,
    Quit,
    Reset,
    Save,
    Script,
    Select,
    Shutdown,
    Slowlog,
    Time,
    Unwatch,
    Wait,
    Watch,
    Data,
    Unimplemented,
}

impl Handler {
    /// The handler of a top-level command.
    pub fn of(top: &Command) -> Handler {
        match top.name.as_str() {
            "auth" => Handler::Auth,
            "bgsave" => Handler::Bgsave,
            "client" => Handler::Client,
            "command" => Handler::Command,
            "config" => Handler::Config,
            "dbsize" => Handler::Dbsize,
            "debug" => Handler::Debug,
            "discard" => Handler::Discard,
            "echo" => Handler::Echo,
            "eval" | "evalsha" | "eval_ro" | "evalsha_ro" => Handler::Eval,
            "script" => Handler::Script,
            "exec" => Handler::Exec,
            "function" => Handler::Function,
            "fcall" | "fcall_ro" => Handler::Fcall,
            "hello" => Handler::Hello,
            "info" => Handler::Info,
            "lastsave" => Handler::Lastsave,
            "latency" => Handler::Latency,
            "memory" => Handler::Memory,
            "role" => Handler::Role,
            "multi" => Handler::Multi,
            "member" => Handler::Member,
            "unit" => Handler::Unit,
            "object" => Handler::Object,
            "peer" => Handler::Peer,
            "ping" => Handler::Ping,
            "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ssubscribe"
            | "sunsubscribe" | "publish" | "spublish" | "pubsub" => Handler::Pubsub,
            "quit" => Handler::Quit,
            "reset" => Handler::Reset,
            "save" => Handler::Save,
            "select" => Handler::Select,
            "shutdown" => Handler::Shutdown,
            "slowlog" => Handler::Slowlog,
            "time" => Handler::Time,
            "unwatch" => Handler::Unwatch,
            "wait" => Handler::Wait,
            "watch" => Handler::Watch,
            _ if top.data.is_some() => Handler::Data,
            _ => Handler::Unimplemented,
        }
    }

    /// Runs at once inside MULTI instead of being queued.
    fn runs_inside_multi(self) -> bool {
        matches!(
            self,
            Handler::Exec
                | Handler::Discard
                | Handler::Multi
                | Handler::Watch
                | Handler::Quit
                | Handler::Reset
        )
    }
}

/// What a command may touch while it runs.
pub struct Ctx<'a> {
    pub server: &'a ServerState,
    pub session: &'a mut Session,
    pub settings: Arc<Settings>,
    /// Held by EXEC for the whole transaction so it is atomic; single
    /// commands lock the store themselves.
    pub store: Option<StoreGuard<'a>>,
}

impl Ctx<'_> {
    /// Runs `f` with exclusive access to the store: the transaction's guard
    /// inside EXEC (locking again there would deadlock), a fresh lock
    /// otherwise.
    pub fn with_store<R>(&mut self, f: impl FnOnce(&mut StoreGuard<'_>) -> R) -> R {
        match self.store.as_mut() {
            Some(guard) => f(guard),
            None => f(&mut self.server.store.lock()),
        }
    }
}

/// Lower-cases an argument (commands and options are case-insensitive).
/// Allocates: for options of rare commands; the per-command lookup uses
/// [`CommandTable::get`], which does not.
pub fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

pub use chorus_engine::redis::errors::{
    c_str_prefix, error_text, syntax_error, unknown_command, unknown_subcommand, wrong_arity,
};

/// Redis's `addReplySubcommandSyntaxError`: a known subcommand with
/// arguments its container does not take.
pub fn subcommand_syntax_error(args: &[Bytes]) -> Reply {
    let container = args.first().map(|a| a.as_ref()).unwrap_or_default();
    Reply::Error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        String::from_utf8_lossy(c_str_prefix(
            args.get(1).map(|a| a.as_ref()).unwrap_or_default(),
            128
        )),
        String::from_utf8_lossy(container).to_ascii_uppercase()
    ))
}

/// Finds the spec for a request, or the rejection Redis would send:
/// unknown command (or one Chorus does not serve), then unknown subcommand.
/// Allocates nothing unless it rejects.
pub fn lookup(table: &'static CommandTable, args: &[Bytes]) -> Result<&'static CommandSpec, Reply> {
    table.resolve(args)
}

/// Runs one request through every check and, if it passes, executes or
/// queues it. This is the whole of Redis's `processCommand` that applies.
pub fn process(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let found = lookup(CommandTable::redis(), args);
    process_found(ctx, found, args)
}

/// [`process`] for a request already looked up with [`lookup`].
pub fn process_found(
    ctx: &mut Ctx<'_>,
    found: Result<&'static CommandSpec, Reply>,
    args: &[Bytes],
) -> Reply {
    let spec = match found {
        Ok(spec) => spec,
        Err(reply) => return reject(ctx, reply),
    };
    ctx.session.note_command(spec);
    if !spec.arity_ok(args.len()) {
        return reject_command(ctx, spec, wrong_arity(&spec.name));
    }
    if ctx.session.auth_required(&ctx.settings) && !spec.has_flag(flag::NO_AUTH) {
        return reject_command(ctx, spec, Reply::err("NOAUTH Authentication required."));
    }
    if ctx.session.in_resp2_pubsub_mode() && !allowed_in_pubsub_mode(spec) {
        return reject_command(ctx, spec, pubsub::not_allowed_in_context(&spec.name));
    }
    let threshold_ms = ctx.settings.busy_reply_threshold_ms;
    let run = &ctx.server.scripts.run;
    let busy = match (spec.has_flag(flag::ALLOW_BUSY), spec.handler) {
        // WATCH, EXEC and SHUTDOWN are allowed while a script is busy in
        // Redis, but here they need the store the script holds: they get
        // BUSY too (a runaway script that wrote ends with the process; its
        // op was never logged, so a restart does not hold half of it).
        (_, Handler::Watch | Handler::Exec | Handler::Shutdown) => {
            run.wait_unless_busy(threshold_ms)
        }
        (true, _) => false,
        // Data commands wait for the store in slices themselves.
        (false, Handler::Data) => run.busy(threshold_ms),
        (false, _) => run.wait_unless_busy(threshold_ms),
    };
    if busy {
        // A script holds the store past `busy-reply-threshold`: answer at
        // once instead of queueing behind it, as Redis does.
        return reject_command(ctx, spec, Reply::err(crate::script::BUSY_ERROR));
    }
    if ctx.session.multi.is_some() {
        if spec.has_flag(flag::NO_MULTI) {
            return reject_command(
                ctx,
                spec,
                Reply::err("ERR Command not allowed inside a transaction"),
            );
        }
        if !spec.handler.runs_inside_multi() {
            if let Some(data) = spec.data.filter(|d| d.write) {
                let keys = chorus_engine::cmd::write_keys(data, args);
                let mut earlier = ctx
                    .session
                    .multi
                    .as_mut()
                    .map(|m| std::mem::take(&mut m.unit_keys))
                    .unwrap_or_default();
                let checked = unit::check_queued(ctx, &keys, Some(&mut earlier));
                if let Some(m) = ctx.session.multi.as_mut() {
                    m.unit_keys = earlier;
                }
                if let Err(e) = checked {
                    return reject_command(ctx, spec, e);
                }
            }
            return multi::queue(ctx, spec, args);
        }
    }
    call(ctx, spec, args)
}

/// What a RESP2 client may run while subscribed (Redis's `processCommand`).
fn allowed_in_pubsub_mode(spec: &CommandSpec) -> bool {
    match spec.handler {
        Handler::Ping | Handler::Quit | Handler::Reset => true,
        Handler::Pubsub => matches!(
            spec.name.as_str(),
            "subscribe"
                | "unsubscribe"
                | "psubscribe"
                | "punsubscribe"
                | "ssubscribe"
                | "sunsubscribe"
        ),
        _ => false,
    }
}

/// Rejects a command that was found: as [`reject`], except that a rejected
/// EXEC (wrong arity, NOAUTH), inside MULTI or not, discards the transaction
/// and answers `EXECABORT` (Redis's `rejectCommand` calls `execCommandAbort`
/// for EXEC).
fn reject_command(ctx: &mut Ctx<'_>, spec: &CommandSpec, reply: Reply) -> Reply {
    ctx.server.stats.commands.record_rejected(spec.id);
    if spec.handler == Handler::Exec {
        let reply = multi::exec_abort(ctx, &reply);
        count_error(ctx, &reply);
        return reply;
    }
    reject(ctx, reply)
}

/// Replies with a rejection, marking an open transaction as failed.
fn reject(ctx: &mut Ctx<'_>, reply: Reply) -> Reply {
    if let Some(multi) = ctx.session.multi.as_mut() {
        multi.aborted = true;
    }
    count_error(ctx, &reply);
    reply
}

fn count_error(ctx: &Ctx<'_>, reply: &Reply) {
    if let Reply::Error(text) = reply {
        ctx.server.stats.count_error(text);
    }
}

/// Executes a command that passed every check (Redis's `call`): counted in
/// `total_commands_processed`, its error (if any) in the error stats.
pub fn call(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Reply {
    // In a batch the previous command's end is this one's start: one clock
    // read per command.
    let started = ctx.session.batch_clock.unwrap_or_else(Instant::now);
    let reply = run(ctx, spec, args);
    let ended = Instant::now();
    let took = ended.saturating_duration_since(started);
    if ctx.session.batch_clock.is_some() {
        ctx.session.batch_clock = Some(ended);
    }
    // An error inside EXEC's reply counts against the command that
    // answered it, not EXEC, as in Redis.
    let failed = matches!(reply, Reply::Error(_));
    let settings = &ctx.settings;
    ctx.session.cmdstats.add(
        &ctx.server.stats.commands,
        spec.id,
        took,
        failed,
        settings.latency_tracking,
    );
    let event = if spec.has_flag(flag::FAST) {
        "fast-command"
    } else {
        "command"
    };
    ctx.server.latency.add_if_needed(
        event,
        u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        settings.latency_monitor_threshold_ms,
    );
    if !spec.has_flag(flag::SKIP_SLOWLOG) {
        let redact = match spec.handler {
            Handler::Auth => Redact::AllArgs,
            Handler::Hello => Redact::HelloAuth,
            _ => Redact::None,
        };
        let call = SlowCall {
            args,
            took,
            addr: ctx.session.handle.addr,
            name: ctx.session.name.as_ref(),
            redact,
        };
        ctx.server.slowlog.maybe_push(
            call,
            settings.slowlog_log_slower_than,
            settings.slowlog_max_len,
        );
    }
    reply
}

/// [`call`] without the statistics.
fn run(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Reply {
    ctx.session.commands_processed += 1;
    if spec.handler != Handler::Data {
        // Server commands see (INFO) or reset (CONFIG RESETSTAT) the
        // counters: bring them up to date first.
        ctx.session.flush_stats(&ctx.server.stats);
    }
    let reply = match spec.handler {
        Handler::Ping => connection::ping(ctx, args),
        Handler::Echo => connection::echo(args),
        Handler::Quit => connection::quit(ctx),
        Handler::Hello => connection::hello(ctx, args),
        Handler::Auth => connection::auth(ctx, args),
        Handler::Select => connection::select(ctx, args),
        Handler::Reset => connection::reset(ctx),
        Handler::Client => client::run(ctx, args),
        Handler::Config => config::run(ctx, args),
        Handler::Info => info::run(ctx, args),
        Handler::Command => server::command(args),
        Handler::Time => server::time(),
        Handler::Dbsize => server::dbsize(ctx),
        Handler::Lastsave => server::lastsave(ctx),
        Handler::Latency => latency::run(ctx, args),
        Handler::Memory => memory::run(ctx, args),
        Handler::Role => server::role(ctx),
        Handler::Save => server::save(ctx),
        Handler::Bgsave => server::bgsave(ctx, args),
        Handler::Shutdown => server::shutdown(ctx, args),
        Handler::Slowlog => slowlog::run(ctx, args),
        Handler::Debug => server::debug(ctx, args),
        Handler::Function => function::run(ctx, args),
        Handler::Fcall => {
            let read_only = spec.name == "fcall_ro";
            script::fcall(ctx, args, read_only)
        }
        Handler::Multi => multi::multi(ctx),
        Handler::Object => object::run(ctx, args),
        Handler::Exec => multi::exec(ctx),
        Handler::Discard => multi::discard(ctx),
        Handler::Watch => multi::watch(ctx, args),
        Handler::Unwatch => multi::unwatch(ctx),
        Handler::Wait => peer::wait(ctx, args),
        Handler::Peer => peer::peer(ctx, args),
        Handler::Member => member::member(ctx, args),
        Handler::Unit => unit::unit(ctx, args),
        Handler::Pubsub => pubsub_command(ctx, spec, args),
        Handler::Eval => {
            let name = spec.name.as_str();
            let (by_sha, read_only) = (name.starts_with("evalsha"), name.ends_with("_ro"));
            script::eval(ctx, args, by_sha, read_only)
        }
        Handler::Script => script::script(ctx, args),
        Handler::Data => data_command(ctx, spec, args),
        // `lookup` refuses these before they get here.
        Handler::Unimplemented => unknown_command(args),
    };
    count_error(ctx, &reply);
    reply
}

fn pubsub_command(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Reply {
    use crate::pubsub::Kind;
    match spec.name.split('|').next().unwrap_or_default() {
        "subscribe" => pubsub::subscribe(ctx, args, Kind::Channel),
        "psubscribe" => pubsub::subscribe(ctx, args, Kind::Pattern),
        "ssubscribe" => pubsub::subscribe(ctx, args, Kind::Shard),
        "unsubscribe" => pubsub::unsubscribe(ctx, args, Kind::Channel),
        "punsubscribe" => pubsub::unsubscribe(ctx, args, Kind::Pattern),
        "sunsubscribe" => pubsub::unsubscribe(ctx, args, Kind::Shard),
        "publish" => pubsub::publish(ctx, args, false),
        "spublish" => pubsub::publish(ctx, args, true),
        _ => pubsub::pubsub(ctx, args),
    }
}

/// The single function through which every data command reaches the engine,
/// resolved: the engine runs the entry's data command without looking it
/// up or checking its arity again.
fn data_command(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Reply {
    let Some(data) = spec.data else {
        // `Handler::Data` is given only to entries with a data command.
        return unknown_command(args);
    };
    let db = ctx.session.db;
    match ctx.store.as_mut() {
        // Inside EXEC (the transaction's op is noted at commit) or a batch.
        Some(guard) => guard.execute(db, data, args),
        None => {
            let scripts = &ctx.server.scripts;
            let threshold_ms = ctx.settings.busy_reply_threshold_ms;
            let Some(mut guard) = ctx
                .server
                .store
                .lock_unless(|| scripts.run.busy(threshold_ms))
            else {
                return Reply::err(crate::script::BUSY_ERROR);
            };
            let reply = guard.execute(db, data, args);
            ctx.session.write_mark = guard.take_write();
            reply
        }
    }
}
