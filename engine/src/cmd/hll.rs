//! HyperLogLog commands (Redis 7.0): PFADD, PFCOUNT, PFMERGE, PFSELFTEST,
//! PFDEBUG, with [`crate::redis::hll`]'s port of Redis's algorithm.
//!
//! An HLL key is a string to clients. A key written by PFADD or PFMERGE
//! holds registers (`keyspace::value::hll`) and shows Redis's encoding of
//! them; a string key that holds HLL bytes (a `SET` of what `GET` gave) is
//! read as Redis reads it, and the first PFADD or PFMERGE that raises a
//! register of it turns it into registers (the op carries all of them).

use super::{expire_if_needed, is, typed};
use crate::engine::Txn;
use crate::keyspace::value::{HllSlot, Kind};
use crate::op::Effect;
use crate::redis::hll::{self, Registers, REGISTERS};
use crate::reply::Reply;
use bytes::Bytes;

pub static COMMANDS: &[super::DataCommand] = &[
    super::DataCommand {
        name: "PFADD",
        write: true,
        handler: pfadd,
    },
    super::DataCommand {
        name: "PFCOUNT",
        write: false,
        handler: pfcount,
    },
    super::DataCommand {
        name: "PFMERGE",
        write: true,
        handler: pfmerge,
    },
    super::DataCommand {
        name: "PFSELFTEST",
        write: false,
        handler: pfselftest,
    },
    super::DataCommand {
        name: "PFDEBUG",
        write: false,
        handler: pfdebug,
    },
];

/// What an HLL key holds.
enum Held<'t> {
    Registers(&'t HllSlot),
    /// A string with a valid HLL header (its registers not read yet).
    Bytes(Bytes),
}

/// The HLL at `key` (`isHLLObjectOrReply`): WRONGTYPE for another type,
/// Redis's "not a valid HyperLogLog" for a string without an HLL header.
fn held<'t>(txn: &'t Txn<'_>, db: u8, key: &[u8]) -> Result<Option<Held<'t>>, Reply> {
    let Some(row) = typed(txn, db, key, Kind::String)? else {
        return Ok(None);
    };
    if let Some(h) = row.visible_hll() {
        return Ok(Some(Held::Registers(h)));
    }
    match row.string_value() {
        Some(s) if hll::header_ok(&s) => Ok(Some(Held::Bytes(s))),
        _ => Err(Reply::err(hll::ERR_INVALID_HLL)),
    }
}

fn corrupt() -> Reply {
    Reply::err(hll::ERR_CORRUPT)
}

/// Every register of a held HLL (`hllMerge`'s input).
fn registers_of(h: &Held<'_>) -> Result<Box<Registers>, Reply> {
    match h {
        Held::Registers(s) => Ok(s.registers()),
        Held::Bytes(b) => hll::decode(b).map(|p| p.registers).map_err(|_| corrupt()),
    }
}

/// The nonzero registers of `regs` as pairs.
fn pairs_of(regs: &Registers) -> Vec<(u16, u8)> {
    regs.iter()
        .enumerate()
        .filter(|(_, &r)| r != 0)
        .map(|(i, &r)| (i as u16, r))
        .collect()
}

fn pfadd(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let hashed = args[2..].iter().map(|e| hll::pat_len(e));
    let mut replace = false;
    let raised: Vec<(u16, u8)> = match held(txn, db, key) {
        Err(e) => return e,
        // A new key: created even with no element (reply 1).
        Ok(None) => {
            let regs = crate::keyspace::value::hll::normalize(&hashed.collect::<Vec<_>>());
            expire_if_needed(txn, db, key);
            txn.emit(
                db,
                key,
                Effect::HllRaise {
                    regs,
                    replace: false,
                },
            );
            return Reply::Int(1);
        }
        Ok(Some(Held::Registers(s))) => {
            let mut up: Vec<(u16, u8)> = hashed.filter(|&(i, r)| r > s.get(i)).collect();
            up = crate::keyspace::value::hll::normalize(&up);
            up
        }
        Ok(Some(Held::Bytes(b))) => {
            let Ok(mut parsed) = hll::decode(&b) else {
                return corrupt();
            };
            let mut changed = false;
            for (i, r) in hashed {
                let slot = &mut parsed.registers[usize::from(i)];
                if r > *slot {
                    *slot = r;
                    changed = true;
                }
            }
            if !changed {
                return Reply::Int(0);
            }
            // The string becomes registers: the op carries every one.
            replace = true;
            pairs_of(&parsed.registers)
        }
    };
    if raised.is_empty() {
        return Reply::Int(0);
    }
    expire_if_needed(txn, db, key);
    txn.emit(
        db,
        key,
        Effect::HllRaise {
            regs: raised,
            replace,
        },
    );
    Reply::Int(1)
}

fn pfcount(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    if args.len() == 2 {
        return match held(txn, db, &args[1]) {
            Err(e) => e,
            Ok(None) => Reply::Int(0),
            Ok(Some(Held::Registers(s))) => Reply::Int(s.count() as i64),
            Ok(Some(Held::Bytes(b))) => match hll::cached_card(&b) {
                // Redis trusts a valid cached cardinality.
                Some(c) => Reply::Int(c as i64),
                None => match hll::decode(&b) {
                    Ok(p) => Reply::Int(hll::count(&p.registers) as i64),
                    Err(_) => corrupt(),
                },
            },
        };
    }
    // Many keys: the count of their union, nothing written.
    let mut max: Box<Registers> = Box::new([0; REGISTERS]);
    for key in &args[1..] {
        let regs = match held(txn, db, key) {
            Err(e) => return e,
            Ok(None) => continue,
            Ok(Some(h)) => match registers_of(&h) {
                Ok(r) => r,
                Err(e) => return e,
            },
        };
        max_into(&mut max, &regs);
    }
    Reply::Int(hll::count(&max) as i64)
}

fn max_into(max: &mut Registers, regs: &Registers) {
    for (m, &r) in max.iter_mut().zip(regs.iter()) {
        *m = (*m).max(r);
    }
}

fn pfmerge(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let dest = &args[1];
    let mut max: Box<Registers> = Box::new([0; REGISTERS]);
    // The destination is a source too, as in Redis.
    let mut dest_regs: Option<Box<Registers>> = None;
    let mut dest_is_string = false;
    for (j, key) in args[1..].iter().enumerate() {
        let h = match held(txn, db, key) {
            Err(e) => return e,
            Ok(None) => continue,
            Ok(Some(h)) => h,
        };
        let regs = match registers_of(&h) {
            Ok(r) => r,
            Err(e) => return e,
        };
        max_into(&mut max, &regs);
        if j == 0 {
            dest_is_string = matches!(h, Held::Bytes(_));
            dest_regs = Some(regs);
        }
    }
    let raised: Vec<(u16, u8)> = match &dest_regs {
        Some(d) if !dest_is_string => pairs_of(&max)
            .into_iter()
            .filter(|&(i, r)| r > d[usize::from(i)])
            .collect(),
        _ => pairs_of(&max),
    };
    if dest_regs.is_none() || dest_is_string || !raised.is_empty() {
        expire_if_needed(txn, db, dest);
        txn.emit(
            db,
            dest,
            Effect::HllRaise {
                regs: raised,
                replace: dest_is_string,
            },
        );
    }
    Reply::Ok
}

fn pfselftest(_txn: &mut Txn<'_>, _db: u8, _args: &[Bytes]) -> Reply {
    match hll::selftest() {
        Ok(()) => Reply::Ok,
        Err(e) => Reply::err(e),
    }
}

fn pfdebug(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    let subname = String::from_utf8_lossy(sub);
    let h = match held(txn, db, &args[2]) {
        Err(e) => return e,
        Ok(None) => return Reply::err("ERR The specified key does not exist"),
        Ok(Some(h)) => h,
    };
    // The bytes the key shows: the encoding of its registers, or the string.
    let shown: Bytes = match &h {
        Held::Registers(s) => Bytes::from(hll::encode(&s.registers())),
        Held::Bytes(b) => b.clone(),
    };
    let arity = || {
        Reply::err(format!(
            "ERR Wrong number of arguments for the '{subname}' subcommand"
        ))
    };
    if is(sub, "getreg") {
        if args.len() != 3 {
            return arity();
        }
        match registers_of(&h) {
            Ok(regs) => Reply::Array(regs.iter().map(|&r| Reply::Int(i64::from(r))).collect()),
            Err(e) => e,
        }
    } else if is(sub, "decode") {
        if args.len() != 3 {
            return arity();
        }
        if shown[4] != hll::SPARSE {
            return Reply::err("ERR HLL encoding is not sparse");
        }
        Reply::bulk(hll::describe_sparse(&shown))
    } else if is(sub, "encoding") {
        if args.len() != 3 {
            return arity();
        }
        Reply::Simple(
            if shown[4] == hll::SPARSE {
                "sparse"
            } else {
                "dense"
            }
            .into(),
        )
    } else if is(sub, "todense") {
        if args.len() != 3 {
            return arity();
        }
        // The encoding Chorus shows is a function of the registers, so
        // nothing is converted: the reply says whether Redis would have.
        if registers_of(&h).is_err() {
            return corrupt();
        }
        Reply::Int(i64::from(shown[4] == hll::SPARSE))
    } else {
        Reply::err(format!("ERR Unknown PFDEBUG subcommand '{subname}'"))
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{Engine, EngineConfig};
    use crate::reply::Reply;
    use crate::storage::memory::MemoryStorage;
    use bytes::Bytes;

    fn engine() -> Engine {
        Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(1)).expect("open")
    }

    fn run_args(e: &mut Engine, args: &[&[u8]]) -> Reply {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        e.execute(0, &args, 1_000)
    }

    fn run(e: &mut Engine, cmd: &str) -> Reply {
        let args: Vec<&[u8]> = cmd.split_whitespace().map(str::as_bytes).collect();
        run_args(e, &args)
    }

    fn get(e: &mut Engine, key: &str) -> Bytes {
        match run(e, &format!("GET {key}")) {
            Reply::Bulk(b) => b,
            r => panic!("GET {key}: {r:?}"),
        }
    }

    #[test]
    fn hll_pfadd_counts_and_reports_changes() {
        let mut e = engine();
        assert_eq!(run(&mut e, "PFADD h"), Reply::Int(1));
        assert_eq!(run(&mut e, "PFADD h"), Reply::Int(0));
        assert_eq!(run(&mut e, "PFCOUNT h"), Reply::Int(0));
        assert_eq!(run(&mut e, "PFADD h a b c"), Reply::Int(1));
        assert_eq!(run(&mut e, "PFADD h a b c"), Reply::Int(0));
        assert_eq!(run(&mut e, "PFCOUNT h"), Reply::Int(3));
        assert_eq!(run(&mut e, "TYPE h"), Reply::Simple("string".into()));
        assert_eq!(run(&mut e, "PFCOUNT nokey"), Reply::Int(0));
    }

    #[test]
    fn hll_get_bytes_copied_by_set_count_alike() {
        let mut e = engine();
        let elems: Vec<String> = (0..2000).map(|i| format!("e{i}")).collect();
        let mut args: Vec<&[u8]> = vec![b"PFADD", b"h"];
        args.extend(elems.iter().map(|s| s.as_bytes()));
        assert_eq!(run_args(&mut e, &args), Reply::Int(1));
        let bytes = get(&mut e, "h");
        assert_eq!(&bytes[..4], b"HYLL");
        assert_eq!(run_args(&mut e, &[b"SET", b"copy", &bytes]), Reply::Ok);
        let n = run(&mut e, "PFCOUNT h");
        assert_eq!(run(&mut e, "PFCOUNT copy"), n);
        assert_eq!(run(&mut e, "PFCOUNT h copy"), n);
        // A PFADD that raises nothing leaves the string as it is.
        assert_eq!(run(&mut e, "PFADD copy e1"), Reply::Int(0));
        assert_eq!(run(&mut e, "PFADD copy newone"), Reply::Int(1));
        assert_eq!(run(&mut e, "PFADD h newone"), Reply::Int(1));
        assert_eq!(get(&mut e, "copy"), get(&mut e, "h"));
    }

    #[test]
    fn hll_errors_are_redis_errors() {
        let mut e = engine();
        run(&mut e, "SET s hello");
        let invalid = Reply::Error(crate::redis::hll::ERR_INVALID_HLL.into());
        assert_eq!(run(&mut e, "PFADD s a"), invalid);
        assert_eq!(run(&mut e, "PFCOUNT s"), invalid);
        assert_eq!(run(&mut e, "PFMERGE d s"), invalid);
        run(&mut e, "SADD set a");
        assert!(
            matches!(run(&mut e, "PFADD set a"), Reply::Error(m) if m.starts_with("WRONGTYPE Operation"))
        );
        // A sparse header with opcodes that do not cover the registers.
        let mut bad = b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80".to_vec();
        bad.push(0x00);
        run_args(&mut e, &[b"SET", b"bad", &bad]);
        let corrupt = Reply::Error(crate::redis::hll::ERR_CORRUPT.into());
        assert_eq!(run(&mut e, "PFCOUNT bad"), corrupt);
        assert_eq!(run(&mut e, "PFADD bad x"), corrupt);
        assert_eq!(run(&mut e, "PFCOUNT bad bad"), corrupt);
        run(&mut e, "PFADD h a");
        assert!(matches!(run(&mut e, "INCR h"), Reply::Error(m) if m.contains("not an integer")));
        assert!(
            matches!(run(&mut e, "PFDEBUG nope h"), Reply::Error(m) if m == "ERR Unknown PFDEBUG subcommand 'nope'")
        );
        assert!(
            matches!(run(&mut e, "PFDEBUG getreg missing"), Reply::Error(m) if m == "ERR The specified key does not exist")
        );
    }

    #[test]
    fn hll_pfmerge_takes_the_max_and_includes_the_destination() {
        let mut e = engine();
        run(&mut e, "PFADD a 1 2 3");
        run(&mut e, "PFADD b 3 4 5");
        run(&mut e, "PFADD d 6");
        assert_eq!(run(&mut e, "PFMERGE d a b"), Reply::Ok);
        assert_eq!(run(&mut e, "PFCOUNT d"), Reply::Int(6));
        assert_eq!(run(&mut e, "PFCOUNT a b"), Reply::Int(5));
        assert_eq!(run(&mut e, "PFMERGE empty"), Reply::Ok);
        assert_eq!(run(&mut e, "EXISTS empty"), Reply::Int(1));
        let Reply::Array(regs) = run(&mut e, "PFDEBUG GETREG d") else {
            panic!()
        };
        assert_eq!(regs.len(), 16384);
        assert_eq!(regs.iter().filter(|r| **r != Reply::Int(0)).count(), 6);
        assert_eq!(
            run(&mut e, "PFDEBUG ENCODING d"),
            Reply::Simple("sparse".into())
        );
    }
}
