//! The server's view of the command table: Redis 7.0's table (with
//! Chorus's commands) lives in [`chorus_engine::redis::command_table`];
//! here each entry gets the [`Handler`] that runs it, resolved once when
//! the table is built. A lookup is the engine table's (allocation-free),
//! then an index into this one by the entry's `id`.

use std::ops::Deref;
use std::sync::OnceLock;

use bytes::Bytes;
use chorus_engine::redis::command_table::{self, Command};
use chorus_engine::Reply;

pub use chorus_engine::redis::command_table::{flag, NAME_BYTES_MAX};

use super::Handler;

/// One command or subcommand with what runs it. Derefs to the engine's
/// entry (name, arity, flags, `COMMAND INFO`, the data command).
#[derive(Debug)]
pub struct CommandSpec {
    command: &'static Command,
    /// What runs it, from the top-level name (a subcommand has its
    /// container's handler).
    pub handler: Handler,
}

impl Deref for CommandSpec {
    type Target = Command;

    fn deref(&self) -> &Command {
        self.command
    }
}

impl CommandSpec {
    /// The engine's entry.
    pub fn command(&self) -> &'static Command {
        self.command
    }

    /// A subcommand by name, any case, without allocating.
    pub fn subcommand(&self, name: &[u8]) -> Option<&'static CommandSpec> {
        let sub = self.command.subcommand(name)?;
        Some(CommandTable::redis().spec(sub))
    }

    /// True if Chorus serves this command.
    pub fn is_implemented(&self) -> bool {
        self.handler != Handler::Unimplemented
    }
}

#[derive(Debug)]
pub struct CommandTable {
    /// Every command and subcommand, by the engine entry's `id`.
    specs: Vec<CommandSpec>,
    redis: &'static command_table::CommandTable,
}

impl CommandTable {
    /// Redis 7.0.15's table with the server's handlers, built once.
    pub fn redis() -> &'static CommandTable {
        static TABLE: OnceLock<CommandTable> = OnceLock::new();
        TABLE.get_or_init(|| CommandTable::new(command_table::CommandTable::redis()))
    }

    fn new(redis: &'static command_table::CommandTable) -> CommandTable {
        let mut specs: Vec<CommandSpec> = Vec::with_capacity(redis.ids());
        for top in redis.iter() {
            let handler = Handler::of(top);
            for command in std::iter::once(top).chain(top.subcommands.iter()) {
                specs.push(CommandSpec { command, handler });
            }
        }
        specs.sort_by_key(|s| s.command.id);
        CommandTable { specs, redis }
    }

    /// The spec of an entry of the engine's table. Every entry has one:
    /// `specs` holds them all, by id.
    fn spec(&self, command: &Command) -> &CommandSpec {
        &self.specs[command.id]
    }

    /// A top-level command by name, any case, without allocating.
    pub fn get(&self, name: &[u8]) -> Option<&CommandSpec> {
        self.redis.get(name).map(|c| self.spec(c))
    }

    /// The command (or subcommand) a request names, or Redis's rejection:
    /// unknown command (or one Chorus does not serve), then unknown
    /// subcommand. Allocates nothing unless it rejects.
    pub fn resolve(&self, args: &[Bytes]) -> Result<&CommandSpec, Reply> {
        self.redis
            .resolve(args, |c| self.spec(c).is_implemented())
            .map(|c| self.spec(c))
            .map_err(|e| e.reply(args))
    }

    pub fn len(&self) -> usize {
        self.redis.len()
    }

    pub fn is_empty(&self) -> bool {
        self.redis.is_empty()
    }

    /// Top-level commands, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &CommandSpec> {
        self.redis.iter().map(|c| self.spec(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_resolved_once() {
        let table = CommandTable::redis();
        assert_eq!(table.len(), 243);
        assert_eq!(
            table.get(b"member").map(|c| c.handler),
            Some(Handler::Member)
        );
        assert_eq!(table.get(b"unit").map(|c| c.handler), Some(Handler::Unit));
        let config_get = table.get(b"config").and_then(|c| c.subcommand(b"GET"));
        assert_eq!(config_get.map(|c| c.handler), Some(Handler::Config));
        assert_eq!(config_get.map(|c| c.name.as_str()), Some("config|get"));
        assert_eq!(table.get(b"set").map(|c| c.handler), Some(Handler::Data));
        assert_eq!(
            table.get(b"DBSIZE").map(|c| c.handler),
            Some(Handler::Dbsize)
        );
        assert_eq!(
            table.get(b"xadd").map(|c| c.handler),
            Some(Handler::Unimplemented)
        );
        assert_eq!(table.get(b"peer").map(|c| c.handler), Some(Handler::Peer));
        assert!(table
            .iter()
            .all(|s| std::ptr::eq(table.spec(s.command()), s)));
    }
}
