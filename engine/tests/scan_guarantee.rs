//! HSCAN, SSCAN and ZSCAN keep Redis's guarantee under concurrent writes:
//! every member present for the whole iteration is returned at least once,
//! and each call visits about COUNT members (O(COUNT), not O(N)).
//!
//! Between two calls of a scan, the site takes local writes and ops from a
//! peer that adds members, removes others (which moves the map's last entry
//! into the hole) and rewrites members that stay (new values, new scores),
//! and joins the peer's whole state (a full sync's merge).

use bytes::Bytes;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::{Engine, EngineConfig, Reply};
use proptest::prelude::*;
use std::collections::BTreeSet;

fn site(id: u16) -> Engine {
    Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(id)).expect("open")
}

fn run(e: &mut Engine, args: &[String]) -> Reply {
    let args: Vec<Bytes> = args
        .iter()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    e.execute(0, &args, 1_000)
}

fn cmd(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn deliver(from: &mut Engine, to: &mut Engine) {
    let ops = from.ops_since(to.vv(), usize::MAX).expect("backlog serves");
    to.apply_remote(ops);
}

#[derive(Clone, Copy, Debug)]
enum Type {
    Hash,
    Set,
    ZSet,
}

/// One write between two scan calls, by the scanning site or by its peer.
#[derive(Clone, Debug)]
enum Write {
    /// A new member.
    Add(u32),
    /// Removes a member that may go (an odd-numbered one).
    Remove(u32),
    /// Rewrites a member that stays (an even-numbered one).
    Touch(u32),
    /// Joins the peer's snapshot into the scanning site (a full sync's
    /// merge, an anti-entropy repair): the joined row is built anew.
    Join,
}

fn write() -> impl Strategy<Value = (bool, Write)> {
    (
        any::<bool>(),
        prop_oneof![
            1 => (0u32..10_000).prop_map(Write::Add),
            2 => (0u32..1_000).prop_map(Write::Remove),
            1 => (0u32..1_000).prop_map(Write::Touch),
            1 => Just(Write::Join),
        ],
    )
}

fn write_args(t: Type, w: &Write) -> Vec<String> {
    let (name, op) = match w {
        Write::Add(i) => (format!("new{i}"), 0),
        Write::Remove(i) => (format!("m{}", i | 1), 1),
        Write::Touch(i) => (format!("m{}", i & !1), 2),
        Write::Join => unreachable!("not a command"),
    };
    match (t, op) {
        (Type::Hash, 1) => cmd(&["HDEL", "c", &name]),
        (Type::Hash, _) => cmd(&["HSET", "c", &name, "v2"]),
        (Type::Set, 1) => cmd(&["SREM", "c", &name]),
        (Type::Set, _) => cmd(&["SADD", "c", &name]),
        (Type::ZSet, 1) => cmd(&["ZREM", "c", &name]),
        (Type::ZSet, 0) => cmd(&["ZADD", "c", "5", &name]),
        (Type::ZSet, _) => cmd(&["ZINCRBY", "c", "1", &name]),
    }
}

/// One scan call: the next cursor and the members it returned.
fn scan(e: &mut Engine, t: Type, cursor: &str, count: usize) -> (String, Vec<String>) {
    let name = match t {
        Type::Hash => "HSCAN",
        Type::Set => "SSCAN",
        Type::ZSet => "ZSCAN",
    };
    let reply = run(e, &cmd(&[name, "c", cursor, "COUNT", &count.to_string()]));
    let Reply::Array(parts) = reply else {
        panic!("scan reply {reply:?}")
    };
    let (Some(Reply::Bulk(next)), Some(Reply::Array(items))) = (parts.first(), parts.get(1)) else {
        panic!("scan reply {parts:?}")
    };
    let step = if matches!(t, Type::Set) { 1 } else { 2 };
    let members = items
        .iter()
        .step_by(step)
        .map(|i| match i {
            Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("member {other:?}"),
        })
        .collect();
    (String::from_utf8_lossy(next).into_owned(), members)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn scans_return_every_member_present_throughout(
        t in prop_oneof![Just(Type::Hash), Just(Type::Set), Just(Type::ZSet)],
        initial in 130u32..600,
        count in 1usize..50,
        writes in proptest::collection::vec(write(), 0..400),
        per_call in 1usize..8,
    ) {
        let (mut a, mut b) = (site(1), site(2));
        for i in 0..initial {
            let m = format!("m{i}");
            let args = match t {
                Type::Hash => cmd(&["HSET", "c", &m, "v"]),
                Type::Set => cmd(&["SADD", "c", &m]),
                Type::ZSet => cmd(&["ZADD", "c", &(i % 7).to_string(), &m]),
            };
            run(&mut a, &args);
        }
        deliver(&mut a, &mut b);
        // Even-numbered members are never removed: present throughout.
        let stable: BTreeSet<String> = (0..initial).step_by(2).map(|i| format!("m{i}")).collect();
        let mut seen = BTreeSet::new();
        let mut cursor = "0".to_string();
        let mut writes = writes.into_iter();
        let mut calls = 0;
        loop {
            let (next, members) = scan(&mut a, t, &cursor, count);
            calls += 1;
            prop_assert!(calls < 100_000, "the scan never ends");
            // O(COUNT): a call that leaves the scan open visited `count`
            // positions (a whole small collection comes back with cursor 0).
            if next != "0" {
                prop_assert!(members.len() <= count, "{} members for COUNT {count}", members.len());
            }
            seen.extend(members);
            if next == "0" {
                break;
            }
            cursor = next;
            for (remote, w) in writes.by_ref().take(per_call) {
                if let Write::Join = w {
                    a.merge_snapshot(b.snapshot());
                    continue;
                }
                let args = write_args(t, &w);
                if remote {
                    run(&mut b, &args);
                    deliver(&mut b, &mut a);
                } else {
                    run(&mut a, &args);
                }
            }
        }
        let missed: Vec<&String> = stable.difference(&seen).collect();
        prop_assert!(missed.is_empty(), "never returned: {missed:?}");
    }
}

/// A small collection (a listpack or intset in Redis) comes back whole with
/// cursor 0, whatever COUNT; a big one comes back COUNT at a time.
#[test]
fn small_collections_come_back_whole() {
    let mut e = site(1);
    for i in 0..128 {
        run(&mut e, &cmd(&["HSET", "h", &format!("f{i}"), "v"]));
        run(&mut e, &cmd(&["ZADD", "z", "1", &format!("m{i}")]));
    }
    for i in 0..512 {
        run(&mut e, &cmd(&["SADD", "s", &i.to_string()]));
    }
    let (next, got) = scan_key(&mut e, "HSCAN", "h");
    assert_eq!((next.as_str(), got), ("0", 256));
    let (next, got) = scan_key(&mut e, "ZSCAN", "z");
    assert_eq!((next.as_str(), got), ("0", 256));
    let (next, got) = scan_key(&mut e, "SSCAN", "s");
    assert_eq!((next.as_str(), got), ("0", 512));
    // One more entry, or one long value, or one non-integer member: big.
    run(&mut e, &cmd(&["HSET", "h", "f0", &"x".repeat(65)]));
    run(&mut e, &cmd(&["ZADD", "z", "1", "m128"]));
    run(&mut e, &cmd(&["SADD", "s", "x"]));
    for (name, key) in [("HSCAN", "h"), ("ZSCAN", "z"), ("SSCAN", "s")] {
        let (next, got) = scan_key(&mut e, name, key);
        assert_ne!(next, "0", "{name}");
        assert!(got <= 2 * 5, "{name} returned {got}");
    }
}

fn scan_key(e: &mut Engine, name: &str, key: &str) -> (String, usize) {
    let Reply::Array(parts) = run(e, &cmd(&[name, key, "0", "COUNT", "5"])) else {
        panic!("reply")
    };
    match (parts.first(), parts.get(1)) {
        (Some(Reply::Bulk(next)), Some(Reply::Array(items))) => {
            (String::from_utf8_lossy(next).into_owned(), items.len())
        }
        other => panic!("reply {other:?}"),
    }
}
