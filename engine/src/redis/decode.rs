//! Decodes RESP2/RESP3 *replies* into [`Reply`] values: the client side of
//! the protocol. The command table is loaded with it from Redis's captured
//! `COMMAND` reply; tests use it to read what a server sent.
//!
//! Bounded: nesting deeper than [`REPLY_DEPTH_MAX`] and aggregates announcing
//! more than [`REPLY_ELEMENTS_MAX`] elements are errors, so hostile input
//! cannot exhaust the stack or memory.

use crate::reply::Reply;
use bytes::Bytes;
use thiserror::Error;

use super::num::parse_int;

/// Deepest aggregate nesting accepted.
pub const REPLY_DEPTH_MAX: usize = 64;
/// Largest element count of one aggregate accepted.
pub const REPLY_ELEMENTS_MAX: i64 = 1 << 24;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown reply type byte {0:#04x}")]
    UnknownType(u8),
    #[error("invalid length or number in reply header")]
    BadNumber,
    #[error("reply nested deeper than {REPLY_DEPTH_MAX}")]
    TooDeep,
    #[error("reply text is not valid UTF-8")]
    NotUtf8,
}

/// Decodes one reply from the start of `buf`. `Ok(None)`: incomplete.
/// On success returns the reply and the number of bytes it used.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, DecodeError> {
    let mut pos = 0;
    match decode_at(buf, &mut pos, 0)? {
        Some(reply) => Ok(Some((reply, pos))),
        None => Ok(None),
    }
}

fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = buf.get(*pos..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    let text = rest.get(..end)?;
    *pos += end + 2;
    Some(text)
}

fn number(text: &[u8]) -> Result<i64, DecodeError> {
    parse_int(text).ok_or(DecodeError::BadNumber)
}

fn utf8(text: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(text.to_vec()).map_err(|_| DecodeError::NotUtf8)
}

fn decode_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Reply>, DecodeError> {
    if depth > REPLY_DEPTH_MAX {
        return Err(DecodeError::TooDeep);
    }
    let Some(&tag) = buf.get(*pos) else {
        return Ok(None);
    };
    let start = *pos;
    *pos += 1;
    let Some(text) = line(buf, pos) else {
        *pos = start;
        return Ok(None);
    };
    let reply = match tag {
        b'+' => {
            let s = utf8(text)?;
            if s == "OK" {
                Reply::Ok
            } else {
                Reply::Simple(s)
            }
        }
        b'-' => Reply::Error(utf8(text)?),
        b':' => Reply::Int(number(text)?),
        b'_' => Reply::Nil,
        b'#' => Reply::Bool(text == b"t"),
        b',' => {
            let s = utf8(text)?;
            Reply::Double(match s.as_str() {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                other => other.parse().map_err(|_| DecodeError::BadNumber)?,
            })
        }
        b'(' => Reply::Bulk(Bytes::copy_from_slice(text)),
        b'$' | b'=' => {
            let len = number(text)?;
            if len < 0 {
                return Ok(Some(Reply::Nil));
            }
            let len = usize::try_from(len).map_err(|_| DecodeError::BadNumber)?;
            let Some(body) = buf.get(*pos..pos.saturating_add(len)) else {
                *pos = start;
                return Ok(None);
            };
            if buf.get(*pos + len..*pos + len + 2).is_none() {
                *pos = start;
                return Ok(None);
            }
            *pos += len + 2;
            if tag == b'=' {
                let s = utf8(body)?;
                Reply::Verbatim(s.get(4..).unwrap_or("").to_string())
            } else {
                Reply::Bulk(Bytes::copy_from_slice(body))
            }
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = number(text)?;
            if n < 0 {
                return Ok(Some(if tag == b'*' {
                    Reply::NilArray
                } else {
                    Reply::Nil
                }));
            }
            if n > REPLY_ELEMENTS_MAX {
                return Err(DecodeError::BadNumber);
            }
            let n = usize::try_from(n).map_err(|_| DecodeError::BadNumber)?;
            let items = if tag == b'%' { n.saturating_mul(2) } else { n };
            let mut out = Vec::with_capacity(items.min(1024));
            for _ in 0..items {
                match decode_at(buf, pos, depth + 1)? {
                    Some(item) => out.push(item),
                    None => {
                        *pos = start;
                        return Ok(None);
                    }
                }
            }
            match tag {
                b'~' => Reply::Set(out),
                b'%' => {
                    let mut pairs = Vec::with_capacity(n);
                    let mut it = out.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Reply::Map(pairs)
                }
                b'>' => Reply::Push(out),
                _ => Reply::Array(out),
            }
        }
        other => return Err(DecodeError::UnknownType(other)),
    };
    Ok(Some(reply))
}
