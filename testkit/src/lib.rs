//! Test harness shared by the server crate's own tests (`server/tests/`) and
//! the end-to-end tests of the workspace (`tests/`): start chorus-server and
//! redis-server processes on ephemeral loopback ports and talk RESP to them
//! over raw sockets.
//!
//! `ChorusProcess` runs the chorus-server binary (see [`server_binary`]) with
//! `--port 0` and reads the port from its startup line. `RedisProcess` runs
//! the Debian `redis-server` as the oracle for differential tests; when it is
//! missing the test is skipped with a message, or fails if
//! `CHORUS_REQUIRE_REDIS=1`.

mod binary;

pub use binary::server_binary;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus_engine::Reply;
use chorus_server::resp::decode::decode_reply;
use chorus_server::resp::encode::{encode_to_vec, Protocol};

/// How long a test waits for a server to start or a reply to arrive.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct ChorusProcess {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl ChorusProcess {
    /// Starts chorus-server on a free port with a fresh data directory.
    pub fn start(extra_args: &[&str]) -> ChorusProcess {
        ChorusProcess::start_in(tempfile::tempdir().expect("temp dir"), extra_args)
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(self.port)
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ChorusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct RedisProcess {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

fn redis_server_path() -> Option<PathBuf> {
    let default = PathBuf::from("/usr/bin/redis-server");
    if default.exists() {
        return Some(default);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.exists())
    })
}

impl RedisProcess {
    /// Starts redis-server on a free loopback port with persistence off.
    /// `None` (after printing why) when redis-server is not installed;
    /// panics instead when `CHORUS_REQUIRE_REDIS=1`.
    pub fn start(extra_args: &[&str]) -> Option<RedisProcess> {
        let Some(path) = redis_server_path() else {
            let message = "redis-server not found (install the Debian package redis-server); differential test skipped";
            if std::env::var("CHORUS_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("{message}, but CHORUS_REQUIRE_REDIS=1");
            }
            eprintln!("SKIPPED: {message}");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new(path)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn redis-server");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(RedisProcess { child, port, dir })
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(self.port)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw RESP connection.
pub struct Conn {
    pub stream: TcpStream,
    pending: Vec<u8>,
}

/// One reply as received, or the end of the stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    Reply(Reply, Vec<u8>),
    Closed,
}

impl Conn {
    pub fn connect(port: u16) -> Conn {
        let deadline = Instant::now() + WAIT;
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(WAIT)).expect("timeout");
                    return Conn {
                        stream,
                        pending: Vec::new(),
                    };
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "connect to {port}: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads the next reply (raw bytes included), or `Closed` at EOF.
    pub fn receive(&mut self) -> Received {
        loop {
            match decode_reply(&self.pending) {
                Ok(Some((reply, used))) => {
                    let raw: Vec<u8> = self.pending.drain(..used).collect();
                    return Received::Reply(reply, raw);
                }
                Ok(None) => {}
                Err(e) => panic!(
                    "undecodable reply {e}: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Received::Closed,
                Ok(n) => self
                    .pending
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Received::Closed
                }
                // A signal (a child process of another test exiting) is no
                // failure of the server: read again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "read failed: {e} (pending {:?})",
                    String::from_utf8_lossy(&self.pending)
                ),
            }
        }
    }

    /// Sends a command as a multibulk request and returns its raw reply.
    pub fn call(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&multibulk(args));
        match self.receive() {
            Received::Reply(_, raw) => raw,
            Received::Closed => b"<closed>".to_vec(),
        }
    }

    /// Like [`Conn::call`] with string arguments, returning the decoded reply.
    pub fn cmd(&mut self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&multibulk(&args));
        match self.receive() {
            Received::Reply(reply, _) => reply,
            Received::Closed => panic!("connection closed"),
        }
    }

    /// Sends raw bytes, then reads `replies` replies and whether the server
    /// then closed the connection (checked only when `expect_close`).
    pub fn exchange(&mut self, bytes: &[u8], replies: usize) -> Vec<u8> {
        self.send(bytes);
        let mut out = Vec::new();
        for _ in 0..replies {
            match self.receive() {
                Received::Reply(_, raw) => out.extend(raw),
                Received::Closed => {
                    out.extend_from_slice(b"<closed>");
                    return out;
                }
            }
        }
        out
    }

    /// Reads until the server closes the connection; returns what came.
    pub fn until_closed(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match self.receive() {
                Received::Reply(_, raw) => out.extend(raw),
                Received::Closed => {
                    out.extend_from_slice(b"<closed>");
                    return out;
                }
            }
        }
    }
}

pub fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Replaces the values of the named keys of a map reply (HELLO) with a
/// placeholder and re-encodes, so fields that legitimately differ between
/// two servers can be left out of a comparison.
pub fn mask_map_fields(raw: &[u8], keys: &[&str], protocol: Protocol) -> Vec<u8> {
    let Ok(Some((reply, _))) = decode_reply(raw) else {
        return raw.to_vec();
    };
    let masked = match reply {
        // RESP2 maps arrive as flat arrays.
        Reply::Array(items) if items.len() % 2 == 0 => {
            let mut out = Vec::new();
            for pair in items.chunks(2) {
                if let [k, v] = pair {
                    let hide = matches!(k, Reply::Bulk(b) if keys.iter().any(|key| key.as_bytes() == b.as_ref()));
                    out.push(k.clone());
                    out.push(if hide { Reply::bulk("<masked>") } else { v.clone() });
                }
            }
            Reply::Array(out)
        }
        Reply::Map(pairs) => Reply::Map(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let hide = matches!(&k, Reply::Bulk(b) if keys.iter().any(|key| key.as_bytes() == b.as_ref()));
                    (k, if hide { Reply::bulk("<masked>") } else { v })
                })
                .collect(),
        ),
        other => other,
    };
    encode_to_vec(&masked, protocol)
}

pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", "\\r\\n")
}

impl ChorusProcess {
    /// Starts chorus-server with its data in `dir/data`, like
    /// [`ChorusProcess::start`] but on a directory the caller chose: pass
    /// the directory of a stopped process (see [`ChorusProcess::into_dir`])
    /// to restart on the same data.
    pub fn start_in(dir: tempfile::TempDir, extra_args: &[&str]) -> ChorusProcess {
        let command = Command::new(server_binary());
        ChorusProcess::spawn(command, dir, extra_args)
    }

    /// Like [`ChorusProcess::start_in`], with every file the process writes
    /// limited to `kib` KiB (`ulimit -f`, SIGXFSZ ignored): a write past it
    /// fails with `EFBIG`, as a write to a full disk fails with `ENOSPC`.
    pub fn start_in_with_file_limit(
        dir: tempfile::TempDir,
        kib: u64,
        extra_args: &[&str],
    ) -> ChorusProcess {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(format!(
                "ulimit -f {kib} && trap '' XFSZ && exec \"$0\" \"$@\""
            ))
            .arg(server_binary());
        ChorusProcess::spawn(command, dir, extra_args)
    }

    fn spawn(mut command: Command, dir: tempfile::TempDir, extra_args: &[&str]) -> ChorusProcess {
        let mut child = command
            .args(["--port", "0", "--dir"])
            .arg(dir.path().join("data"))
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chorus-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("startup line");
        let port = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.trim_end_matches(',').rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in startup line {line:?}"));
        ChorusProcess { child, port, dir }
    }

    /// Stops the process (SIGKILL if it is still running) and hands back its
    /// data directory, for a restart with [`ChorusProcess::start_in`].
    pub fn into_dir(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }
}

/// The path of one of Redis's command-line tools (`redis-cli`,
/// `redis-benchmark`). `None` (after printing why) when it is not
/// installed; panics instead when `CHORUS_REQUIRE_REDIS=1`.
pub fn redis_tool(name: &str) -> Option<PathBuf> {
    let default = PathBuf::from("/usr/bin").join(name);
    let found = if default.exists() {
        Some(default)
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.exists())
        })
    };
    if found.is_none() {
        let message =
            format!("{name} not found (install the Debian package redis-tools); test skipped");
        if std::env::var("CHORUS_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("{message}, but CHORUS_REQUIRE_REDIS=1");
        }
        eprintln!("SKIPPED: {message}");
    }
    found
}

/// Runs a program to completion within `limit`, feeding it `stdin`; kills
/// it and panics if it takes longer. Returns its exit status and output.
pub fn run_bounded(
    command: &mut Command,
    stdin: Option<Vec<u8>>,
    limit: Duration,
) -> (std::process::ExitStatus, String, String) {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tool");
    let feeder = child.stdin.take().map(|mut pipe| {
        let data = stdin.unwrap_or_default();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    (status, out, err)
}
