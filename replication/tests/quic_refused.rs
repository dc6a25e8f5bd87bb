//! Peers without a valid certificate for a configured site are refused
//! before any replication data moves.

#![cfg(feature = "quic")]

mod quic_support;

use quic_support::{bounded, config, engine, eventually, loopback, Ca, Site};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_from_another_ca_is_refused() {
    bounded(async {
        let ours = Ca::new("ours");
        let theirs = Ca::new("theirs");
        let s1 = Site::start(config(1, ours.identity(1), loopback()), engine(1)).await;
        let s3 = Site::start(config(3, theirs.identity(3), loopback()), engine(3)).await;
        for i in 0..20 {
            s1.exec(&["SET", &format!("secret{i}"), "v"]);
        }
        s1.repl.add_peer(3, s3.addr()).unwrap();
        s3.repl.add_peer(1, s1.addr()).unwrap();
        assert!(
            eventually(|| s1.peer(3).refused && s3.peer(1).refused).await,
            "not refused: {:?} / {:?}",
            s1.peer(3),
            s3.peer(1)
        );
        // Both directions kept failing at TLS: retried with backoff, never connected.
        assert!(eventually(|| s1.peer(3).refusals >= 2).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (s, p) in [(&s1, s1.peer(3)), (&s3, s3.peer(1))] {
            assert_eq!(p.connects, 0, "site {}: {p:?}", s.id);
            assert_eq!((p.bytes_in, p.bytes_out), (0, 0), "site {}: {p:?}", s.id);
            assert!(p.state == "down" || p.state == "connecting", "{p:?}");
            assert!(
                p.last_refusal.as_deref().unwrap_or("").contains("TLS"),
                "{p:?}"
            );
        }
        assert_eq!(s3.dbsize(), 0, "nothing reached the foreign site");
        assert!(s1.repl.endpoint_status().handshakes_refused > 0);
        s1.repl.shutdown().await;
        s3.repl.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_is_not_a_peer_is_refused() {
    bounded(async {
        let ca = Ca::new("ca");
        let s1 = Site::start(config(1, ca.identity(1), loopback()), engine(1)).await;
        let s4 = Site::start(config(4, ca.identity(4), loopback()), engine(4)).await;
        s1.exec(&["SET", "k", "v"]);
        // Site 4 has a valid certificate but site 1 does not list it.
        s4.repl.add_peer(1, s1.addr()).unwrap();
        assert!(
            eventually(|| s4.peer(1).refused).await,
            "not refused: {:?}",
            s4.peer(1)
        );
        let p = s4.peer(1);
        assert!(
            p.last_refusal
                .as_deref()
                .unwrap_or("")
                .contains("not a peer"),
            "{p:?}"
        );
        assert_eq!(p.ops_received, 0);
        assert_eq!(s4.dbsize(), 0);
        let e = s1.repl.endpoint_status();
        assert!(e.handshakes_refused > 0, "{e:?}");
        assert!(e.last_refusal.unwrap_or_default().contains("site 4"));
        s1.repl.shutdown().await;
        s4.repl.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_refused_at_start() {
    let ca = Ca::new("ca");
    let mut c = config(1, ca.identity(1), loopback());
    c.peers = vec![(1, loopback())];
    let err = chorus_replication::Replication::start(c, engine(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("own peer"), "{err}");
    let c = config(2, ca.identity(2), loopback());
    let err = chorus_replication::Replication::start(c, engine(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("engine is site 1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_of_another_cluster_is_refused_in_the_handshake() {
    bounded(async {
        let ca = Ca::new("ca");
        let s1 = Site::start(config(1, ca.identity(1), loopback()), engine(1)).await;
        let mut c2 = config(2, ca.identity(2), loopback());
        c2.cluster_id = quic_support::CLUSTER + 1;
        let s2 = Site::start(c2, engine(2)).await;
        s1.exec(&["SET", "k", "v"]);
        s1.repl.add_peer(2, s2.addr()).unwrap();
        s2.repl.add_peer(1, s1.addr()).unwrap();
        assert!(
            eventually(|| s1.peer(2).refused && s2.peer(1).refused).await,
            "{:?} / {:?}",
            s1.peer(2),
            s2.peer(1)
        );
        let p = s2.peer(1);
        assert!(
            p.last_refusal
                .as_deref()
                .unwrap_or("")
                .contains("ClusterMismatch"),
            "{p:?}"
        );
        assert_eq!(p.ops_received, 0);
        assert_eq!(s2.dbsize(), 0);
        s1.repl.shutdown().await;
        s2.repl.shutdown().await;
    })
    .await;
}
