//! Differential tests of pub/sub: the same scenario goes to chorus-server
//! and to a real redis-server, over several connections each, and what each
//! connection receives is compared byte for byte (replies, subscription
//! confirmations, messages, errors), in RESP2 and RESP3.
//!
//! A step sends a command on one connection and reads a given number of
//! frames there (a SUBSCRIBE of two channels answers two), or only reads
//! (messages published by another connection). Replies whose order Redis
//! leaves undefined (PUBSUB CHANNELS) are compared sorted. Then slow
//! subscribers and CLIENT KILL are checked on both servers, and the `redis`
//! crate's pub/sub API is run against chorus-server.
//!
//! Without redis-server the tests print a SKIPPED line and pass, unless
//! `CHORUS_REQUIRE_REDIS=1`.

use std::time::{Duration, Instant};

use chorus_engine::Reply;
use chorus_testkit::{multibulk, show, ChorusProcess, Conn, Received, RedisProcess};

/// How a step's frames are compared.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Exact,
    /// The top-level array's elements, sorted.
    Sorted,
    /// Not compared (HELLO: the server names differ).
    Ignore,
}

struct Step {
    conn: usize,
    /// None: only read.
    args: Option<Vec<String>>,
    frames: usize,
    mode: Mode,
}

/// One step per line: `<conn> <frames> [~|-] [command args...]`. A line
/// without a command only reads. `"..."` quotes an argument.
fn steps(text: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut tokens = tokenize(line).into_iter();
        let conn = tokens.next().and_then(|t| t.parse().ok()).expect("conn");
        let frames = tokens.next().and_then(|t| t.parse().ok()).expect("frames");
        let mut rest: Vec<String> = tokens.collect();
        let mode = match rest.first().map(String::as_str) {
            Some("~") => Mode::Sorted,
            Some("-") => Mode::Ignore,
            _ => Mode::Exact,
        };
        if mode != Mode::Exact {
            rest.remove(0);
        }
        out.push(Step {
            conn,
            args: (!rest.is_empty()).then_some(rest),
            frames,
            mode,
        });
    }
    out
}

fn tokenize(line: &str) -> Vec<String> {
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

fn sorted(raw: &[u8]) -> Vec<u8> {
    match chorus_server::resp::decode::decode_reply(raw) {
        Ok(Some((Reply::Array(mut items), _))) => {
            items.sort_by_key(|r| format!("{r:?}"));
            format!("{items:?}").into_bytes()
        }
        _ => raw.to_vec(),
    }
}

/// Runs the steps on `conns`; returns what each step received.
fn run(conns: &mut [Conn], steps: &[Step]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for step in steps {
        let conn = &mut conns[step.conn];
        if let Some(args) = &step.args {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            conn.send(&multibulk(&args));
        }
        let mut got = Vec::new();
        for _ in 0..step.frames {
            match conn.receive() {
                Received::Reply(_, raw) => got.extend(raw),
                Received::Closed => {
                    got.extend_from_slice(b"<closed>");
                    break;
                }
            }
        }
        out.push(match step.mode {
            Mode::Exact => got,
            Mode::Sorted => sorted(&got),
            Mode::Ignore => Vec::new(),
        });
    }
    out
}

fn servers() -> Option<(ChorusProcess, RedisProcess)> {
    let redis = RedisProcess::start(&[])?;
    Some((ChorusProcess::start(&[]), redis))
}

/// Runs a scenario on both servers, fresh connections each, and compares.
fn differential(name: &str, text: &str) {
    let Some((chorus, redis)) = servers() else {
        return;
    };
    let steps = steps(text);
    let conns = steps.iter().map(|s| s.conn).max().unwrap_or(0) + 1;
    let mut ours: Vec<Conn> = (0..conns).map(|_| chorus.connect()).collect();
    let mut theirs: Vec<Conn> = (0..conns).map(|_| redis.connect()).collect();
    let got = run(&mut ours, &steps);
    let want = run(&mut theirs, &steps);
    let mut failures = Vec::new();
    for ((step, got), want) in steps.iter().zip(&got).zip(&want) {
        if got != want {
            failures.push(format!(
                "  [{}] {:?}\n    chorus: {}\n    redis:  {}",
                step.conn,
                step.args,
                show(got),
                show(want)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} step(s) differ from redis-server:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn subscribe_publish_and_unsubscribe_resp2() {
    differential(
        "resp2",
        r#"
        0 2 SUBSCRIBE news sport
        0 1 SUBSCRIBE news
        0 1 PSUBSCRIBE h?llo
        1 1 PUBLISH news "breaking story"
        0 1
        1 1 PUBLISH hello x
        0 1
        1 1 PUBLISH hxllo ""
        0 1
        1 1 PUBLISH nobody x
        1 1 PUBSUB NUMSUB news sport nobody
        1 1 PUBSUB NUMSUB
        1 1 PUBSUB NUMPAT
        1 1 ~ PUBSUB CHANNELS
        1 1 ~ PUBSUB CHANNELS n*
        1 1 PUBSUB CHANNELS "[x"
        1 1 PUBSUB CHANNELS a b
        1 1 PUBSUB NUMPAT x
        1 1 PUBSUB FOO
        1 1 PUBSUB
        1 1 PUBSUB HELP
        1 1 SUBSCRIBE
        1 1 PUBLISH onlyone
        0 1 GET k
        0 1 SET k v
        0 1 MULTI
        0 1 CLIENT ID
        0 1 PING
        0 1 PING hi
        0 1 PING a b
        0 1 UNSUBSCRIBE news
        0 1 UNSUBSCRIBE nothere
        1 1 PUBLISH news again
        1 1 PUBLISH sport again
        0 1
        0 1 UNSUBSCRIBE
        0 1 PUNSUBSCRIBE
        0 1 UNSUBSCRIBE
        0 1 PUNSUBSCRIBE
        0 1 SUNSUBSCRIBE
        0 1 GET k
        0 1 PING
        1 1 PUBSUB NUMPAT
        1 1 PUBSUB CHANNELS
        "#,
    );
}

#[test]
fn shard_channels_resp2() {
    differential(
        "shard",
        r#"
        0 2 SSUBSCRIBE s1 s2
        0 1 SUBSCRIBE c1
        1 1 SPUBLISH s1 m1
        0 1
        1 1 PUBLISH s1 m1
        1 1 SPUBLISH c1 m1
        1 1 ~ PUBSUB SHARDCHANNELS
        1 1 PUBSUB SHARDCHANNELS s1
        1 1 PUBSUB SHARDNUMSUB s1 s2 s3
        1 1 PUBSUB NUMSUB s1
        0 1 GET k
        0 1 SUNSUBSCRIBE s1
        0 1 UNSUBSCRIBE c1
        0 1 GET k
        0 1 SUNSUBSCRIBE
        0 1 GET k
        1 1 PUBSUB SHARDNUMSUB s1 s2
        "#,
    );
}

#[test]
fn resp3_pushes_and_commands_while_subscribed() {
    differential(
        "resp3",
        r#"
        0 1 - HELLO 3
        1 1 - HELLO 3
        0 2 SUBSCRIBE a b
        0 1 PSUBSCRIBE *
        0 1 SET k v
        0 1 GET k
        0 1 PING
        0 2 PUBLISH zzz me
        1 1 PUBLISH a x
        0 2
        0 1 PUNSUBSCRIBE *
        0 1 UNSUBSCRIBE a
        0 1 UNSUBSCRIBE b
        0 1 UNSUBSCRIBE
        0 1 DEL k
        "#,
    );
}

#[test]
fn reset_and_quit_leave_every_subscription() {
    differential(
        "reset-quit",
        r#"
        0 1 SUBSCRIBE a
        0 1 PSUBSCRIBE p*
        0 1 SSUBSCRIBE s
        0 1 RESET
        0 1 GET k
        1 1 PUBSUB NUMSUB a
        1 1 PUBSUB NUMPAT
        1 1 PUBSUB SHARDNUMSUB s
        1 1 PUBLISH a x
        2 1 SUBSCRIBE a
        2 1 QUIT
        2 1
        1 1 PUBSUB NUMSUB a
        "#,
    );
}

/// Polls `f` until it returns true or a deadline passes.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A subscriber that stops reading is disconnected once its pending output
/// passes the `pubsub` hard limit, on both servers; its publisher is never
/// blocked.
#[test]
fn a_slow_subscriber_is_disconnected_at_the_hard_limit() {
    let Some((chorus, redis)) = servers() else {
        return;
    };
    for (name, port) in [("chorus", chorus.port), ("redis", redis.port)] {
        let mut admin = Conn::connect(port);
        assert_eq!(
            admin.cmd(&[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "pubsub 1mb 0 0"
            ]),
            Reply::Ok
        );
        let mut slow = Conn::connect(port);
        slow.cmd(&["SUBSCRIBE", "firehose"]);
        let payload = "x".repeat(64 * 1024);
        let started = Instant::now();
        let mut published = 0;
        // The socket buffers absorb some megabytes first; then the limit.
        eventually(
            &format!("{name}: the slow subscriber to be dropped"),
            || {
                for _ in 0..16 {
                    admin.cmd(&["PUBLISH", "firehose", &payload]);
                    published += 1;
                }
                admin.cmd(&["PUBSUB", "NUMSUB", "firehose"])
                    == Reply::Array(vec![Reply::bulk("firehose"), Reply::Int(0)])
            },
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{name}: publishing was held up"
        );
        assert!(published > 16, "{name}: dropped before the buffers filled");
        // The connection is closed once the kernel's buffers are read.
        assert!(slow.until_closed().ends_with(b"<closed>"));
        assert_eq!(
            admin.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]),
            Reply::bulk(""),
            "{name}"
        );
    }
}

/// CLIENT KILL TYPE pubsub closes subscribers only; CLIENT LIST shows them
/// with Redis's fields.
#[test]
fn client_kill_and_list_of_subscribers() {
    let Some((chorus, redis)) = servers() else {
        return;
    };
    for (name, port) in [("chorus", chorus.port), ("redis", redis.port)] {
        let mut admin = Conn::connect(port);
        let mut sub = Conn::connect(port);
        sub.send(&multibulk(&[b"SUBSCRIBE", b"a", b"b"]));
        sub.receive();
        sub.receive();
        sub.cmd(&["PSUBSCRIBE", "p*"]);
        sub.cmd(&["SSUBSCRIBE", "s"]);
        let list = match admin.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]) {
            Reply::Verbatim(s) => s,
            Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(list.lines().count(), 1, "{name}: {list}");
        for field in [
            " flags=P ",
            " sub=2 ",
            " psub=1 ",
            " ssub=1 ",
            " cmd=ssubscribe ",
        ] {
            assert!(list.contains(field), "{name}: {field} missing in {list}");
        }
        let normal = format!("{:?}", admin.cmd(&["CLIENT", "LIST", "TYPE", "normal"]));
        assert_eq!(normal.matches("id=").count(), 1, "{name}: {normal}");
        assert_eq!(
            admin.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]),
            Reply::Int(1)
        );
        assert_eq!(sub.until_closed(), b"<closed>".to_vec(), "{name}");
        eventually(&format!("{name}: the killed subscriber gone"), || {
            admin.cmd(&["PUBSUB", "NUMPAT"]) == Reply::Int(0)
        });
        assert_eq!(admin.cmd(&["PUBLISH", "a", "x"]), Reply::Int(0));
    }
}

/// The `redis` crate's pub/sub API against chorus-server: subscribe to a
/// channel and a pattern, receive what another connection publishes.
#[test]
fn redis_crate_pubsub_api() {
    let chorus = ChorusProcess::start(&[]);
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{}/", chorus.port)).expect("client");
    let mut sub_conn = client.get_connection().expect("connect");
    let mut publisher = client.get_connection().expect("connect");
    let mut pubsub = sub_conn.as_pubsub();
    pubsub.subscribe("orders").expect("subscribe");
    pubsub.psubscribe("invoice.*").expect("psubscribe");
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let n: i64 = redis::cmd("PUBLISH")
        .arg("orders")
        .arg("order 1")
        .query(&mut publisher)
        .expect("publish");
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("PUBLISH")
        .arg("invoice.eu")
        .arg("invoice 7")
        .query(&mut publisher)
        .expect("publish");
    assert_eq!(n, 1);
    let first = pubsub.get_message().expect("message");
    assert_eq!(first.get_channel_name(), "orders");
    assert_eq!(first.get_payload::<String>().expect("payload"), "order 1");
    let second = pubsub.get_message().expect("message");
    assert_eq!(second.get_channel_name(), "invoice.eu");
    assert_eq!(
        second.get_pattern::<String>().expect("pattern"),
        "invoice.*"
    );
    assert_eq!(
        second.get_payload::<String>().expect("payload"),
        "invoice 7"
    );
    pubsub.unsubscribe("orders").expect("unsubscribe");
    pubsub.punsubscribe("invoice.*").expect("punsubscribe");
    drop(pubsub);
    // Back to a normal connection: commands work again.
    let pong: String = redis::cmd("PING").query(&mut sub_conn).expect("ping");
    assert_eq!(pong, "PONG");
    let n: i64 = redis::cmd("PUBLISH")
        .arg("orders")
        .arg("late")
        .query(&mut publisher)
        .expect("publish");
    assert_eq!(n, 0);
}

/// Many subscribers of one channel all receive every message, in publish
/// order, while several publishers publish at once.
#[test]
fn fan_out_keeps_publish_order_per_publisher() {
    let chorus = ChorusProcess::start(&[]);
    let mut subs: Vec<Conn> = (0..8).map(|_| chorus.connect()).collect();
    for sub in &mut subs {
        sub.cmd(&["SUBSCRIBE", "fan"]);
    }
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let port = chorus.port;
            std::thread::spawn(move || {
                let mut conn = Conn::connect(port);
                for i in 0..500 {
                    let n = conn.cmd(&["PUBLISH", "fan", &format!("{p}:{i}")]);
                    assert_eq!(n, Reply::Int(8));
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().expect("publisher");
    }
    for sub in &mut subs {
        let mut next = [0u32; 2];
        for _ in 0..1000 {
            let Received::Reply(Reply::Array(items), _) = sub.receive() else {
                panic!("closed");
            };
            let Some(Reply::Bulk(payload)) = items.get(2) else {
                panic!("{items:?}");
            };
            let text = String::from_utf8_lossy(payload);
            let (p, i) = text.split_once(':').expect("p:i");
            let p: usize = p.parse().expect("p");
            assert_eq!(i.parse::<u32>().expect("i"), next[p], "out of order");
            next[p] += 1;
        }
    }
}

/// A subscriber flooded with messages can still unsubscribe: its
/// connection reads its socket between bounded slices of messages.
#[test]
fn a_flooded_subscriber_can_still_unsubscribe() {
    let chorus = ChorusProcess::start(&[]);
    let mut sub = chorus.connect();
    sub.cmd(&["SUBSCRIBE", "flood"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (port, stop) = (chorus.port, std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut conn = Conn::connect(port);
            let payload = "p".repeat(512);
            let deadline = Instant::now() + Duration::from_secs(30);
            // Pipelined bursts, so messages arrive faster than one reader.
            let burst: Vec<u8> = (0..64)
                .flat_map(|_| multibulk(&[b"PUBLISH", b"flood", payload.as_bytes()]))
                .collect();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                conn.exchange(&burst, 64);
            }
        })
    };
    for _ in 0..100 {
        assert!(matches!(sub.receive(), Received::Reply(..)));
    }
    sub.send(&multibulk(&[b"UNSUBSCRIBE", b"flood"]));
    let started = Instant::now();
    loop {
        match sub.receive() {
            Received::Reply(Reply::Array(items), _)
                if items.first() == Some(&Reply::bulk("unsubscribe")) =>
            {
                break
            }
            Received::Reply(..) => {}
            Received::Closed => panic!("closed"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "UNSUBSCRIBE not served while flooded"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    publisher.join().expect("publisher");
    assert_eq!(
        sub.cmd(&["PUBSUB", "NUMSUB", "flood"]),
        Reply::Array(vec![Reply::bulk("flood"), Reply::Int(0)])
    );
}
