//! A small direct-mapped cache of unwind rules by (module, address).
//!
//! Most frames of most samples are the same few return addresses, and their
//! rows are simple: the CFA is a register plus an offset, and saved registers
//! sit at offsets from it. Such a row is kept here in compact form, so the
//! next time that address comes up neither the FDE lookup nor the CFI
//! program runs. Rows with expressions (PLT entries, signal frames) are not
//! cached and always go through gimli.

use gimli::{CfaRule, RegisterRule, UnwindTableRow};
use stoke_model::{DwarfReg, Registers};

use crate::dwarf::{Step, CALLEE_SAVED};
use crate::{BadRule, TruncationReason};

/// Number of cache slots (a prime, so addresses spread).
const SLOTS: usize = 509;
/// Saved registers a compact row can describe: rbx, rbp, r12–r15.
const MAX_SAVED: usize = 6;

/// Where the return address is, in a compact row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReturnAddress {
    /// At CFA + offset.
    At(i32),
    /// Undefined: the outermost frame.
    Undefined,
}

/// A simple unwind row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CompactRow {
    cfa_register: u16,
    cfa_offset: i64,
    return_address: ReturnAddress,
    /// (register, offset from the CFA) for saved callee-saved registers.
    saved: [(u16, i32); MAX_SAVED],
    saved_len: u8,
}

impl CompactRow {
    /// The compact form of `row`, if it has one. `ra_register` is the CIE's
    /// return address column.
    pub(crate) fn from_row(
        row: &UnwindTableRow<usize>,
        ra_register: gimli::Register,
    ) -> Option<CompactRow> {
        let CfaRule::RegisterAndOffset { register, offset } = row.cfa() else {
            return None;
        };
        if register.0 > DwarfReg::Rip as u16 {
            return None;
        }
        let mut compact = CompactRow {
            cfa_register: register.0,
            cfa_offset: *offset,
            return_address: ReturnAddress::Undefined,
            saved: [(0, 0); MAX_SAVED],
            saved_len: 0,
        };
        let mut ra_found = false;
        for (register, rule) in row.registers() {
            if *register == ra_register {
                compact.return_address = match rule {
                    RegisterRule::Undefined => ReturnAddress::Undefined,
                    RegisterRule::Offset(o) => ReturnAddress::At(i32::try_from(*o).ok()?),
                    _ => return None,
                };
                ra_found = true;
                continue;
            }
            if register.0 > DwarfReg::Rip as u16 {
                continue;
            }
            let callee_saved = CALLEE_SAVED.iter().any(|r| *r as u16 == register.0);
            match rule {
                RegisterRule::SameValue if callee_saved => {}
                RegisterRule::Offset(o) if callee_saved => {
                    let i = usize::from(compact.saved_len);
                    *compact.saved.get_mut(i)? = (register.0, i32::try_from(*o).ok()?);
                    compact.saved_len += 1;
                }
                // Caller-saved registers are not carried to the caller anyway.
                RegisterRule::Undefined | RegisterRule::SameValue if !callee_saved => {}
                _ => return None,
            }
        }
        ra_found.then_some(compact)
    }

    /// Unwinds one frame with this row; the same result the general path
    /// gives for the row it was made from.
    pub(crate) fn step(
        &self,
        regs: &Registers,
        read_stack: &mut dyn FnMut(u64) -> Result<u64, ()>,
    ) -> Result<Step, TruncationReason> {
        let base = regs
            .get_dwarf(self.cfa_register)
            .ok_or(TruncationReason::BadRule(BadRule::UnknownRegister(
                self.cfa_register,
            )))?;
        let cfa = base.wrapping_add(self.cfa_offset as u64);
        if regs.get(DwarfReg::Rsp).is_some_and(|sp| cfa <= sp) {
            return Err(TruncationReason::Corrupt);
        }
        let ReturnAddress::At(ra_offset) = self.return_address else {
            return Ok(Step::Root);
        };
        let mut read = |offset: i32| {
            read_stack(cfa.wrapping_add(i64::from(offset) as u64))
                .map_err(|()| TruncationReason::StackCopyExhausted)
        };
        let mut caller = Registers::default();
        for reg in CALLEE_SAVED {
            if let Some(value) = regs.get(reg) {
                caller.set(reg, value);
            }
        }
        let sp = regs.get(DwarfReg::Rsp);
        for &(register, offset) in &self.saved[..usize::from(self.saved_len)] {
            // As in the general path: a slot below the stack pointer was
            // popped already (the register keeps its value), and a slot that
            // cannot be read leaves the register unknown.
            let slot = cfa.wrapping_add(i64::from(offset) as u64);
            if sp.is_some_and(|sp| slot < sp) {
                continue;
            }
            match read(offset) {
                Ok(value) => caller.set_dwarf(register, value),
                Err(_) => caller.clear_dwarf(register),
            }
        }
        caller.set(DwarfReg::Rsp, cfa);
        caller.set(DwarfReg::Rip, read(ra_offset)?);
        Ok(Step::Caller {
            regs: caller,
            signal: false,
        })
    }
}

/// The cache: one compact row per slot, tagged by module id and address.
pub(crate) struct RuleCache {
    slots: Box<[Option<(u64, u64, CompactRow)>]>,
}

impl Default for RuleCache {
    fn default() -> RuleCache {
        RuleCache {
            slots: vec![None; SLOTS].into_boxed_slice(),
        }
    }
}

impl RuleCache {
    fn slot(module: u64, svma: u64) -> usize {
        let h = svma ^ module.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h % SLOTS as u64) as usize
    }

    /// The cached row for `svma` in module `module`.
    pub(crate) fn get(&self, module: u64, svma: u64) -> Option<&CompactRow> {
        match &self.slots[Self::slot(module, svma)] {
            Some((m, a, row)) if *m == module && *a == svma => Some(row),
            _ => None,
        }
    }

    /// Remembers the row for `svma` in module `module`.
    pub(crate) fn insert(&mut self, module: u64, svma: u64, row: CompactRow) {
        self.slots[Self::slot(module, svma)] = Some((module, svma, row));
    }
}
