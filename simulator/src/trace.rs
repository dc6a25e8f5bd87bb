//! The run's trace: every processed event is folded into a 64-bit trace hash
//! (the determinism fingerprint) and, when asked, kept as a text line (for
//! `replay --trace FILE` and for `check-determinism` to show the first event
//! where two runs of one seed differ).

use crate::rng::{fnv1a, mix};

#[derive(Debug, Default)]
pub struct Trace {
    hash: u64,
    events: u64,
    lines: Option<Vec<String>>,
    /// Per-event running hashes (kept with the lines).
    hashes: Vec<u64>,
}

impl Trace {
    pub fn new(keep_lines: bool) -> Trace {
        Trace {
            hash: 0x5EED_0FC0_5EED,
            events: 0,
            lines: keep_lines.then(Vec::new),
            hashes: Vec::new(),
        }
    }

    pub fn keeps_lines(&self) -> bool {
        self.lines.is_some()
    }

    /// Records one event: its virtual time, a kind name, a few numbers that
    /// describe its outcome, and (only when lines are kept) a detail text.
    pub fn event(&mut self, t_ms: u64, kind: &str, nums: &[u64], detail: impl FnOnce() -> String) {
        let mut h = mix(self.hash, t_ms);
        h = mix(h, fnv1a(kind.as_bytes()));
        for &n in nums {
            h = mix(h, n);
        }
        self.hash = h;
        self.events += 1;
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{t_ms:>9} {kind} {nums:?} {}", detail()));
            self.hashes.push(h);
        }
    }

    pub fn hash_hex(&self) -> String {
        format!("{:016x}", self.hash)
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn take_lines(&mut self) -> Vec<String> {
        self.lines.take().unwrap_or_default()
    }

    pub fn hashes(&self) -> &[u64] {
        &self.hashes
    }
}
