//! `chorus-sim`: run, sweep, replay and check the determinism of simulated
//! Chorus clusters. See docs/simulator.md.

use chorus_sim::report::{
    json_str, EXIT_LIVENESS, EXIT_NONDETERMINISM, EXIT_PASS, EXIT_SAFETY, EXIT_SIM_CRASH,
};
use chorus_sim::{run_one, Canary, RunConfig, RunReport};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "chorus-sim",
    about = "Deterministic simulation of a Chorus cluster under injected faults"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Number of sites (2-7); drawn from the seed when absent.
    #[arg(long)]
    sites: Option<usize>,
    /// Client requests in the safety phase.
    #[arg(long, default_value_t = 2000)]
    ops: usize,
    /// Fault profile: random, calm, crash, partition, clock, fullsync, chaos, corrupt, corrupt-calm, disk, remove.
    #[arg(long, default_value = "random")]
    profile: String,
    /// A deliberate bug the checkers must catch: lww-arrival-order, no-dedup,
    /// reuse-seq, ack-before-durable, skip-deps, repair-join-at-vv, ignore-acks,
    /// fold-unstable, frontier-skips-pending.
    #[arg(long)]
    canary: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one seed.
    Run {
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        common: Common,
        /// Also write the event trace to this file.
        #[arg(long)]
        trace: Option<String>,
    },
    /// Run a range of seeds (`A..B`, B excluded) on J threads.
    Sweep {
        #[arg(long)]
        seeds: String,
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        #[command(flatten)]
        common: Common,
        /// Print the JSON line of every seed, not only of failures.
        #[arg(long)]
        verbose: bool,
    },
    /// Run one seed again with its event trace (to FILE, or stdout).
    Replay {
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        trace: Option<String>,
    },
    /// Run one seed twice and compare the trace hashes event by event.
    CheckDeterminism {
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        common: Common,
    },
}

fn config(seed: u64, c: &Common, keep_lines: bool) -> Result<RunConfig, String> {
    let canary = match &c.canary {
        None => None,
        Some(name) => Some(Canary::parse(name).ok_or_else(|| {
            let names: Vec<&str> = Canary::ALL.iter().map(|c| c.name()).collect();
            format!("unknown canary {name:?} (known: {})", names.join(", "))
        })?),
    };
    if !chorus_sim::profile::PROFILE_NAMES.contains(&c.profile.as_str()) {
        return Err(format!(
            "unknown profile {:?} (known: {})",
            c.profile,
            chorus_sim::profile::PROFILE_NAMES.join(", ")
        ));
    }
    if let Some(n) = c.sites {
        if !(2..=7).contains(&n) {
            return Err("--sites must be in 2..=7".into());
        }
    }
    Ok(RunConfig {
        seed,
        sites: c.sites,
        ops: c.ops,
        profile: c.profile.clone(),
        canary,
        keep_lines,
    })
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("--seeds wants A..B, got {s:?}"))?;
    let a: u64 = a.trim().parse().map_err(|_| format!("bad seed {a:?}"))?;
    let b: u64 = b.trim().parse().map_err(|_| format!("bad seed {b:?}"))?;
    if b <= a {
        return Err("--seeds A..B needs B > A".into());
    }
    Ok((a, b))
}

fn print_header(cfg: &RunConfig) {
    let p = chorus_sim::profile::Profile::draw(cfg.seed, &cfg.profile, cfg.sites, cfg.ops);
    let canary = cfg
        .canary
        .map_or(String::new(), |c| format!(" canary={}", c.name()));
    println!("seed={} {p}{canary}", cfg.seed);
}

fn print_failure(r: &RunReport) {
    match &r.outcome {
        Ok(o) => {
            if let Some(v) = &o.violation {
                println!("{}: {}", o.verdict.name(), v);
            }
        }
        Err(msg) => println!("simulator crash: {msg}"),
    }
    println!("reproduce: {}", r.config.command("run"));
    println!(
        "trace:     {} --trace trace.txt",
        r.config.command("replay")
    );
}

fn write_trace(lines: &[String], path: Option<&str>) -> Result<(), String> {
    match path {
        Some(p) => {
            let mut f = std::fs::File::create(p).map_err(|e| format!("{p}: {e}"))?;
            for l in lines {
                writeln!(f, "{l}").map_err(|e| format!("{p}: {e}"))?;
            }
            Ok(())
        }
        None => {
            let out = std::io::stdout();
            let mut out = out.lock();
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
            Ok(())
        }
    }
}

fn single(cfg: RunConfig, trace: Option<&str>, trace_to_stdout: bool) -> i32 {
    print_header(&cfg);
    let r = run_one(cfg);
    if let Ok(o) = &r.outcome {
        if trace.is_some() || trace_to_stdout {
            if let Err(e) = write_trace(&o.lines, trace) {
                eprintln!("{e}");
            }
        }
    }
    if !r.passed() {
        print_failure(&r);
    }
    println!("{}", r.json());
    r.exit_code()
}

fn sweep(a: u64, b: u64, jobs: usize, common: &Common, verbose: bool) -> i32 {
    let start = Instant::now();
    let next = AtomicU64::new(a);
    let reports: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    let jobs = jobs.clamp(1, 64);
    let cfg0 = match config(a, common, false) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= b {
                    break;
                }
                let mut cfg = cfg0.clone();
                cfg.seed = seed;
                let r = run_one(cfg);
                if verbose || !r.passed() {
                    println!("{}", r.json());
                }
                reports.lock().unwrap_or_else(|e| e.into_inner()).push(r);
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|e| e.into_inner());
    reports.sort_by_key(|r| r.config.seed);
    let count = |code: i32| reports.iter().filter(|r| r.exit_code() == code).count();
    let sim_ms: u64 = reports
        .iter()
        .filter_map(|r| r.outcome.as_ref().ok().map(|o| o.sim_ms))
        .sum();
    let wall_ms = start.elapsed().as_millis() as u64;
    let failures: Vec<&RunReport> = reports.iter().filter(|r| !r.passed()).collect();
    for r in &failures {
        println!(
            "FAIL seed {}: {} -> {}",
            r.config.seed,
            r.result_name(),
            r.config.command("run")
        );
    }
    let first = failures
        .first()
        .map_or("null".to_owned(), |r| r.config.seed.to_string());
    println!(
        "{{\"sweep\":{},\"seeds\":{},\"pass\":{},\"safety\":{},\"liveness\":{},\"crash\":{},\"first_failure\":{first},\"sim_ms\":{sim_ms},\"wall_ms\":{wall_ms},\"jobs\":{jobs}}}",
        json_str(&format!("{a}..{b}")),
        reports.len(),
        count(EXIT_PASS),
        count(EXIT_SAFETY),
        count(EXIT_LIVENESS),
        count(EXIT_SIM_CRASH),
    );
    // The worst outcome decides the exit code.
    [EXIT_SIM_CRASH, EXIT_SAFETY, EXIT_LIVENESS]
        .into_iter()
        .find(|&c| count(c) > 0)
        .unwrap_or(EXIT_PASS)
}

fn check_determinism(cfg: RunConfig) -> i32 {
    print_header(&cfg);
    let r1 = run_one(cfg.clone());
    let r2 = run_one(cfg.clone());
    let (o1, o2) = match (&r1.outcome, &r2.outcome) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            println!("simulator crashed; cannot compare");
            return EXIT_SIM_CRASH;
        }
    };
    let same = o1.trace_hash == o2.trace_hash && o1.events == o2.events;
    if same {
        println!(
            "{{\"seed\":{},\"deterministic\":true,\"trace_hash\":{},\"events\":{}}}",
            cfg.seed,
            json_str(&o1.trace_hash),
            o1.events
        );
        return EXIT_PASS;
    }
    let i = o1
        .hashes
        .iter()
        .zip(&o2.hashes)
        .position(|(a, b)| a != b)
        .unwrap_or(o1.hashes.len().min(o2.hashes.len()));
    let l1 = o1
        .lines
        .get(i)
        .cloned()
        .unwrap_or_else(|| "(end of run)".into());
    let l2 = o2
        .lines
        .get(i)
        .cloned()
        .unwrap_or_else(|| "(end of run)".into());
    println!("first differing event #{i}:\n  run 1: {l1}\n  run 2: {l2}");
    println!(
        "{{\"seed\":{},\"deterministic\":false,\"first_difference\":{i},\"trace_hashes\":[{},{}]}}",
        cfg.seed,
        json_str(&o1.trace_hash),
        json_str(&o2.trace_hash)
    );
    EXIT_NONDETERMINISM
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Run {
            seed,
            common,
            trace,
        } => match config(seed, &common, trace.is_some()) {
            Ok(cfg) => single(cfg, trace.as_deref(), false),
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        Cmd::Replay {
            seed,
            common,
            trace,
        } => match config(seed, &common, true) {
            Ok(cfg) => single(cfg, trace.as_deref(), trace.is_none()),
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        Cmd::Sweep {
            seeds,
            jobs,
            common,
            verbose,
        } => match parse_range(&seeds) {
            Ok((a, b)) => sweep(a, b, jobs, &common, verbose),
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        Cmd::CheckDeterminism { seed, common } => match config(seed, &common, true) {
            Ok(cfg) => check_determinism(cfg),
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
    };
    let _ = (EXIT_SAFETY, EXIT_LIVENESS);
    std::process::exit(code);
}
