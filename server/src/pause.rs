//! `CLIENT PAUSE timeout [WRITE|ALL]` and `CLIENT UNPAUSE` (Redis 7.0).
//!
//! While a pause lasts, a client's next command waits (it is not refused)
//! if the pause holds it: every command under `ALL`; under `WRITE`, the
//! commands flagged `write` or `may_replicate` (EVAL, FCALL, PUBLISH...),
//! and EXEC of a transaction that queued one. The client's later commands
//! wait behind it, as in Redis. A new pause keeps the later end and the
//! stricter mode of the two; UNPAUSE ends it at once.
//!
//! Only client connections wait: ops from peers keep being applied, and
//! this site's own ops keep replicating, so a pause stops this site's
//! clients, not the cluster (docs/server.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::cmd::table::{flag, CommandSpec};
use crate::cmd::Handler;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Write,
    All,
}

#[derive(Clone, Copy, Debug)]
struct Active {
    until: Instant,
    mode: Mode,
}

#[derive(Debug)]
pub struct Pause {
    /// False when no pause is set: the check per command is one load.
    set: AtomicBool,
    active: Mutex<Option<Active>>,
    /// Bumped at every change, so waiters look again.
    changed: watch::Sender<u64>,
}

impl Default for Pause {
    fn default() -> Self {
        Pause {
            set: AtomicBool::new(false),
            active: Mutex::new(None),
            changed: watch::channel(0).0,
        }
    }
}

impl Pause {
    /// `CLIENT PAUSE`: pauses until `until` (or later, if a pause already
    /// lasts longer), in `mode` (or the stricter mode already in effect).
    pub fn pause(&self, until: Instant, mode: Mode) {
        let mut active = self.active.lock();
        let next = match *active {
            Some(a) if a.until > Instant::now() => Active {
                until: a.until.max(until),
                mode: a.mode.max(mode),
            },
            _ => Active { until, mode },
        };
        *active = Some(next);
        self.set.store(true, Ordering::SeqCst);
        drop(active);
        self.changed.send_modify(|n| *n += 1);
    }

    /// `CLIENT UNPAUSE`.
    pub fn unpause(&self) {
        let mut active = self.active.lock();
        *active = None;
        self.set.store(false, Ordering::SeqCst);
        drop(active);
        self.changed.send_modify(|n| *n += 1);
    }

    /// When the pause that holds a command of this kind ends, if one does.
    /// `queued_flags`: the flags of the commands queued by a transaction,
    /// for EXEC.
    pub fn holds(&self, spec: &CommandSpec, queued_flags: u32) -> Option<Instant> {
        if !self.set.load(Ordering::SeqCst) {
            return None;
        }
        let mut active = self.active.lock();
        let a = (*active)?;
        if a.until <= Instant::now() {
            *active = None;
            self.set.store(false, Ordering::SeqCst);
            return None;
        }
        let writes = flag::WRITE | flag::MAY_REPLICATE;
        let held = match a.mode {
            Mode::All => true,
            Mode::Write => {
                spec.has_flag(writes)
                    || (spec.handler == Handler::Exec && queued_flags & writes != 0)
            }
        };
        held.then_some(a.until)
    }

    /// True while a pause is in effect (commands are then checked one by one).
    pub fn is_active(&self) -> bool {
        self.set.load(Ordering::SeqCst)
            && self.active.lock().is_some_and(|a| a.until > Instant::now())
    }

    /// Waits until the pause (if any) no longer holds a command of this
    /// kind: its end, an UNPAUSE, or a new pause that releases it.
    pub async fn wait(&self, spec: &CommandSpec, queued_flags: u32) {
        let mut changes = self.changed.subscribe();
        while let Some(until) = self.holds(spec, queued_flags) {
            let left = until.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(left.max(Duration::from_millis(1))) => {}
                _ = changes.changed() => {}
            }
        }
    }
}
