//! HyperLogLog, a port of Redis 7.0's `hyperloglog.c` algorithm: the same
//! hash (MurmurHash64A, seed `0xadc83b19`), 16384 registers of 6 bits
//! indexed by the low 14 bits of the hash, the same rank (the position of
//! the first 1 bit of the remaining 50 bits, plus one), and the same
//! cardinality estimator (`hllCount`: the histogram of register values put
//! through `hllTau` and `hllSigma`, Ertl's "new" estimator). So PFCOUNT
//! gives redis-server's number for the same registers.
//!
//! Redis stores an HLL as a string: a 16-byte header (`HYLL`, encoding,
//! three unused bytes, an 8-byte cached cardinality whose top bit marks it
//! stale) and then the registers, dense (6 bits each, 12288 bytes) or
//! sparse (run-length opcodes ZERO, XZERO and VAL). [`encode`] and
//! [`decode`] read and write both.

/// Index bits.
pub const P: u32 = 14;
/// Hash bits left for the rank.
pub const Q: u32 = 64 - P;
pub const REGISTERS: usize = 1 << P;
const P_MASK: u64 = REGISTERS as u64 - 1;
/// Bits per dense register.
const BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << BITS) - 1;
pub const HDR_SIZE: usize = 16;
pub const DENSE_SIZE: usize = HDR_SIZE + (REGISTERS * BITS).div_ceil(8);
pub const DENSE: u8 = 0;
pub const SPARSE: u8 = 1;
/// Largest value a sparse VAL opcode holds.
const SPARSE_VAL_MAX: u8 = 32;
const SPARSE_VAL_LEN_MAX: usize = 4;
const SPARSE_ZERO_MAX: usize = 64;
const SPARSE_XZERO_MAX: usize = 16384;
/// Redis's default `hll-sparse-max-bytes`: an encoding is sparse when it
/// fits in this many bytes (header included). Fixed, so that every site
/// shows the same bytes whatever its configuration.
pub const SPARSE_MAX_BYTES: usize = 3000;
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;
const SEED: u64 = 0xadc8_3b19;

pub const ERR_INVALID_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";
pub const ERR_CORRUPT: &str = "INVALIDOBJ Corrupted HLL object detected";

/// The registers of one HLL, one byte each.
pub type Registers = [u8; REGISTERS];

/// Redis's `MurmurHash64A` (little-endian reads, as on the x86 and ARM hosts
/// Redis runs on).
pub fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate() {
            h ^= u64::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element falls in and the rank it offers (`hllPatLen`).
pub fn pat_len(element: &[u8]) -> (u16, u8) {
    let hash = murmur64a(element, SEED);
    let index = (hash & P_MASK) as u16;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// `hllSigma`.
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

/// `hllTau`.
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powf(2.0) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// The estimate from a histogram of register values (`hllCount`).
pub fn count_histogram(histo: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - f64::from(histo[Q as usize + 1])) / m);
    for j in (1..=Q as usize).rev() {
        z += f64::from(histo[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histo[0]) / m);
    (ALPHA_INF * m * m / z).round() as u64
}

/// The estimate of a set of registers.
pub fn count(regs: &Registers) -> u64 {
    let mut histo = [0u32; 64];
    for &r in regs.iter() {
        histo[usize::from(r & 63)] += 1;
    }
    count_histogram(&histo)
}

/// What a string holds, read as Redis reads an HLL string.
pub struct Parsed {
    pub registers: Box<Registers>,
    /// The cached cardinality, when the header marks it valid.
    pub cached: Option<u64>,
    pub encoding: u8,
}

/// The header check of `isHLLObjectOrReply`: `None` when `s` is not an HLL
/// string (WRONGTYPE with [`ERR_INVALID_HLL`]).
pub fn header_ok(s: &[u8]) -> bool {
    s.len() >= HDR_SIZE
        && &s[..4] == b"HYLL"
        && s[4] <= SPARSE
        && (s[4] != DENSE || s.len() == DENSE_SIZE)
}

/// The cached cardinality of a header, if marked valid.
pub fn cached_card(s: &[u8]) -> Option<u64> {
    if s.len() < HDR_SIZE || s[15] & 0x80 != 0 {
        return None;
    }
    let mut c = [0u8; 8];
    c.copy_from_slice(&s[8..16]);
    Some(u64::from_le_bytes(c))
}

/// Reads the registers of an HLL string. `Err(ERR_INVALID_HLL)` when the
/// header is not an HLL's, `Err(ERR_CORRUPT)` when sparse opcodes do not
/// cover exactly the 16384 registers.
pub fn decode(s: &[u8]) -> Result<Parsed, &'static str> {
    if !header_ok(s) {
        return Err(ERR_INVALID_HLL);
    }
    let mut regs: Box<Registers> = Box::new([0; REGISTERS]);
    let body = &s[HDR_SIZE..];
    if s[4] == DENSE {
        for (j, r) in regs.iter_mut().enumerate() {
            *r = dense_get(body, j);
        }
    } else {
        let mut idx = 0usize;
        let mut i = 0usize;
        while i < body.len() {
            let op = body[i];
            let (run, val) = if op & 0xc0 == 0 {
                i += 1;
                (usize::from(op & 0x3f) + 1, 0)
            } else if op & 0xc0 == 0x40 {
                let Some(&lo) = body.get(i + 1) else {
                    return Err(ERR_CORRUPT);
                };
                i += 2;
                ((usize::from(op & 0x3f) << 8 | usize::from(lo)) + 1, 0)
            } else {
                i += 1;
                (usize::from(op & 0x3) + 1, ((op >> 2) & 0x1f) + 1)
            };
            if idx + run > REGISTERS {
                return Err(ERR_CORRUPT);
            }
            if val != 0 {
                regs[idx..idx + run].fill(val);
            }
            idx += run;
        }
        if idx != REGISTERS {
            return Err(ERR_CORRUPT);
        }
    }
    Ok(Parsed {
        registers: regs,
        cached: cached_card(s),
        encoding: s[4],
    })
}

/// `HLL_DENSE_GET_REGISTER` (the byte after the last is read as 0, where
/// Redis reads the string's terminator).
fn dense_get(body: &[u8], j: usize) -> u8 {
    let byte = j * BITS / 8;
    let fb = (j * BITS) & 7;
    let b0 = u16::from(body.get(byte).copied().unwrap_or(0));
    let b1 = u16::from(body.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> fb) | (b1 << (8 - fb))) & u16::from(REGISTER_MAX)) as u8
}

fn dense_set(body: &mut [u8], j: usize, v: u8) {
    let byte = j * BITS / 8;
    let fb = (j * BITS) & 7;
    let v = u16::from(v & REGISTER_MAX) << fb;
    body[byte] |= v as u8;
    if let Some(b) = body.get_mut(byte + 1) {
        *b |= (v >> 8) as u8;
    }
}

fn header(encoding: u8) -> Vec<u8> {
    // The cached cardinality is always marked stale: the bytes are then a
    // function of the registers alone.
    let mut h = b"HYLL".to_vec();
    h.extend_from_slice(&[encoding, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80]);
    h
}

/// The sparse opcodes of `regs`, zero runs and value runs maximal, `None`
/// when a register exceeds 32 or the encoding would pass `max` bytes.
fn sparse(regs: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut out = header(SPARSE);
    let mut j = 0;
    while j < regs.len() {
        let v = regs[j];
        let run = regs[j..].iter().take_while(|&&x| x == v).count();
        if v == 0 {
            let mut left = run;
            while left > 0 {
                let n = left.min(SPARSE_XZERO_MAX);
                if n <= SPARSE_ZERO_MAX {
                    out.push((n - 1) as u8);
                } else {
                    out.push(0x40 | ((n - 1) >> 8) as u8);
                    out.push(((n - 1) & 0xff) as u8);
                }
                left -= n;
            }
        } else {
            if v > SPARSE_VAL_MAX {
                return None;
            }
            let mut left = run;
            while left > 0 {
                let n = left.min(SPARSE_VAL_LEN_MAX);
                out.push(0x80 | ((v - 1) << 2) | (n - 1) as u8);
                left -= n;
            }
        }
        if out.len() > max {
            return None;
        }
        j += run;
    }
    Some(out)
}

/// The dense encoding of `regs`.
pub fn dense(regs: &Registers) -> Vec<u8> {
    let mut out = header(DENSE);
    out.resize(DENSE_SIZE, 0);
    let body = &mut out[HDR_SIZE..];
    for (j, &v) in regs.iter().enumerate() {
        if v != 0 {
            dense_set(body, j, v);
        }
    }
    out
}

/// The string Chorus shows for `regs`: sparse when every register fits a
/// VAL opcode and the encoding fits in [`SPARSE_MAX_BYTES`], dense
/// otherwise; the cached cardinality marked stale.
pub fn encode(regs: &Registers) -> Vec<u8> {
    sparse(regs, SPARSE_MAX_BYTES).unwrap_or_else(|| dense(regs))
}

/// `PFDEBUG DECODE` of a sparse encoding: `z:len`, `Z:len`, `v:value,len`.
pub fn describe_sparse(s: &[u8]) -> String {
    let mut out = Vec::new();
    let body = s.get(HDR_SIZE..).unwrap_or_default();
    let mut i = 0;
    while i < body.len() {
        let op = body[i];
        if op & 0xc0 == 0 {
            out.push(format!("z:{}", (op & 0x3f) as usize + 1));
            i += 1;
        } else if op & 0xc0 == 0x40 {
            let lo = body.get(i + 1).copied().unwrap_or(0);
            out.push(format!(
                "Z:{}",
                ((usize::from(op & 0x3f) << 8) | usize::from(lo)) + 1
            ));
            i += 2;
        } else {
            out.push(format!("v:{},{}", ((op >> 2) & 0x1f) + 1, (op & 3) + 1));
            i += 1;
        }
    }
    out.join(" ")
}

/// `PFSELFTEST`: the checks of Redis's `pfselftestCommand`, on this port.
/// `Err` names the first that failed, with Redis's wording.
pub fn selftest() -> Result<(), String> {
    // 1. Dense registers set and read back, for every value.
    let mut body = vec![0u8; DENSE_SIZE - HDR_SIZE];
    let mut bitcounters = [0u8; REGISTERS];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..1000 {
        body.fill(0);
        for (j, b) in bitcounters.iter_mut().enumerate() {
            let r = (rand() & u64::from(REGISTER_MAX)) as u8;
            *b = r;
            dense_set(&mut body, j, r);
        }
        for (j, &want) in bitcounters.iter().enumerate() {
            let got = dense_get(&body, j);
            if got != want {
                return Err(format!(
                    "TESTFAILED Register error, count={j} val={got} hll_val={want}"
                ));
            }
        }
    }
    // 2. Sparse and dense give the same estimate, within the error bound,
    // as elements are added.
    let mut regs: Box<Registers> = Box::new([0; REGISTERS]);
    let relerr = 1.04 / (REGISTERS as f64).sqrt();
    let mut checkpoint = 1u64;
    let mut ele = 0u64;
    for j in 1..=10_000_000u64 {
        ele = ele.wrapping_add(rand());
        let (i, r) = pat_len(&ele.to_le_bytes());
        let slot = &mut regs[usize::from(i)];
        if r > *slot {
            *slot = r;
        }
        if j != checkpoint {
            continue;
        }
        let enc = encode(&regs);
        let back = decode(&enc).map_err(|e| format!("TESTFAILED {e}"))?;
        if back.registers[..] != regs[..] {
            return Err("TESTFAILED sparse/dense round trip".into());
        }
        let card = count(&regs);
        let mut maxerr = if j <= 10 {
            1.0
        } else {
            relerr * 6.0 * j as f64
        };
        // Redis: the error is larger for small cardinalities.
        if j == 10 {
            maxerr = 1.0;
        }
        let abserr = (card as f64 - j as f64).abs();
        if abserr > maxerr {
            return Err(format!(
                "TESTFAILED Too big error. card:{card} abserr:{abserr}"
            ));
        }
        checkpoint *= 10;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs_of(n: u64) -> Box<Registers> {
        let mut regs: Box<Registers> = Box::new([0; REGISTERS]);
        for e in 0..n {
            let (i, r) = pat_len(e.to_string().as_bytes());
            regs[usize::from(i)] = regs[usize::from(i)].max(r);
        }
        regs
    }

    #[test]
    fn hll_murmur_matches_reference_values() {
        // MurmurHash64A of the empty string with seed 0 is 0; values below
        // were computed with Redis's C function.
        assert_eq!(murmur64a(b"", 0), 0);
        assert_eq!(
            pat_len(b"a").0 as usize,
            (murmur64a(b"a", SEED) & P_MASK) as usize
        );
    }

    #[test]
    fn hll_encodings_round_trip() {
        for n in [0, 1, 10, 1000, 5000, 100_000] {
            let regs = regs_of(n);
            let enc = encode(&regs);
            let back = decode(&enc).unwrap();
            assert_eq!(back.registers[..], regs[..], "n={n}");
            assert_eq!(back.cached, None);
            let d = decode(&dense(&regs)).unwrap();
            assert_eq!(d.registers[..], regs[..], "dense n={n}");
        }
        assert_eq!(encode(&regs_of(0)).len(), HDR_SIZE + 2);
        assert_eq!(encode(&regs_of(100_000)).len(), DENSE_SIZE);
    }

    #[test]
    fn hll_bad_strings_are_refused() {
        assert_eq!(decode(b"hello").err(), Some(ERR_INVALID_HLL));
        let mut dense_short = dense(&regs_of(3));
        dense_short.pop();
        assert_eq!(decode(&dense_short).err(), Some(ERR_INVALID_HLL));
        let mut sparse = encode(&regs_of(3));
        sparse.push(0x00);
        assert_eq!(decode(&sparse).err(), Some(ERR_CORRUPT));
        sparse.truncate(HDR_SIZE + 1);
        assert_eq!(decode(&sparse).err(), Some(ERR_CORRUPT));
    }

    #[test]
    fn hll_selftest_passes() {
        selftest().unwrap();
    }

    #[test]
    fn hll_estimate_is_close() {
        assert_eq!(count(&regs_of(0)), 0);
        assert_eq!(count(&regs_of(1)), 1);
        let c = count(&regs_of(100_000)) as f64;
        assert!((c - 100_000.0).abs() < 100_000.0 * 0.05, "{c}");
    }
}
