//! One simulated run: N sites, the network, the workload, the faults and the
//! checkers, all driven by one discrete-event loop on virtual time.
//!
//! Each site is the real engine on a [`SharedDisk`], its housekeeping
//! ([`Housekeeping`], as chorus-server runs it) and one real [`PeerSession`]
//! per linked peer, driven the way the QUIC driver drives them:
//! `handle_connected` / `push_bytes` + `handle_received` in slices /
//! `handle_timeout` / `handle_disconnected` in, `poll_transmit` /
//! `poll_timeout` / `poll_event` out, `poll_transmit` again after every
//! engine change.
//!
//! A run has a *safety phase* (workload and faults, checkers after every event)
//! and a *liveness phase* (everything healed, no new writes; all sites must
//! reach the same version vector and digest before a virtual deadline), then
//! the final checks (oracle, no acknowledged write lost, exactly-once).

use crate::check::{Checker, Violation};
use crate::net::{
    frame_tag, Conn, ConnState, LinkFaults, REPLAY_FRAMES_MAX, TAG_OP_BATCH, TAG_SNAPSHOT_BEGIN,
    TAG_SNAPSHOT_END,
};
use crate::profile::{FaultKind, Profile};
use crate::rng::{fnv1a, Rng};
use crate::sched::Scheduler;
use crate::storage::SharedDisk;
use crate::trace::Trace;
use crate::workload::{Request, Workload};
use chorus_engine::hlc::Hlc;
use chorus_engine::id::{OpId, Origin, SiteId, VersionVector};
use chorus_engine::keyspace::DBS;
use chorus_engine::log::{decode_op, encode_op};
use chorus_engine::storage::Storage;
use chorus_engine::{Engine, EngineConfig, Fsync, Reply};
use chorus_replication::wire::{encode_frame, FrameDecoder, Message};
use chorus_replication::{PeerSession, SessionConfig, SessionEvent, SyncDirection};
use chorus_site::{Capture, Housekeeping, Now, SiteConfig, Work};
use std::collections::BTreeMap;
use std::fmt;

/// Cluster id every simulated site shares.
pub const CLUSTER_ID: u64 = 0xC0_5EED;
/// Wall clock of every site at virtual time 0 (ms since the epoch).
pub const EPOCH_MS: u64 = 1_700_000_000_000;
/// Client attempts per request before the client gives up.
pub const CLIENT_ATTEMPTS_MAX: u32 = 6;
/// Interval of the convergence audit during the safety phase.
pub const AUDIT_INTERVAL_MS: u64 = 500;
/// Interval of the convergence check during the liveness phase.
pub const LIVENESS_CHECK_MS: u64 = 100;
/// Interval of active expiry and of checkpoints on each site.
pub const EXPIRE_INTERVAL_MS: u64 = 100;
pub const CHECKPOINT_INTERVAL_MS: u64 = 3_000;
/// Op log written after which a checkpoint is due before the interval.
pub const CHECKPOINT_LOG_BYTES: u64 = 256 << 10;
/// Rows a checkpoint captures per slice (small: writes and peers' ops
/// interleave with the capture), and the virtual time between slices.
pub const CAPTURE_SLICE_ROWS: usize = 8;
pub const CAPTURE_SLICE_GAP_MS: u64 = 1;
/// Longest virtual time a captured checkpoint takes to be written.
pub const CHECKPOINT_WRITE_MS_MAX: u64 = 40;
/// Ops and rows a site handles per slice of what it received from a peer
/// (the QUIC driver's `APPLY_SLICE_OPS_MAX`, smaller so that slices happen),
/// and the virtual time between slices (clients and other peers go first).
pub const RECEIVE_SLICE_WORK: usize = 16;
/// Bytes of arrived frames buffered before a slice is handled.
pub const READ_CHUNK_BYTES: usize = 64 << 10;
pub const RECEIVE_SLICE_GAP_MS: u64 = 1;
/// Full syncs per run after which the site is compared with a fresh replay
/// (the check costs a replay of every op held, and tiny-backlog profiles do
/// hundreds of full syncs).
pub const FULL_SYNC_REPLAY_CHECKS_MAX: u64 = 16;
/// Keys deleted per active-expiry cycle.
pub const EXPIRE_BUDGET: usize = 32;
/// Anti-entropy interval of every session (virtual ms): short, so runs
/// compare digests many times; on a correct system nothing is ever repaired.
pub const ANTI_ENTROPY_INTERVAL_MS: u64 = 2_000;
/// Profile `corrupt`: the first damage, and the mean time between two.
const CORRUPT_FIRST_MS: u64 = 1_500;
const CORRUPT_INTERVAL_MS: u64 = 3_000;

/// A deliberate bug the checkers must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canary {
    /// LWW ties broken by arrival order. Emulated: ops are re-stamped with the
    /// receiver's clock on arrival (engine hook wanted, see docs/simulator.md).
    LwwArrivalOrder,
    /// Duplicated ops applied again. Emulated: an op the receiver already
    /// holds is applied again under a fresh OpId.
    NoDedup,
    /// OpIds reused after a crash: the restart pretends the shutdown was
    /// clean, so the engine keeps its incarnation and reuses lost seqs.
    ReuseSeq,
    /// Anti-entropy repairs by `join_rows(local, remote, cut, cut)` (the
    /// engine's canary switch): a dot one site lost is deleted everywhere.
    RepairJoinAtVv,
    /// Peers acked before fsync (the session's own canary switch).
    AckBeforeDurable,
    /// Ops applied before their deps. Emulated: deps stripped on arrival.
    SkipDeps,
}

impl Canary {
    pub const ALL: [Canary; 6] = [
        Canary::LwwArrivalOrder,
        Canary::NoDedup,
        Canary::ReuseSeq,
        Canary::AckBeforeDurable,
        Canary::SkipDeps,
        Canary::RepairJoinAtVv,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Canary::LwwArrivalOrder => "lww-arrival-order",
            Canary::NoDedup => "no-dedup",
            Canary::ReuseSeq => "reuse-seq",
            Canary::AckBeforeDurable => "ack-before-durable",
            Canary::SkipDeps => "skip-deps",
            Canary::RepairJoinAtVv => "repair-join-at-vv",
        }
    }
    pub fn parse(s: &str) -> Option<Canary> {
        Canary::ALL.into_iter().find(|c| c.name() == s)
    }
    /// Whether the canary rewrites op batches on their way to the engine.
    fn rewrites_batches(self) -> bool {
        matches!(
            self,
            Canary::LwwArrivalOrder | Canary::NoDedup | Canary::SkipDeps
        )
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub sites: Option<usize>,
    pub ops: usize,
    pub profile: String,
    pub canary: Option<Canary>,
    /// Keep one text line per event (replay, determinism checks).
    pub keep_lines: bool,
}

impl RunConfig {
    pub fn new(seed: u64) -> RunConfig {
        RunConfig {
            seed,
            sites: None,
            ops: 2_000,
            profile: "random".to_owned(),
            canary: None,
            keep_lines: false,
        }
    }

    /// The command that reproduces this run.
    pub fn command(&self, verb: &str) -> String {
        let mut s = format!("chorus-sim {verb} --seed {}", self.seed);
        if let Some(n) = self.sites {
            s.push_str(&format!(" --sites {n}"));
        }
        s.push_str(&format!(" --ops {} --profile {}", self.ops, self.profile));
        if let Some(c) = self.canary {
            s.push_str(&format!(" --canary {}", c.name()));
        }
        s
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Safety,
    Liveness,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Safety => "safety-violation",
            Verdict::Liveness => "liveness-failure",
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub config: RunConfig,
    pub profile_line: String,
    pub verdict: Verdict,
    pub violation: Option<Violation>,
    pub sim_ms: u64,
    pub events: u64,
    pub faults: u64,
    pub trace_hash: String,
    pub lines: Vec<String>,
    pub hashes: Vec<u64>,
    pub stats: RunStats,
}

/// Counters reported at the end of a run.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub requests: u64,
    pub acked_writes: u64,
    pub gave_up: u64,
    pub crashes: u64,
    pub wipes: u64,
    /// Wipes that put an older image of the site's disk back.
    pub restores: u64,
    /// Rows damaged behind an engine (profile `corrupt`), and the longest
    /// virtual time until the damaged site's state was whole again.
    pub corruptions: u64,
    pub repair_ms_max: u64,
    pub full_syncs: u64,
    pub reconnects: u64,
    pub lost_unacked_ops: u64,
    /// Anti-entropy digest comparisons at equal vectors (per database).
    pub anti_entropy_checks: u64,
    /// Anti-entropy repairs that changed a site: must stay 0.
    pub anti_entropy_repairs: u64,
}

impl fmt::Display for RunStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests={} acked={} gave_up={} crashes={} wipes={} restores={} full_syncs={} reconnects={} lost_permitted={} ae_checks={} ae_repairs={} corruptions={} repair_ms_max={}",
            self.requests,
            self.acked_writes,
            self.gave_up,
            self.crashes,
            self.wipes,
            self.restores,
            self.full_syncs,
            self.reconnects,
            self.lost_unacked_ops,
            self.anti_entropy_checks,
            self.anti_entropy_repairs,
            self.corruptions,
            self.repair_ms_max
        )
    }
}

#[derive(Debug)]
enum Ev {
    /// Issue the next new client request.
    NextRequest,
    /// Send (or resend) request `id` to its current site.
    Attempt {
        id: u64,
    },
    GroupCommit {
        site: usize,
        gen: u64,
    },
    /// The site's housekeeping (`chorus_site::Housekeeping::tick`).
    SiteTick {
        site: usize,
        gen: u64,
    },
    /// The fsync begun by the housekeeping completes.
    SyncDone {
        site: usize,
        gen: u64,
    },
    /// The next slice of a checkpoint's capture.
    CaptureSlice {
        site: usize,
        gen: u64,
    },
    /// The captured checkpoint's rows reach the disk.
    CheckpointWritten {
        site: usize,
        gen: u64,
    },
    /// The next slice of what `site` received from `peer`.
    ReceiveMore {
        site: usize,
        peer: usize,
        gen: u64,
    },
    SessionTimer {
        site: usize,
        peer: usize,
        gen: u64,
    },
    Dial {
        conn: usize,
    },
    Established {
        conn: usize,
        epoch: u64,
    },
    Deliver {
        conn: usize,
        dir: usize,
        epoch: u64,
    },
    Fault,
    Restart {
        site: usize,
        wipe: bool,
    },
    Resume {
        site: usize,
    },
    Unblock {
        links: Vec<(usize, usize)>,
    },
    Audit,
    /// Damage a row at some site behind its engine (profile `corrupt`).
    Corrupt,
    EndSafety,
    LivenessCheck,
}

/// One client request in flight.
#[derive(Debug)]
struct ClientReq {
    req: Request,
    site: usize,
    attempts: u32,
}

/// A site's clock: virtual time plus skew, drift and jumps.
#[derive(Clone, Debug, Default)]
struct SiteClock {
    skew_ms: i64,
    drift_ppm: i64,
    jumps_ms: i64,
}

impl SiteClock {
    fn wall_ms(&self, virtual_ms: u64) -> u64 {
        let v = virtual_ms as i64;
        let t = EPOCH_MS as i64 + v + self.skew_ms + v * self.drift_ppm / 1_000_000 + self.jumps_ms;
        t.max(1) as u64
    }
}

struct Site {
    disk: SharedDisk,
    engine: Option<Engine>,
    sessions: BTreeMap<usize, PeerSession>,
    /// Earliest pending `SessionTimer` per peer.
    timer_at: BTreeMap<usize, u64>,
    /// Process generation: bumped at every restart, so old timers are ignored.
    gen: u64,
    paused_until: Option<u64>,
    clock: SiteClock,
    /// Requests waiting for the group commit (`appendfsync always`).
    pending_acks: Vec<(u64, Option<OpId>)>,
    group_commit_at: Option<u64>,
    /// The `SnapshotBegin` vector of a snapshot being received, per peer.
    incoming_snapshot: BTreeMap<usize, VersionVector>,
    engine_config: EngineConfig,
    /// An older image of this site's disk (its durable bytes at some crash),
    /// which a later wipe may put back instead of an empty disk: a restore
    /// from a backup.
    backup: Option<chorus_engine::storage::memory::MemoryStorage>,
    /// The site's housekeeping, the same code chorus-server runs; `None`
    /// while the site is down.
    hk: Option<Housekeeping>,
    /// The housekeeping's fsync in flight (waited for at `SyncDone`).
    sync: Option<chorus_engine::engine::LogSync>,
    /// A captured checkpoint being written (until `CheckpointWritten`).
    checkpoint: Option<chorus_engine::engine::PendingCheckpoint>,
    /// Peers whose `SnapshotEnd` frame was pushed but maybe not handled yet.
    snapshot_end_pushed: std::collections::BTreeSet<usize>,
    /// Peers with a `ReceiveMore` event pending.
    receive_more: std::collections::BTreeSet<usize>,
}

impl Site {
    fn up(&self) -> bool {
        self.engine.is_some()
    }
}

pub struct Sim {
    cfg: RunConfig,
    p: Profile,
    sched: Scheduler<Ev>,
    trace: Trace,
    sites: Vec<Site>,
    conns: Vec<Conn>,
    conn_of: BTreeMap<(usize, usize), usize>,
    links: Vec<LinkFaults>,
    workload: Workload,
    net_rng: Rng,
    fault_rng: Rng,
    site_rng: Rng,
    clients: BTreeMap<u64, ClientReq>,
    next_request_id: u64,
    issued: usize,
    safety: bool,
    liveness_started_ms: u64,
    faults: u64,
    check: Checker,
    stats: RunStats,
    synthetic_incarnation: u32,
    violation: Option<Violation>,
    converged: bool,
    /// `CHORUS_SIM_PARANOID=1`: compare every site with a fresh replay of its
    /// ops at every audit (slow; for narrowing a failure down).
    paranoid: bool,
    /// Rows damaged behind an engine and not yet repaired: `(site, at_ms)`.
    /// While any is outstanding, digests may differ at equal vectors and
    /// anti-entropy may repair; checks of that site against a replay wait.
    corruptions: Vec<(usize, u64)>,
    /// Damage is planted in this run (profile `corrupt`).
    corrupting: bool,
    full_sync_checks: u64,
    /// Set once the liveness phase converged: every session was asked for an
    /// anti-entropy round, with its `anti_entropy_checks` at that moment.
    final_anti_entropy: Option<BTreeMap<(usize, usize), u64>>,
}

impl Sim {
    pub fn new(cfg: RunConfig) -> Sim {
        chorus_engine::set_hash_seed(0x6368_6f72_7573_2121);
        let p = Profile::draw(cfg.seed, &cfg.profile, cfg.sites, cfg.ops);
        let cfg_corrupting = cfg.profile.starts_with("corrupt");
        let mut site_rng = Rng::stream(cfg.seed, "sites");
        let n = p.sites;
        let mut sites = Vec::with_capacity(n);
        for i in 0..n {
            let id = (i + 1) as SiteId;
            let mut ec = EngineConfig::new(id);
            ec.fsync = p.fsync;
            ec.canaries.repair_join_at_vv = cfg.canary == Some(Canary::RepairJoinAtVv);
            if p.knobs.tiny_backlog {
                ec.backlog_bytes_max = site_rng.range(1 << 10, 16 << 10) as usize;
            }
            if p.knobs.small_causal_buffer {
                ec.causal_buffer_ops_max = site_rng.range(2, 32) as usize;
            }
            let skew =
                site_rng.range(0, 2 * p.clock_skew_ms_max) as i64 - p.clock_skew_ms_max as i64;
            let drift =
                site_rng.range(0, 2 * p.clock_drift_ppm_max) as i64 - p.clock_drift_ppm_max as i64;
            sites.push(Site {
                disk: SharedDisk::new(),
                engine: None,
                sessions: BTreeMap::new(),
                timer_at: BTreeMap::new(),
                gen: 0,
                paused_until: None,
                clock: SiteClock {
                    skew_ms: skew,
                    drift_ppm: drift,
                    jumps_ms: 0,
                },
                pending_acks: Vec::new(),
                group_commit_at: None,
                incoming_snapshot: BTreeMap::new(),
                engine_config: ec,
                backup: None,
                hk: None,
                sync: None,
                checkpoint: None,
                snapshot_end_pushed: Default::default(),
                receive_more: Default::default(),
            });
        }
        let mut conns = Vec::new();
        let mut conn_of = BTreeMap::new();
        for a in 0..n {
            for b in (a + 1)..n {
                if p.topology.linked(a, b) {
                    conn_of.insert((a, b), conns.len());
                    conn_of.insert((b, a), conns.len());
                    conns.push(Conn::new(a, b));
                }
            }
        }
        let workload = Workload::new(cfg.seed, &p);
        Sim {
            trace: Trace::new(cfg.keep_lines),
            net_rng: Rng::stream(cfg.seed, "net"),
            fault_rng: Rng::stream(cfg.seed, "faults"),
            site_rng,
            links: vec![LinkFaults::default(); n * n],
            sched: Scheduler::default(),
            sites,
            conns,
            conn_of,
            workload,
            clients: BTreeMap::new(),
            next_request_id: 0,
            issued: 0,
            safety: true,
            liveness_started_ms: 0,
            faults: 0,
            check: Checker::new(n),
            stats: RunStats::default(),
            synthetic_incarnation: 0x4000_0000,
            violation: None,
            converged: false,
            paranoid: std::env::var_os("CHORUS_SIM_PARANOID").is_some(),
            corruptions: Vec::new(),
            corrupting: cfg_corrupting,
            full_sync_checks: 0,
            final_anti_entropy: None,
            cfg,
            p,
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.p
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> Outcome {
        for s in 0..self.sites.len() {
            self.start_site(s);
            if self.violation.is_some() {
                break;
            }
        }
        for c in 0..self.conns.len() {
            self.schedule_dial(c, 0);
        }
        self.sched.at(0, Ev::NextRequest);
        self.sched.at(AUDIT_INTERVAL_MS, Ev::Audit);
        if self.corrupting {
            self.sched.at(CORRUPT_FIRST_MS, Ev::Corrupt);
        }
        if self.p.faults_enabled() {
            let d = self.fault_rng.exp_ms(self.p.fault_interval_ms as f64);
            self.sched.after(d, Ev::Fault);
        }
        let mut until = u64::MAX;
        while self.violation.is_none() && !self.converged {
            let Some((t, _seq, ev)) = self.sched.next_until(until) else {
                break;
            };
            self.handle(t, ev);
            if !self.safety {
                until = self.liveness_started_ms + self.p.liveness_deadline_ms;
            }
        }
        let verdict = if self.violation.is_some() {
            Verdict::Safety
        } else if self.converged {
            self.final_checks();
            if self.violation.is_some() {
                Verdict::Safety
            } else {
                Verdict::Pass
            }
        } else {
            self.violation = Some(Violation::new("liveness", self.liveness_report()));
            Verdict::Liveness
        };
        let hashes = self.trace.hashes().to_vec();
        Outcome {
            profile_line: self.p.to_string(),
            verdict,
            violation: self.violation.take(),
            sim_ms: self.sched.now_ms(),
            events: self.trace.events(),
            faults: self.faults,
            trace_hash: self.trace.hash_hex(),
            lines: self.trace.take_lines(),
            hashes,
            stats: self.stats.clone(),
            config: self.cfg.clone(),
        }
    }

    fn fail(&mut self, v: Violation) {
        if self.violation.is_none() {
            let line = format!("VIOLATION {}: {}", v.check, v.detail);
            let t = self.sched.now_ms();
            self.trace
                .event(t, "violation", &[fnv1a(v.check.as_bytes())], || line);
            self.violation = Some(v);
        }
    }

    // ---- sites ---------------------------------------------------------------

    fn session_config(&mut self, peer: usize) -> SessionConfig {
        let mut c = SessionConfig::new(CLUSTER_ID);
        c.peer_site_id = Some((peer + 1) as SiteId);
        let k = &self.p.knobs;
        c.idle_timeout_ms = k.idle_timeout_ms;
        c.heartbeat_interval_ms = (k.idle_timeout_ms / 3).max(1);
        if k.tiny_batches {
            c.batch_ops_max = self.site_rng.range(1, 4) as usize;
            c.batch_bytes_max = 256;
            c.inflight_batches_max = self.site_rng.range(1, 3) as usize;
            // About one batch of bytes: the byte bound binds as often as the
            // batch count (no extra draw, so seeds keep their schedules).
            c.inflight_bytes_max = 400;
        } else {
            c.batch_ops_max = 256;
        }
        if k.small_snapshot_chunks {
            c.snapshot_chunk_bytes_max = 200;
        }
        c.anti_entropy_interval_ms = ANTI_ENTROPY_INTERVAL_MS;
        c.canary_ack_before_durable = self.cfg.canary == Some(Canary::AckBeforeDurable);
        c
    }

    /// Opens the site's engine on its disk (first start or restart).
    fn start_site(&mut self, s: usize) {
        let now = self.sched.now_ms();
        let cfg = self.sites[s].engine_config.clone();
        let boxed = self.sites[s].disk.boxed();
        let engine = match Engine::open(boxed, cfg) {
            Ok(e) => e,
            Err(e) => {
                self.fail(Violation::new(
                    "recovery",
                    format!("site {} failed to open after restart: {e}", s + 1),
                ));
                return;
            }
        };
        let log_len = self.sites[s].disk.lock().log_len();
        self.check.site_opened(s, &engine, log_len);
        if let Err(v) = self.check.after_restart(s, &engine) {
            self.fail(v);
        }
        if !self.corruptions.iter().any(|c| c.0 == s) {
            if let Err(v) = self.check.state_matches_replay(s, &engine, "recovery") {
                self.fail(v);
            }
        }
        let origin = engine.origin();
        let vv_total = engine.vv().total();
        self.sites[s].engine = Some(engine);
        self.sites[s].gen += 1;
        self.sites[s].paused_until = None;
        let mut sessions = BTreeMap::new();
        for peer in 0..self.sites.len() {
            if self.conn_of.contains_key(&(s, peer)) {
                let sc = self.session_config(peer);
                match PeerSession::new(sc) {
                    Ok(sess) => {
                        sessions.insert(peer, sess);
                    }
                    Err(e) => {
                        self.fail(Violation::new(
                            "sim",
                            format!("session config refused: {e}"),
                        ));
                        return;
                    }
                }
            }
        }
        self.sites[s].sessions = sessions;
        self.sites[s].timer_at.clear();
        self.sites[s].incoming_snapshot.clear();
        let gen = self.sites[s].gen;
        let phase = self.site_rng.range(0, 999);
        let hk_now = self.hk_now(s);
        let hk = self.sites[s]
            .engine
            .as_ref()
            .map(|e| Housekeeping::new(self.site_config(), e, hk_now, phase));
        if let Some(mut hk) = hk {
            hk.set_replicating(!self.sites[s].sessions.is_empty());
            self.sched
                .at(hk.next_tick_ms(), Ev::SiteTick { site: s, gen });
            self.sites[s].hk = Some(hk);
        }
        self.sites[s].sync = None;
        self.sites[s].checkpoint = None;
        self.sites[s].snapshot_end_pushed.clear();
        self.sites[s].receive_more.clear();
        self.trace.event(
            now,
            "site-open",
            &[s as u64, origin.incarnation as u64, vv_total],
            || format!("site {} origin {origin} holds {vv_total} ops", s + 1),
        );
    }

    fn is_paused(&self, s: usize) -> bool {
        self.sites[s]
            .paused_until
            .is_some_and(|t| t > self.sched.now_ms())
    }

    fn wall(&self, s: usize) -> u64 {
        self.sites[s].clock.wall_ms(self.sched.now_ms())
    }

    /// Checks after anything touched a site's engine: invariants, the log
    /// records it appended (causality, OpId uniqueness, exactly-once), and the
    /// durability claims it made.
    fn after_touch(&mut self, s: usize) {
        let Some(engine) = self.sites[s].engine.as_ref() else {
            return;
        };
        if !engine.invariants_hold() {
            let v = Violation::new(
                "invariants",
                format!("site {}: engine.invariants_hold() is false", s + 1),
            );
            self.fail(v);
            return;
        }
        let res = self.check.scan_log(s, engine, &self.sites[s].disk);
        if let Err(v) = res {
            self.fail(v);
            return;
        }
        self.check.note_durable(s, engine.durable_vv());
        for (&peer, sess) in &self.sites[s].sessions {
            self.check.note_peer_ack(s, peer, sess.peer_acked_vv());
        }
    }

    // ---- the event loop ----------------------------------------------------------

    fn handle(&mut self, t: u64, ev: Ev) {
        match ev {
            Ev::NextRequest => self.next_request(t),
            Ev::Attempt { id } => self.attempt(t, id),
            Ev::GroupCommit { site, gen } => self.group_commit(t, site, gen),
            Ev::SiteTick { site, gen } => self.site_tick(t, site, gen),
            Ev::SyncDone { site, gen } => self.sync_done(t, site, gen),
            Ev::CaptureSlice { site, gen } => self.capture_slice(t, site, gen),
            Ev::CheckpointWritten { site, gen } => self.checkpoint_written(t, site, gen),
            Ev::ReceiveMore { site, peer, gen } => self.receive_more(t, site, peer, gen),
            Ev::SessionTimer { site, peer, gen } => self.session_timer(t, site, peer, gen),
            Ev::Dial { conn } => self.dial(t, conn),
            Ev::Established { conn, epoch } => self.established(t, conn, epoch),
            Ev::Deliver { conn, dir, epoch } => self.deliver(t, conn, dir, epoch),
            Ev::Fault => self.fault(t),
            Ev::Restart { site, wipe } => self.restart(t, site, wipe),
            Ev::Resume { site } => self.resume(t, site),
            Ev::Unblock { links } => self.unblock(t, links),
            Ev::Audit => self.audit(t),
            Ev::Corrupt => self.corrupt(t),
            Ev::EndSafety => self.end_safety(t),
            Ev::LivenessCheck => self.liveness_check(t),
        }
    }

    /// Defers a site-local event while the site is paused. True if deferred.
    fn defer_if_paused(&mut self, s: usize, ev: impl FnOnce() -> Ev) -> bool {
        if let Some(until) = self.sites[s].paused_until {
            if until > self.sched.now_ms() {
                self.sched.at(until, ev());
                return true;
            }
        }
        false
    }

    // ---- clients -------------------------------------------------------------------

    fn next_request(&mut self, t: u64) {
        if !self.safety {
            return;
        }
        if self.issued >= self.p.ops {
            // Let the last requests and their replication settle a little under
            // faults, then heal.
            self.sched.after(1_000, Ev::EndSafety);
            return;
        }
        self.issued += 1;
        let id = self.next_request_id;
        self.next_request_id += 1;
        let req = self.workload.next_request();
        let site = self.workload.pick_site(self.sites.len());
        self.clients.insert(
            id,
            ClientReq {
                req,
                site,
                attempts: 0,
            },
        );
        self.stats.requests += 1;
        self.attempt(t, id);
        let gap = self
            .workload
            .rng()
            .exp_ms(1000.0 / self.p.ops_per_s.max(1) as f64);
        self.sched.after(gap, Ev::NextRequest);
    }

    fn retry(&mut self, id: u64, why: &str) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.attempts += 1;
        if c.attempts >= CLIENT_ATTEMPTS_MAX || !self.safety {
            self.clients.remove(&id);
            self.stats.gave_up += 1;
            return;
        }
        // Fail over to another site, after a timeout-like pause.
        c.site = self.workload.pick_site(self.sites.len());
        let delay = self.workload.rng().range(50, 500);
        let t = self.sched.now_ms();
        let w = why.to_owned();
        self.trace
            .event(t, "client-retry", &[id, delay], || format!("req {id}: {w}"));
        self.sched.after(delay, Ev::Attempt { id });
    }

    fn attempt(&mut self, t: u64, id: u64) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let s = c.site;
        if !self.sites[s].up() {
            self.retry(id, "site down");
            return;
        }
        if self.is_paused(s) {
            self.retry(id, "site paused (timeout)");
            return;
        }
        let now_wall = self.wall(s);
        let req = c.req.clone();
        let Some(engine) = self.sites[s].engine.as_mut() else {
            return;
        };
        let before = (engine.origin(), engine.last_local_seq());
        let replies: Vec<Reply> = match &req {
            Request::One(db, args) => vec![engine.execute(*db, args, now_wall)],
            Request::Multi(cmds) => engine.execute_multi(cmds, now_wall),
        };
        let after = (engine.origin(), engine.last_local_seq());
        let op = (after != before).then(|| OpId::new(after.0, after.1));
        let misconf = replies
            .iter()
            .any(|r| matches!(r, Reply::Error(e) if e.starts_with("MISCONF")));
        let rh = fnv1a(format!("{replies:?}").as_bytes());
        let keep = self.trace.keeps_lines();
        let desc = if keep { req.describe() } else { String::new() };
        self.trace.event(
            t,
            "client",
            &[id, s as u64, rh, op.map_or(0, |o| o.seq)],
            || {
                format!(
                    "req {id} at site {}: {desc} -> {replies:?} op={op:?}",
                    s + 1
                )
            },
        );
        self.after_touch(s);
        if misconf {
            self.retry(id, "MISCONF");
            return;
        }
        if let Some(op) = op {
            self.check.note_client_op(op, self.p.fsync);
        }
        if op.is_some() && self.p.fsync == Fsync::Always {
            // The reply waits for the group commit that makes it durable.
            self.sites[s].pending_acks.push((id, op));
            self.schedule_group_commit(s);
        } else {
            self.clients.remove(&id);
            if op.is_some() && req.may_write() {
                self.stats.acked_writes += 1;
            }
        }
        self.pump_site(s);
    }

    fn schedule_group_commit(&mut self, s: usize) {
        if self.sites[s].group_commit_at.is_some() {
            return;
        }
        let delay = 1 + self.p.knobs.fsync_delay_ms;
        let at = self.sched.now_ms() + delay;
        self.sites[s].group_commit_at = Some(at);
        let gen = self.sites[s].gen;
        self.sched.at(at, Ev::GroupCommit { site: s, gen });
    }

    fn sync_site(&mut self, s: usize) -> bool {
        let Some(engine) = self.sites[s].engine.as_mut() else {
            return false;
        };
        match engine.sync() {
            Ok(()) => true,
            Err(e) => {
                let v = Violation::new("storage", format!("site {}: sync failed: {e}", s + 1));
                self.fail(v);
                false
            }
        }
    }

    fn group_commit(&mut self, t: u64, s: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.defer_if_paused(s, || Ev::GroupCommit { site: s, gen }) {
            return;
        }
        self.sites[s].group_commit_at = None;
        if !self.sync_site(s) {
            return;
        }
        let acks = std::mem::take(&mut self.sites[s].pending_acks);
        let n = acks.len() as u64;
        for (id, op) in acks {
            if let Some(op) = op {
                if let Some(e) = self.sites[s].engine.as_ref() {
                    if !e.durable_vv().covers(op) {
                        let v = Violation::new(
                            "durability",
                            format!("site {}: op {op} acked under appendfsync always before it was durable", s + 1),
                        );
                        self.fail(v);
                        return;
                    }
                }
                self.stats.acked_writes += 1;
            }
            self.clients.remove(&id);
        }
        self.trace.event(t, "group-commit", &[s as u64, n], || {
            format!("site {} fsync, {n} replies released", s + 1)
        });
        self.after_touch(s);
        self.pump_site(s);
    }

    // ---- housekeeping (chorus-site, as chorus-server runs it) --------------------

    /// The housekeeping's schedule for the simulated sites: the server's
    /// policy with shorter intervals and small capture slices, so that runs
    /// checkpoint often and clients and peers interleave with every phase.
    /// Under `appendfsync always` and `no` only the clients' group commit
    /// syncs (the periodic sync would hide a missing one).
    fn site_config(&self) -> SiteConfig {
        SiteConfig {
            tick_ms: EXPIRE_INTERVAL_MS,
            expire_keys_per_tick: EXPIRE_BUDGET,
            sync_interval_ms: 1000,
            sync_always_and_no: false,
            checkpoint_log_bytes: CHECKPOINT_LOG_BYTES,
            checkpoint_interval_ms: CHECKPOINT_INTERVAL_MS,
            capture_slice_rows: CAPTURE_SLICE_ROWS,
            release_memory: false,
            ..SiteConfig::default()
        }
    }

    /// The housekeeping's clocks at site `s`: virtual time (monotonic) and
    /// the site's skewed wall clock.
    fn hk_now(&self, s: usize) -> Now {
        Now {
            mono_ms: self.sched.now_ms(),
            wall_ms: self.wall(s),
        }
    }

    /// What every peer of site `s` durably acknowledged (`None` without
    /// sessions: keep the backlog).
    fn acked_by_all(&self, s: usize) -> Option<VersionVector> {
        let mut all: Option<VersionVector> = None;
        for sess in self.sites[s].sessions.values() {
            let a = sess.peer_acked_vv();
            all = Some(match all {
                None => a.clone(),
                Some(m) => m.meet(a),
            });
        }
        all
    }

    fn site_tick(&mut self, t: u64, s: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.defer_if_paused(s, || Ev::SiteTick { site: s, gen }) {
            return;
        }
        let now = self.hk_now(s);
        let trim_to = self.acked_by_all(s);
        let expired_before = self.sites[s]
            .engine
            .as_ref()
            .map_or(0, |e| e.stats().expired_keys);
        let site = &mut self.sites[s];
        let (Some(engine), Some(hk)) = (site.engine.as_mut(), site.hk.as_mut()) else {
            return;
        };
        hk.tick(engine, now, trim_to.as_ref());
        let next = hk.next_tick_ms();
        let n = engine.stats().expired_keys - expired_before;
        if n > 0 {
            self.trace.event(t, "expire", &[s as u64, n], || {
                format!("site {} expired {n} keys", s + 1)
            });
            if self.p.fsync == Fsync::Always {
                self.schedule_group_commit(s);
            }
        }
        self.sched.at(next, Ev::SiteTick { site: s, gen });
        self.run_site_work(s);
    }

    /// Runs the work the housekeeping queued: fsyncs and checkpoint writes
    /// take virtual time, the capture goes a slice at a time.
    fn run_site_work(&mut self, s: usize) {
        let gen = self.sites[s].gen;
        let mut wake = false;
        while let Some(work) = self.sites[s].hk.as_mut().and_then(Housekeeping::poll_work) {
            match work {
                Work::Sync(sync) => {
                    self.sites[s].sync = Some(sync);
                    let delay = 1 + self.p.knobs.fsync_delay_ms;
                    self.sched.after(delay, Ev::SyncDone { site: s, gen });
                }
                Work::Checkpoint => {
                    self.sched
                        .after(CAPTURE_SLICE_GAP_MS, Ev::CaptureSlice { site: s, gen });
                }
                Work::WakePeers => wake = true,
                Work::ReleaseMemory => {}
            }
        }
        if wake {
            self.after_touch(s);
            self.pump_site(s);
        }
    }

    fn sync_done(&mut self, t: u64, s: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.defer_if_paused(s, || Ev::SyncDone { site: s, gen }) {
            return;
        }
        let now = self.hk_now(s);
        let trim_to = self.acked_by_all(s);
        let site = &mut self.sites[s];
        let (Some(engine), Some(hk), Some(sync)) =
            (site.engine.as_mut(), site.hk.as_mut(), site.sync.take())
        else {
            return;
        };
        hk.sync_done(engine, sync.wait(), now, trim_to.as_ref());
        if let Some(p) = engine.poisoned() {
            let v = Violation::new("storage", format!("site {}: sync failed: {p}", s + 1));
            self.fail(v);
            return;
        }
        self.trace.event(t, "fsync", &[s as u64], || {
            format!("site {} periodic fsync", s + 1)
        });
        self.after_touch(s);
        self.run_site_work(s);
    }

    fn capture_slice(&mut self, t: u64, s: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.defer_if_paused(s, || Ev::CaptureSlice { site: s, gen }) {
            return;
        }
        let site = &mut self.sites[s];
        let (Some(engine), Some(hk)) = (site.engine.as_mut(), site.hk.as_mut()) else {
            return;
        };
        match hk.capture(engine) {
            Capture::More => {
                self.sched
                    .after(CAPTURE_SLICE_GAP_MS, Ev::CaptureSlice { site: s, gen });
            }
            Capture::Ready(pending) => {
                let rows = pending.rows() as u64;
                site.checkpoint = Some(pending);
                let delay = 1 + self.site_rng.range(0, CHECKPOINT_WRITE_MS_MAX);
                self.sched
                    .after(delay, Ev::CheckpointWritten { site: s, gen });
                self.trace
                    .event(t, "checkpoint-captured", &[s as u64, rows], || {
                        format!("site {} captured a checkpoint of {rows} rows", s + 1)
                    });
            }
            Capture::Gone => {}
        }
    }

    fn checkpoint_written(&mut self, t: u64, s: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        // The write runs off the engine: a paused process writes nothing,
        // so it waits too.
        if self.defer_if_paused(s, || Ev::CheckpointWritten { site: s, gen }) {
            return;
        }
        self.write_checkpoint_now(t, s);
    }

    /// Writes the captured checkpoint of site `s`, if any. Also called
    /// before anything that checkpoints inline (a full sync's merge): the
    /// engine waits for a checkpoint being written, and in one thread that
    /// wait would never end.
    fn write_checkpoint_now(&mut self, t: u64, s: usize) {
        let now = self.hk_now(s);
        let site = &mut self.sites[s];
        let (Some(engine), Some(hk), Some(pending)) = (
            site.engine.as_mut(),
            site.hk.as_mut(),
            site.checkpoint.take(),
        ) else {
            return;
        };
        hk.checkpoint_done(engine, pending.write(), now);
        if let Some(p) = engine.poisoned() {
            let v = Violation::new("storage", format!("site {}: checkpoint failed: {p}", s + 1));
            self.fail(v);
            return;
        }
        self.trace.event(t, "checkpoint", &[s as u64], || {
            format!("site {} checkpoint written", s + 1)
        });
        self.after_touch(s);
        self.pump_site(s);
    }

    // ---- replication driver ---------------------------------------------------------

    /// Polls every session of site `s` for frames while its stream has room,
    /// then handles the sessions' events and timers.
    fn pump_site(&mut self, s: usize) {
        let peers: Vec<usize> = self.sites[s].sessions.keys().copied().collect();
        for peer in peers {
            self.pump(s, peer);
        }
    }

    fn pump(&mut self, s: usize, peer: usize) {
        if !self.sites[s].up() || self.is_paused(s) || self.violation.is_some() {
            return;
        }
        let now = self.sched.now_ms();
        let Some(&ci) = self.conn_of.get(&(s, peer)) else {
            return;
        };
        if self.conns[ci].state == ConnState::Up {
            let dir = self.conns[ci].dir(s);
            let qmax = self.p.net.queue_bytes_max;
            loop {
                if self.conns[ci].streams[dir].bytes >= qmax {
                    break;
                }
                let site = &mut self.sites[s];
                let (Some(engine), Some(sess)) =
                    (site.engine.as_ref(), site.sessions.get_mut(&peer))
                else {
                    break;
                };
                let Some(frame) = sess.poll_transmit(now, engine) else {
                    break;
                };
                self.enqueue(ci, dir, frame);
            }
        }
        self.session_events(s, peer);
        self.arm_timer(s, peer);
    }

    fn arm_timer(&mut self, s: usize, peer: usize) {
        let Some(at) = self.sites[s]
            .sessions
            .get(&peer)
            .and_then(|x| x.poll_timeout())
        else {
            return;
        };
        let cur = self.sites[s].timer_at.get(&peer).copied();
        if cur.is_none_or(|c| at < c || c < self.sched.now_ms()) {
            self.sites[s].timer_at.insert(peer, at);
            let gen = self.sites[s].gen;
            self.sched.at(at, Ev::SessionTimer { site: s, peer, gen });
        }
    }

    fn session_events(&mut self, s: usize, peer: usize) {
        let now = self.sched.now_ms();
        while let Some(ev) = self.sites[s]
            .sessions
            .get_mut(&peer)
            .and_then(|x| x.poll_event())
        {
            match ev {
                SessionEvent::Closed { error } => {
                    let e = error.to_string();
                    self.trace
                        .event(now, "session-closed", &[s as u64, peer as u64], || {
                            format!("site {} closed its session to {}: {e}", s + 1, peer + 1)
                        });
                    if let Some(&ci) = self.conn_of.get(&(s, peer)) {
                        self.close_conn(ci, "session closed");
                    }
                }
                SessionEvent::Refused { reason, by_peer } => {
                    let v = Violation::new(
                        "sim",
                        format!("site {} refused peer {} ({reason}, by_peer={by_peer}): misconfigured simulation", s + 1, peer + 1),
                    );
                    self.fail(v);
                }
                SessionEvent::FullSyncFinished {
                    direction: SyncDirection::Receiving,
                    rows,
                } => {
                    self.stats.full_syncs += 1;
                    self.trace
                        .event(now, "full-sync", &[s as u64, peer as u64, rows], || {
                            format!(
                                "site {} merged a snapshot of {rows} rows from {}",
                                s + 1,
                                peer + 1
                            )
                        });
                }
                SessionEvent::DigestMatched { .. } => self.stats.anti_entropy_checks += 1,
                SessionEvent::DigestMismatch { .. } if self.corrupting => {
                    self.stats.anti_entropy_checks += 1;
                }
                SessionEvent::Repaired { .. } if self.corrupting => {
                    self.stats.anti_entropy_repairs += 1;
                    self.settle_corruptions(now);
                }
                SessionEvent::DigestMismatch { db, buckets } => {
                    self.stats.anti_entropy_checks += 1;
                    let detail = match (&self.sites[s].engine, &self.sites[peer].engine) {
                        (Some(a), Some(b)) => {
                            format!(
                                " (vvs {} and {}){}",
                                a.vv(),
                                b.vv(),
                                crate::check::first_row_difference(a, b)
                            )
                        }
                        _ => String::new(),
                    };
                    let v = Violation::new(
                        "convergence",
                        format!("sites {} and {}: leaves {buckets:?} of db {db} differ where both hold the same ops{detail}", s + 1, peer + 1),
                    );
                    self.fail(v);
                }
                SessionEvent::Repaired { db, buckets, rows } => {
                    self.stats.anti_entropy_repairs += 1;
                    let v = Violation::new(
                        "anti-entropy",
                        format!("site {} repaired {rows} rows of buckets {buckets:?} of db {db} from site {}: a correct system never repairs", s + 1, peer + 1),
                    );
                    self.fail(v);
                }
                _ => {}
            }
        }
    }

    fn session_timer(&mut self, t: u64, s: usize, peer: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.sites[s].timer_at.get(&peer) == Some(&t) {
            self.sites[s].timer_at.remove(&peer);
        }
        if self.defer_if_paused(s, || Ev::SessionTimer { site: s, peer, gen }) {
            return;
        }
        let site = &mut self.sites[s];
        let (Some(engine), Some(sess)) = (site.engine.as_mut(), site.sessions.get_mut(&peer))
        else {
            return;
        };
        if sess.poll_timeout().is_some_and(|at| at <= t) {
            sess.handle_timeout(t, engine);
            self.trace
                .event(t, "session-timeout", &[s as u64, peer as u64], String::new);
        }
        self.pump(s, peer);
    }

    fn enqueue(&mut self, ci: usize, dir: usize, frame: Vec<u8>) {
        let now = self.sched.now_ms();
        let n = &self.p.net;
        let mut lat = n.latency_ms + self.net_rng.range(0, n.jitter_ms);
        if self.net_rng.chance(n.tail_p) {
            lat += n.tail_ms;
        }
        if self.net_rng.chance(n.stall_p) {
            // A lost packet: the stream waits for the retransmission.
            lat += n.stall_ms;
        }
        let c = &mut self.conns[ci];
        let st = &mut c.streams[dir];
        let at = (now + lat).max(st.last_at_ms);
        st.last_at_ms = at;
        st.bytes += frame.len();
        if frame_tag(&frame) == Some(TAG_OP_BATCH) {
            if st.history.len() >= REPLAY_FRAMES_MAX {
                st.history.pop_front();
            }
            st.history.push_back(frame.clone());
        }
        st.queue.push_back((at, frame));
        if !st.scheduled {
            st.scheduled = true;
            let epoch = c.epoch;
            self.sched.at(
                at,
                Ev::Deliver {
                    conn: ci,
                    dir,
                    epoch,
                },
            );
        }
    }

    fn schedule_dial(&mut self, ci: usize, delay: u64) {
        if self.conns[ci].dial_pending {
            return;
        }
        self.conns[ci].dial_pending = true;
        self.sched.after(delay, Ev::Dial { conn: ci });
    }

    fn link(&self, from: usize, to: usize) -> &LinkFaults {
        &self.links[from * self.sites.len() + to]
    }

    fn link_mut(&mut self, from: usize, to: usize) -> &mut LinkFaults {
        let n = self.sites.len();
        &mut self.links[from * n + to]
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.sites[a].up()
            && self.sites[b].up()
            && !self.is_paused(a)
            && !self.is_paused(b)
            && self.link(a, b).blocked == 0
            && self.link(b, a).blocked == 0
    }

    fn redial(&mut self, ci: usize) {
        let jitter = self.net_rng.next_u64();
        let d = self.conns[ci].backoff.next_delay_ms(jitter);
        self.schedule_dial(ci, d);
    }

    fn dial(&mut self, t: u64, ci: usize) {
        self.conns[ci].dial_pending = false;
        if self.conns[ci].state != ConnState::Down {
            return;
        }
        let (a, b) = (self.conns[ci].a, self.conns[ci].b);
        if !self.sites[a].up() && !self.sites[b].up() {
            return; // redialed when a site restarts
        }
        if !self.reachable(a, b) {
            self.redial(ci);
            return;
        }
        self.conns[ci].state = ConnState::Dialing;
        let rtt = 2 * self.p.net.latency_ms + 1;
        let epoch = self.conns[ci].epoch;
        self.trace.event(t, "dial", &[ci as u64, epoch], || {
            format!("{}<->{} dialing", a + 1, b + 1)
        });
        self.sched.after(rtt, Ev::Established { conn: ci, epoch });
    }

    fn established(&mut self, t: u64, ci: usize, epoch: u64) {
        if self.conns[ci].epoch != epoch || self.conns[ci].state != ConnState::Dialing {
            return;
        }
        let (a, b) = (self.conns[ci].a, self.conns[ci].b);
        if !self.reachable(a, b) {
            self.conns[ci].state = ConnState::Down;
            self.conns[ci].epoch += 1;
            self.redial(ci);
            return;
        }
        let c = &mut self.conns[ci];
        c.state = ConnState::Up;
        c.backoff.reset();
        for st in c.streams.iter_mut() {
            st.clear();
            st.last_at_ms = t;
        }
        self.stats.reconnects += 1;
        for (x, y) in [(a, b), (b, a)] {
            if let Some(sess) = self.sites[x].sessions.get_mut(&y) {
                sess.handle_connected(t);
            }
        }
        self.trace.event(t, "connected", &[ci as u64, epoch], || {
            format!("{}<->{} up", a + 1, b + 1)
        });
        self.pump(a, b);
        self.pump(b, a);
    }

    /// Drops the connection and what is in flight on it; both sessions are told.
    fn close_conn(&mut self, ci: usize, why: &str) {
        let t = self.sched.now_ms();
        let c = &mut self.conns[ci];
        if c.state == ConnState::Down {
            return;
        }
        c.state = ConnState::Down;
        c.epoch += 1;
        for st in c.streams.iter_mut() {
            st.clear();
        }
        let (a, b) = (c.a, c.b);
        for (x, y) in [(a, b), (b, a)] {
            if let Some(sess) = self.sites[x].sessions.get_mut(&y) {
                sess.handle_disconnected(t);
            }
            self.sites[x].incoming_snapshot.remove(&y);
        }
        let w = why.to_owned();
        self.trace.event(t, "conn-reset", &[ci as u64], || {
            format!("{}<->{} down: {w}", a + 1, b + 1)
        });
        self.redial(ci);
    }

    fn deliver(&mut self, t: u64, ci: usize, dir: usize, epoch: u64) {
        if self.conns[ci].epoch != epoch || self.conns[ci].state != ConnState::Up {
            return;
        }
        let (from, to) = if dir == 0 {
            (self.conns[ci].a, self.conns[ci].b)
        } else {
            (self.conns[ci].b, self.conns[ci].a)
        };
        let st = &mut self.conns[ci].streams[dir];
        st.scheduled = false;
        let Some(&(at, _)) = st.queue.front() else {
            return;
        };
        let reschedule = |sim: &mut Sim, when: u64| {
            let st = &mut sim.conns[ci].streams[dir];
            st.scheduled = true;
            sim.sched.at(
                when,
                Ev::Deliver {
                    conn: ci,
                    dir,
                    epoch,
                },
            );
        };
        if at > t {
            reschedule(self, at);
            return;
        }
        let lf = self.link(from, to).clone();
        if lf.blocked > 0 {
            // Stalled: resumed by `unblock`, or the sessions time out.
            return;
        }
        if lf.clogged_until_ms > t {
            reschedule(self, lf.clogged_until_ms);
            return;
        }
        if let Some(until) = self.sites[to].paused_until.filter(|&u| u > t) {
            reschedule(self, until);
            return;
        }
        if self.sites[to].receive_more.contains(&from) {
            // The driver reads the next chunk once the last one is handled:
            // `receive_slice` resumes the delivery.
            return;
        }
        // Every frame that has arrived, up to a read chunk's worth (the QUIC
        // driver reads up to 64 KiB at a time), is buffered first, then
        // handled a slice at a time. A `SnapshotEnd` is read on its own: its
        // merge brings ops without log records, and the checkers must scan
        // the records logged before it first, and learn of the merge before
        // any record after it.
        let mut read = 0usize;
        while read < READ_CHUNK_BYTES {
            let st = &mut self.conns[ci].streams[dir];
            let end = match st.queue.front() {
                Some((a, _)) if *a > t => break,
                Some((_, f)) => frame_tag(f) == Some(TAG_SNAPSHOT_END),
                None => break,
            };
            if end && read > 0 {
                break;
            }
            let Some((_, frame)) = st.queue.pop_front() else {
                break;
            };
            st.bytes = st.bytes.saturating_sub(frame.len());
            read += frame.len();
            self.push_frame(t, from, to, frame);
            if end {
                break;
            }
        }
        if let Some(&(next_at, _)) = self.conns[ci].streams[dir].queue.front() {
            reschedule(self, next_at.max(t));
        }
        self.receive_slice(t, from, to);
        // The sender may have room again.
        self.pump(from, to);
    }

    /// Buffers one whole frame at the receiving session (in one or two
    /// pieces); [`Sim::receive_slice`] handles it.
    fn push_frame(&mut self, t: u64, from: usize, to: usize, frame: Vec<u8>) {
        let tag = frame_tag(&frame);
        let mut frame = frame;
        if tag == Some(TAG_OP_BATCH) {
            if let Some(c) = self.cfg.canary.filter(|c| c.rewrites_batches()) {
                frame = self.canary_rewrite(c, to, frame);
            }
        }
        if tag == Some(TAG_SNAPSHOT_BEGIN) {
            if let Some(Message::SnapshotBegin { vv, .. }) = decode_frame(&frame) {
                self.sites[to].incoming_snapshot.insert(from, vv);
            }
        }
        let split = if frame.len() > 8 && self.net_rng.chance(0.2) {
            self.net_rng.range(1, frame.len() as u64 - 1) as usize
        } else {
            frame.len()
        };
        let len = frame.len() as u64;
        if tag == Some(TAG_SNAPSHOT_END) {
            self.sites[to].snapshot_end_pushed.insert(from);
        }
        let site = &mut self.sites[to];
        let (Some(engine), Some(sess)) = (site.engine.as_ref(), site.sessions.get_mut(&from))
        else {
            return;
        };
        // Buffered, then handled a slice at a time, as the QUIC driver does.
        let (head, tail) = frame.split_at(split);
        sess.push_bytes(t, head);
        if !tail.is_empty() {
            sess.push_bytes(t, tail);
        }
        let held = engine.vv().total();
        self.trace.event(
            t,
            "recv",
            &[from as u64, to as u64, len, tag.unwrap_or(255) as u64, held],
            || {
                format!(
                    "{}->{} frame tag {tag:?} {len}B, site holds {held} ops",
                    from + 1,
                    to + 1
                )
            },
        );
    }

    fn receive_more(&mut self, t: u64, s: usize, peer: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.defer_if_paused(s, || Ev::ReceiveMore { site: s, peer, gen }) {
            return;
        }
        self.sites[s].receive_more.remove(&peer);
        self.receive_slice(t, peer, s);
    }

    /// Handles one slice of what site `to` buffered from `from`; schedules
    /// the next slice if the budget ran out.
    fn receive_slice(&mut self, t: u64, from: usize, to: usize) {
        if !self.sites[to].incoming_snapshot.is_empty() {
            // The merge checkpoints inline, which waits for a checkpoint
            // being written: write it first.
            self.write_checkpoint_now(t, to);
        }
        let site = &mut self.sites[to];
        let (Some(engine), Some(sess)) = (site.engine.as_mut(), site.sessions.get_mut(&from))
        else {
            return;
        };
        let vv_before = engine.vv().total();
        let more = sess.handle_received(t, engine, RECEIVE_SLICE_WORK);
        let vv_after = engine.vv().total();
        if vv_after != vv_before {
            self.trace
                .event(t, "applied", &[from as u64, to as u64, vv_after], || {
                    format!(
                        "site {} applied from {}: {vv_before}->{vv_after} ops{}",
                        to + 1,
                        from + 1,
                        if more { ", more to come" } else { "" }
                    )
                });
        }
        if more {
            if self.sites[to].receive_more.insert(from) {
                let gen = self.sites[to].gen;
                self.sched.after(
                    RECEIVE_SLICE_GAP_MS,
                    Ev::ReceiveMore {
                        site: to,
                        peer: from,
                        gen,
                    },
                );
            }
        } else {
            if self.sites[to].snapshot_end_pushed.remove(&from) {
                self.snapshot_end_handled(from, to);
            }
            self.resume_delivery(from, to);
        }
        self.after_touch(to);
        if vv_after != vv_before && self.p.fsync == Fsync::Always {
            self.schedule_group_commit(to);
        }
        // Our acks and forwarded ops go out now.
        self.pump_site(to);
    }

    /// Schedules the delivery of what `from` sent `to`, if frames wait and
    /// none is scheduled (a delivery waits while a read is being handled).
    fn resume_delivery(&mut self, from: usize, to: usize) {
        let Some(&ci) = self.conn_of.get(&(from, to)) else {
            return;
        };
        if self.conns[ci].state != ConnState::Up {
            return;
        }
        let dir = self.conns[ci].dir(from);
        let epoch = self.conns[ci].epoch;
        let now = self.sched.now_ms();
        let st = &mut self.conns[ci].streams[dir];
        if st.scheduled {
            return;
        }
        let Some(&(at, _)) = st.queue.front() else {
            return;
        };
        st.scheduled = true;
        self.sched.at(
            at.max(now),
            Ev::Deliver {
                conn: ci,
                dir,
                epoch,
            },
        );
    }

    /// After every byte up to a `SnapshotEnd` was handled: if the snapshot
    /// was merged, the scan must know its ops are held without log records.
    fn snapshot_end_handled(&mut self, from: usize, to: usize) {
        let merged = self.sites[to].engine.as_ref().is_some_and(|e| {
            self.sites[to]
                .incoming_snapshot
                .get(&from)
                .is_some_and(|v| e.vv().dominates(v))
        });
        if let Some(vv) = self.sites[to].incoming_snapshot.remove(&from) {
            if merged {
                self.check.note_snapshot_merged(to, &vv);
                self.full_sync_checks += 1;
                if self.corruptions.iter().any(|c| c.0 == from) {
                    // A join at the sender's vector takes its damage
                    // along: the receiver waits for anti-entropy too.
                    let at = self.sched.now_ms();
                    self.corruptions.push((to, at));
                }
                let check = (self.paranoid || self.full_sync_checks <= FULL_SYNC_REPLAY_CHECKS_MAX)
                    && !self.corruptions.iter().any(|c| c.0 == to);
                if let Some(e) = self.sites[to].engine.as_ref().filter(|_| check) {
                    if let Err(v) = self.check.state_matches_replay(to, e, "a full sync") {
                        self.fail(v);
                    }
                }
                let wall = self.wall(to);
                if let Some(e) = self.sites[to].engine.as_mut() {
                    if let Err(err) = e.checkpoint(wall) {
                        let v = Violation::new(
                            "storage",
                            format!("site {}: checkpoint after full sync failed: {err}", to + 1),
                        );
                        self.fail(v);
                    }
                }
            }
        }
    }

    /// The emulated canaries: rewrite an op batch on its way to the engine.
    fn canary_rewrite(&mut self, canary: Canary, to: usize, frame: Vec<u8>) -> Vec<u8> {
        let Some(Message::OpBatch { ops }) = decode_frame(&frame) else {
            return frame;
        };
        let wall = self.wall(to);
        let Some(engine) = self.sites[to].engine.as_ref() else {
            return frame;
        };
        let mut out = Vec::with_capacity(ops.len());
        for bytes in ops {
            let Ok(mut op) = decode_op(&bytes) else {
                out.push(bytes);
                continue;
            };
            match canary {
                Canary::SkipDeps => {
                    op.deps = VersionVector::new();
                    let b = encode_op(&op);
                    self.check.allow_variant(op.id, fnv1a(&b));
                    out.push(b);
                }
                Canary::LwwArrivalOrder => {
                    op.hlc = Hlc::new(wall, 0);
                    let b = encode_op(&op);
                    self.check.allow_variant(op.id, fnv1a(&b));
                    out.push(b);
                }
                Canary::NoDedup if engine.vv().covers(op.id) => {
                    // Applied again, as if dedup were missing.
                    self.synthetic_incarnation += 1;
                    op.id = OpId::new(
                        Origin::new(op.id.origin.site, self.synthetic_incarnation),
                        1,
                    );
                    let mut deps = engine.vv().clone();
                    deps.set(op.id.origin, 0);
                    op.deps = deps;
                    out.push(encode_op(&op));
                }
                _ => out.push(bytes),
            }
        }
        match encode_frame(&Message::OpBatch { ops: out }) {
            Ok(f) => f,
            Err(_) => frame,
        }
    }

    // ---- faults --------------------------------------------------------------------------

    fn fault(&mut self, t: u64) {
        if !self.safety {
            return;
        }
        let kind = FaultKind::ALL[self.fault_rng.weighted(&self.p.fault_weights)];
        let n = self.sites.len();
        let site = self.fault_rng.below(n as u64) as usize;
        let mut done = true;
        match kind {
            FaultKind::Crash | FaultKind::Wipe => {
                if self.sites[site].up() {
                    let wipe = kind == FaultKind::Wipe;
                    if !wipe && self.fault_rng.chance(0.3) {
                        // A backup of the disk as it is now (durable bytes
                        // only: taken at any point, not after a clean stop).
                        let mut image = self.sites[site].disk.lock().durable_image();
                        if self.fault_rng.chance(0.5) {
                            // As if taken after a clean stop: nothing on the
                            // disk tells the restored site it is a copy.
                            let _ = image.meta_put("clean_shutdown", b"1");
                        }
                        self.sites[site].backup = Some(image);
                    }
                    self.crash(t, site, wipe);
                    let down = self.fault_rng.range(50, 4_000);
                    self.sched.after(down, Ev::Restart { site, wipe });
                } else {
                    done = false;
                }
            }
            FaultKind::Pause => {
                if self.sites[site].up() && !self.is_paused(site) {
                    let d = self.fault_rng.range(50, 2 * self.p.knobs.idle_timeout_ms);
                    self.sites[site].paused_until = Some(t + d);
                    self.trace.event(t, "pause", &[site as u64, d], || {
                        format!("site {} paused {d}ms", site + 1)
                    });
                    self.sched.after(d, Ev::Resume { site });
                } else {
                    done = false;
                }
            }
            FaultKind::Partition => {
                let mut links = Vec::new();
                let shape = self.fault_rng.below(3);
                match shape {
                    0 => {
                        for o in 0..n {
                            if o != site {
                                links.push((site, o));
                                links.push((o, site));
                            }
                        }
                    }
                    1 => {
                        let mask = loop {
                            let m = self.fault_rng.below((1u64 << n) - 2) + 1;
                            if m != 0 && m != (1 << n) - 1 {
                                break m;
                            }
                        };
                        for a in 0..n {
                            for b in 0..n {
                                if (mask >> a) & 1 == 1 && (mask >> b) & 1 == 0 {
                                    links.push((a, b));
                                    links.push((b, a));
                                }
                            }
                        }
                    }
                    _ => {
                        let other = (site + 1 + self.fault_rng.below(n as u64 - 1) as usize) % n;
                        links.push((site, other));
                    }
                }
                for &(a, b) in &links {
                    self.link_mut(a, b).blocked += 1;
                }
                let d = self.fault_rng.range(200, 8_000);
                let desc = format!("{links:?}");
                self.trace
                    .event(t, "partition", &[shape, d, links.len() as u64], || {
                        format!("blocked {desc} for {d}ms")
                    });
                self.sched.after(d, Ev::Unblock { links });
            }
            FaultKind::Clog => {
                let other = (site + 1 + self.fault_rng.below(n as u64 - 1) as usize) % n;
                let d = self.fault_rng.range(50, 3_000);
                let l = self.link_mut(site, other);
                l.clogged_until_ms = l.clogged_until_ms.max(t + d);
                self.trace
                    .event(t, "clog", &[site as u64, other as u64, d], || {
                        format!("{}->{} clogged {d}ms", site + 1, other + 1)
                    });
            }
            FaultKind::Reset => {
                let up: Vec<usize> = (0..self.conns.len())
                    .filter(|&c| self.conns[c].state == ConnState::Up)
                    .collect();
                match self.fault_rng.pick(&up).copied() {
                    Some(ci) => self.close_conn(ci, "injected reset"),
                    None => done = false,
                }
            }
            FaultKind::Replay => done = self.replay(t),
            FaultKind::ClockJump => {
                let mag = self.fault_rng.range(10, 30_000) as i64;
                let back = self.fault_rng.chance(0.5);
                let d = if back { -mag } else { mag };
                self.sites[site].clock.jumps_ms += d;
                self.trace
                    .event(t, "clock-jump", &[site as u64, d as u64], || {
                        format!("site {} clock jumps {d}ms", site + 1)
                    });
            }
        }
        if done {
            self.faults += 1;
        }
        let d = self.fault_rng.exp_ms(self.p.fault_interval_ms as f64);
        self.sched.after(d, Ev::Fault);
    }

    /// Injects an old op batch again into a live stream (a replayed message).
    fn replay(&mut self, t: u64) -> bool {
        let mut candidates = Vec::new();
        for (ci, c) in self.conns.iter().enumerate() {
            if c.state != ConnState::Up {
                continue;
            }
            for dir in 0..2 {
                if !c.streams[dir].history.is_empty() {
                    candidates.push((ci, dir));
                }
            }
        }
        let Some(&(ci, dir)) = self.fault_rng.pick(&candidates) else {
            return false;
        };
        let h = &self.conns[ci].streams[dir].history;
        let i = self.fault_rng.below(h.len() as u64) as usize;
        let Some(frame) = h.get(i).cloned() else {
            return false;
        };
        let len = frame.len() as u64;
        self.trace
            .event(t, "replay", &[ci as u64, dir as u64, len], || {
                format!("conn {ci} dir {dir}: replaying an old op batch of {len}B")
            });
        self.enqueue(ci, dir, frame);
        true
    }

    fn crash(&mut self, t: u64, s: usize, wipe: bool) {
        let torn = {
            let disk = self.sites[s].disk.lock();
            let v = disk.volatile_len() as u64;
            if v > 0 && self.fault_rng.chance(0.5) {
                self.fault_rng.range(1, v) as usize
            } else {
                0
            }
        };
        self.sites[s].engine = None;
        self.sites[s].hk = None;
        self.sites[s].sync = None;
        self.sites[s].checkpoint = None;
        self.sites[s].snapshot_end_pushed.clear();
        self.sites[s].receive_more.clear();
        self.sites[s].sessions.clear();
        self.sites[s].timer_at.clear();
        self.sites[s].paused_until = None;
        self.sites[s].group_commit_at = None;
        let failed = std::mem::take(&mut self.sites[s].pending_acks);
        let conns: Vec<usize> = (0..self.conns.len())
            .filter(|&c| self.conns[c].a == s || self.conns[c].b == s)
            .collect();
        for ci in conns {
            self.close_conn(ci, "site crashed");
        }
        if wipe {
            self.stats.wipes += 1;
            // A rebuilt site: new disk, or an older image of its own put back
            // (a restore from a backup). Its start takes an incarnation that
            // stands for the server's wall-clock one: above any of its
            // earlier lives (see docs/simulator.md, "wipe" and "restore").
            let floor = self.check.max_incarnation(s).saturating_add(1);
            self.sites[s].engine_config.incarnation_floor = floor;
            let restore = self.sites[s].backup.is_some() && self.fault_rng.chance(0.5);
            self.sites[s].disk = match self.sites[s].backup.take().filter(|_| restore) {
                Some(image) => {
                    self.stats.restores += 1;
                    SharedDisk::from_image(image)
                }
                None => SharedDisk::new(),
            };
            self.check.site_wiped(s);
        } else {
            self.stats.crashes += 1;
            self.sites[s].disk.lock().crash(torn);
        }
        self.trace.event(
            t,
            if wipe { "wipe" } else { "crash" },
            &[s as u64, torn as u64],
            || {
                format!(
                    "site {} {} (torn tail {torn}B)",
                    s + 1,
                    if wipe { "disk wiped" } else { "crashed" }
                )
            },
        );
        for (id, _) in failed {
            self.retry(id, "connection lost before the reply");
        }
    }

    fn restart(&mut self, _t: u64, s: usize, _wipe: bool) {
        if self.sites[s].up() {
            return;
        }
        if self.cfg.canary == Some(Canary::ReuseSeq) {
            // The bug: restart as if the shutdown had been clean, with the
            // engine keeping a clean stop's incarnation (as it once did), so
            // it hands out the lost seqs again.
            let _ = self.sites[s].disk.lock().meta_put("clean_shutdown", b"1");
            self.sites[s].engine_config.canaries.keep_incarnation = true;
        }
        self.start_site(s);
        if self.violation.is_some() {
            return;
        }
        for ci in 0..self.conns.len() {
            if self.conns[ci].a == s || self.conns[ci].b == s {
                self.conns[ci].backoff.reset();
                self.schedule_dial(ci, 0);
            }
        }
        self.after_touch(s);
    }

    fn resume(&mut self, t: u64, s: usize) {
        if self.sites[s].paused_until.is_some_and(|u| u <= t) {
            self.sites[s].paused_until = None;
            self.trace.event(t, "resume", &[s as u64], || {
                format!("site {} resumed", s + 1)
            });
            self.pump_site(s);
        }
    }

    fn unblock(&mut self, t: u64, links: Vec<(usize, usize)>) {
        for &(a, b) in &links {
            let l = self.link_mut(a, b);
            l.blocked = l.blocked.saturating_sub(1);
        }
        self.trace.event(t, "heal", &[links.len() as u64], || {
            format!("unblocked {links:?}")
        });
        self.kick_streams();
    }

    /// Restarts delivery on streams that stalled behind a blocked link.
    fn kick_streams(&mut self) {
        let t = self.sched.now_ms();
        for ci in 0..self.conns.len() {
            if self.conns[ci].state != ConnState::Up {
                continue;
            }
            let epoch = self.conns[ci].epoch;
            for dir in 0..2 {
                let st = &mut self.conns[ci].streams[dir];
                if !st.scheduled && !st.queue.is_empty() {
                    st.scheduled = true;
                    let at = st.queue.front().map_or(t, |f| f.0.max(t));
                    self.sched.at(
                        at,
                        Ev::Deliver {
                            conn: ci,
                            dir,
                            epoch,
                        },
                    );
                }
            }
        }
    }

    // ---- convergence ---------------------------------------------------------------------

    /// Profile `corrupt`: damages one row of an up site behind its engine
    /// (`put_row_unlogged`): the row is removed, or loses one member, field
    /// or counter increment. Anti-entropy must bring it back from a peer
    /// with nothing lost anywhere (the oracle checks every value at the end).
    fn corrupt(&mut self, t: u64) {
        if !self.safety {
            return;
        }
        self.sched.after(
            self.fault_rng.exp_ms(CORRUPT_INTERVAL_MS as f64),
            Ev::Corrupt,
        );
        if !self.corruptions.is_empty() {
            // One damaged site at a time: the same row lost at every site
            // is gone for good, whatever anti-entropy does.
            return;
        }
        let n = self.sites.len();
        let s = self.fault_rng.below(n as u64) as usize;
        let db = self.fault_rng.below(u64::from(self.p.dbs.max(1))) as u8;
        let Some(engine) = self.sites[s].engine.as_mut() else {
            return;
        };
        let rows = &engine.keyspace().db(db).rows;
        let count = rows.len() as u64;
        if count == 0 {
            return;
        }
        let pick = self.fault_rng.below(count) as usize;
        let Some((key, row)) = rows.iter().nth(pick) else {
            return;
        };
        let key = key.clone();
        let mut image = chorus_engine::keyspace::image::RowImage::of(row);
        let what = if self.fault_rng.chance(0.5) {
            image = Default::default();
            "removed"
        } else if !image.set.is_empty() {
            let i = self.fault_rng.below(image.set.len() as u64) as usize;
            image.set.remove(i);
            "lost a member"
        } else if !image.hash.is_empty() {
            let i = self.fault_rng.below(image.hash.len() as u64) as usize;
            image.hash.remove(i);
            "lost a field"
        } else if image.string.as_ref().is_some_and(|c| !c.ctr.is_empty()) {
            if let Some(c) = image.string.as_mut() {
                c.ctr.pop();
            }
            "lost an increment"
        } else {
            image = Default::default();
            "removed"
        };
        engine.put_row_unlogged(db, key.clone(), image);
        self.corruptions.push((s, t));
        self.stats.corruptions += 1;
        self.trace
            .event(t, "corrupt", &[s as u64, u64::from(db)], || {
                format!(
                    "site {} row {:?} of db {db} {what} behind the engine",
                    s + 1,
                    String::from_utf8_lossy(&key)
                )
            });
    }

    /// Clears the damage of sites whose state is again what their ops make
    /// (repaired, or rewritten by later ops), noting how long it took.
    fn settle_corruptions(&mut self, t: u64) {
        if self.corruptions.is_empty() {
            return;
        }
        let mut healed = Vec::new();
        for (s, site) in self.sites.iter().enumerate() {
            let Some(e) = site.engine.as_ref() else {
                continue;
            };
            if self.corruptions.iter().any(|c| c.0 == s)
                && self.check.state_matches_replay(s, e, "a repair").is_ok()
            {
                healed.push(s);
            }
        }
        for s in healed {
            for (_, at) in self.corruptions.iter().filter(|c| c.0 == s) {
                self.stats.repair_ms_max = self.stats.repair_ms_max.max(t.saturating_sub(*at));
            }
            self.corruptions.retain(|c| c.0 != s);
        }
    }

    fn audit(&mut self, t: u64) {
        if !self.safety {
            return;
        }
        self.settle_corruptions(t);
        let engines: Vec<Option<&Engine>> = self.sites.iter().map(|s| s.engine.as_ref()).collect();
        if self.corruptions.is_empty() {
            if let Err(v) = self.check.audit_convergence(&engines) {
                self.fail(v);
                return;
            }
        }
        if self.paranoid && self.corruptions.is_empty() {
            for (i, site) in self.sites.iter().enumerate() {
                if let Some(e) = site.engine.as_ref() {
                    if let Err(v) = self.check.state_matches_replay(i, e, "an audit") {
                        self.violation.get_or_insert(v);
                        return;
                    }
                }
            }
        }
        self.trace.event(t, "audit", &[], String::new);
        self.sched.after(AUDIT_INTERVAL_MS, Ev::Audit);
    }

    fn end_safety(&mut self, t: u64) {
        if !self.safety {
            return;
        }
        self.safety = false;
        self.liveness_started_ms = t;
        self.trace.event(t, "heal-all", &[], || {
            "liveness phase: heal everything".to_owned()
        });
        // Heal: links, clogs, pauses, crashed sites; clients stop.
        for l in self.links.iter_mut() {
            *l = LinkFaults::default();
        }
        self.clients.clear();
        for s in 0..self.sites.len() {
            if !self.sites[s].up() {
                self.restart(t, s, false);
            } else if self.sites[s].paused_until.is_some() {
                self.sites[s].paused_until = None;
                self.pump_site(s);
            }
        }
        self.kick_streams();
        for ci in 0..self.conns.len() {
            if self.conns[ci].state == ConnState::Down {
                self.conns[ci].backoff.reset();
                self.schedule_dial(ci, 0);
            }
        }
        self.sched.after(LIVENESS_CHECK_MS, Ev::LivenessCheck);
    }

    fn liveness_check(&mut self, t: u64) {
        let engines: Vec<Option<&Engine>> = self.sites.iter().map(|s| s.engine.as_ref()).collect();
        let all_up = engines.iter().all(Option::is_some);
        let first_vv = engines.first().and_then(|e| e.map(|e| e.vv().clone()));
        let same_vv = all_up
            && first_vv.is_some_and(|v| engines.iter().all(|e| e.is_some_and(|e| *e.vv() == v)));
        if same_vv && !self.corruptions.is_empty() {
            // Anti-entropy has damage to repair first (checked against a
            // replay of every op: every 500 ms, not at every check).
            drop(engines);
            if t % AUDIT_INTERVAL_MS < LIVENESS_CHECK_MS {
                self.settle_corruptions(t);
            }
            self.sched.after(LIVENESS_CHECK_MS, Ev::LivenessCheck);
            return;
        }
        if same_vv {
            match self.check.audit_convergence(&engines) {
                Ok(()) if self.final_anti_entropy.is_none() => self.request_final_anti_entropy(t),
                Ok(()) if self.final_anti_entropy_done() => {
                    self.trace
                        .event(t, "converged", &[], || "all sites converged".to_owned());
                    self.converged = true;
                    return;
                }
                Ok(()) => {}
                Err(v) => {
                    self.fail(v);
                    return;
                }
            }
        }
        self.sched.after(LIVENESS_CHECK_MS, Ev::LivenessCheck);
    }

    /// Converged: one more anti-entropy round on every link, so every run
    /// compares digests at equal vectors at least once per link (and a
    /// repair there fails the run).
    fn request_final_anti_entropy(&mut self, t: u64) {
        let mut base = BTreeMap::new();
        for s in 0..self.sites.len() {
            for (&peer, sess) in self.sites[s].sessions.iter_mut() {
                sess.request_anti_entropy();
                base.insert((s, peer), sess.stats().anti_entropy_checks);
            }
        }
        self.final_anti_entropy = Some(base);
        self.trace.event(t, "anti-entropy", &[], || {
            "converged: one anti-entropy round per link".to_owned()
        });
        for s in 0..self.sites.len() {
            self.pump_site(s);
        }
    }

    /// Every link that is up compared all 16 databases since the request.
    fn final_anti_entropy_done(&self) -> bool {
        let Some(base) = &self.final_anti_entropy else {
            return false;
        };
        let compared = |s: usize, peer: usize| {
            let now = self.sites[s]
                .sessions
                .get(&peer)
                .map_or(0, |x| x.stats().anti_entropy_checks);
            // A round compares the databases either site holds rows in.
            let used = |x: usize| -> u16 {
                self.sites[x].engine.as_ref().map_or(0, |e| {
                    (0..DBS as u8)
                        .filter(|&d| !e.keyspace().db(d).is_empty())
                        .fold(0, |m, d| m | 1 << d)
                })
            };
            let needed = u64::from((used(s) | used(peer)).count_ones());
            now.saturating_sub(base.get(&(s, peer)).copied().unwrap_or(now)) >= needed
        };
        self.conns
            .iter()
            .filter(|c| c.state == ConnState::Up)
            .all(|c| compared(c.a, c.b) || compared(c.b, c.a))
    }

    fn liveness_report(&self) -> String {
        let mut parts = Vec::new();
        for (i, s) in self.sites.iter().enumerate() {
            match &s.engine {
                Some(e) => {
                    let states: Vec<String> = s
                        .sessions
                        .iter()
                        .map(|(p, x)| {
                            let q = self.conn_of.get(&(i, *p)).map(|&ci| {
                                let c = &self.conns[ci];
                                let st = &c.streams[c.dir(i)];
                                format!(
                                    "{:?} queued={} scheduled={}",
                                    c.state,
                                    st.queue.len(),
                                    st.scheduled
                                )
                            });
                            format!(
                                "{}:{} inflight={} known={} acked={} conn[{}]",
                                p + 1,
                                x.state().name(),
                                x.inflight_batches(),
                                x.peer_known_vv(),
                                x.peer_acked_vv(),
                                q.unwrap_or_default()
                            )
                        })
                        .collect();
                    parts.push(format!(
                        "site {} vv={} buffered={} sessions[{}]",
                        i + 1,
                        e.vv(),
                        e.causal_buffer_len(),
                        states.join(" ")
                    ));
                }
                None => parts.push(format!("site {} down", i + 1)),
            }
        }
        let delivers: Vec<String> = self
            .sched
            .iter()
            .filter(|(_, e)| matches!(e, Ev::Deliver { .. }))
            .take(8)
            .map(|(t, e)| format!("{t}:{e:?}"))
            .collect();
        let anti_entropy = match &self.final_anti_entropy {
            None => "",
            Some(_) => " (states converged; final anti-entropy round not finished)",
        };
        format!(
            "no convergence within {} ms of healing{anti_entropy}: {}; pending deliveries: {}",
            self.p.liveness_deadline_ms,
            parts.join("; "),
            delivers.join(" ")
        )
    }

    fn final_checks(&mut self) {
        if self.stats.anti_entropy_repairs != 0 && !self.corrupting {
            let n = self.stats.anti_entropy_repairs;
            self.fail(Violation::new(
                "anti-entropy",
                format!("{n} anti-entropy repairs: a correct system never repairs"),
            ));
            return;
        }
        let engines: Vec<Option<&Engine>> = self.sites.iter().map(|s| s.engine.as_ref()).collect();
        let res = self.check.final_checks(&engines);
        match res {
            Ok(lost) => self.stats.lost_unacked_ops = lost,
            Err(v) => self.fail(v),
        }
    }
}

/// Decodes one whole frame (bookkeeping and canaries only).
fn decode_frame(frame: &[u8]) -> Option<Message> {
    let mut d = FrameDecoder::new();
    d.push(frame);
    d.next_message().ok().flatten()
}
