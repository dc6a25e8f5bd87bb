//! Server commands: COMMAND, TIME, DBSIZE, LASTSAVE, SAVE, BGSAVE, SHUTDOWN,
//! DEBUG, FUNCTION. (INFO is in `info.rs`, CONFIG in `config.rs`.)
//!
//! `COMMAND` answers from Redis 7.0's own table, restricted to what Chorus
//! serves. `DEBUG DIGEST` is always allowed because operators compare it
//! across sites; the other DEBUG subcommands obey `enable-debug-command`
//! like Redis's. Chorus runs no server-side functions: FUNCTION reports an
//! empty library set and refuses to load code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chorus_engine::Reply;

use super::client::help_reply;
use super::table::{CommandSpec, CommandTable};
use super::{lower, syntax_error, unknown_subcommand, Ctx};
use crate::server::ShutdownRequest;
use chorus_engine::redis::glob::glob_match;

/// Longest `DEBUG SLEEP` accepted, so a typo cannot stall a worker for hours.
pub const DEBUG_SLEEP_SECS_MAX: f64 = 60.0;

fn bulk(s: impl Into<String>) -> Reply {
    Reply::Bulk(Bytes::from(s.into()))
}

const COMMAND_HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "HELP",
    "    Prints this help.",
];

fn implemented_commands(table: &CommandTable) -> Vec<&CommandSpec> {
    let mut specs: Vec<&CommandSpec> = table.iter().filter(|s| s.is_implemented()).collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    specs
}

pub fn command(args: &[Bytes]) -> Reply {
    let table = CommandTable::redis();
    let Some(sub) = args.get(1).map(|a| lower(a)) else {
        return Reply::Array(
            implemented_commands(table)
                .into_iter()
                .map(|s| s.info.clone())
                .collect(),
        );
    };
    match sub.as_str() {
        "count" => Reply::Int(i64::try_from(implemented_commands(table).len()).unwrap_or(0)),
        "info" => {
            if args.len() == 2 {
                return Reply::Array(
                    implemented_commands(table)
                        .into_iter()
                        .map(|s| s.info.clone())
                        .collect(),
                );
            }
            Reply::Array(
                args.iter()
                    .skip(2)
                    .map(|name| {
                        table
                            .get(name)
                            .filter(|s| s.is_implemented())
                            .map(|s| s.info.clone())
                            .unwrap_or(Reply::Nil)
                    })
                    .collect(),
            )
        }
        "list" => command_list(table, args),
        // Chorus does not embed Redis's documentation; an empty map is what
        // Redis answers for names it has no docs for.
        "docs" => Reply::Map(Vec::new()),
        "getkeys" => command_getkeys(table, args),
        "help" => help_reply(COMMAND_HELP),
        _ => unknown_subcommand(
            args.first().map(|a| a.as_ref()).unwrap_or_default(),
            args.get(1).map(|a| a.as_ref()).unwrap_or_default(),
        ),
    }
}

fn command_list(table: &CommandTable, args: &[Bytes]) -> Reply {
    enum Filter {
        All,
        Module,
        Category(String),
        Pattern(Bytes),
    }
    let filter = match args.get(2..) {
        None | Some([]) => Filter::All,
        Some([by, kind, value]) if lower(by) == "filterby" => match lower(kind).as_str() {
            "module" => Filter::Module,
            "aclcat" => Filter::Category(lower(value)),
            "pattern" => Filter::Pattern(value.clone()),
            _ => return syntax_error(),
        },
        Some(_) => return syntax_error(),
    };
    let mut names = Vec::new();
    for spec in implemented_commands(table) {
        for s in std::iter::once(spec.command()).chain(spec.subcommands.iter()) {
            let keep = match &filter {
                Filter::All => true,
                Filter::Module => false,
                Filter::Category(cat) => s.categories.iter().any(|c| c == cat),
                Filter::Pattern(p) => glob_match(p, s.name.as_bytes(), true),
            };
            if keep {
                names.push(bulk(s.name.clone()));
            }
        }
    }
    Reply::Array(names)
}

fn command_getkeys(table: &CommandTable, args: &[Bytes]) -> Reply {
    let rest = args.get(2..).unwrap_or_default();
    let Some(mut spec) = rest
        .first()
        .and_then(|name| table.get(name))
        .filter(|s| s.is_implemented())
    else {
        return Reply::err("ERR Invalid command specified");
    };
    if let (false, Some(sub)) = (spec.subcommands.is_empty(), rest.get(1)) {
        match spec.subcommand(sub) {
            Some(s) => spec = s,
            None => return Reply::err("ERR Invalid command specified"),
        }
    }
    if spec.first_key == 0 {
        return Reply::err("ERR The command has no key arguments");
    }
    if !spec.arity_ok(rest.len()) {
        return Reply::err("ERR Invalid number of arguments specified for command");
    }
    let argc = i64::try_from(rest.len()).unwrap_or(i64::MAX);
    let last = if spec.last_key < 0 {
        argc + spec.last_key
    } else {
        spec.last_key
    };
    let step = spec.key_step.max(1);
    let mut keys = Vec::new();
    let mut i = spec.first_key;
    while i <= last && i < argc {
        if let Some(key) = usize::try_from(i).ok().and_then(|i| rest.get(i)) {
            keys.push(Reply::Bulk(key.clone()));
        }
        i += step;
    }
    if keys.is_empty() {
        return Reply::err("ERR Invalid arguments specified for command");
    }
    Reply::Array(keys)
}

pub fn time() -> Reply {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        bulk(now.as_secs().to_string()),
        bulk(now.subsec_micros().to_string()),
    ])
}

pub fn dbsize(ctx: &mut Ctx<'_>) -> Reply {
    let db = ctx.session.db;
    Reply::Int(i64::try_from(ctx.with_store(|s| s.dbsize(db))).unwrap_or(i64::MAX))
}

/// ROLE: every Chorus site takes writes, so it answers as a Redis primary
/// does, `master`, with the number of ops it holds (every site's, a count
/// that only grows) as its replication offset, and no replicas: its peers
/// are primaries too (`PEER LIST` shows them). Clients and proxies that ask
/// ROLE to find where to write therefore write here.
pub fn role(ctx: &mut Ctx<'_>) -> Reply {
    let held: u64 = ctx.with_store(|s| s.engine().vv().iter().map(|(_, seq)| seq).sum());
    Reply::Array(vec![
        bulk("master".to_string()),
        Reply::Int(i64::try_from(held).unwrap_or(i64::MAX)),
        Reply::Array(Vec::new()),
    ])
}

pub fn lastsave(ctx: &mut Ctx<'_>) -> Reply {
    Reply::Int(i64::try_from(ctx.server.last_save_unix()).unwrap_or(0))
}

pub fn save(ctx: &mut Ctx<'_>) -> Reply {
    match ctx.with_store(|s| s.checkpoint()) {
        Ok(()) => {
            ctx.server.note_saved();
            Reply::Ok
        }
        Err(e) => {
            tracing::warn!(error = %e, "SAVE failed");
            Reply::err("ERR")
        }
    }
}

pub fn bgsave(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match args.get(1).map(|a| lower(a)).as_deref() {
        None | Some("schedule") if args.len() <= 2 => {}
        _ => return syntax_error(),
    }
    // Checkpoints are incremental and quick, so "background" saving runs
    // in place; the reply is Redis's.
    match ctx.with_store(|s| s.checkpoint()) {
        Ok(()) => {
            ctx.server.note_saved();
            Reply::Simple("Background saving started".to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "BGSAVE failed");
            Reply::err("ERR Background saving failed")
        }
    }
}

/// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`. On success there is no
/// reply: the process exits, as Redis does.
pub fn shutdown(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (mut save, mut nosave, mut force, mut abort, mut any) = (false, false, false, false, false);
    for arg in args.iter().skip(1) {
        match lower(arg).as_str() {
            "nosave" => nosave = true,
            "save" => save = true,
            "now" => {}
            "force" => force = true,
            "abort" => {
                abort = true;
                continue;
            }
            _ => return syntax_error(),
        }
        any = true;
    }
    if (abort && any) || (save && nosave) {
        return syntax_error();
    }
    if abort {
        return Reply::err("ERR No shutdown in progress.");
    }
    let checkpoint = if save {
        true
    } else if nosave {
        false
    } else {
        ctx.server.save_points_configured()
    };
    match ctx.server.shutdown(ShutdownRequest { checkpoint, force }) {
        Ok(()) => {
            ctx.session.suppress_reply = true;
            ctx.session.close_after_reply = true;
            Reply::Ok
        }
        Err(e) => {
            tracing::warn!(error = %e, "SHUTDOWN failed");
            Reply::err("ERR Errors trying to SHUTDOWN. Check logs.")
        }
    }
}

const DEBUG_HELP: &[&str] = &[
    "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DIGEST",
    "    Output a hex signature representing the current DB content.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
    "HELP",
    "    Prints this help.",
];

pub fn debug(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = args.get(1).map(|a| lower(a)).unwrap_or_default();
    if sub == "digest" && args.len() == 2 {
        return Reply::Simple(ctx.with_store(|s| s.digest()));
    }
    if sub == "help" && args.len() == 2 {
        return help_reply(DEBUG_HELP);
    }
    if !ctx
        .settings
        .enable_debug_command
        .allows(ctx.session.peer_is_local)
    {
        return Reply::err("ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.");
    }
    match (sub.as_str(), args.get(2)) {
        ("sleep", Some(secs)) if args.len() == 3 => {
            let secs: f64 = std::str::from_utf8(secs)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0);
            let secs = if secs.is_finite() {
                secs.clamp(0.0, DEBUG_SLEEP_SECS_MAX)
            } else {
                0.0
            };
            // Like Redis, the sleep blocks this worker: that is its purpose.
            std::thread::sleep(Duration::from_secs_f64(secs));
            Reply::Ok
        }
        _ => super::subcommand_syntax_error(args),
    }
}
