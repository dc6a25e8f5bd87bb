//! Sorted-set writes: ZADD and ZINCRBY (planned against the visible scores,
//! then emitted as one effect), ZREM, ZREMRANGEBYRANK/SCORE/LEX and
//! ZPOPMIN/ZPOPMAX.

use super::range::{by_lex, by_rank, by_score, LexRange, Range, ScoreRange};
use super::{owned, scored_reply, zset_of};
use crate::cmd::{double_arg, expire_if_needed, int_arg, is, positive_arg};
use crate::engine::Txn;
use crate::op::Effect;
use crate::reply::{errors, Reply};
use bytes::Bytes;
use std::collections::HashMap;

const NAN_SCORE: &str = "ERR resulting score is not a number (NaN)";

// ---- ZADD / ZINCRBY -----------------------------------------------------------

pub(super) fn zadd(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zadd_generic(txn, db, args, false)
}

/// ZINCRBY is ZADD with INCR preset; like Redis it still parses options after
/// the key, so `ZINCRBY k nx m` is a syntax error.
pub(super) fn zincrby(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zadd_generic(txn, db, args, true)
}

fn zadd_generic(txn: &mut Txn<'_>, db: u8, args: &[Bytes], mut incr: bool) -> Reply {
    let key = &args[1];
    let (mut nx, mut xx, mut gt, mut lt, mut ch) = (false, false, false, false, false);
    let mut i = 2;
    while let Some(a) = args.get(i) {
        if is(a, "NX") {
            nx = true;
        } else if is(a, "XX") {
            xx = true;
        } else if is(a, "CH") {
            ch = true;
        } else if is(a, "INCR") {
            incr = true;
        } else if is(a, "GT") {
            gt = true;
        } else if is(a, "LT") {
            lt = true;
        } else {
            break;
        }
        i += 1;
    }
    let pairs = &args[i..];
    if pairs.is_empty() || pairs.len() % 2 == 1 {
        return Reply::err(errors::SYNTAX);
    }
    if nx && xx {
        return Reply::err("ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Reply::err("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && pairs.len() > 2 {
        return Reply::err("ERR INCR option supports a single increment-element pair");
    }
    let mut scores = Vec::with_capacity(pairs.len() / 2);
    for p in pairs.chunks_exact(2) {
        match double_arg(&p[0]) {
            Some(s) => scores.push(s),
            None => return Reply::err(errors::NOT_FLOAT),
        }
    }
    // Plan against the visible scores, one element after the other as Redis
    // applies them (a member named twice sees its first update).
    let mut planned: Vec<(Bytes, f64)> = Vec::new();
    let (mut added, mut updated) = (0i64, 0i64);
    {
        let z = match zset_of(txn, db, key) {
            Ok(z) => z,
            Err(e) => return e,
        };
        if z.is_none() && xx {
            return if incr { Reply::Nil } else { Reply::Int(0) };
        }
        let mut at: HashMap<&[u8], usize> = HashMap::new();
        for (p, &score) in pairs.chunks_exact(2).zip(&scores) {
            let m = &p[1];
            let current = match at.get(m.as_ref()) {
                Some(&k) => Some(planned[k].1),
                None => z.and_then(|z| z.score(m)),
            };
            let new = match current {
                Some(cur) => {
                    if nx {
                        continue;
                    }
                    let new = if incr { score + cur } else { score };
                    if new.is_nan() {
                        return Reply::err(NAN_SCORE);
                    }
                    if (lt && new >= cur) || (gt && new <= cur) {
                        continue;
                    }
                    if new != cur {
                        updated += 1;
                    }
                    new
                }
                None if xx => continue,
                None => {
                    added += 1;
                    score
                }
            };
            match at.get(m.as_ref()) {
                Some(&k) => planned[k].1 = new,
                None => {
                    at.insert(m.as_ref(), planned.len());
                    planned.push((m.clone(), new));
                }
            }
        }
    }
    if incr {
        let Some((m, planned_score)) = planned.pop() else {
            return Reply::Nil;
        };
        expire_if_needed(txn, db, key);
        txn.emit(db, key, Effect::ZIncr(m.clone(), scores[0]));
        let shown = zset_of(txn, db, key)
            .ok()
            .flatten()
            .and_then(|z| z.score(&m));
        return Reply::Double(shown.unwrap_or(planned_score));
    }
    if !planned.is_empty() {
        expire_if_needed(txn, db, key);
        if added + updated == 0 {
            txn.emit_quiet(db, key, Effect::ZAdd(planned));
        } else {
            txn.emit(db, key, Effect::ZAdd(planned));
        }
    }
    Reply::Int(if ch { added + updated } else { added })
}

// ---- removal ---------------------------------------------------------------------

pub(super) fn zrem(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let mut gone: Vec<Bytes> = Vec::new();
    match zset_of(txn, db, key) {
        Err(e) => return e,
        Ok(None) => return Reply::Int(0),
        Ok(Some(z)) => {
            for m in &args[2..] {
                if z.members.contains_key(m.as_ref()) && !gone.contains(m) {
                    gone.push(m.clone());
                }
            }
        }
    }
    let n = gone.len() as i64;
    if n > 0 {
        expire_if_needed(txn, db, key);
        txn.emit(db, key, Effect::ZRem(gone));
    }
    Reply::Int(n)
}

pub(super) fn zremrangebyrank(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match (int_arg(&args[2]), int_arg(&args[3])) {
        (Ok(s), Ok(e)) => zremrange(txn, db, args, Range::Rank(s, e)),
        (Err(e), _) | (_, Err(e)) => e,
    }
}

pub(super) fn zremrangebyscore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match ScoreRange::parse(&args[2], &args[3]) {
        Ok(r) => zremrange(txn, db, args, Range::Score(r)),
        Err(e) => e,
    }
}

pub(super) fn zremrangebylex(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match LexRange::parse(&args[2], &args[3]) {
        Ok(r) => zremrange(txn, db, args, Range::Lex(r)),
        Err(e) => e,
    }
}

fn zremrange(txn: &mut Txn<'_>, db: u8, args: &[Bytes], range: Range) -> Reply {
    let key = &args[1];
    let gone: Vec<Bytes> = match zset_of(txn, db, key) {
        Err(e) => return e,
        Ok(None) => return Reply::Int(0),
        Ok(Some(z)) => {
            let window = match &range {
                Range::Rank(s, e) => by_rank(z, *s, *e, false),
                Range::Score(r) => by_score(z, *r, false),
                Range::Lex(r) => by_lex(z, r, false),
            };
            window.entries(z).map(|(_, m)| m.clone()).collect()
        }
    };
    let n = gone.len() as i64;
    if n > 0 {
        expire_if_needed(txn, db, key);
        txn.emit(db, key, Effect::ZRem(gone));
    }
    Reply::Int(n)
}

// ---- pops ------------------------------------------------------------------------

pub(super) fn zpopmin(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zpop(txn, db, args, false)
}

pub(super) fn zpopmax(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zpop(txn, db, args, true)
}

/// Pops up to `count` members of `key` (a sorted set) from the low or high
/// end, removing them in one effect.
fn pop_members(
    txn: &mut Txn<'_>,
    db: u8,
    key: &Bytes,
    count: usize,
    max: bool,
) -> Vec<(Bytes, f64)> {
    let popped = match zset_of(txn, db, key) {
        Ok(Some(z)) => {
            if max {
                owned(
                    z.index
                        .iter_rev_from(z.index.len().saturating_sub(1))
                        .take(count),
                )
            } else {
                owned(z.index.iter().take(count))
            }
        }
        _ => return Vec::new(),
    };
    if !popped.is_empty() {
        expire_if_needed(txn, db, key);
        txn.emit(
            db,
            key,
            Effect::ZRem(popped.iter().map(|(m, _)| m.clone()).collect()),
        );
    }
    popped
}

/// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count].
pub(super) fn zmpop(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let a = match crate::cmd::list::mpop_args(args, 1, |s| is(s, "MIN") || is(s, "MAX")) {
        Ok(a) => a,
        Err(e) => return e,
    };
    zmpop_keys(txn, db, a.keys, is(a.side, "MAX"), a.count)
}

/// Pops from the first non-empty sorted set of `keys` (ZMPOP, BZMPOP):
/// `[key, [[member, score], ...]]`, nested in RESP2 too; the null array when
/// every key is empty.
pub fn zmpop_keys(txn: &mut Txn<'_>, db: u8, keys: &[Bytes], max: bool, count: i64) -> Reply {
    for key in keys {
        match zset_of(txn, db, key) {
            Err(e) => return e,
            Ok(None) => continue,
            Ok(Some(_)) => {}
        }
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        let popped = pop_members(txn, db, key, n, max);
        return Reply::Array(vec![
            Reply::Bulk(key.clone()),
            Reply::Array(
                popped
                    .into_iter()
                    .map(|(m, s)| Reply::Array(vec![Reply::Bulk(m), Reply::Double(s)]))
                    .collect(),
            ),
        ]);
    }
    Reply::NilArray
}

/// BZPOPMIN/BZPOPMAX's pop: `[key, member, score]` from the first non-empty
/// sorted set of `keys`, or `None` when all are empty (or one holds another
/// type: `Some(WRONGTYPE)`).
pub fn bzpop_keys(txn: &mut Txn<'_>, db: u8, keys: &[Bytes], max: bool) -> Option<Reply> {
    for key in keys {
        match zset_of(txn, db, key) {
            Err(e) => return Some(e),
            Ok(None) => continue,
            Ok(Some(_)) => {}
        }
        let (m, s) = pop_members(txn, db, key, 1, max).pop()?;
        return Some(Reply::Array(vec![
            Reply::Bulk(key.clone()),
            Reply::Bulk(m),
            Reply::Double(s),
        ]));
    }
    None
}

fn zpop(txn: &mut Txn<'_>, db: u8, args: &[Bytes], max: bool) -> Reply {
    if args.len() > 3 {
        return Reply::err(errors::SYNTAX);
    }
    let count = match args.get(2).map(|c| positive_arg(c, None)) {
        None => 1,
        Some(Ok(c)) => c,
        Some(Err(e)) => return e,
    };
    let key = &args[1];
    let popped = match zset_of(txn, db, key) {
        Err(e) => return e,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(z)) => {
            let take = usize::try_from(count).unwrap_or(usize::MAX);
            if max {
                owned(
                    z.index
                        .iter_rev_from(z.index.len().saturating_sub(1))
                        .take(take),
                )
            } else {
                owned(z.index.iter().take(take))
            }
        }
    };
    if !popped.is_empty() {
        expire_if_needed(txn, db, key);
        txn.emit(
            db,
            key,
            Effect::ZRem(popped.iter().map(|(m, _)| m.clone()).collect()),
        );
    }
    if args.len() == 3 {
        return scored_reply(popped, true);
    }
    // Without a count the reply is one flat pair, in RESP3 too.
    Reply::Array(
        popped
            .into_iter()
            .flat_map(|(m, s)| [Reply::Bulk(m), Reply::Double(s)])
            .collect(),
    )
}
