//! Conversions between Lua values and replies, by Redis 7.0's rules
//! (`script_lua.c`: `redisProtocolToLuaType`, `luaReplyToRedisReply`).
//!
//! Reply to Lua (what `redis.call` returns), in the script's protocol
//! (`redis.setresp`, 2 by default): an integer is a number, a bulk string a
//! string, a status `{ok=...}`, an error `{err=...}`, an array a table; in
//! RESP2 a null is `false`, and RESP3 types arrive as Redis lowers them to
//! RESP2. In RESP3 a null is `nil`, a boolean a boolean, a map `{map=...}`,
//! a set `{set=...}`, a double `{double=...}`.
//!
//! Lua to reply (what the script returns): a string is a bulk string, a
//! number an integer (truncated), `true` 1 and `false` a null in RESP2
//! (booleans in RESP3), `nil` a null, a table with `ok`/`err`/`double`/
//! `map`/`set` that reply, any other table an array of its elements from 1
//! up to the first nil. Nesting is bounded by [`NESTING_MAX`].

use bytes::Bytes;
use chorus_engine::redis::geohash::format_coordinate;
use chorus_engine::redis::num::format_double;
use chorus_engine::Reply;
use mlua::{Lua, Table, Value};

/// Deepest reply or table converted; deeper levels become errors (Redis
/// bounds the nesting with the Lua stack).
pub const NESTING_MAX: usize = 64;

/// A reply as a Lua value, in the script's protocol.
pub fn reply_to_lua(lua: &Lua, reply: &Reply, resp3: bool, depth: usize) -> mlua::Result<Value> {
    if depth > NESTING_MAX {
        return Err(mlua::Error::runtime("reached lua stack limit"));
    }
    let array = |items: &mut dyn Iterator<Item = &Reply>| -> mlua::Result<Value> {
        let table = lua.create_table()?;
        for (i, item) in items.enumerate() {
            table.raw_set(i + 1, reply_to_lua(lua, item, resp3, depth + 1)?)?;
        }
        Ok(Value::Table(table))
    };
    let single = |key: &str, value: Value| -> mlua::Result<Value> {
        let table = lua.create_table()?;
        table.raw_set(key, value)?;
        Ok(Value::Table(table))
    };
    Ok(match reply {
        Reply::Ok => single("ok", Value::String(lua.create_string("OK")?))?,
        Reply::Simple(text) => single("ok", Value::String(lua.create_string(text)?))?,
        Reply::Error(text) => single("err", Value::String(lua.create_string(text)?))?,
        Reply::Int(n) => Value::Number(*n as f64),
        Reply::Bulk(bytes) => Value::String(lua.create_string(bytes)?),
        Reply::Verbatim(text) if !resp3 => Value::String(lua.create_string(text)?),
        Reply::Verbatim(text) => {
            let inner = lua.create_table()?;
            inner.raw_set("format", "txt")?;
            inner.raw_set("string", lua.create_string(text)?)?;
            single("verbatim_string", Value::Table(inner))?
        }
        Reply::Nil | Reply::NilArray if resp3 => Value::Nil,
        Reply::Nil | Reply::NilArray => Value::Boolean(false),
        Reply::Array(items) | Reply::Push(items) | Reply::Frames(items) => {
            array(&mut items.iter())?
        }
        Reply::Set(items) if resp3 => {
            let set = lua.create_table()?;
            for item in items {
                set.raw_set(reply_to_lua(lua, item, resp3, depth + 1)?, true)?;
            }
            single("set", Value::Table(set))?
        }
        Reply::Set(items) => array(&mut items.iter())?,
        Reply::Map(pairs) if resp3 => {
            let map = lua.create_table()?;
            for (k, v) in pairs {
                map.raw_set(
                    reply_to_lua(lua, k, resp3, depth + 1)?,
                    reply_to_lua(lua, v, resp3, depth + 1)?,
                )?;
            }
            single("map", Value::Table(map))?
        }
        Reply::Pairs(pairs) if resp3 => {
            let table = lua.create_table()?;
            for (i, (a, b)) in pairs.iter().enumerate() {
                let pair = lua.create_table()?;
                pair.raw_set(1, reply_to_lua(lua, a, resp3, depth + 2)?)?;
                pair.raw_set(2, reply_to_lua(lua, b, resp3, depth + 2)?)?;
                table.raw_set(i + 1, pair)?;
            }
            Value::Table(table)
        }
        Reply::Map(pairs) | Reply::Pairs(pairs) => {
            array(&mut pairs.iter().flat_map(|(k, v)| [k, v]))?
        }
        Reply::Double(d) | Reply::HumanDouble(d) if resp3 => single("double", Value::Number(*d))?,
        Reply::Double(d) => Value::String(lua.create_string(format_double(*d))?),
        Reply::HumanDouble(d) => Value::String(lua.create_string(format_coordinate(*d))?),
        Reply::Bool(b) if resp3 => Value::Boolean(*b),
        Reply::Bool(b) => Value::Number(if *b { 1.0 } else { 0.0 }),
    })
}

/// The reply a script's return value makes. `resp3`: the script's
/// protocol (`redis.setresp`), which decides how booleans convert.
pub fn lua_to_reply(lua: &Lua, value: &Value, resp3: bool, depth: usize) -> Reply {
    if depth > NESTING_MAX {
        return Reply::err("ERR reached lua stack limit");
    }
    match value {
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Integer(n) => Reply::Int(*n),
        Value::Number(n) => Reply::Int(*n as i64),
        Value::Boolean(b) if resp3 => Reply::Bool(*b),
        Value::Boolean(true) => Reply::Int(1),
        Value::Boolean(false) => Reply::Nil,
        Value::Table(table) => table_to_reply(lua, table, resp3, depth),
        _ => Reply::Nil,
    }
}

fn field(table: &Table, name: &str) -> Value {
    table.raw_get(name).unwrap_or(Value::Nil)
}

fn table_to_reply(lua: &Lua, table: &Table, resp3: bool, depth: usize) -> Reply {
    if let Value::String(err) = field(table, "err") {
        // Sent as it is: `{err='E1'}` answers `-E1`.
        return Reply::Error(err.to_string_lossy().replace(['\r', '\n'], " "));
    }
    if let Value::String(ok) = field(table, "ok") {
        return Reply::Simple(ok.to_string_lossy().replace(['\r', '\n'], " "));
    }
    match field(table, "double") {
        Value::Number(d) => return Reply::Double(d),
        Value::Integer(n) => return Reply::Double(n as f64),
        _ => {}
    }
    if let Value::Table(map) = field(table, "map") {
        let mut pairs = Vec::new();
        for (k, v) in map.pairs::<Value, Value>().flatten() {
            pairs.push((
                lua_to_reply(lua, &k, resp3, depth + 1),
                lua_to_reply(lua, &v, resp3, depth + 1),
            ));
        }
        return Reply::Map(pairs);
    }
    if let Value::Table(set) = field(table, "set") {
        let mut items = Vec::new();
        for (k, _) in set.pairs::<Value, Value>().flatten() {
            items.push(lua_to_reply(lua, &k, resp3, depth + 1));
        }
        return Reply::Set(items);
    }
    let mut items = Vec::new();
    for i in 1.. {
        match table.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(lua_to_reply(lua, &v, resp3, depth + 1)),
        }
    }
    Reply::Array(items)
}

/// `redis.error_reply(text)`'s `err`: Redis reads `-CODE message` (a
/// leading `-` is added when missing) and, without a space, takes the
/// code `ERR`: `boom` gives `ERR boom`, `-X boom` and `X boom` give `X boom`.
pub fn error_reply_text(text: &str) -> String {
    let text = text.strip_prefix('-').unwrap_or(text);
    let text = text.trim_end_matches(['\r', '\n']);
    if text.contains(' ') {
        text.to_string()
    } else {
        format!("ERR {text}")
    }
}
