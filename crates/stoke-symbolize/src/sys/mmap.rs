//! Read-only file mappings, shareable as byte buffers that never move, so
//! gimli readers can hold them without copying debug info.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::sync::Arc;

use memmap2::Mmap;

/// Bytes that stay at one address for as long as any clone lives: a whole
/// mapped file, or a buffer we own (decompressed sections).
#[derive(Clone)]
pub(crate) enum Bytes {
    /// A read-only mapping of a file.
    Mapped(Arc<Mmap>),
    /// Bytes on the heap.
    Owned(Arc<[u8]>),
}

/// Maps a whole file read-only: the one memory map of a file in stoke (the
/// module store's, shared with the unwinder, and the symbolizer's own for
/// debug files).
pub fn map_file(file: &File) -> io::Result<Arc<Mmap>> {
    // SAFETY: `Mmap::map` is unsafe because the file may be truncated or
    // rewritten by another process while it is mapped; then reads see the
    // new bytes, or fault with SIGBUS past a truncated end. The files we
    // map are binaries and debug files the target is executing, which
    // are replaced by renaming, not rewritten in place (the kernel even
    // refuses writes to running executables with ETXTBSY). Every parser
    // reading these bytes bounds-checks, so changed bytes give wrong names
    // or parse errors, never memory unsafety in our code; the truncation
    // case is the residual risk every profiler and debugger accepts.
    let map = unsafe { Mmap::map(file)? };
    Ok(Arc::new(map))
}

/// Drops the pages of `map` from stoke's memory (they stay in the page
/// cache): for a module whose names are all read. A later read faults them
/// back in from the file, so this changes memory use, never contents.
pub fn release_pages(map: &Mmap) {
    // SAFETY: `MADV_DONTNEED` on a read-only shared file mapping discards
    // only our page-table entries; the next access reads the same file
    // pages again (the mapping is `MAP_SHARED`, never written), so every
    // reference into the mapping stays valid and sees the same bytes (up to
    // the rewritten-file risk stated in `map_file`). A failure only leaves
    // the pages resident.
    let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
}

impl Bytes {
    /// Maps `file` read-only.
    pub(crate) fn map(file: &File) -> io::Result<Bytes> {
        map_file(file).map(Bytes::Mapped)
    }

    /// Shares a mapping someone else made (the caller's module store).
    pub(crate) fn shared(map: Arc<Mmap>) -> Bytes {
        Bytes::Mapped(map)
    }

    /// Takes ownership of a buffer.
    pub(crate) fn owned(bytes: Vec<u8>) -> Bytes {
        Bytes::Owned(bytes.into())
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.len())
    }
}

// SAFETY: both variants deref to memory owned behind an `Arc` (a mapping or a
// heap slice), which does not move when the `Bytes` value moves.
unsafe impl gimli::StableDeref for Bytes {}

// SAFETY: a clone shares the same `Arc`, so it derefs to the very same bytes.
unsafe impl gimli::CloneStableDeref for Bytes {}
