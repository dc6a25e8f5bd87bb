//! A site alone (no peers) folds counters as they are incremented: a hot
//! counter holds one entry per origin, its value is exact, and the folded
//! form survives restarts, checkpoints and a first peer (who gets a full
//! sync, and ends up with the same value and digest).

use bytes::Bytes;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::storage::redb_backend::RedbStorage;
use chorus_engine::{Engine, EngineConfig, Reply};

fn config(site: u16, alone: bool) -> EngineConfig {
    let mut c = EngineConfig::new(site);
    c.alone = alone;
    c
}

fn run(e: &mut Engine, now: u64, cmd: &str) -> Reply {
    let args: Vec<Bytes> = cmd
        .split(' ')
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    e.execute(0, &args, now)
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

/// Counter entries (int and float) held for `key`'s string value.
fn entries(e: &Engine, key: &str) -> usize {
    e.counter_entries(0, key.as_bytes())
}

/// Every kind of increment, `n` times, at `now`.
fn increments(e: &mut Engine, n: u64, now: u64) {
    for i in 0..n {
        run(e, now + i, "INCR hits");
        run(e, now + i, "INCRBY hits -3");
        run(e, now + i, "INCRBYFLOAT f 0.1");
        run(e, now + i, "HINCRBY h a 2");
        run(e, now + i, "HINCRBYFLOAT h b 1.5");
        run(e, now + i, "ZINCRBY z 0.25 m");
    }
}

fn values(e: &mut Engine) -> Vec<Reply> {
    vec![
        run(e, 9_000_000, "GET hits"),
        run(e, 9_000_000, "GET f"),
        run(e, 9_000_000, "HGET h a"),
        run(e, 9_000_000, "HGET h b"),
        run(e, 9_000_000, "ZSCORE z m"),
    ]
}

#[test]
fn a_hot_counter_at_a_site_alone_holds_one_entry() {
    let mut a = Engine::open(Box::new(MemoryStorage::new()), config(1, true)).unwrap();
    assert!(a.folds_at_once());
    increments(&mut a, 5_000, 1_000);
    assert_eq!(entries(&a, "hits"), 1);
    assert_eq!(entries(&a, "f"), 1);
    assert_eq!(values(&mut a)[0], bulk("-10000"));
    // The same ops at a site with a peer keep one entry per increment and
    // show the same values.
    let mut b = Engine::open(Box::new(MemoryStorage::new()), config(1, false)).unwrap();
    increments(&mut b, 5_000, 1_000);
    assert_eq!(entries(&b, "hits"), 10_000);
    assert_eq!(values(&mut a), values(&mut b));
    assert_eq!(
        a.digest_hex(),
        b.digest_hex(),
        "folded and unfolded hash alike"
    );
    // A SET removes the fold whole; later increments start a new one.
    assert_eq!(run(&mut a, 2_000_000, "SET hits 7"), Reply::Ok);
    assert_eq!(entries(&a, "hits"), 0);
    run(&mut a, 2_000_001, "INCR hits");
    run(&mut a, 2_000_002, "INCR hits");
    assert_eq!(entries(&a, "hits"), 1);
    assert_eq!(run(&mut a, 2_000_003, "GET hits"), bulk("9"));
}

#[test]
fn folds_survive_restarts_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let open = |alone| {
        Engine::open(
            Box::new(RedbStorage::open(dir.path()).unwrap()),
            config(1, alone),
        )
        .unwrap()
    };
    let mut a = open(true);
    increments(&mut a, 300, 1_000);
    let want = values(&mut a);
    a.checkpoint(5_000).unwrap();
    increments(&mut a, 200, 5_000);
    let want_after = values(&mut a);
    assert_ne!(want, want_after);
    a.sync().unwrap();
    drop(a);
    // Replay from the checkpoint folds again.
    let mut a = open(true);
    assert_eq!(values(&mut a), want_after);
    assert_eq!(entries(&a, "hits"), 1);
    increments(&mut a, 10, 9_000);
    a.sync().unwrap();
    drop(a);
    // Started with peers now: the folded state is kept as it is, nothing
    // folds any more, and the values are exact.
    let mut a = open(false);
    assert!(!a.folds_at_once());
    let v = values(&mut a);
    let held = entries(&a, "hits");
    run(&mut a, 20_000, "INCR hits");
    run(&mut a, 20_001, "INCR hits");
    assert_eq!(entries(&a, "hits"), held + 2, "no folding with peers");
    let Reply::Bulk(before) = &v[0] else {
        panic!("{v:?}")
    };
    let before: i64 = std::str::from_utf8(before).unwrap().parse().unwrap();
    assert_eq!(
        run(&mut a, 20_002, "GET hits"),
        bulk(&(before + 2).to_string())
    );
}

#[test]
fn the_first_peer_of_a_site_that_folded_gets_a_full_sync() {
    let mut a = Engine::open(Box::new(MemoryStorage::new()), config(1, true)).unwrap();
    increments(&mut a, 1_000, 1_000);
    let mut b = Engine::open(Box::new(MemoryStorage::new()), config(2, false)).unwrap();
    run(&mut b, 500, "INCRBY hits 100");
    run(&mut b, 501, "SET other x");
    // The session starts: A is no longer alone, and cannot serve B op by op
    // (B could make an op that saw only some of what A folded).
    a.note_peer();
    assert!(!a.folds_at_once());
    assert!(a.backlog_cursor(b.vv()).is_none());
    b.merge_snapshot(a.snapshot());
    a.merge_snapshot(b.snapshot());
    assert_eq!(values(&mut a), values(&mut b));
    assert_eq!(run(&mut a, 9_000_000, "GET hits"), bulk("-1900"));
    assert_eq!(a.digest_hex(), b.digest_hex());
    // From here both stream op by op, and A no longer folds.
    run(&mut a, 10_000_000, "INCR hits");
    run(&mut a, 10_000_001, "INCR hits");
    let ops = a
        .ops_since(b.vv(), usize::MAX)
        .expect("served from the backlog");
    b.apply_remote(ops);
    assert_eq!(run(&mut b, 10_000_002, "GET hits"), bulk("-1898"));
    assert_eq!(a.digest_hex(), b.digest_hex());
}
