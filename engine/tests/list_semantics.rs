//! Lists under concurrency: one named test per rule of docs/semantics.md
//! ("Lists"), and a property test with an oracle of its own.
//!
//! The oracle does not use the engine's list code: it watches what each
//! site showed (LRANGE after every command, the values every command
//! pushed and removed, the version vector each command was made with) and
//! checks the merged list against what those observations require:
//! - every site shows the same list;
//! - the elements are exactly the pushed ones minus the removed ones;
//! - any two elements keep the relative order any site ever showed them in;
//! - the surviving elements of one push stay together, except for elements
//!   placed between them by an op that had seen that push.

use bytes::Bytes;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::{Engine, EngineConfig, OpId, Reply, VersionVector};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::collections::{BTreeMap, BTreeSet};

fn site(id: u16) -> Engine {
    Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(id)).expect("open")
}

fn run(e: &mut Engine, now: u64, cmd: &str) -> Reply {
    let args: Vec<Bytes> = cmd
        .split(' ')
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    e.execute(0, &args, now)
}

fn deliver(from: &mut Engine, to: &mut Engine) {
    let ops = from.ops_since(to.vv(), usize::MAX).expect("backlog serves");
    to.apply_remote(ops);
}

fn exchange(a: &mut Engine, b: &mut Engine) {
    deliver(a, b);
    deliver(b, a);
    assert_eq!(
        a.digest_hex(),
        b.digest_hex(),
        "digests differ after exchange"
    );
}

fn strings(r: &Reply) -> Vec<String> {
    match r {
        Reply::Array(v) => v
            .iter()
            .map(|x| match x {
                Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("not a bulk: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

fn list(e: &mut Engine, key: &str) -> Vec<String> {
    strings(&run(e, 1, &format!("LRANGE {key} 0 -1")))
}

#[test]
fn concurrent_pushes_at_the_head_keep_each_run_contiguous() {
    let (mut a, mut b) = (site(1), site(2));
    run(&mut a, 1000, "RPUSH l x");
    deliver(&mut a, &mut b);
    run(&mut a, 2000, "LPUSH l a1 a2 a3");
    run(&mut b, 2000, "LPUSH l b1 b2 b3");
    exchange(&mut a, &mut b);
    // Same gap: ordered by the pushing op's id (site 1 before site 2).
    assert_eq!(list(&mut a, "l"), ["a3", "a2", "a1", "b3", "b2", "b1", "x"]);
    assert_eq!(list(&mut b, "l"), list(&mut a, "l"));
}

#[test]
fn concurrent_pushes_at_the_tail_keep_each_run_contiguous() {
    let (mut a, mut b) = (site(1), site(2));
    run(&mut a, 1000, "RPUSH l x");
    deliver(&mut a, &mut b);
    run(&mut b, 2000, "RPUSH l b1 b2");
    run(&mut a, 2000, "RPUSH l a1 a2");
    run(&mut a, 2001, "RPUSH l a3");
    exchange(&mut a, &mut b);
    let l = list(&mut a, "l");
    assert_eq!(l, list(&mut b, "l"));
    assert_eq!(l[0], "x");
    let pos = |v: &str| l.iter().position(|x| x == v).unwrap();
    assert_eq!(pos("a2"), pos("a1") + 1);
    assert_eq!(pos("b2"), pos("b1") + 1);
    assert!(pos("a3") > pos("a2"));
}

#[test]
fn push_concurrent_with_pop_keeps_the_push() {
    let (mut a, mut b) = (site(1), site(2));
    run(&mut a, 1000, "RPUSH l x y");
    deliver(&mut a, &mut b);
    assert_eq!(run(&mut a, 2000, "LPOP l"), Reply::Bulk("x".into()));
    run(&mut b, 2000, "RPUSH l z");
    exchange(&mut a, &mut b);
    assert_eq!(list(&mut a, "l"), ["y", "z"]);
    assert_eq!(a.list_pop_conflicts() + b.list_pop_conflicts(), 0);
}

#[test]
fn concurrent_lsets_of_one_element_last_writer_wins() {
    let (mut a, mut b) = (site(1), site(2));
    run(&mut a, 1000, "RPUSH l x y");
    deliver(&mut a, &mut b);
    run(&mut a, 3000, "LSET l 1 from-a");
    run(&mut b, 2000, "LSET l 1 from-b");
    exchange(&mut a, &mut b);
    assert_eq!(list(&mut a, "l"), ["x", "from-a"]);
    // A later LSET that saw both wins whatever its clock.
    run(&mut b, 2500, "LSET l 1 later");
    exchange(&mut a, &mut b);
    assert_eq!(list(&mut a, "l"), ["x", "later"]);
}

#[test]
fn lset_concurrent_with_lrem_of_it_removal_wins() {
    let (mut a, mut b) = (site(1), site(2));
    run(&mut a, 1000, "RPUSH l x y");
    deliver(&mut a, &mut b);
    run(&mut a, 3000, "LSET l 1 changed");
    assert_eq!(run(&mut b, 2000, "LREM l 0 y"), Reply::Int(1));
    exchange(&mut a, &mut b);
    assert_eq!(list(&mut a, "l"), ["x"]);
    assert_eq!(list(&mut b, "l"), ["x"]);
}

#[test]
fn linsert_before_a_pivot_removed_elsewhere_still_inserts() {
    let (mut a, mut b) = (site(1), site(2));
    run(&mut a, 1000, "RPUSH l x p y");
    deliver(&mut a, &mut b);
    assert_eq!(run(&mut a, 2000, "LINSERT l BEFORE p new"), Reply::Int(4));
    assert_eq!(run(&mut b, 2000, "LREM l 0 p"), Reply::Int(1));
    exchange(&mut a, &mut b);
    assert_eq!(list(&mut a, "l"), ["x", "new", "y"]);
    assert_eq!(list(&mut b, "l"), ["x", "new", "y"]);
}

#[test]
fn ltrim_concurrent_with_push_keeps_the_unobserved_push() {
    let (mut a, mut b) = (site(1), site(2));
    run(&mut a, 1000, "RPUSH l 1 2 3 4");
    deliver(&mut a, &mut b);
    run(&mut a, 2000, "LTRIM l 0 1");
    run(&mut b, 2000, "RPUSH l 5");
    run(&mut b, 2001, "LPUSH l 0");
    exchange(&mut a, &mut b);
    assert_eq!(list(&mut a, "l"), ["0", "1", "2", "5"]);
}

#[test]
fn del_concurrent_with_push_keeps_the_unobserved_push() {
    let (mut a, mut b) = (site(1), site(2));
    run(&mut a, 1000, "RPUSH l x y");
    run(&mut a, 1000, "EXPIRE l 1000");
    deliver(&mut a, &mut b);
    run(&mut a, 2000, "DEL l");
    run(&mut b, 2000, "RPUSH l z");
    exchange(&mut a, &mut b);
    assert_eq!(list(&mut a, "l"), ["z"]);
    // The DEL took the TTL it saw along.
    assert_eq!(run(&mut a, 2000, "PTTL l"), Reply::Int(-1));
}

#[test]
fn concurrent_pops_of_one_element_count_a_pop_conflict_at_each_site() {
    let (mut a, mut b) = (site(1), site(2));
    run(&mut a, 1000, "RPUSH l job1 job2");
    deliver(&mut a, &mut b);
    // Both consumers receive job1: at-least-once, as in every asynchronous
    // active-active store; each site that applies the second pop counts it.
    assert_eq!(run(&mut a, 2000, "LPOP l"), Reply::Bulk("job1".into()));
    assert_eq!(run(&mut b, 2000, "LPOP l"), Reply::Bulk("job1".into()));
    exchange(&mut a, &mut b);
    assert_eq!(list(&mut a, "l"), ["job2"]);
    assert_eq!(a.list_pop_conflicts(), 1);
    assert_eq!(b.list_pop_conflicts(), 1);
    // A pop that another site's LREM beat counts too; an LREM that a pop
    // beat does not (nothing was handed out twice).
    run(&mut a, 3000, "RPUSH l k");
    deliver(&mut a, &mut b);
    run(&mut a, 4000, "RPOP l");
    run(&mut b, 4000, "LREM l 0 k");
    exchange(&mut a, &mut b);
    assert_eq!(a.list_pop_conflicts(), 1);
    assert_eq!(b.list_pop_conflicts(), 2);
}

#[test]
fn an_emptied_list_is_deleted_with_its_ttl() {
    let mut a = site(1);
    run(&mut a, 1000, "RPUSH l x");
    run(&mut a, 1000, "EXPIRE l 100");
    run(&mut a, 1000, "LPOP l");
    assert_eq!(run(&mut a, 1000, "EXISTS l"), Reply::Int(0));
    run(&mut a, 1000, "RPUSH l y");
    assert_eq!(run(&mut a, 1000, "PTTL l"), Reply::Int(-1));
}

#[test]
fn list_snapshot_merge_equals_op_delivery() {
    let (mut a, mut b, mut c) = (site(1), site(2), site(3));
    run(&mut a, 1000, "RPUSH l a b c d");
    deliver(&mut a, &mut b);
    run(&mut a, 2000, "LINSERT l AFTER b x");
    run(&mut a, 2001, "LREM l 0 x");
    run(&mut a, 2002, "LSET l 0 A");
    run(&mut b, 2000, "LPOP l");
    run(&mut b, 2000, "RPUSH l e f");
    let sa = a.snapshot();
    let sb = b.snapshot();
    c.merge_snapshot(sa);
    c.merge_snapshot(sb);
    exchange(&mut a, &mut b);
    assert_eq!(list(&mut c, "l"), list(&mut a, "l"));
    assert_eq!(c.digest_hex(), a.digest_hex());
}

// ---- property: any schedule converges to what the observations require ----

/// splitmix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What the oracle knows of one push: its op and the vector its origin had
/// seen before it.
struct Push {
    op: OpId,
    seen: VersionVector,
    values: Vec<String>,
}

fn covers(vv: &VersionVector, op: OpId) -> bool {
    vv.covers(op)
}

fn check_schedule(seed: u64, sites_n: usize, steps: usize) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let mut sites: Vec<Engine> = (1..=sites_n as u16).map(site).collect();
    let mut pushes: Vec<Push> = Vec::new();
    let mut pushed: BTreeSet<String> = BTreeSet::new();
    let mut removed: BTreeSet<String> = BTreeSet::new();
    let mut shown: Vec<Vec<String>> = Vec::new();
    let mut next_value = 0u64;
    let mut now = 1000u64;
    for _ in 0..steps {
        now += 1 + rng.below(3) as u64;
        let s = rng.below(sites_n);
        if rng.below(5) == 0 {
            let t = rng.below(sites_n);
            if t != s {
                let (from, to) = if s < t {
                    let (l, r) = sites.split_at_mut(t);
                    (&mut l[s], &mut r[0])
                } else {
                    let (l, r) = sites.split_at_mut(s);
                    (&mut r[0], &mut l[t])
                };
                deliver(from, to);
            }
            continue;
        }
        let e = &mut sites[s];
        let before = list(e, "l");
        let seen = e.vv().clone();
        let pick = |rng: &mut Rng| before[rng.below(before.len())].clone();
        let mut fresh = |n: usize| -> Vec<String> {
            (0..n)
                .map(|_| {
                    next_value += 1;
                    format!("v{next_value}")
                })
                .collect()
        };
        let cmd = match rng.below(12) {
            0..=2 => {
                let v = fresh(1 + rng.below(3));
                format!("RPUSH l {}", v.join(" "))
            }
            3..=4 => {
                let v = fresh(1 + rng.below(3));
                format!("LPUSH l {}", v.join(" "))
            }
            5 => "LPOP l".to_string(),
            6 => "RPOP l 2".to_string(),
            7 | 8 if !before.is_empty() => {
                let side = if rng.below(2) == 0 { "BEFORE" } else { "AFTER" };
                let p = pick(&mut rng);
                format!("LINSERT l {side} {p} {}", fresh(1)[0])
            }
            9 if !before.is_empty() => format!("LREM l 0 {}", pick(&mut rng)),
            10 => ["LTRIM l 1 -1", "LTRIM l 0 -2"][rng.below(2)].to_string(),
            11 if rng.below(4) == 0 => "DEL l".to_string(),
            _ => "LLEN l".to_string(),
        };
        let reply = run(e, now, &cmd);
        prop_assert!(!reply.is_error(), "{cmd}: {reply:?}");
        let after = list(e, "l");
        let new: Vec<String> = after
            .iter()
            .filter(|v| !before.contains(v))
            .cloned()
            .collect();
        if !new.is_empty() {
            let op = OpId::new(e.origin(), e.last_local_seq());
            pushed.extend(new.iter().cloned());
            pushes.push(Push {
                op,
                seen,
                values: new,
            });
        }
        removed.extend(before.iter().filter(|v| !after.contains(v)).cloned());
        shown.push(after);
    }
    // Everything everywhere, twice round.
    for _ in 0..2 {
        for i in 0..sites_n {
            for j in 0..sites_n {
                if i != j {
                    let (from, to) = if i < j {
                        let (l, r) = sites.split_at_mut(j);
                        (&mut l[i], &mut r[0])
                    } else {
                        let (l, r) = sites.split_at_mut(i);
                        (&mut r[0], &mut l[j])
                    };
                    deliver(from, to);
                }
            }
        }
    }
    let merged = list(&mut sites[0], "l");
    for e in sites.iter_mut() {
        prop_assert_eq!(&list(e, "l"), &merged, "sites disagree");
        prop_assert!(e.invariants_hold());
    }
    prop_assert_eq!(sites[0].digest_hex(), sites[1].digest_hex());
    let expected: BTreeSet<String> = pushed.difference(&removed).cloned().collect();
    let got: BTreeSet<String> = merged.iter().cloned().collect();
    prop_assert_eq!(got, expected, "not pushed minus removed");
    let at: BTreeMap<&str, usize> = merged
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), i))
        .collect();
    for view in &shown {
        let order: Vec<usize> = view
            .iter()
            .filter_map(|v| at.get(v.as_str()).copied())
            .collect();
        prop_assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "an order a site showed was not kept: {view:?} vs {merged:?}"
        );
    }
    let op_of: BTreeMap<&str, &Push> = pushes
        .iter()
        .flat_map(|p| p.values.iter().map(move |v| (v.as_str(), p)))
        .collect();
    for p in &pushes {
        let idx: Vec<usize> = p
            .values
            .iter()
            .filter_map(|v| at.get(v.as_str()).copied())
            .collect();
        for w in idx.windows(2) {
            for between in &merged[w[0] + 1..w[1]] {
                let other = op_of[between.as_str()];
                prop_assert!(
                    covers(&other.seen, p.op),
                    "{between} interleaves the run {:?} without having seen it",
                    p.values
                );
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(Config { cases: cases(), failure_persistence: None, ..Config::default() })]

    #[test]
    fn any_schedule_converges_to_what_the_sites_observed(
        seed in any::<u64>(),
        sites_n in 2usize..4,
        steps in 10usize..80,
    ) {
        check_schedule(seed, sites_n, steps)?;
    }
}
