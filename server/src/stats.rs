//! Server counters reported by `INFO` and reset by `CONFIG RESETSTAT`.
//!
//! Counters are relaxed atomics: they are statistics, never used to decide
//! anything, and every connection task bumps them. Error counts per error
//! code are bounded like Redis's (`ERRORSTATS_LIMIT`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// Most distinct error codes tracked by `INFO errorstats`; more are counted
/// in `total_error_replies` only (Redis's `ERRORSTATS_LIMIT`).
pub const ERROR_CODES_MAX: usize = 128;
/// Samples averaged by the `instantaneous_*` figures (Redis's `STATS_METRIC_SAMPLES`).
pub const METRIC_SAMPLES: usize = 16;
/// How many leading bytes of an error are searched for its code.
const ERROR_CODE_BYTES_MAX: usize = 32;

#[derive(Debug, Default)]
pub struct Stats {
    pub total_connections_received: AtomicU64,
    pub total_commands_processed: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub total_net_input_bytes: AtomicU64,
    pub total_net_output_bytes: AtomicU64,
    pub total_error_replies: AtomicU64,
    pub total_reads_processed: AtomicU64,
    pub total_writes_processed: AtomicU64,
    /// Clients closed for exceeding `client-query-buffer-limit`.
    pub client_query_buffer_limit_disconnections: AtomicU64,
    pub client_recent_max_input_buffer: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    rates: Mutex<Rates>,
    /// `INFO commandstats` and `latencystats`.
    pub commands: crate::cmdstats::CommandStats,
}

/// Rolling samples behind `instantaneous_ops_per_sec` and the kbps figures.
#[derive(Debug, Default)]
struct Rates {
    last: Option<(Instant, [u64; 3])>,
    samples: Vec<[f64; 3]>,
    next: usize,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts one error reply under its code: the first word if it comes
    /// within the first 32 bytes, else `ERR`, as Redis does.
    pub fn count_error(&self, text: &str) {
        Stats::add(&self.total_error_replies, 1);
        let text = text.strip_prefix('-').unwrap_or(text);
        let head = text
            .get(..text.len().min(ERROR_CODE_BYTES_MAX))
            .unwrap_or("");
        let code = match head.find(' ') {
            Some(end) => text.get(..end).unwrap_or("ERR"),
            None => "ERR",
        };
        let mut errors = self.errors.lock();
        if let Some(n) = errors.get_mut(code) {
            *n += 1;
        } else if errors.len() < ERROR_CODES_MAX {
            errors.insert(code.to_string(), 1);
        }
    }

    /// Error code -> count, sorted by code.
    pub fn error_counts(&self) -> Vec<(String, u64)> {
        self.errors
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Takes one sample of the rates (and of the memory peak); called every
    /// 100 ms by the server.
    pub fn sample_rates(&self, now: Instant) {
        crate::memory::sample_peak();
        let current = [
            Stats::get(&self.total_commands_processed),
            Stats::get(&self.total_net_input_bytes),
            Stats::get(&self.total_net_output_bytes),
        ];
        let mut rates = self.rates.lock();
        if let Some((at, before)) = rates.last {
            let secs = now.saturating_duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let mut sample = [0.0; 3];
                for ((s, c), b) in sample.iter_mut().zip(current).zip(before) {
                    *s = c.saturating_sub(b) as f64 / secs;
                }
                let slot = rates.next;
                if rates.samples.len() < METRIC_SAMPLES {
                    rates.samples.push(sample);
                } else if let Some(entry) = rates.samples.get_mut(slot) {
                    *entry = sample;
                }
                rates.next = (slot + 1) % METRIC_SAMPLES;
            }
        }
        rates.last = Some((now, current));
    }

    /// (ops/sec, input bytes/sec, output bytes/sec), averaged over the samples.
    pub fn instantaneous(&self) -> (u64, f64, f64) {
        let rates = self.rates.lock();
        if rates.samples.is_empty() {
            return (0, 0.0, 0.0);
        }
        let n = rates.samples.len() as f64;
        let mut sum = [0.0; 3];
        for s in &rates.samples {
            for (acc, v) in sum.iter_mut().zip(s) {
                *acc += v;
            }
        }
        ((sum[0] / n) as u64, sum[1] / n, sum[2] / n)
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&self) {
        for counter in [
            &self.total_connections_received,
            &self.total_commands_processed,
            &self.rejected_connections,
            &self.total_net_input_bytes,
            &self.total_net_output_bytes,
            &self.total_error_replies,
            &self.total_reads_processed,
            &self.total_writes_processed,
            &self.client_query_buffer_limit_disconnections,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.errors.lock().clear();
        *self.rates.lock() = Rates::default();
        self.commands.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes() {
        let s = Stats::default();
        s.count_error("ERR unknown command");
        s.count_error("-WRONGPASS invalid");
        s.count_error("NOSPACEHEREATALLBUTVERYLONGERRORTEXTXX yes");
        s.count_error("ERR again");
        assert_eq!(
            s.error_counts(),
            vec![("ERR".to_string(), 3), ("WRONGPASS".to_string(), 1)]
        );
        assert_eq!(Stats::get(&s.total_error_replies), 4);
    }
}
