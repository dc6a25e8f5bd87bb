//! `CLIENT` subcommands: ID, SETNAME, GETNAME, LIST, INFO, KILL, NO-EVICT,
//! REPLY, UNBLOCK, PAUSE, UNPAUSE, HELP. Output formats and errors follow Redis 7.0 (`networking.c`).
//! Chorus has one user (`default`) and no replica clients, so those
//! filters select nothing; a client subscribed to anything is of type
//! `pubsub`, as in Redis.

use std::time::Instant;

use bytes::Bytes;
use chorus_engine::Reply;

use super::connection::set_client_name;
use super::{lower, syntax_error, unknown_subcommand, Ctx};
use crate::connection::ReplyMode;
use crate::resp::parse::parse_i64_strict;
use chorus_engine::redis::num::parse_int;

const HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "HELP",
    "    Prints this help.",
];

/// Redis's `addReplyHelp`: an array of simple strings.
pub fn help_reply(lines: &[&str]) -> Reply {
    Reply::Array(
        lines
            .iter()
            .map(|l| Reply::Simple((*l).to_string()))
            .collect(),
    )
}

/// The type a filter names, as Redis's `getClientType` sees a client.
fn client_type(client: &crate::clients::ClientHandle) -> &'static str {
    if client.view().is_pubsub() {
        "pubsub"
    } else {
        "normal"
    }
}

/// Client types a filter can name; only `normal` and `pubsub` clients exist in Chorus.
fn client_type_is_known(name: &str) -> bool {
    matches!(name, "normal" | "slave" | "replica" | "master" | "pubsub")
}

pub fn run(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = args.get(1).map(|a| lower(a)).unwrap_or_default();
    match sub.as_str() {
        "id" => Reply::Int(i64::try_from(ctx.session.id).unwrap_or(i64::MAX)),
        "getname" => match &ctx.session.name {
            Some(name) => Reply::Bulk(name.clone()),
            None => Reply::Nil,
        },
        "setname" => match args.get(2) {
            Some(name) => match set_client_name(ctx, name) {
                Ok(()) => Reply::Ok,
                Err(reply) => reply,
            },
            None => super::wrong_arity("client|setname"),
        },
        "info" => Reply::Verbatim(format!("{}\n", ctx.session.handle.describe(Instant::now()))),
        "list" => list(ctx, args),
        "kill" => kill(ctx, args),
        "no-evict" => match args.get(2).map(|a| lower(a)).as_deref() {
            Some("on") => {
                ctx.session.set_no_evict(true);
                Reply::Ok
            }
            Some("off") => {
                ctx.session.set_no_evict(false);
                Reply::Ok
            }
            _ => syntax_error(),
        },
        "reply" => match args.get(2).map(|a| lower(a)).as_deref() {
            Some("on") => {
                ctx.session.reply_mode = ReplyMode::On;
                Reply::Ok
            }
            // OFF and SKIP are not answered themselves; SKIP also drops the
            // reply of the command after it.
            Some("off") => {
                ctx.session.reply_mode = ReplyMode::Off;
                ctx.session.suppress_reply = true;
                Reply::Ok
            }
            Some("skip") => {
                if ctx.session.reply_mode != ReplyMode::Off {
                    ctx.session.reply_mode = ReplyMode::SkipNext;
                }
                ctx.session.suppress_reply = true;
                Reply::Ok
            }
            _ => syntax_error(),
        },
        "unblock" if args.len() == 3 || args.len() == 4 => unblock(ctx, args),
        "pause" if args.len() == 3 || args.len() == 4 => pause(ctx, args),
        "unpause" => {
            ctx.server.pause.unpause();
            Reply::Ok
        }
        "help" => help_reply(HELP),
        "pause" | "unblock" => super::subcommand_syntax_error(args),
        _ => unknown_subcommand(
            args.first().map(|a| a.as_ref()).unwrap_or_default(),
            args.get(1).map(|a| a.as_ref()).unwrap_or_default(),
        ),
    }
}

/// CLIENT PAUSE timeout [WRITE|ALL] (milliseconds; the mode is checked
/// first, as in Redis).
fn pause(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    use crate::pause::Mode;
    let mode = match args.get(3).map(|a| lower(a)).as_deref() {
        None | Some("all") => Mode::All,
        Some("write") => Mode::Write,
        Some(_) => return Reply::err("ERR CLIENT PAUSE mode must be WRITE or ALL"),
    };
    let Some(ms) = args.get(2).and_then(|a| parse_int(a)) else {
        return Reply::err("ERR timeout is not an integer or out of range");
    };
    let Ok(ms) = u64::try_from(ms) else {
        return Reply::err("ERR timeout is negative");
    };
    // Redis adds the timeout to the Unix time in milliseconds: a sum past
    // i64 wraps to the past there, so such a pause ends at once. Same here.
    let unix_ms = crate::store::now_ms();
    let fits = unix_ms
        .checked_add(ms)
        .is_some_and(|end| i64::try_from(end).is_ok());
    let now = Instant::now();
    if let (true, Some(until)) = (fits, now.checked_add(std::time::Duration::from_millis(ms))) {
        ctx.server.pause.pause(until, mode);
    }
    Reply::Ok
}

/// CLIENT UNBLOCK id [TIMEOUT|ERROR]: 1 if that client was blocked.
fn unblock(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let error = match args.get(3).map(|a| lower(a)).as_deref() {
        None | Some("timeout") => false,
        Some("error") => true,
        Some(_) => return Reply::err("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
    };
    let Some(id) = args.get(2).and_then(|a| parse_i64_strict(a)) else {
        return Reply::err(chorus_engine::redis::errors::NOT_INTEGER);
    };
    let unblocked = u64::try_from(id)
        .ok()
        .and_then(|id| ctx.server.clients.get(id))
        .is_some_and(|c| c.request_unblock(error));
    Reply::Int(i64::from(unblocked))
}

fn list(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut ids: Option<Vec<u64>> = None;
    let mut type_filter: Option<String> = None;
    match args.get(2).map(|a| lower(a)).as_deref() {
        None => {}
        Some("type") if args.len() == 4 => {
            let name = args.get(3).map(|a| lower(a)).unwrap_or_default();
            if !client_type_is_known(&name) {
                return Reply::Error(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(args.get(3).map(|a| a.as_ref()).unwrap_or_default())
                ));
            }
            type_filter = Some(name);
        }
        Some("id") if args.len() >= 4 => {
            let mut wanted = Vec::new();
            for raw in args.iter().skip(3) {
                match parse_i64_strict(raw)
                    .and_then(|n| u64::try_from(n).ok())
                    .filter(|&n| n > 0)
                {
                    Some(id) => wanted.push(id),
                    None => return Reply::err("ERR Invalid client ID"),
                }
            }
            ids = Some(wanted);
        }
        Some(_) => return syntax_error(),
    }
    let now = Instant::now();
    let mut text = String::new();
    for client in ctx.server.clients.all() {
        if let Some(ids) = &ids {
            if !ids.contains(&client.id) {
                continue;
            }
        }
        if type_filter
            .as_deref()
            .is_some_and(|t| t != client_type(&client))
        {
            continue;
        }
        text.push_str(&client.describe(now));
        text.push('\n');
    }
    Reply::Verbatim(text)
}

fn kill(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut addr: Option<String> = None;
    let mut laddr: Option<String> = None;
    let mut id: Option<u64> = None;
    let mut type_filter: Option<String> = None;
    let mut skip_me = true;
    let old_form = args.len() == 3;
    if old_form {
        addr = args.get(2).map(|a| String::from_utf8_lossy(a).into_owned());
        // The old form lets a client kill itself.
        skip_me = false;
    } else {
        let mut i = 2;
        while let Some(option) = args.get(i) {
            let Some(value) = args.get(i + 1) else {
                return syntax_error();
            };
            let value_text = String::from_utf8_lossy(value).into_owned();
            match lower(option).as_str() {
                "id" => match parse_i64_strict(value).filter(|&n| n >= 1) {
                    Some(n) => id = u64::try_from(n).ok(),
                    None => return Reply::err("ERR client-id should be greater than 0"),
                },
                "type" => {
                    let name = value_text.to_ascii_lowercase();
                    if !client_type_is_known(&name) {
                        return Reply::Error(format!("ERR Unknown client type '{value_text}'"));
                    }
                    type_filter = Some(name);
                }
                "addr" => addr = Some(value_text),
                "laddr" => laddr = Some(value_text),
                "user" => {
                    if value_text != "default" {
                        return Reply::Error(format!("ERR No such user '{value_text}'"));
                    }
                }
                "skipme" => match value_text.to_ascii_lowercase().as_str() {
                    "yes" => skip_me = true,
                    "no" => skip_me = false,
                    _ => return syntax_error(),
                },
                _ => return syntax_error(),
            }
            i += 2;
        }
    }
    let mut killed = 0i64;
    for client in ctx.server.clients.all() {
        let matches = addr.as_deref().is_none_or(|a| client.addr.to_string() == a)
            && laddr
                .as_deref()
                .is_none_or(|a| client.local_addr.to_string() == a)
            && id.is_none_or(|i| client.id == i)
            && type_filter
                .as_deref()
                .is_none_or(|t| t == client_type(&client));
        if !matches {
            continue;
        }
        if client.id == ctx.session.id {
            if skip_me {
                continue;
            }
            // Killing yourself: the reply still goes out, then the close.
            ctx.session.close_after_reply = true;
        } else {
            client.kill();
        }
        killed += 1;
    }
    if old_form {
        if killed == 0 {
            Reply::err("ERR No such client")
        } else {
            Reply::Ok
        }
    } else {
        Reply::Int(killed)
    }
}
