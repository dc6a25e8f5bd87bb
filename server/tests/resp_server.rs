//! End-to-end tests of chorus-server alone: the built binary on an
//! ephemeral loopback port, spoken to over raw TCP. (Byte-for-byte
//! comparisons with Redis are in `resp_differential.rs`.)

use std::time::{Duration, Instant};

use bytes::Bytes;
use chorus_engine::Reply;
use chorus_testkit::{free_port, multibulk, ChorusProcess, Conn, Received};

fn text(reply: &Reply) -> String {
    match reply {
        Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Reply::Verbatim(s) | Reply::Simple(s) | Reply::Error(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::to_string)
}

#[test]
fn ping_echo_hello_and_unknown_commands() {
    let server = ChorusProcess::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.call(&[b"PING"]), b"+PONG\r\n");
    assert_eq!(c.call(&[b"ECHO", b"a\r\nb"]), b"$4\r\na\r\nb\r\n");
    assert_eq!(
        c.call(&[b"NOSUCH", b"a", b"b"]),
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n"
    );
    // Data commands reach the engine.
    assert_eq!(c.call(&[b"GET", b"k"]), b"$-1\r\n");
    // An unknown command never closes the connection.
    assert_eq!(c.call(&[b"PING"]), b"+PONG\r\n");

    let hello = c.cmd(&["HELLO", "3"]);
    let Reply::Map(pairs) = hello else {
        panic!("HELLO 3 is a map: {hello:?}")
    };
    let keys: Vec<String> = pairs.iter().map(|(k, _)| text(k)).collect();
    assert_eq!(
        keys,
        ["server", "version", "proto", "id", "mode", "role", "modules"]
    );
    assert_eq!(pairs.get(2).map(|(_, v)| v.clone()), Some(Reply::Int(3)));
    // RESP3 from now on: nulls are `_`.
    assert_eq!(c.call(&[b"CLIENT", b"GETNAME"]), b"_\r\n");
    assert_eq!(c.call(&[b"HELLO", b"2"]).first(), Some(&b'*'));
    assert_eq!(c.call(&[b"CLIENT", b"GETNAME"]), b"$-1\r\n");
}

#[test]
fn auth_and_requirepass_at_runtime() {
    let server = ChorusProcess::start(&["--requirepass", "s3cret"]);
    let mut c = server.connect();
    assert_eq!(c.call(&[b"PING"]), b"-NOAUTH Authentication required.\r\n");
    assert_eq!(
        c.call(&[b"AUTH", b"wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.call(&[b"AUTH", b"s3cret"]), b"+OK\r\n");
    assert_eq!(c.call(&[b"PING"]), b"+PONG\r\n");
    // Clearing the password opens the server to new clients.
    assert_eq!(
        c.call(&[b"CONFIG", b"SET", b"requirepass", b""]),
        b"+OK\r\n"
    );
    let mut other = server.connect();
    assert_eq!(other.call(&[b"PING"]), b"+PONG\r\n");
    assert_eq!(
        other.call(&[b"AUTH", b"x"]),
        b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n".to_vec()
    );
    // Setting one again applies to clients that connect afterwards.
    assert_eq!(
        c.call(&[b"CONFIG", b"SET", b"requirepass", b"new"]),
        b"+OK\r\n"
    );
    let mut late = server.connect();
    assert_eq!(
        late.call(&[b"PING"]),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        late.call(&[b"HELLO", b"3", b"AUTH", b"default", b"new"])
            .first(),
        Some(&b'%')
    );
}

#[test]
fn config_get_set_and_effects() {
    let server = ChorusProcess::start(&[
        "--maxclients",
        "50",
        "--site-id",
        "7",
        "--appendfsync",
        "always",
    ]);
    let mut c = server.connect();
    let get = |c: &mut Conn, name: &str| -> Vec<Reply> {
        match c.cmd(&["CONFIG", "GET", name]) {
            Reply::Array(items) => items,
            other => panic!("CONFIG GET {name}: {other:?}"),
        }
    };
    assert_eq!(
        get(&mut c, "maxclients"),
        vec![Reply::bulk("maxclients"), Reply::bulk("50")]
    );
    assert_eq!(
        get(&mut c, "site-id"),
        vec![Reply::bulk("site-id"), Reply::bulk("7")]
    );
    assert_eq!(
        get(&mut c, "appendfsync"),
        vec![Reply::bulk("appendfsync"), Reply::bulk("always")]
    );
    assert_eq!(
        get(&mut c, "port"),
        vec![Reply::bulk("port"), Reply::bulk(server.port.to_string())]
    );
    let dir = get(&mut c, "dir");
    let expected_dir =
        std::fs::canonicalize(server.dir.path().join("data")).expect("data dir exists");
    assert_eq!(
        dir.get(1),
        Some(&Reply::bulk(expected_dir.display().to_string()))
    );
    assert_eq!(
        c.call(&[b"CONFIG", b"SET", b"appendfsync", b"no"]),
        b"+OK\r\n"
    );
    let info = text(&c.cmd(&["INFO", "persistence"]));
    assert_eq!(info_field(&info, "appendfsync").as_deref(), Some("no"));
    // Checkpoints are Chorus's RDB: changes since the last one, and SAVE
    // writes one.
    let number = |info: &str, name: &str| -> u64 {
        info_field(info, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {info}"))
    };
    assert_eq!(c.call(&[b"SET", b"p1", b"v"]), b"+OK\r\n");
    assert_eq!(c.call(&[b"SET", b"p2", b"v"]), b"+OK\r\n");
    let info = text(&c.cmd(&["INFO", "persistence"]));
    assert!(number(&info, "rdb_changes_since_last_save") >= 2, "{info}");
    assert!(
        number(&info, "chorus_log_bytes_since_checkpoint") > 0,
        "{info}"
    );
    assert_eq!(
        info_field(&info, "rdb_last_bgsave_status").as_deref(),
        Some("ok")
    );
    let saves = number(&info, "rdb_saves");
    assert_eq!(c.call(&[b"SAVE"]), b"+OK\r\n");
    let info = text(&c.cmd(&["INFO", "persistence"]));
    assert_eq!(number(&info, "rdb_changes_since_last_save"), 0, "{info}");
    assert_eq!(
        number(&info, "chorus_log_bytes_since_checkpoint"),
        0,
        "{info}"
    );
    assert_eq!(number(&info, "rdb_saves"), saves + 1, "{info}");
    assert_eq!(c.call(&[b"CONFIG", b"SET", b"site-id", b"3"]),
        b"-ERR CONFIG SET failed (possibly related to argument 'site-id') - can't set immutable config\r\n".to_vec());
    // Parameters Chorus does not use are still stored.
    assert_eq!(
        c.call(&[b"CONFIG", b"SET", b"lfu-log-factor", b"12"]),
        b"+OK\r\n"
    );
    assert_eq!(
        get(&mut c, "lfu-log-factor"),
        vec![Reply::bulk("lfu-log-factor"), Reply::bulk("12")]
    );
}

#[test]
fn config_set_port_rebinds_the_listener() {
    let server = ChorusProcess::start(&[]);
    let mut c = server.connect();
    let new_port = free_port();
    assert_eq!(
        c.call(&[b"CONFIG", b"SET", b"port", new_port.to_string().as_bytes()]),
        b"+OK\r\n"
    );
    // The existing connection stays; new ones go to the new port.
    assert_eq!(c.call(&[b"PING"]), b"+PONG\r\n");
    let mut moved = Conn::connect(new_port);
    assert_eq!(moved.call(&[b"PING"]), b"+PONG\r\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", server.port)).is_ok() {
        assert!(Instant::now() < deadline, "old port still accepting");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn maxclients_reached_replies_and_closes() {
    let server = ChorusProcess::start(&["--maxclients", "1"]);
    let mut first = server.connect();
    assert_eq!(first.call(&[b"PING"]), b"+PONG\r\n");
    let mut second = server.connect();
    assert_eq!(
        second.until_closed(),
        b"-ERR max number of clients reached\r\n<closed>".to_vec()
    );
    let info = text(&first.cmd(&["INFO", "stats"]));
    assert_eq!(
        info_field(&info, "rejected_connections").as_deref(),
        Some("1")
    );
    drop(first);
    // The slot frees up once the first client leaves.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = server.connect();
        again.send(&multibulk(&[b"PING"]));
        match again.receive() {
            Received::Reply(Reply::Simple(s), _) if s == "PONG" => break,
            _ => assert!(Instant::now() < deadline, "slot never freed"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn protocol_error_closes_only_that_client() {
    let server = ChorusProcess::start(&[]);
    let mut good = server.connect();
    let mut bad = server.connect();
    bad.send(b"PING\r\n*1\r\n$x\r\nPING\r\n");
    assert_eq!(
        bad.until_closed(),
        b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n<closed>".to_vec()
    );
    assert_eq!(good.call(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn query_buffer_limit_closes_the_client() {
    let server = ChorusProcess::start(&[]);
    let mut c = server.connect();
    assert_eq!(
        c.call(&[b"CONFIG", b"SET", b"client-query-buffer-limit", b"1mb"]),
        b"+OK\r\n"
    );
    let mut big = server.connect();
    big.send(b"*2\r\n$4\r\nECHO\r\n$3000000\r\n");
    // Sending may fail once the server has closed; that is the point.
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..40 {
        if std::io::Write::write_all(&mut big.stream, &chunk).is_err() {
            break;
        }
    }
    assert_eq!(big.until_closed(), b"<closed>".to_vec());
    let info = text(&c.cmd(&["INFO", "stats"]));
    assert_eq!(
        info_field(&info, "client_query_buffer_limit_disconnections").as_deref(),
        Some("1")
    );
}

#[test]
fn big_bulk_arguments_and_pipelines() {
    let server = ChorusProcess::start(&[]);
    let mut c = server.connect();
    let value = vec![b'v'; 3 * 1024 * 1024];
    let reply = c.call(&[b"ECHO", &value]);
    assert_eq!(reply.len(), value.len() + "$3145728\r\n\r\n".len());
    let mut pipeline = Vec::new();
    for i in 0..1000 {
        pipeline.extend(multibulk(&[b"ECHO", i.to_string().as_bytes()]));
    }
    c.send(&pipeline);
    for i in 0..1000 {
        match c.receive() {
            Received::Reply(Reply::Bulk(b), _) => assert_eq!(b, Bytes::from(i.to_string())),
            other => panic!("reply {i}: {other:?}"),
        }
    }
}

#[test]
fn info_reports_real_figures() {
    let server = ChorusProcess::start(&[]);
    let mut c = server.connect();
    let _other = server.connect();
    let _ = c.call(&[b"NOSUCH"]);
    let _ = c.call(&[b"PING"]);
    let info = text(&c.cmd(&["INFO"]));
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# CPU",
        "# Errorstats",
        "# Keyspace",
    ] {
        assert!(info.contains(section), "missing {section} in {info}");
    }
    let number = |name: &str| -> u64 {
        info_field(&info, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no numeric {name} in INFO"))
    };
    assert_eq!(number("connected_clients"), 2);
    assert!(number("used_memory") > 0);
    assert!(number("used_memory_rss") > 0);
    assert!(number("total_commands_processed") >= 1);
    assert!(number("total_error_replies") >= 1);
    assert_eq!(
        info_field(&info, "mem_allocator").as_deref(),
        Some("mimalloc")
    );
    assert_eq!(
        info_field(&info, "errorstat_ERR").as_deref(),
        Some("count=1")
    );
    assert_eq!(number("process_id"), u64::from(server.child.id()));
    assert_eq!(c.call(&[b"CONFIG", b"RESETSTAT"]), b"+OK\r\n");
    let info = text(&c.cmd(&["INFO", "stats"]));
    assert_eq!(
        info_field(&info, "total_error_replies").as_deref(),
        Some("0")
    );
}

#[test]
fn client_list_setname_and_kill() {
    let server = ChorusProcess::start(&[]);
    let mut a = server.connect();
    let mut b = server.connect();
    assert_eq!(a.call(&[b"CLIENT", b"SETNAME", b"alpha"]), b"+OK\r\n");
    let list = text(&b.cmd(&["CLIENT", "LIST"]));
    assert_eq!(list.lines().count(), 2);
    assert!(list.contains("name=alpha"), "{list}");
    assert!(list.contains("cmd=client|list"), "{list}");
    let Reply::Int(a_id) = a.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID")
    };
    assert_eq!(
        b.cmd(&["CLIENT", "KILL", "ID", &a_id.to_string()]),
        Reply::Int(1)
    );
    assert_eq!(a.until_closed(), b"<closed>".to_vec());
    let info = text(&b.cmd(&["CLIENT", "INFO"]));
    assert!(info.starts_with("id=") && info.ends_with('\n'), "{info}");
}

#[test]
fn quit_closes_after_reply() {
    let server = ChorusProcess::start(&[]);
    let mut c = server.connect();
    c.send(b"PING\r\nQUIT\r\nPING\r\n");
    assert_eq!(c.until_closed(), b"+PONG\r\n+OK\r\n<closed>".to_vec());
}

#[test]
fn shutdown_command_exits_zero() {
    let mut server = ChorusProcess::start(&[]);
    let mut c = server.connect();
    c.send(&multibulk(&[b"SHUTDOWN"]));
    assert_eq!(c.until_closed(), b"<closed>".to_vec());
    assert_eq!(server.wait_exit(), Some(0));
}

#[test]
fn sigterm_exits_zero() {
    let mut server = ChorusProcess::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.call(&[b"PING"]), b"+PONG\r\n");
    let pid = i32::try_from(server.child.id()).expect("pid fits");
    // SAFETY: sending a signal to a child process we own.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(server.wait_exit(), Some(0));
    assert_eq!(c.until_closed(), b"<closed>".to_vec());
}

#[test]
fn config_file_is_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chorus.conf");
    std::fs::write(
        &path,
        "# test\nmaxclients 77\nrequirepass \"with space\"\nhz 20\n",
    )
    .expect("write config");
    let server = ChorusProcess::start(&["--config", path.to_str().expect("utf-8 path")]);
    let mut c = server.connect();
    assert_eq!(c.call(&[b"AUTH", b"with space"]), b"+OK\r\n");
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxclients"]),
        Reply::Array(vec![Reply::bulk("maxclients"), Reply::bulk("77")])
    );
    let info = text(&c.cmd(&["INFO", "server"]));
    assert_eq!(info_field(&info, "hz").as_deref(), Some("20"));
    assert!(info_field(&info, "config_file").is_some_and(|f| f.ends_with("chorus.conf")));
}

/// INFO inside MULTI/EXEC reads the engine through the lock EXEC holds: it
/// used to lock the engine again and hang the whole site.
#[test]
fn info_inside_multi_exec_answers_and_the_site_keeps_serving() {
    let server = ChorusProcess::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.call(&[b"MULTI"]), b"+OK\r\n");
    assert_eq!(c.call(&[b"SET", b"k", b"v"]), b"+QUEUED\r\n");
    assert_eq!(c.call(&[b"INFO", b"replication"]), b"+QUEUED\r\n");
    assert_eq!(c.call(&[b"INFO"]), b"+QUEUED\r\n");
    let exec = c.cmd(&["EXEC"]);
    let Reply::Array(replies) = exec else {
        panic!("EXEC answers an array: {exec:?}")
    };
    assert_eq!(replies.len(), 3);
    let info = text(&replies[1]);
    assert!(info.contains("# Replication"), "{info}");
    // The transaction's op is committed when EXEC ends.
    assert_eq!(
        info_field(&info, "ops_local").as_deref(),
        Some("0"),
        "{info}"
    );
    let all = text(&replies[2]);
    assert!(
        all.contains("# Keyspace") && all.contains("appendfsync:"),
        "{all}"
    );
    // Another client is served afterwards.
    let mut other = server.connect();
    assert_eq!(other.call(&[b"GET", b"k"]), b"$1\r\nv\r\n");
    let info = text(&other.cmd(&["INFO", "replication"]));
    assert_eq!(
        info_field(&info, "ops_local").as_deref(),
        Some("1"),
        "{info}"
    );
}

/// ROLE answers as a Redis primary with no replicas (every site takes
/// writes), byte for byte what a fresh redis-server answers; its offset
/// then counts the ops the site holds.
#[test]
fn role_answers_as_a_primary() {
    let server = ChorusProcess::start(&[]);
    let mut c = server.connect();
    let fresh = c.call(&[b"ROLE"]);
    assert_eq!(fresh, b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
    if let Some(redis) = chorus_testkit::RedisProcess::start(&[]) {
        assert_eq!(redis.connect().call(&[b"ROLE"]), fresh);
    }
    assert_eq!(c.call(&[b"SET", b"k", b"v"]), b"+OK\r\n");
    assert_eq!(c.call(&[b"INCR", b"n"]), b":1\r\n");
    assert_eq!(c.call(&[b"ROLE"]), b"*3\r\n$6\r\nmaster\r\n:2\r\n*0\r\n");
}
