//! One look at every thread of a process, for `stoke dump`: what `/proc`
//! says of it (state, wait channel, kernel stack), then its registers and
//! the top of its stack, each thread stopped on its own for as short a
//! time as it takes: `PTRACE_SEIZE`, `PTRACE_INTERRUPT`, wait for the stop,
//! `PTRACE_GETREGS`, copy the stack, `PTRACE_DETACH`. The thread is never
//! left stopped or traced: every path after the seize detaches.

use std::io;
use std::time::{Duration, Instant};

use stoke_model::{Pid, Tid};

use crate::ptrace::capture::{capture_with, restartable, syscall_of, Capture};
use crate::ptrace::launch::seize_error;
use crate::sys::ptrace::{self as sys, WaitStatus};
use crate::Sample;
use crate::{procfs, SampleError, StackCapture, Syscall};

/// `PTRACE_EVENT_STOP`: the stop `PTRACE_INTERRUPT` (or a group stop) reports.
const PTRACE_EVENT_STOP: i32 = 128;

/// A thread's scheduling state, as `/proc/PID/task/TID/stat` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// On a CPU or ready to run (`R`).
    Running,
    /// Sleeping, woken by a signal (`S`).
    Sleeping,
    /// In an uninterruptible wait, usually for I/O (`D`).
    DiskSleep,
    /// Stopped by a signal or a tracer (`T`, `t`).
    Stopped,
    /// An idle kernel thread (`I`).
    Idle,
    /// Exited, not yet reaped (`Z`, `X`).
    Zombie,
    /// A letter this table does not know.
    Other(char),
}

impl ThreadState {
    fn from_letter(letter: char) -> ThreadState {
        match letter {
            'R' => ThreadState::Running,
            'S' => ThreadState::Sleeping,
            'D' => ThreadState::DiskSleep,
            'T' | 't' => ThreadState::Stopped,
            'I' => ThreadState::Idle,
            'Z' | 'X' => ThreadState::Zombie,
            other => ThreadState::Other(other),
        }
    }

    /// A word for it: `running`, `sleeping`, …
    pub fn word(self) -> &'static str {
        match self {
            ThreadState::Running => "running",
            ThreadState::Sleeping => "sleeping",
            ThreadState::DiskSleep => "disk-sleep",
            ThreadState::Stopped => "stopped",
            ThreadState::Idle => "idle",
            ThreadState::Zombie => "zombie",
            ThreadState::Other(_) => "unknown",
        }
    }
}

/// What one thread was doing.
#[derive(Clone, Debug)]
pub struct ThreadSnapshot {
    /// The thread.
    pub tid: Tid,
    /// Its name (`comm`).
    pub name: Option<String>,
    /// Its state just before it was stopped.
    pub state: ThreadState,
    /// The system call it was in when stopped (`orig_rax`), if any.
    pub syscall: Option<Syscall>,
    /// Where in the kernel it slept (`/proc/…/wchan`), if it did.
    pub wchan: Option<String>,
    /// Kernel functions, leaf first (`/proc/…/stack`, readable by root
    /// only); `None` when unreadable.
    pub kernel_stack: Option<Vec<String>>,
    /// Its registers and stack copy, as a sample (none when it could not be
    /// stopped: see `error`).
    pub sample: Option<Sample>,
    /// How long it was stopped, from the interrupt to the detach.
    pub stopped_for: Duration,
    /// Why it could not be stopped or read.
    pub error: Option<String>,
}

/// Every thread of `pid`, each stopped in turn for as short a time as
/// possible, with `stack_size` bytes of its stack copied. A thread that
/// exits meanwhile is left out. Fails only when the process cannot be
/// traced at all (no such process, no permission, another tracer).
pub fn snapshot(pid: Pid, stack_size: u32) -> Result<Vec<ThreadSnapshot>, SampleError> {
    let tids = procfs::threads(pid)?;
    let how = Capture {
        stack: StackCapture::RegsAndStack { size: stack_size },
        period: 1,
    };
    let mut threads = Vec::with_capacity(tids.len());
    let mut traced_any = false;
    let mut first_error = None;
    for tid in tids {
        let task = format!("/proc/{}/task/{}", pid.0, tid.0);
        let Some(state) = read_state(&task) else {
            continue; // gone
        };
        let wchan = std::fs::read_to_string(format!("{task}/wchan"))
            .ok()
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty() && w != "0");
        let kernel_stack = std::fs::read_to_string(format!("{task}/stack"))
            .ok()
            .map(|text| parse_kernel_stack(&text));
        let name = procfs::thread_name(pid, tid);
        let mut thread = ThreadSnapshot {
            tid,
            name,
            state,
            syscall: None,
            wchan,
            kernel_stack,
            sample: None,
            stopped_for: Duration::ZERO,
            error: None,
        };
        match stop_and_read(pid, tid, &how) {
            Ok(Some((sample, syscall, stopped_for))) => {
                traced_any = true;
                thread.sample = Some(sample);
                thread.syscall = syscall;
                thread.stopped_for = stopped_for;
            }
            Ok(None) => continue, // exited meanwhile
            Err(e) => {
                thread.error = Some(e.to_string());
                first_error.get_or_insert(e);
            }
        }
        threads.push(thread);
    }
    match first_error {
        Some(e) if !traced_any => Err(seize_error(pid, e)),
        _ => Ok(threads),
    }
}

/// Stops one thread, reads it and lets it go. `Ok(None)`: it exited.
fn stop_and_read(
    pid: Pid,
    tid: Tid,
    how: &Capture,
) -> io::Result<Option<(Sample, Option<Syscall>, Duration)>> {
    let raw = tid.0 as libc::pid_t;
    match sys::seize(raw, 0) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(e),
    }
    let stopped_at = Instant::now();
    if let Err(e) = sys::interrupt(raw) {
        let _ = sys::detach(raw, 0);
        return if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // The stop: the interrupt's, a group stop's, or a signal's on its way
    // (passed on at the detach).
    let mut pass_on = 0;
    loop {
        match sys::wait(raw, false) {
            Ok(Some((_, status))) => match WaitStatus::from_raw(status) {
                WaitStatus::Stopped { event, .. } if event == PTRACE_EVENT_STOP => break,
                WaitStatus::Stopped { signal, .. } => {
                    pass_on = signal;
                    break;
                }
                WaitStatus::Exited(_) | WaitStatus::Killed(_) => return Ok(None),
                WaitStatus::Other => continue,
            },
            Ok(None) => continue,
            Err(e) => {
                let _ = sys::detach(raw, 0);
                return if e.raw_os_error() == Some(libc::ECHILD) {
                    Ok(None)
                } else {
                    Err(e)
                };
            }
        }
    }
    let read = sys::registers(raw).map(|regs| {
        let sample = capture_with(pid, tid, &regs, 0, None, &mut None, how);
        if let Some(fixed) = restartable(&regs) {
            let _ = sys::set_registers(raw, &fixed);
        }
        (sample, syscall_of(&regs))
    });
    let detached = sys::detach(raw, pass_on);
    let stopped_for = stopped_at.elapsed();
    match (read, detached) {
        (Ok((sample, syscall)), _) => Ok(Some((sample, syscall, stopped_for))),
        (Err(e), _) if e.raw_os_error() == Some(libc::ESRCH) => Ok(None),
        (Err(e), _) => Err(e),
    }
}

/// The state letter of `/proc/PID/task/TID/stat` (after the name, which
/// may hold spaces and parentheses).
fn read_state(task: &str) -> Option<ThreadState> {
    let stat = std::fs::read_to_string(format!("{task}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let letter = after.trim_start().chars().next()?;
    Some(ThreadState::from_letter(letter))
}

/// `[<0>] pipe_read+0x2d4/0x460` lines to function names, leaf first.
fn parse_kernel_stack(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let name = line.split_once("] ").map_or(line, |(_, n)| n).trim();
            let name = name.split('+').next().unwrap_or(name).trim();
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_stacks_are_function_names_leaf_first() {
        let text = "[<0>] pipe_read+0x2d4/0x460\n[<0>] vfs_read+0x2a5/0x2c0\n";
        assert_eq!(parse_kernel_stack(text), ["pipe_read", "vfs_read"]);
        assert_eq!(ThreadState::from_letter('S').word(), "sleeping");
        assert_eq!(ThreadState::from_letter('t'), ThreadState::Stopped);
    }
}
