//! Pub/sub across two sites: messages/s from a publisher at one site to a
//! subscriber at the other, and publish-to-receive latency at a paced rate.
//! Driven by `benches/pubsub-sites.sh`, which starts the two sites.
//!
//! Usage: pubsub_sites PUB_PORT SUB_PORT [MESSAGES] [RATE] [SECONDS]
//!   MESSAGES  messages in the throughput run (default 1,000,000)
//!   RATE      messages/s of the latency run (default 10,000)
//!   SECONDS   length of the latency run (default 5)

use chorus_testkit::multibulk as resp;
use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// PUBLISHes written per pipelined round in the throughput run.
const PIPELINE: usize = 1000;
/// How long the subscriber waits for stragglers after the last message.
const DRAIN: Duration = Duration::from_secs(3);

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i)
        .map(|a| a.replace(['_', ','], "").parse().expect("a number"))
        .unwrap_or(default)
}

/// Reads and discards `replies` reply lines from the publisher's
/// connection on a thread of its own, so the publisher never stalls on them.
fn drain_replies(stream: &TcpStream, replies: usize) -> std::thread::JoinHandle<()> {
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        for _ in 0..replies {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
        }
    })
}

/// A subscriber on `channel` at `port`, ready when this returns; each
/// message's payload and arrival time go to the returned receiver until
/// `want` arrived or nothing came for `DRAIN`.
fn subscribe(port: u16, channel: &str, want: usize) -> mpsc::Receiver<(Vec<u8>, Instant)> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client");
    let mut con = client.get_connection().expect("subscriber connects");
    let (ready_tx, ready_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    let channel = channel.to_string();
    std::thread::spawn(move || {
        let mut pubsub = con.as_pubsub();
        pubsub.set_read_timeout(Some(DRAIN)).expect("timeout");
        pubsub.subscribe(&channel).expect("subscribe");
        ready_tx.send(()).expect("ready");
        for _ in 0..want {
            match pubsub.get_message() {
                Ok(msg) => {
                    let at = Instant::now();
                    let payload: Vec<u8> = msg.get_payload().unwrap_or_default();
                    if tx.send((payload, at)).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    ready_rx.recv().expect("subscriber ready");
    rx
}

/// Waits until site `sub_port` counts `channel`'s subscriber and a message
/// published at `pub_port` crosses (the pub/sub stream is open).
fn warm_up(pub_port: u16, sub_port: u16) {
    let rx = subscribe(sub_port, "bench:warmup", 1);
    let client = redis::Client::open(format!("redis://127.0.0.1:{pub_port}/")).expect("client");
    let mut con = client.get_connection().expect("publisher connects");
    for _ in 0..300 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("bench:warmup")
            .arg("x")
            .query(&mut con)
            .expect("publish");
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            return;
        }
    }
    panic!("no message crossed from port {pub_port} to port {sub_port}");
}

fn throughput(pub_port: u16, sub_port: u16, messages: usize) {
    let rx = subscribe(sub_port, "bench:tput", messages);
    let mut stream = TcpStream::connect(("127.0.0.1", pub_port)).expect("publisher");
    stream.set_nodelay(true).expect("nodelay");
    let payload = [b'x'; 16];
    let round = {
        let mut r = Vec::new();
        for _ in 0..PIPELINE {
            r.extend_from_slice(&resp(&[b"PUBLISH", b"bench:tput", &payload]));
        }
        r
    };
    let rounds = messages.div_ceil(PIPELINE);
    let replies = drain_replies(&stream, rounds * PIPELINE);
    let start = Instant::now();
    for _ in 0..rounds {
        stream.write_all(&round).expect("publish");
    }
    let published_in = start.elapsed();
    let mut got = 0usize;
    let mut last = start;
    while let Ok((_, at)) = rx.recv() {
        got += 1;
        last = at;
    }
    let _ = replies.join();
    let published = rounds * PIPELINE;
    let secs = last.duration_since(start).as_secs_f64().max(1e-9);
    println!(
        "throughput: {published} published at site 1 in {:.2} s ({:.0}/s); {got} received at site 2 in {:.2} s: {:.0} msgs/s across sites; {} dropped ({:.2}%)",
        published_in.as_secs_f64(),
        published as f64 / published_in.as_secs_f64().max(1e-9),
        secs,
        got as f64 / secs,
        published - got,
        100.0 * (published - got) as f64 / published as f64
    );
}

fn latency(pub_port: u16, sub_port: u16, rate: u64, seconds: u64) {
    let total = (rate * seconds) as usize;
    let rx = subscribe(sub_port, "bench:lat", total);
    let mut stream = TcpStream::connect(("127.0.0.1", pub_port)).expect("publisher");
    stream.set_nodelay(true).expect("nodelay");
    let replies = drain_replies(&stream, total);
    let epoch = Instant::now();
    let interval_ns = 1_000_000_000 / rate.max(1);
    let mut sent = 0usize;
    let mut buf = Vec::new();
    while sent < total {
        // Every message due by now goes out in one write, stamped with the
        // time it was written.
        let now_ns = epoch.elapsed().as_nanos() as u64;
        let due = ((now_ns / interval_ns) as usize + 1).min(total);
        if due > sent {
            buf.clear();
            let stamp = epoch.elapsed().as_nanos().to_string();
            for _ in sent..due {
                buf.extend_from_slice(&resp(&[b"PUBLISH", b"bench:lat", stamp.as_bytes()]));
            }
            stream.write_all(&buf).expect("publish");
            sent = due;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut lat_us: Vec<u64> = Vec::with_capacity(total);
    while let Ok((payload, at)) = rx.recv() {
        let sent_ns: u64 = String::from_utf8_lossy(&payload).parse().unwrap_or(0);
        let at_ns = at.duration_since(epoch).as_nanos() as u64;
        lat_us.push(at_ns.saturating_sub(sent_ns) / 1000);
    }
    let _ = replies.join();
    lat_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((lat_us.len() as f64 * p).ceil() as usize).clamp(1, lat_us.len()) - 1;
        lat_us[i] as f64 / 1000.0
    };
    println!(
        "latency at {rate} msgs/s for {seconds} s: {} of {total} received; publish-to-receive p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        lat_us.len(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        lat_us.last().map_or(f64::NAN, |&m| m as f64 / 1000.0)
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 2 {
        eprintln!("usage: pubsub_sites PUB_PORT SUB_PORT [MESSAGES] [RATE] [SECONDS]");
        std::process::exit(2);
    }
    let pub_port = arg(&args, 0, 0) as u16;
    let sub_port = arg(&args, 1, 0) as u16;
    let messages = arg(&args, 2, 1_000_000) as usize;
    let rate = arg(&args, 3, 10_000);
    let seconds = arg(&args, 4, 5);
    warm_up(pub_port, sub_port);
    throughput(pub_port, sub_port, messages);
    latency(pub_port, sub_port, rate, seconds);
}
