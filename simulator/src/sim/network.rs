//! The replication driver and the simulated network: sessions polled for frames, streams with latency, stalls and resets, reads handed to the sessions in slices as the QUIC driver does.

use super::*;

impl Sim {
    /// Polls every session of site `s` for frames while its stream has room,
    /// then handles the sessions' events and timers.
    pub(super) fn pump_site(&mut self, s: usize) {
        let peers: Vec<usize> = self.sites[s].sessions.keys().copied().collect();
        for peer in peers {
            self.pump(s, peer);
        }
    }

    pub(super) fn pump(&mut self, s: usize, peer: usize) {
        if !self.sites[s].up() || self.is_paused(s) || self.violation.is_some() {
            return;
        }
        let now = self.sched.now_ms();
        let Some(&ci) = self.conn_of.get(&(s, peer)) else {
            return;
        };
        if self.conns[ci].state == ConnState::Up {
            let dir = self.conns[ci].dir(s);
            let qmax = self.p.net.queue_bytes_max;
            loop {
                if self.conns[ci].streams[dir].bytes >= qmax {
                    break;
                }
                let site = &mut self.sites[s];
                let (Some(engine), Some(sess)) =
                    (site.engine.as_mut(), site.sessions.get_mut(&peer))
                else {
                    break;
                };
                let Some(frame) = sess.poll_transmit(now, engine) else {
                    break;
                };
                self.enqueue(ci, dir, frame);
            }
        }
        self.session_events(s, peer);
        self.arm_timer(s, peer);
    }

    pub(super) fn arm_timer(&mut self, s: usize, peer: usize) {
        let Some(at) = self.sites[s]
            .sessions
            .get(&peer)
            .and_then(|x| x.poll_timeout())
        else {
            return;
        };
        let cur = self.sites[s].timer_at.get(&peer).copied();
        if cur.is_none_or(|c| at < c || c < self.sched.now_ms()) {
            self.sites[s].timer_at.insert(peer, at);
            let gen = self.sites[s].gen;
            self.sched.at(at, Ev::SessionTimer { site: s, peer, gen });
        }
    }

    pub(super) fn session_events(&mut self, s: usize, peer: usize) {
        let now = self.sched.now_ms();
        while let Some(ev) = self.sites[s]
            .sessions
            .get_mut(&peer)
            .and_then(|x| x.poll_event())
        {
            match ev {
                SessionEvent::Closed { error } => {
                    let e = error.to_string();
                    self.trace
                        .event(now, "session-closed", &[s as u64, peer as u64], || {
                            format!("site {} closed its session to {}: {e}", s + 1, peer + 1)
                        });
                    if let Some(&ci) = self.conn_of.get(&(s, peer)) {
                        self.close_conn(ci, "session closed");
                    }
                }
                SessionEvent::Refused { reason, by_peer } => {
                    let v = Violation::new(
                        "sim",
                        format!("site {} refused peer {} ({reason}, by_peer={by_peer}): misconfigured simulation", s + 1, peer + 1),
                    );
                    self.fail(v);
                }
                SessionEvent::FullSyncFinished {
                    direction: SyncDirection::Receiving,
                    rows,
                } => {
                    self.stats.full_syncs += 1;
                    self.trace
                        .event(now, "full-sync", &[s as u64, peer as u64, rows], || {
                            format!(
                                "site {} merged a snapshot of {rows} rows from {}",
                                s + 1,
                                peer + 1
                            )
                        });
                }
                SessionEvent::DigestMatched { .. } => self.stats.anti_entropy_checks += 1,
                SessionEvent::DigestMismatch { .. } if self.corrupting => {
                    self.stats.anti_entropy_checks += 1;
                }
                SessionEvent::Repaired { .. } if self.corrupting => {
                    self.stats.anti_entropy_repairs += 1;
                    self.settle_corruptions(now);
                }
                SessionEvent::DigestMismatch { db, buckets } => {
                    self.stats.anti_entropy_checks += 1;
                    let detail = match (&self.sites[s].engine, &self.sites[peer].engine) {
                        (Some(a), Some(b)) => {
                            format!(
                                " (vvs {} and {}){}",
                                a.vv(),
                                b.vv(),
                                crate::check::first_row_difference(a, b)
                            )
                        }
                        _ => String::new(),
                    };
                    let v = Violation::new(
                        "convergence",
                        format!("sites {} and {}: leaves {buckets:?} of db {db} differ where both hold the same ops{detail}", s + 1, peer + 1),
                    );
                    self.fail(v);
                }
                SessionEvent::Repaired { db, buckets, rows } => {
                    self.stats.anti_entropy_repairs += 1;
                    let v = Violation::new(
                        "anti-entropy",
                        format!("site {} repaired {rows} rows of buckets {buckets:?} of db {db} from site {}: a correct system never repairs", s + 1, peer + 1),
                    );
                    self.fail(v);
                }
                _ => {}
            }
        }
    }

    pub(super) fn session_timer(&mut self, t: u64, s: usize, peer: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.sites[s].timer_at.get(&peer) == Some(&t) {
            self.sites[s].timer_at.remove(&peer);
        }
        if self.defer_if_paused(s, || Ev::SessionTimer { site: s, peer, gen }) {
            return;
        }
        let site = &mut self.sites[s];
        let (Some(engine), Some(sess)) = (site.engine.as_mut(), site.sessions.get_mut(&peer))
        else {
            return;
        };
        if sess.poll_timeout().is_some_and(|at| at <= t) {
            sess.handle_timeout(t, engine);
            self.trace
                .event(t, "session-timeout", &[s as u64, peer as u64], String::new);
        }
        self.pump(s, peer);
    }

    pub(super) fn enqueue(&mut self, ci: usize, dir: usize, frame: Vec<u8>) {
        let now = self.sched.now_ms();
        let n = &self.p.net;
        let mut lat = n.latency_ms + self.net_rng.range(0, n.jitter_ms);
        if self.net_rng.chance(n.tail_p) {
            lat += n.tail_ms;
        }
        if self.net_rng.chance(n.stall_p) {
            // A lost packet: the stream waits for the retransmission.
            lat += n.stall_ms;
        }
        let c = &mut self.conns[ci];
        let st = &mut c.streams[dir];
        let at = (now + lat).max(st.last_at_ms);
        st.last_at_ms = at;
        st.bytes += frame.len();
        if frame_tag(&frame) == Some(TAG_OP_BATCH) {
            if st.history.len() >= REPLAY_FRAMES_MAX {
                st.history.pop_front();
            }
            st.history.push_back(frame.clone());
        }
        st.queue.push_back((at, frame));
        if !st.scheduled {
            st.scheduled = true;
            let epoch = c.epoch;
            self.sched.at(
                at,
                Ev::Deliver {
                    conn: ci,
                    dir,
                    epoch,
                },
            );
        }
    }

    pub(super) fn schedule_dial(&mut self, ci: usize, delay: u64) {
        if self.conns[ci].dial_pending {
            return;
        }
        self.conns[ci].dial_pending = true;
        self.sched.after(delay, Ev::Dial { conn: ci });
    }

    pub(super) fn link(&self, from: usize, to: usize) -> &LinkFaults {
        &self.links[from * self.sites.len() + to]
    }

    pub(super) fn link_mut(&mut self, from: usize, to: usize) -> &mut LinkFaults {
        let n = self.sites.len();
        &mut self.links[from * n + to]
    }

    pub(super) fn reachable(&self, a: usize, b: usize) -> bool {
        self.sites[a].up()
            && self.sites[b].up()
            && !self.is_paused(a)
            && !self.is_paused(b)
            && self.link(a, b).blocked == 0
            && self.link(b, a).blocked == 0
    }

    pub(super) fn redial(&mut self, ci: usize) {
        let jitter = self.net_rng.next_u64();
        let d = self.conns[ci].backoff.next_delay_ms(jitter);
        self.schedule_dial(ci, d);
    }

    pub(super) fn dial(&mut self, t: u64, ci: usize) {
        self.conns[ci].dial_pending = false;
        if self.conns[ci].state != ConnState::Down {
            return;
        }
        let (a, b) = (self.conns[ci].a, self.conns[ci].b);
        if !self.sites[a].up() && !self.sites[b].up() {
            return; // redialed when a site restarts
        }
        if self.sites[a].removed || self.sites[b].removed {
            return; // a link to a removed site is gone for good
        }
        if let Some((j, at)) = self.p.late_join {
            if (a == j || b == j) && t < at {
                // Not linked yet: the site joins the cluster at `at`.
                self.conns[ci].dial_pending = true;
                self.sched.at(at, Ev::Dial { conn: ci });
                return;
            }
        }
        if !self.reachable(a, b) {
            self.redial(ci);
            return;
        }
        self.conns[ci].state = ConnState::Dialing;
        let rtt = 2 * self.p.net.latency_ms + 1;
        let epoch = self.conns[ci].epoch;
        self.trace.event(t, "dial", &[ci as u64, epoch], || {
            format!("{}<->{} dialing", a + 1, b + 1)
        });
        self.sched.after(rtt, Ev::Established { conn: ci, epoch });
    }

    pub(super) fn established(&mut self, t: u64, ci: usize, epoch: u64) {
        if self.conns[ci].epoch != epoch || self.conns[ci].state != ConnState::Dialing {
            return;
        }
        let (a, b) = (self.conns[ci].a, self.conns[ci].b);
        if !self.reachable(a, b) {
            self.conns[ci].state = ConnState::Down;
            self.conns[ci].epoch += 1;
            self.redial(ci);
            return;
        }
        let c = &mut self.conns[ci];
        c.state = ConnState::Up;
        c.backoff.reset();
        for st in c.streams.iter_mut() {
            st.clear();
            st.last_at_ms = t;
        }
        self.stats.reconnects += 1;
        for (x, y) in [(a, b), (b, a)] {
            if let Some(sess) = self.sites[x].sessions.get_mut(&y) {
                sess.handle_connected(t);
            }
        }
        self.trace.event(t, "connected", &[ci as u64, epoch], || {
            format!("{}<->{} up", a + 1, b + 1)
        });
        self.pump(a, b);
        self.pump(b, a);
    }

    /// Drops the connection and what is in flight on it; both sessions are told.
    pub(super) fn close_conn(&mut self, ci: usize, why: &str) {
        let t = self.sched.now_ms();
        let c = &mut self.conns[ci];
        if c.state == ConnState::Down {
            return;
        }
        c.state = ConnState::Down;
        c.epoch += 1;
        for st in c.streams.iter_mut() {
            st.clear();
        }
        let (a, b) = (c.a, c.b);
        for (x, y) in [(a, b), (b, a)] {
            if let Some(sess) = self.sites[x].sessions.get_mut(&y) {
                sess.handle_disconnected(t);
            }
            self.sites[x].incoming_snapshot.remove(&y);
        }
        let w = why.to_owned();
        self.trace.event(t, "conn-reset", &[ci as u64], || {
            format!("{}<->{} down: {w}", a + 1, b + 1)
        });
        self.redial(ci);
    }

    pub(super) fn deliver(&mut self, t: u64, ci: usize, dir: usize, epoch: u64) {
        if self.conns[ci].epoch != epoch || self.conns[ci].state != ConnState::Up {
            return;
        }
        let (from, to) = if dir == 0 {
            (self.conns[ci].a, self.conns[ci].b)
        } else {
            (self.conns[ci].b, self.conns[ci].a)
        };
        let st = &mut self.conns[ci].streams[dir];
        st.scheduled = false;
        let Some(&(at, _)) = st.queue.front() else {
            return;
        };
        let reschedule = |sim: &mut Sim, when: u64| {
            let st = &mut sim.conns[ci].streams[dir];
            st.scheduled = true;
            sim.sched.at(
                when,
                Ev::Deliver {
                    conn: ci,
                    dir,
                    epoch,
                },
            );
        };
        if at > t {
            reschedule(self, at);
            return;
        }
        let lf = self.link(from, to).clone();
        if lf.blocked > 0 {
            // Stalled: resumed by `unblock`, or the sessions time out.
            return;
        }
        if lf.clogged_until_ms > t {
            reschedule(self, lf.clogged_until_ms);
            return;
        }
        if let Some(until) = self.sites[to].paused_until.filter(|&u| u > t) {
            reschedule(self, until);
            return;
        }
        if self.sites[to].receive_more.contains(&from) {
            // The driver reads the next chunk once the last one is handled:
            // `receive_slice` resumes the delivery.
            return;
        }
        // Every frame that has arrived, up to a read chunk's worth (the QUIC
        // driver reads up to 64 KiB at a time), is buffered first, then
        // handled a slice at a time. A `SnapshotEnd` is read on its own: its
        // merge brings ops without log records, and the checkers must scan
        // the records logged before it first, and learn of the merge before
        // any record after it.
        let mut read = 0usize;
        while read < READ_CHUNK_BYTES {
            let st = &mut self.conns[ci].streams[dir];
            let end = match st.queue.front() {
                Some((a, _)) if *a > t => break,
                Some((_, f)) => frame_tag(f) == Some(TAG_SNAPSHOT_END),
                None => break,
            };
            if end && read > 0 {
                break;
            }
            let Some((_, frame)) = st.queue.pop_front() else {
                break;
            };
            st.bytes = st.bytes.saturating_sub(frame.len());
            read += frame.len();
            self.push_frame(t, from, to, frame);
            if end {
                break;
            }
        }
        if let Some(&(next_at, _)) = self.conns[ci].streams[dir].queue.front() {
            reschedule(self, next_at.max(t));
        }
        self.receive_slice(t, from, to);
        // The sender may have room again.
        self.pump(from, to);
    }

    /// Buffers one whole frame at the receiving session (in one or two
    /// pieces); [`Sim::receive_slice`] handles it.
    pub(super) fn push_frame(&mut self, t: u64, from: usize, to: usize, frame: Vec<u8>) {
        let tag = frame_tag(&frame);
        if tag == Some(TAG_SNAPSHOT_BEGIN) {
            if let Some(Message::SnapshotBegin { vv, .. }) = decode_frame(&frame) {
                self.sites[to].incoming_snapshot.insert(from, vv);
            }
        }
        let split = if frame.len() > 8 && self.net_rng.chance(0.2) {
            self.net_rng.range(1, frame.len() as u64 - 1) as usize
        } else {
            frame.len()
        };
        let len = frame.len() as u64;
        if tag == Some(TAG_SNAPSHOT_END) {
            self.sites[to].snapshot_end_pushed.insert(from);
        }
        let site = &mut self.sites[to];
        let (Some(engine), Some(sess)) = (site.engine.as_ref(), site.sessions.get_mut(&from))
        else {
            return;
        };
        // Buffered, then handled a slice at a time, as the QUIC driver does.
        let (head, tail) = frame.split_at(split);
        sess.push_bytes(t, head);
        if !tail.is_empty() {
            sess.push_bytes(t, tail);
        }
        let held = engine.vv().total();
        self.trace.event(
            t,
            "recv",
            &[from as u64, to as u64, len, tag.unwrap_or(255) as u64, held],
            || {
                format!(
                    "{}->{} frame tag {tag:?} {len}B, site holds {held} ops",
                    from + 1,
                    to + 1
                )
            },
        );
    }

    pub(super) fn receive_more(&mut self, t: u64, s: usize, peer: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.defer_if_paused(s, || Ev::ReceiveMore { site: s, peer, gen }) {
            return;
        }
        self.sites[s].receive_more.remove(&peer);
        self.receive_slice(t, peer, s);
    }

    /// Handles one slice of what site `to` buffered from `from`; schedules
    /// the next slice if the budget ran out.
    pub(super) fn receive_slice(&mut self, t: u64, from: usize, to: usize) {
        if !self.sites[to].incoming_snapshot.is_empty() {
            // The merge checkpoints inline, which waits for a checkpoint
            // being written: write it first.
            self.write_checkpoint_now(t, to);
        }
        let wall = self.wall(to);
        let site = &mut self.sites[to];
        let (Some(engine), Some(sess)) = (site.engine.as_mut(), site.sessions.get_mut(&from))
        else {
            return;
        };
        // Session timers run on virtual time; the peer's stamps are compared
        // with this site's (skewed) wall clock.
        sess.set_wall_clock(t, wall);
        let vv_before = engine.vv().total();
        let more = sess.handle_received(t, engine, RECEIVE_SLICE_WORK);
        let vv_after = engine.vv().total();
        if vv_after != vv_before {
            self.trace
                .event(t, "applied", &[from as u64, to as u64, vv_after], || {
                    format!(
                        "site {} applied from {}: {vv_before}->{vv_after} ops{}",
                        to + 1,
                        from + 1,
                        if more { ", more to come" } else { "" }
                    )
                });
        }
        if more {
            if self.sites[to].receive_more.insert(from) {
                let gen = self.sites[to].gen;
                self.sched.after(
                    RECEIVE_SLICE_GAP_MS,
                    Ev::ReceiveMore {
                        site: to,
                        peer: from,
                        gen,
                    },
                );
            }
        } else {
            if self.sites[to].snapshot_end_pushed.remove(&from) {
                self.snapshot_end_handled(from, to);
            }
            self.resume_delivery(from, to);
        }
        self.after_touch(to);
        if vv_after != vv_before && self.p.fsync == Fsync::Always {
            self.schedule_group_commit(to);
        }
        // Our acks and forwarded ops go out now.
        self.pump_site(to);
    }

    /// Schedules the delivery of what `from` sent `to`, if frames wait and
    /// none is scheduled (a delivery waits while a read is being handled).
    pub(super) fn resume_delivery(&mut self, from: usize, to: usize) {
        let Some(&ci) = self.conn_of.get(&(from, to)) else {
            return;
        };
        if self.conns[ci].state != ConnState::Up {
            return;
        }
        let dir = self.conns[ci].dir(from);
        let epoch = self.conns[ci].epoch;
        let now = self.sched.now_ms();
        let st = &mut self.conns[ci].streams[dir];
        if st.scheduled {
            return;
        }
        let Some(&(at, _)) = st.queue.front() else {
            return;
        };
        st.scheduled = true;
        self.sched.at(
            at.max(now),
            Ev::Deliver {
                conn: ci,
                dir,
                epoch,
            },
        );
    }

    /// After every byte up to a `SnapshotEnd` was handled: if the snapshot
    /// was merged, the scan must know its ops are held without log records.
    pub(super) fn snapshot_end_handled(&mut self, from: usize, to: usize) {
        let merged = self.sites[to].engine.as_ref().is_some_and(|e| {
            self.sites[to]
                .incoming_snapshot
                .get(&from)
                .is_some_and(|v| e.vv().dominates(v))
        });
        if let Some(vv) = self.sites[to].incoming_snapshot.remove(&from) {
            if merged {
                self.check.note_snapshot_merged(to, &vv);
                self.full_sync_checks += 1;
                if self.corruptions.iter().any(|c| c.0 == from) {
                    // A join at the sender's vector takes its damage
                    // along: the receiver waits for anti-entropy too.
                    let at = self.sched.now_ms();
                    self.corruptions.push((to, at));
                }
                let check = (self.paranoid || self.full_sync_checks <= FULL_SYNC_REPLAY_CHECKS_MAX)
                    && !self.corruptions.iter().any(|c| c.0 == to);
                if let Some(e) = self.sites[to].engine.as_ref().filter(|_| check) {
                    if let Err(v) = self.check.state_matches_replay(to, e, "a full sync") {
                        self.fail(v);
                    }
                }
                let wall = self.wall(to);
                let disk_fault = self.sites[to].disk_fault.is_some();
                if let Some(e) = self.sites[to].engine.as_mut() {
                    // On a failed disk the merge stays in memory only (not
                    // durable, never acknowledged as such) until the restart.
                    if let Err(err) = e.checkpoint(wall) {
                        if disk_fault {
                            return;
                        }
                        let v = Violation::new(
                            "storage",
                            format!("site {}: checkpoint after full sync failed: {err}", to + 1),
                        );
                        self.fail(v);
                    }
                }
            }
        }
    }
}

/// Decodes one whole frame (bookkeeping and canaries only).
fn decode_frame(frame: &[u8]) -> Option<Message> {
    let mut d = FrameDecoder::new();
    d.push(frame);
    d.next_message().ok().flatten()
}
