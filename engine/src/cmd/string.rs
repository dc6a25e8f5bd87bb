//! String commands: GET/SET family, counters (INCR family, INCRBYFLOAT),
//! APPEND, SETRANGE, GETRANGE, MGET/MSET, LCS.
//!
//! A string is a register (SET family) plus a counter (INCR family); see
//! `keyspace::value::Cell`. Writes that replace the whole value emit
//! `SetString`, counters emit `IncrInt`/`IncrFloat`, so concurrent increments
//! at several sites add up.

use super::{expire_if_needed, int_arg, is, typed, DataCommand};
use crate::engine::Txn;
use crate::keyspace::value::Kind;
use crate::ld::{self, Exact, Ld};
use crate::op::Effect;
use crate::redis::num;
use crate::reply::{errors, Reply};
use bytes::Bytes;

/// Largest string value (proto-max-bulk-len default).
pub const STRING_BYTES_MAX: usize = 512 << 20;

pub static COMMANDS: &[DataCommand] = &[
    DataCommand {
        name: "GET",
        write: false,
        handler: get,
    },
    DataCommand {
        name: "SET",
        write: true,
        handler: set,
    },
    DataCommand {
        name: "SETNX",
        write: true,
        handler: setnx,
    },
    DataCommand {
        name: "SETEX",
        write: true,
        handler: setex,
    },
    DataCommand {
        name: "PSETEX",
        write: true,
        handler: psetex,
    },
    DataCommand {
        name: "GETSET",
        write: true,
        handler: getset,
    },
    DataCommand {
        name: "GETDEL",
        write: true,
        handler: getdel,
    },
    DataCommand {
        name: "GETEX",
        write: true,
        handler: getex,
    },
    DataCommand {
        name: "MGET",
        write: false,
        handler: mget,
    },
    DataCommand {
        name: "MSET",
        write: true,
        handler: mset,
    },
    DataCommand {
        name: "MSETNX",
        write: true,
        handler: msetnx,
    },
    DataCommand {
        name: "APPEND",
        write: true,
        handler: append,
    },
    DataCommand {
        name: "STRLEN",
        write: false,
        handler: strlen,
    },
    DataCommand {
        name: "GETRANGE",
        write: false,
        handler: getrange,
    },
    DataCommand {
        name: "SUBSTR",
        write: false,
        handler: getrange,
    },
    DataCommand {
        name: "SETRANGE",
        write: true,
        handler: setrange,
    },
    DataCommand {
        name: "INCR",
        write: true,
        handler: incr,
    },
    DataCommand {
        name: "DECR",
        write: true,
        handler: decr,
    },
    DataCommand {
        name: "INCRBY",
        write: true,
        handler: incrby,
    },
    DataCommand {
        name: "DECRBY",
        write: true,
        handler: decrby,
    },
    DataCommand {
        name: "INCRBYFLOAT",
        write: true,
        handler: incrbyfloat,
    },
    DataCommand {
        name: "LCS",
        write: false,
        handler: lcs,
    },
];

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN], as Redis 7.0
/// computes it: the dynamic-programming table of `(|a|+1) × (|b|+1)` u32s,
/// refused when it would exceed proto-max-bulk-len (as Redis does), then
/// one walk back from the end that emits the matched ranges, last first.
/// O(|a|·|b|) like Redis's, so no longer a stall than there.
fn lcs(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let mut values = Vec::with_capacity(2);
    for key in &a[1..3] {
        match string_value(txn, db, key) {
            Ok(v) => values.push(v.unwrap_or_default()),
            Err(_) => return Reply::err("ERR The specified keys must contain string values"),
        }
    }
    let (x, y) = (&values[0], &values[1]);
    let (mut getlen, mut getidx, mut withmatchlen) = (false, false, false);
    let mut minmatchlen: i64 = 0;
    let mut j = 3;
    while j < a.len() {
        let more = a.len() - 1 - j;
        if is(&a[j], "IDX") {
            getidx = true;
        } else if is(&a[j], "LEN") {
            getlen = true;
        } else if is(&a[j], "WITHMATCHLEN") {
            withmatchlen = true;
        } else if is(&a[j], "MINMATCHLEN") && more > 0 {
            minmatchlen = match int_arg(&a[j + 1]) {
                Ok(n) => n.max(0),
                Err(e) => return e,
            };
            j += 1;
        } else {
            return Reply::err(errors::SYNTAX);
        }
        j += 1;
    }
    if getidx && getlen {
        return Reply::err("ERR If you want both the length and indexes, please just use IDX.");
    }
    if x.len() as u64 >= u64::from(u32::MAX) - 1 || y.len() as u64 >= u64::from(u32::MAX) - 1 {
        return Reply::err("ERR String too long for LCS");
    }
    let (alen, blen) = (x.len(), y.len());
    let cells = (alen as u64 + 1) * (blen as u64 + 1);
    if cells.saturating_mul(4) > STRING_BYTES_MAX as u64 {
        return Reply::err(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
    }
    let w = blen + 1;
    let mut t = vec![0u32; cells as usize];
    for i in 1..=alen {
        for k in 1..=blen {
            t[i * w + k] = if x[i - 1] == y[k - 1] {
                t[(i - 1) * w + k - 1] + 1
            } else {
                t[(i - 1) * w + k].max(t[i * w + k - 1])
            };
        }
    }
    let total = t[alen * w + blen];
    let compute = getidx || !getlen;
    let mut result = vec![0u8; if compute { total as usize } else { 0 }];
    let mut matches: Vec<Reply> = Vec::new();
    let mut idx = total as usize;
    // `arange_start == alen`: no range open.
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (alen, 0usize, 0usize, 0usize);
    let (mut i, mut k) = (alen, blen);
    while compute && i > 0 && k > 0 {
        let mut emit = false;
        if x[i - 1] == y[k - 1] {
            result[idx - 1] = x[i - 1];
            if a_start == alen {
                (a_start, a_end, b_start, b_end) = (i - 1, i - 1, k - 1, k - 1);
            } else if a_start == i && b_start == k {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            k -= 1;
        } else {
            if t[(i - 1) * w + k] > t[i * w + k - 1] {
                i -= 1;
            } else {
                k -= 1;
            }
            if a_start != alen {
                emit = true;
            }
        }
        if emit {
            let match_len = a_end - a_start + 1;
            if getidx && (minmatchlen == 0 || match_len as i64 >= minmatchlen) {
                let mut m = vec![
                    Reply::Array(vec![Reply::Int(a_start as i64), Reply::Int(a_end as i64)]),
                    Reply::Array(vec![Reply::Int(b_start as i64), Reply::Int(b_end as i64)]),
                ];
                if withmatchlen {
                    m.push(Reply::Int(match_len as i64));
                }
                matches.push(Reply::Array(m));
            }
            a_start = alen;
        }
    }
    if getidx {
        Reply::Map(vec![
            (
                Reply::bulk(Bytes::from_static(b"matches")),
                Reply::Array(matches),
            ),
            (
                Reply::bulk(Bytes::from_static(b"len")),
                Reply::Int(i64::from(total)),
            ),
        ])
    } else if getlen {
        Reply::Int(i64::from(total))
    } else {
        Reply::Bulk(Bytes::from(result))
    }
}

/// The visible string value; WRONGTYPE for other types.
pub fn string_value(txn: &Txn<'_>, db: u8, key: &[u8]) -> Result<Option<Bytes>, Reply> {
    Ok(typed(txn, db, key, Kind::String)?.and_then(|r| r.string_value()))
}

fn get(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    match string_value(txn, db, &a[1]) {
        Ok(Some(v)) => Reply::Bulk(v),
        Ok(None) => Reply::Nil,
        Err(e) => e,
    }
}

/// Expiry options shared by SET and GETEX.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ttl {
    None,
    Keep,
    Persist,
    /// Absolute deadline in ms.
    At(u64),
}

/// Parses `EX s | PX ms | EXAT s | PXAT ms` at `a[i]`; returns the deadline.
fn parse_expire(txn: &Txn<'_>, kw: &[u8], val: &[u8], cmd: &str) -> Result<u64, Reply> {
    let n = int_arg(val)?;
    let invalid = || Reply::Error(errors::INVALID_EXPIRE.replace("{}", cmd));
    if n <= 0 {
        return Err(invalid());
    }
    let now = txn.now_ms as i64;
    let ms = if is(kw, "EX") || is(kw, "EXAT") {
        n.checked_mul(1000).ok_or_else(invalid)?
    } else {
        n
    };
    let deadline = if is(kw, "EX") || is(kw, "PX") {
        ms.checked_add(now).ok_or_else(invalid)?
    } else {
        ms
    };
    Ok(deadline.max(0) as u64)
}

/// Which command [`string_options`] parses for (Redis's `COMMAND_SET` and
/// `COMMAND_GET`).
#[derive(Clone, Copy, PartialEq)]
enum OptionsOf {
    Set,
    GetEx,
}

/// The options of SET (`NX XX GET KEEPTTL` and an expiry) or GETEX
/// (`PERSIST` and an expiry).
#[derive(Default)]
struct StringOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    /// The expiry keyword (`EX`, `PX`, `EXAT` or `PXAT`) and its value,
    /// checked only once every option has been read.
    expire: Option<(&'a Bytes, &'a Bytes)>,
}

impl StringOptions<'_> {
    /// The expiry option's deadline, read only now: after the syntax check
    /// (and, for GETEX, after the key's).
    fn deadline(&self, txn: &Txn<'_>, cmd: &str) -> Result<Option<u64>, Reply> {
        self.expire
            .map(|(kw, v)| parse_expire(txn, kw, v, cmd))
            .transpose()
    }
}

const EXPIRY_KEYWORDS: [&str; 4] = ["EX", "PX", "EXAT", "PXAT"];

/// Parses the options from `a[start]` on as Redis's
/// `parseExtendedStringArgumentsOrReply`: an option may be repeated, the
/// last expiry value winning (`SET k v EX 10 EX 20` sets 20 s), but options
/// that exclude each other may not be mixed (`NX XX`, `EX PX`, `KEEPTTL EX`,
/// `PERSIST EX`): a syntax error. The expiry value is not parsed here, so a
/// syntax error anywhere comes before an invalid expiry.
fn string_options(a: &[Bytes], start: usize, of: OptionsOf) -> Result<StringOptions<'_>, Reply> {
    let set = of == OptionsOf::Set;
    let mut o = StringOptions::default();
    let mut i = start;
    while let Some(arg) = a.get(i) {
        let next = a.get(i + 1);
        let expiry_allowed = !o.keep_ttl
            && !o.persist
            && o.expire.is_none_or(|(kw, _)| kw.eq_ignore_ascii_case(arg));
        if set && is(arg, "NX") && !o.xx {
            o.nx = true;
        } else if set && is(arg, "XX") && !o.nx {
            o.xx = true;
        } else if set && is(arg, "GET") {
            o.get = true;
        } else if set && is(arg, "KEEPTTL") && o.expire.is_none() {
            o.keep_ttl = true;
        } else if !set && is(arg, "PERSIST") && o.expire.is_none() {
            o.persist = true;
        } else if let Some(value) =
            next.filter(|_| expiry_allowed && EXPIRY_KEYWORDS.iter().any(|kw| is(arg, kw)))
        {
            o.expire = Some((arg, value));
            i += 1;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
        i += 1;
    }
    Ok(o)
}

fn set(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let (key, value) = (&a[1], &a[2]);
    let opts = match string_options(a, 3, OptionsOf::Set) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let (nx, xx, get) = (opts.nx, opts.xx, opts.get);
    let ttl = match opts.deadline(txn, "set") {
        Ok(Some(d)) => Ttl::At(d),
        Ok(None) if opts.keep_ttl => Ttl::Keep,
        Ok(None) => Ttl::None,
        Err(e) => return e,
    };
    let old = if get {
        match string_value(txn, db, key) {
            Ok(v) => v,
            Err(e) => return e,
        }
    } else {
        None
    };
    // A plain SET needs no existence check (one lookup less on the hot path).
    let exists = (nx || xx) && super::row(txn, db, key).is_some();
    if (nx && exists) || (xx && !exists) {
        return if get {
            old.map_or(Reply::Nil, Reply::Bulk)
        } else {
            Reply::Nil
        };
    }
    write_string(txn, db, key, value.clone(), ttl);
    if get {
        old.map_or(Reply::Nil, Reply::Bulk)
    } else {
        Reply::Ok
    }
}

fn write_string(txn: &mut Txn<'_>, db: u8, key: &Bytes, value: Bytes, ttl: Ttl) {
    expire_if_needed(txn, db, key);
    txn.emit(
        db,
        key,
        Effect::SetString {
            value,
            keep_ttl: ttl == Ttl::Keep,
        },
    );
    if let Ttl::At(d) = ttl {
        txn.emit(db, key, Effect::Expire(Some(d)));
    }
}

fn setnx(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    if super::row(txn, db, &a[1]).is_some() {
        return Reply::Int(0);
    }
    write_string(txn, db, &a[1], a[2].clone(), Ttl::None);
    Reply::Int(1)
}

fn setex_common(txn: &mut Txn<'_>, db: u8, a: &[Bytes], kw: &str, cmd: &str) -> Reply {
    match parse_expire(txn, kw.as_bytes(), &a[2], cmd) {
        Ok(d) => {
            write_string(txn, db, &a[1], a[3].clone(), Ttl::At(d));
            Reply::Ok
        }
        Err(e) => e,
    }
}

fn setex(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    setex_common(txn, db, a, "EX", "setex")
}

fn psetex(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    setex_common(txn, db, a, "PX", "psetex")
}

fn getset(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let old = match string_value(txn, db, &a[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    write_string(txn, db, &a[1], a[2].clone(), Ttl::None);
    old.map_or(Reply::Nil, Reply::Bulk)
}

fn getdel(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    match string_value(txn, db, &a[1]) {
        Ok(Some(v)) => {
            txn.emit(db, &a[1], Effect::Del);
            Reply::Bulk(v)
        }
        Ok(None) => Reply::Nil,
        Err(e) => e,
    }
}

fn getex(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let key = &a[1];
    let opts = match string_options(a, 2, OptionsOf::GetEx) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let v = match string_value(txn, db, key) {
        Ok(Some(v)) => v,
        Ok(None) => return Reply::Nil,
        Err(e) => return e,
    };
    // As in Redis, the expiry is checked after the key: GETEX on a missing
    // key answers nil whatever the value.
    let ttl = match opts.deadline(txn, "getex") {
        Ok(Some(d)) => Ttl::At(d),
        Ok(None) if opts.persist => Ttl::Persist,
        Ok(None) => Ttl::None,
        Err(e) => return e,
    };
    match ttl {
        Ttl::At(d) => txn.emit(db, key, Effect::Expire(Some(d))),
        Ttl::Persist => {
            let has_ttl = super::row(txn, db, key)
                .and_then(|r| r.deadline())
                .is_some();
            if has_ttl {
                txn.emit(db, key, Effect::Expire(None));
            }
        }
        _ => {}
    }
    Reply::Bulk(v)
}

fn mget(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    Reply::Array(
        a[1..]
            .iter()
            .map(|k| match string_value(txn, db, k) {
                Ok(Some(v)) => Reply::Bulk(v),
                _ => Reply::Nil,
            })
            .collect(),
    )
}

fn mset(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    if a.len().is_multiple_of(2) {
        return Reply::err(errors::wrong_args("mset"));
    }
    for kv in a[1..].chunks(2) {
        if let [k, v] = kv {
            write_string(txn, db, k, v.clone(), Ttl::None);
        }
    }
    Reply::Ok
}

fn msetnx(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    if a.len().is_multiple_of(2) {
        return Reply::err(errors::wrong_args("msetnx"));
    }
    if a[1..]
        .chunks(2)
        .any(|kv| super::row(txn, db, &kv[0]).is_some())
    {
        return Reply::Int(0);
    }
    for kv in a[1..].chunks(2) {
        if let [k, v] = kv {
            write_string(txn, db, k, v.clone(), Ttl::None);
        }
    }
    Reply::Int(1)
}

fn append(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let old = match string_value(txn, db, &a[1]) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return e,
    };
    let len = old.len() + a[2].len();
    if len > STRING_BYTES_MAX {
        return Reply::err(errors::STRING_TOO_LONG);
    }
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&old);
    v.extend_from_slice(&a[2]);
    write_string(txn, db, &a[1], Bytes::from(v), Ttl::Keep);
    Reply::Int(len as i64)
}

fn strlen(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    match string_value(txn, db, &a[1]) {
        Ok(v) => Reply::Int(v.map_or(0, |v| v.len() as i64)),
        Err(e) => e,
    }
}

fn getrange(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let (start, end) = match (int_arg(&a[2]), int_arg(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        _ => return Reply::err(errors::NOT_INTEGER),
    };
    let v = match string_value(txn, db, &a[1]) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return e,
    };
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Reply::bulk(Bytes::new());
    }
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    if s < 0 {
        s = 0;
    }
    if e < 0 {
        e = 0;
    }
    if e >= len {
        e = len - 1;
    }
    if len == 0 || s > e {
        return Reply::bulk(Bytes::new());
    }
    Reply::Bulk(v.slice(s as usize..=e as usize))
}

fn setrange(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let offset = match int_arg(&a[2]) {
        Ok(o) if o >= 0 => o as usize,
        Ok(_) => return Reply::err(errors::OFFSET_OUT_OF_RANGE),
        Err(e) => return e,
    };
    let old = match string_value(txn, db, &a[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let val = &a[3];
    match &old {
        None if val.is_empty() => return Reply::Int(0),
        Some(o) if val.is_empty() => return Reply::Int(o.len() as i64),
        _ => {}
    }
    if offset.saturating_add(val.len()) > STRING_BYTES_MAX {
        return Reply::err(errors::STRING_TOO_LONG);
    }
    let old = old.unwrap_or_default();
    let len = old.len().max(offset + val.len());
    let mut v = vec![0u8; len];
    v[..old.len()].copy_from_slice(&old);
    v[offset..offset + val.len()].copy_from_slice(val);
    write_string(txn, db, &a[1], Bytes::from(v), Ttl::Keep);
    Reply::Int(len as i64)
}

/// Applies an integer increment with Redis's checks; replies the new value.
pub fn incr_by(txn: &mut Txn<'_>, db: u8, key: &Bytes, delta: i64) -> Reply {
    let row = match typed(txn, db, key, Kind::String) {
        Ok(r) => r,
        Err(e) => return e,
    };
    // The common case reads the integer without formatting it: a missing key,
    // an integer base, integer increments.
    let fast = match row {
        None => Some(0),
        // A HyperLogLog's bytes are no integer: the slow path says so.
        Some(r) if r.visible_hll().is_some() => None,
        Some(r) => r.string.as_ref().map_or(Some(0), |cell| cell.int_value()),
    };
    let cur: i64 = match fast {
        // A merged sum outside i64 is shown exactly; adding to it overflows,
        // as in Redis.
        Some(v) => match i64::try_from(v) {
            Ok(v) => v,
            Err(_) => return Reply::err(errors::OVERFLOW),
        },
        None => match incr_base_slow(txn, db, key) {
            Ok(v) => v,
            Err(e) => return e,
        },
    };
    let Some(new) = cur.checked_add(delta) else {
        return Reply::err(errors::OVERFLOW);
    };
    expire_if_needed(txn, db, key);
    txn.emit(db, key, Effect::IncrInt(delta));
    Reply::Int(new)
}

/// The current value of `key` as INCR sees it, through its shown bytes (a
/// float-valued counter, a non-integer string).
fn incr_base_slow(txn: &Txn<'_>, db: u8, key: &Bytes) -> Result<i64, Reply> {
    let cur = string_value(txn, db, key)?;
    Ok(match cur {
        None => 0,
        Some(b) => match num::parse_int(&b) {
            Some(i) => i,
            None => {
                // A merged sum outside i64 shows as an exact integer; adding to
                // it overflows, as in Redis.
                let s = std::str::from_utf8(&b).unwrap_or("");
                let canonical_big = s.parse::<i128>().is_ok_and(|v| v.to_string() == s);
                if canonical_big && cur_is_merged_sum(txn, db, key) {
                    return Err(Reply::err(errors::OVERFLOW));
                }
                return Err(Reply::err(errors::NOT_INTEGER));
            }
        },
    })
}

/// True when the key's value is a counter sum (increments on top of a base),
/// which may exceed i64 after a merge; a plain stored string never is.
fn cur_is_merged_sum(txn: &Txn<'_>, db: u8, key: &[u8]) -> bool {
    super::row(txn, db, key)
        .and_then(|r| r.string.as_ref())
        .is_some_and(|c| !c.ctr.is_empty())
}

fn incr(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    incr_by(txn, db, &a[1], 1)
}

fn decr(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    incr_by(txn, db, &a[1], -1)
}

fn incrby(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    match int_arg(&a[2]) {
        Ok(d) => incr_by(txn, db, &a[1], d),
        Err(e) => e,
    }
}

fn decrby(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    match int_arg(&a[2]) {
        Ok(d) if d != i64::MIN => incr_by(txn, db, &a[1], -d),
        Ok(_) => Reply::err("ERR decrement would overflow"),
        Err(e) => e,
    }
}

fn incrbyfloat(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let key = &a[1];
    let cur = match string_value(txn, db, key) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let Some(incr) = ld::parse(&a[2]) else {
        return Reply::err(errors::NOT_FLOAT);
    };
    let old = match &cur {
        None => Ld::Finite(Exact::zero()),
        Some(b) => match ld::parse(b) {
            Some(v) => v,
            None => return Reply::err(errors::NOT_FLOAT),
        },
    };
    // Redis's long double step: an infinite operand or sum is refused.
    let (Ld::Finite(old), Ld::Finite(incr)) = (old, incr) else {
        return Reply::err(errors::NAN_OR_INF);
    };
    let Some((new, text)) = ld::incr(&old, &incr) else {
        return Reply::err(errors::NAN_OR_INF);
    };
    expire_if_needed(txn, db, key);
    // The op carries the exact change from what the cell holds (beyond the
    // shown digits when concurrent increments met), so the total here is
    // exactly `new` and shows as `text`.
    let held = typed(txn, db, key, Kind::String)
        .ok()
        .flatten()
        .and_then(|r| r.string.as_ref())
        .and_then(|c| c.number_total())
        .unwrap_or(old);
    txn.emit(db, key, Effect::IncrFloat(new.sub(&held)));
    // Reply what every site will show: the merged value after the increment.
    match string_value(txn, db, key) {
        Ok(Some(v)) => Reply::Bulk(v),
        _ => Reply::bulk(text),
    }
}
