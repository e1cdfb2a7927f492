//! Read-only memory maps of module files: the one `unsafe` of this crate.

use std::fs::File;
use std::io;

use memmap2::Mmap;

/// Maps a whole file read-only.
pub(crate) fn map_file(file: &File) -> io::Result<Mmap> {
    // SAFETY: the map is read-only and private to stoke. If another process
    // truncates the file while it is mapped, reads past the new end fault
    // (SIGBUS); binaries that are running are not truncated in place (the
    // kernel refuses writes to running executables, and package managers
    // replace files by rename), which is the same assumption perf and every
    // debugger make.
    unsafe { Mmap::map(file) }
}
