//! One unwind step with DWARF CFI: find the row for an address, compute the
//! CFA, and recover the caller's registers from the row's rules.

use gimli::{
    CfaRule, Encoding, Evaluation, EvaluationResult, EvaluationStorage, Expression,
    FrameDescriptionEntry, Location, Piece, Register, RegisterRule, UnwindContext, UnwindSection,
    Value,
};
use stoke_model::{DwarfReg, Registers};

use crate::cache::{CompactRow, RuleCache};
use crate::module::{FoundFde, Reader};
use crate::{BadRule, ModuleUnwindInfo, TruncationReason};

/// The outcome of unwinding one frame.
#[derive(Debug)]
pub(crate) enum Step {
    /// The caller's registers (`Rip` and `Rsp` always set), and whether the
    /// frame just unwound was a signal trampoline (so the caller's `Rip` is
    /// an interrupted instruction, not a return address).
    Caller { regs: Registers, signal: bool },
    /// The frame says it is the root (its return address is undefined).
    Root,
}

/// Registers a callee must preserve (System V x86_64); their values carry
/// over to the caller unless a rule says where they were saved.
pub(crate) const CALLEE_SAVED: [DwarfReg; 6] = [
    DwarfReg::Rbx,
    DwarfReg::Rbp,
    DwarfReg::R12,
    DwarfReg::R13,
    DwarfReg::R14,
    DwarfReg::R15,
];

/// Upper bound on operations per DWARF expression (loops in garbage CFI).
const MAX_EXPRESSION_STEPS: u32 = 256;

/// Fixed-size evaluation storage, so evaluating an expression never allocates.
struct InlineStorage;

impl<R: gimli::Reader> EvaluationStorage<R> for InlineStorage {
    type Stack = [Value; 32];
    type ExpressionStack = [(R, R); 4];
    type Result = [Piece<R>; 4];
}

/// What an expression needs from the unwinder: the callee's registers and
/// stack memory.
struct Machine<'r, 's> {
    regs: &'r Registers,
    read_stack: &'s mut dyn FnMut(u64) -> Result<u64, ()>,
}

impl Machine<'_, '_> {
    fn register(&self, register: Register) -> Result<u64, TruncationReason> {
        self.regs
            .get_dwarf(register.0)
            .ok_or(TruncationReason::BadRule(BadRule::UnknownRegister(
                register.0,
            )))
    }

    fn read(&mut self, address: u64) -> Result<u64, TruncationReason> {
        (self.read_stack)(address).map_err(|()| TruncationReason::StackCopyExhausted)
    }

    /// Evaluates a CFI expression; `initial` is pushed first (the CFA, for
    /// register rules). Returns the value left on the stack.
    fn evaluate(
        &mut self,
        expression: Expression<Reader<'_>>,
        encoding: Encoding,
        initial: Option<u64>,
    ) -> Result<u64, TruncationReason> {
        let bad = |_: gimli::Error| TruncationReason::BadRule(BadRule::Expression);
        let mut eval = Evaluation::<_, InlineStorage>::new_in(expression.0, encoding);
        if let Some(value) = initial {
            eval.set_initial_value(value);
        }
        eval.set_max_iterations(MAX_EXPRESSION_STEPS);
        let mut state = eval.evaluate().map_err(bad)?;
        loop {
            state = match state {
                EvaluationResult::Complete => break,
                EvaluationResult::RequiresMemory { address, size, .. } => {
                    let mut value = self.read(address)?;
                    if (1..8).contains(&size) {
                        value &= (1u64 << (8 * u32::from(size))) - 1;
                    }
                    eval.resume_with_memory(Value::Generic(value))
                        .map_err(bad)?
                }
                EvaluationResult::RequiresRegister { register, .. } => {
                    let value = self.register(register)?;
                    eval.resume_with_register(Value::Generic(value))
                        .map_err(bad)?
                }
                _ => return Err(TruncationReason::BadRule(BadRule::ExpressionNeedsContext)),
            };
        }
        match eval.as_result() {
            [] => eval
                .value_result()
                .and_then(|v| v.to_u64(!0).ok())
                .ok_or(TruncationReason::BadRule(BadRule::ExpressionNoResult)),
            [Piece {
                location: Location::Address { address },
                ..
            }] => Ok(*address),
            [Piece {
                location: Location::Value { value },
                ..
            }] => value
                .to_u64(!0)
                .map_err(|_| TruncationReason::BadRule(BadRule::ExpressionNotAddress)),
            _ => Err(TruncationReason::BadRule(BadRule::ExpressionNotAddress)),
        }
    }
}

/// Scratch state reused across steps: gimli's unwind context and the cache
/// of simple rows.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) ctx: UnwindContext<usize>,
    pub(crate) cache: RuleCache,
}

/// Unwinds one frame with the FDE `found`, at stated address `svma`; caches
/// the row when it is simple.
pub(crate) fn step(
    scratch: &mut Scratch,
    info: &ModuleUnwindInfo,
    found: &FoundFde<'_>,
    svma: u64,
    regs: &Registers,
    read_stack: &mut dyn FnMut(u64) -> Result<u64, ()>,
) -> Result<Step, TruncationReason> {
    let mut machine = Machine { regs, read_stack };
    match found {
        FoundFde::EhFrame(section, fde) => step_in(scratch, info, section, fde, svma, &mut machine),
        FoundFde::DebugFrame(section, fde) => {
            step_in(scratch, info, section, fde, svma, &mut machine)
        }
    }
}

fn step_in<'a, S: UnwindSection<Reader<'a>>>(
    scratch: &mut Scratch,
    info: &ModuleUnwindInfo,
    section: &S,
    fde: &FrameDescriptionEntry<Reader<'a>>,
    svma: u64,
    machine: &mut Machine<'_, '_>,
) -> Result<Step, TruncationReason> {
    let row = fde
        .unwind_info_for_address(section, info.bases(), &mut scratch.ctx, svma)
        .map_err(|e| match e {
            gimli::Error::NoUnwindInfoForAddress => TruncationReason::NoUnwindInfo,
            _ => TruncationReason::BadRule(BadRule::CfiProgram),
        })?;
    let ra_register = fde.cie().return_address_register();
    let signal = fde.is_signal_trampoline();
    if !signal {
        if let Some(compact) = CompactRow::from_row(row, ra_register) {
            scratch.cache.insert(info.id(), svma, compact);
            return compact.step(machine.regs, machine.read_stack);
        }
    }
    let encoding = fde.cie().encoding();
    let expression = |e: &gimli::UnwindExpression<usize>| {
        e.get(section)
            .map_err(|_| TruncationReason::BadRule(BadRule::Expression))
    };

    let cfa = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            machine.register(*register)?.wrapping_add(*offset as u64)
        }
        CfaRule::Expression(e) => machine.evaluate(expression(e)?, encoding, None)?,
    };
    // The CFA is the caller's stack pointer: above ours, except across a
    // signal frame (the handler may run on an alternate stack), or equal to
    // ours where the return address was popped into a register (glibc's
    // vfork keeps it in rdi across the syscall). Checked before the rules
    // read memory relative to it.
    let ra_in_register = matches!(row.register(ra_register), Some(RegisterRule::Register(_)));
    let below = |sp: u64| cfa < sp || (cfa == sp && !ra_in_register);
    if !signal && machine.regs.get(DwarfReg::Rsp).is_some_and(below) {
        return Err(TruncationReason::Corrupt);
    }

    let mut caller = Registers::default();
    for reg in CALLEE_SAVED {
        if let Some(value) = machine.regs.get(reg) {
            caller.set(reg, value);
        }
    }
    caller.set(DwarfReg::Rsp, cfa);

    let mut ra_found = false;
    for (register, rule) in row.registers() {
        let register = *register;
        let is_ra = register == ra_register;
        if !is_ra && register.0 > DwarfReg::Rip as u16 {
            continue; // vector and other registers: not needed to unwind
        }
        let value = match rule {
            RegisterRule::Undefined if is_ra => return Ok(Step::Root),
            RegisterRule::Undefined => None,
            RegisterRule::SameValue => machine.regs.get_dwarf(register.0),
            RegisterRule::Offset(offset) if is_ra => {
                Some(machine.read(cfa.wrapping_add(*offset as u64))?)
            }
            RegisterRule::Offset(offset) => {
                saved_register(machine, register.0, cfa.wrapping_add(*offset as u64))
            }
            RegisterRule::ValOffset(offset) => Some(cfa.wrapping_add(*offset as u64)),
            RegisterRule::Register(from) => Some(machine.register(*from)?),
            RegisterRule::Expression(e) => {
                let address = machine.evaluate(expression(e)?, encoding, Some(cfa))?;
                if is_ra {
                    Some(machine.read(address)?)
                } else {
                    saved_register(machine, register.0, address)
                }
            }
            RegisterRule::ValExpression(e) => {
                Some(machine.evaluate(expression(e)?, encoding, Some(cfa))?)
            }
            RegisterRule::Constant(value) => Some(*value),
            RegisterRule::Architectural => {
                return Err(TruncationReason::BadRule(BadRule::Architectural(
                    register.0,
                )))
            }
        };
        let target = if is_ra {
            DwarfReg::Rip as u16
        } else {
            register.0
        };
        match value {
            Some(value) => caller.set_dwarf(target, value),
            None => caller.clear_dwarf(target),
        }
        ra_found |= is_ra;
    }
    if !ra_found || caller.get(DwarfReg::Rip).is_none() {
        return Err(TruncationReason::BadRule(BadRule::NoReturnAddress));
    }
    Ok(Step::Caller {
        regs: caller,
        signal,
    })
}

/// The caller's value of a callee-saved register that the CFI says is saved
/// at `address`. Only the return address must be readable: a register whose
/// slot cannot be read is unknown to the caller, not the end of the stack.
/// A slot below the stack pointer was already popped (gcc's epilogue CFI
/// keeps describing the save slots after the `pop`s), so the register holds
/// the caller's value already; those slots are not in the stack copy either.
fn saved_register(machine: &mut Machine<'_, '_>, register: u16, address: u64) -> Option<u64> {
    match machine.regs.get(DwarfReg::Rsp) {
        Some(sp) if address < sp => machine.regs.get_dwarf(register),
        _ => machine.read(address).ok(),
    }
}
