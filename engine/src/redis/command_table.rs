//! Redis 7.0's command table: name, arity, flags and the full `COMMAND INFO`
//! entry of every command and subcommand, with the engine's data command
//! resolved once per entry.
//!
//! The data is the RESP3 reply of `COMMAND` captured from redis-server
//! 7.0.15 (`server/tools/capture_command_table.py` regenerates it), embedded
//! in the binary and decoded once. Keeping Redis's own table means arity
//! errors, `unknown subcommand` errors and `COMMAND INFO` answers are Redis's,
//! for data commands as well as for the ones the server runs itself.
//!
//! One lookup serves a command: the server looks the name (and subcommand)
//! up here, checks the arity, then hands the entry's [`DataCommand`] to
//! [`Engine::execute_resolved`](crate::Engine::execute_resolved), which
//! neither looks it up nor checks it again.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;

use super::decode::decode_reply;
use crate::cmd::{self, DataCommand};
use crate::reply::Reply;

/// Longest command or subcommand name looked up (Redis 7.0's longest is 20
/// bytes); a longer name is unknown without looking.
pub const NAME_BYTES_MAX: usize = 32;

const REDIS_COMMAND_REPLY: &[u8] = include_bytes!("redis-7.0.15-command.resp3");

/// Flags Chorus acts on (from the `flags` field of `COMMAND INFO`).
pub mod flag {
    pub const NO_AUTH: u32 = 1;
    pub const NO_MULTI: u32 = 1 << 1;
    pub const WRITE: u32 = 1 << 2;
    pub const READONLY: u32 = 1 << 3;
    pub const ADMIN: u32 = 1 << 4;
    pub const FAST: u32 = 1 << 5;
    pub const LOADING: u32 = 1 << 6;
    pub const STALE: u32 = 1 << 7;
    pub const DENYOOM: u32 = 1 << 8;
    pub const PUBSUB: u32 = 1 << 9;
    pub const BLOCKING: u32 = 1 << 10;
    /// Refused inside a script (`redis.call`).
    pub const NO_SCRIPT: u32 = 1 << 11;
    /// Runs while a script is busy (SCRIPT KILL, SHUTDOWN NOSAVE...).
    pub const ALLOW_BUSY: u32 = 1 << 12;
    /// Not recorded in the slow log (EXEC: its commands are, one by one).
    pub const SKIP_SLOWLOG: u32 = 1 << 13;
    /// May cause writes that replicate though not flagged `write` (EVAL,
    /// PUBLISH...): held by `CLIENT PAUSE WRITE`. Redis 7.0 keeps this flag
    /// out of COMMAND's reply, so it is set from [`MAY_REPLICATE_COMMANDS`].
    pub const MAY_REPLICATE: u32 = 1 << 14;
}

/// The commands Redis 7.0's table flags `may_replicate`.
const MAY_REPLICATE_COMMANDS: &[&str] =
    &["eval", "evalsha", "fcall", "publish", "spublish", "pfcount"];

/// One command or subcommand of the table.
#[derive(Clone, Debug)]
pub struct Command {
    /// Lower case; subcommands are `container|sub` (Redis's "fullname").
    pub name: String,
    /// The part of `name` after `|` for a subcommand, else `name`.
    short: String,
    /// Dense position among every command and subcommand of the table
    /// (`0..CommandTable::ids()`), for callers that keep their own data per
    /// entry in a vector.
    pub id: usize,
    /// The engine's implementation, resolved once from the top-level name
    /// (a subcommand has its container's); `None` for commands the engine
    /// does not run.
    pub data: Option<&'static DataCommand>,
    /// Positive: exact argument count (name included); negative: at least -arity.
    pub arity: i64,
    pub flags: u32,
    pub first_key: i64,
    pub last_key: i64,
    pub key_step: i64,
    /// ACL categories without the `@`.
    pub categories: Vec<String>,
    /// The entry exactly as `COMMAND INFO` returns it.
    pub info: Reply,
    pub subcommands: Vec<Command>,
}

impl Command {
    pub fn has_flag(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    /// Redis's arity rule.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    /// A subcommand by name, any case, without allocating.
    pub fn subcommand(&self, name: &[u8]) -> Option<&Command> {
        self.subcommands
            .iter()
            .find(|s| s.short.as_bytes().eq_ignore_ascii_case(name))
    }

    /// The part of the name after `|` for a subcommand, else the name.
    pub fn short_name(&self) -> &str {
        &self.short
    }
}

/// Why a request does not resolve to a command.
#[derive(Clone, Debug, PartialEq)]
pub enum Unresolved {
    /// Not in the table (or `implemented` refused it).
    UnknownCommand,
    /// The container is known, the subcommand is not.
    UnknownSubcommand,
}

impl Unresolved {
    /// Redis's error for `args`, byte for byte.
    pub fn reply(&self, args: &[Bytes]) -> Reply {
        match self {
            Unresolved::UnknownCommand => super::errors::unknown_command(args),
            Unresolved::UnknownSubcommand => super::errors::unknown_subcommand(
                args.first().map(|a| a.as_ref()).unwrap_or_default(),
                args.get(1).map(|a| a.as_ref()).unwrap_or_default(),
            ),
        }
    }
}

#[derive(Debug, Default)]
pub struct CommandTable {
    /// By lower-case name, as bytes so a lookup needs no UTF-8 check.
    commands: HashMap<Box<[u8]>, Command, foldhash::fast::FixedState>,
    /// Commands plus subcommands.
    ids: usize,
}

impl CommandTable {
    /// Redis 7.0.15's table plus Chorus's own commands, decoded once.
    pub fn redis() -> &'static CommandTable {
        static TABLE: OnceLock<CommandTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            let mut t = CommandTable::decode(REDIS_COMMAND_REPLY);
            t.add_chorus_commands();
            t.number();
            t
        })
    }

    /// Decodes a `COMMAND` reply. Entries that do not have the expected
    /// shape are skipped; the unit tests make sure none are.
    pub fn decode(bytes: &[u8]) -> CommandTable {
        let mut commands = HashMap::default();
        if let Ok(Some((Reply::Array(entries), _))) = decode_reply(bytes) {
            for entry in entries {
                if let Some(spec) = command_from_info(entry) {
                    commands.insert(spec.name.as_bytes().into(), spec);
                }
            }
        }
        let mut t = CommandTable { commands, ids: 0 };
        t.number();
        t
    }

    /// Gives every command and subcommand its `id`, in name order.
    fn number(&mut self) {
        let mut names: Vec<Box<[u8]>> = self.commands.keys().cloned().collect();
        names.sort();
        let mut next = 0;
        for name in names {
            if let Some(c) = self.commands.get_mut(&name) {
                c.id = next;
                next += 1;
                for s in c.subcommands.iter_mut() {
                    s.id = next;
                    next += 1;
                }
            }
        }
        self.ids = next;
    }

    /// Commands Chorus has and Redis does not.
    /// Chorus's own admin commands: `PEER` (this site's peers), `MEMBER`
    /// (the cluster's membership) and `UNIT` (units of keys with a home).
    fn add_chorus_commands(&mut self) {
        for name in ["peer", "member", "unit"] {
            let info = Reply::Array(vec![
                Reply::Bulk(Bytes::from(name)),
                Reply::Int(-2),
                Reply::Set(vec![Reply::Simple("admin".into())]),
                Reply::Int(0),
                Reply::Int(0),
                Reply::Int(0),
                Reply::Set(vec![]),
                Reply::Array(vec![]),
                Reply::Array(vec![]),
                Reply::Array(vec![]),
            ]);
            self.commands.insert(
                name.as_bytes().into(),
                Command {
                    short: name.to_string(),
                    name: name.to_string(),
                    id: 0,
                    data: None,
                    arity: -2,
                    flags: 0,
                    first_key: 0,
                    last_key: 0,
                    key_step: 0,
                    categories: vec!["admin".into()],
                    info,
                    subcommands: vec![],
                },
            );
        }
    }

    /// A top-level command by name, any case, without allocating: the
    /// name is lower-cased into a stack buffer.
    pub fn get(&self, name: &[u8]) -> Option<&Command> {
        let mut buf = [0u8; NAME_BYTES_MAX];
        let lowered = buf.get_mut(..name.len())?;
        for (d, s) in lowered.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        self.commands.get(&*lowered)
    }

    /// The command a request names (`args[0]`, then `args[1]` when the
    /// command has subcommands), in Redis's order: unknown command, then
    /// unknown subcommand. `implemented` says which top-level commands the
    /// caller serves; the others are unknown. Arity is left to the caller
    /// (Redis checks it after authentication-independent lookups, and a
    /// rejection may need the entry). Allocates nothing.
    pub fn resolve(
        &self,
        args: &[Bytes],
        implemented: impl FnOnce(&Command) -> bool,
    ) -> Result<&Command, Unresolved> {
        let Some(cmd) = args
            .first()
            .and_then(|name| self.get(name))
            .filter(|c| implemented(c))
        else {
            return Err(Unresolved::UnknownCommand);
        };
        let Some(sub) = args.get(1).filter(|_| !cmd.subcommands.is_empty()) else {
            return Ok(cmd);
        };
        cmd.subcommand(sub).ok_or(Unresolved::UnknownSubcommand)
    }

    /// How many ids entries have: `Command::id < ids()`.
    pub fn ids(&self) -> usize {
        self.ids
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Top-level commands, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Command> {
        self.commands.values()
    }
}

fn text_of(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Simple(s) => Some(s.clone()),
        Reply::Ok => Some("OK".to_string()),
        _ => None,
    }
}

fn words_of(reply: &Reply) -> Vec<String> {
    match reply {
        Reply::Set(items) | Reply::Array(items) => items.iter().filter_map(text_of).collect(),
        _ => Vec::new(),
    }
}

fn command_from_info(info: Reply) -> Option<Command> {
    let Reply::Array(fields) = &info else {
        return None;
    };
    let [name, arity, flags, first, last, step, categories, _tips, _key_specs, subcommands] =
        fields.as_slice()
    else {
        return None;
    };
    let int = |r: &Reply| match r {
        Reply::Int(n) => Some(*n),
        _ => None,
    };
    let mut bits = 0;
    for f in words_of(flags) {
        bits |= match f.as_str() {
            "no_auth" => flag::NO_AUTH,
            "no_multi" => flag::NO_MULTI,
            "write" => flag::WRITE,
            "readonly" => flag::READONLY,
            "admin" => flag::ADMIN,
            "fast" => flag::FAST,
            "loading" => flag::LOADING,
            "stale" => flag::STALE,
            "denyoom" => flag::DENYOOM,
            "pubsub" => flag::PUBSUB,
            "blocking" => flag::BLOCKING,
            "noscript" => flag::NO_SCRIPT,
            "allow_busy" => flag::ALLOW_BUSY,
            "skip_slowlog" => flag::SKIP_SLOWLOG,
            _ => 0,
        };
    }
    let subs = match subcommands {
        Reply::Array(items) => items
            .iter()
            .cloned()
            .filter_map(command_from_info)
            .collect(),
        _ => Vec::new(),
    };
    let name = text_of(name)?.to_ascii_lowercase();
    if MAY_REPLICATE_COMMANDS.contains(&name.as_str()) {
        bits |= flag::MAY_REPLICATE;
    }
    let (top, short) = match name.split_once('|') {
        Some((top, short)) => (top, short),
        None => (name.as_str(), name.as_str()),
    };
    Some(Command {
        data: cmd::find(top.as_bytes()),
        short: short.to_string(),
        id: 0,
        arity: int(arity)?,
        flags: bits,
        first_key: int(first)?,
        last_key: int(last)?,
        key_step: int(step)?,
        categories: words_of(categories)
            .into_iter()
            .map(|c| c.trim_start_matches('@').to_string())
            .collect(),
        info,
        subcommands: subs,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_decodes_completely() {
        let table = CommandTable::redis();
        // Redis 7.0.15's 240 commands plus Chorus's PEER, MEMBER and UNIT.
        assert_eq!(table.len(), 243);
        assert!(table.get(b"peer").is_some());
        assert!(table.get(b"member").is_some());
        assert!(table.get(b"PeEr").is_some());
        assert!(table.get(&[b'x'; 100]).is_none());
        assert!(table.get(b"g\xffet").is_none());
        let get = table
            .get(b"get")
            .map(|c| (c.arity, c.first_key, c.has_flag(flag::READONLY)));
        assert_eq!(get, Some((2, 1, true)));
        let config = table.get(b"config");
        assert_eq!(config.map(|c| c.arity), Some(-2));
        let config_get = config.and_then(|c| c.subcommand(b"GET"));
        assert_eq!(config_get.map(|c| c.arity), Some(-3));
        assert!(table
            .get(b"auth")
            .is_some_and(|c| c.has_flag(flag::NO_AUTH)));
        assert!(table
            .get(b"save")
            .is_some_and(|c| c.has_flag(flag::NO_MULTI)));
        assert!(table
            .get(b"client")
            .is_some_and(|c| c.subcommand(b"list").is_some()));
        assert!(table.get(b"set").is_some_and(|c| c.data.is_some()));
        assert!(table.get(b"xadd").is_some_and(|c| c.data.is_none()));
        assert!(table.iter().all(|c| c.name.len() <= NAME_BYTES_MAX
            && c.subcommands
                .iter()
                .all(|s| s.short.len() <= NAME_BYTES_MAX)));
    }

    #[test]
    fn every_data_command_is_in_the_table() {
        let table = CommandTable::redis();
        for d in cmd::all() {
            let c = table.get(d.name.as_bytes());
            assert!(
                c.and_then(|c| c.data).is_some_and(|x| std::ptr::eq(x, d)),
                "{} is not resolved",
                d.name
            );
        }
    }

    #[test]
    fn ids_are_dense() {
        let table = CommandTable::redis();
        let mut seen = vec![false; table.ids()];
        for c in table.iter() {
            for e in std::iter::once(c).chain(c.subcommands.iter()) {
                assert!(!std::mem::replace(&mut seen[e.id], true));
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn resolve_in_redis_order() {
        let table = CommandTable::redis();
        let args = |v: &[&str]| -> Vec<Bytes> {
            v.iter()
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect()
        };
        let all = |_: &Command| true;
        assert_eq!(
            table
                .resolve(&args(&["CONFIG", "get", "x"]), all)
                .map(|c| c.name.as_str()),
            Ok("config|get")
        );
        assert_eq!(
            table.resolve(&args(&["config", "nope"]), all).map(|c| c.id),
            Err(Unresolved::UnknownSubcommand)
        );
        assert_eq!(
            table.resolve(&args(&["nope"]), all).map(|c| c.id),
            Err(Unresolved::UnknownCommand)
        );
        assert_eq!(
            table.resolve(&args(&[]), all).map(|c| c.id),
            Err(Unresolved::UnknownCommand)
        );
        assert_eq!(
            table
                .resolve(&args(&["xadd", "k", "*", "f", "v"]), |c| c.data.is_some())
                .map(|c| c.id),
            Err(Unresolved::UnknownCommand)
        );
    }
}
