//! Stack unwinding: DWARF call frame information and frame pointers.
//!
//! Design constraints:
//! - Pure: no system calls. Module bytes are handed in by the caller
//!   ([`ModuleUnwindInfo::parse`]); stack memory is read through a closure
//!   (`read_stack`), so tests feed it a plain byte array.
//! - Each module's tables are parsed once and shared (`Arc`), looked up by
//!   binary search; the caller caches them by `ModuleKey`.
//! - A stack that cannot be followed to its root ends with
//!   [`StackEnd::Truncated`] and a reason, never an error or a panic, and
//!   always in bounded time (garbage registers and stack bytes included).
//!
//! What the caller provides:
//! - For each executable mapping, a [`ModuleRef`]: the module's parsed info
//!   and its bias, `avma - svma`. From a `stoke_model::Mapping`:
//!   `bias = mapping.start.0.wrapping_sub(info.file_offset_to_svma(mapping.file_offset)?)`.
//! - For executable memory that is no module (JIT code: V8, HotSpot,
//!   LuaJIT, CPython's `-X perf` trampolines), [`Code::Jit`] through
//!   [`Unwinder::unwind_code`]: in [`UnwindMode::Auto`] such frames are
//!   walked by frame pointers until a return address is back in a module.
//! - The sampled registers: `Rip` and `Rsp`, `Rbp` (frame pointers and CFA
//!   rules based on it), and `Rbx`, `R12`–`R15` where it has them.
//!
//! Cost (release build, x86_64, measured by `tests/bench.rs`): about 0.1 µs
//! per frame once an [`Unwinder`] has seen the addresses (it caches simple
//! rows by address), 0.4–0.7 µs per frame cold; a 12-frame stack through
//! libc's `qsort` takes about 1.3 µs warm.

mod cache;
mod dwarf;
mod framepointer;
mod hdr;
mod module;
mod unwinder;

use std::fmt;

pub use module::ModuleUnwindInfo;
pub use unwinder::Unwinder;

/// Why a module's unwind info could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UnwindInfoError {
    /// The bytes are not an ELF file this crate understands.
    #[error("not a supported ELF file: {0}")]
    Elf(String),
}

/// A module as mapped into the process being unwound.
#[derive(Clone, Copy)]
pub struct ModuleRef<'a> {
    /// Its unwind tables.
    pub info: &'a ModuleUnwindInfo,
    /// `avma - svma` for every address in the module (wrapping). For a
    /// mapping of the module's file at `start` from file offset `pgoff`:
    /// `start.wrapping_sub(info.file_offset_to_svma(pgoff)?)`.
    pub bias: u64,
}

/// What lies at a code address, as the caller knows from the mappings.
#[derive(Clone, Copy)]
pub enum Code<'a> {
    /// A module with (possibly empty) unwind tables.
    Module(ModuleRef<'a>),
    /// Executable memory that is no module: code generated at run time,
    /// without CFI. JIT compilers that keep frame pointers (V8, HotSpot with
    /// `-XX:+PreserveFramePointer`, CPython's perf trampolines) can be
    /// walked through them.
    Jit,
}

/// How unwinding should proceed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnwindMode {
    /// CFI where the module has it, frame pointers otherwise (code without
    /// CFI, and JIT code) until the walk is back in code with CFI.
    #[default]
    Auto,
    /// CFI only; a frame without CFI truncates the stack.
    Dwarf,
    /// Frame pointers only.
    FramePointer,
}

/// Why a stack stopped before its root. Small and `Copy`: it is part of
/// every truncated stack's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TruncationReason {
    /// The stack copy ended before the next frame was read.
    StackCopyExhausted,
    /// The stack copy ended before the next frame was read, short of the
    /// size asked for: the kernel stopped at memory it could not read (a
    /// stack page not yet faulted in, as a program starts, or the end of
    /// the stack), so a larger copy would not have helped. Set by the
    /// caller, which knows how much was asked for.
    StackCopyCut,
    /// An address that lies in no known module.
    NoModule,
    /// No CFI row covers the address and frame pointers did not help.
    NoUnwindInfo,
    /// The CFI rule could not be evaluated (unsupported expression, missing register).
    BadRule(BadRule),
    /// The stack pointer did not move up, or a return address was 0/garbage.
    Corrupt,
    /// The frame limit was reached.
    TooDeep,
    /// The address lies in a mapped file that could not be read (gone, no
    /// permission, not ELF).
    ModuleUnreadable,
    /// The file found for a mapping is not the one mapped (another inode or
    /// build-id): it was not used.
    ModuleMismatch,
}

/// What was wrong with a CFI rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BadRule {
    /// A rule names a register the sample did not capture.
    UnknownRegister(u16),
    /// A DWARF expression failed to evaluate.
    Expression,
    /// A DWARF expression needs something stoke does not provide (TLS, an
    /// entry value, a base type...).
    ExpressionNeedsContext,
    /// A DWARF expression left no value.
    ExpressionNoResult,
    /// A DWARF expression's result is neither an address nor a value.
    ExpressionNotAddress,
    /// The CFI program of the function could not be run.
    CfiProgram,
    /// An architecture-defined rule, which stoke does not know.
    Architectural(u16),
    /// No rule recovers the return address.
    NoReturnAddress,
}

impl fmt::Display for BadRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRule::UnknownRegister(r) => write!(f, "register {r} unknown"),
            BadRule::Expression => f.write_str("expression failed"),
            BadRule::ExpressionNeedsContext => f.write_str("expression needs unsupported context"),
            BadRule::ExpressionNoResult => f.write_str("expression has no result"),
            BadRule::ExpressionNotAddress => f.write_str("expression result is not an address"),
            BadRule::CfiProgram => f.write_str("CFI program failed"),
            BadRule::Architectural(r) => write!(f, "architectural rule for register {r}"),
            BadRule::NoReturnAddress => f.write_str("no return address rule"),
        }
    }
}

impl fmt::Display for TruncationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TruncationReason::StackCopyExhausted => f.write_str("stack copy too small"),
            TruncationReason::StackCopyCut => {
                f.write_str("stack copy cut short at unreadable memory")
            }
            TruncationReason::NoModule => f.write_str("address outside any module"),
            TruncationReason::NoUnwindInfo => f.write_str("no unwind info"),
            TruncationReason::BadRule(r) => write!(f, "bad unwind rule: {r}"),
            TruncationReason::Corrupt => f.write_str("corrupt stack"),
            TruncationReason::TooDeep => f.write_str("too deep"),
            TruncationReason::ModuleUnreadable => f.write_str("module unreadable"),
            TruncationReason::ModuleMismatch => {
                f.write_str("module file does not match the mapping")
            }
        }
    }
}

/// How a stack ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StackEnd {
    /// The root was reached (`_start`, `clone`, an undefined return address rule).
    Complete,
    /// Unwinding stopped short.
    Truncated(TruncationReason),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Send + Sync>() {}
    fn movable<T: Send>() {}

    #[test]
    fn module_info_is_shared_across_threads_and_unwinders_move() {
        shareable::<ModuleUnwindInfo>();
        shareable::<ModuleRef<'static>>();
        movable::<Unwinder>();
    }

    #[test]
    fn non_elf_bytes_are_an_error() {
        let err = ModuleUnwindInfo::parse(std::sync::Arc::new(b"not an elf".to_vec()));
        assert!(matches!(err, Err(UnwindInfoError::Elf(_))));
    }
}
