//! Sorted-set algebra: ZUNION, ZINTER, ZDIFF, their STORE forms and
//! ZINTERCARD (Redis's `zunionInterDiffGenericCommand`), over sorted sets and
//! plain sets (score 1).

use super::{scored_reply, store};
use crate::cmd::{double_arg, int_arg, is, positive_arg, row, wrongtype};
use crate::engine::Txn;
use crate::keyspace::value::{Kind, SetSlot, ZSetSlot};
use crate::reply::{errors, Reply};
use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

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

pub(super) fn zunionstore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, Some(&args[1]), SetOp::Union, false)
}

pub(super) fn zinterstore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, Some(&args[1]), SetOp::Inter, false)
}

pub(super) fn zdiffstore(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, Some(&args[1]), SetOp::Diff, false)
}

pub(super) fn zunion(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, None, SetOp::Union, false)
}

pub(super) fn zinter(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, None, SetOp::Inter, false)
}

pub(super) fn zdiff(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    zsetop(txn, db, args, None, SetOp::Diff, false)
}

pub(super) fn zintercard(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
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
