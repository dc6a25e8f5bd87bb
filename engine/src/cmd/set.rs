//! Set commands (Redis 7.0): SADD … SSCAN on the add-wins observed-remove set.
//!
//! SADD emits every member it names, present or not: re-adding gives the member
//! a new dot, so it survives a concurrent SREM (add wins), as an HSET of an
//! unchanged field does. SREM, SPOP and SMOVE remove only members they saw.
//! *STORE commands replace the destination as a whole (`Replace`, TTL dropped)
//! or delete it when the result is empty. SPOP/SRANDMEMBER choose
//! deterministically ([`super::Dice`]), O(1) per member; SSCAN returns a small
//! set whole with cursor 0 and walks a big one ([`super::scan_window`]).

use super::{
    expire_if_needed, int_arg, positive_arg, rand_count_arg, random_positions, row,
    scan_cursor_arg, scan_reply, scan_window, typed, wrongtype, DataCommand, Dice, ScanOptions,
    INTSET_ENTRIES,
};
use crate::engine::Txn;
use crate::keyspace::value::{Kind, SetSlot};
use crate::op::{Effect, Value};
use crate::reply::{errors, Reply};
use bytes::Bytes;
use std::collections::HashSet;

pub static COMMANDS: &[DataCommand] = &[
    DataCommand {
        name: "SADD",
        write: true,
        handler: sadd,
    },
    DataCommand {
        name: "SREM",
        write: true,
        handler: srem,
    },
    DataCommand {
        name: "SISMEMBER",
        write: false,
        handler: sismember,
    },
    DataCommand {
        name: "SMISMEMBER",
        write: false,
        handler: smismember,
    },
    DataCommand {
        name: "SMEMBERS",
        write: false,
        handler: smembers,
    },
    DataCommand {
        name: "SCARD",
        write: false,
        handler: scard,
    },
    DataCommand {
        name: "SPOP",
        write: true,
        handler: spop,
    },
    DataCommand {
        name: "SRANDMEMBER",
        write: false,
        handler: srandmember,
    },
    DataCommand {
        name: "SMOVE",
        write: true,
        handler: smove,
    },
    DataCommand {
        name: "SINTER",
        write: false,
        handler: sinter,
    },
    DataCommand {
        name: "SINTERCARD",
        write: false,
        handler: sintercard,
    },
    DataCommand {
        name: "SINTERSTORE",
        write: true,
        handler: sinterstore,
    },
    DataCommand {
        name: "SUNION",
        write: false,
        handler: sunion,
    },
    DataCommand {
        name: "SUNIONSTORE",
        write: true,
        handler: sunionstore,
    },
    DataCommand {
        name: "SDIFF",
        write: false,
        handler: sdiff,
    },
    DataCommand {
        name: "SDIFFSTORE",
        write: true,
        handler: sdiffstore,
    },
    DataCommand {
        name: "SSCAN",
        write: false,
        handler: sscan,
    },
];

/// The visible set at `key` (`None`: no such key), or WRONGTYPE.
fn set_of<'t>(txn: &'t Txn<'_>, db: u8, key: &[u8]) -> Result<Option<&'t SetSlot>, Reply> {
    Ok(typed(txn, db, key, Kind::Set)?.and_then(|r| r.set.as_deref()))
}

fn has(s: Option<&SetSlot>, m: &[u8]) -> bool {
    s.is_some_and(|s| s.members.contains_key(m))
}

fn bulks(members: impl IntoIterator<Item = Bytes>) -> Vec<Reply> {
    members.into_iter().map(Reply::Bulk).collect()
}

/// `args` without repeats, first occurrence first.
fn distinct(args: &[Bytes]) -> Vec<Bytes> {
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(args.len());
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        if seen.insert(a.as_ref()) {
            out.push(a.clone());
        }
    }
    out
}

fn sadd(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let members = distinct(&args[2..]);
    let added = match set_of(txn, db, key) {
        Err(e) => return e,
        Ok(s) => members.iter().filter(|m| !has(s, m)).count() as i64,
    };
    expire_if_needed(txn, db, key);
    if added == 0 {
        txn.emit_quiet(db, key, Effect::SAdd(members));
    } else {
        txn.emit(db, key, Effect::SAdd(members));
    }
    Reply::Int(added)
}

fn srem(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let gone: Vec<Bytes> = match set_of(txn, db, key) {
        Err(e) => return e,
        Ok(s) => distinct(&args[2..])
            .into_iter()
            .filter(|m| has(s, m))
            .collect(),
    };
    let n = gone.len() as i64;
    if n > 0 {
        expire_if_needed(txn, db, key);
        txn.emit(db, key, Effect::SRem(gone));
    }
    Reply::Int(n)
}

fn sismember(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match set_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(s) => Reply::Int(has(s, &args[2]) as i64),
    }
}

fn smismember(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match set_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(s) => Reply::Array(
            args[2..]
                .iter()
                .map(|m| Reply::Int(has(s, m) as i64))
                .collect(),
        ),
    }
}

fn smembers(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match set_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(s) => Reply::Set(s.map_or_else(Vec::new, |s| bulks(s.members.keys().cloned()))),
    }
}

fn scard(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match set_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(s) => Reply::Int(s.map_or(0, |s| s.members.len()) as i64),
    }
}

fn spop(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let key = &args[1];
    if args.len() > 3 {
        return Reply::err(errors::SYNTAX);
    }
    let count = match args.get(2).map(|c| positive_arg(c, None)) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => return e,
    };
    let mut dice = Dice::new(txn.now_ms, key);
    let popped: Vec<Bytes> = {
        let s = match set_of(txn, db, key) {
            Err(e) => return e,
            Ok(None) => {
                return if count.is_some() {
                    Reply::Set(Vec::new())
                } else {
                    Reply::Nil
                }
            }
            Ok(Some(s)) => s,
        };
        let picks = match random_positions(&mut dice, s.members.len(), count.unwrap_or(1)) {
            Ok(p) => p,
            Err(e) => return e,
        };
        picks
            .into_iter()
            .filter_map(|i| s.members.get_index(i).map(|(m, _)| m.clone()))
            .collect()
    };
    if !popped.is_empty() {
        expire_if_needed(txn, db, key);
        txn.emit(db, key, Effect::SRem(popped.clone()));
    }
    match count {
        Some(_) => Reply::Set(bulks(popped)),
        None => popped.into_iter().next().map_or(Reply::Nil, Reply::Bulk),
    }
}

fn srandmember(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let key = &args[1];
    if args.len() > 3 {
        return Reply::err(errors::SYNTAX);
    }
    let count = match args.get(2).map(|c| rand_count_arg(c)) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => return e,
    };
    let mut dice = Dice::new(txn.now_ms, key);
    let s = match set_of(txn, db, key) {
        Err(e) => return e,
        Ok(None) => {
            return if count.is_some() {
                Reply::Array(Vec::new())
            } else {
                Reply::Nil
            }
        }
        Ok(Some(s)) => s,
    };
    let picks = match random_positions(&mut dice, s.members.len(), count.unwrap_or(1)) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut out = picks
        .into_iter()
        .filter_map(|i| s.members.get_index(i).map(|(m, _)| Reply::Bulk(m.clone())));
    match count {
        Some(_) => Reply::Array(out.collect()),
        None => out.next().unwrap_or(Reply::Nil),
    }
}

fn smove(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let (src, dst, m) = (&args[1], &args[2], &args[3]);
    let Some(src_row) = row(txn, db, src) else {
        return Reply::Int(0);
    };
    if src_row.kind() != Some(Kind::Set) {
        return wrongtype();
    }
    if row(txn, db, dst).is_some_and(|r| r.kind() != Some(Kind::Set)) {
        return wrongtype();
    }
    let present = has(src_row.set.as_deref(), m);
    if src == dst || !present {
        return Reply::Int(present as i64);
    }
    expire_if_needed(txn, db, src);
    expire_if_needed(txn, db, dst);
    let already = set_of(txn, db, dst).is_ok_and(|s| has(s, m));
    txn.emit(db, src, Effect::SRem(vec![m.clone()]));
    if already {
        txn.emit_quiet(db, dst, Effect::SAdd(vec![m.clone()]));
    } else {
        txn.emit(db, dst, Effect::SAdd(vec![m.clone()]));
    }
    Reply::Int(1)
}

/// The sets at `keys` (`None`: missing), or WRONGTYPE if any key holds another type.
fn sets_of<'t>(
    txn: &'t Txn<'_>,
    db: u8,
    keys: &[Bytes],
) -> Result<Vec<Option<&'t SetSlot>>, Reply> {
    keys.iter().map(|k| set_of(txn, db, k)).collect()
}

/// Members in every set, stopping after `limit` (0: no limit).
fn intersection(sets: &[Option<&SetSlot>], limit: usize) -> Vec<Bytes> {
    let Some(present) = sets.iter().copied().collect::<Option<Vec<&SetSlot>>>() else {
        return Vec::new();
    };
    let Some(smallest) = present.iter().min_by_key(|s| s.members.len()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in smallest.members.keys() {
        if present.iter().all(|s| s.members.contains_key(m)) {
            out.push(m.clone());
            if limit > 0 && out.len() >= limit {
                break;
            }
        }
    }
    out
}

fn union(sets: &[Option<&SetSlot>]) -> Vec<Bytes> {
    let mut seen: HashSet<&Bytes> = HashSet::new();
    let mut out = Vec::new();
    for s in sets.iter().flatten() {
        for m in s.members.keys() {
            if seen.insert(m) {
                out.push(m.clone());
            }
        }
    }
    out
}

fn difference(sets: &[Option<&SetSlot>]) -> Vec<Bytes> {
    let Some(Some(first)) = sets.first() else {
        return Vec::new();
    };
    first
        .members
        .keys()
        .filter(|m| !sets[1..].iter().any(|s| has(*s, m)))
        .cloned()
        .collect()
}

#[derive(Clone, Copy)]
enum SetOp {
    Inter,
    Union,
    Diff,
}

fn compute(txn: &Txn<'_>, db: u8, keys: &[Bytes], op: SetOp) -> Result<Vec<Bytes>, Reply> {
    let sets = sets_of(txn, db, keys)?;
    Ok(match op {
        SetOp::Inter => intersection(&sets, 0),
        SetOp::Union => union(&sets),
        SetOp::Diff => difference(&sets),
    })
}

fn read_op(txn: &mut Txn<'_>, db: u8, args: &[Bytes], op: SetOp) -> Reply {
    match compute(txn, db, &args[1..], op) {
        Err(e) => e,
        Ok(members) => Reply::Set(bulks(members)),
    }
}

fn store_op(txn: &mut Txn<'_>, db: u8, args: &[Bytes], op: SetOp) -> Reply {
    match compute(txn, db, &args[2..], op) {
        Err(e) => e,
        Ok(members) => store(txn, db, &args[1], members),
    }
}

/// Writes `members` as the whole value of `dst` (or deletes `dst` when empty).
fn store(txn: &mut Txn<'_>, db: u8, dst: &Bytes, members: Vec<Bytes>) -> Reply {
    let n = members.len() as i64;
    expire_if_needed(txn, db, dst);
    if members.is_empty() {
        if row(txn, db, dst).is_some() {
            txn.emit(db, dst, Effect::Del);
        }
    } else {
        txn.emit(
            db,
            dst,
            Effect::Replace {
                value: Value::Set(members),
                keep_ttl: false,
            },
        );
    }
    Reply::Int(n)
}

fn sinter(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    read_op(txn, db, args, SetOp::Inter)
}

fn sunion(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    read_op(txn, db, args, SetOp::Union)
}

fn sdiff(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    read_op(txn, db, args, SetOp::Diff)
}

fn sinterstore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    store_op(txn, db, args, SetOp::Inter)
}

fn sunionstore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    store_op(txn, db, args, SetOp::Union)
}

fn sdiffstore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    store_op(txn, db, args, SetOp::Diff)
}

fn sintercard(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let numkeys_err = || Reply::err("ERR numkeys should be greater than 0");
    let numkeys = match int_arg(&args[1]) {
        Ok(n) if n >= 1 => n as u64,
        _ => return numkeys_err(),
    };
    if numkeys > (args.len() - 2) as u64 {
        return Reply::err("ERR Number of keys can't be greater than number of args");
    }
    let keys_end = 2 + numkeys as usize;
    let mut limit = 0i64;
    let mut j = keys_end;
    while j < args.len() {
        if super::is(&args[j], "LIMIT") && j + 1 < args.len() {
            limit = match positive_arg(&args[j + 1], Some("ERR LIMIT can't be negative")) {
                Ok(l) => l,
                Err(e) => return e,
            };
            j += 2;
        } else {
            return Reply::err(errors::SYNTAX);
        }
    }
    match sets_of(txn, db, &args[2..keys_end]) {
        Err(e) => e,
        Ok(sets) => {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            Reply::Int(intersection(&sets, limit).len() as i64)
        }
    }
}

/// A set Redis 7.0 keeps as an intset (and scans whole).
fn is_intset(s: &SetSlot) -> bool {
    s.members.len() <= INTSET_ENTRIES
        && s.members
            .keys()
            .all(|m| crate::redis::num::parse_int(m).is_some())
}

fn sscan(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let cursor = match scan_cursor_arg(&args[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let s = match set_of(txn, db, &args[1]) {
        Err(e) => return e,
        Ok(None) => return scan_reply(0, Vec::new()),
        Ok(Some(s)) => s,
    };
    let opts = match ScanOptions::parse(&args[3..]) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let n = s.members.len();
    let (window, next) = if is_intset(s) {
        (0..n, 0)
    } else {
        scan_window(cursor, n, opts.count)
    };
    let items = window
        .filter_map(|i| s.members.get_index(i))
        .filter(|(m, _)| opts.matches(m))
        .map(|(m, _)| Reply::Bulk(m.clone()))
        .collect();
    scan_reply(next, items)
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

    fn err(s: &str) -> Reply {
        Reply::Error(s.to_string())
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Sorted members of an array or set reply.
    fn sorted(r: Reply) -> Vec<String> {
        let items = match r {
            Reply::Array(i) | Reply::Set(i) => i,
            other => panic!("not a collection: {other:?}"),
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
    fn basics() {
        let mut e = engine(1);
        assert_eq!(run(&mut e, "SADD s a b c a"), Reply::Int(3));
        assert_eq!(run(&mut e, "SADD s a d"), Reply::Int(1));
        assert_eq!(run(&mut e, "SCARD s"), Reply::Int(4));
        assert_eq!(run(&mut e, "SCARD nokey"), Reply::Int(0));
        assert_eq!(run(&mut e, "SISMEMBER s a"), Reply::Int(1));
        assert_eq!(run(&mut e, "SISMEMBER s z"), Reply::Int(0));
        assert_eq!(
            run(&mut e, "SMISMEMBER s a z"),
            Reply::Array(vec![Reply::Int(1), Reply::Int(0)])
        );
        assert_eq!(
            run(&mut e, "SMISMEMBER nokey a"),
            Reply::Array(vec![Reply::Int(0)])
        );
        assert_eq!(sorted(run(&mut e, "SMEMBERS s")), ["a", "b", "c", "d"]);
        assert_eq!(run(&mut e, "SMEMBERS nokey"), Reply::Set(vec![]));
        assert_eq!(run(&mut e, "SREM s a a z"), Reply::Int(1));
        assert_eq!(run(&mut e, "SREM nokey a"), Reply::Int(0));
        assert_eq!(run(&mut e, "SREM s b c d"), Reply::Int(3));
        assert_eq!(e.dbsize(0), 0);
    }

    #[test]
    fn errors_match_redis() {
        let mut e = engine(1);
        run(&mut e, "SET str x");
        run(&mut e, "SADD s1 a b c");
        let wrongtype = err("WRONGTYPE Operation against a key holding the wrong kind of value");
        for cmd in [
            "SADD str a",
            "SREM str a",
            "SISMEMBER str a",
            "SMISMEMBER str a",
            "SMEMBERS str",
            "SCARD str",
            "SPOP str",
            "SPOP str 0",
            "SRANDMEMBER str",
            "SRANDMEMBER str 2",
            "SMOVE s1 str a",
            "SMOVE str s1 a",
            "SINTER nokey str",
            "SINTER str nokey",
            "SUNION nokey str",
            "SDIFF nokey str",
            "SINTERSTORE d nokey str",
            "SINTERCARD 2 nokey str",
            "SSCAN str 0",
        ] {
            assert_eq!(run(&mut e, cmd), wrongtype, "{cmd}");
        }
        assert_eq!(run(&mut e, "SMOVE nokey str a"), Reply::Int(0));
        assert_eq!(
            run(&mut e, "SPOP s1 -1"),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(
            run(&mut e, "SPOP s1 abc"),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(run(&mut e, "SPOP s1 1 2"), err("ERR syntax error"));
        assert_eq!(run(&mut e, "SRANDMEMBER s1 1 2"), err("ERR syntax error"));
        assert_eq!(
            run(&mut e, "SRANDMEMBER s1 -9223372036854775808"),
            err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
        );
        assert_eq!(
            run(&mut e, "SINTERCARD 0 s1"),
            err("ERR numkeys should be greater than 0")
        );
        assert_eq!(
            run(&mut e, "SINTERCARD abc s1"),
            err("ERR numkeys should be greater than 0")
        );
        assert_eq!(
            run(&mut e, "SINTERCARD 3 s1"),
            err("ERR Number of keys can't be greater than number of args")
        );
        assert_eq!(
            run(&mut e, "SINTERCARD 1 s1 LIMIT -1"),
            err("ERR LIMIT can't be negative")
        );
        assert_eq!(
            run(&mut e, "SINTERCARD 1 s1 LIMIT abc"),
            err("ERR LIMIT can't be negative")
        );
        assert_eq!(
            run(&mut e, "SINTERCARD 1 s1 LIMIT"),
            err("ERR syntax error")
        );
        assert_eq!(run(&mut e, "SINTERCARD 1 str foo"), err("ERR syntax error"));
        assert_eq!(run(&mut e, "SSCAN s1 x"), err("ERR invalid cursor"));
        assert_eq!(
            run(&mut e, "SADD s1"),
            err("ERR wrong number of arguments for 'sadd' command")
        );
        assert_eq!(e.last_local_seq(), 2, "failed commands emit nothing");
    }

    #[test]
    fn algebra_and_store() {
        let mut e = engine(1);
        run(&mut e, "SADD s1 a b c");
        run(&mut e, "SADD s2 b c d");
        run(&mut e, "SADD s3 c d e");
        assert_eq!(sorted(run(&mut e, "SINTER s1 s2")), ["b", "c"]);
        assert_eq!(sorted(run(&mut e, "SINTER s1 s2 s3")), ["c"]);
        assert_eq!(run(&mut e, "SINTER s1 nokey"), Reply::Set(vec![]));
        assert_eq!(
            sorted(run(&mut e, "SUNION s1 nokey s3")),
            ["a", "b", "c", "d", "e"]
        );
        assert_eq!(sorted(run(&mut e, "SDIFF s1 s2")), ["a"]);
        assert_eq!(sorted(run(&mut e, "SDIFF s1 nokey")), ["a", "b", "c"]);
        assert_eq!(run(&mut e, "SDIFF nokey s1"), Reply::Set(vec![]));
        assert_eq!(run(&mut e, "SINTERCARD 2 s1 s2"), Reply::Int(2));
        assert_eq!(run(&mut e, "SINTERCARD 2 s1 s2 LIMIT 1"), Reply::Int(1));
        assert_eq!(run(&mut e, "SINTERCARD 2 s1 s2 LIMIT 0"), Reply::Int(2));
        assert_eq!(run(&mut e, "SINTERCARD 2 s1 nokey"), Reply::Int(0));
        run(&mut e, "SET str x");
        assert_eq!(run(&mut e, "SINTERSTORE str s1 s2"), Reply::Int(2));
        assert_eq!(sorted(run(&mut e, "SMEMBERS str")), ["b", "c"]);
        assert_eq!(run(&mut e, "SUNIONSTORE u s1 s2"), Reply::Int(4));
        assert_eq!(run(&mut e, "SDIFFSTORE s1 s1 s2"), Reply::Int(1));
        assert_eq!(sorted(run(&mut e, "SMEMBERS s1")), ["a"]);
        let before = e.last_local_seq();
        assert_eq!(run(&mut e, "SINTERSTORE none nokey s2"), Reply::Int(0));
        assert_eq!(
            e.last_local_seq(),
            before,
            "empty result on a missing key: nothing to do"
        );
        assert_eq!(run(&mut e, "SDIFFSTORE u s1 s1"), Reply::Int(0));
        assert_eq!(run(&mut e, "SCARD u"), Reply::Int(0));
        assert_eq!(e.dbsize(0), 4);
    }

    #[test]
    fn pop_rand_move() {
        let mut e = engine(1);
        assert_eq!(run(&mut e, "SPOP nokey"), Reply::Nil);
        assert_eq!(run(&mut e, "SPOP nokey 2"), Reply::Set(vec![]));
        assert_eq!(run(&mut e, "SRANDMEMBER nokey"), Reply::Nil);
        assert_eq!(run(&mut e, "SRANDMEMBER nokey 2"), Reply::Array(vec![]));
        run(&mut e, "SADD s a b c d e");
        assert_eq!(
            sorted(run(&mut e, "SRANDMEMBER s 10")),
            ["a", "b", "c", "d", "e"]
        );
        let r = sorted(run(&mut e, "SRANDMEMBER s 3"));
        assert_eq!(r.len(), 3);
        assert!(r.windows(2).all(|w| w[0] != w[1]));
        let Reply::Array(rep) = run(&mut e, "SRANDMEMBER s -8") else {
            panic!()
        };
        assert_eq!(rep.len(), 8);
        assert!(matches!(run(&mut e, "SRANDMEMBER s"), Reply::Bulk(_)));
        assert_eq!(run(&mut e, "SPOP s 0"), Reply::Set(vec![]));
        let Reply::Bulk(one) = run(&mut e, "SPOP s") else {
            panic!()
        };
        assert_eq!(run(&mut e, "SCARD s"), Reply::Int(4));
        let two = sorted(run(&mut e, "SPOP s 2"));
        assert_eq!(two.len(), 2);
        assert!(!two.contains(&String::from_utf8_lossy(&one).into_owned()));
        assert_eq!(run(&mut e, "SCARD s"), Reply::Int(2));
        let rest = sorted(run(&mut e, "SPOP s 5"));
        assert_eq!(rest.len(), 2);
        assert_eq!(e.dbsize(0), 0);

        run(&mut e, "SADD src a b");
        assert_eq!(run(&mut e, "SMOVE src dst a"), Reply::Int(1));
        assert_eq!(run(&mut e, "SMOVE src dst a"), Reply::Int(0));
        assert_eq!(run(&mut e, "SMOVE src src b"), Reply::Int(1));
        assert_eq!(run(&mut e, "SMOVE src src z"), Reply::Int(0));
        assert_eq!(run(&mut e, "SMOVE src dst b"), Reply::Int(1));
        assert_eq!(sorted(run(&mut e, "SMEMBERS dst")), ["a", "b"]);
        assert_eq!(run(&mut e, "SCARD src"), Reply::Int(0));
    }

    #[test]
    fn sscan_returns_everything() {
        let mut e = engine(1);
        run(&mut e, "SADD s a1 a2 b1");
        let Reply::Array(r) = run(&mut e, "SSCAN s 0 MATCH a* COUNT 100") else {
            panic!()
        };
        assert_eq!(r[0], bulk("0"));
        assert_eq!(sorted(r[1].clone()), ["a1", "a2"]);
        assert_eq!(
            run(&mut e, "SSCAN nokey 0"),
            Reply::Array(vec![bulk("0"), Reply::Array(vec![])])
        );
    }

    #[test]
    fn add_wins_over_concurrent_remove() {
        let (mut a, mut b) = (engine(1), engine(2));
        run(&mut a, "SADD s x y");
        sync(&mut a, &mut b);
        assert_eq!(run(&mut a, "SREM s x y"), Reply::Int(2));
        assert_eq!(run(&mut b, "SADD s x"), Reply::Int(0));
        sync(&mut a, &mut b);
        sync(&mut b, &mut a);
        for e in [&mut a, &mut b] {
            assert_eq!(sorted(run(e, "SMEMBERS s")), ["x"]);
        }
        assert_eq!(a.digest_hex(), b.digest_hex());
        // SMOVE is one op: both halves arrive together.
        run(&mut a, "SMOVE s t x");
        sync(&mut a, &mut b);
        assert_eq!(run(&mut b, "SCARD s"), Reply::Int(0));
        assert_eq!(sorted(run(&mut b, "SMEMBERS t")), ["x"]);
        assert_eq!(a.digest_hex(), b.digest_hex());
    }

    #[test]
    fn store_keeps_concurrent_adds_elsewhere() {
        let (mut a, mut b) = (engine(1), engine(2));
        run(&mut a, "SADD src p q");
        run(&mut a, "SADD dst old");
        sync(&mut a, &mut b);
        run(&mut a, "SUNIONSTORE dst src");
        run(&mut b, "SADD dst concurrent");
        sync(&mut a, &mut b);
        sync(&mut b, &mut a);
        for e in [&mut a, &mut b] {
            assert_eq!(sorted(run(e, "SMEMBERS dst")), ["concurrent", "p", "q"]);
        }
        assert_eq!(a.digest_hex(), b.digest_hex());
    }

    #[test]
    fn writes_emit_exactly_their_effects() {
        use crate::op::{Effect, Value};
        let mut e = engine(1);
        run(&mut e, "SADD s a b a");
        run(&mut e, "SADD s a");
        run(&mut e, "SREM s a nope");
        run(&mut e, "SREM s nope");
        run(&mut e, "SMOVE s t b");
        run(&mut e, "SUNIONSTORE u t");
        run(&mut e, "SINTERSTORE u t nokey");
        let f = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let k = |s: &str| s.to_string();
        let ops = e
            .ops_since(&VersionVector::new(), usize::MAX)
            .expect("backlog");
        let shape: Vec<Vec<(String, Effect)>> = ops
            .into_iter()
            .map(|op| {
                op.effects
                    .into_iter()
                    .map(|e| (String::from_utf8_lossy(&e.key).into_owned(), e.effect))
                    .collect()
            })
            .collect();
        let replace = Effect::Replace {
            value: Value::Set(vec![f("b")]),
            keep_ttl: false,
        };
        assert_eq!(
            shape,
            vec![
                vec![(k("s"), Effect::SAdd(vec![f("a"), f("b")]))],
                vec![(k("s"), Effect::SAdd(vec![f("a")]))],
                vec![(k("s"), Effect::SRem(vec![f("a")]))],
                vec![
                    (k("s"), Effect::SRem(vec![f("b")])),
                    (k("t"), Effect::SAdd(vec![f("b")]))
                ],
                vec![(k("u"), replace)],
                vec![(k("u"), Effect::Del)],
            ]
        );
    }
}
