//! `UNIT DEFINE|OWNER|FAILOVER|LIST|OF|DROP|HELP`: units of keys with a
//! home site, kept as replicated cluster data (see docs/operations.md,
//! "Units", and docs/semantics.md, "Units").

use std::time::{Duration, Instant};

use bytes::Bytes;
use chorus_engine::engine::{Unit, UnitMode, UnitTable};
use chorus_engine::id::{SiteId, VersionVector};
use chorus_engine::Reply;

use super::{lower, Ctx};

/// How long a planned failover waits for the new home to hold every op
/// of the old one before it gives up and the unit stays where it was.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the wait looks again (acks of a direct peer, or the new
/// home's stability report relayed by others).
const FAILOVER_POLL: Duration = Duration::from_millis(5);

fn bulk(s: impl Into<Bytes>) -> Reply {
    Reply::Bulk(s.into())
}

fn site_arg(a: &Bytes) -> Result<SiteId, Reply> {
    std::str::from_utf8(a)
        .ok()
        .and_then(|s| s.parse::<SiteId>().ok())
        .filter(|s| *s > 0)
        .ok_or_else(|| Reply::err("ERR invalid site id"))
}

fn done(r: Result<Result<(), chorus_engine::engine::UnitError>, Reply>) -> Reply {
    match r {
        Ok(Ok(())) => Reply::Ok,
        Ok(Err(e)) => Reply::Error(e.to_string()),
        Err(reply) => reply,
    }
}

/// `UNIT <subcommand> ...`
pub fn unit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = args.get(1).map(|a| lower(a)).unwrap_or_default();
    match (sub.as_str(), args.len()) {
        ("define", 5) if lower(&args[3]) == "prefix" => {
            let (name, prefix) = (&args[2], &args[4]);
            done(ctx.with_store(|s| s.cluster_write(|e, now| e.unit_define(name, prefix, now))))
        }
        ("owner", 4) => {
            let (name, mode) = (&args[2], &args[3]);
            done(ctx.with_store(|s| s.cluster_write(|e, now| e.unit_set_owner(name, mode, now))))
        }
        ("drop", 3) => {
            let name = &args[2];
            done(ctx.with_store(|s| s.cluster_write(|e, now| e.unit_drop(name, now))))
        }
        ("failover", 4..=6) => failover(ctx, args),
        ("list", 2) => {
            let me = ctx.server.store.site_id();
            ctx.with_store(|s| {
                let e = s.engine();
                let t = e.units().clone();
                let handing: Vec<(Bytes, SiteId)> = t
                    .units
                    .iter()
                    .filter_map(|u| Some((u.name.clone(), e.unit_handing_over(&u.name)?)))
                    .collect();
                let t = &t;
                Reply::Array(
                    t.units
                        .iter()
                        .map(|u| {
                            let to = handing.iter().find(|h| h.0 == u.name).map(|h| h.1);
                            describe(t, u, me, to)
                        })
                        .collect(),
                )
            })
        }
        ("of", 3) => {
            let me = ctx.server.store.site_id();
            let key = &args[2];
            ctx.with_store(|s| {
                let e = s.engine();
                let t = e.units().clone();
                match t.unit_of(key) {
                    Some(u) => {
                        let to = e.unit_handing_over(&u.name);
                        describe(&t, u, me, to)
                    }
                    None => describe(
                        &t,
                        &Unit {
                            name: Bytes::from_static(b"*"),
                            prefix: Bytes::new(),
                            mode: UnitMode::Shared,
                        },
                        me,
                        None,
                    ),
                }
            })
        }
        ("help", 2) => super::client::help_reply(&[
                "UNIT <subcommand> [<arg> ...]. Subcommands are:",
                "DEFINE <name> PREFIX <prefix>",
                "    Define (or redefine) a unit: the keys starting with <prefix> (the longest matching prefix wins). A new unit is shared.",
                "OWNER <name> <site-id>|SHARED",
                "    Give the unit a home site (only it takes the unit's writes), or make it shared (every site takes them). At once: no hand-over.",
                "FAILOVER <name> <site-id> [FORCE [NOWAIT]]",
                "    Planned: run at the unit's home; writes to the unit pause here until <site-id> holds every op of this site, then it is the home.",
                "    FORCE NOWAIT: move the home at once from any site (two homes may take writes until every site has the change).",
                "LIST",
                "    Every unit: name, prefix, mode, home, lease state.",
                "OF <key>",
                "    The unit of a key (the default unit '*' when none matches).",
                "DROP <name>",
                "    Drop a unit: its keys fall to the next matching unit.",
                "HELP",
                "    Print this help.",
        ]),
        _ => super::subcommand_syntax_error(args),
    }
}

/// One unit as `UNIT LIST` and `UNIT OF` show it.
fn describe(t: &UnitTable, u: &Unit, me: SiteId, handing_to: Option<SiteId>) -> Reply {
    let (mode, home) = match u.mode {
        UnitMode::Shared => ("shared", -1),
        UnitMode::Owned(h) => ("owned", i64::from(h)),
    };
    // Homes hold no lease yet: ownership is the cluster data alone.
    let lease = match (u.mode, handing_to) {
        (_, Some(_)) => "handing-over",
        (UnitMode::Owned(h), None) if h == me => "home",
        (UnitMode::Owned(_), None) => "remote",
        (UnitMode::Shared, None) => "none",
    };
    let addr = match u.mode {
        UnitMode::Owned(h) => t.addr_of(h).to_string(),
        UnitMode::Shared => String::new(),
    };
    Reply::Map(vec![
        (bulk("name"), bulk(u.name.clone())),
        (bulk("prefix"), bulk(u.prefix.clone())),
        (bulk("mode"), bulk(mode)),
        (bulk("home"), Reply::Int(home)),
        (bulk("home_addr"), bulk(addr)),
        (bulk("lease"), bulk(lease)),
    ])
}

/// `UNIT FAILOVER name site [FORCE [NOWAIT]]`.
fn failover(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let name = &args[2];
    let to = match site_arg(&args[3]) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let opts: Vec<String> = args[4..].iter().map(|a| lower(a)).collect();
    match opts.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => {}
        ["force", "nowait"] => {
            let mode = Bytes::from(to.to_string());
            return done(
                ctx.with_store(|s| s.cluster_write(|e, now| e.unit_set_owner(name, &mode, now))),
            );
        }
        ["force"] => {
            return Reply::err(
                "ERR FORCE without NOWAIT waits for unit leases, which this version does not keep yet; use FORCE NOWAIT (two homes may take writes for a while) or UNIT OWNER <name> SHARED",
            )
        }
        _ => return Reply::err("ERR syntax error"),
    }
    if ctx.store.is_some() {
        return Reply::err("ERR UNIT FAILOVER is not allowed inside a transaction or script");
    }
    // Writes to the unit stop here; what this site holds now is what the
    // new home must hold before it takes over (only the home writes an
    // owned unit, so that is every op of the unit).
    let begun = ctx.with_store(|s| {
        let e = s.engine();
        e.unit_begin_handover(name, to).map(|()| e.vv().clone())
    });
    let want = match begun {
        Ok(vv) => vv,
        Err(e) => return e,
    };
    let started = Instant::now();
    if !holds(ctx, to, &want, started + FAILOVER_TIMEOUT) {
        ctx.with_store(|s| s.engine().unit_abort_handover(name));
        return Reply::Error(format!(
            "ERR site {to} did not acknowledge this site's ops within {} ms: the unit stays here",
            FAILOVER_TIMEOUT.as_millis()
        ));
    }
    let paused_ms = started.elapsed().as_millis();
    let finished = ctx.with_store(|s| {
        s.cluster_write(|e, now| e.unit_finish_handover(name, now).map(|()| e.vv().clone()))
    });
    let moved = match finished {
        Ok(Ok(vv)) => vv,
        Ok(Err(e)) => return Reply::Error(e.to_string()),
        Err(reply) => return reply,
    };
    tracing::info!(unit = %String::from_utf8_lossy(name), to, paused_ms, "planned failover: the new home held every op");
    // OK once the new home holds the change too, so that it takes the
    // unit's writes when the caller moves them there (meanwhile it would
    // redirect them here, and this site there).
    if !holds(ctx, to, &moved, Instant::now() + FAILOVER_TIMEOUT) {
        return Reply::Error(format!(
            "ERR the unit's home is now site {to}, which has not acknowledged the change yet; it takes the unit's writes once it does"
        ));
    }
    Reply::Ok
}

/// Waits (bounded by `deadline`) until site `to` durably holds `want`:
/// its acks if it is a peer, or its stability report relayed by others.
/// Blocks this client only: block_in_place keeps the other tasks of this
/// runtime running (as WAIT does).
fn holds(ctx: &mut Ctx<'_>, to: SiteId, want: &VersionVector, deadline: Instant) -> bool {
    tokio::task::block_in_place(|| loop {
        let direct = ctx
            .server
            .store
            .replication()
            .and_then(|r| r.peer_acked_vv(to))
            .is_some_and(|acked| acked.dominates(want));
        let held = direct
            || ctx.with_store(|s| {
                s.engine()
                    .stability_info()
                    .reports
                    .iter()
                    .any(|r| r.site == to && r.vv.dominates(want))
            });
        if held {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(FAILOVER_POLL);
    })
}

/// The unit check of a command that is queued (MULTI) or that watches
/// keys (WATCH), not run: a write whose keys another site is the home of
/// is redirected there at once, and a transaction's writes must all have
/// one home (`CROSSUNIT` otherwise). `earlier` holds the keys of the
/// transaction's writes queued before, in owned units; the new ones in
/// owned units are added to it when the check passes.
pub fn check_queued(
    ctx: &mut Ctx<'_>,
    keys: &[&[u8]],
    earlier: Option<&mut Vec<Bytes>>,
) -> Result<(), Reply> {
    let (owned, verdict) = ctx.with_store(|s| {
        let e = s.engine();
        if !e.units().any_owned() {
            return (Vec::new(), Ok(()));
        }
        let t = e.units();
        let owned: Vec<Bytes> = keys
            .iter()
            .filter(|k| matches!(t.unit_of(k).map(|u| u.mode), Some(UnitMode::Owned(_))))
            .map(|k| Bytes::copy_from_slice(k))
            .collect();
        let mut all: Vec<&[u8]> = keys.to_vec();
        if let Some(earlier) = earlier.as_deref() {
            all.extend(earlier.iter().map(|k| &k[..]));
        }
        (owned, e.unit_route(&all))
    });
    verdict?;
    if let Some(earlier) = earlier {
        earlier.extend(owned);
    }
    Ok(())
}
