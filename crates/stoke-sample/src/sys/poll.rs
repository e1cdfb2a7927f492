//! `poll(2)`.

use std::io;

/// `poll(2)` on `fds`, waiting at most `timeout_ms` (-1: forever).
/// Returns the number of descriptors with events; EINTR is an error of kind
/// `Interrupted`.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()`
    // pollfd structs.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}
