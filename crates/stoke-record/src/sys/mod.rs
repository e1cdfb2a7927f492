//! The system calls of this crate that need `unsafe`, each behind a safe
//! function: only read-only maps of module files.

pub(crate) mod mmap;
