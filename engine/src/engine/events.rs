//! What happened to a key, by the names of keyspace notifications
//! (`notify-keyspace-events`): the event a change reports.
//!
//! One rule per source (docs/semantics.md, "Keyspace notifications"):
//!
//! - a local command: the event its Redis counterpart fires for each key it
//!   changes, chosen from the command that ran ([`LocalCommand`]) and the
//!   effect it emitted (`SetString` is `append` under APPEND, `set` under
//!   SET); the deletes of expiry are `expired`;
//! - an op from a peer: ops carry effects, not commands, so the event is the
//!   one of the effect's type ([`KeyEvent::of_remote`]); a delete of a key
//!   whose deadline had passed at the op's time is `expired`;
//! - a merge of a peer's state (anti-entropy): `restore` (a whole row
//!   written, by no known command).
//!
//! Whichever the source, `new` comes before the event of an effect that
//! made a key that did not exist, and `del` after one that emptied a key
//! (an emptied container is gone); a delete of a key that did not exist
//! reports nothing.

use crate::op::Effect;
use bytes::Bytes;

/// The class of an event: which `notify-keyspace-events` letter turns it
/// on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventClass {
    /// `g`: commands on any type (DEL, EXPIRE, RENAME...).
    Generic,
    /// `$`.
    String,
    /// `l`.
    List,
    /// `s`.
    Set,
    /// `h`.
    Hash,
    /// `z`.
    ZSet,
    /// `x`: a key deleted because its deadline passed.
    Expired,
    /// `n`: a key that did not exist was made.
    New,
}

macro_rules! key_events {
    ($($variant:ident = $name:literal, $class:ident;)*) => {
        /// One keyspace event (see the module docs).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum KeyEvent {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl KeyEvent {
            /// The event's name: the message on `__keyspace@<db>__:<key>`
            /// and the tail of `__keyevent@<db>__:<event>`.
            pub fn name(self) -> &'static str {
                match self {
                    $(KeyEvent::$variant => $name,)*
                }
            }

            /// The class that turns the event on.
            pub fn class(self) -> EventClass {
                match self {
                    $(KeyEvent::$variant => EventClass::$class,)*
                }
            }
        }
    };
}

key_events! {
    New = "new", New;
    Del = "del", Generic;
    Expire = "expire", Generic;
    Persist = "persist", Generic;
    Expired = "expired", Expired;
    RenameFrom = "rename_from", Generic;
    RenameTo = "rename_to", Generic;
    MoveFrom = "move_from", Generic;
    MoveTo = "move_to", Generic;
    CopyTo = "copy_to", Generic;
    Restore = "restore", Generic;
    Set = "set", String;
    Append = "append", String;
    SetRange = "setrange", String;
    IncrBy = "incrby", String;
    IncrByFloat = "incrbyfloat", String;
    PfAdd = "pfadd", String;
    HSet = "hset", Hash;
    HDel = "hdel", Hash;
    HIncrBy = "hincrby", Hash;
    HIncrByFloat = "hincrbyfloat", Hash;
    SAdd = "sadd", Set;
    SRem = "srem", Set;
    SPop = "spop", Set;
    SInterStore = "sinterstore", Set;
    SUnionStore = "sunionstore", Set;
    SDiffStore = "sdiffstore", Set;
    ZAdd = "zadd", ZSet;
    ZIncr = "zincr", ZSet;
    ZRem = "zrem", ZSet;
    ZPopMin = "zpopmin", ZSet;
    ZPopMax = "zpopmax", ZSet;
    ZRemRangeByScore = "zremrangebyscore", ZSet;
    ZRemRangeByRank = "zremrangebyrank", ZSet;
    ZRemRangeByLex = "zremrangebylex", ZSet;
    ZInterStore = "zinterstore", ZSet;
    ZUnionStore = "zunionstore", ZSet;
    ZDiffStore = "zdiffstore", ZSet;
    ZRangeStore = "zrangestore", ZSet;
    GeoSearchStore = "geosearchstore", ZSet;
    GeoRadiusStore = "georadiusstore", ZSet;
    LPush = "lpush", List;
    RPush = "rpush", List;
    LPop = "lpop", List;
    RPop = "rpop", List;
    LInsert = "linsert", List;
    LSet = "lset", List;
    LRem = "lrem", List;
    LTrim = "ltrim", List;
}

impl KeyEvent {
    /// The event of an effect from a peer's op, by the effect's type alone
    /// (`None`: a flush, which reports no key). `expired`: the key's
    /// deadline had passed when the op was made, so a delete is expiry's.
    pub fn of_remote(effect: &Effect, expired: bool) -> Option<KeyEvent> {
        Some(match effect {
            Effect::SetString { .. } => KeyEvent::Set,
            Effect::IncrInt(_) => KeyEvent::IncrBy,
            Effect::IncrFloat(_) => KeyEvent::IncrByFloat,
            Effect::Del if expired => KeyEvent::Expired,
            Effect::Del => KeyEvent::Del,
            Effect::Expire(Some(_)) => KeyEvent::Expire,
            Effect::Expire(None) => KeyEvent::Persist,
            Effect::HSet(_) => KeyEvent::HSet,
            Effect::HDel(_) => KeyEvent::HDel,
            Effect::HIncrInt(..) => KeyEvent::HIncrBy,
            Effect::HIncrFloat(..) => KeyEvent::HIncrByFloat,
            Effect::SAdd(_) => KeyEvent::SAdd,
            Effect::SRem(_) => KeyEvent::SRem,
            Effect::ZAdd(_) => KeyEvent::ZAdd,
            Effect::ZIncr(..) => KeyEvent::ZIncr,
            Effect::ZRem(_) => KeyEvent::ZRem,
            Effect::Replace { .. } => KeyEvent::Restore,
            Effect::ListInsert { .. } => KeyEvent::LPush,
            Effect::ListRemove { pop: true, .. } => KeyEvent::LPop,
            Effect::ListRemove { pop: false, .. } => KeyEvent::LRem,
            Effect::ListSet { .. } => KeyEvent::LSet,
            Effect::HllRaise { .. } => KeyEvent::PfAdd,
            Effect::FlushDb | Effect::FlushAll => return None,
        })
    }
}

/// The command running at this site, as much of it as names its events:
/// its name and, for the commands whose events depend on an argument, that
/// argument (LMOVE's ends, LMPOP's and ZMPOP's direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalCommand {
    name: &'static str,
    /// The end elements are popped from: the left (head).
    pop_left: bool,
    /// The end elements are pushed to: the left (head).
    push_left: bool,
    /// ZMPOP/BZMPOP pops the greatest scores.
    pop_max: bool,
}

impl LocalCommand {
    /// `name` is the command table's (upper case); `args[0]` is the name as
    /// the client sent it. Arguments that are missing or not a keyword
    /// leave the default (the command fails before it writes anyway).
    pub(crate) fn of(name: &'static str, args: &[Bytes]) -> LocalCommand {
        let left = |i: usize| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(b"left"));
        let max = |i: usize| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(b"max"));
        // LMPOP numkeys key... dir; BLMPOP timeout numkeys key... dir.
        let after_keys = |numkeys_at: usize| {
            args.get(numkeys_at)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                .and_then(|n| numkeys_at.checked_add(1)?.checked_add(n))
                .unwrap_or(usize::MAX)
        };
        let (pop_left, push_left, pop_max) = match name {
            "LMOVE" | "BLMOVE" => (left(3), left(4), false),
            "RPOPLPUSH" | "BRPOPLPUSH" => (false, true, false),
            "LMPOP" => (left(after_keys(1)), false, false),
            "BLMPOP" => (left(after_keys(2)), false, false),
            "ZMPOP" => (false, false, max(after_keys(1))),
            "BZMPOP" => (false, false, max(after_keys(2))),
            _ => (true, true, false),
        };
        LocalCommand {
            name,
            pop_left,
            push_left,
            pop_max,
        }
    }

    /// The event of `effect` emitted by this command (`None`: a flush).
    pub(crate) fn event(&self, effect: &Effect) -> Option<KeyEvent> {
        let n = self.name;
        Some(match effect {
            Effect::SetString { .. } => match n {
                "APPEND" => KeyEvent::Append,
                "SETRANGE" => KeyEvent::SetRange,
                _ => KeyEvent::Set,
            },
            Effect::Del => match n {
                "RENAME" | "RENAMENX" => KeyEvent::RenameFrom,
                "MOVE" => KeyEvent::MoveFrom,
                _ => KeyEvent::Del,
            },
            Effect::Replace { .. } => match n {
                "RENAME" | "RENAMENX" => KeyEvent::RenameTo,
                "MOVE" => KeyEvent::MoveTo,
                "COPY" => KeyEvent::CopyTo,
                "SINTERSTORE" => KeyEvent::SInterStore,
                "SUNIONSTORE" => KeyEvent::SUnionStore,
                "SDIFFSTORE" => KeyEvent::SDiffStore,
                "ZINTERSTORE" => KeyEvent::ZInterStore,
                "ZUNIONSTORE" => KeyEvent::ZUnionStore,
                "ZDIFFSTORE" => KeyEvent::ZDiffStore,
                "ZRANGESTORE" => KeyEvent::ZRangeStore,
                "GEOSEARCHSTORE" => KeyEvent::GeoSearchStore,
                "GEORADIUS" | "GEORADIUSBYMEMBER" => KeyEvent::GeoRadiusStore,
                _ => KeyEvent::Restore,
            },
            Effect::SRem(_) => match n {
                "SPOP" => KeyEvent::SPop,
                _ => KeyEvent::SRem,
            },
            Effect::ZRem(_) => match n {
                "ZPOPMIN" | "BZPOPMIN" => KeyEvent::ZPopMin,
                "ZPOPMAX" | "BZPOPMAX" => KeyEvent::ZPopMax,
                "ZMPOP" | "BZMPOP" if self.pop_max => KeyEvent::ZPopMax,
                "ZMPOP" | "BZMPOP" => KeyEvent::ZPopMin,
                "ZREMRANGEBYSCORE" => KeyEvent::ZRemRangeByScore,
                "ZREMRANGEBYRANK" => KeyEvent::ZRemRangeByRank,
                "ZREMRANGEBYLEX" => KeyEvent::ZRemRangeByLex,
                _ => KeyEvent::ZRem,
            },
            Effect::ListInsert { .. } => match n {
                "LINSERT" => KeyEvent::LInsert,
                "RPUSH" | "RPUSHX" => KeyEvent::RPush,
                "LPUSH" | "LPUSHX" => KeyEvent::LPush,
                _ if self.push_left => KeyEvent::LPush,
                _ => KeyEvent::RPush,
            },
            Effect::ListRemove { .. } => match n {
                "LREM" => KeyEvent::LRem,
                "LTRIM" => KeyEvent::LTrim,
                "LPOP" | "BLPOP" => KeyEvent::LPop,
                "RPOP" | "BRPOP" => KeyEvent::RPop,
                _ if self.pop_left => KeyEvent::LPop,
                _ => KeyEvent::RPop,
            },
            _ => return KeyEvent::of_remote(effect, false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> LocalCommand {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let name = crate::cmd::find(&args[0]).unwrap().name;
        LocalCommand::of(name, &args)
    }

    fn remove(pop: bool) -> Effect {
        Effect::ListRemove {
            spans: Vec::new(),
            pop,
        }
    }

    #[test]
    fn the_command_names_the_event_where_the_effect_does_not() {
        let s = Effect::SetString {
            value: Bytes::new(),
            keep_ttl: true,
        };
        assert_eq!(cmd("APPEND k v").event(&s), Some(KeyEvent::Append));
        assert_eq!(cmd("SETRANGE k 0 v").event(&s), Some(KeyEvent::SetRange));
        assert_eq!(cmd("MSET k v").event(&s), Some(KeyEvent::Set));
        assert_eq!(
            cmd("RENAME a b").event(&Effect::Del),
            Some(KeyEvent::RenameFrom)
        );
        assert_eq!(
            cmd("LMOVE a b RIGHT LEFT").event(&remove(true)),
            Some(KeyEvent::RPop)
        );
        assert_eq!(
            cmd("BLMPOP 0 2 a b LEFT").event(&remove(true)),
            Some(KeyEvent::LPop)
        );
        assert_eq!(
            cmd("ZMPOP 1 z MAX").event(&Effect::ZRem(Vec::new())),
            Some(KeyEvent::ZPopMax)
        );
        assert_eq!(
            cmd("LTRIM k 0 1").event(&remove(false)),
            Some(KeyEvent::LTrim)
        );
        // A malformed count does not panic: the default direction.
        assert_eq!(
            cmd("LMPOP x k LEFT").event(&remove(true)),
            Some(KeyEvent::RPop)
        );
    }

    #[test]
    fn a_peer_s_effect_is_named_by_its_type() {
        assert_eq!(
            KeyEvent::of_remote(&Effect::Del, true),
            Some(KeyEvent::Expired)
        );
        assert_eq!(
            KeyEvent::of_remote(&Effect::Expire(None), false),
            Some(KeyEvent::Persist)
        );
        assert_eq!(KeyEvent::of_remote(&Effect::FlushAll, false), None);
        assert_eq!(KeyEvent::ZIncr.name(), "zincr");
        assert_eq!(KeyEvent::LTrim.class(), EventClass::List);
    }
}
