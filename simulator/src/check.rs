//! The checkers: the invariants of docs/simulator.md, held after every event and at
//! the end of a run.
//!
//! * **causality** — every site's op log (its local apply order) is scanned as
//!   the engine appends to it: each op's seq follows the previous one of its
//!   origin, and its deps (as its origin issued them) are already held.
//! * **exactly-once** — no op is logged twice at a site, and every op a site
//!   holds was issued by its origin (nothing is applied that no client wrote).
//! * **opid-uniqueness** — one OpId, one payload, for the whole run: the first
//!   encoding seen (at its origin, before any crash) is the only one allowed.
//! * **durability** — what a site claimed durable (its `durable_vv`, and the
//!   acks its sessions sent) is still there after it restarts; at the end, no
//!   op that some unwiped site ever held durably is missing.
//! * **convergence** — sites holding the same version vector have the same
//!   digest (audited periodically, and required at the end of the liveness phase).
//! * **oracle** — the final visible state of every key at every site equals
//!   [`crate::oracle::expected_state`] of the ops held.
//! * **invariants** — `Engine::invariants_hold()` after every event.

use crate::oracle::{expected_state, observed, Expected};
use crate::rng::fnv1a;
use crate::storage::SharedDisk;
use bytes::Bytes;
use chorus_engine::id::{OpId, Origin, VersionVector};
use chorus_engine::keyspace::image::RowImage;
use chorus_engine::keyspace::{ALL_DBS, DBS};
use chorus_engine::log::{decode_op, scan_record, RecordScan};
use chorus_engine::op::Op;
use chorus_engine::storage::{Storage, StorageError};
use chorus_engine::{Engine, Fsync};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A broken invariant: which check, and what exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub check: String,
    pub detail: String,
}

impl Violation {
    pub fn new(check: &str, detail: impl Into<String>) -> Violation {
        Violation {
            check: check.to_owned(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

/// Everything known about one OpId.
#[derive(Debug)]
struct OpRecord {
    hash: u64,
    /// Logged at its own origin first (a real client or expiry write).
    issued: bool,
    op: Op,
}

/// Reading position in one site's op log.
#[derive(Debug, Default)]
struct Scan {
    offset: u64,
    /// What the site held after the last record scanned.
    vv: VersionVector,
    origin: Option<Origin>,
}

pub struct Checker {
    registry: BTreeMap<OpId, OpRecord>,
    scans: Vec<Scan>,
    /// Per site: everything it claimed durable since its disk was last wiped.
    claims: Vec<VersionVector>,
    last_peer_ack: BTreeMap<(usize, usize), VersionVector>,
    max_incarnation: Vec<u32>,
    digests: Vec<Option<(VersionVector, String)>>,
    pub client_ops: u64,
}

impl Checker {
    pub fn new(sites: usize) -> Checker {
        Checker {
            registry: BTreeMap::new(),
            scans: (0..sites).map(|_| Scan::default()).collect(),
            claims: vec![VersionVector::new(); sites],
            last_peer_ack: BTreeMap::new(),
            max_incarnation: vec![0; sites],
            digests: vec![None; sites],
            client_ops: 0,
        }
    }

    pub fn max_incarnation(&self, s: usize) -> u32 {
        self.max_incarnation.get(s).copied().unwrap_or(0)
    }

    pub fn site_opened(&mut self, s: usize, engine: &Engine, log_len: u64) {
        let origin = engine.origin();
        self.scans[s] = Scan {
            offset: log_len,
            vv: engine.vv().clone(),
            origin: Some(origin),
        };
        self.max_incarnation[s] = self.max_incarnation[s].max(origin.incarnation);
        self.digests[s] = None;
    }

    pub fn site_wiped(&mut self, s: usize) {
        self.claims[s] = VersionVector::new();
        self.digests[s] = None;
    }

    /// After a restart: everything the site claimed durable must be back.
    pub fn after_restart(&self, s: usize, engine: &Engine) -> Result<(), Violation> {
        let claimed = &self.claims[s];
        if engine.vv().dominates(claimed) {
            return Ok(());
        }
        Err(Violation::new(
            "durability",
            format!(
                "site {} restarted holding {} but had claimed {} durable ({} ops lost)",
                s + 1,
                engine.vv(),
                claimed,
                claimed.ops_ahead_of(engine.vv())
            ),
        ))
    }

    pub fn note_durable(&mut self, s: usize, durable: &VersionVector) {
        self.claims[s].join(durable);
    }

    /// Site `s`'s session reports `peer`'s durable ack.
    pub fn note_peer_ack(&mut self, s: usize, peer: usize, acked: &VersionVector) {
        let last = self.last_peer_ack.entry((s, peer)).or_default();
        if last != acked {
            *last = acked.clone();
            self.claims[peer].join(acked);
        }
    }

    pub fn note_snapshot_merged(&mut self, s: usize, vv: &VersionVector) {
        self.scans[s].vv.join(vv);
    }

    pub fn note_client_op(&mut self, _op: OpId, _mode: Fsync) {
        self.client_ops += 1;
    }

    /// Registers as issued the ops site `s` wrote since its disk failed:
    /// they never reach its log (the append failed, or the storage refuses
    /// appends once poisoned), but they were applied, replicated and maybe
    /// answered, so peers may hold them. Read from the engine's backlog,
    /// newest first, down to the first one already known.
    pub fn note_unlogged_ops(&mut self, engine: &Engine) {
        let origin = engine.origin();
        let backlog = engine.backlog();
        for pos in (backlog.start()..backlog.end()).rev() {
            let Some(entry) = backlog.get(pos) else {
                continue;
            };
            if entry.id.origin != origin {
                continue;
            }
            if self.registry.contains_key(&entry.id) {
                break;
            }
            // An op in no log is held in memory (its only copy).
            let Some(bytes) = backlog.held(pos) else {
                continue;
            };
            let Ok(op) = decode_op(bytes) else {
                continue;
            };
            self.registry.insert(
                entry.id,
                OpRecord {
                    hash: fnv1a(bytes),
                    issued: true,
                    op,
                },
            );
        }
    }

    /// Reads the records site `s` appended since the last scan and checks them.
    pub fn scan_log(
        &mut self,
        s: usize,
        engine: &Engine,
        disk: &SharedDisk,
    ) -> Result<(), Violation> {
        let scan = &mut self.scans[s];
        let bytes = {
            let mut d = disk.lock();
            if d.poisoned().is_some() {
                // A disk fault the simulator injected (any other poisoning
                // fails the run where it happens): the log is read again
                // from here once the site restarts on a healthy disk.
                return Ok(());
            }
            if scan.offset < d.log_start() {
                scan.offset = d.log_start();
            }
            match d.log_read(scan.offset, usize::MAX) {
                Ok(b) => b,
                Err(StorageError::OutOfRange { .. }) => {
                    scan.offset = d.log_len();
                    Vec::new()
                }
                Err(e) => {
                    return Err(Violation::new(
                        "storage",
                        format!("site {}: reading its log failed: {e}", s + 1),
                    ))
                }
            }
        };
        let site = s + 1;
        let mut pos = 0usize;
        while pos < bytes.len() {
            let (payload, next) = match scan_record(&bytes, pos) {
                RecordScan::Record(p, n) => (p, n),
                RecordScan::Incomplete => break,
                RecordScan::Corrupt(why) => {
                    return Err(Violation::new(
                        "storage",
                        format!(
                            "site {site}: corrupt record at log offset {}: {why}",
                            scan.offset + pos as u64
                        ),
                    ))
                }
            };
            let op = decode_op(payload).map_err(|e| {
                Violation::new(
                    "storage",
                    format!("site {site}: undecodable op in its log: {e}"),
                )
            })?;
            let id = op.id;
            if scan.vv.covers(id) {
                return Err(Violation::new(
                    "exactly-once",
                    format!(
                        "site {site} applied op {id} a second time (it already held {})",
                        scan.vv
                    ),
                ));
            }
            let held = scan.vv.get(id.origin);
            if held + 1 != id.seq {
                return Err(Violation::new(
                    "causality",
                    format!(
                        "site {site} applied op {id} while holding only {}:{held} of its origin",
                        id.origin
                    ),
                ));
            }
            let deps = self.registry.get(&id).map_or(&op.deps, |r| &r.op.deps);
            if !scan.vv.dominates(deps) {
                return Err(Violation::new(
                    "causality",
                    format!(
                        "site {site} applied op {id} before its deps: needs {deps}, held {}",
                        scan.vv
                    ),
                ));
            }
            let h = fnv1a(payload);
            match self.registry.get_mut(&id) {
                Some(r) => {
                    if r.hash != h {
                        return Err(Violation::new(
                            "opid-uniqueness",
                            format!(
                                "op {id} logged at site {site} differs from the op first issued under that id: {:?} vs {:?}",
                                op_summary(&op),
                                op_summary(&r.op)
                            ),
                        ));
                    }
                }
                None => {
                    if Some(id.origin) != scan.origin {
                        return Err(Violation::new(
                            "exactly-once",
                            format!(
                                "site {site} applied op {id} that its origin never issued: {:?}",
                                op_summary(&op)
                            ),
                        ));
                    }
                    self.registry.insert(
                        id,
                        OpRecord {
                            hash: h,
                            issued: true,
                            op,
                        },
                    );
                }
            }
            scan.vv.set(id.origin, id.seq);
            pos = next;
        }
        scan.offset += pos as u64;
        debug_assert!(engine.vv().dominates(&scan.vv) || scan.origin != Some(engine.origin()));
        Ok(())
    }

    /// The site's state must equal a fresh replay of the ops it holds; run
    /// after the paths that rebuild state without replaying ops one by one
    /// (recovery from checkpoint + log, snapshot merge).
    pub fn state_matches_replay(
        &self,
        s: usize,
        engine: &Engine,
        after: &str,
    ) -> Result<(), Violation> {
        let vv = engine.vv();
        let ops: Vec<&Op> = self
            .registry
            .iter()
            .filter(|(id, r)| r.issued && vv.covers(**id))
            .map(|(_, r)| &r.op)
            .collect();
        if ops.len() as u64 != vv.total() {
            // Ops this check cannot rebuild (never registered): the log scan
            // and the final checks report those.
            return Ok(());
        }
        let reference = reference_replay(&ops)?;
        if reference.digest_hex() != engine.digest_hex() {
            return Err(Violation::new(
                "replay",
                format!(
                    "after {after}, site {} holds {vv} but its state differs from a fresh replay of those ops{}",
                    s + 1,
                    first_row_difference(&reference, engine)
                ),
            ));
        }
        Ok(())
    }

    fn digest(&mut self, s: usize, e: &Engine) -> String {
        if let Some((vv, d)) = &self.digests[s] {
            if vv == e.vv() {
                return d.clone();
            }
        }
        let d = e.digest_hex();
        self.digests[s] = Some((e.vv().clone(), d.clone()));
        d
    }

    /// Sites that hold the same ops must have the same digest.
    pub fn audit_convergence(&mut self, engines: &[Option<&Engine>]) -> Result<(), Violation> {
        let mut by_vv: BTreeMap<Vec<(Origin, u64)>, Vec<usize>> = BTreeMap::new();
        for (s, e) in engines.iter().enumerate() {
            if let Some(e) = e {
                by_vv.entry(e.vv().iter().collect()).or_default().push(s);
            }
        }
        for group in by_vv.values().filter(|g| g.len() > 1) {
            let mut first: Option<(usize, String)> = None;
            for &s in group {
                let Some(e) = engines[s] else { continue };
                let d = self.digest(s, e);
                match &first {
                    None => first = Some((s, d)),
                    Some((f, fd)) if *fd != d => {
                        let detail = match engines[*f] {
                            Some(fe) => first_row_difference(fe, e),
                            None => String::new(),
                        };
                        return Err(Violation::new(
                            "convergence",
                            format!(
                                "sites {} and {} hold the same ops {} but their digests differ ({fd} vs {d}){detail}",
                                f + 1,
                                s + 1,
                                e.vv()
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// The end of a converged run. Returns how many issued ops were lost
    /// legitimately (never durable anywhere, e.g. the everysec window).
    pub fn final_checks(&mut self, engines: &[Option<&Engine>]) -> Result<u64, Violation> {
        // Sites removed from the cluster are `None`: the others are checked.
        let Some(first) = engines.iter().flatten().next() else {
            return Ok(0);
        };
        let fin = first.vv().clone();
        // exactly-once: every op held was issued by its origin.
        for (origin, n) in fin.iter() {
            for seq in 1..=n {
                let id = OpId::new(origin, seq);
                if !self.registry.get(&id).is_some_and(|r| r.issued) {
                    return Err(Violation::new(
                        "exactly-once",
                        format!("the sites hold op {id}, which no client or expiry issued"),
                    ));
                }
            }
        }
        // durability: what some unwiped site held durably is still held.
        let mut lost = 0u64;
        for (id, r) in &self.registry {
            if !r.issued || fin.covers(*id) {
                continue;
            }
            if let Some(s) = self.claims.iter().position(|c| c.covers(*id)) {
                return Err(Violation::new(
                    "durability",
                    format!(
                        "op {id} ({:?}) is lost although site {} held it durably (claimed {})",
                        op_summary(&r.op),
                        s + 1,
                        self.claims[s]
                    ),
                ));
            }
            lost += 1;
        }
        // The oracle, on every site.
        let ops: Vec<&Op> = self
            .registry
            .iter()
            .filter(|(id, r)| r.issued && fin.covers(**id))
            .map(|(_, r)| &r.op)
            .collect();
        // A fresh engine fed exactly these ops (any order: its causal buffer
        // sorts them out) must reach the sites' state: the state is a function
        // of the op set, whatever path (recovery, snapshots) the sites took.
        let reference = reference_replay(&ops)?;
        let ref_digest = reference.digest_hex();
        for (s, e) in engines.iter().enumerate() {
            let Some(e) = e else { continue };
            if e.digest_hex() != ref_digest {
                return Err(Violation::new(
                    "replay",
                    format!(
                        "site {} holds {} but its state differs from a fresh replay of those ops{}",
                        s + 1,
                        e.vv(),
                        first_row_difference(&reference, e)
                    ),
                ));
            }
        }
        let expected = expected_state(&ops);
        for (s, e) in engines.iter().enumerate() {
            let Some(e) = e else { continue };
            let mut seen: BTreeSet<(u8, Bytes)> = BTreeSet::new();
            for db in 0..DBS as u8 {
                for (k, row) in e.keyspace().db(db).rows.iter() {
                    let got = observed(row);
                    let want = expected.get(&(db, k.clone()));
                    if got.as_ref() != want {
                        let mut v = self.oracle_violation(s, db, k, want, got.as_ref(), &ops);
                        v.detail
                            .push_str(&format!("; row at the site: {:?}", RowImage::of(row)));
                        return Err(v);
                    }
                    seen.insert((db, k.clone()));
                }
            }
            // The cluster's own database (membership) is checked by the
            // replay above, not by the oracle of client data.
            for ((db, k), want) in expected.iter().filter(|((db, _), _)| (*db as usize) < DBS) {
                if !seen.contains(&(*db, k.clone())) {
                    return Err(self.oracle_violation(s, *db, k, Some(want), None, &ops));
                }
            }
        }
        Ok(lost)
    }

    fn oracle_violation(
        &self,
        s: usize,
        db: u8,
        key: &Bytes,
        want: Option<&Expected>,
        got: Option<&Expected>,
        ops: &[&Op],
    ) -> Violation {
        let show = |x: Option<&Expected>| x.map_or("(absent)".to_owned(), |e| e.to_string());
        let touching: Vec<String> = ops
            .iter()
            .filter(|o| {
                o.effects.iter().any(|k| {
                    (k.db == db && (k.key == *key || k.key.is_empty())) || k.key.is_empty()
                })
            })
            .map(|o| format!("{}@{} deps{}{:?}", o.id, o.hlc, o.deps, op_summary(o)))
            .collect();
        Violation::new(
            "oracle",
            format!(
                "site {} db {db} key {:?}: expected {} but the site shows {}; ops on the key: {}",
                s + 1,
                String::from_utf8_lossy(key),
                show(want),
                show(got),
                touching.join(" ")
            ),
        )
    }
}

/// A fresh engine that applied exactly `ops`.
fn reference_replay(ops: &[&Op]) -> Result<Engine, Violation> {
    let mut cfg = chorus_engine::EngineConfig::new(0);
    cfg.causal_buffer_ops_max = ops.len() + 1;
    let storage = Box::new(chorus_engine::storage::memory::MemoryStorage::new());
    let mut e = Engine::open(storage, cfg)
        .map_err(|err| Violation::new("sim", format!("reference engine: {err}")))?;
    let out = e.apply_remote(ops.iter().map(|o| (*o).clone()).collect());
    if out.applied != ops.len() {
        return Err(Violation::new(
            "causality",
            format!(
                "a fresh replay of the {} ops the sites hold applied only {} ({} still wait for deps): the sites hold ops whose deps they lack",
                ops.len(),
                out.applied,
                e.causal_buffer_len()
            ),
        ));
    }
    Ok(e)
}

/// A short description of an op's effects.
fn op_summary(op: &Op) -> Vec<String> {
    op.effects
        .iter()
        .map(|k| {
            format!(
                "db{} {:?} {:?}",
                k.db,
                String::from_utf8_lossy(&k.key),
                k.effect
            )
        })
        .collect()
}

/// The first key whose row differs between two engines (for reports).
pub fn first_row_difference(a: &Engine, b: &Engine) -> String {
    for db in 0..ALL_DBS as u8 {
        let (da, dbb) = (a.keyspace().db(db), b.keyspace().db(db));
        let mut keys: BTreeSet<Bytes> = BTreeSet::new();
        for (k, _) in da.rows.iter() {
            keys.insert(k.clone());
        }
        for (k, _) in dbb.rows.iter() {
            keys.insert(k.clone());
        }
        for k in keys {
            // Compared as digests see them: two sites that folded a
            // counter at different moments hold equal rows.
            let ia = da.rows.get(&k).map(|r| RowImage::of(r).canonical());
            let ib = dbb.rows.get(&k).map(|r| RowImage::of(r).canonical());
            if ia != ib {
                return format!(
                    "; first differing row: db {db} key {:?}: {ia:?} vs {ib:?}",
                    String::from_utf8_lossy(&k)
                );
            }
        }
    }
    String::new()
}
