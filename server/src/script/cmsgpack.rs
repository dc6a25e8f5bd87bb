//! The `cmsgpack` library Redis scripts expect (lua-cmsgpack 0.4):
//! `cmsgpack.pack(...)` and `cmsgpack.unpack(data)`, with its type mapping.
//!
//! Packing: `nil`, booleans; a number that is a whole number within 64 bits
//! as the smallest MessagePack integer, any other as a float32 when that is
//! exact, else a float64; strings as fixstr/str8/str16/str32; a table whose
//! keys are exactly `1..n` as an array, any other as a map (keys and values
//! in Lua's `next` order); tables nested deeper than [`NESTING_MAX`] and
//! values of other types as `nil`. Unpacking returns every value of the
//! input; maps and arrays become tables, binaries strings. MessagePack is
//! small enough to write here; no dependency for it.

use mlua::{Lua, MultiValue, Table, Value, Variadic};

/// lua-cmsgpack's `LUACMSGPACK_MAX_NESTING`.
pub const NESTING_MAX: usize = 16;
/// Deepest input unpacked (the Lua stack would end it).
const UNPACK_DEPTH_MAX: usize = 1000;

pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let cmsgpack = lua.create_table()?;
    cmsgpack.raw_set(
        "pack",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.is_empty() {
                return Err(super::cjson::failure(
                    lua,
                    "bad argument #0 to 'pack' (MessagePack pack needs input.)",
                ));
            }
            let mut out = Vec::new();
            for value in args.iter() {
                pack(value, 0, &mut out)?;
            }
            lua.create_string(&out)
        })?,
    )?;
    cmsgpack.raw_set(
        "unpack",
        lua.create_function(|lua, data: mlua::String| {
            let bytes = data.as_bytes();
            let mut at = 0;
            let mut values = Vec::new();
            while at < bytes.len() {
                values.push(unpack(lua, &bytes, &mut at, 0)?);
            }
            Ok(MultiValue::from_iter(values))
        })?,
    )?;
    cmsgpack.raw_set("_NAME", "cmsgpack")?;
    cmsgpack.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    Ok(cmsgpack)
}

fn pack(value: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match value {
        Value::Boolean(true) => out.push(0xc3),
        Value::Boolean(false) => out.push(0xc2),
        Value::Integer(n) => pack_number(*n as f64, out),
        Value::Number(n) => pack_number(*n, out),
        Value::String(s) => {
            let bytes = s.as_bytes();
            let len = bytes.len();
            if len < 32 {
                out.push(0xa0 | len as u8);
            } else if len <= 0xff {
                out.extend_from_slice(&[0xd9, len as u8]);
            } else if len <= 0xffff {
                out.push(0xda);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(0xdb);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
            out.extend_from_slice(&bytes);
        }
        Value::Table(t) if level < NESTING_MAX => match array_length(t)? {
            Some(len) => {
                header(out, len, [0x90, 0xdc, 0xdd]);
                for i in 1..=len {
                    pack(&t.raw_get::<Value>(i)?, level + 1, out)?;
                }
            }
            None => {
                let pairs: Vec<(Value, Value)> = t
                    .clone()
                    .pairs::<Value, Value>()
                    .collect::<mlua::Result<_>>()?;
                header(out, pairs.len(), [0x80, 0xde, 0xdf]);
                for (k, v) in &pairs {
                    pack(k, level + 1, out)?;
                    pack(v, level + 1, out)?;
                }
            }
        },
        _ => out.push(0xc0),
    }
    Ok(())
}

/// A fix/16/32 header: `tags` are the fix base, the 16-bit and the 32-bit tag.
fn header(out: &mut Vec<u8>, len: usize, [fix, tag16, tag32]: [u8; 3]) {
    if len < 16 {
        out.push(fix | len as u8);
    } else if len <= 0xffff {
        out.push(tag16);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(tag32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn pack_number(n: f64, out: &mut Vec<u8>) {
    let whole = n.is_finite()
        && n.floor() == n
        && (-9.223_372_036_854_776e18..1.844_674_407_370_955_2e19).contains(&n);
    if !whole {
        let single = n as f32;
        if f64::from(single) == n || n.is_infinite() {
            out.push(0xca);
            out.extend_from_slice(&single.to_be_bytes());
        } else {
            out.push(0xcb);
            out.extend_from_slice(&n.to_be_bytes());
        }
        return;
    }
    if n >= 0.0 {
        let u = n as u64;
        if u <= 0x7f {
            out.push(u as u8);
        } else if u <= 0xff {
            out.extend_from_slice(&[0xcc, u as u8]);
        } else if u <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(u as u16).to_be_bytes());
        } else if u <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(u as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
    } else {
        let i = n as i64;
        if i >= -32 {
            out.push(i as i8 as u8);
        } else if i >= -128 {
            out.extend_from_slice(&[0xd0, i as i8 as u8]);
        } else if i >= -32768 {
            out.push(0xd1);
            out.extend_from_slice(&(i as i16).to_be_bytes());
        } else if i >= -2_147_483_648 {
            out.push(0xd2);
            out.extend_from_slice(&(i as i32).to_be_bytes());
        } else {
            out.push(0xd3);
            out.extend_from_slice(&i.to_be_bytes());
        }
    }
}

/// lua-cmsgpack's `table_is_an_array`: `Some(n)` when the keys are exactly
/// the whole numbers `1..=n`.
fn array_length(t: &Table) -> mlua::Result<Option<usize>> {
    let (mut count, mut max) = (0usize, 0usize);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair?;
        let n = match k {
            Value::Integer(n) => n as f64,
            Value::Number(n) => n,
            _ => return Ok(None),
        };
        if n < 1.0 || n.floor() != n {
            return Ok(None);
        }
        max = max.max(n as usize);
        count += 1;
    }
    Ok((count == max).then_some(max))
}

fn take<'a>(lua: &Lua, bytes: &'a [u8], at: &mut usize, n: usize) -> mlua::Result<&'a [u8]> {
    let end = at.checked_add(n).filter(|&e| e <= bytes.len());
    let Some(end) = end else {
        return Err(super::cjson::failure(lua, "Missing bytes in input."));
    };
    let out = bytes.get(*at..end).unwrap_or_default();
    *at = end;
    Ok(out)
}

fn be(lua: &Lua, bytes: &[u8], at: &mut usize, n: usize) -> mlua::Result<u64> {
    Ok(take(lua, bytes, at, n)?
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

fn unpack(lua: &Lua, bytes: &[u8], at: &mut usize, depth: usize) -> mlua::Result<Value> {
    if depth > UNPACK_DEPTH_MAX {
        return Err(super::cjson::failure(lua, "Bad data format in input."));
    }
    let tag = take(lua, bytes, at, 1)?.first().copied().unwrap_or(0xc1);
    let num = |n: f64| Ok(Value::Number(n));
    match tag {
        0x00..=0x7f => num(f64::from(tag)),
        0xe0..=0xff => num(f64::from(tag as i8)),
        0xa0..=0xbf => string(lua, bytes, at, usize::from(tag & 0x1f)),
        0x90..=0x9f => array(lua, bytes, at, usize::from(tag & 0x0f), depth),
        0x80..=0x8f => map(lua, bytes, at, usize::from(tag & 0x0f), depth),
        0xc0 => Ok(Value::Nil),
        0xc2 => Ok(Value::Boolean(false)),
        0xc3 => Ok(Value::Boolean(true)),
        0xcc => num(be(lua, bytes, at, 1)? as f64),
        0xcd => num(be(lua, bytes, at, 2)? as f64),
        0xce => num(be(lua, bytes, at, 4)? as f64),
        0xcf => num(be(lua, bytes, at, 8)? as f64),
        0xd0 => num(f64::from(be(lua, bytes, at, 1)? as u8 as i8)),
        0xd1 => num(f64::from(be(lua, bytes, at, 2)? as u16 as i16)),
        0xd2 => num(f64::from(be(lua, bytes, at, 4)? as u32 as i32)),
        0xd3 => num(be(lua, bytes, at, 8)? as i64 as f64),
        0xca => num(f64::from(f32::from_bits(be(lua, bytes, at, 4)? as u32))),
        0xcb => num(f64::from_bits(be(lua, bytes, at, 8)?)),
        0xd9 | 0xc4 => {
            let n = be(lua, bytes, at, 1)? as usize;
            string(lua, bytes, at, n)
        }
        0xda | 0xc5 => {
            let n = be(lua, bytes, at, 2)? as usize;
            string(lua, bytes, at, n)
        }
        0xdb | 0xc6 => {
            let n = be(lua, bytes, at, 4)? as usize;
            string(lua, bytes, at, n)
        }
        0xdc => {
            let n = be(lua, bytes, at, 2)? as usize;
            array(lua, bytes, at, n, depth)
        }
        0xdd => {
            let n = be(lua, bytes, at, 4)? as usize;
            array(lua, bytes, at, n, depth)
        }
        0xde => {
            let n = be(lua, bytes, at, 2)? as usize;
            map(lua, bytes, at, n, depth)
        }
        0xdf => {
            let n = be(lua, bytes, at, 4)? as usize;
            map(lua, bytes, at, n, depth)
        }
        _ => Err(super::cjson::failure(lua, "Bad data format in input.")),
    }
}

fn string(lua: &Lua, bytes: &[u8], at: &mut usize, n: usize) -> mlua::Result<Value> {
    Ok(Value::String(lua.create_string(take(lua, bytes, at, n)?)?))
}

fn array(lua: &Lua, bytes: &[u8], at: &mut usize, n: usize, depth: usize) -> mlua::Result<Value> {
    // Every element takes at least one byte: a count beyond the input is bad.
    let t = lua.create_table_with_capacity(n.min(bytes.len()), 0)?;
    for i in 1..=n {
        t.raw_set(i, unpack(lua, bytes, at, depth + 1)?)?;
    }
    Ok(Value::Table(t))
}

fn map(lua: &Lua, bytes: &[u8], at: &mut usize, n: usize, depth: usize) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(0, n.min(bytes.len()))?;
    for _ in 0..n {
        let k = unpack(lua, bytes, at, depth + 1)?;
        let v = unpack(lua, bytes, at, depth + 1)?;
        if !matches!(k, Value::Nil) {
            t.raw_set(k, v)?;
        }
    }
    Ok(Value::Table(t))
}
