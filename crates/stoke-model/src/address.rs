//! Address kinds. An address is either absolute in a process's address space
//! ([`Avma`], "actual virtual memory address") or relative to the file a
//! mapping was made from ([`FileOffset`]); symbolizers work on the latter.

use std::fmt;

/// An absolute virtual address in a target process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Avma(pub u64);

/// An offset into the file a module was mapped from: `avma - start + pgoff`.
/// Stable across processes and runs of the same binary, so it is what stacks
/// are aggregated and symbolized by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileOffset(pub u64);

impl fmt::Display for Avma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for FileOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// One frame's address, with what kind of address it is.
///
/// The leaf frame's address is where the CPU was (an instruction pointer);
/// every caller's address is a return address, which points *after* the call
/// instruction and may belong to the next line, the next inline scope or even
/// the next function. Symbolizers look return addresses up at `addr - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrameAddress {
    /// The address of the instruction that was executing (the leaf).
    InstructionPointer(u64),
    /// A return address found on the stack or in a register (a caller).
    ReturnAddress(u64),
}

impl FrameAddress {
    /// The raw address, as captured.
    pub fn address(self) -> u64 {
        match self {
            FrameAddress::InstructionPointer(a) | FrameAddress::ReturnAddress(a) => a,
        }
    }

    /// The address to look up in unwind and debug tables: the instruction
    /// pointer itself, or one byte before a return address (inside the call).
    pub fn lookup_address(self) -> u64 {
        match self {
            FrameAddress::InstructionPointer(a) => a,
            FrameAddress::ReturnAddress(a) => a.saturating_sub(1),
        }
    }

    /// The same kind of address, moved to another address (e.g. normalized
    /// from absolute to file-relative).
    pub fn with_address(self, address: u64) -> FrameAddress {
        match self {
            FrameAddress::InstructionPointer(_) => FrameAddress::InstructionPointer(address),
            FrameAddress::ReturnAddress(_) => FrameAddress::ReturnAddress(address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_addresses_are_looked_up_inside_the_call() {
        assert_eq!(FrameAddress::ReturnAddress(0x1005).lookup_address(), 0x1004);
        assert_eq!(
            FrameAddress::InstructionPointer(0x1005).lookup_address(),
            0x1005
        );
        assert_eq!(FrameAddress::ReturnAddress(0).lookup_address(), 0);
    }
}
