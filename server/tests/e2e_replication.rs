//! End-to-end replication: real chorus-server processes on loopback,
//! replicating over real QUIC with mutual TLS. Every wait polls with a
//! deadline.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chorus_engine::Reply;
use common::{free_port, ChorusProcess};

const CONVERGE: Duration = Duration::from_secs(30);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_chorus-server")
}

fn cert(args: &[&str]) {
    let out = Command::new(bin())
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
    assert_eq!(text(a.connect().cmd(&["PEER", "RESUME", "2"])), "OK");
    assert_eq!(text(b.connect().cmd(&["PEER", "RESUME", "1"])), "OK");
    converge(&[&a, &b], |p| get(p, "n") == "2");
    // The DEL had not seen the concurrent SET: the SET survives.
    assert_eq!(get(&a, "k"), "a");
}
