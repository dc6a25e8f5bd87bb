//! The engine reports changed keys (`Engine::enable_changes`,
//! `Engine::set_change_sink`): local writes, remote ops, flushes (one event
//! whatever the number of keys), snapshot merges, expiry; bounded, with a
//! `Lagged` marker when the bound was hit. Each change names its keyspace
//! event (`new` before the write that made a key).

use bytes::Bytes;
use chorus_engine::keyspace::image::RowImage;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::{
    Change, ChangeSink, ChangeSource, Engine, EngineConfig, KeyEvent, Reply, VersionVector,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn mem(site: u16) -> Engine {
    Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(site)).unwrap()
}

fn args(cmd: &str) -> Vec<Bytes> {
    cmd.split(' ')
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect()
}

fn run(e: &mut Engine, db: u8, now: u64, cmd: &str) -> Reply {
    e.execute(db, &args(cmd), now)
}

fn drain(e: &mut Engine) -> Vec<Change> {
    let mut out = Vec::new();
    e.drain_changes(&mut out);
    out
}

fn key(db: u8, k: &str, source: ChangeSource, event: KeyEvent) -> Change {
    Change::Key {
        db,
        key: Bytes::copy_from_slice(k.as_bytes()),
        source,
        event,
    }
}

/// The changes of a write that made `k`: `new`, then its event.
fn made(db: u8, k: &str, source: ChangeSource, event: KeyEvent) -> [Change; 2] {
    [key(db, k, source, KeyEvent::New), key(db, k, source, event)]
}

#[test]
fn nothing_is_recorded_unless_enabled() {
    let mut e = mem(1);
    assert!(!e.changes_enabled());
    run(&mut e, 0, 1_000, "SET k v");
    assert!(drain(&mut e).is_empty());
    e.enable_changes(16);
    assert!(e.changes_enabled());
    e.disable_changes();
    run(&mut e, 0, 1_001, "SET k w");
    assert!(drain(&mut e).is_empty());
}

#[test]
fn local_writes_are_reported_with_their_events_and_reads_not_at_all() {
    let mut e = mem(1);
    e.enable_changes(16);
    run(&mut e, 0, 1_000, "SET k v");
    run(&mut e, 3, 1_001, "HSET h f 1 g 2");
    run(&mut e, 0, 1_002, "GET k");
    // A failed command writes nothing.
    assert!(run(&mut e, 0, 1_003, "INCR k").is_error());
    // One MULTI group: both keys, in order.
    e.execute_multi(
        &[
            (0, args("SET a 1")),
            (1, args("SADD s x")),
            (0, args("DEL k")),
        ],
        1_004,
    );
    let l = ChangeSource::Local;
    let mut want = Vec::new();
    want.extend(made(0, "k", l, KeyEvent::Set));
    want.extend(made(3, "h", l, KeyEvent::HSet));
    want.extend(made(0, "a", l, KeyEvent::Set));
    want.extend(made(1, "s", l, KeyEvent::SAdd));
    want.push(key(0, "k", l, KeyEvent::Del));
    assert_eq!(drain(&mut e), want);
    assert!(drain(&mut e).is_empty(), "a drain takes everything");
    // An emptied container is gone: its event, then `del`; a delete of an
    // absent key reports nothing.
    run(&mut e, 1, 1_005, "SREM s x");
    run(&mut e, 1, 1_006, "DEL s");
    assert_eq!(
        drain(&mut e),
        vec![
            key(1, "s", l, KeyEvent::SRem),
            key(1, "s", l, KeyEvent::Del)
        ]
    );
    // The command names what the effect does not say.
    run(&mut e, 0, 1_007, "APPEND a x");
    run(&mut e, 0, 1_008, "RENAME a b");
    assert_eq!(
        drain(&mut e),
        vec![
            key(0, "a", l, KeyEvent::Append),
            key(0, "a", l, KeyEvent::RenameFrom),
            key(0, "b", l, KeyEvent::New),
            key(0, "b", l, KeyEvent::RenameTo),
        ]
    );
}

#[test]
fn remote_ops_are_reported_with_their_origin() {
    let mut a = mem(1);
    run(&mut a, 0, 1_000, "SET k v");
    run(&mut a, 2, 1_001, "INCRBY n 5");
    let ops = a.ops_since(&VersionVector::new(), usize::MAX).unwrap();
    let mut b = mem(2);
    b.enable_changes(16);
    let out = b.apply_remote(ops.clone());
    assert_eq!(out.applied, 2);
    let from_a = ChangeSource::Peer(a.origin());
    let mut want = Vec::new();
    want.extend(made(0, "k", from_a, KeyEvent::Set));
    want.extend(made(2, "n", from_a, KeyEvent::IncrBy));
    assert_eq!(drain(&mut b), want);
    // Duplicates change nothing and report nothing.
    b.apply_remote(ops);
    assert!(drain(&mut b).is_empty());
    // Ops waiting for their deps are reported when applied.
    run(&mut a, 0, 1_002, "SET x 1");
    run(&mut a, 0, 1_003, "SET y 1");
    let mut more = a.ops_since(b.vv(), usize::MAX).unwrap();
    more.reverse();
    b.apply_remote(more);
    let mut want = Vec::new();
    want.extend(made(0, "x", from_a, KeyEvent::Set));
    want.extend(made(0, "y", from_a, KeyEvent::Set));
    assert_eq!(drain(&mut b), want);
    // A peer's op names the event by the effect's type: APPEND's string
    // write is a `set` there.
    run(&mut a, 0, 1_004, "APPEND x more");
    b.apply_remote(a.ops_since(b.vv(), usize::MAX).unwrap());
    assert_eq!(drain(&mut b), vec![key(0, "x", from_a, KeyEvent::Set)]);
}

#[test]
fn a_flush_is_one_change_whatever_the_number_of_keys() {
    let mut a = mem(1);
    for i in 0..500 {
        run(&mut a, 4, 1_000, &format!("SET k{i} v"));
        run(&mut a, 5, 1_000, &format!("SET k{i} v"));
    }
    a.enable_changes(8);
    run(&mut a, 4, 2_000, "FLUSHDB");
    assert_eq!(a.dbsize(4), 0);
    assert_eq!(
        drain(&mut a),
        vec![Change::Db {
            db: 4,
            source: ChangeSource::Local
        }]
    );
    run(&mut a, 0, 2_001, "FLUSHALL");
    assert_eq!(a.dbsize(5), 0);
    assert_eq!(
        drain(&mut a),
        vec![Change::All {
            source: ChangeSource::Local
        }]
    );
    assert!(Change::All {
        source: ChangeSource::Local
    }
    .may_touch(9, b"any"));

    // At a peer that saw every write, the flushes take the same fast path
    // and are reported as one change each too.
    let mut b = mem(2);
    b.enable_changes(8);
    let ops = a.ops_since(&VersionVector::new(), usize::MAX).unwrap();
    let flushes = ops.len() - 1000;
    let (writes, tail) = ops.split_at(1000);
    b.apply_remote(writes.to_vec());
    let writes_reported = drain(&mut b);
    assert_eq!(writes_reported.len(), 9, "8 kept");
    assert!(matches!(writes_reported[8], Change::Lagged(1992)));
    b.apply_remote(tail.to_vec());
    assert_eq!(flushes, 2);
    let from_a = ChangeSource::Peer(a.origin());
    assert_eq!(
        drain(&mut b),
        vec![
            Change::Db {
                db: 4,
                source: from_a
            },
            Change::All { source: from_a }
        ]
    );
}

#[test]
fn a_snapshot_merge_is_one_change() {
    let mut a = mem(1);
    for i in 0..100 {
        run(&mut a, 0, 1_000, &format!("SET k{i} v"));
    }
    let mut b = mem(2);
    b.enable_changes(4);
    b.merge_snapshot(a.snapshot());
    assert_eq!(b.dbsize(0), 100);
    assert_eq!(
        drain(&mut b),
        vec![Change::All {
            source: ChangeSource::Merge
        }]
    );
    // A row put without an op (anti-entropy's repairs) is a merge too.
    b.put_row_unlogged(0, Bytes::from_static(b"k1"), RowImage::default());
    assert_eq!(
        drain(&mut b),
        vec![key(0, "k1", ChangeSource::Merge, KeyEvent::Restore)]
    );
}

#[test]
fn expiry_is_reported_as_expired_where_it_ran_and_at_peers() {
    let mut e = mem(1);
    run(&mut e, 0, 1_000, "SET a v PX 10");
    run(&mut e, 0, 1_000, "SET gone v PX 10");
    run(&mut e, 0, 1_000, "SET d v PX 100000");
    let mut b = mem(2);
    b.apply_remote(e.ops_since(&VersionVector::new(), usize::MAX).unwrap());
    e.enable_changes(8);
    b.enable_changes(8);
    assert_eq!(e.expire_cycle(5_000, 1), 1);
    // A write to an expired key deletes it first: `expired`, then the
    // write makes a new key.
    run(&mut e, 0, 5_001, "SET gone w");
    run(&mut e, 0, 5_002, "DEL d");
    let l = ChangeSource::Local;
    assert_eq!(
        drain(&mut e),
        vec![
            key(0, "a", l, KeyEvent::Expired),
            key(0, "gone", l, KeyEvent::Expired),
            key(0, "gone", l, KeyEvent::New),
            key(0, "gone", l, KeyEvent::Set),
            key(0, "d", l, KeyEvent::Del),
        ]
    );
    // At the peer the same deletes are told apart by the deadline: passed
    // when the op was made, or not.
    b.apply_remote(e.ops_since(b.vv(), usize::MAX).unwrap());
    let from_a = ChangeSource::Peer(e.origin());
    assert_eq!(
        drain(&mut b),
        vec![
            key(0, "a", from_a, KeyEvent::Expired),
            key(0, "gone", from_a, KeyEvent::Expired),
            key(0, "gone", from_a, KeyEvent::New),
            key(0, "gone", from_a, KeyEvent::Set),
            key(0, "d", from_a, KeyEvent::Del),
        ]
    );
}

#[test]
fn the_bound_reports_what_was_lost_and_then_starts_again() {
    let mut e = mem(1);
    for i in 0..10 {
        run(&mut e, 0, 1_000, &format!("SET k{i} v"));
    }
    e.enable_changes(3);
    for i in 0..10 {
        run(&mut e, 0, 1_000, &format!("SET k{i} w"));
    }
    let l = ChangeSource::Local;
    assert_eq!(
        drain(&mut e),
        vec![
            key(0, "k0", l, KeyEvent::Set),
            key(0, "k1", l, KeyEvent::Set),
            key(0, "k2", l, KeyEvent::Set),
            Change::Lagged(7),
        ]
    );
    run(&mut e, 0, 1_001, "SET z v");
    assert_eq!(drain(&mut e), made(0, "z", l, KeyEvent::Set).to_vec());
}

/// Keeps what it is handed, in batches.
#[derive(Default)]
struct Collect {
    wanted: AtomicBool,
    batches: Mutex<Vec<Vec<Change>>>,
}

impl ChangeSink for Collect {
    fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }
    fn publish(&self, changes: &mut Vec<Change>) {
        self.batches.lock().unwrap().push(std::mem::take(changes));
    }
}

#[test]
fn a_sink_gets_every_call_s_changes_in_bounded_batches() {
    let mut e = mem(1);
    let sink = Arc::new(Collect::default());
    e.set_change_sink(sink.clone(), 4);
    run(&mut e, 0, 1_000, "SET unwanted v");
    assert!(sink.batches.lock().unwrap().is_empty(), "nobody listens");

    sink.wanted.store(true, Ordering::Relaxed);
    run(&mut e, 0, 1_001, "SET k v");
    assert_eq!(
        *sink.batches.lock().unwrap(),
        vec![made(0, "k", ChangeSource::Local, KeyEvent::Set).to_vec()],
        "handed over before execute returns"
    );
    sink.batches.lock().unwrap().clear();

    let cmds: Vec<(u8, Vec<Bytes>)> = (0..10).map(|i| (0, args(&format!("SET m{i} v")))).collect();
    e.execute_multi(&cmds, 1_002);
    let batches = std::mem::take(&mut *sink.batches.lock().unwrap());
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![4, 4, 4, 4, 4],
        "nothing lost, at most 4 at a time"
    );
    let all: Vec<Change> = batches.into_iter().flatten().collect();
    assert_eq!(all[19], key(0, "m9", ChangeSource::Local, KeyEvent::Set));

    // Remote ops reach the sink before apply_remote returns.
    let mut a = mem(3);
    run(&mut a, 0, 1_000, "SET r v");
    e.apply_remote(a.ops_since(&VersionVector::new(), usize::MAX).unwrap());
    assert_eq!(
        *sink.batches.lock().unwrap(),
        vec![made(0, "r", ChangeSource::Peer(a.origin()), KeyEvent::Set).to_vec()]
    );
    // With a sink the engine keeps nothing to drain.
    assert!(drain(&mut e).is_empty());
}

#[test]
fn a_peer_names_events_by_effect_and_sees_emptied_keys_go() {
    let mut a = mem(1);
    let mut b = mem(2);
    b.enable_changes(64);
    for cmd in [
        "RPUSH l x",
        "RPOP l",
        "SADD s m",
        "SPOP s",
        "HSET h f v",
        "HDEL h f",
        "ZADD z 1 m",
        "ZINCRBY z 2 m",
        "ZPOPMAX z",
        "SET k v",
        "EXPIRE k 100",
        "PERSIST k",
        "RENAME k k2",
    ] {
        assert!(!run(&mut a, 0, 1_000, cmd).is_error(), "{cmd}");
    }
    b.apply_remote(a.ops_since(&VersionVector::new(), usize::MAX).unwrap());
    let p = ChangeSource::Peer(a.origin());
    let events: Vec<(String, &str)> = drain(&mut b)
        .into_iter()
        .map(|c| match c {
            Change::Key { key, event, .. } => {
                (String::from_utf8_lossy(&key).into_owned(), event.name())
            }
            other => panic!("{other:?} from {p:?}"),
        })
        .collect();
    let want = [
        ("l", "new"),
        ("l", "lpush"),
        ("l", "lpop"),
        ("l", "del"),
        ("s", "new"),
        ("s", "sadd"),
        ("s", "srem"),
        ("s", "del"),
        ("h", "new"),
        ("h", "hset"),
        ("h", "hdel"),
        ("h", "del"),
        ("z", "new"),
        ("z", "zadd"),
        ("z", "zincr"),
        ("z", "zrem"),
        ("z", "del"),
        ("k", "new"),
        ("k", "set"),
        ("k", "expire"),
        ("k", "persist"),
        ("k", "del"),
        ("k2", "new"),
        ("k2", "restore"),
    ];
    let want: Vec<(String, &str)> = want.iter().map(|(k, e)| (k.to_string(), *e)).collect();
    assert_eq!(events, want);
}
