//! The memory-mapped ring buffer of a perf event.
//!
//! The mapping is one metadata page (`struct perf_event_mmap_page`) followed
//! by 2^n data pages. The kernel advances `data_head` as it writes records;
//! we read everything up to it and then advance `data_tail`, which tells the
//! kernel the space is free again (mapping it writable selects this
//! non-overwriting mode).

use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// Offsets of fields in `struct perf_event_mmap_page` (stable kernel ABI).
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;
const DATA_OFFSET: usize = 1040;
const DATA_SIZE: usize = 1048;

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// A perf ring buffer mapping; unmapped on drop.
#[derive(Debug)]
pub(crate) struct RingBuffer {
    base: NonNull<u8>,
    len: usize,
    data_offset: usize,
    data_size: usize,
}

// SAFETY: the mapping is owned exclusively by this value (no aliasing
// handles are given out), so moving it to another thread is sound.
unsafe impl Send for RingBuffer {}

impl RingBuffer {
    /// Maps the ring buffer of event `fd` with `data_pages` data pages (a
    /// power of two).
    pub(crate) fn map(fd: &OwnedFd, data_pages: usize) -> io::Result<RingBuffer> {
        if !data_pages.is_power_of_two() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let page = page_size();
        let len = (data_pages + 1) * page;
        // SAFETY: a fresh shared mapping of a perf event descriptor at a
        // kernel-chosen address; it aliases no Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        let mut ring = RingBuffer {
            base,
            len,
            data_offset: page,
            data_size: len - page,
        };
        // Kernels since 4.1 publish where the data area is; older ones leave 0.
        let (offset, size) = (ring.load(DATA_OFFSET), ring.load(DATA_SIZE));
        if size != 0 && (offset as usize).saturating_add(size as usize) <= len {
            ring.data_offset = offset as usize;
            ring.data_size = size as usize;
        }
        Ok(ring)
    }

    /// The size of the data area in bytes.
    pub(crate) fn data_size(&self) -> usize {
        self.data_size
    }

    fn field(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: `offset` is one of the 8-byte aligned u64 fields inside the
        // first (metadata) page, which stays mapped as long as `self` lives.
        // The kernel updates these fields concurrently, so they are only
        // accessed atomically.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast::<u64>()) }
    }

    fn load(&self, offset: usize) -> u64 {
        self.field(offset).load(Ordering::Acquire)
    }

    /// Appends every byte written since the last call to `out`, in order
    /// (a record that wraps around the end of the area comes out whole), and
    /// hands the space back to the kernel. Returns the number of bytes.
    pub(crate) fn read_into(&mut self, out: &mut Vec<u8>) -> usize {
        let head = self.field(DATA_HEAD).load(Ordering::Acquire);
        let tail = self.field(DATA_TAIL).load(Ordering::Relaxed);
        let available = head.wrapping_sub(tail);
        if available == 0 {
            return 0;
        }
        if available > self.data_size as u64 {
            // Cannot happen in non-overwrite mode; resynchronize rather than
            // read garbage.
            self.field(DATA_TAIL).store(head, Ordering::Release);
            return 0;
        }
        let (end_part, start_part) = unread_spans(tail, head, self.data_size);
        for span in [end_part, start_part] {
            // SAFETY: the bytes in [tail, head) of the data area were
            // completely written by the kernel before it published `head`
            // (acquire load above) and it does not touch them until we
            // advance `data_tail`. `unread_spans` keeps both spans inside the
            // data area of the live mapping.
            unsafe {
                let data = self.base.as_ptr().add(self.data_offset);
                out.extend_from_slice(std::slice::from_raw_parts(data.add(span.start), span.len()));
            }
        }
        self.field(DATA_TAIL).store(head, Ordering::Release);
        available as usize
    }
}

/// Where the unread bytes `[tail, head)` of a data area of `size` bytes
/// lie: a span up to the end of the area, then one from its start (empty
/// unless the bytes wrap around). Requires `head - tail <= size`.
pub(crate) fn unread_spans(tail: u64, head: u64, size: usize) -> (Range<usize>, Range<usize>) {
    let available = (head.wrapping_sub(tail) as usize).min(size);
    let start = (tail % size.max(1) as u64) as usize;
    let first = available.min(size - start);
    (start..start + first, 0..available - first)
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe the mapping made in `map`, and no
        // reference into it outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_bytes_wrap_around_the_end() {
        assert_eq!(unread_spans(0, 16, 64), (0..16, 0..0));
        assert_eq!(unread_spans(56, 72, 64), (56..64, 0..8));
        assert_eq!(unread_spans(64, 128, 64), (0..64, 0..0));
        assert_eq!(unread_spans(100, 100, 64), (36..36, 0..0));
    }
}
