//! Figures from samples: percentiles of latencies and the bytes-per-op
//! estimate from a peer's byte rate.

use std::time::Duration;

/// p50 / p99 / max of a set of latencies, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub count: usize,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// Nearest-rank percentiles; `None` for an empty set.
pub fn percentiles(mut values: Vec<u64>) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = |p: f64| {
        let i = ((p / 100.0) * values.len() as f64).ceil() as usize;
        values[i.clamp(1, values.len()) - 1]
    };
    Some(Percentiles {
        count: values.len(),
        p50: rank(50.0),
        p99: rank(99.0),
        max: values[values.len() - 1],
    })
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One sample of a site's peer line, for the bytes-per-op estimate.
#[derive(Clone, Copy, Debug)]
pub struct WireSample {
    pub at: Duration,
    pub bytes_out_per_s: u64,
    pub ops_sent: u64,
    /// The total, when the server prints it (then the estimate is exact).
    pub bytes_out: Option<u64>,
}

/// Bytes sent over ops sent, across the samples.
#[derive(Clone, Copy, Debug)]
pub struct WireEstimate {
    pub bytes: u64,
    pub ops: u64,
    /// From a byte total (exact) rather than integrated from 1-s rates.
    pub exact: bool,
}

impl WireEstimate {
    pub fn bytes_per_op(&self) -> f64 {
        self.bytes as f64 / self.ops.max(1) as f64
    }
}

/// The server publishes `bytes_out_per_s` once per rate window (about a
/// second) and otherwise prints only the op total. A change of the rate
/// between two samples marks the end of a window; the bytes of each window
/// between the first and the last boundary are its rate times its length,
/// and the ops are the difference of `ops_sent` at those two boundaries.
/// The error is about one sampling interval of ops at each end, so sample
/// often and over many windows. When a byte total is printed, it is used.
pub fn bytes_per_op(samples: &[WireSample]) -> Option<WireEstimate> {
    let (first, last) = (samples.first()?, samples.last()?);
    if let (Some(b0), Some(b1)) = (first.bytes_out, last.bytes_out) {
        let ops = last.ops_sent.saturating_sub(first.ops_sent);
        return (ops > 0).then_some(WireEstimate {
            bytes: b1.saturating_sub(b0),
            ops,
            exact: true,
        });
    }
    let boundaries: Vec<&WireSample> = samples
        .windows(2)
        .filter(|w| w[0].bytes_out_per_s != w[1].bytes_out_per_s)
        .map(|w| &w[1])
        .collect();
    let (b_first, b_last) = (boundaries.first()?, boundaries.last()?);
    let bytes: f64 = boundaries
        .windows(2)
        .map(|w| w[1].bytes_out_per_s as f64 * (w[1].at - w[0].at).as_secs_f64())
        .sum();
    let ops = b_last.ops_sent.saturating_sub(b_first.ops_sent);
    (ops > 0).then_some(WireEstimate {
        bytes: bytes as u64,
        ops,
        exact: false,
    })
}
