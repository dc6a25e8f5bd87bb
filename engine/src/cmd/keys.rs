//! Key-space commands: DEL, EXISTS, TYPE, KEYS, SCAN, RANDOMKEY, RENAME,
//! COPY, MOVE, TOUCH, DUMP/RESTORE, the EXPIRE family, TTL family, PERSIST,
//! DBSIZE, FLUSHDB, FLUSHALL.
//!
//! DEL and FLUSH* are observed-remove: they remove what this site had seen;
//! writes made concurrently elsewhere survive. RENAME/COPY/MOVE read the
//! visible value and write it whole (`Effect::Replace`) at the destination.

use super::{expire_if_needed, int_arg, is, row, scan_cursor_arg, DataCommand, Dice};
use crate::engine::Txn;
use crate::keyspace::row::Row;
use crate::keyspace::value::Kind;
use crate::keyspace::DBS;
use crate::op::{Effect, Value};
use crate::redis::glob::glob_match;
use crate::reply::{errors, Reply};
use bytes::Bytes;

pub static COMMANDS: &[DataCommand] = &[
    DataCommand {
        name: "DEL",
        write: true,
        handler: del,
    },
    DataCommand {
        name: "UNLINK",
        write: true,
        handler: del,
    },
    DataCommand {
        name: "EXISTS",
        write: false,
        handler: exists,
    },
    DataCommand {
        name: "TOUCH",
        write: false,
        handler: exists,
    },
    DataCommand {
        name: "TYPE",
        write: false,
        handler: type_,
    },
    DataCommand {
        name: "KEYS",
        write: false,
        handler: keys,
    },
    DataCommand {
        name: "SCAN",
        write: false,
        handler: scan,
    },
    DataCommand {
        name: "RANDOMKEY",
        write: false,
        handler: randomkey,
    },
    DataCommand {
        name: "RENAME",
        write: true,
        handler: rename,
    },
    DataCommand {
        name: "RENAMENX",
        write: true,
        handler: renamenx,
    },
    DataCommand {
        name: "COPY",
        write: true,
        handler: copy,
    },
    DataCommand {
        name: "MOVE",
        write: true,
        handler: move_,
    },
    DataCommand {
        name: "DUMP",
        write: false,
        handler: dump,
    },
    DataCommand {
        name: "RESTORE",
        write: true,
        handler: restore,
    },
    DataCommand {
        name: "EXPIRE",
        write: true,
        handler: expire,
    },
    DataCommand {
        name: "PEXPIRE",
        write: true,
        handler: pexpire,
    },
    DataCommand {
        name: "EXPIREAT",
        write: true,
        handler: expireat,
    },
    DataCommand {
        name: "PEXPIREAT",
        write: true,
        handler: pexpireat,
    },
    DataCommand {
        name: "TTL",
        write: false,
        handler: ttl,
    },
    DataCommand {
        name: "PTTL",
        write: false,
        handler: pttl,
    },
    DataCommand {
        name: "EXPIRETIME",
        write: false,
        handler: expiretime,
    },
    DataCommand {
        name: "PEXPIRETIME",
        write: false,
        handler: pexpiretime,
    },
    DataCommand {
        name: "PERSIST",
        write: true,
        handler: persist,
    },
    DataCommand {
        name: "DBSIZE",
        write: false,
        handler: dbsize,
    },
    DataCommand {
        name: "FLUSHDB",
        write: true,
        handler: flushdb,
    },
    DataCommand {
        name: "FLUSHALL",
        write: true,
        handler: flushall,
    },
];

fn del(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let mut n = 0;
    for k in &a[1..] {
        expire_if_needed(txn, db, k);
        if row(txn, db, k).is_some() {
            txn.emit(db, k, Effect::Del);
            n += 1;
        }
    }
    Reply::Int(n)
}

fn exists(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    Reply::Int(a[1..].iter().filter(|k| row(txn, db, k).is_some()).count() as i64)
}

fn type_(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let name = row(txn, db, &a[1])
        .and_then(|r| r.kind())
        .map_or("none", |k| k.name());
    Reply::Simple(name.to_string())
}

fn keys(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let pat = &a[1];
    let all = pat.as_ref() == b"*";
    let d = txn.keyspace().db(db);
    let mut out = Vec::new();
    for (k, _) in d.rows.iter() {
        if d.visible(k, txn.now_ms).is_some() && (all || glob_match(pat, k, false)) {
            out.push(Reply::Bulk(k.clone()));
        }
    }
    Reply::Array(out)
}

fn kind_of_name(name: &[u8]) -> Option<Kind> {
    [Kind::String, Kind::Hash, Kind::Set, Kind::ZSet, Kind::List]
        .into_iter()
        .find(|k| name.eq_ignore_ascii_case(k.name().as_bytes()))
}

fn scan(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    // Any cursor strtoul accepts is valid (`SCAN -1` is ULONG_MAX); one past
    // the table's end finishes the scan (cursor 0), as Redis's last bucket.
    let cursor = match scan_cursor_arg(&a[1]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut pattern: Option<&Bytes> = None;
    let mut count = 10usize;
    let mut type_filter: Option<Option<Kind>> = None;
    let mut i = 2;
    while i < a.len() {
        let Some(v) = a.get(i + 1) else {
            return Reply::err(errors::SYNTAX);
        };
        if is(&a[i], "MATCH") {
            // A lone `*` matches everything, the empty key too (the glob's
            // `*` needs a byte), as in Redis's scanGenericCommand.
            pattern = (v.as_ref() != b"*").then_some(v);
        } else if is(&a[i], "COUNT") {
            match int_arg(v) {
                Ok(c) if c >= 1 => count = c as usize,
                Ok(_) => return Reply::err(errors::SYNTAX),
                Err(e) => return e,
            }
        } else if is(&a[i], "TYPE") {
            type_filter = Some(kind_of_name(v));
        } else {
            return Reply::err(errors::SYNTAX);
        }
        i += 2;
    }
    let d = txn.keyspace().db(db);
    let now = txn.now_ms;
    let mut out = Vec::new();
    let next = d.rows.scan(cursor, count, |k, _| {
        let Some(r) = d.visible(k, now) else { return };
        if let Some(p) = pattern {
            if !glob_match(p, k, false) {
                return;
            }
        }
        if let Some(t) = type_filter {
            if r.kind() != t {
                return;
            }
        }
        out.push(Reply::Bulk(k.clone()));
    });
    Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(out)])
}

/// Slab slots RANDOMKEY probes before it walks from one to the next key.
const RANDOMKEY_PROBES: usize = 64;
/// Keys RANDOMKEY tries before it gives up on finding one not expired.
const RANDOMKEY_TRIES: u64 = 100;

fn randomkey(txn: &mut Txn<'_>, db: u8, _a: &[Bytes]) -> Reply {
    // No randomness inside the engine: the positions come from the clock
    // (see `Dice`). A probe of a random slab slot is O(1) and finds a key
    // with the slab's occupancy as its odds, so a few probes suffice unless
    // most slots are free (after mass deletion); then a walk from a random
    // slot to the next key bounds the work.
    let d = txn.keyspace().db(db);
    if d.rows.is_empty() {
        return Reply::Nil;
    }
    let now = txn.now_ms;
    let mut dice = Dice::new(now, b"RANDOMKEY");
    for _ in 0..RANDOMKEY_PROBES {
        if let Some((k, _)) = d.rows.entry_in_slot(dice.next_u64()) {
            if d.visible(k, now).is_some() {
                return Reply::Bulk(k.clone());
            }
        }
    }
    for _ in 0..(d.rows.len() as u64).min(RANDOMKEY_TRIES) {
        if let Some((k, _)) = d.rows.entry_near(dice.next_u64()) {
            if d.visible(k, now).is_some() {
                return Reply::Bulk(k.clone());
            }
        }
    }
    Reply::Nil
}

/// The visible value of a row, whole.
pub fn visible_value(r: &Row) -> Option<Value> {
    Some(match r.kind()? {
        Kind::String => Value::Str(r.string_value()?),
        Kind::Hash => {
            let h = r.hash.as_ref()?;
            Value::Hash(
                h.fields
                    .iter()
                    .filter_map(|(f, c)| Some((f.clone(), c.value()?)))
                    .collect(),
            )
        }
        Kind::Set => Value::Set(r.set.as_ref()?.members.keys().cloned().collect()),
        Kind::ZSet => Value::ZSet(
            r.zset
                .as_ref()?
                .index
                .iter()
                .map(|(s, m)| (m.clone(), s.0))
                .collect(),
        ),
        Kind::List => Value::List(r.list.as_ref()?.iter().map(|(_, v)| v.clone()).collect()),
    })
}

/// What `OBJECT ENCODING` needs of a visible value to name the encoding
/// Redis would use for it: its type and, of its first `limit + 1`
/// elements, how many there are, the longest and whether all are integers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    pub kind: Kind,
    /// Elements seen, at most `limit + 1`; a string's length in bytes.
    pub elements: usize,
    /// Longest field, value or member seen, in bytes.
    pub longest: usize,
    /// Every member seen (a set's) is an integer, or the string is one,
    /// as Redis's `string2ll` reads it.
    pub integers: bool,
}

/// The [`Shape`] of a row's visible value, looking at no more than
/// `limit + 1` elements (an encoding changes past a count, so more need not
/// be seen): O(limit), whatever the size of the value.
pub fn shape(r: &Row, limit: usize) -> Option<Shape> {
    let kind = r.kind()?;
    let is_int = |b: &[u8]| crate::redis::num::parse_int(b).is_some();
    let mut s = Shape {
        kind,
        elements: 0,
        longest: 0,
        integers: true,
    };
    let see = |s: &mut Shape, len: usize, int: bool| {
        s.elements += 1;
        s.longest = s.longest.max(len);
        s.integers &= int;
    };
    let cap = limit.saturating_add(1);
    match kind {
        Kind::String => {
            let v = r.string_value()?;
            s.elements = v.len();
            s.longest = v.len();
            s.integers = v.len() <= 20 && is_int(&v);
        }
        Kind::Hash => {
            for (f, c) in r.hash.as_ref()?.fields.iter() {
                if s.elements >= cap {
                    break;
                }
                if let Some(v) = c.value() {
                    see(&mut s, f.len().max(v.len()), false);
                }
            }
        }
        Kind::Set => {
            for m in r.set.as_ref()?.members.keys().take(cap) {
                see(&mut s, m.len(), is_int(m));
            }
        }
        Kind::ZSet => {
            for (_, m) in r.zset.as_ref()?.index.iter().take(cap) {
                see(&mut s, m.len(), false);
            }
        }
        Kind::List => {
            s.elements = r.list.as_ref()?.len().min(cap);
        }
    }
    Some(s)
}

/// Bytes a heap `Bytes` of `len` bytes costs: its handle and its data.
fn bytes_cost(len: usize) -> usize {
    std::mem::size_of::<Bytes>() + len
}

/// What one entry of an insertion-ordered map costs beyond its key and
/// value: the stored hash and the index slot with its control byte.
const MAP_ENTRY_OVERHEAD: usize = 2 * std::mem::size_of::<usize>() + 1;

/// The average of `f` over the first `samples` items (all if 0), times
/// `count`: Redis's way of sizing the elements of a big value.
fn sampled<I: Iterator>(
    items: I,
    samples: usize,
    count: usize,
    f: impl Fn(I::Item) -> usize,
) -> usize {
    let take = if samples == 0 { usize::MAX } else { samples };
    let (mut seen, mut sum) = (0usize, 0usize);
    for item in items.take(take) {
        seen += 1;
        sum += f(item);
    }
    match (sum.checked_div(seen), sum.checked_rem(seen)) {
        (Some(avg), Some(rem)) => avg * count + rem * count / seen,
        _ => 0,
    }
}

/// `MEMORY USAGE`: an estimate of the bytes a key and its value hold in
/// Chorus's structures: the row, the key, the table slot, the expiry, and
/// per type the slot, every map entry (by capacity) and the element data,
/// sampled on `samples` elements (0: all) and scaled to the count, as
/// Redis does. The CRDT metadata inside an entry (stamps, dots) is counted
/// at its inline size; spilled dots and counter entries are not.
pub fn memory_usage(key: &[u8], r: &Row, samples: usize) -> usize {
    use crate::keyspace::value::{Cell, Score, ZMember};
    use std::mem::size_of;
    let mut total = size_of::<Row>() + bytes_cost(key.len()) + MAP_ENTRY_OVERHEAD;
    if r.expiry.is_some() {
        total += size_of::<crate::crdt::register::MvReg<Option<u64>>>();
    }
    if let Some(c) = &r.string {
        total += size_of::<Cell>() + c.value().map_or(0, |v| v.len());
    }
    if let Some(h) = &r.hll {
        total += size_of::<crate::keyspace::value::HllSlot>()
            + h.entries.capacity() * size_of::<crate::keyspace::value::hll::HllEntry>()
            + h.len() * size_of::<(u16, u8)>();
    }
    if let Some(h) = &r.hash {
        let entry = size_of::<Bytes>() + size_of::<Cell>() + MAP_ENTRY_OVERHEAD;
        total += size_of::<crate::keyspace::value::HashSlot>() + h.fields.capacity() * entry;
        total += sampled(h.fields.iter(), samples, h.fields.len(), |(f, c)| {
            f.len() + c.value().map_or(0, |v| v.len())
        });
    }
    if let Some(set) = &r.set {
        let entry = size_of::<Bytes>() + size_of::<crate::crdt::Dots>() + MAP_ENTRY_OVERHEAD;
        total += size_of::<crate::keyspace::value::SetSlot>() + set.members.capacity() * entry;
        total += sampled(set.members.keys(), samples, set.members.len(), |m| m.len());
    }
    if let Some(z) = &r.zset {
        let entry = size_of::<Bytes>() + size_of::<ZMember>() + MAP_ENTRY_OVERHEAD;
        // The rank index holds (score, member) again; the member's data is shared.
        let ranked = size_of::<(Score, Bytes)>() + size_of::<usize>();
        total += size_of::<crate::keyspace::value::ZSetSlot>()
            + z.members.capacity() * entry
            + z.index.len() * ranked;
        total += sampled(z.members.keys(), samples, z.members.len(), |m| m.len());
    }
    if let Some(l) = &r.list {
        total += l.bytes();
    }
    total
}

/// Writes `value` (and deadline) whole at `dst` in `db`.
fn write_value(txn: &mut Txn<'_>, db: u8, dst: &Bytes, value: Value, deadline: Option<u64>) {
    expire_if_needed(txn, db, dst);
    txn.emit(
        db,
        dst,
        Effect::Replace {
            value,
            keep_ttl: false,
        },
    );
    if let Some(d) = deadline {
        txn.emit(db, dst, Effect::Expire(Some(d)));
    }
}

fn rename_common(txn: &mut Txn<'_>, db: u8, a: &[Bytes], nx: bool) -> Reply {
    let (src, dst) = (&a[1], &a[2]);
    let Some(r) = row(txn, db, src) else {
        return Reply::err(errors::NO_SUCH_KEY);
    };
    let deadline = r.deadline();
    let Some(value) = visible_value(r) else {
        return Reply::err(errors::NO_SUCH_KEY);
    };
    if src == dst {
        return if nx { Reply::Int(0) } else { Reply::Ok };
    }
    if nx && row(txn, db, dst).is_some() {
        return Reply::Int(0);
    }
    txn.emit(db, src, Effect::Del);
    write_value(txn, db, dst, value, deadline);
    if nx {
        Reply::Int(1)
    } else {
        Reply::Ok
    }
}

fn rename(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    rename_common(txn, db, a, false)
}

fn renamenx(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    rename_common(txn, db, a, true)
}

fn db_arg(b: &[u8]) -> Result<u8, Reply> {
    match crate::redis::num::parse_int(b) {
        Some(n) if (0..DBS as i64).contains(&n) => Ok(n as u8),
        Some(_) => Err(Reply::err(errors::DB_INDEX)),
        None => Err(Reply::err(errors::NOT_INTEGER)),
    }
}

fn copy(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let (src, dst) = (&a[1], &a[2]);
    let mut dst_db = db;
    let mut replace = false;
    let mut i = 3;
    while i < a.len() {
        if is(&a[i], "REPLACE") {
            replace = true;
            i += 1;
        } else if is(&a[i], "DB") && i + 1 < a.len() {
            match db_arg(&a[i + 1]) {
                Ok(d) => dst_db = d,
                Err(e) => return e,
            }
            i += 2;
        } else {
            return Reply::err(errors::SYNTAX);
        }
    }
    if src == dst && db == dst_db {
        return Reply::err("ERR source and destination objects are the same");
    }
    let Some(r) = row(txn, db, src) else {
        return Reply::Int(0);
    };
    let deadline = r.deadline();
    let Some(value) = visible_value(r) else {
        return Reply::Int(0);
    };
    if !replace && row(txn, dst_db, dst).is_some() {
        return Reply::Int(0);
    }
    write_value(txn, dst_db, dst, value, deadline);
    Reply::Int(1)
}

fn move_(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let key = &a[1];
    let dst_db = match db_arg(&a[2]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    if dst_db == db {
        return Reply::err("ERR source and destination objects are the same");
    }
    let Some(r) = row(txn, db, key) else {
        return Reply::Int(0);
    };
    let deadline = r.deadline();
    let Some(value) = visible_value(r) else {
        return Reply::Int(0);
    };
    if row(txn, dst_db, key).is_some() {
        return Reply::Int(0);
    }
    txn.emit(db, key, Effect::Del);
    write_value(txn, dst_db, key, value, deadline);
    Reply::Int(1)
}

/// DUMP payload: `CHORUS01 | postcard(Value) | crc32 LE`.
const DUMP_MAGIC: &[u8] = b"CHORUS01";

fn dump(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let Some(value) = row(txn, db, &a[1]).and_then(visible_value) else {
        return Reply::Nil;
    };
    let mut out = DUMP_MAGIC.to_vec();
    match postcard::to_extend(&value, out) {
        Ok(mut v) => {
            let crc = crc32fast::hash(&v);
            v.extend_from_slice(&crc.to_le_bytes());
            Reply::bulk(v)
        }
        Err(_) => {
            out = Vec::new();
            Reply::bulk(out)
        }
    }
}

fn decode_dump(p: &[u8]) -> Option<Value> {
    if p.len() < DUMP_MAGIC.len() + 4 || !p.starts_with(DUMP_MAGIC) {
        return None;
    }
    let (body, crc) = p.split_at(p.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    postcard::from_bytes(&body[DUMP_MAGIC.len()..]).ok()
}

fn restore(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let key = &a[1];
    let ttl = match int_arg(&a[2]) {
        Ok(t) if t >= 0 => t,
        Ok(_) => return Reply::err("ERR Invalid TTL value, must be >= 0"),
        Err(e) => return e,
    };
    let mut replace = false;
    let mut absttl = false;
    let mut i = 4;
    while i < a.len() {
        if is(&a[i], "REPLACE") {
            replace = true;
            i += 1;
        } else if is(&a[i], "ABSTTL") {
            absttl = true;
            i += 1;
        } else if (is(&a[i], "IDLETIME") || is(&a[i], "FREQ")) && i + 1 < a.len() {
            if let Err(e) = int_arg(&a[i + 1]) {
                return e;
            }
            i += 2;
        } else {
            return Reply::err(errors::SYNTAX);
        }
    }
    if !replace && row(txn, db, key).is_some() {
        return Reply::err("BUSYKEY Target key name already exists.");
    }
    let Some(value) = decode_dump(&a[3]) else {
        return Reply::err("ERR DUMP payload version or checksum are wrong");
    };
    let deadline = match (ttl, absttl) {
        (0, _) => None,
        (t, true) => Some(t as u64),
        (t, false) => Some(txn.now_ms.saturating_add(t as u64)),
    };
    write_value(txn, db, key, value, deadline);
    Reply::Ok
}

/// EXPIRE family: `unit_ms` is 1000 for seconds; `absolute` for *AT.
fn expire_generic(
    txn: &mut Txn<'_>,
    db: u8,
    a: &[Bytes],
    unit_ms: i64,
    absolute: bool,
    cmd: &str,
) -> Reply {
    let key = &a[1];
    let n = match int_arg(&a[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for o in &a[3..] {
        if is(o, "NX") {
            nx = true;
        } else if is(o, "XX") {
            xx = true;
        } else if is(o, "GT") {
            gt = true;
        } else if is(o, "LT") {
            lt = true;
        } else {
            return Reply::Error(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(o)
            ));
        }
    }
    if nx && (xx || gt || lt) {
        return Reply::err("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return Reply::err("ERR GT and LT options at the same time are not compatible");
    }
    let invalid = || Reply::Error(errors::INVALID_EXPIRE.replace("{}", cmd));
    let Some(ms) = n.checked_mul(unit_ms) else {
        return invalid();
    };
    let deadline = if absolute {
        ms
    } else {
        match ms.checked_add(txn.now_ms as i64) {
            Some(d) => d,
            None => return invalid(),
        }
    };
    expire_if_needed(txn, db, key);
    let Some(r) = row(txn, db, key) else {
        return Reply::Int(0);
    };
    let cur = r.deadline();
    if nx && cur.is_some() || xx && cur.is_none() {
        return Reply::Int(0);
    }
    if gt {
        // No TTL counts as infinite: nothing is greater.
        match cur {
            None => return Reply::Int(0),
            Some(c) if deadline <= c as i64 => return Reply::Int(0),
            _ => {}
        }
    }
    if lt {
        if let Some(c) = cur {
            if deadline >= c as i64 {
                return Reply::Int(0);
            }
        }
    }
    if deadline <= txn.now_ms as i64 {
        // A deadline in the past deletes the key at once, as Redis does.
        txn.emit(db, key, Effect::Del);
        return Reply::Int(1);
    }
    txn.emit(db, key, Effect::Expire(Some(deadline as u64)));
    Reply::Int(1)
}

fn expire(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    expire_generic(txn, db, a, 1000, false, "expire")
}
fn pexpire(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    expire_generic(txn, db, a, 1, false, "pexpire")
}
fn expireat(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    expire_generic(txn, db, a, 1000, true, "expireat")
}
fn pexpireat(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    expire_generic(txn, db, a, 1, true, "pexpireat")
}

/// -2 missing, -1 no TTL, else f(deadline).
fn ttl_generic(txn: &mut Txn<'_>, db: u8, key: &[u8], f: impl Fn(u64, u64) -> i64) -> Reply {
    match row(txn, db, key) {
        None => Reply::Int(-2),
        Some(r) => match r.deadline() {
            None => Reply::Int(-1),
            Some(d) => Reply::Int(f(d, txn.now_ms)),
        },
    }
}

fn ttl(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    ttl_generic(txn, db, &a[1], |d, now| {
        ((d.saturating_sub(now) + 500) / 1000) as i64
    })
}
fn pttl(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    ttl_generic(txn, db, &a[1], |d, now| d.saturating_sub(now) as i64)
}
fn expiretime(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    ttl_generic(txn, db, &a[1], |d, _| (d / 1000) as i64)
}
fn pexpiretime(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    ttl_generic(txn, db, &a[1], |d, _| d as i64)
}

fn persist(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    let key = &a[1];
    expire_if_needed(txn, db, key);
    match row(txn, db, key) {
        Some(r) if r.deadline().is_some() => {
            txn.emit(db, key, Effect::Expire(None));
            Reply::Int(1)
        }
        _ => Reply::Int(0),
    }
}

fn dbsize(txn: &mut Txn<'_>, db: u8, _a: &[Bytes]) -> Reply {
    Reply::Int(txn.keyspace().db(db).keys() as i64)
}

fn flush_mode_ok(a: &[Bytes]) -> bool {
    match a.len() {
        1 => true,
        2 => is(&a[1], "ASYNC") || is(&a[1], "SYNC"),
        _ => false,
    }
}

fn flushdb(txn: &mut Txn<'_>, db: u8, a: &[Bytes]) -> Reply {
    if !flush_mode_ok(a) {
        return Reply::err(errors::SYNTAX);
    }
    if !txn.keyspace().db(db).is_empty() {
        txn.emit(db, &Bytes::new(), Effect::FlushDb);
    }
    Reply::Ok
}

fn flushall(txn: &mut Txn<'_>, _db: u8, a: &[Bytes]) -> Reply {
    if !flush_mode_ok(a) {
        return Reply::err(errors::SYNTAX);
    }
    if (0..DBS as u8).any(|d| !txn.keyspace().db(d).is_empty()) {
        txn.emit(0, &Bytes::new(), Effect::FlushAll);
    }
    Reply::Ok
}
