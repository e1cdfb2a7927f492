//! `stoke dump`: every thread's stack, once.
//!
//! Each thread is stopped on its own just long enough to copy its
//! registers and the top of its stack ([`stoke_sample::snapshot`]); the
//! copies then go through the same consumer as a recording's samples (the
//! [`Aggregator`], so DWARF unwinding, `/proc/PID/root` for other mount
//! namespaces and Python frames work as in `record`) and are named as
//! `record` names them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use stoke_model::{Pid, Tid};
use stoke_profile::{FrameKind, Metadata, SampledTime};
use stoke_sample::{Event, Syscall, ThreadState};
use stoke_symbolize::{SymbolizeOptions, Symbolizer};
use stoke_unwind::UnwindMode;

use crate::aggregate::Aggregator;
use crate::symbols::build_profile;
use crate::{PythonMode, RecordError, Warnings};

/// Options of [`dump`].
#[derive(Clone, Debug)]
pub struct DumpOptions {
    /// How to name addresses (`lines` for `func (file.c:42)`).
    pub symbolize: SymbolizeOptions,
    /// Whether Python frames are read.
    pub python: PythonMode,
    /// Bytes of each thread's stack copied.
    pub stack_size: u32,
}

impl Default for DumpOptions {
    fn default() -> DumpOptions {
        DumpOptions {
            symbolize: SymbolizeOptions::default(),
            python: PythonMode::Auto,
            stack_size: 32768,
        }
    }
}

/// One frame of a dumped stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpFrame {
    /// The function (with ` (file.c:42)` under `lines`).
    pub name: String,
    /// What kind of code it is.
    pub kind: FrameKind,
    /// Source file and line, when known.
    pub location: Option<(String, u32)>,
}

/// One thread of a dump.
#[derive(Clone, Debug)]
pub struct DumpThread {
    /// The thread.
    pub tid: Tid,
    /// Its name.
    pub name: Option<String>,
    /// Its state just before it was stopped.
    pub state: ThreadState,
    /// The system call it was in, if any.
    pub syscall: Option<Syscall>,
    /// Where in the kernel it slept, if it did.
    pub wchan: Option<String>,
    /// Kernel functions, leaf first; `None` when `/proc/…/stack` is
    /// unreadable (it needs root).
    pub kernel: Option<Vec<String>>,
    /// User (and Python) frames, leaf first.
    pub frames: Vec<DumpFrame>,
    /// How long it was stopped.
    pub stopped_for: Duration,
    /// Why it could not be read, if it could not.
    pub error: Option<String>,
}

/// Every thread of a process.
#[derive(Clone, Debug)]
pub struct Dump {
    /// The process.
    pub pid: Pid,
    /// Its name.
    pub process_name: Option<String>,
    /// Its threads, by thread id.
    pub threads: Vec<DumpThread>,
    /// How long stopping and reading every thread took (the threads were
    /// stopped one at a time within it).
    pub capture_time: Duration,
    /// How long naming took.
    pub naming_time: Duration,
    /// Problems to tell the user once each.
    pub warnings: Warnings,
}

/// Stops, reads and lets go of each thread of `pid` in turn, then unwinds
/// and names their stacks.
pub fn dump(pid: Pid, options: &DumpOptions) -> Result<Dump, RecordError> {
    let captured = Instant::now();
    let snapshots = stoke_sample::snapshot(pid, options.stack_size)?;
    let capture_time = captured.elapsed();
    let named = Instant::now();
    let mut aggregator = Aggregator::with_python(UnwindMode::Auto, options.python);
    // The mappings first, as a recording learns them at attach: the
    // unwinder needs them for the first stack already.
    for mapping in stoke_sample::procfs::executable_mappings(pid).unwrap_or_default() {
        aggregator.handle(Event::Mmap {
            pid,
            tid: pid.into(),
            mapping,
        });
    }
    for sample in snapshots.iter().filter_map(|t| t.sample.as_ref()) {
        aggregator.handle(Event::Sample(sample.clone()));
    }
    let meta = Metadata {
        command: format!("pid {pid}"),
        frequency: 1,
        duration: capture_time,
        event: "dump".into(),
        lost: 0,
        truncated: 0,
        sampled: SampledTime::All,
        clock: stoke_profile::Clock::Cpu,
        cgroups: Default::default(),
    };
    let mut warnings = Warnings::default();
    for warning in aggregator.unwind_warnings() {
        warnings.push(warning);
    }
    let stacks = aggregator.stacks();
    // Kernel frames come from /proc (the interrupt's own are of no interest).
    let profile = build_profile(
        &stacks,
        &aggregator.modules,
        &aggregator.python.frames,
        Symbolizer::new(options.symbolize.clone()),
        meta,
        &mut warnings,
        &|| false,
    );
    let mut frames_of: HashMap<Tid, Vec<DumpFrame>> = HashMap::new();
    for (thread, stack, _) in profile.samples() {
        let tid = Tid(profile.thread(thread).tid);
        let frames = profile
            .stack_frames(stack)
            .into_iter()
            .rev()
            .map(|id| {
                let frame = profile.frame(id);
                DumpFrame {
                    name: frame.name.clone(),
                    kind: frame.kind,
                    location: frame.location.clone(),
                }
            })
            .collect();
        frames_of.insert(tid, frames);
    }
    let mut threads: Vec<DumpThread> = snapshots
        .into_iter()
        .map(|t| DumpThread {
            frames: frames_of.remove(&t.tid).unwrap_or_default(),
            tid: t.tid,
            name: t.name,
            state: t.state,
            syscall: t.syscall,
            wchan: t.wchan,
            kernel: t.kernel_stack,
            stopped_for: t.stopped_for,
            error: t.error,
        })
        .collect();
    threads.sort_by_key(|t| t.tid.0);
    Ok(Dump {
        pid,
        process_name: stoke_sample::procfs::thread_name(pid, pid.into()),
        threads,
        capture_time,
        naming_time: named.elapsed(),
        warnings,
    })
}
