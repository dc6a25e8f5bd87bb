//! The backlog on disk: a peer that is behind is served its ops from the op
//! log, byte for byte as they were logged, once memory no longer holds
//! them; what the backlog holds in memory does not grow with the bytes a
//! peer lags by; a trimmed log still means a full sync; and a log that
//! cannot be read back poisons the engine and refuses the read (the peer
//! gets a full sync) instead of panicking.

use bytes::Bytes;
use chorus_engine::log::{self, BacklogEntry, RecordScan};
use chorus_engine::storage::memory::{FailPoint, MemoryStorage};
use chorus_engine::storage::redb_backend::{RedbOptions, RedbStorage};
use chorus_engine::{Engine, EngineConfig, VersionVector};

fn config(tail_bytes_max: usize) -> EngineConfig {
    let mut c = EngineConfig::new(1);
    c.backlog_tail_bytes_max = tail_bytes_max;
    c
}

fn run(e: &mut Engine, now: u64, args: &[&[u8]]) {
    let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    let reply = e.execute(0, &args, now);
    assert!(!reply.is_error(), "{reply:?}");
}

/// `n` writes of assorted sizes, one of them longer than a read-ahead, so
/// that reads cross read-ahead boundaries and read one record on its own.
fn write(e: &mut Engine, n: u64) {
    for i in 0..n {
        let value = if i == n / 2 {
            vec![b'x'; chorus_engine::engine::LOG_READ_AHEAD_BYTES + 1000]
        } else {
            vec![b'a' + (i % 26) as u8; (i % 300) as usize]
        };
        let key = format!("k{}", i % 97);
        run(e, 1_000 + i, &[b"SET", key.as_bytes(), &value]);
        if i % 7 == 0 {
            run(e, 1_000 + i, &[b"INCRBY", b"n", b"3"]);
        }
    }
}

/// The payloads of every record of the log, in order.
fn logged(e: &mut Engine) -> Vec<Bytes> {
    let s = e.storage_mut();
    let start = s.log_start();
    let buf = s.log_read_from(start).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match log::scan_record(&buf, pos) {
            RecordScan::Record(payload, next) => {
                out.push(Bytes::copy_from_slice(payload));
                pos = next;
            }
            other => panic!("log record at {pos}: {other:?}"),
        }
    }
    out
}

/// Everything a peer that holds nothing is served, in batches as a session
/// asks for them.
fn serve_all(e: &mut Engine) -> Vec<Bytes> {
    let mut peer = VersionVector::new();
    let mut cursor = e.backlog_cursor(&peer).expect("the backlog serves");
    let mut out = Vec::new();
    loop {
        let (ops, next) = e
            .backlog_read(cursor, &peer, 100, 64 << 10)
            .expect("the backlog serves");
        if ops.is_empty() {
            break;
        }
        for op in ops {
            assert_eq!(peer.get(op.id.origin) + 1, op.id.seq, "no gap");
            peer.set(op.id.origin, op.id.seq);
            out.push(op.bytes);
        }
        cursor = next;
    }
    assert_eq!(&peer, e.vv());
    out
}

fn served_from_disk_equals_logged(mut e: Engine) -> Engine {
    write(&mut e, 1_500);
    let b = e.backlog();
    assert!(b.tail_bytes() <= 1024, "tail {}", b.tail_bytes());
    assert!(b.held(b.start()).is_none(), "the oldest ops left memory");
    let served = serve_all(&mut e);
    let logged = logged(&mut e);
    assert_eq!(served.len(), logged.len());
    assert!(served == logged, "the bytes served are the bytes logged");
    assert!(e.poisoned().is_none());
    assert!(e.stats().backlog_log_reads > 0, "the log served");
    assert_eq!(e.stats().backlog_read_errors, 0);
    e
}

#[test]
fn a_peer_far_behind_is_served_the_logged_bytes_from_memory_storage() {
    let e = Engine::open(Box::new(MemoryStorage::new()), config(1024)).unwrap();
    served_from_disk_equals_logged(e);
}

#[test]
fn a_peer_far_behind_is_served_the_logged_bytes_from_redb_storage() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: reads cross segment files.
    let options = RedbOptions {
        segment_bytes_max: 32 << 10,
        ..RedbOptions::default()
    };
    let storage = RedbStorage::open_with(dir.path(), options.clone()).unwrap();
    let e = Engine::open(Box::new(storage), config(1024)).unwrap();
    let mut e = served_from_disk_equals_logged(e);
    let before = serve_all(&mut e);
    e.sync().unwrap();
    drop(e);
    // After a restart nothing is in memory: every op comes from the log.
    let storage = RedbStorage::open_with(dir.path(), options).unwrap();
    let mut e = Engine::open(Box::new(storage), config(1024)).unwrap();
    assert_eq!(e.backlog().tail_bytes(), 0);
    assert!(
        serve_all(&mut e) == before,
        "the same bytes after a restart"
    );
}

#[test]
fn memory_held_by_the_backlog_does_not_grow_with_the_bytes_a_peer_lacks() {
    let tail = 64 << 10;
    let mut e = Engine::open(Box::new(MemoryStorage::new()), config(tail)).unwrap();
    let value = vec![b'v'; 1000];
    let n = 20_000u64;
    for i in 0..n {
        let key = format!("k{}", i % 1000);
        run(&mut e, 1_000 + i, &[b"SET", key.as_bytes(), &value]);
    }
    // A peer that holds nothing: the whole backlog is kept for it.
    assert_eq!(e.backlog().len() as u64, n);
    let log_bytes = e.backlog().log_bytes();
    assert!(log_bytes > n * 1000, "the log holds every op: {log_bytes}");
    // Per op, only its entry; besides, the bounded tail.
    let entries = n as usize * std::mem::size_of::<BacklogEntry>();
    let memory = e.backlog().memory_bytes();
    assert!(
        memory <= 2 * entries + tail + (64 << 10),
        "backlog memory {memory} for {n} entries of {} bytes",
        std::mem::size_of::<BacklogEntry>()
    );
    assert!(
        (memory as u64) < log_bytes / 20,
        "memory {memory} vs log {log_bytes}"
    );
    // Serving the peer adds at most the read-ahead.
    let served = serve_all(&mut e);
    assert_eq!(served.len() as u64, n);
    assert!(e.backlog_memory_bytes() <= memory + chorus_engine::engine::LOG_READ_AHEAD_BYTES);
    // Once the peer holds everything, the entries go and their room too.
    let all = e.vv().clone();
    e.trim_backlog(&all);
    assert_eq!(e.backlog().len(), 0);
    assert!(
        e.backlog_memory_bytes() <= 1024 * std::mem::size_of::<BacklogEntry>() * 2 + tail,
        "after the trim: {}",
        e.backlog_memory_bytes()
    );
}

#[test]
fn a_peer_behind_a_trimmed_log_needs_a_full_sync() {
    let mut c = config(0);
    c.backlog_bytes_max = 8 << 10;
    let mut e = Engine::open(Box::new(MemoryStorage::new()), c).unwrap();
    run(&mut e, 1_000, &[b"SET", b"first", b"1"]);
    let early = e.vv().clone();
    for i in 0..200u64 {
        run(&mut e, 1_001 + i, &[b"SET", b"k", &[b'v'; 100]]);
    }
    // The backlog kept its bound, counted in log bytes.
    assert!(e.backlog().bytes() <= 8 << 10, "{}", e.backlog().bytes());
    let none = VersionVector::new();
    assert_eq!(e.backlog_cursor(&none), None);
    assert!(e.backlog_read(0, &none, 100, 1 << 20).is_none());
    assert_eq!(e.backlog_cursor(&early), None);
    // The checkpoint covers the log; the trim drops what the backlog lost.
    e.checkpoint(2_000).unwrap();
    let log_start = e.storage_mut().log_start();
    e.trim_backlog(&VersionVector::new());
    let front = e.backlog().front().map(|f| f.log_offset).unwrap();
    assert!(e.storage_mut().log_start() > log_start);
    assert_eq!(e.storage_mut().log_start(), front);
    assert_eq!(e.backlog_cursor(&early), None, "still a full sync");
    // A peer within the backlog is served from the log as before.
    let recent = {
        let mut v = e.vv().clone();
        v.set(e.origin(), e.vv().get(e.origin()) - 3);
        v
    };
    assert_eq!(e.ops_since(&recent, usize::MAX).map(|o| o.len()), Some(3));
}

fn memory_storage(e: &mut Engine) -> &mut MemoryStorage {
    e.storage_mut()
        .as_any_mut()
        .downcast_mut::<MemoryStorage>()
        .unwrap()
}

#[test]
fn a_log_that_cannot_be_read_back_poisons_and_refuses_the_read() {
    let mut e = Engine::open(Box::new(MemoryStorage::new()), config(0)).unwrap();
    for i in 0..50u64 {
        run(&mut e, 1_000 + i, &[b"SET", b"k", b"some value"]);
    }
    e.sync().unwrap();
    let at = e
        .backlog()
        .get(e.backlog().start() + 10)
        .unwrap()
        .log_offset;
    // A flipped bit in a payload: the checksum no longer matches.
    assert!(memory_storage(&mut e).damage_durable_log(at + 12, 3));
    let none = VersionVector::new();
    let cursor = e.backlog_cursor(&none).unwrap();
    let read = e.backlog_read(cursor, &none, usize::MAX, usize::MAX);
    assert!(read.is_none(), "a full sync instead");
    assert!(e.poisoned().is_some(), "writes are refused until restart");
    assert_eq!(e.stats().backlog_read_errors, 1);
    assert!(e.ops_since(&none, usize::MAX).is_none());
}

#[test]
fn ops_in_no_log_are_served_from_memory() {
    let mut e = Engine::open(Box::new(MemoryStorage::new()), config(0)).unwrap();
    for i in 0..20u64 {
        run(&mut e, 1_000 + i, &[b"SET", b"k", b"v"]);
    }
    let before = e.vv().clone();
    memory_storage(&mut e).fail_next(FailPoint::LogAppend);
    // The append fails: the op is applied (and replicated), in no log.
    let args = [
        Bytes::from_static(b"SET"),
        Bytes::from_static(b"k"),
        Bytes::from_static(b"w"),
    ];
    e.execute(0, &args, 2_000);
    assert!(e.poisoned().is_some());
    assert_eq!(e.vv().get(e.origin()), before.get(e.origin()) + 1);
    let ops = e
        .ops_since(&before, usize::MAX)
        .expect("served from memory");
    assert_eq!(ops.len(), 1);
    // Older ops need the (poisoned) storage: a full sync.
    assert!(e.ops_since(&VersionVector::new(), usize::MAX).is_none());
}
