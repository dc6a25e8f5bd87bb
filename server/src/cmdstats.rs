//! Per-command statistics: `INFO commandstats` (calls, time, rejected and
//! failed calls) and `INFO latencystats` (latency percentiles), as Redis
//! 7.0 keeps them on each command of its table.
//!
//! Cheap on the hot path: one entry per command and subcommand, found by
//! the table entry's `id` (no lookup, no lock); each connection adds a run
//! of one command ([`Pending`]) with one relaxed atomic per figure; the latency
//! histogram of a command is allocated the first time it runs (about 24 KiB,
//! only for the commands a site actually serves). Reset by `CONFIG
//! RESETSTAT`.
//!
//! The histogram is Redis's (`hdr_histogram` with 1 ns to 1 s and 2
//! significant digits): 256 exact buckets, then 128 sub-buckets for each
//! power of two, and a percentile reads as the highest value of the bucket
//! that holds it, so Chorus's figures have Redis's resolution.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::cmd::table::CommandTable;

/// Smallest and largest latency recorded, in nanoseconds (Redis's
/// `LATENCY_HISTOGRAM_MIN_VALUE` and `LATENCY_HISTOGRAM_MAX_VALUE`).
const LATENCY_NS_MIN: u64 = 1;
const LATENCY_NS_MAX: u64 = 1_000_000_000;
/// Exact buckets below 256 ns, then 128 per power of two.
const SUB_BUCKETS: u64 = 256;
const HALF_SUB_BUCKETS: u64 = 128;
const SUB_BUCKET_BITS: u32 = 8;
/// Enough buckets for `LATENCY_NS_MAX` (< 2^30).
const BUCKETS: usize = 256 + 22 * 128;

/// Counts of latencies in nanoseconds, by bucket.
pub struct Histogram {
    counts: Box<[AtomicU64]>,
    total: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
        }
    }

    /// The bucket of `ns` (clamped to the recorded range).
    fn index(ns: u64) -> usize {
        let v = ns.clamp(LATENCY_NS_MIN, LATENCY_NS_MAX);
        if v < SUB_BUCKETS {
            return v as usize;
        }
        let shift = (u64::BITS - v.leading_zeros()) - SUB_BUCKET_BITS;
        let sub = v >> shift;
        (SUB_BUCKETS + u64::from(shift - 1) * HALF_SUB_BUCKETS + (sub - HALF_SUB_BUCKETS)) as usize
    }

    /// The highest value that falls in bucket `index`.
    fn highest_value(index: usize) -> u64 {
        let i = index as u64;
        if i < SUB_BUCKETS {
            return i;
        }
        let shift = (i - SUB_BUCKETS) / HALF_SUB_BUCKETS + 1;
        let sub = (i - SUB_BUCKETS) % HALF_SUB_BUCKETS + HALF_SUB_BUCKETS;
        ((sub + 1) << shift) - 1
    }

    #[cfg(test)]
    fn record(&self, ns: u64) {
        if let Some(c) = self.counts.get(Self::index(ns)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The latency (ns) at `percentile` (0 to 100), as `hdr_value_at_percentile`.
    pub fn value_at_percentile(&self, percentile: f64) -> u64 {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let p = percentile.clamp(0.0, 100.0);
        let wanted = (((p / 100.0) * total as f64) + 0.5) as u64;
        let wanted = wanted.max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= wanted {
                return Self::highest_value(i);
            }
        }
        0
    }

    /// (highest value of the level in µs, count up to it) at levels
    /// 1024 ns × 2^k, until every value is counted.
    fn cumulative(&self) -> Vec<(u64, u64)> {
        let total = self.total();
        let mut out = Vec::new();
        let (mut level, mut counted, mut upto, mut previous) = (1024u64, 0u64, 0usize, 0u64);
        while counted < total && level <= LATENCY_NS_MAX * 2 {
            let last = Self::index(level).min(BUCKETS - 1);
            while upto <= last {
                counted += self
                    .counts
                    .get(upto)
                    .map_or(0, |c| c.load(Ordering::Relaxed));
                upto += 1;
            }
            if counted > previous {
                out.push((Self::highest_value(last) / 1000, counted));
                previous = counted;
            }
            level *= 2;
        }
        out
    }

    fn reset(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
        self.total.store(0, Ordering::Relaxed);
    }
}

/// The figures of one command.
#[derive(Default)]
struct Entry {
    calls: AtomicU64,
    nanos: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    latency: OnceLock<Histogram>,
}

/// Latency buckets a [`Pending`] run holds before it is added to the
/// shared histogram.
const PENDING_BUCKETS: usize = 4;

/// A connection's figures not yet added to the shared ones: the current
/// run of one command (a pipeline of GETs is one run), added with one
/// atomic operation per figure when the command changes or the connection
/// flushes its statistics (after each read of requests, and before a
/// server command, which may read or reset them).
#[derive(Debug, Default)]
pub struct Pending {
    id: usize,
    calls: u64,
    nanos: u64,
    failed: u64,
    track: bool,
    /// (bucket, count) of the run's latencies.
    buckets: [(usize, u64); PENDING_BUCKETS],
    used: usize,
}

impl Pending {
    /// Notes a call that ran for `took` (see [`CommandStats::record_call`]).
    pub fn add(
        &mut self,
        stats: &CommandStats,
        id: usize,
        took: Duration,
        failed: bool,
        track: bool,
    ) {
        if self.calls > 0 && (self.id != id || self.track != track) {
            self.flush(stats);
        }
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.id = id;
        self.track = track;
        self.calls += 1;
        self.nanos = self.nanos.saturating_add(ns);
        self.failed += u64::from(failed);
        if !track {
            return;
        }
        let bucket = Histogram::index(ns);
        let used = self.used;
        if let Some(slot) = self
            .buckets
            .iter_mut()
            .take(used)
            .find(|(b, _)| *b == bucket)
        {
            slot.1 += 1;
        } else if let Some(slot) = self.buckets.get_mut(used) {
            *slot = (bucket, 1);
            self.used += 1;
        } else {
            self.flush_buckets(stats);
            self.buckets[0] = (bucket, 1);
            self.used = 1;
        }
    }

    fn flush_buckets(&mut self, stats: &CommandStats) {
        if self.used == 0 {
            return;
        }
        if let Some(e) = stats.entries.get(self.id) {
            let h = e.latency.get_or_init(Histogram::new);
            let mut total = 0;
            for (bucket, count) in self.buckets.iter().take(self.used) {
                if let Some(c) = h.counts.get(*bucket) {
                    c.fetch_add(*count, Ordering::Relaxed);
                }
                total += count;
            }
            h.total.fetch_add(total, Ordering::Relaxed);
        }
        self.used = 0;
    }

    /// Adds the run to the shared figures.
    pub fn flush(&mut self, stats: &CommandStats) {
        if self.calls == 0 {
            return;
        }
        self.flush_buckets(stats);
        if let Some(e) = stats.entries.get(self.id) {
            e.calls.fetch_add(self.calls, Ordering::Relaxed);
            e.nanos.fetch_add(self.nanos, Ordering::Relaxed);
            if self.failed > 0 {
                e.failed.fetch_add(self.failed, Ordering::Relaxed);
            }
        }
        self.calls = 0;
        self.nanos = 0;
        self.failed = 0;
    }
}

/// Every command's figures, by table entry id.
pub struct CommandStats {
    entries: Box<[Entry]>,
}

impl Default for CommandStats {
    fn default() -> Self {
        let ids = chorus_engine::redis::command_table::CommandTable::redis().ids();
        CommandStats {
            entries: (0..ids).map(|_| Entry::default()).collect(),
        }
    }
}

impl std::fmt::Debug for CommandStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandStats")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl CommandStats {
    /// A call refused before it ran (arity, NOAUTH, inside MULTI, BUSY...).
    pub fn record_rejected(&self, id: usize) {
        if let Some(e) = self.entries.get(id) {
            e.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `LATENCY HISTOGRAM` of one command: its calls and the cumulative
    /// count at 1, 2, 4, 8... microseconds (Redis's logarithmic iteration
    /// from 1024 ns, doubling), levels where the count grows only.
    pub fn cumulative(&self, id: usize) -> Option<(u64, Vec<(u64, u64)>)> {
        let h = self
            .entries
            .get(id)?
            .latency
            .get()
            .filter(|h| h.total() > 0)?;
        Some((h.total(), h.cumulative()))
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&self) {
        for e in self.entries.iter() {
            e.calls.store(0, Ordering::Relaxed);
            e.nanos.store(0, Ordering::Relaxed);
            e.rejected.store(0, Ordering::Relaxed);
            e.failed.store(0, Ordering::Relaxed);
            if let Some(h) = e.latency.get() {
                h.reset();
            }
        }
    }

    /// Commands in name order, with their entries.
    fn named(&self) -> Vec<(&'static str, &Entry)> {
        let table = CommandTable::redis();
        let mut out = Vec::new();
        for top in table.iter() {
            for c in std::iter::once(top.command()).chain(top.subcommands.iter()) {
                if let Some(e) = self.entries.get(c.id) {
                    out.push((c.name.as_str(), e));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// The lines of `INFO commandstats`: commands called, rejected or
    /// failed since the start or the last reset.
    pub fn render_commandstats(&self, out: &mut String) {
        for (name, e) in self.named() {
            let calls = e.calls.load(Ordering::Relaxed);
            let rejected = e.rejected.load(Ordering::Relaxed);
            let failed = e.failed.load(Ordering::Relaxed);
            if calls == 0 && rejected == 0 && failed == 0 {
                continue;
            }
            let usec = e.nanos.load(Ordering::Relaxed) / 1000;
            let per_call = if calls == 0 {
                0.0
            } else {
                usec as f64 / calls as f64
            };
            let _ = write!(
                out,
                "cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls={rejected},failed_calls={failed}\r\n"
            );
        }
    }

    /// The lines of `INFO latencystats`, at `percentiles`
    /// (`latency-tracking-info-percentiles`).
    pub fn render_latencystats(&self, percentiles: &[f64], out: &mut String) {
        for (name, e) in self.named() {
            let Some(h) = e.latency.get().filter(|h| h.total() > 0) else {
                continue;
            };
            let _ = write!(out, "latency_percentiles_usec_{name}:");
            for (i, p) in percentiles.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let usec = h.value_at_percentile(*p) as f64 / 1000.0;
                let _ = write!(out, "p{}={usec:.3}", percentile_label(*p));
            }
            out.push_str("\r\n");
        }
    }
}

/// A percentile as Redis prints it: `%f` with trailing zeros (and a
/// trailing point) trimmed: `50`, `99.9`.
pub fn percentile_label(p: f64) -> String {
    let text = format!("{p:.6}");
    let text = text.trim_end_matches('0');
    text.trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_redis_hdr() {
        // 1 us lands in the bucket whose highest value is 1003 ns, as in
        // Redis's `p50=1.003` for a 1 us command.
        assert_eq!(Histogram::highest_value(Histogram::index(1000)), 1003);
        assert_eq!(Histogram::highest_value(Histogram::index(255)), 255);
        assert_eq!(Histogram::highest_value(Histogram::index(256)), 257);
        assert_eq!(Histogram::index(0), 1);
        assert!(Histogram::index(u64::MAX) < BUCKETS);
        for v in [1u64, 300, 4096, 1_000_000, 999_999_999] {
            let i = Histogram::index(v);
            assert!(Histogram::highest_value(i) >= v);
            if i > 0 {
                assert!(Histogram::highest_value(i - 1) < v, "{v}");
            }
        }
        let h = Histogram::new();
        for ns in 1..=100u64 {
            h.record(ns * 1000);
        }
        assert_eq!(h.value_at_percentile(50.0), 50_175);
        assert_eq!(h.value_at_percentile(100.0), 100_351);
        assert_eq!(h.value_at_percentile(0.0), 1003);
    }

    #[test]
    fn labels() {
        assert_eq!(percentile_label(50.0), "50");
        assert_eq!(percentile_label(99.9), "99.9");
        assert_eq!(percentile_label(99.99), "99.99");
    }
}
