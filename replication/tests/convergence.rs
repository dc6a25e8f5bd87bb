//! Property: whatever the schedule of writes, disconnects, resyncs and
//! backlog trimming, three sites in a triangle converge once the links heal.

mod support;

use proptest::prelude::*;
use support::{engine_config, Net};

#[derive(Clone, Debug)]
enum Action {
    Write { site: usize, key: u8 },
    Toggle { link: usize },
    Run { ms: u64 },
    Resync { link: usize, side: usize },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0usize..3, 0u8..12).prop_map(|(site, key)| Action::Write { site, key }),
        1 => (0usize..3).prop_map(|link| Action::Toggle { link }),
        2 => (1u64..30).prop_map(|ms| Action::Run { ms }),
        1 => (0usize..3, 0usize..2).prop_map(|(link, side)| Action::Resync { link, side }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_schedules_converge(actions in proptest::collection::vec(action(), 1..80), tiny_backlog in any::<bool>()) {
        let configs = (1..=3u16)
            .map(|s| {
                let mut c = engine_config(s);
                if tiny_backlog {
                    c.backlog_bytes_max = 400;
                }
                c
            })
            .collect();
        let mut net = Net::with_engines(configs);
        let links = [net.link(0, 1), net.link(1, 2), net.link(0, 2)];
        for &l in &links {
            net.connect(l);
        }
        for (i, a) in actions.iter().enumerate() {
            match *a {
                Action::Write { site, key } => net.write(site, &format!("k{key}"), &format!("v{i}")),
                Action::Toggle { link } => {
                    if net.links[links[link]].up {
                        net.disconnect(links[link]);
                    } else {
                        net.connect(links[link]);
                    }
                }
                Action::Run { ms } => net.run(ms),
                Action::Resync { link, side } => net.session_mut(links[link], side).request_full_sync(),
            }
            net.step();
        }
        for &l in &links {
            if !net.links[l].up {
                net.connect(l);
            }
        }
        prop_assert!(net.run_until(5_000, |n| n.converged()));
        let keys: std::collections::HashSet<u8> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Write { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        for site in 0..3 {
            prop_assert_eq!(net.engine(site).dbsize(0), keys.len());
        }
        for &l in &links {
            for side in 0..2 {
                prop_assert!(net.session(l, side).invariants_hold());
                let closed = net.events(l, side).iter().any(|e| matches!(e, chorus_replication::SessionEvent::Closed { .. }));
                prop_assert!(!closed, "no session may close on an error: {:?}", net.events(l, side));
            }
        }
    }
}
