//! MEMORY USAGE / STATS / DOCTOR / MALLOC-STATS / PURGE / HELP (Redis 7.0
//! `object.c`).
//!
//! USAGE is an estimate of what a key holds in Chorus's own structures
//! ([`chorus_engine::cmd::keys::memory_usage`]; docs/server.md says how it
//! is counted). STATS reports the figures Chorus has, with Redis's names.
//! DOCTOR runs Redis's checks that apply (peak, fragmentation).

use bytes::Bytes;
use chorus_engine::redis::num::parse_int;
use chorus_engine::Reply;

use super::client::help_reply;
use super::{lower, syntax_error, Ctx};
use crate::memory;

const HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
];

/// Elements sampled by `MEMORY USAGE` without SAMPLES (Redis's
/// `OBJ_COMPUTE_SIZE_DEF_SAMPLES`).
const USAGE_SAMPLES_DEFAULT: usize = 5;

const DOCTOR_EMPTY: &str = "Hi Sam, this instance is empty or is using very little memory, my issues detector can't be used in these conditions. Please, leave for your mission on Earth and fill it with some data. The new Sam and I will be back to our programming as soon as I finished rebooting.";
const DOCTOR_FINE: &str = "Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.";

pub fn run(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = lower(args.get(1).map(|a| a.as_ref()).unwrap_or_default());
    match (sub.as_str(), args.len()) {
        ("usage", n) if n >= 3 => usage(ctx, args),
        ("stats", 2) => stats(ctx),
        ("doctor", 2) => Reply::Verbatim(doctor()),
        ("malloc-stats", 2) => {
            Reply::Verbatim("Stats not supported for the current allocator".to_string())
        }
        ("purge", 2) => {
            memory::purge();
            Reply::Ok
        }
        ("help", 2) => help_reply(HELP),
        _ => super::subcommand_syntax_error(args),
    }
}

/// `MEMORY USAGE key [SAMPLES count]`: options are checked before the key
/// is looked up, as in Redis; a missing key is a null.
fn usage(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut samples = USAGE_SAMPLES_DEFAULT;
    let mut rest = args.iter().skip(3);
    while let Some(option) = rest.next() {
        let Some(count) = rest.next().filter(|_| lower(option) == "samples") else {
            return syntax_error();
        };
        let Some(count) = parse_int(count) else {
            return Reply::err("ERR value is not an integer or out of range");
        };
        let Ok(count) = usize::try_from(count) else {
            return syntax_error();
        };
        samples = count;
    }
    let Some(key) = args.get(2) else {
        return syntax_error();
    };
    let db = ctx.session.db;
    let now = crate::store::now_ms();
    let bytes = ctx.with_store(|s| {
        let row = s.engine().keyspace().db(db).visible(key, now)?;
        Some(chorus_engine::cmd::keys::memory_usage(key, row, samples))
    });
    match bytes {
        Some(n) => Reply::Int(i64::try_from(n).unwrap_or(i64::MAX)),
        None => Reply::Nil,
    }
}

fn int(n: u64) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn name(s: &str) -> Reply {
    Reply::Bulk(Bytes::from(s.to_string()))
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// `MEMORY STATS`: Redis's fields for the figures Chorus has. The
/// replication backlog is the engine's (entries kept for peers); the
/// dataset is what is allocated beyond startup and the backlog.
fn stats(ctx: &mut Ctx<'_>) -> Reply {
    let used = memory::allocated_bytes().unwrap_or_else(memory::rss_bytes);
    let peak = memory::peak_allocated_bytes().unwrap_or(used).max(used);
    let startup = memory::startup_allocated_bytes().min(used);
    let rss = memory::rss_bytes();
    let (backlog, keys) = ctx.with_store(|s| {
        let backlog = s.engine().backlog_memory_bytes() as u64;
        let keys: u64 = s.keyspace().iter().map(|(_, c)| c.keys).sum();
        (backlog, keys)
    });
    let lua = ctx.server.scripts.figures().lua_bytes as u64;
    let overhead = startup + backlog + lua;
    let dataset = used.saturating_sub(overhead);
    let net = used.saturating_sub(startup);
    let per_key = net.checked_div(keys).unwrap_or(0);
    Reply::Map(vec![
        (name("peak.allocated"), int(peak)),
        (name("total.allocated"), int(used)),
        (name("startup.allocated"), int(startup)),
        (name("replication.backlog"), int(backlog)),
        (name("lua.caches"), int(lua)),
        (name("overhead.total"), int(overhead)),
        (name("keys.count"), int(keys)),
        (name("keys.bytes-per-key"), int(per_key)),
        (name("dataset.bytes"), int(dataset)),
        (
            name("dataset.percentage"),
            Reply::Double(ratio(dataset, net) * 100.0),
        ),
        (
            name("peak.percentage"),
            Reply::Double(ratio(used, peak) * 100.0),
        ),
        (name("fragmentation"), Reply::Double(ratio(rss, used))),
        (
            name("fragmentation.bytes"),
            Reply::Int(i64::try_from(i128::from(rss) - i128::from(used)).unwrap_or(0)),
        ),
    ])
}

/// Redis's `getMemoryDoctorReport`, for the checks that apply to Chorus:
/// too little memory to judge, a peak far above what is used now, and
/// high fragmentation (RSS over allocated).
fn doctor() -> String {
    let used = memory::allocated_bytes().unwrap_or_else(memory::rss_bytes);
    let peak = memory::peak_allocated_bytes().unwrap_or(used).max(used);
    let rss = memory::rss_bytes();
    if used < 5 * 1024 * 1024 {
        return DOCTOR_EMPTY.to_string();
    }
    let high_peak = peak as f64 / used as f64 > 1.5;
    let high_frag = rss > 10 * 1024 * 1024 && rss as f64 / used as f64 > 1.4;
    if !high_peak && !high_frag {
        return DOCTOR_FINE.to_string();
    }
    let mut s =
        String::from("Sam, I detected a few issues in this Redis instance memory implants:\n\n");
    if high_peak {
        s.push_str(" * Peak memory: In the past this instance used more than 150% the memory that is currently using. The allocator is normally not able to release memory after a peak, so you can expect to see a big fragmentation ratio, however this is actually harmless and is only due to the memory peak, and if the Redis instance Resident Set Size (RSS) is currently bigger than expected, the memory will be used as soon as you fill the Redis instance with more data. If the memory peak was only occasional and you want to try to reclaim memory, please try the MEMORY PURGE command, otherwise the only other option is to shutdown and restart the instance.\n\n");
    }
    if high_frag {
        s.push_str(&format!(" * High total RSS: This instance has a memory fragmentation and RSS overhead greater than 1.4 (this means that the Resident Set Size of the Redis process is much larger than the sum of the logical allocations Redis performed). This problem is usually due either to a large peak memory (check if there is a peak memory entry above in the report) or may result from a workload that causes the allocator to fragment memory a lot. If the problem is a large peak memory, then there is no issue. Otherwise, make sure you are using the Jemalloc allocator and not the default libc malloc. Note: The currently used allocator is \"{}\".\n\n", memory::allocator_name()));
    }
    s.push_str("I'm here to keep you safe, Sam. I want to help you.\n");
    s
}
