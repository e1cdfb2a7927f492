//! The unwinding loop: one step per frame, CFI or frame pointers, with the
//! sanity checks that make garbage input end instead of loop.

use stoke_model::{DwarfReg, FrameAddress, Registers};

use crate::dwarf::{self, Scratch, Step};
use crate::{framepointer, Code, ModuleRef, StackEnd, TruncationReason, UnwindMode};

/// How many signal frames one stack may pass through. Across a signal frame
/// the stack pointer may move down (a handler on an alternate stack), so the
/// "stack grows up" check cannot bound those steps; this does.
const MAX_SIGNAL_FRAMES: usize = 16;

/// Unwinds stacks. Keeps scratch state (gimli's unwind context) between calls.
///
/// One `Unwinder` per thread doing the unwinding; it allocates its scratch
/// state once, and unwinding allocates nothing else (beyond growing `out`).
#[derive(Default)]
pub struct Unwinder {
    scratch: Scratch,
}

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwinder").finish_non_exhaustive()
    }
}

impl Unwinder {
    /// A new unwinder.
    pub fn new() -> Unwinder {
        Unwinder::default()
    }

    /// Unwinds from `regs`. `find_module` maps an absolute address to the
    /// module mapped there; `read_stack` reads the 8-byte word at an absolute
    /// stack address. Frames are pushed to `out` leaf first: the first is
    /// `InstructionPointer(regs.ip)`, the rest `ReturnAddress`es (except the
    /// frame interrupted by a signal, found through a signal trampoline's
    /// CFI, which is an `InstructionPointer` too). At most `max_frames`
    /// frames; `out` is appended to, not cleared.
    ///
    /// `regs` needs `Rip` and `Rsp`; `Rbp` for frame pointers; other
    /// callee-saved registers only where CFI computes a CFA from them.
    pub fn unwind<'m>(
        &mut self,
        regs: &Registers,
        mode: UnwindMode,
        find_module: &mut dyn FnMut(u64) -> Option<ModuleRef<'m>>,
        read_stack: &mut dyn FnMut(u64) -> Result<u64, ()>,
        max_frames: usize,
        out: &mut Vec<FrameAddress>,
    ) -> StackEnd {
        self.unwind_code(
            regs,
            mode,
            &mut |addr| find_module(addr).map(Code::Module),
            read_stack,
            max_frames,
            out,
        )
    }

    /// Like [`Unwinder::unwind`], with `find_code` also naming executable
    /// memory that is no module ([`Code::Jit`]). In [`UnwindMode::Auto`] and
    /// [`UnwindMode::FramePointer`] a JIT frame is left through its frame
    /// pointer, and the walk goes on by CFI once a return address is back in
    /// a module that has it; in [`UnwindMode::Dwarf`] a JIT frame ends the
    /// stack as an address outside any module.
    pub fn unwind_code<'m>(
        &mut self,
        regs: &Registers,
        mode: UnwindMode,
        find_code: &mut dyn FnMut(u64) -> Option<Code<'m>>,
        read_stack: &mut dyn FnMut(u64) -> Result<u64, ()>,
        max_frames: usize,
        out: &mut Vec<FrameAddress>,
    ) -> StackEnd {
        let truncated = StackEnd::Truncated;
        if max_frames == 0 {
            return truncated(TruncationReason::TooDeep);
        }
        let mut regs = *regs;
        let mut frame = FrameAddress::InstructionPointer(regs.ip());
        out.push(frame);
        let mut pushed = 1;
        let mut signal_frames = 0;
        loop {
            let lookup = frame.lookup_address();
            let step = match find_code(lookup) {
                None => return truncated(TruncationReason::NoModule),
                // JIT code has no CFI; a runtime that keeps frame pointers
                // can be walked through them (a 0 there means none, not the root).
                Some(Code::Jit) => match mode {
                    UnwindMode::Dwarf => return truncated(TruncationReason::NoModule),
                    UnwindMode::FramePointer => framepointer::step(&regs, read_stack, true),
                    UnwindMode::Auto => framepointer::step(&regs, read_stack, false),
                },
                Some(Code::Module(module)) => {
                    // Only the interrupted frame itself may be a leaf that
                    // has not touched the stack yet.
                    let leaf = pushed == 1;
                    let is_code = &mut |addr: u64| find_code(addr).is_some();
                    self.module_step(module, lookup, mode, &regs, read_stack, leaf, is_code)
                }
            };
            let (caller, signal) = match step {
                Ok(Step::Root) => return StackEnd::Complete,
                Ok(Step::Caller { regs, signal }) => (regs, signal),
                Err(reason) => return truncated(reason),
            };
            let (Some(ip), Some(sp)) = (caller.get(DwarfReg::Rip), caller.get(DwarfReg::Rsp))
            else {
                return truncated(TruncationReason::Corrupt);
            };
            if ip == 0 {
                return StackEnd::Complete;
            }
            if signal {
                signal_frames += 1;
                if signal_frames > MAX_SIGNAL_FRAMES {
                    return truncated(TruncationReason::Corrupt);
                }
            } else if regs
                .get(DwarfReg::Rsp)
                .is_some_and(|old| sp < old || (sp == old && pushed > 1))
            {
                // Each return address above the first was pushed by a call,
                // so the stack pointer grows. The interrupted frame may
                // have popped its return address into a register already
                // (glibc's vfork keeps it in rdi across the syscall): its
                // caller's stack pointer may equal its own.
                return truncated(TruncationReason::Corrupt);
            }
            if pushed >= max_frames {
                return truncated(TruncationReason::TooDeep);
            }
            frame = if signal {
                FrameAddress::InstructionPointer(ip)
            } else {
                FrameAddress::ReturnAddress(ip)
            };
            out.push(frame);
            pushed += 1;
            regs = caller;
        }
    }

    /// One step out of a frame in a module: its CFI (a cached row, else its
    /// FDE), or in [`UnwindMode::Auto`] frame pointers where it has none.
    ///
    /// `leaf`: the frame is the one interrupted (the first of the stack),
    /// which without CFI may be a leaf that has pushed nothing, as in
    /// hand-written assembly that ends its FDE early (glibc's `clone3` ends
    /// it before its `syscall`): see [`without_cfi`].
    #[allow(clippy::too_many_arguments)]
    fn module_step(
        &mut self,
        module: ModuleRef<'_>,
        lookup: u64,
        mode: UnwindMode,
        regs: &Registers,
        read_stack: &mut dyn FnMut(u64) -> Result<u64, ()>,
        leaf: bool,
        is_code: &mut dyn FnMut(u64) -> bool,
    ) -> Result<Step, TruncationReason> {
        let svma = lookup.wrapping_sub(module.bias);
        match mode {
            UnwindMode::FramePointer => framepointer::step(regs, read_stack, true),
            UnwindMode::Dwarf | UnwindMode::Auto => {
                match self.scratch.cache.get(module.info.id(), svma) {
                    Some(row) => row.step(regs, read_stack),
                    None => match module.info.find_fde(svma) {
                        Some(fde) => dwarf::step(
                            &mut self.scratch,
                            module.info,
                            &fde,
                            svma,
                            regs,
                            read_stack,
                        ),
                        // A process's entry stub without CFI is its root.
                        None if module.info.is_entry_stub(svma) => Ok(Step::Root),
                        None if mode == UnwindMode::Auto => {
                            without_cfi(regs, read_stack, leaf, is_code)
                        }
                        None => Err(TruncationReason::NoUnwindInfo),
                    },
                }
            }
        }
    }
}

/// A step out of module code without CFI, in [`UnwindMode::Auto`]: by
/// frame pointers, except for the interrupted frame (`leaf`), which may not
/// have touched the stack yet. Its return address is then the word at
/// `rsp`, taken when it points into code; a 0 there ends the stack (a
/// thread's first instruction, the child's side of `clone3`), unless frame
/// pointers lead back into code.
fn without_cfi(
    regs: &Registers,
    read_stack: &mut dyn FnMut(u64) -> Result<u64, ()>,
    leaf: bool,
    is_code: &mut dyn FnMut(u64) -> bool,
) -> Result<Step, TruncationReason> {
    let by_frame_pointer = framepointer::step(regs, read_stack, false);
    let Some(sp) = regs.get(DwarfReg::Rsp).filter(|_| leaf) else {
        return by_frame_pointer;
    };
    match read_stack(sp) {
        Ok(0) => match by_frame_pointer {
            Ok(Step::Caller { regs: caller, .. })
                if caller.get(DwarfReg::Rip).is_some_and(&mut *is_code) =>
            {
                by_frame_pointer
            }
            _ => Ok(Step::Root),
        },
        Ok(ra) if is_code(ra) => {
            let mut caller = *regs;
            caller.set(DwarfReg::Rip, ra);
            caller.set(DwarfReg::Rsp, sp.wrapping_add(8));
            Ok(Step::Caller {
                regs: caller,
                signal: false,
            })
        }
        _ => by_frame_pointer,
    }
}
