//! The slow log (Redis 7.0 `slowlog.c`): commands that ran for at least
//! `slowlog-log-slower-than` microseconds, newest first, at most
//! `slowlog-max-len` of them. Each entry keeps at most
//! [`ARGS_MAX`] arguments and [`ARG_BYTES_MAX`] bytes of each, as Redis
//! does, so an entry's size is bounded whatever the command was.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chorus_engine::Reply;
use parking_lot::Mutex;

/// Most arguments kept (Redis's `SLOWLOG_ENTRY_MAX_ARGC`); the last kept
/// one then says how many more there were.
pub const ARGS_MAX: usize = 32;
/// Most bytes kept of one argument (Redis's `SLOWLOG_ENTRY_MAX_STRING`).
pub const ARG_BYTES_MAX: usize = 128;

#[derive(Clone, Debug)]
struct Entry {
    id: u64,
    unix_secs: u64,
    micros: u64,
    args: Vec<Bytes>,
    addr: String,
    name: Bytes,
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<Entry>,
    next_id: u64,
}

#[derive(Debug, Default)]
pub struct SlowLog {
    inner: Mutex<Inner>,
}

/// What a command that may be logged was.
pub struct Call<'a> {
    pub args: &'a [Bytes],
    pub took: Duration,
    pub addr: SocketAddr,
    pub name: Option<&'a Bytes>,
    /// Arguments after the name are replaced by `(redacted)` (AUTH, and
    /// HELLO's AUTH password).
    pub redact: Redact,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redact {
    None,
    /// Every argument after the command name (AUTH).
    AllArgs,
    /// The two arguments after `AUTH` (HELLO ... AUTH user pass).
    HelloAuth,
}

impl SlowLog {
    /// Logs `call` if it took at least `slower_than_us` (negative: off),
    /// keeping at most `max_len` entries.
    pub fn maybe_push(&self, call: Call<'_>, slower_than_us: i64, max_len: u64) {
        let Ok(threshold) = u64::try_from(slower_than_us) else {
            return;
        };
        let micros = u64::try_from(call.took.as_micros()).unwrap_or(u64::MAX);
        if micros < threshold {
            return;
        }
        let args = entry_args(call.args, call.redact);
        let unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut inner = self.inner.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.entries.push_front(Entry {
            id,
            unix_secs,
            micros,
            args,
            addr: call.addr.to_string(),
            name: call.name.cloned().unwrap_or_default(),
        });
        let max = usize::try_from(max_len).unwrap_or(usize::MAX);
        inner.entries.truncate(max);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `SLOWLOG RESET`: the entries go; ids keep counting, as in Redis.
    pub fn reset(&self) {
        self.inner.lock().entries.clear();
    }

    /// `SLOWLOG GET`: the newest `count` entries.
    pub fn get(&self, count: usize) -> Reply {
        let inner = self.inner.lock();
        let int = |n: u64| Reply::Int(i64::try_from(n).unwrap_or(i64::MAX));
        Reply::Array(
            inner
                .entries
                .iter()
                .take(count)
                .map(|e| {
                    Reply::Array(vec![
                        int(e.id),
                        int(e.unix_secs),
                        int(e.micros),
                        Reply::Array(e.args.iter().cloned().map(Reply::Bulk).collect()),
                        Reply::Bulk(Bytes::from(e.addr.clone())),
                        Reply::Bulk(e.name.clone()),
                    ])
                })
                .collect(),
        )
    }
}

/// Redis's `slowlogCreateEntry`: at most 32 arguments (the 32nd says how
/// many more there were), each cut at 128 bytes with how many more it had.
fn entry_args(args: &[Bytes], redact: Redact) -> Vec<Bytes> {
    let kept = args.len().min(ARGS_MAX);
    let mut out = Vec::with_capacity(kept);
    // HELLO [protover [AUTH username password] ...]: the two after AUTH.
    let hello_auth = match redact {
        Redact::HelloAuth => args
            .iter()
            .skip(2)
            .position(|a| a.eq_ignore_ascii_case(b"auth"))
            .map(|p| p + 2),
        _ => None,
    };
    for (i, arg) in args.iter().take(kept).enumerate() {
        if kept != args.len() && i == kept - 1 {
            let more = args.len() - kept + 1;
            out.push(Bytes::from(format!("... ({more} more arguments)")));
            break;
        }
        let hidden = match redact {
            Redact::None => false,
            Redact::AllArgs => i > 0,
            Redact::HelloAuth => hello_auth.is_some_and(|a| i == a + 1 || i == a + 2),
        };
        if hidden {
            out.push(Bytes::from_static(b"(redacted)"));
        } else if arg.len() > ARG_BYTES_MAX {
            let mut cut = arg.slice(..ARG_BYTES_MAX).to_vec();
            cut.extend_from_slice(
                format!("... ({} more bytes)", arg.len() - ARG_BYTES_MAX).as_bytes(),
            );
            out.push(Bytes::from(cut));
        } else {
            out.push(arg.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn arguments_are_cut_as_redis_does() {
        let long = "x".repeat(200);
        let args = vec![b("set"), b("k"), b(&long)];
        let out = entry_args(&args, Redact::None);
        assert_eq!(out[2].len(), 128 + "... (72 more bytes)".len());
        assert!(out[2].ends_with(b"... (72 more bytes)"));
        let many: Vec<Bytes> = (0..40).map(|i| b(&i.to_string())).collect();
        let out = entry_args(&many, Redact::None);
        assert_eq!(out.len(), 32);
        assert_eq!(out[31], b("... (9 more arguments)"));
        assert_eq!(out[30], b("30"));
        let out = entry_args(&[b("auth"), b("u"), b("p")], Redact::AllArgs);
        assert_eq!(out, vec![b("auth"), b("(redacted)"), b("(redacted)")]);
        let hello = [
            b("hello"),
            b("3"),
            b("AUTH"),
            b("u"),
            b("p"),
            b("setname"),
            b("n"),
        ];
        let out = entry_args(&hello, Redact::HelloAuth);
        assert_eq!(
            out,
            vec![
                b("hello"),
                b("3"),
                b("AUTH"),
                b("(redacted)"),
                b("(redacted)"),
                b("setname"),
                b("n")
            ]
        );
    }

    #[test]
    fn bounded_and_newest_first() {
        let log = SlowLog::default();
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap_or_else(|_| unreachable!());
        for i in 0..5 {
            let args = [b("get"), b(&i.to_string())];
            let call = Call {
                args: &args,
                took: Duration::from_micros(10),
                addr,
                name: None,
                redact: Redact::None,
            };
            log.maybe_push(call, 0, 3);
        }
        assert_eq!(log.len(), 3);
        let Reply::Array(entries) = log.get(10) else {
            panic!("array")
        };
        assert!(matches!(entries[0], Reply::Array(ref e) if e[0] == Reply::Int(4)));
        let call = Call {
            args: &[b("get")],
            took: Duration::from_micros(10),
            addr,
            name: None,
            redact: Redact::None,
        };
        log.maybe_push(call, -1, 3);
        log.maybe_push(
            Call {
                args: &[b("get")],
                took: Duration::from_micros(10),
                addr,
                name: None,
                redact: Redact::None,
            },
            11,
            3,
        );
        assert_eq!(log.len(), 3);
        log.reset();
        assert!(log.is_empty());
    }
}
