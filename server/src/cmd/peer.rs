//! Replication commands: `PEER LIST|ADD|REMOVE|PAUSE|RESUME|RESYNC|LAG|CHECK`
//! and `WAIT numpeers timeout`, plus the `# Replication` section of INFO.
//!
//! WAIT counts the peers whose *durable* acknowledgement covers every op this
//! site has made so far (so everything this client wrote): synchronous
//! replication on demand (`write-mode sync` does it for every write, see
//! `crate::sync_write`).
//!
//! `PEER ADD` and `PEER REMOVE` are saved in the data directory
//! (`crate::peers_file`) once they took effect, so they survive a restart.

use std::time::Duration;

use bytes::Bytes;
use chorus_engine::Reply;

use super::{lower, Ctx};

fn no_replication() -> Reply {
    Reply::err("ERR replication is not configured on this site (start it with --peer and --tls-*)")
}

fn site_arg(a: Option<&Bytes>) -> Result<u16, Reply> {
    a.and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| *s > 0)
        .ok_or_else(|| Reply::err("ERR invalid site id"))
}

fn bulk(s: String) -> Reply {
    Reply::Bulk(Bytes::from(s))
}

/// `PEER <subcommand> ...`
pub fn peer(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let server = ctx.server;
    let Some(r) = server.store.replication() else {
        return no_replication();
    };
    let sub = args.get(1).map(|a| lower(a)).unwrap_or_default();
    let ok_or_missing = |found: bool| {
        if found {
            Reply::Ok
        } else {
            Reply::err("ERR no such peer")
        }
    };
    match (sub.as_str(), args.len()) {
        ("list", 2) => Reply::Array(
            // Through the store the command holds (inside MULTI/EXEC) or
            // takes: the engine is locked once.
            ctx.with_store(|s| r.status_locked(s.engine()))
                .into_iter()
                .map(|p| {
                    Reply::Map(vec![
                        (bulk("id".into()), Reply::Int(p.site_id as i64)),
                        (bulk("addr".into()), bulk(p.addr.map_or_else(|| "-".to_string(), |a| a.to_string()))),
                        (bulk("state".into()), bulk(p.state.to_string())),
                        (bulk("ops_lag".into()), Reply::Int(p.ops_lag as i64)),
                        (bulk("time_lag_ms".into()), Reply::Int(p.time_lag_ms as i64)),
                        (bulk("bytes_in_per_s".into()), Reply::Int(p.bytes_in_per_s as i64)),
                        (bulk("bytes_out_per_s".into()), Reply::Int(p.bytes_out_per_s as i64)),
                        (bulk("bytes_in".into()), Reply::Int(p.bytes_in as i64)),
                        (bulk("bytes_out".into()), Reply::Int(p.bytes_out as i64)),
                        (
                            bulk("last_ack_ms".into()),
                            Reply::Int(p.last_ack_ms.map_or(-1, |v| v as i64)),
                        ),
                        (bulk("ops_sent".into()), Reply::Int(p.ops_sent as i64)),
                        (bulk("ops_received".into()), Reply::Int(p.ops_received as i64)),
                        (bulk("pubsub_sent".into()), Reply::Int(p.pubsub.sent as i64)),
                        (bulk("pubsub_received".into()), Reply::Int(p.pubsub.received as i64)),
                        (bulk("pubsub_dropped".into()), Reply::Int(p.pubsub.dropped as i64)),
                        (bulk("clock_skew_ms".into()), Reply::Int(p.stats.clock_skew_ms as i64)),
                        (
                            bulk("ops_stamped_ahead".into()),
                            Reply::Int(p.stats.ops_stamped_ahead as i64),
                        ),
                    ])
                })
                .collect(),
        ),
        ("add", 4) => {
            let id = match site_arg(args.get(2)) {
                Ok(id) => id,
                Err(e) => return e,
            };
            let addr = String::from_utf8_lossy(&args[3]).into_owned();
            let spec = format!("{id}@{addr}");
            match crate::config::parse_peer(&spec) {
                Ok((id, addr)) => match r.add_peer(id, addr) {
                    Ok(()) => {
                        let saved = ctx.server.peer_overrides.lock().record_add(id, addr);
                        not_saved(saved, id, "added")
                    }
                    Err(e) => Reply::Error(format!("ERR {e}")),
                },
                Err(e) => Reply::Error(format!("ERR {e}")),
            }
        }
        ("remove" | "pause" | "resume" | "resync" | "lag" | "check", 3) => {
            let id = match site_arg(args.get(2)) {
                Ok(id) => id,
                Err(e) => return e,
            };
            match sub.as_str() {
                "remove" => {
                    if !r.remove_peer(id) {
                        return ok_or_missing(false);
                    }
                    let saved = ctx.server.peer_overrides.lock().record_remove(id);
                    not_saved(saved, id, "removed")
                }
                "pause" => ok_or_missing(r.pause(id)),
                "resume" => ok_or_missing(r.resume(id)),
                "resync" => ok_or_missing(r.resync(id)),
                "check" => ok_or_missing(r.request_anti_entropy(id)),
                _ => match ctx.with_store(|s| r.peer_status_locked(s.engine(), id)) {
                    Some(p) => Reply::Array(vec![
                        Reply::Int(p.ops_lag as i64),
                        Reply::Int(p.time_lag_ms as i64),
                    ]),
                    None => Reply::err("ERR no such peer"),
                },
            }
        }
        _ => Reply::err(
            "ERR syntax: PEER LIST | PEER ADD id host:port | PEER REMOVE|PAUSE|RESUME|RESYNC|LAG|CHECK id",
        ),
    }
}

/// `+OK`, or why a change that took effect was not saved for the next start.
fn not_saved(saved: Result<(), crate::peers_file::PeersFileError>, id: u16, what: &str) -> Reply {
    match saved {
        Ok(()) => Reply::Ok,
        Err(e) => {
            tracing::error!(peer = id, error = %e, "runtime peer change not saved");
            Reply::Error(format!(
                "ERR peer {id} {what} for this run, but not saved (a restart forgets it): {e}"
            ))
        }
    }
}

/// `WAIT numpeers timeout_ms` (0 = wait forever, as in Redis).
pub fn wait(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let parse = |b: &Bytes| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
    };
    let (Some(n), Some(timeout)) = (parse(&args[1]), parse(&args[2])) else {
        return Reply::err("ERR value is not an integer or out of range");
    };
    if timeout < 0 {
        return Reply::err("ERR timeout is negative");
    }
    let state = ctx.server;
    let Some(r) = state.store.replication() else {
        return Reply::Int(0);
    };
    // Through the store the command holds inside MULTI/EXEC (taking it
    // again would wait for good). There WAIT answers at once with the
    // peers that have acked, as Redis's does inside a transaction: waiting
    // would hold the store for everyone.
    let in_exec = ctx.store.is_some();
    let (origin, seq) = ctx.with_store(|s| {
        let e = s.engine();
        (e.origin(), e.last_local_seq())
    });
    let timeout = if in_exec { -1 } else { timeout };
    let peers_min = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
    // Sleeps on the same ack notifications as `write-mode sync` (no polling,
    // no lock held); block_in_place keeps the other tasks of this runtime
    // running while this client waits.
    let got = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            if timeout < 0 {
                return r.wait_acked(origin, seq, peers_min, Duration::ZERO).await;
            }
            if timeout > 0 {
                return r
                    .wait_acked(
                        origin,
                        seq,
                        peers_min,
                        Duration::from_millis(timeout as u64),
                    )
                    .await;
            }
            // 0 = forever, in steps that keep tokio's timer arithmetic small.
            loop {
                let got = r
                    .wait_acked(origin, seq, peers_min, WAIT_FOREVER_STEP)
                    .await;
                if got >= peers_min {
                    return got;
                }
            }
        })
    });
    Reply::Int(got as i64)
}

/// `WAIT n 0` waits in steps of this long until `n` peers acked.
const WAIT_FOREVER_STEP: Duration = Duration::from_secs(3600);

/// The `# Replication` section of INFO.
/// Reads the engine through the store the command holds (inside MULTI/EXEC
/// or a script) or takes, so the engine is locked once: locking it again
/// would wait for good.
pub fn info_section(ctx: &mut Ctx<'_>, out: &mut String) {
    use std::fmt::Write as _;
    let state = ctx.server;
    out.push_str("# Replication\r\n");
    out.push_str("role:active-active\r\n");
    let _ = write!(out, "site_id:{}\r\n", state.store.site_id());
    let replication = state.store.replication();
    let (vv, stats, conflicts, pop_conflicts, backlog, peers, folding, stability, membership) = ctx
        .with_store(|s| {
            let e = s.engine();
            (
                e.vv().clone(),
                e.stats().clone(),
                e.type_conflicts(),
                e.list_pop_conflicts(),
                (
                    e.backlog().len(),
                    e.backlog().bytes(),
                    e.backlog().tail_bytes(),
                    e.backlog_memory_bytes(),
                ),
                replication.map(|r| r.status_locked(e)),
                e.folds_at_once(),
                e.stability_info(),
                e.membership(),
            )
        });
    let _ = write!(out, "version_vector:{vv}\r\n");
    // `alone`: counters fold as they are incremented (no peer has ever had
    // a session with this site); `off`: one entry per increment until a
    // SET/DEL observes it (docs/semantics.md, "Stability").
    // `frontier`: counters fold once every member has applied their
    // increments (the stability frontier below).
    let _ = write!(
        out,
        "counter_folding:{}\r\n",
        match (folding, replication.is_some()) {
            (true, _) => "alone",
            (false, true) => "frontier",
            (false, false) => "off",
        }
    );
    super::member::info_lines(out, &stability, &membership);
    let _ = write!(out, "ops_local:{}\r\n", stats.ops_local);
    let _ = write!(out, "ops_applied_remote:{}\r\n", stats.ops_remote_applied);
    let _ = write!(
        out,
        "ops_duplicate_dropped:{}\r\n",
        stats.ops_remote_duplicate
    );
    let _ = write!(out, "type_conflicts:{conflicts}\r\n");
    let _ = write!(out, "list_pop_conflicts:{pop_conflicts}\r\n");
    let settings = state.settings();
    let _ = write!(out, "write_mode:{}\r\n", settings.write_mode.as_str());
    let _ = write!(
        out,
        "sync_write_timeout_ms:{}\r\n",
        settings.sync_write_timeout_ms
    );
    let _ = write!(out, "sync_writes_acked:{}\r\n", state.sync_writes.acked());
    let _ = write!(
        out,
        "sync_writes_not_replicated:{}\r\n",
        state.sync_writes.not_replicated()
    );
    let _ = write!(out, "repl_backlog_size:{}\r\n", settings.repl_backlog_size);
    // What the backlog holds now (ops some peer has not acknowledged): the
    // bytes of their records in the op log, counted against
    // repl_backlog_size; then what serving them costs in memory: the newest
    // ops' bytes, and everything (per-op entries and read-ahead included).
    let _ = write!(out, "repl_backlog_histlen:{}\r\n", backlog.1);
    let _ = write!(out, "repl_backlog_ops:{}\r\n", backlog.0);
    let _ = write!(out, "repl_backlog_tail_bytes:{}\r\n", backlog.2);
    let _ = write!(out, "repl_backlog_memory_bytes:{}\r\n", backlog.3);
    // Reads of the op log for peers that are behind, and those that failed
    // (the engine refuses writes after one; the peer got a full sync).
    let _ = write!(
        out,
        "repl_backlog_log_reads:{}\r\n",
        stats.backlog_log_reads
    );
    let _ = write!(
        out,
        "repl_backlog_read_errors:{}\r\n",
        stats.backlog_read_errors
    );
    let _ = write!(
        out,
        "anti_entropy_interval_secs:{}\r\n",
        settings.anti_entropy_interval_secs
    );
    let _ = write!(out, "max_clock_skew_ms:{}\r\n", settings.max_clock_skew_ms);
    match (replication, peers) {
        (Some(r), Some(peers)) => {
            let _ = write!(out, "cluster_id:{}\r\n", r.cluster_id());
            let _ = write!(out, "repl_addr:{}\r\n", r.local_addr());
            let streaming = peers.iter().filter(|p| p.state == "streaming").count();
            let _ = write!(out, "connected_peers:{streaming}\r\n");
            let _ = write!(out, "configured_peers:{}\r\n", peers.len());
            let refused = r.endpoint_status().handshakes_refused;
            let _ = write!(out, "handshakes_refused:{refused}\r\n");
            let sum = |f: fn(&chorus_replication::SessionStats) -> u64| -> u64 {
                peers.iter().map(|p| f(&p.stats)).sum()
            };
            let pubsub = |f: fn(&chorus_replication::pubsub::PubSubStats) -> u64| -> u64 {
                peers.iter().map(|p| f(&p.pubsub)).sum()
            };
            let totals: [(&str, u64); 15] = [
                ("full_syncs_sent", sum(|s| s.snapshots_sent)),
                ("full_syncs_received", sum(|s| s.snapshots_received)),
                ("anti_entropy_rounds", sum(|s| s.anti_entropy_rounds)),
                ("anti_entropy_checks", sum(|s| s.anti_entropy_checks)),
                ("anti_entropy_incomparable", sum(|s| s.digests_incomparable)),
                (
                    "anti_entropy_mismatches",
                    sum(|s| s.anti_entropy_mismatches),
                ),
                ("anti_entropy_repairs", sum(|s| s.anti_entropy_repairs)),
                (
                    "anti_entropy_rows_repaired",
                    sum(|s| s.anti_entropy_rows_repaired),
                ),
                (
                    "anti_entropy_unsettled_leaves",
                    sum(|s| s.anti_entropy_unsettled),
                ),
                ("opid_conflicts", sum(|s| s.opid_conflicts)),
                ("peer_regressions", sum(|s| s.peer_regressions)),
                ("pubsub_sent", pubsub(|s| s.sent)),
                ("pubsub_received", pubsub(|s| s.received)),
                ("pubsub_dropped", pubsub(|s| s.dropped)),
                ("pubsub_duplicates", pubsub(|s| s.duplicates)),
            ];
            for (name, value) in totals {
                let _ = write!(out, "{name}:{value}\r\n");
            }
            for (i, p) in peers.iter().enumerate() {
                let _ = write!(
                    out,
                    "peer{i}:id={},addr={},state={},ops_lag={},time_lag_ms={},bytes_in_per_s={},bytes_out_per_s={},bytes_in={},bytes_out={},last_ack_ms={},ops_sent={},ops_received={},full_syncs_sent={},full_syncs_received={},anti_entropy_checks={},anti_entropy_mismatches={},anti_entropy_repairs={},anti_entropy_rows_repaired={},opid_conflicts={},peer_regressions={},clock_skew_ms={},ops_stamped_ahead={},pubsub_sent={},pubsub_received={},pubsub_dropped={},pubsub_duplicates={}\r\n",
                    p.site_id,
                    p.addr.map_or_else(|| "-".to_string(), |a| a.to_string()),
                    p.state,
                    p.ops_lag,
                    p.time_lag_ms,
                    p.bytes_in_per_s,
                    p.bytes_out_per_s,
                    p.bytes_in,
                    p.bytes_out,
                    p.last_ack_ms.map_or(-1, |v| v as i64),
                    p.ops_sent,
                    p.ops_received,
                    p.stats.snapshots_sent,
                    p.stats.snapshots_received,
                    p.stats.anti_entropy_checks,
                    p.stats.anti_entropy_mismatches,
                    p.stats.anti_entropy_repairs,
                    p.stats.anti_entropy_rows_repaired,
                    p.stats.opid_conflicts,
                    p.stats.peer_regressions,
                    p.stats.clock_skew_ms,
                    p.stats.ops_stamped_ahead,
                    p.pubsub.sent,
                    p.pubsub.received,
                    p.pubsub.dropped,
                    p.pubsub.duplicates
                );
            }
        }
        _ => out.push_str("connected_peers:0\r\n"),
    }
}
