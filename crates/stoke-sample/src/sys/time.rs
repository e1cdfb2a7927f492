//! Clocks and sleeping that a signal can cut short.

use std::io;
use std::time::Duration;

/// Clock ticks per second, the unit of CPU times in `/proc/PID/stat`.
pub(crate) fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (the clock perf samples are stamped with
/// by default, so ptrace samples sort the same way).
pub(crate) fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The CPU time the calling thread has used, in nanoseconds
/// (`CLOCK_THREAD_CPUTIME_ID`): what a piece of work cost, not counting
/// time spent waiting for a CPU.
pub(crate) fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live local for the kernel to fill; both clocks used
    // here always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Sleeps for `duration`; returns early with `Ok(true)` when a signal
/// handler runs, unlike `std::thread::sleep`, so callers can check flags.
pub(crate) fn nap(duration: Duration) -> io::Result<bool> {
    let ts = libc::timespec {
        tv_sec: duration.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: duration.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec; the remaining time is not wanted
    // (null is allowed).
    let ret = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
        return Ok(true);
    }
    Ok(false)
}
