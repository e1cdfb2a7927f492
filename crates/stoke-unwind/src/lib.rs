//! Stack unwinding: DWARF call frame information and frame pointers.
//!
//! Design constraints:
//! - Pure: no system calls. Module bytes are handed in by the caller
//!   ([`ModuleUnwindInfo::parse`]); stack memory is read through a closure
//!   (`read_stack`), so tests feed it a plain byte array.
//! - Each module's tables are parsed once and shared (`Arc`), looked up by
//!   binary search; the caller caches them by `ModuleKey`.
//! - A stack that cannot be followed to its root ends with
//!   [`StackEnd::Truncated`] and a reason, never an error or a panic.

use std::fmt;
use std::sync::Arc;

use stoke_model::{FrameAddress, Registers};

/// Parsed unwind tables of one ELF module.
pub struct ModuleUnwindInfo {
    _private: (),
}

/// Why a module's unwind info could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UnwindInfoError {
    /// The bytes are not an ELF file this crate understands.
    #[error("not a supported ELF file: {0}")]
    Elf(String),
}

impl ModuleUnwindInfo {
    /// Parses the CFI sections (`.eh_frame_hdr`, `.eh_frame`, `.debug_frame`)
    /// of an ELF image. `data` is the whole file (e.g. a memory map).
    pub fn parse(data: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Result<ModuleUnwindInfo, UnwindInfoError> {
        let _ = data;
        todo!()
    }

    /// The stated virtual address (as in the ELF file) that file offset
    /// `offset` is loaded at, from the `PT_LOAD` program headers.
    pub fn file_offset_to_svma(&self, offset: u64) -> Option<u64> {
        let _ = offset;
        todo!()
    }

    /// Whether the module has any CFI (else only frame pointers can unwind it).
    pub fn has_cfi(&self) -> bool {
        todo!()
    }
}

/// A module as mapped into the process being unwound.
#[derive(Clone, Copy)]
pub struct ModuleRef<'a> {
    /// Its unwind tables.
    pub info: &'a ModuleUnwindInfo,
    /// `avma - svma` for every address in the module (wrapping).
    pub bias: u64,
}

/// How unwinding should proceed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnwindMode {
    /// CFI where the module has it, frame pointers otherwise.
    #[default]
    Auto,
    /// CFI only; a frame without CFI truncates the stack.
    Dwarf,
    /// Frame pointers only.
    FramePointer,
}

/// Why a stack stopped before its root.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TruncationReason {
    /// The stack copy ended before the next frame was read.
    StackCopyExhausted,
    /// An address that lies in no known module.
    NoModule,
    /// No CFI row covers the address and frame pointers did not help.
    NoUnwindInfo,
    /// The CFI rule could not be evaluated (unsupported expression, missing register).
    BadRule(String),
    /// The stack pointer did not move up, or a return address was 0/garbage.
    Corrupt,
    /// The frame limit was reached.
    TooDeep,
}

impl fmt::Display for TruncationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TruncationReason::StackCopyExhausted => f.write_str("stack copy too small"),
            TruncationReason::NoModule => f.write_str("address outside any module"),
            TruncationReason::NoUnwindInfo => f.write_str("no unwind info"),
            TruncationReason::BadRule(r) => write!(f, "bad unwind rule: {r}"),
            TruncationReason::Corrupt => f.write_str("corrupt stack"),
            TruncationReason::TooDeep => f.write_str("too deep"),
        }
    }
}

/// How a stack ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StackEnd {
    /// The root was reached (`_start`, `clone`, an undefined return address rule).
    Complete,
    /// Unwinding stopped short.
    Truncated(TruncationReason),
}

/// Unwinds stacks. Keeps scratch state (gimli's unwind context) between calls.
#[derive(Default)]
pub struct Unwinder {
    _private: (),
}

impl Unwinder {
    /// A new unwinder.
    pub fn new() -> Unwinder {
        Unwinder::default()
    }

    /// Unwinds from `regs`. `find_module` maps an absolute address to the
    /// module mapped there; `read_stack` reads the 8-byte word at an absolute
    /// stack address. Frames are pushed to `out` leaf first: the first is
    /// `InstructionPointer(regs.ip)`, the rest `ReturnAddress`es. At most
    /// `max_frames` frames.
    pub fn unwind<'m>(
        &mut self,
        regs: &Registers,
        mode: UnwindMode,
        find_module: &mut dyn FnMut(u64) -> Option<ModuleRef<'m>>,
        read_stack: &mut dyn FnMut(u64) -> Result<u64, ()>,
        max_frames: usize,
        out: &mut Vec<FrameAddress>,
    ) -> StackEnd {
        let _ = (regs, mode, find_module, read_stack, max_frames, out);
        todo!()
    }
}
