//! `INFO [section ...]` with Redis 7.0's section and field names. Figures
//! Chorus has are real (clients, memory from the allocator and `/proc`,
//! CPU from `getrusage`, command and error counters, keyspace from the
//! engine); fields that describe Redis machinery Chorus does not have
//! (RDB child processes, Lua) are reported as idle, with Redis's names, so
//! dashboards keep parsing.

use std::fmt::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chorus_engine::Reply;

use super::connection::REDIS_COMPAT_VERSION;
use super::{lower, Ctx};
use crate::memory;
use crate::stats::Stats;

/// Sections of `INFO` / `INFO default`, in Redis's order.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];
/// Sections only `INFO all` / `INFO everything` (or naming them) shows.
const EXTRA_SECTIONS: &[&str] = &["commandstats", "latencystats"];

pub fn run(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut wanted: Vec<&str> = Vec::new();
    let requested: Vec<String> = args.iter().skip(1).map(|a| lower(a)).collect();
    if requested.is_empty() {
        wanted.extend(DEFAULT_SECTIONS);
    }
    for r in &requested {
        match r.as_str() {
            "default" => wanted.extend(DEFAULT_SECTIONS),
            "all" | "everything" => {
                wanted.extend(DEFAULT_SECTIONS);
                wanted.extend(EXTRA_SECTIONS);
            }
            other => {
                if let Some(s) = DEFAULT_SECTIONS
                    .iter()
                    .chain(EXTRA_SECTIONS)
                    .find(|s| **s == other)
                {
                    wanted.push(s);
                }
            }
        }
    }
    let mut out = String::new();
    let mut first = true;
    for section in DEFAULT_SECTIONS.iter().chain(EXTRA_SECTIONS) {
        if !wanted.contains(section) {
            continue;
        }
        if !first {
            out.push_str("\r\n");
        }
        first = false;
        render(ctx, section, &mut out);
    }
    Reply::Verbatim(out)
}

/// Appends `name:value\r\n`.
fn field(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{name}:{value}\r\n");
}

fn render(ctx: &mut Ctx<'_>, section: &str, out: &mut String) {
    let server = ctx.server;
    let settings = &ctx.settings;
    let stats = &server.stats;
    match section {
        "server" => {
            out.push_str("# Server\r\n");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let uptime = Instant::now()
                .saturating_duration_since(server.started)
                .as_secs();
            field(out, "redis_version", REDIS_COMPAT_VERSION);
            field(out, "chorus_version", env!("CARGO_PKG_VERSION"));
            field(out, "redis_git_sha1", "00000000");
            field(out, "redis_git_dirty", 0);
            field(out, "redis_build_id", "0");
            field(out, "redis_mode", "standalone");
            field(out, "os", os_description());
            field(out, "arch_bits", usize::BITS);
            field(out, "monotonic_clock", "POSIX clock_gettime");
            field(out, "multiplexing_api", "epoll");
            field(out, "atomicvar_api", "c11-builtin");
            field(out, "gcc_version", "0.0.0");
            field(out, "process_id", std::process::id());
            field(out, "process_supervised", "no");
            field(out, "run_id", &server.run_id);
            field(out, "tcp_port", settings.port);
            field(out, "server_time_usec", now.as_micros());
            field(out, "uptime_in_seconds", uptime);
            field(out, "uptime_in_days", uptime / 86_400);
            field(out, "hz", settings.hz);
            field(out, "configured_hz", settings.hz);
            field(out, "lru_clock", now.as_secs() & ((1 << 24) - 1));
            field(out, "executable", &server.executable);
            field(out, "config_file", server.config_file_display());
            field(out, "io_threads_active", 0);
            field(out, "site_id", settings.site_id);
        }
        "clients" => {
            out.push_str("# Clients\r\n");
            field(out, "connected_clients", server.clients.count());
            field(out, "cluster_connections", 0);
            field(out, "maxclients", settings.maxclients);
            field(
                out,
                "client_recent_max_input_buffer",
                Stats::get(&stats.client_recent_max_input_buffer),
            );
            field(out, "client_recent_max_output_buffer", 0);
            field(out, "blocked_clients", server.blocked.len());
            field(out, "tracking_clients", 0);
            field(out, "clients_in_timeout_table", 0);
        }
        "memory" => {
            out.push_str("# Memory\r\n");
            let rss = memory::rss_bytes();
            let used = memory::allocated_bytes().unwrap_or(rss);
            let peak = memory::peak_allocated_bytes().unwrap_or(used).max(used);
            let total = memory::total_system_memory();
            let maxmemory: u64 = ctx
                .server
                .config
                .read()
                .get("maxmemory")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let policy = ctx
                .server
                .config
                .read()
                .get("maxmemory-policy")
                .unwrap_or("noeviction")
                .to_string();
            field(out, "used_memory", used);
            field(out, "used_memory_human", memory::bytes_to_human(used));
            field(out, "used_memory_rss", rss);
            field(out, "used_memory_rss_human", memory::bytes_to_human(rss));
            field(out, "used_memory_peak", peak);
            field(out, "used_memory_peak_human", memory::bytes_to_human(peak));
            field(
                out,
                "used_memory_peak_perc",
                format!("{:.2}%", percent(used, peak)),
            );
            field(out, "total_system_memory", total);
            field(
                out,
                "total_system_memory_human",
                memory::bytes_to_human(total),
            );
            // A running script holds the interpreter: its figures then read
            // as the last ones seen.
            let scripts = ctx.server.scripts.figures();
            field(out, "used_memory_lua", scripts.lua_bytes);
            field(out, "used_memory_scripts", 0);
            field(out, "number_of_cached_scripts", scripts.cached);
            field(out, "number_of_functions", scripts.functions);
            field(out, "number_of_libraries", scripts.libraries);
            field(out, "maxmemory", maxmemory);
            field(out, "maxmemory_human", memory::bytes_to_human(maxmemory));
            field(out, "maxmemory_policy", policy);
            let frag = if used > 0 {
                rss as f64 / used as f64
            } else {
                0.0
            };
            field(out, "mem_fragmentation_ratio", format!("{frag:.2}"));
            field(
                out,
                "mem_fragmentation_bytes",
                i128::from(rss) - i128::from(used),
            );
            field(out, "mem_allocator", memory::allocator_name());
            field(out, "active_defrag_running", 0);
            field(out, "lazyfree_pending_objects", 0);
            field(out, "lazyfreed_objects", 0);
        }
        "persistence" => {
            out.push_str("# Persistence\r\n");
            field(out, "loading", 0);
            field(out, "async_loading", 0);
            // Chorus's checkpoints play the RDB's part, its op log the AOF's.
            // Through the store the command holds or takes: inside
            // MULTI/EXEC the engine is held already.
            let (p, appendfsync) =
                ctx.with_store(|s| (server.store.persistence_held(s), s.appendfsync()));
            let status = if p.healthy { "ok" } else { "err" };
            field(out, "rdb_changes_since_last_save", p.rows_changed);
            field(
                out,
                "rdb_bgsave_in_progress",
                u8::from(p.checkpoint_in_progress),
            );
            field(
                out,
                "rdb_last_save_time",
                server.last_save_unix().max(p.last_checkpoint_unix),
            );
            field(out, "rdb_last_bgsave_status", status);
            field(out, "rdb_saves", p.checkpoints);
            field(out, "aof_enabled", 1);
            field(out, "aof_rewrite_in_progress", 0);
            field(out, "aof_last_write_status", status);
            field(
                out,
                "chorus_log_bytes_since_checkpoint",
                p.log_bytes_since_checkpoint,
            );
            field(out, "appendfsync", appendfsync.as_str());
            field(out, "data_dir", server.store.dir().display());
        }
        "stats" => {
            out.push_str("# Stats\r\n");
            let (ops, input_bps, output_bps) = stats.instantaneous();
            field(
                out,
                "total_connections_received",
                Stats::get(&stats.total_connections_received),
            );
            field(
                out,
                "total_commands_processed",
                Stats::get(&stats.total_commands_processed),
            );
            field(out, "instantaneous_ops_per_sec", ops);
            field(
                out,
                "total_net_input_bytes",
                Stats::get(&stats.total_net_input_bytes),
            );
            field(
                out,
                "total_net_output_bytes",
                Stats::get(&stats.total_net_output_bytes),
            );
            field(
                out,
                "instantaneous_input_kbps",
                format!("{:.2}", input_bps / 1024.0),
            );
            field(
                out,
                "instantaneous_output_kbps",
                format!("{:.2}", output_bps / 1024.0),
            );
            field(
                out,
                "rejected_connections",
                Stats::get(&stats.rejected_connections),
            );
            let expired = ctx.with_store(|s| s.expired_keys());
            field(out, "expired_keys", expired);
            field(out, "evicted_keys", 0);
            field(out, "evicted_clients", 0);
            field(out, "keyspace_hits", 0);
            field(out, "keyspace_misses", 0);
            let (channels, patterns, _) = ctx.server.pubsub.figures();
            field(out, "pubsub_channels", channels as u64);
            field(out, "pubsub_patterns", patterns as u64);
            field(
                out,
                "total_error_replies",
                Stats::get(&stats.total_error_replies),
            );
            field(
                out,
                "total_reads_processed",
                Stats::get(&stats.total_reads_processed),
            );
            field(
                out,
                "total_writes_processed",
                Stats::get(&stats.total_writes_processed),
            );
            field(
                out,
                "client_query_buffer_limit_disconnections",
                Stats::get(&stats.client_query_buffer_limit_disconnections),
            );
            // Expired keys this site deleted for a deadline another site
            // owned (that owner was down, cut off or removed).
            let taken_over = ctx.with_store(|s| s.expired_keys_taken_over());
            field(out, "expired_keys_taken_over", taken_over);
        }
        "replication" => super::peer::info_section(ctx, out),
        "cpu" => {
            out.push_str("# CPU\r\n");
            let (sys, user) = memory::cpu_seconds();
            field(out, "used_cpu_sys", format!("{sys:.6}"));
            field(out, "used_cpu_user", format!("{user:.6}"));
            field(out, "used_cpu_sys_children", "0.000000");
            field(out, "used_cpu_user_children", "0.000000");
        }
        "modules" => out.push_str("# Modules\r\n"),
        "errorstats" => {
            out.push_str("# Errorstats\r\n");
            for (code, count) in stats.error_counts() {
                let _ = write!(out, "errorstat_{code}:count={count}\r\n");
            }
        }
        "cluster" => {
            out.push_str("# Cluster\r\n");
            field(out, "cluster_enabled", 0);
        }
        "keyspace" => {
            out.push_str("# Keyspace\r\n");
            for (db, counts) in ctx.with_store(|s| s.keyspace()) {
                let _ = write!(
                    out,
                    "db{db}:keys={},expires={},avg_ttl=0\r\n",
                    counts.keys, counts.expires
                );
            }
        }
        "commandstats" => {
            out.push_str("# Commandstats\r\n");
            stats.commands.render_commandstats(out);
        }
        "latencystats" => {
            out.push_str("# Latencystats\r\n");
            let percentiles: Vec<f64> = server
                .config
                .read()
                .get("latency-tracking-info-percentiles")
                .unwrap_or_default()
                .split(' ')
                .filter_map(|p| p.parse().ok())
                .collect();
            stats.commands.render_latencystats(&percentiles, out);
        }
        _ => {}
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `Linux 6.1.0 x86_64`, from uname(2).
fn os_description() -> String {
    let mut name = std::mem::MaybeUninit::<libc::utsname>::zeroed();
    // SAFETY: uname fills the struct it is given.
    if unsafe { libc::uname(name.as_mut_ptr()) } != 0 {
        return std::env::consts::OS.to_string();
    }
    // SAFETY: uname returned 0, so the struct is initialised.
    let name = unsafe { name.assume_init() };
    let text = |field: &[libc::c_char]| -> String {
        let bytes: Vec<u8> = field
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {}",
        text(&name.sysname),
        text(&name.release),
        text(&name.machine)
    )
}
