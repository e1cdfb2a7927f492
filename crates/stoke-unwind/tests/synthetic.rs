//! Unwinding synthetic stacks: CFI written with gimli's write API into an
//! `.eh_frame` blob, stack memory as an array of words.

mod common;

use common::StackCopy;
use gimli::write::{
    Address, CallFrameInstruction as Cfi, CommonInformationEntry, EhFrame, EndianVec, Expression,
    FrameDescriptionEntry, FrameTable,
};
use gimli::{constants, Encoding, Format, LittleEndian, Register, X86_64};
use stoke_model::{DwarfReg, FrameAddress, Registers};
use stoke_unwind::{
    Code, ModuleRef, ModuleUnwindInfo, StackEnd, TruncationReason, UnwindMode, Unwinder,
};

/// Where the synthetic module is loaded: avma = svma + BIAS.
const BIAS: u64 = 0x5555_0000_0000;
/// Where the synthetic stack copy starts.
const SP: u64 = 0x7ffd_0000_1000;

/// Stated addresses of the synthetic functions.
const LEAF: u64 = 0x1000; // push %rbx; CFA = rsp+16 from +1
const MID: u64 = 0x2000; // push %rbp; mov %rsp,%rbp: CFA = rbp+16 from +4
const ROOT: u64 = 0x3000; // return address undefined (like _start)
const PLT: u64 = 0x4000; // 16-byte entries, CFA expression on rsp and rip
const TRAMPOLINE: u64 = 0x5000; // signal trampoline, FDE from 0x4fff
const NO_CFI: u64 = 0x6000; // no FDE
const EPILOGUE: u64 = 0x7000; // push %rbx at +0, pop %rbx at +0x10: the rule for rbx stays
const VFORK: u64 = 0x8000; // pop %rdi at +0: return address in rdi, CFA = rsp

fn r(reg: DwarfReg) -> Register {
    Register(reg as u16)
}

fn eh_frame() -> Vec<u8> {
    let encoding = Encoding {
        format: Format::Dwarf32,
        version: 1,
        address_size: 8,
    };
    let mut cie = CommonInformationEntry::new(encoding, 1, -8, X86_64::RA);
    cie.add_instruction(Cfi::Cfa(X86_64::RSP, 8));
    cie.add_instruction(Cfi::Offset(X86_64::RA, -8));
    let mut table = FrameTable::default();
    let plain = table.add_cie(cie.clone());

    let mut leaf = FrameDescriptionEntry::new(Address::Constant(LEAF), 0x100);
    leaf.add_instruction(1, Cfi::CfaOffset(16));
    leaf.add_instruction(1, Cfi::Offset(X86_64::RBX, -16));
    table.add_fde(plain, leaf);

    let mut mid = FrameDescriptionEntry::new(Address::Constant(MID), 0x100);
    mid.add_instruction(1, Cfi::CfaOffset(16));
    mid.add_instruction(1, Cfi::Offset(X86_64::RBP, -16));
    mid.add_instruction(4, Cfi::CfaRegister(X86_64::RBP));
    table.add_fde(plain, mid);

    let mut root = FrameDescriptionEntry::new(Address::Constant(ROOT), 0x100);
    root.add_instruction(0, Cfi::Undefined(X86_64::RA));
    table.add_fde(plain, root);

    // gcc's epilogue CFI: after `pop %rbx` the CFA moves back to rsp+8, but
    // the row still says rbx is saved at CFA-16, now below the stack pointer.
    let mut epilogue = FrameDescriptionEntry::new(Address::Constant(EPILOGUE), 0x20);
    epilogue.add_instruction(1, Cfi::CfaOffset(16));
    epilogue.add_instruction(1, Cfi::Offset(X86_64::RBX, -16));
    epilogue.add_instruction(0x11, Cfi::CfaOffset(8));
    table.add_fde(plain, epilogue);

    // glibc's __vfork: `pop %rdi` takes the return address off the stack
    // and keeps it in rdi across the syscall.
    let mut vfork = FrameDescriptionEntry::new(Address::Constant(VFORK), 0x20);
    vfork.add_instruction(1, Cfi::CfaOffset(0));
    vfork.add_instruction(1, Cfi::Register(X86_64::RA, X86_64::RDI));
    table.add_fde(plain, vfork);

    // What ld writes for .plt: CFA = rsp + 8 + ((rip & 15) >= 11 ? 8 : 0).
    let mut plt_cfa = Expression::new();
    plt_cfa.op_breg(r(DwarfReg::Rsp), 8);
    plt_cfa.op_breg(r(DwarfReg::Rip), 0);
    plt_cfa.op(constants::DW_OP_lit15);
    plt_cfa.op(constants::DW_OP_and);
    plt_cfa.op(constants::DW_OP_lit11);
    plt_cfa.op(constants::DW_OP_ge);
    plt_cfa.op(constants::DW_OP_lit3);
    plt_cfa.op(constants::DW_OP_shl);
    plt_cfa.op(constants::DW_OP_plus);
    let mut plt = FrameDescriptionEntry::new(Address::Constant(PLT), 0x40);
    plt.add_instruction(0, Cfi::CfaExpression(plt_cfa));
    table.add_fde(plain, plt);

    // A signal trampoline whose saved context is at rsp: rbp at +0, rip at
    // +8, rsp at +16 (glibc's __restore_rt does the same with ucontext offsets).
    let mut sig_cie = CommonInformationEntry::new(encoding, 1, -8, X86_64::RA);
    sig_cie.signal_trampoline = true;
    let sig = table.add_cie(sig_cie);
    let saved = |offset| {
        let mut e = Expression::new();
        e.op_breg(r(DwarfReg::Rsp), offset);
        e
    };
    let mut cfa = saved(16);
    cfa.op_deref();
    let mut tramp = FrameDescriptionEntry::new(Address::Constant(TRAMPOLINE - 1), 0x20);
    tramp.add_instruction(0, Cfi::CfaExpression(cfa));
    tramp.add_instruction(0, Cfi::Expression(X86_64::RBP, saved(0)));
    tramp.add_instruction(0, Cfi::Expression(X86_64::RA, saved(8)));
    tramp.add_instruction(0, Cfi::Expression(X86_64::RSP, saved(16)));
    table.add_fde(sig, tramp);

    let mut out = EhFrame(EndianVec::new(LittleEndian));
    table.write_eh_frame(&mut out).unwrap();
    out.0.into_vec()
}

fn module() -> ModuleUnwindInfo {
    ModuleUnwindInfo::from_eh_frame(eh_frame(), 0x10_0000)
}

fn run(
    info: &ModuleUnwindInfo,
    regs: Registers,
    mode: UnwindMode,
    stack: &StackCopy,
    max_frames: usize,
) -> (Vec<FrameAddress>, StackEnd) {
    let mut out = Vec::new();
    let end = Unwinder::new().unwind(
        &regs,
        mode,
        &mut |addr| {
            (BIAS..BIAS + 0x10000)
                .contains(&addr)
                .then_some(ModuleRef { info, bias: BIAS })
        },
        &mut |addr| stack.read(addr),
        max_frames,
        &mut out,
    );
    (out, end)
}

use FrameAddress::{InstructionPointer as Ip, ReturnAddress as Ra};

/// leaf (rbx pushed) -> mid (rbp frame) -> root.
fn three_frames() -> (Registers, StackCopy) {
    let mid_rbp = SP + 48;
    let mut words = vec![0u64; 16];
    words[0] = 0xb0b; // saved rbx
    words[1] = BIAS + MID + 0x50; // return into mid
    words[6] = 0xdead_0000; // mid's saved rbp (at mid_rbp)
    words[7] = BIAS + ROOT + 0x20; // return into root
    let regs = Registers::new(BIAS + LEAF + 0x10, SP, mid_rbp);
    (regs, StackCopy::from_words(SP, &words))
}

#[test]
fn cfi_chain_ends_complete_at_an_undefined_return_address() {
    let info = module();
    assert!(info.has_cfi());
    let (regs, stack) = three_frames();
    for mode in [UnwindMode::Dwarf, UnwindMode::Auto] {
        let (frames, end) = run(&info, regs, mode, &stack, 64);
        assert_eq!(end, StackEnd::Complete);
        assert_eq!(
            frames,
            [
                Ip(BIAS + LEAF + 0x10),
                Ra(BIAS + MID + 0x50),
                Ra(BIAS + ROOT + 0x20)
            ]
        );
    }
}

#[test]
fn limits_and_failures_truncate_with_a_reason() {
    let info = module();
    let (regs, stack) = three_frames();

    let (frames, end) = run(&info, regs, UnwindMode::Dwarf, &stack, 2);
    assert_eq!(frames.len(), 2);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::TooDeep));

    let short = StackCopy {
        base: SP,
        bytes: stack.bytes[..40].to_vec(),
    };
    let (frames, end) = run(&info, regs, UnwindMode::Dwarf, &short, 64);
    assert_eq!(frames.len(), 2);
    assert_eq!(
        end,
        StackEnd::Truncated(TruncationReason::StackCopyExhausted)
    );

    let mut outside = regs;
    outside.set(DwarfReg::Rip, 0x1234);
    let (frames, end) = run(&info, outside, UnwindMode::Dwarf, &stack, 64);
    assert_eq!(frames, [Ip(0x1234)]);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::NoModule));

    // mid's frame pointer below the stack pointer: the CFA would move down.
    let mut corrupt = regs;
    corrupt.set(DwarfReg::Rbp, SP - 64);
    let (_, end) = run(&info, corrupt, UnwindMode::Dwarf, &stack, 64);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::Corrupt));

    let (_, end) = run(&info, regs, UnwindMode::Dwarf, &stack, 0);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::TooDeep));
}

#[test]
fn plt_entries_unwind_through_their_cfa_expression() {
    let info = module();
    let (_, stack) = three_frames();
    // Late in the entry (after `push`): CFA = rsp + 16, the word at rsp is pushed data.
    let late = StackCopy::from_words(SP - 8, &[7]);
    let mut stack_late = late.bytes.clone();
    stack_late.extend_from_slice(&stack.bytes);
    let stack_late = StackCopy {
        base: SP - 8,
        bytes: stack_late,
    };
    // Return to mid from the PLT entry: rsp points at the return address (SP + 8).
    let regs = Registers::new(BIAS + PLT + 0x10 + 12, SP, SP + 48);
    let (frames, end) = run(&info, regs, UnwindMode::Dwarf, &stack_late, 64);
    assert_eq!(end, StackEnd::Complete);
    assert_eq!(frames[1..], [Ra(BIAS + MID + 0x50), Ra(BIAS + ROOT + 0x20)]);

    // Early in the entry: CFA = rsp + 8.
    let regs = Registers::new(BIAS + PLT + 0x10 + 2, SP + 8, SP + 48);
    let (frames, end) = run(&info, regs, UnwindMode::Dwarf, &stack, 64);
    assert_eq!(end, StackEnd::Complete);
    assert_eq!(frames[1..], [Ra(BIAS + MID + 0x50), Ra(BIAS + ROOT + 0x20)]);
}

#[test]
fn the_frame_interrupted_by_a_signal_is_an_instruction_pointer() {
    let info = module();
    let interrupted_sp = SP + 0x80;
    let mut words = vec![0u64; 24];
    words[0] = 0; // handler's saved rbx
    words[1] = BIAS + TRAMPOLINE; // handler returns to the trampoline's first byte
    words[2] = 0x1111; // saved context: rbp
    words[3] = BIAS + ROOT + 0x10; // rip: the interrupted instruction
    words[4] = interrupted_sp; // rsp
    let stack = StackCopy::from_words(SP, &words);
    let regs = Registers::new(BIAS + LEAF + 0x20, SP, 0);
    let (frames, end) = run(&info, regs, UnwindMode::Dwarf, &stack, 64);
    assert_eq!(end, StackEnd::Complete);
    assert_eq!(
        frames,
        [
            Ip(BIAS + LEAF + 0x20),
            Ra(BIAS + TRAMPOLINE),
            Ip(BIAS + ROOT + 0x10)
        ]
    );
}

#[test]
fn frame_pointers_cover_code_without_cfi() {
    let info = module();
    // A function without CFI whose frame record is at SP+16: [rbp] = 0,
    // [rbp+8] = return into root.
    let words = [0, 0, 0, BIAS + ROOT + 0x20];
    let stack = StackCopy::from_words(SP, &words);
    let regs = Registers::new(BIAS + NO_CFI + 0x10, SP, SP + 16);

    let (frames, end) = run(&info, regs, UnwindMode::Dwarf, &stack, 64);
    assert_eq!(frames.len(), 1);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::NoUnwindInfo));

    let (frames, end) = run(&info, regs, UnwindMode::Auto, &stack, 64);
    assert_eq!(end, StackEnd::Complete);
    assert_eq!(frames[1], Ra(BIAS + ROOT + 0x20));

    // Frame pointers only: the chain ends at rbp == 0.
    let (frames, end) = run(&info, regs, UnwindMode::FramePointer, &stack, 64);
    assert_eq!(end, StackEnd::Complete);
    assert_eq!(frames, [Ip(BIAS + NO_CFI + 0x10), Ra(BIAS + ROOT + 0x20)]);
}

#[test]
fn an_interrupted_leaf_without_cfi_returns_through_the_word_at_the_stack_pointer() {
    let info = module();
    // Like glibc's clone3, stopped at its `syscall`, past the end of its
    // FDE: nothing pushed, the return address at rsp, rbp a scratch value.
    let stack = StackCopy::from_words(SP, &[BIAS + ROOT + 0x20, 0]);
    let regs = Registers::new(BIAS + NO_CFI + 0x10, SP, 0x1235);
    let (frames, end) = run(&info, regs, UnwindMode::Auto, &stack, 64);
    assert_eq!(end, StackEnd::Complete);
    assert_eq!(frames, [Ip(BIAS + NO_CFI + 0x10), Ra(BIAS + ROOT + 0x20)]);

    // A word at rsp that is no code address: frame pointers, as before.
    let stack = StackCopy::from_words(SP, &[0x1234_5678, 0]);
    let (frames, end) = run(&info, regs, UnwindMode::Auto, &stack, 64);
    assert_eq!(frames.len(), 1);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::Corrupt));

    // A 0 at rsp: a thread's first instruction, the end of its stack.
    let stack = StackCopy::from_words(SP, &[0, BIAS + ROOT + 0x20]);
    let (frames, end) = run(&info, regs, UnwindMode::Auto, &stack, 64);
    assert_eq!(end, StackEnd::Complete);
    assert_eq!(frames, [Ip(BIAS + NO_CFI + 0x10)]);

    // Strict DWARF takes no guess.
    let stack = StackCopy::from_words(SP, &[BIAS + ROOT + 0x20, 0]);
    let (_, end) = run(&info, regs, UnwindMode::Dwarf, &stack, 64);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::NoUnwindInfo));
}

#[test]
fn a_caller_without_cfi_is_no_leaf_and_is_left_only_by_frame_pointers() {
    let info = module();
    // leaf (rbx pushed) returns into code without CFI; the word above is a
    // return into root, but that function has run and pushed: no guess.
    let words = [0xb0b, BIAS + NO_CFI + 0x10, BIAS + ROOT + 0x20, 0];
    let stack = StackCopy::from_words(SP, &words);
    let regs = Registers::new(BIAS + LEAF + 0x10, SP, 0x1235);
    let (frames, end) = run(&info, regs, UnwindMode::Auto, &stack, 64);
    assert_eq!(frames, [Ip(BIAS + LEAF + 0x10), Ra(BIAS + NO_CFI + 0x10)]);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::Corrupt));
}

#[test]
fn a_leaf_that_popped_its_return_address_into_a_register_unwinds() {
    let info = module();
    // In __vfork's syscall: the caller's stack pointer is the current one.
    let stack = StackCopy::from_words(SP, &[0, 0]);
    let mut regs = Registers::new(BIAS + VFORK + 0x8, SP, 0);
    regs.set(DwarfReg::Rdi, BIAS + ROOT + 0x20);
    let (frames, end) = run(&info, regs, UnwindMode::Dwarf, &stack, 64);
    assert_eq!(end, StackEnd::Complete);
    assert_eq!(frames, [Ip(BIAS + VFORK + 0x8), Ra(BIAS + ROOT + 0x20)]);
}

#[test]
fn frame_pointer_chain_rejects_a_frame_record_below_the_stack_pointer() {
    let info = module();
    let stack = StackCopy::from_words(SP, &[0; 8]);
    let regs = Registers::new(BIAS + NO_CFI, SP, SP - 16);
    let (_, end) = run(&info, regs, UnwindMode::FramePointer, &stack, 64);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::Corrupt));
    let regs = Registers::new(BIAS + NO_CFI, SP, SP + 3);
    let (_, end) = run(&info, regs, UnwindMode::FramePointer, &stack, 64);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::Corrupt));
}

#[test]
fn a_register_saved_below_the_stack_pointer_was_popped_and_does_not_stop_the_walk() {
    let info = module();
    // In the epilogue, past `pop %rbx`: only the return address is above sp.
    let stack = StackCopy::from_words(SP, &[BIAS + ROOT + 0x20, 0]);
    let regs = {
        let mut r = Registers::new(BIAS + EPILOGUE + 0x11, SP, 0);
        r.set(DwarfReg::Rbx, 0xb0b);
        r
    };
    // Twice with one unwinder: the second walk takes the cached compact row.
    let mut unwinder = Unwinder::new();
    for _ in 0..2 {
        let mut frames = Vec::new();
        let end = unwinder.unwind(
            &regs,
            UnwindMode::Dwarf,
            &mut |addr| {
                (BIAS..BIAS + 0x10000).contains(&addr).then_some(ModuleRef {
                    info: &info,
                    bias: BIAS,
                })
            },
            &mut |addr| stack.read(addr),
            64,
            &mut frames,
        );
        assert_eq!(end, StackEnd::Complete);
        assert_eq!(frames, [Ip(BIAS + EPILOGUE + 0x11), Ra(BIAS + ROOT + 0x20)]);
    }
}

/// Where the synthetic JIT code lies: anonymous executable memory, no module.
const JIT: u64 = 0x7f00_1234_0000;

fn run_with_jit(
    info: &ModuleUnwindInfo,
    regs: Registers,
    mode: UnwindMode,
    stack: &StackCopy,
) -> (Vec<FrameAddress>, StackEnd) {
    let mut out = Vec::new();
    let end = Unwinder::new().unwind_code(
        &regs,
        mode,
        &mut |addr| {
            if (BIAS..BIAS + 0x10000).contains(&addr) {
                Some(Code::Module(ModuleRef { info, bias: BIAS }))
            } else {
                (JIT..JIT + 0x1000).contains(&addr).then_some(Code::Jit)
            }
        },
        &mut |addr| stack.read(addr),
        64,
        &mut out,
    );
    (out, end)
}

/// leaf (CFI, rbx pushed) -> two JIT frames (frame records) -> mid (CFI,
/// rbp frame) -> root: native code called from JIT code called from native code.
fn through_jit() -> (Registers, StackCopy) {
    let mut words = vec![0u64; 16];
    words[0] = 0xb0b; // leaf's saved rbx
    words[1] = JIT + 0x40; // leaf returns into the first JIT frame
    words[4] = SP + 64; // first JIT frame record (at SP+32): caller rbp
    words[5] = JIT + 0x140; // returns into the second JIT frame
    words[8] = SP + 96; // second JIT frame record (at SP+64): mid's rbp
    words[9] = BIAS + MID + 0x50; // returns into mid
    words[12] = 0xdead_0000; // mid's saved rbp
    words[13] = BIAS + ROOT + 0x20; // mid returns into root
    let regs = Registers::new(BIAS + LEAF + 0x10, SP, SP + 32);
    (regs, StackCopy::from_words(SP, &words))
}

#[test]
fn jit_frames_are_walked_by_frame_pointers_back_into_cfi() {
    let info = module();
    let (regs, stack) = through_jit();
    let whole = [
        Ip(BIAS + LEAF + 0x10),
        Ra(JIT + 0x40),
        Ra(JIT + 0x140),
        Ra(BIAS + MID + 0x50),
        Ra(BIAS + ROOT + 0x20),
    ];
    let (frames, end) = run_with_jit(&info, regs, UnwindMode::Auto, &stack);
    assert_eq!(end, StackEnd::Complete);
    assert_eq!(frames, whole);

    // CFI only: the first JIT frame ends the walk, as it does when the
    // caller does not say the memory is JIT code.
    let (frames, end) = run_with_jit(&info, regs, UnwindMode::Dwarf, &stack);
    assert_eq!(frames, whole[..2]);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::NoModule));
    let (frames, end) = run(&info, regs, UnwindMode::Auto, &stack, 64);
    assert_eq!(frames, whole[..2]);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::NoModule));
}

#[test]
fn a_sample_in_jit_code_starts_the_walk_there() {
    let info = module();
    let (_, stack) = through_jit();
    // Sampled in the first JIT frame: rsp below its frame record.
    let regs = Registers::new(JIT + 0x30, SP + 16, SP + 32);
    let (frames, end) = run_with_jit(&info, regs, UnwindMode::Auto, &stack);
    assert_eq!(end, StackEnd::Complete);
    assert_eq!(
        frames,
        [
            Ip(JIT + 0x30),
            Ra(JIT + 0x140),
            Ra(BIAS + MID + 0x50),
            Ra(BIAS + ROOT + 0x20)
        ]
    );

    // JIT code without a frame pointer (rbp 0) is not taken for the root.
    let regs = Registers::new(JIT + 0x30, SP + 16, 0);
    let (frames, end) = run_with_jit(&info, regs, UnwindMode::Auto, &stack);
    assert_eq!(frames, [Ip(JIT + 0x30)]);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::NoUnwindInfo));
    // A garbage frame pointer below the stack pointer ends it as corrupt.
    let regs = Registers::new(JIT + 0x30, SP + 16, SP);
    let (_, end) = run_with_jit(&info, regs, UnwindMode::Auto, &stack);
    assert_eq!(end, StackEnd::Truncated(TruncationReason::Corrupt));
}
