//! The apply order: every op or merge applied gets a touch index, and the
//! journal records which vector each point of that order covers, for
//! anti-entropy to ask which leaves changed beyond a cut.

use super::Engine;
use crate::id::VersionVector;

/// The apply order is journalled every this many ops (and at every
/// anti-entropy question).
const JOURNAL_EVERY: u64 = 64;
/// Journal points kept; older touches are judged by the oldest point.
const JOURNAL_POINTS_MAX: usize = 1024;

impl Engine {
    /// An op or a merge was applied and the vector covers it: the next
    /// change gets the next touch index.
    pub(crate) fn op_completed(&mut self) {
        self.completed += 1;
        self.keyspace.touch_seq = self.completed + 1;
        if self.completed.is_multiple_of(JOURNAL_EVERY) {
            self.journal_mark();
        }
    }

    /// Records the present point of the apply order in the journal.
    pub(crate) fn journal_mark(&mut self) {
        if self
            .journal
            .back()
            .is_some_and(|(c, _)| *c >= self.completed)
        {
            return;
        }
        self.journal.push_back((self.completed, self.vv.clone()));
        while self.journal.len() > JOURNAL_POINTS_MAX {
            self.journal.pop_front();
        }
    }

    /// See `Engine::all_touched_at`.
    pub(crate) fn all_touched_at(&self) -> u64 {
        self.all_touched_at
    }

    /// The greatest touch index through which every op applied here is in
    /// `cut`: a leaf last touched at or below it (or never, 0) holds exactly
    /// what the ops of `cut` made of it, here and at any site that holds
    /// `cut` and did not change the leaf beyond it. Conservative (it may be
    /// lower than the truth, never higher). One binary search of the journal:
    /// its vectors grow with its indexes.
    pub(crate) fn settled_through(&self, cut: &VersionVector) -> u64 {
        // An open MULTI group's changes carry `completed + 1`: never settled.
        if cut.dominates(&self.vv) {
            return self.completed;
        }
        let n = self.journal.partition_point(|(_, vv)| cut.dominates(vv));
        n.checked_sub(1)
            .and_then(|i| self.journal.get(i))
            .map_or(0, |(c, _)| *c)
    }
}
