//! The exact per-type oracle: the visible state a set of ops must produce,
//! computed naively and independently of the engine's CRDT code.
//!
//! Every write leaves *entries* (a string register value, a counter increment,
//! a hash field value, a set member's add, a sorted-set member's add/score/
//! increment, a deadline), each tagged with the op that wrote it. An entry
//! survives unless some op in the set *observed* it (its deps, or an earlier
//! effect of the same op) and removes that kind of entry. The visible value is
//! then read off the survivors with the rules of docs/semantics.md: LWW = greatest
//! `(hlc, origin, seq)`, counters = exact sum of surviving increments (floats
//! summed per origin in seq order, origins ascending), add-wins membership,
//! PERSIST beats EXPIRE else the latest deadline wins, and a key with two live
//! types shows the type of the greatest stamp. Order of arrival never enters.

use bytes::Bytes;
use chorus_engine::cmd::keys::visible_value;
use chorus_engine::hlc::Hlc;
use chorus_engine::id::{OpId, Origin};
use chorus_engine::keyspace::row::Row;
use chorus_engine::keyspace::value::list::Level;
use chorus_engine::keyspace::value::Kind;
use chorus_engine::keyspace::DBS;
use chorus_engine::ld::{self, Exact, Ld};
use chorus_engine::op::{Effect, Op, Value};
use chorus_engine::redis::num;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A visible value in canonical (sorted) form.
#[derive(Clone, Debug, PartialEq)]
pub enum Shown {
    Str(Bytes),
    Hash(BTreeMap<Bytes, Bytes>),
    Set(BTreeSet<Bytes>),
    /// member -> score bits
    ZSet(BTreeMap<Bytes, u64>),
    /// Elements from the head.
    List(Vec<Bytes>),
    /// A HyperLogLog (a string to clients): its nonzero registers.
    Hll(BTreeMap<u16, u8>),
}

/// What a key shows: its type, value and deadline.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    pub kind: Kind,
    pub value: Shown,
    pub deadline: Option<u64>,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lossy = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let v = match &self.value {
            Shown::Str(b) => format!("{:?}", lossy(b)),
            Shown::Hash(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{}={}", lossy(k), lossy(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Shown::Set(s) => format!("{{{}}}", s.iter().map(lossy).collect::<Vec<_>>().join(",")),
            Shown::ZSet(z) => format!(
                "{{{}}}",
                z.iter()
                    .map(|(m, s)| format!("{}:{}", lossy(m), f64::from_bits(*s)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Shown::List(l) => format!("[{}]", l.iter().map(lossy).collect::<Vec<_>>().join(",")),
            Shown::Hll(r) => format!(
                "hll{{{}}}",
                r.iter()
                    .map(|(i, v)| format!("{i}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        write!(f, "{} {} ttl={:?}", self.kind.name(), v, self.deadline)
    }
}

/// What the engine shows for a row (`None`: no live type).
pub fn observed(row: &Row) -> Option<Expected> {
    let kind = row.kind()?;
    if let Some(h) = row.visible_hll() {
        let regs = h.registers();
        let shown = (0u16..)
            .zip(regs.iter())
            .filter(|(_, &r)| r != 0)
            .map(|(i, &r)| (i, r))
            .collect();
        return Some(Expected {
            kind,
            value: Shown::Hll(shown),
            deadline: row.deadline(),
        });
    }
    let value = match visible_value(row)? {
        Value::Str(b) => Shown::Str(b),
        Value::Hash(v) => Shown::Hash(v.into_iter().collect()),
        Value::Set(v) => Shown::Set(v.into_iter().collect()),
        Value::ZSet(v) => Shown::ZSet(v.into_iter().map(|(m, s)| (m, s.to_bits())).collect()),
        Value::List(v) => Shown::List(v),
    };
    Some(Expected {
        kind,
        value,
        deadline: row.deadline(),
    })
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Str,
    Field(Bytes),
    Member(Bytes),
    ZMember(Bytes),
    /// A list element, by its position (compared level by level, a prefix
    /// first: the list's order is the order of these keys, nothing else).
    Elem(Vec<Level>),
    /// The registers one PFADD or PFMERGE raised.
    Hll,
    Ttl,
}

impl Slot {
    fn kind(&self) -> Option<Kind> {
        match self {
            Slot::Str => Some(Kind::String),
            Slot::Field(_) => Some(Kind::Hash),
            Slot::Member(_) => Some(Kind::Set),
            Slot::ZMember(_) => Some(Kind::ZSet),
            Slot::Elem(_) => Some(Kind::List),
            Slot::Hll => Some(Kind::String),
            Slot::Ttl => None,
        }
    }
}

#[derive(Clone, Debug)]
enum Part {
    Reg(Bytes),
    /// An integer increment of a string or field.
    Ctr(i128),
    /// A float increment of a string or field: the exact change.
    FCtr(Exact),
    Dot,
    ZReg(f64),
    ZCtr(f64),
    Ttl(Option<u64>),
    /// A list element as pushed; an LSET of it is a `Reg`.
    Elem(Bytes),
    /// `(register, rank)` pairs.
    Raise(Vec<(u16, u8)>),
}

/// Which entries a removal takes (of those its op observed).
#[derive(Clone, Debug)]
enum Scope {
    /// Every typed entry, and deadlines when `ttl`.
    All {
        ttl: bool,
    },
    /// Every typed entry of the other types.
    Except(Kind),
    /// Register and counter of one hash field.
    Field(Bytes),
    Member(Bytes),
    /// Adds, score register and score counter of one sorted-set member.
    ZAll(Bytes),
    /// Only the adds of one sorted-set member (ZINCRBY's re-add).
    ZAdds(Bytes),
    /// A list element and its LSET values (a removal by LPOP, LREM...).
    Elem(Vec<Level>),
    /// The LSET values of one list element (the next LSET).
    ElemRegs(Vec<Level>),
    /// The string's register and counter (a PFADD over a string).
    Str,
    /// The raises of a HyperLogLog (a counter write over one).
    Hll,
    Ttl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp {
    hlc: Hlc,
    origin: Origin,
    seq: u64,
}

#[derive(Debug)]
struct Entry {
    op: usize,
    pos: u32,
    stamp: Stamp,
    slot: Slot,
    part: Part,
}

#[derive(Debug)]
struct Removal {
    op: usize,
    pos: u32,
    scope: Scope,
}

#[derive(Default)]
struct KeyLog {
    entries: Vec<Entry>,
    removals: Vec<Removal>,
}

fn removes(scope: &Scope, e: &Entry) -> bool {
    match scope {
        Scope::All { ttl } => e.slot != Slot::Ttl || *ttl,
        Scope::Except(k) => e.slot.kind().is_some_and(|ek| ek != *k),
        Scope::Field(f) => e.slot == Slot::Field(f.clone()),
        Scope::Member(m) => e.slot == Slot::Member(m.clone()),
        Scope::ZAll(m) => e.slot == Slot::ZMember(m.clone()),
        Scope::ZAdds(m) => e.slot == Slot::ZMember(m.clone()) && matches!(e.part, Part::Dot),
        Scope::Elem(p) => matches!(&e.slot, Slot::Elem(q) if q == p),
        Scope::ElemRegs(p) => {
            matches!(&e.slot, Slot::Elem(q) if q == p) && matches!(e.part, Part::Reg(_))
        }
        Scope::Str => e.slot == Slot::Str,
        Scope::Hll => e.slot == Slot::Hll,
        Scope::Ttl => e.slot == Slot::Ttl,
    }
}

fn observes(op: &Op, dot: OpId) -> bool {
    if dot.origin == op.id.origin {
        dot.seq <= op.id.seq
    } else {
        op.deps.covers(dot)
    }
}

/// Computes what every key must show once exactly `ops` are applied.
pub fn expected_state(ops: &[&Op]) -> BTreeMap<(u8, Bytes), Expected> {
    let mut keys: BTreeMap<(u8, Bytes), KeyLog> = BTreeMap::new();
    // Flushes apply to every key of their database(s): collect them aside.
    let mut flushes: Vec<(usize, u32, Option<u8>)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let stamp = Stamp {
            hlc: op.hlc,
            origin: op.id.origin,
            seq: op.id.seq,
        };
        let mut pos: u32 = 0;
        for ke in &op.effects {
            let k = keys.entry((ke.db, ke.key.clone())).or_default();
            let mut rm = |scope: Scope, pos: &mut u32| {
                *pos += 1;
                k.removals.push(Removal {
                    op: i,
                    pos: *pos,
                    scope,
                });
            };
            let wr = |slot: Slot, part: Part, pos: &mut u32, k: &mut Vec<Entry>| {
                *pos += 1;
                k.push(Entry {
                    op: i,
                    pos: *pos,
                    stamp,
                    slot,
                    part,
                });
            };
            let mut ent: Vec<Entry> = Vec::new();
            match &ke.effect {
                Effect::SetString { value, keep_ttl } => {
                    rm(Scope::All { ttl: !keep_ttl }, &mut pos);
                    wr(Slot::Str, Part::Reg(value.clone()), &mut pos, &mut ent);
                }
                Effect::IncrInt(d) => {
                    rm(Scope::Except(Kind::String), &mut pos);
                    rm(Scope::Hll, &mut pos);
                    wr(Slot::Str, Part::Ctr(*d as i128), &mut pos, &mut ent);
                }
                Effect::IncrFloat(d) => {
                    rm(Scope::Except(Kind::String), &mut pos);
                    rm(Scope::Hll, &mut pos);
                    wr(Slot::Str, Part::FCtr(d.clone()), &mut pos, &mut ent);
                }
                Effect::Del => rm(Scope::All { ttl: true }, &mut pos),
                Effect::HllRaise {
                    regs: pairs,
                    replace,
                } => {
                    rm(Scope::Except(Kind::String), &mut pos);
                    rm(Scope::Str, &mut pos);
                    if *replace {
                        rm(Scope::Hll, &mut pos);
                    }
                    wr(Slot::Hll, Part::Raise(pairs.clone()), &mut pos, &mut ent);
                }
                Effect::Expire(d) => {
                    rm(Scope::Ttl, &mut pos);
                    wr(Slot::Ttl, Part::Ttl(*d), &mut pos, &mut ent);
                }
                Effect::HSet(pairs) => {
                    rm(Scope::Except(Kind::Hash), &mut pos);
                    for (f, v) in pairs {
                        rm(Scope::Field(f.clone()), &mut pos);
                        wr(
                            Slot::Field(f.clone()),
                            Part::Reg(v.clone()),
                            &mut pos,
                            &mut ent,
                        );
                    }
                }
                Effect::HDel(fields) => {
                    rm(Scope::Except(Kind::Hash), &mut pos);
                    for f in fields {
                        rm(Scope::Field(f.clone()), &mut pos);
                    }
                }
                Effect::HIncrInt(f, d) => {
                    rm(Scope::Except(Kind::Hash), &mut pos);
                    wr(
                        Slot::Field(f.clone()),
                        Part::Ctr(*d as i128),
                        &mut pos,
                        &mut ent,
                    );
                }
                Effect::HIncrFloat(f, d) => {
                    rm(Scope::Except(Kind::Hash), &mut pos);
                    wr(
                        Slot::Field(f.clone()),
                        Part::FCtr(d.clone()),
                        &mut pos,
                        &mut ent,
                    );
                }
                Effect::SAdd(ms) => {
                    rm(Scope::Except(Kind::Set), &mut pos);
                    for m in ms {
                        rm(Scope::Member(m.clone()), &mut pos);
                        wr(Slot::Member(m.clone()), Part::Dot, &mut pos, &mut ent);
                    }
                }
                Effect::SRem(ms) => {
                    rm(Scope::Except(Kind::Set), &mut pos);
                    for m in ms {
                        rm(Scope::Member(m.clone()), &mut pos);
                    }
                }
                Effect::ZAdd(ms) => {
                    rm(Scope::Except(Kind::ZSet), &mut pos);
                    for (m, s) in ms {
                        rm(Scope::ZAll(m.clone()), &mut pos);
                        wr(Slot::ZMember(m.clone()), Part::Dot, &mut pos, &mut ent);
                        wr(Slot::ZMember(m.clone()), Part::ZReg(*s), &mut pos, &mut ent);
                    }
                }
                Effect::ZIncr(m, d) => {
                    rm(Scope::Except(Kind::ZSet), &mut pos);
                    rm(Scope::ZAdds(m.clone()), &mut pos);
                    wr(Slot::ZMember(m.clone()), Part::Dot, &mut pos, &mut ent);
                    wr(Slot::ZMember(m.clone()), Part::ZCtr(*d), &mut pos, &mut ent);
                }
                Effect::ZRem(ms) => {
                    rm(Scope::Except(Kind::ZSet), &mut pos);
                    for m in ms {
                        rm(Scope::ZAll(m.clone()), &mut pos);
                    }
                }
                Effect::Replace { value, keep_ttl } => {
                    rm(Scope::All { ttl: !keep_ttl }, &mut pos);
                    match value {
                        Value::Str(b) => wr(Slot::Str, Part::Reg(b.clone()), &mut pos, &mut ent),
                        Value::Hash(pairs) => {
                            for (f, v) in pairs {
                                rm(Scope::Field(f.clone()), &mut pos);
                                wr(
                                    Slot::Field(f.clone()),
                                    Part::Reg(v.clone()),
                                    &mut pos,
                                    &mut ent,
                                );
                            }
                        }
                        Value::Set(ms) => {
                            for m in ms {
                                rm(Scope::Member(m.clone()), &mut pos);
                                wr(Slot::Member(m.clone()), Part::Dot, &mut pos, &mut ent);
                            }
                        }
                        Value::ZSet(ms) => {
                            for (m, s) in ms {
                                rm(Scope::ZAll(m.clone()), &mut pos);
                                wr(Slot::ZMember(m.clone()), Part::Dot, &mut pos, &mut ent);
                                wr(Slot::ZMember(m.clone()), Part::ZReg(*s), &mut pos, &mut ent);
                            }
                        }
                        Value::List(vs) => {
                            for (i, v) in vs.iter().enumerate() {
                                let p = vec![Level {
                                    d: 0,
                                    op: op.id,
                                    i: i as u32,
                                }];
                                wr(Slot::Elem(p), Part::Elem(v.clone()), &mut pos, &mut ent);
                            }
                        }
                    }
                }
                Effect::FlushDb => {
                    pos += 1;
                    flushes.push((i, pos, Some(ke.db)));
                }
                Effect::FlushAll => {
                    pos += 1;
                    flushes.push((i, pos, None));
                }
                Effect::ListInsert {
                    place,
                    first,
                    values,
                } => {
                    rm(Scope::Except(Kind::List), &mut pos);
                    for (k, v) in values.iter().enumerate() {
                        let mut p = place.prefix.clone();
                        p.push(Level {
                            d: place.d,
                            op: op.id,
                            i: first.saturating_add(k as u32),
                        });
                        wr(Slot::Elem(p), Part::Elem(v.clone()), &mut pos, &mut ent);
                    }
                }
                Effect::ListRemove { spans, .. } => {
                    rm(Scope::Except(Kind::List), &mut pos);
                    for s in spans {
                        for i in 0..s.len {
                            let mut p = s.prefix.clone();
                            p.push(Level {
                                d: s.d,
                                op: s.op,
                                i: s.first.saturating_add(i),
                            });
                            rm(Scope::Elem(p), &mut pos);
                        }
                    }
                }
                Effect::ListSet { pos: p, value } => {
                    rm(Scope::Except(Kind::List), &mut pos);
                    rm(Scope::ElemRegs(p.clone()), &mut pos);
                    wr(
                        Slot::Elem(p.clone()),
                        Part::Reg(value.clone()),
                        &mut pos,
                        &mut ent,
                    );
                }
            }
            k.entries.append(&mut ent);
        }
    }
    // Flush entries were created under the (db, empty key) of the flush: drop
    // those placeholder rows unless real writes used the empty key.
    for (op, pos, db) in &flushes {
        for ((kdb, _), k) in keys.iter_mut() {
            if db.is_none_or(|d| d == *kdb) && (*kdb as usize) < DBS {
                k.removals.push(Removal {
                    op: *op,
                    pos: *pos,
                    scope: Scope::All { ttl: true },
                });
            }
        }
    }
    let mut out = BTreeMap::new();
    for (key, k) in keys {
        let survivors: Vec<&Entry> = k
            .entries
            .iter()
            .filter(|e| {
                !k.removals.iter().any(|r| {
                    let rop = ops[r.op];
                    let eop = ops[e.op];
                    let seen = if r.op == e.op {
                        e.pos < r.pos
                    } else {
                        observes(rop, eop.id)
                    };
                    seen && removes(&r.scope, e)
                })
            })
            .collect();
        if let Some(x) = show(&survivors) {
            out.insert(key, x);
        }
    }
    out
}

type CounterSum = (Stamp, i128, Option<f64>);

/// Counter entries merged per op (as the engine keys them by dot), in dot order.
fn merged_counter(
    entries: &[&Entry],
    ops_of: impl Fn(&Entry) -> Option<(i128, f64)>,
) -> Vec<(Stamp, i128, f64)> {
    // dot -> (stamp, int sum, float sum in effect order)
    let mut by_dot: BTreeMap<(Origin, u64), CounterSum> = BTreeMap::new();
    let mut sorted: Vec<&&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| (e.stamp.origin, e.stamp.seq, e.pos));
    for e in sorted {
        if let Some((i, f)) = ops_of(e) {
            let slot = by_dot
                .entry((e.stamp.origin, e.stamp.seq))
                .or_insert((e.stamp, 0, None));
            slot.1 += i;
            slot.2 = Some(match slot.2 {
                None => f,
                Some(x) => x + f,
            });
        }
    }
    by_dot
        .into_values()
        .map(|(s, i, f)| (s, i, f.unwrap_or(0.0)))
        .collect()
}

fn float_sum(ctr: &[(Stamp, i128, f64)]) -> f64 {
    let mut total = 0.0f64;
    let mut cur: Option<Origin> = None;
    let mut part = 0.0f64;
    for (s, _, f) in ctr {
        if cur != Some(s.origin) {
            total += part;
            part = 0.0;
            cur = Some(s.origin);
        }
        part += *f;
    }
    total + part
}

fn reg_winner<'a, T>(regs: impl Iterator<Item = (Stamp, &'a T)>) -> Option<&'a T> {
    regs.max_by_key(|(s, _)| *s).map(|(_, v)| v)
}

/// Cell::value: register base plus counter. Float increments are exact
/// changes: their sum, in any order, is rounded and shown as INCRBYFLOAT
/// shows a value.
fn cell_value(entries: &[&Entry]) -> Option<Bytes> {
    let base = reg_winner(entries.iter().filter_map(|e| match &e.part {
        Part::Reg(v) => Some((e.stamp, v)),
        _ => None,
    }));
    let ints: Vec<i128> = entries
        .iter()
        .filter_map(|e| match e.part {
            Part::Ctr(i) => Some(i),
            _ => None,
        })
        .collect();
    let floats: Vec<&Exact> = entries
        .iter()
        .filter_map(|e| match &e.part {
            Part::FCtr(d) => Some(d),
            _ => None,
        })
        .collect();
    if ints.is_empty() && floats.is_empty() {
        return base.cloned();
    }
    let int_sum: i128 = ints.iter().sum();
    if !floats.is_empty() {
        let b = match base {
            None => Exact::zero(),
            Some(b) => match ld::parse(b) {
                Some(Ld::Finite(v)) => v,
                _ => return Some(b.clone()),
            },
        };
        let total = floats
            .iter()
            .fold(b.add(&Exact::from_int(int_sum)), |t, d| t.add(d));
        return Some(Bytes::from(ld::show(&total)));
    }
    let b: i128 = match base {
        None => 0,
        Some(b) => match num::parse_int(b) {
            Some(i) => i as i128,
            None => return Some(b.clone()),
        },
    };
    Some(Bytes::from((b + int_sum).to_string()))
}

fn show(survivors: &[&Entry]) -> Option<Expected> {
    let of = |pred: &dyn Fn(&Slot) -> bool| -> Vec<&Entry> {
        survivors
            .iter()
            .copied()
            .filter(|e| pred(&e.slot))
            .collect()
    };
    let strs = of(&|s| *s == Slot::Str);
    let hlls = of(&|s| *s == Slot::Hll);
    let fields = of(&|s| matches!(s, Slot::Field(_)));
    let members = of(&|s| matches!(s, Slot::Member(_)));
    let zs = of(&|s| matches!(s, Slot::ZMember(_)));
    let zadds: Vec<&Entry> = zs
        .iter()
        .copied()
        .filter(|e| matches!(e.part, Part::Dot))
        .collect();
    // A list element shows while its push survives; its LSET values only
    // while it does.
    let live: BTreeSet<&Vec<Level>> = survivors
        .iter()
        .filter_map(|e| match (&e.slot, &e.part) {
            (Slot::Elem(p), Part::Elem(_)) => Some(p),
            _ => None,
        })
        .collect();
    let elems: Vec<&Entry> = survivors
        .iter()
        .copied()
        .filter(|e| matches!(&e.slot, Slot::Elem(p) if live.contains(p)))
        .collect();
    let ttl = of(&|s| *s == Slot::Ttl);
    let max = |v: &[&Entry]| v.iter().map(|e| e.stamp).max();
    let mut best: Option<(Stamp, Kind)> = None;
    for (k, s) in [
        (Kind::String, max(&strs).max(max(&hlls))),
        (Kind::Hash, max(&fields)),
        (Kind::Set, max(&members)),
        (Kind::ZSet, max(&zadds)),
        (Kind::List, max(&elems)),
    ] {
        if let Some(s) = s {
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, k));
            }
        }
    }
    let (_, kind) = best?;
    let value = match kind {
        // Between a string and a HyperLogLog, the greater stamp shows; the
        // registers are the max of every surviving raise.
        Kind::String if max(&hlls) > max(&strs) => {
            let mut regs: BTreeMap<u16, u8> = BTreeMap::new();
            for e in &hlls {
                if let Part::Raise(pairs) = &e.part {
                    for &(i, r) in pairs {
                        if r > 0 && usize::from(i) < 16384 {
                            let slot = regs.entry(i).or_insert(0);
                            *slot = (*slot).max(r);
                        }
                    }
                }
            }
            Shown::Hll(regs)
        }
        Kind::String => Shown::Str(cell_value(&strs)?),
        Kind::Hash => {
            let mut by: BTreeMap<Bytes, Vec<&Entry>> = BTreeMap::new();
            for e in fields {
                if let Slot::Field(f) = &e.slot {
                    by.entry(f.clone()).or_default().push(e);
                }
            }
            Shown::Hash(
                by.into_iter()
                    .filter_map(|(f, es)| Some((f, cell_value(&es)?)))
                    .collect(),
            )
        }
        Kind::Set => Shown::Set(
            members
                .iter()
                .filter_map(|e| match &e.slot {
                    Slot::Member(m) => Some(m.clone()),
                    _ => None,
                })
                .collect(),
        ),
        Kind::ZSet => {
            let mut by: BTreeMap<Bytes, Vec<&Entry>> = BTreeMap::new();
            for e in zs {
                if let Slot::ZMember(m) = &e.slot {
                    by.entry(m.clone()).or_default().push(e);
                }
            }
            let mut out = BTreeMap::new();
            for (m, es) in by {
                if !es.iter().any(|e| matches!(e.part, Part::Dot)) {
                    continue;
                }
                let base = reg_winner(es.iter().filter_map(|e| match &e.part {
                    Part::ZReg(s) => Some((e.stamp, s)),
                    _ => None,
                }))
                .copied()
                .unwrap_or(0.0);
                let ctr = merged_counter(&es, |e| match e.part {
                    Part::ZCtr(f) => Some((0, f)),
                    _ => None,
                });
                let s = if ctr.is_empty() {
                    base
                } else {
                    base + float_sum(&ctr)
                };
                let s = if s.is_nan() || s == 0.0 { 0.0 } else { s };
                out.insert(m, s.to_bits());
            }
            Shown::ZSet(out)
        }
        Kind::List => {
            let mut by: BTreeMap<&Vec<Level>, Vec<&Entry>> = BTreeMap::new();
            for e in &elems {
                if let Slot::Elem(p) = &e.slot {
                    by.entry(p).or_default().push(e);
                }
            }
            Shown::List(
                by.into_values()
                    .filter_map(|es| {
                        let set = reg_winner(es.iter().filter_map(|e| match &e.part {
                            Part::Reg(v) => Some((e.stamp, v)),
                            _ => None,
                        }));
                        set.or_else(|| {
                            es.iter().find_map(|e| match &e.part {
                                Part::Elem(v) => Some(v),
                                _ => None,
                            })
                        })
                        .cloned()
                    })
                    .collect(),
            )
        }
    };
    let mut deadline: Option<u64> = None;
    let mut persisted = false;
    for e in &ttl {
        match e.part {
            Part::Ttl(None) => persisted = true,
            Part::Ttl(Some(d)) => deadline = Some(deadline.map_or(d, |x| x.max(d))),
            _ => {}
        }
    }
    Some(Expected {
        kind,
        value,
        deadline: if persisted { None } else { deadline },
    })
}
