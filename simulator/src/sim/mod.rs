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

mod clients;
mod convergence;
mod faults;
mod housekeeping;
mod network;

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
use chorus_engine::id::{OpId, SiteId, VersionVector};
use chorus_engine::keyspace::ALL_DBS;
use chorus_engine::storage::memory::FailPoint;
use chorus_engine::storage::Storage;
use chorus_engine::{Engine, EngineConfig, Fsync, Reply};
use chorus_replication::wire::{FrameDecoder, Message};
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
/// After healing, a session that holds batches in flight on an open
/// connection must see its peer acknowledge something within this long
/// (six ack timeouts: each resends what the peer did not confirm).
pub const STUCK_SESSION_MS: u64 = 6 * chorus_replication::session::ACK_WAIT_MS;
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
    /// LWW by arrival order: the engine applies a remote op with a stamp
    /// taken on arrival (`EngineCanaries::lww_arrival_order`).
    LwwArrivalOrder,
    /// Duplicated ops applied again: the engine applies and logs an op it
    /// already holds (`EngineCanaries::no_dedup`).
    NoDedup,
    /// OpIds reused after a crash: the restart pretends the shutdown was
    /// clean, so the engine keeps its incarnation and reuses lost seqs.
    ReuseSeq,
    /// Anti-entropy repairs by `join_rows(local, remote, cut, cut)` (the
    /// engine's canary switch): a dot one site lost is deleted everywhere.
    RepairJoinAtVv,
    /// Peers acked before fsync (the session's own canary switch).
    AckBeforeDurable,
    /// Ops applied before their deps: the engine checks only the origin's
    /// sequence (`EngineCanaries::skip_deps`).
    SkipDeps,
    /// Every ack a session receives is ignored (the session's own canary
    /// switch): its batches stay in flight on an open connection for good
    /// (the `stuck` checker).
    IgnoreAcks,
    /// Counters fold increments at every site as they come, stable or not
    /// (`EngineCanaries::fold_unstable`).
    FoldUnstable,
    /// The stability frontier moves before a member's ops up to its report
    /// have arrived (`EngineCanaries::frontier_skips_pending`).
    FrontierSkipsPending,
}

impl Canary {
    pub const ALL: [Canary; 9] = [
        Canary::LwwArrivalOrder,
        Canary::NoDedup,
        Canary::ReuseSeq,
        Canary::AckBeforeDurable,
        Canary::SkipDeps,
        Canary::RepairJoinAtVv,
        Canary::IgnoreAcks,
        Canary::FoldUnstable,
        Canary::FrontierSkipsPending,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Canary::LwwArrivalOrder => "lww-arrival-order",
            Canary::NoDedup => "no-dedup",
            Canary::ReuseSeq => "reuse-seq",
            Canary::AckBeforeDurable => "ack-before-durable",
            Canary::SkipDeps => "skip-deps",
            Canary::RepairJoinAtVv => "repair-join-at-vv",
            Canary::IgnoreAcks => "ignore-acks",
            Canary::FoldUnstable => "fold-unstable",
            Canary::FrontierSkipsPending => "frontier-skips-pending",
        }
    }
    pub fn parse(s: &str) -> Option<Canary> {
        Canary::ALL.into_iter().find(|c| c.name() == s)
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
    /// Disks made to fail (profile `disk`, `chaos`), and the client writes
    /// they refused with `MISCONF` (retried after the restart).
    pub disk_faults: u64,
    pub misconf_refusals: u64,
    /// Sites lost for good and removed (profile `remove`).
    pub removals: u64,
    /// Bits flipped on a stopped site's disk (fault `rot`), each refused at
    /// its restart.
    pub rots: u64,
    /// Expired keys deleted by a site that did not own the winning
    /// deadline (`EngineStats::expired_keys_taken_over`).
    pub expiry_takeovers: u64,
    /// Counters folded at the stability frontier (all sites).
    pub folds: u64,
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
        )?;
        if self.disk_faults > 0 {
            write!(
                f,
                " disk_faults={} misconf={}",
                self.disk_faults, self.misconf_refusals
            )?;
        }
        if self.removals > 0 {
            write!(f, " removals={}", self.removals)?;
        }
        if self.rots > 0 {
            write!(f, " rots={}", self.rots)?;
        }
        if self.expiry_takeovers > 0 {
            write!(f, " expiry_takeovers={}", self.expiry_takeovers)?;
        }
        if self.folds > 0 {
            write!(f, " folds={}", self.folds)?;
        }
        Ok(())
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
    /// The operator restarts a site whose disk failed.
    DiskRepair {
        site: usize,
        gen: u64,
    },
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
    /// The fail point armed on this site's disk by a `disk` fault, until
    /// the restart that follows it: storage errors are expected meanwhile.
    disk_fault: Option<FailPoint>,
    /// Lost for good and removed from the cluster (profile `remove`): never
    /// restarted, dialed or checked again.
    removed: bool,
    /// Bits of the stopped site's disk flipped (fault `rot`): its next
    /// start must refuse to open.
    rot: Option<Rot>,
}

/// Where a `rot` fault flipped a bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rot {
    Log,
    Checkpoint,
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
    /// Converged but for expired keys no site deleted yet (the `expiry`
    /// checker): what the liveness report shows if the deadline passes.
    expiry_overdue: Option<String>,
    /// Per session `(site, peer)` with batches in flight on an open
    /// connection after healing: the peer's acked total and since when it
    /// has not moved (the `stuck` checker).
    stuck_watch: BTreeMap<(usize, usize), (u64, u64)>,
    faults: u64,
    check: Checker,
    stats: RunStats,
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
            ec.canaries.lww_arrival_order = cfg.canary == Some(Canary::LwwArrivalOrder);
            ec.canaries.no_dedup = cfg.canary == Some(Canary::NoDedup);
            ec.canaries.skip_deps = cfg.canary == Some(Canary::SkipDeps);
            ec.canaries.fold_unstable = cfg.canary == Some(Canary::FoldUnstable);
            ec.canaries.frontier_skips_pending = cfg.canary == Some(Canary::FrontierSkipsPending);
            // The site that joins late starts alone: it folds its counters
            // until its first peer session.
            ec.alone = p.late_join.is_some_and(|(j, _)| j == i);
            if p.knobs.tiny_backlog {
                ec.backlog_bytes_max = site_rng.range(1 << 10, 16 << 10) as usize;
            }
            // Even-numbered sites keep only a few ops in memory, so peers
            // behind them are served from the op log (the disk path runs in
            // every run with two sites or more, without a draw that would
            // change what the seeds do).
            if id & 1 == 0 {
                ec.backlog_tail_bytes_max = 2 << 10;
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
                disk_fault: None,
                removed: false,
                rot: None,
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
            expiry_overdue: None,
            stuck_watch: BTreeMap::new(),
            faults: 0,
            check: Checker::new(n),
            stats: RunStats::default(),
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
        let verdict = if let Some(v) = &self.violation {
            // A session stuck with data in flight is a failure to make
            // progress, found before the deadline.
            if v.check == "stuck" {
                Verdict::Liveness
            } else {
                Verdict::Safety
            }
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
        c.canary_ignore_acks = self.cfg.canary == Some(Canary::IgnoreAcks);
        c
    }

    /// A start on a disk with a flipped bit (fault `rot`): the open must
    /// have refused it, by the error that names it; then the operator
    /// recovers as docs/operations.md says. A damaged log record is
    /// salvaged (`--salvage` keeps the intact prefix, the peers send the
    /// rest); a damaged checkpoint means starting on an empty directory (a
    /// full sync from the peers). Either way what only this site held past
    /// the damage may be gone, so its durability claims go as a wipe's do.
    /// `None`: the run failed.
    fn recover_from_rot(
        &mut self,
        s: usize,
        rot: Rot,
        opened: Result<Engine, chorus_engine::OpenError>,
    ) -> Option<Result<Engine, chorus_engine::OpenError>> {
        let t = self.sched.now_ms();
        let refused = match (&opened, rot) {
            (Err(chorus_engine::OpenError::CorruptLog { .. }), Rot::Log)
            | (Err(chorus_engine::OpenError::CorruptCheckpoint(_)), Rot::Checkpoint) => true,
            (Ok(_), _) => {
                self.fail(Violation::new(
                    "disk",
                    format!(
                        "site {} opened a disk with a flipped bit in its {:?} without refusing it",
                        s + 1,
                        rot
                    ),
                ));
                return None;
            }
            _ => false,
        };
        if !refused {
            // Refused, but not for the damage: the `recovery` check reports it.
            return Some(opened);
        }
        let why = opened.err().map(|e| e.to_string()).unwrap_or_default();
        self.trace.event(t, "rot-refused", &[s as u64], || {
            format!("site {} refused to open: {why}", s + 1)
        });
        self.check.site_wiped(s);
        let mut cfg = self.sites[s].engine_config.clone();
        match rot {
            Rot::Log => cfg.salvage = true,
            Rot::Checkpoint => {
                self.stats.wipes += 1;
                let floor = self.check.max_incarnation(s).saturating_add(1);
                self.sites[s].engine_config.incarnation_floor = floor;
                cfg.incarnation_floor = floor;
                self.sites[s].disk = SharedDisk::new();
            }
        }
        Some(Engine::open(self.sites[s].disk.boxed(), cfg))
    }

    /// Opens the site's engine on its disk (first start or restart).
    fn start_site(&mut self, s: usize) {
        let now = self.sched.now_ms();
        let cfg = self.sites[s].engine_config.clone();
        let boxed = self.sites[s].disk.boxed();
        let opened = Engine::open(boxed, cfg);
        let opened = match self.sites[s].rot.take() {
            Some(rot) => match self.recover_from_rot(s, rot, opened) {
                Some(r) => r,
                None => return,
            },
            None => opened,
        };
        let engine = match opened {
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
        if self.sites[s].disk_fault.is_some() {
            self.check.note_unlogged_ops(engine);
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
            Ev::DiskRepair { site, gen } => self.disk_repair(t, site, gen),
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
}
