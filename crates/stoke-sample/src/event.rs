//! The events a sampler emits.

use std::any::Any;
use std::sync::Arc;

use stoke_model::{Mapping, Pid, Registers, Tid};

/// Something the kernel (or `/proc`) told about the target.
#[derive(Clone, Debug)]
pub enum Event {
    /// A stack sample.
    Sample(Sample),
    /// A new executable mapping (also synthesized from `/proc/PID/maps` at attach).
    Mmap {
        /// Process the mapping belongs to.
        pid: Pid,
        /// Thread that made it.
        tid: Tid,
        /// The mapping.
        mapping: Mapping,
    },
    /// A thread's name, set at exec (`exec == true`) or by `prctl`/`pthread_setname_np`.
    Comm {
        /// The process.
        pid: Pid,
        /// The thread.
        tid: Tid,
        /// The new name (at most 15 bytes, as the kernel keeps it).
        name: String,
        /// Whether the name changed because the process exec'd (its old
        /// mappings are gone).
        exec: bool,
    },
    /// A new thread or process.
    Fork {
        /// The new task's process.
        pid: Pid,
        /// The parent process.
        ppid: Pid,
        /// The new task.
        tid: Tid,
        /// The task that created it.
        ptid: Tid,
    },
    /// A thread or process ended.
    Exit {
        /// The process.
        pid: Pid,
        /// The thread.
        tid: Tid,
    },
    /// A thread left or came back to a CPU (perf events in the off-CPU
    /// modes): the time between its switch-out and its next switch-in is
    /// time off the CPU.
    Switch {
        /// The process.
        pid: Pid,
        /// The thread.
        tid: Tid,
        /// Kernel timestamp (`CLOCK_MONOTONIC`, nanoseconds).
        time: u64,
        /// Which way, and why it left.
        direction: SwitchDirection,
    },
    /// Sampling stopped at `time` (the clock of [`Event::Switch`]): a
    /// thread still off the CPU waited until then.
    Stopped {
        /// Kernel timestamp (`CLOCK_MONOTONIC`, nanoseconds).
        time: u64,
    },
    /// The kernel dropped records because a ring buffer was full.
    Lost {
        /// How many records were lost.
        count: u64,
    },
}

/// One sample: where a thread was, and how it got there.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// The process.
    pub pid: Pid,
    /// The thread.
    pub tid: Tid,
    /// Kernel timestamp (perf clock, nanoseconds).
    pub time: u64,
    /// The CPU it ran on.
    pub cpu: u32,
    /// The sample's period (nanoseconds for cpu-clock, cycles for cycles).
    pub period: u64,
    /// Kernel frames, leaf first, as instruction pointer then return addresses.
    /// Empty when the sample was taken in user mode or kernel frames are off.
    pub kernel_stack: Vec<u64>,
    /// User frames from the kernel's frame-pointer walk, leaf first (the first
    /// is the user instruction pointer, the rest return addresses).
    pub user_callchain: Vec<u64>,
    /// User registers at the sample (with [`crate::StackCapture::RegsAndStack`]).
    pub user_regs: Option<Registers>,
    /// A copy of the top of the user stack (with [`crate::StackCapture::RegsAndStack`]).
    pub user_stack: Option<StackBytes>,
    /// Set when the thread was off the CPU (blocked) at the sample: only
    /// the ptrace sampler's wall-clock mode samples such threads.
    pub off_cpu: Option<OffCpu>,
    /// Taken as the thread left the CPU (the context-switch event of
    /// perf's off-CPU modes): it weighs the time until the thread's next
    /// [`SwitchDirection::In`], not one period.
    pub switch_out: bool,
    /// A [`Sample::switch_out`] made up for a thread found blocked as
    /// recording started, not one the kernel sampled among the thread's
    /// switch-outs: it stands for its own interval only, so the time of
    /// unsampled intervals is not shared onto it.
    pub blocked_at_start: bool,
    /// What a [`crate::WhileStopped`] hook read of the thread while it was
    /// still stopped for this sample (ptrace backend), opaque to this crate.
    pub attached: Option<Attached>,
}

/// What a [`crate::WhileStopped`] hook attaches to a sample: its reader
/// downcasts it back.
pub type Attached = Arc<dyn Any + Send + Sync>;

/// Which way a thread switched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SwitchDirection {
    /// It came back to a CPU.
    In,
    /// It left the CPU.
    Out {
        /// Whether it was still runnable (preempted, waiting on the run
        /// queue) rather than blocked (asleep in I/O, a lock, a sleep).
        preempted: bool,
    },
}

/// What an off-CPU thread was waiting in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OffCpu {
    /// The system call it was blocked in, if it was in one.
    pub syscall: Option<crate::Syscall>,
}

/// A copy of the top of a thread's user stack.
#[derive(Clone, Debug, Default)]
pub struct StackBytes {
    /// The address of `bytes[0]` (the stack pointer at the sample).
    pub start: u64,
    /// The bytes copied.
    pub bytes: Vec<u8>,
    /// Whether the copy was cut at the requested size before the stack's end
    /// (the kernel's `dyn_size` equalled the requested size).
    pub hit_limit: bool,
}

impl StackBytes {
    /// Reads the 8-byte little-endian word at absolute address `addr`.
    pub fn read_u64(&self, addr: u64) -> Option<u64> {
        let off = addr.checked_sub(self.start)? as usize;
        let b = self.bytes.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
}
