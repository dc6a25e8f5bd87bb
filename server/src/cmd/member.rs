//! `MEMBER LIST|ADD|REMOVE`: the cluster's membership, kept as replicated
//! cluster data (see docs/operations.md, "Cluster membership"), and the
//! stability lines of `INFO replication`.
//!
//! `PEER ADD/REMOVE` change whom this site connects to; `MEMBER ADD/REMOVE`
//! change who is in the cluster, at every site: a removed site's sessions
//! are refused everywhere and it stops holding back the stability frontier.

use std::fmt::Write as _;

use bytes::Bytes;
use chorus_engine::engine::{Membership, StabilityInfo};
use chorus_engine::stability::Pin;
use chorus_engine::Reply;

use super::{lower, Ctx};
use crate::store::now_ms;

fn bulk(s: impl Into<String>) -> Reply {
    Reply::Bulk(Bytes::from(s.into()))
}

fn site_arg(a: &Bytes) -> Result<u16, Reply> {
    std::str::from_utf8(a)
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| *s > 0)
        .ok_or_else(|| Reply::err("ERR invalid site id"))
}

/// `MEMBER <subcommand> ...`
pub fn member(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = args.get(1).map(|a| lower(a)).unwrap_or_default();
    match (sub.as_str(), args.len()) {
        ("list", 2) => list(ctx),
        ("add" | "remove", 3) => {
            let site = match site_arg(&args[2]) {
                Ok(s) => s,
                Err(e) => return e,
            };
            let adding = sub == "add";
            let done = ctx.with_store(|s| {
                s.cluster_write(|e, now| {
                    if adding {
                        e.member_add(site, now)
                    } else {
                        e.member_remove(site, now)
                    }
                })
            });
            match done {
                Ok(Ok(true)) => Reply::Ok,
                Ok(Ok(false)) if adding => Reply::err("ERR site is already a member"),
                Ok(Ok(false)) => Reply::err("ERR site was already removed"),
                Ok(Err(e)) => Reply::Error(format!("ERR {e}")),
                Err(reply) => reply,
            }
        }
        ("help", 2) => super::client::help_reply(&[
                "MEMBER <subcommand> [<arg> ...]. Subcommands are:",
                "LIST",
                "    The cluster's members as this site knows them: id, state (member, removing, removed), whether it is this site, and its last stability report.",
                "ADD <site-id>",
                "    Add a site to the cluster (replicated to every site). A first session between two sites adds both.",
                "REMOVE <site-id>",
                "    Remove a site from the cluster for good (replicated): every site refuses its sessions, and it stops holding back counter folding.",
                "HELP",
                "    Print this help.",
        ]),
        _ => super::subcommand_syntax_error(args),
    }
}

fn list(ctx: &mut Ctx<'_>) -> Reply {
    let me = ctx.server.store.site_id();
    let (m, info) = ctx.with_store(|s| {
        let e = s.engine();
        (e.membership(), e.stability_info())
    });
    let now = now_ms();
    let mut sites: Vec<u16> = m.added.iter().copied().collect();
    if !sites.contains(&me) {
        sites.push(me);
        sites.sort_unstable();
    }
    let pinned_by = info.pin.map(|p| p.site());
    Reply::Array(
        sites
            .into_iter()
            .map(|site| {
                let state = if !m.is_removed(site) {
                    "member"
                } else if info.leaving.contains(&site) {
                    "removing"
                } else {
                    "removed"
                };
                let report = info.reports.iter().find(|r| r.site == site);
                Reply::Map(vec![
                    (bulk("id"), Reply::Int(i64::from(site))),
                    (bulk("state"), bulk(state)),
                    (bulk("self"), Reply::Int(i64::from(site == me))),
                    (
                        bulk("report_age_ms"),
                        Reply::Int(report.map_or(-1, |r| now.saturating_sub(r.at_ms) as i64)),
                    ),
                    (
                        bulk("applied"),
                        bulk(report.map_or_else(|| "-".to_string(), |r| r.vv.to_string())),
                    ),
                    (
                        bulk("pins_frontier"),
                        Reply::Int(i64::from(pinned_by == Some(site))),
                    ),
                ])
            })
            .collect(),
    )
}

/// The stability lines of `INFO replication` (see docs/operations.md).
pub fn info_lines(out: &mut String, info: &StabilityInfo, m: &Membership) {
    let _ = write!(out, "cluster_members:{}\r\n", m.active().count());
    let _ = write!(out, "cluster_removed:{}\r\n", m.removed.len());
    let _ = write!(out, "stability_frontier:{}\r\n", info.frontier);
    let (by, reason) = match info.pin {
        Some(p @ Pin::NoPeers) => ("-".to_string(), p.reason()),
        Some(p) => (p.site().to_string(), p.reason()),
        None => ("-".to_string(), "none"),
    };
    let _ = write!(out, "stability_pinned_by:{by}\r\n");
    let _ = write!(out, "stability_pin_reason:{reason}\r\n");
    let pinned_secs = info
        .pinned_since_ms
        .map_or(0, |since| now_ms().saturating_sub(since) / 1000);
    let _ = write!(out, "stability_pinned_secs:{pinned_secs}\r\n");
    let _ = write!(out, "counters_folded:{}\r\n", info.folds);
    let _ = write!(out, "counters_fold_queue:{}\r\n", info.queued);
    let _ = write!(out, "fold_overlaps:{}\r\n", info.overlaps);
}
