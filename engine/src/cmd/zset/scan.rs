//! ZRANDMEMBER and ZSCAN: the commands that visit the member table (not the
//! score index), with ZSCAN's listpack-style score formatting.

use super::range::ZSET_LISTPACK_ENTRIES;
use super::{scored_reply, zset_of};
use crate::cmd::{
    is, rand_count_arg, random_positions, scan_cursor_arg, scan_reply, scan_window, Dice,
    ScanOptions, LISTPACK_VALUE_MAX,
};
use crate::engine::Txn;
use crate::keyspace::value::ZSetSlot;
use crate::redis::num;
use crate::reply::{errors, Reply};
use bytes::Bytes;

// ---- ZRANDMEMBER -----------------------------------------------------------------

pub(super) fn zrandmember(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let mut dice = Dice::new(txn.now_ms, key);
    if args.len() == 2 {
        return match zset_of(txn, db, key) {
            Err(e) => e,
            Ok(None) => Reply::Nil,
            Ok(Some(z)) => z
                .members
                .get_index(dice.below(z.members.len()))
                .map_or(Reply::Nil, |(m, _)| Reply::Bulk(m.clone())),
        };
    }
    let count = match rand_count_arg(&args[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let withscores = match args.len() {
        3 => false,
        4 if is(&args[3], "WITHSCORES") => true,
        _ => return Reply::err(errors::SYNTAX),
    };
    if withscores && !(-i64::MAX / 2..=i64::MAX / 2).contains(&count) {
        return Reply::err("ERR value is out of range");
    }
    let z = match zset_of(txn, db, key) {
        Err(e) => return e,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(z)) => z,
    };
    match random_positions(&mut dice, z.members.len(), count) {
        Err(e) => e,
        Ok(picks) => scored_reply(
            picks
                .into_iter()
                .filter_map(|i| {
                    z.members
                        .get_index(i)
                        .map(|(m, zm)| (m.clone(), zm.score()))
                })
                .collect(),
            withscores,
        ),
    }
}

// ---- ZSCAN --------------------------------------------------------------------------

/// A score as Redis 7.0's `d2string` writes it into a small (listpack) sorted
/// set, which is how ZSCAN shows it: integral values up to 2^62 in full,
/// anything else as `%.17g`.
pub(super) fn d2string(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let bound = (i64::MAX / 2) as f64;
    if v.is_finite() && v >= -bound && v <= bound && v.fract() == 0.0 {
        return (v as i64).to_string();
    }
    num::format_double(v)
}

/// A sorted set Redis 7.0 keeps as a listpack (and scans whole).
fn is_listpack(z: &ZSetSlot) -> bool {
    z.members.len() <= ZSET_LISTPACK_ENTRIES
        && z.members.keys().all(|m| m.len() <= LISTPACK_VALUE_MAX)
}

pub(super) fn zscan(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let cursor = match scan_cursor_arg(&args[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let z = match zset_of(txn, db, &args[1]) {
        Err(e) => return e,
        Ok(None) => return scan_reply(0, Vec::new()),
        Ok(Some(z)) => z,
    };
    let opts = match ScanOptions::parse(&args[3..]) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let n = z.members.len();
    let (window, next) = if is_listpack(z) {
        (0..n, 0)
    } else {
        scan_window(cursor, n, opts.count)
    };
    let mut out = Vec::new();
    for (m, zm) in window.filter_map(|i| z.members.get_index(i)) {
        if opts.matches(m) {
            out.push(Reply::Bulk(m.clone()));
            out.push(Reply::Bulk(Bytes::from(d2string(zm.score()))));
        }
    }
    scan_reply(next, out)
}
