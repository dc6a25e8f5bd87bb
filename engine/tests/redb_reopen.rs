//! Reopen tests on real files (redb + log segments in a temporary directory):
//! clean close and reopen, an unclean stop, a corrupt record in the middle of
//! the log (refused, or salvaged on request) and a torn tail (repaired silently).

use bytes::Bytes;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::storage::redb_backend::{RedbOptions, RedbStorage};
use chorus_engine::storage::Storage;
use chorus_engine::{Engine, EngineConfig, OpenError, Reply};
use std::fs;
use std::path::{Path, PathBuf};

const SITE: u16 = 3;

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

fn open_dir(dir: &Path, config: EngineConfig) -> Result<Engine, OpenError> {
    let storage = RedbStorage::open(dir).expect("storage opens");
    Engine::open(Box::new(storage), config)
}

/// Small segments so the log spans several files.
fn open_small_segments(dir: &Path, config: EngineConfig) -> Result<Engine, OpenError> {
    let options = RedbOptions {
        segment_bytes_max: 2048,
        write_buffer_bytes: 4096,
    };
    let storage = RedbStorage::open_with(dir, options).expect("storage opens");
    Engine::open(Box::new(storage), config)
}

/// The `n`-th command of the workloads below (deterministic).
fn nth_write(i: u64) -> String {
    match i % 4 {
        0 | 1 => format!("SET k{} value-{i}", i % 13),
        2 => format!("INCRBY n{} {i}", i % 3),
        _ => format!("APPEND a{} x{i}", i % 5),
    }
}

fn write_n(e: &mut Engine, from: u64, to: u64) {
    for i in from..to {
        let reply = run(e, 1_000 + i, &nth_write(i));
        assert!(!reply.is_error(), "{reply:?}");
    }
}

/// Digest of a site (on memory) that made the first `n` writes of `nth_write`.
fn reference_digest(n: u64) -> String {
    let mut e = Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(SITE)).unwrap();
    write_n(&mut e, 0, n);
    e.digest_hex()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// One log record: its segment, the offset in that file and in the whole log,
/// and its total length (header included).
#[derive(Debug, Clone)]
struct Record {
    segment: PathBuf,
    file_offset: u64,
    log_offset: u64,
    len: u64,
}

/// Walks the `len u32 | crc32 u32 | payload` records of every segment.
fn records(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    let mut stream = Vec::new();
    let mut bounds = Vec::new();
    for seg in segments(dir) {
        let start: u64 = seg
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .expect("segment name is its start offset");
        assert_eq!(start, stream.len() as u64, "segments are contiguous");
        bounds.push((start, seg.clone()));
        stream.extend(fs::read(&seg).unwrap());
    }
    let mut pos = 0usize;
    while pos + 8 <= stream.len() {
        let len = u32::from_le_bytes(stream[pos..pos + 4].try_into().unwrap()) as usize;
        let total = 8 + len;
        if pos + total > stream.len() {
            break;
        }
        let (start, seg) = bounds
            .iter()
            .rev()
            .find(|(s, _)| *s <= pos as u64)
            .cloned()
            .unwrap();
        out.push(Record {
            segment: seg,
            file_offset: pos as u64 - start,
            log_offset: pos as u64,
            len: total as u64,
        });
        pos += total;
    }
    out
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

#[test]
fn clean_close_reopens_same_state_in_a_new_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    write_n(&mut e, 0, 200);
    assert_eq!(e.execute(5, &args("SET other-db 1"), 1_300), Reply::Ok);
    assert_eq!(run(&mut e, 1_300, "SET ttl v EX 1000"), Reply::Ok);
    let digest = e.digest_hex();
    let vv = e.vv().clone();
    let origin = e.origin();
    e.close(1_400).unwrap();

    let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    assert_eq!(e.digest_hex(), digest);
    assert_eq!(e.vv(), &vv);
    // Every start takes a new incarnation (a copy of this directory could
    // be started again later: docs/decisions.md).
    assert_eq!(e.origin().site, origin.site);
    assert_eq!(e.origin().incarnation, origin.incarnation + 1);
    assert_eq!(
        e.last_local_seq(),
        0,
        "seqs start over in the new incarnation"
    );
    assert_eq!(e.vv().get(origin), 200 + 2, "the old ones are all held");
    assert_eq!(run(&mut e, 1_500, "PTTL ttl"), Reply::Int(1_000_000 - 200));
    assert_eq!(e.execute(5, &args("GET other-db"), 1_500), bulk("1"));
    assert_eq!(
        reference_digest(200),
        {
            let mut m = e.snapshot();
            m.rows.retain(|(db, k, _)| *db == 0 && k.as_ref() != b"ttl");
            let mut r =
                Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(200)).unwrap();
            r.merge_snapshot(m);
            r.digest_hex()
        },
        "the reopened state is exactly the 200 writes (plus the two extra keys)"
    );

    // A second session's writes are kept under its own incarnation.
    write_n(&mut e, 200, 250);
    let digest = e.digest_hex();
    let second = e.origin();
    e.close(2_000).unwrap();
    let e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    assert_eq!(e.digest_hex(), digest);
    assert_eq!(e.origin().incarnation, origin.incarnation + 2);
    assert_eq!(e.vv().get(second), 50);
}

#[test]
fn unclean_stop_starts_new_incarnation_and_keeps_synced_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    write_n(&mut e, 0, 100);
    e.checkpoint(1_100).unwrap();
    write_n(&mut e, 100, 150);
    e.sync().unwrap();
    let synced = e.digest_hex();
    let origin = e.origin();
    drop(e); // no close: no final checkpoint, no clean flag

    let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    assert_eq!(e.digest_hex(), synced);
    assert_eq!(e.digest_hex(), reference_digest(150));
    assert!(e.origin().incarnation > origin.incarnation);
    assert_eq!(e.vv().get(origin), 150);
    assert_eq!(e.last_local_seq(), 0, "new incarnation starts at seq 1");
    assert_eq!(run(&mut e, 2_000, "SET after crash"), Reply::Ok);
    e.close(2_001).unwrap();
    let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    assert_eq!(run(&mut e, 2_002, "GET after"), bulk("crash"));
}

#[test]
fn corrupt_record_in_the_middle_is_refused_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    write_n(&mut e, 0, 50);
    e.sync().unwrap();
    drop(e);
    let recs = records(dir.path());
    assert_eq!(recs.len(), 50);
    let bad = &recs[20];
    // A payload byte: the checksum no longer matches.
    flip_byte(&bad.segment, bad.file_offset + 8 + bad.len / 2 - 4);

    let err = match open_dir(dir.path(), EngineConfig::new(SITE)) {
        Ok(_) => panic!("opened a log with a corrupt record in its middle"),
        Err(err) => err,
    };
    match &err {
        OpenError::CorruptLog {
            file,
            offset,
            file_offset,
            ..
        } => {
            // The first segment starts at log offset 0: both offsets agree.
            assert_eq!(*offset, bad.log_offset);
            assert_eq!(*file_offset, bad.file_offset);
            assert!(file.contains(&*dir.path().to_string_lossy()), "{file}");
        }
        other => panic!("wrong error: {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&bad.log_offset.to_string()), "{msg}");
    assert!(
        msg.contains("salvage"),
        "the message says how to salvage: {msg}"
    );

    // Refusing changed nothing: the same error again.
    assert!(open_dir(dir.path(), EngineConfig::new(SITE)).is_err());

    // Salvage keeps the intact prefix (the 20 records before the bad one).
    let mut config = EngineConfig::new(SITE);
    config.salvage = true;
    let e = open_dir(dir.path(), config).unwrap();
    assert_eq!(e.digest_hex(), reference_digest(20));
    assert!(e.origin().incarnation > 0, "salvage is an unclean start");
    drop(e);
    // The salvaged log opens normally from then on.
    let e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    assert_eq!(e.digest_hex(), reference_digest(20));
}

#[test]
fn corrupt_record_in_a_middle_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open_small_segments(dir.path(), EngineConfig::new(SITE)).unwrap();
    write_n(&mut e, 0, 300);
    e.sync().unwrap();
    drop(e);
    assert!(
        segments(dir.path()).len() >= 4,
        "the log spans several files"
    );
    let recs = records(dir.path());
    assert_eq!(recs.len(), 300);
    let bad = recs
        .iter()
        .find(|r| r.segment == segments(dir.path())[1] && r.file_offset > 0)
        .unwrap()
        .clone();
    flip_byte(&bad.segment, bad.file_offset + 8 + 2);
    let index = recs
        .iter()
        .position(|r| r.log_offset == bad.log_offset)
        .unwrap();

    let err = match open_small_segments(dir.path(), EngineConfig::new(SITE)) {
        Ok(_) => panic!("opened a log with a corrupt record in its middle"),
        Err(err) => err,
    };
    // The error names the segment file and the offset inside it.
    let name = bad
        .segment
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        matches!(&err, OpenError::CorruptLog { file, offset, file_offset, .. }
            if *offset == bad.log_offset
                && *file_offset == bad.file_offset
                && file.ends_with(&name)),
        "{err}"
    );
    let mut config = EngineConfig::new(SITE);
    config.salvage = true;
    let e = open_small_segments(dir.path(), config).unwrap();
    assert_eq!(e.digest_hex(), reference_digest(index as u64));
}

#[test]
fn corrupt_record_error_names_the_segment_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open_small_segments(dir.path(), EngineConfig::new(SITE)).unwrap();
    write_n(&mut e, 0, 300);
    e.sync().unwrap();
    drop(e);
    let recs = records(dir.path());
    let second = segments(dir.path())[1].clone();
    let bad = recs
        .iter()
        .find(|r| r.segment == second && r.file_offset > 0)
        .unwrap()
        .clone();
    flip_byte(&bad.segment, bad.file_offset + 8 + 2);
    let err = match open_small_segments(dir.path(), EngineConfig::new(SITE)) {
        Ok(_) => panic!("opened a corrupt log"),
        Err(err) => err.to_string(),
    };
    let name = second.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains(&name), "the error should name {name}: {err}");
    assert!(
        err.contains(&bad.file_offset.to_string()),
        "the error should give the offset {} inside {name}: {err}",
        bad.file_offset
    );
}

#[test]
fn corrupt_length_field_in_the_middle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    write_n(&mut e, 0, 50);
    e.sync().unwrap();
    drop(e);
    let recs = records(dir.path());
    let bad = &recs[20];
    // The high byte of the length: the record now claims to run past the end
    // of the log.
    flip_byte(&bad.segment, bad.file_offset + 2);
    match open_dir(dir.path(), EngineConfig::new(SITE)) {
        Ok(e) => panic!(
            "opened a log with a corrupt record in its middle; kept {} of 50 synced ops \
             (state {} the 20-op prefix)",
            e.vv().total(),
            if e.digest_hex() == reference_digest(20) {
                "equals"
            } else {
                "differs from"
            }
        ),
        Err(OpenError::CorruptLog { offset, .. }) => assert_eq!(offset, bad.log_offset),
        Err(other) => panic!("wrong error: {other}"),
    }
}

#[test]
fn torn_tail_is_repaired_silently() {
    for cut_kind in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
        write_n(&mut e, 0, 50);
        e.sync().unwrap();
        drop(e);
        let last = records(dir.path()).last().unwrap().clone();
        let cut = [1, 7, last.len / 2, last.len - 1][cut_kind];
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&last.segment)
            .unwrap();
        file.set_len(last.file_offset + last.len - cut).unwrap();
        drop(file);

        let mut e = open_dir(dir.path(), EngineConfig::new(SITE))
            .unwrap_or_else(|err| panic!("torn tail of {cut} bytes refused: {err}"));
        assert_eq!(e.digest_hex(), reference_digest(49), "cut {cut}");
        assert!(e.stats().truncated_tail_bytes > 0);
        // Recovery cut the partial record off.
        assert_eq!(
            fs::metadata(&last.segment).unwrap().len(),
            last.file_offset,
            "cut {cut}"
        );
        // Writes after a repaired tail land after it and survive a restart.
        assert_eq!(run(&mut e, 9_000, "SET after-repair 1"), Reply::Ok);
        e.sync().unwrap();
        let digest = e.digest_hex();
        drop(e);
        let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
        assert_eq!(e.digest_hex(), digest);
        assert_eq!(run(&mut e, 9_002, "GET after-repair"), bulk("1"));
    }
}

#[test]
fn clean_close_after_unclean_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    write_n(&mut e, 0, 50);
    e.sync().unwrap();
    drop(e); // unclean stop: the 50 ops are only in the log
    let e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    assert_eq!(e.digest_hex(), reference_digest(50));
    e.close(2_000).unwrap(); // clean stop: checkpoint + clean flag
    let e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    assert_eq!(
        e.digest_hex(),
        reference_digest(50),
        "{} of 50 keys' rows survived",
        e.dbsize(0)
    );
}

#[test]
fn checkpoint_holds_one_row_per_key_in_redb() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    for i in 0..1_000u64 {
        run(&mut e, 1_000 + i, &format!("SET hot v{i}"));
    }
    run(&mut e, 2_000, "SET cold 1");
    e.close(2_001).unwrap();
    let mut storage = RedbStorage::open(dir.path()).unwrap();
    let (rows, meta) = storage.checkpoint_read().unwrap();
    assert!(meta.is_some());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows.iter().filter(|r| r.key == b"hot").count(), 1);
    drop(storage);
    let mut e = open_dir(dir.path(), EngineConfig::new(SITE)).unwrap();
    assert_eq!(run(&mut e, 3_000, "GET hot"), bulk("v999"));
}
