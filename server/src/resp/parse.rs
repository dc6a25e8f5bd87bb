//! Incremental RESP request parser: multibulk (`*N\r\n$len\r\n...`) and inline
//! commands, exactly as Redis 7.0 reads them (`processMultibulkBuffer` and
//! `processInlineBuffer` in `networking.c`).
//!
//! The parser owns no buffer: the connection reads into a `BytesMut` and calls
//! [`RequestParser::parse`] until it returns `Ok(None)`, so one read can carry
//! any number of pipelined commands and a command can span any number of reads.
//! Every complete argument is cut out of the buffer as a `Bytes` slice, so an
//! argument costs one `Bytes` handle and no copy.
//!
//! Two paths: when a whole multibulk request is already in the buffer (the
//! usual case: pipelined requests arrive whole), [`parse_whole_multibulk`]
//! reads it in one pass and cuts it out at once; anything else (a request
//! split across reads, inline commands, empty or malformed requests) goes
//! through the general, incremental path, which mirrors Redis step by step.
//! The fast path gives up (touching nothing) on anything unusual, so every
//! error and every edge case is decided by the general path; a property
//! test checks that both give the same results.
//! Arguments of a multibulk command that is still incomplete are held in the
//! parser, which is why [`RequestParser::pending_bytes`] exists: the query
//! buffer limit covers them too, like Redis's `argv_len_sum`.
//!
//! Invariants: `parse` never panics on any input and never reads past the
//! buffer; on `Err` the connection must reply with the error and close, as
//! Redis does (`setProtocolError`), because the stream position is lost.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Longest inline command, and longest `*N` / `$N` header line
/// (Redis's `PROTO_INLINE_MAX_SIZE`).
pub const INLINE_BYTES_MAX: usize = 64 * 1024;
/// Largest element count of a multibulk request (Redis accepts up to `INT_MAX`).
pub const MULTIBULK_LEN_MAX: i64 = i32::MAX as i64;
/// Largest element count a client may announce before it has authenticated.
pub const UNAUTH_MULTIBULK_LEN_MAX: i64 = 10;
/// Largest bulk a client may announce before it has authenticated.
pub const UNAUTH_BULK_BYTES_MAX: i64 = 16 * 1024;
/// Default `proto-max-bulk-len`.
pub const BULK_BYTES_MAX_DEFAULT: u64 = 512 * 1024 * 1024;
/// At most this many argument slots are allocated up front for a multibulk
/// request, whatever count it announces; more are added as arguments arrive
/// (Redis caps its `argv` preallocation the same way).
pub const ARGS_PREALLOC_MAX: usize = 1024;

/// Limits that apply to the next command; they can change between two
/// commands of one pipeline (`AUTH`, `CONFIG SET proto-max-bulk-len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// `proto-max-bulk-len`.
    pub bulk_bytes_max: u64,
    /// The client still has to authenticate: stricter header limits apply.
    pub auth_required: bool,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            bulk_bytes_max: BULK_BYTES_MAX_DEFAULT,
            auth_required: false,
        }
    }
}

/// A request that cannot be parsed. The `Display` text is what Redis sends
/// after `-ERR `; [`ProtocolError::reply_bytes`] gives the exact reply bytes.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: expected '$', got '{}'", (*.0 as char).escape_default())]
    ExpectedDollar(u8),
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
}

impl ProtocolError {
    /// The complete RESP error reply, byte for byte what Redis sends. Built
    /// here rather than through `Reply::Error` because the unexpected byte of
    /// `ExpectedDollar` may not be valid UTF-8, and Redis echoes it raw
    /// (turning only `\r` and `\n` into spaces).
    pub fn reply_bytes(&self) -> Vec<u8> {
        let mut out = b"-ERR ".to_vec();
        match self {
            ProtocolError::ExpectedDollar(got) => {
                out.extend_from_slice(b"Protocol error: expected '$', got '");
                out.push(if *got == b'\r' || *got == b'\n' {
                    b' '
                } else {
                    *got
                });
                out.push(b'\'');
            }
            other => out.extend_from_slice(other.to_string().as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// What the multibulk header step found.
enum Header {
    Incomplete,
    /// `*0`, `*-1` and friends: Redis ignores them.
    Empty,
    Started,
}

/// The parser state carried between reads: the multibulk request being
/// assembled, if any.
#[derive(Debug, Default)]
pub struct RequestParser {
    /// Arguments still expected by the current multibulk request; 0 between
    /// requests.
    multibulk_remaining: usize,
    /// Length of the bulk whose header was read but whose payload is not yet
    /// complete.
    bulk_len: Option<usize>,
    args: Vec<Bytes>,
    /// Bytes held in `args`, counted against the query buffer limit.
    args_bytes: usize,
    /// Scratch space of the fast path (see [`parse_whole_multibulk`]).
    ranges: Vec<(usize, usize)>,
}

impl RequestParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of a partly received request held outside the buffer.
    pub fn pending_bytes(&self) -> usize {
        self.args_bytes
    }

    /// True between requests (no partial multibulk request is held).
    pub fn is_idle(&self) -> bool {
        self.multibulk_remaining == 0
    }

    /// Bytes the buffer must hold before the current bulk can complete, if
    /// a bulk header has been read; lets the reader reserve space once.
    pub fn bulk_bytes_wanted(&self) -> Option<usize> {
        self.bulk_len.map(|len| len.saturating_add(2))
    }

    /// Parses the next complete command out of `buf`, consuming its bytes.
    /// `Ok(None)`: more bytes are needed. Empty requests (an empty inline
    /// line, `*0`) are skipped, as Redis skips them.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        limits: &ParseLimits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let mut args = Vec::new();
        Ok(self.parse_into(buf, limits, &mut args)?.map(|_| args))
    }

    /// Like [`RequestParser::parse`], but appends the arguments of the
    /// command to `out` and returns how many there are, so a caller that
    /// collects a pipeline of commands needs no allocation per command.
    /// On `Ok(None)` and on `Err`, `out` is left as it was.
    pub fn parse_into(
        &mut self,
        buf: &mut BytesMut,
        limits: &ParseLimits,
        out: &mut Vec<Bytes>,
    ) -> Result<Option<usize>, ProtocolError> {
        loop {
            if self.multibulk_remaining == 0 {
                match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => {
                        if let Some(n) = parse_whole_multibulk(buf, limits, &mut self.ranges, out) {
                            return Ok(Some(n));
                        }
                        match self.parse_multibulk_header(buf, limits)? {
                            Header::Incomplete => return Ok(None),
                            Header::Empty => continue,
                            Header::Started => {}
                        }
                    }
                    Some(_) => match parse_inline(buf)? {
                        None => return Ok(None),
                        Some(args) if args.is_empty() => continue,
                        Some(args) => {
                            let n = args.len();
                            out.extend(args);
                            return Ok(Some(n));
                        }
                    },
                }
            }
            let Some(()) = self.parse_multibulk_body(buf, limits)? else {
                return Ok(None);
            };
            let n = self.args.len();
            // `append` keeps `self.args`'s capacity for the next request.
            out.append(&mut self.args);
            return Ok(Some(n));
        }
    }

    fn parse_multibulk_header(
        &mut self,
        buf: &mut BytesMut,
        limits: &ParseLimits,
    ) -> Result<Header, ProtocolError> {
        let Some(cr) = find_line_end(buf, b'\r') else {
            if buf.len() > INLINE_BYTES_MAX {
                return Err(ProtocolError::TooBigMultibulkCount);
            }
            return Ok(Header::Incomplete);
        };
        if cr > INLINE_BYTES_MAX {
            return Err(ProtocolError::TooBigMultibulkCount);
        }
        // Redis requires one byte after '\r' and skips it without looking.
        if cr + 2 > buf.len() {
            return Ok(Header::Incomplete);
        }
        let count = buf
            .get(1..cr)
            .and_then(parse_i64_strict)
            .filter(|&n| n <= MULTIBULK_LEN_MAX)
            .ok_or(ProtocolError::InvalidMultibulkLength)?;
        if count > UNAUTH_MULTIBULK_LEN_MAX && limits.auth_required {
            return Err(ProtocolError::UnauthenticatedMultibulkLength);
        }
        buf.advance(cr + 2);
        if count <= 0 {
            return Ok(Header::Empty);
        }
        // `count` is in 1..=i32::MAX, so it fits a usize.
        let count = usize::try_from(count).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
        self.multibulk_remaining = count;
        self.bulk_len = None;
        self.args = Vec::with_capacity(count.min(ARGS_PREALLOC_MAX));
        self.args_bytes = 0;
        Ok(Header::Started)
    }

    /// Reads arguments of the current request into `self.args`;
    /// `Ok(Some(()))` once all of them are there.
    fn parse_multibulk_body(
        &mut self,
        buf: &mut BytesMut,
        limits: &ParseLimits,
    ) -> Result<Option<()>, ProtocolError> {
        while self.multibulk_remaining > 0 {
            let len = match self.bulk_len {
                Some(len) => len,
                None => {
                    let Some(cr) = find_line_end(buf, b'\r') else {
                        if buf.len() > INLINE_BYTES_MAX {
                            return Err(ProtocolError::TooBigBulkCount);
                        }
                        return Ok(None);
                    };
                    if cr > INLINE_BYTES_MAX {
                        return Err(ProtocolError::TooBigBulkCount);
                    }
                    if cr + 2 > buf.len() {
                        return Ok(None);
                    }
                    match buf.first() {
                        Some(b'$') => {}
                        Some(&other) => return Err(ProtocolError::ExpectedDollar(other)),
                        None => return Ok(None),
                    }
                    let len = buf
                        .get(1..cr)
                        .and_then(parse_i64_strict)
                        .filter(|&n| n >= 0 && (n as u64) <= limits.bulk_bytes_max)
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    if len > UNAUTH_BULK_BYTES_MAX && limits.auth_required {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    let len = usize::try_from(len).map_err(|_| ProtocolError::InvalidBulkLength)?;
                    buf.advance(cr + 2);
                    self.bulk_len = Some(len);
                    len
                }
            };
            let needed = len.saturating_add(2);
            if buf.len() < needed {
                // Room for the whole bulk at once, so a large value is not
                // copied again and again while it arrives.
                buf.reserve(needed - buf.len());
                return Ok(None);
            }
            let arg = buf.split_to(len).freeze();
            // Redis skips the two bytes after the payload without checking
            // that they are "\r\n"; doing the same keeps replies identical.
            buf.advance(2);
            self.args_bytes += len;
            self.args.push(arg);
            self.bulk_len = None;
            self.multibulk_remaining -= 1;
        }
        self.args_bytes = 0;
        Ok(Some(()))
    }
}

/// The fast path: a well-formed multibulk request that is entirely in `buf`,
/// with 1..=[`ARGS_PREALLOC_MAX`] arguments, every length written plainly
/// (no sign, no leading zero, at most [`FAST_DIGITS_MAX`] digits) and within
/// `limits`, is cut out of the buffer with one split and returned. On
/// anything else it returns `None` without touching the buffer, and the
/// general path decides (so the general path alone produces every error).
/// `ranges` is scratch space (payload start and end of each argument); the
/// arguments are appended to `out` and their number returned.
fn parse_whole_multibulk(
    buf: &mut BytesMut,
    limits: &ParseLimits,
    ranges: &mut Vec<(usize, usize)>,
    out: &mut Vec<Bytes>,
) -> Option<usize> {
    let bytes: &[u8] = buf;
    let (count, mut at) = read_length(bytes, 0)?;
    if count == 0
        || count > ARGS_PREALLOC_MAX as u64
        || (count > UNAUTH_MULTIBULK_LEN_MAX as u64 && limits.auth_required)
    {
        return None;
    }
    ranges.clear();
    for _ in 0..count {
        if bytes.get(at) != Some(&b'$') {
            return None;
        }
        let (len, payload) = read_length(bytes, at)?;
        if len > limits.bulk_bytes_max
            || (len > UNAUTH_BULK_BYTES_MAX as u64 && limits.auth_required)
        {
            return None;
        }
        let payload_end = payload.checked_add(usize::try_from(len).ok()?)?;
        // As in the general path, the two bytes after a payload are skipped
        // unchecked.
        at = payload_end.checked_add(2)?;
        if at > bytes.len() {
            return None;
        }
        ranges.push((payload, payload_end));
    }
    let frame = buf.split_to(at).freeze();
    out.extend(ranges.iter().map(|&(a, b)| frame.slice(a..b)));
    Some(ranges.len())
}

/// Longest length the fast path reads (10 digits: up to 9,999,999,999,
/// beyond any limit it would accept).
const FAST_DIGITS_MAX: usize = 10;

/// A header line at `pos`: a type byte (not checked here), a plain decimal
/// length (digits only, no leading zero unless it is `0`), `\r`, and one more
/// byte that is skipped unchecked as Redis does. Returns the length and the
/// position after the line, or `None` if the line is incomplete or not plain.
#[inline]
fn read_length(bytes: &[u8], pos: usize) -> Option<(u64, usize)> {
    let digits = bytes.get(pos + 1..)?;
    let mut n: u64 = 0;
    let mut i = 0;
    loop {
        let b = *digits.get(i)?;
        if b == b'\r' {
            break;
        }
        let d = b.wrapping_sub(b'0');
        if d > 9 || i == FAST_DIGITS_MAX {
            return None;
        }
        n = n * 10 + u64::from(d);
        i += 1;
    }
    // No digits, or a leading zero: the general path decides.
    if i == 0 || (i > 1 && digits.first() == Some(&b'0')) {
        return None;
    }
    let next = pos + 1 + i + 2;
    (next <= bytes.len()).then_some((n, next))
}

/// Position of the first `needle` in `buf`, or `None` if there is none or a
/// NUL byte comes first: Redis looks for line ends with `strchr`, which stops
/// at NUL, and we mirror that so odd input gets the same fate.
fn find_line_end(buf: &[u8], needle: u8) -> Option<usize> {
    let at = buf.iter().position(|&b| b == needle || b == 0)?;
    (buf.get(at) == Some(&needle)).then_some(at)
}

/// One inline command (`SET k v\r\n`), or `None` if its line is incomplete.
fn parse_inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(newline) = find_line_end(buf, b'\n') else {
        if buf.len() > INLINE_BYTES_MAX {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(None);
    };
    // Redis rejects by buffered size before it sees the newline, which
    // depends on how the bytes were split into reads; rejecting by line length
    // gives the same answer for every split.
    if newline > INLINE_BYTES_MAX {
        return Err(ProtocolError::TooBigInline);
    }
    let line_end = if newline > 0 && buf.get(newline - 1) == Some(&b'\r') {
        newline - 1
    } else {
        newline
    };
    let args = buf
        .get(..line_end)
        .map(split_inline_args)
        .unwrap_or(Some(Vec::new()));
    buf.advance(newline + 1);
    match args {
        Some(args) => Ok(Some(args)),
        None => Err(ProtocolError::UnbalancedQuotes),
    }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits an inline line into arguments with Redis's `sdssplitargs` rules:
/// blanks separate arguments; `"..."` supports `\xHH`, `\n`, `\r`, `\t`, `\b`,
/// `\a` and `\<any>`; `'...'` supports only `\'`; a closing quote must be
/// followed by a blank or the end. `None` means unbalanced quotes.
/// Inline commands are rare (telnet, health checks), so arguments are
/// copied rather than sliced.
pub fn split_inline_args(line: &[u8]) -> Option<Vec<Bytes>> {
    // Reads like C: past the end (and at a NUL) there is a 0.
    let at = |i: usize| -> u8 { line.get(i).copied().unwrap_or(0) };
    let mut args = Vec::new();
    let mut p = 0usize;
    loop {
        while at(p) != 0 && is_c_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let c = at(p);
            if in_double {
                if c == b'\\' && at(p + 1) == b'x' {
                    if let (Some(hi), Some(lo)) = (hex_value(at(p + 2)), hex_value(at(p + 3))) {
                        current.push(hi * 16 + lo);
                        p += 4;
                        continue;
                    }
                }
                if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    current.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        if c != 0 {
                            p += 1;
                        }
                        break;
                    }
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    other => current.push(other),
                }
            }
            p += 1;
        }
        args.push(Bytes::from(current));
    }
}

/// The body of the RESP parser's fuzz target (`fuzz/fuzz_targets/resp_parser.rs`,
/// run with `cargo fuzz` on nightly), also run on stable by a property test
/// over random bytes. The first byte of `data` chooses the limits and a
/// chunk size; the rest is parsed once whole and once fed in chunks of that
/// size. Panics if the parser panics, if an argument holds more bytes than
/// the input, or if the two parses disagree (same commands, same error).
pub fn fuzz_check(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = ParseLimits {
        bulk_bytes_max: if control & 1 == 0 { 64 } else { 1 << 20 },
        auth_required: control & 2 != 0,
    };
    let chunk = usize::from(control >> 2) + 1;
    let whole = fuzz_parse(input, input.len().max(1), &limits);
    let split = fuzz_parse(input, chunk, &limits);
    // Past INLINE_BYTES_MAX, when Redis (and this parser) gives up on a
    // line that has no end yet depends on how the bytes were split.
    if input.len() <= INLINE_BYTES_MAX {
        assert_eq!(whole, split, "whole and split parses differ");
    }
}

/// Feeds `input` to a parser `chunk` bytes at a time; the commands parsed
/// and the error that stopped it, if any.
fn fuzz_parse(
    input: &[u8],
    chunk: usize,
    limits: &ParseLimits,
) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match parser.parse(&mut buf, limits) {
                Ok(Some(args)) => {
                    let bytes: usize = args.iter().map(Bytes::len).sum();
                    assert!(bytes <= input.len(), "arguments larger than the input");
                    commands.push(args);
                }
                Ok(None) => break,
                Err(e) => return (commands, Some(e)),
            }
        }
        assert!(parser.pending_bytes() <= input.len());
    }
    (commands, None)
}

/// Redis's `string2ll` (one definition, in the engine's Redis module).
pub use chorus_engine::redis::num::parse_int as parse_i64_strict;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(input: &[u8], limits: &ParseLimits) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match parser.parse(&mut buf, limits) {
                Ok(Some(args)) => out.push(args),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn args(v: &[&[u8]]) -> Vec<Bytes> {
        v.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    fn encode_multibulk(cmd: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", cmd.len()).into_bytes();
        for a in cmd {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn multibulk_and_pipelining() {
        let (cmds, err) = parse_all(
            b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*2\r\n$4\r\nEC",
            &ParseLimits::default(),
        );
        assert_eq!(err, None);
        assert_eq!(cmds, vec![args(&[b"PING"]), args(&[b"SET", b"k", b""])]);
    }

    #[test]
    fn inline_commands_and_quoting() {
        let (cmds, err) = parse_all(
            b"PING\r\nset  k \"a b\\x41\\n\"\n\r\necho 'it\\'s'\r\n",
            &ParseLimits::default(),
        );
        assert_eq!(err, None);
        assert_eq!(
            cmds,
            vec![
                args(&[b"PING"]),
                args(&[b"set", b"k", b"a bA\n"]),
                args(&[b"echo", b"it's"]),
            ]
        );
        // A quote inside a token starts a quoted part of the same token.
        assert_eq!(split_inline_args(b"a\"b c\"d"), None);
        assert_eq!(
            split_inline_args(b"a\"b c\" d"),
            Some(args(&[b"ab c", b"d"]))
        );
        assert_eq!(split_inline_args(b"\"abc"), None);
        assert_eq!(split_inline_args(b"'abc"), None);
        assert_eq!(split_inline_args(b"\"\""), Some(args(&[b""])));
        assert_eq!(split_inline_args(b"  "), Some(vec![]));
        assert_eq!(split_inline_args(b"\"\\xZZ\""), Some(args(&[b"xZZ"])));
    }

    #[test]
    fn empty_requests_are_skipped() {
        let (cmds, err) = parse_all(b"\r\n\n*0\r\n*-1\r\nPING\r\n", &ParseLimits::default());
        assert_eq!(err, None);
        assert_eq!(cmds, vec![args(&[b"PING"])]);
    }

    #[test]
    fn protocol_errors_match_redis() {
        let d = ParseLimits::default();
        let cases: &[(&[u8], ProtocolError)] = &[
            (b"*x\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*2147483648\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*01\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*1\r\nx\r\n", ProtocolError::ExpectedDollar(b'x')),
            (b"*1\r\n$-1\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$536870913\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$+1\r\n", ProtocolError::InvalidBulkLength),
            (b"set \"a\r\n", ProtocolError::UnbalancedQuotes),
        ];
        for (input, want) in cases {
            let (_, err) = parse_all(input, &d);
            assert_eq!(err.as_ref(), Some(want), "input {:?}", input);
        }
        let long = vec![b'a'; INLINE_BYTES_MAX + 1];
        assert_eq!(parse_all(&long, &d).1, Some(ProtocolError::TooBigInline));
        let mut long_header = b"*".to_vec();
        long_header.extend(vec![b'1'; INLINE_BYTES_MAX + 1]);
        assert_eq!(
            parse_all(&long_header, &d).1,
            Some(ProtocolError::TooBigMultibulkCount)
        );
        let unauth = ParseLimits {
            auth_required: true,
            ..d
        };
        assert_eq!(
            parse_all(b"*11\r\n", &unauth).1,
            Some(ProtocolError::UnauthenticatedMultibulkLength)
        );
        assert_eq!(
            parse_all(b"*1\r\n$16385\r\n", &unauth).1,
            Some(ProtocolError::UnauthenticatedBulkLength)
        );
        assert_eq!(parse_all(b"*10\r\n$16384\r\n", &unauth).1, None);
    }

    #[test]
    fn error_reply_bytes() {
        assert_eq!(
            ProtocolError::ExpectedDollar(b'x').reply_bytes(),
            b"-ERR Protocol error: expected '$', got 'x'\r\n".to_vec()
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(0xff).reply_bytes(),
            b"-ERR Protocol error: expected '$', got '\xff'\r\n".to_vec()
        );
        assert_eq!(
            ProtocolError::InvalidBulkLength.reply_bytes(),
            b"-ERR Protocol error: invalid bulk length\r\n".to_vec()
        );
    }

    #[test]
    fn nul_before_line_end_waits_like_redis() {
        let (cmds, err) = parse_all(b"*1\0\r\n", &ParseLimits::default());
        assert!(cmds.is_empty());
        assert_eq!(err, None);
    }

    #[test]
    fn trailing_bytes_after_bulk_are_not_checked() {
        let (cmds, err) = parse_all(b"*1\r\n$4\r\nPINGxy", &ParseLimits::default());
        assert_eq!(err, None);
        assert_eq!(cmds, vec![args(&[b"PING"])]);
    }

    #[test]
    fn pending_bytes_counts_partial_arguments() {
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nabc\r\n$10\r\nxy"[..]);
        assert_eq!(parser.parse(&mut buf, &ParseLimits::default()), Ok(None));
        assert_eq!(parser.pending_bytes(), 3);
        assert_eq!(parser.bulk_bytes_wanted(), Some(12));
        assert!(!parser.is_idle());
    }

    /// Parses `input` fed one byte at a time: every request then arrives
    /// split, so only the general path runs.
    fn parse_bytewise(
        input: &[u8],
        limits: &ParseLimits,
    ) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input {
            buf.extend_from_slice(&[b]);
            loop {
                match parser.parse(&mut buf, limits) {
                    Ok(Some(args)) => out.push(args),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    #[test]
    fn fast_path_declines_what_the_general_path_decides() {
        let d = ParseLimits::default();
        for input in [
            &b"*1\r\n$4\r\nPING\r\n"[..],
            b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
            b"*1\r\n$4\r\nPINGxy*1\r\n$1\r\nA\r\n",
            b"*0\r\n*1\r\n$1\r\nA\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$01\r\nA\r\n",
            b"*1\r\n$1\r\nA",
            b"*2\r\n$1\r\nA\r\nx",
            b"*1\r\n$1\0\r\nA\r\n",
        ] {
            assert_eq!(parse_all(input, &d), parse_bytewise(input, &d), "{input:?}");
        }
        let unauth = ParseLimits {
            auth_required: true,
            ..d
        };
        let big = format!("*1\r\n${}\r\n{}\r\n", 20_000, "x".repeat(20_000));
        assert_eq!(
            parse_all(big.as_bytes(), &unauth).1,
            Some(ProtocolError::UnauthenticatedBulkLength)
        );
        assert_eq!(parse_all(big.as_bytes(), &d).0.len(), 1);
    }

    proptest! {
        #[test]
        fn whole_and_split_input_parse_the_same(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()),
                    Just(b"*1\r\n".to_vec()), Just(b"*2\r\n".to_vec()), Just(b"$1\r\nA\r\n".to_vec()),
                    Just(b"$3\r\nGET\r\n".to_vec()), Just(b"$0\r\n\r\n".to_vec()),
                    Just(b"-1".to_vec()), Just(b"0".to_vec()), Just(b"3".to_vec()), Just(b"\0".to_vec()),
                    Just(b" ".to_vec()), Just(b"\"".to_vec()), proptest::collection::vec(any::<u8>(), 0..4),
                ],
                0..48,
            ),
            auth in any::<bool>(),
        ) {
            let input: Vec<u8> = parts.concat();
            let limits = ParseLimits { bulk_bytes_max: 2, auth_required: auth };
            prop_assert_eq!(parse_all(&input, &limits), parse_bytewise(&input, &limits));
            let limits = ParseLimits { auth_required: auth, ..ParseLimits::default() };
            prop_assert_eq!(parse_all(&input, &limits), parse_bytewise(&input, &limits));
        }

        #[test]
        fn fuzz_target_body_holds(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            fuzz_check(&data);
        }

        #[test]
        fn fuzz_target_body_holds_on_protocol_shaped_bytes(
            control in any::<u8>(),
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()),
                    Just(b"*2\r\n".to_vec()), Just(b"$3\r\nGET\r\n".to_vec()), Just(b"$1\r\nk\r\n".to_vec()),
                    Just(b"-1".to_vec()), Just(b"0".to_vec()), Just(b"9".to_vec()), Just(b"\0".to_vec()),
                    Just(b" ".to_vec()), Just(b"\"".to_vec()), Just(b"'".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..4),
                ],
                0..64,
            ),
        ) {
            let mut data = vec![control];
            data.extend(parts.concat());
            fuzz_check(&data);
        }

        #[test]
        fn never_panics_on_random_bytes(input in proptest::collection::vec(any::<u8>(), 0..512), auth in any::<bool>()) {
            let limits = ParseLimits { bulk_bytes_max: 1024, auth_required: auth };
            let _ = parse_all(&input, &limits);
        }

        #[test]
        fn never_panics_on_protocol_shaped_bytes(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()),
                    Just(b"\r".to_vec()), Just(b"\n".to_vec()), Just(b"\"".to_vec()),
                    Just(b"'".to_vec()), Just(b"\\x4".to_vec()), Just(b"-1".to_vec()),
                    Just(b"0".to_vec()), Just(b"3".to_vec()), Just(b"\0".to_vec()),
                    Just(b" ".to_vec()), proptest::collection::vec(any::<u8>(), 0..4),
                ],
                0..64,
            )
        ) {
            let input: Vec<u8> = parts.concat();
            let _ = parse_all(&input, &ParseLimits::default());
        }

        #[test]
        fn valid_frames_parse_identically_at_any_split(
            cmds in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6),
                1..6,
            ),
            split_points in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let stream: Vec<u8> = cmds.iter().flat_map(|c| encode_multibulk(c)).collect();
            let expected: Vec<Vec<Bytes>> = cmds
                .iter()
                .map(|c| c.iter().map(|a| Bytes::copy_from_slice(a)).collect())
                .collect();
            let (whole, err) = parse_all(&stream, &ParseLimits::default());
            prop_assert_eq!(err, None);
            prop_assert_eq!(&whole, &expected);

            let mut cuts: Vec<usize> = split_points.iter().map(|i| i.index(stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut parser = RequestParser::new();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut start = 0;
            for end in cuts.into_iter().chain(std::iter::once(stream.len())) {
                buf.extend_from_slice(&stream[start..end]);
                start = end;
                while let Some(cmd) = parser.parse(&mut buf, &ParseLimits::default()).map_err(|e| TestCaseError::fail(e.to_string()))? {
                    got.push(cmd);
                }
            }
            prop_assert_eq!(got, expected);
            prop_assert!(parser.is_idle());
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn inline_plain_words_round_trip(words in proptest::collection::vec("[a-zA-Z0-9_:.-]{1,12}", 1..8)) {
            let line = format!("{}\r\n", words.join(" "));
            let (cmds, err) = parse_all(line.as_bytes(), &ParseLimits::default());
            prop_assert_eq!(err, None);
            let want: Vec<Bytes> = words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect();
            prop_assert_eq!(cmds, vec![want]);
        }
    }
}
