//! Replication lag under a paced write load.
//!
//! `conns` writer threads pace SETs onto the writing site at `rate` ops/s in
//! total, pipelining whatever is due (at most `PIPELINE_OPS_MAX` per round
//! trip). A probe thread writes `probe:<n>` at the writing site every
//! `probe_interval_ms` and spin-polls GET at the reading site until the value
//! shows there: the probe's lag is the time from the writing site's reply to
//! the first GET that returns it (an upper bound, by at most one poll round
//! trip plus `poll_interval_us`). A sampler reads `INFO replication` of both
//! sites every `INFO_INTERVAL` for the driver's own time-lag figure, and one
//! client per site times a GET every millisecond: the latency the sites' own
//! clients see meanwhile (engine-lock stalls show up there).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::info;
use crate::ping;
use crate::resp::{Conn, Value};
use crate::stats::{ms, percentiles};

/// Most SETs one writer puts in one pipelined write.
const PIPELINE_OPS_MAX: u64 = 256;
/// How often the sampler reads INFO replication.
const INFO_INTERVAL: Duration = Duration::from_millis(100);
/// A client GET at least this slow is listed in the `--dump` file's
/// companion (`<dump>.slow-gets`).
const SLOW_GET_US: u64 = 2_000;
/// Longest a writer sleeps between two checks of what is due.
const PACE_SLEEP_MAX: Duration = Duration::from_millis(1);

#[derive(Clone, Debug, clap::Args)]
pub struct LagArgs {
    /// The site that takes the writes (RESP address).
    #[arg(long)]
    pub write: SocketAddr,
    /// The site where probes are read back.
    #[arg(long)]
    pub read: SocketAddr,
    /// Site id of the reading site (its line in the writer's INFO).
    #[arg(long, default_value_t = 2)]
    pub read_site_id: u16,
    /// Site id of the writing site (its line in the reader's INFO).
    #[arg(long, default_value_t = 1)]
    pub write_site_id: u16,
    /// Target SETs per second at the writing site, over all writers.
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of load before probes are recorded.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_seconds: f64,
    /// Writer connections.
    #[arg(long, default_value_t = 4)]
    pub conns: u64,
    /// Keys are `key:<12 digits>` drawn from this many.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Bytes per value (redis-benchmark's default is 3).
    #[arg(long, default_value_t = 3)]
    pub value_bytes: usize,
    /// One probe per this many ms.
    #[arg(long, default_value_t = 10)]
    pub probe_interval_ms: u64,
    /// A probe not seen after this long counts as a timeout.
    #[arg(long, default_value_t = 2_000)]
    pub probe_timeout_ms: u64,
    /// Pause between two GETs of a probe (0: spin).
    #[arg(long, default_value_t = 100)]
    pub poll_interval_us: u64,
    /// Also write every probe as `<ms since start> <lag us>` to this file.
    #[arg(long)]
    pub dump: Option<std::path::PathBuf>,
}

struct WriterResult {
    acked: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Paces SETs at `rate` ops/s from `start` until `end`.
fn writer(
    addr: SocketAddr,
    rate: f64,
    keys: u64,
    value: Vec<u8>,
    seed: u64,
    start: Instant,
    end: Instant,
) -> std::io::Result<WriterResult> {
    let mut conn = Conn::connect(addr)?;
    let mut rng = seed | 1;
    let mut sent: u64 = 0;
    let mut result = WriterResult {
        acked: 0,
        errors: 0,
        first_error: None,
    };
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(result);
        }
        let due = (rate * now.duration_since(start).as_secs_f64()) as u64;
        let n = due.saturating_sub(sent).min(PIPELINE_OPS_MAX);
        if n == 0 {
            let next = start + Duration::from_secs_f64((sent + 1) as f64 / rate);
            thread::sleep(next.saturating_duration_since(now).min(PACE_SLEEP_MAX));
            continue;
        }
        for _ in 0..n {
            // xorshift64: a cheap, seeded spread over the keyspace.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = format!("key:{:012}", rng % keys);
            conn.push(&[b"SET", key.as_bytes(), &value]);
        }
        conn.flush()?;
        for _ in 0..n {
            match conn.read()? {
                Value::Error(e) => {
                    result.errors += 1;
                    result.first_error.get_or_insert(e);
                }
                _ => result.acked += 1,
            }
        }
        sent += n;
    }
}

struct Probe {
    /// When the SET was sent, since the load started.
    sent_at: Duration,
    /// From the writing site's reply to the first GET that saw the value.
    lag_us: Option<u64>,
    /// From sending the SET, for comparison.
    lag_from_send_us: Option<u64>,
}

fn prober(
    args: &LagArgs,
    origin: Instant,
    start: Instant,
    end: Instant,
) -> std::io::Result<Vec<Probe>> {
    let mut w = Conn::connect(args.write)?;
    let mut r = Conn::connect(args.read)?;
    let interval = Duration::from_millis(args.probe_interval_ms.max(1));
    let poll = Duration::from_micros(args.poll_interval_us);
    let timeout = Duration::from_millis(args.probe_timeout_ms);
    let mut probes = Vec::new();
    let mut next = start;
    let mut n: u64 = 0;
    while next < end {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        next += interval;
        n += 1;
        let key = format!("probe:{n}");
        let value = format!("{n}");
        let sent = Instant::now();
        let reply = w.cmd(&["SET", &key, &value])?;
        let acked = Instant::now();
        if let Value::Error(e) = reply {
            return Err(std::io::Error::other(format!("probe SET failed: {e}")));
        }
        let deadline = acked + timeout;
        let seen = loop {
            let got = r.cmd(&["GET", &key])?;
            let now = Instant::now();
            if got == Value::Bulk(Some(value.clone().into_bytes())) {
                break Some(now);
            }
            if now >= deadline {
                break None;
            }
            if !poll.is_zero() {
                thread::sleep(poll);
            }
        };
        probes.push(Probe {
            sent_at: sent.duration_since(origin),
            lag_us: seen.map(|t| t.duration_since(acked).as_micros() as u64),
            lag_from_send_us: seen.map(|t| t.duration_since(sent).as_micros() as u64),
        });
    }
    Ok(probes)
}

#[derive(Default)]
struct InfoSamples {
    /// When each sample was taken, since the load started.
    at: Vec<Duration>,
    /// The writer's line for the reader: time lag and ops lag.
    writer_time_lag_ms: Vec<u64>,
    writer_ops_lag: Vec<u64>,
    /// The reader's line for the writer (the other direction).
    reader_time_lag_ms: Vec<u64>,
    /// Ops the writer holds that the reader does not, per the two vectors.
    behind_ops: Vec<u64>,
    states: Vec<String>,
}

fn sampler(args: &LagArgs, origin: Instant, stop: &AtomicBool) -> std::io::Result<InfoSamples> {
    let mut w = Conn::connect(args.write)?;
    let mut r = Conn::connect(args.read)?;
    let mut s = InfoSamples::default();
    while !stop.load(Ordering::Relaxed) {
        let (a, b) = (info::replication(&mut w)?, info::replication(&mut r)?);
        s.at.push(origin.elapsed());
        if let Some(p) = a.peer(args.read_site_id) {
            s.writer_time_lag_ms.push(p.time_lag_ms);
            s.writer_ops_lag.push(p.ops_lag);
            if !s.states.contains(&p.state) {
                s.states.push(p.state.clone());
            }
        }
        if let Some(p) = b.peer(args.write_site_id) {
            s.reader_time_lag_ms.push(p.time_lag_ms);
        }
        s.behind_ops.push(a.vv.ahead_of(&b.vv));
        thread::sleep(INFO_INTERVAL);
    }
    Ok(s)
}

/// Writes the run's timeline for a closer look: every probe (`<path>`),
/// every INFO sample (`<path>.info`) and every slow client GET at either
/// site (`<path>.slow-gets`), each line starting with ms since the load
/// started.
fn dump(
    path: &std::path::Path,
    probes: &[Probe],
    samples: &InfoSamples,
    write_pings: &[ping::Ping],
    read_pings: &[ping::Ping],
) -> Result<(), String> {
    let write = |suffix: &str, lines: String| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::fs::write(&p, lines).map_err(|e| format!("write {p:?}: {e}"))
    };
    write(
        "",
        probes
            .iter()
            .map(|p| {
                let lag = p.lag_us.map_or("timeout".to_string(), |l| l.to_string());
                format!("{} {lag}\n", p.sent_at.as_millis())
            })
            .collect(),
    )?;
    write(
        ".info",
        (0..samples.at.len())
            .map(|i| {
                let get = |v: &[u64]| v.get(i).map_or("-".to_string(), |x| x.to_string());
                format!(
                    "{} behind_ops={} time_lag_ms={} ops_lag={}\n",
                    samples.at[i].as_millis(),
                    get(&samples.behind_ops),
                    get(&samples.writer_time_lag_ms),
                    get(&samples.writer_ops_lag)
                )
            })
            .collect(),
    )?;
    let mut slow: Vec<(Duration, &str, u64)> = Vec::new();
    for (site, pings) in [("write", write_pings), ("read", read_pings)] {
        slow.extend(
            pings
                .iter()
                .filter(|p| p.latency_us >= SLOW_GET_US)
                .map(|p| (p.at, site, p.latency_us)),
        );
    }
    slow.sort();
    write(
        ".slow-gets",
        slow.iter()
            .map(|(at, site, us)| format!("{} {site} {us}\n", at.as_millis()))
            .collect(),
    )
}

fn join<T>(h: thread::JoinHandle<std::io::Result<T>>, what: &str) -> Result<T, String> {
    h.join()
        .map_err(|_| format!("{what} thread panicked"))?
        .map_err(|e| format!("{what}: {e}"))
}

pub fn run(args: LagArgs) -> Result<(), String> {
    if args.conns == 0 || args.rate == 0 || args.keys == 0 {
        return Err("--conns, --rate and --keys must be positive".into());
    }
    let start = Instant::now();
    let probe_start = start + Duration::from_secs_f64(args.warmup_seconds);
    let end = probe_start + Duration::from_secs_f64(args.seconds);
    let per_conn = args.rate as f64 / args.conns as f64;
    let value = vec![b'x'; args.value_bytes];
    let writers: Vec<_> = (0..args.conns)
        .map(|i| {
            let (addr, keys, value) = (args.write, args.keys, value.clone());
            let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i + 1);
            thread::spawn(move || writer(addr, per_conn, keys, value, seed, start, end))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler_handle = {
        let (args, stop) = (args.clone(), stop.clone());
        thread::spawn(move || sampler(&args, start, &stop))
    };
    let prober_handle = {
        let args = args.clone();
        thread::spawn(move || prober(&args, start, probe_start, end))
    };
    let pingers = [
        ping::start(args.write, start, stop.clone()),
        ping::start(args.read, start, stop.clone()),
    ];
    let mut acked = 0;
    let mut errors = 0;
    let mut first_error = None;
    for w in writers {
        let r = join(w, "writer")?;
        acked += r.acked;
        errors += r.errors;
        first_error = first_error.or(r.first_error);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let probes = join(prober_handle, "probe")?;
    stop.store(true, Ordering::Relaxed);
    let samples = join(sampler_handle, "INFO sampler")?;
    let [write_pings, read_pings] = pingers.map(|h| h.join().unwrap_or_default());
    // Only what the probes saw too: after the warm-up.
    let measured = |pings: &[ping::Ping]| -> Vec<ping::Ping> {
        let from = probe_start.duration_since(start);
        pings.iter().filter(|p| p.at >= from).copied().collect()
    };
    let (write_pings, read_pings) = (measured(&write_pings), measured(&read_pings));

    if let Some(path) = &args.dump {
        dump(path, &probes, &samples, &write_pings, &read_pings)?;
    }
    let timeouts = probes.iter().filter(|p| p.lag_us.is_none()).count();
    let lag = percentiles(probes.iter().filter_map(|p| p.lag_us).collect());
    let lag_send = percentiles(probes.iter().filter_map(|p| p.lag_from_send_us).collect());
    let info_lag = percentiles(samples.writer_time_lag_ms.clone());
    let info_ops_lag = percentiles(samples.writer_ops_lag.clone());
    let reader_lag = percentiles(samples.reader_time_lag_ms.clone());
    let behind = percentiles(samples.behind_ops.clone());
    let achieved = acked as f64 / elapsed;

    println!(
        "lag: {} writers, target {} SET/s, achieved {:.0} SET/s over {:.1} s ({} errors{})",
        args.conns,
        args.rate,
        achieved,
        elapsed,
        errors,
        first_error
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default()
    );
    if let (Some(l), Some(s)) = (lag, lag_send) {
        println!(
            "lag: {} probes, {} timed out; after site reply p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; from send p50 {:.2} ms, p99 {:.2} ms",
            l.count,
            timeouts,
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            ms(s.p50),
            ms(s.p99)
        );
    } else {
        println!("lag: no probe was seen at the reading site ({timeouts} timed out)");
    }
    if let (Some(i), Some(o), Some(b)) = (info_lag, info_ops_lag, behind) {
        println!(
            "lag: INFO at writer, peer {}: time_lag_ms p50 {} p99 {} max {}; ops_lag (durable) p50 {} max {}; ops not yet applied at reader (vectors) p50 {} max {}; states {:?}",
            args.read_site_id,
            i.p50,
            i.p99,
            i.max,
            o.p50,
            o.max,
            b.p50,
            b.max,
            samples.states
        );
    }
    let write_get = percentiles(ping::latencies(&write_pings));
    let read_get = percentiles(ping::latencies(&read_pings));
    if let (Some(w), Some(r)) = (write_get, read_get) {
        println!(
            "lag: client GET latency meanwhile (one per ms): writing site p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; reading site p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(w.p50),
            ms(w.p99),
            ms(w.max),
            ms(r.p50),
            ms(r.p99),
            ms(r.max)
        );
    }
    if let Some(r) = reader_lag {
        println!(
            "lag: INFO at reader, peer {}: time_lag_ms p50 {} max {} (the other direction)",
            args.write_site_id, r.p50, r.max
        );
    }
    let f = |p: Option<crate::stats::Percentiles>, pick: fn(&crate::stats::Percentiles) -> u64| {
        p.map_or("-".to_string(), |p| format!("{:.2}", ms(pick(&p))))
    };
    let g = |p: Option<crate::stats::Percentiles>, pick: fn(&crate::stats::Percentiles) -> u64| {
        p.map_or("-".to_string(), |p| pick(&p).to_string())
    };
    println!(
        "RESULT lag target_rate={} achieved_rate={:.0} errors={} probes={} timeouts={} p50_ms={} p99_ms={} max_ms={} info_time_lag_ms_p50={} info_time_lag_ms_max={} behind_ops_max={} write_get_p99_ms={} write_get_max_ms={} read_get_p99_ms={} read_get_max_ms={}",
        args.rate,
        achieved,
        errors,
        probes.len(),
        timeouts,
        f(lag, |p| p.p50),
        f(lag, |p| p.p99),
        f(lag, |p| p.max),
        g(info_lag, |p| p.p50),
        g(info_lag, |p| p.max),
        g(behind, |p| p.max),
        f(write_get, |p| p.p99),
        f(write_get, |p| p.max),
        f(read_get, |p| p.p99),
        f(read_get, |p| p.max),
    );
    Ok(())
}
