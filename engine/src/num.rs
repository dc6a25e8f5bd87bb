//! Number parsing and formatting with Redis's exact rules.
//!
//! Redis accepts integers as `string2ll` does (optional `-`, no `+`, no leading
//! zeros or spaces, fits in i64) and floats as `strtold`/`strtod` with no spaces
//! around them. INCRBYFLOAT shows its result without an exponent; scores are
//! shown with 17 significant digits (`%.17g`).

/// Redis `string2ll`: the whole slice must be a canonical i64.
pub fn parse_int(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    if b == b"0" {
        return Some(0);
    }
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else if v > i64::MAX as u64 {
        None
    } else {
        Some(v as i64)
    }
}

/// A float as INCRBYFLOAT / HINCRBYFLOAT accept it: no spaces, not NaN
/// (infinity parses; the command rejects an infinite result).
pub fn parse_float(b: &[u8]) -> Option<f64> {
    parse_strtod(b, false)
}

/// A score as ZADD / ZINCRBY accept it: `inf`, `+inf`, `-inf` allowed; not NaN.
pub fn parse_score(b: &[u8]) -> Option<f64> {
    parse_strtod(b, true)
}

fn parse_strtod(b: &[u8], _allow_inf: bool) -> Option<f64> {
    if b.is_empty() || b.len() > 5000 {
        return None;
    }
    if b[0].is_ascii_whitespace() || b[b.len() - 1].is_ascii_whitespace() {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    let lower = s.to_ascii_lowercase();
    let v = match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => {
            // Rust's parser accepts a subset of strtod's syntax that covers
            // what clients send (decimal, exponent); hex floats are rare.
            if lower.contains("nan") || lower.contains("inf") {
                return None;
            }
            s.parse::<f64>().ok()?
        }
    };
    if v.is_nan() {
        None
    } else {
        Some(v)
    }
}

/// INCRBYFLOAT's output: the shortest decimal that reads back as the same
/// double, never with an exponent (Redis prints `%.17Lf` trimmed of zeros).
pub fn format_float_human(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return "0".into();
    }
    // Rust's Display for f64 is the shortest round-trip form and never uses
    // an exponent.
    format!("{v}")
}

/// A double as Redis 7.0 replies it in RESP2 (`%.17g`, `inf`, `-inf`).
pub fn format_double(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v.is_nan() {
        return "nan".into();
    }
    format_g17(v)
}

/// C's `%.17g`.
pub fn format_g17(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let precision = 17usize;
    let exp = v.abs().log10().floor() as i32;
    // Format in exponent form first to learn the exponent after rounding.
    let e_form = format!("{:.*e}", precision - 1, v);
    let (mantissa, exp_str) = match e_form.split_once('e') {
        Some(x) => x,
        None => return e_form,
    };
    let x: i32 = exp_str.parse().unwrap_or(exp);
    if x < -4 || x >= precision as i32 {
        let m = trim_zeros(mantissa);
        let sign = if x < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", x.abs())
    } else {
        let decimals = (precision as i32 - 1 - x).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, v)).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string2ll_rules() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-12"), Some(-12));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int(b"9223372036854775808"), None);
        for bad in [
            &b""[..],
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"-",
            b"1a",
            b"1.0",
        ] {
            assert_eq!(parse_int(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_float(b"10.5"), Some(10.5));
        assert_eq!(parse_float(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(format_float_human(10.5 + 0.1), "10.6");
        assert_eq!(format_float_human(5000.0), "5000");
        assert_eq!(format_float_human(-0.0), "0");
    }

    #[test]
    fn g17() {
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(0.1), "0.10000000000000001");
        assert_eq!(format_double(1e20), "1e+20");
        assert_eq!(format_double(123456789.0), "123456789");
        assert_eq!(format_double(1e-5), "1.0000000000000001e-05");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(3.0), "3");
    }
}
