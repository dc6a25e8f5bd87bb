//! Server configuration: command-line flags (named like redis-server's), the
//! redis.conf-style `--config` file, and the `CONFIG GET/SET` parameter
//! store with Redis 7.0's names, defaults, validation and error strings.
//!
//! Precedence, as in redis-server: table defaults, then the config file,
//! then flags. [`ConfigStore`] holds every value as the string `CONFIG GET`
//! returns; [`Settings`] is the typed snapshot of the values Chorus acts on,
//! rebuilt after every successful `CONFIG SET` so the hot path reads plain
//! fields.
//!
//! Invariant: every stored value is valid for its parameter (it went through
//! the same parser as `CONFIG SET`), so building [`Settings`] cannot fail.

pub mod params;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use thiserror::Error;

use crate::resp::parse::{parse_i64_strict, split_inline_args};
use chorus_engine::glob::glob_match;
use params::{
    NumberFormat, ParamKind, ParamSpec, Special, HIDDEN, IMMUTABLE, MULTI_ARG, PARAMS, PROTECTED,
};

/// Databases Chorus serves (`SELECT 0..15`); the engine's keyspace has this many.
pub const DATABASES_MAX: u8 = 16;
/// Default `repl-backlog-size` (Redis's is 1 MiB, far too small for sites
/// that accept writes on both sides of a partition).
pub const REPL_BACKLOG_SIZE_DEFAULT: u64 = 256 << 20;
/// Deepest `include` nesting in config files.
pub const CONFIG_INCLUDE_DEPTH_MAX: usize = 16;
/// Largest config file read (a redis.conf is ~100 KiB).
pub const CONFIG_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Most addresses `bind` accepts (Redis's `CONFIG_BINDADDR_MAX`).
pub const BIND_ADDRESSES_MAX: usize = 16;
/// `hz` is clamped into this range, as Redis does.
const HZ_MIN: i64 = 1;
const HZ_MAX: i64 = 500;

/// `appendfsync`, Redis's names and meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AppendFsync {
    Always,
    Everysec,
    No,
}

impl AppendFsync {
    pub fn as_str(self) -> &'static str {
        match self {
            AppendFsync::Always => "always",
            AppendFsync::Everysec => "everysec",
            AppendFsync::No => "no",
        }
    }
}

/// `write-mode`: when a write's reply is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WriteMode {
    /// Once applied here (and fsynced as `appendfsync` says).
    Async,
    /// Also once at least one peer durably acknowledged it, or an error
    /// after `sync-write-timeout-ms`.
    Sync,
}

impl WriteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Async => "async",
            WriteMode::Sync => "sync",
        }
    }
}

/// `loglevel`, Redis's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Verbose,
    Notice,
    Warning,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Verbose => "verbose",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
        }
    }

    /// The `tracing` filter directive for this level.
    pub fn filter_directive(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Verbose | LogLevel::Notice => "info",
            LogLevel::Warning => "warn",
        }
    }
}

/// `enable-protected-configs` / `enable-debug-command`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtectedAction {
    No,
    Yes,
    Local,
}

impl ProtectedAction {
    pub fn allows(self, client_is_local: bool) -> bool {
        match self {
            ProtectedAction::No => false,
            ProtectedAction::Yes => true,
            ProtectedAction::Local => client_is_local,
        }
    }
}

/// Command-line flags. Names follow redis-server where one exists.
#[derive(Clone, Debug, Default, Parser)]
#[command(
    name = "chorus-server",
    version,
    about = "Chorus: a conflict-free multi-master key-value store speaking RESP"
)]
pub struct Cli {
    /// redis.conf-style file of `name value` lines (see docs/server.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// TCP port for RESP clients; 0 picks a free port (printed at startup).
    #[arg(long)]
    pub port: Option<u16>,
    /// Addresses to listen on (default 127.0.0.1).
    #[arg(long, num_args = 1.., value_name = "ADDR")]
    pub bind: Option<Vec<String>>,
    /// Data directory (default ./chorus-data).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Password clients must send with AUTH.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// When the op log is fsynced.
    #[arg(long, value_enum)]
    pub appendfsync: Option<AppendFsync>,
    /// Most simultaneous clients.
    #[arg(long)]
    pub maxclients: Option<u32>,
    /// This site's id, unique in the cluster (1..=65535).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub site_id: Option<u16>,
    /// Log verbosity.
    #[arg(long, value_enum)]
    pub loglevel: Option<LogLevel>,
    /// Threads serving client connections (Redis's `io-threads`, default 1).
    /// Commands run one batch at a time under the engine lock whatever the
    /// number; more threads only spread socket reads and writes.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=128))]
    pub io_threads: Option<u16>,
    /// Start even if the op log has a corrupt record in its middle: keep the
    /// intact prefix and drop the rest (the default refuses to start).
    #[arg(long)]
    pub salvage: bool,
    /// UDP port of the replication endpoint (QUIC); default: port + 10000.
    #[arg(long)]
    pub repl_port: Option<u16>,
    /// A peer site, `ID@HOST:PORT` (its replication port); repeatable.
    #[arg(long = "peer", value_name = "ID@HOST:PORT")]
    pub peers: Vec<String>,
    /// Cluster id: peers with another id are refused (default 1).
    #[arg(long)]
    pub cluster_id: Option<u64>,
    /// The cluster CA certificate (PEM) that signs every site's certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This site's certificate chain (PEM), from `chorus-server cert site`.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// This site's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// `async` (default): a write replies once applied here; `sync`: only
    /// once a peer durably acknowledged it too (else an error after
    /// --sync-write-timeout-ms).
    #[arg(long, value_enum)]
    pub write_mode: Option<WriteMode>,
    /// How long a write waits for a peer's ack in `--write-mode sync`.
    #[arg(long, value_name = "MS")]
    pub sync_write_timeout_ms: Option<u64>,
    /// Seconds between anti-entropy digest comparisons with each peer; 0 = off.
    #[arg(long, value_name = "SECS")]
    pub anti_entropy_interval_secs: Option<u64>,
    /// Bytes of ops kept for peers that are behind (`256mb`, `64kb`...); a
    /// peer further behind gets a full sync.
    #[arg(long, value_name = "BYTES")]
    pub repl_backlog_size: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Tools that run instead of the server.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Make certificates for mutual TLS between sites.
    Cert {
        #[command(subcommand)]
        what: CertCommand,
    },
}

#[derive(Clone, Debug, clap::Subcommand)]
pub enum CertCommand {
    /// Make a cluster CA: writes ca.pem and ca.key into DIR.
    Ca {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Make a site's certificate signed by the CA in --ca: writes site.pem and site.key.
    Site {
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        site_id: u16,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Parses `ID@HOST:PORT`.
pub fn parse_peer(s: &str) -> Result<(u16, std::net::SocketAddr), String> {
    use std::net::ToSocketAddrs;
    let (id, addr) = s
        .split_once('@')
        .ok_or_else(|| format!("peer '{s}' is not ID@HOST:PORT"))?;
    let id: u16 = id
        .parse()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| format!("peer '{s}': bad site id"))?;
    let addr = addr
        .to_socket_addrs()
        .map_err(|e| format!("peer '{s}': {e}"))?
        .next()
        .ok_or_else(|| format!("peer '{s}': no address"))?;
    Ok((id, addr))
}

/// Why the configuration could not be loaded at startup.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("can't open config file '{path}': {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file '{path}' is larger than {CONFIG_FILE_BYTES_MAX} bytes")]
    TooLarge { path: PathBuf },
    #[error("*** FATAL CONFIG FILE ERROR ***\nReading the configuration file '{path}', at line {line}\n>>> '{text}'\n{reason}")]
    Line {
        path: PathBuf,
        line: usize,
        text: String,
        reason: String,
    },
    #[error("invalid value for {name}: {reason}")]
    Flag { name: &'static str, reason: String },
    #[error("Chorus serves at most {DATABASES_MAX} databases; 'databases' is {0}")]
    TooManyDatabases(i64),
}

/// Where a `CONFIG SET` failed; rendered with Redis's exact wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetError {
    /// `ERR syntax error` (odd number of arguments).
    Syntax,
    /// `ERR Unknown option or number of arguments for CONFIG SET - 'x'`.
    Unknown(String),
    /// `ERR CONFIG SET failed (possibly related to argument 'x') - reason`.
    Failed { name: String, reason: String },
}

impl SetError {
    pub fn message(&self) -> String {
        match self {
            SetError::Syntax => "ERR syntax error".to_string(),
            SetError::Unknown(name) => {
                format!("ERR Unknown option or number of arguments for CONFIG SET - '{name}'")
            }
            SetError::Failed { name, reason } => {
                format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}")
            }
        }
    }
}

/// Typed values of the parameters Chorus acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub port: u16,
    pub bind: Vec<String>,
    pub dir: PathBuf,
    pub site_id: u16,
    /// `requirepass`; `None` means the default user needs no password.
    pub requirepass: Option<Vec<u8>>,
    pub maxclients: u64,
    pub appendfsync: AppendFsync,
    pub loglevel: LogLevel,
    /// Tokio worker threads for client connections (`io-threads`).
    pub io_threads: usize,
    pub proto_max_bulk_len: u64,
    pub client_query_buffer_limit: u64,
    /// Idle seconds before a client is closed; 0 = never.
    pub timeout_secs: u64,
    pub databases: u8,
    pub enable_protected_configs: ProtectedAction,
    pub enable_debug_command: ProtectedAction,
    pub hz: i64,
    pub write_mode: WriteMode,
    pub sync_write_timeout_ms: u64,
    /// 0 = anti-entropy off.
    pub anti_entropy_interval_secs: u64,
    /// `repl-backlog-size`: bytes of ops kept for peers.
    pub repl_backlog_size: u64,
}

/// The value store behind `CONFIG GET/SET`.
#[derive(Clone, Debug)]
pub struct ConfigStore {
    /// Current value of each entry of [`PARAMS`], as `CONFIG GET` prints it.
    values: Vec<String>,
    /// Lower-cased name or alias -> (index into `PARAMS`, is alias).
    names: HashMap<&'static str, (usize, bool)>,
    /// The file given with `--config`, for `CONFIG REWRITE` and `INFO`.
    config_file: Option<PathBuf>,
    /// While loading a file, `save` lines add to each other (Redis quirk).
    save_loaded_from_file: bool,
}

impl Default for ConfigStore {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigStore {
    /// A store holding every default.
    pub fn new() -> Self {
        let mut names = HashMap::new();
        for (index, spec) in PARAMS.iter().enumerate() {
            names.insert(spec.name, (index, false));
            if let Some(alias) = spec.alias {
                names.insert(alias, (index, true));
            }
        }
        ConfigStore {
            values: PARAMS.iter().map(|p| p.default.to_string()).collect(),
            names,
            config_file: None,
            save_loaded_from_file: false,
        }
    }

    /// Builds the startup configuration: defaults, then the file, then flags.
    pub fn from_cli(cli: &Cli) -> Result<ConfigStore, ConfigError> {
        let mut store = ConfigStore::new();
        store.set_internal("dir", "./chorus-data");
        if let Some(path) = &cli.config {
            store.load_file(path, 0)?;
            store.config_file = Some(absolute(path));
        }
        let flag = |store: &mut ConfigStore, name: &'static str, value: String| {
            store
                .set_from_config_line(name, &[value])
                .map_err(|reason| ConfigError::Flag { name, reason })
        };
        if let Some(port) = cli.port {
            flag(&mut store, "port", port.to_string())?;
        }
        if let Some(bind) = &cli.bind {
            store
                .set_from_config_line("bind", bind)
                .map_err(|reason| ConfigError::Flag {
                    name: "bind",
                    reason,
                })?;
        }
        if let Some(dir) = &cli.dir {
            store.set_internal("dir", &dir.to_string_lossy());
        }
        if let Some(pass) = &cli.requirepass {
            flag(&mut store, "requirepass", pass.clone())?;
        }
        if let Some(mode) = cli.appendfsync {
            flag(&mut store, "appendfsync", mode.as_str().to_string())?;
        }
        if let Some(max) = cli.maxclients {
            flag(&mut store, "maxclients", max.to_string())?;
        }
        if let Some(id) = cli.site_id {
            flag(&mut store, "site-id", id.to_string())?;
        }
        if let Some(level) = cli.loglevel {
            flag(&mut store, "loglevel", level.as_str().to_string())?;
        }
        if let Some(n) = cli.io_threads {
            flag(&mut store, "io-threads", n.to_string())?;
        }
        if let Some(mode) = cli.write_mode {
            flag(&mut store, "write-mode", mode.as_str().to_string())?;
        }
        if let Some(ms) = cli.sync_write_timeout_ms {
            flag(&mut store, "sync-write-timeout-ms", ms.to_string())?;
        }
        if let Some(secs) = cli.anti_entropy_interval_secs {
            flag(&mut store, "anti-entropy-interval-secs", secs.to_string())?;
        }
        if let Some(size) = &cli.repl_backlog_size {
            flag(&mut store, "repl-backlog-size", size.clone())?;
        }
        let databases = store.number("databases");
        if databases > i64::from(DATABASES_MAX) {
            return Err(ConfigError::TooManyDatabases(databases));
        }
        Ok(store)
    }

    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    /// Records the data directory's absolute path once it exists, so
    /// `CONFIG GET dir` reports it as Redis reports its working directory.
    pub fn set_dir_absolute(&mut self, dir: &Path) {
        self.set_internal("dir", &dir.to_string_lossy());
    }

    /// Records the port actually bound (for `--port 0`).
    pub fn set_port_bound(&mut self, port: u16) {
        self.set_internal("port", &port.to_string());
    }

    fn set_internal(&mut self, name: &str, value: &str) {
        if let Some(&(index, _)) = self.names.get(name) {
            if let Some(slot) = self.values.get_mut(index) {
                *slot = value.to_string();
            }
        }
    }

    fn lookup(&self, name: &[u8]) -> Option<(usize, bool, &'static ParamSpec)> {
        let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
        let &(index, alias) = self.names.get(lower.as_str())?;
        Some((index, alias, PARAMS.get(index)?))
    }

    /// The current value of a parameter by exact name (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        let (index, _, _) = self.lookup(name.as_bytes())?;
        self.values.get(index).map(String::as_str)
    }

    fn number(&self, name: &str) -> i64 {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// `CONFIG GET pattern...`: exact names (as typed) and glob matches
    /// (canonical names, hidden parameters excluded), each parameter once.
    pub fn get_matching(&self, patterns: &[&[u8]]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut add = |key: String, index: usize, out: &mut Vec<(String, String)>| {
            let folded = key.to_ascii_lowercase();
            if seen.contains(&folded) {
                return;
            }
            seen.push(folded);
            let value = self.values.get(index).cloned().unwrap_or_default();
            out.push((key, value));
        };
        for pattern in patterns {
            let is_glob = pattern.iter().any(|b| matches!(b, b'[' | b'*' | b'?'));
            if !is_glob {
                if let Some((index, _, _)) = self.lookup(pattern) {
                    add(
                        String::from_utf8_lossy(pattern).into_owned(),
                        index,
                        &mut out,
                    );
                }
                continue;
            }
            for (index, spec) in PARAMS.iter().enumerate() {
                if spec.flags & HIDDEN != 0 {
                    continue;
                }
                for name in std::iter::once(spec.name).chain(spec.alias) {
                    if glob_match(pattern, name.as_bytes(), true) {
                        add(name.to_string(), index, &mut out);
                    }
                }
            }
        }
        out
    }

    /// `CONFIG SET name value [name value ...]`, all or nothing, with Redis's
    /// checks in Redis's order. `protected_allowed`: the caller may change
    /// `PROTECTED` parameters. Returns the canonical names that changed.
    pub fn set_many(
        &mut self,
        args: &[&[u8]],
        protected_allowed: bool,
    ) -> Result<Vec<&'static str>, SetError> {
        if args.is_empty() || !args.len().is_multiple_of(2) {
            return Err(SetError::Syntax);
        }
        let mut targets: Vec<(usize, bool, &'static ParamSpec, &[u8])> = Vec::new();
        for pair in args.chunks(2) {
            let (name, value) = match pair {
                [name, value] => (*name, *value),
                _ => return Err(SetError::Syntax),
            };
            let typed = String::from_utf8_lossy(name).into_owned();
            let Some((index, alias, spec)) = self.lookup(name) else {
                return Err(SetError::Unknown(typed));
            };
            if spec.flags & IMMUTABLE != 0 || (spec.flags & PROTECTED != 0 && !protected_allowed) {
                let reason = if spec.flags & IMMUTABLE != 0 {
                    "can't set immutable config"
                } else {
                    "can't set protected config"
                };
                return Err(SetError::Failed {
                    name: typed,
                    reason: reason.to_string(),
                });
            }
            if targets.iter().any(|t| t.0 == index && t.1 == alias) {
                return Err(SetError::Failed {
                    name: typed,
                    reason: "duplicate parameter".to_string(),
                });
            }
            targets.push((index, alias, spec, value));
        }
        let backup = self.values.clone();
        let mut changed = Vec::new();
        for (index, alias, spec, value) in targets {
            let words = if spec.flags & MULTI_ARG != 0 {
                value
                    .split(|&b| b == b' ')
                    .map(|w| String::from_utf8_lossy(w).into_owned())
                    .collect()
            } else {
                vec![String::from_utf8_lossy(value).into_owned()]
            };
            let shown = if alias {
                spec.alias.unwrap_or(spec.name)
            } else {
                spec.name
            };
            match self.parse_value(spec, &words, index, false) {
                Ok(new_value) => {
                    if self.values.get(index) != Some(&new_value) {
                        changed.push(spec.name);
                    }
                    if let Some(slot) = self.values.get_mut(index) {
                        *slot = new_value;
                    }
                }
                Err(reason) => {
                    self.values = backup;
                    return Err(SetError::Failed {
                        name: shown.to_string(),
                        reason,
                    });
                }
            }
        }
        Ok(changed)
    }

    /// Applies one `name arg...` line from a config file or a flag.
    fn set_from_config_line(&mut self, name: &str, args: &[String]) -> Result<(), String> {
        let Some((index, _, spec)) = self.lookup(name.as_bytes()) else {
            return Err("Bad directive or wrong number of arguments".to_string());
        };
        if spec.flags & MULTI_ARG == 0 && args.len() != 1 {
            return Err("wrong number of arguments".to_string());
        }
        let value = self.parse_value(spec, args, index, true)?;
        if let Some(slot) = self.values.get_mut(index) {
            *slot = value;
        }
        Ok(())
    }

    fn load_file(&mut self, path: &Path, depth: usize) -> Result<(), ConfigError> {
        let text = read_config_file(path)?;
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason: &str| ConfigError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                text: line.to_string(),
                reason: reason.to_string(),
            };
            let Some(words) = split_inline_args(line.as_bytes()) else {
                return Err(fail("Unbalanced quotes in configuration line"));
            };
            let mut words: Vec<String> = words
                .iter()
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect();
            if words.is_empty() {
                continue;
            }
            let name = words.remove(0).to_ascii_lowercase();
            if name == "include" && words.len() == 1 {
                if depth >= CONFIG_INCLUDE_DEPTH_MAX {
                    return Err(fail("include nested too deeply"));
                }
                let included = words.first().map(PathBuf::from).unwrap_or_default();
                self.load_file(&included, depth + 1)?;
                continue;
            }
            if matches!(
                name.as_str(),
                "rename-command" | "user" | "loadmodule" | "sentinel"
            ) {
                return Err(fail(&format!("'{name}' is not supported by Chorus")));
            }
            if matches!(
                name.as_str(),
                "list-max-ziplist-entries" | "list-max-ziplist-value" | "lua-replicate-commands"
            ) && words.len() == 1
            {
                // Deprecated directives Redis 7.0 still accepts and ignores.
                continue;
            }
            self.set_from_config_line(&name, &words)
                .map_err(|reason| fail(&reason))?;
        }
        Ok(())
    }

    /// Validates `words` for `spec` and returns the value as `CONFIG GET`
    /// will print it. `from_file`: the value comes from a config file or
    /// flag (only `save` behaves differently there).
    fn parse_value(
        &mut self,
        spec: &ParamSpec,
        words: &[String],
        index: usize,
        from_file: bool,
    ) -> Result<String, String> {
        let first = words.first().map(String::as_str).unwrap_or("");
        match spec.kind {
            ParamKind::Bool => match first.to_ascii_lowercase().as_str() {
                "yes" => Ok("yes".to_string()),
                "no" => Ok("no".to_string()),
                _ => Err("argument must be 'yes' or 'no'".to_string()),
            },
            ParamKind::Str => Ok(first.to_string()),
            ParamKind::Enum(choices) => {
                let Some(&(_, id)) = choices.iter().find(|(n, _)| n.eq_ignore_ascii_case(first))
                else {
                    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "argument(s) must be one of the following: {}",
                        names.join(", ")
                    ));
                };
                let canonical = choices
                    .iter()
                    .find(|(_, v)| *v == id)
                    .map(|(n, _)| *n)
                    .unwrap_or(first);
                Ok(canonical.to_string())
            }
            ParamKind::Number {
                min,
                max,
                unsigned,
                format,
            } => {
                let value = parse_number(first, format)?;
                check_bounds(value, min, max, unsigned, format)?;
                let value = if spec.name == "hz" {
                    value.clamp(HZ_MIN, HZ_MAX)
                } else {
                    value
                };
                Ok(format_number(value, format))
            }
            ParamKind::Special(which) => self.parse_special(which, words, index, from_file),
        }
    }

    fn parse_special(
        &mut self,
        which: Special,
        words: &[String],
        index: usize,
        from_file: bool,
    ) -> Result<String, String> {
        let first = words.first().map(String::as_str).unwrap_or("");
        match which {
            Special::Dir => {
                if words.len() != 1 {
                    return Err("wrong number of arguments".to_string());
                }
                // The engine owns the data directory for the life of the
                // process; moving it at runtime would split the op log.
                if !from_file {
                    return Err("Chorus cannot change its data directory at runtime".to_string());
                }
                Ok(first.to_string())
            }
            Special::Save => {
                let words: &[String] = if words.len() == 1 && first.is_empty() {
                    &[]
                } else {
                    words
                };
                if !words.len().is_multiple_of(2) {
                    return Err("Invalid save parameters".to_string());
                }
                let mut parts = Vec::new();
                for (i, w) in words.iter().enumerate() {
                    let v = c_strtoll(w, 10).ok_or("Invalid save parameters")?;
                    if (i % 2 == 0 && v < 1) || (i % 2 == 1 && v < 0) {
                        return Err("Invalid save parameters".to_string());
                    }
                    parts.push(v.to_string());
                }
                let mut joined = parts.join(" ");
                // In a config file each `save` line adds a rule; the first
                // one replaces the defaults.
                if from_file {
                    if self.save_loaded_from_file && !joined.is_empty() {
                        let old = self.values.get(index).cloned().unwrap_or_default();
                        if !old.is_empty() {
                            joined = format!("{old} {joined}");
                        }
                    }
                    self.save_loaded_from_file = true;
                }
                Ok(joined)
            }
            Special::ClientOutputBufferLimit => {
                let current = self.values.get(index).cloned().unwrap_or_default();
                parse_client_output_buffer_limit(&current, words)
            }
            Special::OomScoreAdjValues => {
                if words.len() != 3 {
                    return Err("wrong number of arguments".to_string());
                }
                let mut out = Vec::new();
                for w in words {
                    match c_strtoll(w, 10) {
                        Some(v) if (-2000..=2000).contains(&v) => out.push(v.to_string()),
                        _ => {
                            return Err("Invalid oom-score-adj-values, elements must be between -2000 and 2000.".to_string())
                        }
                    }
                }
                Ok(out.join(" "))
            }
            Special::NotifyKeyspaceEvents => {
                if words.len() != 1 {
                    return Err("wrong number of arguments".to_string());
                }
                keyspace_events_normalize(first).ok_or_else(|| {
                    "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_string()
                })
            }
            Special::Bind => {
                if words.len() > BIND_ADDRESSES_MAX {
                    return Err("Too many bind addresses specified.".to_string());
                }
                if words.len() == 1 && first.is_empty() {
                    return Ok(String::new());
                }
                Ok(words.join(" "))
            }
            Special::ReplicaOf => {
                if words.len() != 2 {
                    return Err("wrong number of arguments".to_string());
                }
                let host = first;
                let port = words.get(1).map(String::as_str).unwrap_or("");
                if host.eq_ignore_ascii_case("no") && port.eq_ignore_ascii_case("one") {
                    return Ok(String::new());
                }
                match c_strtoll(port, 10) {
                    Some(p) if (0..=65535).contains(&p) => Ok(format!("{host} {p}")),
                    _ => Err("Invalid master port".to_string()),
                }
            }
            Special::LatencyTrackingInfoPercentiles => {
                if words.len() == 1 && first.is_empty() {
                    return Ok(String::new());
                }
                let mut out = Vec::new();
                for w in words {
                    let v: f64 = parse_redis_double(w)
                        .ok_or("Invalid latency-tracking-info-percentiles parameters")?;
                    if !(0.0..=100.0).contains(&v) {
                        return Err("latency-tracking-info-percentiles parameters should sit between [0.0,100.0]".to_string());
                    }
                    out.push(trim_double(&format!("{v:.6}")));
                }
                Ok(out.join(" "))
            }
            Special::ShutdownOnSignal => {
                const FLAGS: [&str; 5] = ["default", "save", "nosave", "now", "force"];
                let mut set = [false; 5];
                for w in words {
                    let Some(i) = FLAGS.iter().position(|f| f.eq_ignore_ascii_case(w)) else {
                        return Err(format!(
                            "argument(s) must be one of the following: {}",
                            FLAGS.join(", ")
                        ));
                    };
                    if let Some(flag) = set.get_mut(i) {
                        *flag = true;
                    }
                }
                if set[1] && set[2] {
                    return Err("shutdown-on-sig* can't be both save and nosave".to_string());
                }
                let names: Vec<&str> = FLAGS
                    .iter()
                    .zip(set)
                    .skip(1)
                    .filter(|(_, on)| *on)
                    .map(|(n, _)| *n)
                    .collect();
                Ok(if names.is_empty() {
                    "default".to_string()
                } else {
                    names.join(" ")
                })
            }
            Special::DbFilename => {
                if first.contains('/') {
                    return Err("dbfilename can't be a path, just a filename".to_string());
                }
                Ok(first.to_string())
            }
            Special::AofFilename => {
                if first.is_empty() {
                    return Err("appendfilename can't be empty".to_string());
                }
                if first.contains('/') {
                    return Err("appendfilename can't be a path, just a filename".to_string());
                }
                Ok(first.to_string())
            }
            Special::AofDirname => {
                if first.is_empty() {
                    return Err("appenddirname can't be empty".to_string());
                }
                if first.contains('/') {
                    return Err("appenddirname can't be a path, just a dirname".to_string());
                }
                Ok(first.to_string())
            }
            Special::AnnouncedHostname => {
                if first.len() >= 256 {
                    return Err("Hostnames must be less than 256 characters".to_string());
                }
                if !first
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
                {
                    return Err(
                        "Hostnames may only contain alphanumeric characters, hyphens or dots"
                            .to_string(),
                    );
                }
                Ok(first.to_string())
            }
            Special::ProcTitleTemplate => {
                if !proc_title_template_is_valid(first) {
                    return Err(
                        "template format is invalid or contains unknown variables".to_string()
                    );
                }
                Ok(first.to_string())
            }
        }
    }

    /// The typed snapshot of the values Chorus acts on.
    pub fn settings(&self) -> Settings {
        let text = |name: &str| self.get(name).unwrap_or("").to_string();
        let requirepass = text("requirepass");
        Settings {
            port: u16::try_from(self.number("port")).unwrap_or(6379),
            bind: text("bind")
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            dir: PathBuf::from(text("dir")),
            site_id: u16::try_from(self.number("site-id")).unwrap_or(1),
            requirepass: (!requirepass.is_empty()).then(|| requirepass.into_bytes()),
            maxclients: u64::try_from(self.number("maxclients")).unwrap_or(10_000),
            appendfsync: match text("appendfsync").as_str() {
                "always" => AppendFsync::Always,
                "no" => AppendFsync::No,
                _ => AppendFsync::Everysec,
            },
            loglevel: match text("loglevel").as_str() {
                "debug" => LogLevel::Debug,
                "verbose" => LogLevel::Verbose,
                "warning" => LogLevel::Warning,
                _ => LogLevel::Notice,
            },
            io_threads: usize::try_from(self.number("io-threads"))
                .unwrap_or(1)
                .clamp(1, 128),
            proto_max_bulk_len: u64::try_from(self.number("proto-max-bulk-len"))
                .unwrap_or(u64::MAX),
            client_query_buffer_limit: text("client-query-buffer-limit")
                .parse()
                .unwrap_or(u64::MAX),
            timeout_secs: u64::try_from(self.number("timeout")).unwrap_or(0),
            databases: u8::try_from(self.number("databases"))
                .unwrap_or(DATABASES_MAX)
                .min(DATABASES_MAX),
            enable_protected_configs: protected_action(&text("enable-protected-configs")),
            enable_debug_command: protected_action(&text("enable-debug-command")),
            hz: self.number("hz"),
            write_mode: match text("write-mode").as_str() {
                "sync" => WriteMode::Sync,
                _ => WriteMode::Async,
            },
            sync_write_timeout_ms: u64::try_from(self.number("sync-write-timeout-ms"))
                .unwrap_or(1_000),
            anti_entropy_interval_secs: u64::try_from(self.number("anti-entropy-interval-secs"))
                .unwrap_or(0),
            repl_backlog_size: u64::try_from(self.number("repl-backlog-size"))
                .unwrap_or(REPL_BACKLOG_SIZE_DEFAULT),
        }
    }

    /// `CONFIG REWRITE`: writes every non-default, non-derived parameter to
    /// the config file, keeping comments and unknown lines out of the way.
    /// Simpler than Redis's in-place rewrite: the file is regenerated.
    pub fn rewrite(&self) -> Result<(), String> {
        let Some(path) = &self.config_file else {
            return Err("ERR The server is running without a config file".to_string());
        };
        let mut text = String::from("# Generated by CONFIG REWRITE\n");
        for (spec, value) in PARAMS.iter().zip(&self.values) {
            if value == spec.default || spec.kind == ParamKind::Special(Special::Dir) {
                continue;
            }
            text.push_str(spec.name);
            text.push(' ');
            if spec.flags & MULTI_ARG != 0 && !value.is_empty() {
                text.push_str(value);
            } else {
                text.push_str(&quote_config_value(value));
            }
            text.push('\n');
        }
        let tmp = path.with_extension("rewrite.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("ERR Rewriting config file: {e}"))
    }
}

fn protected_action(value: &str) -> ProtectedAction {
    match value {
        "yes" => ProtectedAction::Yes,
        "local" => ProtectedAction::Local,
        _ => ProtectedAction::No,
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > CONFIG_FILE_BYTES_MAX {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Quotes a value the way `sdscatrepr` does when it has blanks or specials.
fn quote_config_value(value: &str) -> String {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'' && b != b'\\')
    {
        return value.to_string();
    }
    let mut out = String::from("\"");
    for b in value.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            other => out.push_str(&format!("\\x{other:02x}")),
        }
    }
    out.push('"');
    out
}

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
fn c_strtoll(s: &str, base: u32) -> Option<i64> {
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
fn parse_number(s: &str, format: NumberFormat) -> Result<i64, String> {
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

fn check_bounds(
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

fn format_number(value: i64, format: NumberFormat) -> String {
    match format {
        NumberFormat::MemoryPercent if value < 0 => format!("{}%", value.unsigned_abs()),
        NumberFormat::Memory | NumberFormat::MemoryPercent => (value as u64).to_string(),
        NumberFormat::Octal => format!("{value:o}"),
        NumberFormat::Plain => value.to_string(),
    }
}

/// `strtod`-style double for config values: decimal or exponent notation.
fn parse_redis_double(s: &str) -> Option<f64> {
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// Redis's `trimDoubleString`: drop trailing zeros of a `%f` and a bare point.
fn trim_double(s: &str) -> String {
    if !s.contains('.') {
        return s.to_string();
    }
    let t = s.trim_end_matches('0');
    t.strip_suffix('.').unwrap_or(t).to_string()
}

/// `notify-keyspace-events`: validates the class letters and prints them in
/// Redis's canonical order (`keyspaceEventsFlagsToString`).
fn keyspace_events_normalize(classes: &str) -> Option<String> {
    const G: u32 = 1 << 2;
    const STRING: u32 = 1 << 3;
    const LIST: u32 = 1 << 4;
    const SET: u32 = 1 << 5;
    const HASH: u32 = 1 << 6;
    const ZSET: u32 = 1 << 7;
    const EXPIRED: u32 = 1 << 8;
    const EVICTED: u32 = 1 << 9;
    const STREAM: u32 = 1 << 10;
    const KEY_MISS: u32 = 1 << 11;
    const MODULE: u32 = 1 << 12;
    const NEW: u32 = 1 << 13;
    const KEYSPACE: u32 = 1;
    const KEYEVENT: u32 = 1 << 1;
    const ALL: u32 = G | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;
    let mut flags = 0u32;
    for c in classes.chars() {
        flags |= match c {
            'A' => ALL,
            'g' => G,
            '$' => STRING,
            'l' => LIST,
            's' => SET,
            'h' => HASH,
            'z' => ZSET,
            'x' => EXPIRED,
            'e' => EVICTED,
            'K' => KEYSPACE,
            'E' => KEYEVENT,
            't' => STREAM,
            'm' => KEY_MISS,
            'd' => MODULE,
            'n' => NEW,
            _ => return None,
        };
    }
    let mut out = String::new();
    if flags & ALL == ALL {
        out.push('A');
    } else {
        for (bit, c) in [
            (G, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
            (NEW, 'n'),
        ] {
            if flags & bit != 0 {
                out.push(c);
            }
        }
    }
    for (bit, c) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if flags & bit != 0 {
            out.push(c);
        }
    }
    Some(out)
}

/// Redis's `validateProcTitleTemplate`: `{...}` variables must be known and
/// braces balanced.
fn proc_title_template_is_valid(template: &str) -> bool {
    const KNOWN: [&str; 7] = [
        "title",
        "listen-addr",
        "server-mode",
        "port",
        "tls-port",
        "unixsocket",
        "config-file",
    ];
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        let Some(tail) = rest.get(open..) else {
            return false;
        };
        if tail.starts_with('}') {
            return false;
        }
        let Some(close) = tail.find('}') else {
            return false;
        };
        let name = tail.get(1..close).unwrap_or("");
        if !KNOWN.contains(&name) {
            return false;
        }
        rest = tail.get(close + 1..).unwrap_or("");
    }
    // Redis also requires the expanded title to be non-empty.
    !template.trim().is_empty()
}

fn parse_client_output_buffer_limit(current: &str, words: &[String]) -> Result<String, String> {
    const CLASSES: [&str; 3] = ["normal", "slave", "pubsub"];
    let mut limits: Vec<[String; 3]> = CLASSES
        .iter()
        .map(|class| {
            let mut it = current.split(' ').skip_while(|w| w != class).skip(1);
            [
                it.next().unwrap_or("0").to_string(),
                it.next().unwrap_or("0").to_string(),
                it.next().unwrap_or("0").to_string(),
            ]
        })
        .collect();
    if !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".to_string());
    }
    let mut updates = Vec::new();
    for group in words.chunks(4) {
        let [class, hard, soft, seconds] = group else {
            return Err("Wrong number of arguments in buffer limit configuration.".to_string());
        };
        let slot = match class.to_ascii_lowercase().as_str() {
            "normal" => 0,
            "slave" | "replica" => 1,
            "pubsub" => 2,
            _ => {
                return Err(
                    "Invalid client class specified in buffer limit configuration.".to_string(),
                )
            }
        };
        let (Some(hard), Some(soft), Some(seconds)) = (
            parse_memory(hard),
            parse_memory(soft),
            c_strtoll(seconds, 10),
        ) else {
            return Err(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                    .to_string(),
            );
        };
        if seconds < 0 {
            return Err(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                    .to_string(),
            );
        }
        updates.push((
            slot,
            [hard.to_string(), soft.to_string(), seconds.to_string()],
        ));
    }
    for (slot, values) in updates {
        if let Some(entry) = limits.get_mut(slot) {
            *entry = values;
        }
    }
    Ok(CLASSES
        .iter()
        .zip(&limits)
        .map(|(class, [h, s, sec])| format!("{class} {h} {s} {sec}"))
        .collect::<Vec<_>>()
        .join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(store: &mut ConfigStore, args: &[&str]) -> Result<Vec<&'static str>, String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        store.set_many(&args, false).map_err(|e| e.message())
    }

    #[test]
    fn set_errors_match_redis() {
        let mut s = ConfigStore::new();
        let cases: &[(&[&str], &str)] = &[
            (&["appendfsync", "foo"], "ERR CONFIG SET failed (possibly related to argument 'appendfsync') - argument(s) must be one of the following: everysec, always, no"),
            (&["maxclients", "x"], "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer"),
            (&["maxclients", "0"], "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 and 4294967295 inclusive"),
            (&["activerehashing", "x"], "ERR CONFIG SET failed (possibly related to argument 'activerehashing') - argument must be 'yes' or 'no'"),
            (&["maxmemory", "x"], "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value"),
            (&["maxmemory-clients", "x"], "ERR CONFIG SET failed (possibly related to argument 'maxmemory-clients') - argument must be a memory or percent value"),
            (&["maxmemory-clients", "200%"], "ERR CONFIG SET failed (possibly related to argument 'maxmemory-clients') - percentage argument must be less or equal to 100"),
            (&["databases", "3"], "ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config"),
            (&["dbfilename", "x"], "ERR CONFIG SET failed (possibly related to argument 'dbfilename') - can't set protected config"),
            (&["foo", "bar"], "ERR Unknown option or number of arguments for CONFIG SET - 'foo'"),
            (&["a", "b", "c"], "ERR syntax error"),
            (&["maxclients", "5", "maxclients", "6"], "ERR CONFIG SET failed (possibly related to argument 'maxclients') - duplicate parameter"),
            (&["shutdown-on-sigint", "foo"], "ERR CONFIG SET failed (possibly related to argument 'shutdown-on-sigint') - argument(s) must be one of the following: default, save, nosave, now, force"),
            (&["save", "1 2 3"], "ERR CONFIG SET failed (possibly related to argument 'save') - Invalid save parameters"),
            (&["unixsocketperm", "999"], "ERR CONFIG SET failed (possibly related to argument 'unixsocketperm') - can't set immutable config"),
            (&["notify-keyspace-events", "Z"], "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'."),
            (&["proto-max-bulk-len", "1000"], "ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - argument must be between 1048576 and 9223372036854775807 inclusive"),
        ];
        for (args, want) in cases {
            assert_eq!(set(&mut s, args), Err(want.to_string()), "{args:?}");
        }
    }

    #[test]
    fn set_then_get_normalizes_like_redis() {
        let mut s = ConfigStore::new();
        let cases: &[(&str, &str, &str)] = &[
            ("hz", "1000", "500"),
            ("maxmemory", "1kb", "1024"),
            ("maxmemory", "2GB", "2147483648"),
            ("maxmemory-clients", "50%", "50%"),
            ("notify-keyspace-events", "KA", "AK"),
            ("notify-keyspace-events", "g$lshzxetd", "A"),
            ("notify-keyspace-events", "Ex", "xE"),
            // Redis drops `n` when `A` is printed.
            ("notify-keyspace-events", "An", "A"),
            ("shutdown-on-sigint", "now save", "save now"),
            ("save", "100 10 200 20", "100 10 200 20"),
            ("save", "", ""),
            ("oom-score-adj", "relative", "yes"),
            ("appendfsync", "ALWAYS", "always"),
            ("latency-tracking-info-percentiles", "50 99.5", "50 99.5"),
            (
                "client-output-buffer-limit",
                "normal 1mb 2mb 60",
                "normal 1048576 2097152 60 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
            ),
            ("slave-read-only", "no", "no"),
        ];
        for (name, value, want) in cases {
            assert_eq!(
                set(&mut s, &[name, value]).map(|_| ()),
                Ok(()),
                "{name} {value}"
            );
            assert_eq!(s.get(name), Some(*want), "{name} {value}");
        }
        assert_eq!(s.get("replica-read-only"), Some("no"));
    }

    #[test]
    fn failed_set_changes_nothing() {
        let mut s = ConfigStore::new();
        assert!(set(&mut s, &["maxclients", "5", "hz", "x"]).is_err());
        assert_eq!(s.get("maxclients"), Some("10000"));
    }

    #[test]
    fn get_matching_globs_and_exact_names() {
        let s = ConfigStore::new();
        let got = s.get_matching(&[b"MAXclients", b"maxmemory*"]);
        assert_eq!(
            got.first(),
            Some(&("MAXclients".to_string(), "10000".to_string()))
        );
        let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"maxmemory-policy"));
        assert!(!names.contains(&"maxclients"));
        assert!(s
            .get_matching(&[b"*"])
            .iter()
            .all(|(k, _)| k != "use-exit-on-panic"));
        assert_eq!(s.get_matching(&[b"use-exit-on-panic"]).len(), 1);
        assert!(s.get_matching(&[b"nosuch"]).is_empty());
    }

    #[test]
    fn config_file_lines() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else { return };
        let path = dir.path().join("chorus.conf");
        std::fs::write(
            &path,
            "# comment\nport 7000\nsave 900 1\nsave 300 10\nrequirepass \"a b\"\nMAXCLIENTS 7\n",
        )
        .ok();
        let cli = Cli {
            config: Some(path.clone()),
            maxclients: Some(9),
            ..Cli::default()
        };
        let store = ConfigStore::from_cli(&cli).map_err(|e| e.to_string());
        assert!(store.is_ok(), "{store:?}");
        let Ok(store) = store else { return };
        assert_eq!(store.get("port"), Some("7000"));
        assert_eq!(store.get("save"), Some("900 1 300 10"));
        assert_eq!(store.get("requirepass"), Some("a b"));
        assert_eq!(store.get("maxclients"), Some("9"));
        std::fs::write(&path, "port 7000\nnosuch 1\n").ok();
        let err = ConfigStore::from_cli(&cli)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("at line 2") && err.contains("Bad directive"),
            "{err}"
        );
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("1KB"), Some(1024));
        assert_eq!(parse_memory("3mb"), Some(3 * 1024 * 1024));
        assert_eq!(parse_memory(""), Some(0));
        assert_eq!(parse_memory("-1"), None);
        assert_eq!(parse_memory("1x"), None);
    }
}
