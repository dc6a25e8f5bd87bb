//! Redis's error strings, byte for byte (Redis 7.0), and the builders of
//! the ones that quote the client's words.

use crate::reply::Reply;
use bytes::Bytes;

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const SYNTAX: &str = "ERR syntax error";
pub const NO_SUCH_KEY: &str = "ERR no such key";
pub const HASH_NOT_INTEGER: &str = "ERR hash value is not an integer";
pub const HASH_NOT_FLOAT: &str = "ERR hash value is not a float";
pub const NAN_OR_INF: &str = "ERR increment would produce NaN or Infinity";
pub const DB_INDEX: &str = "ERR DB index is out of range";
pub const INVALID_EXPIRE: &str = "ERR invalid expire time in '{}' command";
pub const MIN_MAX_NOT_FLOAT: &str = "ERR min or max is not a float";
pub const MIN_MAX_NOT_STRING: &str = "ERR min or max not valid string range item";
pub const OFFSET_OUT_OF_RANGE: &str = "ERR offset is out of range";
pub const STRING_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// How many bytes of a client's word Redis quotes in an error.
pub const QUOTE_BYTES_MAX: usize = 128;

/// `ERR wrong number of arguments for 'xxx' command` (name lower-cased;
/// a subcommand is `container|sub`).
pub fn wrong_args(cmd: &str) -> String {
    format!(
        "ERR wrong number of arguments for '{}' command",
        cmd.to_ascii_lowercase()
    )
}

/// [`wrong_args`] as a reply.
pub fn wrong_arity(fullname: &str) -> Reply {
    Reply::Error(wrong_args(fullname))
}

/// `ERR syntax error` as a reply.
pub fn syntax_error() -> Reply {
    Reply::err(SYNTAX)
}

/// C's `%.Ns` on a byte string: at most `n` bytes, stopping at NUL.
pub fn c_str_prefix(arg: &[u8], n: usize) -> &[u8] {
    let end = arg
        .iter()
        .take(n)
        .position(|&b| b == 0)
        .unwrap_or(arg.len().min(n));
    arg.get(..end).unwrap_or_default()
}

/// An error reply built from client bytes: CR/LF become spaces, as Redis's
/// `addReplyErrorFormat` does. Bytes that are not UTF-8 are replaced, since
/// `Reply::Error` holds a `String`.
pub fn error_text(bytes: &[u8]) -> String {
    let cleaned: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect();
    String::from_utf8_lossy(&cleaned).into_owned()
}

/// `ERR unknown command 'foo', with args beginning with: 'a' 'b' `,
/// byte for byte as Redis 7.0 builds it (128-byte caps included).
pub fn unknown_command(args: &[Bytes]) -> Reply {
    const CAP: usize = QUOTE_BYTES_MAX;
    let name = args
        .first()
        .map(|a| c_str_prefix(a, CAP))
        .unwrap_or_default();
    let mut listed: Vec<u8> = Vec::new();
    for arg in args.iter().skip(1) {
        if listed.len() >= CAP {
            break;
        }
        let room = CAP - listed.len();
        listed.push(b'\'');
        listed.extend_from_slice(c_str_prefix(arg, room));
        listed.extend_from_slice(b"' ");
    }
    let mut text = b"ERR unknown command '".to_vec();
    text.extend_from_slice(name);
    text.extend_from_slice(b"', with args beginning with: ");
    text.extend_from_slice(&listed);
    Reply::Error(error_text(&text))
}

/// `ERR unknown subcommand 'x'. Try CONFIG HELP.`
pub fn unknown_subcommand(container: &[u8], sub: &[u8]) -> Reply {
    let mut text = b"ERR unknown subcommand '".to_vec();
    text.extend_from_slice(c_str_prefix(sub, QUOTE_BYTES_MAX));
    text.extend_from_slice(b"'. Try ");
    text.extend_from_slice(
        c_str_prefix(container, usize::MAX)
            .to_ascii_uppercase()
            .as_slice(),
    );
    text.extend_from_slice(b" HELP.");
    Reply::Error(error_text(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&[u8]]) -> Vec<Bytes> {
        v.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    #[test]
    fn unknown_command_format() {
        assert_eq!(
            unknown_command(&args(&[b"foo", b"a", b"b"])),
            Reply::err("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
        );
        assert_eq!(
            unknown_command(&args(&[b"foo"])),
            Reply::err("ERR unknown command 'foo', with args beginning with: ")
        );
        assert_eq!(
            unknown_command(&args(&[b"fo\r\no", b"a\0b"])),
            Reply::err("ERR unknown command 'fo  o', with args beginning with: 'a' ")
        );
        let long = vec![b'x'; 200];
        let Reply::Error(text) = unknown_command(&[Bytes::from(long.clone()), Bytes::from(long)])
        else {
            unreachable!("always an error")
        };
        let prefix = "ERR unknown command '".len() + 128 + "', with args beginning with: ".len();
        assert_eq!(text.len(), prefix + 1 + 128 + 2);
    }

    #[test]
    fn unknown_subcommand_format() {
        assert_eq!(
            unknown_subcommand(b"config", b"foo"),
            Reply::err("ERR unknown subcommand 'foo'. Try CONFIG HELP.")
        );
    }

    #[test]
    fn wrong_arity_lower_cases() {
        assert_eq!(
            wrong_arity("GET"),
            Reply::err("ERR wrong number of arguments for 'get' command")
        );
    }
}
