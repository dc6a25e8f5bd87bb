//! Hash commands (Redis 7.0): HSET … HSCAN on the CRDT hash slot.
//!
//! A field is an observed-remove cell (register + counter): HSET/HSETNX/HMSET
//! write the register, HINCRBY/HINCRBYFLOAT add to the counter, so concurrent
//! increments at two sites add up and an HSET beats a concurrent HDEL that had
//! not seen it. HSET of a field to its current value still emits: it is a write,
//! and its new dot is what lets it survive a concurrent HDEL. HRANDFIELD's
//! "random" picks are deterministic ([`super::Dice`]) and O(1) each; HSCAN
//! returns a small hash whole with cursor 0 and walks a big one COUNT fields
//! per call ([`super::scan_window`]).

use super::{
    expire_if_needed, int_arg, is, rand_count_arg, random_positions, scan_cursor_arg, scan_reply,
    scan_window, typed, DataCommand, Dice, ScanOptions, LISTPACK_ENTRIES, LISTPACK_VALUE_MAX,
};
use crate::engine::Txn;
use crate::keyspace::value::{HashSlot, Kind};
use crate::ld::{self, Exact, Ld};
use crate::op::Effect;
use crate::redis::num;
use crate::reply::{errors, Reply};
use bytes::Bytes;
use std::collections::HashMap;

pub static COMMANDS: &[DataCommand] = &[
    DataCommand {
        name: "HSET",
        write: true,
        handler: hset,
    },
    DataCommand {
        name: "HSETNX",
        write: true,
        handler: hsetnx,
    },
    DataCommand {
        name: "HMSET",
        write: true,
        handler: hmset,
    },
    DataCommand {
        name: "HGET",
        write: false,
        handler: hget,
    },
    DataCommand {
        name: "HMGET",
        write: false,
        handler: hmget,
    },
    DataCommand {
        name: "HDEL",
        write: true,
        handler: hdel,
    },
    DataCommand {
        name: "HEXISTS",
        write: false,
        handler: hexists,
    },
    DataCommand {
        name: "HLEN",
        write: false,
        handler: hlen,
    },
    DataCommand {
        name: "HSTRLEN",
        write: false,
        handler: hstrlen,
    },
    DataCommand {
        name: "HKEYS",
        write: false,
        handler: hkeys,
    },
    DataCommand {
        name: "HVALS",
        write: false,
        handler: hvals,
    },
    DataCommand {
        name: "HGETALL",
        write: false,
        handler: hgetall,
    },
    DataCommand {
        name: "HINCRBY",
        write: true,
        handler: hincrby,
    },
    DataCommand {
        name: "HINCRBYFLOAT",
        write: true,
        handler: hincrbyfloat,
    },
    DataCommand {
        name: "HRANDFIELD",
        write: false,
        handler: hrandfield,
    },
    DataCommand {
        name: "HSCAN",
        write: false,
        handler: hscan,
    },
];

/// The visible hash at `key` (`None`: no such key), or WRONGTYPE.
fn hash_of<'t>(txn: &'t Txn<'_>, db: u8, key: &[u8]) -> Result<Option<&'t HashSlot>, Reply> {
    Ok(typed(txn, db, key, Kind::Hash)?.and_then(|r| r.hash.as_deref()))
}

fn field(h: Option<&HashSlot>, f: &[u8]) -> Option<Bytes> {
    h?.fields.get(f)?.value()
}

/// Every field with its visible value, in hash order.
fn entries(h: &HashSlot) -> impl Iterator<Item = (&Bytes, Bytes)> {
    h.fields
        .iter()
        .filter_map(|(f, c)| c.value().map(|v| (f, v)))
}

fn hset(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    hset_generic(txn, db, args, false)
}

fn hmset(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    hset_generic(txn, db, args, true)
}

fn hset_generic(txn: &mut Txn<'_>, db: u8, args: &[Bytes], hmset: bool) -> Reply {
    if args.len() % 2 == 1 {
        return Reply::err(errors::wrong_args(if hmset { "hmset" } else { "hset" }));
    }
    let key = &args[1];
    // Repeated fields: the last value wins and only the first counts as created.
    let mut pairs: Vec<(Bytes, Bytes)> = Vec::with_capacity(args.len() / 2 - 1);
    let mut at: HashMap<&[u8], usize> = HashMap::new();
    let mut created = 0i64;
    {
        let h = match hash_of(txn, db, key) {
            Ok(h) => h,
            Err(e) => return e,
        };
        for pair in args[2..].chunks_exact(2) {
            let (f, v) = (&pair[0], &pair[1]);
            match at.get(f.as_ref()) {
                Some(&i) => pairs[i].1 = v.clone(),
                None => {
                    if !h.is_some_and(|h| h.fields.contains_key(f.as_ref())) {
                        created += 1;
                    }
                    at.insert(f.as_ref(), pairs.len());
                    pairs.push((f.clone(), v.clone()));
                }
            }
        }
    }
    expire_if_needed(txn, db, key);
    txn.emit(db, key, Effect::HSet(pairs));
    if hmset {
        Reply::Ok
    } else {
        Reply::Int(created)
    }
}

fn hsetnx(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let (key, f, v) = (&args[1], &args[2], &args[3]);
    match hash_of(txn, db, key) {
        Err(e) => return e,
        Ok(h) if h.is_some_and(|h| h.fields.contains_key(f.as_ref())) => return Reply::Int(0),
        Ok(_) => {}
    }
    expire_if_needed(txn, db, key);
    txn.emit(db, key, Effect::HSet(vec![(f.clone(), v.clone())]));
    Reply::Int(1)
}

fn hget(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match hash_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(h) => field(h, &args[2]).map_or(Reply::Nil, Reply::Bulk),
    }
}

fn hmget(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match hash_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(h) => Reply::Array(
            args[2..]
                .iter()
                .map(|f| field(h, f).map_or(Reply::Nil, Reply::Bulk))
                .collect(),
        ),
    }
}

fn hdel(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let mut gone: Vec<Bytes> = Vec::new();
    {
        let h = match hash_of(txn, db, key) {
            Ok(Some(h)) => h,
            Ok(None) => return Reply::Int(0),
            Err(e) => return e,
        };
        for f in &args[2..] {
            if h.fields.contains_key(f.as_ref()) && !gone.contains(f) {
                gone.push(f.clone());
            }
        }
    }
    let n = gone.len() as i64;
    if n > 0 {
        expire_if_needed(txn, db, key);
        txn.emit(db, key, Effect::HDel(gone));
    }
    Reply::Int(n)
}

fn hexists(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match hash_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(h) => Reply::Int(h.is_some_and(|h| h.fields.contains_key(args[2].as_ref())) as i64),
    }
}

fn hlen(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match hash_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(h) => Reply::Int(h.map_or(0, |h| h.fields.len()) as i64),
    }
}

fn hstrlen(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match hash_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(h) => Reply::Int(field(h, &args[2]).map_or(0, |v| v.len()) as i64),
    }
}

fn hkeys(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match hash_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(None) => Reply::Array(Vec::new()),
        Ok(Some(h)) => Reply::Array(h.fields.keys().map(|f| Reply::Bulk(f.clone())).collect()),
    }
}

fn hvals(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match hash_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(None) => Reply::Array(Vec::new()),
        Ok(Some(h)) => Reply::Array(entries(h).map(|(_, v)| Reply::Bulk(v)).collect()),
    }
}

fn hgetall(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match hash_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(None) => Reply::Map(Vec::new()),
        Ok(Some(h)) => Reply::Map(
            entries(h)
                .map(|(f, v)| (Reply::Bulk(f.clone()), Reply::Bulk(v)))
                .collect(),
        ),
    }
}

fn hincrby(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let (key, f) = (&args[1], &args[2]);
    let incr = match int_arg(&args[3]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let current = match hash_of(txn, db, key) {
        Err(e) => return e,
        Ok(h) => field(h, f),
    };
    let old = match current {
        None => 0,
        Some(v) => match num::parse_int(&v) {
            Some(i) => i,
            // Concurrent increments can sum past i64: an integer, but one
            // no further increment may touch.
            None if is_wide_integer(&v) => return Reply::err(errors::OVERFLOW),
            None => return Reply::err(errors::HASH_NOT_INTEGER),
        },
    };
    let Some(new) = old.checked_add(incr) else {
        return Reply::err(errors::OVERFLOW);
    };
    expire_if_needed(txn, db, key);
    txn.emit(db, key, Effect::HIncrInt(f.clone(), incr));
    Reply::Int(new)
}

/// A canonical decimal integer (as the counter prints an i128 sum).
fn is_wide_integer(v: &[u8]) -> bool {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) && digits[0] != b'0'
}

fn hincrbyfloat(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let (key, f) = (&args[1], &args[2]);
    let incr = match ld::parse(&args[3]) {
        None => return Reply::err(errors::NOT_FLOAT),
        Some(Ld::Inf { .. }) => return Reply::err("ERR value is NaN or Infinity"),
        Some(Ld::Finite(v)) => v,
    };
    let current = match hash_of(txn, db, key) {
        Err(e) => return e,
        Ok(h) => field(h, f),
    };
    let old = match current {
        None => Exact::zero(),
        Some(v) => match ld::parse(&v) {
            Some(Ld::Finite(x)) => x,
            Some(Ld::Inf { .. }) => return Reply::err(errors::NAN_OR_INF),
            None => return Reply::err(errors::HASH_NOT_FLOAT),
        },
    };
    // Redis's long double step; Redis rewrites the field in float form even
    // for an increment of 0 ("3.0" becomes "3"), and so does the exact
    // increment entry, whatever its size.
    let Some((new, text)) = ld::incr(&old, &incr) else {
        return Reply::err(errors::NAN_OR_INF);
    };
    expire_if_needed(txn, db, key);
    let held = hash_of(txn, db, key)
        .ok()
        .flatten()
        .and_then(|h| h.fields.get(&f[..]))
        .and_then(|c| c.number_total())
        .unwrap_or(old);
    txn.emit(db, key, Effect::HIncrFloat(f.clone(), new.sub(&held)));
    let shown = hash_of(txn, db, key)
        .ok()
        .flatten()
        .and_then(|h| field(Some(h), f));
    Reply::Bulk(shown.unwrap_or_else(|| Bytes::from(text)))
}

fn hrandfield(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let mut dice = Dice::new(txn.now_ms, key);
    if args.len() == 2 {
        return match hash_of(txn, db, key) {
            Err(e) => e,
            Ok(None) => Reply::Nil,
            Ok(Some(h)) => h
                .fields
                .get_index(dice.below(h.fields.len()))
                .map_or(Reply::Nil, |(f, _)| Reply::Bulk(f.clone())),
        };
    }
    let count = match rand_count_arg(&args[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let withvalues = match args.len() {
        3 => false,
        4 if is(&args[3], "WITHVALUES") => true,
        _ => return Reply::err(errors::SYNTAX),
    };
    if withvalues && !(-i64::MAX / 2..=i64::MAX / 2).contains(&count) {
        return Reply::err("ERR value is out of range");
    }
    let h = match hash_of(txn, db, key) {
        Err(e) => return e,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(h)) => h,
    };
    let picks = match random_positions(&mut dice, h.fields.len(), count) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let picked = picks.into_iter().filter_map(|i| {
        let (f, c) = h.fields.get_index(i)?;
        Some((Reply::Bulk(f.clone()), Reply::Bulk(c.value()?)))
    });
    if withvalues {
        Reply::Pairs(picked.collect())
    } else {
        Reply::Array(picked.map(|(f, _)| f).collect())
    }
}

/// A hash Redis 7.0 keeps as a listpack (and scans whole).
fn is_listpack(h: &HashSlot) -> bool {
    h.fields.len() <= LISTPACK_ENTRIES
        && h.fields.iter().all(|(f, c)| {
            f.len() <= LISTPACK_VALUE_MAX && c.value().map_or(0, |v| v.len()) <= LISTPACK_VALUE_MAX
        })
}

fn hscan(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let cursor = match scan_cursor_arg(&args[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let h = match hash_of(txn, db, &args[1]) {
        Err(e) => return e,
        Ok(None) => return scan_reply(0, Vec::new()),
        Ok(Some(h)) => h,
    };
    let opts = match ScanOptions::parse(&args[3..]) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let n = h.fields.len();
    let (window, next) = if is_listpack(h) {
        (0..n, 0)
    } else {
        scan_window(cursor, n, opts.count)
    };
    let mut out = Vec::new();
    for i in window {
        if let Some((f, c)) = h.fields.get_index(i) {
            if let (true, Some(v)) = (opts.matches(f), c.value()) {
                out.push(Reply::Bulk(f.clone()));
                out.push(Reply::Bulk(v));
            }
        }
    }
    scan_reply(next, out)
}

#[cfg(test)]
mod tests {
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

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn err(s: &str) -> Reply {
        Reply::Error(s.to_string())
    }

    /// Sorted bulk strings of an array reply.
    fn sorted(r: Reply) -> Vec<String> {
        let Reply::Array(items) = r else {
            panic!("not an array: {r:?}")
        };
        let mut v: Vec<String> = items
            .into_iter()
            .map(|i| match i {
                Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                other => panic!("not a bulk: {other:?}"),
            })
            .collect();
        v.sort();
        v
    }

    fn sync(from: &mut Engine, to: &mut Engine) {
        let ops = from
            .ops_since(&VersionVector::new(), usize::MAX)
            .expect("backlog");
        to.apply_remote(ops);
    }

    #[test]
    fn hset_hget_and_friends() {
        let mut e = engine(1);
        assert_eq!(run(&mut e, "HSET h a 1 b 2"), Reply::Int(2));
        assert_eq!(run(&mut e, "HSET h a 1 a 3 c 4"), Reply::Int(1));
        assert_eq!(run(&mut e, "HGET h a"), bulk("3"));
        assert_eq!(run(&mut e, "HGET h zz"), Reply::Nil);
        assert_eq!(run(&mut e, "HGET nokey a"), Reply::Nil);
        assert_eq!(
            run(&mut e, "HMGET h a zz c"),
            Reply::Array(vec![bulk("3"), Reply::Nil, bulk("4")])
        );
        assert_eq!(run(&mut e, "HMGET nokey a"), Reply::Array(vec![Reply::Nil]));
        assert_eq!(run(&mut e, "HLEN h"), Reply::Int(3));
        assert_eq!(run(&mut e, "HLEN nokey"), Reply::Int(0));
        assert_eq!(run(&mut e, "HEXISTS h a"), Reply::Int(1));
        assert_eq!(run(&mut e, "HEXISTS h zz"), Reply::Int(0));
        assert_eq!(run(&mut e, "HSTRLEN h a"), Reply::Int(1));
        assert_eq!(run(&mut e, "HSTRLEN h zz"), Reply::Int(0));
        assert_eq!(sorted(run(&mut e, "HKEYS h")), ["a", "b", "c"]);
        assert_eq!(sorted(run(&mut e, "HVALS h")), ["2", "3", "4"]);
        let Reply::Map(m) = run(&mut e, "HGETALL h") else {
            panic!()
        };
        let mut m: Vec<(Reply, Reply)> = m;
        m.sort_by_key(|(k, _)| format!("{k:?}"));
        assert_eq!(
            m,
            vec![
                (bulk("a"), bulk("3")),
                (bulk("b"), bulk("2")),
                (bulk("c"), bulk("4"))
            ]
        );
        assert_eq!(run(&mut e, "HGETALL nokey"), Reply::Map(vec![]));
        assert_eq!(run(&mut e, "HKEYS nokey"), Reply::Array(vec![]));
        assert_eq!(run(&mut e, "HSETNX h a 9"), Reply::Int(0));
        assert_eq!(run(&mut e, "HSETNX h d 9"), Reply::Int(1));
        assert_eq!(run(&mut e, "HGET h d"), bulk("9"));
        assert_eq!(run(&mut e, "HMSET h e 5 f 6"), Reply::Ok);
        assert_eq!(run(&mut e, "HDEL h a a zz b"), Reply::Int(2));
        assert_eq!(run(&mut e, "HDEL h zz"), Reply::Int(0));
        assert_eq!(run(&mut e, "HDEL nokey a"), Reply::Int(0));
        assert_eq!(run(&mut e, "HDEL h c d e f"), Reply::Int(4));
        assert_eq!(run(&mut e, "HLEN h"), Reply::Int(0));
        assert_eq!(e.dbsize(0), 0);
    }

    #[test]
    fn errors_match_redis() {
        let mut e = engine(1);
        run(&mut e, "SET s x");
        let wrongtype = err("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(
            run(&mut e, "HSET h a"),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(
            run(&mut e, "HSET h a 1 b"),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(
            run(&mut e, "HMSET h a 1 b"),
            err("ERR wrong number of arguments for 'hmset' command")
        );
        assert_eq!(
            run(&mut e, "HSET s a 1 b"),
            err("ERR wrong number of arguments for 'hset' command")
        );
        for cmd in [
            "HSET s a 1",
            "HSETNX s a 1",
            "HGET s a",
            "HMGET s a",
            "HDEL s a",
            "HLEN s",
            "HSTRLEN s a",
            "HKEYS s",
            "HVALS s",
            "HGETALL s",
            "HEXISTS s a",
            "HINCRBY s a 1",
            "HINCRBYFLOAT s a 1",
            "HRANDFIELD s",
            "HRANDFIELD s 3",
            "HSCAN s 0",
            "HSCAN s 0 BADOPT",
        ] {
            assert_eq!(run(&mut e, cmd), wrongtype, "{cmd}");
        }
        // Number errors come before the type check, as in Redis.
        assert_eq!(
            run(&mut e, "HINCRBY s a x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            run(&mut e, "HINCRBYFLOAT s a x"),
            err("ERR value is not a valid float")
        );
        assert_eq!(
            run(&mut e, "HRANDFIELD s x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(e.last_local_seq(), 1, "failed commands emit nothing");
    }

    #[test]
    fn hincrby_rules() {
        let mut e = engine(1);
        assert_eq!(run(&mut e, "HINCRBY h n 5"), Reply::Int(5));
        assert_eq!(run(&mut e, "HINCRBY h n -7"), Reply::Int(-2));
        assert_eq!(run(&mut e, "HGET h n"), bulk("-2"));
        run(&mut e, "HSET h big 9223372036854775807 f 1.5 t abc");
        assert_eq!(
            run(&mut e, "HINCRBY h big 1"),
            err("ERR increment or decrement would overflow")
        );
        assert_eq!(run(&mut e, "HINCRBY h big 0"), Reply::Int(i64::MAX));
        assert_eq!(
            run(&mut e, "HINCRBY h f 1"),
            err("ERR hash value is not an integer")
        );
        assert_eq!(
            run(&mut e, "HINCRBY h t 1"),
            err("ERR hash value is not an integer")
        );
        assert_eq!(
            run(&mut e, "HINCRBY h n 9223372036854775808"),
            err("ERR value is not an integer or out of range")
        );
        run(&mut e, "HSET h m -9223372036854775808");
        assert_eq!(
            run(&mut e, "HINCRBY h m -1"),
            err("ERR increment or decrement would overflow")
        );
        // HSET after increments resets the counter.
        run(&mut e, "HSET h n 10");
        assert_eq!(run(&mut e, "HINCRBY h n 1"), Reply::Int(11));
    }

    #[test]
    fn hincrbyfloat_rules() {
        let mut e = engine(1);
        assert_eq!(run(&mut e, "HINCRBYFLOAT h f 10.5"), bulk("10.5"));
        assert_eq!(run(&mut e, "HINCRBYFLOAT h f 0.1"), bulk("10.6"));
        assert_eq!(run(&mut e, "HGET h f"), bulk("10.6"));
        run(&mut e, "HSET h i 3.0 e 1e5 t abc");
        assert_eq!(run(&mut e, "HINCRBYFLOAT h i 0"), bulk("3"));
        assert_eq!(run(&mut e, "HGET h i"), bulk("3"));
        assert_eq!(run(&mut e, "HINCRBY h i 2"), Reply::Int(5));
        assert_eq!(run(&mut e, "HGET h i"), bulk("5"));
        assert_eq!(run(&mut e, "HINCRBYFLOAT h e 1"), bulk("100001"));
        assert_eq!(run(&mut e, "HINCRBYFLOAT h s 1e-10"), bulk("0.0000000001"));
        assert_eq!(
            run(&mut e, "HINCRBYFLOAT h t 1"),
            err("ERR hash value is not a float")
        );
        assert_eq!(
            run(&mut e, "HINCRBYFLOAT h f inf"),
            err("ERR value is NaN or Infinity")
        );
        assert_eq!(
            run(&mut e, "HINCRBYFLOAT h f nan"),
            err("ERR value is not a valid float")
        );
        assert_eq!(
            run(&mut e, "HINCRBYFLOAT h f 1x"),
            err("ERR value is not a valid float")
        );
        // Long double: 1e308 + 1e308 is finite (the reply is redis-server's).
        run(&mut e, "HSET h m 1e308");
        assert_eq!(
            run(&mut e, "HINCRBYFLOAT h m 1e308"),
            bulk(concat!(
                "19999999999999999999337175931169129132112019969483113441559409598984346973767",
                "61237442002538437770786408934944501080264463042694991879211671948416288603928",
                "37535918200039206381557326219209014213335878306791577877829121087126122536729",
                "80323726043417317850688976324758260171151463628484902090545651009268785715609",
                "6"
            ))
        );
        run(&mut e, "HSET h m 1e4932");
        assert_eq!(
            run(&mut e, "HINCRBYFLOAT h m 1e4932"),
            err("ERR increment would produce NaN or Infinity")
        );
        assert_eq!(run(&mut e, "HINCRBYFLOAT h x 0x10"), bulk("16"));
    }

    #[test]
    fn hrandfield_is_deterministic_and_shaped_like_redis() {
        let mut e = engine(1);
        assert_eq!(run(&mut e, "HRANDFIELD nokey"), Reply::Nil);
        assert_eq!(run(&mut e, "HRANDFIELD nokey 3"), Reply::Array(vec![]));
        run(&mut e, "HSET h a 1 b 2 c 3");
        let one = run(&mut e, "HRANDFIELD h");
        assert!(matches!(&one, Reply::Bulk(_)));
        assert_eq!(
            run(&mut e, "HRANDFIELD h"),
            one,
            "same time, same state, same pick"
        );
        assert_eq!(sorted(run(&mut e, "HRANDFIELD h 10")), ["a", "b", "c"]);
        let two = sorted(run(&mut e, "HRANDFIELD h 2"));
        assert_eq!(two.len(), 2);
        assert_ne!(two[0], two[1]);
        let Reply::Array(rep) = run(&mut e, "HRANDFIELD h -7") else {
            panic!()
        };
        assert_eq!(rep.len(), 7);
        let Reply::Pairs(wv) = run(&mut e, "HRANDFIELD h -3 WITHVALUES") else {
            panic!()
        };
        assert_eq!(wv.len(), 3);
        for (f, v) in &wv {
            let (Reply::Bulk(f), Reply::Bulk(v)) = (f, v) else {
                panic!()
            };
            let want = match f.as_ref() {
                b"a" => "1",
                b"b" => "2",
                _ => "3",
            };
            assert_eq!(v.as_ref(), want.as_bytes());
        }
        assert_eq!(run(&mut e, "HRANDFIELD h 0"), Reply::Array(vec![]));
        assert_eq!(
            run(&mut e, "HRANDFIELD h 2 WITHVALUESX"),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut e, "HRANDFIELD h 2 WITHVALUES x"),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut e, "HRANDFIELD h -9223372036854775808"),
            err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
        );
        assert_eq!(
            run(&mut e, "HRANDFIELD h 9223372036854775807 WITHVALUES"),
            err("ERR value is out of range")
        );
        assert!(
            run(&mut e, "HRANDFIELD h -9223372036854775807").is_error(),
            "bounded"
        );
    }

    #[test]
    fn hscan_returns_everything() {
        let mut e = engine(1);
        assert_eq!(
            run(&mut e, "HSCAN nokey 0 BADOPT"),
            Reply::Array(vec![bulk("0"), Reply::Array(vec![])])
        );
        run(&mut e, "HSET h a1 1 a2 2 b1 3");
        let Reply::Array(r) = run(&mut e, "HSCAN h 0 MATCH a* COUNT 1") else {
            panic!()
        };
        assert_eq!(r[0], bulk("0"));
        let Reply::Array(items) = &r[1] else { panic!() };
        assert_eq!(items.len(), 4);
        let Reply::Array(r) = run(&mut e, "HSCAN h 0") else {
            panic!()
        };
        let Reply::Array(items) = &r[1] else { panic!() };
        assert_eq!(items.len(), 6);
        for bad in ["HSCAN h x", "HSCAN h +", "HSCAN h 1a"] {
            assert_eq!(run(&mut e, bad), err("ERR invalid cursor"), "{bad}");
        }
        assert!(!run(&mut e, "HSCAN h -1").is_error());
        assert_eq!(run(&mut e, "HSCAN h 0 COUNT 0"), err("ERR syntax error"));
        assert_eq!(
            run(&mut e, "HSCAN h 0 COUNT x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(run(&mut e, "HSCAN h 0 MATCH"), err("ERR syntax error"));
        assert_eq!(
            run(&mut e, "HSCAN h 0 TYPE string"),
            err("ERR syntax error")
        );
    }

    #[test]
    fn writes_on_an_expired_key_start_empty() {
        let mut e = engine(1);
        run(&mut e, "HSET h a 1 b 2");
        let args: Vec<Bytes> = ["PEXPIRE", "h", "10"]
            .iter()
            .map(|s| Bytes::from(*s))
            .collect();
        if e.execute(0, &args, 1_000) != Reply::Int(1) {
            return; // key commands not there yet
        }
        let hset: Vec<Bytes> = ["HSET", "h", "c", "3"]
            .iter()
            .map(|s| Bytes::from(*s))
            .collect();
        assert_eq!(e.execute(0, &hset, 2_000), Reply::Int(1));
        let hlen: Vec<Bytes> = ["HLEN", "h"].iter().map(|s| Bytes::from(*s)).collect();
        assert_eq!(e.execute(0, &hlen, 2_000), Reply::Int(1));
    }

    #[test]
    fn concurrent_hset_beats_hdel_and_increments_add_up() {
        let (mut a, mut b) = (engine(1), engine(2));
        run(&mut a, "HSET h f 1 n 10");
        sync(&mut a, &mut b);
        // Concurrently: A deletes f, B rewrites it; both increment n.
        assert_eq!(run(&mut a, "HDEL h f"), Reply::Int(1));
        assert_eq!(run(&mut b, "HSET h f 2"), Reply::Int(0));
        assert_eq!(run(&mut a, "HINCRBY h n 5"), Reply::Int(15));
        assert_eq!(run(&mut b, "HINCRBY h n 7"), Reply::Int(17));
        sync(&mut a, &mut b);
        sync(&mut b, &mut a);
        for e in [&mut a, &mut b] {
            assert_eq!(run(e, "HGET h f"), bulk("2"));
            assert_eq!(run(e, "HGET h n"), bulk("22"));
        }
        assert_eq!(a.digest_hex(), b.digest_hex());
        // An HSET of the same value still beats a concurrent HDEL.
        run(&mut a, "HSET h g same");
        sync(&mut a, &mut b);
        assert_eq!(run(&mut b, "HSET h g same"), Reply::Int(0));
        assert_eq!(run(&mut a, "HDEL h g"), Reply::Int(1));
        sync(&mut a, &mut b);
        sync(&mut b, &mut a);
        assert_eq!(run(&mut a, "HGET h g"), bulk("same"));
        assert_eq!(a.digest_hex(), b.digest_hex());
    }

    #[test]
    fn concurrent_float_increments_converge() {
        let (mut a, mut b) = (engine(1), engine(2));
        run(&mut a, "HINCRBYFLOAT h f 0.1");
        run(&mut b, "HINCRBYFLOAT h f 0.2");
        sync(&mut a, &mut b);
        sync(&mut b, &mut a);
        assert_eq!(run(&mut a, "HGET h f"), run(&mut b, "HGET h f"));
        assert_eq!(a.digest_hex(), b.digest_hex());
    }

    #[test]
    fn writes_emit_exactly_their_effects() {
        use crate::op::Effect;
        let mut e = engine(1);
        run(&mut e, "HSET h a 1 b 2 a 3");
        run(&mut e, "HSETNX h a 9");
        run(&mut e, "HDEL h b nope b");
        run(&mut e, "HDEL h nope");
        run(&mut e, "HINCRBY h n 4");
        run(&mut e, "HINCRBY h a x");
        run(&mut e, "HINCRBYFLOAT h a 1.5");
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
                Effect::HSet(vec![(f("a"), f("3")), (f("b"), f("2"))]),
                Effect::HDel(vec![f("b")]),
                Effect::HIncrInt(f("n"), 4),
                Effect::HIncrFloat(f("a"), crate::ld::Exact::from_f64(1.5)),
            ]
        );
    }
}
