//! The ranges sorted-set commands read and remove: score intervals
//! (`zslParseRange`), lex intervals (`zslParseLexRange`) and rank windows,
//! each found as a [`Window`] of consecutive ranks of the index.

use crate::cmd::{c_str, strtod};
use crate::keyspace::value::{Score, ZSetSlot};
use crate::reply::{errors, Reply};
use bytes::Bytes;
use std::cmp::Ordering;

/// A score interval as `zslParseRange` reads it: `(` makes a bound exclusive;
/// the number is C `strtod` on the C string (leading spaces, `inf`, even the
/// empty string as 0 are accepted; NaN is not).
#[derive(Clone, Copy, Debug)]
pub(super) struct ScoreRange {
    min: f64,
    max: f64,
    minex: bool,
    maxex: bool,
}

impl ScoreRange {
    pub(super) fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, Reply> {
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
pub(super) struct Window {
    start: usize,
    pub(super) len: usize,
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

    pub(super) fn entries(self, z: &ZSetSlot) -> Entries<'_> {
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
    pub(super) fn limit(self, zlen: usize, offset: i64, limit: i64) -> Window {
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
pub(super) fn by_score(z: &ZSetSlot, r: ScoreRange, rev: bool) -> Window {
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
pub(super) struct LexRange {
    min: LexItem,
    max: LexItem,
    minex: bool,
    maxex: bool,
}

impl LexRange {
    pub(super) fn parse(min: &Bytes, max: &Bytes) -> Result<LexRange, Reply> {
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
pub(super) fn by_lex(z: &ZSetSlot, r: &LexRange, rev: bool) -> Window {
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

pub(super) fn by_rank(z: &ZSetSlot, start: i64, end: i64, rev: bool) -> Window {
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

pub(super) enum Range {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}
