//! `perf_event_open(2)` and the perf ioctls.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::perf::attr::PerfEventAttr;

/// `PERF_FLAG_FD_CLOEXEC`: the new descriptor is close-on-exec.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// `_IO('$', 0)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
/// `_IO('$', 1)`.
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
/// `_IO('$', 5)`.
const PERF_EVENT_IOC_SET_OUTPUT: libc::c_ulong = 0x2405;
/// `_IOR('$', 7, u64)`.
const PERF_EVENT_IOC_ID: libc::c_ulong = 0x8008_2407;

/// Opens one event on task `pid` (a thread id, or -1) and CPU `cpu` (or -1).
pub(crate) fn perf_event_open(attr: &PerfEventAttr, pid: i32, cpu: i32) -> io::Result<OwnedFd> {
    // SAFETY: `attr` points to a valid, initialized `perf_event_attr` whose
    // `size` field says how many bytes the kernel may read; the kernel does
    // not keep the pointer. The other arguments are plain integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const PerfEventAttr,
            pid as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall succeeded, so `ret` is a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) })
}

/// `PERF_FLAG_PID_CGROUP`: the pid argument is a cgroup folder's descriptor.
const PERF_FLAG_PID_CGROUP: libc::c_ulong = 1 << 2;

/// Opens one event on CPU `cpu` counting only tasks of the cgroup (v2)
/// folder open as `cgroup` (perf's `-G`).
pub(crate) fn perf_event_open_cgroup(
    attr: &PerfEventAttr,
    cgroup: &OwnedFd,
    cpu: i32,
) -> io::Result<OwnedFd> {
    // SAFETY: as in `perf_event_open`; the pid argument is an open
    // descriptor of a cgroup folder, which the kernel only reads.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const PerfEventAttr,
            cgroup.as_raw_fd() as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC | PERF_FLAG_PID_CGROUP,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall succeeded, so `ret` is a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) })
}

fn ioctl(fd: &OwnedFd, request: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: `fd` is an open perf event descriptor and the requests used in
    // this module take an integer argument (no pointer).
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `PERF_EVENT_IOC_ENABLE`: starts counting and sampling (also for the
/// event's inherited children).
pub(crate) fn enable(fd: &OwnedFd) -> io::Result<()> {
    ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
}

/// `PERF_EVENT_IOC_DISABLE`: stops counting and sampling.
pub(crate) fn disable(fd: &OwnedFd) -> io::Result<()> {
    ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)
}

/// `PERF_EVENT_IOC_SET_OUTPUT`: sends `fd`'s records into `target`'s ring
/// buffer (both on the same CPU).
pub(crate) fn set_output(fd: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    ioctl(
        fd,
        PERF_EVENT_IOC_SET_OUTPUT,
        target.as_raw_fd() as libc::c_ulong,
    )
}

/// `PERF_EVENT_IOC_ID`: the id the kernel puts into this event's records
/// (`PERF_SAMPLE_IDENTIFIER`).
pub(crate) fn event_id(fd: &OwnedFd) -> io::Result<u64> {
    let mut id: u64 = 0;
    // SAFETY: PERF_EVENT_IOC_ID writes one u64 through the pointer, which
    // points to a live local.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ID, &mut id as *mut u64) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(id)
    }
}

/// Reads an event opened with `PERF_FORMAT_TOTAL_TIME_RUNNING`: its count
/// and the nanoseconds it ran (the time its task was on the CPU), summed
/// over its inherited children, also those that exited.
pub(crate) fn read_count_and_running(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    let mut values = [0u64; 2];
    // SAFETY: `read` writes at most `size_of_val(&values)` bytes into the
    // live local array; `fd` is an open perf event descriptor.
    let ret = unsafe {
        libc::read(
            fd.as_raw_fd(),
            values.as_mut_ptr().cast::<libc::c_void>(),
            std::mem::size_of_val(&values),
        )
    };
    match ret {
        16 => Ok((values[0], values[1])),
        r if r < 0 => Err(io::Error::last_os_error()),
        _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
    }
}
