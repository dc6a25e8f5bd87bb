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
//!
//! Layout: this module holds the limits, the errors and [`ConfigStore`]'s
//! lookups, `CONFIG GET` and `CONFIG SET`; `cli` the flags and startup;
//! [`params`] the parameter table; `validate` the per-parameter checks;
//! `value` number, memory and double syntax; `file` config files and
//! `CONFIG REWRITE`; `settings` the typed snapshot.

mod cli;
mod file;
pub mod params;
mod settings;
mod validate;
mod value;

pub use cli::{parse_peer, CertCommand, Cli, Command};
pub use settings::{
    AppendFsync, LogLevel, OutputBufferLimit, ProtectedAction, Settings, WriteMode,
};
pub use value::parse_memory;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use chorus_engine::redis::glob::glob_match;
use params::{ParamSpec, HIDDEN, IMMUTABLE, MULTI_ARG, PARAMS, PROTECTED};

/// Databases Chorus serves (`SELECT 0..15`): the engine's count, as a `u8`.
pub const DATABASES_MAX: u8 = chorus_engine::redis::DATABASES as u8;
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
    fn keyspace_events_from_the_file_and_the_flag() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else { return };
        let path = dir.path().join("chorus.conf");
        std::fs::write(&path, "notify-keyspace-events Kx\n").ok();
        let mut cli = Cli {
            config: Some(path.clone()),
            ..Cli::default()
        };
        let events = |cli: &Cli| {
            ConfigStore::from_cli(cli)
                .map(|s| s.settings().notify_keyspace_events.canonical())
                .map_err(|e| e.to_string())
        };
        assert_eq!(events(&cli), Ok("xK".to_string()));
        cli.notify_keyspace_events = Some("KEA".into());
        assert_eq!(events(&cli), Ok("AKE".to_string()), "the flag wins");
        cli.notify_keyspace_events = Some("Kq".into());
        assert!(events(&cli).is_err());
        assert_eq!(events(&Cli::default()), Ok(String::new()), "off by default");
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
