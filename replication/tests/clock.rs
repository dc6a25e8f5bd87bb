//! A peer's clock as its stamps show it: stamps ahead of the bound are applied
//! and reported, absurd ones close the session with nothing applied (see
//! docs/semantics.md, "Clocks").

mod support;

use chorus_engine::hlc::CLOCK_AHEAD_ABSURD_MS;
use chorus_replication::{SessionError, SessionEvent};
use support::Net;

#[test]
fn ops_stamped_ahead_of_the_bound_are_applied_and_reported() {
    let mut net = Net::new(&[1, 2]);
    let l = net.link(0, 1);
    net.connect(l);
    net.run(10);
    // Site 1's clock runs 10 s ahead of site 2's (the bound is 500 ms).
    for i in 0..5 {
        let now = net.now + 10_000;
        support::write(&mut net.sites[0].engine, &format!("k{i}"), "fast", now);
    }
    assert!(net.run_until(1_000, |n| n.converged()));
    assert_eq!(net.engine(1).dbsize(0), 5, "ops ahead are applied");
    let stats = net.session(l, 1).stats();
    assert!(stats.ops_stamped_ahead >= 5, "{stats:?}");
    assert!(stats.clock_skew_ms >= 9_000, "{stats:?}");
    let warned = net
        .events(l, 1)
        .iter()
        .filter(|e| matches!(e, SessionEvent::ClockAhead { .. }))
        .count();
    assert_eq!(warned, 1, "one warning, not one per op or per heartbeat");
    // The slow site's own stamps stay within its clock plus the bound: its
    // write stamped now is below the fast site's, so the fast site's
    // concurrent write stamped later in its own time does not lose to a
    // stamp 10 s in the future issued by the slow site.
    let before = net.now;
    support::write(&mut net.sites[1].engine, "slow", "1", before);
    let hlc = net.engine(1).last_stamp_issued();
    assert!(hlc.wall_ms() <= before + 500, "{hlc} beyond {before} + 500");
    // Site 1 sees nothing ahead from site 2.
    assert_eq!(net.session(l, 0).stats().ops_stamped_ahead, 0);
}

#[test]
fn an_absurd_stamp_closes_the_session_and_applies_nothing() {
    let mut net = Net::new(&[1, 2]);
    let l = net.link(0, 1);
    net.connect(l);
    net.run(10);
    let absurd = net.now + CLOCK_AHEAD_ABSURD_MS + 60_000;
    support::write(&mut net.sites[0].engine, "k", "from-the-future", absurd);
    net.run(50);
    let closed = net.events(l, 1).iter().any(|e| {
        matches!(
            e,
            SessionEvent::Closed {
                error: SessionError::ClockAbsurd { peer: 1, .. }
            }
        )
    });
    assert!(closed, "{:?}", net.events(l, 1));
    assert_eq!(net.engine(1).dbsize(0), 0, "nothing of the batch applied");
    // Of site 1's ops only the first, which made both sites members, came.
    let site1 = chorus_engine::Origin::new(1, net.engine(0).origin().incarnation);
    assert_eq!(net.engine(1).vv().get(site1), 1);
    // The op is not lost: the sender still holds it.
    assert_eq!(net.engine(0).dbsize(0), 1);
}
