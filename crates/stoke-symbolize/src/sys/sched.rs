//! Scheduling class of a child process.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the process `command` starts run at `SCHED_IDLE`: only on CPU time
/// nothing else wants, so work done ahead of need never slows the target.
/// Best effort: an error leaves the child as it was.
pub(crate) fn idle_priority_for_child(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it makes one system call
    // (sched_setscheduler on the calling process, pid 0, with a valid param
    // struct it only reads), allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| {
            let param = libc::sched_param { sched_priority: 0 };
            let _ = libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
            Ok(())
        });
    }
}
