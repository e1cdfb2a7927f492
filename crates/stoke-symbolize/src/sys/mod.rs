//! The only `unsafe` of this crate: mapping files into memory.

mod mmap;

pub(crate) use mmap::Bytes;
