//! Redis's long double arithmetic for INCRBYFLOAT and HINCRBYFLOAT, exactly.
//!
//! Redis reads the stored value and the increment with `strtold`, adds them in
//! x87 extended precision (64-bit significand, 15-bit exponent) and stores the
//! sum printed with `%.17Lf`, trailing zeros cut. Rust has no 80-bit float, so
//! this module takes the same steps on exact binary fractions ([`Exact`]:
//! `±mant·2^exp`, `mant` a big integer) and rounds where the hardware rounds:
//! to 64 significant bits, to nearest with ties to even, with the format's
//! subnormals and overflow. The same bits come out on every platform, which
//! the CRDT needs: a float counter's value is the exact sum of its increments,
//! and every site rounds that sum the same way.

use num_bigint::BigUint;
use num_traits::{One, Zero};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;

/// Significant bits of x87 extended precision.
const PRECISION: u64 = 64;
/// Largest exponent of a finite value's leading bit.
const MAX_EXP: i64 = 16383;
/// Exponent of the least subnormal: no bit below 2^MIN_LSB is kept.
const MIN_LSB: i64 = -16445;
/// Redis's `MAX_LONG_DOUBLE_CHARS`: a longer string is not a float to it.
const MAX_CHARS: usize = 5 * 1024;
/// Largest exponent of an increment's leading bit: the difference of two
/// finite values is below 2^(MAX_EXP + 2).
const MAX_DELTA_EXP: i64 = MAX_EXP + 1;
/// Bytes of the largest increment's significand (bits from MIN_LSB to
/// MAX_DELTA_EXP), the bound a decoder holds peers and the disk to.
const MAX_MANT_BYTES: usize = ((MAX_DELTA_EXP - MIN_LSB + 1) as usize).div_ceil(8);

/// An exact binary fraction `±mant·2^exp`. Canonical: `mant` is odd, or zero
/// with `neg == false` and `exp == 0`, so equal values are equal structs (and
/// encode to equal bytes, which digests need).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exact {
    neg: bool,
    exp: i32,
    mant: BigUint,
}

/// A value as `strtold` reads it and Redis keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ld {
    /// Already rounded to extended precision.
    Finite(Exact),
    /// `inf`, `infinity` in any case, with a sign.
    Inf { neg: bool },
}

impl Exact {
    pub fn zero() -> Exact {
        Exact::default()
    }

    pub fn is_zero(&self) -> bool {
        self.mant.is_zero()
    }

    fn new(neg: bool, mut mant: BigUint, mut exp: i64) -> Exact {
        if mant.is_zero() {
            return Exact::zero();
        }
        let tz = mant.trailing_zeros().unwrap_or(0);
        if tz > 0 {
            mant >>= tz;
            exp += tz as i64;
        }
        Exact {
            neg,
            // Every value built here is a sum of bounded ones; the clamp only
            // keeps a misuse from wrapping.
            exp: exp.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            mant,
        }
    }

    pub fn from_int(v: i128) -> Exact {
        Exact::new(v < 0, BigUint::from(v.unsigned_abs()), 0)
    }

    /// A finite f64 exactly (anything else is zero).
    pub fn from_f64(v: f64) -> Exact {
        if !v.is_finite() {
            return Exact::zero();
        }
        let bits = v.to_bits();
        let e = ((bits >> 52) & 0x7ff) as i64;
        let f = bits & ((1 << 52) - 1);
        let (m, exp) = if e == 0 {
            (f, -1074)
        } else {
            (f | (1 << 52), e - 1075)
        };
        Exact::new(bits >> 63 == 1, BigUint::from(m), exp)
    }

    pub fn negated(&self) -> Exact {
        Exact {
            neg: !self.neg && !self.is_zero(),
            ..self.clone()
        }
    }

    pub fn add(&self, o: &Exact) -> Exact {
        if o.is_zero() {
            return self.clone();
        }
        if self.is_zero() {
            return o.clone();
        }
        let e = self.exp.min(o.exp) as i64;
        let a = &self.mant << (self.exp as i64 - e) as usize;
        let b = &o.mant << (o.exp as i64 - e) as usize;
        if self.neg == o.neg {
            return Exact::new(self.neg, a + b, e);
        }
        match a.cmp(&b) {
            Ordering::Equal => Exact::zero(),
            Ordering::Greater => Exact::new(self.neg, a - b, e),
            Ordering::Less => Exact::new(o.neg, b - a, e),
        }
    }

    /// About the bytes of its encoding.
    pub fn size_hint(&self) -> usize {
        (self.mant.bits() as usize).div_ceil(8) + 8
    }

    pub fn sub(&self, o: &Exact) -> Exact {
        self.add(&o.negated())
    }

    /// Exponent of the leading bit (`None` for zero).
    fn top(&self) -> Option<i64> {
        (!self.is_zero()).then(|| self.exp as i64 + self.mant.bits() as i64 - 1)
    }

    /// Within what one increment can be: the difference of two finite
    /// extended-precision values. Decoders refuse anything else, which bounds
    /// the work of every sum.
    fn is_delta_sized(&self) -> bool {
        match self.top() {
            None => true,
            Some(top) => self.exp as i64 >= MIN_LSB && top <= MAX_DELTA_EXP,
        }
    }

    /// Rounded to extended precision; `None` when it overflows to infinity.
    pub fn round(&self) -> Option<Exact> {
        round(self.neg, self.mant.clone(), self.exp as i64, false)
    }
}

/// `±m·2^e` (plus a sticky non-zero tail below it when `sticky`) rounded to
/// extended precision: 64 significant bits, nothing below 2^MIN_LSB, nearest
/// with ties to even. `None` on overflow.
fn round(neg: bool, m: BigUint, e: i64, sticky: bool) -> Option<Exact> {
    if m.is_zero() {
        return Some(Exact::zero());
    }
    let bits = m.bits() as i64;
    let shift = (bits - PRECISION as i64).max(MIN_LSB - e);
    if shift > bits {
        // Every bit is below the least subnormal's half: zero. (Returning
        // here also keeps a huge negative exponent, as in `0x1p-99999999999`,
        // from building a huge `half`.)
        return Some(Exact::zero());
    }
    if e + bits - 1 > MAX_EXP + 1 {
        return None;
    }
    let (m, e) = if shift <= 0 {
        (m, e)
    } else {
        let s = shift as u64;
        let mut kept = &m >> s;
        let tail = &m - (&kept << s);
        let half = BigUint::one() << (s - 1);
        let up = match tail.cmp(&half) {
            Ordering::Greater => true,
            Ordering::Equal => sticky || kept.bit(0),
            Ordering::Less => false,
        };
        if up {
            kept += 1u32;
        }
        (kept, e + shift)
    };
    let v = Exact::new(neg, m, e);
    match v.top() {
        Some(top) if top > MAX_EXP => None,
        _ => Some(v),
    }
}

impl Serialize for Exact {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mant = if self.is_zero() {
            Vec::new()
        } else {
            self.mant.to_bytes_le()
        };
        (self.neg, self.exp, serde_bytes::ByteBuf::from(mant)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Exact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Exact, D::Error> {
        let (neg, exp, mant) = <(bool, i32, serde_bytes::ByteBuf)>::deserialize(d)?;
        if mant.is_empty() {
            if neg || exp != 0 {
                return Err(D::Error::custom("float increment: zero is not canonical"));
            }
            return Ok(Exact::zero());
        }
        if mant.len() > MAX_MANT_BYTES || mant[0] & 1 == 0 || mant[mant.len() - 1] == 0 {
            return Err(D::Error::custom(
                "float increment: significand is not canonical",
            ));
        }
        let v = Exact {
            neg,
            exp,
            mant: BigUint::from_bytes_le(&mant),
        };
        if !v.is_delta_sized() {
            return Err(D::Error::custom("float increment out of range"));
        }
        Ok(v)
    }
}

/// Appends exactly the bytes postcard gives for [`Exact`]'s serde form (the
/// op log's hand-written encoder uses it; a test holds it to postcard).
pub fn put_postcard(out: &mut Vec<u8>, v: &Exact) {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out.push(v.neg as u8);
    let e = v.exp as i64;
    varint(out, ((e << 1) ^ (e >> 63)) as u64 & 0xffff_ffff);
    if v.is_zero() {
        varint(out, 0);
    } else {
        let m = v.mant.to_bytes_le();
        varint(out, m.len() as u64);
        out.extend_from_slice(&m);
    }
}

/// Redis's `string2ld`: the whole string is one `strtold` number, with no leading space, not NaN, and neither overflowing
/// nor underflowing to zero. Longer than Redis's buffer is not a float.
pub fn parse(b: &[u8]) -> Option<Ld> {
    if b.is_empty() || b.len() >= MAX_CHARS {
        return None;
    }
    if crate::cmd::c_isspace(b[0]) {
        return None;
    }
    // strtold stops at a NUL like at any other stray byte.
    let (v, used) = strtold(b)?;
    (used == b.len()).then_some(v)
}

/// C `strtold` on `s` (no leading space): the value and the bytes used, or
/// `None` for NaN and for a finite literal out of range (ERANGE with an
/// infinite or zero result, which Redis refuses). Nothing converted is zero
/// with nothing used.
fn strtold(s: &[u8]) -> Option<(Ld, usize)> {
    let mut i = 0;
    let mut neg = false;
    if let Some(&c) = s.first() {
        if c == b'+' || c == b'-' {
            neg = c == b'-';
            i = 1;
        }
    }
    let rest = &s[i..];
    let starts =
        |kw: &str| rest.len() >= kw.len() && rest[..kw.len()].eq_ignore_ascii_case(kw.as_bytes());
    if starts("infinity") {
        return Some((Ld::Inf { neg }, i + 8));
    }
    if starts("inf") {
        return Some((Ld::Inf { neg }, i + 3));
    }
    if starts("nan") {
        return None;
    }
    let hex = starts("0x")
        && match rest.get(2) {
            Some(c) if c.is_ascii_hexdigit() => true,
            Some(b'.') => rest.get(3).is_some_and(|c| c.is_ascii_hexdigit()),
            _ => false,
        };
    let (radix, start) = if hex { (16, i + 2) } else { (10, i) };
    let is_digit = |c: u8| (c as char).is_digit(radix);
    let mut j = start;
    let mut digits = Vec::new();
    let mut frac = 0i64;
    while j < s.len() && is_digit(s[j]) {
        digits.push(s[j]);
        j += 1;
    }
    if s.get(j) == Some(&b'.') {
        let k = j + 1;
        let mut l = k;
        while l < s.len() && is_digit(s[l]) {
            digits.push(s[l]);
            l += 1;
        }
        if !digits.is_empty() {
            frac = (l - k) as i64;
            j = l;
        }
    }
    if digits.is_empty() {
        return Some((Ld::Finite(Exact::zero()), 0));
    }
    let marker: &[u8] = if hex { b"pP" } else { b"eE" };
    let (exp, j) = crate::cmd::c_exponent(s, j, marker);
    let first = digits.iter().position(|&c| c != b'0');
    let Some(first) = first else {
        return Some((Ld::Finite(Exact::zero()), j));
    };
    let digits = &digits[first..];
    let m = BigUint::parse_bytes(digits, radix)?;
    let value = if hex {
        round(neg, m, exp - 4 * frac, false)
    } else {
        decimal(neg, m, digits.len() as i64, exp - frac)
    };
    match value {
        // Overflow: ERANGE with HUGE_VAL.
        None => None,
        // Underflow to zero: ERANGE with zero.
        Some(v) if v.is_zero() => None,
        Some(v) => Some((Ld::Finite(v), j)),
    }
}

/// `±m·10^e10` (`m` of `n` digits) rounded to extended precision: zero for an
/// underflow, `None` for an overflow.
fn decimal(neg: bool, m: BigUint, n: i64, e10: i64) -> Option<Exact> {
    // Below 10^-4951 everything rounds to zero (the least subnormal is about
    // 3.6e-4951); at or above 10^4933 everything overflows (the largest
    // finite value is about 1.19e4932).
    if e10 + n <= -4951 {
        return Some(Exact::zero());
    }
    if e10 + n > 4933 {
        return None;
    }
    if e10 >= 0 {
        let scaled = m * BigUint::from(10u32).pow(e10 as u32);
        return round(neg, scaled, 0, false);
    }
    let den = BigUint::from(10u32).pow((-e10) as u32);
    // Enough quotient bits that the rounding bit and a sticky tail are known.
    let shift = (PRECISION as i64 + 3 + den.bits() as i64 - m.bits() as i64).max(0);
    let num = m << shift as usize;
    let q = &num / &den;
    let r = num - &q * &den;
    round(neg, q, -shift, !r.is_zero())
}

/// `%.17Lf` with its trailing zeros (and a bare point) cut, and `-0` shown as
/// `0`: how Redis prints an INCRBYFLOAT result (`ld2string`, human mode).
pub fn format_human(v: &Exact) -> String {
    const DIGITS: usize = 17;
    let mut s = String::new();
    if v.neg {
        s.push('-');
    }
    if v.exp >= 0 {
        s.push_str(&(&v.mant << v.exp as usize).to_string());
    } else {
        let k = (-(v.exp as i64)) as u64;
        let scaled = &v.mant * BigUint::from(10u32).pow(DIGITS as u32);
        let mut q = &scaled >> k;
        let tail = &scaled - (&q << k);
        let half = BigUint::one() << (k - 1);
        if tail > half || (tail == half && q.bit(0)) {
            q += 1u32;
        }
        let digits = q.to_string();
        let digits = format!("{digits:0>width$}", width = DIGITS + 1);
        let (int, frac) = digits.split_at(digits.len() - DIGITS);
        s.push_str(int);
        let frac = frac.trim_end_matches('0');
        if !frac.is_empty() {
            s.push('.');
            s.push_str(frac);
        }
    }
    if s == "-0" {
        s.remove(0);
    }
    s
}

/// How a float counter shows its exact sum: rounded to extended precision and
/// printed as INCRBYFLOAT prints; `inf`/`-inf` (as `ld2string` prints them)
/// when concurrent increments overflow.
pub fn show(total: &Exact) -> String {
    match total.round() {
        Some(v) => format_human(&v),
        None if total.neg => "-inf".into(),
        None => "inf".into(),
    }
}

/// One INCRBYFLOAT step as Redis takes it: `value + incr` rounded to extended
/// precision and printed, and the value that text reads back as (what the
/// next step starts from). `None` when the sum is infinite.
pub fn incr(value: &Exact, incr: &Exact) -> Option<(Exact, String)> {
    let sum = value.add(incr).round()?;
    let text = format_human(&sum);
    match parse(text.as_bytes()) {
        Some(Ld::Finite(v)) => Some((v, text)),
        _ => Some((sum, text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(s: &str) -> Exact {
        match parse(s.as_bytes()) {
            Some(Ld::Finite(v)) => v,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn step(a: &str, b: &str) -> String {
        incr(&ld(a), &ld(b)).expect("finite").1
    }

    /// Figures read off redis-server 7.0 on x86-64.
    #[test]
    fn redis_figures() {
        assert_eq!(step("0.2", "0.1"), "0.3");
        assert_eq!(step("1.57", "0.5"), "2.07");
        assert_eq!(step("1.6", "-1e3"), "-998.40000000000000002");
        assert_eq!(
            step("0", "123456789.123456789"),
            "123456789.12345678899873747"
        );
        assert_eq!(step("0", "1e-20"), "0");
        assert_eq!(step("10.5", "0.1"), "10.6");
        assert_eq!(step("3.0", "0"), "3");
        assert_eq!(step("1", "0x10"), "17");
        assert_eq!(step("0", "1e-10"), "0.0000000001");
        assert_eq!(step("-0", "0"), "0");
        let big = step("1.7e308", "1.7e308");
        assert!(big.starts_with("340000000000000000"), "{big}");
        assert!(!big.contains('.'));
    }

    #[test]
    fn parse_follows_string2ld() {
        for bad in [
            "",
            " 1",
            "1 ",
            "nan",
            "-nan",
            "NaN(1)",
            "1e",
            "abc",
            "1x",
            ".",
            "-",
            "+",
            "0x",
            "1e99999",
            "1e-99999",
            "0x1p99999",
            "0x1p-99999",
        ] {
            // "1e" and "0x" convert a prefix: not the whole string.
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse(b"inf"), Some(Ld::Inf { neg: false }));
        assert_eq!(parse(b"-Infinity"), Some(Ld::Inf { neg: true }));
        assert_eq!(parse(b"0e-99999"), Some(Ld::Finite(Exact::zero())));
        assert_eq!(parse(b"1\0"), None);
        assert_eq!(parse(b"\0"), None);
        assert_eq!(ld("0x1.8p1"), Exact::from_int(3));
        assert_eq!(ld(".5e1"), Exact::from_int(5));
        assert_eq!(ld("5."), Exact::from_int(5));
        assert_eq!(ld("+7"), Exact::from_int(7));
        // The largest finite value and the least subnormal parse; past them, no.
        assert!(parse(b"1.18973149535723176502e4932").is_some());
        assert_eq!(parse(b"1.2e4932"), None);
        assert_eq!(ld("3.6452e-4951").top(), Some(MIN_LSB));
        assert_eq!(parse(b"1e-4952"), None);
        assert_eq!(parse(&vec![b'1'; MAX_CHARS]), None);
        // Huge binary exponents are out of range at once, not huge numbers.
        for huge in ["0x1p-99999999999", "0x1p-1099511627776", "0x1p99999999999"] {
            assert_eq!(parse(huge.as_bytes()), None, "{huge}");
        }
        assert_eq!(parse(b"0x0p-99999999999"), Some(Ld::Finite(Exact::zero())));
    }

    #[test]
    fn rounding_is_to_nearest_even_at_64_bits() {
        let two64 = Exact::from_int(1 << 64);
        // 2^64 + 1 is a tie: to even (2^64); 2^64 + 3 rounds up to 2^64 + 4.
        assert_eq!(two64.add(&Exact::from_int(1)).round(), Some(two64.clone()));
        assert_eq!(
            two64.add(&Exact::from_int(3)).round(),
            Some(Exact::from_int((1 << 64) + 4))
        );
        assert_eq!(ld("18446744073709551617"), two64);
    }

    #[test]
    fn from_f64_is_exact() {
        assert_eq!(Exact::from_f64(0.5), ld("0.5"));
        assert_eq!(Exact::from_f64(-3.0), Exact::from_int(-3));
        assert_eq!(Exact::from_f64(0.1), ld("0x1.999999999999ap-4"));
        assert_eq!(Exact::from_f64(5e-324), ld("0x1p-1074"));
        assert_eq!(Exact::from_f64(f64::NAN), Exact::zero());
    }

    #[test]
    fn serde_round_trip_and_refusals() {
        for s in ["0", "1", "-2.5", "1e-4000", "1.1e4932", "0.1"] {
            let v = ld(s);
            let bytes = postcard::to_allocvec(&v).unwrap();
            let mut hand = Vec::new();
            put_postcard(&mut hand, &v);
            assert_eq!(hand, bytes, "{s}");
            assert_eq!(postcard::from_bytes::<Exact>(&bytes).unwrap(), v);
        }
        let bad = |neg: bool, exp: i32, mant: Vec<u8>| {
            let b = postcard::to_allocvec(&(neg, exp, serde_bytes::ByteBuf::from(mant))).unwrap();
            postcard::from_bytes::<Exact>(&b).is_err()
        };
        assert!(bad(true, 0, vec![]));
        assert!(bad(false, 0, vec![2]));
        assert!(bad(false, 0, vec![1, 0]));
        assert!(bad(false, i32::MAX, vec![1]));
        assert!(bad(false, i32::MIN, vec![1]));
        assert!(bad(false, 0, vec![1; MAX_MANT_BYTES + 1]));
    }
}
