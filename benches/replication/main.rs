//! Two-site replication benchmarks against real `chorus-server` processes:
//! the measuring side. `benches/replication.sh` builds the release server,
//! makes certificates, starts the sites on loopback, loads them with
//! redis-benchmark and calls this binary's subcommands:
//!
//! * `ports N`: N loopback ports free for both TCP and UDP.
//! * `ready`: waits until two sites stream to each other and agree.
//! * `lag`: replication lag of probes while the source takes a paced load.
//! * `stream`: ops/s applied at the sink while something loads the source.
//! * `catchup`: resumes a paused link and times the catch-up.
//!
//! Each prints human-readable lines and one `RESULT <bench> key=value ...`
//! line for the driver. Without a subcommand (as `cargo bench` and
//! `cargo test --benches` run it) it prints its usage and exits: the sites
//! are the driver's to start.

mod info;
mod lag;
mod ping;
mod resp;
mod stats;
mod stream;

use std::net::{TcpListener, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "replication",
    about = "Chorus two-site replication benchmarks (run through benches/replication.sh)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints N loopback ports that are free for both TCP and UDP.
    Ports { n: usize },
    /// Waits until the source streams to the sink and they hold the same ops.
    Ready {
        #[command(flatten)]
        sites: stream::Sites,
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
    /// Replication lag of probes under a paced SET load.
    Lag(lag::LagArgs),
    /// Ops/s applied at the sink while the source is loaded by someone else.
    Stream(stream::StreamArgs),
    /// Resumes a paused link and times the sink catching up.
    Catchup(stream::CatchupArgs),
}

/// How many ports `ports` tries before giving up.
const PORT_ATTEMPTS_MAX: usize = 1_000;

fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    // Held until all are found, so no port is handed out twice.
    let mut held = Vec::new();
    for _ in 0..PORT_ATTEMPTS_MAX {
        if held.len() == n {
            break;
        }
        let tcp = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = tcp.local_addr().map_err(|e| e.to_string())?.port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            held.push((port, tcp, udp));
        }
    }
    if held.len() < n {
        return Err(format!("found only {} free ports of {n}", held.len()));
    }
    Ok(held.into_iter().map(|(p, _, _)| p).collect())
}

fn ready(sites: &stream::Sites, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let check = || -> std::io::Result<Option<String>> {
            let mut a = resp::Conn::connect(sites.source)?;
            let mut b = resp::Conn::connect(sites.sink)?;
            let (ia, ib) = (info::replication(&mut a)?, info::replication(&mut b)?);
            let state = |i: &info::Replication, id| i.peer(id).map(|p| p.state.clone());
            let (sa, sb) = (state(&ia, sites.sink_id), state(&ib, sites.source_id));
            if sa.as_deref() == Some("streaming")
                && sb.as_deref() == Some("streaming")
                && ia.vv.ahead_of(&ib.vv) == 0
                && ib.vv.ahead_of(&ia.vv) == 0
            {
                return Ok(None);
            }
            Ok(Some(format!(
                "source sees {sa:?}, sink sees {sb:?}, vectors {:?} / {:?}",
                ia.vv, ib.vv
            )))
        };
        match check() {
            Ok(None) => return Ok(()),
            Ok(Some(why)) => last = why,
            Err(e) => last = e.to_string(),
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(format!("sites not streaming after {timeout:?}: {last}"))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing.
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if args.len() <= 1 {
        println!("The replication benchmarks need running sites: use benches/replication.sh.\n");
        let _ = Cli::command().print_help();
        return;
    }
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Ports { n } => free_ports(n).map(|ports| {
            let ports: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            println!("{}", ports.join(" "));
        }),
        Command::Ready { sites, timeout_s } => ready(&sites, Duration::from_secs(timeout_s)),
        Command::Lag(a) => lag::run(a),
        Command::Stream(a) => stream::stream(a),
        Command::Catchup(a) => stream::catchup(a),
    };
    if let Err(e) = result {
        eprintln!("replication bench: {e}");
        std::process::exit(1);
    }
}
