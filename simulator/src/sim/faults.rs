//! Faults: crashes, wipes, restores, pauses, partitions, replays and clock jumps, and the restarts that follow.

use super::*;

impl Sim {
    pub(super) fn fault(&mut self, t: u64) {
        if !self.safety {
            return;
        }
        let kind = FaultKind::ALL[self.fault_rng.weighted(&self.p.fault_weights)];
        let n = self.sites.len();
        let site = self.fault_rng.below(n as u64) as usize;
        let mut done = true;
        match kind {
            FaultKind::Crash | FaultKind::Wipe => {
                if self.sites[site].up() {
                    let wipe = kind == FaultKind::Wipe;
                    if !wipe && self.fault_rng.chance(0.3) {
                        // A backup of the disk as it is now (durable bytes
                        // only: taken at any point, not after a clean stop).
                        let mut image = self.sites[site].disk.lock().durable_image();
                        if self.fault_rng.chance(0.5) {
                            // As if taken after a clean stop: nothing on the
                            // disk tells the restored site it is a copy.
                            let _ = image.meta_put("clean_shutdown", b"1");
                        }
                        self.sites[site].backup = Some(image);
                    }
                    self.crash(t, site, wipe);
                    let down = self.fault_rng.range(50, 4_000);
                    self.sched.after(down, Ev::Restart { site, wipe });
                } else {
                    done = false;
                }
            }
            FaultKind::Pause => {
                if self.sites[site].up() && !self.is_paused(site) {
                    let d = self.fault_rng.range(50, 2 * self.p.knobs.idle_timeout_ms);
                    self.sites[site].paused_until = Some(t + d);
                    self.trace.event(t, "pause", &[site as u64, d], || {
                        format!("site {} paused {d}ms", site + 1)
                    });
                    self.sched.after(d, Ev::Resume { site });
                } else {
                    done = false;
                }
            }
            FaultKind::Partition => {
                let mut links = Vec::new();
                let shape = self.fault_rng.below(3);
                match shape {
                    0 => {
                        for o in 0..n {
                            if o != site {
                                links.push((site, o));
                                links.push((o, site));
                            }
                        }
                    }
                    1 => {
                        let mask = loop {
                            let m = self.fault_rng.below((1u64 << n) - 2) + 1;
                            if m != 0 && m != (1 << n) - 1 {
                                break m;
                            }
                        };
                        for a in 0..n {
                            for b in 0..n {
                                if (mask >> a) & 1 == 1 && (mask >> b) & 1 == 0 {
                                    links.push((a, b));
                                    links.push((b, a));
                                }
                            }
                        }
                    }
                    _ => {
                        let other = (site + 1 + self.fault_rng.below(n as u64 - 1) as usize) % n;
                        links.push((site, other));
                    }
                }
                for &(a, b) in &links {
                    self.link_mut(a, b).blocked += 1;
                }
                let d = self.fault_rng.range(200, 8_000);
                let desc = format!("{links:?}");
                self.trace
                    .event(t, "partition", &[shape, d, links.len() as u64], || {
                        format!("blocked {desc} for {d}ms")
                    });
                self.sched.after(d, Ev::Unblock { links });
            }
            FaultKind::Clog => {
                let other = (site + 1 + self.fault_rng.below(n as u64 - 1) as usize) % n;
                let d = self.fault_rng.range(50, 3_000);
                let l = self.link_mut(site, other);
                l.clogged_until_ms = l.clogged_until_ms.max(t + d);
                self.trace
                    .event(t, "clog", &[site as u64, other as u64, d], || {
                        format!("{}->{} clogged {d}ms", site + 1, other + 1)
                    });
            }
            FaultKind::Reset => {
                let up: Vec<usize> = (0..self.conns.len())
                    .filter(|&c| self.conns[c].state == ConnState::Up)
                    .collect();
                match self.fault_rng.pick(&up).copied() {
                    Some(ci) => self.close_conn(ci, "injected reset"),
                    None => done = false,
                }
            }
            FaultKind::Replay => done = self.replay(t),
            FaultKind::Disk => done = self.disk_fault(t, site),
            FaultKind::Remove => done = self.remove_site(t, site),
            FaultKind::Rot => done = self.rot(t, site),
            FaultKind::ClockJump => {
                let mag = self.fault_rng.range(10, 30_000) as i64;
                let back = self.fault_rng.chance(0.5);
                let d = if back { -mag } else { mag };
                self.sites[site].clock.jumps_ms += d;
                self.trace
                    .event(t, "clock-jump", &[site as u64, d as u64], || {
                        format!("site {} clock jumps {d}ms", site + 1)
                    });
            }
        }
        if done {
            self.faults += 1;
        }
        let d = self.fault_rng.exp_ms(self.p.fault_interval_ms as f64);
        self.sched.after(d, Ev::Fault);
    }

    /// Injects an old op batch again into a live stream (a replayed message).
    pub(super) fn replay(&mut self, t: u64) -> bool {
        let mut candidates = Vec::new();
        for (ci, c) in self.conns.iter().enumerate() {
            if c.state != ConnState::Up {
                continue;
            }
            for dir in 0..2 {
                if !c.streams[dir].history.is_empty() {
                    candidates.push((ci, dir));
                }
            }
        }
        let Some(&(ci, dir)) = self.fault_rng.pick(&candidates) else {
            return false;
        };
        let h = &self.conns[ci].streams[dir].history;
        let i = self.fault_rng.below(h.len() as u64) as usize;
        let Some(frame) = h.get(i).cloned() else {
            return false;
        };
        let len = frame.len() as u64;
        self.trace
            .event(t, "replay", &[ci as u64, dir as u64, len], || {
                format!("conn {ci} dir {dir}: replaying an old op batch of {len}B")
            });
        self.enqueue(ci, dir, frame);
        true
    }

    /// Site `s` is lost for good and removed from the cluster (profile
    /// `remove`): it crashes and never restarts, and every peer drops it,
    /// as `PEER REMOVE` does. What only it held is gone with it, so its
    /// durable claims are dropped as a wipe's are. At most one removal per
    /// run, and never one that would leave the others split (the hub of a
    /// star, the middle of a chain). Keys whose winning deadline it owned
    /// must still be deleted by the others (the `expiry` checker).
    fn remove_site(&mut self, t: u64, s: usize) -> bool {
        if !self.sites[s].up() || self.sites.iter().any(|x| x.removed) {
            return false;
        }
        let rest: Vec<usize> = (0..self.sites.len()).filter(|&x| x != s).collect();
        if rest.len() < 2 || !self.connected_without(s) {
            return false;
        }
        self.crash(t, s, false);
        self.check.site_wiped(s);
        self.sites[s].removed = true;
        // MEMBER REMOVE at one of the others: the removal replicates, and
        // the site leaves the stability frontier once every member has
        // applied it.
        if let Some(&x) = rest.iter().find(|&&x| self.sites[x].engine.is_some()) {
            let wall = self.wall(x);
            if let Some(e) = self.sites[x].engine.as_mut() {
                if let Err(err) = e.member_remove((s + 1) as u16, wall) {
                    panic!("MEMBER REMOVE of site {} failed: {err}", s + 1);
                }
            }
            // The removal is an op of site `x`: registered as issued.
            self.after_touch(x);
        }
        self.stats.removals += 1;
        for x in rest {
            self.sites[x].sessions.remove(&s);
            self.sites[x].timer_at.remove(&s);
            self.sites[x].incoming_snapshot.remove(&s);
            self.sites[x].receive_more.remove(&s);
            self.conn_of.remove(&(x, s));
            self.conn_of.remove(&(s, x));
        }
        self.trace.event(t, "remove", &[s as u64], || {
            format!("site {} lost for good and removed from the cluster", s + 1)
        });
        true
    }

    /// Bit rot (profile `disk`): site `s` stops (a crash), then one bit of
    /// its durable bytes flips: in an op log record with a whole record
    /// after it (damage a torn tail cannot explain), or in a checkpoint row.
    /// Its restart must refuse to open (`Sim::start_site`), and recovers as
    /// the operator would.
    fn rot(&mut self, t: u64, s: usize) -> bool {
        if !self.sites[s].up() || self.sites[s].removed {
            return false;
        }
        self.crash(t, s, false);
        let (records, rows) = {
            let mut disk = self.sites[s].disk.lock();
            let start = disk.log_start();
            let log = disk.durable_log();
            let mut records = Vec::new();
            let mut pos = 0;
            while let chorus_engine::log::RecordScan::Record(_, next) =
                chorus_engine::log::scan_record(&log, pos)
            {
                records.push((start + pos as u64, start + next as u64));
                pos = next;
            }
            // Only records followed by a whole record.
            records.pop();
            let rows = match disk.checkpoint_read() {
                Ok((rows, Some(meta))) => {
                    let live: Vec<_> = rows.into_iter().filter(|r| r.state.is_some()).collect();
                    (!live.is_empty()).then_some((live, meta))
                }
                _ => None,
            };
            (records, rows)
        };
        let in_log = match (records.is_empty(), rows.is_some()) {
            (true, false) => {
                // Nothing to damage: a plain crash.
                self.sched.after(
                    self.fault_rng.range(50, 4_000),
                    Ev::Restart {
                        site: s,
                        wipe: false,
                    },
                );
                return true;
            }
            (false, true) => self.fault_rng.chance(0.5),
            (log, _) => !log,
        };
        let bit = self.fault_rng.below(8) as u8;
        let what = if in_log {
            let &(from, to) = self.fault_rng.pick(&records).expect("a record");
            // A byte of that record (`range` includes its upper end).
            let at = self.fault_rng.range(from, to - 1);
            self.sites[s].disk.lock().damage_durable_log(at, bit);
            self.sites[s].rot = Some(Rot::Log);
            format!("log byte {at}")
        } else {
            let (live, meta) = rows.expect("rows");
            let mut row = self.fault_rng.pick(&live).expect("a row").clone();
            let state = row.state.as_mut().expect("live");
            let at = self.fault_rng.below(state.len() as u64) as usize;
            state[at] ^= 1 << bit;
            let key = String::from_utf8_lossy(&row.key).into_owned();
            let _ = self.sites[s].disk.lock().checkpoint_write(&[row], &meta);
            self.sites[s].rot = Some(Rot::Checkpoint);
            format!("checkpoint row {key:?} byte {at}")
        };
        self.stats.rots += 1;
        self.trace
            .event(t, "rot", &[s as u64, u64::from(in_log)], || {
                format!("site {} stopped; one bit of its {what} flipped", s + 1)
            });
        let down = self.fault_rng.range(50, 4_000);
        self.sched.after(
            down,
            Ev::Restart {
                site: s,
                wipe: false,
            },
        );
        true
    }

    /// Whether the sites other than `s` (and those removed) stay connected
    /// through the links that do not touch `s`.
    fn connected_without(&self, s: usize) -> bool {
        let live: Vec<usize> = (0..self.sites.len())
            .filter(|&x| x != s && !self.sites[x].removed)
            .collect();
        let Some(&start) = live.first() else {
            return true;
        };
        let mut seen = std::collections::BTreeSet::from([start]);
        let mut todo = vec![start];
        while let Some(x) = todo.pop() {
            for c in &self.conns {
                let y = if c.a == x {
                    c.b
                } else if c.b == x {
                    c.a
                } else {
                    continue;
                };
                if y != s && !self.sites[y].removed && seen.insert(y) {
                    todo.push(y);
                }
            }
        }
        seen.len() == live.len()
    }

    /// Arms one I/O error on site `s`'s disk: the next log append, fsync,
    /// checkpoint write, metadata write or log truncation fails and poisons
    /// the storage. Writes are then refused with `MISCONF` and reads served
    /// until the operator restarts the site (`DiskRepair`, 0.2–3 s later),
    /// with the disk healthy again.
    fn disk_fault(&mut self, t: u64, s: usize) -> bool {
        if !self.sites[s].up() || self.sites[s].disk_fault.is_some() {
            return false;
        }
        const POINTS: [FailPoint; 5] = [
            FailPoint::LogAppend,
            FailPoint::LogSync,
            FailPoint::CheckpointWrite,
            FailPoint::MetaPut,
            FailPoint::LogTruncate,
        ];
        let point = POINTS[self.fault_rng.below(POINTS.len() as u64) as usize];
        self.sites[s].disk.lock().fail_next(point);
        self.sites[s].disk_fault = Some(point);
        self.stats.disk_faults += 1;
        self.trace
            .event(t, "disk-fault", &[s as u64, point as u64], || {
                format!("site {}: disk fails at the next {point:?}", s + 1)
            });
        let gen = self.sites[s].gen;
        let after = self.fault_rng.range(200, 3_000);
        self.sched.after(after, Ev::DiskRepair { site: s, gen });
        true
    }

    /// The operator restarts a site whose disk failed (whether or not the
    /// armed error fired): a stop that loses what was not fsynced, then a
    /// start on the healthy disk.
    pub(super) fn disk_repair(&mut self, t: u64, s: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        self.crash(t, s, false);
        let down = self.fault_rng.range(20, 500);
        self.sched.after(
            down,
            Ev::Restart {
                site: s,
                wipe: false,
            },
        );
    }

    pub(super) fn crash(&mut self, t: u64, s: usize, wipe: bool) {
        let torn = {
            let disk = self.sites[s].disk.lock();
            let v = disk.volatile_len() as u64;
            if v > 0 && self.fault_rng.chance(0.5) {
                self.fault_rng.range(1, v) as usize
            } else {
                0
            }
        };
        self.sites[s].engine = None;
        self.sites[s].hk = None;
        self.sites[s].sync = None;
        self.sites[s].checkpoint = None;
        self.sites[s].snapshot_end_pushed.clear();
        self.sites[s].receive_more.clear();
        self.sites[s].sessions.clear();
        self.sites[s].timer_at.clear();
        self.sites[s].paused_until = None;
        self.sites[s].group_commit_at = None;
        // A crash disarms the disk (`MemoryStorage::crash`): it starts healthy.
        self.sites[s].disk_fault = None;
        let failed = std::mem::take(&mut self.sites[s].pending_acks);
        let conns: Vec<usize> = (0..self.conns.len())
            .filter(|&c| self.conns[c].a == s || self.conns[c].b == s)
            .collect();
        for ci in conns {
            self.close_conn(ci, "site crashed");
        }
        if wipe {
            self.stats.wipes += 1;
            // A rebuilt site: new disk, or an older image of its own put back
            // (a restore from a backup). Its start takes an incarnation that
            // stands for the server's wall-clock one: above any of its
            // earlier lives (see docs/simulator.md, "wipe" and "restore").
            let floor = self.check.max_incarnation(s).saturating_add(1);
            self.sites[s].engine_config.incarnation_floor = floor;
            let restore = self.sites[s].backup.is_some() && self.fault_rng.chance(0.5);
            self.sites[s].disk = match self.sites[s].backup.take().filter(|_| restore) {
                Some(image) => {
                    self.stats.restores += 1;
                    SharedDisk::from_image(image)
                }
                None => SharedDisk::new(),
            };
            self.check.site_wiped(s);
        } else {
            self.stats.crashes += 1;
            self.sites[s].disk.lock().crash(torn);
        }
        self.trace.event(
            t,
            if wipe { "wipe" } else { "crash" },
            &[s as u64, torn as u64],
            || {
                format!(
                    "site {} {} (torn tail {torn}B)",
                    s + 1,
                    if wipe { "disk wiped" } else { "crashed" }
                )
            },
        );
        for (id, _) in failed {
            self.retry(id, "connection lost before the reply");
        }
    }

    pub(super) fn restart(&mut self, _t: u64, s: usize, _wipe: bool) {
        if self.sites[s].up() || self.sites[s].removed {
            return;
        }
        if self.cfg.canary == Some(Canary::ReuseSeq) {
            // The bug: restart as if the shutdown had been clean, with the
            // engine keeping a clean stop's incarnation (as it once did), so
            // it hands out the lost seqs again.
            let _ = self.sites[s].disk.lock().meta_put("clean_shutdown", b"1");
            self.sites[s].engine_config.canaries.keep_incarnation = true;
        }
        self.start_site(s);
        if self.violation.is_some() {
            return;
        }
        for ci in 0..self.conns.len() {
            if self.conns[ci].a == s || self.conns[ci].b == s {
                self.conns[ci].backoff.reset();
                self.schedule_dial(ci, 0);
            }
        }
        self.after_touch(s);
    }

    pub(super) fn resume(&mut self, t: u64, s: usize) {
        if self.sites[s].paused_until.is_some_and(|u| u <= t) {
            self.sites[s].paused_until = None;
            self.trace.event(t, "resume", &[s as u64], || {
                format!("site {} resumed", s + 1)
            });
            self.pump_site(s);
        }
    }

    pub(super) fn unblock(&mut self, t: u64, links: Vec<(usize, usize)>) {
        for &(a, b) in &links {
            let l = self.link_mut(a, b);
            l.blocked = l.blocked.saturating_sub(1);
        }
        self.trace.event(t, "heal", &[links.len() as u64], || {
            format!("unblocked {links:?}")
        });
        self.kick_streams();
    }

    /// Restarts delivery on streams that stalled behind a blocked link.
    pub(super) fn kick_streams(&mut self) {
        let t = self.sched.now_ms();
        for ci in 0..self.conns.len() {
            if self.conns[ci].state != ConnState::Up {
                continue;
            }
            let epoch = self.conns[ci].epoch;
            for dir in 0..2 {
                let st = &mut self.conns[ci].streams[dir];
                if !st.scheduled && !st.queue.is_empty() {
                    st.scheduled = true;
                    let at = st.queue.front().map_or(t, |f| f.0.max(t));
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
        }
    }
}
