//! Sorted-set commands (Redis 7.0): ZADD … ZINTERCARD on the CRDT sorted set.
//!
//! Members are observed-remove (add wins); a member's score is a register
//! (ZADD) plus a counter (ZINCRBY, ZADD INCR), so a ZREM concurrent with a
//! ZINCRBY leaves the unobserved increment. ZADD emits every member whose score
//! it sets (an unchanged score too: the new dot is what beats a concurrent
//! ZREM); replies of ZINCRBY/ZADD INCR read the score back from the keyspace,
//! so they show exactly what ZSCORE shows afterwards.
//!
//! Replies WITHSCORES are `Reply::Pairs` of member and score (a flat array
//! in RESP2; Redis 7.0 nests `[member, score]` pairs in RESP3). Ranges are rank windows
//! of the `(score, member)` index, found in O(log N) ([`RankedSet`]); BYLEX
//! assumes equal scores as Redis does and, up to 128 members, walks like
//! Redis's listpack. ZRANDMEMBER picks deterministically ([`super::Dice`]);
//! ZSCAN returns a small set whole with cursor 0 and walks a big one
//! ([`super::scan_window`]).
//!
//! The commands are split by concern: `writes` (ZADD, ZINCRBY, ZREM,
//! ZREMRANGEBY*, ZPOP*), `reads` (ZSCORE, ZCARD, ZRANK, the ZRANGE family,
//! ZCOUNT, ZLEXCOUNT), `algebra` (ZUNION/ZINTER/ZDIFF, their STORE forms and
//! ZINTERCARD), `scan` (ZRANDMEMBER, ZSCAN), `geo` (the GEO commands, whose
//! scores are geohashes), with the score, lex and rank
//! ranges they share in `range`. This module holds the command table and
//! the helpers every part uses.
//!
//! [`RankedSet`]: crate::keyspace::value::RankedSet

mod algebra;
mod geo;
mod range;
mod reads;
mod scan;
mod writes;

pub use range::ZSET_LISTPACK_ENTRIES;

use super::{expire_if_needed, row, typed, DataCommand};
use crate::engine::Txn;
use crate::keyspace::value::{Kind, Score, ZSetSlot};
use crate::op::{Effect, Value};
use crate::reply::Reply;
use algebra::{zdiff, zdiffstore, zinter, zintercard, zinterstore, zunion, zunionstore};
use bytes::Bytes;
use geo::{
    geoadd, geodist, geohash_cmd, geopos, georadius, georadius_ro, georadiusbymember,
    georadiusbymember_ro, geosearch, geosearchstore,
};
use reads::{
    zcard, zcount, zlexcount, zmscore, zrange, zrangebylex, zrangebyscore, zrangestore, zrank,
    zrevrange, zrevrangebylex, zrevrangebyscore, zrevrank, zscore,
};
use scan::{zrandmember, zscan};
pub use writes::{bzpop_keys, zmpop_keys};
use writes::{
    zadd, zincrby, zmpop, zpopmax, zpopmin, zrem, zremrangebylex, zremrangebyrank, zremrangebyscore,
};

pub static COMMANDS: &[DataCommand] = &[
    DataCommand {
        name: "ZADD",
        write: true,
        handler: zadd,
    },
    DataCommand {
        name: "ZINCRBY",
        write: true,
        handler: zincrby,
    },
    DataCommand {
        name: "ZREM",
        write: true,
        handler: zrem,
    },
    DataCommand {
        name: "ZSCORE",
        write: false,
        handler: zscore,
    },
    DataCommand {
        name: "ZMSCORE",
        write: false,
        handler: zmscore,
    },
    DataCommand {
        name: "ZCARD",
        write: false,
        handler: zcard,
    },
    DataCommand {
        name: "ZCOUNT",
        write: false,
        handler: zcount,
    },
    DataCommand {
        name: "ZLEXCOUNT",
        write: false,
        handler: zlexcount,
    },
    DataCommand {
        name: "ZRANGE",
        write: false,
        handler: zrange,
    },
    DataCommand {
        name: "ZRANGESTORE",
        write: true,
        handler: zrangestore,
    },
    DataCommand {
        name: "ZREVRANGE",
        write: false,
        handler: zrevrange,
    },
    DataCommand {
        name: "ZRANGEBYSCORE",
        write: false,
        handler: zrangebyscore,
    },
    DataCommand {
        name: "ZREVRANGEBYSCORE",
        write: false,
        handler: zrevrangebyscore,
    },
    DataCommand {
        name: "ZRANGEBYLEX",
        write: false,
        handler: zrangebylex,
    },
    DataCommand {
        name: "ZREVRANGEBYLEX",
        write: false,
        handler: zrevrangebylex,
    },
    DataCommand {
        name: "ZRANK",
        write: false,
        handler: zrank,
    },
    DataCommand {
        name: "ZREVRANK",
        write: false,
        handler: zrevrank,
    },
    DataCommand {
        name: "ZPOPMIN",
        write: true,
        handler: zpopmin,
    },
    DataCommand {
        name: "ZPOPMAX",
        write: true,
        handler: zpopmax,
    },
    DataCommand {
        name: "ZMPOP",
        write: true,
        handler: zmpop,
    },
    DataCommand {
        name: "ZRANDMEMBER",
        write: false,
        handler: zrandmember,
    },
    DataCommand {
        name: "ZREMRANGEBYRANK",
        write: true,
        handler: zremrangebyrank,
    },
    DataCommand {
        name: "ZREMRANGEBYSCORE",
        write: true,
        handler: zremrangebyscore,
    },
    DataCommand {
        name: "ZREMRANGEBYLEX",
        write: true,
        handler: zremrangebylex,
    },
    DataCommand {
        name: "ZSCAN",
        write: false,
        handler: zscan,
    },
    DataCommand {
        name: "ZUNIONSTORE",
        write: true,
        handler: zunionstore,
    },
    DataCommand {
        name: "ZINTERSTORE",
        write: true,
        handler: zinterstore,
    },
    DataCommand {
        name: "ZDIFFSTORE",
        write: true,
        handler: zdiffstore,
    },
    DataCommand {
        name: "ZUNION",
        write: false,
        handler: zunion,
    },
    DataCommand {
        name: "ZINTER",
        write: false,
        handler: zinter,
    },
    DataCommand {
        name: "ZDIFF",
        write: false,
        handler: zdiff,
    },
    DataCommand {
        name: "ZINTERCARD",
        write: false,
        handler: zintercard,
    },
    DataCommand {
        name: "GEOADD",
        write: true,
        handler: geoadd,
    },
    DataCommand {
        name: "GEOPOS",
        write: false,
        handler: geopos,
    },
    DataCommand {
        name: "GEODIST",
        write: false,
        handler: geodist,
    },
    DataCommand {
        name: "GEOHASH",
        write: false,
        handler: geohash_cmd,
    },
    DataCommand {
        name: "GEOSEARCH",
        write: false,
        handler: geosearch,
    },
    DataCommand {
        name: "GEOSEARCHSTORE",
        write: true,
        handler: geosearchstore,
    },
    DataCommand {
        name: "GEORADIUS",
        write: true,
        handler: georadius,
    },
    DataCommand {
        name: "GEORADIUS_RO",
        write: false,
        handler: georadius_ro,
    },
    DataCommand {
        name: "GEORADIUSBYMEMBER",
        write: true,
        handler: georadiusbymember,
    },
    DataCommand {
        name: "GEORADIUSBYMEMBER_RO",
        write: false,
        handler: georadiusbymember_ro,
    },
];

/// The visible sorted set at `key` (`None`: no such key), or WRONGTYPE.
fn zset_of<'t>(txn: &'t Txn<'_>, db: u8, key: &[u8]) -> Result<Option<&'t ZSetSlot>, Reply> {
    Ok(typed(txn, db, key, Kind::ZSet)?.and_then(|r| r.zset.as_deref()))
}

/// `[member, score]` pairs, or just the members.
fn scored_reply(items: Vec<(Bytes, f64)>, withscores: bool) -> Reply {
    if withscores {
        return Reply::Pairs(
            items
                .into_iter()
                .map(|(m, s)| (Reply::Bulk(m), Reply::Double(s)))
                .collect(),
        );
    }
    Reply::Array(items.into_iter().map(|(m, _)| Reply::Bulk(m)).collect())
}

/// Writes `items` as the whole value of `dst` (or deletes `dst` when empty).
fn store(txn: &mut Txn<'_>, db: u8, dst: &Bytes, items: Vec<(Bytes, f64)>) -> Reply {
    let n = items.len() as i64;
    expire_if_needed(txn, db, dst);
    if items.is_empty() {
        if row(txn, db, dst).is_some() {
            txn.emit(db, dst, Effect::Del);
        }
    } else {
        txn.emit(
            db,
            dst,
            Effect::Replace {
                value: Value::ZSet(items),
                keep_ttl: false,
            },
        );
    }
    Reply::Int(n)
}

fn owned<'z>(it: impl Iterator<Item = &'z (Score, Bytes)>) -> Vec<(Bytes, f64)> {
    it.map(|(s, m)| (m.clone(), s.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::scan::d2string;
    use crate::engine::{Engine, EngineConfig};
    use crate::id::VersionVector;
    use crate::reply::Reply;
    use crate::storage::memory::MemoryStorage;
    use bytes::Bytes;

    fn engine(site: u16) -> Engine {
        Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(site)).expect("open")
    }

    fn run(e: &mut Engine, cmd: &str) -> Reply {
        let args: Vec<Bytes> = cmd
            .split_whitespace()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        e.execute(0, &args, 1_000)
    }

    fn err(s: &str) -> Reply {
        Reply::Error(s.to_string())
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// A flat reply as text: bulks as is, doubles with `%.17g`, ints, nil.
    fn text(r: Reply) -> String {
        fn one(r: &Reply) -> String {
            match r {
                Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                Reply::Double(d) => crate::redis::num::format_double(*d),
                Reply::Int(i) => i.to_string(),
                Reply::Nil => "nil".into(),
                Reply::Error(e) => e.clone(),
                Reply::Array(items) => {
                    format!("[{}]", items.iter().map(one).collect::<Vec<_>>().join(" "))
                }
                other => format!("{other:?}"),
            }
        }
        match &r {
            Reply::Array(items) => items.iter().map(one).collect::<Vec<_>>().join(" "),
            Reply::Pairs(pairs) => pairs
                .iter()
                .map(|(a, b)| format!("{} {}", one(a), one(b)))
                .collect::<Vec<_>>()
                .join(" "),
            other => one(other),
        }
    }

    fn sync(from: &mut Engine, to: &mut Engine) {
        let ops = from
            .ops_since(&VersionVector::new(), usize::MAX)
            .expect("backlog");
        to.apply_remote(ops);
    }

    /// The sorted-set index against a naive model (a sorted list), on sets
    /// on both sides of the listpack size: ranks, ranges by rank, score and
    /// lex (with LIMIT, both directions), counts, and removal by rank.
    mod ranks_against_a_model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        fn sorted(model: &BTreeMap<String, i64>) -> Vec<String> {
            let mut v: Vec<(i64, String)> = model.iter().map(|(m, s)| (*s, m.clone())).collect();
            v.sort();
            v.into_iter().map(|p| p.1).collect()
        }

        fn members(r: Reply) -> Vec<String> {
            match r {
                Reply::Array(items) => items
                    .into_iter()
                    .map(|i| match i {
                        Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                        other => format!("{other:?}"),
                    })
                    .collect(),
                other => vec![format!("{other:?}")],
            }
        }

        fn window(v: &[String], start: i64, end: i64) -> Vec<String> {
            let n = v.len() as i64;
            let s = if start < 0 { (start + n).max(0) } else { start };
            let e = if end < 0 { end + n } else { end.min(n - 1) };
            if s > e || s >= n {
                return Vec::new();
            }
            v[s as usize..=e as usize].to_vec()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            #[test]
            fn ranks_and_ranges(
                n in 0usize..300,
                scores in proptest::collection::vec(-5i64..5, 300),
                removes in proptest::collection::vec(0usize..300, 0..40),
                a in -320i64..320, b in -320i64..320,
                lo in -6i64..6, hi in -6i64..6,
                offset in -1i64..20, count in -1i64..20,
                probe in 0usize..300,
            ) {
                let mut e = engine(1);
                let mut model: BTreeMap<String, i64> = BTreeMap::new();
                let mut lex: Vec<String> = Vec::new();
                for (i, &score) in scores.iter().enumerate().take(n) {
                    let m = format!("m{i:03}");
                    run(&mut e, &format!("ZADD z {score} {m}"));
                    run(&mut e, &format!("ZADD l 0 {m}"));
                    model.insert(m.clone(), score);
                    lex.push(m);
                }
                for &r in &removes {
                    let m = format!("m{r:03}");
                    run(&mut e, &format!("ZREM z {m}"));
                    run(&mut e, &format!("ZREM l {m}"));
                    model.remove(&m);
                    lex.retain(|x| *x != m);
                }
                let want = sorted(&model);
                let m = format!("m{probe:03}");
                let rank = want.iter().position(|x| *x == m);
                let rev_rank = rank.map(|r| want.len() - 1 - r);
                let as_reply = |r: Option<usize>| r.map_or(Reply::Nil, |r| Reply::Int(r as i64));
                prop_assert_eq!(run(&mut e, &format!("ZRANK z {m}")), as_reply(rank));
                prop_assert_eq!(run(&mut e, &format!("ZREVRANK z {m}")), as_reply(rev_rank));
                prop_assert_eq!(members(run(&mut e, &format!("ZRANGE z {a} {b}"))), window(&want, a, b));
                let rev: Vec<String> = want.iter().rev().cloned().collect();
                prop_assert_eq!(members(run(&mut e, &format!("ZREVRANGE z {a} {b}"))), window(&rev, a, b));
                // Scores: [lo, hi] and (lo, hi), with LIMIT.
                let limit = |v: Vec<String>| -> Vec<String> {
                    if offset < 0 || (offset > 0 && offset as usize >= want.len()) {
                        return Vec::new();
                    }
                    let it = v.into_iter().skip(offset as usize);
                    if count < 0 { it.collect() } else { it.take(count as usize).collect() }
                };
                let in_closed: Vec<String> = want.iter().filter(|x| (lo..=hi).contains(&model[*x])).cloned().collect();
                let in_open: Vec<String> = want.iter().filter(|x| model[*x] > lo && model[*x] < hi).cloned().collect();
                prop_assert_eq!(run(&mut e, &format!("ZCOUNT z {lo} {hi}")), Reply::Int(in_closed.len() as i64));
                prop_assert_eq!(run(&mut e, &format!("ZCOUNT z ({lo} ({hi}")), Reply::Int(in_open.len() as i64));
                prop_assert_eq!(
                    members(run(&mut e, &format!("ZRANGEBYSCORE z {lo} {hi} LIMIT {offset} {count}"))),
                    limit(in_closed.clone())
                );
                prop_assert_eq!(
                    members(run(&mut e, &format!("ZREVRANGEBYSCORE z ({hi} ({lo} LIMIT {offset} {count}"))),
                    limit(in_open.iter().rev().cloned().collect())
                );
                // Lex, on the set whose scores are all equal.
                let (x, y) = (format!("m{:03}", a.unsigned_abs() % 300), format!("m{:03}", b.unsigned_abs() % 300));
                let in_lex: Vec<String> = lex.iter().filter(|m| **m >= x && **m < y).cloned().collect();
                prop_assert_eq!(run(&mut e, &format!("ZLEXCOUNT l [{x} ({y}")), Reply::Int(in_lex.len() as i64));
                prop_assert_eq!(
                    members(run(&mut e, &format!("ZRANGEBYLEX l [{x} ({y}"))),
                    in_lex.clone()
                );
                prop_assert_eq!(
                    members(run(&mut e, &format!("ZREVRANGEBYLEX l ({y} [{x}"))),
                    in_lex.iter().rev().cloned().collect::<Vec<_>>()
                );
                // Removal by rank, then the whole set.
                let gone = window(&want, a, b);
                prop_assert_eq!(run(&mut e, &format!("ZREMRANGEBYRANK z {a} {b}")), Reply::Int(gone.len() as i64));
                let left: Vec<String> = want.iter().filter(|x| !gone.contains(x)).cloned().collect();
                prop_assert_eq!(members(run(&mut e, "ZRANGE z 0 -1")), left);
            }
        }
    }

    #[test]
    fn zadd_options_like_redis() {
        let mut e = engine(1);
        assert_eq!(run(&mut e, "ZADD z 1 a 2 b 3 c"), Reply::Int(3));
        assert_eq!(run(&mut e, "ZADD z nx 1"), err("ERR syntax error"));
        assert_eq!(run(&mut e, "ZADD z 1 a 2"), err("ERR syntax error"));
        assert_eq!(
            run(&mut e, "ZADD z nx xx 1 a"),
            err("ERR XX and NX options at the same time are not compatible")
        );
        assert_eq!(
            run(&mut e, "ZADD z nx xx abc a"),
            err("ERR XX and NX options at the same time are not compatible")
        );
        let gtlt = err("ERR GT, LT, and/or NX options at the same time are not compatible");
        assert_eq!(run(&mut e, "ZADD z gt lt 1 a"), gtlt);
        assert_eq!(run(&mut e, "ZADD z nx gt 1 a"), gtlt);
        assert_eq!(
            run(&mut e, "ZADD z incr 1 a 2 b"),
            err("ERR INCR option supports a single increment-element pair")
        );
        assert_eq!(
            run(&mut e, "ZADD z abc a"),
            err("ERR value is not a valid float")
        );
        for bad in ["1e400", "1e-400", "nan", "1x", "--1"] {
            assert_eq!(
                run(&mut e, &format!("ZADD z {bad} a")),
                err("ERR value is not a valid float"),
                "{bad}"
            );
        }
        assert_eq!(run(&mut e, "ZADD z xx gt 1 a"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZADD z xx incr 1 nokey"), Reply::Nil);
        assert_eq!(run(&mut e, "ZADD nokey xx incr 1 a"), Reply::Nil);
        assert_eq!(run(&mut e, "ZADD nokey xx 1 a"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZADD z gt incr -1 a"), Reply::Nil);
        assert_eq!(run(&mut e, "ZADD z gt ch 5 a 0 b 4 d"), Reply::Int(2));
        assert_eq!(
            text(run(&mut e, "ZRANGE z 0 -1 WITHSCORES")),
            "b 2 c 3 d 4 a 5"
        );
        assert_eq!(run(&mut e, "ZADD z lt ch 1 a 9 b"), Reply::Int(1));
        assert_eq!(run(&mut e, "ZADD z nx 7 a 7 e"), Reply::Int(1));
        assert_eq!(run(&mut e, "ZADD z 0x10 hex"), Reply::Int(1));
        assert_eq!(run(&mut e, "ZSCORE z hex"), Reply::Double(16.0));
        assert_eq!(run(&mut e, "ZADD z -0 negz"), Reply::Int(1));
        assert_eq!(text(run(&mut e, "ZSCORE z negz")), "0");
        // A member named twice: the second sees the first.
        assert_eq!(run(&mut e, "ZADD y 1 m 2 m"), Reply::Int(1));
        assert_eq!(run(&mut e, "ZADD y ch 3 n 4 n 4 m"), Reply::Int(3));
        assert_eq!(run(&mut e, "ZADD y nx 5 p 6 p"), Reply::Int(1));
        assert_eq!(text(run(&mut e, "ZRANGE y 0 -1 WITHSCORES")), "m 4 n 4 p 5");
        assert_eq!(run(&mut e, "ZADD z inf i"), Reply::Int(1));
        assert_eq!(
            run(&mut e, "ZADD z incr -inf i"),
            err("ERR resulting score is not a number (NaN)")
        );
        assert_eq!(
            run(&mut e, "ZINCRBY z -inf i"),
            err("ERR resulting score is not a number (NaN)")
        );
        run(&mut e, "SET str x");
        let wt = err("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(run(&mut e, "ZADD str 1 a"), wt);
        assert_eq!(
            run(&mut e, "ZADD str abc a"),
            err("ERR value is not a valid float")
        );
    }

    #[test]
    fn zincrby_and_incr() {
        let mut e = engine(1);
        assert_eq!(run(&mut e, "ZINCRBY z 1.5 a"), Reply::Double(1.5));
        assert_eq!(run(&mut e, "ZINCRBY z 1.5 a"), Reply::Double(3.0));
        assert_eq!(run(&mut e, "ZADD z incr 2 a"), Reply::Double(5.0));
        assert_eq!(run(&mut e, "ZADD z 0.1 w"), Reply::Int(1));
        assert_eq!(text(run(&mut e, "ZINCRBY z 0.2 w")), "0.30000000000000004");
        assert_eq!(run(&mut e, "ZADD z nx incr 1 a"), Reply::Nil);
        assert_eq!(run(&mut e, "ZINCRBY z nx a"), err("ERR syntax error"));
        assert_eq!(run(&mut e, "ZINCRBY z ch 5"), err("ERR syntax error"));
        assert_eq!(
            run(&mut e, "ZINCRBY z abc a"),
            err("ERR value is not a valid float")
        );
        assert_eq!(run(&mut e, "ZINCRBY z inf a"), Reply::Double(f64::INFINITY));
        // ZADD after increments resets the counter.
        assert_eq!(run(&mut e, "ZADD z 1 a"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZSCORE z a"), Reply::Double(1.0));
    }

    #[test]
    fn point_reads() {
        let mut e = engine(1);
        run(&mut e, "ZADD z 1 a 2 b 3 c");
        assert_eq!(run(&mut e, "ZSCORE z b"), Reply::Double(2.0));
        assert_eq!(run(&mut e, "ZSCORE z x"), Reply::Nil);
        assert_eq!(run(&mut e, "ZSCORE nokey x"), Reply::Nil);
        assert_eq!(
            run(&mut e, "ZMSCORE z a x c"),
            Reply::Array(vec![Reply::Double(1.0), Reply::Nil, Reply::Double(3.0)])
        );
        assert_eq!(
            run(&mut e, "ZMSCORE nokey a b"),
            Reply::Array(vec![Reply::Nil, Reply::Nil])
        );
        assert_eq!(run(&mut e, "ZCARD z"), Reply::Int(3));
        assert_eq!(run(&mut e, "ZCARD nokey"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZRANK z a"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZRANK z c"), Reply::Int(2));
        assert_eq!(run(&mut e, "ZREVRANK z c"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZRANK z x"), Reply::Nil);
        assert_eq!(run(&mut e, "ZRANK nokey x"), Reply::Nil);
        assert_eq!(run(&mut e, "ZREM z a a x"), Reply::Int(1));
        assert_eq!(run(&mut e, "ZREM z x"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZREM nokey x"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZREM z b c"), Reply::Int(2));
        assert_eq!(e.dbsize(0), 0);
        run(&mut e, "SET str x");
        let wt = err("WRONGTYPE Operation against a key holding the wrong kind of value");
        for cmd in [
            "ZSCORE str a",
            "ZMSCORE str a",
            "ZCARD str",
            "ZRANK str a",
            "ZREM str a",
            "ZINCRBY str 1 a",
        ] {
            assert_eq!(run(&mut e, cmd), wt, "{cmd}");
        }
    }

    #[test]
    fn ranges_like_redis() {
        let mut e = engine(1);
        run(&mut e, "ZADD z 1 a 2 b 3 c 4 d 5 e");
        assert_eq!(text(run(&mut e, "ZRANGE z 0 -1")), "a b c d e");
        assert_eq!(text(run(&mut e, "ZRANGE z 1 2 WITHSCORES")), "b 2 c 3");
        assert_eq!(text(run(&mut e, "ZRANGE z -2 100")), "d e");
        assert_eq!(text(run(&mut e, "ZRANGE z 3 1")), "");
        assert_eq!(text(run(&mut e, "ZRANGE z 0 -1 REV")), "e d c b a");
        assert_eq!(text(run(&mut e, "ZREVRANGE z 0 1 WITHSCORES")), "e 5 d 4");
        assert_eq!(text(run(&mut e, "ZRANGE z (1 4 BYSCORE")), "b c d");
        assert_eq!(
            text(run(&mut e, "ZRANGE z 4 (1 BYSCORE REV WITHSCORES")),
            "d 4 c 3 b 2"
        );
        assert_eq!(
            text(run(&mut e, "ZRANGE z -inf +inf BYSCORE LIMIT 1 2")),
            "b c"
        );
        assert_eq!(text(run(&mut e, "ZRANGEBYSCORE z 0 10 LIMIT -1 2")), "");
        assert_eq!(
            text(run(&mut e, "ZRANGEBYSCORE z 0 10 LIMIT 1 -5 WITHSCORES")),
            "b 2 c 3 d 4 e 5"
        );
        assert_eq!(text(run(&mut e, "ZRANGEBYSCORE z 0 10 LIMIT 5 1")), "");
        assert_eq!(text(run(&mut e, "ZRANGEBYSCORE z (2 (4")), "c");
        assert_eq!(text(run(&mut e, "ZRANGEBYSCORE z 3 3")), "c");
        assert_eq!(text(run(&mut e, "ZRANGEBYSCORE z (3 3")), "");
        assert_eq!(text(run(&mut e, "ZREVRANGEBYSCORE z +inf 4")), "e d");
        assert_eq!(
            text(run(&mut e, "ZREVRANGEBYSCORE z 4.5 -inf LIMIT 1 2")),
            "c b"
        );
        assert_eq!(run(&mut e, "ZCOUNT z (1 3"), Reply::Int(2));
        assert_eq!(run(&mut e, "ZCOUNT z -inf +inf"), Reply::Int(5));
        assert_eq!(run(&mut e, "ZCOUNT nokey 0 1"), Reply::Int(0));
        // zslParseRange takes what strtod takes.
        let args: Vec<Bytes> = vec!["ZCOUNT".into(), "z".into(), " 1".into(), "".into()];
        assert_eq!(e.execute(0, &args, 1_000), Reply::Int(0));
        let args: Vec<Bytes> = vec!["ZCOUNT".into(), "z".into(), "(".into(), "1e400".into()];
        assert_eq!(e.execute(0, &args, 1_000), Reply::Int(5));
        assert_eq!(
            run(&mut e, "ZCOUNT z abc 1"),
            err("ERR min or max is not a float")
        );
        assert_eq!(
            run(&mut e, "ZCOUNT nokey abc 1"),
            err("ERR min or max is not a float")
        );
        assert_eq!(
            run(&mut e, "ZCOUNT z nan 1"),
            err("ERR min or max is not a float")
        );
        let limit_err = err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
        assert_eq!(run(&mut e, "ZRANGE z 0 -1 LIMIT 0 1"), limit_err);
        assert_eq!(run(&mut e, "ZREVRANGE z 0 -1 LIMIT 0 1"), limit_err);
        assert_eq!(text(run(&mut e, "ZRANGE z 0 -1 LIMIT 0 -1")), "a b c d e");
        assert_eq!(
            run(&mut e, "ZRANGE z 0 -1 REV REV"),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut e, "ZRANGE z (1 5 BYSCORE BYLEX"),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut e, "ZRANGEBYSCORE z 0 10 REV"),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut e, "ZRANGEBYSCORE z 0 10 BYSCORE"),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut e, "ZRANGE z 0 10 BYSCORE LIMIT 1"),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut e, "ZRANGE z 0 10 BYSCORE LIMIT a b"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            run(&mut e, "ZRANGE z a b"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            run(&mut e, "ZRANGE nokey a b"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(run(&mut e, "ZRANGE nokey 0 -1"), Reply::Array(vec![]));
        run(&mut e, "SET str x");
        let wt = err("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(run(&mut e, "ZRANGE str 0 1"), wt);
        assert_eq!(run(&mut e, "ZCOUNT str 0 1"), wt);
        assert_eq!(
            run(&mut e, "ZRANGE str a b"),
            err("ERR value is not an integer or out of range")
        );
    }

    #[test]
    fn lex_ranges_like_redis() {
        let mut e = engine(1);
        run(&mut e, "ZADD z 0 a 0 b 0 c 0 d 0 e");
        assert_eq!(text(run(&mut e, "ZRANGEBYLEX z - +")), "a b c d e");
        assert_eq!(text(run(&mut e, "ZRANGEBYLEX z [b (d")), "b c");
        assert_eq!(text(run(&mut e, "ZRANGEBYLEX z (a [c LIMIT 1 1")), "c");
        assert_eq!(text(run(&mut e, "ZREVRANGEBYLEX z + [c")), "e d c");
        assert_eq!(
            text(run(&mut e, "ZRANGE z [d - BYLEX REV LIMIT 0 2")),
            "d c"
        );
        assert_eq!(text(run(&mut e, "ZRANGEBYLEX z + -")), "");
        assert_eq!(text(run(&mut e, "ZRANGEBYLEX z (c (c")), "");
        assert_eq!(run(&mut e, "ZLEXCOUNT z [b [d"), Reply::Int(3));
        assert_eq!(run(&mut e, "ZLEXCOUNT z - +"), Reply::Int(5));
        assert_eq!(run(&mut e, "ZLEXCOUNT nokey - +"), Reply::Int(0));
        let bad = err("ERR min or max not valid string range item");
        assert_eq!(run(&mut e, "ZRANGEBYLEX z a +"), bad);
        assert_eq!(run(&mut e, "ZRANGEBYLEX z [a +x"), bad);
        assert_eq!(run(&mut e, "ZLEXCOUNT z a b"), bad);
        assert_eq!(run(&mut e, "ZLEXCOUNT nokey a b"), bad);
        assert_eq!(
            run(&mut e, "ZRANGEBYLEX z - + WITHSCORES"),
            err("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
        );
        // Mixed scores: walked in score order, as Redis's listpack does.
        run(&mut e, "ZADD m 3 a 1 b 2 c");
        assert_eq!(text(run(&mut e, "ZRANGEBYLEX m - +")), "b c a");
        // Redis first checks the last element against min and the first
        // against max (zzlIsInLexRange), so "[b +" finds nothing here.
        assert_eq!(text(run(&mut e, "ZRANGEBYLEX m [b +")), "");
        assert_eq!(text(run(&mut e, "ZRANGEBYLEX m - [b")), "b");
        assert_eq!(run(&mut e, "ZLEXCOUNT m [b +"), Reply::Int(0));
    }

    #[test]
    fn remrange_and_pops() {
        let mut e = engine(1);
        run(&mut e, "ZADD z 1 a 2 b 3 c 4 d 5 e 6 f");
        assert_eq!(run(&mut e, "ZREMRANGEBYRANK z 0 0"), Reply::Int(1));
        assert_eq!(run(&mut e, "ZREMRANGEBYRANK z -1 -1"), Reply::Int(1));
        assert_eq!(run(&mut e, "ZREMRANGEBYRANK z 5 10"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZREMRANGEBYSCORE z (2 3"), Reply::Int(1));
        assert_eq!(text(run(&mut e, "ZRANGE z 0 -1")), "b d e");
        assert_eq!(
            run(&mut e, "ZREMRANGEBYRANK z a 1"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            run(&mut e, "ZREMRANGEBYSCORE z a 1"),
            err("ERR min or max is not a float")
        );
        assert_eq!(
            run(&mut e, "ZREMRANGEBYLEX z a 1"),
            err("ERR min or max not valid string range item")
        );
        assert_eq!(run(&mut e, "ZREMRANGEBYLEX nokey - +"), Reply::Int(0));
        assert_eq!(
            run(&mut e, "ZPOPMIN z"),
            Reply::Array(vec![bulk("b"), Reply::Double(2.0)])
        );
        assert_eq!(
            run(&mut e, "ZPOPMAX z 5"),
            Reply::Pairs(vec![
                (bulk("e"), Reply::Double(5.0)),
                (bulk("d"), Reply::Double(4.0))
            ])
        );
        assert_eq!(e.dbsize(0), 0);
        assert_eq!(run(&mut e, "ZPOPMIN z"), Reply::Array(vec![]));
        assert_eq!(
            run(&mut e, "ZPOPMIN z -1"),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(
            run(&mut e, "ZPOPMIN nokey abc"),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(run(&mut e, "ZPOPMIN z 1 2"), err("ERR syntax error"));
        run(&mut e, "ZADD z 0 a 0 b 0 c");
        assert_eq!(run(&mut e, "ZPOPMIN z 0"), Reply::Pairs(vec![]));
        assert_eq!(run(&mut e, "ZREMRANGEBYLEX z (a +"), Reply::Int(2));
        run(&mut e, "SET str x");
        let wt = err("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(run(&mut e, "ZPOPMIN str"), wt);
        assert_eq!(run(&mut e, "ZREMRANGEBYLEX str - +"), wt);
    }

    #[test]
    fn zrandmember_and_zscan() {
        let mut e = engine(1);
        assert_eq!(run(&mut e, "ZRANDMEMBER nokey"), Reply::Nil);
        assert_eq!(run(&mut e, "ZRANDMEMBER nokey 2"), Reply::Array(vec![]));
        run(&mut e, "ZADD z 1 a 2 b 3 c");
        assert!(matches!(run(&mut e, "ZRANDMEMBER z"), Reply::Bulk(_)));
        let Reply::Pairs(all) = run(&mut e, "ZRANDMEMBER z 5 WITHSCORES") else {
            panic!()
        };
        assert_eq!(all.len(), 3);
        let Reply::Array(rep) = run(&mut e, "ZRANDMEMBER z -5") else {
            panic!()
        };
        assert_eq!(rep.len(), 5);
        assert_eq!(
            run(&mut e, "ZRANDMEMBER z 2 WITHSCORES x"),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut e, "ZRANDMEMBER z -9223372036854775807 WITHSCORES"),
            err("ERR value is out of range")
        );
        run(&mut e, "ZADD s 1.5 x 1e17 y 0.1 w");
        let Reply::Array(r) = run(&mut e, "ZSCAN s 0") else {
            panic!()
        };
        assert_eq!(r[0], bulk("0"));
        let mut pairs: Vec<String> = text(r[1].clone())
            .trim_matches(['[', ']'])
            .split(' ')
            .map(String::from)
            .collect::<Vec<_>>()
            .chunks(2)
            .map(|c| c.join("="))
            .collect();
        pairs.sort();
        assert_eq!(
            pairs,
            ["w=0.10000000000000001", "x=1.5", "y=100000000000000000"]
        );
        assert_eq!(text(run(&mut e, "ZRANGE s 2 2 WITHSCORES")), "y 1e+17");
        let Reply::Array(r) = run(&mut e, "ZSCAN s 0 MATCH x") else {
            panic!()
        };
        assert_eq!(r[1], Reply::Array(vec![bulk("x"), bulk("1.5")]));
        assert_eq!(run(&mut e, "ZSCAN s 0 TYPE zset"), err("ERR syntax error"));
        assert_eq!(d2string(-3.0), "-3");
        assert_eq!(d2string(f64::INFINITY), "inf");
        assert_eq!(d2string(1e19), "1e+19");
    }

    #[test]
    fn set_operations() {
        let mut e = engine(1);
        run(&mut e, "ZADD z 1 a 2 b 3 c");
        run(&mut e, "ZADD zz 1 a");
        run(&mut e, "ZINCRBY zz inf a");
        run(&mut e, "ZADD zz incr 1 new");
        assert_eq!(
            text(run(&mut e, "ZUNION 2 z zz WITHSCORES")),
            "new 1 b 2 c 3 a inf"
        );
        assert_eq!(
            text(run(
                &mut e,
                "ZUNION 2 z zz WEIGHTS 2 0 AGGREGATE MAX WITHSCORES"
            )),
            "new 0 a 2 b 4 c 6"
        );
        assert_eq!(text(run(&mut e, "ZINTER 2 z zz WITHSCORES")), "a inf");
        assert_eq!(
            text(run(&mut e, "ZINTER 2 z zz AGGREGATE MIN WITHSCORES")),
            "a 1"
        );
        assert_eq!(text(run(&mut e, "ZDIFF 2 z zz WITHSCORES")), "b 2 c 3");
        assert_eq!(text(run(&mut e, "ZDIFF 2 z zz")), "b c");
        run(&mut e, "SADD sx a b");
        assert_eq!(text(run(&mut e, "ZUNION 2 z sx WITHSCORES")), "a 2 b 3 c 3");
        assert_eq!(run(&mut e, "ZINTERCARD 2 z sx LIMIT 0"), Reply::Int(2));
        assert_eq!(run(&mut e, "ZINTERCARD 2 z sx LIMIT 1"), Reply::Int(1));
        assert_eq!(run(&mut e, "ZINTERCARD 2 z nokey"), Reply::Int(0));
        assert_eq!(
            run(&mut e, "ZUNIONSTORE d 2 z sx WEIGHTS 1 10"),
            Reply::Int(3)
        );
        assert_eq!(
            text(run(&mut e, "ZRANGE d 0 -1 WITHSCORES")),
            "c 3 a 11 b 12"
        );
        assert_eq!(run(&mut e, "ZINTERSTORE d 2 z nokey"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZCARD d"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZDIFFSTORE d 1 z"), Reply::Int(3));
        assert_eq!(run(&mut e, "ZRANGESTORE d2 z 1 -1"), Reply::Int(2));
        assert_eq!(text(run(&mut e, "ZRANGE d2 0 -1 WITHSCORES")), "b 2 c 3");
        assert_eq!(run(&mut e, "ZRANGESTORE d2 nokey 0 -1"), Reply::Int(0));
        assert_eq!(run(&mut e, "ZCARD d2"), Reply::Int(0));
        assert_eq!(
            run(&mut e, "ZRANGESTORE d2 z 0 -1 WITHSCORES"),
            err("ERR syntax error")
        );
        // Errors, in Redis's order.
        run(&mut e, "SET str x");
        assert_eq!(
            run(&mut e, "ZUNIONSTORE d 0 z"),
            err("ERR at least 1 input key is needed for 'zunionstore' command")
        );
        assert_eq!(
            run(&mut e, "ZINTER 0 z"),
            err("ERR at least 1 input key is needed for 'zinter' command")
        );
        assert_eq!(
            run(&mut e, "ZINTERCARD 0 z"),
            err("ERR at least 1 input key is needed for 'zintercard' command")
        );
        assert_eq!(
            run(&mut e, "ZUNIONSTORE d abc z"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(run(&mut e, "ZUNIONSTORE d 3 z"), err("ERR syntax error"));
        assert_eq!(
            run(&mut e, "ZUNIONSTORE d 1 str WEIGHTS x"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(
            run(&mut e, "ZINTERCARD 1 str foo"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(
            run(&mut e, "ZUNIONSTORE d 1 z WEIGHTS x"),
            err("ERR weight value is not a float")
        );
        for bad in [
            "ZUNIONSTORE d 1 z WEIGHTS 1 2",
            "ZUNIONSTORE d 1 z AGGREGATE foo",
            "ZUNIONSTORE d 1 z WITHSCORES",
            "ZUNION 1 z WITHSCORES LIMIT 1",
            "ZINTERCARD 1 z WEIGHTS 1",
            "ZDIFF 1 z WEIGHTS 1",
            "ZDIFF 1 z AGGREGATE SUM",
            "ZINTERSTORE d 1 z WEIGHTS 1 AGGREGATE",
        ] {
            assert_eq!(run(&mut e, bad), err("ERR syntax error"), "{bad}");
        }
        assert_eq!(
            run(&mut e, "ZINTERCARD 1 z LIMIT -1"),
            err("ERR LIMIT can't be negative")
        );
    }

    #[test]
    fn zrem_concurrent_with_zincrby_keeps_the_increment() {
        let (mut a, mut b) = (engine(1), engine(2));
        run(&mut a, "ZADD z 10 m 1 other");
        sync(&mut a, &mut b);
        assert_eq!(run(&mut a, "ZREM z m"), Reply::Int(1));
        assert_eq!(run(&mut b, "ZINCRBY z 5 m"), Reply::Double(15.0));
        sync(&mut a, &mut b);
        sync(&mut b, &mut a);
        for e in [&mut a, &mut b] {
            assert_eq!(run(e, "ZSCORE z m"), Reply::Double(5.0));
            assert_eq!(text(run(e, "ZRANGE z 0 -1")), "other m");
        }
        assert_eq!(a.digest_hex(), b.digest_hex());
        // Concurrent ZINCRBYs add up; ZADD re-adds over a concurrent ZREM.
        run(&mut a, "ZINCRBY z 1 m");
        run(&mut b, "ZINCRBY z 2 m");
        run(&mut a, "ZREM z other");
        run(&mut b, "ZADD z 1 other");
        sync(&mut a, &mut b);
        sync(&mut b, &mut a);
        for e in [&mut a, &mut b] {
            assert_eq!(run(e, "ZSCORE z m"), Reply::Double(8.0));
            assert_eq!(run(e, "ZSCORE z other"), Reply::Double(1.0));
        }
        assert_eq!(a.digest_hex(), b.digest_hex());
    }

    #[test]
    fn double_args_parse_like_strtod() {
        use super::super::double_arg;
        let ok = [
            ("0x1P3", 8.0),
            ("0x.8", 0.5),
            (".5", 0.5),
            ("5.", 5.0),
            ("+.5e1", 5.0),
            ("-Infinity", f64::NEG_INFINITY),
            ("inf", f64::INFINITY),
            ("4.9e-324", 4.9e-324),
        ];
        for (s, v) in ok {
            assert_eq!(double_arg(s.as_bytes()), Some(v), "{s}");
        }
        for s in [
            "",
            " 1",
            "1 ",
            "0x",
            "1e+",
            "1e99999999999999999999",
            "1e-400",
            "nan",
            "1\x001",
        ] {
            assert_eq!(double_arg(s.as_bytes()), None, "{s:?}");
        }
    }

    #[test]
    fn writes_emit_exactly_their_effects() {
        use crate::op::{Effect, Value};
        let mut e = engine(1);
        run(&mut e, "ZADD z nx 1 a 2 b");
        run(&mut e, "ZADD z nx 5 a 3 c");
        run(&mut e, "ZADD z gt 0 a 4 b");
        run(&mut e, "ZINCRBY z 2.5 a");
        run(&mut e, "ZREM z a nope");
        run(&mut e, "ZPOPMAX z");
        run(&mut e, "ZUNIONSTORE d 1 z");
        run(&mut e, "ZINTERSTORE d 2 z nokey");
        run(&mut e, "ZINTERSTORE d 2 z nokey");
        let f = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let ops = e
            .ops_since(&VersionVector::new(), usize::MAX)
            .expect("backlog");
        let effects: Vec<Effect> = ops
            .into_iter()
            .flat_map(|op| op.effects.into_iter().map(|k| k.effect))
            .collect();
        assert_eq!(
            effects,
            vec![
                Effect::ZAdd(vec![(f("a"), 1.0), (f("b"), 2.0)]),
                Effect::ZAdd(vec![(f("c"), 3.0)]),
                Effect::ZAdd(vec![(f("b"), 4.0)]),
                Effect::ZIncr(f("a"), 2.5),
                Effect::ZRem(vec![f("a")]),
                Effect::ZRem(vec![f("b")]),
                Effect::Replace {
                    value: Value::ZSet(vec![(f("c"), 3.0)]),
                    keep_ttl: false
                },
                Effect::Del,
            ]
        );
    }
}
