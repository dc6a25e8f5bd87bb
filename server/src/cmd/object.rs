//! OBJECT ENCODING / REFCOUNT / IDLETIME / FREQ / HELP (Redis 7.0
//! `object.c`).
//!
//! Chorus stores values in its own CRDT structures, so ENCODING names the
//! encoding Redis 7.0 would use for the same value under the same
//! `*-max-listpack-*` / `set-max-intset-entries` settings, from the value
//! as it is now (docs/server.md lists where this differs from Redis, which
//! never converts back to the small encoding). REFCOUNT is Redis's figure:
//! shared for the integers 0 to 9999 Redis shares, 1 otherwise. Chorus does
//! not track key accesses (it would cost memory on every key and a write on
//! every read): IDLETIME and FREQ answer errors (FREQ Redis's own unless an
//! LFU policy is set).

use bytes::Bytes;
use chorus_engine::cmd::keys::{shape, Shape};
use chorus_engine::keyspace::value::Kind;
use chorus_engine::Reply;

use super::client::help_reply;
use super::{lower, Ctx};

const HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// Redis's `OBJ_SHARED_REFCOUNT` and `OBJ_SHARED_INTEGERS`.
const SHARED_REFCOUNT: i64 = i32::MAX as i64;
const SHARED_INTEGERS: i64 = 10_000;
/// Redis's `OBJ_ENCODING_EMBSTR_SIZE_LIMIT`.
const EMBSTR_BYTES_MAX: usize = 44;

/// The settings that decide an encoding, read from the configuration.
struct Limits {
    hash_entries: usize,
    hash_value: usize,
    zset_entries: usize,
    zset_value: usize,
    intset_entries: usize,
    lfu: bool,
    shared_integers: bool,
}

impl Limits {
    fn read(ctx: &Ctx<'_>) -> Limits {
        let config = ctx.server.config.read();
        let n =
            |name: &str| -> usize { config.get(name).and_then(|v| v.parse().ok()).unwrap_or(0) };
        let policy = config.get("maxmemory-policy").unwrap_or("noeviction");
        let maxmemory = n("maxmemory");
        Limits {
            hash_entries: n("hash-max-listpack-entries"),
            hash_value: n("hash-max-listpack-value"),
            zset_entries: n("zset-max-listpack-entries"),
            zset_value: n("zset-max-listpack-value"),
            intset_entries: n("set-max-intset-entries"),
            lfu: policy.ends_with("-lfu"),
            // Redis stops sharing integers under an LRU or LFU policy with
            // a memory limit (each key then needs its own access field).
            shared_integers: maxmemory == 0
                || !(policy.ends_with("-lru") || policy.ends_with("-lfu")),
        }
    }

    /// The most elements any small encoding allows: more need not be seen.
    fn scan_limit(&self) -> usize {
        self.hash_entries
            .max(self.zset_entries)
            .max(self.intset_entries)
    }

    fn encoding(&self, s: &Shape, string: Option<&[u8]>) -> &'static str {
        match s.kind {
            Kind::String if s.integers => "int",
            Kind::String if string.is_some_and(|v| v.len() <= EMBSTR_BYTES_MAX) => "embstr",
            Kind::String => "raw",
            // Redis 7.0 has no listpack lists: every list is a quicklist.
            Kind::List => "quicklist",
            Kind::Hash if s.elements <= self.hash_entries && s.longest <= self.hash_value => {
                "listpack"
            }
            Kind::Hash => "hashtable",
            Kind::Set if s.integers && s.elements <= self.intset_entries => "intset",
            Kind::Set => "hashtable",
            Kind::ZSet if s.elements <= self.zset_entries && s.longest <= self.zset_value => {
                "listpack"
            }
            Kind::ZSet => "skiplist",
        }
    }
}

pub fn run(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = lower(args.get(1).map(|a| a.as_ref()).unwrap_or_default());
    if sub == "help" && args.len() == 2 {
        return help_reply(HELP);
    }
    let (Some(key), 3) = (args.get(2), args.len()) else {
        return super::subcommand_syntax_error(args);
    };
    if !matches!(sub.as_str(), "encoding" | "refcount" | "idletime" | "freq") {
        return super::subcommand_syntax_error(args);
    }
    let limits = Limits::read(ctx);
    let db = ctx.session.db;
    let now = crate::store::now_ms();
    let found = ctx.with_store(|s| {
        let row = s.engine().keyspace().db(db).visible(key, now)?;
        let shape = shape(row, limits.scan_limit())?;
        // A HyperLogLog is a raw string in Redis, however short.
        let string = match shape.kind {
            Kind::String if row.visible_hll().is_none() => row.string_value(),
            _ => None,
        };
        Some((shape, string))
    });
    // A missing key is a null, before any policy check, as in Redis.
    let Some((shape, string)) = found else {
        return Reply::Nil;
    };
    match sub.as_str() {
        "encoding" => Reply::Bulk(Bytes::from_static(
            limits.encoding(&shape, string.as_deref()).as_bytes(),
        )),
        "refcount" => {
            let shared = limits.shared_integers
                && string
                    .as_deref()
                    .and_then(chorus_engine::redis::num::parse_int)
                    .is_some_and(|n| (0..SHARED_INTEGERS).contains(&n));
            Reply::Int(if shared { SHARED_REFCOUNT } else { 1 })
        }
        "freq" if !limits.lfu => Reply::err("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust."),
        "freq" => Reply::err("ERR Chorus does not track key accesses: access frequency not tracked."),
        "idletime" if limits.lfu => Reply::err("ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust."),
        _ => Reply::err("ERR Chorus does not track key accesses: idle time not tracked."),
    }
}
