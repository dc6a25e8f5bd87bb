//! A small blocking RESP2 client: enough to pipeline writes, poll reads and
//! read `INFO`. Every read is bounded by a socket timeout, every reply by
//! size and nesting limits, so a stuck or misbehaving server fails the bench
//! with an error instead of hanging it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long one blocking read or write may take before the bench gives up.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `connect` retries a server that is not listening yet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest bulk string accepted in a reply (INFO is a few KiB).
const BULK_BYTES_MAX: usize = 64 << 20;
/// Largest array accepted in a reply.
const ARRAY_LEN_MAX: usize = 1 << 20;
/// Deepest nesting of arrays accepted in a reply.
const DEPTH_MAX: usize = 8;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The reply as text (bulk or simple string), for INFO and DEBUG DIGEST.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Requests encoded but not yet written (see [`Conn::push`]).
    out: Vec<u8>,
}

fn protocol_error(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Conn {
    /// Connects to `addr`, retrying for a while if nothing listens yet.
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let stream = loop {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            reader: BufReader::with_capacity(64 << 10, stream.try_clone()?),
            writer: stream,
            out: Vec::with_capacity(64 << 10),
        })
    }

    /// Encodes one request into the pending pipeline.
    pub fn push(&mut self, args: &[&[u8]]) {
        encode(&mut self.out, args);
    }

    /// Writes every pending request in one write.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    /// One request, one reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Value> {
        self.push(args);
        self.flush()?;
        self.read()
    }

    /// Like [`Conn::call`], with string arguments.
    pub fn cmd(&mut self, args: &[&str]) -> io::Result<Value> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call(&args)
    }

    /// Reads the next reply.
    pub fn read(&mut self) -> io::Result<Value> {
        self.read_value(0)
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::with_capacity(64);
        let n = (&mut self.reader)
            .take(BULK_BYTES_MAX as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(protocol_error("reply line without CRLF"));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| protocol_error("reply line is not UTF-8"))
    }

    fn read_value(&mut self, depth: usize) -> io::Result<Value> {
        if depth > DEPTH_MAX {
            return Err(protocol_error("reply nested too deeply"));
        }
        let line = self.read_line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let number = || -> io::Result<i64> {
            rest.parse()
                .map_err(|_| protocol_error(format!("bad number in reply line {line:?}")))
        };
        match kind {
            "+" => Ok(Value::Simple(rest.to_string())),
            "-" => Ok(Value::Error(rest.to_string())),
            ":" => Ok(Value::Int(number()?)),
            "$" => {
                let len = number()?;
                if len < 0 {
                    return Ok(Value::Bulk(None));
                }
                let len = usize::try_from(len)
                    .ok()
                    .filter(|l| *l <= BULK_BYTES_MAX)
                    .ok_or_else(|| protocol_error("bulk reply too large"))?;
                let mut buf = vec![0u8; len + 2];
                self.reader.read_exact(&mut buf)?;
                if !buf.ends_with(b"\r\n") {
                    return Err(protocol_error("bulk reply without CRLF"));
                }
                buf.truncate(len);
                Ok(Value::Bulk(Some(buf)))
            }
            "*" => {
                let len = number()?;
                if len < 0 {
                    return Ok(Value::Array(None));
                }
                let len = usize::try_from(len)
                    .ok()
                    .filter(|l| *l <= ARRAY_LEN_MAX)
                    .ok_or_else(|| protocol_error("array reply too long"))?;
                let mut items = Vec::with_capacity(len.min(1024));
                for _ in 0..len {
                    items.push(self.read_value(depth + 1)?);
                }
                Ok(Value::Array(Some(items)))
            }
            _ => Err(protocol_error(format!("unexpected reply line {line:?}"))),
        }
    }
}

/// Appends `args` as one RESP multibulk request.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}
