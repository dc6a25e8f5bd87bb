//! Differential tests of the blocking pops (BLPOP, BRPOP, BLMOVE,
//! BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP) with several clients: the
//! same scenario runs against chorus-server and a real redis-server, and
//! every reply is compared byte for byte.
//!
//! A scenario is one step per line, on connection 0, 1 or 2:
//! - `N CMD args` sends the command and reads its reply;
//! - `N> CMD args` sends it without reading (the client blocks);
//! - `N<` reads the reply of what `N>` sent;
//! - `N close` closes connection N and opens a new one;
//! - `sleep MS` waits (so a blocked client is registered before a push);
//! - a leading `-` sends and reads but does not compare (CLIENT ID);
//! - `$IDN` in an argument is connection N's CLIENT ID on that server.
//!
//! Without redis-server the tests print a SKIPPED line and pass, unless
//! `CHORUS_REQUIRE_REDIS=1`.

use chorus_testkit::{multibulk, show, ChorusProcess, Conn, Received, RedisProcess};
use std::time::Duration;

const CONNS: usize = 3;

/// Runs a scenario against the server on `port`; the replies, one per
/// compared step, with the step's text.
fn run(port: u16, scenario: &str) -> Vec<(String, Vec<u8>)> {
    let mut conns: Vec<Conn> = (0..CONNS).map(|_| Conn::connect(port)).collect();
    assert_eq!(conns[0].call(&[b"FLUSHALL"]), b"+OK\r\n");
    let mut ids: Vec<String> = conns.iter_mut().map(client_id).collect();
    let mut out = Vec::new();
    for line in scenario.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(ms) = line.strip_prefix("sleep ") {
            std::thread::sleep(Duration::from_millis(ms.parse().expect("sleep ms")));
            continue;
        }
        let (compare, line) = match line.strip_prefix("- ") {
            Some(rest) => (false, rest),
            None => (true, line),
        };
        let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
        let n: usize = head
            .trim_end_matches(['>', '<'])
            .parse()
            .expect("connection");
        if rest == "close" {
            conns[n] = Conn::connect(port);
            ids[n] = client_id(&mut conns[n]);
            continue;
        }
        let args: Vec<String> = rest
            .split(' ')
            .filter(|a| !a.is_empty())
            .map(|a| {
                let mut a = a.to_string();
                for (i, id) in ids.iter().enumerate() {
                    a = a.replace(&format!("$ID{i}"), id);
                }
                a
            })
            .collect();
        let raw: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let reply = if head.ends_with('>') {
            conns[n].send(&multibulk(&raw));
            continue;
        } else if head.ends_with('<') {
            receive(&mut conns[n])
        } else {
            conns[n].send(&multibulk(&raw));
            receive(&mut conns[n])
        };
        if compare {
            out.push((line.to_string(), reply));
        }
    }
    out
}

fn receive(c: &mut Conn) -> Vec<u8> {
    match c.receive() {
        Received::Reply(_, raw) => raw,
        Received::Closed => b"<closed>".to_vec(),
    }
}

fn client_id(c: &mut Conn) -> String {
    let raw = c.call(&[b"CLIENT", b"ID"]);
    String::from_utf8_lossy(&raw)
        .trim_start_matches(':')
        .trim()
        .to_string()
}

fn check(name: &str, scenario: &str) {
    let Some(redis) = RedisProcess::start(&[]) else {
        return;
    };
    let chorus = ChorusProcess::start(&[]);
    let want = run(redis.port, scenario);
    let got = run(chorus.port, scenario);
    assert_eq!(want.len(), got.len());
    let mismatches: Vec<String> = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| g.1 != w.1)
        .map(|(g, w)| {
            format!(
                "[{name}] {}\n  chorus {}\n  redis  {}",
                g.0,
                show(&g.1),
                show(&w.1)
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} replies differ from Redis:\n\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}

#[test]
fn a_blocked_pop_wakes_on_a_push_from_another_client() {
    check(
        "wake",
        r#"
0> BLPOP q 0
sleep 150
1 RPUSH q a b
0<
1 LRANGE q 0 -1
0> BRPOP none q 0
sleep 150
1 LPUSH q x
0<
0> BLPOP a b 0
sleep 150
1 RPUSH b x
0<
1 EXISTS b
"#,
    );
}

#[test]
fn blocked_clients_are_served_first_come_first_served() {
    check(
        "fifo",
        r#"
0> BLPOP q 0
sleep 150
1> BLPOP q 0
sleep 150
2 RPUSH q x
0<
2 RPUSH q y z
1<
2 LRANGE q 0 -1
"#,
    );
}

#[test]
fn every_blocking_pop_wakes_with_redis_s_reply() {
    check(
        "kinds",
        r#"
0> BLMOVE src dst LEFT RIGHT 0
sleep 150
1 RPUSH src a b
0<
1 LRANGE dst 0 -1
1 LRANGE src 0 -1
0> BRPOPLPUSH empty dst 0
sleep 150
1 RPUSH empty c
0<
1 LRANGE dst 0 -1
0> BLMPOP 0 2 m1 m2 RIGHT COUNT 2
sleep 150
1 RPUSH m2 1 2 3
0<
0> BZPOPMIN z 0
sleep 150
1 ZADD z 1 m 2 n
0<
0> BZPOPMAX z 0
sleep 150
1 ZADD z 3 o
0<
1 ZRANGE z 0 -1 WITHSCORES
0> BZMPOP 0 1 z2 MAX COUNT 5
sleep 150
1 ZADD z2 1 a 2 b
0<
"#,
    );
}

#[test]
fn timeouts_errors_and_multi_match_redis() {
    check(
        "timeouts",
        r#"
0 BLPOP none 0.1
0 BRPOP none 0.05
0 BLMOVE none dst LEFT LEFT 0.05
0 BRPOPLPUSH none dst 0.05
0 BLMPOP 0.05 1 none LEFT
0 BZPOPMIN none 0.05
0 BZPOPMAX none 0.05
0 BZMPOP 0.05 1 none MIN
0 BLPOP q -1
0 BLPOP q x
0 BLPOP q inf
0 BLPOP q nan
0 BLPOP q 1e100
0 BLPOP q 9223372036854776
0 BLPOP q 9223372036854775807
0 BLMOVE a b UP LEFT 0
0 BLMOVE a b LEFT LEFT x
0 BLMPOP x 1 k LEFT
0 BLMPOP 0 0 k LEFT
0 BLMPOP 0 1 k UP
0 BLMPOP 0 1 k LEFT COUNT 0
0 BZMPOP x 1 k MIN
0 BZMPOP 0 1 k UP
0 BZPOPMIN k x
0 SET s v
0 BLPOP s 0
0 BRPOPLPUSH s dst 0
0 BZPOPMIN s 0
0 BLMPOP 0 2 none s LEFT
0 RPUSH l a
0 BLMOVE l s LEFT LEFT 0
0 BLPOP
0 BLPOP k
0 BRPOP
0 BLMOVE a b LEFT
0 BRPOPLPUSH a b
0 BLMPOP 0 1 k
0 BZPOPMIN k
0 BZPOPMAX
0 BZMPOP 0 1 k
0 MULTI
0 BLPOP q 0
0 BRPOP q 0
0 BLMOVE q d LEFT LEFT 0
0 BRPOPLPUSH q d 0
0 BLMPOP 0 1 q LEFT
0 BZPOPMIN z 0
0 BZMPOP 0 1 z MIN
0 RPUSH q x
0 BLPOP q 0
0 EXEC
- 0 HELLO 3
0 BLPOP none 0.05
0 BLMOVE none dst LEFT LEFT 0.05
0 ZADD z 1 a 2 b
0 BZPOPMIN z 0
0 BZMPOP 0 1 z MIN
"#,
    );
}

#[test]
fn client_unblock_and_a_client_that_leaves_match_redis() {
    check(
        "unblock",
        r#"
0> BLPOP q 0
sleep 150
1 CLIENT UNBLOCK $ID0
0<
0> BLMOVE q d LEFT LEFT 0
sleep 150
1 CLIENT UNBLOCK $ID0 ERROR
0<
1 CLIENT UNBLOCK $ID0
1 CLIENT UNBLOCK 999999
1 CLIENT UNBLOCK x
1 CLIENT UNBLOCK $ID0 FOO
0> BLPOP q 0
sleep 150
0 close
sleep 150
1 RPUSH q a
1 LRANGE q 0 -1
"#,
    );
}

/// The `flags=` and `cmd=` fields of client `id`'s CLIENT LIST line, while it
/// is blocked in BLPOP and after a push served it.
fn blocked_flags(port: u16) -> Vec<String> {
    let mut c0 = Conn::connect(port);
    let mut c1 = Conn::connect(port);
    assert_eq!(c0.call(&[b"FLUSHALL"]), b"+OK\r\n");
    let id = client_id(&mut c1);
    let fields = |c0: &mut Conn| -> String {
        let raw = receive_list(c0);
        let line = raw
            .lines()
            .find(|l| l.starts_with(&format!("id={id} ")))
            .unwrap_or_else(|| panic!("no line for client {id} in {raw}"))
            .to_string();
        line.split(' ')
            .filter(|f| f.starts_with("flags=") || f.starts_with("cmd="))
            .collect::<Vec<_>>()
            .join(" ")
    };
    c1.send(&multibulk(&[b"BLPOP", b"q", b"0"]));
    let mut blocked = String::new();
    for _ in 0..100 {
        blocked = fields(&mut c0);
        if blocked.contains("cmd=blpop") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c0.call(&[b"RPUSH", b"q", b"x"]), b":1\r\n");
    let served = receive(&mut c1);
    assert_eq!(served, b"*2\r\n$1\r\nq\r\n$1\r\nx\r\n");
    vec![blocked, fields(&mut c0)]
}

fn receive_list(c: &mut Conn) -> String {
    let raw = c.call(&[b"CLIENT", b"LIST"]);
    String::from_utf8_lossy(&raw).into_owned()
}

#[test]
fn client_list_marks_a_blocked_client_as_redis_does() {
    let chorus = ChorusProcess::start(&[]);
    let got = blocked_flags(chorus.port);
    assert_eq!(got, ["flags=b cmd=blpop", "flags=N cmd=blpop"]);
    if let Some(redis) = RedisProcess::start(&[]) {
        assert_eq!(blocked_flags(redis.port), got);
    }
}
