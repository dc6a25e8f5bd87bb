//! Redis's glob matcher (`stringmatchlen` in `util.c`, Redis 7.0): the one
//! copy Chorus has. The engine uses it for `KEYS`, `SCAN ... MATCH` and
//! `HSCAN`/`SSCAN`/`ZSCAN ... MATCH`; the server for `CONFIG GET` and
//! `COMMAND LIST FILTERBY PATTERN`.
//!
//! Rules: `*` any run of bytes, `?` one byte, `[abc]` / `[^abc]` / `[a-z]`
//! byte classes (a reversed range `[z-a]` is accepted; an unterminated class
//! ends at the pattern's end), `\x` the byte `x` literally (also inside a
//! class). Quirks kept on purpose so answers equal Redis's: bytes compare as
//! C's signed `char` in ranges, and an escaped byte inside a class compares
//! case-sensitively even when `nocase` is set.
//!
//! Also kept: `*` does not match the empty string (the loop needs a byte to
//! look at), which is why Redis's `KEYS *` special-cases a lone `*`; callers
//! that want "everything" should do the same.
//!
//! Bounded: the recursion depth (one level per `*`) is capped at
//! [`GLOB_NESTING_MAX`] (deeper patterns do not match, as in later Redis
//! releases), and the "skip longer matches" cut-off keeps the running time
//! polynomial, as in Redis 7.0.

/// Deepest `*` nesting followed before a pattern is declared not to match.
pub const GLOB_NESTING_MAX: usize = 1000;

/// True if `s` matches the glob `pattern`.
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    let mut skip_longer = false;
    match_from(pattern, s, nocase, &mut skip_longer, 0)
}

/// C reads a NUL past the end of a pattern; several branches rely on that.
fn at(bytes: &[u8], i: usize) -> u8 {
    bytes.get(i).copied().unwrap_or(0)
}

/// C's `char` is signed on the platforms Redis ships on; ranges compare so.
fn signed(b: u8) -> i32 {
    i32::from(b as i8)
}

fn lower(c: i32) -> i32 {
    if (i32::from(b'A')..=i32::from(b'Z')).contains(&c) {
        c + 32
    } else {
        c
    }
}

fn eq_byte(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

fn match_from(
    pattern: &[u8],
    string: &[u8],
    nocase: bool,
    skip_longer: &mut bool,
    nesting: usize,
) -> bool {
    if nesting > GLOB_NESTING_MAX {
        return false;
    }
    let mut p = 0usize; // position in pattern
    let mut s = 0usize; // position in string
    let plen = pattern.len();
    let slen = string.len();
    while p < plen && s < slen {
        match at(pattern, p) {
            b'*' => {
                while p + 1 < plen && at(pattern, p + 1) == b'*' {
                    p += 1;
                }
                if p + 1 == plen {
                    return true;
                }
                while s < slen {
                    if match_from(
                        pattern.get(p + 1..).unwrap_or_default(),
                        string.get(s..).unwrap_or_default(),
                        nocase,
                        skip_longer,
                        nesting + 1,
                    ) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s += 1;
                }
                // No suffix of the string matches the rest of the pattern,
                // so no earlier '*' can help either.
                *skip_longer = true;
                return false;
            }
            b'?' => {
                s += 1;
            }
            b'[' => {
                p += 1;
                let negate = at(pattern, p) == b'^';
                if negate {
                    p += 1;
                }
                let c = at(string, s);
                let mut matched = false;
                loop {
                    let remaining = plen.saturating_sub(p);
                    if at(pattern, p) == b'\\' && remaining >= 2 {
                        p += 1;
                        if at(pattern, p) == c {
                            matched = true;
                        }
                    } else if at(pattern, p) == b']' {
                        break;
                    } else if remaining == 0 {
                        // Unterminated class: step back so the shared
                        // advance below lands exactly on the end.
                        p -= 1;
                        break;
                    } else if remaining >= 3 && at(pattern, p + 1) == b'-' {
                        let mut start = signed(at(pattern, p));
                        let mut end = signed(at(pattern, p + 2));
                        let mut ch = signed(c);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        if nocase {
                            start = lower(start);
                            end = lower(end);
                            ch = lower(ch);
                        }
                        p += 2;
                        if ch >= start && ch <= end {
                            matched = true;
                        }
                    } else if eq_byte(at(pattern, p), c, nocase) {
                        matched = true;
                    }
                    p += 1;
                }
                if negate {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s += 1;
            }
            first => {
                let mut literal = first;
                if first == b'\\' && plen - p >= 2 {
                    p += 1;
                    literal = at(pattern, p);
                }
                if !eq_byte(literal, at(string, s), nocase) {
                    return false;
                }
                s += 1;
            }
        }
        p += 1;
        if s == slen {
            while at(pattern, p) == b'*' && p < plen {
                p += 1;
            }
            break;
        }
    }
    p >= plen && s == slen
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes(), false)
    }

    #[test]
    fn redis_glob_cases() {
        // Redis quirk: "*" does not match the empty string (KEYS special-cases "*").
        assert!(!m("*", ""));
        assert!(m("*", "abc"));
        assert!(m("a*", "abc"));
        assert!(!m("a*", "bac"));
        assert!(m("*c", "abc"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("h[ae]llo", "hello"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hbllo"));
        assert!(m("h\\*llo", "h*llo"));
        assert!(!m("h\\*llo", "hello"));
        assert!(m("[\\]]", "]"));
        assert!(m("max*", "maxclients"));
        assert!(m("*max*", "maxmemory-policy"));
        assert!(!m("abc", "abcd"));
        assert!(!m("abcd", "abc"));
        assert!(m("abc**", "abc"));
        assert!(!m("a[", "a"));
        assert!(!m("a[", "ab"));
        assert!(m("[abc", "a"));
        assert!(m("\\", "\\"));
        assert!(glob_match(b"MAX*", b"maxclients", true));
        assert!(!glob_match(b"MAX*", b"maxclients", false));
        assert!(glob_match(b"[A-Z]x", b"bx", true));
    }

    #[test]
    fn pathological_patterns_finish() {
        let pattern = "a*".repeat(40) + "b";
        let s = "a".repeat(60);
        assert!(!m(&pattern, &s));
        let deep = "*a".repeat(GLOB_NESTING_MAX * 3);
        assert!(!m(&deep, &"a".repeat(10)));
    }

    proptest! {
        #[test]
        fn no_panic_and_literal_patterns_match_themselves(p in proptest::collection::vec(any::<u8>(), 0..24), s in proptest::collection::vec(any::<u8>(), 0..24), nocase in any::<bool>()) {
            let _ = glob_match(&p, &s, nocase);
            let literal: Vec<u8> = s.iter().flat_map(|&b| [b'\\', b]).collect();
            prop_assert!(glob_match(&literal, &s, nocase));
            prop_assert_eq!(glob_match(b"*", &s, nocase), !s.is_empty());
        }
    }
}
