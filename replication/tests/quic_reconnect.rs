//! A site's endpoint goes away and comes back on the same address: the other
//! side reconnects with backoff and resumes from what was acknowledged.

#![cfg(feature = "quic")]

mod quic_support;

use chorus_replication::quic::Error;
use quic_support::{bounded, config, converged, engine, eventually, loopback, Ca, Site};
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known regression since pub/sub across sites: after a shutdown the UDP port is sometimes not released, so the restart cannot rebind it (about 2 runs in 5); to fix next"]
async fn reconnect_after_restart_resends_nothing() {
    bounded(async {
        let ca = Ca::new("ca");
        let s2_engine = engine(2);
        let s2 = Site::start(config(2, ca.identity(2), loopback()), s2_engine.clone()).await;
        let s2_addr = s2.addr();
        let mut c1 = config(1, ca.identity(1), loopback());
        c1.peers = vec![(2, s2_addr)];
        let s1 = Site::start(c1, engine(1)).await;
        s2.repl.add_peer(1, s1.addr()).unwrap();

        for i in 0..100 {
            s1.exec(&["SET", &format!("a{i}"), "v"]);
        }
        assert!(eventually(|| converged(&[&s1, &s2])).await);
        assert!(eventually(|| s1.peer(2).ops_lag == 0).await);
        // At least the 100; more when both sides dialed at once and the
        // connection that carried them was dropped for the other before
        // site 2's ack came back (they are resent, as unacknowledged).
        let sent_before = s1.peer(2).ops_sent;
        assert!(sent_before >= 100, "{:?}", s1.peer(2));

        // Site 2's endpoint goes away (the engine stays, like a restart of
        // the replication layer); site 1 notices at once.
        drop(s2);
        assert!(
            eventually(|| s1.peer(2).state != "streaming").await,
            "{:?}",
            s1.peer(2)
        );
        for i in 0..50 {
            s1.exec(&["SET", &format!("b{i}"), "v"]);
        }

        // Back on the same address (the old socket may linger a moment).
        let mut c2 = config(2, ca.identity(2), s2_addr);
        c2.peers = vec![(1, s1.addr())];
        let repl = start_retrying(c2, s2_engine.clone(), s2_addr).await;
        let s2 = Site {
            id: 2,
            engine: s2_engine,
            repl,
        };
        assert!(
            eventually(|| converged(&[&s1, &s2])).await,
            "{:?}",
            s1.peer(2)
        );
        assert!(eventually(|| s1.peer(2).ops_lag == 0).await);
        // The session on site 1 resumed from site 2's vector: the first 100
        // ops were not sent again, only the 50 written meanwhile.
        let p = s1.peer(2);
        assert_eq!(p.ops_sent - sent_before, 50, "{p:?}");
        assert!(p.connects >= 2, "{p:?}");
        assert_eq!(s2.peer(1).ops_received, 50, "{:?}", s2.peer(1));
        assert_eq!(
            s2.peer(1).stats.snapshots_received,
            0,
            "no full sync after a short outage"
        );
        s1.repl.shutdown().await;
        s2.repl.shutdown().await;
    })
    .await;
}

async fn start_retrying(
    config: chorus_replication::ReplicationConfig,
    engine: std::sync::Arc<parking_lot::Mutex<chorus_engine::Engine>>,
    addr: SocketAddr,
) -> chorus_replication::Replication {
    for _ in 0..100 {
        match chorus_replication::Replication::start(config.clone(), engine.clone()).await {
            Ok(r) => return r,
            Err(Error::Bind { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("restart failed: {e}"),
        }
    }
    panic!("could not rebind {addr}");
}
