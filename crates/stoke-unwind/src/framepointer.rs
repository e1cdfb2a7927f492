//! One unwind step by the frame-pointer chain: `rbp` points at the saved
//! caller `rbp`, with the return address just above it.

use stoke_model::{DwarfReg, Registers};

use crate::dwarf::Step;
use crate::TruncationReason;

/// Unwinds one frame through `rbp`: caller `rbp = [rbp]`, return address
/// `[rbp + 8]`, caller `rsp = rbp + 16`.
///
/// `zero_is_root`: an `rbp` of 0 marks the outermost frame (the x86_64 ABI
/// has `_start` clear it). That holds when every frame keeps frame pointers;
/// when falling back from CFI, `rbp` may be any scratch value, so a 0 there
/// only means "no frame pointer".
pub(crate) fn step(
    regs: &Registers,
    read_stack: &mut dyn FnMut(u64) -> Result<u64, ()>,
    zero_is_root: bool,
) -> Result<Step, TruncationReason> {
    let bp = regs
        .get(DwarfReg::Rbp)
        .ok_or(TruncationReason::NoUnwindInfo)?;
    if bp == 0 {
        return if zero_is_root {
            Ok(Step::Root)
        } else {
            Err(TruncationReason::NoUnwindInfo)
        };
    }
    // The frame record lies on the stack, at or above the stack pointer, aligned.
    if bp & 7 != 0 || regs.get(DwarfReg::Rsp).is_some_and(|sp| bp < sp) {
        return Err(TruncationReason::Corrupt);
    }
    let (Some(ra_at), Some(sp)) = (bp.checked_add(8), bp.checked_add(16)) else {
        return Err(TruncationReason::Corrupt);
    };
    let read = |r: Result<u64, ()>| r.map_err(|()| TruncationReason::StackCopyExhausted);
    let caller_bp = read(read_stack(bp))?;
    let ra = read(read_stack(ra_at))?;
    Ok(Step::Caller {
        regs: Registers::new(ra, sp, caller_bp),
        signal: false,
    })
}
