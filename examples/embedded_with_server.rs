//! An embedded Chorus site peering with a `chorus-server` process over
//! loopback QUIC with mutual TLS. Both take INCRs and SADDs at the same
//! time (the server from a Redis client); both converge with every write
//! kept.
//!
//!     cargo run --example embedded_with_server
//!
//! The server binary is `$CHORUS_SERVER`, else the one next to this
//! example's own build (`target/<profile>/chorus-server`), built first when
//! it is missing or stale (the end-to-end tests' lookup,
//! `chorus_testkit::server_binary`). Data and certificates go to a temporary
//! directory; the server is stopped at the end.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus::replication::quic::tls;
use chorus::{Peering, Site, SiteOptions};

const WRITES: u64 = 300;

/// A loopback port free for TCP and UDP at the time of asking.
fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    drop(l);
    UdpSocket::bind(("127.0.0.1", port))?;
    Ok(port)
}

/// Stops the server when dropped (SIGKILL would skip its clean shutdown;
/// `SHUTDOWN` is sent first, see `main`).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let certs = tmp.path().join("certs");
    tls::generate_ca(&certs.join("ca"))?;
    for site in [1, 2] {
        tls::generate_site(&certs.join("ca"), site, &certs.join(format!("s{site}")))?;
    }
    let (port, repl_port, embedded_port) = (free_port()?, free_port()?, free_port()?);
    let embedded_addr: SocketAddr = ([127, 0, 0, 1], embedded_port).into();
    let server_repl: SocketAddr = ([127, 0, 0, 1], repl_port).into();

    // Site 1: chorus-server, peering with the embedded site 2.
    let c = |p: &str| certs.join(p).display().to_string();
    let mut server = Server(
        Command::new(chorus_testkit::server_binary())
            .args(["--site-id", "1", "--port", &port.to_string()])
            .args(["--repl-port", &repl_port.to_string()])
            .args(["--dir", &tmp.path().join("server").display().to_string()])
            .args(["--peer", &format!("2@{embedded_addr}")])
            .args(["--tls-ca", &c("ca/ca.pem")])
            .args([
                "--tls-cert",
                &c("s1/site.pem"),
                "--tls-key",
                &c("s1/site.key"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );

    // Site 2: embedded here, peering with the server.
    let mut options = SiteOptions::new(2);
    options.peering = Some(Peering {
        cluster_id: 1,
        listen: embedded_addr,
        peers: vec![(1, server_repl)],
        ca: certs.join("ca/ca.pem"),
        cert: certs.join("s2/site.pem"),
        key: certs.join("s2/site.key"),
    });
    let site = Site::open(tmp.path().join("embedded"), options)?;

    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        match client.get_connection() {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("chorus-server did not start: {e}").into()),
        }
    };
    println!("chorus-server (site 1) on port {port}, replication {server_repl}; embedded site 2 on {embedded_addr}");

    std::thread::scope(|scope| -> Result<(), String> {
        let embedded = scope.spawn(|| -> Result<(), String> {
            for i in 0..WRITES {
                site.incr_by(b"hits", 1).map_err(|e| e.to_string())?;
                site.sadd(b"who", format!("embedded-{i}").as_bytes())
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        for i in 0..WRITES {
            redis::cmd("INCR")
                .arg("hits")
                .exec(&mut conn)
                .map_err(|e| e.to_string())?;
            redis::cmd("SADD")
                .arg("who")
                .arg(format!("server-{i}"))
                .exec(&mut conn)
                .map_err(|e| e.to_string())?;
        }
        embedded.join().map_err(|_| "writer panicked".to_string())?
    })?;

    let expected = 2 * WRITES;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let at_server: Option<u64> = redis::cmd("GET").arg("hits").query(&mut conn)?;
        let members: u64 = redis::cmd("SCARD").arg("who").query(&mut conn)?;
        let here = site.get(b"hits")?;
        let here_members = site.smembers(b"who")?.len() as u64;
        if at_server == Some(expected)
            && members == expected
            && here.as_deref() == Some(expected.to_string().as_bytes())
            && here_members == expected
        {
            println!("chorus-server: hits = {expected}, {members} members");
            println!("embedded site: hits = {expected}, {here_members} members");
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no convergence within 30 s: server hits={at_server:?} members={members}, embedded hits={here:?} members={here_members}"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    site.close()?;
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut conn);
    let _ = server.0.wait();
    println!("converged: every write of both sites kept");
    Ok(())
}
