//! Introspection commands against chorus-server, and against redis-server
//! where Redis's behaviour is the reference: server commands inside
//! MULTI/EXEC (which once waited forever for the store EXEC holds),
//! `INFO commandstats` / `latencystats`, SLOWLOG and CLIENT PAUSE.
//!
//! Durations, timestamps, ids and client ports differ between the servers
//! and are compared by shape; everything else (which commands are counted
//! how, what an entry holds, errors and HELP) is compared exactly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chorus_engine::Reply;
use chorus_testkit::{show, ChorusProcess, Conn, RedisProcess};

fn text(reply: &Reply) -> String {
    match reply {
        Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Reply::Verbatim(s) | Reply::Simple(s) | Reply::Error(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// `name:value` lines of an INFO reply.
fn info_lines(info: &str) -> BTreeMap<String, String> {
    info.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `a=1,b=2` -> {a: 1, b: 2}.
fn fields(value: &str) -> BTreeMap<String, String> {
    value
        .split(',')
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The raw replies to `cases`, each labelled with its command.
fn raw_replies(c: &mut Conn, cases: &[&[&str]]) -> Vec<String> {
    cases
        .iter()
        .map(|args| {
            let raw: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            format!("{args:?}: {}", show(&c.call(&raw)))
        })
        .collect()
}

/// The two servers' lists agree, item by item.
fn assert_same(ours: &[String], theirs: &[String]) {
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!(a, b);
    }
    assert_eq!(ours.len(), theirs.len());
}

#[test]
fn server_commands_inside_exec_do_not_wait_for_the_store() {
    let server = ChorusProcess::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.call(&[b"MULTI"]), b"+OK\r\n");
    let queued: &[&[&[u8]]] = &[
        &[b"INFO", b"everything"],
        &[b"INFO", b"replication", b"persistence", b"keyspace"],
        &[b"CONFIG", b"SET", b"appendfsync", b"always"],
        &[b"CONFIG", b"SET", b"max-clock-skew-ms", b"100"],
        &[b"CONFIG", b"SET", b"repl-backlog-size", b"2000000"],
        &[b"SET", b"k", b"v"],
        &[b"DBSIZE"],
        &[b"ROLE"],
        &[b"DEBUG", b"DIGEST"],
        &[b"BGSAVE"],
        &[b"CLIENT", b"LIST"],
        &[b"SLOWLOG", b"LEN"],
        &[b"CONFIG", b"RESETSTAT"],
    ];
    for args in queued {
        assert_eq!(c.call(args), b"+QUEUED\r\n");
    }
    // Before the fix EXEC never answered (the test's read timed out).
    let Reply::Array(replies) = c.cmd(&["EXEC"]) else {
        panic!("EXEC answers an array")
    };
    assert_eq!(replies.len(), queued.len());
    assert!(
        replies.iter().all(|r| !matches!(r, Reply::Error(_))),
        "{replies:?}"
    );
    assert!(text(&replies[0]).contains("# Replication"));
    assert_eq!(replies[6], Reply::Int(1));
    // The store took the CONFIG SETs once EXEC released it.
    let mut other = server.connect();
    assert_eq!(other.call(&[b"PING"]), b"+PONG\r\n");
    let info = text(&other.cmd(&["INFO", "persistence"]));
    assert_eq!(
        info_lines(&info).get("appendfsync").map(String::as_str),
        Some("always")
    );
    assert_eq!(
        other.call(&[b"CONFIG", b"SET", b"appendfsync", b"everysec"]),
        b"+OK\r\n"
    );
    assert_eq!(c.call(&[b"GET", b"k"]), b"$1\r\nv\r\n");
}

/// The same commands at both servers, for the statistics tests.
fn workload(c: &mut Conn) {
    for args in [
        &["CONFIG", "RESETSTAT"][..],
        &["SET", "a", "1"],
        &["GET", "a"],
        &["GET", "a"],
        &["GET"],
        &["LPUSH", "a", "x"],
        &["INCR", "a"],
        &["MULTI"],
        &["INCR", "a"],
        &["RPUSH", "a", "x"],
        &["EXEC"],
        &["CONFIG", "GET", "maxmemory"],
        &["CLIENT", "SETNAME", "stats"],
        &["NOSUCHCOMMAND"],
    ] {
        c.cmd(args);
    }
}

/// `cmdstat_<name>` -> (calls, rejected_calls, failed_calls), checking the
/// shape of every line.
fn command_stats(c: &mut Conn) -> BTreeMap<String, (u64, u64, u64)> {
    let info = text(&c.cmd(&["INFO", "commandstats"]));
    assert!(info.starts_with("# Commandstats\r\n"), "{info}");
    info_lines(&info)
        .into_iter()
        .map(|(name, value)| {
            let f = fields(&value);
            let keys: Vec<&str> = f.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                [
                    "calls",
                    "failed_calls",
                    "rejected_calls",
                    "usec",
                    "usec_per_call"
                ],
                "{value}"
            );
            assert!(value.starts_with("calls="), "{value}");
            let n = |k: &str| -> u64 { f[k].parse().expect(k) };
            let per_call = &f["usec_per_call"];
            assert_eq!(per_call.split_once('.').map(|(_, d)| d.len()), Some(2));
            (name, (n("calls"), n("rejected_calls"), n("failed_calls")))
        })
        .collect()
}

#[test]
fn commandstats_and_latencystats_count_as_redis_does() {
    let Some(redis) = RedisProcess::start(&[]) else {
        return;
    };
    let chorus = ChorusProcess::start(&[]);
    let mut results = Vec::new();
    for mut c in [chorus.connect(), redis.connect()] {
        workload(&mut c);
        let stats = command_stats(&mut c);
        let latency = text(&c.cmd(&["INFO", "latencystats"]));
        assert!(latency.starts_with("# Latencystats\r\n"));
        let latency = info_lines(&latency);
        // A histogram for every command that ran, with Redis's default
        // percentiles, three decimals each.
        let called: Vec<String> = stats
            .iter()
            .filter(|(_, v)| v.0 > 0)
            .map(|(k, _)| k.replace("cmdstat_", "latency_percentiles_usec_"))
            .collect();
        let ran: Vec<String> = latency
            .keys()
            .filter(|k| !k.ends_with("info"))
            .cloned()
            .collect();
        assert_eq!(ran, called);
        for value in latency.values() {
            let f = fields(value);
            assert_eq!(
                f.keys().map(String::as_str).collect::<Vec<_>>(),
                ["p50", "p99", "p99.9"]
            );
            assert!(f
                .values()
                .all(|v| v.split_once('.').is_some_and(|(_, d)| d.len() == 3)));
        }
        // Other percentiles, as configured.
        c.cmd(&[
            "CONFIG",
            "SET",
            "latency-tracking-info-percentiles",
            "0 99.99 100",
        ]);
        let latency = text(&c.cmd(&["INFO", "latencystats"]));
        let get = info_lines(&latency)
            .remove("latency_percentiles_usec_get")
            .expect("get's line");
        let f = fields(&get);
        assert_eq!(
            f.keys().map(String::as_str).collect::<Vec<_>>(),
            ["p0", "p100", "p99.99"]
        );
        // Multi-section INFO shows both, in Redis's order.
        let both = text(&c.cmd(&["INFO", "latencystats", "commandstats"]));
        let at = |s: &str| both.find(s).expect(s);
        assert!(at("# Commandstats") < at("# Latencystats"));
        let everything = text(&c.cmd(&["INFO", "everything"]));
        assert!(everything.contains("# Commandstats\r\ncmdstat_"));
        let default = text(&c.cmd(&["INFO"]));
        assert!(!default.contains("# Commandstats"));
        // RESETSTAT empties both.
        c.cmd(&["CONFIG", "RESETSTAT"]);
        let after = text(&c.cmd(&["INFO", "commandstats", "latencystats"]));
        let names: Vec<String> = info_lines(&after).into_keys().collect();
        assert_eq!(
            names,
            [
                "cmdstat_config|resetstat",
                "latency_percentiles_usec_config|resetstat"
            ]
        );
        results.push(stats);
    }
    let (chorus_stats, redis_stats) = (&results[0], &results[1]);
    assert_eq!(chorus_stats, redis_stats);
    // The figures mean what they say.
    assert_eq!(chorus_stats["cmdstat_get"], (2, 1, 0));
    assert_eq!(chorus_stats["cmdstat_lpush"], (1, 0, 1));
    // An error inside EXEC counts against the command that answered it.
    assert_eq!(chorus_stats["cmdstat_exec"], (1, 0, 0));
    assert_eq!(chorus_stats["cmdstat_rpush"], (1, 0, 1));
}

/// SLOWLOG GET with what differs between servers blanked: id, timestamp,
/// duration and the client's port. Checks ids count down.
fn slowlog_entries(c: &mut Conn) -> Vec<Reply> {
    let Reply::Array(entries) = c.cmd(&["SLOWLOG", "GET", "-1"]) else {
        panic!("SLOWLOG GET answers an array")
    };
    let mut last_id = i64::MAX;
    entries
        .into_iter()
        .map(|e| {
            let Reply::Array(mut parts) = e else {
                panic!("an entry is an array")
            };
            assert_eq!(parts.len(), 6);
            let Reply::Int(id) = parts[0] else {
                panic!("id")
            };
            assert!(id < last_id);
            last_id = id;
            assert!(matches!(parts[1], Reply::Int(t) if t > 1_600_000_000));
            assert!(matches!(parts[2], Reply::Int(d) if d >= 0));
            let addr = text(&parts[4]);
            assert!(addr.starts_with("127.0.0.1:"), "{addr}");
            parts[0] = Reply::Nil;
            parts[1] = Reply::Nil;
            parts[2] = Reply::Nil;
            parts[4] = Reply::Nil;
            Reply::Array(parts)
        })
        .collect()
}

#[test]
fn slowlog_as_redis() {
    let Some(redis) = RedisProcess::start(&[]) else {
        return;
    };
    let chorus = ChorusProcess::start(&[]);
    let long = "x".repeat(300);
    let many: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let mut results = Vec::new();
    for mut c in [chorus.connect(), redis.connect()] {
        let mut exact = Vec::new();
        exact.extend(raw_replies(
            &mut c,
            &[
                &["SLOWLOG", "HELP"][..],
                &["SLOWLOG", "GET", "x"],
                &["SLOWLOG", "GET", "-2"],
                &["SLOWLOG", "GET", "+1"],
                &["SLOWLOG", "GET", "1", "2"],
                &["SLOWLOG", "LEN", "1"],
                &["SLOWLOG", "RESET", "1"],
                &["SLOWLOG", "NOSUCH"],
                &["SLOWLOG"],
            ],
        ));
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
            Reply::Ok
        );
        assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), Reply::Ok);
        c.cmd(&["CLIENT", "SETNAME", "slow-one"]);
        c.cmd(&["SET", "k", &long]);
        let mut rpush = vec!["RPUSH", "list"];
        rpush.extend(many.iter().map(String::as_str));
        c.cmd(&rpush);
        c.cmd(&["AUTH", "user", "secret"]);
        c.cmd(&["HELLO", "2", "AUTH", "default", "secret", "SETNAME", "x"]);
        c.cmd(&["MULTI"]);
        c.cmd(&["GET", "k"]);
        c.cmd(&["EXEC"]);
        let len = c.cmd(&["SLOWLOG", "LEN"]);
        let entries = slowlog_entries(&mut c);
        // SLOWLOG LEN itself is logged after it answers.
        assert_eq!(len, Reply::Int(entries.len() as i64 - 1));
        let Reply::Array(two) = c.cmd(&["SLOWLOG", "GET", "2"]) else {
            panic!("array")
        };
        assert_eq!(two.len(), 2);
        // Bounded by slowlog-max-len.
        c.cmd(&["CONFIG", "SET", "slowlog-max-len", "3"]);
        for _ in 0..5 {
            c.cmd(&["PING"]);
        }
        let bounded = c.cmd(&["SLOWLOG", "LEN"]);
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
        c.cmd(&["SLOWLOG", "RESET"]);
        c.cmd(&["PING"]);
        let off = c.cmd(&["SLOWLOG", "LEN"]);
        results.push((exact, entries, bounded, off));
    }
    let (chorus_result, redis_result) = (&results[0], &results[1]);
    assert_eq!(chorus_result.0, redis_result.0);
    assert_eq!(chorus_result.1, redis_result.1);
    assert_eq!(chorus_result.2, Reply::Int(3));
    assert_eq!(chorus_result.2, redis_result.2);
    assert_eq!(chorus_result.3, Reply::Int(0));
    assert_eq!(chorus_result.3, redis_result.3);
    // What the comparison covered: a cut argument, a cut argument list,
    // redacted passwords, the client's name.
    let shown = format!("{:?}", chorus_result.1);
    assert!(shown.contains("... (172 more bytes)"), "{shown}");
    assert!(shown.contains("... (11 more arguments)"), "{shown}");
    assert!(shown.contains("(redacted)"), "{shown}");
    assert!(shown.contains("slow-one"), "{shown}");
}

/// How long `args` takes to be answered on `c`.
fn timed(c: &mut Conn, args: &[&str]) -> (Duration, Reply) {
    let started = Instant::now();
    let reply = c.cmd(args);
    (started.elapsed(), reply)
}

/// CLIENT PAUSE as Redis does it, checked on one server.
fn pause_behaviour(mut admin: Conn, mut client: Conn) -> Vec<String> {
    let hold = Duration::from_millis(300);
    let mut errors = Vec::new();
    for args in [
        &["CLIENT", "PAUSE", "x"][..],
        &["CLIENT", "PAUSE", "-1"],
        &["CLIENT", "PAUSE", "10", "sometimes"],
        &["CLIENT", "PAUSE", "10", "WRITE", "x"],
        &["CLIENT", "UNPAUSE", "x"],
        &["CLIENT", "PAUSE", "9223372036854775807", "WRITE"],
    ] {
        errors.push(text(&admin.cmd(args)));
    }
    // The overflowing timeout above paused nothing.
    assert!(timed(&mut client, &["SET", "k", "v"]).0 < hold);

    // WRITE: reads pass, writes and PUBLISH and EVAL wait, then run.
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "400", "WRITE"]), Reply::Ok);
    let (took, reply) = timed(&mut client, &["GET", "k"]);
    assert!(took < hold, "GET waited {took:?}");
    assert_eq!(text(&reply), "v");
    let (took, reply) = timed(&mut client, &["SET", "k", "w"]);
    assert!(took >= hold, "SET waited only {took:?}");
    assert_eq!(reply, Reply::Ok);
    for args in [
        &["PUBLISH", "ch", "m"][..],
        &["EVAL", "return 1", "0"],
        &["INCR", "n"],
    ] {
        assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "400", "WRITE"]), Reply::Ok);
        let (took, _) = timed(&mut client, args);
        assert!(took >= hold, "{args:?} waited only {took:?}");
    }
    // UNPAUSE releases a waiting write at once.
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "20000", "WRITE"]), Reply::Ok);
    let started = Instant::now();
    let waiter = std::thread::spawn(move || {
        let reply = client.cmd(&["SET", "k", "x"]);
        (client, reply)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(admin.cmd(&["CLIENT", "UNPAUSE"]), Reply::Ok);
    let (mut client, reply) = waiter.join().expect("waiter");
    assert_eq!(reply, Reply::Ok);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(text(&admin.cmd(&["GET", "k"])), "x");

    // ALL: every command waits, PING and CLIENT UNPAUSE too.
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "400", "ALL"]), Reply::Ok);
    let (took, reply) = timed(&mut client, &["PING"]);
    assert!(took >= hold, "PING waited only {took:?}");
    assert_eq!(text(&reply), "PONG");
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "400"]), Reply::Ok);
    let (took, _) = timed(&mut client, &["CLIENT", "UNPAUSE"]);
    assert!(took >= hold, "UNPAUSE waited only {took:?}");
    errors
}

#[test]
fn client_pause_as_redis() {
    let Some(redis) = RedisProcess::start(&[]) else {
        return;
    };
    let chorus = ChorusProcess::start(&[]);
    let chorus_errors = pause_behaviour(chorus.connect(), chorus.connect());
    let redis_errors = pause_behaviour(redis.connect(), redis.connect());
    assert_eq!(chorus_errors, redis_errors);
    assert_eq!(
        chorus_errors[0],
        "ERR timeout is not an integer or out of range"
    );
}

/// Builds the same values at a server: strings, hashes, sets, sorted sets
/// and lists on both sides of every encoding threshold.
fn object_values(c: &mut Conn) {
    let long_field = "f".repeat(65);
    let at_limit = "v".repeat(64);
    let mut cmds: Vec<Vec<String>> = Vec::new();
    let mut add = |args: &[&str]| cmds.push(args.iter().map(|a| a.to_string()).collect());
    add(&["SET", "int", "123"]);
    add(&["SET", "neg", "-9223372036854775808"]);
    add(&["SET", "overflow", "9223372036854775808"]);
    add(&["SET", "zero-led", "007"]);
    add(&["SET", "plus", "+5"]);
    add(&["SET", "short", "abc"]);
    add(&["SET", "emb44", &"e".repeat(44)]);
    add(&["SET", "raw45", &"r".repeat(45)]);
    add(&["SET", "shared", "9999"]);
    add(&["SET", "unshared", "10000"]);
    add(&["INCR", "counter"]);
    add(&["HSET", "h-small", "a", "1", "b", &at_limit]);
    add(&["HSET", "h-long-value", "a", &"v".repeat(65)]);
    add(&["HSET", "h-long-field", &long_field, "1"]);
    add(&["SADD", "s-int", "1", "2", "-3"]);
    add(&["SADD", "s-mixed", "1", "a"]);
    add(&["ZADD", "z-small", "1", "a", "2", &at_limit]);
    add(&["ZADD", "z-long", "1", &long_field]);
    add(&["RPUSH", "l", "a", "b"]);
    let mut big_hash = vec!["HSET".to_string(), "h-big".to_string()];
    let mut big_zset = vec!["ZADD".to_string(), "z-big".to_string()];
    let mut edge_hash = vec!["HSET".to_string(), "h-128".to_string()];
    for i in 0..129 {
        big_hash.extend([format!("f{i}"), "v".to_string()]);
        big_zset.extend([i.to_string(), format!("m{i}")]);
        if i < 128 {
            edge_hash.extend([format!("f{i}"), "v".to_string()]);
        }
    }
    cmds.push(big_hash);
    cmds.push(big_zset);
    cmds.push(edge_hash);
    let mut big_set = vec!["SADD".to_string(), "s-big".to_string()];
    let mut edge_set = vec!["SADD".to_string(), "s-512".to_string()];
    for i in 0..513 {
        big_set.push(i.to_string());
        if i < 512 {
            edge_set.push(i.to_string());
        }
    }
    cmds.push(big_set);
    cmds.push(edge_set);
    for args in &cmds {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(!matches!(c.cmd(&args), Reply::Error(_)), "{:?}", &args[..2]);
    }
}

const OBJECT_KEYS: &[&str] = &[
    "int",
    "neg",
    "overflow",
    "zero-led",
    "plus",
    "short",
    "emb44",
    "raw45",
    "shared",
    "unshared",
    "counter",
    "h-small",
    "h-long-value",
    "h-long-field",
    "h-big",
    "h-128",
    "s-int",
    "s-mixed",
    "s-big",
    "s-512",
    "z-small",
    "z-long",
    "z-big",
    "l",
    "missing",
];

fn object_replies(c: &mut Conn) -> Vec<String> {
    let mut out = Vec::new();
    object_values(c);
    for key in OBJECT_KEYS {
        for sub in ["ENCODING", "REFCOUNT"] {
            out.push(format!(
                "{sub} {key}: {}",
                show(&c.call(&[b"OBJECT", sub.as_bytes(), key.as_bytes()]))
            ));
        }
    }
    // Smaller limits apply to values written afterwards.
    for (name, value) in [
        ("hash-max-listpack-entries", "2"),
        ("hash-max-listpack-value", "3"),
        ("zset-max-listpack-entries", "1"),
        ("set-max-intset-entries", "2"),
    ] {
        c.cmd(&["CONFIG", "SET", name, value]);
    }
    for args in [
        &["HSET", "h2", "a", "1", "b", "2"][..],
        &["HSET", "h3", "a", "1", "b", "2", "c", "3"],
        &["HSET", "h-4bytes", "a", "1234"],
        &["ZADD", "z2", "1", "a", "2", "b"],
        &["SADD", "s2", "1", "2"],
        &["SADD", "s3", "1", "2", "3"],
    ] {
        c.cmd(args);
        let key = args[1];
        out.push(format!(
            "ENCODING {key} (small limits): {}",
            show(&c.call(&[b"OBJECT", b"ENCODING", key.as_bytes()]))
        ));
    }
    out.extend(raw_replies(
        c,
        &[
            &["OBJECT", "HELP"][..],
            &["OBJECT", "FREQ", "int"],
            &["OBJECT", "FREQ", "missing"],
            &["OBJECT", "IDLETIME", "missing"],
            &["OBJECT", "ENCODING", "int", "extra"],
            &["OBJECT", "ENCODING"],
            &["OBJECT", "HELP", "x"],
            &["OBJECT", "NOSUCH", "x"],
            &["OBJECT"],
        ],
    ));
    // Under an LFU policy Redis tracks no idle time and says so.
    c.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]);
    out.push(show(&c.call(&[b"OBJECT", b"IDLETIME", b"int"])));
    c.cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    out
}

#[test]
fn object_as_redis() {
    let Some(redis) = RedisProcess::start(&[]) else {
        return;
    };
    let chorus = ChorusProcess::start(&[]);
    let from_chorus = object_replies(&mut chorus.connect());
    let from_redis = object_replies(&mut redis.connect());
    assert_same(&from_chorus, &from_redis);
    // Chorus does not track accesses; Redis reports seconds idle.
    let mut c = chorus.connect();
    let idle = c.cmd(&["OBJECT", "IDLETIME", "int"]);
    assert_eq!(
        idle,
        Reply::Error("ERR Chorus does not track key accesses: idle time not tracked.".into())
    );
    assert!(matches!(
        redis.connect().cmd(&["OBJECT", "IDLETIME", "int"]),
        Reply::Int(_)
    ));
}

fn memory_errors(c: &mut Conn) -> Vec<String> {
    let mut out = Vec::new();
    c.cmd(&["SET", "k", "v"]);
    out.extend(raw_replies(
        c,
        &[
            &["MEMORY", "HELP"][..],
            &["MEMORY", "USAGE", "missing"],
            &["MEMORY", "USAGE", "missing", "SAMPLES", "-1"],
            &["MEMORY", "USAGE", "k", "SAMPLES", "x"],
            &["MEMORY", "USAGE", "k", "SAMPLES"],
            &["MEMORY", "USAGE", "k", "foo", "1"],
            &["MEMORY", "USAGE"],
            &["MEMORY", "PURGE"],
            &["MEMORY", "PURGE", "x"],
            &["MEMORY", "DOCTOR", "x"],
            &["MEMORY", "STATS", "x"],
            &["MEMORY", "NOSUCH"],
        ],
    ));
    out
}

fn usage(c: &mut Conn, args: &[&str]) -> i64 {
    match c.cmd(args) {
        Reply::Int(n) => n,
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn memory_as_redis() {
    let Some(redis) = RedisProcess::start(&[]) else {
        return;
    };
    let chorus = ChorusProcess::start(&[]);
    let mut c = chorus.connect();
    let mut r = redis.connect();
    assert_eq!(memory_errors(&mut c), memory_errors(&mut r));

    // USAGE grows with what the key holds and counts its data at least.
    c.cmd(&["SET", "s", &"x".repeat(1000)]);
    let string = usage(&mut c, &["MEMORY", "USAGE", "s"]);
    assert!((1000..1400).contains(&string), "{string}");
    let short = usage(&mut c, &["MEMORY", "USAGE", "k"]);
    assert!(short < string && short > 0);
    let mut hset = vec!["HSET".to_string(), "h".to_string()];
    for i in 0..1000 {
        hset.extend([format!("field{i:04}"), "v".repeat(100)]);
    }
    let hset: Vec<&str> = hset.iter().map(String::as_str).collect();
    c.cmd(&hset);
    let all = usage(&mut c, &["MEMORY", "USAGE", "h", "SAMPLES", "0"]);
    let sampled = usage(&mut c, &["MEMORY", "USAGE", "h"]);
    // 1000 × (9 + 100) bytes of data plus the per-entry structures.
    assert!((109_000..400_000).contains(&all), "{all}");
    assert_eq!(sampled, all, "fields of one size extrapolate exactly");
    for (cmd, key) in [
        (&["SADD", "set", "a", "b"][..], "set"),
        (&["ZADD", "z", "1", "a"], "z"),
        (&["RPUSH", "l", "a"], "l"),
    ] {
        c.cmd(cmd);
        assert!(usage(&mut c, &["MEMORY", "USAGE", key]) > 0);
    }

    // STATS: Redis's names, with real figures.
    let stats = |conn: &mut Conn| -> BTreeMap<String, Reply> {
        let Reply::Array(items) = conn.cmd(&["MEMORY", "STATS"]) else {
            panic!("MEMORY STATS is a flat array in RESP2")
        };
        items
            .chunks(2)
            .map(|p| (text(&p[0]), p[1].clone()))
            .collect()
    };
    let ours = stats(&mut c);
    let theirs = stats(&mut r);
    for name in ours.keys() {
        assert!(theirs.contains_key(name), "{name} is not Redis's");
    }
    assert_eq!(ours["keys.count"], Reply::Int(6));
    let Reply::Int(total) = ours["total.allocated"] else {
        panic!("total.allocated")
    };
    assert!(total > 109_000);
    let doctor = text(&c.cmd(&["MEMORY", "DOCTOR"]));
    assert!(doctor.starts_with("Hi Sam") || doctor.starts_with("Sam, I detected"));
    assert!(!text(&c.cmd(&["MEMORY", "MALLOC-STATS"])).is_empty());
}

/// A flat RESP2 map as pairs.
fn pairs(reply: Reply) -> Vec<(Reply, Reply)> {
    let Reply::Array(items) = reply else {
        panic!("a map is a flat array in RESP2: {reply:?}")
    };
    items
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

/// The first levels of LATENCY HISTOGRAM, in microseconds.
const LEVELS_USEC: &[i64] = &[
    1, 2, 4, 8, 16, 33, 66, 132, 264, 528, 1056, 2113, 4227, 8454, 16908, 33816, 67633, 135266,
];

fn latency_behaviour(c: &mut Conn) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(raw_replies(
        c,
        &[
            &["LATENCY", "HELP"][..],
            &["LATENCY", "LATEST"],
            &["LATENCY", "HISTORY", "command"],
            &["LATENCY", "GRAPH", "command"],
            &["LATENCY", "DOCTOR"],
            &["LATENCY", "RESET"],
            &["LATENCY", "RESET", "command", "nosuch"],
            &["LATENCY", "HISTORY"],
            &["LATENCY", "LATEST", "x"],
            &["LATENCY", "NOSUCH"],
        ],
    ));
    // A slow command with the monitor on.
    c.cmd(&["CONFIG", "SET", "latency-monitor-threshold", "1"]);
    let slow = "local i = 0 while i < 5000000 do i = i + 1 end return 1";
    assert_eq!(c.cmd(&["EVAL", slow, "0"]), Reply::Int(1));
    let Reply::Array(latest) = c.cmd(&["LATENCY", "LATEST"]) else {
        panic!("LATEST is an array")
    };
    let event = latest
        .iter()
        .find_map(|e| match e {
            Reply::Array(f) if text(&f[0]) == "command" => Some(f.clone()),
            _ => None,
        })
        .expect("a command event");
    assert!(matches!(event[2], Reply::Int(ms) if ms >= 1));
    assert_eq!(event[2], event[3]);
    let Reply::Array(history) = c.cmd(&["LATENCY", "HISTORY", "command"]) else {
        panic!("HISTORY is an array")
    };
    assert_eq!(history.len(), 1);
    let graph = text(&c.cmd(&["LATENCY", "GRAPH", "command"]));
    let lines: Vec<&str> = graph.lines().collect();
    out.push(format!("graph rows {}", lines.len()));
    assert!(lines[0].starts_with("command - high "), "{graph}");
    assert_eq!(lines[1], "-".repeat(80));
    // One sample: the low mark on the bottom row, its age under it.
    assert_eq!(&lines[2..6], &[" ", " ", " ", "_"], "{graph}");
    let doctor = text(&c.cmd(&["LATENCY", "DOCTOR"]));
    assert!(
        doctor.starts_with("Dave, I have observed latency spikes"),
        "{doctor}"
    );
    assert!(
        doctor.contains("1. command: 1 latency spikes (average "),
        "{doctor}"
    );
    out.push(show(&c.call(&[b"LATENCY", b"RESET", b"command"])));
    out.push(show(&c.call(&[b"LATENCY", b"LATEST"])));
    c.cmd(&["CONFIG", "SET", "latency-monitor-threshold", "0"]);

    // HISTOGRAM: calls and cumulative counts at doubling microseconds.
    c.cmd(&["CONFIG", "RESETSTAT"]);
    for _ in 0..20 {
        c.cmd(&["SET", "k", "v"]);
    }
    c.cmd(&["GET", "k"]);
    let histograms = pairs(c.cmd(&["LATENCY", "HISTOGRAM", "set", "GET", "nosuch", "set"]));
    for (name, h) in histograms {
        let h = pairs(h);
        assert_eq!(text(&h[0].0), "calls");
        assert_eq!(text(&h[1].0), "histogram_usec");
        let Reply::Int(calls) = h[0].1 else {
            panic!("calls")
        };
        let buckets = pairs(h[1].1.clone());
        let mut last = (0, 0);
        for (usec, count) in &buckets {
            let (Reply::Int(u), Reply::Int(n)) = (usec, count) else {
                panic!("{buckets:?}")
            };
            // Levels 1024 ns × 2^k read as their bucket's highest value:
            // 1, 2, 4, 8, 16, 33, 66, 132... µs.
            assert!(
                LEVELS_USEC.contains(u) && *u > last.0 && *n > last.1,
                "{buckets:?}"
            );
            last = (*u, *n);
        }
        assert_eq!(last.1, calls);
        out.push(format!("{} calls={calls}", text(&name)));
    }
    out
}

#[test]
fn latency_as_redis() {
    let Some(redis) = RedisProcess::start(&[]) else {
        return;
    };
    let chorus = ChorusProcess::start(&[]);
    let ours = latency_behaviour(&mut chorus.connect());
    let theirs = latency_behaviour(&mut redis.connect());
    assert_same(&ours, &theirs);
}
