//! The embedded site (`chorus::Site`) as a Rust program uses it: typed
//! methods, transactions, a clean close and a reopen that finds every write,
//! a drop without close that keeps what was synced, two sites in one
//! process replicating over loopback QUIC with mutual TLS, and the change
//! feed that reports both sites' writes at each.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use chorus::replication::quic::tls;
use chorus::{Change, ChangeSource, Fsync, Peering, Reply, Site, SiteOptions, Subscription};

#[test]
fn typed_methods_answer_as_redis_and_a_reopen_finds_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::open(dir.path(), SiteOptions::new(3)).unwrap();
    assert_eq!(site.get(b"k").unwrap(), None);
    site.set(b"k", b"v").unwrap();
    assert_eq!(site.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(site.incr_by(b"n", 5).unwrap(), 5);
    assert_eq!(site.incr_by(b"n", -2).unwrap(), 3);
    assert!(site.hset(b"h", b"f", b"1").unwrap());
    assert!(!site.hset(b"h", b"f", b"2").unwrap());
    assert_eq!(site.hget(b"h", b"f").unwrap().as_deref(), Some(&b"2"[..]));
    assert!(site.sadd(b"s", b"b").unwrap());
    assert!(site.sadd(b"s", b"a").unwrap());
    assert!(!site.sadd(b"s", b"a").unwrap());
    assert!(site.zadd(b"z", 2.5, b"m").unwrap());
    assert_eq!(site.zscore(b"z", b"m").unwrap(), Some(2.5));
    assert_eq!(site.zscore(b"z", b"nope").unwrap(), None);
    assert!(site.zadd(b"z", 1.0, b"a").unwrap());
    assert_eq!(
        site.zrange_with_scores(b"z", 0, -1).unwrap(),
        vec![
            (bytes::Bytes::from("a"), 1.0),
            (bytes::Bytes::from("m"), 2.5)
        ]
    );
    // Errors come back as Redis's error replies.
    match site.incr_by(b"k", 1) {
        Err(chorus::Error::Command(e)) => {
            assert_eq!(e, "ERR value is not an integer or out of range")
        }
        other => panic!("INCRBY of a string: {other:?}"),
    }
    let replies = site.transaction(0, &[&[b"INCR", b"t"], &[b"INCR", b"t"]]);
    assert_eq!(replies, vec![Reply::Int(1), Reply::Int(2)]);
    // A command the engine does not serve is an error reply, not a panic.
    assert!(site.execute(0, &[b"NOSUCHCOMMAND", b"x"]).is_error());
    let digest = site.digest();
    site.close().unwrap();

    let site = Site::open(dir.path(), SiteOptions::new(3)).unwrap();
    assert_eq!(site.digest(), digest);
    assert_eq!(site.get(b"n").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(
        site.smembers(b"s").unwrap(),
        vec![bytes::Bytes::from("a"), bytes::Bytes::from("b")]
    );
    assert_eq!(
        site.hgetall(b"h").unwrap(),
        vec![(bytes::Bytes::from("f"), bytes::Bytes::from("2"))]
    );
    site.close().unwrap();
}

#[test]
fn under_appendfsync_always_a_write_survives_a_drop_without_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = SiteOptions::new(4);
    o.appendfsync = Fsync::Always;
    let site = Site::open(dir.path(), o.clone()).unwrap();
    for i in 0..100 {
        site.incr_by(b"n", 1).unwrap();
        site.sadd(b"s", format!("m{i}").as_bytes()).unwrap();
    }
    // No close: as if the process died right after the last reply.
    drop(site);
    let site = Site::open(dir.path(), o).unwrap();
    assert_eq!(site.get(b"n").unwrap().as_deref(), Some(&b"100"[..]));
    assert_eq!(site.smembers(b"s").unwrap().len(), 100);
    site.close().unwrap();
}

fn peering(certs: &Path, site: u16, peers: Vec<(u16, SocketAddr)>) -> Peering {
    Peering {
        cluster_id: 11,
        listen: "127.0.0.1:0".parse().unwrap(),
        peers,
        ca: certs.join("ca/ca.pem"),
        cert: certs.join(format!("s{site}/site.pem")),
        key: certs.join(format!("s{site}/site.key")),
    }
}

#[test]
fn two_embedded_sites_replicate_concurrent_writes_and_converge() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    tls::generate_ca(&certs.join("ca")).unwrap();
    for s in [1, 2] {
        tls::generate_site(&certs.join("ca"), s, &certs.join(format!("s{s}"))).unwrap();
    }
    let mut o1 = SiteOptions::new(1);
    o1.peering = Some(peering(&certs, 1, vec![]));
    let s1 = Site::open(tmp.path().join("1"), o1).unwrap();
    let mut o2 = SiteOptions::new(2);
    o2.peering = Some(peering(
        &certs,
        2,
        vec![(1, s1.replication_addr().unwrap())],
    ));
    let s2 = Site::open(tmp.path().join("2"), o2).unwrap();
    s1.add_peer(2, s2.replication_addr().unwrap()).unwrap();

    std::thread::scope(|scope| {
        for (site, tag) in [(&s1, "a"), (&s2, "b")] {
            scope.spawn(move || {
                for i in 0..200 {
                    site.incr_by(b"c", 1).unwrap();
                    site.sadd(b"s", format!("{tag}{i}").as_bytes()).unwrap();
                }
                // A key written concurrently at both sites: one value wins
                // at both (the merge is deterministic).
                site.set(b"k", tag.as_bytes()).unwrap();
            });
        }
    });
    assert_eq!(s2.wait_replicated(1, Duration::from_secs(20)), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while s1.version_vector() != s2.version_vector() || s1.digest() != s2.digest() {
        assert!(Instant::now() < deadline, "no convergence within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    for site in [&s1, &s2] {
        assert_eq!(site.get(b"c").unwrap().as_deref(), Some(&b"400"[..]));
        assert_eq!(site.smembers(b"s").unwrap().len(), 400);
    }
    assert_eq!(s1.get(b"k").unwrap(), s2.get(b"k").unwrap());
    s1.close().unwrap();
    s2.close().unwrap();
}

/// Receives from `sub` until a change to `key` of database 0 comes, for at
/// most 30 s; returns where it came from. Other changes are skipped.
fn source_of_change(sub: &Subscription, key: &[u8]) -> ChangeSource {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no change to {key:?} within 30 s");
        match sub.recv_timeout(left) {
            Ok(Change::Key {
                db: 0,
                key: k,
                source,
                ..
            }) if k.as_ref() == key => return source,
            Ok(Change::Lagged(n)) => panic!("{n} changes lost with a queue of 4096"),
            Ok(_) => {}
            Err(e) => panic!("waiting for {key:?}: {e}"),
        }
    }
}

#[test]
fn a_subscriber_sees_local_writes_and_a_peer_s_writes_with_their_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    tls::generate_ca(&certs.join("ca")).unwrap();
    for s in [1, 2] {
        tls::generate_site(&certs.join("ca"), s, &certs.join(format!("s{s}"))).unwrap();
    }
    let mut oa = SiteOptions::new(1);
    oa.peering = Some(peering(&certs, 1, vec![]));
    let a = Site::open(tmp.path().join("a"), oa).unwrap();
    let mut ob = SiteOptions::new(2);
    ob.peering = Some(peering(&certs, 2, vec![(1, a.replication_addr().unwrap())]));
    let b = Site::open(tmp.path().join("b"), ob).unwrap();
    a.add_peer(2, b.replication_addr().unwrap()).unwrap();
    // The link is up (ops flow from the backlog, not a snapshot).
    a.set(b"warm", b"up").unwrap();
    assert_eq!(a.wait_replicated(1, Duration::from_secs(20)), 1);

    let at_b = b.subscribe();
    let at_a = a.subscribe();
    a.set(b"k", b"from a").unwrap();
    match source_of_change(&at_b, b"k") {
        ChangeSource::Peer(origin) => assert_eq!(origin.site, 1, "written at site 1"),
        other => panic!("site 1's write reported at site 2 as {other:?}"),
    }
    assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"from a"[..]));
    assert_eq!(source_of_change(&at_a, b"k"), ChangeSource::Local);

    b.hset(b"h", b"f", b"from b").unwrap();
    assert_eq!(source_of_change(&at_b, b"h"), ChangeSource::Local);
    match source_of_change(&at_a, b"h") {
        ChangeSource::Peer(origin) => assert_eq!(origin.site, 2, "written at site 2"),
        other => panic!("site 2's write reported at site 1 as {other:?}"),
    }

    // Dropping a subscription unsubscribes; closing the site ends the others.
    drop(at_a);
    a.close().unwrap();
    b.close().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match at_b.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("the subscription outlived its site: {e}"),
        }
    }
}
