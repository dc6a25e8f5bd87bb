//! Two or three real engines replicating through real `PeerSession`s over an
//! in-memory pipe (see `support`).

mod support;

use bytes::Bytes;
use chorus_engine::id::VersionVector;
use chorus_engine::keyspace::image::RowImage;
use chorus_engine::log::encode_op;
use chorus_replication::session::SessionError;
use chorus_replication::wire::{
    encode_frame, Hello, Message, Published, RefuseReason, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN,
    PUBSUB_PROTOCOL_VERSION,
};
use chorus_replication::{PeerSession, PeerState, SessionConfig, SessionEvent, SyncDirection};
use support::{engine_config, session_config, Net, CLUSTER};

fn refused(events: &[SessionEvent]) -> Vec<(RefuseReason, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Refused { reason, by_peer } => Some((reason.clone(), *by_peer)),
            _ => None,
        })
        .collect()
}

fn connected(events: &[SessionEvent]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, SessionEvent::Connected { .. }))
}

fn closed(events: &[SessionEvent]) -> Option<SessionError> {
    events.iter().find_map(|e| match e {
        SessionEvent::Closed { error } => Some(error.clone()),
        _ => None,
    })
}

fn full_syncs(events: &[SessionEvent], dir: SyncDirection) -> usize {
    events
        .iter()
        .filter(
            |e| matches!(e, SessionEvent::FullSyncFinished { direction, .. } if *direction == dir),
        )
        .count()
}

/// Ops a site issues at its first session with a peer: one, adding both
/// sites to the cluster's membership.
const MEMBERSHIP_OPS: u64 = 1;

#[test]
fn handshake_refuses_another_cluster() {
    let mut net = Net::new(&[1, 2]);
    let l = net.link_with(0, 1, SessionConfig::new(1), SessionConfig::new(2));
    net.connect(l);
    net.run(5);
    let a = refused(net.events(l, 0));
    let b = refused(net.events(l, 1));
    assert!(
        a.contains(&(RefuseReason::ClusterMismatch { ours: 1, theirs: 2 }, false)),
        "{a:?}"
    );
    assert!(
        b.contains(&(RefuseReason::ClusterMismatch { ours: 2, theirs: 1 }, false)),
        "{b:?}"
    );
    assert!(!connected(net.events(l, 0)) && !connected(net.events(l, 1)));
    assert_eq!(net.session(l, 0).state(), PeerState::Down);
    assert_eq!(net.session(l, 1).state(), PeerState::Down);
}

#[test]
fn handshake_refuses_a_duplicate_site_id() {
    let mut net = Net::new(&[7, 7]);
    let l = net.link(0, 1);
    net.connect(l);
    net.write(0, "k", "v");
    net.run(5);
    assert!(
        refused(net.events(l, 0)).contains(&(RefuseReason::DuplicateSiteId { site_id: 7 }, false))
    );
    assert!(
        refused(net.events(l, 1)).contains(&(RefuseReason::DuplicateSiteId { site_id: 7 }, false))
    );
    // Nothing moved.
    assert_eq!(net.engine(1).dbsize(0), 0);
    assert_eq!(net.session(l, 0).stats().ops_sent, 0);
}

#[test]
fn handshake_refuses_an_unexpected_site() {
    let mut net = Net::new(&[1, 2]);
    let mut ca = session_config();
    ca.peer_site_id = Some(3);
    let l = net.link_with(0, 1, ca, session_config());
    net.connect(l);
    net.run(5);
    assert!(refused(net.events(l, 0)).contains(&(
        RefuseReason::UnexpectedSite {
            expected: 3,
            got: 2
        },
        false
    )));
    // Site 2 accepted site 1 and then learnt it was refused.
    assert!(connected(net.events(l, 1)));
    assert!(refused(net.events(l, 1))
        .iter()
        .any(|(_, by_peer)| *by_peer));
    assert_eq!(net.session(l, 1).state(), PeerState::Down);
}

#[test]
fn handshake_refuses_an_unsupported_protocol_version() {
    let mut engine = support::open_engine(engine_config(1));
    let mut s = PeerSession::new(session_config()).unwrap();
    s.handle_connected(0);
    let hello = Message::Hello(Hello {
        cluster_id: CLUSTER,
        site_id: 2,
        protocol_version: PROTOCOL_VERSION + 1,
        vv: VersionVector::new(),
    });
    s.handle_bytes(1, &encode_frame(&hello).unwrap(), &mut engine);
    assert_eq!(s.state(), PeerState::Down);
    let mut out = Vec::new();
    while let Some(f) = s.poll_transmit(1, &mut engine) {
        out.push(f);
    }
    let msgs = support::decode_frames(&out);
    assert!(matches!(msgs.first(), Some(Message::Hello(_))));
    assert!(matches!(
        msgs.get(1),
        Some(Message::HelloRefused {
            reason: RefuseReason::ProtocolVersion { .. }
        })
    ));
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Refused { by_peer: false, .. })
    ));
}

#[test]
fn writes_at_both_sites_converge() {
    let mut net = Net::new(&[1, 2]);
    let l = net.link(0, 1);
    // Writes before the connection, during it, on the same and on distinct keys.
    for i in 0..20 {
        net.write(0, &format!("a{i}"), "x");
        net.write(1, &format!("b{i}"), "y");
    }
    net.connect(l);
    for i in 0..50 {
        net.write(i % 2, &format!("shared{}", i % 7), &format!("v{i}"));
        net.write(0, &format!("a-live{i}"), "1");
        net.write(1, &format!("b-live{i}"), "2");
        net.step();
    }
    assert!(net.run_until(1_000, |n| n.converged()));
    assert!(connected(net.events(l, 0)) && connected(net.events(l, 1)));
    assert_eq!(net.engine(0).dbsize(0), 20 + 20 + 7 + 50 + 50);
    assert_eq!(net.session(l, 0).state(), PeerState::Streaming);
    // Incremental only, every op once.
    assert_eq!(full_syncs(net.events(l, 0), SyncDirection::Sending), 0);
    assert_eq!(net.session(l, 1).stats().ops_duplicate, 0);
    assert_eq!(net.session(l, 0).stats().ops_duplicate, 0);
    // Acks catch up: no lag left once durable.
    net.run(20);
    assert_eq!(net.session(l, 0).ops_lag(net.engine(0)), 0);
    assert_eq!(net.session(l, 1).ops_lag(net.engine(1)), 0);
    assert!(net.session(l, 0).stats().last_ack_ms.is_some());
}

#[test]
fn batches_respect_op_and_byte_bounds() {
    let mut net = Net::new(&[1, 2]);
    let mut ca = session_config();
    ca.batch_ops_max = 7;
    ca.batch_bytes_max = 300;
    let l = net.link_with(0, 1, ca, session_config());
    net.links[l].record = true;
    for i in 0..100 {
        net.write(0, &format!("key{i}"), &"v".repeat(i % 40));
    }
    // One op larger than the byte bound travels alone.
    net.write(0, "big", &"B".repeat(1000));
    net.connect(l);
    assert!(net.run_until(1_000, |n| n.converged()));
    let msgs = support::decode_frames(&net.links[l].sent[0]);
    let batches: Vec<&Vec<Bytes>> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::OpBatch { ops } => Some(ops),
            _ => None,
        })
        .collect();
    assert!(batches.len() >= 101 / 7);
    let mut ops = 0;
    for b in &batches {
        let bytes: usize = b.iter().map(|o| o.len()).sum();
        assert!(b.len() <= 7, "{} ops", b.len());
        assert!(
            b.len() == 1 || bytes <= 300,
            "{bytes} bytes in {} ops",
            b.len()
        );
        ops += b.len();
    }
    // The writes, and the op that made both sites members (first session).
    assert_eq!(ops, 101 + MEMBERSHIP_OPS as usize);
    assert!(batches.iter().any(|b| b.len() == 1 && b[0].len() > 1000));
}

#[test]
fn unacknowledged_batches_are_bounded() {
    let mut net = Net::new(&[1, 2]);
    let mut ca = session_config();
    ca.batch_ops_max = 5;
    ca.inflight_batches_max = 3;
    let l = net.link_with(0, 1, ca, session_config());
    net.connect(l);
    net.run(5);
    // B's acks stop reaching A.
    net.links[l].hold[1] = true;
    for i in 0..100 {
        net.write(0, &format!("k{i}"), "v");
    }
    net.run(50);
    assert_eq!(net.session(l, 0).inflight_batches(), 3);
    assert_eq!(net.session(l, 0).stats().ops_sent, 15 + MEMBERSHIP_OPS);
    assert_eq!(net.engine(1).dbsize(0), 15);
    net.links[l].hold[1] = false;
    assert!(net.run_until(1_000, |n| n.converged()));
    assert_eq!(net.session(l, 0).stats().ops_sent, 100 + MEMBERSHIP_OPS);
}

#[test]
fn a_steady_stream_never_waits_on_the_window() {
    // 50 ops per ms (50,000/s) in one small batch per ms, to a peer that acks
    // only every 50 ms: ~50 batches are unacknowledged at a time. A window of
    // batches (the old 16) would hold ops back for the next ack; the byte
    // window (8 MiB) never fills.
    let mut net = Net::new(&[1, 2]);
    // No fsync meanwhile: a moved durable vector would be acked at once.
    net.auto_sync = false;
    let mut cb = session_config();
    cb.ack_interval_ms = 50;
    let l = net.link_with(0, 1, session_config(), cb);
    net.connect(l);
    net.run(5);
    let mut inflight_batches_max_seen = 0;
    for ms in 0..1_000 {
        for i in 0..50 {
            net.write(0, &format!("k{ms}:{i}"), "v");
        }
        net.step();
        // Everything written so far is applied at the peer within the step.
        assert_eq!(net.engine(1).vv(), net.engine(0).vv(), "ms {ms}");
        inflight_batches_max_seen =
            inflight_batches_max_seen.max(net.session(l, 0).inflight_batches());
    }
    assert!(
        inflight_batches_max_seen > 16,
        "{inflight_batches_max_seen}"
    );
    assert_eq!(net.session(l, 0).stats().ops_sent, 50_000 + MEMBERSHIP_OPS);
    assert_eq!(net.session(l, 0).stats().ack_timeouts, 0);
    // Acks still flow, and cover what is durable.
    net.auto_sync = true;
    assert!(net.run_until(1_000, |n| n.session(l, 0).peer_acked_vv()
        == n.engine(0).vv()));
    assert_eq!(net.session(l, 0).inflight_batches(), 0);
    assert_eq!(net.session(l, 0).inflight_bytes(), 0);
}

#[test]
fn the_window_bounds_inflight_bytes_when_acks_stop() {
    let mut net = Net::new(&[1, 2]);
    let mut ca = session_config();
    ca.batch_ops_max = 5;
    ca.inflight_bytes_max = 2_000;
    let l = net.link_with(0, 1, ca, session_config());
    net.connect(l);
    net.run(5);
    // B's acks stop reaching A.
    net.links[l].hold[1] = true;
    net.links[l].record = true;
    for i in 0..1_000 {
        net.write(0, &format!("k{i}"), "v");
    }
    net.run(50);
    let sent = net.session(l, 0).stats().ops_sent;
    let inflight = net.session(l, 0).inflight_bytes();
    let batch_bytes_max = net.links[l].sent[0].iter().map(|f| f.len()).max().unwrap();
    assert!(sent > 0 && sent < 1_000, "{sent}");
    // The window filled: at least the bound, at most one batch beyond it.
    assert!(inflight >= 2_000, "{inflight}");
    assert!(inflight < 2_000 + batch_bytes_max, "{inflight}");
    // What A sent, and B's own membership op.
    assert_eq!(net.engine(1).vv().total(), sent + MEMBERSHIP_OPS);
    // Nothing more goes out while acks are held.
    net.run(100);
    assert_eq!(net.session(l, 0).stats().ops_sent, sent);
    net.links[l].hold[1] = false;
    assert!(net.run_until(1_000, |n| n.converged()));
    assert_eq!(net.session(l, 0).stats().ops_sent, 1_000 + MEMBERSHIP_OPS);
    assert_eq!(net.session(l, 1).stats().ops_duplicate, 0);
}

#[test]
fn reconnect_with_a_full_window_resends_nothing_the_peer_holds() {
    let mut net = Net::new(&[1, 2]);
    let mut ca = session_config();
    ca.batch_ops_max = 5;
    ca.inflight_bytes_max = 2_000;
    let l = net.link_with(0, 1, ca, session_config());
    net.connect(l);
    net.run(5);
    net.links[l].hold[1] = true;
    for i in 0..500 {
        net.write(0, &format!("k{i}"), "v");
    }
    net.run(20);
    let sent = net.session(l, 0).stats().ops_sent;
    assert!(sent > 0 && sent < 500, "{sent}");
    assert!(net.session(l, 0).inflight_batches() > 0);
    // The connection dies with the window full and unacknowledged.
    net.links[l].held[1].clear();
    net.links[l].hold[1] = false;
    net.disconnect(l);
    assert_eq!(net.session(l, 0).inflight_bytes(), 0);
    net.connect(l);
    assert!(net.run_until(1_000, |n| n.converged()));
    // The peer's Hello covered what was in flight: each op went out once.
    assert_eq!(net.session(l, 0).stats().ops_sent, 500 + MEMBERSHIP_OPS);
    assert_eq!(net.session(l, 1).stats().ops_duplicate, 0);
}

#[test]
fn received_batches_are_applied_in_bounded_slices() {
    let mut engine = support::open_engine(engine_config(1));
    let mut s = handshaken(&mut engine, session_config());
    let mut source = support::open_engine(engine_config(9));
    for i in 0..2_000u64 {
        support::write(&mut source, &format!("k{i}"), "v", 10 + i);
    }
    let ops = source.ops_since(&VersionVector::new(), 2_000).unwrap();
    assert_eq!(ops.len(), 2_000);
    let mut bytes = Vec::new();
    for chunk in ops.chunks(400) {
        let batch = Message::OpBatch {
            ops: chunk.iter().map(encode_op).collect(),
        };
        bytes.extend_from_slice(&encode_frame(&batch).unwrap());
    }
    s.push_bytes(2, &bytes);
    // The handshake made both sites members: one op of this site's.
    let base = engine.vv().total();
    assert_eq!(base, MEMBERSHIP_OPS);
    // At most 1,000 ops per call: whole batches of 400, two at a time.
    let mut applied = Vec::new();
    while s.handle_received(2, &mut engine, 1_000) {
        applied.push(engine.vv().total() - base);
    }
    applied.push(engine.vv().total() - base);
    assert_eq!(applied, vec![800, 1_600, 2_000]);
    assert_eq!(engine.dbsize(0), 2_000);
    // A batch larger than the budget is applied whole.
    let mut more = Vec::new();
    for i in 2_000..2_010u64 {
        support::write(&mut source, &format!("k{i}"), "v", 10 + i);
    }
    let rest = source.ops_since(engine.vv(), 100).unwrap();
    let batch = Message::OpBatch {
        ops: rest.iter().map(encode_op).collect(),
    };
    more.extend_from_slice(&encode_frame(&batch).unwrap());
    s.push_bytes(3, &more);
    assert!(!s.handle_received(3, &mut engine, 4));
    assert_eq!(engine.vv().total() - base, 2_010);
}

#[test]
fn acks_cover_only_the_durable_version_vector() {
    let mut net = Net::new(&[1, 2]);
    net.auto_sync = false;
    let l = net.link(0, 1);
    net.connect(l);
    for i in 0..10 {
        net.write(0, &format!("k{i}"), "v");
    }
    net.engine_mut(0).sync().unwrap();
    net.run(50);
    // B applied everything but synced nothing: its acks promise nothing.
    assert_eq!(net.engine(1).dbsize(0), 10);
    assert!(net.engine(1).durable_vv().is_empty());
    assert!(net.session(l, 0).peer_acked_vv().is_empty());
    // A's writes and both sites' membership ops (A holds B's too).
    assert_eq!(
        net.session(l, 0).ops_lag(net.engine(0)),
        10 + 2 * MEMBERSHIP_OPS
    );
    assert!(net.session(l, 0).stats().acks_received > 0);
    // Once B's log is durable, the next ack covers the ops.
    net.engine_mut(1).sync().unwrap();
    net.run(20);
    assert_eq!(net.session(l, 0).peer_acked_vv(), net.engine(0).vv());
    assert_eq!(net.session(l, 0).ops_lag(net.engine(0)), 0);
}

#[test]
fn canary_acks_before_durable() {
    let mut net = Net::new(&[1, 2]);
    net.auto_sync = false;
    let mut cb = session_config();
    cb.canary_ack_before_durable = true;
    let l = net.link_with(0, 1, session_config(), cb);
    net.connect(l);
    for i in 0..10 {
        net.write(0, &format!("k{i}"), "v");
    }
    net.run(50);
    assert!(net.engine(1).durable_vv().is_empty());
    // The deliberate bug: A is told ops are safe at B that a crash of B loses.
    assert_eq!(net.session(l, 0).peer_acked_vv(), net.engine(0).vv());
}

fn tiny_backlog(site: u16) -> chorus_engine::EngineConfig {
    let mut c = engine_config(site);
    c.backlog_bytes_max = 600;
    c
}

#[test]
fn a_peer_behind_the_backlog_gets_a_full_sync_and_both_keep_their_writes() {
    let mut net = Net::with_engines(vec![tiny_backlog(1), tiny_backlog(2)]);
    let l = net.link(0, 1);
    for i in 0..40 {
        net.write(0, &format!("a{i}"), "from-a");
        net.write(1, &format!("b{i}"), "from-b");
    }
    net.write(0, "both", "a");
    net.write(1, "both", "b");
    net.connect(l);
    assert!(net.run_until(2_000, |n| n.converged()));
    assert!(full_syncs(net.events(l, 0), SyncDirection::Sending) >= 1);
    assert!(full_syncs(net.events(l, 1), SyncDirection::Receiving) >= 1);
    assert!(full_syncs(net.events(l, 1), SyncDirection::Sending) >= 1);
    // Merged, not replaced: every key of both sites survives.
    assert_eq!(net.engine(0).dbsize(0), 81);
    assert_eq!(net.engine(1).dbsize(0), 81);
    // Incremental sync goes on afterwards.
    let snapshots = net.session(l, 0).stats().snapshots_sent;
    net.write(0, "after", "1");
    assert!(net.run_until(1_000, |n| n.converged()));
    assert_eq!(net.engine(1).dbsize(0), 82);
    assert_eq!(net.session(l, 0).stats().snapshots_sent, snapshots);
    assert_eq!(net.session(l, 0).state(), PeerState::Streaming);
}

#[test]
fn reconnect_resumes_from_the_acked_vector_without_resending() {
    let mut net = Net::new(&[1, 2]);
    let l = net.link(0, 1);
    for i in 0..40 {
        net.write(0, &format!("k{i}"), "v");
    }
    net.connect(l);
    assert!(net.run_until(1_000, |n| n.session(l, 0).peer_acked_vv()
        == n.engine(0).vv()));
    assert_eq!(net.session(l, 1).stats().ops_received, 40 + MEMBERSHIP_OPS);
    net.disconnect(l);
    assert_eq!(net.session(l, 0).state(), PeerState::Down);
    for i in 40..50 {
        net.write(0, &format!("k{i}"), "v");
    }
    net.run(10);
    net.connect(l);
    assert!(net.run_until(1_000, |n| n.converged()));
    assert_eq!(net.session(l, 1).stats().ops_received, 50 + MEMBERSHIP_OPS);
    assert_eq!(net.session(l, 0).stats().ops_sent, 50 + MEMBERSHIP_OPS);
    assert_eq!(net.session(l, 1).stats().ops_duplicate, 0);
    assert_eq!(net.session(l, 0).stats().connects, 2);
}

#[test]
fn three_sites_in_a_chain_converge() {
    let mut net = Net::new(&[1, 2, 3]);
    let l12 = net.link(0, 1);
    let l23 = net.link(1, 2);
    net.connect(l12);
    net.connect(l23);
    for i in 0..30 {
        net.write(0, &format!("one{i}"), "1");
        net.write(2, &format!("three{i}"), "3");
        net.write(i % 3, "contended", &format!("{i}"));
        if i % 5 == 0 {
            net.write(1, &format!("two{i}"), "2");
        }
        net.step();
    }
    assert!(net.run_until(2_000, |n| n.converged()));
    assert_eq!(net.engine(0).dbsize(0), 30 + 30 + 1 + 6);
    // Site 2 forwards; nobody needed a snapshot.
    for l in [l12, l23] {
        for side in 0..2 {
            assert_eq!(full_syncs(net.events(l, side), SyncDirection::Sending), 0);
        }
    }
}

#[test]
fn full_sync_reaches_the_far_end_of_a_chain() {
    // Site 2 learns site 1's ops through a snapshot, so they are not in its
    // backlog: site 3 must get a snapshot from site 2 too, never a gap.
    let mut net = Net::with_engines(vec![tiny_backlog(1), engine_config(2), engine_config(3)]);
    let l12 = net.link(0, 1);
    let l23 = net.link(1, 2);
    net.connect(l23);
    net.run(5);
    for i in 0..40 {
        net.write(0, &format!("one{i}"), "1");
    }
    net.connect(l12);
    assert!(net.run_until(2_000, |n| n.converged()));
    assert_eq!(net.engine(2).dbsize(0), 40);
    assert!(full_syncs(net.events(l23, 0), SyncDirection::Sending) >= 1);
}

#[test]
fn heartbeats_keep_a_quiet_connection_and_silence_kills_it() {
    let mut net = Net::new(&[1, 2]);
    let mut c = session_config();
    c.heartbeat_interval_ms = 100;
    c.idle_timeout_ms = 500;
    let l = net.link_with(0, 1, c.clone(), c);
    net.connect(l);
    net.run(3_000);
    assert_eq!(net.session(l, 0).state(), PeerState::Streaming);
    assert!(net.session(l, 1).stats().peer_hlc.is_some());
    // One-way silence: B hears nothing more from A.
    net.links[l].hold[0] = true;
    net.run(600);
    assert!(matches!(
        closed(net.events(l, 1)),
        Some(SessionError::IdleTimeout { .. })
    ));
    assert_eq!(net.session(l, 1).state(), PeerState::Down);
    assert_eq!(net.session(l, 1).poll_timeout(), None);
}

#[test]
fn pause_stops_data_and_resume_catches_up() {
    let mut net = Net::new(&[1, 2]);
    let l = net.link(0, 1);
    net.connect(l);
    net.run(5);
    net.session_mut(l, 0).pause();
    assert_eq!(net.session(l, 0).state(), PeerState::Paused);
    for i in 0..10 {
        net.write(0, &format!("k{i}"), "v");
        net.write(1, &format!("j{i}"), "v");
    }
    net.run(100);
    assert_eq!(net.engine(1).dbsize(0), 10);
    assert_eq!(net.engine(0).dbsize(0), 20);
    net.session_mut(l, 0).resume();
    assert!(net.run_until(1_000, |n| n.converged()));
}

#[test]
fn requested_full_sync_is_served() {
    let mut net = Net::new(&[1, 2]);
    let l = net.link(0, 1);
    for i in 0..10 {
        net.write(0, &format!("k{i}"), "v");
    }
    net.connect(l);
    assert!(net.run_until(1_000, |n| n.converged()));
    net.session_mut(l, 1).request_full_sync();
    net.run(20);
    assert_eq!(full_syncs(net.events(l, 1), SyncDirection::Receiving), 1);
    assert_eq!(full_syncs(net.events(l, 0), SyncDirection::Sending), 1);
    assert!(net.converged());
    net.write(0, "after", "v");
    assert!(net.run_until(1_000, |n| n.converged()));
}

#[test]
fn digests_match_after_convergence() {
    let mut net = Net::new(&[1, 2]);
    let l = net.link(0, 1);
    net.connect(l);
    for i in 0..10 {
        net.write(i % 2, &format!("k{i}"), "v");
    }
    assert!(net.run_until(1_000, |n| n.converged()));
    net.session_mut(l, 0).request_digest(0);
    net.run(5);
    assert!(net
        .events(l, 0)
        .contains(&SessionEvent::DigestMatched { db: 0 }));
}

#[test]
fn an_oversized_snapshot_is_aborted() {
    let mut net = Net::with_engines(vec![tiny_backlog(1), engine_config(2)]);
    let mut cb = session_config();
    cb.snapshot_bytes_max = 1_000;
    let l = net.link_with(0, 1, session_config(), cb);
    for i in 0..40 {
        net.write(0, &format!("k{i}"), "value");
    }
    net.connect(l);
    net.run(10);
    assert!(matches!(
        closed(net.events(l, 1)),
        Some(SessionError::SnapshotTooLarge { max: 1_000 })
    ));
    assert_eq!(
        net.engine(1).dbsize(0),
        0,
        "nothing of an aborted snapshot is merged"
    );
}

#[test]
fn the_rate_limit_holds_the_average_rate() {
    let mut net = Net::new(&[1, 2]);
    let mut ca = session_config();
    ca.rate_limit_bytes_per_s = 2_000;
    ca.batch_ops_max = 4;
    let l = net.link_with(0, 1, ca, session_config());
    net.connect(l);
    net.run(5);
    for i in 0..200 {
        net.write(0, &format!("key{i:04}"), &"v".repeat(50));
    }
    let start = net.session(l, 0).stats().bytes_out;
    net.run(2_000);
    let sent = net.session(l, 0).stats().bytes_out - start;
    // Burst (1 s) + 2 s at the rate, plus one frame of overshoot and control.
    assert!(sent <= 2_000 + 4_000 + 1_500, "sent {sent} bytes in 2 s");
    assert!(sent >= 4_000, "sent {sent} bytes in 2 s");
    assert!(!net.converged());
    assert!(net.run_until(60_000, |n| n.converged()));
}

#[test]
fn garbage_from_a_peer_closes_the_session_without_panicking() {
    let mut engine = support::open_engine(engine_config(1));
    let mut s = PeerSession::new(session_config()).unwrap();
    s.handle_connected(0);
    s.handle_bytes(1, &[3, 0, 0, 0, 1, 2, 3], &mut engine);
    assert_eq!(s.state(), PeerState::Down);
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Closed {
            error: SessionError::Wire(_)
        })
    ));
    // Oversized frame header.
    s.handle_connected(2);
    s.handle_bytes(3, &u32::MAX.to_le_bytes(), &mut engine);
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Closed {
            error: SessionError::Wire(_)
        })
    ));
    // A decoded message out of bounds, handed over directly.
    s.handle_connected(3);
    s.handle_message(3, Message::DigestRequest { db: 200 }, &mut engine);
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Closed {
            error: SessionError::Wire(_)
        })
    ));
    // Data before the handshake.
    s.handle_connected(4);
    let batch = Message::OpBatch {
        ops: vec![Bytes::from_static(b"\x01x")],
    };
    s.handle_bytes(5, &encode_frame(&batch).unwrap(), &mut engine);
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Closed {
            error: SessionError::UnexpectedMessage { .. }
        })
    ));
}

fn handshaken(engine: &mut chorus_engine::Engine, config: SessionConfig) -> PeerSession {
    let mut s = PeerSession::new(config).unwrap();
    s.handle_connected(0);
    let hello = Message::Hello(Hello {
        cluster_id: CLUSTER,
        site_id: 9,
        protocol_version: PROTOCOL_VERSION,
        vv: VersionVector::new(),
    });
    s.handle_bytes(1, &encode_frame(&hello).unwrap(), engine);
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Connected { peer_site: 9 })
    ));
    s
}

fn hello_with_version(version: u16) -> Vec<u8> {
    encode_frame(&Message::Hello(Hello {
        cluster_id: CLUSTER,
        site_id: 9,
        protocol_version: version,
        vv: VersionVector::new(),
    }))
    .unwrap()
}

#[test]
fn only_a_peer_of_the_pubsub_version_is_sent_pubsub() {
    let mut engine = support::open_engine(engine_config(1));
    let mut s = PeerSession::new(session_config()).unwrap();
    s.handle_connected(0);
    assert!(!s.peer_speaks_pubsub(), "not before the handshake");
    s.handle_bytes(1, &hello_with_version(PUBSUB_PROTOCOL_VERSION), &mut engine);
    assert!(s.peer_speaks_pubsub());
    s.handle_disconnected(2);
    assert!(!s.peer_speaks_pubsub(), "not after the connection ended");
    // Every accepted protocol relays pub/sub today (HyperLogLogs raised the
    // oldest accepted one to it); a peer of an older one is refused.
    const { assert!(PROTOCOL_VERSION_MIN >= PUBSUB_PROTOCOL_VERSION) };
    s.handle_connected(3);
    s.handle_bytes(
        4,
        &hello_with_version(PROTOCOL_VERSION_MIN - 1),
        &mut engine,
    );
    assert_ne!(s.state(), PeerState::Streaming);
    assert!(!s.peer_speaks_pubsub());
}

#[test]
fn a_publish_on_the_op_stream_closes_the_session() {
    let mut engine = support::open_engine(engine_config(1));
    let mut s = handshaken(&mut engine, session_config());
    let publish = Message::Publish(Published {
        origin: 9,
        incarnation: 1,
        seq: 1,
        shard: false,
        channel: Bytes::from_static(b"ch"),
        payload: Bytes::from_static(b"m"),
    });
    s.handle_bytes(2, &encode_frame(&publish).unwrap(), &mut engine);
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Closed {
            error: SessionError::UnexpectedMessage {
                message: "Publish",
                ..
            }
        })
    ));
}

#[test]
fn a_bad_op_closes_the_session_and_applies_nothing() {
    let mut engine = support::open_engine(engine_config(1));
    let mut s = handshaken(&mut engine, session_config());
    let mut source = support::open_engine(engine_config(9));
    support::write(&mut source, "k", "v", 10);
    let good = source.ops_since(&VersionVector::new(), 10).unwrap();
    let batch = Message::OpBatch {
        ops: vec![encode_op(&good[0]), Bytes::from_static(b"\x01\xff\xff\xff")],
    };
    s.handle_bytes(2, &encode_frame(&batch).unwrap(), &mut engine);
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Closed {
            error: SessionError::Op(_)
        })
    ));
    assert_eq!(engine.dbsize(0), 0);
}

#[test]
fn a_causal_buffer_overflow_asks_the_peer_to_rewind() {
    let mut config = engine_config(1);
    config.causal_buffer_ops_max = 1;
    let mut engine = support::open_engine(config);
    let mut s = handshaken(&mut engine, session_config());
    let mut source = support::open_engine(engine_config(9));
    for i in 0..4 {
        support::write(&mut source, &format!("k{i}"), "v", 10 + i);
    }
    let ops = source.ops_since(&VersionVector::new(), 10).unwrap();
    // Ops 3 and 4 without 1 and 2: one is buffered, the other dropped.
    let batch = Message::OpBatch {
        ops: vec![encode_op(&ops[2]), encode_op(&ops[3])],
    };
    s.handle_bytes(2, &encode_frame(&batch).unwrap(), &mut engine);
    assert_eq!(s.stats().ops_dropped, 1);
    let mut frames = Vec::new();
    while let Some(f) = s.poll_transmit(3, &mut engine) {
        frames.push(f);
    }
    let msgs = support::decode_frames(&frames);
    assert!(msgs
        .iter()
        .any(|m| matches!(m, Message::Rewind { vv } if vv == engine.vv())));
}

#[test]
fn a_rewind_makes_the_sender_resend_from_the_given_vector() {
    let mut net = Net::new(&[1, 2]);
    let l = net.link(0, 1);
    for i in 0..10 {
        net.write(0, &format!("k{i}"), "v");
    }
    net.connect(l);
    assert!(net.run_until(1_000, |n| n.converged()));
    assert_eq!(net.session(l, 0).stats().ops_sent, 10 + MEMBERSHIP_OPS);
    // As if B had dropped everything: it asks A to start again from nothing.
    let rewind = encode_frame(&Message::Rewind {
        vv: VersionVector::new(),
    })
    .unwrap();
    let now = net.now;
    let engine = &mut net.sites[0].engine;
    net.links[l].sessions[0].handle_bytes(now, &rewind, engine);
    net.run(20);
    // Everything again, B's own membership op included.
    assert_eq!(
        net.session(l, 0).stats().ops_sent,
        (10 + MEMBERSHIP_OPS) + (10 + 2 * MEMBERSHIP_OPS)
    );
    assert_eq!(
        net.session(l, 1).stats().ops_duplicate,
        10 + 2 * MEMBERSHIP_OPS
    );
    assert!(net.converged());
}

// ---- anti-entropy ---------------------------------------------------------

fn anti_entropy_config(interval_ms: u64) -> SessionConfig {
    let mut c = session_config();
    c.anti_entropy_interval_ms = interval_ms;
    c
}

/// Sites 1 and 2 linked with anti-entropy every `interval_ms`, converged on
/// a few writes of each.
fn anti_entropy_pair(interval_ms: u64) -> (Net, usize) {
    let mut net = Net::new(&[1, 2]);
    let l = net.link_with(
        0,
        1,
        anti_entropy_config(interval_ms),
        anti_entropy_config(interval_ms),
    );
    net.connect(l);
    for i in 0..20 {
        net.write(i % 2, &format!("k{i}"), "v");
    }
    assert!(net.run_until(1_000, |n| n.converged()));
    (net, l)
}

/// The row of `key` as written by `SET key value` on a fresh engine of `site`.
fn row_written_by(site: u16, key: &str, value: &str) -> RowImage {
    let mut e = support::open_engine(engine_config(site));
    support::write(&mut e, key, value, 1);
    let row = e.keyspace().db(0).rows.get(key.as_bytes()).expect("row");
    RowImage::of(row)
}

fn repaired(events: &[SessionEvent]) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Repaired { rows, .. } => Some(*rows),
            _ => None,
        })
        .sum()
}

fn stat(net: &Net, l: usize, f: fn(&chorus_replication::SessionStats) -> u64) -> u64 {
    f(net.session(l, 0).stats()) + f(net.session(l, 1).stats())
}

#[test]
fn anti_entropy_drops_an_entry_no_op_wrote() {
    let (mut net, l) = anti_entropy_pair(100);
    // A row written by a site neither vector knows appears at site 1 without
    // an op: no op both sites hold wrote it.
    net.engine_mut(0).put_row_unlogged(
        0,
        Bytes::from_static(b"ghost"),
        row_written_by(9, "ghost", "boo"),
    );
    assert_eq!(net.engine(0).vv(), net.engine(1).vv());
    assert_ne!(net.engine(0).digest_hex(), net.engine(1).digest_hex());
    assert!(net.run_until(2_000, |n| n.converged()), "not repaired");
    for site in 0..2 {
        let rows = &net.engine(site).keyspace().db(0).rows;
        assert!(rows.get(b"ghost".as_slice()).is_none(), "site {site}");
    }
    assert_eq!(stat(&net, l, |s| s.anti_entropy_repairs), 1);
    assert_eq!(repaired(net.events(l, 0)), 1, "site 1 dropped the ghost");
    assert!(stat(&net, l, |s| s.anti_entropy_mismatches) >= 1);
    assert!(net
        .events(l, 0)
        .iter()
        .chain(net.events(l, 1))
        .any(|e| matches!(e, SessionEvent::DigestMismatch { db: 0, .. })));
    // Once equal, later rounds find nothing more to repair.
    let checks = stat(&net, l, |s| s.anti_entropy_checks);
    net.run(500);
    assert!(stat(&net, l, |s| s.anti_entropy_checks) > checks);
    assert_eq!(stat(&net, l, |s| s.anti_entropy_repairs), 1);
    assert!(net.converged());
}

#[test]
fn anti_entropy_restores_a_row_one_side_lost_and_deletes_nothing() {
    let (mut net, l) = anti_entropy_pair(100);
    // Site 2 loses k0 (written by site 1, held by both) behind the engine's
    // back. A join at the vector would read that as a removal and delete
    // it at site 1 too; the repair brings it back instead.
    net.engine_mut(1)
        .put_row_unlogged(0, Bytes::from_static(b"k0"), RowImage::default());
    assert!(net.run_until(2_000, |n| n.converged()), "not repaired");
    for site in 0..2 {
        let row = net.engine(site).keyspace().db(0).rows.get(b"k0".as_slice());
        assert_eq!(
            row.and_then(|r| r.string_value()),
            Some(Bytes::from_static(b"v")),
            "site {site}"
        );
    }
    assert_eq!(repaired(net.events(l, 1)), 1, "site 2 got its row back");
    assert_eq!(
        repaired(net.events(l, 0)),
        0,
        "site 1 had nothing to change"
    );
    assert_eq!(stat(&net, l, |s| s.anti_entropy_repairs), 1);
}

#[test]
fn anti_entropy_on_equal_states_checks_and_never_repairs() {
    let (mut net, l) = anti_entropy_pair(100);
    net.run(1_000);
    // Every database the pair uses (db 0) is compared in each round.
    assert!(stat(&net, l, |s| s.anti_entropy_rounds) >= 5);
    // Each round compares the one database the pair uses.
    assert!(stat(&net, l, |s| s.anti_entropy_checks) >= 5);
    assert_eq!(stat(&net, l, |s| s.anti_entropy_mismatches), 0);
    assert_eq!(stat(&net, l, |s| s.anti_entropy_repairs), 0);
    assert_eq!(repaired(net.events(l, 0)) + repaired(net.events(l, 1)), 0);
    // One side's round postpones the other's: not both every interval.
    let rounds = stat(&net, l, |s| s.anti_entropy_rounds);
    assert!(rounds <= 12, "{rounds} rounds in 1 s at a 100 ms interval");
}

#[test]
fn anti_entropy_compares_and_repairs_while_both_sites_write() {
    let (mut net, l) = anti_entropy_pair(100);
    net.engine_mut(1)
        .put_row_unlogged(0, Bytes::from_static(b"k1"), RowImage::default());
    let checks = stat(&net, l, |s| s.anti_entropy_checks);
    // Both sites write all the time (never quiet, vectors never equal for
    // long), to keys other than the damaged one.
    let mut repaired_at = None;
    for step in 0..200 {
        net.write(0, &format!("a{}", step % 7), &step.to_string());
        net.write(1, &format!("b{}", step % 5), &step.to_string());
        net.run(5);
        if repaired_at.is_none() && stat(&net, l, |s| s.anti_entropy_repairs) > 0 {
            repaired_at = Some(step);
        }
    }
    assert!(stat(&net, l, |s| s.anti_entropy_checks) > checks + 3);
    let step = repaired_at.expect("repaired while both sites wrote");
    assert!(
        step * 5 <= 200,
        "repaired within two intervals, at {} ms",
        step * 5
    );
    assert!(net.run_until(2_000, |n| n.converged()));
    let k1 = net.engine(1).keyspace().db(0).rows.get(b"k1".as_slice());
    assert_eq!(
        k1.and_then(|r| r.string_value()),
        Some(Bytes::from_static(b"v"))
    );
    assert_eq!(stat(&net, l, |s| s.anti_entropy_repairs), 1);
}

#[test]
fn anti_entropy_is_off_at_interval_zero() {
    let (mut net, l) = anti_entropy_pair(0);
    net.engine_mut(0).put_row_unlogged(
        0,
        Bytes::from_static(b"ghost"),
        row_written_by(9, "ghost", "boo"),
    );
    net.run(1_000);
    assert_eq!(stat(&net, l, |s| s.anti_entropy_rounds), 0);
    assert!(!net.converged());
    // An operator's request still starts a round.
    net.session_mut(l, 0).request_anti_entropy();
    assert!(net.run_until(1_000, |n| n.converged()));
}
