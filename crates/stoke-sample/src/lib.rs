//! Targets and samplers.
//!
//! This crate owns everything that touches the target process: starting a
//! command stopped and releasing it at `exec`, attaching to a running pid,
//! discovering its threads and mappings through `/proc`, and sampling it with
//! `perf_event_open` and its ring buffers ([`PerfSampler`]; time off the CPU
//! from its context-switch event and switch records) or, where perf events
//! are forbidden, by interrupting one thread at a time under ptrace
//! ([`PtraceSampler`]).
//!
//! Design constraints:
//! - It emits plain [`Event`]s and knows nothing of unwinding, symbols or
//!   profiles. A later ptrace sampler emits the same events.
//! - All `unsafe` lives in `sys/`, one module per syscall family, behind RAII
//!   guards (file descriptors, ring-buffer mappings).
//! - Errors keep the errno and say what to change ([`SampleError`]).
//! - Nothing here may leave the target stopped, traced or killed: dropping a
//!   sampler closes its events and the target runs on untouched.

mod error;
mod event;
mod perf;
pub mod probe;
pub mod procfs;
mod ptrace;
mod scope;
mod sys;
mod target;

pub use error::{Call, SampleError};
pub use event::{Attached, Event, OffCpu, Sample, StackBytes, SwitchDirection};
pub use perf::sampler::PerfSampler;
pub use perf::system::SystemSampler;
pub use ptrace::backend::{Backend, Started};
pub use ptrace::sampler::PtraceSampler;
pub use ptrace::snapshot::{snapshot, ThreadSnapshot, ThreadState};
pub use ptrace::syscalls::Syscall;
pub use scope::{NamePattern, SystemScope};
pub use target::{Child, ChildStdout, CommandSpec};

use std::time::Duration;

use stoke_model::Pid;

/// Which counter drives sampling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventChoice {
    /// Hardware cycles where the machine has a PMU, else cpu-clock.
    #[default]
    Auto,
    /// The `cpu-clock` software event (works everywhere, also in VMs).
    CpuClock,
    /// The hardware `cycles` event; an error where there is no PMU.
    Cycles,
}

/// What stack information each sample carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackCapture {
    /// The kernel's callchain only: kernel frames, then user frames walked
    /// by frame pointers.
    Callchain,
    /// Kernel frames from the callchain, plus the user registers and a copy
    /// of the top `size` bytes of the user stack, for DWARF unwinding in user
    /// space. The kernel's frame-pointer walk of the user stack is left out
    /// (`Sample::user_callchain` is empty): it would only cost the target time.
    RegsAndStack {
        /// Bytes of user stack copied per sample (rounded to 8, at most 65528).
        size: u32,
    },
}

/// Options of a sampler.
#[derive(Clone, Debug)]
pub struct SamplerOptions {
    /// Samples per second per thread running on a CPU.
    pub frequency: u32,
    /// The counter to sample on.
    pub event: EventChoice,
    /// Whether to include kernel frames in callchains.
    pub kernel: bool,
    /// What stacks to capture.
    pub stack: StackCapture,
    /// Data pages per ring buffer (a power of two).
    pub ring_pages: usize,
    /// Which threads are sampled.
    pub mode: SampleMode,
    /// Wake the consumer for every sample rather than for a batch, so that
    /// what it reads of the target at a sample (Python frames) is read
    /// close to when the sample was taken. Costs a wakeup per sample.
    pub wake_each_sample: bool,
    /// Where per-CPU events are allowed (root, CAP_PERFMON or
    /// `perf_event_paranoid` <= 0), sample a launched command or attached
    /// process with per-CPU events filtered to its processes, so that
    /// threads shorter than a sample period are sampled too; else (and
    /// when false) with per-task events.
    pub per_cpu: bool,
}

/// Which threads a sampler samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SampleMode {
    /// Threads on a CPU: where CPU time goes.
    #[default]
    Cpu,
    /// Every thread, running or blocked: where wall-clock time goes.
    /// Samples of blocked threads carry [`Sample::off_cpu`] (ptrace), or
    /// are taken as threads leave the CPU and weighed by the time until
    /// they come back ([`Sample::switch_out`], perf events).
    Wall,
    /// Only time off the CPU: where threads wait.
    OffCpu,
}

impl SampleMode {
    /// Whether time off the CPU is sampled ([`SampleMode::Wall`] and
    /// [`SampleMode::OffCpu`]).
    pub fn samples_off_cpu(self) -> bool {
        self != SampleMode::Cpu
    }
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            frequency: 999,
            event: EventChoice::Auto,
            kernel: true,
            stack: StackCapture::Callchain,
            ring_pages: 256,
            mode: SampleMode::Cpu,
            wake_each_sample: false,
            per_cpu: true,
        }
    }
}

/// What a call to [`Sampler::poll`] saw besides events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// The target process (the attached pid, or the launched command's
    /// direct child) has exited; drain and stop.
    pub target_exited: bool,
}

/// How completely a sampler covered the target's CPU time, known once it
/// has finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// The sampler that recorded ([`Backend::Perf`] or [`Backend::Ptrace`]).
    pub backend: Backend,
    /// CPU time the target (its threads and the processes it started) used
    /// while sampled, where the sampler could measure it.
    pub cpu_time: Option<Duration>,
    /// Whether time in the kernel went unsampled (perf events with
    /// `exclude_kernel`, forced on unprivileged users by
    /// `perf_event_paranoid` 2 or more).
    pub kernel: KernelTime,
    /// Samples due that could not be taken (ptrace: the thread did not stop
    /// in time); ring-buffer losses are counted apart, as lost records.
    pub missed: u64,
}

/// Whether samples are taken while a thread runs in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelTime {
    /// Kernel time is sampled (the ptrace sampler sees it as the system
    /// call a thread is in).
    #[default]
    Sampled,
    /// Only user time is sampled, because `perf_event_paranoid` (this level)
    /// excludes the kernel for users without CAP_PERFMON.
    NotSampled {
        /// The `perf_event_paranoid` level read.
        paranoid: i32,
    },
}

/// A read of a sampled thread's memory made while the thread is still
/// stopped for the sample, before it is resumed (so what it reads is as at
/// the sample): it is given the sample (registers, stack copy) and may set
/// [`Sample::attached`]. It runs on the thread that drives ptrace, inside
/// the stop: it must be short and never block (only memory reads of the
/// target, no files).
pub type WhileStopped = Box<dyn FnMut(&mut Sample) + Send>;

/// A source of events about a target.
pub trait Sampler {
    /// Waits up to `timeout` (forever if `None`) for events or the target's
    /// exit, and hands every event read to `sink`. Returns early when
    /// interrupted by a signal (with no error), so callers can check flags.
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        sink: &mut dyn FnMut(Event),
    ) -> Result<PollOutcome, SampleError>;

    /// Stops sampling (disables every event) and hands the events still
    /// buffered to `sink`. After this the target runs unobserved.
    fn finish(&mut self, sink: &mut dyn FnMut(Event)) -> Result<(), SampleError>;

    /// A one-line description of what is sampled and why, e.g.
    /// `cpu-clock at 999 Hz (no hardware PMU: cycles not supported)`.
    fn description(&self) -> String;

    /// The name of what is counted, for the profile's metadata:
    /// `cycles`, `cpu-clock`, `ptrace (cpu)`, `ptrace (wall)`.
    fn event(&self) -> String;

    /// The pid sampled (the attached process or the launched command).
    fn target(&self) -> Pid;

    /// Installs `hook`, run on every sample while its thread is stopped.
    /// Returns false (dropping it) where threads are not stopped to be
    /// sampled (perf events): there the sample's reader reads later.
    fn read_while_stopped(&mut self, hook: WhileStopped) -> bool {
        drop(hook);
        false
    }

    /// How completely the target was covered; complete after
    /// [`Sampler::finish`].
    fn coverage(&self) -> Coverage {
        Coverage::default()
    }
}

impl PerfSampler {
    /// Attaches to every thread of a running process, and to threads it
    /// creates later. Emits [`Event::Comm`] and [`Event::Mmap`] events for the
    /// existing threads and mappings (read from `/proc`) first.
    ///
    /// The process is never stopped or traced; dropping the sampler leaves
    /// it running untouched.
    pub fn attach(pid: Pid, options: &SamplerOptions) -> Result<PerfSampler, SampleError> {
        perf::attach::attach(pid, options)
    }

    /// Starts a command stopped, arms events that enable at its `exec` and
    /// follow its threads, forks and execs, then lets it run. Its first
    /// instruction is sampled.
    ///
    /// Fails with [`SampleError::CommandNotFound`] when the program is not
    /// on `PATH` (or does not exist), and [`SampleError::Exec`] when it
    /// cannot be executed; no process is left behind then.
    pub fn launch(
        command: &CommandSpec,
        options: &SamplerOptions,
    ) -> Result<(PerfSampler, Child), SampleError> {
        perf::launch::launch(command, options)
    }
}

/// Attaches to a running process with `backend`; see [`Backend`].
pub fn attach(
    backend: Backend,
    pid: Pid,
    options: &SamplerOptions,
) -> Result<Started, SampleError> {
    ptrace::backend::attach(backend, pid, options)
}

/// Records every process in `scope` with per-CPU events (perf events only);
/// with `command`, that command is launched and recording lasts its life.
///
/// Fails with [`SampleError::PermissionDenied`] (naming what is needed:
/// `perf_event_paranoid` <= 0, CAP_PERFMON or root) where per-CPU events
/// are refused, and [`SampleError::Unsupported`] for the ptrace backend.
/// In the off-CPU modes every CPU also gets a context-switch event (see
/// [`SampleMode::Wall`]), and [`SampleError::KernelExcluded`] is returned
/// where its samples would be dropped.
pub fn system(
    backend: Backend,
    scope: &SystemScope,
    command: Option<&CommandSpec>,
    options: &SamplerOptions,
) -> Result<Started, SampleError> {
    if backend == Backend::Ptrace {
        return Err(SampleError::Unsupported(
            "the ptrace backend samples one process's threads and cannot record every CPU \
             (-a, --cgroup, --name, several pids): use --backend perf or auto"
                .to_string(),
        ));
    }
    let opened = perf::system_targets::system(scope, command, options);
    let (sampler, child): (Box<dyn Sampler>, _) = match (opened, scope, command) {
        (Ok((sampler, child)), _, _) => (Box::new(sampler), child),
        // Several pids can also be followed with per-task events, as an
        // unprivileged user may (each process's own events).
        (Err(SampleError::PermissionDenied { .. }), SystemScope::Pids(pids), None) => (
            Box::new(perf::multi::MultiSampler::attach(pids, options)?),
            None,
        ),
        (Err(err), _, _) => return Err(err),
    };
    Ok(Started {
        sampler,
        child,
        fallback: None,
        warnings: Vec::new(),
    })
}

/// Launches a command with `backend`; see [`Backend`].
pub fn launch(
    backend: Backend,
    command: &CommandSpec,
    options: &SamplerOptions,
) -> Result<Started, SampleError> {
    ptrace::backend::launch(backend, command, options)
}

impl PtraceSampler {
    /// Seizes every thread of a running process with ptrace (without
    /// stopping it), and threads and processes it creates later. Emits
    /// [`Event::Comm`] and [`Event::Mmap`] events for the existing threads
    /// and mappings first.
    ///
    /// Dropping the sampler (also while unwinding from a panic) detaches
    /// from every thread and leaves the process running, with no stop or
    /// signal lost.
    pub fn attach(pid: Pid, options: &SamplerOptions) -> Result<PtraceSampler, SampleError> {
        ptrace::launch::attach(pid, options)
    }

    /// Starts a command held on a pipe, seizes it, then lets it exec;
    /// sampling starts at the exec. Its threads, forks and execs are
    /// followed. Errors as for [`PerfSampler::launch`].
    pub fn launch(
        command: &CommandSpec,
        options: &SamplerOptions,
    ) -> Result<(PtraceSampler, Child), SampleError> {
        ptrace::launch::launch(command, options)
    }
}
