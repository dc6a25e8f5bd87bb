//! Lua scripting (EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT): one Lua 5.1
//! interpreter per server (`mlua`, Lua built from source), with Redis
//! 7.0's `redis` library, sandbox and error texts.
//!
//! A script runs with the store locked from its first instruction to its
//! last, inside one engine transaction (`StoreGuard::begin_transaction`,
//! as EXEC does): it sees one consistent state of the site, nobody writes
//! in between, and every write it makes is one op, replicated and applied
//! atomically at every site. Peers apply the op's effects and never run the
//! script, so a script that reads the clock or draws random numbers is
//! safe.
//!
//! Busy scripts: while a script runs, [`ScriptRun`] (atomics, outside every
//! lock) says since when and whether it wrote. A client whose command
//! arrives after `busy-reply-threshold` gets Redis's `BUSY` error at once
//! instead of waiting for the lock (see `cmd::process_found`); SCRIPT KILL
//! sets a flag the interpreter's instruction-count hook reads, and the
//! script fails with Redis's error unless it already wrote (`UNKILLABLE`).
//!
//! Sandbox: the libraries are base, table, string, math, cjson, bit and cmsgpack (no `os`, `io`,
//! `debug`, `loadfile`, `dofile`); a script's global environment is a
//! read-only view of the globals: reading an unknown global and writing any
//! global fail with Redis's messages. Bounds: the interpreter's memory
//! ([`LUA_MEMORY_BYTES_MAX`]), the cache of compiled scripts
//! ([`SCRIPTS_CACHED_MAX`]: scripts that came by EVAL are dropped oldest
//! first past it, as later Redis releases do; SCRIPT LOAD's stay), and the
//! nesting of converted replies (`convert::NESTING_MAX`).

pub mod bit;
pub mod cjson;
pub mod cmsgpack;
pub mod convert;
pub mod function;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use parking_lot::Mutex;

/// Bytes the interpreter may allocate; past it a script fails with Lua's
/// "not enough memory" error instead of growing the server.
pub const LUA_MEMORY_BYTES_MAX: usize = 1 << 30;
/// Compiled scripts kept (see the module's doc).
pub const SCRIPTS_CACHED_MAX: usize = 10_000;
/// VM instructions between two looks at the clock and the kill flag
/// (Redis's hook runs every 100,000 too).
pub const HOOK_INSTRUCTIONS: u32 = 100_000;

/// How long a script that leaves the runtime waits for another thread to
/// take over the worker's connections.
pub const HANDOFF_WAIT_MS: u64 = 100;

pub const KILLED_ERROR: &str = "ERR Script killed by user with SCRIPT KILL...";
pub const BUSY_ERROR: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
pub const NOTBUSY_ERROR: &str = "NOTBUSY No scripts in execution right now.";
pub const UNKILLABLE_ERROR: &str = "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.";

/// The script running now, if any, as other clients see it (no lock).
#[derive(Debug)]
pub struct ScriptRun {
    running: AtomicBool,
    /// Milliseconds from `epoch` to the start of the running script.
    started_ms: AtomicU64,
    wrote: AtomicBool,
    kill: AtomicBool,
    epoch: Instant,
}

impl Default for ScriptRun {
    fn default() -> ScriptRun {
        ScriptRun {
            running: AtomicBool::new(false),
            started_ms: AtomicU64::new(0),
            wrote: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }
}

/// What SCRIPT KILL found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillOutcome {
    Killed,
    NotBusy,
    Unkillable,
}

impl ScriptRun {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn start(&self) {
        self.wrote.store(false, Ordering::SeqCst);
        self.kill.store(false, Ordering::SeqCst);
        self.started_ms.store(self.now_ms(), Ordering::SeqCst);
        self.running.store(true, Ordering::SeqCst);
    }

    fn finish(&self) {
        self.running.store(false, Ordering::SeqCst);
        self.kill.store(false, Ordering::SeqCst);
    }

    /// A script has run for at least `threshold_ms` (0: never busy).
    pub fn busy(&self, threshold_ms: u64) -> bool {
        self.running.load(Ordering::SeqCst)
            && threshold_ms > 0
            && self
                .now_ms()
                .saturating_sub(self.started_ms.load(Ordering::SeqCst))
                >= threshold_ms
    }

    /// A script is running now.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Waits (blocking this thread, [`crate::store::LOCK_POLL_MS`] at a
    /// time) while a script runs and is not yet busy; true if one is busy
    /// now. A command that would take the store or the interpreter calls it
    /// first, so it never blocks on a lock a script holds past the
    /// threshold (which would keep its thread, and the SCRIPT KILL that
    /// thread would serve, from running).
    pub fn wait_unless_busy(&self, threshold_ms: u64) -> bool {
        loop {
            if !self.running() {
                return false;
            }
            if self.busy(threshold_ms) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(crate::store::LOCK_POLL_MS));
        }
    }

    pub fn note_write(&self) {
        self.wrote.store(true, Ordering::SeqCst);
    }

    /// SCRIPT KILL.
    pub fn kill(&self) -> KillOutcome {
        if !self.running.load(Ordering::SeqCst) {
            return KillOutcome::NotBusy;
        }
        if self.wrote.load(Ordering::SeqCst) {
            return KillOutcome::Unkillable;
        }
        self.kill.store(true, Ordering::SeqCst);
        KillOutcome::Killed
    }

    fn killed(&self) -> bool {
        self.kill.load(Ordering::SeqCst)
    }
}

/// A compiled script.
struct Cached {
    function: Function,
    /// Came by EVAL (may be dropped past the cache's bound).
    by_eval: bool,
}

/// The interpreter and the compiled scripts, behind the server's script lock.
pub struct ScriptVm {
    lua: Lua,
    /// The read-only view every script runs in.
    env: Table,
    /// The prelude's private table: the script's protocol (`resp`).
    hidden: Table,
    /// The `redis` table: `call` and `pcall` are set for each run.
    redis: Table,
    /// FUNCTION LOAD's libraries.
    pub functions: function::Libraries,
    /// Lua's `xpcall` and the error handler every run passes it, made once.
    xpcall: Function,
    handler: Function,
    scripts: HashMap<String, Cached>,
    /// Scripts that came by EVAL, oldest first.
    eval_order: VecDeque<String>,
}

/// Installed once: the `redis` table's Lua side, the read-only view of the
/// globals and the protection of the globals themselves.
const PRELUDE: &str = r#"
local hidden, G = ...
local error, tostring, type, raw_pcall = error, tostring, type, pcall
-- As in Redis 7.0, a script's pcall hands an error reply over as its text.
local function pcall_result(ok, ...)
  if not ok then
    local e = ...
    if type(e) == 'table' and type(e.err) == 'string' then return false, e.err end
    local text = hidden.text(e)
    if text then return false, text end
  end
  return ok, ...
end
G.pcall = function(...) return pcall_result(raw_pcall(...)) end
redis.setresp = function(v)
  if v ~= 2 and v ~= 3 then error({err = "ERR RESP version must be 2 or 3."}, 0) end
  hidden.resp = v
end
local function readonly() error("Attempt to modify a readonly table", 2) end
local function missing(_, k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
end
setmetatable(G, {__index = missing, __newindex = readonly, __metatable = false})
local env = setmetatable({}, {__index = G, __newindex = readonly, __metatable = false})
hidden.apply = function(f, a, b) return function() return f(a, b) end end
return env, readonly, missing
"#;

/// Runs one `redis.call` / `redis.pcall` for a script: the arguments, the
/// script's protocol (RESP3?) in, the reply as a Lua value and whether it
/// is an error out.
pub type CommandRunner<'a> = dyn FnMut(&Lua, bool, Vec<Bytes>) -> mlua::Result<(Value, bool)> + 'a;

/// Why a script could not be compiled or run, as the EVAL reply.
pub type ScriptError = String;

impl ScriptVm {
    pub fn new() -> mlua::Result<ScriptVm> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )?;
        lua.set_memory_limit(LUA_MEMORY_BYTES_MAX)?;
        let globals = lua.globals();
        for name in [
            "loadfile", "dofile", "print", "getfenv", "setfenv", "newproxy", "module", "require",
        ] {
            globals.raw_set(name, Value::Nil)?;
        }
        let redis = lua.create_table()?;
        redis.raw_set(
            "sha1hex",
            lua.create_function(|_, s: mlua::String| Ok(sha1_hex(&s.as_bytes())))?,
        )?;
        redis.raw_set(
            "error_reply",
            lua.create_function(|lua, s: mlua::String| {
                let t = lua.create_table()?;
                t.raw_set("err", convert::error_reply_text(&s.to_string_lossy()))?;
                Ok(t)
            })?,
        )?;
        redis.raw_set(
            "status_reply",
            lua.create_function(|lua, s: mlua::String| {
                let t = lua.create_table()?;
                t.raw_set("ok", s)?;
                Ok(t)
            })?,
        )?;
        redis.raw_set(
            "log",
            lua.create_function(|_, (level, rest): (i64, mlua::Variadic<mlua::String>)| {
                let text: Vec<String> = rest.iter().map(|s| s.to_string_lossy()).collect();
                let text = text.join(" ");
                match level {
                    0 => tracing::debug!(target: "chorus_server::script", "{text}"),
                    1 | 2 => tracing::info!(target: "chorus_server::script", "{text}"),
                    _ => tracing::warn!(target: "chorus_server::script", "{text}"),
                }
                Ok(())
            })?,
        )?;
        for (name, level) in [
            ("LOG_DEBUG", 0),
            ("LOG_VERBOSE", 1),
            ("LOG_NOTICE", 2),
            ("LOG_WARNING", 3),
        ] {
            redis.raw_set(name, level)?;
        }
        redis.raw_set(
            "REDIS_VERSION",
            crate::cmd::connection::REDIS_COMPAT_VERSION,
        )?;
        redis.raw_set("REDIS_VERSION_NUM", 0x0007_000f)?;
        for (name, value) in [
            ("REPL_NONE", 0),
            ("REPL_AOF", 1),
            ("REPL_SLAVE", 2),
            ("REPL_REPLICA", 2),
            ("REPL_ALL", 3),
        ] {
            redis.raw_set(name, value)?;
        }
        // Effects are always what replicates: these only exist for scripts
        // written for older Redis releases.
        redis.raw_set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
        redis.raw_set("set_repl", lua.create_function(|_, _: Value| Ok(()))?)?;
        redis.raw_set("breakpoint", lua.create_function(|_, ()| Ok(false))?)?;
        redis.raw_set(
            "debug",
            lua.create_function(|_, _: mlua::Variadic<Value>| Ok(()))?,
        )?;
        globals.raw_set("redis", redis.clone())?;
        globals.raw_set("cjson", cjson::library(&lua)?)?;
        globals.raw_set("bit", bit::library(&lua)?)?;
        globals.raw_set("cmsgpack", cmsgpack::library(&lua)?)?;
        let hidden = lua.create_table()?;
        hidden.raw_set(
            "text",
            lua.create_function(|_, e: Value| {
                Ok(match e {
                    Value::Error(e) => find_call_error(&e).map(|c| c.text.clone()),
                    _ => None,
                })
            })?,
        )?;
        let (env, readonly, missing): (Table, Function, Function) = lua
            .load(PRELUDE)
            .set_name("=chorus")
            .call((hidden.clone(), globals.clone()))?;
        let functions = function::Libraries::new(&lua, &redis, readonly, missing)?;
        let xpcall: Function = globals.raw_get("xpcall")?;
        let handler = lua.create_function(|lua, err: Value| error_table(lua, err))?;
        Ok(ScriptVm {
            xpcall,
            handler,
            lua,
            env,
            hidden,
            redis,
            functions,
            scripts: HashMap::new(),
            eval_order: VecDeque::new(),
        })
    }

    pub fn exists(&self, sha: &str) -> bool {
        self.scripts.contains_key(&sha.to_ascii_lowercase())
    }

    pub fn flush(&mut self) {
        self.scripts.clear();
        self.eval_order.clear();
    }

    /// Compiles `body` (if not cached) and returns its sha.
    pub fn load(&mut self, body: &[u8], by_eval: bool) -> Result<String, ScriptError> {
        let sha = sha1_hex(body);
        if let Some(cached) = self.scripts.get_mut(&sha) {
            cached.by_eval &= by_eval;
            return Ok(sha);
        }
        let function = self
            .lua
            .load(body)
            .set_name("@user_script")
            .set_environment(self.env.clone())
            .into_function()
            .map_err(|e| {
                format!(
                    "ERR Error compiling script (new function): {}",
                    first_line(&e)
                )
            })?;
        if by_eval {
            self.eval_order.push_back(sha.clone());
            while self.scripts.len() >= SCRIPTS_CACHED_MAX {
                let Some(old) = self.eval_order.pop_front() else {
                    break;
                };
                if self.scripts.get(&old).is_some_and(|c| c.by_eval) {
                    self.scripts.remove(&old);
                }
            }
        }
        self.scripts
            .insert(sha.clone(), Cached { function, by_eval });
        Ok(sha)
    }

    /// Runs a cached script. `call(raise, args)` runs one `redis.call` /
    /// `redis.pcall` and returns the Lua value and whether it failed.
    pub fn run(
        &mut self,
        sha: &str,
        keys: &[Bytes],
        argv: &[Bytes],
        run: &Arc<ScriptRun>,
        call: &mut CommandRunner<'_>,
    ) -> Option<Result<chorus_engine::Reply, ScriptError>> {
        let function = self.scripts.get(sha)?.function.clone();
        let globals = self.lua.globals();
        let outcome = (|| -> mlua::Result<Result<chorus_engine::Reply, ScriptError>> {
            globals.raw_set("KEYS", list(&self.lua, keys)?)?;
            globals.raw_set("ARGV", list(&self.lua, argv)?)?;
            self.invoke(function, sha, "@user_script", run, call)
        })();
        // The globals of one run are not the next one's.
        let _ = globals.raw_set("KEYS", Value::Nil);
        let _ = globals.raw_set("ARGV", Value::Nil);
        Some(outcome.unwrap_or_else(|e| Err(format!("ERR {}", first_line(&e)))))
    }

    /// FCALL: runs a registered function with `(keys, args)`.
    pub fn call_function(
        &mut self,
        name: &str,
        keys: &[Bytes],
        argv: &[Bytes],
        run: &Arc<ScriptRun>,
        call: &mut CommandRunner<'_>,
    ) -> Option<Result<chorus_engine::Reply, ScriptError>> {
        let callback = self.functions.function(name)?.callback.clone();
        let outcome = (|| -> mlua::Result<Result<chorus_engine::Reply, ScriptError>> {
            let apply: Function = self.hidden.raw_get("apply")?;
            let bound: Function =
                apply.call((callback, list(&self.lua, keys)?, list(&self.lua, argv)?))?;
            self.invoke(bound, name, "@user_function", run, call)
        })();
        Some(outcome.unwrap_or_else(|e| Err(format!("ERR {}", first_line(&e)))))
    }

    /// Runs `function` under the busy hook, with `redis.call` and
    /// `redis.pcall` bound to `call`; errors name `label` and `source`.
    fn invoke(
        &self,
        function: Function,
        label: &str,
        source: &str,
        run: &Arc<ScriptRun>,
        call: &mut CommandRunner<'_>,
    ) -> mlua::Result<Result<chorus_engine::Reply, ScriptError>> {
        let lua = &self.lua;
        {
            self.hidden.raw_set("resp", Value::Nil)?;
            let hook_run = Arc::clone(run);
            let left_the_runtime = std::cell::Cell::new(false);
            lua.set_hook(
                HookTriggers::new().every_nth_instruction(HOOK_INSTRUCTIONS),
                move |_, _| {
                    // A script still running after this many instructions
                    // may run long: hand this worker's other connections to
                    // another thread, so they are served (and can get BUSY)
                    // meanwhile. Short scripts never pay for the hand-off.
                    if !left_the_runtime.replace(true) {
                        leave_the_runtime();
                    }
                    if hook_run.killed() {
                        return Err(mlua::Error::runtime(KILLED_ERROR));
                    }
                    Ok(VmState::Continue)
                },
            );
            let (xpcall, handler) = (self.xpcall.clone(), self.handler.clone());
            let call = std::cell::RefCell::new(call);
            let hidden = &self.hidden;
            let result = lua.scope(|scope| {
                for (name, raise) in [("call", true), ("pcall", false)] {
                    let call = &call;
                    let runner = scope.create_function(move |lua, args: mlua::Variadic<Value>| {
                        let resp3 = matches!(hidden.raw_get::<Value>("resp")?, Value::Integer(3))
                            || matches!(hidden.raw_get::<Value>("resp")?, Value::Number(n) if n == 3.0);
                        let (value, failed) = match script_args(lua, &args) {
                            Ok(bytes) => {
                                let mut call = call
                                    .try_borrow_mut()
                                    .map_err(|_| mlua::Error::RecursiveMutCallback)?;
                                (*call)(lua, resp3, bytes)?
                            }
                            Err(text) => (error_value(lua, text)?, true),
                        };
                        if failed && raise {
                            let text = match &value {
                                Value::Table(t) => t
                                    .raw_get::<mlua::String>("err")
                                    .map(|s| s.to_string_lossy())
                                    .unwrap_or_default(),
                                _ => String::new(),
                            };
                            // Raised from Rust, so the script's frame is the
                            // caller's (a Lua wrapper could be tail-called).
                            let line = script_line(lua);
                            return Err(mlua::Error::external(CallError { text, line }));
                        }
                        Ok(value)
                    })?;
                    self.redis.raw_set(name, runner)?;
                }
                let out: mlua::MultiValue = xpcall.call((function, handler))?;
                self.redis.raw_set("call", Value::Nil)?;
                self.redis.raw_set("pcall", Value::Nil)?;
                Ok(out)
            });
            lua.remove_hook();
            let out = result?;
            let mut values = out.into_iter();
            let ok = matches!(values.next(), Some(Value::Boolean(true)));
            let value = values.next().unwrap_or(Value::Nil);
            if ok {
                let resp3 = matches!(self.hidden.raw_get::<Value>("resp")?, Value::Integer(3))
                    || matches!(self.hidden.raw_get::<Value>("resp")?, Value::Number(n) if n == 3.0);
                return Ok(Ok(convert::lua_to_reply(lua, &value, resp3, 0)));
            }
            Ok(Err(final_error(&value, label, source)))
        }
    }

    /// FUNCTION LOAD.
    pub fn load_library(&mut self, code: &[u8], replace: bool) -> Result<String, ScriptError> {
        self.functions.load(&self.lua, code, replace)
    }

    /// Interpreter memory in bytes (INFO `used_memory_lua`).
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// Scripts cached (INFO `number_of_cached_scripts`).
    pub fn cached(&self) -> usize {
        self.scripts.len()
    }
}

/// The line of the script or function being run (the innermost frame of
/// `@user_script` or `@user_function`).
fn script_line(lua: &Lua) -> Option<i32> {
    (1..32)
        .map_while(|level| lua.inspect_stack(level))
        .find(|frame| {
            matches!(
                frame.source().source.as_deref(),
                Some("@user_script" | "@user_function")
            )
        })
        .map(|frame| frame.curr_line())
}

/// An error reply raised by `redis.call`, with the script's line.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
struct CallError {
    text: String,
    line: Option<i32>,
}

fn find_call_error(e: &mlua::Error) -> Option<&CallError> {
    match e {
        mlua::Error::CallbackError { cause, .. } => find_call_error(cause),
        other => other.downcast_ref::<CallError>(),
    }
}

/// `{err=text}`.
fn error_value(lua: &Lua, text: &str) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set("err", text)?;
    Ok(Value::Table(t))
}

/// The arguments of `redis.call`: strings, or numbers as Lua prints them.
fn script_args(lua: &Lua, args: &[Value]) -> Result<Vec<Bytes>, &'static str> {
    let mut bytes = Vec::with_capacity(args.len());
    for arg in args {
        match arg {
            Value::String(s) => bytes.push(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(_) | Value::Number(_) => {
                let text = lua.coerce_string(arg.clone()).ok().flatten();
                bytes.push(text.map_or_else(Bytes::new, |s| Bytes::copy_from_slice(&s.as_bytes())));
            }
            _ => return Err("ERR Lua redis lib command arguments must be strings or integers"),
        }
    }
    if bytes.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call");
    }
    Ok(bytes)
}

fn list(lua: &Lua, items: &[Bytes]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(item)?)?;
    }
    Ok(t)
}

/// The message handler of a script's `xpcall` (Redis's error handler):
/// every error becomes `{err=..., line=...}`, a string one with `ERR `
/// in front, and the line is where the script was when it failed.
fn error_table(lua: &Lua, err: Value) -> mlua::Result<Table> {
    let table = match err {
        Value::Table(t) if matches!(t.raw_get::<Value>("err"), Ok(Value::String(_))) => t,
        Value::Error(e) if find_call_error(&e).is_some() => {
            let t = lua.create_table()?;
            if let Some(call) = find_call_error(&e) {
                t.raw_set("err", call.text.clone())?;
                t.raw_set("line", call.line)?;
            }
            t
        }
        Value::Error(e) => {
            let t = lua.create_table()?;
            let text = root_message(&e);
            let text = if text.starts_with("ERR ") {
                text
            } else {
                format!("ERR {text}")
            };
            t.raw_set("err", text)?;
            t
        }
        other => {
            let t = lua.create_table()?;
            let text = lua
                .coerce_string(other.clone())
                .ok()
                .flatten()
                .map(|s| s.to_string_lossy())
                .unwrap_or_else(|| format!("{other:?}"));
            t.raw_set("err", format!("ERR {text}"))?;
            t
        }
    };
    if matches!(table.raw_get::<Value>("line")?, Value::Nil) {
        if let Some(line) = script_line(lua) {
            table.raw_set("line", line)?;
        }
    }
    Ok(table)
}

/// The reply of a script that failed: `<err> script: <sha>, on
/// @user_script:<line>.` (for a function, its name and `@user_function`),
/// as Redis 7.0 words it.
fn final_error(value: &Value, label: &str, source: &str) -> ScriptError {
    let Value::Table(t) = value else {
        return format!("ERR unknown error script: {label}");
    };
    let err: String = t
        .raw_get::<mlua::String>("err")
        .map(|s| s.to_string_lossy())
        .unwrap_or_else(|_| "ERR unknown error".to_string());
    let err = err.replace(['\r', '\n'], " ");
    match t.raw_get::<Option<i64>>("line") {
        Ok(Some(line)) => format!("{err} script: {label}, on {source}:{line}."),
        _ => format!("{err} script: {label}"),
    }
}

/// The message of an error from Lua, without mlua's wrapping.
fn root_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => root_message(cause),
        mlua::Error::RuntimeError(s) | mlua::Error::SyntaxError { message: s, .. } => s.clone(),
        other => first_line(other),
    }
}

fn first_line(e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(s) => s.clone(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or("").to_string()
}

/// Lets the rest of the current task's turn run off the runtime's worker:
/// tokio hands the worker's other tasks to another thread
/// (`block_in_place`). Does nothing outside a multi-thread runtime.
pub fn leave_the_runtime() {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let Ok(handle) = Handle::try_current() else {
        return;
    };
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        return;
    }
    tokio::task::block_in_place(|| {
        // The hand-off completes once a worker runs tasks again; until then
        // the end of block_in_place could take the worker back.
        let (ran, wait) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let _ = ran.send(());
        });
        let _ = wait.recv_timeout(std::time::Duration::from_millis(HANDOFF_WAIT_MS));
    });
}

/// Lower-case hex SHA1 (script ids, `redis.sha1hex`).
pub fn sha1_hex(bytes: &[u8]) -> String {
    sha1_smol::Sha1::from(bytes).digest().to_string()
}

/// INFO's scripting figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScriptFigures {
    pub lua_bytes: usize,
    pub cached: usize,
    pub functions: usize,
    pub libraries: usize,
}

/// The server's scripting state.
pub struct Scripts {
    pub vm: Mutex<Option<ScriptVm>>,
    pub run: Arc<ScriptRun>,
    /// The figures as last read, for INFO while a script holds the VM.
    last_figures: Mutex<ScriptFigures>,
}

impl Default for Scripts {
    fn default() -> Scripts {
        Scripts {
            vm: Mutex::new(None),
            run: Arc::new(ScriptRun::default()),
            last_figures: Mutex::new(ScriptFigures::default()),
        }
    }
}

impl Scripts {
    /// INFO's figures, without waiting for a running script.
    pub fn figures(&self) -> ScriptFigures {
        let Some(vm) = self.vm.try_lock() else {
            return *self.last_figures.lock();
        };
        let figures = vm
            .as_ref()
            .map_or_else(ScriptFigures::default, |vm| ScriptFigures {
                lua_bytes: vm.used_memory(),
                cached: vm.cached(),
                functions: vm.functions.function_count(),
                libraries: vm.functions.libraries.len(),
            });
        *self.last_figures.lock() = figures;
        figures
    }

    /// The interpreter, made on first use.
    pub fn with_vm<R>(&self, f: impl FnOnce(&mut ScriptVm) -> R) -> Result<R, ScriptError> {
        let mut vm = self.vm.lock();
        if vm.is_none() {
            *vm = Some(ScriptVm::new().map_err(|e| format!("ERR {}", first_line(&e)))?);
        }
        match vm.as_mut() {
            Some(vm) => Ok(f(vm)),
            None => Err("ERR scripting unavailable".to_string()),
        }
    }

    /// Marks the start and end of a run for [`ScriptRun`].
    pub fn running<R>(&self, f: impl FnOnce() -> R) -> R {
        self.run.start();
        let out = f();
        self.run.finish();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_of_empty_is_redis_s() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            sha1_hex(b"return 1"),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }

    #[test]
    fn error_reply_takes_a_code_only_with_a_space() {
        assert_eq!(convert::error_reply_text("boom"), "ERR boom");
        assert_eq!(convert::error_reply_text("-X boom"), "X boom");
        assert_eq!(convert::error_reply_text("X boom"), "X boom");
    }

    #[test]
    fn a_script_that_loops_is_killed_and_the_vm_survives() {
        let mut vm = ScriptVm::new().expect("vm");
        let sha = vm.load(b"while true do end", true).expect("compiles");
        let run = Arc::new(ScriptRun::default());
        run.start();
        assert_eq!(run.kill(), KillOutcome::Killed);
        let mut call = |_: &Lua, _: bool, _: Vec<Bytes>| Ok((Value::Nil, false));
        let out = vm.run(&sha, &[], &[], &run, &mut call).expect("cached");
        run.finish();
        assert_eq!(
            out.err().as_deref(),
            Some(
                "ERR Script killed by user with SCRIPT KILL... script: 694a5fe1ddb97a4c6a1bf299d9537c7d3d0f84e7, on @user_script:1."
            )
        );
        let sha = vm.load(b"return 7", true).expect("compiles");
        let out = vm.run(&sha, &[], &[], &run, &mut call).expect("cached");
        assert_eq!(out, Ok(chorus_engine::Reply::Int(7)));
    }
}
