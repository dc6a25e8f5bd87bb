//! The `cjson` library Redis scripts expect (Redis ships lua-cjson 2.1.0):
//! `cjson.encode`, `cjson.decode`, `cjson.null`.
//!
//! Encoding follows lua-cjson's rules: numbers as Lua prints them (`%.14g`),
//! NaN and infinities refused; strings escaped as lua-cjson escapes them
//! (`/` as `\/`, control characters as `\uXXXX`, other bytes as they are);
//! a table whose keys are all positive integers is an array (holes become
//! `null`; an array more than twice as long as its elements, and longer than
//! 10, is refused as excessively sparse), any other table an object whose
//! keys must be strings or numbers; an empty table is `{}`; nesting deeper
//! than [`DEPTH_MAX`] is refused. Decoding is `serde_json`'s parser: objects
//! and arrays become tables, `null` becomes `cjson.null`. Decoding errors
//! are not worded as lua-cjson words them.

use mlua::{LightUserData, Lua, Table, Value};

/// lua-cjson's default `encode_max_depth` and `decode_max_depth`.
pub const DEPTH_MAX: usize = 1000;
/// An array may be this many times longer than its elements...
const SPARSE_RATIO: usize = 2;
/// ...when it is longer than this.
const SPARSE_SAFE: usize = 10;

/// `cjson.null`: a light userdata holding NULL, as in lua-cjson.
fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// Builds the `cjson` table.
pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let cjson = lua.create_table()?;
    cjson.raw_set(
        "encode",
        lua.create_function(|lua, value: Value| {
            let mut out = Vec::new();
            encode(lua, &value, 0, &mut out)?;
            lua.create_string(&out)
        })?,
    )?;
    cjson.raw_set(
        "decode",
        lua.create_function(|lua, text: mlua::String| {
            let bytes = text.as_bytes();
            let parsed: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                mlua::Error::runtime(format!("Expected value but found invalid token ({e})"))
            })?;
            decode(lua, &parsed, 0)
        })?,
    )?;
    cjson.raw_set("null", null())?;
    cjson.raw_set("_NAME", "cjson")?;
    cjson.raw_set("_VERSION", "2.1.0")?;
    Ok(cjson)
}

fn encode(lua: &Lua, value: &Value, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::Integer(n) => number(lua, *n as f64, out)?,
        Value::Number(n) => {
            if !n.is_finite() {
                return Err(failure(
                    lua,
                    "Cannot serialise number: must not be NaN or Inf",
                ));
            }
            number(lua, *n, out)?;
        }
        Value::String(s) => escape(&s.as_bytes(), out),
        Value::Table(t) => {
            if depth >= DEPTH_MAX {
                return Err(failure(
                    lua,
                    &format!("Cannot serialise, excessive nesting ({})", depth + 1),
                ));
            }
            match array_length(lua, t)? {
                Some(len) if len > 0 => {
                    out.push(b'[');
                    for i in 1..=len {
                        if i > 1 {
                            out.push(b',');
                        }
                        encode(lua, &t.raw_get::<Value>(i)?, depth + 1, out)?;
                    }
                    out.push(b']');
                }
                _ => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in t.clone().pairs::<Value, Value>() {
                        let (k, v) = pair?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &k {
                            Value::String(s) => escape(&s.as_bytes(), out),
                            Value::Integer(n) => {
                                let mut text = Vec::new();
                                number(lua, *n as f64, &mut text)?;
                                escape(&text, out);
                            }
                            Value::Number(n) => {
                                let mut text = Vec::new();
                                number(lua, *n, &mut text)?;
                                escape(&text, out);
                            }
                            other => {
                                return Err(failure(
                                    lua,
                                    &format!(
                                        "Cannot serialise {}: table key must be a number or string",
                                        other.type_name()
                                    ),
                                ))
                            }
                        }
                        out.push(b':');
                        encode(lua, &v, depth + 1, out)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => {
            return Err(failure(
                lua,
                &format!("Cannot serialise {}: type not supported", other.type_name()),
            ))
        }
    }
    Ok(())
}

/// lua-cjson's `lua_array_length`: the largest key if every key is a
/// positive integer, `None` if any is not (an object).
fn array_length(lua: &Lua, t: &Table) -> mlua::Result<Option<usize>> {
    let (mut max, mut items) = (0usize, 0usize);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair?;
        let n = match k {
            Value::Integer(n) => n as f64,
            Value::Number(n) => n,
            _ => return Ok(None),
        };
        if n < 1.0 || n.floor() != n || n > u32::MAX as f64 {
            return Ok(None);
        }
        max = max.max(n as usize);
        items += 1;
    }
    if max > SPARSE_SAFE && max > items.saturating_mul(SPARSE_RATIO) {
        return Err(failure(
            lua,
            "Cannot serialise table: excessively sparse array",
        ));
    }
    Ok(Some(max))
}

/// A number as lua-cjson writes it: Lua's own `%.14g`.
fn number(lua: &Lua, n: f64, out: &mut Vec<u8>) -> mlua::Result<()> {
    let text = lua.coerce_string(Value::Number(n))?;
    out.extend_from_slice(&text.map(|s| s.as_bytes().to_vec()).unwrap_or_default());
    Ok(())
}

/// An error as lua-cjson raises it: with the script's position in front.
pub(super) fn failure(lua: &Lua, text: &str) -> mlua::Error {
    match super::script_line(lua) {
        Some(line) => mlua::Error::runtime(format!("user_script:{line}: {text}")),
        None => mlua::Error::runtime(text.to_string()),
    }
}

fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn decode(lua: &Lua, value: &serde_json::Value, depth: usize) -> mlua::Result<Value> {
    if depth >= DEPTH_MAX {
        return Err(mlua::Error::runtime(
            "Found too many nested data structures",
        ));
    }
    Ok(match value {
        serde_json::Value::Null => null(),
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::String(lua.create_string(s)?),
        serde_json::Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, decode(lua, item, depth + 1)?)?;
            }
            Value::Table(t)
        }
        serde_json::Value::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, v) in map {
                t.raw_set(lua.create_string(k)?, decode(lua, v, depth + 1)?)?;
            }
            Value::Table(t)
        }
    })
}
