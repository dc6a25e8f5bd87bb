//! Property tests: convergence, merge laws and oracles.
//!
//! * Convergence, one property per type family: 2-5 sites run random commands on
//!   a small keyspace (so writes conflict), interleaved with random *partial*
//!   exchanges (a random subset of the missing ops, in random order, with
//!   duplicates: ops whose deps are missing wait in the causal buffer). Then
//!   every site receives every op in a random order with duplicates, in random
//!   batches. All sites must end with the same version vector, the same digest
//!   and the same visible values (GET, HGETALL sorted, SMEMBERS sorted, ZRANGE
//!   WITHSCORES, TYPE, PTTL).
//! * Merge laws of `merge_snapshot`: commutative, associative, idempotent, and
//!   equal to op-based delivery of the same ops.
//! * Oracles from the `crdts` crate where the semantics coincide: last-writer-wins
//!   register (`LWWReg` with marker `(hlc, site)`), PN counter (`PNCounter`), and
//!   add-wins set (`Orswot`). Each site has an oracle replica; a local write
//!   updates it, a full exchange merges it; after every step every site's visible
//!   value equals its replica's.
//!
//! Cases per property: `PROPTEST_CASES` (default 64).

use bytes::Bytes;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::{Engine, EngineConfig, Op, OpId, Reply, VersionVector};
use crdts::{CmRDT, CvRDT, LWWReg, Orswot, PNCounter};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError};
use std::collections::BTreeMap;

type Cmd = Vec<String>;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn config() -> Config {
    Config {
        cases: cases(),
        // Failing inputs are printed, shrunk; no regression files are written.
        failure_persistence: None,
        ..Config::default()
    }
}

fn site(id: u16) -> Engine {
    Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(id)).expect("open")
}

fn to_args(cmd: &[String]) -> Vec<Bytes> {
    cmd.iter()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect()
}

fn exec(e: &mut Engine, db: u8, now: u64, cmd: &[&str]) -> Reply {
    let args: Vec<Bytes> = cmd
        .iter()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    e.execute(db, &args, now)
}

fn has_commands(names: &[&str]) -> bool {
    names.iter().all(|n| Engine::is_data_command(n.as_bytes()))
}

/// splitmix64, for the choices a property draws from one generated seed.
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
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

// ---- reading the visible state -------------------------------------------------

/// Flattens a reply into strings (maps as key, value, ...).
fn flat(r: &Reply) -> Vec<String> {
    match r {
        Reply::Ok => vec!["OK".into()],
        Reply::Simple(s) | Reply::Verbatim(s) => vec![s.clone()],
        Reply::Error(e) => vec![format!("ERR:{e}")],
        Reply::Int(i) => vec![i.to_string()],
        Reply::Bulk(b) => vec![String::from_utf8_lossy(b).into_owned()],
        Reply::Nil | Reply::NilArray => vec!["(nil)".into()],
        Reply::Double(d) | Reply::HumanDouble(d) => vec![format!("{d:?}")],
        Reply::Bool(b) => vec![b.to_string()],
        Reply::Array(v) | Reply::Set(v) | Reply::Push(v) | Reply::Frames(v) => {
            v.iter().flat_map(flat).collect()
        }
        Reply::Map(v) | Reply::Pairs(v) => v
            .iter()
            .flat_map(|(k, v)| flat(k).into_iter().chain(flat(v)))
            .collect(),
    }
}

fn sorted_pairs(v: Vec<String>) -> Vec<String> {
    let mut pairs: Vec<(String, String)> = v
        .chunks(2)
        .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.into_iter().flat_map(|(a, b)| [a, b]).collect()
}

/// Everything a client can see in dbs 0 and 1 at `now`, one line per key.
fn visible(e: &mut Engine, now: u64) -> Vec<String> {
    let mut out = Vec::new();
    for db in [0u8, 1] {
        let mut keys = flat(&exec(e, db, now, &["KEYS", "*"]));
        keys.sort();
        for k in keys {
            let kind = flat(&exec(e, db, now, &["TYPE", &k])).concat();
            let value = match kind.as_str() {
                "string" => flat(&exec(e, db, now, &["GET", &k])),
                "hash" => sorted_pairs(flat(&exec(e, db, now, &["HGETALL", &k]))),
                "set" => {
                    let mut v = flat(&exec(e, db, now, &["SMEMBERS", &k]));
                    v.sort();
                    v
                }
                "zset" => flat(&exec(e, db, now, &["ZRANGE", &k, "0", "-1", "WITHSCORES"])),
                _ => vec![],
            };
            let ttl = flat(&exec(e, db, now, &["PTTL", &k])).concat();
            out.push(format!("db{db} {k} {kind} {value:?} pttl={ttl}"));
        }
    }
    out
}

// ---- actions -------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Action {
    /// One command at a site; `dt` advances the shared clock first.
    Cmd {
        site: usize,
        db: u8,
        dt: u64,
        cmd: Cmd,
    },
    /// A MULTI/EXEC group at a site (db 0).
    Multi { site: usize, cmds: Vec<Cmd> },
    /// A random subset of the ops `from` has and `to` lacks, shuffled, with
    /// duplicates (the seed draws the subset).
    Exchange { from: usize, to: usize, seed: u64 },
    /// Active expiry at a site.
    ExpireCycle { site: usize },
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn key() -> impl Strategy<Value = String> {
    select(vec!["a", "b", "c"]).prop_map(s)
}

fn value() -> impl Strategy<Value = String> {
    select(vec!["x", "y", "zz", "7", "-3", "1.5", "10"]).prop_map(s)
}

fn int() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (-100i64..100).prop_map(|i| i.to_string()),
        1 => select(vec!["9223372036854775807", "-9223372036854775808"]).prop_map(s),
    ]
}

fn float() -> impl Strategy<Value = String> {
    select(vec!["0.1", "-2.5", "3", "1e3", "0.3333"]).prop_map(s)
}

fn field() -> impl Strategy<Value = String> {
    select(vec!["f", "g", "h"]).prop_map(s)
}

fn member() -> impl Strategy<Value = String> {
    select(vec!["m1", "m2", "m3", "m4"]).prop_map(s)
}

fn score() -> impl Strategy<Value = String> {
    select(vec!["0", "1", "2.5", "-1", "10"]).prop_map(s)
}

fn string_cmd() -> BoxedStrategy<Cmd> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| vec![s("SET"), k, v]),
        1 => (key(), value(), select(vec!["NX", "XX", "GET", "KEEPTTL"]))
            .prop_map(|(k, v, f)| vec![s("SET"), k, v, s(f)]),
        1 => (key(), value()).prop_map(|(k, v)| vec![s("SETNX"), k, v]),
        1 => (key(), value()).prop_map(|(k, v)| vec![s("GETSET"), k, v]),
        2 => (key(), value()).prop_map(|(k, v)| vec![s("APPEND"), k, v]),
        1 => (key(), 0u8..6, value())
            .prop_map(|(k, o, v)| vec![s("SETRANGE"), k, o.to_string(), v]),
        1 => (key(), value(), key(), value())
            .prop_map(|(k, v, k2, v2)| vec![s("MSET"), k, v, k2, v2]),
        1 => key().prop_map(|k| vec![s("GETDEL"), k]),
        1 => key().prop_map(|k| vec![s("DEL"), k]),
    ]
    .boxed()
}

fn counter_cmd() -> BoxedStrategy<Cmd> {
    prop_oneof![
        3 => key().prop_map(|k| vec![s("INCR"), k]),
        2 => key().prop_map(|k| vec![s("DECR"), k]),
        3 => (key(), int()).prop_map(|(k, i)| vec![s("INCRBY"), k, i]),
        2 => (key(), int()).prop_map(|(k, i)| vec![s("DECRBY"), k, i]),
        2 => (key(), float()).prop_map(|(k, f)| vec![s("INCRBYFLOAT"), k, f]),
        2 => (key(), int()).prop_map(|(k, i)| vec![s("SET"), k, i]),
        1 => (key(), value()).prop_map(|(k, v)| vec![s("SET"), k, v]),
        1 => key().prop_map(|k| vec![s("DEL"), k]),
    ]
    .boxed()
}

fn keys_cmd() -> BoxedStrategy<Cmd> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| vec![s("SET"), k, v]),
        1 => (key(), 1u64..3000, value())
            .prop_map(|(k, ms, v)| vec![s("SET"), k, v, s("PX"), ms.to_string()]),
        2 => (key(), 1u64..3000).prop_map(|(k, ms)| vec![s("PEXPIRE"), k, ms.to_string()]),
        1 => (key(), 0u64..4).prop_map(|(k, sec)| vec![s("EXPIRE"), k, sec.to_string()]),
        1 => (key(), 1u64..3000).prop_map(|(k, ms)| vec![s("GETEX"), k, s("PX"), ms.to_string()]),
        2 => key().prop_map(|k| vec![s("PERSIST"), k]),
        1 => key().prop_map(|k| vec![s("INCR"), k]),
        2 => (key(), key()).prop_map(|(a, b)| vec![s("DEL"), a, b]),
        1 => key().prop_map(|k| vec![s("UNLINK"), k]),
        1 => (key(), key()).prop_map(|(a, b)| vec![s("RENAME"), a, b]),
        1 => (key(), key()).prop_map(|(a, b)| vec![s("COPY"), a, b, s("REPLACE")]),
        1 => key().prop_map(|k| vec![s("MOVE"), k, s("1")]),
        1 => Just(vec![s("FLUSHDB")]),
        1 => Just(vec![s("FLUSHALL")]),
    ]
    .boxed()
}

fn hash_cmd() -> BoxedStrategy<Cmd> {
    prop_oneof![
        4 => (key(), field(), value()).prop_map(|(k, f, v)| vec![s("HSET"), k, f, v]),
        1 => (key(), field(), value(), field(), value())
            .prop_map(|(k, f, v, g, w)| vec![s("HSET"), k, f, v, g, w]),
        1 => (key(), field(), value()).prop_map(|(k, f, v)| vec![s("HSETNX"), k, f, v]),
        3 => (key(), field()).prop_map(|(k, f)| vec![s("HDEL"), k, f]),
        2 => (key(), field(), int()).prop_map(|(k, f, i)| vec![s("HINCRBY"), k, f, i]),
        1 => (key(), field(), float()).prop_map(|(k, f, x)| vec![s("HINCRBYFLOAT"), k, f, x]),
        1 => key().prop_map(|k| vec![s("DEL"), k]),
        1 => (key(), 1u64..3000).prop_map(|(k, ms)| vec![s("PEXPIRE"), k, ms.to_string()]),
    ]
    .boxed()
}

fn set_cmd() -> BoxedStrategy<Cmd> {
    prop_oneof![
        4 => (key(), member()).prop_map(|(k, m)| vec![s("SADD"), k, m]),
        1 => (key(), member(), member()).prop_map(|(k, m, n)| vec![s("SADD"), k, m, n]),
        3 => (key(), member()).prop_map(|(k, m)| vec![s("SREM"), k, m]),
        1 => key().prop_map(|k| vec![s("SPOP"), k]),
        1 => (key(), key(), member()).prop_map(|(a, b, m)| vec![s("SMOVE"), a, b, m]),
        1 => (key(), key(), key()).prop_map(|(d, a, b)| vec![s("SUNIONSTORE"), d, a, b]),
        1 => (key(), key(), key()).prop_map(|(d, a, b)| vec![s("SINTERSTORE"), d, a, b]),
        1 => key().prop_map(|k| vec![s("DEL"), k]),
    ]
    .boxed()
}

fn zset_cmd() -> BoxedStrategy<Cmd> {
    prop_oneof![
        4 => (key(), score(), member()).prop_map(|(k, sc, m)| vec![s("ZADD"), k, sc, m]),
        1 => (key(), select(vec!["NX", "XX", "GT", "LT"]), score(), member())
            .prop_map(|(k, f, sc, m)| vec![s("ZADD"), k, s(f), sc, m]),
        3 => (key(), score(), member()).prop_map(|(k, d, m)| vec![s("ZINCRBY"), k, d, m]),
        3 => (key(), member()).prop_map(|(k, m)| vec![s("ZREM"), k, m]),
        1 => key().prop_map(|k| vec![s("ZPOPMIN"), k]),
        1 => key().prop_map(|k| vec![s("ZREMRANGEBYSCORE"), k, s("0"), s("2")]),
        1 => (key(), key(), key())
            .prop_map(|(d, a, b)| vec![s("ZUNIONSTORE"), d, s("2"), a, b]),
        1 => key().prop_map(|k| vec![s("DEL"), k]),
    ]
    .boxed()
}

fn mixed_cmd() -> BoxedStrategy<Cmd> {
    prop_oneof![
        string_cmd(),
        counter_cmd(),
        keys_cmd(),
        hash_cmd(),
        set_cmd(),
        zset_cmd(),
    ]
    .boxed()
}

fn actions(n: usize, cmd: BoxedStrategy<Cmd>, len: usize) -> BoxedStrategy<Vec<Action>> {
    let dt = prop_oneof![3 => Just(0u64), 3 => Just(1u64), 2 => 0u64..400];
    let db = prop_oneof![6 => Just(0u8), 1 => Just(1u8)];
    let one = prop_oneof![
        12 => (0..n, db, dt, cmd.clone())
            .prop_map(|(site, db, dt, cmd)| Action::Cmd { site, db, dt, cmd }),
        1 => (0..n, prop::collection::vec(cmd, 1..4))
            .prop_map(|(site, cmds)| Action::Multi { site, cmds }),
        5 => (0..n, 0..n, any::<u64>())
            .prop_map(|(from, to, seed)| Action::Exchange { from, to, seed }),
        1 => (0..n).prop_map(|site| Action::ExpireCycle { site }),
    ];
    prop::collection::vec(one, len / 8..len).boxed()
}

/// A scenario: sites, per-site clock skews, actions, and the seed of the final
/// delivery.
#[derive(Clone, Debug)]
struct Scenario {
    skews: Vec<u64>,
    actions: Vec<Action>,
    final_seed: u64,
}

fn scenario(
    cmd: BoxedStrategy<Cmd>,
    sites: std::ops::RangeInclusive<usize>,
) -> BoxedStrategy<Scenario> {
    sites
        .prop_flat_map(move |n| {
            (
                prop::collection::vec(0u64..40, n),
                actions(n, cmd.clone(), 80),
                any::<u64>(),
            )
        })
        .prop_map(|(skews, actions, final_seed)| Scenario {
            skews,
            actions,
            final_seed,
        })
        .boxed()
}

/// Ops `from` holds that `to` lacks, in `from`'s causal order.
fn missing(from: &mut Engine, to: &Engine) -> Vec<Op> {
    from.ops_since(to.vv(), usize::MAX)
        .expect("the backlog is never trimmed in these tests")
}

fn pair(sites: &mut [Engine], from: usize, to: usize) -> (&mut Engine, &mut Engine) {
    assert_ne!(from, to);
    if from < to {
        let (l, r) = sites.split_at_mut(to);
        (&mut l[from], &mut r[0])
    } else {
        let (l, r) = sites.split_at_mut(from);
        (&mut r[0], &mut l[to])
    }
}

/// Runs the actions; returns the sites and the clock at the end.
fn play(sc: &Scenario) -> (Vec<Engine>, u64) {
    let mut sites: Vec<Engine> = (0..sc.skews.len()).map(|i| site(i as u16 + 1)).collect();
    let mut clock = 10_000u64;
    for a in &sc.actions {
        match a {
            Action::Cmd { site, db, dt, cmd } => {
                clock += dt;
                let now = clock + sc.skews[*site];
                sites[*site].execute(*db, &to_args(cmd), now);
            }
            Action::Multi { site, cmds } => {
                let now = clock + sc.skews[*site];
                let group: Vec<(u8, Vec<Bytes>)> = cmds.iter().map(|c| (0u8, to_args(c))).collect();
                sites[*site].execute_multi(&group, now);
            }
            Action::Exchange { from, to, seed } => {
                if from == to {
                    continue;
                }
                let (f, t) = pair(&mut sites, *from, *to);
                let mut ops = missing(f, t);
                let mut rng = Rng(*seed);
                ops.retain(|_| rng.below(3) != 0);
                let dups: Vec<Op> = ops.iter().filter(|_| rng.below(4) == 0).cloned().collect();
                ops.extend(dups);
                rng.shuffle(&mut ops);
                t.apply_remote(ops);
            }
            Action::ExpireCycle { site } => {
                let now = clock + sc.skews[*site];
                sites[*site].expire_cycle(now, 16);
            }
        }
    }
    (sites, clock)
}

/// Every op held anywhere, by OpId.
fn all_ops(sites: &mut [Engine]) -> BTreeMap<OpId, Op> {
    let mut all = BTreeMap::new();
    for s in sites {
        for op in s
            .ops_since(&VersionVector::new(), usize::MAX)
            .expect("backlog")
        {
            all.insert(op.id, op);
        }
    }
    all
}

/// Delivers every op to every site in a random order with duplicates, in
/// random batches.
fn deliver_everything(sites: &mut [Engine], seed: u64) {
    let all: Vec<Op> = all_ops(sites).into_values().collect();
    let mut rng = Rng(seed);
    for s in sites.iter_mut() {
        let mut ops = all.clone();
        let dups: Vec<Op> = all.iter().filter(|_| rng.below(3) == 0).cloned().collect();
        ops.extend(dups);
        rng.shuffle(&mut ops);
        while !ops.is_empty() {
            let n = 1 + rng.below(ops.len());
            let batch: Vec<Op> = ops.drain(..n).collect();
            s.apply_remote(batch);
        }
    }
}

fn check_converged(sites: &mut [Engine], now: u64) -> Result<(), TestCaseError> {
    let vv = sites[0].vv().clone();
    let digest = sites[0].digest_hex();
    let view = visible(&mut sites[0], now);
    for (i, s) in sites.iter_mut().enumerate() {
        prop_assert_eq!(s.causal_buffer_len(), 0, "site {} still buffers ops", i);
        prop_assert_eq!(s.vv(), &vv, "site {} holds other ops", i);
        prop_assert_eq!(&visible(s, now), &view, "site {} shows other values", i);
        prop_assert_eq!(s.digest_hex(), digest.clone(), "site {} digest differs", i);
    }
    Ok(())
}

fn converge(sc: &Scenario) -> Result<(), TestCaseError> {
    let (mut sites, clock) = play(sc);
    deliver_everything(&mut sites, sc.final_seed);
    // Some deadlines have passed by now, some not.
    check_converged(&mut sites, clock + 100)
}

macro_rules! convergence_property {
    ($name:ident, $cmd:expr, $needs:expr) => {
        #[test]
        fn $name() {
            if !has_commands($needs) {
                eprintln!("skipped: the engine lacks one of {:?}", $needs);
                return;
            }
            proptest!(config(), |(sc in scenario($cmd, 2..=5))| {
                converge(&sc)?;
            });
        }
    };
}

convergence_property!(
    strings_converge,
    string_cmd(),
    &["SET", "APPEND", "SETRANGE"]
);
convergence_property!(counters_converge, counter_cmd(), &["INCRBY", "INCRBYFLOAT"]);
convergence_property!(
    keys_expiry_flush_converge,
    keys_cmd(),
    &["PEXPIRE", "FLUSHALL", "RENAME"]
);
convergence_property!(
    hashes_converge,
    hash_cmd(),
    &["HSET", "HDEL", "HINCRBY", "HGETALL"]
);
convergence_property!(sets_converge, set_cmd(), &["SADD", "SREM", "SMEMBERS"]);
convergence_property!(
    sorted_sets_converge,
    zset_cmd(),
    &["ZADD", "ZINCRBY", "ZREM", "ZRANGE"]
);
convergence_property!(
    mixed_types_converge,
    mixed_cmd(),
    &["SET", "HSET", "SADD", "ZADD"]
);

// ---- merge laws ------------------------------------------------------------------

fn merged(parts: &[&chorus_engine::Snapshot]) -> Engine {
    let mut e = site(100);
    for p in parts {
        e.merge_snapshot((*p).clone());
    }
    e
}

fn merge_laws(sc: &Scenario) -> Result<(), TestCaseError> {
    let (mut sites, clock) = play(sc);
    let now = clock + 100;
    let snaps: Vec<chorus_engine::Snapshot> = sites.iter().map(|s| s.snapshot()).collect();
    let (a, b, c) = (&snaps[0], &snaps[1], &snaps[2]);

    // Commutative.
    let mut ab = merged(&[a, b]);
    let mut ba = merged(&[b, a]);
    prop_assert_eq!(ab.digest_hex(), ba.digest_hex(), "A+B != B+A");
    prop_assert_eq!(visible(&mut ab, now), visible(&mut ba, now));
    prop_assert_eq!(ab.vv(), ba.vv());

    // Associative.
    let ab_c = merged(&[a, b, c]);
    let bc = merged(&[b, c]).snapshot();
    let a_bc = merged(&[a, &bc]);
    prop_assert_eq!(ab_c.digest_hex(), a_bc.digest_hex(), "(A+B)+C != A+(B+C)");

    // Idempotent: into a copy, and into the site itself.
    let a1 = merged(&[a]);
    let a2 = merged(&[a, a]);
    prop_assert_eq!(a1.digest_hex(), sites[0].digest_hex(), "empty+A != A");
    prop_assert_eq!(a2.digest_hex(), a1.digest_hex(), "A+A != A");
    // State-based merge equals op-based delivery of the same ops.
    let mut by_ops = site(101);
    for s in &mut sites[..3] {
        let ops = s.ops_since(by_ops.vv(), usize::MAX).expect("backlog");
        by_ops.apply_remote(ops);
    }
    prop_assert_eq!(by_ops.causal_buffer_len(), 0);
    prop_assert_eq!(by_ops.digest_hex(), ab_c.digest_hex(), "snapshots != ops");
    let before = sites[0].digest_hex();
    sites[0].merge_snapshot(a.clone());
    prop_assert_eq!(
        sites[0].digest_hex(),
        before,
        "merging its own snapshot changed A"
    );

    // A site merging a snapshot keeps its own unsynced writes and converges
    // with op-based peers afterwards.
    let mut x = site(102);
    exec(&mut x, 0, clock, &["SET", "own", "1"]);
    x.merge_snapshot(a.clone());
    prop_assert_eq!(
        exec(&mut x, 0, now, &["GET", "own"]),
        Reply::Bulk(Bytes::from_static(b"1"))
    );
    Ok(())
}

#[test]
fn snapshot_merge_is_commutative_associative_idempotent() {
    let cmd = if has_commands(&["HSET", "SADD", "ZADD"]) {
        mixed_cmd()
    } else {
        prop_oneof![string_cmd(), counter_cmd(), keys_cmd()].boxed()
    };
    proptest!(config(), |(sc in scenario(cmd, 3..=3))| {
        merge_laws(&sc)?;
    });
}

// ---- oracles from the crdts crate --------------------------------------------

#[derive(Clone, Debug)]
enum OracleStep {
    /// A local write at a site.
    Write { site: usize, dt: u64, arg: i64 },
    /// `from` sends everything it has to `to` (the oracle merges its state).
    Sync { from: usize, to: usize },
}

fn oracle_steps(arg: BoxedStrategy<i64>) -> BoxedStrategy<(usize, Vec<OracleStep>)> {
    (2usize..=5)
        .prop_flat_map(move |n| {
            let dt = prop_oneof![Just(0u64), Just(1u64), 0u64..50];
            let step = prop_oneof![
                3 => (0..n, dt, arg.clone()).prop_map(|(site, dt, arg)| OracleStep::Write { site, dt, arg }),
                2 => (0..n, 0..n).prop_map(|(from, to)| OracleStep::Sync { from, to }),
            ];
            (Just(n), prop::collection::vec(step, 1..50))
        })
        .boxed()
}

/// Runs oracle steps: `write` makes a local write at a site (engine and oracle
/// replica), `sync` is a full op delivery mirrored by an oracle merge, `check`
/// compares one site with its replica after every step.
fn run_oracle<O: Clone>(
    n: usize,
    steps: &[OracleStep],
    mut oracles: Vec<O>,
    mut write: impl FnMut(&mut Engine, &mut O, u16, u64, i64),
    merge: impl Fn(&mut O, &O),
    check: impl Fn(&mut Engine, &O, u64) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut sites: Vec<Engine> = (0..n).map(|i| site(i as u16 + 1)).collect();
    let mut clock = 5_000u64;
    for step in steps {
        match *step {
            OracleStep::Write { site, dt, arg } => {
                clock += dt;
                let id = site as u16 + 1;
                write(&mut sites[site], &mut oracles[site], id, clock, arg);
            }
            OracleStep::Sync { from, to } => {
                if from == to {
                    continue;
                }
                let (f, t) = pair(&mut sites, from, to);
                let ops = missing(f, t);
                let outcome = t.apply_remote(ops);
                prop_assert_eq!(outcome.buffered, 0);
                let src = oracles[from].clone();
                merge(&mut oracles[to], &src);
            }
        }
        for (i, s) in sites.iter_mut().enumerate() {
            check(s, &oracles[i], clock)?;
        }
    }
    // Everyone meets everyone: the merged oracle is the final value everywhere.
    let mut all = oracles[0].clone();
    for o in &oracles[1..] {
        merge(&mut all, o);
    }
    deliver_everything(&mut sites, 7);
    for s in sites.iter_mut() {
        check(s, &all, clock)?;
    }
    Ok(())
}

/// The op a write just made at `e` (none if it failed).
fn last_op(e: &mut Engine, before: &VersionVector) -> Option<Op> {
    e.ops_since(before, usize::MAX).and_then(|mut v| v.pop())
}

type Lww = LWWReg<Option<String>, (u64, u16)>;

#[test]
fn lww_register_matches_crdts_lwwreg() {
    proptest!(config(), |((n, steps) in oracle_steps((0i64..1000).boxed()))| {
        run_oracle(
            n,
            &steps,
            vec![Lww::default(); n],
            |e, o, id, now, arg| {
                let v = format!("v{arg}");
                let before = e.vv().clone();
                assert_eq!(exec(e, 0, now, &["SET", "r", &v]), Reply::Ok);
                let op = last_op(e, &before).expect("SET made an op");
                assert_eq!(op.id.site(), id);
                o.update(Some(v), (op.hlc.0, id));
            },
            |o, other| o.merge(other.clone()),
            |e, o, now| {
                let expected = match &o.val {
                    Some(v) => Reply::Bulk(Bytes::copy_from_slice(v.as_bytes())),
                    None => Reply::Nil,
                };
                prop_assert_eq!(exec(e, 0, now, &["GET", "r"]), expected);
                Ok(())
            },
        )?;
    });
}

#[test]
fn pn_counter_matches_crdts_pncounter() {
    let delta = prop_oneof![
        9 => -1000i64..1000,
        // Large, but the oracle's per-site u64 totals must not overflow.
        1 => select(vec![1i64 << 58, -(1i64 << 58)]),
    ]
    .boxed();
    // The oracle replica: the PN counter, and whether any increment was seen
    // (an untouched key reads as nil, not 0).
    proptest!(config(), |((n, steps) in oracle_steps(delta.clone()))| {
        run_oracle(
            n,
            &steps,
            vec![(PNCounter::<u16>::new(), false); n],
            |e, o, id, now, d| {
                let (cmd, amount) = if d < 0 && d % 2 == 0 {
                    ("DECRBY", d.unsigned_abs().to_string())
                } else {
                    ("INCRBY", d.to_string())
                };
                let reply = exec(e, 0, now, &[cmd, "c", &amount]);
                if reply.is_error() {
                    // Overflow of the visible i64 value: refused like Redis,
                    // no op, so the oracle does not count it either.
                    return;
                }
                let op = if d >= 0 {
                    o.0.inc_many(id, d as u64)
                } else {
                    o.0.dec_many(id, d.unsigned_abs())
                };
                o.0.apply(op);
                o.1 = true;
            },
            |o, other| {
                o.0.merge(other.0.clone());
                o.1 |= other.1;
            },
            |e, o, now| {
                let expected = if o.1 {
                    Reply::Bulk(Bytes::from(o.0.read().to_string()))
                } else {
                    Reply::Nil
                };
                prop_assert_eq!(exec(e, 0, now, &["GET", "c"]), expected);
                Ok(())
            },
        )?;
    });
}

#[test]
fn add_wins_set_matches_crdts_orswot() {
    if !has_commands(&["SADD", "SREM", "SMEMBERS"]) {
        eprintln!("skipped: the engine lacks SADD/SREM/SMEMBERS");
        return;
    }
    // arg: member index (0..4) and add (even) or remove (odd).
    proptest!(config(), |((n, steps) in oracle_steps((0i64..8).boxed()))| {
        run_oracle(
            n,
            &steps,
            vec![Orswot::<String, u16>::new(); n],
            |e, o, id, now, arg| {
                let m = format!("m{}", arg / 2);
                if arg % 2 == 0 {
                    assert!(!exec(e, 0, now, &["SADD", "s", &m]).is_error());
                    let ctx = o.read_ctx().derive_add_ctx(id);
                    let op = o.add(m, ctx);
                    o.apply(op);
                } else {
                    assert!(!exec(e, 0, now, &["SREM", "s", &m]).is_error());
                    let ctx = o.contains(&m).derive_rm_ctx();
                    let op = o.rm(m, ctx);
                    o.apply(op);
                }
            },
            |o, other| o.merge(other.clone()),
            |e, o, now| {
                let mut got = flat(&exec(e, 0, now, &["SMEMBERS", "s"]));
                got.sort();
                let mut want: Vec<String> = o.read().val.into_iter().collect();
                want.sort();
                prop_assert_eq!(got, want);
                Ok(())
            },
        )?;
    });
}
