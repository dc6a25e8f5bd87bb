//! The fault profile of one seed: which faults, how often, which knobs, the
//! network, the clocks, the key space and the op mix. Drawn from the seed's
//! `profile` sub-stream (optionally constrained by a named profile) and printed
//! before the run starts, so a failure report says what the run was like.

use crate::rng::Rng;
use chorus_engine::Fsync;
use std::fmt;

/// Named profiles accepted by `--profile`.
pub const PROFILE_NAMES: &[&str] = &[
    "random",
    "calm",
    "crash",
    "partition",
    "clock",
    "fullsync",
    "corrupt",
    "corrupt-calm",
    "chaos",
    "disk",
    "remove",
    "join",
];

/// Kinds of injected faults, in the order of `FaultWeights::w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    Crash,
    Wipe,
    Pause,
    Partition,
    Clog,
    Reset,
    Replay,
    ClockJump,
    /// The site's disk fails: one I/O error (log append, fsync, checkpoint
    /// write, metadata write or log truncation) poisons its storage; writes
    /// are refused with `MISCONF`, reads are served, and the operator
    /// restarts the site a little later.
    Disk,
    /// The site is lost for good and removed from the cluster: its peers
    /// drop it (as `PEER REMOVE` does) and it never comes back. At most one
    /// per run, never one whose loss would split the others.
    Remove,
    /// Bit rot while the site is stopped: one bit of a durable op log record
    /// that has a whole record after it, or of a checkpoint row, is flipped
    /// after a crash. The restart must refuse the damage, and the operator
    /// recovers as documented: `--salvage` for the log, an empty directory
    /// (a full sync from the peers) for the checkpoint.
    Rot,
}

impl FaultKind {
    pub const ALL: [FaultKind; 11] = [
        FaultKind::Crash,
        FaultKind::Wipe,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Clog,
        FaultKind::Reset,
        FaultKind::Replay,
        FaultKind::ClockJump,
        FaultKind::Disk,
        FaultKind::Remove,
        FaultKind::Rot,
    ];
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Wipe => "wipe",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Clog => "clog",
            FaultKind::Reset => "reset",
            FaultKind::Replay => "replay",
            FaultKind::ClockJump => "clock-jump",
            FaultKind::Disk => "disk",
            FaultKind::Remove => "remove",
            FaultKind::Rot => "rot",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Every pair of sites is connected.
    Mesh,
    /// Site 0 is the hub; the others connect only to it.
    Star,
    /// Site i connects to site i+1.
    Chain,
}

impl Topology {
    pub fn name(self) -> &'static str {
        match self {
            Topology::Mesh => "mesh",
            Topology::Star => "star",
            Topology::Chain => "chain",
        }
    }
    /// Whether sites `a` and `b` (indices) replicate directly.
    pub fn linked(self, a: usize, b: usize) -> bool {
        if a == b {
            return false;
        }
        match self {
            Topology::Mesh => true,
            Topology::Star => a == 0 || b == 0,
            Topology::Chain => a.abs_diff(b) == 1,
        }
    }
}

/// Relative weights of the command families of the workload.
#[derive(Clone, Debug)]
pub struct OpMix {
    pub string: u32,
    pub counter: u32,
    pub float: u32,
    pub hash: u32,
    pub set: u32,
    pub zset: u32,
    pub del: u32,
    pub expire: u32,
    pub flush: u32,
    pub multi: u32,
    pub rename: u32,
    pub read: u32,
}

impl OpMix {
    pub fn weights(&self) -> [u32; 12] {
        [
            self.string,
            self.counter,
            self.float,
            self.hash,
            self.set,
            self.zset,
            self.del,
            self.expire,
            self.flush,
            self.multi,
            self.rename,
            self.read,
        ]
    }
}

#[derive(Clone, Debug)]
pub struct NetProfile {
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Probability that a frame takes the long tail.
    pub tail_p: f64,
    pub tail_ms: u64,
    /// Probability that a frame is lost and retransmitted (a stall of the
    /// ordered stream, as QUIC gives it; bytes are never dropped mid-stream).
    pub stall_p: f64,
    pub stall_ms: u64,
    /// Bytes queued per direction before the sender is backpressured.
    pub queue_bytes_max: usize,
}

#[derive(Clone, Debug)]
pub struct Knobs {
    /// Tiny engine backlog: peers that fall behind need a full sync.
    pub tiny_backlog: bool,
    /// Tiny replication batches and in-flight windows.
    pub tiny_batches: bool,
    /// Extra delay before a group commit / everysec fsync completes.
    pub fsync_delay_ms: u64,
    /// Session idle timeout (short values make stalls end in reconnects).
    pub idle_timeout_ms: u64,
    /// Small causal buffer: overflows force rewinds.
    pub small_causal_buffer: bool,
    /// Small snapshot chunks.
    pub small_snapshot_chunks: bool,
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub name: String,
    pub sites: usize,
    pub ops: usize,
    pub fsync: Fsync,
    pub topology: Topology,
    pub keys: u32,
    pub dbs: u8,
    /// Client requests per simulated second, whole cluster.
    pub ops_per_s: u64,
    pub mix: OpMix,
    pub net: NetProfile,
    /// Weight of each fault kind (`FaultKind::ALL` order); all zero = no faults.
    pub fault_weights: [u32; 11],
    /// Mean virtual time between two faults.
    pub fault_interval_ms: u64,
    pub knobs: Knobs,
    pub clock_skew_ms_max: u64,
    pub clock_drift_ppm_max: u64,
    /// Virtual time allowed for the liveness phase to converge.
    pub liveness_deadline_ms: u64,
    /// `(site, at_ms)`: the site starts alone (no links, counters folding)
    /// and its links come up at `at_ms` (profile `join`).
    pub late_join: Option<(usize, u64)>,
}

impl Profile {
    /// Draws the profile of `seed`, constrained by the named profile.
    pub fn draw(seed: u64, name: &str, sites: Option<usize>, ops: usize) -> Profile {
        let mut r = Rng::stream(seed, "profile");
        let sites = sites.unwrap_or_else(|| r.range(2, 5) as usize).clamp(2, 7);
        let fsync = if r.chance(0.4) {
            Fsync::Always
        } else {
            Fsync::Everysec
        };
        let topology = if sites >= 3 && r.chance(0.2) {
            if r.chance(0.5) {
                Topology::Star
            } else {
                Topology::Chain
            }
        } else {
            Topology::Mesh
        };
        let keys = [4, 8, 16, 32, 96][r.below(5) as usize];
        let dbs = if r.chance(0.3) { 2 } else { 1 };
        let ops_per_s = [40, 100, 250, 600][r.below(4) as usize];
        let mut w = |base: u64| r.range(0, base) as u32;
        let mix = OpMix {
            string: w(10) + 2,
            counter: w(10) + 1,
            float: w(4),
            hash: w(8),
            set: w(8),
            zset: w(8),
            del: w(4) + 1,
            expire: w(5) + 1,
            flush: w(1),
            multi: w(4),
            rename: w(2),
            read: w(3),
        };
        let net = NetProfile {
            latency_ms: [1, 5, 20, 80][r.below(4) as usize],
            jitter_ms: r.range(0, 20),
            tail_p: [0.0, 0.002, 0.02][r.below(3) as usize],
            tail_ms: r.range(100, 2000),
            stall_p: [0.0, 0.01, 0.05][r.below(3) as usize],
            stall_ms: r.range(50, 600),
            queue_bytes_max: [16 << 10, 256 << 10, 4 << 20][r.below(3) as usize],
        };
        let knobs = Knobs {
            tiny_backlog: r.chance(0.25),
            tiny_batches: r.chance(0.25),
            fsync_delay_ms: if r.chance(0.25) { r.range(5, 400) } else { 0 },
            idle_timeout_ms: [1_500, 3_000, 10_000][r.below(3) as usize],
            small_causal_buffer: r.chance(0.15),
            small_snapshot_chunks: r.chance(0.3),
        };
        // Disk faults and removals (the last kinds) are drawn only by the
        // profiles that ask for them, so the other profiles keep their
        // schedules.
        let mut fault_weights = [0u32; 11];
        for fw in fault_weights.iter_mut().take(8) {
            *fw = if r.chance(0.55) {
                r.range(1, 4) as u32
            } else {
                0
            };
        }
        let fault_interval_ms = [300, 800, 2_000, 5_000][r.below(4) as usize];
        let clock_skew_ms_max = [0, 50, 2_000, 60_000][r.below(4) as usize];
        let clock_drift_ppm_max = [0, 100, 5_000][r.below(3) as usize];
        let mut p = Profile {
            name: name.to_owned(),
            sites,
            ops,
            fsync,
            topology,
            keys,
            dbs,
            ops_per_s,
            mix,
            net,
            fault_weights,
            fault_interval_ms,
            knobs,
            clock_skew_ms_max,
            clock_drift_ppm_max,
            liveness_deadline_ms: 120_000,
            late_join: None,
        };
        p.constrain(name, &mut r);
        if p.knobs.tiny_batches {
            p.liveness_deadline_ms += (ops as u64).saturating_mul(p.op_round_trip_ms());
        }
        p
    }

    /// What catching up costs per op after healing with tiny batches (as
    /// little as one op per batch and one batch in flight): one round trip,
    /// plus what the frames of that round trip lose to stalls and long tails.
    /// The streams are ordered, so a stalled frame holds back every frame
    /// behind it on its direction: each round trip waits on the batch, its
    /// acks (two under `always`: applied, then durable) and the heartbeats
    /// and anti-entropy frames in between, about `FRAMES_PER_OP_ROUND_TRIP`
    /// frames, each delayed on average by `stall_p * stall_ms + tail_p *
    /// tail_ms`. Seed 20011 (`--sites 4`, 5 ms ± 13 ms, 5 % stalls of 545 ms,
    /// 2 % tails of 1028 ms) paid 243 ms per batch on average, not the 37 ms
    /// of the bare round trip, and converged only 229 s after healing.
    pub fn op_round_trip_ms(&self) -> u64 {
        const FRAMES_PER_OP_ROUND_TRIP: f64 = 4.0;
        let n = &self.net;
        let rtt_ms = 2 * (n.latency_ms + n.jitter_ms) + 1;
        let lost_ms = n.stall_p * n.stall_ms as f64 + n.tail_p * n.tail_ms as f64;
        rtt_ms + (FRAMES_PER_OP_ROUND_TRIP * lost_ms).ceil() as u64
    }

    fn set_only(&mut self, kinds: &[FaultKind]) {
        for (i, k) in FaultKind::ALL.iter().enumerate() {
            if kinds.contains(k) {
                self.fault_weights[i] = self.fault_weights[i].max(1) + 1;
            } else {
                self.fault_weights[i] = 0;
            }
        }
    }

    fn constrain(&mut self, name: &str, r: &mut Rng) {
        match name {
            // `corrupt-calm`: the damage of `corrupt` with no other fault.
            "calm" | "corrupt-calm" => {
                self.fault_weights = [0; 11];
                self.knobs.tiny_backlog = false;
                self.knobs.tiny_batches = false;
                self.knobs.fsync_delay_ms = 0;
                self.knobs.small_causal_buffer = false;
                self.net.tail_p = 0.0;
                self.net.stall_p = 0.0;
                self.clock_skew_ms_max = 0;
                self.clock_drift_ppm_max = 0;
            }
            "crash" => self.set_only(&[FaultKind::Crash, FaultKind::Wipe, FaultKind::Pause]),
            "partition" => self.set_only(&[
                FaultKind::Partition,
                FaultKind::Clog,
                FaultKind::Reset,
                FaultKind::Replay,
            ]),
            "clock" => {
                self.set_only(&[FaultKind::ClockJump]);
                self.clock_skew_ms_max = 60_000;
                self.clock_drift_ppm_max = 5_000;
            }
            // Rows damaged behind the engine (see `Sim`'s corruption) with the
            // network faults, while clients write: anti-entropy must repair
            // them without loss. No crashes, wipes or full syncs: a full
            // sync from a damaged site is a join at its vector, which
            // spreads the damage.
            "corrupt" => {
                self.set_only(&[
                    FaultKind::Pause,
                    FaultKind::Partition,
                    FaultKind::Clog,
                    FaultKind::Reset,
                    FaultKind::Replay,
                ]);
                // A tiny backlog means full syncs: see above.
                self.knobs.tiny_backlog = false;
            }
            // Disks that fail while clients write and peers stream, with
            // crashes and partitions: writes refused, reads served, nothing
            // acknowledged lost, and the site back after a restart.
            "disk" => self.set_only(&[
                FaultKind::Disk,
                FaultKind::Crash,
                FaultKind::Pause,
                FaultKind::Partition,
                FaultKind::Rot,
            ]),
            "fullsync" => {
                self.set_only(&[FaultKind::Crash, FaultKind::Wipe, FaultKind::Partition]);
                self.knobs.tiny_backlog = true;
                self.knobs.small_snapshot_chunks = true;
            }
            // One site lost for good and removed while the others write,
            // crash and partition: the rest converge without it, and keys
            // whose deadline it owned are still deleted.
            "remove" => {
                self.set_only(&[
                    FaultKind::Crash,
                    FaultKind::Pause,
                    FaultKind::Partition,
                    FaultKind::Clog,
                    FaultKind::Replay,
                    FaultKind::ClockJump,
                    FaultKind::Remove,
                ]);
                let i = FaultKind::ALL.len() - 2;
                self.fault_weights[i] += 2;
                self.sites = self.sites.max(3);
                self.mix.expire += 4;
            }
            // One site starts alone, takes writes (hot counters among them)
            // and folds them, then joins the others while they write, crash
            // and partition: its first peers get full syncs, the folds merge
            // with what they hold, and every value stays exact.
            "join" => {
                self.set_only(&[
                    FaultKind::Crash,
                    FaultKind::Pause,
                    FaultKind::Partition,
                    FaultKind::Clog,
                    FaultKind::Reset,
                ]);
                self.mix.counter += 6;
                self.mix.float += 2;
                let run_ms = (self.ops as u64).saturating_mul(1000) / self.ops_per_s.max(1);
                let at = r.range(run_ms / 5, run_ms * 3 / 5);
                self.late_join = Some((r.below(self.sites as u64) as usize, at));
            }
            "chaos" => {
                // Every kind but removal and bit rot.
                for w in self.fault_weights.iter_mut().take(FaultKind::ALL.len() - 2) {
                    *w = (*w).max(1);
                }
                self.fault_interval_ms = self.fault_interval_ms.min(800);
                self.knobs.tiny_batches = r.chance(0.5);
                self.knobs.tiny_backlog = r.chance(0.5);
            }
            _ => {}
        }
    }

    pub fn faults_enabled(&self) -> bool {
        self.fault_weights.iter().any(|&w| w > 0)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "profile={} sites={} ops={} fsync={} topo={} keys={} dbs={} rate={}/s",
            self.name,
            self.sites,
            self.ops,
            self.fsync.as_str(),
            self.topology.name(),
            self.keys,
            self.dbs,
            self.ops_per_s
        )?;
        write!(f, " faults[")?;
        let mut first = true;
        for (k, w) in FaultKind::ALL.iter().zip(self.fault_weights) {
            if w > 0 {
                if !first {
                    write!(f, " ")?;
                }
                first = false;
                write!(f, "{}:{}", k.name(), w)?;
            }
        }
        write!(f, "]/{}ms", self.fault_interval_ms)?;
        if let Some((j, at)) = self.late_join {
            write!(f, " join[site {} at {}ms]", j + 1, at)?;
        }
        let k = &self.knobs;
        write!(f, " knobs[")?;
        let mut knobs = Vec::new();
        if k.tiny_backlog {
            knobs.push("tiny-backlog".to_owned());
        }
        if k.tiny_batches {
            knobs.push("tiny-batches".to_owned());
        }
        if k.fsync_delay_ms > 0 {
            knobs.push(format!("fsync-delay={}ms", k.fsync_delay_ms));
        }
        if k.small_causal_buffer {
            knobs.push("small-causal-buffer".to_owned());
        }
        if k.small_snapshot_chunks {
            knobs.push("small-snapshot-chunks".to_owned());
        }
        knobs.push(format!("idle-timeout={}ms", k.idle_timeout_ms));
        write!(f, "{}]", knobs.join(" "))?;
        let n = &self.net;
        write!(
            f,
            " net[lat={}±{}ms tail={}x{}ms stall={}x{}ms queue={}B]",
            n.latency_ms,
            n.jitter_ms,
            n.tail_p,
            n.tail_ms,
            n.stall_p,
            n.stall_ms,
            n.queue_bytes_max
        )?;
        let m = &self.mix;
        write!(
            f,
            " mix[str={} ctr={} flt={} hash={} set={} zset={} del={} exp={} flush={} multi={} rename={} read={}]",
            m.string,
            m.counter,
            m.float,
            m.hash,
            m.set,
            m.zset,
            m.del,
            m.expire,
            m.flush,
            m.multi,
            m.rename,
            m.read
        )?;
        write!(
            f,
            " clocks[skew<={}ms drift<={}ppm]",
            self.clock_skew_ms_max, self.clock_drift_ppm_max
        )
    }
}
