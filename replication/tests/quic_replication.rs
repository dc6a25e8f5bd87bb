//! The QUIC driver end to end on loopback: real QUIC with mutual TLS, real
//! engines on `MemoryStorage`, sites writing concurrently.

#![cfg(feature = "quic")]

mod quic_support;

use quic_support::{
    bounded, config, converged, engine, eventually, eventually_within, int, loopback, Ca, Site,
};
use std::net::SocketAddr;
use std::time::Duration;

async fn site(ca: &Ca, id: u16) -> Site {
    Site::start(config(id, ca.identity(id), loopback()), engine(id)).await
}

/// 200 rounds of a unique SET, an INCR and a contended SET, with pauses so
/// the other site's writes interleave.
async fn write_some(s: &Site) {
    for i in 0..200 {
        s.exec(&["SET", &format!("k{}-{i}", s.id), &format!("v{i}")]);
        s.exec(&["INCR", "hits"]);
        s.exec(&["SET", "contended", &format!("from {} #{i}", s.id)]);
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Links two running sites both ways (both dial: duplicate connections).
fn link(a: &Site, b: &Site) {
    a.repl.add_peer(b.id, b.addr()).expect("add peer");
    b.repl.add_peer(a.id, a.addr()).expect("add peer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sites_write_concurrently_and_converge() {
    bounded(async {
        let ca = Ca::new("ca");
        let (s1, s2) = (site(&ca, 1).await, site(&ca, 2).await);
        link(&s1, &s2);
        tokio::join!(write_some(&s1), write_some(&s2));
        assert!(
            eventually(|| converged(&[&s1, &s2])).await,
            "sites did not converge"
        );
        assert_eq!(int(s1.get("hits")), 400, "concurrent increments add up");
        assert_eq!(int(s2.get("hits")), 400);
        assert_eq!(s1.dbsize(), 2 * 200 + 2);
        assert_eq!(s1.get("contended"), s2.get("contended"));

        // Both sides run the session over the same connection.
        assert!(
            eventually(|| {
                let (p2, p1) = (s1.peer(2), s2.peer(1));
                p2.dialed_by_us.is_some()
                    && p2.dialed_by_us == p1.dialed_by_us.map(|d| !d)
                    && p2.state == "streaming"
                    && p1.state == "streaming"
            })
            .await,
            "sides disagree on the connection: {:?} / {:?}",
            s1.peer(2),
            s2.peer(1)
        );
        // Durable acks arrive; nothing is lagging any more.
        assert!(
            eventually(|| {
                let (p2, p1) = (s1.peer(2), s2.peer(1));
                p2.ops_lag == 0
                    && p1.ops_lag == 0
                    && p2.time_lag_ms == 0
                    && s1.repl.acked_vv(2).as_ref() == Some(s1.engine.lock().vv())
                    && s2.repl.acked_vv(1).as_ref() == Some(s2.engine.lock().vv())
            })
            .await,
            "acks did not catch up: {:?}",
            s1.peer(2)
        );
        let p2 = s1.peer(2);
        assert!(p2.ops_sent >= 600 && p2.ops_received >= 600, "{p2:?}");
        assert!(p2.bytes_in > 0 && p2.bytes_out > 0 && p2.last_ack_ms.is_some());
        assert!(!p2.refused && p2.last_error.is_none(), "{p2:?}");
        assert!(s1.repl.acked_by_all().is_some());
        s1.repl.shutdown().await;
        s2.repl.shutdown().await;
    })
    .await;
}

/// A free loopback UDP port (bound and released: a race with other
/// processes is possible but harmless on a test machine).
fn free_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind(loopback()).expect("bind");
    socket.local_addr().expect("local addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_keep_the_lower_sites_connection() {
    bounded(async {
        let ca = Ca::new("ca");
        let (a1, a2) = (free_port(), free_port());
        let mut c1 = config(1, ca.identity(1), a1);
        c1.peers = vec![(2, a2)];
        let mut c2 = config(2, ca.identity(2), a2);
        c2.peers = vec![(1, a1)];
        // Both dial at start: two connections complete, one is closed.
        let (s1, s2) = tokio::join!(Site::start(c1, engine(1)), Site::start(c2, engine(2)));
        let settled = || {
            let (p2, p1) = (s1.peer(2), s2.peer(1));
            p2.dialed_by_us == Some(true)
                && p1.dialed_by_us == Some(false)
                && p2.state == "streaming"
                && p1.state == "streaming"
        };
        assert!(
            eventually(settled).await,
            "not the connection site 1 dialed: {:?} / {:?}",
            s1.peer(2),
            s2.peer(1)
        );
        let connects = (s1.peer(2).connects, s2.peer(1).connects);
        for i in 0..20 {
            s1.exec(&["SET", &format!("a{i}"), "1"]);
            s2.exec(&["SET", &format!("b{i}"), "2"]);
        }
        assert!(eventually(|| converged(&[&s1, &s2])).await);
        assert!(settled(), "the kept connection stays");
        assert_eq!((s1.peer(2).connects, s2.peer(1).connects), connects);
        s1.repl.shutdown().await;
        s2.repl.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sites_in_a_chain_converge() {
    bounded(async {
        let ca = Ca::new("ca");
        let (s1, s2, s3) = (site(&ca, 1).await, site(&ca, 2).await, site(&ca, 3).await);
        // 1 - 2 - 3: no link between 1 and 3; site 2 forwards.
        link(&s1, &s2);
        link(&s2, &s3);
        for s in [&s1, &s2, &s3] {
            for i in 0..100 {
                s.exec(&["SET", &format!("k{}-{i}", s.id), "v"]);
                s.exec(&["INCR", "n"]);
            }
        }
        assert!(
            eventually(|| converged(&[&s1, &s2, &s3])).await,
            "chain did not converge: {:?}",
            s2.repl.status()
        );
        assert_eq!(int(s1.get("n")), 300);
        assert_eq!(int(s3.get("n")), 300);
        assert_eq!(s3.dbsize(), 301);
        let ids = |s: &Site| {
            s.repl
                .status()
                .iter()
                .map(|p| p.site_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&s1), vec![2]);
        assert_eq!(ids(&s2), vec![1, 3]);
        // Site 3's ops reached site 1 only through site 2: as ops, or as a
        // full sync (site 1 is new to the reports site 2 made before it
        // connected, docs/semantics.md "Stability").
        let via_2 = s2.peer(1);
        assert!(
            via_2.ops_sent >= 200 || via_2.stats.snapshots_sent >= 1,
            "{via_2:?}"
        );
        for s in [&s1, &s2, &s3] {
            s.repl.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_data_back_and_resume_catches_up() {
    bounded(async {
        let ca = Ca::new("ca");
        let (s1, s2) = (site(&ca, 1).await, site(&ca, 2).await);
        link(&s1, &s2);
        s1.exec(&["SET", "before", "1"]);
        assert!(eventually(|| converged(&[&s1, &s2])).await);
        let connects = (s1.peer(2).connects, s2.peer(1).connects);

        assert!(s1.repl.pause(2) && s2.repl.pause(1));
        assert!(!s1.repl.pause(9), "unknown peer");
        assert!(eventually(|| s1.peer(2).state == "paused" && s2.peer(1).state == "paused").await);
        for i in 0..50 {
            s1.exec(&["SET", &format!("a{i}"), "x"]);
            s2.exec(&["SET", &format!("b{i}"), "y"]);
        }
        // A partition: nothing crosses while paused, the connection stays.
        let crossed = eventually_within(Duration::from_millis(600), || {
            s1.dbsize() != 51 || s2.dbsize() != 51
        })
        .await;
        assert!(
            !crossed,
            "data crossed a paused link: {} / {}",
            s1.dbsize(),
            s2.dbsize()
        );
        assert!(s1.peer(2).ops_lag >= 50 && s1.peer(2).paused);

        assert!(s1.repl.resume(2) && s2.repl.resume(1));
        assert!(
            eventually(|| converged(&[&s1, &s2])).await,
            "no convergence after resume"
        );
        assert_eq!(s1.dbsize(), 101);
        assert!(eventually(|| s1.peer(2).state == "streaming" && s1.peer(2).ops_lag == 0).await);
        assert_eq!(
            (s1.peer(2).connects, s2.peer(1).connects),
            connects,
            "pause kept the connection"
        );
        s1.repl.shutdown().await;
        s2.repl.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_forces_a_full_sync_and_remove_peer_disconnects() {
    bounded(async {
        let ca = Ca::new("ca");
        let (s1, s2) = (site(&ca, 1).await, site(&ca, 2).await);
        link(&s1, &s2);
        for i in 0..30 {
            s2.exec(&["SET", &format!("k{i}"), "v"]);
        }
        assert!(eventually(|| converged(&[&s1, &s2])).await);
        assert!(s1.repl.resync(2));
        assert!(
            eventually(|| s1.peer(2).stats.snapshots_received == 1).await,
            "{:?}",
            s1.peer(2)
        );
        assert_eq!(s2.peer(1).stats.snapshots_sent, 1);
        s1.exec(&["SET", "after", "1"]);
        assert!(eventually(|| converged(&[&s1, &s2])).await);

        // Removing a peer closes its connection; the other side is refused
        // from then on.
        assert!(s1.repl.remove_peer(2));
        assert!(!s1.repl.remove_peer(2));
        assert!(s1.repl.status().is_empty());
        assert!(
            eventually(|| {
                let p = s2.peer(1);
                p.state != "streaming" && p.refused
            })
            .await,
            "{:?}",
            s2.peer(1)
        );
        s1.exec(&["SET", "unseen", "1"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(s2.get("unseen"), chorus_engine::Reply::Nil);
        s1.repl.shutdown().await;
        s2.repl.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_full_sync_streams_under_backpressure_while_both_sides_write() {
    bounded(async {
        let ca = Ca::new("ca");
        let (s1, s2) = (site(&ca, 1).await, site(&ca, 2).await);
        // ~12 MiB of rows at site 2: more than a stream's receive window.
        {
            let value = "x".repeat(4096);
            let mut e = s2.engine.lock();
            for i in 0..3_000 {
                let args = [
                    bytes::Bytes::from("SET"),
                    bytes::Bytes::from(format!("big{i}")),
                    bytes::Bytes::from(value.clone()),
                ];
                e.execute(0, &args, chorus_replication::quic::wall_ms());
            }
            e.sync().unwrap();
        }
        link(&s1, &s2);
        assert!(eventually(|| converged(&[&s1, &s2])).await);
        assert!(s1.repl.resync(2));
        for i in 0..100 {
            s1.exec(&["SET", &format!("during1-{i}"), "v"]);
            s2.exec(&["SET", &format!("during2-{i}"), "v"]);
            s2.exec(&["INCR", "c"]);
        }
        assert!(
            eventually(|| s1.peer(2).stats.snapshots_received == 1).await,
            "{:?}",
            s1.peer(2)
        );
        assert!(eventually(|| converged(&[&s1, &s2])).await);
        assert_eq!(s1.dbsize(), 3_000 + 201);
        assert_eq!(int(s1.get("c")), 100);
        assert!(
            s2.peer(1).bytes_out > 2 * 3_000 * 4_096,
            "sent the rows twice: {:?}",
            s2.peer(1)
        );
        s1.repl.shutdown().await;
        s2.repl.shutdown().await;
    })
    .await;
}
