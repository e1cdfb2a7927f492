//! The system calls of this crate that need `unsafe`, each behind a safe
//! function: the reading thread's nice value.

pub(crate) mod priority;
