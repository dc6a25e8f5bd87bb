//! Differential tests of keyspace notifications: the same commands go to
//! chorus-server and to a real redis-server with the same
//! `notify-keyspace-events`, and what a subscriber to every keyspace and
//! keyevent channel receives is compared byte for byte, one command at a
//! time (with the command's reply).
//!
//! After each command the writer publishes on a channel of its own, which
//! the subscriber also listens to: the messages before that marker are the
//! command's notifications, on both servers (each publishes them before the
//! command replies).
//!
//! A subscriber that stops reading is then checked on both servers: it is
//! disconnected at the `pubsub` output limit, and the writers go on.
//!
//! Without redis-server the tests print a SKIPPED line and pass, unless
//! `CHORUS_REQUIRE_REDIS=1`.

use chorus_testkit::{multibulk, show, ChorusProcess, Conn, Received, RedisProcess};

/// The channel the writer marks the end of a command's events on.
const MARK: &str = "notify-differential-mark";

/// Messages a command may fire at most before the test calls it a failure
/// (a loop bound, far above any command here).
const MESSAGES_PER_COMMAND_MAX: usize = 64;

fn args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut token = String::new();
        if c == '"' {
            chars.next();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                token.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                token.push(c);
                chars.next();
            }
        }
        out.push(token);
    }
    out
}

fn call(conn: &mut Conn, args: &[String]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    conn.call(&args)
}

fn receive(conn: &mut Conn) -> Vec<u8> {
    match conn.receive() {
        Received::Reply(_, raw) => raw,
        Received::Closed => b"<closed>".to_vec(),
    }
}

/// Runs `lines` (one command each; `#` starts a comment, `sleep <ms>`
/// pauses; a first line `#resp3` makes the subscriber speak RESP3) with
/// `flags`; returns, per command, its reply and the notifications that came
/// before the marker.
fn run(writer: &mut Conn, sub: &mut Conn, flags: &str, lines: &str) -> Vec<(String, Vec<u8>)> {
    let set = args(&format!("CONFIG SET notify-keyspace-events \"{flags}\""));
    assert_eq!(
        call(writer, &set),
        b"+OK\r\n".to_vec(),
        "CONFIG SET {flags}"
    );
    if lines.trim_start().starts_with("#resp3") {
        // The subscriber speaks RESP3: the events come as pushes. HELLO's
        // reply names the server, so it is not compared.
        call(sub, &args("HELLO 3"));
    }
    sub.send(&multibulk(&[
        b"PSUBSCRIBE",
        b"__keyspace@*__:*",
        b"__keyevent@*__:*",
    ]));
    receive(sub);
    receive(sub);
    sub.send(&multibulk(&[b"SUBSCRIBE", MARK.as_bytes()]));
    receive(sub);
    let mut out = Vec::new();
    let mut in_multi = false;
    for line in lines.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(ms) = line.strip_prefix("sleep ") {
            std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap()));
            continue;
        }
        let mut got = call(writer, &args(line));
        // Inside MULTI the marker would be queued too: nothing fires
        // before EXEC.
        let upper = line.to_ascii_uppercase();
        if upper == "MULTI" {
            in_multi = true;
        } else if upper == "EXEC" || upper == "DISCARD" {
            in_multi = false;
        }
        if in_multi {
            out.push((line.to_string(), got));
            continue;
        }
        got.extend_from_slice(b" | ");
        call(writer, &args(&format!("PUBLISH {MARK} x")));
        let mut messages = 0;
        loop {
            let raw = receive(sub);
            if raw.windows(MARK.len()).any(|w| w == MARK.as_bytes()) || raw == b"<closed>" {
                break;
            }
            got.extend(raw);
            messages += 1;
            assert!(messages < MESSAGES_PER_COMMAND_MAX, "{line}: too many");
        }
        out.push((line.to_string(), got));
    }
    out
}

/// Runs the commands on both servers and compares what each fired.
fn differential(name: &str, flags: &str, lines: &str) {
    let Some(redis) = RedisProcess::start(&[]) else {
        return;
    };
    let chorus = ChorusProcess::start(&[]);
    let got = run(&mut chorus.connect(), &mut chorus.connect(), flags, lines);
    let want = run(&mut redis.connect(), &mut redis.connect(), flags, lines);
    let mut failures = Vec::new();
    for ((line, got), (_, want)) in got.iter().zip(&want) {
        if got != want {
            failures.push(format!(
                "  {line}\n    chorus: {}\n    redis:  {}",
                show(got),
                show(want)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} command(s) fired differently from redis-server:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn strings() {
    differential(
        "strings",
        "KEA",
        r#"
        SET s v
        SET s v NX
        SET s w XX GET
        SETNX s2 v
        SETNX s2 v
        SET s v EX 100
        SET s v KEEPTTL
        SETEX s 100 v
        PSETEX s 100000 v
        GETSET s w
        MSET a 1 b 2
        MSETNX a 1 c 3
        MSETNX c 3 d 4
        APPEND s xyz
        APPEND new xyz
        SETRANGE s 1 QQ
        INCR n
        DECR n
        INCRBY n 10
        DECRBY n 3
        INCRBYFLOAT f 1.5
        INCR s
        GETEX s EX 100
        GETEX s PERSIST
        GETEX s
        GETDEL s
        GETDEL s
        GET a
        "#,
    );
}

#[test]
fn generic() {
    differential(
        "generic",
        "KEA",
        r#"
        SET a 1
        SET b 2
        DEL a b nothere
        SET a 1
        UNLINK a
        SET k v
        EXPIRE k 100
        PEXPIRE k 100000
        EXPIREAT k 99999999999
        PERSIST k
        PERSIST k
        EXPIRE k 100 NX
        EXPIRE k 100 NX
        EXPIRE k -1
        EXISTS k
        SET k v
        RENAME k k2
        SET k v
        RENAME k k2
        RENAMENX k2 k3
        SET k v
        RENAMENX k3 k
        COPY k3 c
        COPY k3 c
        COPY k3 c REPLACE
        MOVE c 1
        SET c v
        MOVE c 1
        TOUCH c k
        # A MULTI group fires its commands' events at EXEC, in order.
        MULTI
        SET m 1
        INCR m
        DEL m
        EXEC
        EVAL "redis.call('set', KEYS[1], 'v'); return redis.call('expire', KEYS[1], 100)" 1 lua
        "#,
    );
}

#[test]
fn lists() {
    differential(
        "lists",
        "KEA",
        r#"
        LPUSH l a b
        RPUSH l c d
        LPUSHX l x
        RPUSHX l y
        LPUSHX none x
        LINSERT l BEFORE c i
        LINSERT l BEFORE zz i
        LSET l 0 s
        LPOP l
        RPOP l
        LPOP l 2
        LREM l 1 c
        LREM l 1 nothere
        LTRIM l 0 0
        RPUSH l2 1 2 3
        LMOVE l2 l3 RIGHT LEFT
        LMOVE l2 l3 LEFT RIGHT
        RPOPLPUSH l2 l3
        LMPOP 2 l l3 RIGHT COUNT 2
        LMPOP 1 l3 LEFT
        LPOP l
        LPOP l
        RPUSH l4 only
        LTRIM l4 1 0
        RPUSH b 1 2 3
        BLPOP b 0
        BRPOP b 0
        BLMOVE b b2 LEFT RIGHT 0
        BLMPOP 0 1 b2 RIGHT
        "#,
    );
}

#[test]
fn hashes() {
    differential(
        "hashes",
        "KEA",
        r#"
        HSET h a 1 b 2
        HSET h a 1
        HMSET h c 3
        HSETNX h a 9
        HSETNX h d 4
        HINCRBY h n 5
        HINCRBYFLOAT h f 1.5
        HDEL h a b nothere
        HDEL h nothere
        HDEL h c d n f
        "#,
    );
}

#[test]
fn sets() {
    differential(
        "sets",
        "KEA",
        r#"
        SADD s a b c
        SADD s a
        SREM s a nothere
        SREM s nothere
        SADD t b x
        SINTERSTORE i s t
        SUNIONSTORE u s t
        SDIFFSTORE d s t
        SINTERSTORE i s nothere
        SMOVE t s x
        SMOVE t s b
        # SPOP's choice is random: one member each, so the replies agree.
        SADD one m
        SPOP one
        SADD two m
        SPOP two 5
        SPOP two
        SREM s b c x
        "#,
    );
}

#[test]
fn sorted_sets() {
    differential(
        "sorted_sets",
        "KEA",
        r#"
        ZADD z 1 a 2 b 3 c 4 d
        ZADD z 1 a
        ZADD z INCR 5 a
        ZINCRBY z 1 b
        ZREM z d nothere
        ZREM z nothere
        ZADD y 1 b 9 x
        ZUNIONSTORE u 2 z y
        ZINTERSTORE i 2 z y
        ZDIFFSTORE d 2 z y
        ZRANGESTORE r z 0 1
        ZINTERSTORE i 2 z nothere
        ZPOPMIN u
        ZPOPMAX u
        ZMPOP 1 u MAX
        ZMPOP 1 z MIN COUNT 1
        ZREMRANGEBYSCORE z 0 3
        ZADD z 1 a 2 b
        ZREMRANGEBYRANK z 0 0
        ZADD l 0 a 0 b 0 c
        ZREMRANGEBYLEX l [a [b
        ZREM l c
        "#,
    );
}

#[test]
fn geo() {
    differential(
        "geo",
        "KEA",
        r#"
        GEOADD g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
        GEOADD g NX 1 1 Palermo
        GEOADD g XX CH 13.4 38.1 Palermo
        GEOSEARCHSTORE s g FROMLONLAT 15 37 BYRADIUS 200 km
        GEOSEARCHSTORE s g FROMLONLAT 15 37 BYRADIUS 1 m
        GEORADIUS g 15 37 200 km STORE r
        GEORADIUSBYMEMBER g Palermo 300 km STOREDIST r2
        GEORADIUS g 15 37 1 m STORE r
        GEOSEARCH g FROMMEMBER Palermo BYRADIUS 300 km
        "#,
    );
}

#[test]
fn classes_filter_and_new_keys() {
    differential(
        "keyspace only, lists and generic",
        "Klg",
        r#"
        SET s v
        RPUSH l a
        DEL s l
        "#,
    );
    differential(
        "keyevent only, strings and new keys",
        "E$n",
        r#"
        SET s v
        SET s w
        HSET h f v
        INCR n
        DEL s
        "#,
    );
    differential(
        "off",
        "",
        r#"
        SET s v
        DEL s
        "#,
    );
}

#[test]
fn events_reach_a_resp3_subscriber_as_pushes() {
    differential(
        "resp3",
        "KEA",
        r#"#resp3
        SET s v
        LPUSH l a
        DEL s l
        "#,
    );
}

#[test]
fn a_write_to_an_expired_key_fires_expired_first() {
    differential(
        "expired",
        "KEA",
        r#"
        SET k v PX 1
        sleep 30
        SET k w
        HSET h f v
        PEXPIRE h 1
        sleep 30
        HSET h g v
        "#,
    );
}

#[test]
fn config_get_and_set() {
    differential(
        "config",
        "",
        r#"
        CONFIG GET notify-keyspace-events
        CONFIG SET notify-keyspace-events KEA
        CONFIG GET notify-keyspace-events
        CONFIG SET notify-keyspace-events nKE$
        CONFIG GET notify-keyspace-events
        CONFIG SET notify-keyspace-events Kq
        CONFIG GET notify-keyspace-events
        "#,
    );
}

/// A subscriber to the notifications that stops reading is disconnected
/// once its pending output passes the `pubsub` hard limit, on both servers;
/// the writers whose changes it was sent are never held up.
#[test]
fn a_subscriber_that_stops_reading_is_disconnected_and_writers_go_on() {
    let Some(redis) = RedisProcess::start(&[]) else {
        return;
    };
    let chorus = ChorusProcess::start(&[]);
    for (name, port) in [("chorus", chorus.port), ("redis", redis.port)] {
        let mut writer = Conn::connect(port);
        for set in [
            "CONFIG SET client-output-buffer-limit \"pubsub 1mb 0 0\"",
            "CONFIG SET notify-keyspace-events KEA",
        ] {
            assert_eq!(call(&mut writer, &args(set)), b"+OK\r\n".to_vec(), "{name}");
        }
        let mut slow = Conn::connect(port);
        slow.send(&multibulk(&[b"PSUBSCRIBE", b"__key*__:*"]));
        receive(&mut slow);
        // Each SET of a 16 KiB key fires two messages that carry the key.
        let key = "k".repeat(16 * 1024);
        let started = std::time::Instant::now();
        let deadline = started + std::time::Duration::from_secs(20);
        let mut writes = 0;
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: the subscriber was never dropped"
            );
            for _ in 0..16 {
                let reply = call(&mut writer, &[String::from("SET"), key.clone(), "v".into()]);
                assert_eq!(reply, b"+OK\r\n".to_vec(), "{name}");
                writes += 1;
            }
            let list = call(&mut writer, &args("CLIENT LIST TYPE pubsub"));
            if list == b"$0\r\n\r\n".to_vec() {
                break;
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{name}: writers were held up"
        );
        assert!(writes > 16, "{name}: dropped before the buffers filled");
        // The connection is closed once the kernel's buffers are read.
        assert!(slow.until_closed().ends_with(b"<closed>"), "{name}");
    }
}
