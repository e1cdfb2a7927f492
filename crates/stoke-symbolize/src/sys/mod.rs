//! The only `unsafe` of this crate: mapping files into memory, and the
//! scheduling class of a helper process.

mod mmap;
mod sched;

pub use mmap::map_file;
pub(crate) use mmap::Bytes;
pub(crate) use sched::idle_priority_for_child;
