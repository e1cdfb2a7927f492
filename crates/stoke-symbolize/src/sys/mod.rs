//! The only `unsafe` of this crate: mapping files into memory, and the
//! scheduling class of a helper process.

mod mmap;
mod sched;

pub(crate) use mmap::Bytes;
pub use mmap::{map_file, release_pages};
pub(crate) use sched::idle_priority_for_child;
