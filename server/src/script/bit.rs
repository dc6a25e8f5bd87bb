//! The `bit` library Redis scripts expect (LuaBitOp 1.0): 32-bit operations
//! on Lua numbers. A number becomes a 32-bit integer as LuaBitOp makes it
//! (rounded, then taken modulo 2^32 through the `2^52 + 2^51` trick), every
//! result is a signed 32-bit number, shift counts are taken modulo 32.

use mlua::{Lua, Table, Value, Variadic};

/// LuaBitOp's `tobit`: the low 32 bits of `n + 2^52 + 2^51`.
pub fn tobit(n: f64) -> i32 {
    ((n + 6_755_399_441_055_744.0).to_bits() as u32) as i32
}

/// `luaL_checknumber`: a number, or a string Lua reads as one.
fn arg(lua: &Lua, name: &str, args: &[Value], i: usize) -> mlua::Result<i32> {
    let value = args.get(i).cloned().unwrap_or(Value::Nil);
    let n = match &value {
        Value::Integer(n) => Some(*n as f64),
        Value::Number(n) => Some(*n),
        Value::String(_) => lua.coerce_number(value.clone()).ok().flatten(),
        _ => None,
    };
    match n {
        Some(n) => Ok(tobit(n)),
        None => {
            let got = if i >= args.len() {
                "no value"
            } else {
                value.type_name()
            };
            Err(super::cjson::failure(
                lua,
                &format!(
                    "bad argument #{} to '{name}' (number expected, got {got})",
                    i + 1
                ),
            ))
        }
    }
}

fn result(n: i32) -> Value {
    Value::Number(f64::from(n))
}

type Unary = fn(i32) -> i32;
type Binary = fn(i32, i32) -> i32;
type Shift = fn(i32, u32) -> i32;

/// Builds the `bit` table.
pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let bit = lua.create_table()?;
    let unary: [(&str, Unary); 3] = [
        ("tobit", |x| x),
        ("bnot", |x| !x),
        ("bswap", |x| x.swap_bytes()),
    ];
    for (name, f) in unary {
        bit.raw_set(
            name,
            lua.create_function(move |lua, args: Variadic<Value>| {
                Ok(result(f(arg(lua, name, &args, 0)?)))
            })?,
        )?;
    }
    let folds: [(&str, Binary); 3] = [
        ("band", |a, b| a & b),
        ("bor", |a, b| a | b),
        ("bxor", |a, b| a ^ b),
    ];
    for (name, f) in folds {
        bit.raw_set(
            name,
            lua.create_function(move |lua, args: Variadic<Value>| {
                let mut acc = arg(lua, name, &args, 0)?;
                for i in 1..args.len() {
                    acc = f(acc, arg(lua, name, &args, i)?);
                }
                Ok(result(acc))
            })?,
        )?;
    }
    let shifts: [(&str, Shift); 5] = [
        ("lshift", |x, n| ((x as u32) << n) as i32),
        ("rshift", |x, n| ((x as u32) >> n) as i32),
        ("arshift", |x, n| x >> n),
        ("rol", |x, n| (x as u32).rotate_left(n) as i32),
        ("ror", |x, n| (x as u32).rotate_right(n) as i32),
    ];
    for (name, f) in shifts {
        bit.raw_set(
            name,
            lua.create_function(move |lua, args: Variadic<Value>| {
                let x = arg(lua, name, &args, 0)?;
                let n = arg(lua, name, &args, 1)? as u32 & 31;
                Ok(result(f(x, n)))
            })?,
        )?;
    }
    bit.raw_set(
        "tohex",
        lua.create_function(|lua, args: Variadic<Value>| {
            let x = arg(lua, "tohex", &args, 0)? as u32;
            let n = if args.len() > 1 {
                arg(lua, "tohex", &args, 1)?
            } else {
                8
            };
            let upper = n < 0;
            let digits = n.unsigned_abs().min(8) as usize;
            let masked = if digits == 8 {
                x
            } else {
                x & ((1u32 << (4 * digits)) - 1)
            };
            let text = if digits == 0 {
                String::new()
            } else if upper {
                format!("{masked:0digits$X}")
            } else {
                format!("{masked:0digits$x}")
            };
            lua.create_string(text)
        })?,
    )?;
    Ok(bit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tobit_wraps_like_luabitop() {
        assert_eq!(tobit(0.0), 0);
        assert_eq!(tobit(4294967295.0), -1);
        assert_eq!(tobit(2147483648.0), i32::MIN);
        assert_eq!(tobit(-1.0), -1);
        assert_eq!(tobit(1.5), 2);
        assert_eq!(tobit(2.5), 2);
    }
}
