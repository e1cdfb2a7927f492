//! The only `unsafe` of this crate: mapping files into memory, and the
//! scheduling class of a helper thread.

mod mmap;
mod sched;

pub(crate) use mmap::Bytes;
pub(crate) use sched::idle_priority_for_this_thread;
#[cfg(test)]
pub(crate) use sched::this_thread_is_idle_priority;
