//! Data commands with Redis 7.0 semantics, one module per type.
//!
//! A command receives the transaction (`Txn`), the database and its arguments
//! (`args[0]` is the name). It validates like Redis does (arity, syntax,
//! WRONGTYPE, not an integer, overflow…) *before* emitting any effect, then emits
//! effects (applied at once) and returns the reply. Nothing here does I/O, so
//! every command is unit-tested by calling [`crate::Engine::execute`].

pub mod blocking;
pub mod hash;
pub mod hll;
pub mod keys;
pub mod list;
pub mod set;
pub mod string;
pub mod zset;

use crate::engine::Txn;
use crate::keyspace::row::Row;
use crate::keyspace::value::Kind;
use crate::redis::glob::glob_match;
use crate::reply::{errors, Reply};
use bytes::Bytes;

pub type Handler = fn(&mut Txn<'_>, u8, &[Bytes]) -> Reply;

/// One data command: name (upper case), whether it may write, and its
/// handler. Its arity, flags and `COMMAND INFO` are Redis's, in
/// [`crate::redis::command_table`], whose entries point here.
#[derive(Debug)]
pub struct DataCommand {
    pub name: &'static str,
    pub write: bool,
    pub handler: Handler,
}

/// A data command by name, any case. Linear: for building the command
/// table and for embedders' checks, not per request.
pub fn find(name: &[u8]) -> Option<&'static DataCommand> {
    all().find(|d| d.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Every data command.
pub fn all() -> impl Iterator<Item = &'static DataCommand> {
    [
        string::COMMANDS,
        keys::COMMANDS,
        hash::COMMANDS,
        hll::COMMANDS,
        set::COMMANDS,
        zset::COMMANDS,
        list::COMMANDS,
        blocking::COMMANDS,
    ]
    .into_iter()
    .flat_map(|t| t.iter())
}

/// Runs a resolved command whose arity was checked: write refusal, then
/// the handler.
pub fn run(txn: &mut Txn<'_>, db: u8, cmd: &DataCommand, args: &[Bytes]) -> Reply {
    if cmd.write {
        if let Some(e) = txn.write_refused() {
            return Reply::Error(e);
        }
        // Units hold user keys; the cluster's own rows have no unit.
        if db != crate::keyspace::CLUSTER_DB && txn.engine.units().any_owned() {
            if let Err(e) = txn.engine.unit_route(&write_keys(cmd, args)) {
                return e;
            }
        }
    }
    (cmd.handler)(txn, db, args)
}

/// The keys of a write command, for the unit check: Redis's legacy key
/// range (first, last, step) from the command table, and for the commands
/// whose keys move (a `numkeys` argument, a `STORE` option) the keys
/// those name. A read key of a write command counts too (a command runs
/// where all its keys may be written).
pub fn write_keys<'a>(cmd: &DataCommand, args: &'a [Bytes]) -> Vec<&'a [u8]> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static SPECS: OnceLock<HashMap<&'static str, (i64, i64, i64)>> = OnceLock::new();
    let specs = SPECS.get_or_init(|| {
        crate::redis::CommandTable::redis()
            .iter()
            .filter_map(|c| Some((c.data?.name, (c.first_key, c.last_key, c.key_step))))
            .collect()
    });
    let arg = |i: usize| args.get(i).map(|a| &a[..]);
    let numkeys = |at: usize| -> Vec<&'a [u8]> {
        let n = arg(at)
            .and_then(crate::redis::num::parse_int)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        args.iter().skip(at + 1).take(n).map(|a| &a[..]).collect()
    };
    match cmd.name {
        "LMPOP" | "ZMPOP" => return numkeys(1),
        "BLMPOP" | "BZMPOP" => return numkeys(2),
        _ => {}
    }
    let mut keys = Vec::new();
    if let Some(&(first, last, step)) = specs.get(cmd.name) {
        let argc = i64::try_from(args.len()).unwrap_or(i64::MAX);
        let last = if last < 0 { argc + last } else { last };
        let mut i = first;
        while first > 0 && i <= last && i < argc {
            keys.extend(usize::try_from(i).ok().and_then(arg));
            i += step.max(1);
        }
    }
    if matches!(cmd.name, "GEORADIUS" | "GEORADIUSBYMEMBER") {
        // `STORE key` / `STOREDIST key`, among the options after the unit.
        let options = if cmd.name == "GEORADIUS" { 6 } else { 5 };
        for w in args.get(options..).unwrap_or_default().windows(2) {
            if is(&w[0], "STORE") || is(&w[0], "STOREDIST") {
                keys.push(&w[1][..]);
            }
        }
    }
    keys
}

/// Resolves a request in the command table (name, then arity) for callers
/// that did not: Redis's errors, byte for byte, for what does not resolve.
pub fn resolve(args: &[Bytes]) -> Result<&'static DataCommand, Reply> {
    if args.is_empty() {
        return Err(Reply::err("ERR empty command"));
    }
    let table = crate::redis::CommandTable::redis();
    let cmd = table
        .resolve(args, |c| c.data.is_some())
        .map_err(|e| e.reply(args))?;
    if !cmd.arity_ok(args.len()) {
        return Err(errors::wrong_arity(&cmd.name));
    }
    cmd.data.ok_or_else(|| errors::unknown_command(args))
}

// ---- helpers shared by the command modules ----------------------------------

pub fn wrongtype() -> Reply {
    Reply::err(errors::WRONGTYPE)
}

/// The visible row of `key` (absent or expired: `None`).
pub fn row<'t>(txn: &'t Txn<'_>, db: u8, key: &[u8]) -> Option<&'t Row> {
    txn.keyspace().db(db).visible(key, txn.now_ms)
}

/// The visible row if it has type `kind`; `Err(WRONGTYPE)` if it has another.
pub fn typed<'t>(
    txn: &'t Txn<'_>,
    db: u8,
    key: &[u8],
    kind: Kind,
) -> Result<Option<&'t Row>, Reply> {
    match row(txn, db, key) {
        None => Ok(None),
        Some(r) if r.kind() == Some(kind) => Ok(Some(r)),
        Some(_) => Err(wrongtype()),
    }
}

/// Before writing to `key`: if it exists but has expired, delete it first (in
/// the same op) so the write starts from an empty key at every site.
pub fn expire_if_needed(txn: &mut Txn<'_>, db: u8, key: &Bytes) {
    let expired = match txn.keyspace().db(db).rows.get(key) {
        Some(r) => matches!(r.deadline(), Some(d) if d <= txn.now_ms),
        None => false,
    };
    if expired {
        txn.emit_expired(db, key);
        txn.stats_mut().expired_keys += 1;
    }
}

/// Parses an integer argument (Redis's "value is not an integer" error).
pub fn int_arg(b: &[u8]) -> Result<i64, Reply> {
    crate::redis::num::parse_int(b).ok_or_else(|| Reply::err(errors::NOT_INTEGER))
}

/// Case-insensitive comparison of an argument with an upper-case keyword.
pub fn is(arg: &[u8], kw: &str) -> bool {
    arg.eq_ignore_ascii_case(kw.as_bytes())
}

// ---- helpers for the hash, set and sorted-set commands ----------------------

/// Most elements HRANDFIELD / SRANDMEMBER / ZRANDMEMBER return for a negative
/// count (repeats allowed). Redis has no bound and builds the reply until memory
/// runs out; Chorus refuses larger counts with [`RANDOM_REPEATS_ERR`].
pub const RANDOM_REPEATS_MAX: u64 = 1 << 20;
pub const RANDOM_REPEATS_ERR: &str =
    "ERR count is out of range (Chorus returns at most 1048576 elements with repetitions)";

/// Deterministic stand-in for Redis's random choices: the engine draws no
/// randomness, so HRANDFIELD, SPOP, SRANDMEMBER and ZRANDMEMBER pick with a
/// splitmix64 stream seeded from the command's time (`txn.now_ms`) and an FNV-1a
/// hash of the key. The same call on the same state in the same millisecond
/// picks the same elements; picks index the collection in iteration order.
pub struct Dice {
    state: u64,
}

impl Dice {
    pub fn new(now_ms: u64, key: &[u8]) -> Dice {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in key {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Dice {
            state: h ^ now_ms.rotate_left(29),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }
}

/// Positions (into `n` elements in map order) that the `*RAND*` commands
/// return for `count`, as Redis chooses them: a negative count picks `-count`
/// times with repetitions; a positive one picks distinct elements, all of them
/// (in order) when `count >= n`. O(|count|) time and memory whatever `n`.
pub fn random_positions(dice: &mut Dice, n: usize, count: i64) -> Result<Vec<usize>, Reply> {
    if n == 0 || count == 0 {
        return Ok(Vec::new());
    }
    if count < 0 {
        let k = count.unsigned_abs();
        if k > RANDOM_REPEATS_MAX {
            return Err(Reply::err(RANDOM_REPEATS_ERR));
        }
        return Ok((0..k).map(|_| dice.below(n)).collect());
    }
    let k = count as u64;
    if k >= n as u64 {
        return Ok((0..n).collect());
    }
    // Partial Fisher-Yates over the virtual permutation 0..n, storing only
    // the slots it moved: the first k slots end up a uniform k-subset.
    let k = k as usize;
    let mut moved: std::collections::HashMap<usize, usize, foldhash::fast::FixedState> =
        std::collections::HashMap::with_capacity_and_hasher(2 * k, Default::default());
    let mut out = Vec::with_capacity(k);
    for i in 0..k {
        let j = i + dice.below(n - i);
        let at_i = moved.get(&i).copied().unwrap_or(i);
        let at_j = moved.get(&j).copied().unwrap_or(j);
        moved.insert(j, at_i);
        out.push(at_j);
    }
    Ok(out)
}

/// The count of HRANDFIELD / SRANDMEMBER / ZRANDMEMBER
/// (`getRangeLongFromObjectOrReply(-LONG_MAX, LONG_MAX)`).
pub fn rand_count_arg(b: &[u8]) -> Result<i64, Reply> {
    let v = int_arg(b)?;
    if v == i64::MIN {
        return Err(Reply::err(format!(
            "ERR value is out of range, value must between {} and {}",
            -i64::MAX,
            i64::MAX
        )));
    }
    Ok(v)
}

/// `getPositiveLongFromObjectOrReply`: a non-negative integer, else `msg` (or
/// Redis's default message).
pub fn positive_arg(b: &[u8], msg: Option<&str>) -> Result<i64, Reply> {
    match crate::redis::num::parse_int(b) {
        Some(v) if v >= 0 => Ok(v),
        _ => Err(Reply::err(
            msg.unwrap_or("ERR value is out of range, must be positive"),
        )),
    }
}

/// A SCAN-family cursor as Redis parses it (`strtoul`: a sign is allowed, a
/// leading space or trailing garbage is not, and the empty string is 0).
pub fn scan_cursor_arg(b: &[u8]) -> Result<u64, Reply> {
    let bad = || Reply::err("ERR invalid cursor");
    if b.first().is_some_and(|c| c_isspace(*c)) {
        return Err(bad());
    }
    let s = c_str(b);
    if s.is_empty() {
        // strtoul converts nothing and stops at the end: cursor 0.
        return Ok(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let mut v: u64 = 0;
    for &c in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((c - b'0') as u64))
            .ok_or_else(bad)?;
    }
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// Hashes and sorted sets of at most this many entries, whose fields, values
/// and members are at most [`LISTPACK_VALUE_MAX`] bytes, are listpacks in
/// Redis 7.0 (`hash-max-listpack-entries`, `zset-max-listpack-entries`), and
/// sets of at most [`INTSET_ENTRIES`] integers are intsets
/// (`set-max-intset-entries`): Redis scans those whole in one call, cursor 0,
/// and so does Chorus. Larger ones are scanned [`scan_window`] by window.
pub const LISTPACK_ENTRIES: usize = 128;
pub const LISTPACK_VALUE_MAX: usize = 64;
pub const INTSET_ENTRIES: usize = 512;

/// The options of HSCAN / SSCAN / ZSCAN (`args` after the cursor), validated
/// like Redis.
pub struct ScanOptions {
    /// `None`: match all.
    pub pattern: Option<Bytes>,
    /// Positions visited per call (COUNT, default 10).
    pub count: usize,
}

impl ScanOptions {
    pub fn parse(args: &[Bytes]) -> Result<ScanOptions, Reply> {
        let mut opts = ScanOptions {
            pattern: None,
            count: 10,
        };
        let mut i = 0;
        while i < args.len() {
            let more = args.len() - i >= 2;
            if is(&args[i], "COUNT") && more {
                let count = int_arg(&args[i + 1])?;
                if count < 1 {
                    return Err(Reply::err(errors::SYNTAX));
                }
                opts.count = usize::try_from(count).unwrap_or(usize::MAX);
            } else if is(&args[i], "MATCH") && more {
                let p = &args[i + 1];
                // A lone `*` matches everything, the empty string too.
                opts.pattern = (p.as_ref() != b"*").then(|| p.clone());
            } else {
                return Err(Reply::err(errors::SYNTAX));
            }
            i += 2;
        }
        Ok(opts)
    }

    /// True when `s` passes the MATCH pattern.
    pub fn matches(&self, s: &[u8]) -> bool {
        match &self.pattern {
            None => true,
            Some(p) => glob_match(p, s, false),
        }
    }
}

/// The positions one HSCAN/SSCAN/ZSCAN call visits in a collection's map of
/// `n` entries, and the cursor it returns (0: done).
///
/// A scan walks positions from the top down: cursor `c` means "positions
/// below `c` are still to visit" (the first call, cursor 0, starts at `n`).
/// The map only appends new entries at the top, and an entry only ever moves
/// down: `swap_remove` moves the last entry into a hole, `retain` and a
/// snapshot join keep the order (see `keyspace::value::Map`). So an entry
/// present for the whole scan is below the cursor until it is visited:
/// either it stays where it is, or it moves down (still below), or it was
/// the last entry and sat at or above the cursor, i.e. already visited.
/// Moves can only repeat entries, never skip one. Each call costs
/// O(`count`) whatever the size of the collection.
pub fn scan_window(cursor: u64, n: usize, count: usize) -> (std::ops::Range<usize>, u64) {
    let hi = match cursor {
        0 => n,
        c => usize::try_from(c).unwrap_or(usize::MAX).min(n),
    };
    let lo = hi.saturating_sub(count.max(1));
    (lo..hi, lo as u64)
}

/// A SCAN-family reply: the next cursor and the elements.
pub fn scan_reply(cursor: u64, items: Vec<Reply>) -> Reply {
    Reply::Array(vec![Reply::bulk(cursor.to_string()), Reply::Array(items)])
}

/// C's `isspace` in the "C" locale.
pub fn c_isspace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The bytes a C string function sees: up to the first NUL.
pub fn c_str(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// The exponent of a C float literal at `s[j]`, when `s[j]` is one of
/// `markers` and an optional sign and at least one digit follow (its value
/// saturates at ±2^40): `(exponent, index after it)`. Otherwise `(0, j)`:
/// the marker is not part of the number, as `strtod` reads it.
pub fn c_exponent(s: &[u8], j: usize, markers: &[u8]) -> (i64, usize) {
    if !s.get(j).is_some_and(|c| markers.contains(c)) {
        return (0, j);
    }
    let mut k = j + 1;
    let neg = s.get(k) == Some(&b'-');
    if matches!(s.get(k), Some(b'+' | b'-')) {
        k += 1;
    }
    if !s.get(k).is_some_and(|c| c.is_ascii_digit()) {
        return (0, j);
    }
    let mut e = 0i64;
    while let Some(&c) = s.get(k).filter(|c| c.is_ascii_digit()) {
        e = (e * 10 + (c - b'0') as i64).min(1 << 40);
        k += 1;
    }
    (if neg { -e } else { e }, k)
}

/// C `strtod` on `s`: `(value, bytes consumed, erange)`. Nothing converted is
/// `(0.0, 0, false)`. Accepts leading spaces, a sign, decimal and hex floats,
/// `inf`/`infinity` and `nan` in any case; `erange` is set when a finite
/// literal overflows to infinity or a non-zero one underflows to zero.
pub fn strtod(s: &[u8]) -> (f64, usize, bool) {
    let mut i = 0;
    while i < s.len() && c_isspace(s[i]) {
        i += 1;
    }
    let mut neg = false;
    if let Some(&c) = s.get(i) {
        if c == b'+' || c == b'-' {
            neg = c == b'-';
            i += 1;
        }
    }
    let sign = if neg { -1.0 } else { 1.0 };
    let rest = &s[i..];
    let starts =
        |kw: &str| rest.len() >= kw.len() && rest[..kw.len()].eq_ignore_ascii_case(kw.as_bytes());
    if starts("infinity") {
        return (sign * f64::INFINITY, i + 8, false);
    }
    if starts("inf") {
        return (sign * f64::INFINITY, i + 3, false);
    }
    if starts("nan") {
        let mut n = i + 3;
        if s.get(n) == Some(&b'(') {
            let mut j = n + 1;
            while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == b'_') {
                j += 1;
            }
            if s.get(j) == Some(&b')') {
                n = j + 1;
            }
        }
        return (f64::NAN, n, false);
    }
    if let Some((v, used, nonzero)) = starts("0x").then(|| hex_float(&rest[2..])).flatten() {
        let v = sign * v;
        let erange = v.is_infinite() || (v == 0.0 && nonzero);
        return (v, i + 2 + used, erange);
    }
    // Decimal: digits, optional fraction, optional exponent (taken only when it
    // has digits).
    let mut j = i;
    let mut mantissa_digits = 0;
    let mut nonzero = false;
    while j < s.len() && s[j].is_ascii_digit() {
        nonzero |= s[j] != b'0';
        mantissa_digits += 1;
        j += 1;
    }
    if s.get(j) == Some(&b'.') {
        j += 1;
        while j < s.len() && s[j].is_ascii_digit() {
            nonzero |= s[j] != b'0';
            mantissa_digits += 1;
            j += 1;
        }
    }
    if mantissa_digits == 0 {
        return (0.0, 0, false);
    }
    let j = c_exponent(s, j, b"eE").1;
    let text = std::str::from_utf8(&s[i..j]).unwrap_or("0");
    let v = sign * text.parse::<f64>().unwrap_or(0.0);
    let erange = v.is_infinite() || (v == 0.0 && nonzero);
    (v, j, erange)
}

/// The hex digits after `0x`: `(value, bytes used, any non-zero digit)`, or
/// `None` when no hex digit follows (strtod then reads just the `0`).
fn hex_float(s: &[u8]) -> Option<(f64, usize, bool)> {
    let mut j = 0;
    let mut v = 0.0f64;
    let mut exp: i32 = 0;
    let mut digits = 0;
    let mut nonzero = false;
    let mut frac = false;
    while j < s.len() {
        let c = s[j];
        if c == b'.' && !frac {
            frac = true;
        } else if let Some(d) = (c as char).to_digit(16) {
            nonzero |= d != 0;
            v = v * 16.0 + d as f64;
            if frac {
                exp = exp.saturating_sub(4);
            }
            digits += 1;
        } else {
            break;
        }
        j += 1;
    }
    if digits == 0 {
        return None;
    }
    let (e, end) = c_exponent(s, j, b"pP");
    let exp = (exp as i64 + e).clamp(-2200, 2200) as i32;
    Some((v * 2f64.powi(exp), end, nonzero))
}

/// A double argument as Redis's `getDoubleFromObject` reads it: the whole
/// argument, no leading space, no overflow or underflow to zero, not NaN
/// (`inf` and `-inf` are fine).
pub fn double_arg(b: &[u8]) -> Option<f64> {
    let (v, used, erange) = strtod(b);
    if b.is_empty()
        || c_isspace(b[0])
        || used != b.len()
        || (erange && (v.is_infinite() || v == 0.0))
        || v.is_nan()
    {
        return None;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(args: &[&str]) -> Vec<String> {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
        let cmd = find(&args[0]).expect("a data command");
        write_keys(cmd, &args)
            .into_iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn write_keys_follow_the_key_specs_and_the_moving_keys() {
        assert_eq!(keys_of(&["SET", "a", "1"]), ["a"]);
        assert_eq!(keys_of(&["MSET", "a", "1", "b", "2"]), ["a", "b"]);
        assert_eq!(keys_of(&["RENAME", "a", "b"]), ["a", "b"]);
        assert_eq!(keys_of(&["BLPOP", "a", "b", "0"]), ["a", "b"]);
        assert_eq!(keys_of(&["LMPOP", "2", "a", "b", "LEFT"]), ["a", "b"]);
        assert_eq!(keys_of(&["BZMPOP", "0", "1", "z", "MIN"]), ["z"]);
        assert_eq!(
            keys_of(&["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "d"]),
            ["g", "d"]
        );
        // A member named STORE is no option.
        assert_eq!(
            keys_of(&["GEORADIUSBYMEMBER", "g", "store", "1", "km"]),
            ["g"]
        );
    }
}
