//! A disk that fills up under a real `chorus-server` process: every file the
//! process writes is capped with `ulimit -f` (a write past the cap fails with
//! `EFBIG`, as one to a full disk fails with `ENOSPC`). Writes are then
//! refused with Redis's `MISCONF` error while reads are still served; after a
//! restart with room on the disk, every write that was acknowledged is there
//! and writes are accepted again.

use chorus_testkit::ChorusProcess;
use redis::{Commands, Connection, RedisResult};

/// The cap: above what a fresh data directory needs, about 3,000 writes of
/// 1 KiB away from it.
const FILE_LIMIT_KIB: u64 = 3 * 1024;
/// More writes than fit under the cap.
const WRITES_MAX: usize = 20_000;

fn connect(port: u16) -> Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection())
        .expect("connect")
}

#[test]
fn a_full_disk_refuses_writes_serves_reads_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server =
        ChorusProcess::start_in_with_file_limit(dir, FILE_LIMIT_KIB, &["--appendfsync", "always"]);
    let mut c = connect(server.port);
    let value = "x".repeat(1000);
    let mut acked = 0usize;
    let mut refusal = None;
    for i in 0..WRITES_MAX {
        let r: RedisResult<()> = c.set(format!("k{i}"), &value);
        match r {
            Ok(()) => acked += 1,
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let refusal = refusal.expect("the disk never filled up");
    assert!(acked > 100, "only {acked} writes before the disk was full");
    assert_eq!(refusal.code(), Some("MISCONF"), "{refusal}");
    // Later writes are refused too, with the cause; reads are served.
    let again: RedisResult<()> = c.set("after", "1");
    let again = again.expect_err("a write after the disk filled up");
    assert_eq!(again.code(), Some("MISCONF"), "{again}");
    assert!(again.to_string().contains("File too large"), "{again}");
    let first: String = c.get("k0").expect("a read is served");
    assert_eq!(first, value);
    let last: String = c.get(format!("k{}", acked - 1)).expect("read");
    assert_eq!(last, value);

    // Restart with room: everything acknowledged is there, writes accepted.
    let dir = server.into_dir();
    let server = ChorusProcess::start_in(dir, &["--appendfsync", "always"]);
    let mut c = connect(server.port);
    for i in (0..acked).step_by(97).chain([acked - 1]) {
        let v: Option<String> = c.get(format!("k{i}")).expect("read");
        assert_eq!(v.as_deref(), Some(value.as_str()), "acknowledged k{i} lost");
    }
    let held: usize = redis::cmd("DBSIZE").query(&mut c).expect("dbsize");
    assert!(
        held >= acked,
        "{held} keys after the restart, {acked} acknowledged"
    );
    let () = c
        .set("after", "1")
        .expect("writes accepted after the restart");
}
