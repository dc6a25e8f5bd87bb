//! An in-memory network for session tests: real engines on `MemoryStorage`,
//! real `PeerSession`s, and links that move `poll_transmit` bytes into the
//! other side's `handle_bytes` on virtual time (1 ms per step).

#![allow(dead_code)]

use bytes::Bytes;
use chorus_engine::id::SiteId;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::{Engine, EngineConfig, Reply};
use chorus_replication::{PeerSession, PeerState, SessionConfig, SessionEvent};
use std::collections::VecDeque;

pub const CLUSTER: u64 = 0xC0FFEE;

pub struct Site {
    pub engine: Engine,
}

/// One connection between two sites; side 0 is `a`, side 1 is `b`.
pub struct Link {
    pub a: usize,
    pub b: usize,
    pub sessions: [PeerSession; 2],
    pub up: bool,
    /// Frames sent by each side (when `record` is on).
    pub sent: [Vec<Vec<u8>>; 2],
    pub record: bool,
    /// While set, frames from that side wait in `held` instead of arriving.
    pub hold: [bool; 2],
    pub held: [VecDeque<Vec<u8>>; 2],
    pub events: [Vec<SessionEvent>; 2],
}

impl Link {
    pub fn site(&self, side: usize) -> usize {
        if side == 0 {
            self.a
        } else {
            self.b
        }
    }
}

pub struct Net {
    pub now: u64,
    pub sites: Vec<Site>,
    pub links: Vec<Link>,
    /// Sync every engine after every step (`appendfsync always`-like).
    pub auto_sync: bool,
}

pub fn engine_config(site_id: SiteId) -> EngineConfig {
    EngineConfig::new(site_id)
}

pub fn open_engine(config: EngineConfig) -> Engine {
    Engine::open(Box::new(MemoryStorage::new()), config).expect("open engine on memory storage")
}

pub fn session_config() -> SessionConfig {
    SessionConfig::new(CLUSTER)
}

impl Net {
    pub fn new(site_ids: &[SiteId]) -> Net {
        Net::with_engines(site_ids.iter().map(|&s| engine_config(s)).collect())
    }

    pub fn with_engines(configs: Vec<EngineConfig>) -> Net {
        Net {
            now: 1_000,
            sites: configs
                .into_iter()
                .map(|c| Site {
                    engine: open_engine(c),
                })
                .collect(),
            links: Vec::new(),
            auto_sync: true,
        }
    }

    /// Links sites `a` and `b` (indexes) with the given session configs.
    pub fn link_with(&mut self, a: usize, b: usize, ca: SessionConfig, cb: SessionConfig) -> usize {
        self.links.push(Link {
            a,
            b,
            sessions: [PeerSession::new(ca).unwrap(), PeerSession::new(cb).unwrap()],
            up: false,
            sent: [Vec::new(), Vec::new()],
            record: false,
            hold: [false, false],
            held: [VecDeque::new(), VecDeque::new()],
            events: [Vec::new(), Vec::new()],
        });
        self.links.len() - 1
    }

    pub fn link(&mut self, a: usize, b: usize) -> usize {
        self.link_with(a, b, session_config(), session_config())
    }

    pub fn connect(&mut self, l: usize) {
        let now = self.now;
        let link = &mut self.links[l];
        link.up = true;
        link.held = [VecDeque::new(), VecDeque::new()];
        for s in &mut link.sessions {
            s.handle_connected(now);
        }
    }

    pub fn disconnect(&mut self, l: usize) {
        let now = self.now;
        let link = &mut self.links[l];
        link.up = false;
        link.held = [VecDeque::new(), VecDeque::new()];
        for s in &mut link.sessions {
            s.handle_disconnected(now);
        }
    }

    pub fn session(&self, l: usize, side: usize) -> &PeerSession {
        &self.links[l].sessions[side]
    }

    pub fn session_mut(&mut self, l: usize, side: usize) -> &mut PeerSession {
        &mut self.links[l].sessions[side]
    }

    pub fn engine(&self, site: usize) -> &Engine {
        &self.sites[site].engine
    }

    pub fn engine_mut(&mut self, site: usize) -> &mut Engine {
        &mut self.sites[site].engine
    }

    /// Moves every frame that is ready, fires due timers; then advances 1 ms.
    /// A side whose session went down has its connection closed (both sides).
    pub fn step(&mut self) {
        let now = self.now;
        for l in 0..self.links.len() {
            if !self.links[l].up {
                continue;
            }
            // Until quiet: a delivery can make the other side answer.
            for _round in 0..1000 {
                let mut moved = false;
                for side in 0..2 {
                    moved |= self.pump_side(l, side, now);
                }
                if !moved {
                    break;
                }
            }
            let link = &mut self.links[l];
            for side in 0..2 {
                while let Some(e) = link.sessions[side].poll_event() {
                    link.events[side].push(e);
                }
            }
            let down = link.sessions.iter().any(|s| s.state() == PeerState::Down);
            if down {
                self.disconnect(l);
            }
        }
        if self.auto_sync {
            for s in &mut self.sites {
                s.engine.sync().expect("sync");
            }
        }
        self.now += 1;
    }

    fn pump_side(&mut self, l: usize, side: usize, now: u64) -> bool {
        let (from, to) = {
            let link = &self.links[l];
            (link.site(side), link.site(1 - side))
        };
        let mut moved = false;
        if self.links[l].sessions[side]
            .poll_timeout()
            .is_some_and(|t| t <= now)
        {
            let engine = &mut self.sites[from].engine;
            self.links[l].sessions[side].handle_timeout(now, engine);
        }
        while let Some(frame) = {
            let engine = &mut self.sites[from].engine;
            self.links[l].sessions[side].poll_transmit(now, engine)
        } {
            moved = true;
            let link = &mut self.links[l];
            if link.record {
                link.sent[side].push(frame.clone());
            }
            link.held[side].push_back(frame);
        }
        if !self.links[l].hold[side] {
            while let Some(frame) = self.links[l].held[side].pop_front() {
                moved = true;
                let engine = &mut self.sites[to].engine;
                self.links[l].sessions[1 - side].handle_bytes(now, &frame, engine);
            }
        }
        moved
    }

    pub fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    /// Steps until `pred` holds; false if `max_ms` passed first.
    pub fn run_until(&mut self, max_ms: u64, mut pred: impl FnMut(&Net) -> bool) -> bool {
        for _ in 0..max_ms {
            if pred(self) {
                return true;
            }
            self.step();
        }
        pred(self)
    }

    /// All sites hold the same ops and the same state.
    pub fn converged(&self) -> bool {
        let first = &self.sites[0].engine;
        self.sites
            .iter()
            .all(|s| s.engine.vv() == first.vv() && s.engine.digest_hex() == first.digest_hex())
    }

    pub fn events(&self, l: usize, side: usize) -> &[SessionEvent] {
        &self.links[l].events[side]
    }

    /// A client write `SET key value` at `site`.
    pub fn write(&mut self, site: usize, key: &str, value: &str) {
        let now = self.now;
        write(&mut self.sites[site].engine, key, value, now);
    }
}

/// `SET key value` at this engine.
pub fn write(engine: &mut Engine, key: &str, value: &str, now_ms: u64) {
    let args = [
        Bytes::from("SET"),
        Bytes::from(key.to_owned()),
        Bytes::from(value.to_owned()),
    ];
    assert_eq!(engine.execute(0, &args, now_ms), Reply::Ok);
}

/// Every frame decoded (panics on a bad frame: only for frames we produced).
pub fn decode_frames(frames: &[Vec<u8>]) -> Vec<chorus_replication::Message> {
    let mut dec = chorus_replication::FrameDecoder::new();
    let mut out = Vec::new();
    for f in frames {
        dec.push(f);
        while let Some(m) = dec.next_message().expect("our own frames decode") {
            out.push(m);
        }
    }
    out
}
