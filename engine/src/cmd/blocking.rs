//! Blocking pops (Redis 7.0): BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP,
//! BZPOPMIN, BZPOPMAX, BZMPOP, as the engine runs them: once, without waiting.
//!
//! The engine owns their parsing and their one attempt: each handler checks
//! its arguments as Redis does (timeout included), pops when one of its keys
//! has something, and otherwise answers what Redis answers for a blocking
//! command that may not block (inside MULTI): the null array, or a null bulk
//! for BLMOVE/BRPOPLPUSH. The server owns the waiting: [`block_spec`] tells it
//! which keys a blocked client waits on and until when, and it runs the
//! command again when one of them changes (a local write or a peer's op).

use super::list::{end_arg, lmpop_keys, move_one, mpop_args, End};
use super::zset::{bzpop_keys, zmpop_keys};
use super::{is, strtod, typed, DataCommand};
use crate::engine::Txn;
use crate::keyspace::value::Kind;
use crate::reply::{errors, Reply};
use bytes::Bytes;

pub static COMMANDS: &[DataCommand] = &[
    DataCommand {
        name: "BLPOP",
        write: true,
        handler: blpop,
    },
    DataCommand {
        name: "BRPOP",
        write: true,
        handler: brpop,
    },
    DataCommand {
        name: "BLMOVE",
        write: true,
        handler: blmove,
    },
    DataCommand {
        name: "BRPOPLPUSH",
        write: true,
        handler: brpoplpush,
    },
    DataCommand {
        name: "BLMPOP",
        write: true,
        handler: blmpop,
    },
    DataCommand {
        name: "BZPOPMIN",
        write: true,
        handler: bzpopmin,
    },
    DataCommand {
        name: "BZPOPMAX",
        write: true,
        handler: bzpopmax,
    },
    DataCommand {
        name: "BZMPOP",
        write: true,
        handler: bzmpop,
    },
];

/// Longest timeout argument `string2ld` reads.
const TIMEOUT_BYTES_MAX: usize = 5 * 1024;

/// `getTimeoutFromObjectOrReply(UNIT_SECONDS)`: seconds with decimals, as a
/// deadline in ms (`0`: wait forever).
pub fn timeout_arg(b: &[u8], now_ms: u64) -> Result<u64, Reply> {
    let not_float = || Reply::err("ERR timeout is not a float or out of range");
    if b.is_empty() || b.len() >= TIMEOUT_BYTES_MAX || super::c_isspace(b[0]) {
        return Err(not_float());
    }
    // Whole seconds exactly, as the long double Redis reads them into is
    // exact for every integer of `long long` (an f64 is not above 2^53).
    if let Some(secs) = crate::redis::num::parse_int(b) {
        return match secs.checked_mul(1000) {
            Some(t) if t >= 0 => Ok(deadline(t, now_ms)),
            _ => Err(Reply::err("ERR timeout is negative")),
        };
    }
    let (v, used, erange) = strtod(b);
    if used != b.len() || v.is_nan() || (erange && (v.is_infinite() || v == 0.0)) {
        return Err(not_float());
    }
    let ms = v * 1000.0;
    // C's cast of a value out of `long long`'s range gives LLONG_MIN on the
    // machines Redis runs on: "negative".
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if !(-TWO_63..TWO_63).contains(&ms) {
        return Err(Reply::err("ERR timeout is negative"));
    }
    let t = ms.trunc() as i64;
    if t < 0 {
        return Err(Reply::err("ERR timeout is negative"));
    }
    Ok(deadline(t, now_ms))
}

/// The deadline `t` ms (≥ 0) after `now_ms`; `0` (none) for `t == 0`, and
/// where Redis 7.0's sum overflows (it adds the clock unchecked, and a
/// deadline that wrapped negative is no deadline).
fn deadline(t: i64, now_ms: u64) -> u64 {
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
    if t == 0 || t > i64::MAX - now {
        return 0;
    }
    (now + t) as u64
}

/// What a blocked client waits for: its keys and its deadline (ms since
/// the epoch; `0` = forever).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSpec {
    pub keys: Vec<Bytes>,
    pub deadline_ms: u64,
}

/// For a blocking command whose arguments are valid: the keys it waits on
/// and its deadline. `None` for any other command or invalid arguments (the
/// command itself then answers the error). Arity was checked.
pub fn block_spec(args: &[Bytes], now_ms: u64) -> Option<BlockSpec> {
    let name = args.first()?;
    if args.len() < 3 {
        return None;
    }
    let spec = |keys: &[Bytes], t: &Bytes| {
        timeout_arg(t, now_ms).ok().map(|deadline_ms| BlockSpec {
            keys: keys.to_vec(),
            deadline_ms,
        })
    };
    if is(name, "BLPOP") || is(name, "BRPOP") || is(name, "BZPOPMIN") || is(name, "BZPOPMAX") {
        let (t, keys) = args[1..].split_last()?;
        spec(keys, t)
    } else if is(name, "BLMOVE") {
        let t = args.get(5)?;
        end_arg(args.get(3)?).ok()?;
        end_arg(args.get(4)?).ok()?;
        spec(&args[1..2], t)
    } else if is(name, "BRPOPLPUSH") {
        let t = args.get(3)?;
        spec(&args[1..2], t)
    } else if is(name, "BLMPOP") {
        let a = mpop_args(args, 2, |s| end_arg(s).is_ok()).ok()?;
        spec(a.keys, args.get(1)?)
    } else if is(name, "BZMPOP") {
        let a = mpop_args(args, 2, |s| is(s, "MIN") || is(s, "MAX")).ok()?;
        spec(a.keys, args.get(1)?)
    } else {
        None
    }
}

/// The reply of a blocking command that found nothing, when it may not block
/// (and what the server waits on otherwise).
pub fn is_empty_reply(reply: &Reply) -> bool {
    matches!(reply, Reply::Nil | Reply::NilArray)
}

fn blpop(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    bpop(txn, db, a, End::Left)
}
fn brpop(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    bpop(txn, db, a, End::Right)
}

fn bpop(txn: &mut Txn<'_>, db: u8, a: &[Bytes], end: End) -> Reply {
    let Some((t, keys)) = a[1..].split_last() else {
        return Reply::err(errors::SYNTAX);
    };
    if let Err(e) = timeout_arg(t, txn.now_ms) {
        return e;
    }
    match lmpop_keys(txn, db, keys, end, 1) {
        // `[key, [value]]` → `[key, value]`.
        Reply::Array(mut kv) if kv.len() == 2 => match kv.pop() {
            Some(Reply::Array(mut vals)) if vals.len() == 1 => {
                kv.extend(vals.pop());
                Reply::Array(kv)
            }
            _ => Reply::NilArray,
        },
        other => other,
    }
}

fn blmove(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let from = match end_arg(&a[3]) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let to = match end_arg(&a[4]) {
        Ok(e) => e,
        Err(e) => return e,
    };
    bmove(txn, db, &a[1], &a[2], &a[5], from, to)
}

fn brpoplpush(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    bmove(txn, db, &a[1], &a[2], &a[3], End::Right, End::Left)
}

fn bmove(
    txn: &mut Txn<'_>,
    db: u8,
    src: &Bytes,
    dst: &Bytes,
    timeout: &Bytes,
    from: End,
    to: End,
) -> Reply {
    if let Err(e) = timeout_arg(timeout, txn.now_ms) {
        return e;
    }
    // An absent or empty source answers a null bulk before the destination's
    // type is looked at, as Redis's blmoveGenericCommand does.
    match typed(txn, db, src, Kind::List) {
        Err(e) => return e,
        Ok(None) => return Reply::Nil,
        Ok(Some(_)) => {}
    }
    move_one(txn, db, src, dst, from, to)
}

fn blmpop(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let args = match mpop_args(a, 2, |s| end_arg(s).is_ok()) {
        Ok(x) => x,
        Err(e) => return e,
    };
    if let Err(e) = timeout_arg(&a[1], txn.now_ms) {
        return e;
    }
    let end = match end_arg(args.side) {
        Ok(e) => e,
        Err(e) => return e,
    };
    lmpop_keys(txn, db, args.keys, end, args.count)
}

fn bzpopmin(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    bzpop(txn, db, a, false)
}
fn bzpopmax(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    bzpop(txn, db, a, true)
}

fn bzpop(txn: &mut Txn<'_>, db: u8, a: &[Bytes], max: bool) -> Reply {
    let Some((t, keys)) = a[1..].split_last() else {
        return Reply::err(errors::SYNTAX);
    };
    if let Err(e) = timeout_arg(t, txn.now_ms) {
        return e;
    }
    bzpop_keys(txn, db, keys, max).unwrap_or(Reply::NilArray)
}

fn bzmpop(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let args = match mpop_args(a, 2, |s| is(s, "MIN") || is(s, "MAX")) {
        Ok(x) => x,
        Err(e) => return e,
    };
    if let Err(e) = timeout_arg(&a[1], txn.now_ms) {
        return e;
    }
    zmpop_keys(txn, db, args.keys, is(args.side, "MAX"), args.count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn timeouts_parse_as_redis_parses_them() {
        assert_eq!(timeout_arg(b"0", 1000), Ok(0));
        assert_eq!(timeout_arg(b"1.5", 1000), Ok(2500));
        assert_eq!(timeout_arg(b"0.0001", 1000), Ok(0));
        assert_eq!(timeout_arg(b"-0.0001", 1000), Ok(0));
        let neg = Err(Reply::err("ERR timeout is negative"));
        let nf = Err(Reply::err("ERR timeout is not a float or out of range"));
        assert_eq!(timeout_arg(b"-1", 1000), neg);
        assert_eq!(timeout_arg(b"inf", 1000), neg);
        assert_eq!(timeout_arg(b"1e100", 1000), neg);
        assert_eq!(timeout_arg(b"nan", 1000), nf);
        assert_eq!(timeout_arg(b"x", 1000), nf);
        assert_eq!(timeout_arg(b" 1", 1000), nf);
        assert_eq!(timeout_arg(b"", 1000), nf);
        assert_eq!(timeout_arg(b"9223372036854775", 1_700_000_000_000), Ok(0));
        assert_eq!(timeout_arg(b"9223372036854776", 1_700_000_000_000), neg);
    }

    #[test]
    fn block_specs_name_the_keys_and_the_deadline() {
        let args: Vec<Bytes> = ["BLPOP", "a", "b", "2"].iter().map(|s| b(s)).collect();
        assert_eq!(
            block_spec(&args, 1000),
            Some(BlockSpec {
                keys: vec![b("a"), b("b")],
                deadline_ms: 3000
            })
        );
        let args: Vec<Bytes> = ["BLMPOP", "0", "2", "a", "b", "LEFT", "COUNT", "3"]
            .iter()
            .map(|s| b(s))
            .collect();
        assert_eq!(
            block_spec(&args, 1000).map(|s| s.keys),
            Some(vec![b("a"), b("b")])
        );
        let args: Vec<Bytes> = ["BLMOVE", "s", "d", "LEFT", "UP", "0"]
            .iter()
            .map(|s| b(s))
            .collect();
        assert_eq!(block_spec(&args, 1000), None);
        let args: Vec<Bytes> = ["GET", "k"].iter().map(|s| b(s)).collect();
        assert_eq!(block_spec(&args, 1000), None);
    }
}
