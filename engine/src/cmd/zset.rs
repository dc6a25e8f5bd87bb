//! Sorted-set commands (Redis 7.0): ZADD … ZINTERCARD on the CRDT sorted set.
//!
//! Members are observed-remove (add wins); a member's score is a register
//! (ZADD) plus a counter (ZINCRBY, ZADD INCR), so a ZREM concurrent with a
//! ZINCRBY leaves the unobserved increment. ZADD emits every member whose score
//! it sets (an unchanged score too: the new dot is what beats a concurrent
//! ZREM); replies of ZINCRBY/ZADD INCR read the score back from the keyspace,
//! so they show exactly what ZSCORE shows afterwards.
//!
//! Replies WITHSCORES are flat arrays `[member, score, …]` (RESP2's shape;
//! Redis 7.0 nests `[member, score]` pairs in RESP3). Ranges are rank windows
//! of the `(score, member)` index, found in O(log N) ([`RankedSet`]); BYLEX
//! assumes equal scores as Redis does and, up to 128 members, walks like
//! Redis's listpack. ZRANDMEMBER picks deterministically ([`super::Dice`]);
//! ZSCAN returns a small set whole with cursor 0 and walks a big one
//! ([`super::scan_window`]).
//!
//! [`RankedSet`]: crate::keyspace::value::RankedSet

use super::{
    c_str, double_arg, expire_if_needed, int_arg, is, positive_arg, rand_count_arg,
    random_positions, row, scan_cursor_arg, scan_reply, scan_window, strtod, typed, wrongtype,
    Dice, ScanOptions, Spec, LISTPACK_VALUE_MAX,
};
use crate::engine::Txn;
use crate::keyspace::value::{Kind, Score, SetSlot, ZSetSlot};
use crate::num;
use crate::op::{Effect, Value};
use crate::reply::{errors, Reply};
use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

pub static COMMANDS: &[Spec] = &[
    Spec {
        name: "ZADD",
        arity: -4,
        write: true,
        handler: zadd,
    },
    Spec {
        name: "ZINCRBY",
        arity: 4,
        write: true,
        handler: zincrby,
    },
    Spec {
        name: "ZREM",
        arity: -3,
        write: true,
        handler: zrem,
    },
    Spec {
        name: "ZSCORE",
        arity: 3,
        write: false,
        handler: zscore,
    },
    Spec {
        name: "ZMSCORE",
        arity: -3,
        write: false,
        handler: zmscore,
    },
    Spec {
        name: "ZCARD",
        arity: 2,
        write: false,
        handler: zcard,
    },
    Spec {
        name: "ZCOUNT",
        arity: 4,
        write: false,
        handler: zcount,
    },
    Spec {
        name: "ZLEXCOUNT",
        arity: 4,
        write: false,
        handler: zlexcount,
    },
    Spec {
        name: "ZRANGE",
        arity: -4,
        write: false,
        handler: zrange,
    },
    Spec {
        name: "ZRANGESTORE",
        arity: -5,
        write: true,
        handler: zrangestore,
    },
    Spec {
        name: "ZREVRANGE",
        arity: -4,
        write: false,
        handler: zrevrange,
    },
    Spec {
        name: "ZRANGEBYSCORE",
        arity: -4,
        write: false,
        handler: zrangebyscore,
    },
    Spec {
        name: "ZREVRANGEBYSCORE",
        arity: -4,
        write: false,
        handler: zrevrangebyscore,
    },
    Spec {
        name: "ZRANGEBYLEX",
        arity: -4,
        write: false,
        handler: zrangebylex,
    },
    Spec {
        name: "ZREVRANGEBYLEX",
        arity: -4,
        write: false,
        handler: zrevrangebylex,
    },
    Spec {
        name: "ZRANK",
        arity: 3,
        write: false,
        handler: zrank,
    },
    Spec {
        name: "ZREVRANK",
        arity: 3,
        write: false,
        handler: zrevrank,
    },
    Spec {
        name: "ZPOPMIN",
        arity: -2,
        write: true,
        handler: zpopmin,
    },
    Spec {
        name: "ZPOPMAX",
        arity: -2,
        write: true,
        handler: zpopmax,
    },
    Spec {
        name: "ZRANDMEMBER",
        arity: -2,
        write: false,
        handler: zrandmember,
    },
    Spec {
        name: "ZREMRANGEBYRANK",
        arity: 4,
        write: true,
        handler: zremrangebyrank,
    },
    Spec {
        name: "ZREMRANGEBYSCORE",
        arity: 4,
        write: true,
        handler: zremrangebyscore,
    },
    Spec {
        name: "ZREMRANGEBYLEX",
        arity: 4,
        write: true,
        handler: zremrangebylex,
    },
    Spec {
        name: "ZSCAN",
        arity: -3,
        write: false,
        handler: zscan,
    },
    Spec {
        name: "ZUNIONSTORE",
        arity: -4,
        write: true,
        handler: zunionstore,
    },
    Spec {
        name: "ZINTERSTORE",
        arity: -4,
        write: true,
        handler: zinterstore,
    },
    Spec {
        name: "ZDIFFSTORE",
        arity: -4,
        write: true,
        handler: zdiffstore,
    },
    Spec {
        name: "ZUNION",
        arity: -3,
        write: false,
        handler: zunion,
    },
    Spec {
        name: "ZINTER",
        arity: -3,
        write: false,
        handler: zinter,
    },
    Spec {
        name: "ZDIFF",
        arity: -3,
        write: false,
        handler: zdiff,
    },
    Spec {
        name: "ZINTERCARD",
        arity: -3,
        write: false,
        handler: zintercard,
    },
];

const NAN_SCORE: &str = "ERR resulting score is not a number (NaN)";

/// The visible sorted set at `key` (`None`: no such key), or WRONGTYPE.
fn zset_of<'t>(txn: &'t Txn<'_>, db: u8, key: &[u8]) -> Result<Option<&'t ZSetSlot>, Reply> {
    Ok(typed(txn, db, key, Kind::ZSet)?.and_then(|r| r.zset.as_deref()))
}

/// `[member, score, member, score, …]` or just the members.
fn scored_reply(items: Vec<(Bytes, f64)>, withscores: bool) -> Reply {
    let mut out = Vec::with_capacity(items.len() * if withscores { 2 } else { 1 });
    for (m, s) in items {
        out.push(Reply::Bulk(m));
        if withscores {
            out.push(Reply::Double(s));
        }
    }
    Reply::Array(out)
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

// ---- ZADD / ZINCRBY -----------------------------------------------------------

fn zadd(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zadd_generic(txn, db, args, false)
}

/// ZINCRBY is ZADD with INCR preset; like Redis it still parses options after
/// the key, so `ZINCRBY k nx m` is a syntax error.
fn zincrby(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
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
        txn.emit(db, key, Effect::ZAdd(planned));
    }
    Reply::Int(if ch { added + updated } else { added })
}

// ---- point reads and removal ----------------------------------------------------

fn zrem(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
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

fn zscore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match zset_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(z) => z
            .and_then(|z| z.score(&args[2]))
            .map_or(Reply::Nil, Reply::Double),
    }
}

fn zmscore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
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

fn zcard(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match zset_of(txn, db, &args[1]) {
        Err(e) => e,
        Ok(z) => Reply::Int(z.map_or(0, |z| z.index.len()) as i64),
    }
}

fn zrank(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrank_generic(txn, db, args, false)
}

fn zrevrank(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
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

// ---- ranges -----------------------------------------------------------------------

/// A score interval as `zslParseRange` reads it: `(` makes a bound exclusive;
/// the number is C `strtod` on the C string (leading spaces, `inf`, even the
/// empty string as 0 are accepted; NaN is not).
#[derive(Clone, Copy, Debug)]
struct ScoreRange {
    min: f64,
    max: f64,
    minex: bool,
    maxex: bool,
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, Reply> {
        fn bound(b: &[u8]) -> Option<(f64, bool)> {
            let s = c_str(b);
            let (ex, s) = match s.first() {
                Some(b'(') => (true, &s[1..]),
                _ => (false, s),
            };
            let (v, used, _) = strtod(s);
            (used == s.len() && !v.is_nan()).then_some((v, ex))
        }
        match (bound(min), bound(max)) {
            (Some((min, minex)), Some((max, maxex))) => Ok(ScoreRange {
                min,
                max,
                minex,
                maxex,
            }),
            _ => Err(Reply::err(errors::MIN_MAX_NOT_FLOAT)),
        }
    }
    fn gte_min(&self, v: f64) -> bool {
        if self.minex {
            v > self.min
        } else {
            v >= self.min
        }
    }
    fn lte_max(&self, v: f64) -> bool {
        if self.maxex {
            v < self.max
        } else {
            v <= self.max
        }
    }
}

type Entries<'z> = Box<dyn Iterator<Item = &'z (Score, Bytes)> + 'z>;

/// Sorted sets up to this size are listpacks in Redis 7.0
/// (`zset-max-listpack-entries`), which it walks from one end; above it, a
/// skiplist it descends.
pub const ZSET_LISTPACK_ENTRIES: usize = 128;

/// A run of consecutive ranks of the index: `len` entries from rank `start`,
/// upwards, or downwards when `rev`. Ranges are found as windows in O(log N),
/// so a count is the window's length and a walk costs only what it returns.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: usize,
    len: usize,
    rev: bool,
}

impl Window {
    const EMPTY: Window = Window {
        start: 0,
        len: 0,
        rev: false,
    };

    /// The ranks `lo..hi`, walked from the low end or, when `rev`, the high end.
    fn between(lo: usize, hi: usize, rev: bool) -> Window {
        if hi <= lo {
            return Window::EMPTY;
        }
        Window {
            start: if rev { hi - 1 } else { lo },
            len: hi - lo,
            rev,
        }
    }

    fn entries(self, z: &ZSetSlot) -> Entries<'_> {
        if self.len == 0 {
            Box::new(std::iter::empty())
        } else if self.rev {
            Box::new(z.index.iter_rev_from(self.start).take(self.len))
        } else {
            Box::new(z.index.iter_from(self.start).take(self.len))
        }
    }

    /// LIMIT offset count as Redis applies it: a negative offset, or one at or
    /// past the set's length `zlen`, selects nothing; a negative count means no
    /// limit.
    fn limit(self, zlen: usize, offset: i64, limit: i64) -> Window {
        if offset < 0 || (offset > 0 && offset as u64 >= zlen as u64) {
            return Window::EMPTY;
        }
        let skip = (offset as u64).min(self.len as u64) as usize;
        let left = self.len - skip;
        let len = if limit < 0 {
            left
        } else {
            (limit as u64).min(left as u64) as usize
        };
        let start = if self.rev {
            self.start - skip.min(self.start)
        } else {
            self.start + skip
        };
        Window {
            start,
            len,
            rev: self.rev,
        }
    }
}

/// The index entries with scores in `r`.
fn by_score(z: &ZSetSlot, r: ScoreRange, rev: bool) -> Window {
    // Scores ascend, so "below min" and "within max" each hold on a prefix.
    let lo = z.index.partition_point(|e| !r.gte_min(e.0 .0));
    let hi = z.index.partition_point(|e| r.lte_max(e.0 .0));
    Window::between(lo, hi, rev)
}

/// One end of a lex range: `-`, `+`, or a member.
#[derive(Clone, Debug)]
enum LexItem {
    Min,
    Max,
    Member(Bytes),
}

/// A lex interval as `zslParseLexRange` reads it (`[a`, `(a`, `-`, `+`).
#[derive(Clone, Debug)]
struct LexRange {
    min: LexItem,
    max: LexItem,
    minex: bool,
    maxex: bool,
}

impl LexRange {
    fn parse(min: &Bytes, max: &Bytes) -> Result<LexRange, Reply> {
        fn item(b: &Bytes) -> Option<(LexItem, bool)> {
            // `+` and `-` must be the whole C string.
            let alone = b.get(1).copied().unwrap_or(0) == 0;
            match b.first() {
                Some(b'+') if alone => Some((LexItem::Max, true)),
                Some(b'-') if alone => Some((LexItem::Min, true)),
                Some(b'(') => Some((LexItem::Member(b.slice(1..)), true)),
                Some(b'[') => Some((LexItem::Member(b.slice(1..)), false)),
                _ => None,
            }
        }
        match (item(min), item(max)) {
            (Some((min, minex)), Some((max, maxex))) => Ok(LexRange {
                min,
                max,
                minex,
                maxex,
            }),
            _ => Err(Reply::err(errors::MIN_MAX_NOT_STRING)),
        }
    }

    /// `sdscmplex(v, item)` for a member `v`.
    fn cmp(v: &[u8], item: &LexItem) -> Ordering {
        match item {
            LexItem::Min => Ordering::Greater,
            LexItem::Max => Ordering::Less,
            LexItem::Member(m) => v.cmp(m.as_ref()),
        }
    }
    fn gte_min(&self, v: &[u8]) -> bool {
        let c = Self::cmp(v, &self.min);
        if self.minex {
            c == Ordering::Greater
        } else {
            c != Ordering::Less
        }
    }
    fn lte_max(&self, v: &[u8]) -> bool {
        let c = Self::cmp(v, &self.max);
        if self.maxex {
            c == Ordering::Less
        } else {
            c != Ordering::Greater
        }
    }

    /// `zzlIsInLexRange`: false for an always-empty interval, or when the last
    /// element is below it or the first above it.
    fn may_match(&self, z: &ZSetSlot) -> bool {
        let c = match (&self.min, &self.max) {
            (LexItem::Min, LexItem::Min) | (LexItem::Max, LexItem::Max) => Ordering::Equal,
            (LexItem::Min, _) | (_, LexItem::Max) => Ordering::Less,
            (LexItem::Max, _) | (_, LexItem::Min) => Ordering::Greater,
            (LexItem::Member(a), LexItem::Member(b)) => a.cmp(b),
        };
        if c == Ordering::Greater || (c == Ordering::Equal && (self.minex || self.maxex)) {
            return false;
        }
        match (z.index.first(), z.index.last()) {
            (Some(first), Some(last)) => self.gte_min(&last.1) && self.lte_max(&first.1),
            _ => false,
        }
    }
}

/// The index entries in the lex range `r`. Up to
/// [`ZSET_LISTPACK_ENTRIES`] entries the index is walked from one end like
/// Redis's listpack (which gives Redis's answer even when scores differ,
/// where the lex order of the members is not the index order); above it the
/// range is found by descent, as Redis's skiplist finds it.
fn by_lex(z: &ZSetSlot, r: &LexRange, rev: bool) -> Window {
    if !r.may_match(z) {
        return Window::EMPTY;
    }
    let n = z.index.len();
    if n > ZSET_LISTPACK_ENTRIES {
        let lo = z.index.partition_point(|e| !r.gte_min(&e.1));
        let hi = z.index.partition_point(|e| r.lte_max(&e.1));
        return Window::between(lo, hi, rev);
    }
    if rev {
        let Some(top) = z.index.iter_rev_from(n - 1).position(|e| r.lte_max(&e.1)) else {
            return Window::EMPTY;
        };
        let start = n - 1 - top;
        let len = z
            .index
            .iter_rev_from(start)
            .take_while(|e| r.gte_min(&e.1))
            .count();
        Window {
            start,
            len,
            rev: true,
        }
    } else {
        let Some(start) = z.index.iter().position(|e| r.gte_min(&e.1)) else {
            return Window::EMPTY;
        };
        let len = z
            .index
            .iter_from(start)
            .take_while(|e| r.lte_max(&e.1))
            .count();
        Window {
            start,
            len,
            rev: false,
        }
    }
}

/// Redis's rank sanitizing: `(skip, take)`, or `None` for an empty range.
fn rank_window(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let llen = len as i64;
    let mut start = if start < 0 { start + llen } else { start };
    let mut end = if end < 0 { end + llen } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= llen {
        return None;
    }
    if end >= llen {
        end = llen - 1;
    }
    Some((start as usize, (end - start + 1) as usize))
}

fn by_rank(z: &ZSetSlot, start: i64, end: i64, rev: bool) -> Window {
    let n = z.index.len();
    let Some((skip, take)) = rank_window(n, start, end) else {
        return Window::EMPTY;
    };
    Window {
        start: if rev { n - 1 - skip } else { skip },
        len: take,
        rev,
    }
}

fn owned<'z>(it: impl Iterator<Item = &'z (Score, Bytes)>) -> Vec<(Bytes, f64)> {
    it.map(|(s, m)| (m.clone(), s.0)).collect()
}

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

enum Range {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

fn zrange(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, None, By::Auto, Dir::Auto)
}

fn zrangestore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, Some(&args[1]), By::Auto, Dir::Auto)
}

fn zrevrange(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, None, By::Rank, Dir::Reverse)
}

fn zrangebyscore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, None, By::Score, Dir::Forward)
}

fn zrevrangebyscore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, None, By::Score, Dir::Reverse)
}

fn zrangebylex(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zrange_generic(txn, db, args, None, By::Lex, Dir::Forward)
}

fn zrevrangebylex(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
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

fn zcount(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
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

fn zlexcount(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
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

fn zremrangebyrank(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match (int_arg(&args[2]), int_arg(&args[3])) {
        (Ok(s), Ok(e)) => zremrange(txn, db, args, Range::Rank(s, e)),
        (Err(e), _) | (_, Err(e)) => e,
    }
}

fn zremrangebyscore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    match ScoreRange::parse(&args[2], &args[3]) {
        Ok(r) => zremrange(txn, db, args, Range::Score(r)),
        Err(e) => e,
    }
}

fn zremrangebylex(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
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

// ---- pops and random picks ------------------------------------------------------

fn zpopmin(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zpop(txn, db, args, false)
}

fn zpopmax(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zpop(txn, db, args, true)
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
    scored_reply(popped, true)
}

fn zrandmember(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let mut dice = Dice::new(txn.now_ms, key);
    if args.len() == 2 {
        return match zset_of(txn, db, key) {
            Err(e) => e,
            Ok(None) => Reply::Nil,
            Ok(Some(z)) => z
                .members
                .get_index(dice.below(z.members.len()))
                .map_or(Reply::Nil, |(m, _)| Reply::Bulk(m.clone())),
        };
    }
    let count = match rand_count_arg(&args[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let withscores = match args.len() {
        3 => false,
        4 if is(&args[3], "WITHSCORES") => true,
        _ => return Reply::err(errors::SYNTAX),
    };
    if withscores && !(-i64::MAX / 2..=i64::MAX / 2).contains(&count) {
        return Reply::err("ERR value is out of range");
    }
    let z = match zset_of(txn, db, key) {
        Err(e) => return e,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(z)) => z,
    };
    match random_positions(&mut dice, z.members.len(), count) {
        Err(e) => e,
        Ok(picks) => scored_reply(
            picks
                .into_iter()
                .filter_map(|i| {
                    z.members
                        .get_index(i)
                        .map(|(m, zm)| (m.clone(), zm.score()))
                })
                .collect(),
            withscores,
        ),
    }
}

// ---- ZSCAN --------------------------------------------------------------------------

/// A score as Redis 7.0's `d2string` writes it into a small (listpack) sorted
/// set, which is how ZSCAN shows it: integral values up to 2^62 in full,
/// anything else as `%.17g`.
fn d2string(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let bound = (i64::MAX / 2) as f64;
    if v.is_finite() && v >= -bound && v <= bound && v.fract() == 0.0 {
        return (v as i64).to_string();
    }
    num::format_double(v)
}

/// A sorted set Redis 7.0 keeps as a listpack (and scans whole).
fn is_listpack(z: &ZSetSlot) -> bool {
    z.members.len() <= ZSET_LISTPACK_ENTRIES
        && z.members.keys().all(|m| m.len() <= LISTPACK_VALUE_MAX)
}

fn zscan(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let cursor = match scan_cursor_arg(&args[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let z = match zset_of(txn, db, &args[1]) {
        Err(e) => return e,
        Ok(None) => return scan_reply(0, Vec::new()),
        Ok(Some(z)) => z,
    };
    let opts = match ScanOptions::parse(&args[3..]) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let n = z.members.len();
    let (window, next) = if is_listpack(z) {
        (0..n, 0)
    } else {
        scan_window(cursor, n, opts.count)
    };
    let mut out = Vec::new();
    for (m, zm) in window.filter_map(|i| z.members.get_index(i)) {
        if opts.matches(m) {
            out.push(Reply::Bulk(m.clone()));
            out.push(Reply::Bulk(Bytes::from(d2string(zm.score()))));
        }
    }
    scan_reply(next, out)
}

// ---- ZUNION / ZINTER / ZDIFF (+STORE, ZINTERCARD) --------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// One input of a set operation: sorted sets, and plain sets with score 1.
#[derive(Clone, Copy)]
enum Source<'t> {
    Missing,
    Sorted(&'t ZSetSlot),
    Plain(&'t SetSlot),
}

impl<'t> Source<'t> {
    fn len(&self) -> usize {
        match self {
            Source::Missing => 0,
            Source::Sorted(z) => z.index.len(),
            Source::Plain(s) => s.members.len(),
        }
    }
    fn iter(&self) -> Box<dyn Iterator<Item = (&'t Bytes, f64)> + 't> {
        match *self {
            Source::Missing => Box::new(std::iter::empty()),
            Source::Sorted(z) => Box::new(z.index.iter().map(|(s, m)| (m, s.0))),
            Source::Plain(s) => Box::new(s.members.keys().map(|m| (m, 1.0))),
        }
    }
    fn find(&self, m: &[u8]) -> Option<f64> {
        match self {
            Source::Missing => None,
            Source::Sorted(z) => z.score(m),
            Source::Plain(s) => s.members.contains_key(m).then_some(1.0),
        }
    }
}

/// `zunionInterAggregate`.
fn aggregate(target: &mut f64, v: f64, agg: Aggregate) {
    match agg {
        Aggregate::Sum => {
            *target += v;
            // inf + -inf: Redis stores 0.
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if v < *target {
                *target = v;
            }
        }
        Aggregate::Max => {
            if v > *target {
                *target = v;
            }
        }
    }
}

fn zunionstore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, Some(&args[1]), SetOp::Union, false)
}

fn zinterstore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, Some(&args[1]), SetOp::Inter, false)
}

fn zdiffstore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, Some(&args[1]), SetOp::Diff, false)
}

fn zunion(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, None, SetOp::Union, false)
}

fn zinter(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, None, SetOp::Inter, false)
}

fn zdiff(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, None, SetOp::Diff, false)
}

fn zintercard(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, None, SetOp::Inter, true)
}

/// Redis's `zunionInterDiffGenericCommand`: the key count follows the
/// destination (STORE variants) or the name; keys are type-checked before the
/// options are parsed.
fn zsetop(
    txn: &mut Txn<'_>,
    db: u8,
    args: &[Bytes],
    dst: Option<&Bytes>,
    op: SetOp,
    cardinality_only: bool,
) -> Reply {
    let numkeys_at = if dst.is_some() { 2 } else { 1 };
    let setnum = match int_arg(&args[numkeys_at]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if setnum < 1 {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        return Reply::err(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        ));
    }
    let first = numkeys_at + 1;
    if setnum as u64 > (args.len() - first) as u64 {
        return Reply::err(errors::SYNTAX);
    }
    let setnum = setnum as usize;
    let result: Vec<(Bytes, f64)>;
    let mut cardinality = 0i64;
    let mut withscores = false;
    {
        let mut srcs: Vec<(Source<'_>, f64)> = Vec::with_capacity(setnum);
        for k in &args[first..first + setnum] {
            let src = match row(txn, db, k) {
                None => Source::Missing,
                Some(r) => match r.kind() {
                    Some(Kind::ZSet) => r.zset.as_deref().map_or(Source::Missing, Source::Sorted),
                    Some(Kind::Set) => r.set.as_deref().map_or(Source::Missing, Source::Plain),
                    _ => return wrongtype(),
                },
            };
            srcs.push((src, 1.0));
        }
        let mut agg = Aggregate::Sum;
        let mut limit = 0i64;
        let mut j = first + setnum;
        while j < args.len() {
            let remaining = args.len() - j;
            let a = &args[j];
            if op != SetOp::Diff && !cardinality_only && remaining > setnum && is(a, "WEIGHTS") {
                for (k, src) in srcs.iter_mut().enumerate() {
                    match double_arg(&args[j + 1 + k]) {
                        Some(w) => src.1 = w,
                        None => return Reply::err("ERR weight value is not a float"),
                    }
                }
                j += 1 + setnum;
            } else if op != SetOp::Diff && !cardinality_only && remaining >= 2 && is(a, "AGGREGATE")
            {
                let v = &args[j + 1];
                agg = if is(v, "SUM") {
                    Aggregate::Sum
                } else if is(v, "MIN") {
                    Aggregate::Min
                } else if is(v, "MAX") {
                    Aggregate::Max
                } else {
                    return Reply::err(errors::SYNTAX);
                };
                j += 2;
            } else if dst.is_none() && !cardinality_only && is(a, "WITHSCORES") {
                withscores = true;
                j += 1;
            } else if cardinality_only && remaining >= 2 && is(a, "LIMIT") {
                limit = match positive_arg(&args[j + 1], Some("ERR LIMIT can't be negative")) {
                    Ok(l) => l,
                    Err(e) => return e,
                };
                j += 2;
            } else {
                return Reply::err(errors::SYNTAX);
            }
        }
        if op != SetOp::Diff {
            // Smallest first, as Redis orders them (float sums follow this order).
            srcs.sort_by_key(|(s, _)| s.len());
        }
        let mut out: Vec<(Bytes, f64)> = Vec::new();
        match op {
            SetOp::Inter => {
                let (first_src, w0) = srcs[0];
                for (m, s) in first_src.iter() {
                    let mut score = w0 * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    let mut everywhere = true;
                    for (src, w) in &srcs[1..] {
                        match src.find(m) {
                            Some(v) => aggregate(&mut score, v * w, agg),
                            None => {
                                everywhere = false;
                                break;
                            }
                        }
                    }
                    if !everywhere {
                        continue;
                    }
                    if cardinality_only {
                        cardinality += 1;
                        if limit > 0 && cardinality >= limit {
                            break;
                        }
                    } else {
                        out.push((m.clone(), score));
                    }
                }
            }
            SetOp::Union => {
                let mut at: HashMap<&Bytes, usize> = HashMap::new();
                for (src, w) in &srcs {
                    for (m, s) in src.iter() {
                        let mut score = w * s;
                        if score.is_nan() {
                            score = 0.0;
                        }
                        match at.entry(m) {
                            Entry::Occupied(e) => aggregate(&mut out[*e.get()].1, score, agg),
                            Entry::Vacant(e) => {
                                e.insert(out.len());
                                out.push((m.clone(), score));
                            }
                        }
                    }
                }
            }
            SetOp::Diff => {
                let (first_src, _) = srcs[0];
                for (m, s) in first_src.iter() {
                    if !srcs[1..].iter().any(|(src, _)| src.find(m).is_some()) {
                        out.push((m.clone(), s));
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            a.1.partial_cmp(&b.1)
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.0.cmp(&b.0))
        });
        result = out;
    }
    if cardinality_only {
        return Reply::Int(cardinality);
    }
    match dst {
        Some(dst) => store(txn, db, dst, result),
        None => scored_reply(result, withscores),
    }
}

#[cfg(test)]
mod tests {
    use super::d2string;
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
                Reply::Double(d) => crate::num::format_double(*d),
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
            other => one(other),
        }
    }

    fn sync(from: &Engine, to: &mut Engine) {
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
            Reply::Array(vec![
                bulk("e"),
                Reply::Double(5.0),
                bulk("d"),
                Reply::Double(4.0)
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
        assert_eq!(run(&mut e, "ZPOPMIN z 0"), Reply::Array(vec![]));
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
        let Reply::Array(all) = run(&mut e, "ZRANDMEMBER z 5 WITHSCORES") else {
            panic!()
        };
        assert_eq!(all.len(), 6);
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
        sync(&a, &mut b);
        assert_eq!(run(&mut a, "ZREM z m"), Reply::Int(1));
        assert_eq!(run(&mut b, "ZINCRBY z 5 m"), Reply::Double(15.0));
        sync(&a, &mut b);
        sync(&b, &mut a);
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
        sync(&a, &mut b);
        sync(&b, &mut a);
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
