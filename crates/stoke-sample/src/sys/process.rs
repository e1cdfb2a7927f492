//! Processes: fork/exec of a held child, waiting, signals and pidfds.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The byte that releases a held child.
pub(crate) const GO_BYTE: u8 = b'g';

/// The exit code of a held child that was never released or whose exec
/// failed (the shell's "command not found/not executable" convention).
const HELD_CHILD_EXIT: libc::c_int = 127;

/// Everything the child needs after `fork`, prepared before it (no
/// allocation is allowed between fork and exec).
pub(crate) struct ExecPlan {
    path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// Make descriptor 1 a copy of descriptor 2 before exec.
    stdout_to_stderr: bool,
}

impl ExecPlan {
    /// A plan to exec `path` with `argv` and environment `envp`.
    pub(crate) fn new(path: CString, argv: Vec<CString>, envp: Vec<CString>) -> ExecPlan {
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = envp.iter().map(|e| e.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        ExecPlan {
            path,
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
            stdout_to_stderr: false,
        }
    }

    /// The same plan, with the program's standard output sent to the
    /// standard error it inherits when `yes`.
    pub(crate) fn stdout_to_stderr(mut self, yes: bool) -> ExecPlan {
        self.stdout_to_stderr = yes;
        self
    }
}

/// The descriptors the held child uses.
pub(crate) struct HoldPipes<'a> {
    /// Read end of the go pipe: the child blocks on it.
    pub(crate) go_read: &'a OwnedFd,
    /// Write end of the go pipe: the child closes its copy, so that it sees
    /// end-of-file if the parent dies.
    pub(crate) go_write: &'a OwnedFd,
    /// Write end (close-on-exec) of the error pipe: a failed exec's errno.
    pub(crate) err_write: &'a OwnedFd,
}

/// Creates a close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are new descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks a child that waits until [`GO_BYTE`] arrives on the go pipe, then
/// execs the plan. If the go pipe closes first, the child exits with 127
/// without exec'ing; if exec fails, its errno is written to the error pipe.
/// Returns the child's pid.
pub(crate) fn fork_held(plan: &ExecPlan, pipes: &HoldPipes<'_>) -> io::Result<libc::pid_t> {
    let go_read = pipes.go_read.as_raw_fd();
    let go_write = pipes.go_write.as_raw_fd();
    let err_write = pipes.err_write.as_raw_fd();
    // SAFETY: fork itself is sound; the child below only makes
    // async-signal-safe calls on data prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child of a possibly multi-threaded parent; nothing
        // here allocates or takes locks.
        unsafe { held_child(plan, go_read, go_write, err_write) }
    }
    Ok(pid)
}

/// The child side of [`fork_held`]. Never returns.
///
/// # Safety
/// Must only be called in a freshly forked child; the plan's pointers must be
/// valid (they are: the plan was built before the fork).
unsafe fn held_child(plan: &ExecPlan, go_read: RawFd, go_write: RawFd, err_write: RawFd) -> ! {
    // SAFETY: all calls are async-signal-safe system calls on local data or
    // on descriptors inherited from the parent; see the function contract.
    unsafe {
        // Undo what the Rust runtime (and stoke's signal handling) changed:
        // an ignored SIGPIPE and blocked signals would be inherited by exec.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGPIPE, &action, std::ptr::null_mut());

        libc::close(go_write);
        let mut byte = 0u8;
        loop {
            let n = libc::read(go_read, (&mut byte as *mut u8).cast(), 1);
            if n == 1 && byte == GO_BYTE {
                break;
            }
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            libc::_exit(HELD_CHILD_EXIT);
        }
        libc::close(go_read);
        if plan.stdout_to_stderr && libc::dup2(2, 1) < 0 {
            let errno = (*libc::__errno_location()).to_ne_bytes();
            libc::write(err_write, errno.as_ptr().cast(), errno.len());
            libc::_exit(HELD_CHILD_EXIT);
        }
        libc::execve(
            plan.path.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        );
        let errno = (*libc::__errno_location()).to_ne_bytes();
        libc::write(err_write, errno.as_ptr().cast(), errno.len());
        libc::_exit(HELD_CHILD_EXIT)
    }
}

/// Waits for child `pid` to exit and reaps it; returns the raw wait status.
pub(crate) fn wait(pid: libc::pid_t) -> io::Result<i32> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a live local for the kernel to write.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret >= 0 {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Sends `signal` to process `pid`.
pub(crate) fn kill(pid: libc::pid_t, signal: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `pidfd_open(2)`: a descriptor for process `pid` that becomes readable
/// when it exits (close-on-exec).
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// `pidfd_send_signal(2)`: signals the process behind `pidfd` (immune to pid
/// reuse).
pub(crate) fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed; the descriptor is open.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The effective user id of stoke.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// The soft `RLIMIT_MEMLOCK` of stoke, in bytes; `None` when unlimited or
/// unreadable.
pub(crate) fn memlock_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `struct rlimit` through the pointer,
    // which points to a live local.
    let ret = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    (ret == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Whether the file at `path` carries file capabilities (a
/// `security.capability` extended attribute, set by `setcap`).
pub(crate) fn has_file_capabilities(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated and live; a null buffer of
    // size 0 asks only for the attribute's size.
    let size = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    size > 0
}
