//! SLOWLOG GET [count] / LEN / RESET / HELP (Redis 7.0 `slowlog.c`); the
//! log itself is [`crate::slowlog`], fed by every command [`super::call`] runs.

use bytes::Bytes;
use chorus_engine::redis::num::parse_int;
use chorus_engine::Reply;

use super::client::help_reply;
use super::{lower, Ctx};

const HELP: &[&str] = &[
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
];

/// How many entries `SLOWLOG GET` returns without a count.
const GET_DEFAULT: usize = 10;

pub fn run(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let log = &ctx.server.slowlog;
    match (
        lower(args.get(1).map(|a| a.as_ref()).unwrap_or_default()).as_str(),
        args.len(),
    ) {
        ("get", 2) => log.get(GET_DEFAULT),
        ("get", 3) => {
            let count =
                parse_int(args.get(2).map(|a| a.as_ref()).unwrap_or_default()).filter(|n| *n >= -1);
            match count {
                Some(-1) => log.get(usize::MAX),
                Some(n) => log.get(usize::try_from(n).unwrap_or(usize::MAX)),
                None => Reply::err("ERR count should be greater than or equal to -1"),
            }
        }
        ("len", 2) => Reply::Int(i64::try_from(log.len()).unwrap_or(i64::MAX)),
        ("reset", 2) => {
            log.reset();
            Reply::Ok
        }
        ("help", 2) => help_reply(HELP),
        // Unknown names never get here (the table refuses them).
        _ => super::subcommand_syntax_error(args),
    }
}
