//! Work done ahead of need on a thread that runs only on CPU time nothing
//! else wants (`SCHED_IDLE`), so it never slows the target.
//!
//! Such a thread may not run at all while the machine is busy, and busy
//! machines are exactly when people profile: so it is never waited for.
//! When the result is needed, [`ReadAhead::take`] returns it if the thread
//! has finished, and otherwise tells the thread to stop and leaves it
//! behind (never joined); the caller then does the work itself, at its own
//! priority.
//! (Raising the thread back to normal priority instead would need
//! `CAP_SYS_NICE`: an unprivileged thread cannot leave `SCHED_IDLE` while
//! `RLIMIT_NICE` is 0, the default.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use crate::sys;

/// Set when the result of a read-ahead is no longer wanted; the work checks
/// it between steps and gives up.
#[derive(Clone, Debug, Default)]
pub(crate) struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Whether the work should give up.
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Tells the work to give up.
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Work running on an idle-priority thread; see the module doc.
pub(crate) struct ReadAhead<T> {
    /// Where the thread leaves its result (it never blocks sending).
    result: mpsc::Receiver<T>,
    stop: StopFlag,
}

impl<T: Send + 'static> ReadAhead<T> {
    /// Starts `work` on a thread named `name` at idle priority; `work`
    /// returns `None` when it gave up because the flag was set. `None` when
    /// no thread could be started.
    pub(crate) fn spawn(
        name: &str,
        work: impl FnOnce(&StopFlag) -> Option<T> + Send + 'static,
    ) -> Option<ReadAhead<T>> {
        let stop = StopFlag::default();
        let flag = stop.clone();
        let (sender, result) = mpsc::channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                sys::idle_priority_for_this_thread();
                if let Some(value) = work(&flag) {
                    // The receiver is gone when the result is no longer wanted.
                    let _ = sender.send(value);
                }
            })
            .ok()?;
        Some(ReadAhead { result, stop })
    }

    /// A read-ahead that has finished with `value`.
    #[cfg(test)]
    pub(crate) fn finished(value: T) -> ReadAhead<T> {
        let (sender, result) = mpsc::channel();
        sender.send(value).unwrap();
        ReadAhead {
            result,
            stop: StopFlag::default(),
        }
    }

    /// The result if the work has finished; otherwise `None`, without
    /// waiting: the thread is told to stop and left to end on its own.
    pub(crate) fn take(self) -> Option<T> {
        self.result.try_recv().ok()
    }
}

impl<T> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        self.stop.set();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn the_result_is_delivered() {
        let ahead = ReadAhead::spawn("test-result", |_| Some(7)).unwrap();
        assert_eq!(ahead.result.recv(), Ok(7));
    }

    #[test]
    fn a_finished_read_ahead_gives_its_result() {
        assert_eq!(ReadAhead::finished(7).take(), Some(7));
    }

    #[test]
    fn the_work_runs_at_idle_priority() {
        let (report, idle) = mpsc::channel();
        let _ahead = ReadAhead::spawn("test-idle", move |_| {
            report.send(sys::this_thread_is_idle_priority()).unwrap();
            Some(())
        })
        .unwrap();
        assert!(idle.recv().unwrap());
    }

    /// A read-ahead that never got a CPU (here: one blocked until the test
    /// lets it go) is not waited for: `take` returns at once, and the thread
    /// sees that it is to stop.
    #[test]
    fn an_unfinished_read_ahead_is_left_behind_not_joined() {
        let (release, gate) = mpsc::channel::<()>();
        let (report, saw) = mpsc::channel();
        let ahead = ReadAhead::spawn("test-starved", move |stop| {
            gate.recv().unwrap();
            report.send(stop.is_set()).unwrap();
            (!stop.is_set()).then_some(42)
        })
        .unwrap();
        assert_eq!(ahead.take(), None);
        release.send(()).unwrap();
        assert!(saw.recv().unwrap(), "the thread was not told to stop");
    }
}
