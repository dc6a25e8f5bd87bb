//! Pub/sub across sites, sans-IO: numbering a site's own messages,
//! de-duplicating relayed ones, choosing where to relay them, and the
//! bounded per-peer queue they wait in.
//!
//! A message published at a site is numbered `(origin, incarnation, seq)`:
//! the site, its incarnation (every start takes a new one, see
//! `docs/decisions.md`), and a sequence number counted from 1 at each start.
//! It travels to every peer that speaks pub/sub, which delivers it to its
//! own subscribers and relays it to its other peers, as ops are relayed, so
//! chains and stars work. Each site keeps, per origin, the newest
//! `(incarnation, seq)` it delivered and takes only messages above it:
//! * at most once: a message reaching a site by two paths is delivered once;
//! * in publish order per origin: each path is FIFO, and a message older
//!   than one already delivered (it was lost on the path that delivered the
//!   newer one and came by a slower path) is dropped rather than delivered
//!   out of order;
//! * a restarted origin numbers from 1 again in a greater incarnation, which
//!   supersedes the old one, so its new messages are never taken for old ones.
//!
//! The state is one entry per origin site (`u16` ids, so bounded); queues
//! are bounded in messages and bytes, and a message that does not fit is
//! dropped and counted. Nothing is stored: what cannot be sent now is lost.

use crate::wire::{encode_frame, Message, Published, WireError, PUBSUB_MESSAGE_BYTES_MAX};
use bytes::Bytes;
use chorus_engine::id::SiteId;
use std::collections::{HashMap, VecDeque};

/// Messages waiting for one peer's pub/sub stream; more are dropped.
pub const PUBSUB_QUEUE_MESSAGES_MAX: usize = 65_536;
/// Frame bytes waiting for one peer's pub/sub stream; more are dropped.
pub const PUBSUB_QUEUE_BYTES_MAX: usize = 16 << 20;

const _: () = assert!(PUBSUB_MESSAGE_BYTES_MAX < PUBSUB_QUEUE_BYTES_MAX);

/// What became of a relayed message at this site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New: deliver it to local subscribers and relay it.
    Deliver,
    /// Delivered already (or an older message of the origin was overtaken
    /// by a newer one, or it is this site's own message coming back).
    Duplicate,
}

/// The newest `(incarnation, seq)` delivered from each origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dedup {
    newest: HashMap<SiteId, (u32, u64)>,
}

impl Dedup {
    /// Takes `(origin, incarnation, seq)` if it is above the newest one
    /// delivered from `origin` (a greater incarnation starts afresh).
    pub fn admit(&mut self, origin: SiteId, incarnation: u32, seq: u64) -> Verdict {
        match self.newest.get_mut(&origin) {
            Some(newest) if (incarnation, seq) <= *newest => Verdict::Duplicate,
            Some(newest) => {
                *newest = (incarnation, seq);
                Verdict::Deliver
            }
            None => {
                self.newest.insert(origin, (incarnation, seq));
                Verdict::Deliver
            }
        }
    }

    /// Origins tracked (at most one per site id).
    pub fn origins(&self) -> usize {
        self.newest.len()
    }
}

/// One site's pub/sub numbering and de-duplication.
#[derive(Clone, Debug)]
pub struct Relay {
    site: SiteId,
    incarnation: u32,
    last_seq: u64,
    dedup: Dedup,
}

impl Relay {
    /// `incarnation`: the engine's at start (a new one every start).
    pub fn new(site: SiteId, incarnation: u32) -> Relay {
        Relay {
            site,
            incarnation,
            last_seq: 0,
            dedup: Dedup::default(),
        }
    }

    pub fn site(&self) -> SiteId {
        self.site
    }

    /// Numbers a message published at this site.
    pub fn publish(&mut self, shard: bool, channel: Bytes, payload: Bytes) -> Published {
        self.last_seq += 1;
        Published {
            origin: self.site,
            incarnation: self.incarnation,
            seq: self.last_seq,
            shard,
            channel,
            payload,
        }
    }

    /// A message from a peer: deliver and relay it, or drop it.
    pub fn receive(&mut self, p: &Published) -> Verdict {
        if p.origin == self.site {
            return Verdict::Duplicate;
        }
        self.dedup.admit(p.origin, p.incarnation, p.seq)
    }

    pub fn dedup(&self) -> &Dedup {
        &self.dedup
    }
}

/// Whether a message of `origin` that arrived from `from` (`None`:
/// published here) goes to `peer`: never back where it came from, nor to
/// its origin.
pub fn relays_to(origin: SiteId, from: Option<SiteId>, peer: SiteId) -> bool {
    Some(peer) != from && peer != origin
}

/// The frame of a message, encoded once and shared by every peer's queue;
/// an error when it is out of bounds (too large to relay).
pub fn frame_of(p: Published) -> Result<Bytes, WireError> {
    encode_frame(&Message::Publish(p)).map(Bytes::from)
}

/// Counters of one peer's pub/sub traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PubSubStats {
    /// Messages written to the peer's stream.
    pub sent: u64,
    /// Messages read from the peer's stream.
    pub received: u64,
    /// Messages for the peer that were not sent: it was down, paused, too
    /// old to speak pub/sub, its queue was full, or the connection ended
    /// with them queued.
    pub dropped: u64,
    /// Messages from the peer that this site had delivered already.
    pub duplicates: u64,
}

/// Frames waiting for one peer, bounded in messages and bytes.
#[derive(Debug, Default)]
pub struct Outbox {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// The peer's pub/sub stream is open and the peer not paused.
    open: bool,
    stats: PubSubStats,
}

impl Outbox {
    /// Queues a frame; false (and counted as dropped) when the stream is not
    /// open or the queue is full.
    pub fn offer(&mut self, frame: &Bytes) -> bool {
        if !self.open
            || self.frames.len() >= PUBSUB_QUEUE_MESSAGES_MAX
            || self.bytes + frame.len() > PUBSUB_QUEUE_BYTES_MAX
        {
            self.stats.dropped += 1;
            return false;
        }
        self.bytes += frame.len();
        self.frames.push_back(frame.clone());
        true
    }

    /// Counts a message that could not be offered at all (too large).
    pub fn note_dropped(&mut self) {
        self.stats.dropped += 1;
    }

    /// Takes queued frames, oldest first, up to about `bytes_max` (at least
    /// one); they count as sent.
    pub fn take(&mut self, bytes_max: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut taken = 0usize;
        while let Some(f) = self.frames.front() {
            if !out.is_empty() && taken + f.len() > bytes_max {
                break;
            }
            taken += f.len();
            if let Some(f) = self.frames.pop_front() {
                out.push(f);
            }
        }
        self.bytes -= taken;
        self.stats.sent += out.len() as u64;
        out
    }

    /// Opens (the stream is up and the peer not paused) or closes the queue;
    /// closing drops what waits (counted).
    pub fn set_open(&mut self, open: bool) {
        self.open = open;
        if !open {
            self.stats.dropped += self.frames.len() as u64;
            self.frames.clear();
            self.bytes = 0;
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn note_received(&mut self, verdict: Verdict) {
        self.stats.received += 1;
        if verdict == Verdict::Duplicate {
            self.stats.duplicates += 1;
        }
    }

    pub fn stats(&self) -> PubSubStats {
        self.stats
    }

    pub fn queued(&self) -> (usize, usize) {
        (self.frames.len(), self.bytes)
    }

    pub fn invariants_hold(&self) -> bool {
        self.frames.len() <= PUBSUB_QUEUE_MESSAGES_MAX
            && self.bytes <= PUBSUB_QUEUE_BYTES_MAX
            && self.frames.iter().map(Bytes::len).sum::<usize>() == self.bytes
            && (self.open || self.frames.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::FrameDecoder;

    fn msg(origin: SiteId, incarnation: u32, seq: u64) -> Published {
        Published {
            origin,
            incarnation,
            seq,
            shard: false,
            channel: Bytes::from_static(b"ch"),
            payload: Bytes::from(seq.to_string()),
        }
    }

    #[test]
    fn each_message_is_delivered_once_and_in_order() {
        let mut r = Relay::new(2, 1);
        assert_eq!(r.receive(&msg(1, 5, 1)), Verdict::Deliver);
        assert_eq!(r.receive(&msg(1, 5, 1)), Verdict::Duplicate);
        assert_eq!(r.receive(&msg(1, 5, 2)), Verdict::Deliver);
        // 3 was lost on this path; 4 overtakes it, and 3 arriving late by
        // another path is dropped rather than delivered out of order.
        assert_eq!(r.receive(&msg(1, 5, 4)), Verdict::Deliver);
        assert_eq!(r.receive(&msg(1, 5, 3)), Verdict::Duplicate);
        // Origins are independent.
        assert_eq!(r.receive(&msg(3, 1, 1)), Verdict::Deliver);
        // Our own messages coming back around a ring are not delivered again.
        assert_eq!(r.receive(&msg(2, 1, 1)), Verdict::Duplicate);
    }

    #[test]
    fn a_restarted_origin_is_not_taken_for_old_messages() {
        let mut r = Relay::new(2, 1);
        for seq in 1..=1000 {
            assert_eq!(r.receive(&msg(1, 5, seq)), Verdict::Deliver);
        }
        // Site 1 restarts: a greater incarnation, numbering from 1 again.
        assert_eq!(r.receive(&msg(1, 6, 1)), Verdict::Deliver);
        assert_eq!(r.receive(&msg(1, 6, 2)), Verdict::Deliver);
        // A straggler of the old life is not delivered after the new one.
        assert_eq!(r.receive(&msg(1, 5, 1001)), Verdict::Duplicate);
    }

    #[test]
    fn dedup_state_is_one_entry_per_origin() {
        let mut r = Relay::new(1, 1);
        for seq in 1..=10_000u64 {
            r.receive(&msg(2 + (seq % 3) as u16, 1, seq));
        }
        assert_eq!(r.dedup().origins(), 3);
    }

    #[test]
    fn own_messages_are_numbered_from_one() {
        let mut r = Relay::new(4, 9);
        let a = r.publish(false, Bytes::from_static(b"c"), Bytes::from_static(b"x"));
        let b = r.publish(true, Bytes::from_static(b"c"), Bytes::from_static(b"y"));
        assert_eq!((a.origin, a.incarnation, a.seq), (4, 9, 1));
        assert_eq!((b.seq, b.shard), (2, true));
    }

    #[test]
    fn relays_skip_the_sender_and_the_origin() {
        // Published at 1: to every peer.
        assert!(relays_to(1, None, 2));
        // Relayed by 2 from 1: to 3, not back to 1.
        assert!(relays_to(1, Some(1), 3));
        assert!(!relays_to(1, Some(1), 1));
        // Relayed by 2 from 3: not back to 3, nor to the origin 1.
        assert!(!relays_to(1, Some(3), 1));
        assert!(!relays_to(1, Some(3), 3));
    }

    #[test]
    fn a_chain_and_a_triangle_deliver_exactly_once() {
        // Sites 1..=3 fully connected (a triangle): every message reaches
        // every other site by two paths and is delivered once, in order.
        let peers: [&[SiteId]; 3] = [&[2, 3], &[1, 3], &[1, 2]];
        let mut relays: Vec<Relay> = (1..=3).map(|s| Relay::new(s, 1)).collect();
        let mut delivered: Vec<Vec<u64>> = vec![Vec::new(); 3];
        // (to, from, message): FIFO links, one queue is enough to model them.
        let mut wire: VecDeque<(SiteId, SiteId, Published)> = VecDeque::new();
        for _ in 0..50 {
            let p = relays[0].publish(false, Bytes::from_static(b"c"), Bytes::new());
            for &to in peers[0] {
                wire.push_back((to, 1, p.clone()));
            }
        }
        while let Some((to, from, p)) = wire.pop_front() {
            let i = usize::from(to - 1);
            if relays[i].receive(&p) == Verdict::Deliver {
                delivered[i].push(p.seq);
                for &next in peers[i] {
                    if relays_to(p.origin, Some(from), next) {
                        wire.push_back((next, to, p.clone()));
                    }
                }
            }
        }
        let expected: Vec<u64> = (1..=50).collect();
        assert_eq!(delivered[1], expected);
        assert_eq!(delivered[2], expected);
        assert!(delivered[0].is_empty());
    }

    /// Offers `frame` until the outbox refuses it; how many it took.
    fn fill(o: &mut Outbox, frame: &Bytes) -> usize {
        let mut queued = 0;
        while o.offer(frame) {
            queued += 1;
            assert!(queued <= PUBSUB_QUEUE_MESSAGES_MAX);
        }
        queued
    }

    #[test]
    fn the_outbox_is_bounded_and_counts_what_it_drops() {
        let mut o = Outbox::default();
        let f = frame_of(msg(1, 1, 1)).unwrap();
        // Closed (peer down or paused): dropped and counted.
        assert!(!o.offer(&f));
        assert_eq!(o.stats().dropped, 1);
        o.set_open(true);
        assert_eq!(fill(&mut o, &f), PUBSUB_QUEUE_MESSAGES_MAX);
        assert_eq!(o.stats().dropped, 2);
        assert!(o.invariants_hold());
        // Big frames hit the byte bound first.
        let mut o = Outbox::default();
        o.set_open(true);
        let big = frame_of(Published {
            payload: Bytes::from(vec![0u8; 1 << 20]),
            ..msg(1, 1, 1)
        })
        .unwrap();
        assert_eq!(fill(&mut o, &big), PUBSUB_QUEUE_BYTES_MAX / big.len());
        assert!(o.invariants_hold());
        // Taking is oldest first, by rounds of about the byte budget.
        let first = o.take(2 << 20);
        assert_eq!(first.len(), 1);
        assert_eq!(o.stats().sent, 1);
        // Closing drops what waits, counted.
        let waiting = o.queued().0 as u64;
        o.set_open(false);
        assert_eq!(o.stats().dropped, 1 + waiting);
        assert_eq!(o.queued(), (0, 0));
        assert!(o.invariants_hold());
    }

    #[test]
    fn taken_frames_decode_in_order() {
        let mut o = Outbox::default();
        o.set_open(true);
        for seq in 1..=100 {
            assert!(o.offer(&frame_of(msg(1, 1, seq)).unwrap()));
        }
        let mut dec = FrameDecoder::with_limit(crate::wire::PUBSUB_FRAME_BYTES_MAX);
        let mut seqs = Vec::new();
        loop {
            let frames = o.take(100);
            if frames.is_empty() {
                break;
            }
            for f in frames {
                dec.push(&f);
            }
            while let Some(Message::Publish(p)) = dec.next_message().unwrap() {
                seqs.push(p.seq);
            }
        }
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
        assert_eq!(o.stats().sent, 100);
    }

    #[test]
    fn a_message_too_large_to_relay_has_no_frame() {
        let m = Published {
            payload: Bytes::from(vec![0u8; PUBSUB_MESSAGE_BYTES_MAX + 1]),
            ..msg(1, 1, 1)
        };
        assert!(frame_of(m).is_err());
    }
}
