//! `ptrace(2)` under `PTRACE_SEIZE`, and `waitpid(2)` for traced threads.
//!
//! Only the requests the ptrace sampler uses. Every wrapper keeps the errno.

use std::io;

/// `PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACEEXEC`: follow
/// children and execs. Not `PTRACE_O_TRACECLONE`: a clone event stops the
/// thread that starts a thread until stoke looks, and on a busy machine
/// each such stop costs it a wait for a CPU (200 threads started took 2 s
/// instead of 0.1 s); new threads are found in `/proc/PID/task` instead.
/// Never `PTRACE_O_EXITKILL`: stoke's death must not kill the target.
pub(crate) const FOLLOW_ALL: libc::c_int =
    libc::PTRACE_O_TRACEFORK | libc::PTRACE_O_TRACEVFORK | libc::PTRACE_O_TRACEEXEC;

/// The x86_64 user registers of a stopped thread (`struct user_regs_struct`).
pub(crate) type UserRegs = libc::user_regs_struct;

fn request(
    req: libc::c_uint,
    tid: libc::pid_t,
    addr: usize,
    data: usize,
) -> io::Result<libc::c_long> {
    // SAFETY: every request sent through this helper takes plain integers in
    // `addr` and `data` (no pointer), so the kernel writes nothing into our
    // memory.
    let ret = unsafe { libc::ptrace(req, tid, addr as *mut libc::c_void, data) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `PTRACE_SEIZE`: traces thread `tid` without stopping it.
pub(crate) fn seize(tid: libc::pid_t, options: libc::c_int) -> io::Result<()> {
    request(libc::PTRACE_SEIZE, tid, 0, options as usize).map(drop)
}

/// `PTRACE_INTERRUPT`: asks a seized thread to stop (it reports a
/// `PTRACE_EVENT_STOP`).
pub(crate) fn interrupt(tid: libc::pid_t) -> io::Result<()> {
    request(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

/// `PTRACE_CONT`: resumes a stopped thread, delivering `signal` (0: none).
pub(crate) fn cont(tid: libc::pid_t, signal: i32) -> io::Result<()> {
    request(libc::PTRACE_CONT, tid, 0, signal as usize).map(drop)
}

/// `PTRACE_LISTEN`: lets a thread in a group-stop stay stopped, while
/// still reporting when it is woken (SIGCONT) or killed.
pub(crate) fn listen(tid: libc::pid_t) -> io::Result<()> {
    request(libc::PTRACE_LISTEN, tid, 0, 0).map(drop)
}

/// `PTRACE_DETACH`: stops tracing a stopped thread, which then runs on
/// with `signal` delivered (0: none).
pub(crate) fn detach(tid: libc::pid_t, signal: i32) -> io::Result<()> {
    request(libc::PTRACE_DETACH, tid, 0, signal as usize).map(drop)
}

/// `PTRACE_GETEVENTMSG`: the new thread's id after a clone/fork event, the
/// former thread id after an exec event.
pub(crate) fn event_message(tid: libc::pid_t) -> io::Result<u64> {
    let mut message: libc::c_ulong = 0;
    // SAFETY: PTRACE_GETEVENTMSG writes one unsigned long through `data`,
    // which points to a live local.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            &mut message as *mut libc::c_ulong,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(message)
    }
}

/// `PTRACE_GETREGS`: the user registers of a stopped thread.
pub(crate) fn registers(tid: libc::pid_t) -> io::Result<UserRegs> {
    // SAFETY: an all-zero `user_regs_struct` is a valid value (plain integers).
    let mut regs: UserRegs = unsafe { std::mem::zeroed() };
    // SAFETY: PTRACE_GETREGS writes one `user_regs_struct` through `data`,
    // which points to a live local of that type.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGS,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            &mut regs as *mut UserRegs,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(regs)
    }
}

/// `PTRACE_SETREGS`: replaces the user registers of a stopped thread.
pub(crate) fn set_registers(tid: libc::pid_t, regs: &UserRegs) -> io::Result<()> {
    // SAFETY: PTRACE_SETREGS reads one `user_regs_struct` through `data`,
    // which points to a live value of that type; nothing is written to it.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGS,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            regs as *const UserRegs,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// What `waitpid` reported about a traced thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Killed(i32),
    /// It stopped: `signal` is `WSTOPSIG`, `event` the `PTRACE_EVENT_*`
    /// in bits 16..24 of the status (0 for a signal-delivery stop).
    Stopped {
        /// `WSTOPSIG(status)`.
        signal: i32,
        /// `status >> 16`.
        event: i32,
    },
    /// Something else (e.g. continued); nothing to do.
    Other,
}

impl WaitStatus {
    /// Decodes a raw wait status.
    pub(crate) fn from_raw(status: i32) -> WaitStatus {
        if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Killed(libc::WTERMSIG(status))
        } else if libc::WIFSTOPPED(status) {
            WaitStatus::Stopped {
                signal: libc::WSTOPSIG(status),
                event: (status >> 16) & 0xff,
            }
        } else {
            WaitStatus::Other
        }
    }
}

/// Lowers the calling thread's nice value to `nice` if it is higher and
/// stoke may (root, `CAP_SYS_NICE`, or `RLIMIT_NICE`); quietly does
/// nothing otherwise. Only this thread changes (`PRIO_PROCESS` with id 0
/// is the calling thread on Linux), and processes forked before keep
/// theirs.
pub(crate) fn raise_own_priority(nice: i32) {
    // SAFETY: getpriority/setpriority take plain integers; -1 is a valid
    // result, so errno is not looked at (a failure leaves things as they are).
    unsafe {
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        if now > nice {
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
        }
    }
}

/// The child or traced thread with a status waiting to be collected, if
/// any, without collecting it: `waitid(P_ALL, …, WNOHANG | WNOWAIT)`. One
/// system call however many threads are traced; the status stays queued
/// for [`wait`] on that thread (so a child that is not a traced thread is
/// never reaped by this).
pub(crate) fn peek_any() -> io::Result<Option<libc::pid_t>> {
    let flags = libc::WEXITED | libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL;
    loop {
        // SAFETY: an all-zero `siginfo_t` is a valid value of the plain C
        // struct; the kernel leaves `si_pid` zero when nothing is waiting.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a live local for the kernel to write.
        let ret = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) };
        if ret == 0 {
            // SAFETY: waitid filled a SIGCHLD `siginfo_t` (or left it
            // zeroed), whose `si_pid` is always set.
            let pid = unsafe { info.si_pid() };
            return Ok((pid > 0).then_some(pid));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// `waitpid(pid, __WALL [| WNOHANG])` for traced threads (`pid` -1: any).
/// `Ok(None)` when `nohang` and nothing changed; EINTR is retried. Returns
/// the thread and its raw status.
pub(crate) fn wait(pid: libc::pid_t, nohang: bool) -> io::Result<Option<(libc::pid_t, i32)>> {
    let flags = libc::__WALL | if nohang { libc::WNOHANG } else { 0 };
    loop {
        let mut status = 0;
        // SAFETY: `status` is a live local for the kernel to write.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret > 0 {
            return Ok(Some((ret, status)));
        }
        if ret == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
