//! Engine benchmarks (criterion, one thread), the targets of the engine issue:
//!
//! * `apply_local/{SET,INCR,HSET,SADD,ZADD}`: `Engine::execute` with 16-byte keys
//!   and 100-byte values over a large keyspace, `appendfsync everysec` style: no
//!   fsync per write, one `sync()` per `SYNC_EVERY_OPS` writes (group commit), on
//!   the real redb + log-segment backend in a temporary directory.
//! * `apply_remote/SET_batch_1024`: `Engine::apply_remote` of batches of 1,024
//!   decoded ops (only the apply is timed; building the batch is not).
//! * restart with 1,000,000 keys (`CHORUS_BENCH_RESTART_KEYS`, 0 skips it): timed
//!   `Engine::open` from a checkpoint (log kept / log trimmed) and from the log
//!   alone, printed after the criterion groups.
//! * INCR on one hot key: ops/s as the key's increment count grows.
//!
//! Memory mode (used by `benches/memory.sh`): with `CHORUS_MEMORY_KEYS=N` set, the
//! binary instead loads N string keys (16-byte keys, 100-byte values) and prints
//! its resident set size (VmRSS) before and after, then exits.
//!
//! * `CHORUS_PROFILE=LIST_REMOTE`: `apply_remote` of 1,000,000 RPUSHes of one
//!   10-byte element each to one list, made by a real site (the ops carry
//!   the positions a site chose).
//!
//! Run: `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3`.

use chorus::engine::storage::memory::MemoryStorage;
use chorus::engine::storage::redb_backend::RedbStorage;
use chorus::engine::{
    Effect, Engine, EngineConfig, Hlc, KeyEffect, Op, OpId, Origin, Reply, VersionVector,
};
use criterion::{Criterion, Throughput};

/// The allocator `chorus-server` runs with, so the figures are the server's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

/// Keys in the keyspace of the SET/INCR benches and of the restart.
const KEYSPACE: usize = 1_000_000;
/// Keys holding the hashes, sets and sorted sets.
const COLLECTION_KEYS: usize = 100_000;
/// Group commit: one `sync()` per this many writes.
const SYNC_EVERY_OPS: u64 = 16_384;
const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;
const REMOTE_BATCH_OPS: usize = 1_024;
// Cadences are tested with a mask.
const _: () = assert!(SYNC_EVERY_OPS.is_power_of_two() && REMOTE_BATCH_OPS.is_power_of_two());

/// The facade crate does not depend on `bytes`; `Reply::Bulk` names its type.
macro_rules! b {
    ($v:expr) => {
        match Reply::Bulk(Vec::<u8>::from($v).into()) {
            Reply::Bulk(b) => b,
            _ => unreachable!(),
        }
    };
}

/// `n` keys of exactly 16 bytes (`<prefix><digits>`) in one buffer.
fn key_buffer(prefix: &str, n: usize) -> Vec<u8> {
    let digits = KEY_BYTES - prefix.len();
    let mut v = Vec::with_capacity(n * KEY_BYTES);
    for i in 0..n {
        v.extend_from_slice(format!("{prefix}{i:0digits$}").as_bytes());
    }
    v
}

fn value_100(seed: usize) -> Vec<u8> {
    let mut v = format!("value-{seed:08}-").into_bytes();
    v.resize(VALUE_BYTES, b'x');
    v
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn redb_engine(dir: &std::path::Path, site: u16) -> Engine {
    let storage = RedbStorage::open(dir).expect("open redb storage");
    Engine::open(Box::new(storage), EngineConfig::new(site)).expect("open engine")
}

fn apply_local(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_local");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    let value = b!(value_100(0));

    // Each case: command name, key prefix, number of keys.
    let cases = [
        ("SET", "str:", KEYSPACE),
        ("INCR", "ctr:", KEYSPACE),
        ("HSET", "hash:", COLLECTION_KEYS),
        ("SADD", "set:", COLLECTION_KEYS),
        ("ZADD", "zset:", COLLECTION_KEYS),
    ];
    for (name, prefix, keys) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = redb_engine(dir.path(), 1);
        let key_buf = b!(key_buffer(prefix, keys));
        let cmd = b!(name);
        let mut i: u64 = 0;
        let mut now_ms: u64 = 1_000;
        // SADD adds a new 100-byte member each time (a re-added member would be
        // a different, cheaper path); ZADD rewrites the score of one of 16
        // 16-byte members; HSET writes one of 8 fields with a 100-byte value.
        let mut one = |e: &mut Engine, i: u64| {
            let k = (i as usize) % keys;
            let key = key_buf.slice(k * KEY_BYTES..(k + 1) * KEY_BYTES);
            let reply = match name {
                "SET" => e.execute(0, &[cmd.clone(), key, value.clone()], now_ms),
                "INCR" => e.execute(0, &[cmd.clone(), key], now_ms),
                "SADD" => {
                    let mut m = value_100(i as usize);
                    m[..KEY_BYTES].copy_from_slice(&key);
                    e.execute(0, &[cmd.clone(), key, b!(m)], now_ms)
                }
                "ZADD" => {
                    let score = b!((i % 1_000).to_string());
                    let member = b!(format!("member-{:09}", i % 16));
                    e.execute(0, &[cmd.clone(), key, score, member], now_ms)
                }
                _ => {
                    let field = b!(format!("field{}", i % 8));
                    e.execute(0, &[cmd.clone(), key, field, value.clone()], now_ms)
                }
            };
            debug_assert!(!reply.is_error(), "{reply:?}");
            if i & 1023 == 0 {
                now_ms += 1;
            }
            if i & (SYNC_EVERY_OPS - 1) == 0 {
                e.sync().expect("sync");
            }
        };
        // One pass over the keyspace first: the measured writes overwrite.
        for _ in 0..keys {
            one(&mut e, i);
            i += 1;
        }
        e.sync().expect("sync");
        group.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    one(&mut e, i);
                    i += 1;
                }
                start.elapsed()
            })
        });
        e.sync().expect("sync");
        drop(e);
    }
    group.finish();
}

fn apply_remote(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_remote");
    group.throughput(Throughput::Elements(REMOTE_BATCH_OPS as u64));
    group.sample_size(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut receiver = redb_engine(dir.path(), 2);
    let key_buf = b!(key_buffer("rem:", KEYSPACE));
    let value = b!(value_100(1));
    let origin = Origin::new(1, 0);
    let mut seq: u64 = 0;
    let mut batches: u64 = 0;
    // The ops a peer (site 1) would ship: one SET each, decoded.
    let next_batch = |seq: &mut u64| -> Vec<Op> {
        (0..REMOTE_BATCH_OPS)
            .map(|_| {
                *seq += 1;
                let k = (*seq as usize) % KEYSPACE;
                Op {
                    id: OpId::new(origin, *seq),
                    hlc: Hlc::new(1_000 + *seq / 1_000, (*seq % 1_000) as u16),
                    deps: VersionVector::new(),
                    effects: vec![KeyEffect {
                        db: 0,
                        key: key_buf.slice(k * KEY_BYTES..(k + 1) * KEY_BYTES),
                        effect: Effect::SetString {
                            value: value.clone(),
                            keep_ttl: false,
                        },
                    }],
                }
            })
            .collect()
    };
    // Fill the keyspace once, so the measured batches overwrite.
    while (seq as usize) < KEYSPACE {
        let ops = next_batch(&mut seq);
        receiver.apply_remote(ops);
    }
    receiver.sync().expect("sync");
    group.bench_function("SET_batch_1024", |bench| {
        bench.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let ops = next_batch(&mut seq);
                let start = Instant::now();
                let outcome = receiver.apply_remote(ops);
                batches += 1;
                if batches & (SYNC_EVERY_OPS / REMOTE_BATCH_OPS as u64 - 1) == 0 {
                    receiver.sync().expect("sync");
                }
                timed += start.elapsed();
                debug_assert_eq!(outcome.applied, REMOTE_BATCH_OPS);
            }
            timed
        })
    });
    group.finish();
}

/// Loads `keys` string keys into an engine in `dir` (16-byte keys, 100-byte values).
fn load_strings(e: &mut Engine, keys: usize) {
    let key_buf = b!(key_buffer("key:", keys));
    let cmd = b!("SET");
    for i in 0..keys {
        let key = key_buf.slice(i * KEY_BYTES..(i + 1) * KEY_BYTES);
        let value = b!(value_100(i));
        e.execute(0, &[cmd.clone(), key, value], 1_000 + (i / 1_000) as u64);
        if i as u64 & (SYNC_EVERY_OPS - 1) == 0 {
            e.sync().expect("sync");
        }
    }
    e.sync().expect("sync");
}

fn time_opens(label: &str, dir: &std::path::Path, keys: usize) {
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let e = redb_engine(dir, 1);
        let took = start.elapsed();
        assert_eq!(e.dbsize(0), keys, "{label}: every key is back");
        times.push(took);
        drop(e);
    }
    times.sort();
    println!(
        "restart/{label}: {keys} keys: open min {:.2} s, median {:.2} s ({:.0} keys/s)",
        times[0].as_secs_f64(),
        times[1].as_secs_f64(),
        keys as f64 / times[1].as_secs_f64()
    );
}

fn restart() {
    let keys: usize = std::env::var("CHORUS_BENCH_RESTART_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(KEYSPACE);
    if keys == 0 {
        return;
    }
    // Clean shutdown (checkpoint of every row), the log still holds every op.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = redb_engine(dir.path(), 1);
    let start = Instant::now();
    load_strings(&mut e, keys);
    let loaded = start.elapsed();
    let start = Instant::now();
    e.close(9_000_000).expect("close");
    println!(
        "restart/setup: loaded {keys} keys in {:.2} s, close (checkpoint) in {:.2} s",
        loaded.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    time_opens("checkpoint+full_log", dir.path(), keys);

    // Checkpoint and a trimmed log (every peer acked): the common steady state.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = redb_engine(dir.path(), 1);
    load_strings(&mut e, keys);
    e.checkpoint(9_000_000).expect("checkpoint");
    let all = e.vv().clone();
    e.trim_backlog(&all);
    e.close(9_000_001).expect("close");
    time_opens("checkpoint+trimmed_log", dir.path(), keys);

    // No checkpoint at all: replay of the whole log.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = redb_engine(dir.path(), 1);
    load_strings(&mut e, keys);
    drop(e);
    time_opens("log_replay_only", dir.path(), keys);
}

/// INCR keeps one counter entry per increment until a SET/DEL: show what that
/// costs on a single hot key.
fn hot_counter() {
    let mut e = Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(1)).expect("open");
    let args = [b!("INCR"), b!("hot-counter-key!")];
    let chunk = 10_000u64;
    let mut line = String::from("incr_hot_key: ops/s per 10k increments:");
    for round in 0..4 {
        let start = Instant::now();
        for i in 0..chunk {
            e.execute(0, &args, 1_000 + round * chunk + i);
        }
        let took = start.elapsed().as_secs_f64();
        line.push_str(&format!(
            " [{}-{}k] {:.0}",
            round * 10,
            (round + 1) * 10,
            chunk as f64 / took
        ));
        e.sync().expect("sync");
    }
    println!("{line}");
}

/// `CHORUS_MEMORY_KEYS=N`: load N string keys, print VmRSS, exit.
fn memory_mode(keys: usize) {
    let rss_start = rss_kib();
    let backend = std::env::var("CHORUS_MEMORY_BACKEND").unwrap_or_else(|_| "redb".into());
    let mut config = EngineConfig::new(1);
    if let Some(bytes) = std::env::var("CHORUS_MEMORY_BACKLOG_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.backlog_bytes_max = bytes;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = match backend.as_str() {
        "memory" => Engine::open(Box::new(MemoryStorage::new()), config.clone()),
        _ => Engine::open(
            Box::new(RedbStorage::open(dir.path()).expect("redb")),
            config.clone(),
        ),
    }
    .expect("open");
    let rss_open = rss_kib();
    let cmd = b!("SET");
    let mut key = Vec::with_capacity(KEY_BYTES);
    for i in 0..keys {
        key.clear();
        key.extend_from_slice(format!("key:{i:012}").as_bytes());
        let value = b!(value_100(i));
        e.execute(
            0,
            &[cmd.clone(), b!(&key[..]), value],
            1_000 + (i / 1_000) as u64,
        );
        if i as u64 & (SYNC_EVERY_OPS - 1) == 0 {
            e.sync().expect("sync");
        }
    }
    e.sync().expect("sync");
    assert_eq!(e.dbsize(0), keys);
    let rss_loaded = rss_kib();
    e.checkpoint(9_000_000).expect("checkpoint");
    let rss_checkpointed = rss_kib();
    println!(
        "chorus backend={backend} backlog_bytes_max={} keys={keys} rss_start_kib={rss_start} \
         rss_open_kib={rss_open} rss_loaded_kib={rss_loaded} rss_after_checkpoint_kib={rss_checkpointed} \
         backlog_bytes={} bytes_per_key={:.1}",
        config.backlog_bytes_max,
        e.backlog().bytes(),
        (rss_loaded.saturating_sub(rss_open) * 1024) as f64 / keys as f64
    );
}

/// `CHORUS_PROFILE=RESTART` and `CHORUS_PROFILE=HOT_INCR` run only those parts.
/// `CHORUS_PROFILE=SET|INCR|HSET|SADD|ZADD`: one case without criterion, for
/// `perf record` / callgrind: fills the keyspace, then times
/// `CHORUS_PROFILE_OPS` (default 2,000,000) more writes and prints ops/s.
/// `CHORUS_PROFILE_KEYS` overrides the keyspace size (small for callgrind:
/// instructions per op = difference of two runs with different op counts).
fn profile_mode(name: &str) {
    let ops: u64 = std::env::var("CHORUS_PROFILE_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = redb_engine(dir.path(), 1);
    let keys = std::env::var("CHORUS_PROFILE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if matches!(name, "SET" | "INCR") {
            KEYSPACE
        } else {
            COLLECTION_KEYS
        });
    let prefix = name.to_ascii_lowercase() + ":";
    let key_buf = b!(key_buffer(&prefix, keys));
    let value = b!(value_100(0));
    let cmd = b!(name);
    let mut now_ms: u64 = 1_000;
    let mut run = |e: &mut Engine, from: u64, to: u64| {
        for i in from..to {
            let k = (i as usize) % keys;
            let key = key_buf.slice(k * KEY_BYTES..(k + 1) * KEY_BYTES);
            let reply = match name {
                "SET" => e.execute(0, &[cmd.clone(), key, value.clone()], now_ms),
                "INCR" => e.execute(0, &[cmd.clone(), key], now_ms),
                "SADD" => {
                    let mut m = value_100(i as usize);
                    m[..KEY_BYTES].copy_from_slice(&key);
                    e.execute(0, &[cmd.clone(), key, b!(m)], now_ms)
                }
                "ZADD" => {
                    let score = b!((i % 1_000).to_string());
                    let member = b!(format!("member-{:09}", i % 16));
                    e.execute(0, &[cmd.clone(), key, score, member], now_ms)
                }
                _ => {
                    let field = b!(format!("field{}", i % 8));
                    e.execute(0, &[cmd.clone(), key, field, value.clone()], now_ms)
                }
            };
            debug_assert!(!reply.is_error(), "{reply:?}");
            if i & 1023 == 0 {
                now_ms += 1;
            }
            if i & (SYNC_EVERY_OPS - 1) == 0 {
                e.sync().expect("sync");
            }
        }
    };
    run(&mut e, 0, keys as u64);
    e.sync().expect("sync");
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    run(&mut e, keys as u64, keys as u64 + ops);
    let took = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns().saturating_sub(cpu_start) as f64 / 1e9;
    println!(
        "profile/{name}: {ops} ops in {took:.2} s wall, {cpu:.2} s on cpu: {:.0} ops/s wall, {:.0} ops/cpu-s",
        ops as f64 / took,
        ops as f64 / cpu
    );
}

/// `CHORUS_PROFILE=REMOTE`: `apply_remote` of batches of 1,024 SET ops from one
/// peer over `CHORUS_PROFILE_KEYS` keys (default 1,000,000): a first pass fills
/// the keyspace, then `CHORUS_PROFILE_OPS` more ops are timed (building the
/// batches included, which the criterion bench leaves out).
fn profile_remote() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let keys = env("CHORUS_PROFILE_KEYS", KEYSPACE);
    let ops = env("CHORUS_PROFILE_OPS", 2_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = redb_engine(dir.path(), 2);
    let key_buf = b!(key_buffer("rem:", keys));
    let value = b!(value_100(1));
    let origin = Origin::new(1, 0);
    let mut seq: u64 = 0;
    let mut run = |e: &mut Engine, n: usize| {
        let mut done = 0;
        while done < n {
            let batch: Vec<Op> = (0..REMOTE_BATCH_OPS)
                .map(|_| {
                    seq += 1;
                    let k = (seq as usize) % keys;
                    Op {
                        id: OpId::new(origin, seq),
                        hlc: Hlc::new(1_000 + seq / 1_000, (seq % 1_000) as u16),
                        deps: VersionVector::new(),
                        effects: vec![KeyEffect {
                            db: 0,
                            key: key_buf.slice(k * KEY_BYTES..(k + 1) * KEY_BYTES),
                            effect: Effect::SetString {
                                value: value.clone(),
                                keep_ttl: false,
                            },
                        }],
                    }
                })
                .collect();
            e.apply_remote(batch);
            done += REMOTE_BATCH_OPS;
            if done % SYNC_EVERY_OPS as usize == 0 {
                e.sync().expect("sync");
            }
        }
    };
    run(&mut e, keys);
    e.sync().expect("sync");
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    run(&mut e, ops);
    let took = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns().saturating_sub(cpu_start) as f64 / 1e9;
    println!(
        "profile/REMOTE: {ops} ops in {took:.2} s wall, {cpu:.2} s on cpu: {:.0} ops/s wall, {:.0} ops/cpu-s",
        ops as f64 / took,
        ops as f64 / cpu
    );
}

/// `CHORUS_PROFILE=LIST_REMOTE`: site 1 runs `CHORUS_PROFILE_OPS` (default
/// 1,000,000) `RPUSH list <10 bytes>`; site 2 applies them with
/// `apply_remote` in batches of 1,024, timed, on the in-memory storage (what
/// is timed is the apply, not a disk). Prints ops/s. (Memory per element is
/// measured on the server, where nothing else was allocated and freed first:
/// docs/benchmarks.md.)
fn profile_list_remote() {
    let n: usize = std::env::var("CHORUS_PROFILE_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut origin =
        Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(1)).expect("open");
    let key = bytes::Bytes::from_static(b"list");
    for i in 0..n {
        let v = bytes::Bytes::from(format!("{i:010}"));
        let r = origin.execute(
            0,
            &[bytes::Bytes::from_static(b"RPUSH"), key.clone(), v],
            1_000,
        );
        debug_assert!(!r.is_error());
    }
    let ops = origin
        .ops_since(&VersionVector::new(), usize::MAX)
        .expect("backlog serves");
    drop(origin);
    let mut batches: Vec<Vec<Op>> = Vec::new();
    let mut it = ops.into_iter().peekable();
    while it.peek().is_some() {
        batches.push(it.by_ref().take(REMOTE_BATCH_OPS).collect());
    }
    let mut site =
        Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(2)).expect("open");
    let start = Instant::now();
    for b in batches {
        site.apply_remote(b);
    }
    let took = start.elapsed().as_secs_f64();
    let len = site.execute(0, &[bytes::Bytes::from_static(b"LLEN"), key], 1_000);
    println!(
        "profile/LIST_REMOTE: {n} RPUSH ops applied in {took:.2} s: {:.0} ops/s; LLEN {len:?}",
        n as f64 / took
    );
}

/// The cost of one anti-entropy round's digest at one site over
/// `CHORUS_BENCH_AE_KEYS` (default 1,000,000) string keys, under the engine
/// lock: every row hashed from scratch (what each round cost before digests
/// were incremental), the first digest after the load, a digest with nothing
/// changed, and a digest after 10,000 and 100,000 SETs. Each `leaf_summary`
/// call is one hold of the lock; the longest is printed.
/// Run: `CHORUS_PROFILE=ANTI_ENTROPY cargo bench --bench engine`.
fn anti_entropy_round() {
    let keys: usize = std::env::var("CHORUS_BENCH_AE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(KEYSPACE);
    let mut e = Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(1)).expect("open");
    let buf = key_buffer("key:", keys);
    let value = b!(value_100(0));
    for i in 0..keys {
        let key = b!(buf[i * KEY_BYTES..(i + 1) * KEY_BYTES].to_vec());
        e.execute(0, &[b!("SET"), key, value.clone()], 1_000);
    }
    // Before: every row encoded and hashed on every round.
    let start = Instant::now();
    let mut x = 0u64;
    for (k, row) in e.keyspace().db(0).rows.iter() {
        x ^= chorus::engine::keyspace::digest::row_hash(k, row);
    }
    let scratch = start.elapsed();
    std::hint::black_box(x);
    // One digest, as a round asks for it: calls until the stale rows are
    // hashed (each call one hold of the lock).
    let summary = |e: &mut Engine| -> (Duration, Duration, usize) {
        let cut = e.vv().clone();
        let (mut total, mut longest, mut calls) = (Duration::ZERO, Duration::ZERO, 0);
        loop {
            let t = Instant::now();
            let done = e.leaf_summary(0, &cut).is_ok();
            let took = t.elapsed();
            total += took;
            longest = longest.max(took);
            calls += 1;
            if done {
                return (total, longest, calls);
            }
        }
    };
    let first = summary(&mut e);
    let idle = summary(&mut e);
    let mut changed = Vec::new();
    for n in [10_000usize, 100_000] {
        for i in 0..n {
            let k = (i * 7919) % keys;
            let key = b!(buf[k * KEY_BYTES..(k + 1) * KEY_BYTES].to_vec());
            e.execute(0, &[b!("SET"), key, b!(value_100(i))], 2_000);
        }
        changed.push((n, summary(&mut e)));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "anti-entropy/{keys} keys: every row hashed from scratch {:.1} ms (one hold)",
        ms(scratch)
    );
    println!(
        "anti-entropy/{keys} keys: first digest {:.1} ms in {} calls (longest {:.1} ms)",
        ms(first.0),
        first.2,
        ms(first.1)
    );
    println!(
        "anti-entropy/{keys} keys: digest, nothing changed {:.3} ms",
        ms(idle.0)
    );
    for (n, (total, longest, calls)) in changed {
        println!(
            "anti-entropy/{keys} keys: digest after {n} SETs {:.1} ms in {calls} calls (longest {:.1} ms)",
            ms(total),
            ms(longest)
        );
    }
}

/// Time this thread has spent on a CPU (ns), from the scheduler's statistics:
/// on a shared machine ops per CPU-second is steadier than per wall second.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    if let Ok(name) = std::env::var("CHORUS_PROFILE") {
        match name.as_str() {
            "REMOTE" => profile_remote(),
            "LIST_REMOTE" => profile_list_remote(),
            "RESTART" => restart(),
            "HOT_INCR" => hot_counter(),
            "ANTI_ENTROPY" => anti_entropy_round(),
            _ => profile_mode(&name),
        }
        return;
    }
    if let Some(keys) = std::env::var("CHORUS_MEMORY_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        memory_mode(keys);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    apply_local(&mut c);
    apply_remote(&mut c);
    c.final_summary();
    restart();
    hot_counter();
}
