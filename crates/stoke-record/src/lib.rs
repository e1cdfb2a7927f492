//! The recording session.
//!
//! Drives a sampler, tracks the target's processes, threads and mappings,
//! turns each sample into module-relative addresses as it arrives and counts
//! it in a table keyed by (thread, address stack). Nothing per sample is kept.
//! When recording stops, every unique address is symbolized once, in batch
//! per module, and a [`stoke_profile::Profile`] is built.
//!
//! Design constraints:
//! - The same consumer serves live sampling and replayed event streams
//!   ([`Aggregator`] takes plain [`stoke_sample::Event`]s).
//! - Memory grows with unique stacks, not with samples or duration.
//! - The target is never harmed: stopping always goes through the sampler's
//!   `finish`, and a launched command is only ever sent the signal stoke got.

mod aggregate;
mod dump;
mod facts;
mod hash;
mod live;
mod modules;
mod offcpu;
mod processes;
mod python;
mod session;
mod stack;
mod store;
mod symbols;
mod sys;
mod unwind;
mod wait;
mod warning;

pub use aggregate::{Aggregator, CountKey, StackStats};
pub use dump::{dump, Dump, DumpFrame, DumpOptions, DumpThread};
pub use facts::{LiveProcfs, ModuleUnavailable, ProcessFacts, ReplayFacts};
pub use live::{LiveFrame, LiveNamer};
pub use python::{PythonMode, PYTHON_STALE_FRAME};
pub use session::{Control, Interrupts, Progress, Recording, Session, StopReason};
pub use stack::{ModuleIndex, RawFrame, ThreadKey, BLOCKED_PREFIX, OFF_CPU_FRAME, RUNNABLE_FRAME};
pub use stoke_unwind::TruncationReason;
pub use warning::{Warning, Warnings};

use std::time::Duration;

use stoke_model::Pid;
pub use stoke_sample::{Backend, SampleMode};
use stoke_sample::{CommandSpec, SampleError, SamplerOptions};
pub use stoke_sample::{NamePattern, SystemScope};
pub use stoke_symbolize::SymbolizeOptions;
pub use stoke_unwind::UnwindMode;

/// What to profile.
#[derive(Clone, Debug)]
pub enum Target {
    /// A running process, by pid.
    Pid(Pid),
    /// A command to start and profile from its first instruction.
    Command(CommandSpec),
    /// Several processes, or the whole machine, with per-CPU events; with
    /// a command, recording lasts the command's life.
    System {
        /// Which processes.
        scope: SystemScope,
        /// A command to run meanwhile.
        command: Option<CommandSpec>,
    },
}

/// Options of a recording session.
#[derive(Clone, Debug, Default)]
pub struct RecordOptions {
    /// How to sample.
    pub sampler: SamplerOptions,
    /// How to name addresses.
    pub symbolize: SymbolizeOptions,
    /// How to unwind user stacks that come with registers and stack bytes.
    pub unwind: UnwindMode,
    /// Stop after this long (else at the target's exit or on request).
    pub duration: Option<Duration>,
    /// Which sampler to use (`sampler.mode` says which threads it samples).
    pub backend: Backend,
    /// Whether Python frames are read from CPython targets.
    pub python: PythonMode,
    /// Whether each process's root frame carries its pid (`name-PID`).
    pub per_process: bool,
    /// Whether each process's threads are counted together (as its main
    /// thread), so memory grows with processes, not threads.
    pub merge_threads: bool,
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The sampler failed (attaching, launching, reading events).
    #[error(transparent)]
    Sample(#[from] SampleError),
}
