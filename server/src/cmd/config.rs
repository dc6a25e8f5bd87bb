//! `CONFIG GET/SET/RESETSTAT/REWRITE/HELP`. The parameter store and its
//! validation live in [`crate::config`]; this file maps the command onto
//! it and applies what changed to the running server.

use bytes::Bytes;
use chorus_engine::Reply;

use super::client::help_reply;
use super::{lower, unknown_subcommand, Ctx};
use crate::config::SetError;

const HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Prints this help.",
];

pub fn run(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = args.get(1).map(|a| lower(a)).unwrap_or_default();
    match sub.as_str() {
        "get" => get(ctx, args),
        "set" => set(ctx, args),
        "resetstat" => {
            ctx.server.stats.reset();
            Reply::Ok
        }
        "rewrite" => match ctx.server.config.read().rewrite() {
            Ok(()) => Reply::Ok,
            Err(text) => Reply::Error(text),
        },
        "help" => help_reply(HELP),
        _ => unknown_subcommand(
            args.first().map(|a| a.as_ref()).unwrap_or_default(),
            args.get(1).map(|a| a.as_ref()).unwrap_or_default(),
        ),
    }
}

fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let patterns: Vec<&[u8]> = args.iter().skip(2).map(|a| a.as_ref()).collect();
    let pairs = ctx.server.config.read().get_matching(&patterns);
    let text = |s: String| Reply::Bulk(Bytes::from(s));
    Reply::Map(pairs.into_iter().map(|(k, v)| (text(k), text(v))).collect())
}

fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let pairs: Vec<&[u8]> = args.iter().skip(2).map(|a| a.as_ref()).collect();
    let protected_allowed = ctx
        .settings
        .enable_protected_configs
        .allows(ctx.session.peer_is_local);
    let before = ctx.server.config.read().clone();
    let result = ctx
        .server
        .config
        .write()
        .set_many(&pairs, protected_allowed);
    let changed = match result {
        Ok(changed) => changed,
        Err(e) => return Reply::Error(e.message()),
    };
    let store_held = ctx.store.is_some();
    let settings_before = ctx.server.settings();
    match ctx.server.apply_config_change(&changed, store_held) {
        Ok(()) => {
            if store_held {
                // Inside EXEC: the store takes the change when EXEC
                // releases it (from the settings before the first change).
                ctx.session
                    .store_settings_pending
                    .get_or_insert(settings_before);
            }
            ctx.settings = ctx.server.settings();
            Reply::Ok
        }
        Err((name, reason)) => {
            // Like Redis's failed apply: every parameter goes back.
            *ctx.server.config.write() = before;
            Reply::Error(SetError::Failed { name, reason }.message())
        }
    }
}
