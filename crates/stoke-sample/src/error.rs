//! Errors of targets and samplers. Each keeps the errno and says what to do.

use std::io;

use stoke_model::Pid;

/// Why attaching, launching or sampling failed.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The pid names no process.
    #[error("no process with pid {0}")]
    NoSuchProcess(Pid),
    /// The command was not found on PATH (or the path does not exist).
    #[error("command not found: {0}")]
    CommandNotFound(String),
    /// The command exists but could not be executed.
    #[error("cannot run {command}: {source}")]
    Exec {
        /// The command.
        command: String,
        /// The errno of `execve`.
        source: io::Error,
    },
    /// The kernel refused perf events for lack of permission.
    /// The message names the current `perf_event_paranoid` and the remedy.
    #[error("{message}")]
    PermissionDenied {
        /// The full explanation with the remedy.
        message: String,
        /// The errno (EACCES or EPERM).
        source: io::Error,
    },
    /// ptrace refused a process for a reason permissions cannot fix: it is
    /// a zombie, exiting, or already traced by another program.
    #[error("{message}")]
    NotTraceable {
        /// What the process is doing, e.g. "already traced by process 456 (gdb)".
        message: String,
        /// The errno of `PTRACE_SEIZE`.
        source: io::Error,
    },
    /// The requested counter does not exist on this machine (e.g. no PMU).
    #[error("{event} is not supported on this machine: {source}")]
    EventNotSupported {
        /// The event name.
        event: &'static str,
        /// The errno (ENOENT, EOPNOTSUPP, ENODEV).
        source: io::Error,
    },
    /// Off-CPU samples are taken in the kernel, which perf events exclude
    /// for this user.
    #[error(
        "context-switch samples are taken in the kernel, which perf_event_paranoid {paranoid} \
         excludes for unprivileged users; `sysctl kernel.perf_event_paranoid=1` allows them"
    )]
    KernelExcluded {
        /// The `perf_event_paranoid` level read.
        paranoid: i32,
    },
    /// The options ask for something the chosen sampler cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// Another system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// Which call failed, for code that branches on it.
        call: Call,
        /// What was being done, e.g. `perf_event_open(pid 42, cpu 1)`.
        what: String,
        /// The errno.
        source: io::Error,
    },
}

/// The system call (or family) a [`SampleError::Sys`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `perf_event_open`.
    PerfEventOpen,
    /// An ioctl on a perf event (enable, set-output, id).
    PerfIoctl,
    /// Mapping a perf ring buffer.
    PerfMmap,
    /// `poll` on perf events.
    Poll,
    /// A `ptrace` request.
    Ptrace,
    /// Waiting for a child (`waitpid`, `waitid`).
    Wait,
    /// Sending a signal (`kill`, `pidfd_send_signal`).
    Signal,
    /// `fork` of a command to launch.
    Fork,
    /// `pipe` or reading one.
    Pipe,
    /// `pidfd_open` or `dup` of a pidfd.
    Pidfd,
    /// `nanosleep`.
    Sleep,
    /// Reading a file of `/proc` or `/sys`.
    ReadProc,
}

/// A closure turning an errno into [`SampleError::Sys`] for `call`.
pub(crate) fn sys_error(call: Call, what: &str) -> impl FnOnce(io::Error) -> SampleError + '_ {
    move |source| SampleError::Sys {
        call,
        what: what.to_string(),
        source,
    }
}
