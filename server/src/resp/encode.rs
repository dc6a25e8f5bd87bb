//! Encodes a [`Reply`] as RESP2 or RESP3, byte for byte as Redis 7.0 does.
//!
//! RESP2 has no map, set, double, boolean, null or verbatim type, so they are
//! lowered the way Redis lowers them: a map becomes a flat array of key,
//! value, key, value; a set an array; a double a bulk string in `%.17g`
//! format; a boolean the integer 1 or 0; a verbatim string a bulk string;
//! `Nil` `$-1` and `NilArray` `*-1`. In RESP3 both nulls are `_`.
//!
//! Invariant: the output is always well-formed RESP, whatever the reply holds:
//! CR and LF inside simple strings and errors are replaced by spaces (Redis
//! does the same for the errors it formats), since they would end the line.

use bytes::{BufMut, BytesMut};
pub use chorus_engine::redis::geohash::format_coordinate;
pub use chorus_engine::redis::num::format_double;
use chorus_engine::Reply;

/// The protocol a connection speaks; `HELLO` switches it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    /// The number `HELLO` reports as `proto`.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// Appends the encoding of `reply` to `out`.
pub fn encode(reply: &Reply, protocol: Protocol, out: &mut BytesMut) {
    match reply {
        Reply::Ok => out.put_slice(b"+OK\r\n"),
        Reply::Simple(text) => put_line(out, b'+', text.as_bytes()),
        Reply::Error(text) => {
            // A caller that copied Redis's "-ERR ..." style keeps one dash.
            let text = text.strip_prefix('-').unwrap_or(text);
            put_line(out, b'-', text.as_bytes());
        }
        Reply::Int(n) => put_header(out, b':', *n),
        Reply::Bulk(bytes) => put_bulk(out, bytes),
        Reply::Nil => match protocol {
            Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
            Protocol::Resp3 => out.put_slice(b"_\r\n"),
        },
        Reply::NilArray => match protocol {
            Protocol::Resp2 => out.put_slice(b"*-1\r\n"),
            Protocol::Resp3 => out.put_slice(b"_\r\n"),
        },
        Reply::Array(items) => {
            put_header(out, b'*', len_i64(items.len()));
            for item in items {
                encode(item, protocol, out);
            }
        }
        Reply::Double(value) => put_double(out, *value, protocol),
        Reply::HumanDouble(value) => put_double_text(out, &format_coordinate(*value), protocol),
        Reply::Map(pairs) => {
            match protocol {
                Protocol::Resp2 => put_header(out, b'*', len_i64(pairs.len()).saturating_mul(2)),
                Protocol::Resp3 => put_header(out, b'%', len_i64(pairs.len())),
            }
            for (key, value) in pairs {
                encode(key, protocol, out);
                encode(value, protocol, out);
            }
        }
        Reply::Pairs(pairs) => {
            match protocol {
                Protocol::Resp2 => put_header(out, b'*', len_i64(pairs.len()).saturating_mul(2)),
                Protocol::Resp3 => put_header(out, b'*', len_i64(pairs.len())),
            }
            for (a, b) in pairs {
                if protocol == Protocol::Resp3 {
                    put_header(out, b'*', 2);
                }
                encode(a, protocol, out);
                encode(b, protocol, out);
            }
        }
        Reply::Set(items) => {
            let tag = match protocol {
                Protocol::Resp2 => b'*',
                Protocol::Resp3 => b'~',
            };
            put_header(out, tag, len_i64(items.len()));
            for item in items {
                encode(item, protocol, out);
            }
        }
        Reply::Bool(value) => match (protocol, value) {
            (Protocol::Resp2, true) => out.put_slice(b":1\r\n"),
            (Protocol::Resp2, false) => out.put_slice(b":0\r\n"),
            (Protocol::Resp3, true) => out.put_slice(b"#t\r\n"),
            (Protocol::Resp3, false) => out.put_slice(b"#f\r\n"),
        },
        Reply::Verbatim(text) => match protocol {
            Protocol::Resp2 => put_bulk(out, text.as_bytes()),
            Protocol::Resp3 => {
                put_header(out, b'=', len_i64(text.len()).saturating_add(4));
                out.put_slice(b"txt:");
                out.put_slice(text.as_bytes());
                out.put_slice(b"\r\n");
            }
        },
        Reply::Push(items) => {
            let tag = match protocol {
                Protocol::Resp2 => b'*',
                Protocol::Resp3 => b'>',
            };
            put_header(out, tag, len_i64(items.len()));
            for item in items {
                encode(item, protocol, out);
            }
        }
        Reply::Frames(replies) => {
            for reply in replies {
                encode(reply, protocol, out);
            }
        }
    }
}

/// Encodes into a fresh buffer; convenient for tests and one-off replies.
pub fn encode_to_vec(reply: &Reply, protocol: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(reply, protocol, &mut out);
    out.to_vec()
}

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

fn put_line(out: &mut BytesMut, tag: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(tag);
    for &b in text {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

fn put_header(out: &mut BytesMut, tag: u8, n: i64) {
    let mut digits = [0u8; 20];
    out.put_u8(tag);
    out.put_slice(format_i64(n, &mut digits));
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, bytes: &[u8]) {
    out.reserve(bytes.len() + 16);
    put_header(out, b'$', len_i64(bytes.len()));
    out.put_slice(bytes);
    out.put_slice(b"\r\n");
}

fn put_double(out: &mut BytesMut, value: f64, protocol: Protocol) {
    put_double_text(out, &format_double(value), protocol);
}

fn put_double_text(out: &mut BytesMut, text: &str, protocol: Protocol) {
    match protocol {
        Protocol::Resp2 => put_bulk(out, text.as_bytes()),
        Protocol::Resp3 => {
            out.put_u8(b',');
            out.put_slice(text.as_bytes());
            out.put_slice(b"\r\n");
        }
    }
}

/// Writes `n` in decimal into `buf` and returns the used tail: integer
/// headers are on the hot path, so no `format!`.
fn format_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut v = n.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn e2(r: &Reply) -> Vec<u8> {
        encode_to_vec(r, Protocol::Resp2)
    }
    fn e3(r: &Reply) -> Vec<u8> {
        encode_to_vec(r, Protocol::Resp3)
    }

    #[test]
    fn pairs_are_flat_in_resp2_and_nested_in_resp3() {
        let (a, one) = (Reply::bulk("a"), Reply::Double(1.0));
        let (b, two) = (Reply::bulk("b"), Reply::Double(2.0));
        let pairs = Reply::Pairs(vec![(a.clone(), one.clone()), (b.clone(), two.clone())]);
        let flat = Reply::Array(vec![a.clone(), one.clone(), b.clone(), two.clone()]);
        let nested = Reply::Array(vec![Reply::Array(vec![a, one]), Reply::Array(vec![b, two])]);
        assert_eq!(e2(&pairs), e2(&flat));
        assert_eq!(e3(&pairs), e3(&nested));
        assert_eq!(e3(&Reply::Pairs(vec![])), b"*0\r\n".to_vec());
    }

    #[test]
    fn double_format_matches_printf_17g() {
        // Reference values from printf-style "%.17g" (checked with Python's %-format).
        let cases: &[(f64, &str)] = &[
            (1.1, "1.1000000000000001"),
            (0.1, "0.10000000000000001"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (10.5, "10.5"),
            (100.0, "100"),
            (1e17, "1e+17"),
            (1.5e17, "1.5e+17"),
            (12345678901234567.0, "12345678901234568"),
            (1e-5, "1.0000000000000001e-05"),
            (0.0001, "0.0001"),
            (3.0e-300, "3.0000000000000002e-300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "4.9406564584124654e-324"),
            (0.0, "0"),
            (-0.0, "-0"),
            (123456.789, "123456.789"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (value, want) in cases {
            assert_eq!(format_double(*value), *want, "value {value:e}");
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(e2(&Reply::Ok), b"+OK\r\n");
        assert_eq!(e2(&Reply::Simple("PONG".into())), b"+PONG\r\n");
        assert_eq!(e2(&Reply::Error("ERR x\r\ny".into())), b"-ERR x  y\r\n");
        assert_eq!(e2(&Reply::Error("-NOPROTO no".into())), b"-NOPROTO no\r\n");
        assert_eq!(e2(&Reply::Int(-42)), b":-42\r\n");
        assert_eq!(e2(&Reply::Int(i64::MIN)), b":-9223372036854775808\r\n");
        assert_eq!(
            e2(&Reply::Bulk(Bytes::from_static(b"a\r\nb"))),
            b"$4\r\na\r\nb\r\n"
        );
        assert_eq!(e2(&Reply::Nil), b"$-1\r\n");
        assert_eq!(e3(&Reply::Nil), b"_\r\n");
        assert_eq!(e2(&Reply::NilArray), b"*-1\r\n");
        assert_eq!(e3(&Reply::NilArray), b"_\r\n");
        assert_eq!(e2(&Reply::Bool(true)), b":1\r\n");
        assert_eq!(e2(&Reply::Bool(false)), b":0\r\n");
        assert_eq!(e3(&Reply::Bool(true)), b"#t\r\n");
        assert_eq!(e3(&Reply::Bool(false)), b"#f\r\n");
        assert_eq!(e2(&Reply::Double(1.5)), b"$3\r\n1.5\r\n");
        assert_eq!(e3(&Reply::Double(1.5)), b",1.5\r\n");
        assert_eq!(e2(&Reply::Double(f64::INFINITY)), b"$3\r\ninf\r\n");
        assert_eq!(e3(&Reply::Double(f64::NEG_INFINITY)), b",-inf\r\n");
        assert_eq!(e3(&Reply::Double(f64::NAN)), b",nan\r\n");
        // GEO coordinates: `%.17Lf` with the trailing zeros trimmed.
        assert_eq!(e2(&Reply::HumanDouble(-0.5)), b"$4\r\n-0.5\r\n");
        assert_eq!(e3(&Reply::HumanDouble(180.0)), b",180\r\n");
        assert_eq!(
            e2(&Reply::HumanDouble(13.361389338970184)),
            b"$20\r\n13.36138933897018433\r\n"
        );
        assert_eq!(e2(&Reply::Verbatim("a\nb".into())), b"$3\r\na\nb\r\n");
        assert_eq!(e3(&Reply::Verbatim("a\nb".into())), b"=7\r\ntxt:a\nb\r\n");
    }

    #[test]
    fn aggregates() {
        let map = Reply::Map(vec![
            (Reply::bulk("a"), Reply::Int(1)),
            (Reply::bulk("b"), Reply::Array(vec![])),
        ]);
        assert_eq!(e2(&map), b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*0\r\n");
        assert_eq!(e3(&map), b"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*0\r\n");
        let set = Reply::Set(vec![Reply::bulk("x")]);
        assert_eq!(e2(&set), b"*1\r\n$1\r\nx\r\n");
        assert_eq!(e3(&set), b"~1\r\n$1\r\nx\r\n");
        let nested = Reply::Array(vec![Reply::Nil, Reply::Double(2.0)]);
        assert_eq!(e2(&nested), b"*2\r\n$-1\r\n$1\r\n2\r\n");
        assert_eq!(e3(&nested), b"*2\r\n_\r\n,2\r\n");
    }
}
