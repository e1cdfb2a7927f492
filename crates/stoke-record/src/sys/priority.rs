//! The calling thread's nice value.

/// Lowers the calling thread's nice value to `nice` if it is higher and
/// stoke may (root, `CAP_SYS_NICE`, `RLIMIT_NICE`); quietly does nothing
/// otherwise. Only the calling thread changes (`PRIO_PROCESS` with id 0 is
/// the calling thread on Linux); processes it forked earlier keep theirs.
pub(crate) fn raise_own(nice: i32) {
    // SAFETY: getpriority/setpriority take plain integers and write no
    // memory; a failure leaves the nice value as it was, which is fine.
    unsafe {
        if libc::getpriority(libc::PRIO_PROCESS, 0) > nice {
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
        }
    }
}
