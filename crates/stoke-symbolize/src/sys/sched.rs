//! Scheduling class of the calling thread.

/// Moves the calling thread to `SCHED_IDLE`: it then runs only on CPU time
/// nothing else wants, so work done ahead of need never slows the target.
/// Best effort: an error leaves the thread as it was.
pub(crate) fn idle_priority_for_this_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is a valid, initialized
    // struct that the call only reads. The call changes nothing but this
    // thread's scheduling class.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

/// Whether the calling thread runs at `SCHED_IDLE`.
#[cfg(test)]
pub(crate) fn this_thread_is_idle_priority() -> bool {
    // SAFETY: pid 0 names the calling thread; the call only reads its policy.
    unsafe { libc::sched_getscheduler(0) == libc::SCHED_IDLE }
}
