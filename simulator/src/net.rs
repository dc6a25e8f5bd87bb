//! The simulated network between sites, modelled as what a peer session sees
//! from QUIC: one connection per linked pair of sites, carrying one ordered,
//! reliable byte stream in each direction.
//!
//! * A frame written to a stream arrives whole and in order, after the link's
//!   latency plus jitter, sometimes a long tail; a "lost" packet is a stall of
//!   the whole stream until QUIC retransmits it (head-of-line blocking), never
//!   a hole in the bytes.
//! * A blocked direction (partition, one-way or not) delivers nothing; the
//!   stream stalls until the sessions' idle timers close the connection.
//! * A clogged direction holds its frames until the clog ends, then releases
//!   them in order.
//! * A reset drops the connection and everything in flight on it; both sessions
//!   are told, and the pair redials with backoff. A new connection never sees
//!   bytes of an old one (the `replay` fault repeats a frame of the same
//!   connection).
//! * Each direction's queue is bounded in bytes: the sender stops polling its
//!   session while the queue is full (backpressure).

use chorus_replication::Backoff;
use std::collections::VecDeque;

/// Old data frames kept per direction for the `replay` fault.
pub const REPLAY_FRAMES_MAX: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    Down,
    /// Handshake packets in flight; `Established` fires after one round trip.
    Dialing,
    Up,
}

#[derive(Debug, Default)]
pub struct Stream {
    /// `(deliver_at_ms, frame)`, in order.
    pub queue: VecDeque<(u64, Vec<u8>)>,
    pub bytes: usize,
    /// Delivery time of the last frame queued (ordering).
    pub last_at_ms: u64,
    /// A `Deliver` event is pending for this stream.
    pub scheduled: bool,
    /// Recent op-batch frames, for the `replay` fault.
    pub history: VecDeque<Vec<u8>>,
}

impl Stream {
    pub fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
        self.scheduled = false;
        self.history.clear();
    }
}

/// The connection between sites `a < b`; `streams[0]` is a→b, `streams[1]` b→a.
#[derive(Debug)]
pub struct Conn {
    pub a: usize,
    pub b: usize,
    pub state: ConnState,
    /// Bumped at every reset: events of an older connection are ignored.
    pub epoch: u64,
    pub backoff: Backoff,
    pub streams: [Stream; 2],
    pub dial_pending: bool,
}

impl Conn {
    pub fn new(a: usize, b: usize) -> Conn {
        Conn {
            a,
            b,
            state: ConnState::Down,
            epoch: 0,
            backoff: Backoff::new(50, 2_000),
            streams: [Stream::default(), Stream::default()],
            dial_pending: false,
        }
    }

    /// Index of the stream from `from` to the other side.
    pub fn dir(&self, from: usize) -> usize {
        usize::from(from != self.a)
    }

    pub fn other(&self, site: usize) -> usize {
        if site == self.a {
            self.b
        } else {
            self.a
        }
    }
}

/// Per directed link fault state.
#[derive(Clone, Debug, Default)]
pub struct LinkFaults {
    /// Number of active partitions blocking this direction.
    pub blocked: u32,
    pub clogged_until_ms: u64,
}

/// The message kind of an encoded frame, read from its tag byte: the frame is
/// `len: u32 LE | wire version | postcard enum tag | ...` and the tags follow
/// the order of `chorus_replication::wire::Message`'s variants.
pub fn frame_tag(frame: &[u8]) -> Option<u8> {
    frame.get(5).copied()
}

pub const TAG_OP_BATCH: u8 = 2;
pub const TAG_SNAPSHOT_BEGIN: u8 = 6;
pub const TAG_SNAPSHOT_END: u8 = 8;
