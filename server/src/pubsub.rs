//! Pub/sub at one site: who listens to which channel, pattern and shard
//! channel, and each subscriber's bounded outbox of messages to send.
//!
//! Nothing here touches the engine: messages are not stored, so `PUBLISH`
//! takes the registry's read lock (shared by every publisher) and each
//! receiver's outbox lock, never the engine lock. A subscriber's connection
//! task drains its outbox and encodes the messages in the protocol it
//! speaks.
//!
//! Bounds: an outbox holds what its connection has not written yet; its
//! bytes are checked against the `pubsub` class of
//! `client-output-buffer-limit` on every message, as Redis checks a client's
//! output buffer: past the hard limit, or past the soft limit for longer
//! than its seconds, the outbox is emptied and closed and the client is
//! killed, so a subscriber that cannot keep up costs at most its limit.
//! With a limit of 0 (none), as in Redis, nothing bounds it but memory.
//!
//! Invariant: a client is in the registry's map for a channel exactly when
//! the channel is in its [`Subscriptions`]; the connection removes every
//! entry when it closes ([`PubSub::remove_all`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chorus_engine::redis::glob::glob_match;
use chorus_engine::Reply;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::clients::ClientHandle;
use crate::config::OutputBufferLimit;

/// Bytes a message costs in an outbox beyond its channel, pattern and
/// payload: roughly its RESP framing, as Redis counts its reply buffers.
pub const MESSAGE_OVERHEAD_BYTES: usize = 48;

/// The three namespaces of pub/sub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SUBSCRIBE / PUBLISH.
    Channel,
    /// PSUBSCRIBE: a glob over channel names.
    Pattern,
    /// SSUBSCRIBE / SPUBLISH.
    Shard,
}

/// One message waiting in a subscriber's outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The pattern that matched, for a pattern subscription.
    pub pattern: Option<Bytes>,
    pub channel: Bytes,
    pub payload: Bytes,
    pub shard: bool,
}

impl Message {
    fn cost_bytes(&self) -> usize {
        self.pattern.as_ref().map_or(0, Bytes::len)
            + self.channel.len()
            + self.payload.len()
            + MESSAGE_OVERHEAD_BYTES
    }

    /// The push a subscriber receives: `message`, `pmessage` or `smessage`.
    pub fn reply(&self) -> Reply {
        let mut items = Vec::with_capacity(4);
        match (&self.pattern, self.shard) {
            (Some(pattern), _) => {
                items.push(Reply::bulk(&b"pmessage"[..]));
                items.push(Reply::Bulk(pattern.clone()));
            }
            (None, true) => items.push(Reply::bulk(&b"smessage"[..])),
            (None, false) => items.push(Reply::bulk(&b"message"[..])),
        }
        items.push(Reply::Bulk(self.channel.clone()));
        items.push(Reply::Bulk(self.payload.clone()));
        Reply::Push(items)
    }
}

#[derive(Debug, Default)]
struct Outbox {
    messages: VecDeque<Message>,
    bytes: usize,
    /// When the outbox last went over the soft limit (cleared below it).
    soft_since: Option<Instant>,
    /// Closed for exceeding a limit: what follows is dropped.
    closed: bool,
}

/// A subscribed connection as publishers see it.
#[derive(Debug)]
pub struct Subscriber {
    pub client: Arc<ClientHandle>,
    outbox: Mutex<Outbox>,
    ready: Notify,
}

/// What [`Subscriber::deliver`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// The outbox went over its limit: it was closed and the client killed.
    OverLimit,
    /// The outbox was already closed.
    Dropped,
}

impl Subscriber {
    pub fn new(client: Arc<ClientHandle>) -> Subscriber {
        Subscriber {
            client,
            outbox: Mutex::new(Outbox::default()),
            ready: Notify::new(),
        }
    }

    /// Queues a message and wakes the connection, unless the outbox is over
    /// `limit` (Redis's `checkClientOutputBufferLimits`), in which case it
    /// is emptied and closed and the client killed.
    pub fn deliver(&self, message: Message, limit: OutputBufferLimit, now: Instant) -> Delivery {
        let mut outbox = self.outbox.lock();
        if outbox.closed {
            return Delivery::Dropped;
        }
        outbox.bytes = outbox.bytes.saturating_add(message.cost_bytes());
        outbox.messages.push_back(message);
        let used = outbox.bytes as u64;
        let hard = limit.hard_bytes > 0 && used >= limit.hard_bytes;
        let mut soft = limit.soft_bytes > 0 && used >= limit.soft_bytes;
        if soft {
            match outbox.soft_since {
                None => {
                    outbox.soft_since = Some(now);
                    soft = false;
                }
                Some(since) => {
                    soft = now.saturating_duration_since(since).as_secs() > limit.soft_secs;
                }
            }
        } else {
            outbox.soft_since = None;
        }
        if hard || soft {
            outbox.closed = true;
            outbox.messages = VecDeque::new();
            outbox.bytes = 0;
            drop(outbox);
            tracing::warn!(
                id = self.client.id,
                addr = %self.client.addr,
                "client closed for overcoming of output buffer limits"
            );
            self.client.kill();
            return Delivery::OverLimit;
        }
        drop(outbox);
        self.ready.notify_one();
        Delivery::Queued
    }

    /// Moves up to `bytes_max` bytes of messages (at least one) into `out`.
    /// Returns true if more are left.
    pub fn take(&self, out: &mut Vec<Message>, bytes_max: usize) -> bool {
        let mut outbox = self.outbox.lock();
        let mut taken = 0usize;
        while let Some(message) = outbox.messages.pop_front() {
            let cost = message.cost_bytes();
            outbox.bytes = outbox.bytes.saturating_sub(cost);
            taken += cost;
            out.push(message);
            if taken >= bytes_max {
                break;
            }
        }
        if outbox.messages.is_empty() {
            outbox.soft_since = None;
        }
        !outbox.messages.is_empty()
    }

    /// Bytes waiting in the outbox (`omem` of CLIENT LIST).
    pub fn pending_bytes(&self) -> usize {
        self.outbox.lock().bytes
    }

    /// Makes the next [`Subscriber::ready`] resolve at once (messages were
    /// left for a later turn).
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// Resolves when a message was queued since the last call.
    pub async fn ready(&self) {
        self.ready.notified().await
    }
}

/// What one connection is subscribed to.
#[derive(Debug, Default)]
pub struct Subscriptions {
    pub channels: HashSet<Bytes>,
    pub patterns: HashSet<Bytes>,
    pub shard_channels: HashSet<Bytes>,
}

impl Subscriptions {
    fn set(&mut self, kind: Kind) -> &mut HashSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard_channels,
        }
    }

    /// Channels plus patterns (what SUBSCRIBE and PSUBSCRIBE report).
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Every subscription: the client is in pub/sub mode while it is not 0.
    pub fn total(&self) -> usize {
        self.count() + self.shard_channels.len()
    }
}

type Members = HashMap<u64, Arc<Subscriber>>;

#[derive(Debug, Default)]
struct Registry {
    channels: HashMap<Bytes, Members>,
    patterns: HashMap<Bytes, Members>,
    shard_channels: HashMap<Bytes, Members>,
}

impl Registry {
    fn map(&mut self, kind: Kind) -> &mut HashMap<Bytes, Members> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard_channels,
        }
    }

    fn map_ref(&self, kind: Kind) -> &HashMap<Bytes, Members> {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard_channels,
        }
    }
}

/// The site's pub/sub registry.
#[derive(Debug, Default)]
pub struct PubSub {
    registry: RwLock<Registry>,
}

impl PubSub {
    /// Subscribes; returns false if `subscriber` was subscribed already.
    pub fn subscribe(
        &self,
        subscriber: &Arc<Subscriber>,
        mine: &mut Subscriptions,
        kind: Kind,
        name: &Bytes,
    ) -> bool {
        if !mine.set(kind).insert(name.clone()) {
            return false;
        }
        self.registry
            .write()
            .map(kind)
            .entry(name.clone())
            .or_default()
            .insert(subscriber.client.id, Arc::clone(subscriber));
        true
    }

    /// Unsubscribes; returns false if the client was not subscribed.
    pub fn unsubscribe(
        &self,
        client: u64,
        mine: &mut Subscriptions,
        kind: Kind,
        name: &[u8],
    ) -> bool {
        if !mine.set(kind).remove(name) {
            return false;
        }
        let mut registry = self.registry.write();
        let map = registry.map(kind);
        if let Some(members) = map.get_mut(name) {
            members.remove(&client);
            if members.is_empty() {
                map.remove(name);
            }
        }
        true
    }

    /// Removes every subscription of a client (it closed, or RESET).
    pub fn remove_all(&self, client: u64, mine: &mut Subscriptions) {
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            for name in std::mem::take(mine.set(kind)) {
                let mut registry = self.registry.write();
                let map = registry.map(kind);
                if let Some(members) = map.get_mut(&name) {
                    members.remove(&client);
                    if members.is_empty() {
                        map.remove(&name);
                    }
                }
            }
        }
    }

    /// Delivers a message to the channel's subscribers, then (unless
    /// `shard`) to every matching pattern's; returns the number of
    /// receivers, as PUBLISH replies.
    pub fn publish(
        &self,
        channel: &Bytes,
        payload: &Bytes,
        shard: bool,
        limit: OutputBufferLimit,
    ) -> usize {
        let now = Instant::now();
        let registry = self.registry.read();
        let mut receivers = 0;
        let direct = if shard {
            &registry.shard_channels
        } else {
            &registry.channels
        };
        if let Some(members) = direct.get(channel) {
            for subscriber in members.values() {
                let message = Message {
                    pattern: None,
                    channel: channel.clone(),
                    payload: payload.clone(),
                    shard,
                };
                subscriber.deliver(message, limit, now);
                receivers += 1;
            }
        }
        if shard {
            return receivers;
        }
        for (pattern, members) in &registry.patterns {
            if !glob_match(pattern, channel, false) {
                continue;
            }
            for subscriber in members.values() {
                let message = Message {
                    pattern: Some(pattern.clone()),
                    channel: channel.clone(),
                    payload: payload.clone(),
                    shard: false,
                };
                subscriber.deliver(message, limit, now);
                receivers += 1;
            }
        }
        receivers
    }

    /// Active channels (or shard channels) matching `pattern`
    /// (PUBSUB CHANNELS / SHARDCHANNELS).
    pub fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.registry
            .read()
            .map_ref(kind)
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    /// Subscribers of one channel (PUBSUB NUMSUB / SHARDNUMSUB).
    pub fn subscriber_count(&self, kind: Kind, name: &[u8]) -> usize {
        self.registry
            .read()
            .map_ref(kind)
            .get(name)
            .map_or(0, HashMap::len)
    }

    /// Patterns with at least one subscriber (PUBSUB NUMPAT).
    pub fn pattern_count(&self) -> usize {
        self.registry.read().patterns.len()
    }

    /// Channels plus patterns with subscribers (INFO `pubsub_channels`,
    /// `pubsub_patterns`, `pubsubshard_channels`).
    pub fn figures(&self) -> (usize, usize, usize) {
        let registry = self.registry.read();
        (
            registry.channels.len(),
            registry.patterns.len(),
            registry.shard_channels.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientRegistry;

    fn subscriber(clients: &ClientRegistry) -> Arc<Subscriber> {
        let addr = "127.0.0.1:1".parse().expect("addr");
        let handle = clients
            .register(addr, addr, 0, 100, Instant::now())
            .expect("registered");
        Arc::new(Subscriber::new(handle))
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    const NO_LIMIT: OutputBufferLimit = OutputBufferLimit {
        hard_bytes: 0,
        soft_bytes: 0,
        soft_secs: 0,
    };

    #[test]
    fn publish_reaches_channels_then_patterns_and_counts_receivers() {
        let clients = ClientRegistry::default();
        let pubsub = PubSub::default();
        let (a, c) = (subscriber(&clients), subscriber(&clients));
        let (mut subs_a, mut subs_c) = (Subscriptions::default(), Subscriptions::default());
        assert!(pubsub.subscribe(&a, &mut subs_a, Kind::Channel, &b("news")));
        assert!(!pubsub.subscribe(&a, &mut subs_a, Kind::Channel, &b("news")));
        assert!(pubsub.subscribe(&a, &mut subs_a, Kind::Pattern, &b("n*")));
        assert!(pubsub.subscribe(&c, &mut subs_c, Kind::Pattern, &b("x*")));
        assert_eq!(pubsub.publish(&b("news"), &b("hi"), false, NO_LIMIT), 2);
        assert_eq!(pubsub.publish(&b("news"), &b("hi"), true, NO_LIMIT), 0);
        let mut out = Vec::new();
        assert!(!a.take(&mut out, usize::MAX));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].pattern, None);
        assert_eq!(out[1].pattern, Some(b("n*")));
        assert_eq!(a.pending_bytes(), 0);
        pubsub.remove_all(a.client.id, &mut subs_a);
        assert_eq!(subs_a.total(), 0);
        assert_eq!(pubsub.figures(), (0, 1, 0));
        assert_eq!(pubsub.publish(&b("news"), &b("hi"), false, NO_LIMIT), 0);
    }

    #[test]
    fn a_subscriber_over_the_hard_limit_is_killed_and_its_outbox_freed() {
        let clients = ClientRegistry::default();
        let pubsub = PubSub::default();
        let a = subscriber(&clients);
        let mut subs = Subscriptions::default();
        pubsub.subscribe(&a, &mut subs, Kind::Channel, &b("c"));
        let limit = OutputBufferLimit {
            hard_bytes: 10_000,
            soft_bytes: 0,
            soft_secs: 0,
        };
        let payload = Bytes::from(vec![b'x'; 1000]);
        for _ in 0..9 {
            pubsub.publish(&b("c"), &payload, false, limit);
        }
        assert!(!a.client.is_killed());
        pubsub.publish(&b("c"), &payload, false, limit);
        assert!(a.client.is_killed());
        assert_eq!(a.pending_bytes(), 0);
        let now = Instant::now();
        let message = Message {
            pattern: None,
            channel: b("c"),
            payload,
            shard: false,
        };
        assert_eq!(a.deliver(message, limit, now), Delivery::Dropped);
    }

    #[test]
    fn the_soft_limit_kills_only_after_its_seconds() {
        let clients = ClientRegistry::default();
        let a = subscriber(&clients);
        let limit = OutputBufferLimit {
            hard_bytes: 0,
            soft_bytes: 100,
            soft_secs: 2,
        };
        let message = Message {
            pattern: None,
            channel: b("c"),
            payload: Bytes::from(vec![b'x'; 200]),
            shard: false,
        };
        let t0 = Instant::now();
        assert_eq!(a.deliver(message.clone(), limit, t0), Delivery::Queued);
        let t2 = t0 + std::time::Duration::from_secs(2);
        assert_eq!(a.deliver(message.clone(), limit, t2), Delivery::Queued);
        let t3 = t0 + std::time::Duration::from_secs(3);
        assert_eq!(a.deliver(message, limit, t3), Delivery::OverLimit);
    }
}
