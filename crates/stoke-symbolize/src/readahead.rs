//! Work done ahead of need on CPU time nothing else wants, so that it never
//! slows the target, and never waited for.
//!
//! The costly part (for kallsyms: the kernel generating the text, about
//! 50 ms of CPU) runs in a child process at `SCHED_IDLE`, which copies a
//! file to a pipe; a thread of ours at normal priority turns the stream into
//! a value as it arrives. A task at `SCHED_IDLE` may not run at all while the
//! machine is busy, and busy machines are exactly when people profile. So:
//!
//! - when the result is needed, [`ReadAhead::take`] returns it if it is
//!   ready, and otherwise kills the child and returns `None` at once; the
//!   caller then does the work itself, at its own priority;
//! - no thread of stoke's runs at idle priority. Even a killed thread must
//!   be scheduled to exit, and a process ends only when all its threads
//!   have: an idle-priority thread left behind kept `stoke record` from
//!   exiting for seconds after it wrote its outputs. The child is another
//!   process: stoke never waits for it to die. (Raising an idle task back to
//!   normal priority needs `CAP_SYS_NICE` while `RLIMIT_NICE` is 0, the
//!   default, so that is no way out for unprivileged users.)

use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

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

/// The child while it may still run; taken out by whoever ends it.
type SharedChild = Arc<Mutex<Option<Child>>>;

/// A file read ahead by an idle-priority child; see the module doc.
pub(crate) struct ReadAhead<T> {
    /// Where the parsing thread leaves its result (it never blocks sending).
    result: mpsc::Receiver<T>,
    stop: StopFlag,
    child: SharedChild,
}

/// `cat`, by absolute path (stoke may run as root: no `PATH` lookup).
const CAT: &[&str] = &["/usr/bin/cat", "/bin/cat"];

impl<T: Send + 'static> ReadAhead<T> {
    /// Copies `file` through a pipe with `cat` run at idle priority, and
    /// turns the bytes into a value with `parse` on a thread named `name`;
    /// `parse` returns `None` when it gave up because the flag was set. A
    /// value counts only if `cat` succeeded. `None` when nothing could be
    /// started.
    pub(crate) fn read_file(
        name: &str,
        file: &Path,
        parse: impl FnOnce(ChildStdout, &StopFlag) -> Option<T> + Send + 'static,
    ) -> Option<ReadAhead<T>> {
        let cat = CAT.iter().map(Path::new).find(|p| p.is_file())?;
        let mut command = Command::new(cat);
        command.arg(file);
        ReadAhead::spawn(name, command, parse)
    }

    /// Runs `command` at idle priority and `parse` on its output; see
    /// [`ReadAhead::read_file`].
    pub(crate) fn spawn(
        name: &str,
        mut command: Command,
        parse: impl FnOnce(ChildStdout, &StopFlag) -> Option<T> + Send + 'static,
    ) -> Option<ReadAhead<T>> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        sys::idle_priority_for_child(&mut command);
        let mut child = command.spawn().ok()?;
        let stdout = child.stdout.take()?;
        let child = Arc::new(Mutex::new(Some(child)));
        let stop = StopFlag::default();
        let (sender, result) = mpsc::channel();
        let (flag, ours) = (stop.clone(), Arc::clone(&child));
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let value = parse(stdout, &flag);
                // The pipe is at its end: the child is done or dying.
                let child = ours.lock().unwrap_or_else(PoisonError::into_inner).take();
                let succeeded = child
                    .and_then(|mut child| child.wait().ok())
                    .is_some_and(|status| status.success());
                if let (Some(value), true) = (value, succeeded) {
                    // The receiver is gone when the result is no longer wanted.
                    let _ = sender.send(value);
                }
            });
        let ahead = ReadAhead {
            result,
            stop,
            child,
        };
        // Without the thread, dropping `ahead` kills the child.
        thread.ok().map(|_| ahead)
    }

    /// A read-ahead that has finished with `value`.
    #[cfg(test)]
    pub(crate) fn finished(value: T) -> ReadAhead<T> {
        let (sender, result) = mpsc::channel();
        sender.send(value).unwrap();
        ReadAhead {
            result,
            stop: StopFlag::default(),
            child: Arc::default(),
        }
    }

    /// The result if it is ready; otherwise `None` at once, and the child is
    /// killed (and reaped by the parsing thread once its pipe closes).
    pub(crate) fn take(self) -> Option<T> {
        self.result.try_recv().ok()
    }
}

impl<T> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        self.stop.set();
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(child) = child.as_mut() {
            // SIGKILL; the child is not reaped yet, so its pid is still its.
            let _ = child.kill();
        }
    }
}

/// Reads all of `input` into a string, giving up when `stop` is set.
#[cfg(test)]
fn read_string(mut input: impl std::io::Read, stop: &StopFlag) -> Option<String> {
    let mut text = String::new();
    let mut buffer = [0; 4096];
    loop {
        match input.read(&mut buffer) {
            Ok(0) => return Some(text),
            Ok(n) if !stop.is_set() => text.push_str(&String::from_utf8_lossy(&buffer[..n])),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for the parsing thread's result (a test may wait; stoke never
    /// does).
    fn wait<T>(ahead: ReadAhead<T>) -> Option<T> {
        ahead.result.recv().ok()
    }

    #[test]
    fn a_file_is_read_and_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("text");
        std::fs::write(&file, "hello\n").unwrap();
        let ahead = ReadAhead::read_file("test-read", &file, read_string).unwrap();
        assert_eq!(wait(ahead).as_deref(), Some("hello\n"));
    }

    #[test]
    fn a_failed_read_gives_no_result() {
        let missing = Path::new("/nonexistent/stoke-read-ahead");
        let ahead = ReadAhead::read_file("test-missing", missing, read_string).unwrap();
        assert_eq!(wait(ahead), None);
    }

    #[test]
    fn a_finished_read_ahead_gives_its_result() {
        assert_eq!(ReadAhead::finished(7).take(), Some(7));
    }

    #[test]
    fn the_child_runs_at_idle_priority() {
        // /proc/self/sched of cat itself: `policy : 5` is SCHED_IDLE.
        let ahead =
            ReadAhead::read_file("test-idle", Path::new("/proc/self/sched"), read_string).unwrap();
        let sched = wait(ahead).unwrap();
        let policy = sched
            .lines()
            .find_map(|l| l.strip_prefix("policy"))
            .and_then(|l| l.trim_start_matches([' ', ':']).trim().parse::<i32>().ok());
        assert_eq!(policy, Some(libc::SCHED_IDLE), "{sched}");
    }

    /// A read-ahead that has not finished (here: a child that never writes)
    /// is not waited for: `take` returns at once and the child is killed.
    #[test]
    fn an_unfinished_read_ahead_is_left_behind_not_waited_for() {
        let mut command = Command::new("sleep");
        command.arg("600");
        let ahead = ReadAhead::spawn("test-starved", command, read_string).unwrap();
        let pid = ahead.child.lock().unwrap().as_ref().unwrap().id();
        let child = Arc::clone(&ahead.child);
        assert_eq!(ahead.take(), None);
        // The child dies when the scheduler next runs it; until the parsing
        // thread reaps it, SIGKILL shows as pending (or it is a zombie).
        let guard = child.lock().unwrap();
        if guard.is_some() {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_string()
            };
            let killed =
                |mask: String| u64::from_str_radix(&mask, 16).is_ok_and(|m| m & 0x100 != 0);
            assert!(
                killed(field("SigPnd:"))
                    || killed(field("ShdPnd:"))
                    || field("State:").starts_with('Z'),
                "{status}"
            );
        }
    }
}
