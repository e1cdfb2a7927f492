//! `process_vm_readv(2)`: reading another process's memory.

use std::io;

/// The largest number of remote pieces read in one call.
const MAX_PIECES: usize = 64;

/// Reads up to `buf.len()` bytes at `addr` in process `pid` into `buf`.
/// The read is split at page boundaries, so it stops cleanly at the first
/// unmapped page: returns how many bytes (from the start) were read.
pub(crate) fn read(pid: libc::pid_t, addr: u64, buf: &mut [u8], page: usize) -> io::Result<usize> {
    let page = page.max(1) as u64;
    let mut remote = Vec::with_capacity(MAX_PIECES);
    let mut at = addr;
    let end = addr.saturating_add(buf.len() as u64);
    while at < end && remote.len() < MAX_PIECES {
        let next = ((at / page) + 1).saturating_mul(page).min(end);
        remote.push(libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: (next - at) as usize,
        });
        at = next;
    }
    let wanted = (at - addr) as usize;
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: wanted,
    };
    // SAFETY: `local` describes `wanted <= buf.len()` bytes of the exclusively
    // borrowed `buf`; the remote iovecs are only addresses in the other
    // process, which the kernel checks.
    let ret = unsafe {
        libc::process_vm_readv(
            pid,
            &local,
            1,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_stops_at_unmapped_pages() {
        let data: Vec<u8> = (0..=255).collect();
        let mut buf = vec![0; 256];
        let me = std::process::id() as libc::pid_t;
        let n = read(me, data.as_ptr() as u64, &mut buf, 4096).unwrap();
        assert_eq!((n, &buf[..]), (256, &data[..]));
        // Address 0 is never mapped.
        assert!(read(me, 0, &mut buf, 4096).is_err());
    }
}
