//! Keyspace notifications (`notify-keyspace-events`): every change the
//! engine applies, local or from a peer, published on
//! `__keyspace@<db>__:<key>` (the event as message) and
//! `__keyevent@<db>__:<event>` (the key as message), as Redis does.
//!
//! The engine names each change's event (see `chorus_engine::KeyEvent` and
//! docs/semantics.md, "Keyspace notifications"); this module only filters
//! by the configured classes and publishes. It is the engine's change sink
//! beside the site's change feed ([`StoreSink`]), so it runs under the
//! engine's lock, before the command that made the change replies, in the
//! order the changes were applied. Publishing never waits: each message
//! goes to the subscribers' bounded outboxes, and a subscriber past its
//! `client-output-buffer-limit pubsub` is disconnected, as with PUBLISH.
//! With the parameter empty (the default) the engine records nothing for
//! this sink.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use chorus_engine::{Change, ChangeSink, EventClass, KeyEvent};
use chorus_site::ChangeFeed;
use parking_lot::Mutex;

use crate::config::OutputBufferLimit;
use crate::pubsub::PubSub;

/// The classes of `notify-keyspace-events`, as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventFlags(u32);

impl EventFlags {
    pub const KEYSPACE: u32 = 1;
    pub const KEYEVENT: u32 = 1 << 1;
    pub const GENERIC: u32 = 1 << 2;
    pub const STRING: u32 = 1 << 3;
    pub const LIST: u32 = 1 << 4;
    pub const SET: u32 = 1 << 5;
    pub const HASH: u32 = 1 << 6;
    pub const ZSET: u32 = 1 << 7;
    pub const EXPIRED: u32 = 1 << 8;
    pub const EVICTED: u32 = 1 << 9;
    pub const STREAM: u32 = 1 << 10;
    pub const KEY_MISS: u32 = 1 << 11;
    pub const MODULE: u32 = 1 << 12;
    pub const NEW: u32 = 1 << 13;
    /// `A`: every class but key misses and new keys.
    pub const ALL: u32 = Self::GENERIC
        | Self::STRING
        | Self::LIST
        | Self::SET
        | Self::HASH
        | Self::ZSET
        | Self::EXPIRED
        | Self::EVICTED
        | Self::STREAM
        | Self::MODULE;

    /// The class letters (`KEA`, `Kx`...); `None` for a letter Redis does
    /// not know.
    pub fn parse(classes: &str) -> Option<EventFlags> {
        let mut flags = 0u32;
        for c in classes.chars() {
            flags |= match c {
                'A' => Self::ALL,
                'g' => Self::GENERIC,
                '$' => Self::STRING,
                'l' => Self::LIST,
                's' => Self::SET,
                'h' => Self::HASH,
                'z' => Self::ZSET,
                'x' => Self::EXPIRED,
                'e' => Self::EVICTED,
                'K' => Self::KEYSPACE,
                'E' => Self::KEYEVENT,
                't' => Self::STREAM,
                'm' => Self::KEY_MISS,
                'd' => Self::MODULE,
                'n' => Self::NEW,
                _ => return None,
            };
        }
        Some(EventFlags(flags))
    }

    /// The letters in Redis's canonical order, as `CONFIG GET` prints them
    /// (`A` stands for its classes and, as in Redis, hides `n`).
    pub fn canonical(self) -> String {
        let flags = self.0;
        let mut out = String::new();
        if flags & Self::ALL == Self::ALL {
            out.push('A');
        } else {
            for (bit, c) in [
                (Self::GENERIC, 'g'),
                (Self::STRING, '$'),
                (Self::LIST, 'l'),
                (Self::SET, 's'),
                (Self::HASH, 'h'),
                (Self::ZSET, 'z'),
                (Self::EXPIRED, 'x'),
                (Self::EVICTED, 'e'),
                (Self::STREAM, 't'),
                (Self::MODULE, 'd'),
                (Self::NEW, 'n'),
            ] {
                if flags & bit != 0 {
                    out.push(c);
                }
            }
        }
        for (bit, c) in [
            (Self::KEYSPACE, 'K'),
            (Self::KEYEVENT, 'E'),
            (Self::KEY_MISS, 'm'),
        ] {
            if flags & bit != 0 {
                out.push(c);
            }
        }
        out
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    /// True when some event would be published: a channel kind (`K` or `E`)
    /// and a class of events Chorus fires.
    pub fn active(self) -> bool {
        let classes = Self::ALL | Self::NEW;
        self.0 & (Self::KEYSPACE | Self::KEYEVENT) != 0 && self.0 & classes != 0
    }

    /// The bit of an event's class.
    fn class_bit(class: EventClass) -> u32 {
        match class {
            EventClass::Generic => Self::GENERIC,
            EventClass::String => Self::STRING,
            EventClass::List => Self::LIST,
            EventClass::Set => Self::SET,
            EventClass::Hash => Self::HASH,
            EventClass::ZSet => Self::ZSET,
            EventClass::Expired => Self::EXPIRED,
            EventClass::New => Self::NEW,
        }
    }
}

/// Publishes the engine's changes as keyspace notifications (see the
/// module docs).
#[derive(Debug, Default)]
pub struct Notifier {
    flags: AtomicU32,
    limit: Mutex<OutputBufferLimit>,
    /// Set once the server's pub/sub exists (the store opens first).
    pubsub: OnceLock<Arc<PubSub>>,
}

impl Notifier {
    /// Publishes through `pubsub` from now on.
    pub fn bind(&self, pubsub: Arc<PubSub>) {
        let _ = self.pubsub.set(pubsub);
    }

    /// Takes the values of `notify-keyspace-events` and of the `pubsub`
    /// class of `client-output-buffer-limit`.
    pub fn configure(&self, flags: EventFlags, limit: OutputBufferLimit) {
        *self.limit.lock() = limit;
        self.flags.store(flags.bits(), Ordering::Release);
    }

    fn flags(&self) -> EventFlags {
        EventFlags(self.flags.load(Ordering::Acquire))
    }

    /// Publishes one event: on the keyspace channel, then the keyevent
    /// channel, as Redis's `notifyKeyspaceEvent` orders them.
    fn publish_event(
        &self,
        pubsub: &PubSub,
        flags: EventFlags,
        limit: OutputBufferLimit,
        db: u8,
        key: &Bytes,
        event: KeyEvent,
    ) {
        if flags.bits() & EventFlags::class_bit(event.class()) == 0 {
            return;
        }
        let name = event.name().as_bytes();
        if flags.bits() & EventFlags::KEYSPACE != 0 {
            let mut channel = BytesMut::with_capacity(20 + key.len());
            channel.put_slice(format!("__keyspace@{db}__:").as_bytes());
            channel.put_slice(key);
            pubsub.publish(
                &channel.freeze(),
                &Bytes::from_static(event.name().as_bytes()),
                false,
                limit,
            );
        }
        if flags.bits() & EventFlags::KEYEVENT != 0 {
            let mut channel = BytesMut::with_capacity(20 + name.len());
            channel.put_slice(format!("__keyevent@{db}__:").as_bytes());
            channel.put_slice(name);
            pubsub.publish(&channel.freeze(), key, false, limit);
        }
    }
}

impl ChangeSink for Notifier {
    fn wanted(&self) -> bool {
        self.flags().active() && self.pubsub.get().is_some()
    }

    fn publish(&self, changes: &mut Vec<Change>) {
        let flags = self.flags();
        let Some(pubsub) = self.pubsub.get() else {
            return;
        };
        if !flags.active() {
            return;
        }
        let limit = *self.limit.lock();
        for change in changes.iter() {
            // Whole-database changes (FLUSHDB, FLUSHALL, a full resync) fire
            // no key events, as FLUSHALL fires none in Redis.
            if let Change::Key { db, key, event, .. } = change {
                self.publish_event(pubsub, flags, limit, *db, key, *event);
            }
        }
    }
}

/// The engine's change sink in chorus-server: the keyspace notifications
/// first (under the engine, before the writer's reply), then the site's
/// change feed (blocked clients and other subscribers).
pub struct StoreSink {
    pub notifier: Arc<Notifier>,
    pub feed: ChangeFeed,
}

impl ChangeSink for StoreSink {
    fn wanted(&self) -> bool {
        self.notifier.wanted() || ChangeSink::wanted(&self.feed)
    }

    fn publish(&self, changes: &mut Vec<Change>) {
        self.notifier.publish(changes);
        ChangeSink::publish(&self.feed, changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_print_in_redis_s_order() {
        for (given, printed) in [
            ("", ""),
            ("KA", "AK"),
            ("g$lshzxetd", "A"),
            ("Ex", "xE"),
            ("An", "A"),
            ("nKE$", "$nKE"),
        ] {
            assert_eq!(
                EventFlags::parse(given).map(EventFlags::canonical),
                Some(printed.to_string()),
                "{given}"
            );
        }
        assert_eq!(EventFlags::parse("KZ"), None);
        assert!(!EventFlags::parse("A").unwrap().active(), "no channel kind");
        assert!(!EventFlags::parse("KE").unwrap().active(), "no class");
        assert!(!EventFlags::parse("Km").unwrap().active(), "never fired");
        assert!(EventFlags::parse("En").unwrap().active());
    }
}
