//! Command-line flags (clap, named like redis-server's), the `cert`
//! subcommands, `--peer ID@HOST:PORT`, and [`ConfigStore::from_cli`], which
//! lays defaults, then the `--config` file, then the flags.

use std::path::PathBuf;

use clap::Parser;

use super::file::absolute;
use super::{AppendFsync, ConfigError, ConfigStore, LogLevel, WriteMode, DATABASES_MAX};

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
    #[arg(long, value_parser = appendfsync_parser())]
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
    /// Milliseconds ahead of this site's clock beyond which it never stamps
    /// a write, whatever its peers' clocks say; peers whose stamps run
    /// further ahead are reported in `INFO replication`. 0 = no bound.
    #[arg(long, value_name = "MS")]
    pub max_clock_skew_ms: Option<u64>,
    /// Bytes of ops kept for peers that are behind (`256mb`, `64kb`...); a
    /// peer further behind gets a full sync.
    #[arg(long, value_name = "BYTES")]
    pub repl_backlog_size: Option<String>,
    /// Keyspace notifications: the classes of `notify-keyspace-events`
    /// (`KEA`, `Kx`...; default none, off).
    #[arg(long, value_name = "CLASSES")]
    pub notify_keyspace_events: Option<String>,
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

/// `--appendfsync`: Redis's three names, listed in `--help`.
fn appendfsync_parser() -> impl clap::builder::TypedValueParser<Value = AppendFsync> {
    use clap::builder::TypedValueParser;
    let names = AppendFsync::ALL.map(AppendFsync::as_str);
    clap::builder::PossibleValuesParser::new(names)
        .try_map(|s| AppendFsync::parse(&s).ok_or("not an appendfsync mode"))
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

impl ConfigStore {
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
        if let Some(ms) = cli.max_clock_skew_ms {
            flag(&mut store, "max-clock-skew-ms", ms.to_string())?;
        }
        if let Some(size) = &cli.repl_backlog_size {
            flag(&mut store, "repl-backlog-size", size.clone())?;
        }
        if let Some(classes) = &cli.notify_keyspace_events {
            flag(&mut store, "notify-keyspace-events", classes.clone())?;
        }
        let databases = store.number("databases");
        if databases > i64::from(DATABASES_MAX) {
            return Err(ConfigError::TooManyDatabases(databases));
        }
        Ok(store)
    }
}
