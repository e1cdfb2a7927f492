//! Dropping samples counted twice for threads found late during attach.
//!
//! Attach opens events thread by thread, then re-scans `/proc/PID/task` for
//! threads born meanwhile. A thread created by an already-instrumented thread
//! inherited that thread's events, and gets events of its own in the re-scan:
//! two events would sample it. Which is the case cannot be seen from `/proc`,
//! but each sample carries the id of the event that took it (inherited events
//! report their parent's id). Once a late thread shows a sample from an id
//! that is not one of its own events, its own events are redundant, and
//! their samples are dropped from then on.

use std::collections::{HashMap, HashSet};

use stoke_model::Tid;

/// Tracks the threads that may be sampled twice.
#[derive(Debug, Default)]
pub(crate) struct Duplicates {
    /// Event id → the late thread it was opened on.
    own: HashMap<u64, Tid>,
    /// The threads found by a re-scan.
    late: HashSet<Tid>,
    /// Late threads known to carry inherited events too.
    inherited: HashSet<Tid>,
}

impl Duplicates {
    /// Records an event opened directly on a thread found by a re-scan.
    pub(crate) fn own_event(&mut self, tid: Tid, id: u64) {
        self.own.insert(id, tid);
        self.late.insert(tid);
    }

    /// Whether a sample of `tid` taken by event `id` should be kept.
    pub(crate) fn keep(&mut self, tid: Tid, id: Option<u64>) -> bool {
        let Some(id) = id else { return true };
        if !self.late.contains(&tid) {
            return true;
        }
        if self.own.get(&id) == Some(&tid) {
            !self.inherited.contains(&tid)
        } else {
            self.inherited.insert(tid);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_events_yield_once_inherited_ones_appear() {
        let mut d = Duplicates::default();
        assert!(d.keep(Tid(5), Some(1)));
        d.own_event(Tid(7), 70);
        assert!(d.keep(Tid(7), Some(70)), "no inherited event seen yet");
        assert!(d.keep(Tid(7), Some(3)), "the inherited event's sample");
        assert!(!d.keep(Tid(7), Some(70)), "now a duplicate");
        assert!(d.keep(Tid(5), Some(1)));
    }
}
