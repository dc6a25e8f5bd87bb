//! List commands (Redis 7.0): LPUSH … LMPOP on the sequence CRDT of
//! `keyspace::value::list`.
//!
//! A push places one run of elements between the neighbours it saw
//! (`place_between`) and emits it as one `ListInsert`; every removal names
//! the elements it removes (`ListRemove` with spans), never an index, so a
//! removal never hits an element it did not see. Pops mark their removal
//! `pop`: a site that applies a pop of an element already gone counts a pop
//! conflict. An emptied list is deleted with its TTL (`Txn::emit`). Index
//! lookups walk block counts (O(blocks)), walks are O(elements returned).

use super::{expire_if_needed, int_arg, is, positive_arg, typed, DataCommand};
use crate::engine::Txn;
use crate::keyspace::value::list::{place_between, At, ListSlot, Span};
use crate::keyspace::value::Kind;
use crate::op::Effect;
use crate::reply::{errors, Reply};
use bytes::Bytes;

pub static COMMANDS: &[DataCommand] = &[
    DataCommand {
        name: "LPUSH",
        write: true,
        handler: lpush,
    },
    DataCommand {
        name: "RPUSH",
        write: true,
        handler: rpush,
    },
    DataCommand {
        name: "LPUSHX",
        write: true,
        handler: lpushx,
    },
    DataCommand {
        name: "RPUSHX",
        write: true,
        handler: rpushx,
    },
    DataCommand {
        name: "LPOP",
        write: true,
        handler: lpop,
    },
    DataCommand {
        name: "RPOP",
        write: true,
        handler: rpop,
    },
    DataCommand {
        name: "LMPOP",
        write: true,
        handler: lmpop,
    },
    DataCommand {
        name: "LLEN",
        write: false,
        handler: llen,
    },
    DataCommand {
        name: "LRANGE",
        write: false,
        handler: lrange,
    },
    DataCommand {
        name: "LINDEX",
        write: false,
        handler: lindex,
    },
    DataCommand {
        name: "LPOS",
        write: false,
        handler: lpos,
    },
    DataCommand {
        name: "LSET",
        write: true,
        handler: lset,
    },
    DataCommand {
        name: "LINSERT",
        write: true,
        handler: linsert,
    },
    DataCommand {
        name: "LREM",
        write: true,
        handler: lrem,
    },
    DataCommand {
        name: "LTRIM",
        write: true,
        handler: ltrim,
    },
    DataCommand {
        name: "LMOVE",
        write: true,
        handler: lmove,
    },
    DataCommand {
        name: "RPOPLPUSH",
        write: true,
        handler: rpoplpush,
    },
];

/// Which end of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

/// `getListPositionFromObjectOrReply`: LEFT or RIGHT, else a syntax error.
pub fn end_arg(b: &[u8]) -> Result<End, Reply> {
    if is(b, "LEFT") {
        Ok(End::Left)
    } else if is(b, "RIGHT") {
        Ok(End::Right)
    } else {
        Err(Reply::err(errors::SYNTAX))
    }
}

/// The visible list at `key` (`None`: no such key), or WRONGTYPE.
pub fn list_of<'t>(txn: &'t Txn<'_>, db: u8, key: &[u8]) -> Result<Option<&'t ListSlot>, Reply> {
    Ok(typed(txn, db, key, Kind::List)?.and_then(|r| r.list.as_deref()))
}

fn len_of(txn: &Txn<'_>, db: u8, key: &[u8]) -> usize {
    list_of(txn, db, key).ok().flatten().map_or(0, |l| l.len())
}

/// Pushes `values` (in list order) at one end of `key`, which is a list or
/// absent (checked by the caller). Returns the new length.
pub fn push_at(txn: &mut Txn<'_>, db: u8, key: &Bytes, end: End, values: Vec<Bytes>) -> usize {
    let place = {
        let l = list_of(txn, db, key).ok().flatten();
        let pos = |at: Option<At>| at.and_then(|a| l.and_then(|l| l.pos(a)));
        match end {
            End::Left => {
                let first = pos(l.and_then(|l| l.at(0)));
                place_between(None, first.as_deref())
            }
            End::Right => {
                let last = pos(l.and_then(|l| l.len().checked_sub(1).and_then(|i| l.at(i))));
                place_between(last.as_deref(), None)
            }
        }
    };
    expire_if_needed(txn, db, key);
    let first = txn.list_next_index();
    txn.emit(
        db,
        key,
        Effect::ListInsert {
            place,
            first,
            values,
        },
    );
    len_of(txn, db, key)
}

/// The spans naming the elements at `ats` (any order), contiguous ones joined.
fn spans_of(l: &ListSlot, mut ats: Vec<At>) -> Vec<Span> {
    ats.sort_by_key(|a| (a.block, a.off));
    let mut out: Vec<Span> = Vec::new();
    for a in ats {
        let Some(s) = l.span_of(a) else { continue };
        if let Some(p) = out.last_mut() {
            if p.op == s.op && p.d == s.d && p.prefix == s.prefix && p.first + p.len == s.first {
                p.len += 1;
                continue;
            }
        }
        out.push(s);
    }
    out
}

/// Removes the elements at `ats` from `key` (a pop when `pop`).
fn remove_ats(txn: &mut Txn<'_>, db: u8, key: &Bytes, ats: Vec<At>, pop: bool) {
    if ats.is_empty() {
        return;
    }
    let spans = match list_of(txn, db, key) {
        Ok(Some(l)) => spans_of(l, ats),
        _ => return,
    };
    expire_if_needed(txn, db, key);
    txn.emit(db, key, Effect::ListRemove { spans, pop });
}

/// Pops up to `n` elements from one end of `key` (a list), in pop order.
pub fn pop_n(txn: &mut Txn<'_>, db: u8, key: &Bytes, end: End, n: usize) -> Vec<Bytes> {
    let (ats, vals): (Vec<At>, Vec<Bytes>) = match list_of(txn, db, key) {
        Ok(Some(l)) => match end {
            End::Left => l.iter().take(n).map(|(a, v)| (a, v.clone())).unzip(),
            End::Right => l.iter().rev().take(n).map(|(a, v)| (a, v.clone())).unzip(),
        },
        _ => return Vec::new(),
    };
    remove_ats(txn, db, key, ats, true);
    vals
}

fn lpush(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    push_cmd(txn, db, a, End::Left, false)
}
fn rpush(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    push_cmd(txn, db, a, End::Right, false)
}
fn lpushx(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    push_cmd(txn, db, a, End::Left, true)
}
fn rpushx(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    push_cmd(txn, db, a, End::Right, true)
}

fn push_cmd(txn: &mut Txn<'_>, db: u8, a: &[Bytes], end: End, existing: bool) -> Reply {
    let key = &a[1];
    match list_of(txn, db, key) {
        Err(e) => return e,
        Ok(None) if existing => return Reply::Int(0),
        Ok(_) => {}
    }
    let values: Vec<Bytes> = match end {
        // LPUSH a b c leaves c b a at the head.
        End::Left => a[2..].iter().rev().cloned().collect(),
        End::Right => a[2..].to_vec(),
    };
    Reply::Int(push_at(txn, db, key, end, values) as i64)
}

fn lpop(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    pop_cmd(txn, db, a, End::Left)
}
fn rpop(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    pop_cmd(txn, db, a, End::Right)
}

fn pop_cmd(txn: &mut Txn<'_>, db: u8, a: &[Bytes], end: End) -> Reply {
    if a.len() > 3 {
        return errors::wrong_arity(if end == End::Left { "lpop" } else { "rpop" });
    }
    let count = match a.get(2).map(|c| positive_arg(c, None)) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => return e,
    };
    let key = &a[1];
    match list_of(txn, db, key) {
        Err(e) => return e,
        Ok(None) => {
            return if count.is_some() {
                Reply::NilArray
            } else {
                Reply::Nil
            }
        }
        Ok(Some(_)) => {}
    }
    match count {
        None => match pop_n(txn, db, key, end, 1).pop() {
            Some(v) => Reply::Bulk(v),
            None => Reply::Nil,
        },
        Some(0) => Reply::Array(Vec::new()),
        Some(c) => {
            let n = usize::try_from(c).unwrap_or(usize::MAX);
            Reply::Array(
                pop_n(txn, db, key, end, n)
                    .into_iter()
                    .map(Reply::Bulk)
                    .collect(),
            )
        }
    }
}

/// `getRangeLongFromObjectOrReply(1, LONG_MAX, msg)`.
pub fn at_least_one(b: &[u8], msg: &str) -> Result<i64, Reply> {
    match crate::redis::num::parse_int(b) {
        Some(v) if v >= 1 => Ok(v),
        _ => Err(Reply::err(msg)),
    }
}

/// The parsed arguments of LMPOP/ZMPOP (from `numkeys` on): the keys, the
/// `where` argument, and the count.
pub struct MpopArgs<'a> {
    pub keys: &'a [Bytes],
    pub side: &'a Bytes,
    pub count: i64,
}

/// Parses `numkeys key [key ...] <side> [COUNT count]` as
/// `lmpopGenericCommand`/`zmpopGenericCommand` do; `side_ok` checks the side
/// word (a syntax error otherwise) before the options.
pub fn mpop_args<'a>(
    a: &'a [Bytes],
    numkeys_idx: usize,
    side_ok: impl Fn(&[u8]) -> bool,
) -> Result<MpopArgs<'a>, Reply> {
    let numkeys = at_least_one(&a[numkeys_idx], "ERR numkeys should be greater than 0")?;
    let where_idx = usize::try_from(numkeys)
        .ok()
        .and_then(|n| n.checked_add(numkeys_idx + 1))
        .filter(|w| *w < a.len())
        .ok_or_else(|| Reply::err(errors::SYNTAX))?;
    let side = &a[where_idx];
    if !side_ok(side) {
        return Err(Reply::err(errors::SYNTAX));
    }
    let mut count = None;
    let mut j = where_idx + 1;
    while j < a.len() {
        if count.is_none() && is(&a[j], "COUNT") && j + 1 < a.len() {
            count = Some(at_least_one(
                &a[j + 1],
                "ERR count should be greater than 0",
            )?);
            j += 2;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
    }
    Ok(MpopArgs {
        keys: &a[numkeys_idx + 1..where_idx],
        side,
        count: count.unwrap_or(1),
    })
}

fn lmpop(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let args = match mpop_args(a, 1, |s| end_arg(s).is_ok()) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let end = match end_arg(args.side) {
        Ok(e) => e,
        Err(e) => return e,
    };
    lmpop_keys(txn, db, args.keys, end, args.count)
}

/// Pops from the first non-empty list of `keys` (LMPOP, BLMPOP); the null
/// array when all are empty.
pub fn lmpop_keys(txn: &mut Txn<'_>, db: u8, keys: &[Bytes], end: End, count: i64) -> Reply {
    for key in keys {
        match list_of(txn, db, key) {
            Err(e) => return e,
            Ok(None) => continue,
            Ok(Some(l)) if l.is_empty() => continue,
            Ok(Some(_)) => {}
        }
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        let vals = pop_n(txn, db, key, end, n);
        return Reply::Array(vec![
            Reply::Bulk(key.clone()),
            Reply::Array(vals.into_iter().map(Reply::Bulk).collect()),
        ]);
    }
    Reply::NilArray
}

fn llen(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    match list_of(txn, db, &a[1]) {
        Err(e) => e,
        Ok(l) => Reply::Int(l.map_or(0, |l| l.len()) as i64),
    }
}

/// A Redis index (negative from the tail) into `len` elements.
fn index_in(index: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if index < 0 { len + index } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

/// The elements `start..=stop` of Redis's LRANGE/LTRIM arithmetic, or `None`
/// when the range is empty.
fn range_in(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let llen = len as i64;
    let mut start = if start < 0 { llen + start } else { start };
    let mut end = if stop < 0 { llen + stop } else { stop };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= llen {
        return None;
    }
    if end >= llen {
        end = llen - 1;
    }
    Some((start as usize, end as usize))
}

fn lrange(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let (start, stop) = match (int_arg(&a[2]), int_arg(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let l = match list_of(txn, db, &a[1]) {
        Err(e) => return e,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(l)) => l,
    };
    let Some((s, e)) = range_in(start, stop, l.len()) else {
        return Reply::Array(Vec::new());
    };
    let mut out = Vec::with_capacity(e - s + 1);
    let mut at = l.at(s);
    while let Some(x) = at {
        if let Some(v) = l.value(x) {
            out.push(Reply::Bulk(v.clone()));
        }
        if out.len() > e - s {
            break;
        }
        at = l.next(x);
    }
    Reply::Array(out)
}

fn lindex(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let index = match int_arg(&a[2]) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let l = match list_of(txn, db, &a[1]) {
        Err(e) => return e,
        Ok(None) => return Reply::Nil,
        Ok(Some(l)) => l,
    };
    index_in(index, l.len())
        .and_then(|i| l.at(i))
        .and_then(|at| l.value(at))
        .map_or(Reply::Nil, |v| Reply::Bulk(v.clone()))
}

fn lset(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let index = match int_arg(&a[2]) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let key = &a[1];
    let pos = {
        let l = match list_of(txn, db, key) {
            Err(e) => return e,
            Ok(None) => return Reply::err(errors::NO_SUCH_KEY),
            Ok(Some(l)) => l,
        };
        match index_in(index, l.len())
            .and_then(|i| l.at(i))
            .and_then(|at| l.pos(at))
        {
            Some(p) => p,
            None => return Reply::err("ERR index out of range"),
        }
    };
    txn.emit(
        db,
        key,
        Effect::ListSet {
            pos,
            value: a[3].clone(),
        },
    );
    Reply::Ok
}

fn linsert(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let after = if is(&a[2], "AFTER") {
        true
    } else if is(&a[2], "BEFORE") {
        false
    } else {
        return Reply::err(errors::SYNTAX);
    };
    let key = &a[1];
    let place = {
        let l = match list_of(txn, db, key) {
            Err(e) => return e,
            Ok(None) => return Reply::Int(0),
            Ok(Some(l)) => l,
        };
        let Some(pivot) = l.iter().find(|(_, v)| **v == a[3]).map(|(at, _)| at) else {
            return Reply::Int(-1);
        };
        let (left, right) = if after {
            (Some(pivot), l.next(pivot))
        } else {
            (l.prev(pivot), Some(pivot))
        };
        let left = left.and_then(|x| l.pos(x));
        let right = right.and_then(|x| l.pos(x));
        place_between(left.as_deref(), right.as_deref())
    };
    let first = txn.list_next_index();
    txn.emit(
        db,
        key,
        Effect::ListInsert {
            place,
            first,
            values: vec![a[4].clone()],
        },
    );
    Reply::Int(len_of(txn, db, key) as i64)
}

fn lrem(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let count = match int_arg(&a[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let key = &a[1];
    let ats: Vec<At> = {
        let l = match list_of(txn, db, key) {
            Err(e) => return e,
            Ok(None) => return Reply::Int(0),
            Ok(Some(l)) => l,
        };
        let limit = if count == 0 {
            usize::MAX
        } else {
            usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
        };
        let matches = |x: &(At, &Bytes)| *x.1 == a[3];
        if count < 0 {
            l.iter()
                .rev()
                .filter(matches)
                .take(limit)
                .map(|x| x.0)
                .collect()
        } else {
            l.iter().filter(matches).take(limit).map(|x| x.0).collect()
        }
    };
    let n = ats.len();
    remove_ats(txn, db, key, ats, false);
    Reply::Int(n as i64)
}

fn ltrim(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let (start, stop) = match (int_arg(&a[2]), int_arg(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let key = &a[1];
    let ats: Vec<At> = {
        let l = match list_of(txn, db, key) {
            Err(e) => return e,
            Ok(None) => return Reply::Ok,
            Ok(Some(l)) => l,
        };
        let len = l.len();
        let (ltrim, rtrim) = match range_in(start, stop, len) {
            None => (len, 0),
            Some((s, e)) => (s, len - e - 1),
        };
        l.iter()
            .take(ltrim)
            .chain(l.iter().rev().take(rtrim.min(len - ltrim)))
            .map(|x| x.0)
            .collect()
    };
    remove_ats(txn, db, key, ats, false);
    Reply::Ok
}

fn lpos(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let mut rank: i64 = 1;
    let mut count: Option<i64> = None;
    let mut maxlen: i64 = 0;
    let mut j = 3;
    while j < a.len() {
        let more = j + 1 < a.len();
        if is(&a[j], "RANK") && more {
            j += 1;
            rank = match int_arg(&a[j]) {
                Ok(r) => r,
                Err(e) => return e,
            };
            if rank == 0 {
                return Reply::err(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the \
                     second ... or use negative to start from the end of the list",
                );
            }
        } else if is(&a[j], "COUNT") && more {
            j += 1;
            count = match positive_arg(&a[j], Some("ERR COUNT can't be negative")) {
                Ok(c) => Some(c),
                Err(e) => return e,
            };
        } else if is(&a[j], "MAXLEN") && more {
            j += 1;
            maxlen = match positive_arg(&a[j], Some("ERR MAXLEN can't be negative")) {
                Ok(m) => m,
                Err(e) => return e,
            };
        } else {
            return Reply::err(errors::SYNTAX);
        }
        j += 1;
    }
    let l = match list_of(txn, db, &a[1]) {
        Err(e) => return e,
        Ok(None) => {
            return if count.is_some() {
                Reply::Array(Vec::new())
            } else {
                Reply::Nil
            }
        }
        Ok(Some(l)) => l,
    };
    let len = l.len();
    let from_tail = rank < 0;
    let skip = rank.unsigned_abs() - 1;
    let scan = if maxlen == 0 {
        len
    } else {
        len.min(usize::try_from(maxlen).unwrap_or(usize::MAX))
    };
    let want = match count {
        None => 1,
        Some(0) => usize::MAX,
        Some(c) => usize::try_from(c).unwrap_or(usize::MAX),
    };
    let elem = &a[2];
    let walked: Box<dyn Iterator<Item = (usize, &Bytes)>> = if from_tail {
        Box::new(
            l.iter()
                .rev()
                .take(scan)
                .enumerate()
                .map(|(k, (_, v))| (len - 1 - k, v)),
        )
    } else {
        Box::new(l.iter().take(scan).enumerate().map(|(k, (_, v))| (k, v)))
    };
    let found: Vec<Reply> = walked
        .filter(|(_, v)| *v == elem)
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(want)
        .map(|(i, _)| Reply::Int(i as i64))
        .collect();
    match count {
        Some(_) => Reply::Array(found),
        None => found.into_iter().next().unwrap_or(Reply::Nil),
    }
}

fn lmove(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let from = match end_arg(&a[3]) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let to = match end_arg(&a[4]) {
        Ok(e) => e,
        Err(e) => return e,
    };
    move_one(txn, db, &a[1], &a[2], from, to)
}

fn rpoplpush(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    move_one(txn, db, &a[1], &a[2], End::Right, End::Left)
}

/// LMOVE, RPOPLPUSH, BLMOVE: pops one element of `src` and pushes it on
/// `dst` (both lists or absent), in one op. The push comes first and the
/// pop names the element by its position, so rotating a one-element list
/// (`src == dst`) never empties it and keeps its TTL, as in Redis.
pub fn move_one(txn: &mut Txn<'_>, db: u8, src: &Bytes, dst: &Bytes, from: End, to: End) -> Reply {
    let (span, value) = {
        let l = match list_of(txn, db, src) {
            Err(e) => return e,
            Ok(None) => return Reply::Nil,
            Ok(Some(l)) => l,
        };
        let first = match from {
            End::Left => l.iter().next(),
            End::Right => l.iter().next_back(),
        };
        let Some((at, v)) = first else {
            return Reply::Nil;
        };
        match l.span_of(at) {
            Some(span) => (span, v.clone()),
            None => return Reply::Nil,
        }
    };
    if let Err(e) = list_of(txn, db, dst) {
        return e;
    }
    push_at(txn, db, dst, to, vec![value.clone()]);
    expire_if_needed(txn, db, src);
    txn.emit(
        db,
        src,
        Effect::ListRemove {
            spans: vec![span],
            pop: true,
        },
    );
    Reply::Bulk(value)
}

#[cfg(test)]
mod tests {
    use crate::engine::{Engine, EngineConfig};
    use crate::reply::Reply;
    use crate::storage::memory::MemoryStorage;

    fn engine(site: u16) -> Engine {
        Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(site)).expect("open")
    }

    fn run(e: &mut Engine, line: &str) -> Reply {
        let args: Vec<bytes::Bytes> = line
            .split_whitespace()
            .map(|s| bytes::Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        e.execute(0, &args, 1_000)
    }

    fn bulks(items: &[&str]) -> Reply {
        Reply::Array(
            items
                .iter()
                .map(|s| Reply::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes())))
                .collect(),
        )
    }

    fn err(s: &str) -> Reply {
        Reply::Error(s.to_string())
    }

    #[test]
    fn pushes_pops_and_ranges_follow_redis() {
        let mut e = engine(1);
        assert_eq!(run(&mut e, "RPUSH l a b c"), Reply::Int(3));
        assert_eq!(run(&mut e, "LPUSH l x y"), Reply::Int(5));
        assert_eq!(
            run(&mut e, "LRANGE l 0 -1"),
            bulks(&["y", "x", "a", "b", "c"])
        );
        assert_eq!(run(&mut e, "LRANGE l -2 100"), bulks(&["b", "c"]));
        assert_eq!(run(&mut e, "LRANGE l 3 1"), bulks(&[]));
        assert_eq!(run(&mut e, "LINDEX l -1"), Reply::Bulk("c".into()));
        assert_eq!(run(&mut e, "LINDEX l 5"), Reply::Nil);
        assert_eq!(run(&mut e, "LPOP l"), Reply::Bulk("y".into()));
        assert_eq!(run(&mut e, "RPOP l 2"), bulks(&["c", "b"]));
        assert_eq!(run(&mut e, "LPOP l 0"), bulks(&[]));
        assert_eq!(run(&mut e, "LPOP nokey 1"), Reply::NilArray);
        assert_eq!(
            run(&mut e, "LPOP l -1"),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(run(&mut e, "LLEN l"), Reply::Int(2));
        assert_eq!(run(&mut e, "LPUSHX nokey a"), Reply::Int(0));
        assert_eq!(run(&mut e, "RPUSHX l z"), Reply::Int(3));
        assert_eq!(run(&mut e, "LPOP l 10"), bulks(&["x", "a", "z"]));
        assert_eq!(run(&mut e, "EXISTS l"), Reply::Int(0));
        run(&mut e, "SET s v");
        assert_eq!(
            run(&mut e, "LPUSH s a"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(run(&mut e, "TYPE s"), Reply::Simple("string".into()));
        run(&mut e, "RPUSH t a");
        assert_eq!(run(&mut e, "TYPE t"), Reply::Simple("list".into()));
    }

    #[test]
    fn edits_follow_redis() {
        let mut e = engine(1);
        run(&mut e, "RPUSH l a b a c a");
        assert_eq!(run(&mut e, "LPOS l a"), Reply::Int(0));
        assert_eq!(run(&mut e, "LPOS l a RANK -1"), Reply::Int(4));
        assert_eq!(
            run(&mut e, "LPOS l a COUNT 0"),
            Reply::Array(vec![Reply::Int(0), Reply::Int(2), Reply::Int(4)])
        );
        assert_eq!(
            run(&mut e, "LPOS l a RANK 2 COUNT 1"),
            Reply::Array(vec![Reply::Int(2)])
        );
        assert_eq!(run(&mut e, "LPOS l a MAXLEN 1 RANK 2"), Reply::Nil);
        assert_eq!(
            run(&mut e, "LPOS l a COUNT -1"),
            err("ERR COUNT can't be negative")
        );
        assert_eq!(run(&mut e, "LINSERT l BEFORE c x"), Reply::Int(6));
        assert_eq!(run(&mut e, "LINSERT l AFTER c y"), Reply::Int(7));
        assert_eq!(run(&mut e, "LINSERT l AFTER zz y"), Reply::Int(-1));
        assert_eq!(run(&mut e, "LINSERT l MIDDLE c y"), err("ERR syntax error"));
        assert_eq!(
            run(&mut e, "LRANGE l 0 -1"),
            bulks(&["a", "b", "a", "x", "c", "y", "a"])
        );
        assert_eq!(run(&mut e, "LREM l -2 a"), Reply::Int(2));
        assert_eq!(
            run(&mut e, "LRANGE l 0 -1"),
            bulks(&["a", "b", "x", "c", "y"])
        );
        assert_eq!(run(&mut e, "LSET l 1 B"), Reply::Ok);
        assert_eq!(run(&mut e, "LSET l 9 B"), err("ERR index out of range"));
        assert_eq!(run(&mut e, "LSET nokey 0 B"), err("ERR no such key"));
        assert_eq!(run(&mut e, "LTRIM l 1 -2"), Reply::Ok);
        assert_eq!(run(&mut e, "LRANGE l 0 -1"), bulks(&["B", "x", "c"]));
        assert_eq!(run(&mut e, "LMOVE l l LEFT RIGHT"), Reply::Bulk("B".into()));
        assert_eq!(run(&mut e, "RPOPLPUSH l m"), Reply::Bulk("B".into()));
        assert_eq!(run(&mut e, "LRANGE l 0 -1"), bulks(&["x", "c"]));
        assert_eq!(
            run(&mut e, "LMPOP 2 nokey l RIGHT COUNT 5"),
            Reply::Array(vec![Reply::Bulk("l".into()), bulks(&["c", "x"]),])
        );
        assert_eq!(
            run(&mut e, "LMPOP 0 l LEFT"),
            err("ERR numkeys should be greater than 0")
        );
        assert_eq!(
            run(&mut e, "LMPOP 1 l LEFT COUNT 0"),
            err("ERR count should be greater than 0")
        );
        assert_eq!(run(&mut e, "LMPOP 1 l UP"), err("ERR syntax error"));
        assert_eq!(run(&mut e, "LMPOP 1 l LEFT"), Reply::NilArray);
        assert_eq!(run(&mut e, "LTRIM m 5 10"), Reply::Ok);
        assert_eq!(run(&mut e, "EXISTS m"), Reply::Int(0));
    }
}
