//! SIGINT and SIGTERM ask the recording to stop; they never kill stoke
//! before it has detached. One arriving while addresses are named ends
//! naming (what is left is named by module and offset) and the outputs are
//! written; the next exits at once.
//!
//! A launched command gets the signal stoke got, once: a Ctrl-C typed on a
//! terminal reaches the command directly (it is in the terminal's
//! foreground process group), so only a SIGINT sent to stoke alone (by
//! `kill`) is passed on here; other signals are passed on by the session.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::Context;
use stoke_record::Interrupts;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Set when a stop signal arrived.
pub static STOP: AtomicBool = AtomicBool::new(false);
/// The signal that arrived.
pub static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// A pidfd of the launched command, to pass a SIGINT on (-1 if none).
static COMMAND: AtomicI32 = AtomicI32::new(-1);
/// How many arrived, and when to give up at once.
pub static INTERRUPTS: Interrupts = Interrupts::new();

/// `si_code` of a signal the kernel raised itself, as the terminal driver
/// does for Ctrl-C.
const SI_KERNEL: libc::c_int = 0x80;

extern "C" fn on_signal(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let first = !STOP.swap(true, Ordering::SeqCst);
    SIGNAL.store(signal, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // it is only read, and only when not null.
    let from_terminal = !info.is_null() && unsafe { (*info).si_code } == SI_KERNEL;
    let command = COMMAND.load(Ordering::SeqCst);
    if first && signal == libc::SIGINT && !from_terminal && command >= 0 {
        // SAFETY: pidfd_send_signal is async-signal-safe; `command` is a
        // pidfd kept open for the life of the process (a pidfd names one
        // process, never a recycled pid); the siginfo argument may be null.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                command,
                libc::SIGINT,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            )
        };
    }
    if INTERRUPTS.arrived() {
        // SAFETY: _exit is async-signal-safe. Asked for by a repeated
        // signal while naming, when no output file is open yet.
        unsafe { libc::_exit(128 + signal) };
    }
}

/// Installs the handlers, without SA_RESTART so a waiting poll returns at once.
pub fn install() -> anyhow::Result<()> {
    let action = SigAction::new(
        SigHandler::SigAction(on_signal),
        SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only uses atomics, pidfd_send_signal and _exit,
        // which are async-signal-safe, and it stays valid for the life of the process.
        unsafe { sigaction(signal, &action) }
            .with_context(|| format!("installing a {signal} handler"))?;
    }
    Ok(())
}

/// Passes a SIGINT sent to stoke alone on to the launched command `pid`
/// (which must be stoke's unreaped child). Without a pidfd nothing is
/// passed on, and the command gets SIGTERM a second after stoke stops.
pub fn forward_sigint_to(pid: u32) {
    // SAFETY: pidfd_open takes plain integers; a non-negative result is a
    // new descriptor nothing else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd >= 0 {
        // SAFETY: see above: the descriptor is new and owned here.
        let fd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as libc::c_int) };
        COMMAND.store(fd.as_raw_fd(), Ordering::SeqCst);
        // Kept open for the life of the process (the handler may use it).
        std::mem::forget(fd);
    }
}
