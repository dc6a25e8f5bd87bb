//! End-to-end tests with real clients against a started `chorus-server`
//! (ephemeral loopback port, data in a temp dir): the `redis` crate
//! (commands, pipelines, MULTI/EXEC, RESP3), `redis-cli` (plain commands,
//! AUTH, `--pipe` bulk load) and `redis-benchmark`; AUTH, SELECT, expiry,
//! and restarts (after `kill -9` under `--appendfsync always`, and after a
//! clean SHUTDOWN).
//!
//! Every wait is a poll with a deadline. Tests that need `redis-cli` or
//! `redis-benchmark` print a SKIPPED line without them, or fail when
//! `CHORUS_REQUIRE_REDIS=1`. The chorus-server binary is the one in this
//! test's target directory, built first when it is missing or stale
//! (`chorus_testkit::server_binary`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_testkit::{redis_tool, run_bounded, ChorusProcess};
use redis::{Commands, Connection, RedisResult, Value};

/// Upper bound for one poll loop or one tool run.
const DEADLINE: Duration = Duration::from_secs(20);

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/")
}

fn client_conn(url: &str) -> RedisResult<Connection> {
    let client = redis::Client::open(url)?;
    let con = client.get_connection_with_timeout(Duration::from_secs(10))?;
    con.set_read_timeout(Some(Duration::from_secs(10)))?;
    con.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(con)
}

fn connect(port: u16) -> Connection {
    client_conn(&url(port)).expect("connect with the redis crate")
}

/// Polls `check` until it returns true or the deadline passes.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn basic_commands_through_the_redis_crate() {
    let site = ChorusProcess::start(&[]);
    let mut con = connect(site.port);

    let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
    assert_eq!(pong, "PONG");
    let _: () = con.set("greeting", "hello").expect("SET");
    let got: String = con.get("greeting").expect("GET");
    assert_eq!(got, "hello");
    let missing: Option<String> = con.get("nokey").expect("GET missing");
    assert_eq!(missing, None);
    let n: i64 = con.incr("counter", 5).expect("INCRBY");
    assert_eq!(n, 5);
    let n: i64 = con.decr("counter", 2).expect("DECRBY");
    assert_eq!(n, 3);
    let f: f64 = con.incr("float", 1.5).expect("INCRBYFLOAT");
    assert!((f - 1.5).abs() < 1e-9);
    let len: usize = con.append("greeting", " world").expect("APPEND");
    assert_eq!(len, 11);
    let _: () = con.mset(&[("m1", "a"), ("m2", "b")]).expect("MSET");
    let both: Vec<Option<String>> = con.mget(&["m1", "m2", "m3"]).expect("MGET");
    assert_eq!(both, vec![Some("a".into()), Some("b".into()), None]);

    // Hashes.
    let added: i64 = redis::cmd("HSET")
        .arg("h")
        .arg(&["f1", "v1", "f2", "v2"])
        .query(&mut con)
        .expect("HSET");
    assert_eq!(added, 2);
    let all: BTreeMap<String, String> = con.hgetall("h").expect("HGETALL");
    assert_eq!(
        all,
        BTreeMap::from([("f1".into(), "v1".into()), ("f2".into(), "v2".into())])
    );
    let v: i64 = con.hincr("h", "n", 7).expect("HINCRBY");
    assert_eq!(v, 7);
    let len: i64 = con.hlen("h").expect("HLEN");
    assert_eq!(len, 3);

    // Sets.
    let added: i64 = con.sadd("s", &["a", "b", "c", "a"]).expect("SADD");
    assert_eq!(added, 3);
    let members: BTreeSet<String> = con.smembers("s").expect("SMEMBERS");
    assert_eq!(
        members,
        BTreeSet::from(["a".into(), "b".into(), "c".into()])
    );
    let is: bool = con.sismember("s", "b").expect("SISMEMBER");
    assert!(is);

    // Sorted sets.
    let added: i64 = con
        .zadd_multiple("z", &[(1.0, "one"), (2.5, "two"), (3.0, "three")])
        .expect("ZADD");
    assert_eq!(added, 3);
    let range: Vec<(String, f64)> = con.zrange_withscores("z", 0, -1).expect("ZRANGE");
    assert_eq!(
        range,
        vec![
            ("one".into(), 1.0),
            ("two".into(), 2.5),
            ("three".into(), 3.0)
        ]
    );
    let score: Option<f64> = con.zscore("z", "two").expect("ZSCORE");
    assert_eq!(score, Some(2.5));

    // Keys.
    let kind: String = redis::cmd("TYPE").arg("z").query(&mut con).expect("TYPE");
    assert_eq!(kind, "zset");
    let exists: i64 = con.exists(&["greeting", "h", "nokey"]).expect("EXISTS");
    assert_eq!(exists, 2);
    let deleted: i64 = con.del(&["m1", "m2", "m3"]).expect("DEL");
    assert_eq!(deleted, 2);
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
    assert_eq!(size, 6);

    // Errors come back as errors, with Redis's text.
    let err = con
        .incr::<_, _, i64>("greeting", 1)
        .expect_err("INCR on text");
    assert!(
        err.to_string()
            .contains("value is not an integer or out of range"),
        "{err}"
    );
    let err = con
        .hget::<_, _, Option<String>>("s", "f")
        .expect_err("HGET on a set");
    assert_eq!(err.code(), Some("WRONGTYPE"), "{err}");
}

#[test]
fn pipelines_and_transactions_through_the_redis_crate() {
    let site = ChorusProcess::start(&[]);
    let mut con = connect(site.port);

    // A plain pipeline: several commands in one write.
    let (a, b, c): (String, i64, Vec<String>) = redis::pipe()
        .set("p", "1")
        .ignore()
        .get("p")
        .incr("p", 10)
        .keys("p")
        .query(&mut con)
        .expect("pipeline");
    assert_eq!((a.as_str(), b, c), ("1", 11, vec!["p".to_string()]));

    // 1,000 commands in one pipeline.
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.set(format!("bulk:{i}"), i).ignore();
    }
    pipe.cmd("DBSIZE");
    let (size,): (i64,) = pipe.query(&mut con).expect("big pipeline");
    assert_eq!(size, 1001);

    // MULTI/EXEC through an atomic pipeline.
    let (v, n, members): (String, i64, Vec<String>) = redis::pipe()
        .atomic()
        .set("t", "x")
        .ignore()
        .get("t")
        .incr("tn", 3)
        .sadd("ts", "only")
        .ignore()
        .smembers("ts")
        .query(&mut con)
        .expect("MULTI/EXEC");
    assert_eq!((v.as_str(), n, members), ("x", 3, vec!["only".to_string()]));

    // A runtime error inside EXEC fails that command only.
    let _: () = con.set("text", "abc").expect("SET");
    let raw: Value = redis::pipe()
        .atomic()
        .incr("text", 1)
        .set("after", "yes")
        .query(&mut con)
        .unwrap_or(Value::Nil);
    let after: Option<String> = con.get("after").expect("GET after");
    assert_eq!(
        after.as_deref(),
        Some("yes"),
        "commands after a failing one in EXEC still run ({raw:?})"
    );

    // WATCH through redis::transaction: an optimistic increment that
    // retries when another client changes the key between WATCH and EXEC.
    let _: () = con.set("watched", 10).expect("SET");
    let mut other = connect(site.port);
    let mut tries = 0;
    let result: i64 = redis::transaction(&mut con, &["watched"], |con, pipe| {
        tries += 1;
        let current: i64 = con.get("watched")?;
        if tries == 1 {
            // Another client interferes once: this EXEC must fail.
            let _: () = other.set("watched", 100)?;
        }
        pipe.set("watched", current + 1)
            .ignore()
            .get("watched")
            .query::<Option<(i64,)>>(con)
            .map(|o| o.map(|(v,)| v))
    })
    .expect("transaction");
    assert_eq!(tries, 2, "the first EXEC should have been aborted by WATCH");
    assert_eq!(result, 101);

    // DISCARD.
    let _: () = redis::cmd("MULTI").query(&mut con).expect("MULTI");
    let queued: String = redis::cmd("SET")
        .arg("discarded")
        .arg("1")
        .query(&mut con)
        .expect("queued");
    assert_eq!(queued, "QUEUED");
    let _: () = redis::cmd("DISCARD").query(&mut con).expect("DISCARD");
    let exists: bool = con.exists("discarded").expect("EXISTS");
    assert!(!exists);
}

#[test]
fn resp3_through_the_redis_crate() {
    let site = ChorusProcess::start(&[]);
    let mut con = client_conn(&format!("{}?protocol=resp3", url(site.port))).expect("RESP3");
    let _: () = con.hset("h", "f", "v").map(|_: i64| ()).expect("HSET");
    let all: BTreeMap<String, String> = con.hgetall("h").expect("HGETALL as a map");
    assert_eq!(all, BTreeMap::from([("f".into(), "v".into())]));
    let raw: Value = redis::cmd("HGETALL").arg("h").query(&mut con).expect("raw");
    assert!(
        matches!(raw, Value::Map(_)),
        "RESP3 HGETALL is a map: {raw:?}"
    );
    let _: () = con.zadd("z", "m", 1.5).map(|_: i64| ()).expect("ZADD");
    let raw: Value = redis::cmd("ZSCORE")
        .arg("z")
        .arg("m")
        .query(&mut con)
        .expect("raw");
    assert_eq!(raw, Value::Double(1.5));
    let raw: Value = redis::cmd("GET").arg("nokey").query(&mut con).expect("raw");
    assert_eq!(raw, Value::Nil);
    let _: () = con.sadd("s", "x").map(|_: i64| ()).expect("SADD");
    let raw: Value = redis::cmd("SMEMBERS")
        .arg("s")
        .query(&mut con)
        .expect("raw");
    assert!(
        matches!(raw, Value::Set(_)),
        "RESP3 SMEMBERS is a set: {raw:?}"
    );
}

#[test]
fn auth_with_requirepass() {
    let site = ChorusProcess::start(&["--requirepass", "s3cret"]);

    // No password: NOAUTH.
    let mut anon = connect(site.port);
    let err = con_get(&mut anon, "k").expect_err("GET without AUTH");
    assert_eq!(err.code(), Some("NOAUTH"), "{err}");
    // Wrong password: the connection is refused by the crate.
    let wrong = client_conn(&format!("redis://:wrong@127.0.0.1:{}/", site.port));
    let err = wrong.err().expect("wrong password must fail");
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
    // The server's own words, without the crate in between.
    let err = redis::cmd("AUTH")
        .arg("wrong")
        .query::<()>(&mut anon)
        .expect_err("AUTH wrong");
    assert_eq!(err.code(), Some("WRONGPASS"), "{err}");
    // Right password, in the URL (AUTH on connect) and by hand.
    let mut con = client_conn(&format!("redis://:s3cret@127.0.0.1:{}/", site.port)).expect("AUTH");
    let _: () = con.set("k", "v").expect("SET after AUTH");
    let ok: String = redis::cmd("AUTH")
        .arg("s3cret")
        .query(&mut anon)
        .expect("AUTH");
    assert_eq!(ok, "OK");
    assert_eq!(con_get(&mut anon, "k").expect("GET"), Some("v".to_string()));
    let mut named = client_conn(&format!("redis://default:s3cret@127.0.0.1:{}/", site.port))
        .expect("AUTH default s3cret");
    assert_eq!(
        con_get(&mut named, "k").expect("GET"),
        Some("v".to_string())
    );

    // redis-cli with -a, and without.
    let Some(cli) = redis_tool("redis-cli") else {
        return;
    };
    let port = site.port.to_string();
    let (status, out, _) = run_bounded(
        Command::new(&cli).args(["-p", &port, "-a", "s3cret", "--no-auth-warning", "GET", "k"]),
        None,
        DEADLINE,
    );
    assert!(status.success());
    assert_eq!(out.trim(), "v");
    let (_, out, _) = run_bounded(
        Command::new(&cli).args(["-p", &port, "GET", "k"]),
        None,
        DEADLINE,
    );
    assert!(out.contains("NOAUTH"), "redis-cli without -a: {out:?}");
}

fn con_get(con: &mut Connection, key: &str) -> RedisResult<Option<String>> {
    con.get(key)
}

#[test]
fn select_isolates_databases() {
    let site = ChorusProcess::start(&[]);
    let mut db0 = connect(site.port);
    let mut db3 = client_conn(&format!("redis://127.0.0.1:{}/3", site.port)).expect("db 3");
    let _: () = db0.set("k", "zero").expect("SET");
    let _: () = db3.set("k", "three").expect("SET");
    let _: () = db3.set("only3", "x").expect("SET");
    assert_eq!(con_get(&mut db0, "k").expect("GET"), Some("zero".into()));
    assert_eq!(con_get(&mut db3, "k").expect("GET"), Some("three".into()));
    assert_eq!(con_get(&mut db0, "only3").expect("GET"), None);
    let n0: i64 = redis::cmd("DBSIZE").query(&mut db0).expect("DBSIZE");
    let n3: i64 = redis::cmd("DBSIZE").query(&mut db3).expect("DBSIZE");
    assert_eq!((n0, n3), (1, 2));
    let _: () = redis::cmd("SELECT")
        .arg(3)
        .query(&mut db0)
        .expect("SELECT 3");
    assert_eq!(con_get(&mut db0, "only3").expect("GET"), Some("x".into()));
    let err = redis::cmd("SELECT")
        .arg(16)
        .query::<()>(&mut db0)
        .expect_err("SELECT 16");
    assert!(
        err.to_string().contains("DB index is out of range"),
        "{err}"
    );
    let moved: bool = redis::cmd("MOVE")
        .arg("only3")
        .arg(0)
        .query(&mut db3)
        .expect("MOVE");
    assert!(moved);
    let _: () = redis::cmd("SELECT")
        .arg(0)
        .query(&mut db0)
        .expect("SELECT 0");
    assert_eq!(con_get(&mut db0, "only3").expect("GET"), Some("x".into()));

    // Through redis-cli -n as well.
    let Some(cli) = redis_tool("redis-cli") else {
        return;
    };
    let port = site.port.to_string();
    let (status, out, _) = run_bounded(
        Command::new(&cli).args(["-p", &port, "-n", "3", "GET", "k"]),
        None,
        DEADLINE,
    );
    assert!(status.success());
    assert_eq!(out.trim(), "three");
}

#[test]
fn keys_expire() {
    let site = ChorusProcess::start(&[]);
    let mut con = connect(site.port);
    // Set with PX 200 and read the TTL back in the same pipeline.
    let (pttl,): (i64,) = redis::pipe()
        .cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(200)
        .ignore()
        .cmd("PTTL")
        .arg("short")
        .query(&mut con)
        .expect("SET PX + PTTL");
    assert!(
        (1..=200).contains(&pttl),
        "PTTL right after SET PX 200: {pttl}"
    );
    let _: () = con.set("long", "v").expect("SET");
    let _: bool = con.expire("long", 1000).expect("EXPIRE");
    eventually("the PX 200 key to expire", || {
        con_get(&mut con, "short").expect("GET").is_none()
    });
    let exists: bool = con.exists("short").expect("EXISTS");
    assert!(!exists);
    let ttl: i64 = con.ttl("long").expect("TTL");
    assert!((990..=1000).contains(&ttl), "TTL {ttl}");

    // Active expiry: keys never read again disappear from DBSIZE.
    for i in 0..20 {
        let _: () = redis::cmd("SET")
            .arg(format!("gone:{i}"))
            .arg("v")
            .arg("PX")
            .arg(100)
            .query(&mut con)
            .expect("SET PX");
    }
    eventually("active expiry to remove keys nobody reads", || {
        let n: i64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
        n == 1
    });
    let persisted: bool = con.persist("long").expect("PERSIST");
    assert!(persisted);
    let ttl: i64 = con.ttl("long").expect("TTL");
    assert_eq!(ttl, -1);
}

/// Writes keys `w:0`, `w:1`... (and a counter) until the connection breaks
/// or `stop` is set; returns how many writes were acknowledged.
fn write_until_broken(port: u16, stop: Arc<AtomicBool>) -> u64 {
    let mut con = connect(port);
    let mut acked = 0u64;
    while !stop.load(Ordering::Relaxed) && acked < 1_000_000 {
        let result: RedisResult<((), i64)> = redis::pipe()
            .set(format!("w:{acked}"), acked)
            .incr("acked", 1)
            .query(&mut con);
        match result {
            Ok((_, n)) => {
                assert_eq!(n as u64, acked + 1, "counter out of step");
                acked += 1;
            }
            Err(_) => break,
        }
    }
    acked
}

fn assert_writes_survived(port: u16, acked: u64) {
    let mut con = connect(port);
    let counter: Option<u64> = con.get("acked").expect("GET acked");
    let counter = counter.unwrap_or(0);
    assert!(
        counter >= acked,
        "counter {counter} < {acked} acknowledged increments"
    );
    let keys: Vec<String> = (0..acked).map(|i| format!("w:{i}")).collect();
    for chunk in keys.chunks(500) {
        let values: Vec<Option<u64>> = con.mget(chunk).expect("MGET");
        for (key, value) in chunk.iter().zip(values) {
            let expected: u64 = key
                .strip_prefix("w:")
                .and_then(|n| n.parse().ok())
                .expect("key number");
            assert_eq!(value, Some(expected), "acknowledged write {key} lost");
        }
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_with_appendfsync_always() {
    let site = ChorusProcess::start(&["--appendfsync", "always"]);
    let mut con = connect(site.port);
    // Some data of every type first.
    let _: () = con.set("str", "value").expect("SET");
    let _: () = con.hset("hash", "f", "v").map(|_: i64| ()).expect("HSET");
    let _: () = con.sadd("set", &["a", "b"]).map(|_: i64| ()).expect("SADD");
    let _: () = con.zadd("zset", "m", 2.5).map(|_: i64| ()).expect("ZADD");
    let _: () = redis::cmd("SELECT").arg(5).query(&mut con).expect("SELECT");
    let _: () = con.set("in5", "five").expect("SET in db 5");
    let _: () = con.set("ttl", "t").expect("SET");
    let _: bool = con.expire("ttl", 10_000).expect("EXPIRE");

    // A writer runs flat out while the process is killed under it.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let port = site.port;
        std::thread::spawn(move || write_until_broken(port, stop))
    };
    std::thread::sleep(Duration::from_millis(700));
    let dir = site.into_dir(); // SIGKILL, mid-write
    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().expect("writer thread");
    assert!(acked > 0, "no write was acknowledged before the kill");
    eprintln!("{acked} acknowledged writes before kill -9");

    let site = ChorusProcess::start_in(dir, &["--appendfsync", "always"]);
    assert_writes_survived(site.port, acked);
    let mut con = connect(site.port);
    assert_eq!(con_get(&mut con, "str").expect("GET"), Some("value".into()));
    let h: Option<String> = con.hget("hash", "f").expect("HGET");
    assert_eq!(h.as_deref(), Some("v"));
    let s: BTreeSet<String> = con.smembers("set").expect("SMEMBERS");
    assert_eq!(s, BTreeSet::from(["a".into(), "b".into()]));
    let z: Option<f64> = con.zscore("zset", "m").expect("ZSCORE");
    assert_eq!(z, Some(2.5));
    let _: () = redis::cmd("SELECT").arg(5).query(&mut con).expect("SELECT");
    assert_eq!(con_get(&mut con, "in5").expect("GET"), Some("five".into()));
    let ttl: i64 = con.ttl("ttl").expect("TTL");
    assert!((9_000..=10_000).contains(&ttl), "TTL after restart: {ttl}");
    // And the restarted site takes writes.
    let _: () = con.set("after", "restart").expect("SET after restart");
}

#[test]
fn data_survives_clean_shutdown() {
    let site = ChorusProcess::start(&[]); // appendfsync everysec
    let mut con = connect(site.port);
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.set(format!("k:{i}"), format!("v{i}")).ignore();
    }
    pipe.hset("h", "f", "v").ignore();
    pipe.zadd("z", "m", 1).ignore();
    pipe.sadd("s", "m").ignore();
    pipe.incr("n", 42).ignore();
    let _: () = pipe.query(&mut con).expect("writes");

    // SHUTDOWN closes the connection: no reply (or an I/O error) is fine.
    let _ = redis::cmd("SHUTDOWN").query::<Value>(&mut con);
    let mut site = site;
    assert_eq!(site.wait_exit(), Some(0), "SHUTDOWN exits 0");
    let dir = site.into_dir();

    let site = ChorusProcess::start_in(dir, &[]);
    let mut con = connect(site.port);
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
    assert_eq!(size, 2004);
    let keys: Vec<String> = (0..2000).map(|i| format!("k:{i}")).collect();
    for chunk in keys.chunks(500) {
        let values: Vec<Option<String>> = con.mget(chunk).expect("MGET");
        for (key, value) in chunk.iter().zip(values) {
            let want = format!("v{}", key.trim_start_matches("k:"));
            assert_eq!(value.as_deref(), Some(want.as_str()), "{key}");
        }
    }
    let n: i64 = con.get("n").expect("GET n");
    assert_eq!(n, 42);
    let h: Option<String> = con.hget("h", "f").expect("HGET");
    assert_eq!(h.as_deref(), Some("v"));
}

/// Runs redis-cli against `port` with `args`; its output, after checking
/// it exited successfully.
fn redis_cli(cli: &std::path::Path, port: &str, args: &[&str]) -> String {
    let (status, out, err) = run_bounded(
        Command::new(cli).args(["-p", port]).args(args),
        None,
        DEADLINE,
    );
    assert!(status.success(), "redis-cli {args:?}: {out} {err}");
    out
}

#[test]
fn redis_cli_commands_and_pipe_bulk_load() {
    let Some(cli) = redis_tool("redis-cli") else {
        return;
    };
    let site = ChorusProcess::start(&[]);
    let port = site.port.to_string();
    let run = |args: &[&str]| redis_cli(&cli, &port, args);
    assert_eq!(run(&["PING"]).trim(), "PONG");
    assert_eq!(run(&["SET", "k", "v"]).trim(), "OK");
    assert_eq!(run(&["GET", "k"]).trim(), "v");
    assert_eq!(run(&["INCRBY", "n", "5"]).trim(), "5");
    assert_eq!(run(&["HSET", "h", "a", "1", "b", "2"]).trim(), "2");
    let mut fields: Vec<String> = run(&["HKEYS", "h"]).lines().map(str::to_string).collect();
    fields.sort();
    assert_eq!(fields, vec!["a", "b"]);
    assert!(run(&["INCR", "k"]).contains("ERR value is not an integer"));
    assert!(run(&["NOSUCH"]).contains("ERR unknown command"));
    // Several commands on stdin, one connection.
    let (status, out, _) = run_bounded(
        Command::new(&cli).args(["-p", &port]),
        Some(b"SET a 1\nINCR a\nGET a\n".to_vec()),
        DEADLINE,
    );
    assert!(status.success());
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["OK", "2", "2"]);

    // --pipe: 10,000 SETs in the raw protocol.
    assert_eq!(run(&["FLUSHALL"]).trim(), "OK");
    let mut bulk = Vec::new();
    for i in 0..10_000 {
        let key = format!("key:{i}");
        let value = format!("value-{i}");
        bulk.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            )
            .as_bytes(),
        );
    }
    let (status, out, err) = run_bounded(
        Command::new(&cli).args(["-p", &port, "--pipe"]),
        Some(bulk),
        Duration::from_secs(60),
    );
    assert!(status.success(), "redis-cli --pipe failed: {out} {err}");
    assert!(
        out.contains("errors: 0, replies: 10000"),
        "redis-cli --pipe summary: {out} {err}"
    );
    assert_eq!(run(&["DBSIZE"]).trim(), "10000");
    assert_eq!(run(&["GET", "key:9999"]).trim(), "value-9999");
}

#[test]
fn redis_benchmark_smoke_run() {
    let Some(bench) = redis_tool("redis-benchmark") else {
        return;
    };
    let site = ChorusProcess::start(&[]);
    let port = site.port.to_string();
    let (status, out, err) = run_bounded(
        Command::new(&bench).args([
            "-p",
            &port,
            "-n",
            "2000",
            "-c",
            "5",
            "-t",
            "set,get,incr,hset,sadd,zadd,mset",
            "-q",
        ]),
        None,
        Duration::from_secs(120),
    );
    assert!(status.success(), "redis-benchmark failed:\n{out}\n{err}");
    let text = format!("{out}\n{err}");
    assert!(
        !text.to_ascii_lowercase().contains("error"),
        "redis-benchmark reported errors:\n{text}"
    );
    // -q prints one "NAME: N requests per second" line per test.
    for name in ["SET", "GET", "INCR", "HSET", "SADD", "ZADD", "MSET"] {
        let found = out.lines().any(|line| {
            // redis-benchmark separates progress lines with carriage returns.
            line.rsplit('\r')
                .next()
                .is_some_and(|l| l.starts_with(name) && l.contains("requests per second"))
        });
        assert!(found, "no result line for {name}:\n{out}");
    }
    // The server still answers and holds what the benchmark wrote.
    let mut con = connect(site.port);
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
    assert!(size > 0);
}

/// redis-cli's analysis modes against a chorus-server process, output
/// parsed: `--bigkeys` (SCAN, TYPE and the length commands), `--memkeys`
/// (MEMORY USAGE), `--latency` and `--stat` (INFO). The last two run until
/// interrupted: coreutils `timeout` sends SIGINT after a few seconds and
/// `stdbuf` keeps `--stat`'s lines from sitting in a buffer.
#[test]
fn redis_cli_bigkeys_memkeys_latency_and_stat() {
    let Some(cli) = redis_tool("redis-cli") else {
        return;
    };
    let site = ChorusProcess::start(&[]);
    let port = site.port.to_string();
    let mut c = site.connect();
    let big = "x".repeat(5000);
    c.cmd(&["SET", "small-string", "v"]);
    c.cmd(&["SET", "big-string", &big]);
    c.cmd(&["RPUSH", "list", "a", "b", "c"]);
    let mut hset = vec!["HSET".to_string(), "hash".to_string()];
    for i in 0..50 {
        hset.extend([format!("f{i}"), "v".repeat(100)]);
    }
    let hset: Vec<&str> = hset.iter().map(String::as_str).collect();
    c.cmd(&hset);
    c.cmd(&["SADD", "set", "1", "2"]);
    c.cmd(&["ZADD", "zset", "1", "a"]);
    let run = |args: &[&str]| redis_cli(&cli, &port, args);
    let out = run(&["--bigkeys"]);
    assert!(out.contains("Sampled 6 keys in the keyspace!"), "{out}");
    assert!(
        out.contains("Biggest string found '\"big-string\"' has 5000 bytes"),
        "{out}"
    );
    assert!(
        out.contains("Biggest   hash found '\"hash\"' has 50 fields"),
        "{out}"
    );
    assert!(
        out.contains("Biggest   list found '\"list\"' has 3 items"),
        "{out}"
    );
    assert!(out.contains("2 strings with 5001 bytes"), "{out}");

    let out = run(&["--memkeys"]);
    assert!(out.contains("Sampled 6 keys in the keyspace!"), "{out}");
    // The hash holds 50 × 102 bytes of data at least.
    let hash_bytes: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Biggest   hash found '\"hash\"' has "))
        .and_then(|rest| rest.strip_suffix(" bytes"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no hash line in {out}"));
    assert!((5100..20_000).contains(&hash_bytes), "{hash_bytes}");
    let string_bytes: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Biggest string found '\"big-string\"' has "))
        .and_then(|rest| rest.strip_suffix(" bytes"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no string line in {out}"));
    assert!((5000..6000).contains(&string_bytes), "{string_bytes}");

    let interrupted = |args: &[&str]| -> String {
        let (_, out, err) = run_bounded(
            Command::new("timeout")
                .args(["-s", "INT", "2", "stdbuf", "-oL"])
                .arg(&cli)
                .args(["-p", &port])
                .args(args),
            None,
            DEADLINE,
        );
        format!("{out}{err}")
    };
    // --latency without a terminal: `min max avg samples`.
    let out = interrupted(&["--latency"]);
    let figures: Vec<f64> = out
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(figures.len(), 4, "{out}");
    assert!(
        figures[0] <= figures[2] && figures[2] <= figures[1],
        "{out}"
    );
    assert!(figures[3] >= 10.0, "{out}");

    let out = interrupted(&["--stat", "-i", "0.2"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first().is_some_and(|k| k.parse::<u64>().is_ok()))
        .collect();
    assert!(rows.len() >= 3, "{out}");
    assert!(out.contains("keys       mem      clients"), "{out}");
    for row in &rows {
        assert_eq!(row[0], "6", "keys column: {out}");
        assert!(row[1].ends_with('M') || row[1].ends_with('K'), "{out}");
    }
}
