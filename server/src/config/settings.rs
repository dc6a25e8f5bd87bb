//! The typed side of the configuration: the enums behind `appendfsync`,
//! `write-mode`, `loglevel` and `enable-*-command`/`-configs`, and
//! [`Settings`], the snapshot of the values Chorus acts on, built by
//! [`ConfigStore::settings`].

use std::path::PathBuf;

use clap::ValueEnum;

use super::{ConfigStore, DATABASES_MAX, REPL_BACKLOG_SIZE_DEFAULT};

/// `appendfsync`, Redis's names and meanings (the engine's enum).
pub use chorus_engine::redis::AppendFsync;

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
    /// `max-clock-skew-ms`: 0 = no bound.
    pub max_clock_skew_ms: u64,
    /// The `pubsub` class of `client-output-buffer-limit`.
    pub pubsub_output_limit: OutputBufferLimit,
    /// `busy-reply-threshold` (`lua-time-limit`), in milliseconds.
    pub busy_reply_threshold_ms: u64,
    /// `notify-keyspace-events`.
    pub notify_keyspace_events: crate::notify::EventFlags,
    /// `latency-tracking`: per-command latency histograms (`INFO latencystats`).
    pub latency_tracking: bool,
    /// `slowlog-log-slower-than`, in microseconds; negative: off.
    pub slowlog_log_slower_than: i64,
    /// `slowlog-max-len`.
    pub slowlog_max_len: u64,
    /// `latency-monitor-threshold`, in milliseconds; 0: off.
    pub latency_monitor_threshold_ms: u64,
}

/// One class of `client-output-buffer-limit`: a client whose pending output
/// reaches `hard_bytes`, or stays at `soft_bytes` or more for longer than
/// `soft_secs`, is disconnected. 0 = no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputBufferLimit {
    pub hard_bytes: u64,
    pub soft_bytes: u64,
    pub soft_secs: u64,
}

impl OutputBufferLimit {
    /// The limits of `class` (`normal`, `slave`, `pubsub`) in the
    /// parameter's canonical text (`normal 0 0 0 slave ... pubsub ...`).
    pub fn parse(text: &str, class: &str) -> OutputBufferLimit {
        let mut words = text.split(' ').skip_while(|w| *w != class).skip(1);
        let mut next = || words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        OutputBufferLimit {
            hard_bytes: next(),
            soft_bytes: next(),
            soft_secs: next(),
        }
    }
}

impl ConfigStore {
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
            appendfsync: AppendFsync::parse(&text("appendfsync")).unwrap_or(AppendFsync::Everysec),
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
            max_clock_skew_ms: u64::try_from(self.number("max-clock-skew-ms"))
                .unwrap_or(chorus_engine::hlc::MAX_CLOCK_SKEW_MS_DEFAULT),
            pubsub_output_limit: OutputBufferLimit::parse(
                &text("client-output-buffer-limit"),
                "pubsub",
            ),
            busy_reply_threshold_ms: u64::try_from(self.number("busy-reply-threshold"))
                .unwrap_or(5_000),
            notify_keyspace_events: crate::notify::EventFlags::parse(&text(
                "notify-keyspace-events",
            ))
            .unwrap_or_default(),
            latency_tracking: text("latency-tracking") == "yes",
            slowlog_log_slower_than: self.number("slowlog-log-slower-than"),
            slowlog_max_len: u64::try_from(self.number("slowlog-max-len")).unwrap_or(0),
            latency_monitor_threshold_ms: u64::try_from(self.number("latency-monitor-threshold"))
                .unwrap_or(0),
        }
    }
}

fn protected_action(value: &str) -> ProtectedAction {
    match value {
        "yes" => ProtectedAction::Yes,
        "local" => ProtectedAction::Local,
        _ => ProtectedAction::No,
    }
}
