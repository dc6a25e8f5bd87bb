//! The latency a site's clients see while a benchmark runs: one GET per
//! `PING_INTERVAL` on its own connection, timed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::resp::Conn;

/// Pause between two GETs.
const PING_INTERVAL: Duration = Duration::from_millis(1);

/// One timed GET: when it was sent (since the pinger's `start`) and how long
/// the reply took, in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct Ping {
    pub at: Duration,
    pub latency_us: u64,
}

/// Starts a pinger of `addr` that runs until `stop` is set.
pub fn start(
    addr: SocketAddr,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<Ping>> {
    thread::spawn(move || {
        let mut pings = Vec::new();
        let Ok(mut c) = Conn::connect(addr) else {
            return pings;
        };
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            if c.cmd(&["GET", "key:000000000001"]).is_err() {
                break;
            }
            pings.push(Ping {
                at: t.duration_since(start),
                latency_us: t.elapsed().as_micros() as u64,
            });
            thread::sleep(PING_INTERVAL);
        }
        pings
    })
}

/// Latencies of `pings`, in microseconds.
pub fn latencies(pings: &[Ping]) -> Vec<u64> {
    pings.iter().map(|p| p.latency_us).collect()
}
