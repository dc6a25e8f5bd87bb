//! Checkpoints captured a slice at a time (`checkpoint_begin`,
//! `checkpoint_step`, `PendingCheckpoint::write`, `checkpoint_finish`) while
//! writes go on, on real files: the checkpoint holds every row as it was when
//! it began, so a reopen that loads it and replays the log after it rebuilds
//! exactly the live state (an increment replayed onto a row that already held
//! it would show twice). A set of 400 members is captured as a copy and
//! encoded off the lock.

use bytes::Bytes;
use chorus_engine::engine::CheckpointStep;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::storage::redb_backend::RedbStorage;
use chorus_engine::{Engine, EngineConfig, Reply};
use std::path::Path;

const SITE: u16 = 4;

fn run(e: &mut Engine, db: u8, now: u64, cmd: &str) -> Reply {
    let args: Vec<Bytes> = cmd
        .split(' ')
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    let reply = e.execute(db, &args, now);
    assert!(!reply.is_error(), "{cmd}: {reply:?}");
    reply
}

fn open_dir(dir: &Path) -> Engine {
    let storage = RedbStorage::open(dir).expect("storage opens");
    Engine::open(Box::new(storage), EngineConfig::new(SITE)).expect("engine opens")
}

/// The `i`-th write: every type, counters, deletes of keys written before,
/// a second database, and now and then a FLUSHDB of that database.
fn nth_write(i: u64) -> (u8, String) {
    let k = i % 17;
    match i % 11 {
        0 | 1 => (0, format!("SET s{k} v{i}")),
        2 | 3 => (0, format!("INCRBY n{} {i}", i % 5)),
        4 => (0, format!("HSET h{} f{} {i}", i % 3, i % 4)),
        5 => (0, format!("HINCRBY h{} c {i}", i % 3)),
        6 if i.is_multiple_of(2) => (0, format!("SADD big m{i}")),
        6 => (0, format!("SADD set{} m{}", i % 3, i % 7)),
        7 => (0, format!("DEL s{k} n{}", i % 5)),
        8 => (0, format!("ZINCRBY z{} {i} m{}", i % 2, i % 3)),
        9 if i % 99 == 9 => (1, "FLUSHDB".to_string()),
        _ => (1, format!("APPEND a{} x{i}", i % 4)),
    }
}

/// Makes writes `from..to`, on the engine and on an in-memory twin.
fn write(e: &mut Engine, twin: &mut Engine, from: u64, to: u64) {
    for i in from..to {
        let (db, cmd) = nth_write(i);
        run(e, db, 1_000 + i, &cmd);
        run(twin, db, 1_000 + i, &cmd);
    }
}

/// A set large enough that a capture copies it instead of encoding it.
fn fill_big(e: &mut Engine, twin: &mut Engine) {
    for i in 0..400u64 {
        let cmd = format!("SADD big b{i}");
        run(e, 0, 900, &cmd);
        run(twin, 0, 900, &cmd);
    }
}

/// The engine equals its twin, and a restart after an unclean stop (the
/// checkpoint loaded, the log replayed after it) rebuilds the same state.
fn reopen_matches(mut e: Engine, twin: &Engine, dir: &Path) {
    e.sync().unwrap();
    let live = e.digest_hex();
    assert_eq!(live, twin.digest_hex());
    drop(e); // no close: no final checkpoint
    assert_eq!(open_dir(dir).digest_hex(), live);
}

fn twin() -> Engine {
    Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(SITE)).unwrap()
}

/// Steps the capture by `budget` rows, making `writes` writes between steps,
/// until the checkpoint is handed over.
fn capture(
    e: &mut Engine,
    twin: &mut Engine,
    next: &mut u64,
    budget: usize,
    writes: u64,
) -> chorus_engine::engine::PendingCheckpoint {
    for _ in 0..10_000 {
        match e.checkpoint_step(budget) {
            CheckpointStep::Ready(p) => return p,
            CheckpointStep::More => {
                write(e, twin, *next, *next + writes);
                *next += writes;
            }
            CheckpointStep::Gone => panic!("the capture vanished"),
        }
    }
    panic!("the capture never finished");
}

#[test]
fn writes_during_a_capture_stay_out_of_the_checkpoint_and_replay_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open_dir(dir.path());
    let mut m = twin();
    fill_big(&mut e, &mut m);
    write(&mut e, &mut m, 0, 600);
    assert!(
        e.checkpoint_begin(5_000).unwrap(),
        "redb writes off the lock"
    );
    assert!(e.checkpoint_capturing());
    let mut next = 600;
    let pending = capture(&mut e, &mut m, &mut next, 3, 7);
    assert!(next > 620, "writes ran between the slices");
    assert!(!e.checkpoint_capturing());
    // Writes while the rows are written, then the checkpoint is recorded.
    write(&mut e, &mut m, next, next + 50);
    let done = pending.write();
    e.checkpoint_finish(done).unwrap();
    write(&mut e, &mut m, next + 50, next + 80);
    reopen_matches(e, &m, dir.path());
}

#[test]
fn an_inline_checkpoint_completes_a_capture_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open_dir(dir.path());
    let mut m = twin();
    fill_big(&mut e, &mut m);
    write(&mut e, &mut m, 0, 400);
    assert!(e.checkpoint_begin(5_000).unwrap());
    assert!(matches!(e.checkpoint_step(5), CheckpointStep::More));
    write(&mut e, &mut m, 400, 450);
    // SAVE (or a full sync's merge) checkpoints inline meanwhile.
    e.checkpoint(6_000).unwrap();
    assert!(matches!(e.checkpoint_step(5), CheckpointStep::Gone));
    write(&mut e, &mut m, 450, 500);
    reopen_matches(e, &m, dir.path());
}

#[test]
fn an_inline_checkpoint_waits_for_one_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open_dir(dir.path());
    let mut m = twin();
    write(&mut e, &mut m, 0, 400);
    assert!(e.checkpoint_begin(5_000).unwrap());
    let mut next = 400;
    let pending = capture(&mut e, &mut m, &mut next, 50, 3);
    write(&mut e, &mut m, next, next + 60);
    // The captured checkpoint is written on another thread, late; an inline
    // checkpoint taken meanwhile must reach the disk after it, or the older
    // one's log offset would make a reopen replay ops the rows already hold.
    let writer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        pending.write()
    });
    e.checkpoint(6_000).unwrap();
    assert!(
        writer.is_finished(),
        "the inline checkpoint waited for the write"
    );
    e.checkpoint_finish(writer.join().unwrap()).unwrap();
    write(&mut e, &mut m, next + 60, next + 90);
    reopen_matches(e, &m, dir.path());
}

/// A FLUSHALL of a large keyspace swaps its tables out whole; the checkpoint
/// after it clears the databases on disk instead of deleting each key. Keys
/// written again after the flush (and one of them deleted) must survive the
/// clear, in a captured checkpoint as in an inline one.
#[test]
fn a_checkpoint_after_a_large_flushall_clears_the_disk_and_keeps_later_writes() {
    for captured in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut e = open_dir(dir.path());
        let mut m = twin();
        let both = |e: &mut Engine, m: &mut Engine, db: u8, now: u64, cmd: &str| {
            run(e, db, now, cmd);
            run(m, db, now, cmd);
        };
        for i in 0..6_000u64 {
            both(&mut e, &mut m, 0, 1_000, &format!("SET k{i} v{i}"));
        }
        both(&mut e, &mut m, 3, 1_000, "SADD s a b c");
        both(&mut e, &mut m, 3, 1_000, "EXPIRE s 100000");
        e.checkpoint(2_000).unwrap();
        both(&mut e, &mut m, 0, 3_000, "FLUSHALL");
        both(&mut e, &mut m, 0, 3_001, "SET k7 after");
        both(&mut e, &mut m, 0, 3_001, "SET k8 after");
        both(&mut e, &mut m, 0, 3_001, "DEL k8");
        both(&mut e, &mut m, 3, 3_001, "HSET h f v");
        assert_eq!(run(&mut e, 0, 3_002, "DBSIZE"), Reply::Int(1));
        assert_eq!(run(&mut e, 3, 3_002, "DBSIZE"), Reply::Int(1));
        if captured {
            assert!(e.checkpoint_begin(4_000).unwrap());
            let mut next = 0;
            let pending = capture(&mut e, &mut m, &mut next, 2, 0);
            e.checkpoint_finish(pending.write()).unwrap();
        } else {
            e.checkpoint(4_000).unwrap();
        }
        // Nothing after the checkpoint: a reopen rebuilds from it alone.
        assert_eq!(e.log_bytes_since_checkpoint(), 0);
        reopen_matches(e, &m, dir.path());
        let mut r = open_dir(dir.path());
        assert_eq!(run(&mut r, 0, 5_000, "DBSIZE"), Reply::Int(1));
        assert_eq!(
            run(&mut r, 0, 5_000, "GET k7"),
            Reply::Bulk(Bytes::from_static(b"after"))
        );
        assert_eq!(
            run(&mut r, 3, 5_000, "TYPE h"),
            Reply::Simple("hash".into())
        );
    }
}

mod interleavings {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        /// Writes this many ops of `nth_write`.
        Write(u64),
        /// Begins a capture (when none is in progress or being written).
        Begin,
        /// Captures up to this many rows.
        Capture(usize),
        /// Writes the handed-over checkpoint and records it.
        Finish,
        /// An inline checkpoint (SAVE, a full sync's merge).
        Inline,
        /// The everysec group commit.
        Sync,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1u64..40).prop_map(Step::Write),
            1 => Just(Step::Begin),
            2 => (1usize..20).prop_map(Step::Capture),
            1 => Just(Step::Finish),
            1 => Just(Step::Inline),
            1 => Just(Step::Sync),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Any interleaving of writes, capture slices, off-lock writes and
        /// inline checkpoints: the live state equals a twin that never
        /// checkpointed, and a reopen after an unclean stop rebuilds it.
        #[test]
        fn any_interleaving_reopens_to_the_live_state(
            steps in proptest::collection::vec(step(), 1..40)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut e = open_dir(dir.path());
            let mut m = twin();
            fill_big(&mut e, &mut m);
            let mut next = 0u64;
            let mut ready: Option<chorus_engine::engine::PendingCheckpoint> = None;
            for s in steps {
                match s {
                    Step::Write(n) => {
                        write(&mut e, &mut m, next, next + n);
                        next += n;
                    }
                    Step::Begin if ready.is_none() && !e.checkpoint_capturing() => {
                        prop_assert!(e.checkpoint_begin(5_000 + next).unwrap());
                    }
                    Step::Capture(n) => {
                        if let CheckpointStep::Ready(p) = e.checkpoint_step(n) {
                            prop_assert!(ready.is_none());
                            ready = Some(p);
                        }
                    }
                    Step::Finish => {
                        if let Some(p) = ready.take() {
                            e.checkpoint_finish(p.write()).unwrap();
                        }
                    }
                    Step::Inline if ready.is_none() => e.checkpoint(5_000 + next).unwrap(),
                    Step::Sync => e.sync().unwrap(),
                    _ => {}
                }
            }
            if let Some(p) = ready.take() {
                e.checkpoint_finish(p.write()).unwrap();
            }
            reopen_matches(e, &m, dir.path());
        }
    }
}
