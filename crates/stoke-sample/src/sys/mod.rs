//! Thin wrappers over system calls: the only place with `unsafe`.
//!
//! One module per syscall family. Every wrapper returns `io::Result` with the
//! errno intact; resources come back as RAII guards ([`OwnedFd`],
//! [`ring::RingBuffer`]).
//!
//! [`OwnedFd`]: std::os::fd::OwnedFd

pub(crate) mod perf;
pub(crate) mod poll;
pub(crate) mod process;
pub(crate) mod ptrace;
pub(crate) mod ring;
pub(crate) mod time;
pub(crate) mod vm;
