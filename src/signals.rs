//! SIGINT and SIGTERM ask the recording to stop; they never kill stoke
//! before it has detached and written its outputs.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::Context;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Set when a stop signal arrived.
pub static STOP: AtomicBool = AtomicBool::new(false);
/// The signal that arrived.
pub static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    SIGNAL.store(signal, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the handlers, without SA_RESTART so a waiting poll returns at once.
pub fn install() -> anyhow::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to two atomics, which is
        // async-signal-safe, and it stays valid for the life of the process.
        unsafe { sigaction(signal, &action) }
            .with_context(|| format!("installing a {signal} handler"))?;
    }
    Ok(())
}
