//! Commands that could stall a site, timed side by side on chorus-server and
//! redis-server (run through `benches/stalls.sh`, which starts both).
//!
//! For each collection size it loads a hash, a set and a sorted set of that
//! many members into each server, then times calls of the scans (COUNT 10,
//! following the cursor), the random picks, ZRANK of the last member and a
//! ZRANGE by rank near the end, alternating blocks of calls between the two
//! servers so that both see the same drift of loopback round trips. Then, once: KEYS with the CVE-2022-36021
//! pattern, SCAN MATCH over 1,000,000 keys, DEL of a 1,000,000-member set and
//! FLUSHALL of everything. While each runs, a second connection sends a PING
//! every millisecond and keeps the longest answer time: what every other
//! client of the site saw. Prints a Markdown table.
//!
//! Without `--chorus` and `--redis` (as `cargo bench` runs it) it prints its
//! usage and exits.

#[path = "../replication/resp.rs"]
#[allow(dead_code)]
mod resp;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use resp::{Conn, Value};

#[derive(Debug, Parser)]
#[command(
    name = "stalls",
    about = "Per-call times of slow-prone commands, Chorus vs Redis"
)]
struct Cli {
    #[arg(long)]
    chorus: Option<SocketAddr>,
    #[arg(long)]
    redis: Option<SocketAddr>,
    /// Collection sizes.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    sizes: Vec<usize>,
    /// Calls timed per command and size.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Keys for SCAN MATCH and FLUSHALL.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
}

/// Members per loading command.
const LOAD_BATCH: usize = 1000;
/// Loading commands in flight per pipeline flush.
const LOAD_PIPELINE: usize = 16;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The longest PING round trip seen while it runs.
struct Pinger {
    stop: Arc<AtomicBool>,
    worst_us: Arc<AtomicU64>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Pinger {
    fn start(addr: SocketAddr) -> Result<Pinger> {
        let mut conn = Conn::connect(addr)?;
        let stop = Arc::new(AtomicBool::new(false));
        let worst_us = Arc::new(AtomicU64::new(0));
        let (s, w) = (stop.clone(), worst_us.clone());
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                if conn.cmd(&["PING"]).is_err() {
                    return;
                }
                w.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
            }
        });
        Ok(Pinger {
            stop,
            worst_us,
            handle: Some(handle),
        })
    }

    /// Stops it and returns the longest PING in ms.
    fn finish(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.worst_us.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

/// One measured row for one server.
#[derive(Clone, Copy, Default)]
struct Figure {
    /// Median per call (µs).
    median_us: f64,
    /// Longest call (µs).
    max_us: f64,
    /// Longest PING seen by another client meanwhile (ms).
    ping_ms: f64,
}

fn check(v: &Value, what: &str) -> Result<()> {
    if let Value::Error(e) = v {
        return Err(format!("{what}: -{e}").into());
    }
    Ok(())
}

/// Sends commands built by `make(i)` for `i in 0..n`, pipelined.
fn pipelined(conn: &mut Conn, n: usize, make: impl Fn(usize) -> Vec<String>) -> Result<()> {
    let mut i = 0;
    while i < n {
        let end = (i + LOAD_PIPELINE).min(n);
        for j in i..end {
            let args = make(j);
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            conn.push(&refs);
        }
        conn.flush()?;
        for _ in i..end {
            check(&conn.read()?, "load")?;
        }
        i = end;
    }
    Ok(())
}

/// A collection command adding members `lo..hi`.
fn load_cmd(kind: &str, key: &str, lo: usize, hi: usize) -> Vec<String> {
    let mut args = vec![kind.to_string(), key.to_string()];
    for i in lo..hi {
        match kind {
            "HSET" => {
                args.push(format!("field:{i}"));
                args.push(format!("value:{i}"));
            }
            "SADD" => args.push(format!("member:{i}")),
            _ => {
                args.push(i.to_string());
                args.push(format!("m{i}"));
            }
        }
    }
    args
}

fn load_collections(conn: &mut Conn, n: usize) -> Result<()> {
    check(&conn.cmd(&["FLUSHALL"])?, "FLUSHALL")?;
    let batches = n.div_ceil(LOAD_BATCH);
    for (kind, key) in [("HSET", "h"), ("SADD", "s"), ("ZADD", "lb")] {
        pipelined(conn, batches, |b| {
            load_cmd(kind, key, b * LOAD_BATCH, ((b + 1) * LOAD_BATCH).min(n))
        })?;
    }
    Ok(())
}

/// Longest wait for a checkpoint (Chorus) or AOF rewrite (Redis) that a load
/// started.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Waits until no checkpoint or AOF rewrite runs (INFO persistence), so that
/// the measured calls do not share the CPU with one, then one more second.
fn settle(conn: &mut Conn) -> Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let t = Instant::now();
    loop {
        thread::sleep(Duration::from_secs(1));
        let info = conn
            .cmd(&["INFO", "persistence"])?
            .text()
            .unwrap_or_default();
        let busy = info.lines().any(|l| {
            matches!(
                l.trim(),
                "rdb_bgsave_in_progress:1"
                    | "aof_rewrite_in_progress:1"
                    | "aof_rewrite_scheduled:1"
            )
        });
        if !busy || Instant::now() > deadline {
            break;
        }
    }
    thread::sleep(Duration::from_secs(1));
    eprintln!("  settled after {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Times `calls` calls of `next(i)` (which may follow a cursor through
/// `reply`), with a pinger running.
fn time_calls(
    addr: SocketAddr,
    conn: &mut Conn,
    calls: usize,
    mut next: impl FnMut(usize) -> Vec<String>,
    mut reply: impl FnMut(&Value),
) -> Result<Figure> {
    let pinger = Pinger::start(addr)?;
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        times.push(time_one(conn, &next(i), &mut reply)?);
    }
    Ok(figure(times, pinger.finish()))
}

/// One timed call (µs).
fn time_one(conn: &mut Conn, args: &[String], reply: &mut impl FnMut(&Value)) -> Result<f64> {
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let t = Instant::now();
    let v = conn.call(&refs)?;
    let us = t.elapsed().as_secs_f64() * 1e6;
    check(&v, &args.join(" "))?;
    reply(&v);
    Ok(us)
}

fn figure(mut times: Vec<f64>, ping_ms: f64) -> Figure {
    times.sort_by(f64::total_cmp);
    Figure {
        median_us: times.get(times.len() / 2).copied().unwrap_or(0.0),
        max_us: times.last().copied().unwrap_or(0.0),
        ping_ms,
    }
}

/// Blocks each server's calls of one row are split into, alternating
/// between the servers: round trips over loopback drift by tens of µs over
/// seconds on a shared machine, and alternating gives both the same drift.
const ROUNDS: usize = 10;

/// One server of a side-by-side row: its connection and scan cursor.
struct Side {
    addr: SocketAddr,
    conn: Conn,
    cursor: String,
}

/// Times `calls` calls on each server, alternating blocks of calls between
/// them, each with a pinger running for the whole row. `args(cursor)` makes
/// a call from the side's cursor; `follow` says whether a reply's cursor is
/// the next one.
fn time_pair(
    sides: &mut [Side; 2],
    calls: usize,
    args: impl Fn(&str) -> Vec<String>,
    follow: bool,
) -> Result<[Figure; 2]> {
    let pingers = [Pinger::start(sides[0].addr)?, Pinger::start(sides[1].addr)?];
    let mut times = [Vec::with_capacity(calls), Vec::with_capacity(calls)];
    let block = calls.div_ceil(ROUNDS).max(1);
    let mut done = 0;
    while done < calls {
        let n = block.min(calls - done);
        for (side, times) in sides.iter_mut().zip(times.iter_mut()) {
            for _ in 0..n {
                let a = args(&side.cursor);
                let mut next = None;
                times.push(time_one(&mut side.conn, &a, &mut |v| {
                    next = Some(cursor_of(v));
                })?);
                if follow {
                    side.cursor = next.unwrap_or_else(|| "0".into());
                }
            }
        }
        done += n;
    }
    let [p0, p1] = pingers;
    let [t0, t1] = times;
    Ok([figure(t0, p0.finish()), figure(t1, p1.finish())])
}

/// A scan's next cursor from its reply ("0" when the scan ended: restart).
fn cursor_of(v: &Value) -> String {
    match v {
        Value::Array(Some(parts)) => parts
            .first()
            .and_then(|c| c.text())
            .unwrap_or_else(|| "0".into()),
        _ => "0".into(),
    }
}

/// The per-size rows, Chorus's and Redis's: name and figure.
type Rows = Vec<(String, Figure)>;

fn collection_rows(addrs: [SocketAddr; 2], n: usize, calls: usize) -> Result<[Rows; 2]> {
    let sides = addrs.map(|addr| {
        Conn::connect(addr).map(|conn| Side {
            addr,
            conn,
            cursor: "0".into(),
        })
    });
    let mut sides: [Side; 2] = match sides {
        [Ok(a), Ok(b)] => [a, b],
        [Err(e), _] | [_, Err(e)] => return Err(e.into()),
    };
    for side in sides.iter_mut() {
        let t = Instant::now();
        load_collections(&mut side.conn, n)?;
        eprintln!(
            "  {}: loaded 3 x {n} members in {:.1} s",
            side.addr,
            t.elapsed().as_secs_f64()
        );
    }
    for side in sides.iter_mut() {
        settle(&mut side.conn)?;
    }
    let mut rows: [Rows; 2] = [Vec::new(), Vec::new()];
    let mut push = |name: String, figs: [Figure; 2]| {
        for (r, f) in rows.iter_mut().zip(figs) {
            r.push((name.clone(), f));
        }
    };
    for (name, key) in [("HSCAN", "h"), ("SSCAN", "s"), ("ZSCAN", "lb")] {
        for side in sides.iter_mut() {
            side.cursor = "0".into();
        }
        let figs = time_pair(
            &mut sides,
            calls,
            |c| [name, key, c, "COUNT", "10"].map(String::from).to_vec(),
            true,
        )?;
        push(format!("`{name} {key} <cursor> COUNT 10`"), figs);
    }
    let last = format!("m{}", n - 1);
    let start = (n as f64 * 0.9) as usize;
    let (a, b) = (start.to_string(), (start + 9).to_string());
    let fixed: Vec<(&str, Vec<&str>)> = vec![
        ("SRANDMEMBER s", vec!["SRANDMEMBER", "s"]),
        ("SRANDMEMBER s 10", vec!["SRANDMEMBER", "s", "10"]),
        ("SRANDMEMBER s -10", vec!["SRANDMEMBER", "s", "-10"]),
        ("HRANDFIELD h", vec!["HRANDFIELD", "h"]),
        (
            "HRANDFIELD h 10 WITHVALUES",
            vec!["HRANDFIELD", "h", "10", "WITHVALUES"],
        ),
        ("ZRANDMEMBER lb", vec!["ZRANDMEMBER", "lb"]),
        (
            "ZRANDMEMBER lb 10 WITHSCORES",
            vec!["ZRANDMEMBER", "lb", "10", "WITHSCORES"],
        ),
        ("ZRANK lb <last member>", vec!["ZRANK", "lb", &last]),
        ("ZREVRANK lb <last member>", vec!["ZREVRANK", "lb", &last]),
        ("ZRANGE lb 0.9N 0.9N+9", vec!["ZRANGE", "lb", &a, &b]),
        ("ZCOUNT lb 0.9N +inf", vec!["ZCOUNT", "lb", &a, "+inf"]),
        ("SPOP s", vec!["SPOP", "s"]),
    ];
    for (name, args) in fixed {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let figs = time_pair(&mut sides, calls, |_| args.clone(), false)?;
        push(format!("`{name}`"), figs);
    }
    Ok(rows)
}

/// KEYS with the CVE pattern, SCAN MATCH over `keys` keys, DEL of a big set,
/// FLUSHALL: each timed once (SCAN per call and whole).
fn once_rows(addr: SocketAddr, keys: usize, calls: usize) -> Result<Vec<(String, Figure)>> {
    let mut conn = Conn::connect(addr)?;
    let mut rows = Vec::new();
    check(&conn.cmd(&["FLUSHALL"])?, "FLUSHALL")?;
    check(&conn.cmd(&["SET", &"a".repeat(90), "1"])?, "SET")?;
    let pattern = "a*".repeat(24) + "b";
    let f = time_calls(
        addr,
        &mut conn,
        5,
        |_| vec!["KEYS".into(), pattern.clone()],
        |_| {},
    )?;
    rows.push(("`KEYS a*a*…a*b` (24 `a*`, one key of 90 a's)".into(), f));

    let t = Instant::now();
    pipelined(&mut conn, keys.div_ceil(LOAD_BATCH), |b| {
        let mut args = vec!["MSET".to_string()];
        for i in b * LOAD_BATCH..((b + 1) * LOAD_BATCH).min(keys) {
            args.push(format!("key:{i}"));
            args.push("v".into());
        }
        args
    })?;
    let batches = keys.div_ceil(LOAD_BATCH);
    pipelined(&mut conn, batches, |b| {
        load_cmd(
            "SADD",
            "bigset",
            b * LOAD_BATCH,
            ((b + 1) * LOAD_BATCH).min(keys),
        )
    })?;
    eprintln!(
        "  {addr}: loaded {keys} keys and a {keys}-member set in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    thread::sleep(Duration::from_secs(10));

    let cursor = RefCell::new("0".to_string());
    let f = time_calls(
        addr,
        &mut conn,
        calls,
        |_| {
            let c = cursor.borrow().clone();
            ["SCAN", &c, "MATCH", "key:1*", "COUNT", "10"]
                .map(String::from)
                .to_vec()
        },
        |v| *cursor.borrow_mut() = cursor_of(v),
    )?;
    rows.push((
        format!("`SCAN <cursor> MATCH key:1* COUNT 10` ({keys} keys)"),
        f,
    ));
    // A whole iteration, COUNT 1000: the total, and the longest call.
    let pinger = Pinger::start(addr)?;
    let t = Instant::now();
    let mut cursor = "0".to_string();
    let mut worst = 0f64;
    let mut found = 0usize;
    loop {
        let c = Instant::now();
        let v = conn.cmd(&["SCAN", &cursor, "MATCH", "key:1*", "COUNT", "1000"])?;
        worst = worst.max(c.elapsed().as_secs_f64() * 1e6);
        check(&v, "SCAN")?;
        if let Value::Array(Some(parts)) = &v {
            if let Some(Value::Array(Some(items))) = parts.get(1) {
                found += items.len();
            }
        }
        cursor = cursor_of(&v);
        if cursor == "0" {
            break;
        }
    }
    let total_us = t.elapsed().as_secs_f64() * 1e6;
    rows.push((
        format!("whole `SCAN … MATCH key:1* COUNT 1000` ({found} found; total, longest call)"),
        Figure {
            median_us: total_us,
            max_us: worst,
            ping_ms: pinger.finish(),
        },
    ));
    let f = time_calls(
        addr,
        &mut conn,
        1,
        |_| vec!["DEL".into(), "bigset".into()],
        |_| {},
    )?;
    rows.push((format!("`DEL bigset` ({keys} members)"), f));
    let f = time_calls(addr, &mut conn, 1, |_| vec!["FLUSHALL".into()], |_| {})?;
    rows.push((format!("`FLUSHALL` ({keys} keys)"), f));
    Ok(rows)
}

fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let (Some(chorus), Some(redis)) = (cli.chorus, cli.redis) else {
        Cli::command().print_help()?;
        println!();
        return Ok(());
    };
    println!("| command | N | Chorus median (max) | Redis median (max) | ratio | longest PING Chorus / Redis |");
    println!("|---|---|---|---|---|---|");
    let mut by_size: Vec<(usize, Vec<(String, Figure)>)> = Vec::new();
    for &n in &cli.sizes {
        eprintln!("== {n} members");
        let [c, r] = collection_rows([chorus, redis], n, cli.calls)?;
        for ((name, cf), (_, rf)) in c.iter().zip(&r) {
            print_row(name, &n.to_string(), cf, rf);
        }
        by_size.push((n, c));
    }
    eprintln!("== once");
    let c = once_rows(chorus, cli.keys, cli.calls)?;
    let r = once_rows(redis, cli.keys, cli.calls)?;
    for ((name, cf), (_, rf)) in c.iter().zip(&r) {
        print_row(name, "", cf, rf);
    }
    if let (Some((small, s)), Some((big, b))) = (by_size.first(), by_size.last()) {
        if small != big {
            println!();
            println!("| command | Chorus at {big} / at {small} (median) |");
            println!("|---|---|");
            for ((name, sf), (_, bf)) in s.iter().zip(b) {
                println!("| {name} | {:.2} |", bf.median_us / sf.median_us.max(1e-9));
            }
        }
    }
    Ok(())
}

fn print_row(name: &str, n: &str, c: &Figure, r: &Figure) {
    println!(
        "| {name} | {n} | {} ({}) | {} ({}) | {:.2} | {:.1} / {:.1} ms |",
        fmt_us(c.median_us),
        fmt_us(c.max_us),
        fmt_us(r.median_us),
        fmt_us(r.max_us),
        c.median_us / r.median_us.max(1e-9),
        c.ping_ms,
        r.ping_ms
    );
}
