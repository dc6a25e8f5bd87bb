//! Row damage (profiles `corrupt`, `corrupt-calm`), the audits of the safety phase, the liveness phase and the final checks.

use super::*;

impl Sim {
    /// Profile `corrupt`: damages one row of an up site behind its engine
    /// (`put_row_unlogged`): the row is removed, or loses one member, field
    /// or counter increment. Anti-entropy must bring it back from a peer
    /// with nothing lost anywhere (the oracle checks every value at the end).
    pub(super) fn corrupt(&mut self, t: u64) {
        if !self.safety {
            return;
        }
        self.sched.after(
            self.fault_rng.exp_ms(CORRUPT_INTERVAL_MS as f64),
            Ev::Corrupt,
        );
        if !self.corruptions.is_empty() {
            // One damaged site at a time: the same row lost at every site
            // is gone for good, whatever anti-entropy does.
            return;
        }
        let n = self.sites.len();
        let s = self.fault_rng.below(n as u64) as usize;
        let db = self.fault_rng.below(u64::from(self.p.dbs.max(1))) as u8;
        let Some(engine) = self.sites[s].engine.as_mut() else {
            return;
        };
        let rows = &engine.keyspace().db(db).rows;
        let count = rows.len() as u64;
        if count == 0 {
            return;
        }
        let pick = self.fault_rng.below(count) as usize;
        let Some((key, row)) = rows.iter().nth(pick) else {
            return;
        };
        let key = key.clone();
        let mut image = chorus_engine::keyspace::image::RowImage::of(row);
        let what = if self.fault_rng.chance(0.5) {
            image = Default::default();
            "removed"
        } else if !image.set.is_empty() {
            let i = self.fault_rng.below(image.set.len() as u64) as usize;
            image.set.remove(i);
            "lost a member"
        } else if !image.hash.is_empty() {
            let i = self.fault_rng.below(image.hash.len() as u64) as usize;
            image.hash.remove(i);
            "lost a field"
        } else if image.string.as_ref().is_some_and(|c| !c.ctr.is_empty()) {
            if let Some(c) = image.string.as_mut() {
                c.ctr.pop();
            }
            "lost an increment"
        } else {
            image = Default::default();
            "removed"
        };
        engine.put_row_unlogged(db, key.clone(), image);
        self.corruptions.push((s, t));
        self.stats.corruptions += 1;
        self.trace
            .event(t, "corrupt", &[s as u64, u64::from(db)], || {
                format!(
                    "site {} row {:?} of db {db} {what} behind the engine",
                    s + 1,
                    String::from_utf8_lossy(&key)
                )
            });
    }

    /// Clears the damage of sites whose state is again what their ops make
    /// (repaired, or rewritten by later ops), noting how long it took.
    pub(super) fn settle_corruptions(&mut self, t: u64) {
        if self.corruptions.is_empty() {
            return;
        }
        let mut healed = Vec::new();
        for (s, site) in self.sites.iter().enumerate() {
            let Some(e) = site.engine.as_ref() else {
                continue;
            };
            if self.corruptions.iter().any(|c| c.0 == s)
                && self.check.state_matches_replay(s, e, "a repair").is_ok()
            {
                healed.push(s);
            }
        }
        for s in healed {
            for (_, at) in self.corruptions.iter().filter(|c| c.0 == s) {
                self.stats.repair_ms_max = self.stats.repair_ms_max.max(t.saturating_sub(*at));
            }
            self.corruptions.retain(|c| c.0 != s);
        }
    }

    pub(super) fn audit(&mut self, t: u64) {
        if !self.safety {
            return;
        }
        self.settle_corruptions(t);
        let engines: Vec<Option<&Engine>> = self.sites.iter().map(|s| s.engine.as_ref()).collect();
        if self.corruptions.is_empty() {
            if let Err(v) = self.check.audit_convergence(&engines) {
                self.fail(v);
                return;
            }
        }
        if self.paranoid && self.corruptions.is_empty() {
            for (i, site) in self.sites.iter().enumerate() {
                if let Some(e) = site.engine.as_ref() {
                    if let Err(v) = self.check.state_matches_replay(i, e, "an audit") {
                        self.violation.get_or_insert(v);
                        return;
                    }
                }
            }
        }
        self.trace.event(t, "audit", &[], String::new);
        self.sched.after(AUDIT_INTERVAL_MS, Ev::Audit);
    }

    pub(super) fn end_safety(&mut self, t: u64) {
        if !self.safety {
            return;
        }
        self.safety = false;
        self.liveness_started_ms = t;
        self.trace.event(t, "heal-all", &[], || {
            "liveness phase: heal everything".to_owned()
        });
        // Heal: links, clogs, pauses, crashed sites; clients stop.
        for l in self.links.iter_mut() {
            *l = LinkFaults::default();
        }
        self.clients.clear();
        for s in 0..self.sites.len() {
            if self.sites[s].removed {
                continue;
            }
            if !self.sites[s].up() {
                self.restart(t, s, false);
            } else if self.sites[s].paused_until.is_some() {
                self.sites[s].paused_until = None;
                self.pump_site(s);
            }
        }
        self.kick_streams();
        for ci in 0..self.conns.len() {
            if self.conns[ci].state == ConnState::Down {
                self.conns[ci].backoff.reset();
                self.schedule_dial(ci, 0);
            }
        }
        self.sched.after(LIVENESS_CHECK_MS, Ev::LivenessCheck);
    }

    /// The `stuck` checker: after healing, no session may hold batches in
    /// flight on an open connection without any ack from its peer for
    /// `STUCK_SESSION_MS` (it must resend, rewind or reconnect). In a mesh a
    /// stuck session can hide behind the others, which carry its ops, so
    /// convergence alone would not notice it.
    fn check_stuck_sessions(&mut self, t: u64) -> Result<(), Violation> {
        let mut seen = BTreeMap::new();
        for (s, site) in self.sites.iter().enumerate() {
            if site.engine.is_none() {
                continue;
            }
            for (&peer, sess) in &site.sessions {
                let open = self
                    .conn_of
                    .get(&(s, peer))
                    .is_some_and(|&ci| self.conns[ci].state == ConnState::Up);
                if !open || sess.inflight_batches() == 0 || !self.sites[peer].up() {
                    continue;
                }
                let acked = sess.peer_acked_vv().total();
                let since = match self.stuck_watch.get(&(s, peer)) {
                    Some(&(a, since)) if a == acked => since,
                    _ => t,
                };
                if t.saturating_sub(since) >= STUCK_SESSION_MS {
                    return Err(Violation::new(
                        "stuck",
                        format!(
                            "site {}'s session to site {} has held {} batch(es) in flight on an open connection for {} ms with no ack (state {}, known={}, acked={})",
                            s + 1,
                            peer + 1,
                            sess.inflight_batches(),
                            t - since,
                            sess.state().name(),
                            sess.peer_known_vv(),
                            sess.peer_acked_vv()
                        ),
                    ));
                }
                seen.insert((s, peer), (acked, since));
            }
        }
        self.stuck_watch = seen;
        Ok(())
    }

    pub(super) fn liveness_check(&mut self, t: u64) {
        if let Err(v) = self.check_stuck_sessions(t) {
            self.fail(v);
            return;
        }
        let engines: Vec<Option<&Engine>> = self.sites.iter().map(|s| s.engine.as_ref()).collect();
        // Removed sites are out of the cluster: the rest converge without them.
        let all_up = self.sites.iter().all(|s| s.removed || s.engine.is_some());
        let first_vv = engines.iter().flatten().next().map(|e| e.vv().clone());
        let same_vv =
            all_up && first_vv.is_some_and(|v| engines.iter().flatten().all(|e| *e.vv() == v));
        if same_vv && !self.corruptions.is_empty() {
            // Anti-entropy has damage to repair first (checked against a
            // replay of every op: every 500 ms, not at every check).
            drop(engines);
            if t % AUDIT_INTERVAL_MS < LIVENESS_CHECK_MS {
                self.settle_corruptions(t);
            }
            self.sched.after(LIVENESS_CHECK_MS, Ev::LivenessCheck);
            return;
        }
        if same_vv {
            match self.check.audit_convergence(&engines) {
                Ok(()) if self.final_anti_entropy.is_none() => self.request_final_anti_entropy(t),
                Ok(()) if !self.in_flight_drained() => {
                    // Converged, but a session still holds batches its peer
                    // has not acknowledged: wait for the acks (the `stuck`
                    // checker fails the run if they never come).
                }
                Ok(()) if self.final_anti_entropy_done() => {
                    // Expired keys must be gone too: a site paused until
                    // just now, or the owner of a deadline that is gone,
                    // may leave deletes to do (the `expiry` checker).
                    match self.check_expired_keys_deleted() {
                        Ok(()) => {
                            self.expiry_overdue = None;
                            self.trace
                                .event(t, "converged", &[], || "all sites converged".to_owned());
                            self.converged = true;
                            return;
                        }
                        Err(v) => self.expiry_overdue = Some(v.detail),
                    }
                }
                Ok(()) => {}
                Err(v) => {
                    self.fail(v);
                    return;
                }
            }
        }
        self.sched.after(LIVENESS_CHECK_MS, Ev::LivenessCheck);
    }

    /// No session on an open connection to an up peer holds batches in
    /// flight: every op sent was acknowledged.
    fn in_flight_drained(&self) -> bool {
        self.sites.iter().enumerate().all(|(s, site)| {
            site.sessions.iter().all(|(&peer, sess)| {
                let open = self
                    .conn_of
                    .get(&(s, peer))
                    .is_some_and(|&ci| self.conns[ci].state == ConnState::Up);
                !open || !self.sites[peer].up() || sess.inflight_batches() == 0
            })
        })
    }

    /// Converged: one more anti-entropy round on every link, so every run
    /// compares digests at equal vectors at least once per link (and a
    /// repair there fails the run).
    pub(super) fn request_final_anti_entropy(&mut self, t: u64) {
        let mut base = BTreeMap::new();
        for s in 0..self.sites.len() {
            for (&peer, sess) in self.sites[s].sessions.iter_mut() {
                sess.request_anti_entropy();
                base.insert((s, peer), sess.stats().anti_entropy_checks);
            }
        }
        self.final_anti_entropy = Some(base);
        self.trace.event(t, "anti-entropy", &[], || {
            "converged: one anti-entropy round per link".to_owned()
        });
        for s in 0..self.sites.len() {
            self.pump_site(s);
        }
    }

    /// Every link that is up compared all 16 databases since the request.
    pub(super) fn final_anti_entropy_done(&self) -> bool {
        let Some(base) = &self.final_anti_entropy else {
            return false;
        };
        let compared = |s: usize, peer: usize| {
            let now = self.sites[s]
                .sessions
                .get(&peer)
                .map_or(0, |x| x.stats().anti_entropy_checks);
            // A round compares the databases either site holds rows in.
            let used = |x: usize| -> u32 {
                self.sites[x].engine.as_ref().map_or(0, |e| {
                    (0..ALL_DBS as u8)
                        .filter(|&d| !e.keyspace().db(d).is_empty())
                        .fold(0, |m, d| m | 1 << d)
                })
            };
            let needed = u64::from((used(s) | used(peer)).count_ones());
            now.saturating_sub(base.get(&(s, peer)).copied().unwrap_or(now)) >= needed
        };
        self.conns
            .iter()
            .filter(|c| c.state == ConnState::Up)
            .all(|c| compared(c.a, c.b) || compared(c.b, c.a))
    }

    pub(super) fn liveness_report(&self) -> String {
        let mut parts = Vec::new();
        for (i, s) in self.sites.iter().enumerate() {
            match &s.engine {
                Some(e) => {
                    let states: Vec<String> = s
                        .sessions
                        .iter()
                        .map(|(p, x)| {
                            let q = self.conn_of.get(&(i, *p)).map(|&ci| {
                                let c = &self.conns[ci];
                                let st = &c.streams[c.dir(i)];
                                format!(
                                    "{:?} queued={} scheduled={}",
                                    c.state,
                                    st.queue.len(),
                                    st.scheduled
                                )
                            });
                            format!(
                                "{}:{} inflight={} known={} acked={} conn[{}]",
                                p + 1,
                                x.state().name(),
                                x.inflight_batches(),
                                x.peer_known_vv(),
                                x.peer_acked_vv(),
                                q.unwrap_or_default()
                            )
                        })
                        .collect();
                    parts.push(format!(
                        "site {} vv={} buffered={} sessions[{}]",
                        i + 1,
                        e.vv(),
                        e.causal_buffer_len(),
                        states.join(" ")
                    ));
                }
                None if s.removed => parts.push(format!("site {} removed", i + 1)),
                None => parts.push(format!("site {} down", i + 1)),
            }
        }
        let delivers: Vec<String> = self
            .sched
            .iter()
            .filter(|(_, e)| matches!(e, Ev::Deliver { .. }))
            .take(8)
            .map(|(t, e)| format!("{t}:{e:?}"))
            .collect();
        let anti_entropy = match (&self.final_anti_entropy, &self.expiry_overdue) {
            (_, Some(overdue)) => {
                format!(" (states converged; expired keys not deleted: {overdue})")
            }
            (None, None) => String::new(),
            (Some(_), None) => {
                " (states converged; final anti-entropy round not finished)".to_owned()
            }
        };
        format!(
            "no convergence within {} ms of healing{anti_entropy}: {}; pending deliveries: {}",
            self.p.liveness_deadline_ms,
            parts.join("; "),
            delivers.join(" ")
        )
    }

    /// The `expiry` checker: no site still holds a key (or an expiry
    /// entry) whose deadline passed long enough ago that some site had to
    /// delete it: its owner at the deadline plus `max_clock_skew_ms`, any
    /// other site `EXPIRY_TAKEOVER_MS` later, by its own clock. Measured
    /// against the fastest clock, with a few seconds for the housekeeping's
    /// ticks; so it also holds when the owner of the deadline crashed, was
    /// wiped or was cut off. The liveness phase waits for it before it
    /// counts the sites as converged, and the end of the run checks it.
    pub(super) fn check_expired_keys_deleted(&self) -> Result<(), Violation> {
        const SLACK_MS: u64 = 5_000;
        let Some(fastest) = (0..self.sites.len())
            .filter(|&s| self.sites[s].up())
            .map(|s| self.wall(s))
            .max()
        else {
            return Ok(());
        };
        for (s, site) in self.sites.iter().enumerate() {
            let Some(e) = site.engine.as_ref() else {
                continue;
            };
            let late = e
                .config()
                .max_clock_skew_ms
                .saturating_add(chorus_engine::engine::EXPIRY_TAKEOVER_MS)
                .saturating_add(SLACK_MS);
            for db in 0..ALL_DBS as u8 {
                if let Some((deadline, key)) = e.keyspace().db(db).expires.iter().next() {
                    if deadline.saturating_add(late) <= fastest {
                        return Err(Violation::new(
                            "expiry",
                            format!(
                                "site {} still holds {:?} (db {db}), whose deadline {deadline} passed {} ms before the fastest clock ({fastest}): no site deleted it",
                                s + 1,
                                String::from_utf8_lossy(key),
                                fastest - deadline
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn final_checks(&mut self) {
        if self.stats.anti_entropy_repairs != 0 && !self.corrupting {
            let n = self.stats.anti_entropy_repairs;
            self.fail(Violation::new(
                "anti-entropy",
                format!("{n} anti-entropy repairs: a correct system never repairs"),
            ));
            return;
        }
        if let Err(v) = self.check_expired_keys_deleted() {
            self.fail(v);
            return;
        }
        let engines: Vec<Option<&Engine>> = self.sites.iter().map(|s| s.engine.as_ref()).collect();
        let res = self.check.final_checks(&engines);
        match res {
            Ok(lost) => self.stats.lost_unacked_ops = lost,
            Err(v) => self.fail(v),
        }
    }
}
