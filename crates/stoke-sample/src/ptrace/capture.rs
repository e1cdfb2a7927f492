//! Turning a thread stopped under ptrace into a [`Sample`]: its registers in
//! DWARF numbering, a copy of the top of its stack, a frame-pointer walk for
//! `--unwind fp`, and what it was blocked in.

use stoke_model::{DwarfReg, Pid, Registers, Tid};

use crate::sys::ptrace::UserRegs;
use crate::sys::{ring::page_size, time, vm};
use crate::{OffCpu, Sample, StackBytes, StackCapture, Syscall};

/// Bytes copied for a frame-pointer walk when no stack size is configured.
const CALLCHAIN_COPY: usize = 16384;
/// Frames of a frame-pointer walk at most.
const MAX_CALLCHAIN: usize = 512;

/// What to capture from each stopped thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Capture {
    /// Registers and stack, or a frame-pointer callchain.
    pub(crate) stack: StackCapture,
    /// The period credited to each sample, in nanoseconds.
    pub(crate) period: u64,
}

/// The DWARF registers of a `user_regs_struct`.
pub(crate) fn dwarf_registers(regs: &UserRegs) -> Registers {
    let mut r = Registers::default();
    for (reg, value) in [
        (DwarfReg::Rax, regs.rax),
        (DwarfReg::Rdx, regs.rdx),
        (DwarfReg::Rcx, regs.rcx),
        (DwarfReg::Rbx, regs.rbx),
        (DwarfReg::Rsi, regs.rsi),
        (DwarfReg::Rdi, regs.rdi),
        (DwarfReg::Rbp, regs.rbp),
        (DwarfReg::Rsp, regs.rsp),
        (DwarfReg::R8, regs.r8),
        (DwarfReg::R9, regs.r9),
        (DwarfReg::R10, regs.r10),
        (DwarfReg::R11, regs.r11),
        (DwarfReg::R12, regs.r12),
        (DwarfReg::R13, regs.r13),
        (DwarfReg::R14, regs.r14),
        (DwarfReg::R15, regs.r15),
        (DwarfReg::Rip, regs.rip),
    ] {
        r.set(reg, value);
    }
    r
}

/// `restart_syscall`: what an interrupted sleep continues in.
const RESTART_SYSCALL: Syscall = Syscall(219);

/// The system call a stopped thread was in: `orig_rax` holds its number
/// from entry until it returns, and -1 outside system calls.
pub(crate) fn syscall_of(regs: &UserRegs) -> Option<Syscall> {
    let nr = regs.orig_rax as i64;
    (0..=u32::MAX as i64)
        .contains(&nr)
        .then_some(Syscall(nr as u32))
}

/// The system call a blocked thread waits in, seeing through
/// `restart_syscall`: interrupting a sleep (`nanosleep`, `poll`, `futex`
/// with a timeout…) makes the kernel continue it as `restart_syscall`,
/// which says nothing. `last` remembers the thread's last real system
/// call and where it was made, and names the restarted one when it was
/// made from the same place.
pub(crate) fn waited_syscall(
    regs: &UserRegs,
    last: &mut Option<(u64, Syscall)>,
) -> Option<Syscall> {
    let syscall = syscall_of(regs)?;
    if syscall != RESTART_SYSCALL {
        *last = Some((regs.rip, syscall));
        return Some(syscall);
    }
    match *last {
        Some((rip, real)) if rip == regs.rip => Some(real),
        _ => Some(syscall),
    }
}

/// A thread that stoke's previous interrupt woke from a blocking system
/// call is runnable until it is back asleep in it (on a busy machine that
/// can take a while): its instruction pointer is then on the `syscall`
/// instruction (2 bytes before where it blocked, before re-entering) or
/// just after it (inside the call, on its way back to sleep), with a
/// system call number. It is still waiting, as far as its program is
/// concerned.
pub(crate) fn back_to_wait(regs: &UserRegs, last: &Option<(u64, Syscall)>) -> Option<Syscall> {
    let (rip, syscall) = (*last)?;
    let at_call = regs.rip == rip || regs.rip.wrapping_add(2) == rip;
    (at_call && syscall_of(regs).is_some()).then_some(syscall)
}

/// Walks saved frame pointers in a stack copy: the instruction pointer,
/// then each return address at `[rbp + 8]`, following `[rbp]` upwards.
pub(crate) fn frame_pointer_walk(ip: u64, bp: u64, stack: &StackBytes) -> Vec<u64> {
    let mut chain = vec![ip];
    let mut bp = bp;
    while chain.len() < MAX_CALLCHAIN {
        let (Some(next), Some(ret)) = (stack.read_u64(bp), stack.read_u64(bp.wrapping_add(8)))
        else {
            break;
        };
        if ret == 0 {
            break;
        }
        chain.push(ret);
        if next <= bp {
            break;
        }
        bp = next;
    }
    chain
}

/// Turns registers into a sample of thread `tid` of `pid`: those of a
/// stopped thread, or those a blocked thread had when it was last stopped (its
/// user registers cannot change while it stays blocked in the same call).
/// The stack is read now; the thread need not be stopped for that.
/// `blocked` is `None` in CPU mode; in wall mode, whether the thread was
/// blocked (then its system call is added; `last_syscall` is the thread's
/// memory for [`waited_syscall`]).
pub(crate) fn capture_with(
    pid: Pid,
    tid: Tid,
    regs: &UserRegs,
    cpu: u32,
    blocked: Option<bool>,
    last_syscall: &mut Option<(u64, Syscall)>,
    how: &Capture,
) -> Sample {
    let size = match how.stack {
        StackCapture::RegsAndStack { size } => (size as usize).min(65528) & !7,
        StackCapture::Callchain => CALLCHAIN_COPY,
    };
    let mut bytes = vec![0; size];
    let read = vm::read(tid.0 as libc::pid_t, regs.rsp, &mut bytes, page_size()).unwrap_or(0);
    bytes.truncate(read);
    let stack = StackBytes {
        start: regs.rsp,
        bytes,
        hit_limit: read == size && size > 0,
    };
    let mut sample = Sample {
        pid,
        tid,
        time: time::monotonic_ns(),
        cpu,
        period: how.period,
        off_cpu: match blocked {
            None => None,
            Some(true) => Some(OffCpu {
                syscall: waited_syscall(regs, last_syscall),
            }),
            Some(false) => back_to_wait(regs, last_syscall).map(|syscall| OffCpu {
                syscall: Some(syscall),
            }),
        },
        ..Sample::default()
    };
    match how.stack {
        StackCapture::RegsAndStack { .. } => {
            sample.user_regs = Some(dwarf_registers(regs));
            sample.user_stack = Some(stack);
        }
        StackCapture::Callchain => {
            sample.user_callchain = frame_pointer_walk(regs.rip, regs.rbp, &stack);
        }
    }
    sample
}

/// `-ERESTARTNOHAND`: the kernel's "restart this call unless a handler
/// runs" return value (never seen by programs).
const ERESTARTNOHAND: u64 = (-514i64) as u64;
/// `-EINTR` in `rax`.
const MINUS_EINTR: u64 = (-(libc::EINTR as i64)) as u64;

/// Makes a system call that stoke's interrupt cut short restart instead of
/// failing. Most blocking calls then hold `-ERESTART*` in `rax`, which the
/// kernel turns into a restart once the thread resumes (no handler runs).
/// A few (`epoll_wait`, `io_getevents`, …) return a plain `-EINTR`: it is
/// rewritten to `-ERESTARTNOHAND`, so these restart too; a signal with a
/// handler that arrives meanwhile still makes them fail with EINTR, as the
/// kernel would have. Returns the registers to write back, if any.
pub(crate) fn restartable(regs: &UserRegs) -> Option<UserRegs> {
    let in_syscall = (regs.orig_rax as i64) >= 0;
    let mut fixed = *regs;
    fixed.rax = ERESTARTNOHAND;
    (in_syscall && regs.rax == MINUS_EINTR).then_some(fixed)
}

/// A thread's registers kept while it stays blocked at one place.
#[derive(Clone, Copy)]
pub(crate) struct SavedRegs(pub(crate) UserRegs);

impl std::fmt::Debug for SavedRegs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SavedRegs {{ rip: {:#x}, rsp: {:#x} }}",
            self.0.rip, self.0.rsp
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(start: u64, words: &[u64]) -> StackBytes {
        StackBytes {
            start,
            bytes: words.iter().flat_map(|w| w.to_le_bytes()).collect(),
            hit_limit: false,
        }
    }

    #[test]
    fn frame_pointers_are_followed_upwards_only() {
        // Frames at 0x1000 (-> 0x1010) and 0x1010 (-> 0x1000, a loop).
        let s = stack(0x1000, &[0x1010, 0xaaa, 0x1000, 0xbbb]);
        assert_eq!(frame_pointer_walk(0x5, 0x1000, &s), vec![0x5, 0xaaa, 0xbbb]);
        assert_eq!(frame_pointer_walk(0x5, 0x9000, &s), vec![0x5]);
    }

    #[test]
    fn orig_rax_names_the_system_call() {
        let mut regs: UserRegs = zeroed_regs();
        regs.orig_rax = 202;
        assert_eq!(syscall_of(&regs), Some(Syscall(202)));
        regs.orig_rax = u64::MAX;
        assert_eq!(syscall_of(&regs), None);
        let mut last = None;
        regs.orig_rax = 230;
        regs.rip = 0x40;
        assert_eq!(waited_syscall(&regs, &mut last), Some(Syscall(230)));
        regs.orig_rax = 219;
        assert_eq!(waited_syscall(&regs, &mut last), Some(Syscall(230)));
        regs.rip = 0x3e;
        assert_eq!(back_to_wait(&regs, &last), Some(Syscall(230)));
        regs.rip = 0x80;
        assert_eq!(back_to_wait(&regs, &last), None);
        assert_eq!(waited_syscall(&regs, &mut last), Some(Syscall(219)));
        regs.orig_rax = 232;
        regs.rax = (-4i64) as u64;
        assert_eq!(restartable(&regs).map(|r| r.rax as i64), Some(-514));
        regs.rax = (-512i64) as u64;
        assert!(restartable(&regs).is_none());
        regs.orig_rax = u64::MAX;
        regs.rax = (-4i64) as u64;
        assert!(restartable(&regs).is_none());
        regs.rip = 0x1234;
        regs.rsp = 0x7000;
        let r = dwarf_registers(&regs);
        assert_eq!((r.ip(), r.sp()), (0x1234, 0x7000));
    }

    fn zeroed_regs() -> UserRegs {
        UserRegs {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            rbp: 0,
            rbx: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rax: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            orig_rax: 0,
            rip: 0,
            cs: 0,
            eflags: 0,
            rsp: 0,
            ss: 0,
            fs_base: 0,
            gs_base: 0,
            ds: 0,
            es: 0,
            fs: 0,
            gs: 0,
        }
    }
}
