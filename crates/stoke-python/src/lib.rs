//! Python frames of a running CPython 3.8 to 3.13.
//!
//! Finds the interpreter in a process (`_PyRuntime` in the dynamic symbols
//! of its executable or of `libpython3.X.so`), learns its version and the
//! layout of its structures (from `_Py_DebugOffsets` from 3.13, from a table
//! generated from the headers by `gen/offsets.py` before), and reads a
//! thread's frame chain through [`Memory`], naming each frame by its code
//! object (read once and cached).
//!
//! Design constraints:
//! - Reading goes through the [`Memory`] trait, so everything but the
//!   system call is tested against a fake memory.
//! - What is read is checked (code objects against `PyCode_Type`, C-stack
//!   anchors against the sample's stack pointer, bounded lengths); anything
//!   that does not hold yields [`PyStack::Stale`], never a wrong name.
//! - The target is only read, never stopped or written.

mod detect;
mod linetable;
mod memory;
mod offsets;
mod reader;
mod tables;

pub use detect::{detect, FileBytes, Interpreter, MapFile};
pub use linetable::{line_of, LineFormat};
pub use memory::{read_u64, FakeMemory, Memory, ProcessMemory};
pub use offsets::{FrameEntry, Offsets, OB_TYPE};
pub use reader::{Code, Layout, PyFrame, PyStack, Reader};

/// Why an interpreter could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PythonError {
    /// Reading the target's memory failed (errno).
    #[error("cannot read the target's memory (errno {0})")]
    Read(i32),
    /// What was read is not laid out as expected.
    #[error("unexpected CPython layout: {0}")]
    Layout(&'static str),
    /// A version stoke has no layout for.
    #[error("CPython {0}.{1} is not supported (3.8 to 3.13 are)")]
    Unsupported(u8, u8),
    /// A free-threaded build.
    #[error("free-threaded CPython builds are not supported")]
    FreeThreaded,
    /// The interpreter's file could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests;
