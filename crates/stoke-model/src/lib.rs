//! Plain types shared by every stoke crate.
//!
//! Design constraints: no I/O, no `unsafe`, no dependencies. Everything here is
//! a value that crosses a crate boundary: process and thread ids, the kinds of
//! address (absolute in a process, or relative to a file), the mappings that
//! relate them, the ELF load layout that turns file offsets into stated
//! addresses, and the register file a sampler captures for the unwinder;
//! and the quoting of a command line for display.
#![forbid(unsafe_code)]

mod address;
pub mod file;
pub mod layout;
mod mapping;
mod regs;
mod shell;

pub use address::{Avma, FileOffset, FrameAddress};
pub use mapping::{BuildId, Mapping, MappingKind, ModuleKey};
pub use regs::{DwarfReg, Registers};
pub use shell::{command_line, shell_quote};

use std::fmt;

/// A process id (the thread-group id), as the kernel of the profiling side sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(pub u32);

/// A thread id (the kernel's task id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid(pub u32);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Pid> for Tid {
    /// The main thread of a process has the process's id.
    fn from(pid: Pid) -> Tid {
        Tid(pid.0)
    }
}
