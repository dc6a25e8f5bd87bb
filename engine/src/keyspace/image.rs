//! Canonical images of rows: the encoding used by checkpoints, snapshots and
//! digests. Same state, same bytes: every collection is sorted.

use super::row::Row;
use super::value::hll::HllEntry;
use super::value::list::{Block, Level, ListSlot};
use super::value::{Cell, HashSlot, HllSlot, Map, SetSlot, ZMember, ZSetSlot};
use crate::crdt::counter::{CounterEntry, ExactEntry, Lows};
use crate::crdt::{join_dots, Counter, Dots, MvReg, Stamp};
use crate::hlc::Hlc;
use crate::id::{OpId, VersionVector};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CellImage {
    pub reg: Vec<(Stamp, Bytes)>,
    pub ctr: Vec<CounterEntry>,
    /// Float increments (INCRBYFLOAT, HINCRBYFLOAT), exact.
    pub fctr: Vec<ExactEntry>,
    /// Folded entries of `ctr` and `fctr`: `(origin, lo)` (see
    /// `crdt::counter`).
    pub ctr_lo: Lows,
    pub fctr_lo: Lows,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ZMemberImage {
    pub adds: Vec<Stamp>,
    pub reg: Vec<(Stamp, f64)>,
    pub ctr: Vec<CounterEntry>,
    pub ctr_lo: Lows,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RowImage {
    pub string: Option<CellImage>,
    pub hash: Vec<(Bytes, CellImage)>,
    pub set: Vec<(Bytes, Vec<Stamp>)>,
    pub zset: Vec<(Bytes, ZMemberImage)>,
    pub expiry: Vec<(Stamp, Option<u64>)>,
    /// Maximal slices of runs, in list order (see [`RunImage`]).
    pub list: Vec<RunImage>,
    /// HyperLogLog entries, sorted by dot. Encoded after the fields above,
    /// only when there are any, so a row without one has the bytes of
    /// format 6 (see [`RowImage::encode`]).
    #[serde(skip)]
    pub hll: Vec<HllEntry>,
}

/// A slice of one list run, canonical: live elements at both ends, and the
/// next slice in the list is of another run or not adjacent to it (blocks
/// split by an insert since removed are joined again here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunImage {
    pub prefix: Vec<Level>,
    pub d: i64,
    pub op: OpId,
    pub hlc: Hlc,
    pub start: u32,
    /// `None`: removed.
    pub vals: Vec<Option<Bytes>>,
    /// LSET registers, by element index, sorted.
    pub sets: Vec<(u32, Vec<(Stamp, Bytes)>)>,
}

fn list_image(l: &ListSlot) -> Vec<RunImage> {
    let mut out: Vec<RunImage> = Vec::new();
    for b in &l.blocks {
        let sets: Vec<(u32, Vec<(Stamp, Bytes)>)> = b
            .sets
            .as_ref()
            .map(|s| {
                s.iter()
                    .map(|(i, r)| (*i, r.sorted_entries().into_iter().cloned().collect()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(prev) = out.last_mut() {
            let end = prev.start as u64 + prev.vals.len() as u64;
            if prev.op == b.op
                && prev.d == b.d
                && *prev.prefix == *b.prefix
                && end <= b.start as u64
            {
                let gap = (b.start as u64 - end) as usize;
                prev.vals.resize(prev.vals.len() + gap, None);
                prev.vals.extend(b.vals.iter().cloned());
                prev.sets.extend(sets);
                continue;
            }
        }
        out.push(RunImage {
            prefix: b.prefix.to_vec(),
            d: b.d,
            op: b.op,
            hlc: b.hlc,
            start: b.start,
            vals: b.vals.iter().cloned().collect(),
            sets,
        });
    }
    out
}

fn list_from(runs: Vec<RunImage>) -> ListSlot {
    let blocks = runs
        .into_iter()
        .map(|r| {
            let live = r.vals.iter().filter(|v| v.is_some()).count() as u32;
            let sets: std::collections::BTreeMap<u32, MvReg<Bytes>> = r
                .sets
                .into_iter()
                .map(|(i, e)| (i, MvReg::from_entries(e)))
                .collect();
            Block {
                prefix: r.prefix.into_boxed_slice(),
                d: r.d,
                op: r.op,
                hlc: r.hlc,
                start: r.start,
                vals: r.vals.into_iter().collect(),
                live,
                sets: (!sets.is_empty()).then(|| Box::new(sets)),
            }
        })
        .collect();
    ListSlot::from_blocks(blocks)
}

/// One list element of an image, for joins.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct ElemImage {
    prefix: Vec<Level>,
    d: i64,
    op: OpId,
    hlc: Hlc,
    i: u32,
    val: Bytes,
    reg: Vec<(Stamp, Bytes)>,
}

impl ElemImage {
    fn key(&self) -> impl Iterator<Item = Level> + '_ {
        self.prefix.iter().copied().chain(std::iter::once(Level {
            d: self.d,
            op: self.op,
            i: self.i,
        }))
    }
}

fn elems_of(runs: Vec<RunImage>) -> Vec<ElemImage> {
    let mut out = Vec::new();
    for r in runs {
        for (k, v) in r.vals.into_iter().enumerate() {
            let Some(val) = v else { continue };
            let i = r.start + k as u32;
            let reg = r
                .sets
                .iter()
                .find(|(x, _)| *x == i)
                .map(|(_, e)| e.clone())
                .unwrap_or_default();
            out.push(ElemImage {
                prefix: r.prefix.clone(),
                d: r.d,
                op: r.op,
                hlc: r.hlc,
                i,
                val,
                reg,
            });
        }
    }
    out
}

fn runs_of(elems: Vec<ElemImage>) -> Vec<RunImage> {
    let mut out: Vec<RunImage> = Vec::new();
    for e in elems {
        if let Some(prev) = out.last_mut() {
            let end = prev.start as u64 + prev.vals.len() as u64;
            if prev.op == e.op && prev.d == e.d && prev.prefix == e.prefix && end <= e.i as u64 {
                let gap = (e.i as u64 - end) as usize;
                prev.vals.resize(prev.vals.len() + gap, None);
                prev.vals.push(Some(e.val));
                if !e.reg.is_empty() {
                    prev.sets.push((e.i, e.reg));
                }
                continue;
            }
        }
        let sets = if e.reg.is_empty() {
            Vec::new()
        } else {
            vec![(e.i, e.reg)]
        };
        out.push(RunImage {
            prefix: e.prefix,
            d: e.d,
            op: e.op,
            hlc: e.hlc,
            start: e.i,
            vals: vec![Some(e.val)],
            sets,
        });
    }
    out
}

/// Merges two position-sorted element lists; `join` decides what an element
/// on one side (or both) becomes.
fn merge_elems(
    a: Vec<ElemImage>,
    b: Vec<ElemImage>,
    mut join: impl FnMut(Option<ElemImage>, Option<ElemImage>) -> Option<ElemImage>,
) -> Vec<ElemImage> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let mut ai = a.into_iter().peekable();
    let mut bi = b.into_iter().peekable();
    loop {
        let (x, y) = match (ai.peek(), bi.peek()) {
            (None, None) => break,
            (Some(_), None) => (ai.next(), None),
            (None, Some(_)) => (None, bi.next()),
            (Some(x), Some(y)) => match x.key().cmp(y.key()) {
                std::cmp::Ordering::Less => (ai.next(), None),
                std::cmp::Ordering::Greater => (None, bi.next()),
                std::cmp::Ordering::Equal => (ai.next(), bi.next()),
            },
        };
        if let Some(e) = join(x, y) {
            out.push(e);
        }
    }
    out
}

/// The visible value of an element after joining its LSET registers.
fn with_reg(mut e: ElemImage, reg: MvReg<Bytes>) -> ElemImage {
    if let Some(v) = reg.value() {
        e.val = v.clone();
    }
    e.reg = reg.sorted_entries().into_iter().cloned().collect();
    e
}

fn sorted_dots(d: &Dots) -> Vec<Stamp> {
    let mut v: Vec<Stamp> = d.iter().copied().collect();
    v.sort_by_key(|s| s.dot);
    v
}

fn cell_image(c: &Cell) -> CellImage {
    CellImage {
        reg: c.reg.sorted_entries().into_iter().cloned().collect(),
        ctr: c.ctr.entries().copied().collect(),
        fctr: c.ctr.exact_entries().cloned().collect(),
        ctr_lo: c.ctr.lows().to_vec(),
        fctr_lo: c.ctr.exact_lows().to_vec(),
    }
}

fn cell_from(i: CellImage) -> Cell {
    Cell {
        reg: MvReg::from_entries(i.reg),
        ctr: Counter::from_parts(i.ctr, i.ctr_lo, i.fctr, i.fctr_lo),
    }
}

/// One entry per origin: the sums of its entries (the float one a left fold
/// from 0.0 in seq order, as the counter sums it), the newest stamp, and the
/// oldest seq they stand for. A counter folded and one not folded give the
/// same.
fn per_origin<E: Clone>(
    entries: &mut Vec<E>,
    lows: &mut Lows,
    dot: fn(&E) -> OpId,
    first: fn(&E) -> E,
    merge: fn(&mut E, &E),
) {
    let mut out: Vec<E> = Vec::new();
    let mut out_lows = Lows::new();
    for e in entries.iter() {
        let d = dot(e);
        match out.last_mut() {
            Some(l) if dot(l).origin == d.origin => merge(l, e),
            _ => {
                let lo = lows.iter().find(|l| l.0 == d.origin).map_or(d.seq, |l| l.1);
                out_lows.push((d.origin, lo));
                out.push(first(e));
            }
        }
    }
    *entries = out;
    *lows = out_lows;
}

fn per_origin_ctr(entries: &mut Vec<CounterEntry>, lows: &mut Lows) {
    per_origin(
        entries,
        lows,
        |e| e.stamp.dot,
        |e| CounterEntry {
            float: 0.0 + e.float,
            ..*e
        },
        |l, e| {
            l.int += e.int;
            l.float += e.float;
            l.stamp.fold(&e.stamp);
        },
    );
}

fn per_origin_exact(entries: &mut Vec<ExactEntry>, lows: &mut Lows) {
    per_origin(
        entries,
        lows,
        |e| e.stamp.dot,
        ExactEntry::clone,
        |l, e| {
            l.delta = l.delta.add(&e.delta);
            l.stamp.fold(&e.stamp);
        },
    );
}

/// A HyperLogLog's entries as one: the register-wise max under the
/// greatest stamp. A site alone folds the entries a PFADD saw into it (see
/// `HllSlot::raise`), another site keeps them apart until a later write
/// drops what it dominates; both show the same registers and hash alike.
fn one_hll_entry(entries: Vec<HllEntry>) -> Vec<HllEntry> {
    let mut it = entries.into_iter();
    let Some(mut one) = it.next() else {
        return Vec::new();
    };
    let mut regs: std::collections::BTreeMap<u16, u8> = one.regs.drain(..).collect();
    for e in it {
        one.stamp.fold(&e.stamp);
        for (i, r) in e.regs {
            let at = regs.entry(i).or_insert(r);
            *at = (*at).max(r);
        }
    }
    one.regs = regs.into_iter().collect();
    vec![one]
}

impl RowImage {
    /// The form digests hash: counters as one entry per origin, so sites
    /// that folded at different moments (or not at all) hash alike. Two
    /// states that differ only in how an origin's sum splits between
    /// entries hash alike too: only a damaged row can differ that way.
    pub fn canonical(mut self) -> RowImage {
        let cell = |c: &mut CellImage| {
            per_origin_ctr(&mut c.ctr, &mut c.ctr_lo);
            per_origin_exact(&mut c.fctr, &mut c.fctr_lo);
        };
        if let Some(c) = &mut self.string {
            cell(c);
        }
        for (_, c) in &mut self.hash {
            cell(c);
        }
        for (_, z) in &mut self.zset {
            per_origin_ctr(&mut z.ctr, &mut z.ctr_lo);
        }
        self.hll = one_hll_entry(std::mem::take(&mut self.hll));
        self
    }

    pub fn of(row: &Row) -> RowImage {
        let mut hash: Vec<(Bytes, CellImage)> = row
            .hash
            .as_ref()
            .map(|h| {
                h.fields
                    .iter()
                    .map(|(f, c)| (f.clone(), cell_image(c)))
                    .collect()
            })
            .unwrap_or_default();
        hash.sort_by(|a, b| a.0.cmp(&b.0));
        let mut set: Vec<(Bytes, Vec<Stamp>)> = row
            .set
            .as_ref()
            .map(|s| {
                s.members
                    .iter()
                    .map(|(m, d)| (m.clone(), sorted_dots(d)))
                    .collect()
            })
            .unwrap_or_default();
        set.sort_by(|a, b| a.0.cmp(&b.0));
        let mut zset: Vec<(Bytes, ZMemberImage)> = row
            .zset
            .as_ref()
            .map(|z| {
                z.members
                    .iter()
                    .map(|(m, zm)| {
                        (
                            m.clone(),
                            ZMemberImage {
                                adds: sorted_dots(&zm.adds),
                                reg: zm.reg.sorted_entries().into_iter().cloned().collect(),
                                ctr: zm.ctr.entries().copied().collect(),
                                ctr_lo: zm.ctr.lows().to_vec(),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        zset.sort_by(|a, b| a.0.cmp(&b.0));
        RowImage {
            string: row.string.as_ref().map(|c| cell_image(c)),
            hash,
            set,
            zset,
            list: row.list.as_ref().map(|l| list_image(l)).unwrap_or_default(),
            hll: row
                .hll
                .as_ref()
                .map(|h| h.sorted_entries())
                .unwrap_or_default(),
            expiry: row
                .expiry
                .as_ref()
                .map(|e| e.sorted_entries().into_iter().cloned().collect())
                .unwrap_or_default(),
        }
    }

    pub fn into_row(self) -> Row {
        let mut row = Row::default();
        if let Some(c) = self.string {
            let c = cell_from(c);
            if !c.is_empty() {
                row.string = Some(Box::new(c));
            }
        }
        if !self.hash.is_empty() {
            let mut h = HashSlot::default();
            for (f, c) in self.hash {
                let c = cell_from(c);
                if !c.is_empty() {
                    h.fields.insert(f, c);
                }
            }
            if !h.fields.is_empty() {
                row.hash = Some(Box::new(h));
            }
        }
        if !self.set.is_empty() {
            let mut s = SetSlot::default();
            for (m, d) in self.set {
                if !d.is_empty() {
                    s.members.insert(m, d.into_iter().collect());
                }
            }
            if !s.members.is_empty() {
                row.set = Some(Box::new(s));
            }
        }
        if !self.zset.is_empty() {
            let mut z = ZSetSlot::default();
            for (m, i) in self.zset {
                if !i.adds.is_empty() {
                    z.members.insert(
                        m,
                        ZMember {
                            adds: i.adds.into_iter().collect(),
                            reg: MvReg::from_entries(i.reg),
                            ctr: Counter::from_parts(i.ctr, i.ctr_lo, Vec::new(), Vec::new()),
                        },
                    );
                }
            }
            if !z.members.is_empty() {
                z.reindex();
                row.zset = Some(Box::new(z));
            }
        }
        if !self.list.is_empty() {
            let l = list_from(self.list);
            if !l.is_empty() {
                row.list = Some(Box::new(l));
            }
        }
        if !self.expiry.is_empty() {
            row.expiry = Some(Box::new(MvReg::from_entries(self.expiry)));
        }
        if !self.hll.is_empty() {
            row.hll = Some(Box::new(HllSlot::from_entries(self.hll)));
        }
        row
    }

    /// Canonical bytes: the postcard of the fields, then, when the row
    /// holds a HyperLogLog, the postcard of its entries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = postcard::to_allocvec(self).unwrap_or_default();
        if !self.hll.is_empty() {
            if let Ok(h) = postcard::to_allocvec(&self.hll) {
                out.extend_from_slice(&h);
            }
        }
        out
    }

    /// The bytes a checkpoint stores for row `key` of database `db`: the
    /// canonical image followed by a CRC-32 of the database, the key and the
    /// image, so that damage on disk (or a row moved to another key) is found
    /// at open instead of loaded as another value.
    pub fn encode_sealed(&self, db: u8, key: &[u8]) -> Vec<u8> {
        let mut out = self.encode();
        let crc = seal_crc(db, key, &out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Checks and decodes what [`RowImage::encode_sealed`] stored.
    pub fn decode_sealed(db: u8, key: &[u8], stored: &[u8]) -> Result<RowImage, String> {
        let Some(split) = stored.len().checked_sub(4) else {
            return Err(format!("{} bytes, shorter than its checksum", stored.len()));
        };
        let (image, crc) = stored.split_at(split);
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if seal_crc(db, key, image) != want {
            return Err("checksum mismatch".to_owned());
        }
        RowImage::decode(image).map_err(|e| e.to_string())
    }

    /// Decodes untrusted bytes (disk, peer) and checks the canonical form:
    /// members sorted and unique, no empty dot sets.
    pub fn decode(bytes: &[u8]) -> Result<RowImage, postcard::Error> {
        let (mut img, rest): (RowImage, &[u8]) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() {
            let (hll, rest): (Vec<HllEntry>, &[u8]) = postcard::take_from_bytes(rest)?;
            let canonical = !hll.is_empty()
                && hll.windows(2).all(|w| w[0].stamp.dot < w[1].stamp.dot)
                && hll.iter().all(|e| {
                    e.regs.windows(2).all(|w| w[0].0 < w[1].0)
                        && e.regs
                            .iter()
                            .all(|&(i, r)| usize::from(i) < crate::redis::hll::REGISTERS && r > 0)
                });
            if !rest.is_empty() || !canonical {
                return Err(postcard::Error::DeserializeBadEncoding);
            }
            img.hll = hll;
        }
        fn sorted_unique<T>(v: &[(Bytes, T)]) -> bool {
            v.windows(2).all(|w| w[0].0 < w[1].0)
        }
        let ok = sorted_unique(&img.hash)
            && sorted_unique(&img.set)
            && sorted_unique(&img.zset)
            && img.set.iter().all(|(_, d)| !d.is_empty())
            && img.zset.iter().all(|(_, z)| !z.adds.is_empty())
            && list_image_ok(&img.list);
        if ok {
            Ok(img)
        } else {
            Err(postcard::Error::DeserializeBadEncoding)
        }
    }
}

/// A list image is canonical: live ends, no index past `u32`, sorted
/// registers, runs in position order.
fn list_image_ok(runs: &[RunImage]) -> bool {
    let each = runs.iter().all(|r| {
        matches!(r.vals.first(), Some(Some(_)))
            && matches!(r.vals.last(), Some(Some(_)))
            && (r.start as u64 + r.vals.len() as u64) <= u32::MAX as u64
            && r.sets.windows(2).all(|w| w[0].0 < w[1].0)
            && r.sets.iter().all(|(i, e)| {
                *i >= r.start
                    && ((*i - r.start) as usize) < r.vals.len()
                    && !e.is_empty()
                    && r.vals[(*i - r.start) as usize].is_some()
            })
    });
    let key = |r: &RunImage, i: u32| -> Vec<Level> {
        let mut k = r.prefix.clone();
        k.push(Level {
            d: r.d,
            op: r.op,
            i,
        });
        k
    };
    // Only once every run is known to be non-empty and within `u32`: the
    // last index below is then `start + len - 1` without overflow.
    if !each {
        return false;
    }
    runs.windows(2).all(|w| {
        let last = key(&w[0], w[0].start + (w[0].vals.len() as u32 - 1));
        key(&w[1], w[1].start) > last
    })
}

/// State-based join of a local row with a remote one (snapshot merge): an entry
/// present on one side only survives unless the other side's version vector
/// covers its dot (then the other side removed it).
pub fn join_rows(
    local: &Row,
    remote: &Row,
    local_vv: &VersionVector,
    remote_vv: &VersionVector,
) -> Row {
    let a = RowImage::of(local);
    let b = RowImage::of(remote);
    let join_cell = |x: Option<CellImage>, y: Option<CellImage>| -> Option<CellImage> {
        let x = x.unwrap_or_default();
        let y = y.unwrap_or_default();
        let mut reg = MvReg::from_entries(x.reg);
        reg.join(&MvReg::from_entries(y.reg), local_vv, remote_vv);
        let mut ctr = Counter::from_parts(x.ctr, x.ctr_lo, x.fctr, x.fctr_lo);
        ctr.join(
            &Counter::from_parts(y.ctr, y.ctr_lo, y.fctr, y.fctr_lo),
            local_vv,
            remote_vv,
        );
        let c = CellImage {
            reg: reg.sorted_entries().into_iter().cloned().collect(),
            ctr: ctr.entries().copied().collect(),
            fctr: ctr.exact_entries().cloned().collect(),
            ctr_lo: ctr.lows().to_vec(),
            fctr_lo: ctr.exact_lows().to_vec(),
        };
        if c.reg.is_empty() && c.ctr.is_empty() && c.fctr.is_empty() {
            None
        } else {
            Some(c)
        }
    };
    let mut out = RowImage {
        string: join_cell(a.string, b.string),
        ..Default::default()
    };
    out.hash = merge_sorted(a.hash, b.hash, join_cell);
    out.set = merge_sorted(a.set, b.set, |x, y| {
        let mut d: Dots = x.unwrap_or_default().into_iter().collect();
        join_dots(&mut d, &y.unwrap_or_default(), local_vv, remote_vv);
        if d.is_empty() {
            None
        } else {
            Some(d.into_iter().collect())
        }
    });
    out.zset = merge_sorted(a.zset, b.zset, |x, y| {
        let x = x.unwrap_or_default();
        let y = y.unwrap_or_default();
        let mut adds: Dots = x.adds.into_iter().collect();
        join_dots(&mut adds, &y.adds, local_vv, remote_vv);
        if adds.is_empty() {
            return None;
        }
        let mut reg = MvReg::from_entries(x.reg);
        reg.join(&MvReg::from_entries(y.reg), local_vv, remote_vv);
        let mut ctr = Counter::from_parts(x.ctr, x.ctr_lo, Vec::new(), Vec::new());
        ctr.join(
            &Counter::from_parts(y.ctr, y.ctr_lo, Vec::new(), Vec::new()),
            local_vv,
            remote_vv,
        );
        let mut adds: Vec<Stamp> = adds.into_iter().collect();
        adds.sort_by_key(|s| s.dot);
        Some(ZMemberImage {
            adds,
            reg: reg.sorted_entries().into_iter().cloned().collect(),
            ctr: ctr.entries().copied().collect(),
            ctr_lo: ctr.lows().to_vec(),
        })
    });
    let mut exp = MvReg::from_entries(a.expiry);
    exp.join(&MvReg::from_entries(b.expiry), local_vv, remote_vv);
    out.expiry = exp.sorted_entries().into_iter().cloned().collect();
    // An element on one side only was removed by the other if that side's
    // vector covers its op; one on both sides joins its LSET registers.
    out.list = runs_of(merge_elems(
        elems_of(a.list),
        elems_of(b.list),
        |x, y| match (x, y) {
            (Some(x), Some(y)) => {
                let mut reg = MvReg::from_entries(x.reg.clone());
                reg.join(&MvReg::from_entries(y.reg), local_vv, remote_vv);
                Some(with_reg(x, reg))
            }
            (Some(x), None) => (!remote_vv.covers(x.op)).then_some(x),
            (None, Some(y)) => (!local_vv.covers(y.op)).then_some(y),
            (None, None) => None,
        },
    ));
    out.hll = join_hll(a.hll, b.hll, local_vv, remote_vv);
    let mut row = out.into_row();
    keep_local_order(&mut row, local);
    row
}

/// Joins HyperLogLog entries: an entry on one side only survives unless the
/// other side's vector covers it; an entry on both sides keeps the pairs both
/// still hold (a side drops a pair only for a newer entry that had seen it,
/// which the join keeps too).
fn join_hll(
    a: Vec<HllEntry>,
    b: Vec<HllEntry>,
    local_vv: &VersionVector,
    remote_vv: &VersionVector,
) -> Vec<HllEntry> {
    let mut out: Vec<HllEntry> = Vec::with_capacity(a.len().max(b.len()));
    for x in &a {
        match b.iter().find(|y| y.stamp.dot == x.stamp.dot) {
            Some(y) => out.push(HllEntry {
                stamp: x.stamp,
                regs: x
                    .regs
                    .iter()
                    .filter(|p| y.regs.binary_search(p).is_ok())
                    .copied()
                    .collect(),
            }),
            None if !remote_vv.covers(x.stamp.dot) => out.push(x.clone()),
            None => {}
        }
    }
    for y in b {
        if !local_vv.covers(y.stamp.dot) && !a.iter().any(|x| x.stamp.dot == y.stamp.dot) {
            out.push(y);
        }
    }
    out.sort_by_key(|e| e.stamp.dot);
    out
}

/// Puts the entries of a joined row's collections that the local row held
/// first, in the local order, and the others after them: no entry moves to a
/// higher position than it had, so an HSCAN/SSCAN/ZSCAN in progress still
/// returns every entry present throughout (see `cmd::scan_window`). The order
/// is not part of the state (images sort), so sites still converge.
fn keep_local_order(row: &mut Row, local: &Row) {
    fn reorder<V, W>(joined: &mut Map<V>, local: Option<&Map<W>>) {
        let Some(local) = local else { return };
        joined.sort_by_cached_key(|k, _| local.get_index_of(k).unwrap_or(usize::MAX));
    }
    if let Some(h) = &mut row.hash {
        reorder(&mut h.fields, local.hash.as_ref().map(|l| &l.fields));
    }
    if let Some(s) = &mut row.set {
        reorder(&mut s.members, local.set.as_ref().map(|l| &l.members));
    }
    if let Some(z) = &mut row.zset {
        reorder(&mut z.members, local.zset.as_ref().map(|l| &l.members));
    }
}

/// Merges two key-sorted lists, joining values present on either side.
fn merge_sorted<T>(
    a: Vec<(Bytes, T)>,
    b: Vec<(Bytes, T)>,
    mut join: impl FnMut(Option<T>, Option<T>) -> Option<T>,
) -> Vec<(Bytes, T)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let mut ai = a.into_iter().peekable();
    let mut bi = b.into_iter().peekable();
    loop {
        let next = match (ai.peek(), bi.peek()) {
            (None, None) => break,
            (Some(_), None) => ai.next().map(|(k, v)| (k, Some(v), None)),
            (None, Some(_)) => bi.next().map(|(k, v)| (k, None, Some(v))),
            (Some(x), Some(y)) => match x.0.cmp(&y.0) {
                std::cmp::Ordering::Less => ai.next().map(|(k, v)| (k, Some(v), None)),
                std::cmp::Ordering::Greater => bi.next().map(|(k, v)| (k, None, Some(v))),
                std::cmp::Ordering::Equal => {
                    let (k, v) = match ai.next() {
                        Some(p) => p,
                        None => break,
                    };
                    let w = bi.next().map(|p| p.1);
                    Some((k, Some(v), w))
                }
            },
        };
        if let Some((k, x, y)) = next {
            if let Some(v) = join(x, y) {
                out.push((k, v));
            }
        }
    }
    out
}

/// The anti-entropy repair join of two rows that were both built from the
/// ops of `cut` alone (no op beyond it touched either). In a correct system
/// they are equal; where they are not, one side lost or damaged state, and
/// the join keeps every entry either side holds:
/// - an entry on one side only is kept (the other side lost it: no op of
///   `cut` can have removed it at one site and not at the other);
/// - the same dot with two payloads: the greater canonical encoding wins,
///   the same choice at every site;
/// - an entry whose dot `cut` does not cover is dropped: no op of `cut`
///   wrote it, so it was written behind the engine's back.
pub fn union_rows(local: &Row, remote: &Row, cut: &VersionVector) -> Row {
    let a = RowImage::of(local);
    let b = RowImage::of(remote);
    let union_cell = |x: Option<CellImage>, y: Option<CellImage>| -> Option<CellImage> {
        let x = x.unwrap_or_default();
        let y = y.unwrap_or_default();
        let (ctr, ctr_lo) = union_ranged(x.ctr, x.ctr_lo, y.ctr, y.ctr_lo, |e| e.stamp.dot, cut);
        let (fctr, fctr_lo) =
            union_ranged(x.fctr, x.fctr_lo, y.fctr, y.fctr_lo, |e| e.stamp.dot, cut);
        let c = CellImage {
            reg: union_by_dot(x.reg, y.reg, |e| e.0.dot, cut),
            ctr,
            fctr,
            ctr_lo,
            fctr_lo,
        };
        if c.reg.is_empty() && c.ctr.is_empty() && c.fctr.is_empty() {
            None
        } else {
            Some(c)
        }
    };
    let mut out = RowImage {
        string: union_cell(a.string, b.string),
        ..Default::default()
    };
    out.hash = merge_sorted(a.hash, b.hash, union_cell);
    out.set = merge_sorted(a.set, b.set, |x, y| {
        let d = union_by_dot(x.unwrap_or_default(), y.unwrap_or_default(), |s| s.dot, cut);
        (!d.is_empty()).then_some(d)
    });
    out.zset = merge_sorted(a.zset, b.zset, |x, y| {
        let x = x.unwrap_or_default();
        let y = y.unwrap_or_default();
        let adds = union_by_dot(x.adds, y.adds, |s| s.dot, cut);
        if adds.is_empty() {
            return None;
        }
        let (ctr, ctr_lo) = union_ranged(x.ctr, x.ctr_lo, y.ctr, y.ctr_lo, |e| e.stamp.dot, cut);
        Some(ZMemberImage {
            adds,
            reg: union_by_dot(x.reg, y.reg, |e| e.0.dot, cut),
            ctr,
            ctr_lo,
        })
    });
    out.expiry = union_by_dot(a.expiry, b.expiry, |e| e.0.dot, cut);
    out.list = runs_of(merge_elems(elems_of(a.list), elems_of(b.list), |x, y| {
        let e = match (x, y) {
            (Some(x), Some(y)) => {
                let reg = union_by_dot(x.reg.clone(), y.reg.clone(), |e| e.0.dot, cut);
                let (x, y) = (
                    with_reg(x, MvReg::from_entries(reg.clone())),
                    with_reg(y, MvReg::from_entries(reg)),
                );
                let ex = postcard::to_allocvec(&x).unwrap_or_default();
                let ey = postcard::to_allocvec(&y).unwrap_or_default();
                if ex >= ey {
                    x
                } else {
                    y
                }
            }
            (Some(x), None) => x,
            (None, Some(y)) => y,
            (None, None) => return None,
        };
        cut.covers(e.op).then_some(e)
    }));
    out.hll = union_by_dot(a.hll, b.hll, |e| e.stamp.dot, cut);
    let mut row = out.into_row();
    // As in a full sync's join: an incremental scan of the key must not miss
    // a member the repair kept.
    keep_local_order(&mut row, local);
    row
}

/// Every entry of `a` and `b` whose dot `cut` covers, once per dot (the
/// greater canonical encoding where the two sides differ), sorted by dot.
fn union_by_dot<T: Serialize>(
    a: Vec<T>,
    b: Vec<T>,
    dot: impl Fn(&T) -> OpId,
    cut: &VersionVector,
) -> Vec<T> {
    let mut all: Vec<(OpId, Vec<u8>, T)> = a
        .into_iter()
        .chain(b)
        .filter(|e| cut.covers(dot(e)))
        .map(|e| (dot(&e), postcard::to_allocvec(&e).unwrap_or_default(), e))
        .collect();
    // Same dot: the greater encoding first, then the rest of that dot dropped.
    all.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| y.1.cmp(&x.1)));
    all.dedup_by(|later, first| later.0 == first.0);
    all.into_iter().map(|(_, _, e)| e).collect()
}

/// [`union_by_dot`] of counter entries with folded ones: per origin, the
/// folded entry that reaches furthest stands for every entry of that origin
/// at or below its dot on either side (they are folded into it, or were
/// removed before it was folded), so those are dropped rather than added to
/// it twice.
fn union_ranged<T: Serialize>(
    a: Vec<T>,
    a_lo: Lows,
    b: Vec<T>,
    b_lo: Lows,
    dot: fn(&T) -> OpId,
    cut: &VersionVector,
) -> (Vec<T>, Lows) {
    // Per origin: the furthest folded entry's seq, its lo, and which sides
    // hold it (bit 0: `a`, bit 1: `b`).
    let mut folds: Vec<(crate::id::Origin, u64, u64, u8)> = Vec::new();
    for (side, entries, lows) in [(1u8, &a, &a_lo), (2u8, &b, &b_lo)] {
        for &(o, lo) in lows {
            let Some(first) = entries.iter().find(|e| dot(e).origin == o) else {
                continue;
            };
            let hi = dot(first).seq;
            match folds.iter_mut().find(|f| f.0 == o) {
                Some(f) if f.1 < hi => *f = (o, hi, lo, side),
                Some(f) if f.1 == hi => {
                    f.2 = f.2.min(lo);
                    f.3 |= side;
                }
                Some(_) => {}
                None => folds.push((o, hi, lo, side)),
            }
        }
    }
    // A side keeps, of an origin with a fold, only what is above the fold,
    // and the fold itself if it holds it: a plain entry under the fold's
    // own dot on the other side is one of the increments folded into it.
    let keep = |side: u8, e: &T| {
        let d = dot(e);
        match folds.iter().find(|f| f.0 == d.origin) {
            None => true,
            Some(f) if f.3 & side != 0 => d.seq >= f.1,
            Some(f) => d.seq > f.1,
        }
    };
    let a: Vec<T> = a.into_iter().filter(|e| keep(1, e)).collect();
    let b: Vec<T> = b.into_iter().filter(|e| keep(2, e)).collect();
    let out = union_by_dot(a, b, dot, cut);
    let mut lows: Lows = folds
        .into_iter()
        .filter(|f| out.iter().any(|e| dot(e) == OpId::new(f.0, f.1)))
        .map(|f| (f.0, f.2))
        .collect();
    debug_assert!(lows.windows(2).all(|w| w[0].0 != w[1].0));
    lows.sort_by_key(|l| l.0);
    (out, lows)
}

/// CRC-32 of a checkpoint row: database, key length, key, image.
fn seal_crc(db: u8, key: &[u8], image: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[db]);
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(image);
    h.finalize()
}

#[cfg(test)]
mod list_image_tests {
    use super::*;
    use crate::id::Origin;

    fn run(start: u32, vals: Vec<Option<Bytes>>) -> RunImage {
        RunImage {
            prefix: Vec::new(),
            d: 1,
            op: OpId::new(Origin::new(1, 0), 1),
            hlc: Hlc::default(),
            start,
            vals,
            sets: Vec::new(),
        }
    }

    /// Bytes from a peer or the disk whose first run is empty at index 0
    /// are refused, not a subtraction that overflows.
    #[test]
    fn an_empty_run_in_an_untrusted_image_is_refused() {
        let img = RowImage {
            list: vec![run(0, Vec::new()), run(5, vec![Some(Bytes::from("x"))])],
            ..RowImage::default()
        };
        assert!(RowImage::decode(&img.encode()).is_err());
        let ok = RowImage {
            list: vec![run(0, vec![Some(Bytes::from("x"))])],
            ..RowImage::default()
        };
        assert!(RowImage::decode(&ok.encode()).is_ok());
    }
}

#[cfg(test)]
mod folded_counter_tests {
    use super::*;
    use crate::crdt::Ctx;
    use crate::id::Origin;

    /// A string row holding increments 1..=n of sites 1 and 2 (-1 each,
    /// +100 for the last: its plain entry then encodes greater than the
    /// fold of them all, so a repair that let the greater encoding of one
    /// dot win would keep the piece and lose the fold), folded as they come
    /// or not.
    fn row(n: u64, fold: bool) -> Row {
        let mut c = Counter::default();
        let none = VersionVector::new();
        for seq in 1..=n {
            for site in [1u16, 2] {
                let ctx = Ctx {
                    deps: &none,
                    own: OpId::new(Origin::new(site, 0), seq),
                    hlc: Hlc(seq * 10 + u64::from(site)),
                    fold,
                };
                c.add(&ctx, if seq == n { 100 } else { -1 }, 0.0);
            }
        }
        RowImage {
            string: Some(CellImage {
                ctr: c.entries().copied().collect(),
                ctr_lo: c.lows().to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into_row()
    }

    fn sum(r: &Row) -> i128 {
        r.string.as_ref().map_or(0, |c| c.ctr.int_sum())
    }

    #[test]
    fn repairs_and_joins_of_a_fold_and_its_pieces_count_each_increment_once() {
        let folded = row(50, true);
        let plain = row(50, false);
        assert_eq!(sum(&folded), 102);
        assert_eq!(sum(&plain), 102);
        let mut cut = VersionVector::new();
        cut.raise(Origin::new(1, 0), 50);
        cut.raise(Origin::new(2, 0), 50);
        for (x, y) in [(&folded, &plain), (&plain, &folded), (&folded, &folded)] {
            assert_eq!(sum(&union_rows(x, y, &cut)), 102, "repair union");
            assert_eq!(sum(&join_rows(x, y, &cut, &cut)), 102, "join");
        }
        assert_eq!(
            RowImage::of(&folded).canonical(),
            RowImage::of(&plain).canonical(),
            "digests see the same"
        );
    }
}

#[cfg(test)]
mod hll_digest_tests {
    use super::*;
    use crate::crdt::Ctx;
    use crate::id::Origin;

    /// Two PFADDs of one site, the second having seen the first, applied
    /// by a site alone (folded into one entry) and by a site with peers
    /// (kept apart, the first losing only what the second dominates).
    fn row(fold: bool) -> Row {
        let mut h = HllSlot::default();
        let mut seen = VersionVector::new();
        let writes: [&[(u16, u8)]; 2] = [&[(1, 3), (7, 2)], &[(1, 2), (9, 4)]];
        for (seq, pairs) in (1u64..).zip(writes) {
            let deps = seen.clone();
            let own = OpId::new(Origin::new(1, 0), seq);
            h.raise(
                &Ctx {
                    deps: &deps,
                    own,
                    hlc: Hlc(seq * 10),
                    fold,
                },
                pairs,
            );
            seen.raise(own.origin, seq);
        }
        Row {
            hll: Some(Box::new(h)),
            ..Default::default()
        }
    }

    #[test]
    fn a_folded_and_an_unfolded_hyperloglog_hash_alike() {
        let (folded, plain) = (RowImage::of(&row(true)), RowImage::of(&row(false)));
        assert_ne!(folded, plain, "the states differ");
        assert_eq!(folded.clone().canonical(), plain.clone().canonical());
        let one = folded.canonical();
        assert_eq!(one.hll.len(), 1);
        assert_eq!(one.hll[0].regs, [(1, 3), (7, 2), (9, 4)]);
    }
}
