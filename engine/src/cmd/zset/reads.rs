//! Sorted-set reads: point reads (ZSCORE, ZMSCORE, ZCARD, ZRANK, ZREVRANK),
//! the ZRANGE family by rank, score or lex (ZRANGESTORE included) and the
//! counts ZCOUNT and ZLEXCOUNT.

use super::range::{by_lex, by_rank, by_score, LexRange, Range, ScoreRange};
use super::{owned, scored_reply, store, zset_of};
use crate::cmd::{int_arg, is};
use crate::engine::Txn;
use crate::keyspace::value::Score;
use crate::reply::{errors, Reply};
use bytes::Bytes;

// ---- point reads -----------------------------------------------------------------

pub(super) fn zscore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match zset_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(z) => z
            .and_then(|z| z.score(&args[2]))
            .map_or(Reply::Nil, Reply::Double),
    }
}

pub(super) fn zmscore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match zset_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(z) => Reply::Array(
            args[2..]
                .iter()
                .map(|m| z.and_then(|z| z.score(m)).map_or(Reply::Nil, Reply::Double))
                .collect(),
        ),
    }
}

pub(super) fn zcard(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match zset_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(z) => Reply::Int(z.map_or(0, |z| z.index.len()) as i64),
    }
}

pub(super) fn zrank(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrank_generic(txn, db, args, false)
}

pub(super) fn zrevrank(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrank_generic(txn, db, args, true)
}

fn zrank_generic(txn: &mut Txn<'_>, db: u8, args: &[Bytes], rev: bool) -> Reply {
    let z = match zset_of(txn, db, &args[1]) {
        Err(e) => return e,
        Ok(None) => return Reply::Nil,
        Ok(Some(z)) => z,
    };
    let m = &args[2];
    let Some(s) = z.score(m) else {
        return Reply::Nil;
    };
    let below = z
        .index
        .partition_point(|(es, em)| (*es, em.as_ref()) < (Score(s), m.as_ref()));
    let rank = if rev {
        z.index.len().saturating_sub(below + 1)
    } else {
        below
    };
    Reply::Int(rank as i64)
}

// ---- ranges ----------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Auto,
    Rank,
    Score,
    Lex,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Auto,
    Forward,
    Reverse,
}

pub(super) fn zrange(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, None, By::Auto, Dir::Auto)
}

pub(super) fn zrangestore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, Some(&args[1]), By::Auto, Dir::Auto)
}

pub(super) fn zrevrange(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, None, By::Rank, Dir::Reverse)
}

pub(super) fn zrangebyscore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, None, By::Score, Dir::Forward)
}

pub(super) fn zrevrangebyscore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, None, By::Score, Dir::Reverse)
}

pub(super) fn zrangebylex(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, None, By::Lex, Dir::Forward)
}

pub(super) fn zrevrangebylex(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, None, By::Lex, Dir::Reverse)
}

/// Redis's `zrangeGenericCommand`: every ZRANGE variant, and ZRANGESTORE when
/// `dst` is given (then the source key follows it).
fn zrange_generic(
    txn: &mut Txn<'_>,
    db: u8,
    args: &[Bytes],
    dst: Option<&Bytes>,
    mut by: By,
    mut dir: Dir,
) -> Reply {
    let src_at = if dst.is_some() { 2 } else { 1 };
    let key = &args[src_at];
    let (mut min_at, mut max_at) = (src_at + 1, src_at + 2);
    let mut withscores = false;
    let (mut offset, mut limit) = (0i64, -1i64);
    let mut j = src_at + 3;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = &args[j];
        if dst.is_none() && is(a, "WITHSCORES") {
            withscores = true;
        } else if is(a, "LIMIT") && left >= 2 {
            match (int_arg(&args[j + 1]), int_arg(&args[j + 2])) {
                (Ok(o), Ok(l)) => (offset, limit) = (o, l),
                (Err(e), _) | (_, Err(e)) => return e,
            }
            j += 2;
        } else if dir == Dir::Auto && is(a, "REV") {
            dir = Dir::Reverse;
        } else if by == By::Auto && is(a, "BYLEX") {
            by = By::Lex;
        } else if by == By::Auto && is(a, "BYSCORE") {
            by = By::Score;
        } else {
            return Reply::err(errors::SYNTAX);
        }
        j += 1;
    }
    let rev = dir == Dir::Reverse;
    if by == By::Auto {
        by = By::Rank;
    }
    if limit != -1 && by == By::Rank {
        return Reply::err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if withscores && by == By::Lex {
        return Reply::err("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    if rev && by != By::Rank {
        // The interval is given as max, min.
        std::mem::swap(&mut min_at, &mut max_at);
    }
    let range = match by {
        By::Score => match ScoreRange::parse(&args[min_at], &args[max_at]) {
            Ok(r) => Range::Score(r),
            Err(e) => return e,
        },
        By::Lex => match LexRange::parse(&args[min_at], &args[max_at]) {
            Ok(r) => Range::Lex(r),
            Err(e) => return e,
        },
        _ => match (int_arg(&args[min_at]), int_arg(&args[max_at])) {
            (Ok(s), Ok(e)) => Range::Rank(s, e),
            (Err(e), _) | (_, Err(e)) => return e,
        },
    };
    let items = match zset_of(txn, db, key) {
        Err(e) => return e,
        Ok(None) => Vec::new(),
        Ok(Some(z)) => {
            let len = z.index.len();
            match range {
                Range::Rank(s, e) => owned(by_rank(z, s, e, rev).entries(z)),
                Range::Score(r) => owned(by_score(z, r, rev).limit(len, offset, limit).entries(z)),
                Range::Lex(r) => owned(by_lex(z, &r, rev).limit(len, offset, limit).entries(z)),
            }
        }
    };
    match dst {
        Some(dst) => store(txn, db, dst, items),
        None => scored_reply(items, withscores),
    }
}

pub(super) fn zcount(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let r = match ScoreRange::parse(&args[2], &args[3]) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match zset_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(None) => Reply::Int(0),
        Ok(Some(z)) => Reply::Int(by_score(z, r, false).len as i64),
    }
}

pub(super) fn zlexcount(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let r = match LexRange::parse(&args[2], &args[3]) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match zset_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(None) => Reply::Int(0),
        Ok(Some(z)) => Reply::Int(by_lex(z, &r, false).len as i64),
    }
}
