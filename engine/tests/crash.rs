//! Crash tests on the in-memory backend (durable vs volatile bytes).
//!
//! A seeded workload runs under `appendfsync always` semantics: writes are
//! appended in small group-commit batches and count as acknowledged only once
//! `Engine::sync` covering them returned `Ok`. Power is cut at every fsync point
//! and between every append and the sync that would cover it, with torn tails of
//! every interesting length. After each cut the site is reopened and must hold
//! exactly the ops whose records are whole on "disk" (every acked op among them,
//! every MULTI group whole or absent), must start a new incarnation so that no
//! OpId is ever reused for a different op, must recover the same state when
//! reopened twice, and must converge with a peer that kept the lost tail.
//!
//! Seeds: `CRASH_SEEDS` (default 8), steps per seed: `CRASH_STEPS` (default 80).

use bytes::Bytes;
use chorus_engine::storage::memory::{FailPoint, MemoryStorage};
use chorus_engine::storage::{CheckpointRow, Storage, StorageError};
use chorus_engine::{Engine, EngineConfig, Fsync, Op, OpId, Origin, Reply, VersionVector};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const SITE: u16 = 7;
const PEER: u16 = 99;

fn config(site: u16) -> EngineConfig {
    let mut c = EngineConfig::new(site);
    c.fsync = Fsync::Always;
    c
}

fn args(cmd: &str) -> Vec<Bytes> {
    cmd.split(' ')
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect()
}

fn run(e: &mut Engine, now: u64, cmd: &str) -> Reply {
    e.execute(0, &args(cmd), now)
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn mem(s: &mut dyn Storage) -> &mut MemoryStorage {
    s.as_any_mut()
        .downcast_mut::<MemoryStorage>()
        .expect("the engine runs on MemoryStorage")
}

fn engine_mem(e: &mut Engine) -> &mut MemoryStorage {
    mem(e.storage_mut())
}

fn open(storage: MemoryStorage) -> Engine {
    Engine::open(Box::new(storage), config(SITE)).expect("open")
}

/// Cuts power under a running engine: only the durable bytes (plus a torn
/// prefix of `torn` volatile bytes) survive; returns the "disk".
fn power_cut(e: Engine, torn: usize) -> MemoryStorage {
    let mut storage = e.into_storage();
    let m = mem(storage.as_mut());
    m.crash(torn);
    m.clone()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: the workload's only source of choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn has_command(name: &str) -> bool {
    Engine::is_data_command(name.as_bytes())
}

/// One place where power can be cut.
struct CutPoint {
    /// The disk as a restarted site finds it.
    disk: MemoryStorage,
    /// Ops whose records are whole on that disk (a prefix of the site's ops).
    whole_ops: u64,
    /// Ops acknowledged (covered by a successful sync) before the cut.
    acked_ops: u64,
    /// Ops the site had made before the cut (some possibly shipped to peers).
    made_ops: u64,
    what: String,
}

/// A MULTI/EXEC group: its op's seq and the two keys it wrote together.
struct Group {
    seq: u64,
    keys: [String; 2],
    token: String,
}

/// The workload of one seed, with every cut point and the reference digests.
struct Run {
    points: Vec<CutPoint>,
    /// `digests[n]`: digest of the live site after its first `n` ops.
    digests: Vec<String>,
    /// Every op the site made, by OpId.
    ledger: BTreeMap<OpId, Op>,
    groups: Vec<Group>,
}

fn random_write(rng: &mut Rng, step: usize) -> String {
    let k = rng.below(6);
    let collections = has_command("HSET") && has_command("SADD") && has_command("ZADD");
    match rng.below(if collections { 10 } else { 7 }) {
        0 | 1 => format!("SET k{k} v{step}"),
        2 => format!("INCRBY c{k} {}", rng.below(100) as i64 - 50),
        3 => format!("APPEND k{k} a{step}"),
        4 => format!("DEL k{k} c{k}"),
        5 => format!("EXPIRE k{k} 100000"),
        6 => format!("SET c{k} {step}"),
        7 => format!("HSET h{k} f{} v{step}", rng.below(3)),
        8 => format!("SADD s{k} m{}", rng.below(4)),
        _ => format!("ZADD z{k} {} m{}", rng.below(10), rng.below(4)),
    }
}

fn workload(seed: u64, steps: usize) -> Run {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x00c0_ffee);
    let mut e = open(MemoryStorage::new());
    let mut run = Run {
        points: Vec::new(),
        digests: vec![e.digest_hex()],
        ledger: BTreeMap::new(),
        groups: Vec::new(),
    };
    // Records appended since the last sync: (seq, record bytes).
    let mut pending: Vec<(u64, usize)> = Vec::new();
    let mut acked = 0u64;
    let origin = e.origin();
    assert_eq!(origin.incarnation, 0);
    for step in 0..steps {
        let now = 1_000 + step as u64 * 10;
        let before_vv = e.vv().clone();
        let before_len = engine_mem(&mut e).volatile_len();
        match rng.below(20) {
            0 => {
                // Checkpoint: syncs everything first, then writes the rows.
                e.checkpoint(now).expect("checkpoint");
                acked = e.last_local_seq();
                pending.clear();
                run.points.push(CutPoint {
                    disk: engine_mem(&mut e).durable_image(),
                    whole_ops: acked,
                    acked_ops: acked,
                    made_ops: acked,
                    what: format!("after checkpoint at step {step}"),
                });
                continue;
            }
            1 | 2 => {
                let g = run.groups.len();
                let token = format!("t{g}");
                let keys = [format!("g{g}:a"), format!("g{g}:b")];
                let cmds: Vec<(u8, Vec<Bytes>)> = vec![
                    (0, args(&format!("SET {} {token}", keys[0]))),
                    (0, args("INCR groups")),
                    (0, args(&format!("SET {} {token}", keys[1]))),
                ];
                let replies = e.execute_multi(&cmds, now);
                assert!(replies.iter().all(|r| !r.is_error()), "{replies:?}");
                run.groups.push(Group {
                    seq: e.last_local_seq(),
                    keys,
                    token,
                });
            }
            _ => {
                let cmd = random_write(&mut rng, step);
                e.execute(0, &args(&cmd), now);
            }
        }
        let seq = e.last_local_seq();
        if seq == before_vv.get(origin) {
            continue; // the command failed (WRONGTYPE...) or wrote nothing
        }
        assert_eq!(seq, before_vv.get(origin) + 1, "one op per command");
        let ops = e.ops_since(&before_vv, usize::MAX).expect("backlog");
        assert_eq!(ops.len(), 1);
        run.ledger.insert(ops[0].id, ops[0].clone());
        run.digests.push(e.digest_hex());
        let record_len = engine_mem(&mut e).volatile_len() - before_len;
        pending.push((seq, record_len));

        // Power cuts before the covering sync, with torn tails: nothing, a few
        // header bytes, half a record, all but one byte, every whole record.
        let volatile = engine_mem(&mut e).volatile_len();
        let mut torn_lengths = vec![0, 3, volatile / 2, volatile.saturating_sub(1), volatile];
        let mut end = 0;
        for &(_, len) in &pending {
            end += len;
            torn_lengths.push(end);
        }
        torn_lengths.sort_unstable();
        torn_lengths.dedup();
        for torn in torn_lengths {
            let mut disk = engine_mem(&mut e).clone();
            disk.crash(torn);
            let mut whole = acked;
            let mut end = 0;
            for &(s, len) in &pending {
                end += len;
                if end <= torn {
                    whole = s;
                }
            }
            run.points.push(CutPoint {
                disk,
                whole_ops: whole,
                acked_ops: acked,
                made_ops: seq,
                what: format!("step {step}, before sync, torn tail {torn} of {volatile} bytes"),
            });
        }

        // Group commit: sync after 1-3 writes; only then are they acked.
        if rng.below(3) == 0 || pending.len() >= 3 {
            let syncs = engine_mem(&mut e).sync_count();
            e.sync().expect("sync");
            assert_eq!(engine_mem(&mut e).sync_count(), syncs + 1);
            assert_eq!(e.durable_vv(), e.vv());
            acked = seq;
            pending.clear();
            run.points.push(CutPoint {
                disk: engine_mem(&mut e).durable_image(),
                whole_ops: acked,
                acked_ops: acked,
                made_ops: seq,
                what: format!("step {step}, after sync"),
            });
        }
    }
    run
}

fn check_point(w: &Run, p: &CutPoint) {
    let ctx = &p.what;
    let old = Origin::new(SITE, 0);
    let mut r = Engine::open(Box::new(p.disk.clone()), config(SITE))
        .unwrap_or_else(|err| panic!("{ctx}: reopen failed: {err}"));

    // Exactly the whole records are back: every acked op, nothing half-applied.
    assert!(p.whole_ops >= p.acked_ops);
    assert_eq!(r.vv().get(old), p.whole_ops, "{ctx}: recovered ops");
    assert_eq!(
        r.digest_hex(),
        w.digests[p.whole_ops as usize],
        "{ctx}: state differs from the live state after {} ops",
        p.whole_ops
    );
    for g in &w.groups {
        let a = run(&mut r, 1_000_000, &format!("GET {}", g.keys[0]));
        let b = run(&mut r, 1_000_000, &format!("GET {}", g.keys[1]));
        if g.seq <= p.whole_ops {
            assert_eq!((&a, &b), (&bulk(&g.token), &bulk(&g.token)), "{ctx}");
        } else {
            assert_eq!((&a, &b), (&Reply::Nil, &Reply::Nil), "{ctx}");
        }
    }

    // An unclean stop starts a new incarnation.
    let inc1 = r.origin().incarnation;
    assert!(inc1 > 0, "{ctx}: no new incarnation after a power cut");
    assert_eq!(r.last_local_seq(), 0, "{ctx}");

    // Replay is idempotent: cut power again at once, reopen, same state.
    let d1 = r.digest_hex();
    let mut r = Engine::open(Box::new(power_cut(r, 0)), config(SITE))
        .unwrap_or_else(|err| panic!("{ctx}: second reopen failed: {err}"));
    assert_eq!(r.digest_hex(), d1, "{ctx}: second replay changed the state");
    assert!(r.origin().incarnation > inc1, "{ctx}");

    // New writes get OpIds never used before, for any payload.
    let before = r.vv().clone();
    for i in 0..3 {
        assert_eq!(
            run(&mut r, 2_000_000 + i, &format!("SET k{i} after-{i}")),
            Reply::Ok
        );
    }
    r.sync().expect("sync after reopen");
    let fresh = r.ops_since(&before, usize::MAX).expect("backlog");
    assert_eq!(fresh.len(), 3);
    for op in &fresh {
        assert!(
            !w.ledger.contains_key(&op.id),
            "{ctx}: OpId {} reused",
            op.id
        );
        assert_eq!(op.id.origin, r.origin());
    }
    // Whatever the backlog serves is the op first made under that OpId.
    if let Some(all) = r.ops_since(&VersionVector::new(), usize::MAX) {
        for op in &all {
            if let Some(first) = w.ledger.get(&op.id) {
                assert_eq!(op, first, "{ctx}: OpId {} has two payloads", op.id);
            }
        }
    }

    // A peer that received the lost tail before the cut sends it back: the
    // site takes its own old-incarnation ops, and both converge.
    let lost: Vec<Op> = w
        .ledger
        .values()
        .filter(|op| op.id.seq > p.whole_ops && op.id.seq <= p.made_ops)
        .cloned()
        .collect();
    let outcome = r.apply_remote(lost.clone());
    assert_eq!(outcome.applied, lost.len(), "{ctx}: {outcome:?}");
    assert_eq!(r.vv().get(old), p.made_ops, "{ctx}");
    let mut peer = Engine::open(Box::new(MemoryStorage::new()), config(PEER)).expect("peer");
    let made: Vec<Op> = w
        .ledger
        .values()
        .filter(|op| op.id.seq <= p.made_ops)
        .cloned()
        .collect();
    peer.apply_remote(made);
    peer.apply_remote(fresh);
    assert_eq!(peer.vv(), r.vv(), "{ctx}");
    assert_eq!(peer.digest_hex(), r.digest_hex(), "{ctx}: no convergence");

    // Everything synced after recovery survives the next cut too, also when
    // a checkpoint covers rows that only the replay had rebuilt.
    r.sync().expect("sync");
    if p.whole_ops & 1 == 0 {
        r.checkpoint(3_000_000).expect("checkpoint after recovery");
    }
    let d = r.digest_hex();
    let r = Engine::open(Box::new(power_cut(r, 0)), config(SITE))
        .unwrap_or_else(|err| panic!("{ctx}: third reopen failed: {err}"));
    assert_eq!(r.digest_hex(), d, "{ctx}: lost writes made after recovery");
}

#[test]
fn power_cut_at_every_fsync_point_loses_no_acked_write() {
    let seeds = env_usize("CRASH_SEEDS", 8) as u64;
    let steps = env_usize("CRASH_STEPS", 80);
    let mut cuts = 0;
    for seed in 0..seeds {
        let run = workload(seed, steps);
        assert!(
            run.digests.len() > steps / 2,
            "seed {seed}: workload made too few ops"
        );
        for p in &run.points {
            check_point(&run, p);
        }
        cuts += run.points.len();
    }
    eprintln!("power cuts checked: {cuts} over {seeds} seeds");
}

#[test]
fn torn_multi_exec_record_is_all_or_nothing() {
    let mut e = open(MemoryStorage::new());
    assert_eq!(run(&mut e, 1_000, "SET before 1"), Reply::Ok);
    e.sync().unwrap();
    let cmds: Vec<(u8, Vec<Bytes>)> = (0..50)
        .map(|i| (0u8, args(&format!("SET m{i} {i}"))))
        .collect();
    e.execute_multi(&cmds, 1_001);
    let volatile = engine_mem(&mut e).volatile_len();
    for torn in 0..=volatile {
        let mut disk = engine_mem(&mut e).clone();
        disk.crash(torn);
        let mut r = open(disk);
        let present = (0..50)
            .filter(|i| run(&mut r, 2_000, &format!("EXISTS m{i}")) == Reply::Int(1))
            .count();
        let expected = if torn == volatile { 50 } else { 0 };
        assert_eq!(present, expected, "torn tail of {torn}/{volatile} bytes");
        assert_eq!(run(&mut r, 2_000, "GET before"), bulk("1"));
    }
}

#[test]
fn sync_error_refuses_writes_until_reopen_and_loses_nothing_acked() {
    let mut e = open(MemoryStorage::new());
    assert_eq!(run(&mut e, 1_000, "SET acked 1"), Reply::Ok);
    assert_eq!(run(&mut e, 1_001, "INCRBY n 5"), Reply::Int(5));
    e.sync().unwrap();

    engine_mem(&mut e).fail_next(FailPoint::LogSync);
    // Applied in memory and appended, but its fsync fails: never acked.
    assert_eq!(run(&mut e, 1_002, "SET unacked 2"), Reply::Ok);
    assert!(e.sync().is_err(), "the injected fsync error is reported");
    assert!(e.poisoned().is_some());
    for cmd in ["SET later 3", "INCR n", "DEL acked", "EXPIRE acked 10"] {
        match run(&mut e, 1_003, cmd) {
            Reply::Error(msg) => assert!(msg.starts_with("MISCONF "), "{cmd}: {msg}"),
            other => panic!("{cmd} was accepted after an I/O error: {other:?}"),
        }
    }
    // MULTI groups are refused too, command by command.
    let replies = e.execute_multi(&[(0, args("SET later 4"))], 1_004);
    assert!(matches!(&replies[0], Reply::Error(m) if m.starts_with("MISCONF ")));
    // Reads still work; sync and checkpoint keep failing (sticky).
    assert_eq!(run(&mut e, 1_005, "GET acked"), bulk("1"));
    assert!(e.sync().is_err());
    assert!(e.checkpoint(1_006).is_err());

    let mut r = open(power_cut(e, 0));
    assert!(r.poisoned().is_none());
    assert_eq!(run(&mut r, 2_000, "GET acked"), bulk("1"));
    assert_eq!(run(&mut r, 2_000, "GET n"), bulk("5"));
    assert_eq!(run(&mut r, 2_000, "GET later"), Reply::Nil);
    assert_eq!(run(&mut r, 2_000, "GET unacked"), Reply::Nil);
    // Writes are accepted again after the reopen.
    assert_eq!(run(&mut r, 2_001, "SET later 5"), Reply::Ok);
    r.sync().unwrap();
}

#[test]
fn append_error_refuses_writes_until_reopen() {
    let mut e = open(MemoryStorage::new());
    assert_eq!(run(&mut e, 1_000, "SET acked 1"), Reply::Ok);
    e.sync().unwrap();
    engine_mem(&mut e).fail_next(FailPoint::LogAppend);
    // The append fails: the write may be answered, but its sync must fail, so
    // under `always` it is never acknowledged.
    run(&mut e, 1_001, "SET lost 2");
    assert!(e.sync().is_err());
    assert!(matches!(run(&mut e, 1_002, "SET x 1"), Reply::Error(m) if m.starts_with("MISCONF ")));
    let mut r = open(power_cut(e, usize::MAX));
    assert_eq!(run(&mut r, 2_000, "GET acked"), bulk("1"));
    assert_eq!(run(&mut r, 2_000, "GET lost"), Reply::Nil);
    assert_eq!(run(&mut r, 2_001, "SET x 1"), Reply::Ok);
}

#[test]
fn checkpoint_error_refuses_writes_until_reopen() {
    let mut e = open(MemoryStorage::new());
    for i in 0..20 {
        run(&mut e, 1_000 + i, &format!("SET k{i} {i}"));
    }
    engine_mem(&mut e).fail_next(FailPoint::CheckpointWrite);
    // The checkpoint syncs the log first (that part succeeds: acked), then fails.
    assert!(e.checkpoint(1_100).is_err());
    assert_eq!(e.durable_vv(), e.vv());
    assert!(matches!(run(&mut e, 1_101, "SET y 1"), Reply::Error(m) if m.starts_with("MISCONF ")));
    let mut r = open(power_cut(e, 0));
    for i in 0..20 {
        assert_eq!(
            run(&mut r, 2_000, &format!("GET k{i}")),
            bulk(&i.to_string())
        );
    }
}

#[test]
fn open_reports_a_failing_disk_instead_of_panicking() {
    let mut disk = MemoryStorage::new();
    disk.fail_next(FailPoint::MetaPut);
    assert!(Engine::open(Box::new(disk), config(SITE)).is_err());
}

#[test]
fn checkpoint_then_log_replay_recovers_everything_acked() {
    let mut e = open(MemoryStorage::new());
    for i in 0..100u64 {
        run(&mut e, 1_000 + i, &format!("SET k{} v{i}", i % 17));
        run(&mut e, 1_000 + i, &format!("INCRBY n{} {i}", i % 5));
    }
    run(&mut e, 1_100, "DEL k3");
    e.checkpoint(1_100).unwrap();
    for i in 100..150u64 {
        run(&mut e, 1_000 + i, &format!("SET k{} w{i}", i % 23));
        run(&mut e, 1_000 + i, &format!("INCRBY n{} {i}", i % 5));
    }
    run(&mut e, 1_150, "DEL k5");
    e.sync().unwrap();
    let acked = e.digest_hex();
    // Unacked writes after the last sync may vanish; acked ones may not.
    run(&mut e, 1_151, "SET unacked 1");
    let mut r = open(power_cut(e, 0));
    assert_eq!(r.digest_hex(), acked);
    assert_eq!(run(&mut r, 2_000, "GET k5"), Reply::Nil);
    assert_eq!(run(&mut r, 2_000, "GET k3"), bulk("w141"));
    let n0: u64 = (0..150).filter(|i| i % 5 == 0).sum();
    assert_eq!(run(&mut r, 2_000, "GET n0"), bulk(&n0.to_string()));
}

#[test]
fn trimmed_log_restarts_from_checkpoint_plus_tail() {
    let mut e = open(MemoryStorage::new());
    for i in 0..200u64 {
        run(&mut e, 1_000 + i, &format!("SET k{} v{i}", i % 31));
    }
    e.checkpoint(1_200).unwrap();
    for i in 0..50u64 {
        run(&mut e, 1_300 + i, &format!("INCRBY k{} {i}", 40 + i % 7));
    }
    e.checkpoint(1_400).unwrap();
    for i in 0..10u64 {
        run(&mut e, 1_500 + i, &format!("SET tail{i} {i}"));
    }
    e.sync().unwrap();
    let all = e.vv().clone();
    let log_before = engine_mem(&mut e).log_start();
    // Acked up to 3 ops before the end: the backlog keeps those 3 (ops after
    // the checkpoint that every peer has are not kept in memory).
    let mut most = all.clone();
    most.set(Origin::new(SITE, 0), all.get(Origin::new(SITE, 0)) - 3);
    e.trim_backlog(&most);
    assert_eq!(e.backlog().len(), 3, "only what some peer lacks stays");
    e.trim_backlog(&all);
    assert_eq!(e.backlog().len(), 0);
    assert!(
        engine_mem(&mut e).log_start() > log_before,
        "the log was trimmed"
    );
    let d = e.digest_hex();
    let mut r = open(power_cut(e, 0));
    assert_eq!(r.digest_hex(), d);
    // Peers behind the trimmed part need a full sync; later ones are served.
    assert!(r.ops_since(&VersionVector::new(), usize::MAX).is_none());
    let mut recent = all.clone();
    recent.set(Origin::new(SITE, 0), all.get(Origin::new(SITE, 0)) - 5);
    assert_eq!(r.ops_since(&recent, usize::MAX).map(|v| v.len()), Some(5));
}

/// Counts checkpoint rows handed to storage, to see coalescing.
struct CountingStorage {
    inner: MemoryStorage,
    rows_written: Arc<AtomicUsize>,
}

impl Storage for CountingStorage {
    fn log_append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.log_append(bytes)
    }
    fn log_sync(&mut self) -> Result<(), StorageError> {
        self.inner.log_sync()
    }
    fn log_len(&self) -> u64 {
        self.inner.log_len()
    }
    fn log_read(&mut self, offset: u64, bytes_max: usize) -> Result<Vec<u8>, StorageError> {
        self.inner.log_read(offset, bytes_max)
    }
    fn log_trim_before(&mut self, offset: u64) -> Result<(), StorageError> {
        self.inner.log_trim_before(offset)
    }
    fn log_truncate(&mut self, offset: u64) -> Result<(), StorageError> {
        self.inner.log_truncate(offset)
    }
    fn log_start(&self) -> u64 {
        self.inner.log_start()
    }
    fn checkpoint_write(
        &mut self,
        rows: &[CheckpointRow],
        meta: &[u8],
    ) -> Result<(), StorageError> {
        self.rows_written.fetch_add(rows.len(), Ordering::Relaxed);
        self.inner.checkpoint_write(rows, meta)
    }
    fn checkpoint_read(&mut self) -> Result<(Vec<CheckpointRow>, Option<Vec<u8>>), StorageError> {
        self.inner.checkpoint_read()
    }
    fn meta_put(&mut self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        self.inner.meta_put(name, value)
    }
    fn meta_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.meta_get(name)
    }
    fn describe(&self) -> String {
        "counting memory".to_owned()
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        &mut self.inner
    }
}

#[test]
fn key_written_a_thousand_times_is_checkpointed_once() {
    let rows_written = Arc::new(AtomicUsize::new(0));
    let storage = CountingStorage {
        inner: MemoryStorage::new(),
        rows_written: Arc::clone(&rows_written),
    };
    let mut e = Engine::open(Box::new(storage), config(SITE)).unwrap();
    run(&mut e, 999, "SET other0 x");
    e.checkpoint(999).unwrap();
    rows_written.store(0, Ordering::Relaxed);

    for i in 0..1_000u64 {
        if i % 2 == 0 {
            run(&mut e, 1_000 + i, &format!("SET hot v{i}"));
        } else {
            run(&mut e, 1_000 + i, "INCR hotcounter");
        }
    }
    for i in 0..10 {
        run(&mut e, 2_000, &format!("SET other{i} y"));
    }
    assert_eq!(e.dirty_rows(), 12);
    e.checkpoint(2_001).unwrap();
    assert_eq!(
        rows_written.load(Ordering::Relaxed),
        12,
        "1,000 writes to `hot` and 500 to `hotcounter` must coalesce into one row each"
    );
    assert_eq!(e.dirty_rows(), 0);
    let (rows, _) = engine_mem(&mut e).checkpoint_read().unwrap();
    assert_eq!(rows.iter().filter(|r| r.key == b"hot").count(), 1);

    // A checkpoint with nothing changed writes no row.
    rows_written.store(0, Ordering::Relaxed);
    e.checkpoint(2_002).unwrap();
    assert_eq!(rows_written.load(Ordering::Relaxed), 0);

    // The coalesced row restores the last value.
    let disk = power_cut(e, 0);
    let mut r = open(disk);
    assert_eq!(run(&mut r, 3_000, "GET hot"), bulk("v998"));
    assert_eq!(run(&mut r, 3_000, "GET hotcounter"), bulk("500"));
}

#[test]
fn rows_replayed_at_open_reach_the_next_checkpoint() {
    let mut e = open(MemoryStorage::new());
    assert_eq!(run(&mut e, 1_000, "SET a 1"), Reply::Ok);
    e.checkpoint(1_001).unwrap();
    assert_eq!(run(&mut e, 1_002, "SET b 2"), Reply::Ok);
    e.sync().unwrap();
    // Power cut: `b` is only in the log, and the reopen replays it.
    let mut r = open(power_cut(e, 0));
    assert_eq!(run(&mut r, 2_000, "GET b"), bulk("2"));
    // This checkpoint covers `b`'s op (its version vector says so)...
    r.checkpoint(2_001).unwrap();
    // ...so the next open skips `b` in the log: `b` must be in the checkpoint.
    let mut r = open(power_cut(r, 0));
    assert_eq!(run(&mut r, 3_000, "GET b"), bulk("2"), "acked write lost");
}

#[test]
fn site_rebuilt_on_an_empty_disk_never_reuses_opids() {
    let mut a = open(MemoryStorage::new());
    for i in 0..3 {
        run(&mut a, 1_000 + i, &format!("SET x{i} old"));
    }
    a.sync().unwrap();
    let old: Vec<Op> = a.ops_since(&VersionVector::new(), usize::MAX).unwrap();
    let mut peer = Engine::open(Box::new(MemoryStorage::new()), config(PEER)).unwrap();
    peer.apply_remote(old.clone());
    drop(a);

    // The disk is lost; the site is rebuilt from its peer under the same id.
    let mut a = open(MemoryStorage::new());
    let outcome = a.apply_remote(peer.ops_since(a.vv(), usize::MAX).unwrap());
    assert_eq!(
        outcome.applied, 3,
        "its own old ops are dropped: {outcome:?}"
    );
    let before = a.vv().clone();
    run(&mut a, 2_000, "SET y new");
    let new = a.ops_since(&before, usize::MAX).unwrap();
    for op in &new {
        assert!(
            old.iter().all(|o| o.id != op.id),
            "OpId {} reused for a different op",
            op.id
        );
    }
}

/// A site holds the first ops of an origin in its log, gets the rest by a
/// full sync (never logged, never in its backlog), and restarts before its
/// log is trimmed (a lagging peer still needs it). After the restart it must
/// not claim it can serve that origin from its backlog: a peer behind the
/// snapshot needs a full sync, or its stream stalls for good (found by the
/// simulator's `disk` profile, seed 97).
#[test]
fn a_restart_after_a_full_sync_does_not_claim_ops_its_backlog_lacks() {
    let mut origin = Engine::open(Box::new(MemoryStorage::new()), config(PEER)).unwrap();
    for i in 0..3 {
        run(&mut origin, 1_000 + i, &format!("SET early{i} v"));
    }
    let mut site = open(MemoryStorage::new());
    let early = origin.ops_since(&VersionVector::new(), usize::MAX).unwrap();
    site.apply_remote(early);
    let lagging_peer = site.vv().clone();
    for i in 0..7 {
        run(&mut origin, 2_000 + i, &format!("SET late{i} v"));
    }
    site.merge_snapshot(origin.snapshot());
    site.sync().unwrap();
    assert_eq!(site.vv(), origin.vv());
    assert!(
        !site.backlog().can_serve(&lagging_peer, site.vv()),
        "before the restart: the snapshot's ops are not in the backlog"
    );

    let mut site = open(engine_mem(&mut site).durable_image());
    assert_eq!(site.vv(), origin.vv());
    assert!(
        !site.backlog().can_serve(&lagging_peer, site.vv()),
        "after the restart the backlog still lacks the snapshot's ops: floor {}",
        site.backlog().floor
    );
    // And what it does serve has no gap: new ops of the origin after the
    // snapshot are servable to a peer that holds the snapshot.
    for i in 0..2 {
        run(&mut origin, 3_000 + i, &format!("SET later{i} v"));
    }
    let caught_up = site.vv().clone();
    site.apply_remote(origin.ops_since(&caught_up, usize::MAX).unwrap());
    site.sync().unwrap();
    let mut site = open(engine_mem(&mut { site }).durable_image());
    assert!(site.backlog().can_serve(&caught_up, site.vv()));
    assert!(!site.backlog().can_serve(&lagging_peer, site.vv()));
    assert_eq!(
        site.ops_since(&caught_up, usize::MAX).map(|o| o.len()),
        Some(2)
    );
}

/// A checkpoint row damaged on disk is refused at open with its key and
/// database, never loaded as if it were a value.
#[test]
fn a_corrupt_checkpoint_row_is_refused_at_open() {
    let mut e = open(MemoryStorage::new());
    run(&mut e, 1_000, "SET k v");
    run(&mut e, 1_000, "SADD s a b");
    e.checkpoint(1_000).unwrap();
    e.sync().unwrap();
    let mut disk = engine_mem(&mut e).durable_image();
    let (rows, meta) = disk.checkpoint_read().unwrap();
    let mut damaged = rows.into_iter().find(|r| r.key == b"s").expect("row s");
    damaged.state = Some(vec![0xff; 7]);
    disk.checkpoint_write(&[damaged], &meta.expect("checkpoint meta"))
        .unwrap();
    match Engine::open(Box::new(disk), config(SITE)) {
        Ok(_) => panic!("a damaged checkpoint row was loaded"),
        Err(chorus_engine::OpenError::CorruptCheckpoint(why)) => {
            assert!(why.contains("\"s\"") && why.contains("db 0"), "{why}")
        }
        Err(other) => panic!("refused for another reason: {other}"),
    }
}

/// One flipped bit in a checkpoint row's value still decodes as a row (a
/// different value): the row's checksum refuses it. So does one flipped bit
/// in the checkpoint's metadata (its version vector, clock or log offset).
#[test]
fn a_flipped_bit_in_a_checkpoint_is_refused_at_open() {
    let mut e = open(MemoryStorage::new());
    run(&mut e, 1_000, "SET k value-of-k");
    e.checkpoint(1_000).unwrap();
    e.sync().unwrap();
    let disk = engine_mem(&mut e).durable_image();
    // A bit of the value itself: the image decodes, the checksum does not match.
    let mut bad_row = disk.clone();
    let (rows, meta) = bad_row.checkpoint_read().unwrap();
    let mut row = rows.into_iter().find(|r| r.key == b"k").expect("row k");
    let state = row.state.as_mut().expect("a live row");
    let at = state
        .windows(10)
        .position(|w| w == b"value-of-k")
        .expect("the value is in the image");
    state[at + 3] ^= 0x01;
    bad_row
        .checkpoint_write(&[row], &meta.expect("checkpoint meta"))
        .unwrap();
    match Engine::open(Box::new(bad_row), config(SITE)) {
        Ok(mut e) => panic!(
            "a damaged row was loaded: GET k = {:?}",
            run(&mut e, 1_000, "GET k")
        ),
        Err(chorus_engine::OpenError::CorruptCheckpoint(why)) => {
            assert!(why.contains("\"k\"") && why.contains("checksum"), "{why}")
        }
        Err(other) => panic!("refused for another reason: {other}"),
    }
    // A bit of the metadata.
    let mut bad_meta = disk.clone();
    let (_, meta) = bad_meta.checkpoint_read().unwrap();
    let mut meta = meta.expect("checkpoint meta");
    meta[1] ^= 0x01;
    bad_meta.checkpoint_write(&[], &meta).unwrap();
    match Engine::open(Box::new(bad_meta), config(SITE)) {
        Ok(_) => panic!("damaged checkpoint metadata was loaded"),
        Err(chorus_engine::OpenError::CorruptCheckpoint(why)) => {
            assert!(why.contains("metadata"), "{why}")
        }
        Err(other) => panic!("refused for another reason: {other}"),
    }
    // The undamaged disk opens, with the value.
    let mut e = Engine::open(Box::new(disk), config(SITE)).expect("opens");
    assert_eq!(run(&mut e, 1_000, "GET k"), bulk("value-of-k"));
}

/// `--salvage` that cuts the log inside what the checkpoint covers (the
/// damage is in a record the checkpoint already holds) records the new end
/// as the point replay starts from. Before, the engine kept the checkpoint's
/// old offset, and the next trim cut the log there: inside a record written
/// after the salvage, so the start after that refused a healthy log (found
/// by the simulator's bit rot, `chorus-sim run --seed 8 --profile disk`).
#[test]
fn a_salvage_inside_the_checkpointed_log_keeps_later_starts_healthy() {
    let mut e = open(MemoryStorage::new());
    for i in 0..20 {
        run(&mut e, 1_000, &format!("SET k{i} v{i}"));
    }
    e.sync().unwrap();
    e.checkpoint(1_000).unwrap();
    e.sync().unwrap();
    let mut disk = engine_mem(&mut e).durable_image();
    drop(e);
    // A bit of the first record: every record is covered by the checkpoint.
    assert!(disk.damage_durable_log(10, 3));
    match Engine::open(Box::new(disk.clone()), config(SITE)) {
        Err(chorus_engine::OpenError::CorruptLog { .. }) => {}
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a damaged record in the middle of the log was accepted"),
    }
    let mut salvage = config(SITE);
    salvage.salvage = true;
    let mut e = Engine::open(Box::new(disk), salvage).expect("salvaged");
    for i in 0..20 {
        assert_eq!(
            run(&mut e, 2_000, &format!("GET k{i}")),
            bulk(&format!("v{i}"))
        );
    }
    // Records written after the salvage, past the checkpoint's old offset.
    for i in 0..40 {
        run(&mut e, 2_000, &format!("SET n{i} w{i}"));
    }
    e.sync().unwrap();
    let all = e.vv().clone();
    e.trim_backlog(&all);
    let disk = engine_mem(&mut e).durable_image();
    drop(e);
    let mut e = open(disk);
    for i in 0..40 {
        assert_eq!(
            run(&mut e, 3_000, &format!("GET n{i}")),
            bulk(&format!("w{i}"))
        );
    }
    assert_eq!(run(&mut e, 3_000, "GET k3"), bulk("v3"));
}
