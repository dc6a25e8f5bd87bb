//! Value syntax shared by parameters: memory units (`memtoull`), C
//! `strtoll`, numbers in their formats (plain, memory, percent, octal) with
//! their bounds, and doubles.

use super::params::NumberFormat;
use crate::resp::parse::parse_i64_strict;

/// Redis's `memtoull`: digits with an optional unit (`b`, `k`, `kb`, `m`,
/// `mb`, `g`, `gb`, any case). `None` on anything else.
pub fn parse_memory(s: &str) -> Option<u64> {
    if s.starts_with('-') {
        return None;
    }
    let digits_end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let (digits, unit) = s.split_at(digits_end);
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    if digits.len() >= 128 {
        return None;
    }
    // strtoull saturates on overflow and Redis does not check ERANGE.
    let value = if digits.is_empty() {
        0
    } else {
        digits.parse::<u64>().unwrap_or(u64::MAX)
    };
    if value > u64::MAX / multiplier {
        return None;
    }
    Some(value * multiplier)
}

/// C's `strtoll(s, &end, base)` with the requirement `*end == '\0'`:
/// leading blanks and a sign are allowed, at least... nothing (an empty
/// string is 0, as in C). Saturates like C on overflow.
pub(super) fn c_strtoll(s: &str, base: u32) -> Option<i64> {
    let t = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or("")),
        Some(b'+') => (false, t.get(1..).unwrap_or("")),
        _ => (false, t),
    };
    if digits.is_empty() {
        // No conversion: C leaves `end` at the start of the string, which is
        // only the terminator when the whole string is empty.
        return s.is_empty().then_some(0);
    }
    let mut v: i128 = 0;
    for c in digits.chars() {
        let d = c.to_digit(base)?;
        v = (v * i128::from(base) + i128::from(d)).min(i128::from(i64::MAX) + 1);
    }
    let v = if negative { -v } else { v };
    Some(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// Parses a numeric parameter as Redis's `numericParseString` does.
pub(super) fn parse_number(s: &str, format: NumberFormat) -> Result<i64, String> {
    if matches!(format, NumberFormat::Memory | NumberFormat::MemoryPercent) {
        if let Some(v) = parse_memory(s) {
            // Redis keeps the value in a `long long`, wrapping as C does.
            return Ok(v as i64);
        }
    }
    if format == NumberFormat::MemoryPercent && s.len() > 1 {
        if let Some(n) = s
            .strip_suffix('%')
            .and_then(|p| parse_i64_strict(p.as_bytes()))
        {
            if n >= 0 {
                return Ok(-n);
            }
        }
    }
    if format == NumberFormat::Octal {
        if let Some(v) = c_strtoll(s, 8) {
            return Ok(v);
        }
    }
    if format == NumberFormat::Plain {
        if let Some(v) = parse_i64_strict(s.as_bytes()) {
            return Ok(v);
        }
    }
    Err(match format {
        NumberFormat::MemoryPercent => "argument must be a memory or percent value",
        NumberFormat::Memory => "argument must be a memory value",
        NumberFormat::Octal => "argument couldn't be parsed as an octal number",
        NumberFormat::Plain => "argument couldn't be parsed into an integer",
    }
    .to_string())
}

pub(super) fn check_bounds(
    value: i64,
    min: i128,
    max: i128,
    unsigned: bool,
    format: NumberFormat,
) -> Result<(), String> {
    if unsigned {
        let v = i128::from(value as u64);
        if v > max || v < min {
            return Err(if format == NumberFormat::Octal {
                format!("argument must be between {min:o} and {max:o} inclusive")
            } else {
                format!("argument must be between {min} and {max} inclusive")
            });
        }
        return Ok(());
    }
    let v = i128::from(value);
    if format == NumberFormat::MemoryPercent && value < 0 {
        if v < min {
            return Err(format!(
                "percentage argument must be less or equal to {}",
                -min
            ));
        }
        return Ok(());
    }
    if v > max || v < min {
        return Err(format!(
            "argument must be between {min} and {max} inclusive"
        ));
    }
    Ok(())
}

pub(super) fn format_number(value: i64, format: NumberFormat) -> String {
    match format {
        NumberFormat::MemoryPercent if value < 0 => format!("{}%", value.unsigned_abs()),
        NumberFormat::Memory | NumberFormat::MemoryPercent => (value as u64).to_string(),
        NumberFormat::Octal => format!("{value:o}"),
        NumberFormat::Plain => value.to_string(),
    }
}

/// `strtod`-style double for config values: decimal or exponent notation.
pub(super) fn parse_redis_double(s: &str) -> Option<f64> {
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// Redis's `trimDoubleString`: drop trailing zeros of a `%f` and a bare point.
pub(super) fn trim_double(s: &str) -> String {
    if !s.contains('.') {
        return s.to_string();
    }
    let t = s.trim_end_matches('0');
    t.strip_suffix('.').unwrap_or(t).to_string()
}
