//! chorus-server: the RESP server of one Chorus site.
//!
//! Parses flags, sets up logging (stderr; `RUST_LOG` overrides `--loglevel`),
//! starts the server, prints one line saying where it listens and where its
//! data is, and serves until SIGTERM, SIGINT or `SHUTDOWN`.

use std::io::Write as _;

use chorus_server::config::{CertCommand, Cli, Command, ConfigStore, LogLevel};
use chorus_server::memory::CountingAllocator;
use chorus_server::server::{LogLevelHook, Server};
use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Installs the subscriber and returns the hook `CONFIG SET loglevel` uses.
fn init_logging(level: LogLevel) -> LogLevelHook {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(level.filter_directive()));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    Box::new(move |level: LogLevel| {
        // An explicit RUST_LOG wins over CONFIG SET, as it wins at startup.
        if !from_env {
            let _ = handle.modify(|f| *f = EnvFilter::new(level.filter_directive()));
        }
    })
}

fn cert(what: &CertCommand) -> i32 {
    use chorus_replication::quic::tls;
    let result = match what {
        CertCommand::Ca { out } => {
            tls::generate_ca(out).map(|_| format!("wrote {0}/ca.pem and {0}/ca.key", out.display()))
        }
        CertCommand::Site { ca, site_id, out } => tls::generate_site(ca, *site_id, out).map(|_| {
            format!(
                "wrote {0}/site.pem and {0}/site.key for site {site_id}",
                out.display()
            )
        }),
    };
    match result {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(e) => {
            eprintln!("chorus-server cert: {e}");
            1
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Some(Command::Cert { what }) = &cli.command {
        std::process::exit(cert(what));
    }
    // The level and the thread count are needed before the server (and its
    // config file) starts.
    let (level, io_threads) = match ConfigStore::from_cli(&cli) {
        Ok(store) => {
            let settings = store.settings();
            (settings.loglevel, settings.io_threads)
        }
        Err(e) => {
            eprintln!("chorus-server: {e}");
            std::process::exit(1);
        }
    };
    let hook = init_logging(level);
    // Client connections run on `io-threads` workers; replication (QUIC,
    // applying peers' ops) on a worker of its own, so neither starves the
    // other. Checkpoints, fsyncs and the tick run on blocking threads.
    let runtimes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        .thread_name("chorus-io")
        .on_thread_park(chorus_server::memory::release_freed_on_park)
        .enable_all()
        .build()
        .and_then(|io| {
            let repl = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(4)
                .thread_name("chorus-repl")
                .on_thread_park(chorus_server::memory::release_freed_on_park)
                .enable_all()
                .build()?;
            Ok((io, repl))
        });
    let (runtime, repl_runtime) = match runtimes {
        Ok(rts) => rts,
        Err(e) => {
            eprintln!("chorus-server: can't start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let repl_handle = repl_runtime.handle().clone();
    let code = runtime.block_on(async move {
        let server = match Server::start(&cli, Some(hook)) {
            Ok(server) => server,
            Err(e) => {
                eprintln!("chorus-server: {e}");
                return 1;
            }
        };
        // One startup line; written without println! so a closed stdout
        // (a supervisor that stopped reading) never kills the server.
        let mut line = server.startup_line();
        match server.start_replication(&cli, &repl_handle).await {
            Ok(Some(repl)) => line = format!("{line}; {repl}"),
            Ok(None) => server.state.store.drop_backlog_without_replication(),
            Err(e) => {
                eprintln!("chorus-server: {e}");
                return 1;
            }
        }
        let _ = writeln!(std::io::stdout(), "{line}");
        let _ = std::io::stdout().flush();
        server.run_until_shutdown().await
    });
    // Everything that must be durable was flushed by the shutdown hook;
    // tasks still parked (idle reads) need not be waited for.
    runtime.shutdown_background();
    repl_runtime.shutdown_background();
    std::process::exit(code);
}
