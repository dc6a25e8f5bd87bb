use super::*;
use bytes::Bytes;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::storage::redb_backend::RedbStorage;
use chorus_engine::{EngineConfig, Reply};

const WALL0: u64 = 1_700_000_000_000;

fn at(mono_ms: u64) -> Now {
    Now {
        mono_ms,
        wall_ms: WALL0 + mono_ms,
    }
}

fn engine(fsync: Fsync) -> Engine {
    let mut cfg = EngineConfig::new(1);
    cfg.fsync = fsync;
    Engine::open(Box::new(MemoryStorage::new()), cfg).unwrap()
}

fn run(e: &mut Engine, now: Now, cmd: &str) -> Reply {
    let args: Vec<Bytes> = cmd
        .split(' ')
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    let r = e.execute(0, &args, now.wall_ms);
    assert!(!r.is_error(), "{cmd}: {r:?}");
    r
}

fn drain(h: &mut Housekeeping) -> Vec<Work> {
    std::iter::from_fn(|| h.poll_work()).collect()
}

fn names(work: &[Work]) -> Vec<String> {
    work.iter().map(|w| format!("{w:?}")).collect()
}

/// Ticks at `t`, runs every fsync at once, and names the other work.
fn step(h: &mut Housekeeping, e: &mut Engine, t: u64) -> Vec<String> {
    h.tick(e, at(t), None);
    let mut out = Vec::new();
    while let Some(w) = h.poll_work() {
        match w {
            Work::Sync(s) => h.sync_done(e, s.wait(), at(t), None),
            other => out.push(format!("{other:?}")),
        }
    }
    out
}

/// A config with no memory release and no checkpoints, to watch one thing.
fn quiet() -> SiteConfig {
    SiteConfig {
        release_memory: false,
        checkpoint_interval_ms: u64::MAX,
        checkpoint_log_bytes: u64::MAX,
        ..SiteConfig::default()
    }
}

#[test]
fn everysec_syncs_once_a_second_off_the_engine_then_wakes_peers() {
    let mut e = engine(Fsync::Everysec);
    let mut h = Housekeeping::new(quiet(), &e, at(0), 0);
    run(&mut e, at(10), "SET k v");
    assert_ne!(e.durable_vv(), e.vv());
    h.tick(&mut e, at(500), None);
    assert!(drain(&mut h).is_empty(), "no sync before a second");
    h.tick(&mut e, at(1000), None);
    let mut work = drain(&mut h);
    assert_eq!(names(&work), ["Sync"]);
    let Some(Work::Sync(sync)) = work.pop() else {
        unreachable!()
    };
    // Not durable until the driver reports the fsync.
    assert_ne!(e.durable_vv(), e.vv());
    h.sync_done(&mut e, sync.wait(), at(1001), None);
    assert_eq!(e.durable_vv(), e.vv());
    assert_eq!(names(&drain(&mut h)), ["WakePeers"]);
    // Nothing new to sync: the next second only wakes the peers.
    h.tick(&mut e, at(2000), None);
    assert_eq!(names(&drain(&mut h)), ["WakePeers"]);
}

#[test]
fn a_driver_that_falls_behind_gets_one_tick_not_a_burst() {
    let mut e = engine(Fsync::Everysec);
    let mut h = Housekeeping::new(quiet(), &e, at(0), 0);
    run(&mut e, at(10), "SET k v");
    h.tick(&mut e, at(10_000), None);
    assert_eq!(names(&drain(&mut h)), ["Sync"]);
    assert_eq!(h.next_tick_ms(), 10_100);
    h.tick(&mut e, at(10_001), None);
    assert!(drain(&mut h).is_empty());
}

#[test]
fn appendfsync_set_at_runtime_reaches_the_engine_and_the_schedule() {
    let mut e = engine(Fsync::Everysec);
    let cfg = SiteConfig {
        sync_always_and_no: false,
        ..quiet()
    };
    let mut h = Housekeeping::new(cfg, &e, at(0), 0);
    h.set_fsync(&mut e, Fsync::No);
    assert_eq!(e.config().fsync, Fsync::No);
    assert_eq!(h.fsync(), Fsync::No);
    run(&mut e, at(10), "SET k v");
    h.tick(&mut e, at(1000), None);
    // Under `no` (as the simulator runs it) nothing is synced...
    assert_eq!(names(&drain(&mut h)), ["WakePeers"]);
    assert_ne!(e.durable_vv(), e.vv());
    h.set_fsync(&mut e, Fsync::Everysec);
    h.tick(&mut e, at(2000), None);
    // ...and under `everysec` again, the next second is.
    assert_eq!(names(&drain(&mut h)), ["Sync"]);
}

#[test]
fn the_backlog_is_trimmed_to_what_peers_acknowledged_after_a_sync() {
    let mut e = engine(Fsync::Everysec);
    let mut h = Housekeeping::new(quiet(), &e, at(0), 0);
    for i in 0..10 {
        run(&mut e, at(10), &format!("SET k{i} v"));
    }
    let total = e.backlog().len();
    assert_eq!(total, 10);
    h.tick(&mut e, at(1000), None);
    let Some(Work::Sync(sync)) = h.poll_work() else {
        panic!("a sync")
    };
    let acked = e.vv().clone();
    h.sync_done(&mut e, sync.wait(), at(1000), Some(&acked));
    assert_eq!(e.backlog().len(), 0);
}

#[test]
fn active_expiry_deletes_due_keys_each_tick_and_wakes_peers() {
    let mut e = engine(Fsync::Everysec);
    let mut h = Housekeeping::new(quiet(), &e, at(0), 0);
    run(&mut e, at(0), "SET gone v PX 50");
    run(&mut e, at(0), "SET kept v");
    // Due once the clock passed the deadline by the clock-skew bound (500 ms).
    h.tick(&mut e, at(500), None);
    assert_eq!(e.dbsize(0), 2);
    h.tick(&mut e, at(600), None);
    assert_eq!(names(&drain(&mut h)), ["WakePeers"]);
    assert_eq!(e.dbsize(0), 1);
    assert_eq!(e.stats().expired_keys, 1);
}

#[test]
fn memory_is_offered_back_only_after_a_second_without_writes() {
    let mut e = engine(Fsync::No);
    let cfg = SiteConfig {
        release_memory: true,
        sync_always_and_no: false,
        ..quiet()
    };
    let mut h = Housekeeping::new(cfg, &e, at(0), 0);
    let released = |h: &mut Housekeeping| {
        drain(h)
            .iter()
            .filter(|w| matches!(w, Work::ReleaseMemory))
            .count()
    };
    h.tick(&mut e, at(500), None);
    assert_eq!(released(&mut h), 0, "first look");
    run(&mut e, at(600), "SET k v");
    h.tick(&mut e, at(1500), None);
    assert_eq!(released(&mut h), 0, "a client wrote");
    h.tick(&mut e, at(2500), None);
    assert_eq!(released(&mut h), 1, "a quiet second");
}

#[test]
fn a_checkpoint_is_captured_in_slices_and_written_off_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(1);
    cfg.fsync = Fsync::Everysec;
    let mut e = Engine::open(Box::new(RedbStorage::open(dir.path()).unwrap()), cfg).unwrap();
    let site = SiteConfig {
        checkpoint_interval_ms: 5_000,
        capture_slice_rows: 10,
        ..quiet()
    };
    let mut h = Housekeeping::new(site, &e, at(0), 0);
    for i in 0..100 {
        run(&mut e, at(10), &format!("SET k{i} v"));
    }
    assert_eq!(step(&mut h, &mut e, 1000), ["WakePeers"]);
    assert!(!h.checkpoint_in_progress(), "not due before 5 s");
    assert_eq!(step(&mut h, &mut e, 5000), ["WakePeers", "Checkpoint"]);
    assert!(h.checkpoint_in_progress());
    let mut slices = 0;
    let pending = loop {
        match h.capture(&mut e) {
            Capture::More => {
                slices += 1;
                // Writes go on between the slices.
                run(&mut e, at(5001), &format!("SET during{slices} v"));
            }
            Capture::Ready(p) => break p,
            Capture::Gone => panic!("the capture vanished"),
        }
    };
    assert!(slices >= 9, "100 rows in slices of 10: {slices} slices");
    let before = e.stats().checkpoints;
    h.checkpoint_done(&mut e, pending.write(), at(5002));
    assert_eq!(e.stats().checkpoints, before + 1);
    assert!(!h.checkpoint_in_progress());
    // Rows written during the capture wait for the next checkpoint.
    assert!(e.dirty_rows() > 0);
    assert_eq!(step(&mut h, &mut e, 6000), ["WakePeers"]);
}

#[test]
fn an_inline_checkpoint_restarts_the_interval_and_ends_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Engine::open(
        Box::new(RedbStorage::open(dir.path()).unwrap()),
        EngineConfig::new(1),
    )
    .unwrap();
    let site = SiteConfig {
        checkpoint_interval_ms: 5_000,
        ..quiet()
    };
    let mut h = Housekeeping::new(site, &e, at(0), 0);
    run(&mut e, at(10), "SET k v");
    // SAVE at 4.5 s: the interval counts from it.
    e.checkpoint(WALL0 + 4500).unwrap();
    h.tick(&mut e, at(4500), None);
    run(&mut e, at(4600), "SET k2 v");
    assert_eq!(step(&mut h, &mut e, 5000), ["WakePeers"]);
    assert_eq!(step(&mut h, &mut e, 9500), ["WakePeers", "Checkpoint"]);
    // A SAVE while the capture runs completes it: nothing left to write.
    e.checkpoint(WALL0 + 9600).unwrap();
    assert!(matches!(h.capture(&mut e), Capture::Gone));
    assert!(!h.checkpoint_in_progress());
}
