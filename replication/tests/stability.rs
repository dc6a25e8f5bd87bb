//! Counters fold at sites with peers once every member of the cluster has
//! applied their increments: the stability frontier, gossiped in the
//! sessions' reports (so it works along a chain), membership kept as
//! replicated cluster data, and `MEMBER REMOVE` of a site that is gone.

mod support;

use bytes::Bytes;
use chorus_engine::stability::Pin;
use chorus_engine::{Engine, Reply};
use chorus_replication::RefuseReason;
use chorus_replication::SessionEvent;
use support::Net;

fn run(e: &mut Engine, now: u64, cmd: &str) -> Reply {
    let args: Vec<Bytes> = cmd
        .split(' ')
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    e.execute(0, &args, now)
}

/// Every kind of increment, `n` times, at site `s`.
fn increments(net: &mut Net, s: usize, n: u64) {
    let now = net.now;
    let e = net.engine_mut(s);
    for i in 0..n {
        run(e, now + i, "INCR hits");
        run(e, now + i, "INCRBYFLOAT f 0.1");
        run(e, now + i, "HINCRBY h a 2");
        run(e, now + i, "HINCRBYFLOAT h b 1.5");
        run(e, now + i, "ZINCRBY z 0.25 m");
    }
}

fn values(e: &mut Engine) -> Vec<Reply> {
    ["GET hits", "GET f", "HGET h a", "HGET h b", "ZSCORE z m"]
        .iter()
        .map(|c| run(e, 9_000_000, c))
        .collect()
}

/// Moves virtual time on while every site's housekeeping folds.
fn run_folding(net: &mut Net, ms: u64) {
    for _ in 0..ms / 10 {
        net.run(10);
        let now = net.now;
        for s in 0..net.sites.len() {
            net.engine_mut(s).stability_step(now, 1 << 20);
        }
    }
}

fn entries(net: &Net, s: usize) -> usize {
    net.engine(s).counter_entries(0, b"hits")
}

#[test]
fn a_hot_counter_holds_one_entry_per_origin_once_every_member_applied_it() {
    // A chain 1 - 2 - 3: sites 1 and 3 only learn of each other's reports
    // through site 2.
    let mut net = Net::new(&[1, 2, 3]);
    let l12 = net.link(0, 1);
    let l23 = net.link(1, 2);
    net.connect(l12);
    net.connect(l23);
    net.run(50);
    for s in 0..3 {
        increments(&mut net, s, 500);
    }
    assert!(net.run_until(5_000, |n| n.converged()));
    // Before any report covers them, every increment is its own entry.
    assert_eq!(entries(&net, 0), 1_500);
    // Two report rounds (a heartbeat interval each) carry every site's
    // report to the ends of the chain.
    run_folding(&mut net, 3_000);
    for s in 0..3 {
        assert_eq!(entries(&net, s), 3, "site {}: one entry per origin", s + 1);
        let m = net.engine(s).membership();
        assert_eq!(
            m.active().collect::<Vec<_>>(),
            vec![1, 2, 3],
            "every site is a member everywhere"
        );
        assert_eq!(net.engine(s).fold_counts().1, 0, "no overlap");
    }
    let want = values(net.engine_mut(0));
    assert_eq!(want[0], Reply::Bulk(Bytes::from("1500")));
    for s in 1..3 {
        assert_eq!(values(net.engine_mut(s)), want);
    }
    // The hash fields and the sorted-set score fold too, exactly.
    let h = net.engine(0).keyspace().db(0).rows.get(&b"h"[..]).unwrap();
    let fields = &h.hash.as_ref().unwrap().fields;
    assert!(fields.values().all(|c| c.ctr.len() <= 3));
    // A SET at one site now removes every folded entry it saw; increments
    // concurrent with it (not seen) survive it.
    let now = net.now;
    run(net.engine_mut(0), now, "SET hits 10");
    run(net.engine_mut(2), now, "INCR hits");
    assert!(net.run_until(5_000, |n| n.converged()));
    for s in 0..3 {
        assert_eq!(
            run(net.engine_mut(s), now, "GET hits"),
            Reply::Bulk(Bytes::from("11"))
        );
    }
}

#[test]
fn a_member_that_is_gone_holds_folding_back_until_it_is_removed() {
    let mut net = Net::new(&[1, 2, 3]);
    let l12 = net.link(0, 1);
    let l13 = net.link(0, 2);
    let l23 = net.link(1, 2);
    for l in [l12, l13, l23] {
        net.connect(l);
    }
    net.run(50);
    increments(&mut net, 0, 100);
    assert!(net.run_until(5_000, |n| n.converged()));
    run_folding(&mut net, 3_000);
    assert_eq!(entries(&net, 0), 1);
    // Site 3 goes away for good; sites 1 and 2 keep incrementing.
    net.disconnect(l13);
    net.disconnect(l23);
    net.links.truncate(1);
    increments(&mut net, 0, 200);
    increments(&mut net, 1, 200);
    run_folding(&mut net, 40_000);
    // Site 3's last report covers none of them: they stay unfolded, and
    // the site that holds them back is named.
    assert_eq!(entries(&net, 0), 401);
    let info = net.engine(0).stability_info();
    assert_eq!(info.pin, Some(Pin::Stale(3)));
    // MEMBER REMOVE at site 2: once both remaining members applied it
    // (and reported so), site 3 no longer counts.
    let now = net.now;
    assert_eq!(net.engine_mut(1).member_remove(3, now), Ok(true));
    run_folding(&mut net, 3_000);
    for s in 0..2 {
        assert_eq!(entries(&net, s), 2, "site {}", s + 1);
        let m = net.engine(s).membership();
        assert!(m.is_removed(3));
        assert_eq!(net.engine(s).stability_info().pin, None);
    }
    assert_eq!(
        values(net.engine_mut(0))[0],
        Reply::Bulk(Bytes::from("500"))
    );
}

#[test]
fn a_removed_site_is_refused_by_every_member() {
    let mut net = Net::new(&[1, 2, 3]);
    let l12 = net.link(0, 1);
    net.connect(l12);
    net.run(50);
    let now = net.now;
    assert_eq!(net.engine_mut(0).member_add(3, now), Ok(true));
    assert_eq!(net.engine_mut(0).member_remove(3, now), Ok(true));
    assert_eq!(
        net.engine_mut(0).member_add(3, now),
        Err(chorus_engine::engine::MemberError::Removed(3))
    );
    assert!(net.run_until(5_000, |n| n.engine(1).membership().is_removed(3)));
    // Site 3 tries site 2: refused, with the reason.
    let l23 = net.link(1, 2);
    net.connect(l23);
    net.run(50);
    let refused = net.events(l23, 0).iter().any(|e| {
        matches!(
            e,
            SessionEvent::Refused {
                reason: RefuseReason::Removed { site_id: 3 },
                by_peer: false
            }
        )
    });
    assert!(refused, "events: {:?}", net.events(l23, 0));
}

#[test]
fn a_new_site_takes_writes_once_it_holds_what_reports_covered() {
    let mut net = Net::new(&[1, 2, 3]);
    let l12 = net.link(0, 1);
    net.connect(l12);
    net.run(50);
    increments(&mut net, 0, 100);
    increments(&mut net, 1, 100);
    assert!(net.run_until(5_000, |n| n.engine(0).vv() == n.engine(1).vv()));
    run_folding(&mut net, 3_000);
    assert_eq!(entries(&net, 0), 2);
    // Site 3 joins through site 2. Site 1 may have folded with reports of
    // site 2's made before site 2 knew site 3: site 3 is told to hold what
    // they covered before it writes.
    let l23 = net.link(1, 2);
    net.connect(l23);
    assert!(net.run_until(5_000, |n| n.converged()));
    assert!(net.session(l23, 0).stats().newcomer_catch_ups >= 1);
    assert_eq!(net.engine(2).catching_up_to(), None, "caught up");
    assert_eq!(
        values(net.engine_mut(2)),
        values(net.engine_mut(0)),
        "the newcomer counts every increment once"
    );
    // Its SET saw every folded increment.
    let now = net.now;
    run(net.engine_mut(2), now, "SET hits 5");
    assert!(net.run_until(5_000, |n| n.converged()));
    assert_eq!(
        run(net.engine_mut(0), now, "GET hits"),
        Reply::Bulk(Bytes::from("5"))
    );
    for s in 0..3 {
        assert_eq!(net.engine(s).fold_counts().1, 0);
    }
}

#[test]
fn a_site_told_to_catch_up_refuses_writes_until_it_holds_the_vector() {
    let mut net = Net::new(&[1, 2]);
    increments(&mut net, 0, 10);
    let target = net.engine(0).vv().clone();
    let now = net.now;
    net.engine_mut(1).require_catch_up(&target);
    match run(net.engine_mut(1), now, "INCR hits") {
        Reply::Error(e) => assert!(e.starts_with("LOADING "), "{e}"),
        other => panic!("a write went through: {other:?}"),
    }
    // Reads are served meanwhile.
    assert_eq!(run(net.engine_mut(1), now, "GET hits"), Reply::Nil);
    let l = net.link(0, 1);
    net.connect(l);
    assert!(net.run_until(5_000, |n| n.engine(1).vv().dominates(&target)));
    assert_eq!(net.engine(1).catching_up_to(), None);
    assert_eq!(run(net.engine_mut(1), now, "INCR hits"), Reply::Int(11));
}
