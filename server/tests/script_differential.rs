//! Differential tests of Lua scripting: the same EVAL / EVALSHA / SCRIPT
//! requests go to chorus-server and to a real redis-server, and the replies
//! are compared byte for byte (script results and their conversions, error
//! texts with the script's sha and line, the sandbox, cjson, bit, cmsgpack),
//! in RESP2 and RESP3.
//! Then the busy-script rules on both servers (BUSY replies, SCRIPT KILL,
//! UNKILLABLE), a script's writes as one op, and a lock helper through the
//! `redis` crate.
//!
//! Without redis-server the differential tests print a SKIPPED line and
//! pass, unless `CHORUS_REQUIRE_REDIS=1`.

use std::time::{Duration, Instant};

use chorus_engine::Reply;
use chorus_testkit::{multibulk, show, ChorusProcess, Conn, Received, RedisProcess};

/// Requests whose replies must be identical (the list is replayed in order
/// on one connection of each server).
const CASES: &[&[&str]] = &[
    &["set", "s", "a"],
    &["eval", "return redis.call('incr','s')", "0"],
    &["eval", "return redis.pcall('incr','s')", "0"],
    &["eval", "error('x')", "0"],
    &["eval", "error({err='MY bad'})", "0"],
    &["eval", "return redis.error_reply('boom')", "0"],
    &["eval", "return redis.error_reply('-X boom')", "0"],
    &["eval", "return {err='E1'}", "0"],
    &["eval", "return redis.status_reply('FINE')", "0"],
    &["eval", "retur", "0"],
    &["eval", "return x", "0"],
    &["eval", "y = 1", "0"],
    &["eval", "return 3.99", "0"],
    &["eval", "return {1,2,3.5,'a',nil,5}", "0"],
    &["eval", "return {true,false,nil}", "0"],
    &["eval", "return redis.call('get','nokey')", "0"],
    &["eval", "return redis.call('nosuch')", "0"],
    &["eval", "return redis.call('subscribe','x')", "0"],
    &["eval", "return redis.call('get')", "0"],
    &["eval_ro", "return redis.call('set','a','b')", "0"],
    &["eval", "return os", "0"],
    &["eval", "return loadfile", "0"],
    &["eval", "return redis.sha1hex('')", "0"],
    &["eval", "return KEYS[1]..ARGV[1]", "1", "k", "v"],
    &["eval", "return 1", "-1"],
    &["eval", "return 1", "x"],
    &["eval", "return 1", "2", "a"],
    &["evalsha", "ffffffffffffffffffffffffffffffffffffffff", "0"],
    &["evalsha", "fff", "0"],
    &["script", "load", "return 1"],
    &[
        "script",
        "exists",
        "e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
        "ff",
    ],
    &["evalsha", "E0E1F9FABFC9D4800C877A703B823AC0578FF8DB", "0"],
    &["script", "kill"],
    &["script", "flush", "x"],
    &["script", "foo"],
    &["eval", "return redis.call()", "0"],
    &["eval", "return redis.call(1)", "0"],
    &["eval", "return redis.call('set','a',{})", "0"],
    &[
        "eval",
        "redis.setresp(3); return redis.call('hgetall','nokey')",
        "0",
    ],
    &["eval", "redis.setresp(4)", "0"],
    &["eval", "return redis.call('ping')", "0"],
    &["eval", "return {double=3.5}", "0"],
    &["eval", "return redis.call('set','k',1.5)", "0"],
    &["eval", "return redis.call('get','k')", "0"],
    &["eval", "return redis.call('set','k',10)", "0"],
    &["eval", "return redis.call('get','k')", "0"],
    &[
        "eval",
        "local t = redis.call('hset','h','a','1','b','2') return redis.call('hgetall','h')",
        "0",
    ],
    &["eval", "return tonumber('12') + 1", "0"],
    &["eval", "return string.format('%d-%s', 5, 'x')", "0"],
    &["eval", "return table.concat({'a','b'}, ',')", "0"],
    &["eval", "return math.floor(2.7)", "0"],
    &["eval", "redis = nil", "0"],
    &[
        "eval",
        "local a = 1\nlocal b = 2\nreturn redis.call('incr','s')",
        "0",
    ],
    &["eval", "return redis.call('type','h')", "0"],
    &[
        "eval",
        "return {1,{2,{3,'x'}}, redis.status_reply('S')}",
        "0",
    ],
    &["eval", "return redis.call('exists','h','k','nope')", "0"],
    &["eval", "return -3.7", "0"],
    &["eval", "return false", "0"],
    &["eval", "return true", "0"],
    &["eval", "return nil", "0"],
    &["eval", "return print", "0"],
    &["eval", "return dofile", "0"],
    &["eval", "return setmetatable", "0"],
    &["eval", "return getfenv", "0"],
    &["eval", "return pcall(error, 'z')", "0"],
    &[
        "eval",
        "local ok, e = pcall(redis.call, 'incr', 's') return e.err",
        "0",
    ],
    &["script", "load", "retur"],
    &["eval", "return redis.call('multi')", "0"],
    &["eval", "return redis.call('eval','return 1','0')", "0"],
    &["eval", "return redis.call('script','kill')", "0"],
    &["eval", "return redis.call('publish','c','m')", "0"],
    &["eval", "return redis.call('select','1')", "0"],
    &["eval", "return unpack({1,2})", "0"],
    &["eval", "return loadstring('return 1')()", "0"],
    &["eval", "return select('#', 1, 2)", "0"],
    &["eval", "return {1, 2.9, -2.9, 'x', {true, false}}", "0"],
    &["eval", "return redis.call('hgetall', KEYS[1])", "1", "h"],
    &[
        "eval",
        "redis.setresp(3) return redis.call('hgetall', KEYS[1])",
        "1",
        "h",
    ],
    &[
        "eval",
        "redis.setresp(3) return redis.call('get', 'nokey')",
        "0",
    ],
    &["eval", "redis.setresp(3) return {double = 1.5}", "0"],
    &["eval", "redis.setresp(3) return true", "0"],
    &["eval", "redis.setresp(3) return false", "0"],
    &[
        "eval",
        "return redis.call('zadd', 'z', 1, 'a', 2.5, 'b')",
        "0",
    ],
    &[
        "eval",
        "return redis.call('zrange', 'z', 0, -1, 'withscores')",
        "0",
    ],
    &[
        "eval",
        "redis.setresp(3) return redis.call('zscore', 'z', 'b')",
        "0",
    ],
    &["eval", "return redis.call('zscore', 'z', 'b')", "0"],
    &["eval", "return redis.call('smembers', 'nokey')", "0"],
    &["eval", "return #KEYS + #ARGV", "2", "a", "b", "c"],
    &["eval", "return ARGV", "0", "x", "", "z"],
    &["eval", "return string.rep('ab', 3)", "0"],
    &[
        "eval",
        "local t = {} for i = 1, 5 do t[i] = i * i end return t",
        "0",
    ],
    // cjson
    &[r#"eval"#, r#"return cjson.encode({1,2,3})"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.encode({})"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.encode({a=1})"#, r#"0"#],
    &[
        r#"eval"#,
        r#"return cjson.encode({a={b={1.5, 'x/y', true, false}}})"#,
        r#"0"#,
    ],
    &[
        r#"eval"#,
        r#"return cjson.encode('a"b\\c\n\1\127')"#,
        r#"0"#,
    ],
    &[r#"eval"#, r#"return cjson.encode(0.1)"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.encode(1e20)"#, r#"0"#],
    &[
        r#"eval"#,
        r#"return cjson.encode(123456789012345678)"#,
        r#"0"#,
    ],
    &[r#"eval"#, r#"return cjson.encode(-0.5)"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.encode(1/0)"#, r#"0"#],
    &[
        r#"eval"#,
        r#"return cjson.encode({[1]=1,[2]=2,[4]=4})"#,
        r#"0"#,
    ],
    &[r#"eval"#, r#"return cjson.encode({[1]=1,[20]=2})"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.encode({[1.5]=1})"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.encode(print)"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.encode(redis.call)"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.encode({[true]=1})"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.encode(cjson.null)"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.encode(nil)"#, r#"0"#],
    &[
        r#"eval"#,
        r#"local t = cjson.decode('{"a":[1,2,{"b":null}],"c":"d"}') return {t.a[1], t.a[2], t.c, type(t.a[3].b), t.a[3].b == cjson.null}"#,
        r#"0"#,
    ],
    &[r#"eval"#, r#"return cjson.decode('[1,2,3]')"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.decode('"\\u00e9"')"#, r#"0"#],
    &[r#"eval"#, r#"return cjson.decode('3.7')"#, r#"0"#],
    &[r#"eval"#, r#"return type(cjson.decode('null'))"#, r#"0"#],
    &[
        r#"eval"#,
        r#"return cjson.encode(cjson.decode('{"k":[true,false,null,1.25,"s"]}'))"#,
        r#"0"#,
    ],
    // bit
    &[
        r#"eval"#,
        r#"return {bit.band(0xff, 0x0f), bit.bor(1, 2, 4), bit.bxor(5, 3), bit.bnot(0)}"#,
        r#"0"#,
    ],
    &[
        r#"eval"#,
        r#"return {bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-256, 4), bit.rol(0x12345678, 12), bit.ror(0x12345678, 12)}"#,
        r#"0"#,
    ],
    &[
        r#"eval"#,
        r#"return {bit.tobit(0xffffffff), bit.tobit(2^32 + 5), bit.tobit(1.5), bit.tobit(2.5), bit.tobit(-3.5)}"#,
        r#"0"#,
    ],
    &[
        r#"eval"#,
        r#"return {bit.tohex(255), bit.tohex(-1), bit.tohex(255, 2), bit.tohex(255, -4), bit.tohex(0x12345678, 3)}"#,
        r#"0"#,
    ],
    &[
        r#"eval"#,
        r#"return {bit.bswap(0x12345678), bit.band('12', 10), bit.lshift(1, 33)}"#,
        r#"0"#,
    ],
    &[r#"eval"#, r#"return bit.band()"#, r#"0"#],
    &[r#"eval"#, r#"return bit.band(1, {})"#, r#"0"#],
    &[r#"eval"#, r#"return bit.tohex(1, 0)"#, r#"0"#],
    // cmsgpack
    &["eval", "return cmsgpack.pack(1, -1, 127, 128, 255, 256, 65536, -32, -33, -129, -40000, 2^40, -2^40)", "0"],
    &["eval", "return cmsgpack.pack(1.5, 0.1, -2.25, 1e300, 3.0)", "0"],
    &["eval", "return cmsgpack.pack('a', string.rep('x', 40), string.rep('y', 300), true, false, nil)", "0"],
    &["eval", "return cmsgpack.pack({1,2,3}, {}, {a=1}, {1, nil, 3})", "0"],
    &["eval", "return cmsgpack.pack({{{{{{{{{{{{{{{{{{{1}}}}}}}}}}}}}}}}}}})", "0"],
    &["eval", "return {cmsgpack.unpack(cmsgpack.pack(1, 'two', {3, 4}, true, 1.5))}", "0"],
    &["eval", "local t = cmsgpack.unpack(cmsgpack.pack({a = 'b'})) return t.a", "0"],
    &["eval", "return cmsgpack.unpack('\\193')", "0"],
    &["eval", "return cmsgpack.unpack('\\205\\1')", "0"],
    &["eval", "return {cmsgpack.unpack('')}", "0"],
    &["eval", "return cmsgpack.pack()", "0"],
    &["eval", "return {cmsgpack.unpack(cmsgpack.pack(-1, 2^53, -0.5))}", "0"],
    &["eval", "return cmsgpack.pack(1/0, -1/0)", "0"],
    &["eval", "return cmsgpack.pack(print)", "0"],
    &[
        "eval",
        "return redis.call('del', 's', 'k', 'h', 'z', 'a', 'w')",
        "0",
    ],
];

fn servers() -> Option<(ChorusProcess, RedisProcess)> {
    let redis = RedisProcess::start(&[])?;
    Some((ChorusProcess::start(&[]), redis))
}

fn raw(conn: &mut Conn, args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    conn.call(&args)
}

fn compare_cases(resp3: bool) {
    let Some((chorus, redis)) = servers() else {
        return;
    };
    let (mut ours, mut theirs) = (chorus.connect(), redis.connect());
    if resp3 {
        raw(&mut ours, &["HELLO", "3"]);
        raw(&mut theirs, &["HELLO", "3"]);
    }
    let mut failures = Vec::new();
    for args in CASES {
        let (got, want) = (raw(&mut ours, args), raw(&mut theirs, args));
        if got != want {
            failures.push(format!(
                "  {args:?}\n    chorus: {}\n    redis:  {}",
                show(&got),
                show(&want)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} request(s) differ from redis-server (resp3: {resp3}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn script_replies_and_errors_match_redis_resp2() {
    compare_cases(false);
}

#[test]
fn script_replies_and_errors_match_redis_resp3() {
    compare_cases(true);
}

/// Polls `f` until it returns true or a deadline passes.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reply(conn: &mut Conn) -> Vec<u8> {
    match conn.receive() {
        Received::Reply(_, raw) => raw,
        Received::Closed => b"<closed>".to_vec(),
    }
}

/// Past `busy-reply-threshold` other clients get BUSY at once; SCRIPT KILL
/// stops a script that has not written (its caller gets Redis's error) and
/// refuses one that has (UNKILLABLE), which then runs to its end.
#[test]
fn busy_scripts_answer_busy_and_die_by_script_kill() {
    let Some((chorus, redis)) = servers() else {
        return;
    };
    let mut outcomes = Vec::new();
    for port in [chorus.port, redis.port] {
        let mut admin = Conn::connect(port);
        raw(
            &mut admin,
            &["CONFIG", "SET", "busy-reply-threshold", "100"],
        );
        let mut runner = Conn::connect(port);
        runner.send(&multibulk(&[b"EVAL", b"while true do end", b"0"]));
        // Server commands that arrive before the threshold wait for it,
        // then answer BUSY (they must not hold their thread on the store).
        std::thread::sleep(Duration::from_millis(20));
        let early: Vec<Vec<u8>> = ["DBSIZE", "SCRIPT EXISTS x", "PING"]
            .iter()
            .map(|c| {
                let mut conn = Conn::connect(port);
                raw(&mut conn, &c.split(' ').collect::<Vec<_>>())
            })
            .collect();
        let mut other = Conn::connect(port);
        let mut busy = Vec::new();
        eventually("a BUSY reply", || {
            busy = raw(&mut other, &["GET", "k"]);
            busy.starts_with(b"-BUSY")
        });
        let killed = raw(&mut admin, &["SCRIPT", "KILL"]);
        let runner_got = reply(&mut runner);
        let after = raw(&mut other, &["GET", "k"]);
        // A script that wrote cannot be killed; it ends by itself.
        runner.send(&multibulk(&[
            b"EVAL",
            b"redis.call('set', 'w', '1') local s = redis.call('time') repeat local n = redis.call('time') until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 600000 return 'done'",
            b"0",
        ]));
        eventually("a BUSY reply", || {
            raw(&mut other, &["GET", "k"]).starts_with(b"-BUSY")
        });
        let unkillable = raw(&mut admin, &["SCRIPT", "KILL"]);
        let finished = reply(&mut runner);
        let not_busy = raw(&mut admin, &["SCRIPT", "KILL"]);
        let written = raw(&mut other, &["GET", "w"]);
        outcomes.push(
            [
                busy, killed, runner_got, after, unkillable, finished, not_busy, written,
            ]
            .into_iter()
            .chain(early)
            .map(|b| show(&b))
            .collect::<Vec<_>>(),
        );
    }
    assert_eq!(outcomes[0], outcomes[1], "chorus (left) vs redis (right)");
    assert_eq!(outcomes[0][1], "+OK\\r\\n");
    assert_eq!(outcomes[0][5], "$4\\r\\ndone\\r\\n");
}

/// The `ops_local` figure of INFO replication.
fn ops_local(conn: &mut Conn) -> u64 {
    let text = match conn.cmd(&["INFO", "replication"]) {
        Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        Reply::Verbatim(s) => s,
        other => panic!("{other:?}"),
    };
    text.lines()
        .find_map(|l| l.strip_prefix("ops_local:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("ops_local")
}

/// A script's writes are one op, as a MULTI/EXEC's are; a script that
/// fails after writing keeps what it wrote (Redis does not roll back) and
/// is still one op; a read-only script makes none.
#[test]
fn a_scripts_writes_are_one_op() {
    let chorus = ChorusProcess::start(&[]);
    let mut conn = chorus.connect();
    let before = ops_local(&mut conn);
    let three = "redis.call('set', KEYS[1], ARGV[1]) redis.call('incr', KEYS[2]) redis.call('hset', KEYS[3], 'f', 'v') return 1";
    assert_eq!(
        conn.cmd(&["EVAL", three, "3", "a", "n", "h", "x"]),
        Reply::Int(1)
    );
    assert_eq!(ops_local(&mut conn), before + 1);
    let failing =
        "redis.call('set', 'b', '1') redis.call('set', 'c', '2') return redis.call('incr', 'a')";
    assert!(matches!(conn.cmd(&["EVAL", failing, "0"]), Reply::Error(_)));
    assert_eq!(ops_local(&mut conn), before + 2);
    assert_eq!(conn.cmd(&["GET", "c"]), Reply::bulk("2"));
    assert_eq!(
        conn.cmd(&["EVAL_RO", "return redis.call('get', 'a')", "0"]),
        Reply::bulk("x")
    );
    assert_eq!(ops_local(&mut conn), before + 2);
    // Inside MULTI/EXEC the script's writes join the transaction's op.
    conn.cmd(&["MULTI"]);
    conn.cmd(&["SET", "d", "1"]);
    conn.cmd(&[
        "EVAL",
        "redis.call('set', 'e', '1') return redis.call('incr', 'n')",
        "0",
    ]);
    assert_eq!(
        conn.cmd(&["EXEC"]),
        Reply::Array(vec![Reply::Ok, Reply::Int(2)])
    );
    assert_eq!(ops_local(&mut conn), before + 3);
    // INFO memory counts the cached scripts and the interpreter's memory.
    let info = match conn.cmd(&["INFO", "memory"]) {
        Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("{other:?}"),
    };
    let figure = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(figure("number_of_cached_scripts:"), 4, "{info}");
    assert!(figure("used_memory_lua:") > 0, "{info}");
}

/// The usual lock helper through the `redis` crate: SET NX PX to take it,
/// a compare-and-delete script to release it, a compare-and-pexpire script
/// to extend it (EVALSHA first, EVAL when the script is not cached).
#[test]
fn lock_helper_through_the_redis_crate() {
    let chorus = ChorusProcess::start(&[]);
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{}/", chorus.port)).expect("client");
    let mut conn = client.get_connection().expect("connect");
    let release = redis::Script::new(
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end",
    );
    let extend = redis::Script::new(
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end",
    );
    let take = |conn: &mut redis::Connection, token: &str| -> bool {
        let got: Option<String> = redis::cmd("SET")
            .arg("lock:orders")
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query(conn)
            .expect("set nx px");
        got.is_some()
    };
    assert!(take(&mut conn, "token-a"));
    assert!(!take(&mut conn, "token-b"), "a held lock is taken again");
    let n: i64 = extend
        .key("lock:orders")
        .arg("token-b")
        .arg(60_000)
        .invoke(&mut conn)
        .expect("extend");
    assert_eq!(n, 0, "another holder extended the lock");
    let n: i64 = extend
        .key("lock:orders")
        .arg("token-a")
        .arg(60_000)
        .invoke(&mut conn)
        .expect("extend");
    assert_eq!(n, 1);
    let ttl: i64 = redis::cmd("PTTL")
        .arg("lock:orders")
        .query(&mut conn)
        .expect("pttl");
    assert!(ttl > 30_000 && ttl <= 60_000, "pttl {ttl}");
    let n: i64 = release
        .key("lock:orders")
        .arg("token-b")
        .invoke(&mut conn)
        .expect("release");
    assert_eq!(n, 0, "another holder released the lock");
    let n: i64 = release
        .key("lock:orders")
        .arg("token-a")
        .invoke(&mut conn)
        .expect("release");
    assert_eq!(n, 1);
    assert!(take(&mut conn, "token-b"), "a released lock is free");
    // After SCRIPT FLUSH the helper's EVALSHA misses and it falls back to EVAL.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut conn)
        .expect("flush");
    let n: i64 = release
        .key("lock:orders")
        .arg("token-b")
        .invoke(&mut conn)
        .expect("release");
    assert_eq!(n, 1);
}

/// Bad scripts never take the server down: a deep recursion, a huge
/// allocation, errors in metamethods; the server answers afterwards.
#[test]
fn bad_scripts_fail_and_the_server_stays_up() {
    let chorus = ChorusProcess::start(&[]);
    let mut conn = chorus.connect();
    for script in [
        "local function f() return f() + 1 end return f()",
        "local t = {} for i = 1, 100 do t[i] = string.rep(tostring(i), 2 ^ 24) end",
        "return setmetatable({}, {__index = function() error('no') end}).x",
        "return nil .. 'x'",
        // Server commands that would take the store the script holds.
        "return redis.call('info', 'replication')",
        "return redis.call('save')",
        "return redis.call('config', 'set', 'appendfsync', 'always')",
        "return redis.call('wait', '0', '0')",
        "return redis.call('get', 'a', 'b', 'c')",
    ] {
        let got = conn.cmd(&["EVAL", script, "0"]);
        assert!(matches!(got, Reply::Error(_)), "{script}: {got:?}");
    }
    // A coroutine may call redis.call too.
    let coroutine = "return coroutine.wrap(function() return redis.call('set', 'k', 'v') end)()";
    assert_eq!(conn.cmd(&["EVAL", coroutine, "0"]), Reply::Ok);
    assert_eq!(conn.cmd(&["EVAL", "return 42", "0"]), Reply::Int(42));
    assert_eq!(conn.cmd(&["PING"]), Reply::Simple("PONG".into()));
}

/// FUNCTION LOAD / FCALL / FUNCTION LIST...: replies and errors as Redis's
/// (lists of one library, as the order of several is Redis's hash order).
const FUNCTION_CASES: &[&[&str]] = &[
    &["function", "load", "#!lua name=loopy\nwhile true do end"],
    &["function", "load", "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return redis.call('set', keys[1], args[1]) end)\nredis.register_function{function_name='ro', callback=function(keys, args) return redis.call('get', keys[1]) end, flags={'no-writes'}}"],
    &["fcall", "myfunc", "1", "k", "v"],
    &["fcall", "ro", "1", "k"],
    &["fcall_ro", "ro", "1", "k"],
    &["fcall_ro", "myfunc", "1", "k", "v"],
    &["fcall", "nope", "0"],
    &["fcall", "myfunc", "-1"],
    &["fcall", "myfunc", "5"],
    &["function", "load", "#!lua name=mylib\nredis.register_function('x', function() return 1 end)"],
    &["function", "load", "#!lua name=other\nredis.register_function('myfunc', function() return 1 end)"],
    &["function", "load", "return 1"],
    &["function", "load", "#!lua\nreturn 1"],
    &["function", "load", "#!lua name=e\nreturn 1"],
    &["function", "load", "#!lua name=e\nredis.register_function('bad name', function() return 1 end)"],
    &["function", "load", "#!lua name=e\nredis.call('ping')"],
    &["function", "load", "#!lua name=e\nerror('boom')"],
    &["function", "load", "#!lua name=e\nredis.register_function('f', function() error('inner') end)"],
    &["fcall", "f", "0"],
    &["function", "load", "#!lua name=e2\nredis.register_function('g', function() return redis.call('incr', 'k') end)"],
    &["fcall", "g", "0"],
    &["function", "load", "#!foo name=e3\n"],
    &["function", "load", "#!lua name=e4 x=y\n"],
    &["function", "list", "libraryname", "e2"],
    &["function", "delete", "nope"],
    &["function", "delete", "e"],
    &["fcall", "f", "0"],
    &["function", "kill"],
    &["function", "flush"],
    &["fcall", "myfunc", "1", "k", "v"],
    &["function", "list", "libraryname", "e2"],
    &["function", "load", "REPLACE", "#!lua name=mylib\nredis.register_function('a', function() return 2 end)"],
    &["function", "load", "REPLACE", "#!lua name=mylib\nredis.register_function('a', function() return 3 end)"],
    &["fcall", "a", "0"],
    &["function", "list", "withcode"],
    &["function", "load", "#!lua name=t1\nlocal s = string\nredis.register_function('t1', function() return 1 end)"],
    &["function", "load", "#!lua name=t2\nlocal s = cjson\nredis.register_function('t2', function() return 1 end)"],
    &["function", "load", "#!lua name=t3\nlocal s = tonumber\nredis.register_function('t3', function() return 1 end)"],
    &["function", "load", "#!lua name=t4\nredis.register_function('t4', function() return 1 end)\nredis.register_function('t4', function() return 1 end)"],
    &["function", "load", "#!lua name=t5\nlocal s = redis.setresp\nlocal c = redis.call\nredis.register_function('t5', function() return 1 end)"],
    &["function", "load", "#!LUA name=t6\nredis.register_function('t6', function(k, a) return {#k, #a, KEYS} end)"],
    &["fcall", "t6", "1", "a", "b"],
    &["function", "load", "#!lua name=t7\nredis.register_function{function_name='t7', callback=function() return 1 end, flags={'bogus'}}"],
    &["function", "load", "#!lua name=t8\nredis.register_function('t8', 5)"],
    &["function", "load", "#!lua name=t9\nredis.register_function{function_name='t9', callback=function() return 1 end, flags={'no-writes', 'allow-oom'}, description='d'}"],
    &["function", "list", "libraryname", "t9"],
    &["function", "stats"],
    &["function", "flush"],
];

#[test]
fn function_replies_and_errors_match_redis() {
    let Some((chorus, redis)) = servers() else {
        return;
    };
    let (mut ours, mut theirs) = (chorus.connect(), redis.connect());
    let mut failures = Vec::new();
    for args in FUNCTION_CASES {
        let (got, want) = (raw(&mut ours, args), raw(&mut theirs, args));
        if got != want {
            failures.push(format!(
                "  {args:?}\n    chorus: {}\n    redis:  {}",
                show(&got),
                show(&want)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} request(s) differ from redis-server:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
