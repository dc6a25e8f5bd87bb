//! Clients: new requests, attempts and retries, and the group commit of `appendfsync always` that releases their replies.

use super::*;

impl Sim {
    pub(super) fn next_request(&mut self, t: u64) {
        if !self.safety {
            return;
        }
        if self.issued >= self.p.ops {
            // Let the last requests and their replication settle a little under
            // faults, then heal.
            self.sched.after(1_000, Ev::EndSafety);
            return;
        }
        self.issued += 1;
        let id = self.next_request_id;
        self.next_request_id += 1;
        let req = self.workload.next_request();
        let site = self.workload.pick_site(self.sites.len());
        self.clients.insert(
            id,
            ClientReq {
                req,
                site,
                attempts: 0,
            },
        );
        self.stats.requests += 1;
        self.attempt(t, id);
        let gap = self
            .workload
            .rng()
            .exp_ms(1000.0 / self.p.ops_per_s.max(1) as f64);
        self.sched.after(gap, Ev::NextRequest);
    }

    pub(super) fn retry(&mut self, id: u64, why: &str) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.attempts += 1;
        if c.attempts >= CLIENT_ATTEMPTS_MAX || !self.safety {
            self.clients.remove(&id);
            self.stats.gave_up += 1;
            return;
        }
        // Fail over to another site, after a timeout-like pause.
        c.site = self.workload.pick_site(self.sites.len());
        let delay = self.workload.rng().range(50, 500);
        let t = self.sched.now_ms();
        let w = why.to_owned();
        self.trace
            .event(t, "client-retry", &[id, delay], || format!("req {id}: {w}"));
        self.sched.after(delay, Ev::Attempt { id });
    }

    pub(super) fn attempt(&mut self, t: u64, id: u64) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let s = c.site;
        if !self.sites[s].up() {
            self.retry(id, "site down");
            return;
        }
        if self.is_paused(s) {
            self.retry(id, "site paused (timeout)");
            return;
        }
        let now_wall = self.wall(s);
        let req = c.req.clone();
        let Some(engine) = self.sites[s].engine.as_mut() else {
            return;
        };
        let before = (engine.origin(), engine.last_local_seq());
        let replies: Vec<Reply> = match &req {
            Request::One(db, args) => vec![engine.execute(*db, args, now_wall)],
            Request::Multi(cmds) => engine.execute_multi(cmds, now_wall),
        };
        let after = (engine.origin(), engine.last_local_seq());
        let op = (after != before).then(|| OpId::new(after.0, after.1));
        // No write is stamped beyond the site's clock plus the bound, however
        // far ahead its peers' clocks are.
        let stamp = engine.last_stamp_issued();
        let bound = engine.config().max_clock_skew_ms;
        if op.is_some() && bound > 0 && stamp.wall_ms() > now_wall.saturating_add(bound) {
            let v = Violation::new(
                "clock",
                format!(
                    "site {}: op {op:?} stamped {stamp}, beyond its clock {now_wall} + {bound} ms",
                    s + 1
                ),
            );
            self.fail(v);
        }
        let misconf = replies
            .iter()
            .any(|r| matches!(r, Reply::Error(e) if e.starts_with("MISCONF")));
        // A site whose salvaged log went below what it reported refuses
        // writes until a full sync: the client tries again later.
        let loading = replies
            .iter()
            .any(|r| matches!(r, Reply::Error(e) if e.starts_with("LOADING")));
        let rh = fnv1a(format!("{replies:?}").as_bytes());
        let keep = self.trace.keeps_lines();
        let desc = if keep { req.describe() } else { String::new() };
        self.trace.event(
            t,
            "client",
            &[id, s as u64, rh, op.map_or(0, |o| o.seq)],
            || {
                format!(
                    "req {id} at site {}: {desc} -> {replies:?} op={op:?}",
                    s + 1
                )
            },
        );
        self.after_touch(s);
        if loading && op.is_none() {
            self.retry(id, "LOADING");
            return;
        }
        if misconf {
            if self.sites[s].disk_fault.is_none() {
                let v = Violation::new(
                    "disk",
                    format!("site {}: MISCONF without a disk fault: {replies:?}", s + 1),
                );
                self.fail(v);
                return;
            }
            if !req.may_write() {
                // Reads are served from memory on a failed disk.
                let v = Violation::new(
                    "disk",
                    format!(
                        "site {}: a read was refused on a failed disk: {replies:?}",
                        s + 1
                    ),
                );
                self.fail(v);
                return;
            }
            self.stats.misconf_refusals += 1;
            self.retry(id, "MISCONF");
            return;
        }
        if let Some(op) = op {
            self.check.note_client_op(op, self.p.fsync);
        }
        if op.is_some() && self.p.fsync == Fsync::Always {
            // The reply waits for the group commit that makes it durable.
            self.sites[s].pending_acks.push((id, op));
            self.schedule_group_commit(s);
        } else {
            self.clients.remove(&id);
            if op.is_some() && req.may_write() {
                self.stats.acked_writes += 1;
            }
        }
        self.pump_site(s);
    }

    pub(super) fn schedule_group_commit(&mut self, s: usize) {
        if self.sites[s].group_commit_at.is_some() {
            return;
        }
        let delay = 1 + self.p.knobs.fsync_delay_ms;
        let at = self.sched.now_ms() + delay;
        self.sites[s].group_commit_at = Some(at);
        let gen = self.sites[s].gen;
        self.sched.at(at, Ev::GroupCommit { site: s, gen });
    }

    pub(super) fn sync_site(&mut self, s: usize) -> bool {
        let Some(engine) = self.sites[s].engine.as_mut() else {
            return false;
        };
        match engine.sync() {
            Ok(()) => true,
            Err(e) if self.sites[s].disk_fault.is_some() => {
                // Under `appendfsync always` the writes waiting for this
                // fsync are answered with an error, never acknowledged: the
                // clients retry them after the restart.
                let failed = std::mem::take(&mut self.sites[s].pending_acks);
                for (id, _) in failed {
                    self.retry(id, "fsync failed (disk fault)");
                }
                let t = self.sched.now_ms();
                self.trace.event(t, "fsync-failed", &[s as u64], || {
                    format!(
                        "site {}: group commit fsync failed (disk fault): {e}",
                        s + 1
                    )
                });
                false
            }
            Err(e) => {
                let v = Violation::new("storage", format!("site {}: sync failed: {e}", s + 1));
                self.fail(v);
                false
            }
        }
    }

    pub(super) fn group_commit(&mut self, t: u64, s: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.defer_if_paused(s, || Ev::GroupCommit { site: s, gen }) {
            return;
        }
        self.sites[s].group_commit_at = None;
        if !self.sync_site(s) {
            return;
        }
        let acks = std::mem::take(&mut self.sites[s].pending_acks);
        let n = acks.len() as u64;
        for (id, op) in acks {
            if let Some(op) = op {
                if let Some(e) = self.sites[s].engine.as_ref() {
                    if !e.durable_vv().covers(op) {
                        let v = Violation::new(
                            "durability",
                            format!("site {}: op {op} acked under appendfsync always before it was durable", s + 1),
                        );
                        self.fail(v);
                        return;
                    }
                }
                self.stats.acked_writes += 1;
            }
            self.clients.remove(&id);
        }
        self.trace.event(t, "group-commit", &[s as u64, n], || {
            format!("site {} fsync, {n} replies released", s + 1)
        });
        self.after_touch(s);
        self.pump_site(s);
    }
}
