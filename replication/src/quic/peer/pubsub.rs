//! Pub/sub across sites over QUIC: each connection to a peer that speaks
//! pub/sub (`PUBSUB_PROTOCOL_VERSION`) carries, besides the op stream, one
//! unidirectional stream each way of `Publish` frames. The numbering,
//! de-duplication and queue bounds are `crate::pubsub` (sans-IO); this file
//! moves the frames.
//!
//! The streams have the op stream's priority, so quinn sends them round
//! robin: a burst of messages never holds acks back by more than a packet,
//! and an op backlog never holds messages back. Messages wait only in the
//! peer's bounded outbox; what does not fit, or arrives while the peer is
//! down or paused, is dropped and counted (`PubSubStats`).
//!
//! Order: numbering, local delivery and queueing to every peer happen under
//! one lock (the relay's), so every site delivers a publishing site's
//! messages in the same order. Lock order: relay, peer map, a peer's pub/sub
//! state; none of them is held across an await.

use super::{note_error, Peer, Shared, CLOSE_SESSION, READ_CHUNK_BYTES_MAX, WRITE_ROUND_BYTES_MAX};
use crate::pubsub::{frame_of, relays_to, Outbox, PubSubStats, Relay, Verdict};
use crate::wire::{FrameDecoder, Message, Published, PUBSUB_FRAME_BYTES_MAX};
use bytes::Bytes;
use chorus_engine::id::SiteId;
use parking_lot::{Mutex, RwLock};
use quinn::Connection;
use std::sync::Arc;
use tokio::sync::Notify;

/// Where a site's subscribers get messages relayed from other sites.
pub type PubSubSink = Arc<dyn Fn(&Published) + Send + Sync>;

/// The site's relay and its local delivery (in `Shared`).
pub(crate) struct PubSubHub {
    /// Held while a message is numbered (or checked), delivered here and
    /// queued to the peers (`Replication::publish`, `receive_published`).
    pub(crate) relay: Mutex<Relay>,
    sink: RwLock<Option<PubSubSink>>,
}

impl PubSubHub {
    pub(crate) fn new(site: SiteId, incarnation: u32) -> PubSubHub {
        PubSubHub {
            relay: Mutex::new(Relay::new(site, incarnation)),
            sink: RwLock::new(None),
        }
    }

    pub(crate) fn set_sink(&self, sink: PubSubSink) {
        *self.sink.write() = Some(sink);
    }
}

struct PeerPubSubState {
    outbox: Outbox,
    /// Our stream to the peer is open.
    stream_open: bool,
    /// An operator paused the peer (`PEER PAUSE`).
    paused: bool,
}

impl PeerPubSubState {
    fn refresh(&mut self) {
        self.outbox.set_open(self.stream_open && !self.paused);
    }
}

/// One peer's pub/sub queue and counters (in `Peer`; lives as long as it).
pub(crate) struct PeerPubSub {
    state: Mutex<PeerPubSubState>,
    /// Frames were queued: the writer looks again.
    wake: Notify,
}

impl PeerPubSub {
    pub(crate) fn new() -> PeerPubSub {
        PeerPubSub {
            state: Mutex::new(PeerPubSubState {
                outbox: Outbox::default(),
                stream_open: false,
                paused: false,
            }),
            wake: Notify::new(),
        }
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        let mut s = self.state.lock();
        s.paused = paused;
        s.refresh();
    }

    /// The stream to the peer opened or closed (closing drops the queue).
    pub(crate) fn set_stream_open(&self, open: bool) {
        let mut s = self.state.lock();
        s.stream_open = open;
        s.refresh();
    }

    pub(crate) fn stats(&self) -> PubSubStats {
        self.state.lock().outbox.stats()
    }

    fn offer(&self, frame: &Result<Bytes, crate::wire::WireError>) {
        let mut s = self.state.lock();
        match frame {
            Ok(f) => {
                if s.outbox.offer(f) {
                    drop(s);
                    self.wake.notify_one();
                }
            }
            Err(_) => s.outbox.note_dropped(),
        }
    }
}

impl Shared {
    /// A message from peer `from`'s stream: delivered here and relayed on,
    /// unless this site had it already.
    fn receive_published(&self, from: &Peer, p: Published) {
        let mut relay = self.pubsub.relay.lock();
        let verdict = relay.receive(&p);
        from.pubsub.state.lock().outbox.note_received(verdict);
        if verdict == Verdict::Deliver {
            if let Some(sink) = self.pubsub.sink.read().as_ref() {
                sink(&p);
            }
            self.fan_out(Some(from.site), p);
        }
        drop(relay);
    }

    /// Queues `p` (encoded once) to every peer it goes to (under the relay lock).
    pub(crate) fn fan_out(&self, from: Option<SiteId>, p: Published) {
        // Encoded only when some peer takes it (a leaf site relays nothing).
        let mut frame = None;
        for peer in self.peers.lock().values() {
            if relays_to(p.origin, from, peer.site) {
                peer.pubsub
                    .offer(frame.get_or_insert_with(|| frame_of(p.clone())));
            }
        }
    }
}

/// Writes the peer's queued messages on a stream of their own until the
/// connection ends (the caller aborts it then and closes the queue).
pub(super) async fn pubsub_writer(peer: Arc<Peer>, connection: Connection) {
    let mut send = match connection.open_uni().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(peer = peer.site, error = %e, "pub/sub stream not opened");
            return;
        }
    };
    peer.pubsub.set_stream_open(true);
    loop {
        let wake = peer.pubsub.wake.notified();
        let frames = peer.pubsub.state.lock().outbox.take(WRITE_ROUND_BYTES_MAX);
        if frames.is_empty() {
            wake.await;
            continue;
        }
        // One contiguous write: thousands of small chunks cost quinn far
        // more per message than the copy.
        let mut round = Vec::with_capacity(frames.iter().map(Bytes::len).sum());
        for f in &frames {
            round.extend_from_slice(f);
        }
        if let Err(e) = send.write_all(&round).await {
            tracing::debug!(peer = peer.site, error = %e, "pub/sub stream write failed");
            break;
        }
    }
    peer.pubsub.set_stream_open(false);
}

/// Reads the peer's pub/sub stream. Anything but a well-formed `Publish`
/// closes the connection (a protocol violation; the session reconnects and
/// resumes from the acks, so no op is lost).
pub(super) async fn pubsub_reader(
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    connection: Connection,
    gen: u64,
) {
    let Ok(mut recv) = connection.accept_uni().await else {
        return;
    };
    let mut decoder = FrameDecoder::with_limit(PUBSUB_FRAME_BYTES_MAX);
    loop {
        let chunk = match recv.read_chunk(READ_CHUNK_BYTES_MAX, true).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) | Err(_) => return,
        };
        decoder.push(&chunk.bytes);
        loop {
            let why = match decoder.next_message() {
                Ok(Some(Message::Publish(p))) => {
                    shared.receive_published(&peer, p);
                    continue;
                }
                Ok(None) => break,
                Ok(Some(other)) => format!("{} on the pub/sub stream", other.name()),
                Err(e) => format!("bad frame on the pub/sub stream: {e}"),
            };
            tracing::warn!(site = shared.site_id, peer = peer.site, %why, "closing the connection");
            note_error(&peer, gen, why.clone());
            connection.close(CLOSE_SESSION, why.as_bytes());
            return;
        }
    }
}
