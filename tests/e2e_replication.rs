//! End-to-end replication: real chorus-server processes on loopback,
//! replicating over real QUIC with mutual TLS. Every wait polls with a
//! deadline. The chorus-server binary is the one in this test's target
//! directory, built first when it is missing or stale
//! (`chorus_testkit::server_binary`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chorus_engine::Reply;
use chorus_testkit::{free_port, run_bounded, server_binary, ChorusProcess, Conn};

const CONVERGE: Duration = Duration::from_secs(30);

fn cert(args: &[&str]) {
    let out = Command::new(server_binary())
        .arg("cert")
        .args(args)
        .output()
        .expect("run cert");
    assert!(
        out.status.success(),
        "cert {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and certificates for sites 1..=n under `dir`.
fn make_certs(dir: &Path, n: u16) {
    let ca = dir.join("ca");
    cert(&["ca", "--out", ca.to_str().unwrap()]);
    for i in 1..=n {
        let out = dir.join(format!("s{i}"));
        cert(&[
            "site",
            "--ca",
            ca.to_str().unwrap(),
            "--site-id",
            &i.to_string(),
            "--out",
            out.to_str().unwrap(),
        ]);
    }
}

struct Site {
    id: u16,
    repl_port: u16,
}

fn site_args(certs: &Path, ca_dir: &str, me: &Site, peers: &[&Site]) -> Vec<String> {
    let mut a = vec![
        "--site-id".to_string(),
        me.id.to_string(),
        "--repl-port".into(),
        me.repl_port.to_string(),
        "--appendfsync".into(),
        "always".into(),
        "--tls-ca".into(),
        certs.join(ca_dir).join("ca.pem").display().to_string(),
        "--tls-cert".into(),
        certs
            .join(format!("s{}", me.id))
            .join("site.pem")
            .display()
            .to_string(),
        "--tls-key".into(),
        certs
            .join(format!("s{}", me.id))
            .join("site.key")
            .display()
            .to_string(),
    ];
    for p in peers {
        a.push("--peer".into());
        a.push(format!("{}@127.0.0.1:{}", p.id, p.repl_port));
    }
    a
}

fn start(certs: &Path, me: &Site, peers: &[&Site]) -> ChorusProcess {
    let args = site_args(certs, "ca", me, peers);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ChorusProcess::start(&refs)
}

fn text(r: Reply) -> String {
    match r {
        Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        Reply::Simple(s) | Reply::Verbatim(s) => s,
        Reply::Int(i) => i.to_string(),
        Reply::Nil => "(nil)".into(),
        Reply::Ok => "OK".into(),
        other => format!("{other:?}"),
    }
}

fn digest(p: &ChorusProcess) -> String {
    text(p.connect().cmd(&["DEBUG", "DIGEST"]))
}

/// Polls until every site has the same digest and `check` holds on each.
fn converge(sites: &[&ChorusProcess], check: impl Fn(&ChorusProcess) -> bool) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let digests: Vec<String> = sites.iter().map(|s| digest(s)).collect();
        if digests.windows(2).all(|w| w[0] == w[1]) && sites.iter().all(|s| check(s)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sites did not converge: {digests:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(p: &ChorusProcess, key: &str) -> String {
    text(p.connect().cmd(&["GET", key]))
}

#[test]
fn two_sites_converge_on_every_type() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), 2);
    let s1 = Site {
        id: 1,
        repl_port: free_port(),
    };
    let s2 = Site {
        id: 2,
        repl_port: free_port(),
    };
    let a = start(certs.path(), &s1, &[&s2]);
    let b = start(certs.path(), &s2, &[&s1]);
    let mut ca = a.connect();
    let mut cb = b.connect();
    for i in 0..50 {
        ca.cmd(&["INCR", "counter"]);
        cb.cmd(&["INCRBY", "counter", "2"]);
        ca.cmd(&["SADD", "set", &format!("a{}", i % 5)]);
        cb.cmd(&["SADD", "set", &format!("b{}", i % 5)]);
        ca.cmd(&["HINCRBY", "h", "f", "1"]);
        cb.cmd(&["HSET", "h", &format!("g{i}"), "v"]);
        ca.cmd(&["ZINCRBY", "z", "1", "m"]);
        cb.cmd(&["ZINCRBY", "z", "1", "m"]);
    }
    ca.cmd(&["SET", "s", "from-a"]);
    cb.cmd(&["SET", "s", "from-b"]);
    converge(&[&a, &b], |p| get(p, "counter") == "150");
    for p in [&a, &b] {
        let mut c = p.connect();
        assert_eq!(text(c.cmd(&["SCARD", "set"])), "10");
        assert_eq!(text(c.cmd(&["HGET", "h", "f"])), "50");
        assert_eq!(text(c.cmd(&["HLEN", "h"])), "51");
        assert_eq!(text(c.cmd(&["ZSCORE", "z", "m"])), "100");
    }
    // Last writer wins, the same everywhere.
    assert_eq!(get(&a, "s"), get(&b, "s"));
    // WAIT: the peer has durably acked everything written here.
    assert_eq!(text(ca.cmd(&["WAIT", "1", "5000"])), "1");
    let info = text(ca.cmd(&["INFO", "replication"]));
    assert!(info.contains("role:active-active"), "{info}");
    assert!(info.contains("state=streaming"), "{info}");
    // Sites with peers fold at the stability frontier.
    assert!(info.contains("counter_folding:frontier"), "{info}");
    // Byte totals next to the rates: ops went out and acks came back.
    let total = |name: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with("peer0:"))
            .and_then(|l| {
                l.split(',')
                    .find_map(|f| f.strip_prefix(&format!("{name}=")[..]))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in the peer line: {info}"))
    };
    assert!(total("bytes_out") > 0 && total("bytes_in") > 0, "{info}");
}

#[test]
fn killed_site_catches_up_after_restart_and_keeps_acked_writes() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), 2);
    let s1 = Site {
        id: 1,
        repl_port: free_port(),
    };
    let s2 = Site {
        id: 2,
        repl_port: free_port(),
    };
    let a = start(certs.path(), &s1, &[&s2]);
    let b = start(certs.path(), &s2, &[&s1]);
    let mut cb = b.connect();
    for i in 0..100 {
        assert_eq!(text(cb.cmd(&["SET", &format!("b{i}"), "v"])), "OK");
    }
    // kill -9 under appendfsync always: every acknowledged write survives.
    let dir = b.into_dir();
    let mut ca = a.connect();
    for i in 0..100 {
        ca.cmd(&["SET", &format!("a{i}"), "v"]);
    }
    let args = site_args(certs.path(), "ca", &s2, &[&s1]);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let b = ChorusProcess::start_in(dir, &refs);
    let mut cb = b.connect();
    for i in 0..100 {
        assert_eq!(get(&b, &format!("b{i}")), "v", "acked write b{i} lost");
    }
    cb.cmd(&["SET", "after", "restart"]);
    converge(&[&a, &b], |p| text(p.connect().cmd(&["DBSIZE"])) == "201");
}

#[test]
fn chain_topology_converges() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), 3);
    let s1 = Site {
        id: 1,
        repl_port: free_port(),
    };
    let s2 = Site {
        id: 2,
        repl_port: free_port(),
    };
    let s3 = Site {
        id: 3,
        repl_port: free_port(),
    };
    let a = start(certs.path(), &s1, &[&s2]);
    let b = start(certs.path(), &s2, &[&s1, &s3]);
    let c = start(certs.path(), &s3, &[&s2]);
    a.connect().cmd(&["SET", "from1", "x"]);
    c.connect().cmd(&["SET", "from3", "y"]);
    b.connect().cmd(&["INCR", "n"]);
    a.connect().cmd(&["INCR", "n"]);
    c.connect().cmd(&["INCR", "n"]);
    converge(&[&a, &b, &c], |p| get(p, "n") == "3");
    assert_eq!(get(&a, "from3"), "y");
    assert_eq!(get(&c, "from1"), "x");
}

#[test]
fn site_with_a_certificate_from_another_ca_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), 2);
    // A second CA signs a "site 2" certificate.
    let rogue = tempfile::tempdir().unwrap();
    make_certs(rogue.path(), 2);
    let s1 = Site {
        id: 1,
        repl_port: free_port(),
    };
    let s2 = Site {
        id: 2,
        repl_port: free_port(),
    };
    let a = start(certs.path(), &s1, &[&s2]);
    let b = start(rogue.path(), &s2, &[&s1]);
    a.connect().cmd(&["SET", "secret", "1"]);
    b.connect().cmd(&["SET", "rogue", "1"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        get(&b, "secret"),
        "(nil)",
        "data reached a site of another CA"
    );
    assert_eq!(
        get(&a, "rogue"),
        "(nil)",
        "data from a site of another CA was accepted"
    );
    let info = text(a.connect().cmd(&["INFO", "replication"]));
    assert!(!info.contains("state=streaming"), "{info}");
}

#[test]
fn peer_pause_and_resume_partition_then_converge() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), 2);
    let s1 = Site {
        id: 1,
        repl_port: free_port(),
    };
    let s2 = Site {
        id: 2,
        repl_port: free_port(),
    };
    let a = start(certs.path(), &s1, &[&s2]);
    let b = start(certs.path(), &s2, &[&s1]);
    converge(&[&a, &b], |_| true);
    assert_eq!(text(a.connect().cmd(&["PEER", "PAUSE", "2"])), "OK");
    assert_eq!(text(b.connect().cmd(&["PEER", "PAUSE", "1"])), "OK");
    a.connect().cmd(&["SET", "k", "a"]);
    b.connect().cmd(&["DEL", "k"]);
    b.connect().cmd(&["INCR", "n"]);
    a.connect().cmd(&["INCR", "n"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(&b, "k"), "(nil)", "a paused peer still received ops");
    // WAIT: no peer can ack while paused; it answers 0 at its timeout.
    let started = Instant::now();
    assert_eq!(text(a.connect().cmd(&["WAIT", "1", "200"])), "0");
    assert!(started.elapsed() >= Duration::from_millis(200));
    // A WAIT already waiting is woken by the ack that follows the resume.
    let waiting = {
        let mut c = a.connect();
        std::thread::spawn(move || text(c.cmd(&["WAIT", "1", "20000"])))
    };
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(text(a.connect().cmd(&["PEER", "RESUME", "2"])), "OK");
    assert_eq!(text(b.connect().cmd(&["PEER", "RESUME", "1"])), "OK");
    assert_eq!(waiting.join().unwrap(), "1");
    converge(&[&a, &b], |p| get(p, "n") == "2");
    // The DEL had not seen the concurrent SET: the SET survives.
    assert_eq!(get(&a, "k"), "a");
}

// ---- units -------------------------------------------------------------------

/// A unit's home takes its writes, the other sites redirect them (with the
/// home's client address), a transaction that needs two homes is refused,
/// and a planned failover moves the home without losing a write; a
/// failback moves it back. Three real processes in a chain 1-2-3, so site
/// 3 learns of site 1's writes and addresses through site 2.
#[test]
fn units_redirect_to_their_home_and_move_by_planned_failover() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), 3);
    let s: Vec<Site> = (1..=3)
        .map(|id| Site {
            id,
            repl_port: free_port(),
        })
        .collect();
    let a = start(certs.path(), &s[0], &[&s[1]]);
    let b = start(certs.path(), &s[1], &[&s[0], &s[2]]);
    let c = start(certs.path(), &s[2], &[&s[1]]);
    let sites = [&a, &b, &c];
    wait_until("the chain to connect", || {
        streaming_to(&a, 2) && streaming_to(&b, 1) && streaming_to(&b, 3) && streaming_to(&c, 2)
    });
    let ok = |p: &ChorusProcess, args: &[&str]| {
        assert_eq!(p.connect().cmd(args), Reply::Ok, "{args:?}");
    };
    ok(&a, &["UNIT", "DEFINE", "users", "PREFIX", "user:"]);
    ok(&a, &["UNIT", "DEFINE", "vip", "PREFIX", "user:vip:"]);
    ok(&a, &["UNIT", "OWNER", "users", "1"]);
    ok(&a, &["UNIT", "OWNER", "vip", "3"]);
    // Every site sees the same units, and every site's client address.
    let home_of = |p: &ChorusProcess, key: &str| text(p.connect().cmd(&["UNIT", "OF", key]));
    wait_until("the units to reach site 3", || {
        home_of(&c, "user:vip:9").contains("home_addr")
            && home_of(&c, "user:1").contains(&format!("127.0.0.1:{}", a.port))
    });
    assert!(
        home_of(&b, "user:vip:9").contains("\"vip\""),
        "{}",
        home_of(&b, "user:vip:9")
    );
    assert!(home_of(&b, "free").contains("\"*\""));
    // Writes: at the home, here; elsewhere, a redirect naming the home.
    ok(&a, &["SET", "user:1", "a"]);
    assert_eq!(
        error_text(b.connect().cmd(&["SET", "user:1", "b"])),
        format!("REDIRECT users 1 127.0.0.1:{}", a.port)
    );
    assert_eq!(
        error_text(a.connect().cmd(&["INCR", "user:vip:1"])),
        format!("REDIRECT vip 3 127.0.0.1:{}", c.port)
    );
    assert_eq!(c.connect().cmd(&["INCR", "user:vip:1"]), Reply::Int(1));
    // Reads are served everywhere; keys of no unit are written anywhere.
    converge(&sites, |p| get(p, "user:1") == "a");
    ok(&b, &["SET", "free", "x"]);
    // A blocking pop and a WATCH of another home's key are redirected too.
    assert!(error_text(b.connect().cmd(&["BLPOP", "user:q", "0"])).starts_with("REDIRECT users 1 "));
    assert!(error_text(b.connect().cmd(&["WATCH", "user:1"])).starts_with("REDIRECT users 1 "));
    // A transaction whose writes need two homes is refused as a whole.
    let mut t = a.connect();
    assert_eq!(t.cmd(&["MULTI"]), Reply::Ok);
    assert_eq!(
        t.cmd(&["SET", "user:2", "x"]),
        Reply::Simple("QUEUED".into())
    );
    assert!(error_text(t.cmd(&["SET", "user:vip:2", "y"])).starts_with("CROSSUNIT "));
    assert!(error_text(t.cmd(&["EXEC"])).starts_with("EXECABORT "));
    assert_eq!(get(&a, "user:2"), "(nil)");
    // Planned failover of `users` from site 1 to site 3 (not a neighbour
    // of site 1: site 3's report, relayed by site 2, says it holds
    // everything), run at the home.
    for i in 0..50 {
        ok(&a, &["SET", &format!("user:n{i}"), &i.to_string()]);
    }
    assert!(
        error_text(b.connect().cmd(&["UNIT", "FAILOVER", "users", "3"]))
            .starts_with("REDIRECT users 1 ")
    );
    ok(&a, &["UNIT", "FAILOVER", "users", "3"]);
    // The old home redirects at once; the new one holds every write.
    assert_eq!(
        error_text(a.connect().cmd(&["SET", "user:1", "z"])),
        format!("REDIRECT users 3 127.0.0.1:{}", c.port)
    );
    assert_eq!(get(&c, "user:n49"), "49");
    wait_until("site 3 to take the unit", || {
        home_of(&c, "user:1").contains("\"home\"")
    });
    ok(&c, &["SET", "user:1", "c"]);
    // Failback is a failover back.
    ok(&c, &["UNIT", "FAILOVER", "users", "1"]);
    ok(&a, &["SET", "user:1", "back"]);
    // Dropping a unit gives its keys to the next matching one (none: shared).
    ok(&b, &["UNIT", "DROP", "vip"]);
    wait_until("the drop to reach site 1", || {
        home_of(&a, "user:vip:1").contains("\"users\"")
    });
    assert!(error_text(b.connect().cmd(&["INCR", "user:vip:1"])).starts_with("REDIRECT users 1 "));
    converge(&sites, |p| get(p, "user:1") == "back");
    // Errors are clear.
    assert_eq!(
        error_text(a.connect().cmd(&["UNIT", "OWNER", "nope", "1"])),
        "ERR no such unit"
    );
    assert!(error_text(a.connect().cmd(&["UNIT", "OWNER", "users", "9"])).contains("not a member"));
    assert!(error_text(
        a.connect()
            .cmd(&["UNIT", "FAILOVER", "users", "2", "FORCE"])
    )
    .contains("NOWAIT"));
}

// ---- helpers for the tests below ------------------------------------------

/// Starts a site with extra flags, on a fresh data directory.
fn start_with(certs: &Path, me: &Site, peers: &[&Site], extra: &[&str]) -> ChorusProcess {
    let mut args = site_args(certs, "ca", me, peers);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ChorusProcess::start(&refs)
}

/// Restarts a stopped site on its data directory.
fn restart_in(
    dir: tempfile::TempDir,
    certs: &Path,
    me: &Site,
    peers: &[&Site],
    extra: &[&str],
) -> ChorusProcess {
    let mut args = site_args(certs, "ca", me, peers);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ChorusProcess::start_in(dir, &refs)
}

/// One `name:value` field of `INFO replication`.
fn info_field(p: &ChorusProcess, name: &str) -> Option<String> {
    let info = text(p.connect().cmd(&["INFO", "replication"]));
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

fn info_number(p: &ChorusProcess, name: &str) -> u64 {
    info_field(p, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {name} in INFO replication"))
}

/// Polls `check` until it holds; panics with `what` after `CONVERGE`.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + CONVERGE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn streaming_to(p: &ChorusProcess, peer: u16) -> bool {
    let info = text(p.connect().cmd(&["INFO", "replication"]));
    info.lines()
        .any(|l| l.contains(&format!(":id={peer},")) && l.contains("state=streaming"))
}

fn two_sites() -> (tempfile::TempDir, Site, Site) {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), 2);
    let s1 = Site {
        id: 1,
        repl_port: free_port(),
    };
    let s2 = Site {
        id: 2,
        repl_port: free_port(),
    };
    (certs, s1, s2)
}

fn error_text(r: Reply) -> String {
    match r {
        Reply::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

// ---- write-mode sync ---------------------------------------------------------

#[test]
fn sync_writes_wait_for_a_peer_and_fail_honestly_without_one() {
    let (certs, s1, s2) = two_sites();
    let a = start_with(
        certs.path(),
        &s1,
        &[&s2],
        &["--write-mode", "sync", "--sync-write-timeout-ms", "1000"],
    );
    let b = start(certs.path(), &s2, &[&s1]);
    wait_until("site 1 streaming to site 2", || streaming_to(&a, 2));
    let mut ca = a.connect();
    assert_eq!(
        ca.cmd(&["CONFIG", "GET", "write-mode"]),
        Reply::Array(vec![Reply::bulk("write-mode"), Reply::bulk("sync")])
    );
    // Acknowledged by the peer before the reply: the peer has it already.
    for i in 0..20 {
        let key = format!("k{i}");
        assert_eq!(text(ca.cmd(&["SET", &key, "v"])), "OK");
        assert_eq!(
            get(&b, &key),
            "v",
            "reply released before the peer held {key}"
        );
    }
    assert_eq!(text(ca.cmd(&["INCR", "n"])), "1");
    assert_eq!(get(&b, "n"), "1");
    // EXEC too, as one op.
    assert_eq!(text(ca.cmd(&["MULTI"])), "OK");
    ca.cmd(&["SET", "t1", "x"]);
    ca.cmd(&["INCR", "n"]);
    assert!(matches!(ca.cmd(&["EXEC"]), Reply::Array(_)));
    assert_eq!(get(&b, "t1"), "x");
    assert_eq!(get(&b, "n"), "2");
    // Reads and failed writes do not wait.
    assert_eq!(text(ca.cmd(&["GET", "k0"])), "v");
    assert!(error_text(ca.cmd(&["INCR", "t1"])).starts_with("ERR"));

    // The peer gets nothing (paused link): the write times out, applied here.
    assert_eq!(text(ca.cmd(&["PEER", "PAUSE", "2"])), "OK");
    let writer_port = a.port;
    let writer = std::thread::spawn(move || {
        let mut c = Conn::connect(writer_port);
        let t = Instant::now();
        let reply = c.cmd(&["SET", "paused", "v"]);
        (reply, t.elapsed())
    });
    // Meanwhile other clients are served at once.
    let mut admin = a.connect();
    wait_until("the write to be waiting", || {
        text(admin.cmd(&["CLIENT", "LIST"])).contains("cmd=set")
    });
    let t = Instant::now();
    assert_eq!(text(a.connect().cmd(&["PING"])), "PONG");
    assert_eq!(get(&a, "k1"), "v");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "other clients waited"
    );
    assert!(!writer.is_finished(), "the write did not wait for its ack");
    let (reply, waited) = writer.join().unwrap();
    assert_eq!(
        error_text(reply),
        "NOTREPLICATED write applied locally but not acknowledged by any peer within 1000 ms"
    );
    assert!(waited >= Duration::from_millis(1000), "{waited:?}");
    assert!(waited < Duration::from_millis(5000), "{waited:?}");
    assert_eq!(get(&a, "paused"), "v", "the write is applied locally");
    // Resumed: it replicates after all, and sync writes succeed again.
    assert_eq!(text(ca.cmd(&["PEER", "RESUME", "2"])), "OK");
    wait_until("the paused write at site 2", || get(&b, "paused") == "v");
    assert_eq!(text(ca.cmd(&["SET", "again", "v"])), "OK");

    // The peer is gone: the same error after the timeout.
    drop(b);
    let t = Instant::now();
    assert_eq!(
        error_text(ca.cmd(&["SET", "alone", "v"])),
        "NOTREPLICATED write applied locally but not acknowledged by any peer within 1000 ms"
    );
    assert!(t.elapsed() >= Duration::from_millis(1000));
    assert_eq!(get(&a, "alone"), "v");
    assert!(info_number(&a, "sync_writes_acked") >= 23);
    assert_eq!(info_number(&a, "sync_writes_not_replicated"), 2);
    assert_eq!(info_field(&a, "write_mode").as_deref(), Some("sync"));
    // Back to async at runtime: no wait.
    assert_eq!(
        text(ca.cmd(&["CONFIG", "SET", "write-mode", "async"])),
        "OK"
    );
    assert_eq!(text(ca.cmd(&["SET", "async", "v"])), "OK");
}

#[test]
fn sync_writes_on_a_site_without_peers_fail_at_once() {
    let p = ChorusProcess::start(&["--write-mode", "sync"]);
    let mut c = p.connect();
    let t = Instant::now();
    assert_eq!(
        error_text(c.cmd(&["SET", "k", "v"])),
        "NOTREPLICATED write applied locally but not acknowledged by any peer: this site has no peer (write-mode sync)"
    );
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(text(c.cmd(&["GET", "k"])), "v");
    assert_eq!(text(c.cmd(&["CONFIG", "SET", "write-mode", "async"])), "OK");
    assert_eq!(text(c.cmd(&["SET", "k", "w"])), "OK");
    assert!(
        error_text(c.cmd(&["CONFIG", "SET", "write-mode", "eventually"])).contains("write-mode")
    );
}

// ---- runtime peer changes survive a restart ------------------------------------

#[test]
fn runtime_peer_changes_survive_a_restart() {
    let (certs, s1, s2) = two_sites();
    // Site 1 starts without peers; site 2 knows site 1 from its flags.
    let a = start(certs.path(), &s1, &[]);
    let b = start(certs.path(), &s2, &[&s1]);
    let peer2 = format!("127.0.0.1:{}", s2.repl_port);
    assert_eq!(text(a.connect().cmd(&["PEER", "ADD", "2", &peer2])), "OK");
    wait_until("site 1 streaming to site 2", || streaming_to(&a, 2));
    let peers_file = a.dir.path().join("data").join("peers.conf");
    let saved = std::fs::read_to_string(&peers_file).unwrap();
    assert!(saved.contains(&format!("add 2 {peer2}")), "{saved}");

    // Restarted without any --peer: it reconnects to site 2.
    let a = restart_in(a.into_dir(), certs.path(), &s1, &[], &[]);
    wait_until("site 1 reconnected to site 2", || streaming_to(&a, 2));
    b.connect().cmd(&["SET", "from2", "x"]);
    wait_until("site 2's write at site 1", || get(&a, "from2") == "x");

    // Removed at runtime: after a restart it stays removed, even with a
    // --peer flag naming it (the runtime change is newer).
    assert_eq!(text(a.connect().cmd(&["PEER", "REMOVE", "2"])), "OK");
    assert_eq!(info_number(&a, "configured_peers"), 0);
    let a = restart_in(a.into_dir(), certs.path(), &s1, &[], &[]);
    assert_eq!(info_number(&a, "configured_peers"), 0);
    let a = restart_in(a.into_dir(), certs.path(), &s1, &[&s2], &[]);
    assert_eq!(info_number(&a, "configured_peers"), 0);
    assert_eq!(a.connect().cmd(&["PEER", "LIST"]), Reply::Array(vec![]));
    // A PEER ADD brings it back.
    assert_eq!(text(a.connect().cmd(&["PEER", "ADD", "2", &peer2])), "OK");
    wait_until("site 1 streaming to site 2 again", || streaming_to(&a, 2));
}

#[test]
fn a_damaged_peer_list_stops_the_start_with_a_clear_error() {
    let (certs, s1, _) = two_sites();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data").join("peers.conf"),
        "chorus-peers 1\nadd 2 not-an-address\n",
    )
    .unwrap();
    let mut cmd = Command::new(server_binary());
    cmd.args(["--port", "0", "--dir"])
        .arg(dir.path().join("data"))
        .args(site_args(certs.path(), "ca", &s1, &[]));
    let (status, _out, err) = run_bounded(&mut cmd, None, Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("peers.conf") && err.contains("line 2") && err.contains("not-an-address"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

// ---- a site stopped longer than the backlog -----------------------------------

#[test]
fn a_site_stopped_longer_than_the_backlog_catches_up_by_full_sync_and_keeps_its_writes() {
    let (certs, s1, s2) = two_sites();
    // Site 1 keeps only 16 KiB of ops for peers that are behind.
    let a = start_with(
        certs.path(),
        &s1,
        &[&s2],
        &[
            "--repl-backlog-size",
            "16kb",
            "--anti-entropy-interval-secs",
            "1",
        ],
    );
    let b = start_with(
        certs.path(),
        &s2,
        &[&s1],
        &["--anti-entropy-interval-secs", "1"],
    );
    assert_eq!(
        info_field(&a, "repl_backlog_size").as_deref(),
        Some("16384")
    );
    a.connect().cmd(&["SET", "early", "1"]);
    converge(&[&a, &b], |p| get(p, "early") == "1");
    // Writes at site 2 that never leave it before it stops.
    assert_eq!(text(b.connect().cmd(&["PEER", "PAUSE", "1"])), "OK");
    for i in 0..20 {
        b.connect().cmd(&["SET", &format!("b-before-{i}"), "v"]);
    }
    let b_dir = b.into_dir();
    // Site 1 writes far more than its backlog holds while site 2 is away.
    let value = "x".repeat(200);
    let mut ca = a.connect();
    for i in 0..300 {
        assert_eq!(text(ca.cmd(&["SET", &format!("a-{i}"), &value])), "OK");
    }
    // The backlog holds what site 2 lacks, within its 16 KiB bound.
    let held = info_number(&a, "repl_backlog_histlen");
    assert!(held > 0 && held <= 16384, "backlog holds {held} bytes");
    assert!(info_number(&a, "repl_backlog_ops") >= 1);
    // Memory holds the newest ops' bytes (within their bound) and an entry
    // per op; the rest is in the op log.
    let tail = info_number(&a, "repl_backlog_tail_bytes");
    assert!(tail <= held, "tail {tail} of {held}");
    assert!(info_number(&a, "repl_backlog_memory_bytes") >= tail);
    // Site 2 comes back and takes writes before site 1 sends it anything.
    assert_eq!(text(ca.cmd(&["PEER", "PAUSE", "2"])), "OK");
    let b = restart_in(
        b_dir,
        certs.path(),
        &s2,
        &[&s1],
        &["--anti-entropy-interval-secs", "1"],
    );
    for i in 0..20 {
        assert_eq!(
            text(b.connect().cmd(&["SET", &format!("b-after-{i}"), "v"])),
            "OK"
        );
    }
    assert_eq!(text(ca.cmd(&["PEER", "RESUME", "2"])), "OK");
    converge(&[&a, &b], |p| text(p.connect().cmd(&["DBSIZE"])) == "341");
    assert!(info_number(&a, "full_syncs_sent") >= 1, "no full sync sent");
    assert!(
        info_number(&b, "full_syncs_received") >= 1,
        "no full sync received"
    );
    for p in [&a, &b] {
        for i in 0..20 {
            assert_eq!(get(p, &format!("b-before-{i}")), "v");
            assert_eq!(get(p, &format!("b-after-{i}")), "v");
        }
        assert_eq!(get(p, "a-299"), value);
        assert_eq!(get(p, "early"), "1");
    }
    assert_eq!(digest(&a), digest(&b));
    // Anti-entropy over real QUIC: the converged sites compare digests and
    // find nothing to repair.
    wait_until("an anti-entropy check", || {
        info_number(&a, "anti_entropy_checks") + info_number(&b, "anti_entropy_checks") >= 2
    });
    assert_eq!(info_number(&a, "anti_entropy_repairs"), 0);
    assert_eq!(info_number(&b, "anti_entropy_repairs"), 0);
    // An operator's round on demand.
    let checks = info_number(&a, "anti_entropy_checks") + info_number(&b, "anti_entropy_checks");
    assert_eq!(text(a.connect().cmd(&["PEER", "CHECK", "2"])), "OK");
    assert!(error_text(a.connect().cmd(&["PEER", "CHECK", "9"])).contains("no such peer"));
    wait_until("the requested anti-entropy round", || {
        info_number(&a, "anti_entropy_checks") + info_number(&b, "anti_entropy_checks") > checks
    });
    assert_eq!(info_number(&a, "anti_entropy_repairs"), 0);
}

// ---- a site rebuilt on an empty disk ------------------------------------------

#[test]
fn a_site_rebuilt_on_an_empty_disk_takes_writes_before_any_peer_connects() {
    let unix_secs = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let (certs, s1, s2) = two_sites();
    let a = start(certs.path(), &s1, &[&s2]);
    let b = start(certs.path(), &s2, &[&s1]);
    let b_created_secs = unix_secs();
    for i in 0..10 {
        assert_eq!(
            text(b.connect().cmd(&["SET", &format!("b{i}"), "old"])),
            "OK"
        );
    }
    converge(&[&a, &b], |p| get(p, "b9") == "old");
    // Site 2's disk is lost; it comes back empty, with no peer yet, and
    // takes writes at once. Its OpIds must not be those of its old life,
    // which site 1 holds (else site 1 would drop them as duplicates). A
    // fresh directory's incarnation is the wall-clock second, so the rebuild
    // must fall in a later second than the first start (docs/decisions.md).
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(3);
    while unix_secs() <= b_created_secs {
        assert!(Instant::now() < deadline, "the wall clock does not advance");
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = start(certs.path(), &s2, &[]);
    let mut cb = b.connect();
    assert_eq!(text(cb.cmd(&["SET", "fresh", "v"])), "OK");
    assert_eq!(text(cb.cmd(&["SET", "b0", "new"])), "OK");
    assert_eq!(text(cb.cmd(&["INCR", "n"])), "1");
    let peer1 = format!("127.0.0.1:{}", s1.repl_port);
    assert_eq!(text(cb.cmd(&["PEER", "ADD", "1", &peer1])), "OK");
    converge(&[&a, &b], |p| {
        get(p, "fresh") == "v" && get(p, "b9") == "old"
    });
    for p in [&a, &b] {
        assert_eq!(get(p, "b0"), "new");
        assert_eq!(get(p, "n"), "1");
        for i in 1..10 {
            assert_eq!(get(p, &format!("b{i}")), "old");
        }
    }
}

// ---- a site restored from a backup -------------------------------------------

/// Copies a data directory (the backup an operator takes of a stopped site).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// SHUTDOWN, and the data directory once the process is gone.
fn shut_down(p: ChorusProcess) -> tempfile::TempDir {
    let mut p = p;
    let _ = p.connect().call(&[b"SHUTDOWN"]);
    assert_eq!(p.wait_exit(), Some(0), "clean shutdown");
    p.into_dir()
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Waits until the wall clock is past `secs` (a start takes the wall-clock
/// second as its incarnation at least: see docs/operations.md).
fn next_second_after(secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(4);
    while unix_secs() <= secs {
        assert!(Instant::now() < deadline, "the wall clock does not advance");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The runbook "Restoring a site from a backup" (docs/operations.md), with
/// the writes a restored site must never lose: those its peer holds from the
/// life after the backup, and those it takes before the peer is back.
#[test]
fn a_site_restored_from_a_backup_reissues_no_opid_and_loses_no_write() {
    let (certs, s1, s2) = two_sites();
    let ae = ["--anti-entropy-interval-secs", "1"];
    let a = start_with(certs.path(), &s1, &[&s2], &ae);
    let b = start_with(certs.path(), &s2, &[&s1], &ae);
    assert_eq!(text(a.connect().cmd(&["SET", "base", "v"])), "OK");
    converge(&[&a, &b], |p| get(p, "base") == "v");
    // The backup: site 1 stopped cleanly, its directory copied.
    let a_dir = shut_down(a);
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&a_dir.path().join("data"), &backup.path().join("data"));
    // Site 1's next life: writes that reach site 2, then a clean stop.
    let second_life = unix_secs();
    let a = restart_in(a_dir, certs.path(), &s1, &[&s2], &ae);
    assert_eq!(text(a.connect().cmd(&["SET", "a", "after1"])), "OK");
    assert_eq!(text(a.connect().cmd(&["INCR", "n"])), "1");
    wait_until("site 2 holds the second life's writes", || {
        get(&b, "a") == "after1" && get(&b, "n") == "1"
    });
    let a_dir = shut_down(a);
    let b_dir = shut_down(b);
    // The old copy is put back; site 1 starts with no peer reachable and
    // takes writes at once.
    std::fs::remove_dir_all(a_dir.path().join("data")).unwrap();
    copy_dir(&backup.path().join("data"), &a_dir.path().join("data"));
    // The second life took at most `second_life + 1` (one above the
    // backup's stored incarnation, if that was larger than its clock).
    next_second_after(second_life + 1);
    let a = restart_in(a_dir, certs.path(), &s1, &[&s2], &ae);
    assert_eq!(get(&a, "a"), "(nil)", "the backup predates the second life");
    assert_eq!(text(a.connect().cmd(&["SET", "b", "after2"])), "OK");
    assert_eq!(text(a.connect().cmd(&["INCRBY", "n", "10"])), "10");
    // Site 2 comes back: every write of every life is kept at both sites.
    let b = restart_in(b_dir, certs.path(), &s2, &[&s1], &ae);
    converge(&[&a, &b], |p| {
        get(p, "a") == "after1" && get(p, "b") == "after2" && get(p, "n") == "11"
    });
    for p in [&a, &b] {
        assert_eq!(get(p, "base"), "v");
        assert_eq!(info_number(p, "opid_conflicts"), 0);
    }
    // Anti-entropy rounds compare the database in use (db 0) and repair
    // nothing: the restore left no divergence for them to find.
    let checks = |p: &ChorusProcess| info_number(p, "anti_entropy_checks");
    let before = checks(&a) + checks(&b);
    wait_until("two anti-entropy rounds", || {
        checks(&a) + checks(&b) >= before + 2
    });
    for p in [&a, &b] {
        assert_eq!(info_number(p, "anti_entropy_repairs"), 0);
        assert_eq!(get(p, "a"), "after1");
        assert_eq!(get(p, "b"), "after2");
        assert_eq!(get(p, "n"), "11");
    }
    assert_eq!(digest(&a), digest(&b));
}

/// Anti-entropy under writes at both sites: a row lost behind the engine's
/// back cannot be planted in a real process, so this drives the real
/// servers' rounds while both sites write and checks they keep comparing
/// (leaves the writes touch are left for later rounds) without a repair.
#[test]
fn anti_entropy_keeps_comparing_while_both_sites_write() {
    let (certs, s1, s2) = two_sites();
    let ae = ["--anti-entropy-interval-secs", "1"];
    let a = start_with(certs.path(), &s1, &[&s2], &ae);
    let b = start_with(certs.path(), &s2, &[&s1], &ae);
    let checks = |p: &ChorusProcess| info_number(p, "anti_entropy_checks");
    let mut ca = a.connect();
    let mut cb = b.connect();
    let deadline = Instant::now() + CONVERGE;
    let mut i = 0u64;
    // Both sites write without a pause until 3 rounds have compared.
    while checks(&a) + checks(&b) < 3 {
        assert!(
            Instant::now() < deadline,
            "no anti-entropy check under writes"
        );
        for _ in 0..20 {
            ca.cmd(&["SET", &format!("a{}", i % 500), &i.to_string()]);
            cb.cmd(&["HSET", "h", &format!("f{}", i % 50), &i.to_string()]);
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    converge(&[&a, &b], |_| true);
    for p in [&a, &b] {
        assert_eq!(info_number(p, "anti_entropy_repairs"), 0);
        assert_eq!(info_number(p, "anti_entropy_mismatches"), 0);
    }
}

// ---- lists ---------------------------------------------------------------------

#[test]
fn a_brpop_at_site_2_wakes_on_an_lpush_at_site_1() {
    let (certs, s1, s2) = two_sites();
    let a = start(certs.path(), &s1, &[&s2]);
    let b = start(certs.path(), &s2, &[&s1]);
    wait_until("site 1 streaming to site 2", || streaming_to(&a, 2));
    wait_until("site 2 streaming to site 1", || streaming_to(&b, 1));
    let mut blocked = b.connect();
    blocked.send(&chorus_testkit::multibulk(&[b"BRPOP", b"jobs", b"0"]));
    // The BRPOP is registered before the push is made.
    wait_until("a blocked client at site 2", || {
        let info = text(b.connect().cmd(&["INFO", "clients"]));
        info.lines().any(|l| l.trim() == "blocked_clients:1")
    });
    a.connect().cmd(&["LPUSH", "jobs", "job-1"]);
    match blocked.receive() {
        chorus_testkit::Received::Reply(Reply::Array(v), _) => {
            let v: Vec<String> = v.into_iter().map(text).collect();
            assert_eq!(v, ["jobs", "job-1"]);
        }
        other => panic!("BRPOP answered {other:?}"),
    }
    // The pop replicates: site 1's list is empty again.
    wait_until("the pop at site 1", || {
        a.connect().cmd(&["EXISTS", "jobs"]) == Reply::Int(0)
    });
}

/// A site started with no peer and no TLS is alone: its counters fold as
/// they are incremented, and their values are exact.
#[test]
fn a_site_without_peers_folds_its_counters() {
    let p = ChorusProcess::start(&[]);
    assert_eq!(info_field(&p, "counter_folding").as_deref(), Some("alone"));
    let mut c = p.connect();
    for i in 0..2_000 {
        c.cmd(&["INCR", "hits"]);
        c.cmd(&["HINCRBY", "h", "f", "2"]);
        c.cmd(&["ZINCRBY", "z", "0.5", "m"]);
        if i == 1_000 {
            assert_eq!(text(c.cmd(&["SET", "hits", "10"])), "OK");
        }
    }
    assert_eq!(text(c.cmd(&["GET", "hits"])), "1009");
    assert_eq!(text(c.cmd(&["HGET", "h", "f"])), "4000");
    assert_eq!(text(c.cmd(&["ZSCORE", "z", "m"])), "1000");
}

// ---- keyspace notifications --------------------------------------------------

/// Collects `(channel, message)` pairs from `pubsub` until `want` of them
/// came or `CONVERGE` passed.
fn collect(pubsub: &mut redis::PubSub<'_>, want: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + CONVERGE;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        match pubsub.get_message() {
            Ok(msg) => got.push((
                msg.get_channel_name().to_string(),
                msg.get_payload::<String>().unwrap_or_default(),
            )),
            Err(e) if e.is_timeout() => {}
            Err(e) => panic!("pub/sub connection failed: {e}"),
        }
    }
    got
}

#[test]
fn a_subscriber_at_one_site_hears_the_writes_and_expiry_of_another() {
    let (certs, s1, s2) = two_sites();
    // A small clock-skew bound: site 1 deletes an expired key soon after
    // its deadline.
    let skew = ["--max-clock-skew-ms", "50"];
    let a = start_with(certs.path(), &s1, &[&s2], &skew);
    let mut b_args = skew.to_vec();
    b_args.extend(["--notify-keyspace-events", "KA"]);
    let b = start_with(certs.path(), &s2, &[&s1], &b_args);
    wait_until("both sites streaming", || {
        streaming_to(&a, 2) && streaming_to(&b, 1)
    });

    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", b.port)).unwrap();
    let mut con = client.get_connection().unwrap();
    let mut pubsub = con.as_pubsub();
    pubsub
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    pubsub.psubscribe("__keyspace@0__:*").unwrap();
    wait_until("the pattern subscription", || {
        b.connect().cmd(&["PUBSUB", "NUMPAT"]) == Reply::Int(1)
    });

    let mut at_a = a.connect();
    for cmd in [
        &["SET", "k", "v"][..],
        &["LPUSH", "l", "x"],
        &["HSET", "h", "f", "v"],
        &["DEL", "h"],
        &["PEXPIRE", "k", "200"],
    ] {
        assert!(!matches!(at_a.cmd(cmd), Reply::Error(_)), "{cmd:?}");
    }
    let got = collect(&mut pubsub, 6);
    let want: Vec<(String, String)> = [
        ("k", "set"),
        ("l", "lpush"),
        ("h", "hset"),
        ("h", "del"),
        ("k", "expire"),
        // Deleted by site 1's expiry, applied here: `expired` at both.
        ("k", "expired"),
    ]
    .iter()
    .map(|(k, e)| (format!("__keyspace@0__:{k}"), e.to_string()))
    .collect();
    assert_eq!(got, want);
}

// ---- stability and membership --------------------------------------------

#[test]
fn two_sites_fold_their_counters_at_the_stability_frontier() {
    let (certs, s1, s2) = two_sites();
    let a = start_with(certs.path(), &s1, &[&s2], &[]);
    let b = start_with(certs.path(), &s2, &[&s1], &[]);
    wait_until("both sites streaming", || {
        streaming_to(&a, 2) && streaming_to(&b, 1)
    });
    assert_eq!(
        info_field(&a, "counter_folding").as_deref(),
        Some("frontier")
    );
    let (mut ca, mut cb) = (a.connect(), b.connect());
    for _ in 0..1_000 {
        ca.cmd(&["INCR", "hits"]);
        cb.cmd(&["INCR", "hits"]);
        ca.cmd(&["HINCRBY", "h", "f", "2"]);
        cb.cmd(&["ZINCRBY", "z", "0.5", "m"]);
    }
    for p in [&a, &b] {
        wait_until("every increment counted at both sites", || {
            let mut c = p.connect();
            text(c.cmd(&["GET", "hits"])) == "2000"
                && text(c.cmd(&["HGET", "h", "f"])) == "2000"
                && text(c.cmd(&["ZSCORE", "z", "m"])) == "500"
        });
        // A counter leaves the fold queue once it holds one entry per
        // origin: every counter folded, nothing left to fold.
        wait_until("counters folded at the frontier", || {
            info_number(p, "counters_folded") > 0 && info_number(p, "counters_fold_queue") == 0
        });
        assert_eq!(info_number(p, "cluster_members"), 2);
        assert_eq!(info_number(p, "fold_overlaps"), 0);
        assert_eq!(info_field(p, "stability_pinned_by").as_deref(), Some("-"));
    }
    // MEMBER LIST: both sites, this one marked.
    let list = format!("{:?}", a.connect().cmd(&["MEMBER", "LIST"]));
    assert!(list.contains("\"member\""), "{list}");
    assert_eq!(list.matches("\"member\"").count(), 2, "{list}");
    // A SET at site 2 after the folds removes everything it saw.
    assert_eq!(text(cb.cmd(&["SET", "hits", "7"])), "OK");
    wait_until("the SET reaches site 1", || {
        text(a.connect().cmd(&["GET", "hits"])) == "7"
    });
}

#[test]
fn a_removed_site_is_refused_and_stops_pinning_the_frontier() {
    let (certs, s1, s2) = two_sites();
    let a = start_with(certs.path(), &s1, &[&s2], &[]);
    let b = start_with(certs.path(), &s2, &[&s1], &[]);
    wait_until("both sites streaming", || {
        streaming_to(&a, 2) && streaming_to(&b, 1)
    });
    let mut ca = a.connect();
    assert_eq!(
        error_text(ca.cmd(&["MEMBER", "REMOVE", "1"])),
        "ERR this site cannot remove itself; remove it from another member"
    );
    assert_eq!(text(ca.cmd(&["MEMBER", "REMOVE", "2"])), "OK");
    assert_eq!(
        error_text(ca.cmd(&["MEMBER", "ADD", "2"])),
        "ERR site 2 was removed from the cluster; a removed site id is never used again"
    );
    // Site 2 learns of it or is cut off; either way site 1 refuses it from
    // now on and folds without it.
    wait_until("site 1 refuses site 2", || {
        info_number(&a, "handshakes_refused") > 0 || !streaming_to(&a, 2)
    });
    assert_eq!(info_number(&a, "cluster_removed"), 1);
    for _ in 0..100 {
        ca.cmd(&["INCR", "hits"]);
    }
    wait_until("site 1 folds alone in the cluster", || {
        info_number(&a, "counters_folded") > 0 && info_number(&a, "counters_fold_queue") == 0
    });
    assert_eq!(text(ca.cmd(&["GET", "hits"])), "100");
}

/// CLIENT PAUSE holds a site's clients, not replication: a peer's writes
/// keep arriving and are readable during a WRITE pause, and this site's
/// paused write runs when the pause ends and reaches the peer. Server
/// commands inside MULTI/EXEC at a replicating site answer (INFO
/// replication, WAIT and CONFIG SET once waited forever for the store
/// that EXEC holds).
#[test]
fn client_pause_lets_replication_flow_and_exec_runs_server_commands() {
    let (certs, s1, s2) = two_sites();
    let a = start(certs.path(), &s1, &[&s2]);
    let b = start(certs.path(), &s2, &[&s1]);
    wait_until("site 1 streaming to site 2", || streaming_to(&a, 2));
    wait_until("site 2 streaming to site 1", || streaming_to(&b, 1));

    let mut admin = a.connect();
    assert_eq!(text(admin.cmd(&["CLIENT", "PAUSE", "3000", "WRITE"])), "OK");
    let writer_port = a.port;
    let writer = std::thread::spawn(move || {
        let mut c = Conn::connect(writer_port);
        let t = Instant::now();
        let reply = c.cmd(&["SET", "from-a", "1"]);
        (reply, t.elapsed())
    });
    // During the pause: site 2's write is applied at site 1 and read there.
    assert_eq!(text(b.connect().cmd(&["SET", "from-b", "2"])), "OK");
    let mut reader = a.connect();
    wait_until("site 2's write to reach paused site 1", || {
        text(reader.cmd(&["GET", "from-b"])) == "2"
    });
    assert_eq!(get(&b, "from-a"), "(nil)", "the paused write ran");
    let (reply, took) = writer.join().unwrap();
    assert_eq!(reply, Reply::Ok);
    assert!(took >= Duration::from_millis(2000), "waited {took:?}");
    wait_until("site 1's write to reach site 2", || {
        get(&b, "from-a") == "1"
    });

    assert_eq!(text(admin.cmd(&["MULTI"])), "OK");
    for args in [
        &["INFO", "replication"][..],
        &["WAIT", "1", "100"],
        &["CONFIG", "SET", "appendfsync", "everysec"],
        &["PEER", "LIST"],
        &["SET", "in-exec", "v"],
    ] {
        assert_eq!(text(admin.cmd(args)), "QUEUED");
    }
    let Reply::Array(replies) = admin.cmd(&["EXEC"]) else {
        panic!("EXEC answers an array")
    };
    assert!(text(replies[0].clone()).contains("connected_peers:1"));
    assert!(matches!(replies[1], Reply::Int(0 | 1)), "{:?}", replies[1]);
    assert_eq!(replies[2], Reply::Ok);
    let persistence = text(a.connect().cmd(&["INFO", "persistence"]));
    assert!(
        persistence.contains("appendfsync:everysec"),
        "{persistence}"
    );
    wait_until("the transaction to reach site 2", || {
        get(&b, "in-exec") == "v"
    });
}

// ---- pub/sub across sites ------------------------------------------------------

/// One message a subscriber got: (pattern, channel, payload).
type Heard = (Option<String>, String, String);

/// Collects messages from `pubsub` until `want` of them came (skipping the
/// `warmup` channel) or `CONVERGE` passed; then listens `quiet` longer for
/// any extra one.
fn hear(pubsub: &mut redis::PubSub<'_>, want: usize, quiet: Duration) -> Vec<Heard> {
    let mut deadline = Instant::now() + CONVERGE;
    let mut got = Vec::new();
    let mut settled = false;
    loop {
        if got.len() >= want && !settled {
            settled = true;
            deadline = Instant::now() + quiet;
        }
        if Instant::now() >= deadline {
            return got;
        }
        match pubsub.get_message() {
            Ok(msg) if msg.get_channel_name() == "warmup" => {}
            Ok(msg) => got.push((
                msg.get_pattern::<Option<String>>().unwrap_or(None),
                msg.get_channel_name().to_string(),
                msg.get_payload::<String>().unwrap_or_default(),
            )),
            Err(e) if e.is_timeout() => {}
            Err(e) => panic!("pub/sub connection failed: {e}"),
        }
    }
}

/// Sites 1 and 2 peering, both streaming (the certificates' directory first:
/// keep it while they run).
fn two_sites_streaming() -> (tempfile::TempDir, ChorusProcess, ChorusProcess) {
    let (certs, s1, s2) = two_sites();
    let a = start(certs.path(), &s1, &[&s2]);
    let b = start(certs.path(), &s2, &[&s1]);
    wait_until("both sites streaming", || {
        streaming_to(&a, 2) && streaming_to(&b, 1)
    });
    (certs, a, b)
}

/// A connection to `at` for a subscriber (redis crate).
fn subscriber_connection(at: &ChorusProcess) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", at.port)).unwrap();
    client.get_connection().unwrap()
}

/// Subscribes `pubsub` to `warmup`, `channels` and `patterns`.
fn listen(pubsub: &mut redis::PubSub<'_>, channels: &[&str], patterns: &[&str]) {
    pubsub
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    pubsub.subscribe("warmup").unwrap();
    for c in channels {
        pubsub.subscribe(*c).unwrap();
    }
    for p in patterns {
        pubsub.psubscribe(*p).unwrap();
    }
}

/// Publishes on `warmup` at `from` until the subscriber hears one: the
/// pub/sub streams between the sites are open from then on.
fn warm_up(from: &ChorusProcess, pubsub: &mut redis::PubSub<'_>) {
    let deadline = Instant::now() + CONVERGE;
    let mut c = from.connect();
    loop {
        assert!(Instant::now() < deadline, "no pub/sub message crossed");
        c.cmd(&["PUBLISH", "warmup", "x"]);
        match pubsub.get_message() {
            Ok(msg) if msg.get_channel_name() == "warmup" => return,
            Ok(msg) => panic!("unexpected message on {}", msg.get_channel_name()),
            Err(e) if e.is_timeout() => {}
            Err(e) => panic!("pub/sub connection failed: {e}"),
        }
    }
}

/// `name=value` of `INFO replication`'s line for `peer` at `p`.
fn peer_info(p: &ChorusProcess, peer: u16, name: &str) -> u64 {
    let info = text(p.connect().cmd(&["INFO", "replication"]));
    let line = info
        .lines()
        .find(|l| l.contains(&format!(":id={peer},")))
        .unwrap_or_else(|| panic!("no line for peer {peer}"));
    line.split(',')
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

#[test]
fn a_subscriber_at_site_2_hears_what_site_1_publishes_in_order() {
    let (_certs, a, b) = two_sites_streaming();
    let mut con = subscriber_connection(&b);
    let mut pubsub = con.as_pubsub();
    listen(&mut pubsub, &["news"], &["n*"]);
    warm_up(&a, &mut pubsub);

    let mut at_a = a.connect();
    for i in 0..100 {
        let payload = format!("m{i}");
        // The reply counts the receivers at the publishing site only.
        assert_eq!(
            at_a.cmd(&["PUBLISH", "news", &payload]),
            Reply::Int(0),
            "PUBLISH counts site 1's subscribers only"
        );
    }
    let got = hear(&mut pubsub, 200, Duration::from_millis(300));
    // Each message once to the channel subscription, once to the pattern,
    // in publish order.
    let want: Vec<Heard> = (0..100)
        .flat_map(|i| {
            [
                (None, "news".to_string(), format!("m{i}")),
                (Some("n*".to_string()), "news".to_string(), format!("m{i}")),
            ]
        })
        .collect();
    assert_eq!(got, want);

    // Shard channels cross sites too.
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", b.port)).unwrap();
    let mut shard = client.get_connection().unwrap();
    shard
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let _: redis::Value = redis::cmd("SSUBSCRIBE")
        .arg("sch")
        .query(&mut shard)
        .unwrap();
    wait_until("the shard subscription", || {
        b.connect().cmd(&["PUBSUB", "SHARDNUMSUB", "sch"])
            == Reply::Array(vec![Reply::Bulk("sch".into()), Reply::Int(1)])
    });
    assert_eq!(at_a.cmd(&["SPUBLISH", "sch", "hello"]), Reply::Int(0));
    let deadline = Instant::now() + CONVERGE;
    let heard = loop {
        assert!(Instant::now() < deadline, "the shard message did not cross");
        match shard.recv_response() {
            Ok(v) => break v,
            Err(e) if e.is_timeout() => {}
            Err(e) => panic!("shard subscriber failed: {e}"),
        }
    };
    let want = redis::Value::Array(vec![
        redis::Value::BulkString(b"smessage".to_vec()),
        redis::Value::BulkString(b"sch".to_vec()),
        redis::Value::BulkString(b"hello".to_vec()),
    ]);
    assert_eq!(heard, want);
    assert!(peer_info(&a, 2, "pubsub_sent") >= 101);
    assert!(peer_info(&b, 1, "pubsub_received") >= 101);
    assert_eq!(peer_info(&b, 1, "pubsub_duplicates"), 0);
}

#[test]
fn a_chain_relays_messages_to_the_far_site_exactly_once() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), 3);
    let [s1, s2, s3] = [1, 2, 3].map(|id| Site {
        id,
        repl_port: free_port(),
    });
    let a = start(certs.path(), &s1, &[&s2]);
    let b = start(certs.path(), &s2, &[&s1, &s3]);
    let c = start(certs.path(), &s3, &[&s2]);
    wait_until("the chain streaming", || {
        streaming_to(&a, 2) && streaming_to(&b, 1) && streaming_to(&b, 3) && streaming_to(&c, 2)
    });
    let mut at_c = subscriber_connection(&c);
    let mut heard_at_c = at_c.as_pubsub();
    listen(&mut heard_at_c, &["chain"], &[]);
    warm_up(&a, &mut heard_at_c);
    let mut at_a = subscriber_connection(&a);
    let mut heard_at_a = at_a.as_pubsub();
    listen(&mut heard_at_a, &["chain"], &[]);
    warm_up(&c, &mut heard_at_a);

    let mut pub_a = a.connect();
    for i in 0..500 {
        pub_a.cmd(&["PUBLISH", "chain", &format!("a{i}")]);
    }
    let got = hear(&mut heard_at_c, 500, Duration::from_millis(500));
    let want: Vec<Heard> = (0..500)
        .map(|i| (None, "chain".to_string(), format!("a{i}")))
        .collect();
    assert_eq!(got, want, "site 3 hears site 1 through site 2, once each");

    // And back: site 3's messages reach site 1 (site 1's own subscriber
    // hears its own messages too, locally, and never twice).
    let mut pub_c = c.connect();
    for i in 0..50 {
        pub_c.cmd(&["PUBLISH", "chain", &format!("c{i}")]);
    }
    let got = hear(&mut heard_at_a, 550, Duration::from_millis(500));
    assert_eq!(got.len(), 550, "site 1 heard each message once");
    let mine: Vec<&str> = got.iter().map(|h| h.2.as_str()).collect();
    let from_a: Vec<String> = (0..500).map(|i| format!("a{i}")).collect();
    let from_c: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    assert_eq!(
        mine[..500],
        from_a.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    assert_eq!(
        mine[500..],
        from_c.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    // Site 2 passed each message on once; nothing came back to its origin.
    assert_eq!(
        peer_info(&b, 3, "pubsub_sent"),
        peer_info(&c, 2, "pubsub_received")
    );
    assert_eq!(peer_info(&a, 2, "pubsub_duplicates"), 0);
    assert_eq!(peer_info(&c, 2, "pubsub_duplicates"), 0);
}

#[test]
fn messages_to_a_paused_peer_are_dropped_and_counted_then_flow_again() {
    let (_certs, a, b) = two_sites_streaming();
    let mut con = subscriber_connection(&b);
    let mut pubsub = con.as_pubsub();
    listen(&mut pubsub, &["p"], &[]);
    warm_up(&a, &mut pubsub);
    let dropped_before = peer_info(&a, 2, "pubsub_dropped");

    assert_eq!(text(a.connect().cmd(&["PEER", "PAUSE", "2"])), "OK");
    let mut at_a = a.connect();
    for i in 0..20 {
        at_a.cmd(&["PUBLISH", "p", &format!("lost{i}")]);
    }
    assert_eq!(
        hear(&mut pubsub, 0, Duration::from_millis(500)),
        vec![],
        "a paused peer got a message"
    );
    assert_eq!(peer_info(&a, 2, "pubsub_dropped"), dropped_before + 20);
    assert_eq!(info_number(&a, "pubsub_dropped"), dropped_before + 20);

    assert_eq!(text(a.connect().cmd(&["PEER", "RESUME", "2"])), "OK");
    at_a.cmd(&["PUBLISH", "p", "after"]);
    let got = hear(&mut pubsub, 1, Duration::from_millis(300));
    assert_eq!(got, vec![(None, "p".to_string(), "after".to_string())]);
}
