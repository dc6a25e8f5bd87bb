//! SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, SSUBSCRIBE,
//! SUNSUBSCRIBE, PUBLISH, SPUBLISH and PUBSUB, with Redis 7.0's replies
//! (`pubsub.c`). The registry is [`crate::pubsub::PubSub`]; these commands
//! never take the engine lock.
//!
//! Each (un)subscription is confirmed by a push of its own
//! (`[subscribe, channel, count]`), so a command naming several channels
//! answers [`Reply::Frames`]. The count is channels plus patterns for the
//! classic kinds and shard channels for the shard kind, as in Redis.

use std::sync::Arc;

use bytes::Bytes;
use chorus_engine::Reply;

use super::client::help_reply;
use super::{lower, Ctx};
use crate::pubsub::{Kind, Subscriber};

const HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

fn count_of(ctx: &Ctx<'_>, kind: Kind) -> i64 {
    let subs = &ctx.session.subscriptions;
    let n = match kind {
        Kind::Channel | Kind::Pattern => subs.count(),
        Kind::Shard => subs.shard_channels.len(),
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn verb(kind: Kind, subscribe: bool) -> &'static [u8] {
    match (kind, subscribe) {
        (Kind::Channel, true) => b"subscribe",
        (Kind::Channel, false) => b"unsubscribe",
        (Kind::Pattern, true) => b"psubscribe",
        (Kind::Pattern, false) => b"punsubscribe",
        (Kind::Shard, true) => b"ssubscribe",
        (Kind::Shard, false) => b"sunsubscribe",
    }
}

fn confirmation(ctx: &Ctx<'_>, kind: Kind, subscribe: bool, name: Option<&Bytes>) -> Reply {
    Reply::Push(vec![
        Reply::Bulk(Bytes::from_static(verb(kind, subscribe))),
        name.map_or(Reply::Nil, |n| Reply::Bulk(n.clone())),
        Reply::Int(count_of(ctx, kind)),
    ])
}

/// One reply, or several sent one after the other.
fn frames(mut replies: Vec<Reply>) -> Reply {
    if replies.len() == 1 {
        replies.pop().unwrap_or(Reply::Nil)
    } else {
        Reply::Frames(replies)
    }
}

/// The subscriber this connection's messages are queued on, created by
/// its first subscription.
fn subscriber(ctx: &mut Ctx<'_>) -> Arc<Subscriber> {
    let session = &mut *ctx.session;
    Arc::clone(
        session
            .subscriber
            .get_or_insert_with(|| Arc::new(Subscriber::new(Arc::clone(&session.handle)))),
    )
}

/// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE.
pub fn subscribe(ctx: &mut Ctx<'_>, args: &[Bytes], kind: Kind) -> Reply {
    if kind == Kind::Shard && ctx.session.multi.is_some() {
        // Redis refuses SSUBSCRIBE to a client that expects one reply per
        // command (inside EXEC); SUBSCRIBE and PSUBSCRIBE are let through
        // there for backward compatibility.
        return Reply::err("ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client");
    }
    let me = subscriber(ctx);
    let mut replies = Vec::with_capacity(args.len().saturating_sub(1));
    for name in args.iter().skip(1) {
        ctx.server
            .pubsub
            .subscribe(&me, &mut ctx.session.subscriptions, kind, name);
        replies.push(confirmation(ctx, kind, true, Some(name)));
    }
    ctx.session.sync_pubsub_view();
    frames(replies)
}

/// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: the names given, or every
/// subscription of the kind (with one confirmation naming nothing if there
/// was none).
pub fn unsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes], kind: Kind) -> Reply {
    let id = ctx.session.id;
    let names: Vec<Bytes> = if args.len() > 1 {
        args.iter().skip(1).cloned().collect()
    } else {
        let subs = &ctx.session.subscriptions;
        let set = match kind {
            Kind::Channel => &subs.channels,
            Kind::Pattern => &subs.patterns,
            Kind::Shard => &subs.shard_channels,
        };
        set.iter().cloned().collect()
    };
    let mut replies = Vec::with_capacity(names.len().max(1));
    for name in &names {
        ctx.server
            .pubsub
            .unsubscribe(id, &mut ctx.session.subscriptions, kind, name);
        replies.push(confirmation(ctx, kind, false, Some(name)));
    }
    if replies.is_empty() {
        replies.push(confirmation(ctx, kind, false, None));
    }
    ctx.session.sync_pubsub_view();
    frames(replies)
}

/// PUBLISH, SPUBLISH: the number of receivers at this site. With peers the
/// message is also relayed to every site (shard channels too: Chorus has
/// one shard, so a shard channel spans the cluster like a channel).
pub fn publish(ctx: &mut Ctx<'_>, args: &[Bytes], shard: bool) -> Reply {
    let (Some(channel), Some(payload)) = (args.get(1), args.get(2)) else {
        return super::wrong_arity(if shard { "spublish" } else { "publish" });
    };
    let limit = ctx.settings.pubsub_output_limit;
    let pubsub = &ctx.server.pubsub;
    let here = || pubsub.publish(channel, payload, shard, limit);
    let receivers = match ctx.server.store.replication() {
        Some(r) => r.publish(shard, channel, payload, here),
        None => here(),
    };
    Reply::Int(i64::try_from(receivers).unwrap_or(i64::MAX))
}

/// PUBSUB CHANNELS | NUMSUB | NUMPAT | SHARDCHANNELS | SHARDNUMSUB | HELP.
pub fn pubsub(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = args.get(1).map(|a| lower(a)).unwrap_or_default();
    let pubsub = &ctx.server.pubsub;
    let numsub = |kind: Kind| {
        let mut items = Vec::with_capacity(args.len().saturating_sub(2) * 2);
        for name in args.iter().skip(2) {
            items.push(Reply::Bulk(name.clone()));
            let n = pubsub.subscriber_count(kind, name);
            items.push(Reply::Int(i64::try_from(n).unwrap_or(i64::MAX)));
        }
        Reply::Array(items)
    };
    let channels = |kind: Kind| {
        let pattern = args.get(2).map(|p| p.as_ref());
        Reply::Array(
            pubsub
                .channels(kind, pattern)
                .into_iter()
                .map(Reply::Bulk)
                .collect(),
        )
    };
    match (sub.as_str(), args.len()) {
        ("help", 2) => help_reply(HELP),
        ("channels", 2 | 3) => channels(Kind::Channel),
        ("shardchannels", 2 | 3) => channels(Kind::Shard),
        ("numsub", _) => numsub(Kind::Channel),
        ("shardnumsub", _) => numsub(Kind::Shard),
        ("numpat", 2) => Reply::Int(i64::try_from(pubsub.pattern_count()).unwrap_or(i64::MAX)),
        // Unknown names never get here (the table refuses them): this is
        // a known subcommand with a wrong count, as Redis words it.
        _ => super::subcommand_syntax_error(args),
    }
}

/// The error a RESP2 client in pub/sub mode gets for any other command.
pub fn not_allowed_in_context(full_name: &str) -> Reply {
    Reply::Error(format!(
        "ERR Can't execute '{full_name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    ))
}
