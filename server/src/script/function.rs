//! FUNCTION LOAD's libraries at this site (Redis 7.0's `functions.c` and
//! `function_lua.c`): the `#!lua name=<lib>` header, the loading run in
//! which only `redis.register_function`, `redis.log` and Redis's constants
//! exist, the functions' flags, and the replacement rules.
//!
//! A library's code runs once, at load, in an environment of its own; once
//! loaded, that environment becomes a read-only view of the globals, so its
//! functions see what a script sees. Libraries live in memory at this site
//! only (see docs/status.md).

use std::cell::RefCell;
use std::collections::BTreeMap;

use bytes::Bytes;
use mlua::{Function, Lua, Table, Value};

use super::{first_line, ScriptError};

/// The flags `register_function` accepts, in the order FUNCTION LIST
/// prints them.
pub const FLAGS: [&str; 5] = [
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

/// How long a library's code may run at load (Redis's `LOAD_TIMEOUT_MS`).
pub const LOAD_TIMEOUT_MS: u64 = 500;

/// Libraries kept; FUNCTION LOAD past it is refused.
pub const LIBRARIES_MAX: usize = 10_000;

const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

#[derive(Clone)]
pub struct RegisteredFunction {
    pub name: String,
    pub library: String,
    pub callback: Function,
    pub description: Option<String>,
    /// Bits of [`FLAGS`].
    pub flags: u8,
}

impl RegisteredFunction {
    pub fn no_writes(&self) -> bool {
        self.flags & 1 != 0
    }

    pub fn flag_names(&self) -> Vec<&'static str> {
        FLAGS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.flags & (1 << i) != 0)
            .map(|(_, f)| *f)
            .collect()
    }
}

pub struct Library {
    pub code: Bytes,
    /// Its functions, in registration order.
    pub functions: Vec<RegisteredFunction>,
}

pub struct Libraries {
    pub libraries: BTreeMap<String, Library>,
    /// What a loading run sees: `redis` with `register_function` and `log`.
    load_api: Table,
    readonly: Function,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Libraries {
    pub fn new(
        lua: &Lua,
        redis: &Table,
        readonly: Function,
        missing: Function,
    ) -> mlua::Result<Libraries> {
        let api_redis = lua.create_table()?;
        for name in [
            "log",
            "LOG_DEBUG",
            "LOG_VERBOSE",
            "LOG_NOTICE",
            "LOG_WARNING",
            "REDIS_VERSION",
            "REDIS_VERSION_NUM",
        ] {
            api_redis.raw_set(name, redis.raw_get::<Value>(name)?)?;
        }
        let api_meta = lua.create_table()?;
        api_meta.raw_set("__index", missing.clone())?;
        api_redis.set_metatable(Some(api_meta.clone()));
        let load_api = lua.create_table()?;
        load_api.raw_set("redis", api_redis)?;
        load_api.set_metatable(Some(api_meta));
        Ok(Libraries {
            libraries: BTreeMap::new(),
            load_api,
            readonly,
        })
    }

    pub fn function(&self, name: &str) -> Option<&RegisteredFunction> {
        self.libraries
            .values()
            .flat_map(|l| l.functions.iter())
            .find(|f| f.name == name)
    }

    pub fn function_count(&self) -> usize {
        self.libraries.values().map(|l| l.functions.len()).sum()
    }

    /// FUNCTION LOAD, with or without REPLACE: the library's name, or Redis's error.
    pub fn load(&mut self, lua: &Lua, code: &[u8], replace: bool) -> Result<String, ScriptError> {
        let (engine, name) = header(code)?;
        if !engine.eq_ignore_ascii_case("lua") {
            return Err(format!("ERR Engine '{engine}' not found"));
        }
        if !valid_name(&name) {
            return Err(format!("ERR {BAD_NAME}"));
        }
        if self.libraries.contains_key(&name) && !replace {
            return Err(format!("ERR Library '{name}' already exists"));
        }
        if !self.libraries.contains_key(&name) && self.libraries.len() >= LIBRARIES_MAX {
            return Err("ERR too many function libraries".to_string());
        }
        let functions = self
            .run_loading(lua, code, &name)
            .map_err(|e| format!("ERR Error registering functions: {e}"))?;
        if functions.is_empty() {
            return Err("ERR No functions registered".to_string());
        }
        for f in &functions {
            if let Some(other) = self.function(&f.name) {
                if other.library != name {
                    return Err(format!("ERR Function {} already exists", f.name));
                }
            }
        }
        self.libraries.insert(
            name.clone(),
            Library {
                code: Bytes::copy_from_slice(code),
                functions,
            },
        );
        Ok(name)
    }

    /// Runs the library's code with only the loading API in sight; returns
    /// what it registered.
    fn run_loading(
        &self,
        lua: &Lua,
        code: &[u8],
        library: &str,
    ) -> Result<Vec<RegisteredFunction>, String> {
        let fail = |e: mlua::Error| format!("ERR {}", root(&e));
        let env = lua.create_table().map_err(fail)?;
        let meta = lua.create_table().map_err(fail)?;
        meta.raw_set("__index", self.load_api.clone())
            .map_err(fail)?;
        meta.raw_set("__newindex", self.readonly.clone())
            .map_err(fail)?;
        meta.raw_set("__metatable", false).map_err(fail)?;
        env.set_metatable(Some(meta.clone()));
        // The header stays line 1 (a comment to Lua), so lines match Redis's.
        let mut body = b"--".to_vec();
        body.extend_from_slice(code.get(2..).unwrap_or_default());
        let chunk = lua
            .load(&body)
            .set_name("@user_function")
            .set_environment(env.clone())
            .into_function()
            .map_err(|e| format!("ERR Error compiling function: {}", first_line(&e)))?;
        let registered: RefCell<Vec<RegisteredFunction>> = RefCell::new(Vec::new());
        let api_redis: Table = self.load_api.raw_get("redis").map_err(fail)?;
        // A library's code runs at most this long (Redis's load timeout).
        let started = std::time::Instant::now();
        lua.set_hook(
            mlua::HookTriggers::new().every_nth_instruction(super::HOOK_INSTRUCTIONS),
            move |_, _| {
                if started.elapsed() > std::time::Duration::from_millis(LOAD_TIMEOUT_MS) {
                    return Err(mlua::Error::runtime("FUNCTION LOAD timeout"));
                }
                Ok(mlua::VmState::Continue)
            },
        );
        let outcome = lua.scope(|scope| {
            let register = scope.create_function(|_, args: mlua::Variadic<Value>| {
                let f = registration(&args, library)?;
                let mut list = registered.borrow_mut();
                if list.iter().any(|r| r.name == f.name) {
                    return Err(mlua::Error::runtime(
                        "Function already exists in the library",
                    ));
                }
                list.push(f);
                Ok(())
            })?;
            api_redis.raw_set("register_function", register)?;
            let out = chunk.call::<()>(());
            api_redis.raw_set("register_function", Value::Nil)?;
            out
        });
        lua.remove_hook();
        outcome.map_err(fail)?;
        // From now on the library's functions see the globals, read-only.
        let globals = lua.globals();
        meta.raw_set("__index", globals).map_err(fail)?;
        Ok(registered.into_inner())
    }

    pub fn delete(&mut self, name: &str) -> bool {
        self.libraries.remove(name).is_some()
    }

    pub fn flush(&mut self) {
        self.libraries.clear();
    }
}

/// `redis.register_function(name, callback)` or
/// `redis.register_function{function_name=, callback=, flags=, description=}`.
fn registration(args: &[Value], library: &str) -> mlua::Result<RegisteredFunction> {
    let (name, callback, flags, description) = match args {
        [Value::Table(t)] => {
            let mut name = None;
            let mut callback = None;
            let mut flags = 0u8;
            let mut description = None;
            for pair in t.clone().pairs::<Value, Value>() {
                let (k, v) = pair?;
                let key =
                    match &k {
                        Value::String(s) => s.to_string_lossy(),
                        _ => return Err(mlua::Error::runtime(
                            "named argument key given to redis.register_function is not a string",
                        )),
                    };
                match (key.as_str(), v) {
                    ("function_name", Value::String(s)) => name = Some(s.to_string_lossy()),
                    ("callback", Value::Function(f)) => callback = Some(f),
                    ("description", Value::String(s)) => description = Some(s.to_string_lossy()),
                    ("flags", Value::Table(list)) => {
                        for flag in list.sequence_values::<Value>() {
                            let Value::String(flag) = flag? else {
                                return Err(mlua::Error::runtime("unknown flag given"));
                            };
                            let flag = flag.to_string_lossy();
                            match FLAGS.iter().position(|f| *f == flag) {
                                Some(i) => flags |= 1 << i,
                                None => return Err(mlua::Error::runtime("unknown flag given")),
                            }
                        }
                    }
                    ("function_name", _) => return Err(mlua::Error::runtime("function_name argument given to redis.register_function must be a string")),
                    ("callback", _) => return Err(mlua::Error::runtime("callback argument given to redis.register_function must be a function")),
                    ("description", _) => return Err(mlua::Error::runtime("description argument given to redis.register_function must be a string")),
                    ("flags", _) => return Err(mlua::Error::runtime("flags argument to redis.register_function must be a table representing function flags")),
                    _ => return Err(mlua::Error::runtime("unknown argument given to redis.register_function")),
                }
            }
            let Some(name) = name else {
                return Err(mlua::Error::runtime(
                    "redis.register_function must get a function name argument",
                ));
            };
            let Some(callback) = callback else {
                return Err(mlua::Error::runtime(
                    "redis.register_function must get a callback argument",
                ));
            };
            (name, callback, flags, description)
        }
        [Value::String(name), callback] => {
            let Value::Function(callback) = callback else {
                return Err(mlua::Error::runtime(
                    "second argument to redis.register_function must be a function",
                ));
            };
            (name.to_string_lossy(), callback.clone(), 0, None)
        }
        [_, _] => {
            return Err(mlua::Error::runtime(
                "first argument to redis.register_function must be a string",
            ))
        }
        _ => {
            return Err(mlua::Error::runtime(
                "wrong number of arguments to redis.register_function",
            ))
        }
    };
    if !valid_name(&name) {
        return Err(mlua::Error::runtime(BAD_NAME));
    }
    Ok(RegisteredFunction {
        name,
        library: library.to_string(),
        callback,
        description,
        flags,
    })
}

/// The `#!<engine> name=<lib>` header.
fn header(code: &[u8]) -> Result<(String, String), ScriptError> {
    let Some(rest) = code.strip_prefix(b"#!") else {
        return Err("ERR Missing library metadata".to_string());
    };
    let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let engine = words.next().unwrap_or("").to_string();
    let mut name = None;
    for word in words {
        match word.strip_prefix("name=") {
            Some(n) => name = Some(n.to_string()),
            None => return Err(format!("ERR Invalid metadata value given: {word}")),
        }
    }
    if engine.is_empty() {
        return Err("ERR Engine '' not found".to_string());
    }
    match name {
        Some(name) => Ok((engine, name)),
        None => Err("ERR Library name was not given".to_string()),
    }
}

fn root(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => root(cause),
        // Lua's message, without the traceback mlua adds after it.
        mlua::Error::RuntimeError(s) => s
            .split("\nstack traceback:")
            .next()
            .unwrap_or("")
            .to_string(),
        other => first_line(other),
    }
}
