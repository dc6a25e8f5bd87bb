//! The table of every configuration parameter Redis 7.0 knows, with its type,
//! bounds, flags and the default `CONFIG GET` reports, plus Chorus's own.
//!
//! Transcribed from `static_configs[]` in Redis 7.0's `config.c` and checked
//! against `CONFIG GET *` of redis-server 7.0.15 (the differential test
//! compares the name lists). Parameters Chorus does not act on are still
//! validated, stored and returned, so tools that set them keep working.
//! Defaults differ from Redis's only where Chorus decides the value: `bind`,
//! `port`, `dir` (filled in from flags at startup), `appendonly` (the op
//! log is always on) and `repl-backlog-size` (256 MiB: the backlog serves
//! peers across partitions, not a replica's brief reconnect).

/// Cannot be changed with `CONFIG SET`.
pub const IMMUTABLE: u8 = 1;
/// `CONFIG SET` needs `enable-protected-configs yes` (or `local` and a local
/// client).
pub const PROTECTED: u8 = 1 << 1;
/// Not matched by `CONFIG GET` patterns, only by its exact name.
pub const HIDDEN: u8 = 1 << 2;
/// Takes several words (`save 3600 1 300 100`).
pub const MULTI_ARG: u8 = 1 << 3;

/// How a numeric value is written and read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberFormat {
    Plain,
    /// Accepts `1gb`, `100mb`, `10k`...; reads back in bytes.
    Memory,
    /// Memory or `N%` (stored as `-N`).
    MemoryPercent,
    Octal,
}

/// Parameters that need their own parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Dir,
    Save,
    ClientOutputBufferLimit,
    OomScoreAdjValues,
    NotifyKeyspaceEvents,
    Bind,
    ReplicaOf,
    LatencyTrackingInfoPercentiles,
    ShutdownOnSignal,
    DbFilename,
    AofFilename,
    AofDirname,
    AnnouncedHostname,
    ProcTitleTemplate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Bool,
    Str,
    /// Accepted names with the value each stands for; `CONFIG GET` prints the
    /// first name of the stored value (so `relative` reads back as `yes`).
    Enum(&'static [(&'static str, u8)]),
    Number {
        min: i128,
        max: i128,
        /// Bounds compare as unsigned (C `unsigned`, `size_t`, `unsigned long long`).
        unsigned: bool,
        format: NumberFormat,
    },
    Special(Special),
}

#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub alias: Option<&'static str>,
    pub flags: u8,
    pub kind: ParamKind,
    pub default: &'static str,
}

const INT_MAX: i128 = i32::MAX as i128;
const INT_MIN: i128 = i32::MIN as i128;
const UINT_MAX: i128 = u32::MAX as i128;
const LONG_MAX: i128 = i64::MAX as i128;
const ULLONG_MAX: i128 = u64::MAX as i128;

const fn boolean(
    name: &'static str,
    alias: Option<&'static str>,
    flags: u8,
    default: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        alias,
        flags,
        kind: ParamKind::Bool,
        default,
    }
}
const fn string(
    name: &'static str,
    alias: Option<&'static str>,
    flags: u8,
    default: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        alias,
        flags,
        kind: ParamKind::Str,
        default,
    }
}
const fn choice(
    name: &'static str,
    flags: u8,
    values: &'static [(&'static str, u8)],
    default: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        alias: None,
        flags,
        kind: ParamKind::Enum(values),
        default,
    }
}
const fn signed(
    name: &'static str,
    alias: Option<&'static str>,
    flags: u8,
    min: i128,
    max: i128,
    default: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        alias,
        flags,
        kind: ParamKind::Number {
            min,
            max,
            unsigned: false,
            format: NumberFormat::Plain,
        },
        default,
    }
}
const fn unsigned(
    name: &'static str,
    alias: Option<&'static str>,
    flags: u8,
    min: i128,
    max: i128,
    default: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        alias,
        flags,
        kind: ParamKind::Number {
            min,
            max,
            unsigned: true,
            format: NumberFormat::Plain,
        },
        default,
    }
}
const fn memory(
    name: &'static str,
    alias: Option<&'static str>,
    flags: u8,
    min: i128,
    max: i128,
    unsigned: bool,
    default: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        alias,
        flags,
        kind: ParamKind::Number {
            min,
            max,
            unsigned,
            format: NumberFormat::Memory,
        },
        default,
    }
}
const fn special(
    name: &'static str,
    alias: Option<&'static str>,
    flags: u8,
    which: Special,
    default: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        alias,
        flags,
        kind: ParamKind::Special(which),
        default,
    }
}

const YES_NO_LOCAL: &[(&str, u8)] = &[("no", 0), ("yes", 1), ("local", 2)];

/// Default of `save` when no configuration sets it (Redis 7.0).
pub const SAVE_DEFAULT: &str = "3600 1 300 100 60 10000";
/// Default `client-output-buffer-limit`.
pub const CLIENT_OUTPUT_BUFFER_LIMIT_DEFAULT: &str =
    "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60";

/// Every parameter. Aliases appear as `alias` of their primary entry.
pub const PARAMS: &[ParamSpec] = &[
    // Booleans.
    boolean("rdbchecksum", None, IMMUTABLE, "yes"),
    boolean("daemonize", None, IMMUTABLE, "no"),
    boolean("io-threads-do-reads", None, IMMUTABLE, "no"),
    boolean("always-show-logo", None, IMMUTABLE, "no"),
    boolean("protected-mode", None, 0, "yes"),
    boolean("rdbcompression", None, 0, "yes"),
    boolean("rdb-del-sync-files", None, 0, "no"),
    boolean("activerehashing", None, 0, "yes"),
    boolean("stop-writes-on-bgsave-error", None, 0, "yes"),
    boolean("set-proc-title", None, IMMUTABLE, "yes"),
    boolean("dynamic-hz", None, 0, "yes"),
    boolean("lazyfree-lazy-eviction", None, 0, "no"),
    boolean("lazyfree-lazy-expire", None, 0, "no"),
    boolean("lazyfree-lazy-server-del", None, 0, "no"),
    boolean("lazyfree-lazy-user-del", None, 0, "no"),
    boolean("lazyfree-lazy-user-flush", None, 0, "no"),
    boolean("repl-disable-tcp-nodelay", None, 0, "no"),
    boolean("repl-diskless-sync", None, 0, "yes"),
    boolean("aof-rewrite-incremental-fsync", None, 0, "yes"),
    boolean("no-appendfsync-on-rewrite", None, 0, "no"),
    boolean("cluster-require-full-coverage", None, 0, "yes"),
    boolean("rdb-save-incremental-fsync", None, 0, "yes"),
    boolean("aof-load-truncated", None, 0, "yes"),
    boolean("aof-use-rdb-preamble", None, 0, "yes"),
    boolean("aof-timestamp-enabled", None, 0, "no"),
    boolean(
        "cluster-replica-no-failover",
        Some("cluster-slave-no-failover"),
        0,
        "no",
    ),
    boolean("replica-lazy-flush", Some("slave-lazy-flush"), 0, "no"),
    boolean(
        "replica-serve-stale-data",
        Some("slave-serve-stale-data"),
        0,
        "yes",
    ),
    boolean("replica-read-only", Some("slave-read-only"), 0, "yes"),
    boolean(
        "replica-ignore-maxmemory",
        Some("slave-ignore-maxmemory"),
        0,
        "yes",
    ),
    boolean("jemalloc-bg-thread", None, 0, "yes"),
    boolean("activedefrag", None, 0, "no"),
    boolean("syslog-enabled", None, IMMUTABLE, "no"),
    boolean("cluster-enabled", None, IMMUTABLE, "no"),
    // Chorus always writes its op log (the AOF); see the module doc.
    boolean("appendonly", None, 0, "yes"),
    boolean("cluster-allow-reads-when-down", None, 0, "no"),
    boolean("cluster-allow-pubsubshard-when-down", None, 0, "yes"),
    boolean("crash-log-enabled", None, 0, "yes"),
    boolean("crash-memcheck-enabled", None, 0, "yes"),
    boolean("use-exit-on-panic", None, HIDDEN, "no"),
    boolean("disable-thp", None, IMMUTABLE, "yes"),
    boolean("cluster-allow-replica-migration", None, 0, "yes"),
    boolean("replica-announced", None, 0, "yes"),
    boolean("latency-tracking", None, 0, "yes"),
    boolean("aof-disable-auto-gc", None, 0, "no"),
    boolean("replica-ignore-disk-write-errors", None, 0, "no"),
    boolean("tls-cluster", None, 0, "no"),
    boolean("tls-replication", None, 0, "no"),
    boolean("tls-prefer-server-ciphers", None, 0, "no"),
    boolean("tls-session-caching", None, 0, "yes"),
    // Strings.
    string("aclfile", None, IMMUTABLE, ""),
    string("unixsocket", None, IMMUTABLE, ""),
    string("pidfile", None, IMMUTABLE, ""),
    string("replica-announce-ip", Some("slave-announce-ip"), 0, ""),
    string("masteruser", None, 0, ""),
    string("cluster-announce-ip", None, 0, ""),
    string("cluster-config-file", None, IMMUTABLE, "nodes.conf"),
    special(
        "cluster-announce-hostname",
        None,
        0,
        Special::AnnouncedHostname,
        "",
    ),
    string("syslog-ident", None, IMMUTABLE, "redis"),
    special(
        "dbfilename",
        None,
        PROTECTED,
        Special::DbFilename,
        "dump.rdb",
    ),
    special(
        "appendfilename",
        None,
        IMMUTABLE,
        Special::AofFilename,
        "appendonly.aof",
    ),
    special(
        "appenddirname",
        None,
        IMMUTABLE,
        Special::AofDirname,
        "appendonlydir",
    ),
    string("server_cpulist", None, IMMUTABLE, ""),
    string("bio_cpulist", None, IMMUTABLE, ""),
    string("aof_rewrite_cpulist", None, IMMUTABLE, ""),
    string("bgsave_cpulist", None, IMMUTABLE, ""),
    string("ignore-warnings", None, 0, ""),
    special(
        "proc-title-template",
        None,
        0,
        Special::ProcTitleTemplate,
        "{title} {listen-addr} {server-mode}",
    ),
    string("bind-source-addr", None, 0, ""),
    string("logfile", None, IMMUTABLE, ""),
    string("masterauth", None, 0, ""),
    string("requirepass", None, 0, ""),
    string("tls-cert-file", None, 0, ""),
    string("tls-key-file", None, 0, ""),
    string("tls-key-file-pass", None, 0, ""),
    string("tls-client-cert-file", None, 0, ""),
    string("tls-client-key-file", None, 0, ""),
    string("tls-client-key-file-pass", None, 0, ""),
    string("tls-dh-params-file", None, 0, ""),
    string("tls-ca-cert-file", None, 0, ""),
    string("tls-ca-cert-dir", None, 0, ""),
    string("tls-protocols", None, 0, ""),
    string("tls-ciphers", None, 0, ""),
    string("tls-ciphersuites", None, 0, ""),
    // Enumerations.
    choice(
        "supervised",
        IMMUTABLE,
        &[("upstart", 1), ("systemd", 2), ("auto", 3), ("no", 0)],
        "no",
    ),
    choice(
        "syslog-facility",
        IMMUTABLE,
        &[
            ("user", 0),
            ("local0", 1),
            ("local1", 2),
            ("local2", 3),
            ("local3", 4),
            ("local4", 5),
            ("local5", 6),
            ("local6", 7),
            ("local7", 8),
        ],
        "local0",
    ),
    choice(
        "repl-diskless-load",
        0,
        &[("disabled", 0), ("on-empty-db", 1), ("swapdb", 2)],
        "disabled",
    ),
    choice(
        "loglevel",
        0,
        &[("debug", 0), ("verbose", 1), ("notice", 2), ("warning", 3)],
        "notice",
    ),
    choice(
        "maxmemory-policy",
        0,
        &[
            ("volatile-lru", 0),
            ("volatile-lfu", 1),
            ("volatile-random", 2),
            ("volatile-ttl", 3),
            ("allkeys-lru", 4),
            ("allkeys-lfu", 5),
            ("allkeys-random", 6),
            ("noeviction", 7),
        ],
        "noeviction",
    ),
    choice(
        "appendfsync",
        0,
        &[("everysec", 0), ("always", 1), ("no", 2)],
        "everysec",
    ),
    choice(
        "oom-score-adj",
        0,
        &[("no", 0), ("yes", 1), ("relative", 1), ("absolute", 2)],
        "no",
    ),
    choice(
        "acl-pubsub-default",
        0,
        &[("allchannels", 1), ("resetchannels", 0)],
        "resetchannels",
    ),
    choice(
        "sanitize-dump-payload",
        0,
        &[("no", 0), ("yes", 1), ("clients", 2)],
        "no",
    ),
    choice("enable-protected-configs", IMMUTABLE, YES_NO_LOCAL, "no"),
    choice("enable-debug-command", IMMUTABLE, YES_NO_LOCAL, "no"),
    choice("enable-module-command", IMMUTABLE, YES_NO_LOCAL, "no"),
    choice(
        "cluster-preferred-endpoint-type",
        0,
        &[("ip", 0), ("hostname", 1), ("unknown-endpoint", 2)],
        "ip",
    ),
    choice(
        "propagation-error-behavior",
        0,
        &[("ignore", 0), ("panic", 1), ("panic-on-replicas", 2)],
        "ignore",
    ),
    choice(
        "tls-auth-clients",
        0,
        &[("no", 0), ("yes", 1), ("optional", 2)],
        "yes",
    ),
    // Signed numbers (C int, long, long long, time_t, off_t).
    signed("databases", None, IMMUTABLE, 1, INT_MAX, "16"),
    signed("port", None, 0, 0, 65535, "6379"),
    signed("io-threads", None, IMMUTABLE, 1, 128, "1"),
    signed("auto-aof-rewrite-percentage", None, 0, 0, INT_MAX, "100"),
    signed(
        "cluster-replica-validity-factor",
        Some("cluster-slave-validity-factor"),
        0,
        0,
        INT_MAX,
        "10",
    ),
    signed(
        "list-max-listpack-size",
        Some("list-max-ziplist-size"),
        0,
        INT_MIN,
        INT_MAX,
        "-2",
    ),
    signed("tcp-keepalive", None, 0, 0, INT_MAX, "300"),
    signed("cluster-migration-barrier", None, 0, 0, INT_MAX, "1"),
    signed("active-defrag-cycle-min", None, 0, 1, 99, "1"),
    signed("active-defrag-cycle-max", None, 0, 1, 99, "25"),
    signed("active-defrag-threshold-lower", None, 0, 0, 1000, "10"),
    signed("active-defrag-threshold-upper", None, 0, 0, 1000, "100"),
    signed("lfu-log-factor", None, 0, 0, INT_MAX, "10"),
    signed("lfu-decay-time", None, 0, 0, INT_MAX, "1"),
    signed(
        "replica-priority",
        Some("slave-priority"),
        0,
        0,
        INT_MAX,
        "100",
    ),
    signed("repl-diskless-sync-delay", None, 0, 0, INT_MAX, "5"),
    signed("maxmemory-samples", None, 0, 1, INT_MAX, "5"),
    signed("maxmemory-eviction-tenacity", None, 0, 0, 100, "10"),
    signed("timeout", None, 0, 0, INT_MAX, "0"),
    signed(
        "replica-announce-port",
        Some("slave-announce-port"),
        0,
        0,
        65535,
        "0",
    ),
    signed("tcp-backlog", None, IMMUTABLE, 0, INT_MAX, "511"),
    signed("cluster-port", None, IMMUTABLE, 0, 65535, "0"),
    signed("cluster-announce-bus-port", None, 0, 0, 65535, "0"),
    signed("cluster-announce-port", None, 0, 0, 65535, "0"),
    signed("cluster-announce-tls-port", None, 0, 0, 65535, "0"),
    signed("repl-timeout", None, 0, 1, INT_MAX, "60"),
    signed(
        "repl-ping-replica-period",
        Some("repl-ping-slave-period"),
        0,
        1,
        INT_MAX,
        "10",
    ),
    signed("list-compress-depth", None, 0, 0, INT_MAX, "0"),
    signed("rdb-key-save-delay", None, HIDDEN, INT_MIN, INT_MAX, "0"),
    signed("key-load-delay", None, HIDDEN, INT_MIN, INT_MAX, "0"),
    signed("active-expire-effort", None, 0, 1, 10, "1"),
    signed("hz", None, 0, 0, INT_MAX, "10"),
    signed(
        "min-replicas-to-write",
        Some("min-slaves-to-write"),
        0,
        0,
        INT_MAX,
        "0",
    ),
    signed(
        "min-replicas-max-lag",
        Some("min-slaves-max-lag"),
        0,
        0,
        INT_MAX,
        "10",
    ),
    signed("watchdog-period", None, HIDDEN, 0, INT_MAX, "0"),
    signed("shutdown-timeout", None, 0, 0, INT_MAX, "10"),
    signed("repl-diskless-sync-max-replicas", None, 0, 0, INT_MAX, "0"),
    signed("tls-port", None, 0, 0, 65535, "0"),
    signed("tls-session-cache-size", None, 0, 0, INT_MAX, "20480"),
    signed("tls-session-cache-timeout", None, 0, 0, INT_MAX, "300"),
    signed(
        "active-defrag-max-scan-fields",
        None,
        0,
        1,
        LONG_MAX,
        "1000",
    ),
    signed("slowlog-max-len", None, 0, 0, LONG_MAX, "128"),
    signed("acllog-max-len", None, 0, 0, LONG_MAX, "128"),
    signed(
        "busy-reply-threshold",
        Some("lua-time-limit"),
        0,
        0,
        LONG_MAX,
        "5000",
    ),
    signed("cluster-node-timeout", None, 0, 0, LONG_MAX, "15000"),
    signed("slowlog-log-slower-than", None, 0, -1, LONG_MAX, "10000"),
    signed("latency-monitor-threshold", None, 0, 0, LONG_MAX, "0"),
    memory(
        "proto-max-bulk-len",
        None,
        0,
        1024 * 1024,
        LONG_MAX,
        false,
        "536870912",
    ),
    signed("stream-node-max-entries", None, 0, 0, LONG_MAX, "100"),
    // Chorus's default (256 MiB), not Redis's 1 MiB: see `REPL_BACKLOG_SIZE_DEFAULT`.
    memory(
        "repl-backlog-size",
        None,
        0,
        1,
        LONG_MAX,
        false,
        "268435456",
    ),
    signed("repl-backlog-ttl", None, 0, 0, LONG_MAX, "3600"),
    memory(
        "auto-aof-rewrite-min-size",
        None,
        0,
        0,
        LONG_MAX,
        false,
        "67108864",
    ),
    signed(
        "loading-process-events-interval-bytes",
        None,
        HIDDEN,
        1024,
        INT_MAX,
        "2097152",
    ),
    // Unsigned numbers (C unsigned int, size_t, unsigned long long).
    unsigned("maxclients", None, 0, 1, UINT_MAX, "10000"),
    ParamSpec {
        name: "unixsocketperm",
        alias: None,
        flags: IMMUTABLE,
        kind: ParamKind::Number {
            min: 0,
            max: 0o777,
            unsigned: true,
            format: NumberFormat::Octal,
        },
        default: "0",
    },
    unsigned("socket-mark-id", None, 0, 0, UINT_MAX, "0"),
    memory("maxmemory", None, 0, 0, ULLONG_MAX, true, "0"),
    memory(
        "cluster-link-sendbuf-limit",
        None,
        0,
        0,
        ULLONG_MAX,
        true,
        "0",
    ),
    unsigned(
        "hash-max-listpack-entries",
        Some("hash-max-ziplist-entries"),
        0,
        0,
        LONG_MAX,
        "512",
    ),
    unsigned("set-max-intset-entries", None, 0, 0, LONG_MAX, "512"),
    unsigned(
        "zset-max-listpack-entries",
        Some("zset-max-ziplist-entries"),
        0,
        0,
        LONG_MAX,
        "128",
    ),
    memory(
        "active-defrag-ignore-bytes",
        None,
        0,
        1,
        LONG_MAX,
        true,
        "104857600",
    ),
    memory(
        "hash-max-listpack-value",
        Some("hash-max-ziplist-value"),
        0,
        0,
        LONG_MAX,
        true,
        "64",
    ),
    memory("stream-node-max-bytes", None, 0, 0, LONG_MAX, true, "4096"),
    memory(
        "zset-max-listpack-value",
        Some("zset-max-ziplist-value"),
        0,
        0,
        LONG_MAX,
        true,
        "64",
    ),
    memory("hll-sparse-max-bytes", None, 0, 0, LONG_MAX, true, "3000"),
    unsigned("tracking-table-max-keys", None, 0, 0, LONG_MAX, "1000000"),
    memory(
        "client-query-buffer-limit",
        None,
        0,
        1024 * 1024,
        LONG_MAX,
        true,
        "1073741824",
    ),
    ParamSpec {
        name: "maxmemory-clients",
        alias: None,
        flags: 0,
        kind: ParamKind::Number {
            min: -100,
            max: LONG_MAX,
            unsigned: false,
            format: NumberFormat::MemoryPercent,
        },
        default: "0",
    },
    // Parameters with their own syntax.
    special("dir", None, PROTECTED, Special::Dir, ""),
    special("save", None, MULTI_ARG, Special::Save, SAVE_DEFAULT),
    special(
        "client-output-buffer-limit",
        None,
        MULTI_ARG,
        Special::ClientOutputBufferLimit,
        CLIENT_OUTPUT_BUFFER_LIMIT_DEFAULT,
    ),
    special(
        "oom-score-adj-values",
        None,
        MULTI_ARG,
        Special::OomScoreAdjValues,
        "0 200 800",
    ),
    special(
        "notify-keyspace-events",
        None,
        0,
        Special::NotifyKeyspaceEvents,
        "",
    ),
    special("bind", None, MULTI_ARG, Special::Bind, "127.0.0.1"),
    special(
        "replicaof",
        Some("slaveof"),
        IMMUTABLE | MULTI_ARG,
        Special::ReplicaOf,
        "",
    ),
    special(
        "latency-tracking-info-percentiles",
        None,
        MULTI_ARG,
        Special::LatencyTrackingInfoPercentiles,
        "50 99 99.9",
    ),
    special(
        "shutdown-on-sigint",
        None,
        MULTI_ARG,
        Special::ShutdownOnSignal,
        "default",
    ),
    special(
        "shutdown-on-sigterm",
        None,
        MULTI_ARG,
        Special::ShutdownOnSignal,
        "default",
    ),
    // Chorus's own.
    signed("site-id", None, IMMUTABLE, 1, 65535, "1"),
    choice("write-mode", 0, WRITE_MODES, "async"),
    signed("sync-write-timeout-ms", None, 0, 1, INT_MAX, "1000"),
    signed("anti-entropy-interval-secs", None, 0, 0, INT_MAX, "60"),
    signed("max-clock-skew-ms", None, 0, 0, INT_MAX, "500"),
];

const WRITE_MODES: &[(&str, u8)] = &[("async", 0), ("sync", 1)];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Names `CONFIG GET *` lists on redis-server 7.0.15 (Debian build, TLS on).
    const REDIS_7_0_15_NAMES: &str = "acl-pubsub-default aclfile acllog-max-len active-defrag-cycle-max active-defrag-cycle-min active-defrag-ignore-bytes active-defrag-max-scan-fields active-defrag-threshold-lower active-defrag-threshold-upper active-expire-effort activedefrag activerehashing always-show-logo aof-disable-auto-gc aof-load-truncated aof-rewrite-incremental-fsync aof-timestamp-enabled aof-use-rdb-preamble aof_rewrite_cpulist appenddirname appendfilename appendfsync appendonly auto-aof-rewrite-min-size auto-aof-rewrite-percentage bgsave_cpulist bind bind-source-addr bio_cpulist busy-reply-threshold client-output-buffer-limit client-query-buffer-limit cluster-allow-pubsubshard-when-down cluster-allow-reads-when-down cluster-allow-replica-migration cluster-announce-bus-port cluster-announce-hostname cluster-announce-ip cluster-announce-port cluster-announce-tls-port cluster-config-file cluster-enabled cluster-link-sendbuf-limit cluster-migration-barrier cluster-node-timeout cluster-port cluster-preferred-endpoint-type cluster-replica-no-failover cluster-replica-validity-factor cluster-require-full-coverage cluster-slave-no-failover cluster-slave-validity-factor crash-log-enabled crash-memcheck-enabled daemonize databases dbfilename dir disable-thp dynamic-hz enable-debug-command enable-module-command enable-protected-configs hash-max-listpack-entries hash-max-listpack-value hash-max-ziplist-entries hash-max-ziplist-value hll-sparse-max-bytes hz ignore-warnings io-threads io-threads-do-reads jemalloc-bg-thread latency-monitor-threshold latency-tracking latency-tracking-info-percentiles lazyfree-lazy-eviction lazyfree-lazy-expire lazyfree-lazy-server-del lazyfree-lazy-user-del lazyfree-lazy-user-flush lfu-decay-time lfu-log-factor list-compress-depth list-max-listpack-size list-max-ziplist-size logfile loglevel lua-time-limit masterauth masteruser maxclients maxmemory maxmemory-clients maxmemory-eviction-tenacity maxmemory-policy maxmemory-samples min-replicas-max-lag min-replicas-to-write min-slaves-max-lag min-slaves-to-write no-appendfsync-on-rewrite notify-keyspace-events oom-score-adj oom-score-adj-values pidfile port proc-title-template propagation-error-behavior protected-mode proto-max-bulk-len rdb-del-sync-files rdb-save-incremental-fsync rdbchecksum rdbcompression repl-backlog-size repl-backlog-ttl repl-disable-tcp-nodelay repl-diskless-load repl-diskless-sync repl-diskless-sync-delay repl-diskless-sync-max-replicas repl-ping-replica-period repl-ping-slave-period repl-timeout replica-announce-ip replica-announce-port replica-announced replica-ignore-disk-write-errors replica-ignore-maxmemory replica-lazy-flush replica-priority replica-read-only replica-serve-stale-data replicaof requirepass sanitize-dump-payload save server_cpulist set-max-intset-entries set-proc-title shutdown-on-sigint shutdown-on-sigterm shutdown-timeout slave-announce-ip slave-announce-port slave-ignore-maxmemory slave-lazy-flush slave-priority slave-read-only slave-serve-stale-data slaveof slowlog-log-slower-than slowlog-max-len socket-mark-id stop-writes-on-bgsave-error stream-node-max-bytes stream-node-max-entries supervised syslog-enabled syslog-facility syslog-ident tcp-backlog tcp-keepalive timeout tls-auth-clients tls-ca-cert-dir tls-ca-cert-file tls-cert-file tls-ciphers tls-ciphersuites tls-client-cert-file tls-client-key-file tls-client-key-file-pass tls-cluster tls-dh-params-file tls-key-file tls-key-file-pass tls-port tls-prefer-server-ciphers tls-protocols tls-replication tls-session-cache-size tls-session-cache-timeout tls-session-caching tracking-table-max-keys unixsocket unixsocketperm zset-max-listpack-entries zset-max-listpack-value zset-max-ziplist-entries zset-max-ziplist-value";

    #[test]
    fn table_has_exactly_redis_names_plus_chorus_ones() {
        let ours: HashSet<&str> = PARAMS
            .iter()
            .filter(|p| p.flags & HIDDEN == 0)
            .flat_map(|p| std::iter::once(p.name).chain(p.alias))
            .collect();
        let redis: HashSet<&str> = REDIS_7_0_15_NAMES.split(' ').collect();
        let missing: Vec<_> = redis.difference(&ours).collect();
        let extra: Vec<_> = ours.difference(&redis).collect();
        assert!(missing.is_empty(), "missing {missing:?}");
        let mut extra: Vec<&str> = extra.into_iter().copied().collect();
        extra.sort_unstable();
        assert_eq!(
            extra,
            vec![
                "anti-entropy-interval-secs",
                "max-clock-skew-ms",
                "site-id",
                "sync-write-timeout-ms",
                "write-mode"
            ]
        );
    }

    #[test]
    fn names_are_unique_and_lowercase() {
        let mut seen = HashSet::new();
        for p in PARAMS {
            for name in std::iter::once(p.name).chain(p.alias) {
                assert!(seen.insert(name), "duplicate {name}");
                assert_eq!(name, name.to_ascii_lowercase());
            }
        }
    }
}
