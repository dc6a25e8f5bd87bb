//! Throughput seen from the replication side, by sampling `INFO replication`
//! of both sites while something else (redis-benchmark) writes at the source:
//!
//! * `stream`: ops applied per second at the sink while the source is loaded,
//!   and until the sink has caught up.
//! * `catchup`: resumes a paused link and times the sink catching up on the
//!   source's backlog.
//!
//! Progress is read from the two version vectors: ops the sink holds, and
//! ops the source holds that the sink lacks. Both also sample the source's
//! line for the sink (state, byte rate, ops sent) for the bytes-per-op figure.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::info::{self, Replication};
use crate::ping;
use crate::resp::{Conn, Value};
use crate::stats::{bytes_per_op, ms, percentiles, Percentiles, WireEstimate, WireSample};

#[derive(Clone, Debug, clap::Args)]
pub struct Sites {
    /// The site that takes the writes (RESP address).
    #[arg(long)]
    pub source: SocketAddr,
    /// The site that receives them.
    #[arg(long)]
    pub sink: SocketAddr,
    /// Site id of the source.
    #[arg(long, default_value_t = 1)]
    pub source_id: u16,
    /// Site id of the sink.
    #[arg(long, default_value_t = 2)]
    pub sink_id: u16,
}

#[derive(Clone, Debug, clap::Args)]
pub struct StreamArgs {
    #[command(flatten)]
    pub sites: Sites,
    /// Sampling interval.
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
    /// Give up if the source takes no write within this many seconds.
    #[arg(long, default_value_t = 60)]
    pub start_timeout_s: u64,
    /// The load is over once the source took no write for this long.
    #[arg(long, default_value_t = 1_500)]
    pub idle_ms: u64,
    /// Hard bound on the whole measurement.
    #[arg(long, default_value_t = 900)]
    pub timeout_s: u64,
}

#[derive(Clone, Debug, clap::Args)]
pub struct CatchupArgs {
    #[command(flatten)]
    pub sites: Sites,
    /// Sampling interval.
    #[arg(long, default_value_t = 5)]
    pub interval_ms: u64,
    /// Keep sampling this long after the catch-up (closes the last byte-rate
    /// window for the bytes-per-op estimate).
    #[arg(long, default_value_t = 2_500)]
    pub tail_ms: u64,
    /// Hard bound on the catch-up.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
}

#[derive(Clone, Debug)]
struct Sample {
    at: Duration,
    /// Ops the source holds (its vector's sum).
    source_ops: u64,
    /// Ops the sink holds.
    sink_ops: u64,
    /// Ops the source holds that the sink lacks.
    behind: u64,
    state: String,
    wire: WireSample,
}

struct Sampler {
    source: Conn,
    sink: Conn,
    sites: Sites,
    start: Instant,
    states: Vec<String>,
}

impl Sampler {
    fn new(sites: &Sites) -> Result<Sampler, String> {
        let connect = |a| Conn::connect(a).map_err(|e| format!("connect {a}: {e}"));
        Ok(Sampler {
            source: connect(sites.source)?,
            sink: connect(sites.sink)?,
            sites: sites.clone(),
            start: Instant::now(),
            states: Vec::new(),
        })
    }

    fn sample(&mut self) -> Result<Sample, String> {
        let read = |c: &mut Conn, a| -> Result<Replication, String> {
            info::replication(c).map_err(|e| format!("INFO replication at {a}: {e}"))
        };
        let a = read(&mut self.source, self.sites.source)?;
        let b = read(&mut self.sink, self.sites.sink)?;
        let at = self.start.elapsed();
        let peer = a.peer(self.sites.sink_id).cloned().unwrap_or_default();
        if !self.states.contains(&peer.state) {
            self.states.push(peer.state.clone());
        }
        Ok(Sample {
            at,
            source_ops: a.vv.ops(),
            sink_ops: b.vv.ops(),
            behind: a.vv.ahead_of(&b.vv),
            state: peer.state,
            wire: WireSample {
                at,
                bytes_out_per_s: peer.bytes_out_per_s,
                ops_sent: peer.ops_sent,
                bytes_out: peer.bytes_out,
            },
        })
    }
}

fn rate(ops: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        ops as f64 / d.as_secs_f64()
    }
}

/// The highest rate of sink progress over any `window` of samples.
fn peak_rate(samples: &[Sample], window: Duration) -> f64 {
    let mut best: f64 = 0.0;
    let mut j = 0;
    for i in 0..samples.len() {
        while samples[i].at - samples[j].at > window {
            j += 1;
        }
        let d = samples[i].at - samples[j].at;
        if d >= window / 2 {
            best = best.max(rate(samples[i].sink_ops - samples[j].sink_ops, d));
        }
    }
    best
}

fn wire_text(w: Option<WireEstimate>) -> (String, String) {
    match w {
        Some(w) => (
            format!("{:.1}", w.bytes_per_op()),
            if w.exact { "total" } else { "rates" }.to_string(),
        ),
        None => ("-".into(), "-".into()),
    }
}

pub fn stream(args: StreamArgs) -> Result<(), String> {
    let mut s = Sampler::new(&args.sites)?;
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let idle = Duration::from_millis(args.idle_ms);
    let hard = Instant::now() + Duration::from_secs(args.timeout_s);
    let base = s.sample()?;
    // Wait for the load to start.
    let start_deadline = Instant::now() + Duration::from_secs(args.start_timeout_s);
    let mut samples = vec![base.clone()];
    loop {
        let x = s.sample()?;
        let started = x.source_ops > base.source_ops;
        samples.push(x);
        if started {
            break;
        }
        if Instant::now() >= start_deadline {
            return Err("the source took no write".into());
        }
        thread::sleep(interval);
    }
    // Sample until the source is idle and the sink holds everything.
    let first = samples.len() - 1;
    let mut last_change = first;
    loop {
        thread::sleep(interval);
        if Instant::now() >= hard {
            return Err(format!(
                "not caught up after {} s: {} ops behind",
                args.timeout_s,
                samples.last().map_or(0, |x| x.behind)
            ));
        }
        let x = s.sample()?;
        if samples
            .last()
            .is_some_and(|prev| x.source_ops != prev.source_ops)
        {
            last_change = samples.len();
        }
        samples.push(x);
        let (now, changed) = (&samples[samples.len() - 1], &samples[last_change]);
        if now.at - changed.at >= idle && now.behind == 0 {
            break;
        }
    }
    let (a0, a1) = (&samples[first], &samples[last_change]);
    // The first sample that shows the sink holding everything.
    let caught = samples
        .iter()
        .skip(last_change)
        .find(|x| x.behind == 0)
        .unwrap_or(&samples[samples.len() - 1]);
    let sink_first = samples
        .iter()
        .position(|x| x.sink_ops > base.sink_ops)
        .unwrap_or(first);
    let b0 = &samples[sink_first.saturating_sub(1)];
    let loaded = a1.at - a0.at;
    let write_rate = rate(a1.source_ops - a0.source_ops, loaded);
    let applied_loaded = rate(a1.sink_ops.saturating_sub(a0.sink_ops), loaded);
    let applied_overall = rate(caught.sink_ops - b0.sink_ops, caught.at - b0.at);
    let peak = peak_rate(&samples, Duration::from_secs(1));
    let behind_max = samples.iter().map(|x| x.behind).max().unwrap_or(0);
    let drain = caught.at.saturating_sub(a1.at);
    let total = caught.sink_ops - base.sink_ops;
    let wire: Vec<WireSample> = samples.iter().map(|x| x.wire).collect();
    let w = bytes_per_op(&wire);
    let (bpo, how) = wire_text(w);
    println!(
        "stream: source took {} ops in {:.2} s ({:.0} ops/s, sampled); sink applied {:.0} ops/s meanwhile, {:.0} ops/s from its first to its last op, peak {:.0} ops/s over 1 s",
        a1.source_ops - a0.source_ops,
        loaded.as_secs_f64(),
        write_rate,
        applied_loaded,
        applied_overall,
        peak
    );
    println!(
        "stream: most ops behind {behind_max}; sink caught up {:.2} s after the last write; {total} ops in all; link states {:?}; bytes/op {bpo} (from {how})",
        drain.as_secs_f64(),
        s.states
    );
    println!(
        "RESULT stream source_rate={write_rate:.0} applied_rate_loaded={applied_loaded:.0} applied_rate_overall={applied_overall:.0} applied_rate_peak_1s={peak:.0} behind_max={behind_max} drain_s={:.2} ops={total} bytes_per_op={bpo} bytes_per_op_from={how} states={}",
        drain.as_secs_f64(),
        s.states.join("/")
    );
    Ok(())
}

fn command(c: &mut Conn, addr: SocketAddr, args: &[&str]) -> Result<(), String> {
    match c.cmd(args) {
        Ok(Value::Error(e)) => Err(format!("{args:?} at {addr}: {e}")),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{args:?} at {addr}: {e}")),
    }
}

fn latency_text(p: Option<Percentiles>) -> String {
    p.map_or("-".into(), |p| {
        format!("{:.2}/{:.2}/{:.2}", ms(p.p50), ms(p.p99), ms(p.max))
    })
}

pub fn catchup(args: CatchupArgs) -> Result<(), String> {
    let sites = args.sites.clone();
    let mut s = Sampler::new(&sites)?;
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let before = s.sample()?;
    if before.behind == 0 {
        return Err("the sink lacks nothing: no backlog to catch up on".into());
    }
    let mut samples = vec![before.clone()];
    let mut source = Conn::connect(sites.source).map_err(|e| e.to_string())?;
    let mut sink = Conn::connect(sites.sink).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let pingers = [
        ping::start(sites.source, s.start, stop.clone()),
        ping::start(sites.sink, s.start, stop.clone()),
    ];
    let resumed = s.start.elapsed();
    let t0 = Instant::now();
    command(
        &mut source,
        sites.source,
        &["PEER", "RESUME", &sites.sink_id.to_string()],
    )?;
    command(
        &mut sink,
        sites.sink,
        &["PEER", "RESUME", &sites.source_id.to_string()],
    )?;
    let hard = t0 + Duration::from_secs(args.timeout_s);
    let caught = loop {
        let x = s.sample()?;
        let done = x.behind == 0;
        samples.push(x.clone());
        if done {
            break x;
        }
        if Instant::now() >= hard {
            return Err(format!(
                "not caught up after {} s: {} of {} ops still missing",
                args.timeout_s, x.behind, before.behind
            ));
        }
        thread::sleep(interval);
    };
    let elapsed = caught.at - resumed;
    stop.store(true, Ordering::Relaxed);
    let [source_ping, sink_ping] =
        pingers.map(|h| percentiles(ping::latencies(&h.join().unwrap_or_default())));
    let tail_end = Instant::now() + Duration::from_millis(args.tail_ms);
    while Instant::now() < tail_end {
        thread::sleep(Duration::from_millis(20));
        samples.push(s.sample()?);
    }
    let mut a = Conn::connect(sites.source).map_err(|e| e.to_string())?;
    let mut b = Conn::connect(sites.sink).map_err(|e| e.to_string())?;
    let (da, db) = (
        info::digest(&mut a).map_err(|e| e.to_string())?,
        info::digest(&mut b).map_err(|e| e.to_string())?,
    );
    let backlog = before.behind;
    let r = rate(backlog, elapsed);
    let peak = peak_rate(&samples, Duration::from_secs(1));
    // The first sample after the resume whose state is not `paused`.
    let streaming_after = samples
        .iter()
        .find(|x| x.at > resumed && x.state != "paused")
        .map(|x| (x.at - resumed).as_secs_f64() * 1000.0);
    let wire: Vec<WireSample> = samples.iter().map(|x| x.wire).collect();
    let (bpo, how) = wire_text(bytes_per_op(&wire));
    let full_sync = s.states.iter().any(|st| st.contains("full"));
    println!(
        "catchup: {backlog} ops caught up in {:.3} s = {r:.0} ops/s (peak {peak:.0} ops/s over 1 s); link left `paused` after {} ms; states {:?}{}; digests {}",
        elapsed.as_secs_f64(),
        streaming_after.map_or("-".to_string(), |v| format!("{v:.0}")),
        s.states,
        if full_sync { " (FULL SYNC: the backlog did not serve it)" } else { "" },
        if da == db { "equal" } else { "DIFFER" }
    );
    println!(
        "catchup: GET latency p50/p99/max (ms) meanwhile: source {}, sink {}",
        latency_text(source_ping),
        latency_text(sink_ping)
    );
    println!(
        "RESULT catchup ops={backlog} seconds={:.3} rate={r:.0} peak_1s={peak:.0} full_sync={} digests_equal={} bytes_per_op={bpo} bytes_per_op_from={how} source_get_ms={} sink_get_ms={} states={}",
        elapsed.as_secs_f64(),
        if full_sync { "yes" } else { "no" },
        if da == db { "yes" } else { "no" },
        latency_text(source_ping),
        latency_text(sink_ping),
        s.states.join("/")
    );
    Ok(())
}
