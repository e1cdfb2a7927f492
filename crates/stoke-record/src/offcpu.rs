//! Time off the CPU, from perf's context-switch samples and switch records.
//!
//! A thread's stack is sampled as it leaves the CPU; the switch record that
//! follows says when, and whether it was preempted (runnable) or blocked;
//! its next switch-in record ends the interval. The interval's length is
//! charged to the stack it left with.
//!
//! Above the sampling rate the kernel samples only some switch-outs (the
//! context-switch event runs in frequency mode), but every switch is still
//! timed by its records. The time of intervals whose switch-out was not
//! sampled is shared out, when recording ends, over the same thread's
//! sampled intervals of the same kind (blocked or runnable), in proportion
//! to their time: each sampled stack stands for the unsampled intervals as
//! a sample stands for its period. No time is dropped: a thread with no
//! sampled interval of a kind keeps its time under a stack of the marker
//! alone. An interval of a thread found blocked as recording started has
//! a stack known for certain, not sampled: it keeps its own time and takes
//! no share.

use std::collections::{HashMap, HashSet};

use stoke_model::Tid;

use crate::stack::{RawFrame, ThreadId};

/// How far apart a switch-out sample and its switch record may be stamped.
const SAME_SWITCH_NS: u64 = 1_000_000;

/// Why a thread was off the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Wait {
    /// It blocked: I/O, a lock, a sleep.
    Blocked,
    /// It was preempted and waited on the run queue.
    Runnable,
}

impl Wait {
    /// The leaf marker of its stacks.
    pub(crate) fn marker(self) -> RawFrame {
        match self {
            Wait::Blocked => RawFrame::Blocked,
            Wait::Runnable => RawFrame::Runnable,
        }
    }
}

/// An interval off the CPU that has ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Closed {
    /// The stack it left the CPU with (leaf first, no markers), if sampled.
    pub(crate) frames: Option<Vec<RawFrame>>,
    /// Why it waited.
    pub(crate) wait: Wait,
    /// How long, in nanoseconds.
    pub(crate) ns: u64,
    /// Whether its stack was known for certain (a thread found blocked as
    /// recording started), not picked by the kernel's sampling: it takes
    /// no share of unsampled time.
    pub(crate) exact: bool,
}

#[derive(Debug)]
struct Open {
    /// The thread, with the names it had when it left.
    thread: ThreadId,
    since: u64,
    wait: Wait,
    frames: Option<Vec<RawFrame>>,
    exact: bool,
}

/// Intervals being timed, per thread.
#[derive(Debug, Default)]
pub(crate) struct Intervals {
    /// A switch-out sample waiting for its switch record.
    pending: HashMap<Tid, (u64, Vec<RawFrame>, bool)>,
    open: HashMap<Tid, Open>,
    /// Threads that exited: their last switch-out opens nothing.
    gone: HashSet<Tid>,
}

impl Intervals {
    /// A stack sampled as `tid` left the CPU at `time` (`exact`: known,
    /// not sampled, see [`Closed::exact`]).
    pub(crate) fn sampled(&mut self, tid: Tid, time: u64, frames: &[RawFrame], exact: bool) {
        self.pending.insert(tid, (time, frames.to_vec(), exact));
    }

    /// `tid` left the CPU at `time`.
    pub(crate) fn out(&mut self, thread: ThreadId, tid: Tid, time: u64, preempted: bool) {
        let (frames, exact) = self
            .pending
            .remove(&tid)
            .filter(|(at, _, _)| time.abs_diff(*at) <= SAME_SWITCH_NS)
            .map_or((None, false), |(_, frames, exact)| (Some(frames), exact));
        if self.gone.contains(&tid) {
            return;
        }
        let wait = if preempted {
            Wait::Runnable
        } else {
            Wait::Blocked
        };
        self.open.insert(
            tid,
            Open {
                thread,
                since: time,
                wait,
                frames,
                exact,
            },
        );
    }

    /// `tid` came back to a CPU at `time`: the interval it ends, if one
    /// was open.
    pub(crate) fn back(&mut self, tid: Tid, time: u64) -> Option<(ThreadId, Closed)> {
        let open = self.open.remove(&tid)?;
        Some((
            open.thread,
            Closed {
                frames: open.frames,
                wait: open.wait,
                ns: time.checked_sub(open.since)?,
                exact: open.exact,
            },
        ))
    }

    /// Recording stopped at `time`: every open interval ends then.
    pub(crate) fn stop(&mut self, time: u64) -> Vec<(ThreadId, Tid, Closed)> {
        self.pending.clear();
        let mut closed: Vec<(ThreadId, Tid, Closed)> = self
            .open
            .drain()
            .filter_map(|(tid, open)| {
                let ns = time.checked_sub(open.since)?;
                Some((
                    open.thread,
                    tid,
                    Closed {
                        frames: open.frames,
                        wait: open.wait,
                        ns,
                        exact: open.exact,
                    },
                ))
            })
            .collect();
        closed.sort_by_key(|(_, tid, _)| *tid);
        closed
    }

    /// `tid` exited.
    pub(crate) fn exited(&mut self, tid: Tid) {
        self.pending.remove(&tid);
        self.open.remove(&tid);
        self.gone.insert(tid);
    }

    /// `tid` is a new thread (a reused id is not the old thread).
    pub(crate) fn born(&mut self, tid: Tid) {
        self.gone.remove(&tid);
    }
}

/// Time off the CPU as sample counts.
pub(crate) struct Settled<K, T> {
    /// Per counted key, its thread's unsampled time shared out.
    pub(crate) counts: Vec<(K, u64)>,
    /// Per thread and kind with no sampled interval, its unsampled time.
    pub(crate) unattributed: Vec<((T, Wait), u64)>,
}

/// Nanoseconds off the CPU per counted key, sampled and not.
#[derive(Debug)]
pub(crate) struct OffCpuTime<K, T> {
    /// Sampled time, by (key, wait).
    pub(crate) sampled: HashMap<(K, Wait), u64>,
    /// Unsampled time, by (thread, wait).
    pub(crate) unsampled: HashMap<(T, Wait), u64>,
    /// Time of intervals known for certain ([`Closed::exact`]), by (key,
    /// wait): counted as measured, never scaled.
    pub(crate) exact: HashMap<(K, Wait), u64>,
}

impl<K, T> Default for OffCpuTime<K, T> {
    fn default() -> Self {
        OffCpuTime {
            sampled: HashMap::new(),
            unsampled: HashMap::new(),
            exact: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash, T: Copy + Eq + std::hash::Hash> OffCpuTime<K, T> {
    /// Each key's time with its thread's unsampled time shared out, and
    /// the unsampled time of threads that had no sampled interval of a
    /// kind, as sample counts of `period_ns` (rounded to nearest).
    pub(crate) fn settle(&self, thread_of: impl Fn(K) -> T, period_ns: u64) -> Settled<K, T> {
        let period = period_ns.max(1) as f64;
        let mut sampled_total: HashMap<(T, Wait), u64> = HashMap::new();
        for (&(key, wait), &ns) in &self.sampled {
            *sampled_total.entry((thread_of(key), wait)).or_default() += ns;
        }
        let mut counts = Vec::new();
        for (&(key, wait), &ns) in &self.sampled {
            let group = (thread_of(key), wait);
            let total = sampled_total[&group] as f64;
            let extra = self.unsampled.get(&group).copied().unwrap_or(0) as f64;
            let scaled = ns as f64 * (total + extra) / total.max(1.0);
            counts.push((key, (scaled / period).round() as u64));
        }
        for (&(key, _), &ns) in &self.exact {
            counts.push((key, (ns as f64 / period).round() as u64));
        }
        let unattributed = self
            .unsampled
            .iter()
            .filter(|(group, _)| !sampled_total.contains_key(group))
            .map(|(&group, &ns)| (group, (ns as f64 / period).round() as u64))
            .collect();
        Settled {
            counts,
            unattributed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoke_model::FrameAddress;

    fn frames(ip: u64) -> Vec<RawFrame> {
        vec![RawFrame::Unmapped(FrameAddress::InstructionPointer(ip))]
    }

    #[test]
    fn an_interval_is_charged_to_the_stack_it_left_with() {
        let mut iv = Intervals::default();
        iv.sampled(Tid(1), 1000, &frames(5), false);
        iv.out(ThreadId(0), Tid(1), 1001, false);
        let (thread, closed) = iv.back(Tid(1), 301_001).unwrap();
        assert_eq!(thread, ThreadId(0));
        assert_eq!(closed.frames, Some(frames(5)));
        assert_eq!((closed.wait, closed.ns), (Wait::Blocked, 300_000));
        assert!(iv.back(Tid(1), 400_000).is_none(), "nothing open");
        iv.out(ThreadId(0), Tid(1), 500_000, true);
        let (_, closed) = iv.back(Tid(1), 600_000).unwrap();
        assert_eq!((closed.frames, closed.wait), (None, Wait::Runnable));
    }

    #[test]
    fn open_intervals_end_when_recording_stops_but_not_after_exit() {
        let mut iv = Intervals::default();
        iv.out(ThreadId(0), Tid(1), 100, false);
        iv.exited(Tid(2));
        iv.out(ThreadId(0), Tid(2), 100, false);
        let closed = iv.stop(1100);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].1, closed[0].2.ns), (Tid(1), 1000));
    }

    #[test]
    fn unsampled_time_is_shared_in_proportion_within_thread_and_kind() {
        let mut t: OffCpuTime<u32, u32> = OffCpuTime::default();
        // Thread 0: stacks 10 and 11 blocked 3 ms and 1 ms sampled, 4 ms
        // unsampled: 6 ms and 2 ms. Thread 1: 5 ms runnable, no stack.
        t.sampled.insert((10, Wait::Blocked), 3_000_000);
        t.sampled.insert((11, Wait::Blocked), 1_000_000);
        t.unsampled.insert((0, Wait::Blocked), 4_000_000);
        t.unsampled.insert((1, Wait::Runnable), 5_000_000);
        // Stack 12, found blocked at the start, keeps its 2 ms: it was not
        // sampled, so it stands for no unsampled interval.
        t.exact.insert((12, Wait::Blocked), 2_000_000);
        let settled = t.settle(|k| if k < 20 { 0 } else { 1 }, 1_000_000);
        let (mut counts, rest) = (settled.counts, settled.unattributed);
        counts.sort();
        assert_eq!(counts, vec![(10, 6), (11, 2), (12, 2)]);
        assert_eq!(rest, vec![((1, Wait::Runnable), 5)]);
    }
}
