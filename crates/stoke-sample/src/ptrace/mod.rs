//! The ptrace sampler, for where perf events are forbidden (Docker's default
//! seccomp profile, `perf_event_paranoid` 3) and for wall-clock profiles.
//!
//! Every thread is seized with `PTRACE_SEIZE` (never stopped as a whole);
//! forked children and execs are followed through
//! `PTRACE_O_TRACEFORK`/`TRACEVFORK`/`TRACEEXEC`, and new threads are found
//! in `/proc/PID/task` at the start of each round and seized then (a clone
//! event would stop the thread starting them until stoke looks). At each tick
//! one thread is interrupted, its registers and the top of its stack are
//! copied (`PTRACE_GETREGS`, `process_vm_readv`), and it is resumed at once.
//! The samples look like perf's (`user_regs` + `user_stack`), so they are
//! unwound the same way.
//!
//! Detaching is unconditional: dropping the sampler (on every path: finish,
//! error, panic) detaches from every thread, passing on a signal whose
//! delivery stop was pending. When stoke is killed outright (SIGKILL) the
//! kernel detaches its tracees itself; `PTRACE_O_EXITKILL` is never set.

pub(crate) mod backend;
pub(crate) mod capture;
pub(crate) mod launch;
pub(crate) mod maps;
pub(crate) mod sampler;
pub(crate) mod snapshot;
pub(crate) mod stat;
pub(crate) mod syscalls;
pub(crate) mod tracer;
