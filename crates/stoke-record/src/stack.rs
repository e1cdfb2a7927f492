//! Frames as captured: normalized addresses, not yet named.

use stoke_model::{FrameAddress, Pid, Tid};
use stoke_sample::Syscall;
use stoke_unwind::TruncationReason;

/// The thread a stack was sampled on, with the names it had then.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ThreadKey {
    /// The process.
    pub pid: Pid,
    /// The thread.
    pub tid: Tid,
    /// The process's name then.
    pub process_name: Option<String>,
    /// The thread's name then.
    pub thread_name: Option<String>,
}

/// Index of a [`ThreadKey`] in the aggregator's thread table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ThreadId(pub u32);

/// Index of a unique frame sequence in the aggregator's stack table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StackId(pub u32);

/// Index of a module in the aggregator's module table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleIndex(pub u32);

/// One frame of a captured stack, before symbolization. Small and `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RawFrame {
    /// A kernel address.
    Kernel(FrameAddress),
    /// An address in a file-backed module: the address is a file offset.
    Module(ModuleIndex, FrameAddress),
    /// An address in anonymous executable memory of a process (JIT code).
    Jit(Pid, FrameAddress),
    /// An address in no known mapping.
    Unmapped(FrameAddress),
    /// The stack stopped short here (the root side).
    Truncated(TruncationReason),
    /// The system call a blocked thread waited in (the leaf of an off-CPU
    /// stack): `[syscall: read]`.
    Syscall(Syscall),
    /// The root-most frame of every off-CPU stack: [`OFF_CPU_FRAME`].
    OffCpu,
    /// The leaf of a stack a thread blocked with (perf events):
    /// `[blocked: NAME]`, NAME the system call it waited in and, with
    /// kernel frames, the kernel function that blocked (`read in
    /// pipe_read`), found from the stack's named frames.
    Blocked,
    /// The leaf of a stack a thread was preempted with and waited on the
    /// run queue: [`RUNNABLE_FRAME`].
    Runnable,
    /// A Python function, by its index in the aggregator's Python frames.
    Python(u32),
    /// Python frames that could not be read consistently with the sample:
    /// [`crate::PYTHON_STALE_FRAME`].
    PythonStale,
}

/// The name of the marker frame under which every off-CPU (blocked) stack
/// of a wall-clock profile is counted, right below the process.
pub const OFF_CPU_FRAME: &str = "[off-cpu]";

/// The leaf of stacks of threads that waited for a CPU (preempted).
pub const RUNNABLE_FRAME: &str = "[runnable]";

/// How the leaf of a stack a thread blocked with begins: `[blocked: read]`.
pub const BLOCKED_PREFIX: &str = "[blocked: ";
