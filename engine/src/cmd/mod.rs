//! Data commands with Redis 7.0 semantics, one module per type.
//!
//! A command receives the transaction (`Txn`), the database and its arguments
//! (`args[0]` is the name). It validates like Redis does (arity, syntax,
//! WRONGTYPE, not an integer, overflow…) *before* emitting any effect, then emits
//! effects (applied at once) and returns the reply. Nothing here does I/O, so
//! every command is unit-tested by calling [`crate::Engine::execute`].

pub mod hash;
pub mod keys;
pub mod set;
pub mod string;
pub mod zset;

use crate::engine::Txn;
use crate::keyspace::row::Row;
use crate::keyspace::value::Kind;
use crate::op::Effect;
use crate::reply::{errors, Reply};
use bytes::Bytes;

pub type Handler = fn(&mut Txn<'_>, u8, &[Bytes]) -> Reply;

/// One command: name (upper case), Redis arity (n: exactly n args incl. the
/// name; -n: at least n), whether it may write, and its handler.
#[derive(Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub arity: i32,
    pub write: bool,
    pub handler: Handler,
}

/// Looks a command up by name, any case.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let mut buf = [0u8; 32];
    let n = name.len();
    if n == 0 || n > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    let upper = std::str::from_utf8(&buf[..n]).ok()?;
    for table in [
        string::COMMANDS,
        keys::COMMANDS,
        hash::COMMANDS,
        set::COMMANDS,
        zset::COMMANDS,
    ] {
        if let Some(s) = table.iter().find(|s| s.name == upper) {
            return Some(s);
        }
    }
    None
}

/// Every data command (for COMMAND COUNT / INFO / DOCS).
pub fn all() -> impl Iterator<Item = &'static Spec> {
    [
        string::COMMANDS,
        keys::COMMANDS,
        hash::COMMANDS,
        set::COMMANDS,
        zset::COMMANDS,
    ]
    .into_iter()
    .flat_map(|t| t.iter())
}

pub fn arity_ok(arity: i32, argc: usize) -> bool {
    if arity >= 0 {
        argc == arity as usize
    } else {
        argc >= (-arity) as usize
    }
}

/// Runs one command: lookup, arity, write refusal, handler.
pub fn dispatch(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let Some(name) = args.first() else {
        return Reply::err("ERR empty command");
    };
    let Some(spec) = lookup(name) else {
        return unknown_command(args);
    };
    if !arity_ok(spec.arity, args.len()) {
        return Reply::err(errors::wrong_args(spec.name));
    }
    if spec.write {
        if let Some(e) = txn.write_refused() {
            return Reply::Error(e);
        }
    }
    (spec.handler)(txn, db, args)
}

/// Redis's unknown-command error, byte for byte.
pub fn unknown_command(args: &[Bytes]) -> Reply {
    let name = args
        .first()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default();
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        truncate(&name)
    );
    for a in args.iter().skip(1) {
        msg.push_str(&format!("'{}' ", truncate(&String::from_utf8_lossy(a))));
    }
    Reply::Error(msg)
}

fn truncate(s: &str) -> String {
    // Redis shows at most 128 bytes of each argument.
    let mut out: String = s.chars().take(128).collect();
    out = out.replace(['\r', '\n'], " ");
    out
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
        txn.emit(db, key, Effect::Del);
        txn.stats_mut().expired_keys += 1;
    }
}

/// Parses an integer argument (Redis's "value is not an integer" error).
pub fn int_arg(b: &[u8]) -> Result<i64, Reply> {
    crate::num::parse_int(b).ok_or_else(|| Reply::err(errors::NOT_INTEGER))
}

/// Case-insensitive comparison of an argument with an upper-case keyword.
pub fn is(arg: &[u8], kw: &str) -> bool {
    arg.eq_ignore_ascii_case(kw.as_bytes())
}

/// Redis glob matching (`*`, `?`, `[...]`, `\`), as `stringmatchlen`.
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    fn eq(a: u8, b: u8, nocase: bool) -> bool {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    }
    fn go(p: &[u8], s: &[u8], nocase: bool, depth: usize) -> bool {
        if depth > 1000 {
            return false;
        }
        let (mut pi, mut si) = (0usize, 0usize);
        while pi < p.len() {
            match p[pi] {
                b'*' => {
                    while pi + 1 < p.len() && p[pi + 1] == b'*' {
                        pi += 1;
                    }
                    if pi + 1 == p.len() {
                        return true;
                    }
                    for start in si..=s.len() {
                        if go(&p[pi + 1..], &s[start..], nocase, depth + 1) {
                            return true;
                        }
                    }
                    return false;
                }
                b'?' => {
                    if si >= s.len() {
                        return false;
                    }
                    si += 1;
                }
                b'[' => {
                    if si >= s.len() {
                        return false;
                    }
                    pi += 1;
                    let not = pi < p.len() && p[pi] == b'^';
                    if not {
                        pi += 1;
                    }
                    let mut matched = false;
                    loop {
                        if pi >= p.len() {
                            pi -= 1;
                            break;
                        }
                        if p[pi] == b'\\' && pi + 2 < p.len() {
                            pi += 1;
                            if p[pi] == s[si] {
                                matched = true;
                            }
                        } else if p[pi] == b']' {
                            break;
                        } else if pi + 2 < p.len() && p[pi + 1] == b'-' {
                            let (mut lo, mut hi) = (p[pi], p[pi + 2]);
                            if lo > hi {
                                std::mem::swap(&mut lo, &mut hi);
                            }
                            let mut c = s[si];
                            if nocase {
                                lo = lo.to_ascii_lowercase();
                                hi = hi.to_ascii_lowercase();
                                c = c.to_ascii_lowercase();
                            }
                            pi += 2;
                            if c >= lo && c <= hi {
                                matched = true;
                            }
                        } else if eq(p[pi], s[si], nocase) {
                            matched = true;
                        }
                        pi += 1;
                    }
                    if not {
                        matched = !matched;
                    }
                    if !matched {
                        return false;
                    }
                    si += 1;
                }
                b'\\' if pi + 1 < p.len() => {
                    pi += 1;
                    if si >= s.len() || !eq(p[pi], s[si], nocase) {
                        return false;
                    }
                    si += 1;
                }
                c => {
                    if si >= s.len() || !eq(c, s[si], nocase) {
                        return false;
                    }
                    si += 1;
                }
            }
            pi += 1;
        }
        si == s.len()
    }
    go(pattern, s, nocase, 0)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob() {
        assert!(glob_match(b"*", b"anything", false));
        assert!(glob_match(b"h?llo", b"hello", false));
        assert!(glob_match(b"h[ae]llo", b"hallo", false));
        assert!(!glob_match(b"h[^e]llo", b"hello", false));
        assert!(glob_match(b"h[a-b]llo", b"hbllo", false));
        assert!(glob_match(b"key:*:x", b"key:123:x", false));
        assert!(!glob_match(b"key:*:x", b"key:123:y", false));
        assert!(glob_match(b"a\\*b", b"a*b", false));
        assert!(glob_match(b"HELLO", b"hello", true));
    }
}
