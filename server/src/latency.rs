//! The latency monitor (Redis 7.0 `latency.c`): with
//! `latency-monitor-threshold` above 0, every command that takes at least
//! that many milliseconds is a sample of the `command` event (or
//! `fast-command` for commands flagged fast). Each event keeps its last
//! [`SAMPLES_MAX`] seconds with a spike (the highest of a second), the
//! time and latency of the latest and the all-time high: bounded whatever
//! the load.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Samples kept per event (Redis's `LATENCY_TS_LEN`).
pub const SAMPLES_MAX: usize = 160;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub unix_secs: u64,
    pub ms: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Oldest first.
    pub samples: Vec<Sample>,
    pub max_ms: u64,
}

#[derive(Debug, Default)]
pub struct Monitor {
    events: Mutex<BTreeMap<&'static str, Series>>,
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Monitor {
    /// Records `ms` for `event` if the monitor is on and it reaches the
    /// threshold (Redis's `latencyAddSampleIfNeeded`).
    pub fn add_if_needed(&self, event: &'static str, ms: u64, threshold_ms: u64) {
        if threshold_ms == 0 || ms < threshold_ms {
            return;
        }
        self.add(event, ms, unix_secs());
    }

    fn add(&self, event: &'static str, ms: u64, now: u64) {
        let mut events = self.events.lock();
        let series = events.entry(event).or_default();
        series.max_ms = series.max_ms.max(ms);
        // One sample per second: the highest.
        if let Some(last) = series.samples.last_mut().filter(|s| s.unix_secs == now) {
            last.ms = last.ms.max(ms);
            return;
        }
        if series.samples.len() >= SAMPLES_MAX {
            series.samples.remove(0);
        }
        series.samples.push(Sample { unix_secs: now, ms });
    }

    /// Every event with its series, by name.
    pub fn events(&self) -> Vec<(&'static str, Series)> {
        self.events
            .lock()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    pub fn series(&self, event: &str) -> Option<Series> {
        self.events.lock().get(event).cloned()
    }

    /// `LATENCY RESET [event ...]`: how many events were reset.
    pub fn reset(&self, events: &[String]) -> usize {
        let mut all = self.events.lock();
        if events.is_empty() {
            let n = all.len();
            all.clear();
            return n;
        }
        events
            .iter()
            .filter(|e| all.remove(e.as_str()).is_some())
            .count()
    }
}

/// Redis's `latencyCommandGenSparkeline`: a header, a rule, and the
/// samples drawn as a sparkline 80 columns wide and 4 rows high, each
/// labelled with how long ago it was, under it, vertically.
pub fn graph(event: &str, series: &Series, now: u64) -> String {
    const COLUMNS: usize = 80;
    const ROWS: usize = 4;
    let values: Vec<u64> = series.samples.iter().map(|s| s.ms).collect();
    let labels: Vec<String> = series
        .samples
        .iter()
        .map(|s| {
            let elapsed = now.saturating_sub(s.unix_secs);
            match elapsed {
                e if e < 60 => format!("{e}s"),
                e if e < 3600 => format!("{}m", e / 60),
                e if e < 86_400 => format!("{}h", e / 3600),
                e => format!("{}d", e / 86_400),
            }
        })
        .collect();
    let (min, max) = (
        values.iter().copied().min().unwrap_or(0),
        values.iter().copied().max().unwrap_or(0),
    );
    let mut out = format!(
        "{event} - high {max} ms, low {min} ms (all time high {} ms)\n",
        series.max_ms
    );
    out.push_str(&"-".repeat(COLUMNS));
    out.push('\n');
    let mut start = 0;
    while start < values.len() {
        let end = (start + COLUMNS).min(values.len());
        if start != 0 {
            out.push('\n');
        }
        render_range(
            &mut out,
            &values[start..end],
            &labels[start..end],
            min,
            max,
            ROWS,
        );
        start = end;
    }
    out
}

/// Redis's `sparklineRenderRange` with `SPARKLINE_FILL`.
fn render_range(
    out: &mut String,
    values: &[u64],
    labels: &[String],
    min: u64,
    max: u64,
    rows: usize,
) {
    const FILL: &[u8] = b"_o#";
    let steps = (FILL.len() * rows) as i64;
    let relmax = match max - min {
        0 => 1.0,
        d => d as f64,
    };
    let step_of = |v: u64| -> i64 {
        let step = ((v - min) as f64 * steps as f64 / relmax) as i64;
        step.clamp(0, steps - 1)
    };
    for row in 0..rows {
        let line: String = values
            .iter()
            .map(|&v| {
                let idx = step_of(v) - ((rows - row - 1) * FILL.len()) as i64;
                match usize::try_from(idx) {
                    Ok(i) if i < FILL.len() => FILL[i] as char,
                    Ok(_) => '|',
                    Err(_) => ' ',
                }
            })
            .collect();
        out.push_str(&line);
        out.push('\n');
    }
    // One blank row, then the labels downwards.
    out.push_str(&" ".repeat(values.len()));
    out.push('\n');
    let longest = labels.iter().map(String::len).max().unwrap_or(0);
    for i in 0..longest {
        let line: String = labels
            .iter()
            .map(|l| l.as_bytes().get(i).map_or(' ', |&b| b as char))
            .collect();
        out.push_str(&line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_second_and_bounded() {
        let m = Monitor::default();
        m.add("command", 5, 100);
        m.add("command", 9, 100);
        m.add("command", 3, 100);
        let s = m.series("command").unwrap_or_default();
        assert_eq!(
            s.samples,
            vec![Sample {
                unix_secs: 100,
                ms: 9
            }]
        );
        for t in 0..400 {
            m.add("command", t, 200 + t);
        }
        let s = m.series("command").unwrap_or_default();
        assert_eq!(s.samples.len(), SAMPLES_MAX);
        assert_eq!(s.max_ms, 399);
        m.add_if_needed("fast-command", 1, 0);
        m.add_if_needed("fast-command", 1, 2);
        assert!(m.series("fast-command").is_none());
        assert_eq!(m.reset(&["nosuch".to_string()]), 0);
        assert_eq!(m.reset(&[]), 1);
    }

    #[test]
    fn graph_as_redis_draws_it() {
        let series = Series {
            samples: vec![
                Sample {
                    unix_secs: 90,
                    ms: 10,
                },
                Sample {
                    unix_secs: 95,
                    ms: 40,
                },
            ],
            max_ms: 40,
        };
        let g = graph("command", &series, 100);
        let lines: Vec<&str> = g.lines().collect();
        assert_eq!(
            lines[0],
            "command - high 40 ms, low 10 ms (all time high 40 ms)"
        );
        assert_eq!(lines[1], "-".repeat(80));
        // The low sample is `_` on the bottom row, the high one fills the column.
        assert_eq!(&lines[2..6], &[" #", " |", " |", "_|"]);
        assert_eq!(&lines[6..], &["  ", "15", "0s", "s "]);
    }
}
