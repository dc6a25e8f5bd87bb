//! Two embedded Chorus sites in one process, replicating over loopback with
//! mutual TLS. Each takes writes from its own threads at the same time
//! (concurrent INCRs of one counter, SADDs to one set, SETs of one key);
//! then both converge to the same state, with every increment and every
//! member kept, and print it. A subscriber at site 2 counts the changes it
//! saw, its own and site 1's, and prints a few.
//!
//!     cargo run --example embedded
//!
//! The data directories and certificates go to a temporary directory that is
//! removed at the end.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use chorus::replication::quic::tls;
use chorus::{Change, ChangeSource, Peering, Site, SiteOptions};

const CLUSTER: u64 = 7;
const WRITERS: u64 = 4;
const WRITES: u64 = 250;

fn peering(certs: &Path, site: u16, peers: Vec<(u16, SocketAddr)>) -> Peering {
    Peering {
        cluster_id: CLUSTER,
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        peers,
        ca: certs.join("ca/ca.pem"),
        cert: certs.join(format!("site{site}/site.pem")),
        key: certs.join(format!("site{site}/site.key")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let certs = tmp.path().join("certs");
    // What `chorus-server cert ca` and `chorus-server cert site` write.
    tls::generate_ca(&certs.join("ca"))?;
    for site in [1, 2] {
        tls::generate_site(&certs.join("ca"), site, &certs.join(format!("site{site}")))?;
    }

    let mut o1 = SiteOptions::new(1);
    o1.peering = Some(peering(&certs, 1, vec![]));
    let s1 = Site::open(tmp.path().join("site1"), o1)?;
    let a1 = s1.replication_addr().expect("site 1 replicates");

    let mut o2 = SiteOptions::new(2);
    o2.peering = Some(peering(&certs, 2, vec![(1, a1)]));
    let s2 = Site::open(tmp.path().join("site2"), o2)?;
    let a2 = s2.replication_addr().expect("site 2 replicates");
    // Site 1 accepts (and dials) site 2 from now on.
    s1.add_peer(2, a2)?;
    println!("site 1 replicates on {a1}, site 2 on {a2}");

    // Site 2's change feed: its own writes and those replicated from site 1.
    let changes = s2.subscribe();

    // Both sites write at once, from several threads each.
    std::thread::scope(|scope| {
        for (site, name) in [(&s1, "one"), (&s2, "two")] {
            for w in 0..WRITERS {
                scope.spawn(move || {
                    for i in 0..WRITES {
                        site.incr_by(b"visits", 1).expect("INCRBY");
                        let member = format!("{name}-{w}-{i}");
                        site.sadd(b"members", member.as_bytes()).expect("SADD");
                        if i % 50 == 0 {
                            let v = format!("written at site {name}");
                            site.set(b"greeting", v.as_bytes()).expect("SET");
                        }
                    }
                });
            }
        }
    });
    let replicated = s1.wait_replicated(1, Duration::from_secs(10));
    println!("site 1's last write is durable at {replicated} peer(s)");

    // Bounded wait for both sites to hold the same ops and state.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s1.version_vector() != s2.version_vector() || s1.digest() != s2.digest() {
        if Instant::now() > deadline {
            return Err("the sites did not converge within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let expected = 2 * WRITERS * WRITES;
    for (n, site) in [(1, &s1), (2, &s2)] {
        let visits = site.get(b"visits")?.unwrap_or_default();
        let members = site.smembers(b"members")?.len();
        let greeting = site.get(b"greeting")?.unwrap_or_default();
        println!(
            "site {n}: visits = {} (expected {expected}), members = {members}, greeting = {:?}, digest {}",
            String::from_utf8_lossy(&visits),
            String::from_utf8_lossy(&greeting),
            site.digest()
        );
        if visits != expected.to_string().as_bytes() || members as u64 != expected {
            return Err(format!("site {n} lost writes").into());
        }
    }
    // What site 2's subscriber received (bounded: past its queue it gets
    // one `Lagged` for what it missed, and the site never waits for it).
    let (mut local, mut from_peer, mut lagged) = (0u64, 0u64, 0u64);
    while let Ok(change) = changes.try_recv() {
        let seen = match change.source() {
            Some(ChangeSource::Local) => {
                local += 1;
                local
            }
            Some(_) => {
                from_peer += 1;
                from_peer
            }
            None => 0,
        };
        if let Change::Lagged(n) = change {
            lagged += n;
        }
        if seen == 1 || seen == 2 {
            println!("site 2 change: {change:?}");
        }
    }
    println!(
        "site 2's subscriber: {local} local changes, {from_peer} from site 1, {lagged} missed"
    );

    s1.close()?;
    s2.close()?;
    println!("both sites converged with every write kept");
    Ok(())
}
