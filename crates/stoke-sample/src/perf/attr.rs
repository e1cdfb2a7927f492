//! `struct perf_event_attr` and how stoke fills it.

use crate::StackCapture;

/// `PERF_TYPE_HARDWARE`.
pub(crate) const TYPE_HARDWARE: u32 = 0;
/// `PERF_TYPE_SOFTWARE`.
pub(crate) const TYPE_SOFTWARE: u32 = 1;
/// `PERF_COUNT_HW_CPU_CYCLES`.
const HW_CPU_CYCLES: u64 = 0;
/// `PERF_COUNT_SW_CPU_CLOCK`.
const SW_CPU_CLOCK: u64 = 0;
/// `PERF_COUNT_SW_CONTEXT_SWITCHES`.
const SW_CONTEXT_SWITCHES: u64 = 3;

/// `PERF_SAMPLE_*` bits.
pub(crate) mod sample {
    pub(crate) const IP: u64 = 1 << 0;
    pub(crate) const TID: u64 = 1 << 1;
    pub(crate) const TIME: u64 = 1 << 2;
    pub(crate) const ADDR: u64 = 1 << 3;
    pub(crate) const READ: u64 = 1 << 4;
    pub(crate) const CALLCHAIN: u64 = 1 << 5;
    pub(crate) const ID: u64 = 1 << 6;
    pub(crate) const CPU: u64 = 1 << 7;
    pub(crate) const PERIOD: u64 = 1 << 8;
    pub(crate) const STREAM_ID: u64 = 1 << 9;
    pub(crate) const REGS_USER: u64 = 1 << 12;
    pub(crate) const STACK_USER: u64 = 1 << 13;
    pub(crate) const IDENTIFIER: u64 = 1 << 16;
}

/// Bits of the flags word of `perf_event_attr`.
mod flag {
    pub(super) const DISABLED: u64 = 1 << 0;
    pub(super) const INHERIT: u64 = 1 << 1;
    pub(super) const EXCLUDE_KERNEL: u64 = 1 << 5;
    pub(super) const EXCLUDE_HV: u64 = 1 << 6;
    pub(super) const MMAP: u64 = 1 << 8;
    pub(super) const COMM: u64 = 1 << 9;
    pub(super) const FREQ: u64 = 1 << 10;
    pub(super) const ENABLE_ON_EXEC: u64 = 1 << 12;
    pub(super) const TASK: u64 = 1 << 13;
    pub(super) const WATERMARK: u64 = 1 << 14;
    pub(super) const SAMPLE_ID_ALL: u64 = 1 << 18;
    pub(super) const EXCLUDE_CALLCHAIN_KERNEL: u64 = 1 << 21;
    pub(super) const EXCLUDE_CALLCHAIN_USER: u64 = 1 << 22;
    pub(super) const MMAP2: u64 = 1 << 23;
    pub(super) const COMM_EXEC: u64 = 1 << 24;
    pub(super) const USE_CLOCKID: u64 = 1 << 25;
    pub(super) const CONTEXT_SWITCH: u64 = 1 << 26;
    pub(super) const BUILD_ID: u64 = 1 << 34;
}

/// The x86_64 user registers sampled with `PERF_SAMPLE_REGS_USER`, as a mask
/// of `PERF_REG_X86_*` bits: AX BX CX DX SI DI BP SP IP (0–8) and R8–R15
/// (16–23). The kernel writes them in bit order.
pub(crate) const X86_64_USER_REGS: u64 = 0x1ff | (0xff << 16);

/// `PERF_FORMAT_TOTAL_TIME_RUNNING`.
const FORMAT_TOTAL_TIME_RUNNING: u64 = 1 << 1;

/// The largest user stack copy the kernel accepts (`u16` minus alignment).
pub(crate) const MAX_STACK_COPY: u32 = 65528;

/// `struct perf_event_attr` up to `config3` (`PERF_ATTR_SIZE_VER8`, 136
/// bytes). Kernels that know fewer fields accept it as long as the unknown
/// tail is zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PerfEventAttr {
    pub(crate) kind: u32,
    pub(crate) size: u32,
    pub(crate) config: u64,
    pub(crate) sample_period_or_freq: u64,
    pub(crate) sample_type: u64,
    pub(crate) read_format: u64,
    pub(crate) flags: u64,
    pub(crate) wakeup_events_or_watermark: u32,
    pub(crate) bp_type: u32,
    pub(crate) config1: u64,
    pub(crate) config2: u64,
    pub(crate) branch_sample_type: u64,
    pub(crate) sample_regs_user: u64,
    pub(crate) sample_stack_user: u32,
    pub(crate) clockid: i32,
    pub(crate) sample_regs_intr: u64,
    pub(crate) aux_watermark: u32,
    pub(crate) sample_max_stack: u16,
    pub(crate) reserved_2: u16,
    pub(crate) aux_sample_size: u32,
    pub(crate) reserved_3: u32,
    pub(crate) sig_data: u64,
    pub(crate) config3: u64,
}

const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == 136);

/// The counter that drives sampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counter {
    /// `PERF_TYPE_HARDWARE` / `PERF_COUNT_HW_CPU_CYCLES`.
    Cycles,
    /// `PERF_TYPE_SOFTWARE` / `PERF_COUNT_SW_CPU_CLOCK`.
    CpuClock,
    /// `PERF_TYPE_SOFTWARE` / `PERF_COUNT_SW_CONTEXT_SWITCHES`: a sample
    /// as a thread leaves the CPU, with `PERF_RECORD_SWITCH` records
    /// (`context_switch`) for every switch out and in.
    ContextSwitches,
}

impl Counter {
    /// The name perf uses for it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Counter::Cycles => "cycles",
            Counter::CpuClock => "cpu-clock",
            Counter::ContextSwitches => "context-switches",
        }
    }
}

/// Everything that decides the attribute of one event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttrSpec {
    /// The counter.
    pub(crate) counter: Counter,
    /// Samples per second.
    pub(crate) frequency: u32,
    /// Whether kernel-mode samples are excluded (not permitted).
    pub(crate) exclude_kernel: bool,
    /// Whether kernel frames are left out of callchains.
    pub(crate) exclude_callchain_kernel: bool,
    /// What stacks to capture.
    pub(crate) stack: StackCapture,
    /// Whether the event enables itself when the task execs (launch).
    pub(crate) enable_on_exec: bool,
    /// Bytes in the ring buffer before poll wakes up.
    pub(crate) wakeup_watermark: u32,
    /// Whether this event reports mappings, names, forks and exits (every
    /// event of a sampler but a second one on the same task and CPU).
    pub(crate) side_band: bool,
    /// Whether times are `CLOCK_MONOTONIC` (the off-CPU modes, whose last
    /// interval ends at a time read when sampling stops).
    pub(crate) monotonic: bool,
}

/// The user stack bytes to request for a capture mode (0: none).
pub(crate) fn stack_copy_size(stack: StackCapture) -> u32 {
    match stack {
        StackCapture::Callchain => 0,
        StackCapture::RegsAndStack { size } => (size.min(MAX_STACK_COPY) + 7) & !7,
    }
}

impl AttrSpec {
    /// The `PERF_SAMPLE_*` bits of samples.
    pub(crate) fn sample_type(&self) -> u64 {
        use sample::*;
        let mut bits = IDENTIFIER | IP | TID | TIME | CPU | PERIOD | CALLCHAIN;
        if stack_copy_size(self.stack) > 0 {
            bits |= REGS_USER | STACK_USER;
        }
        bits
    }

    /// The attribute to pass to `perf_event_open`.
    pub(crate) fn attr(self) -> PerfEventAttr {
        let (kind, config) = match self.counter {
            Counter::Cycles => (TYPE_HARDWARE, HW_CPU_CYCLES),
            Counter::CpuClock => (TYPE_SOFTWARE, SW_CPU_CLOCK),
            Counter::ContextSwitches => (TYPE_SOFTWARE, SW_CONTEXT_SWITCHES),
        };
        let mut flags =
            flag::DISABLED | flag::INHERIT | flag::EXCLUDE_HV | flag::FREQ | flag::SAMPLE_ID_ALL;
        if self.side_band {
            flags |= flag::MMAP
                | flag::MMAP2
                | flag::COMM
                | flag::COMM_EXEC
                | flag::TASK
                | flag::BUILD_ID;
        }
        if self.counter == Counter::ContextSwitches {
            // Frequency mode: every switch-out is sampled until a thread
            // switches more often than `frequency` a second; the records
            // still time every switch (see `docs/how-it-works.md`).
            flags |= flag::CONTEXT_SWITCH;
        }
        let mut clockid = 0;
        if self.monotonic {
            flags |= flag::USE_CLOCKID;
            clockid = libc::CLOCK_MONOTONIC;
        }
        if self.exclude_kernel {
            flags |= flag::EXCLUDE_KERNEL;
        }
        if self.exclude_callchain_kernel || self.exclude_kernel {
            flags |= flag::EXCLUDE_CALLCHAIN_KERNEL;
        }
        if self.enable_on_exec {
            flags |= flag::ENABLE_ON_EXEC;
        }
        if self.wakeup_watermark > 0 {
            flags |= flag::WATERMARK;
        }
        let stack = stack_copy_size(self.stack);
        if stack > 0 {
            // The stack copy is unwound in user space; the kernel's own
            // frame-pointer walk would only cost the target time.
            flags |= flag::EXCLUDE_CALLCHAIN_USER;
        }
        PerfEventAttr {
            kind,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config,
            sample_period_or_freq: u64::from(self.frequency.max(1)),
            sample_type: self.sample_type(),
            flags,
            wakeup_events_or_watermark: self.wakeup_watermark,
            sample_regs_user: if stack > 0 { X86_64_USER_REGS } else { 0 },
            sample_stack_user: stack,
            clockid,
            // A read gives the time the target was on a CPU, to compare
            // with the samples taken.
            read_format: FORMAT_TOTAL_TIME_RUNNING,
            ..PerfEventAttr::default()
        }
    }
}

/// `PERF_COUNT_SW_TASK_CLOCK`.
const SW_TASK_CLOCK: u64 = 1;

/// A counting (never sampling) `task-clock` event that follows the task's
/// threads and children (`inherit`), enabled at the task's exec when
/// `enable_on_exec`: read at the end, it gives the CPU time the task tree
/// used.
pub(crate) fn task_clock_attr(enable_on_exec: bool) -> PerfEventAttr {
    let mut flags = flag::DISABLED | flag::INHERIT | flag::EXCLUDE_HV;
    if enable_on_exec {
        flags |= flag::ENABLE_ON_EXEC;
    }
    PerfEventAttr {
        kind: TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: SW_TASK_CLOCK,
        flags,
        read_format: FORMAT_TOTAL_TIME_RUNNING,
        ..PerfEventAttr::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(stack: StackCapture) -> AttrSpec {
        AttrSpec {
            counter: Counter::CpuClock,
            frequency: 999,
            exclude_kernel: false,
            exclude_callchain_kernel: false,
            stack,
            enable_on_exec: true,
            wakeup_watermark: 4096,
            side_band: true,
            monotonic: false,
        }
    }

    #[test]
    fn context_switch_events_ask_for_switch_records_on_the_monotonic_clock() {
        let attr = AttrSpec {
            counter: Counter::ContextSwitches,
            side_band: false,
            monotonic: true,
            ..spec(StackCapture::RegsAndStack { size: 8192 })
        }
        .attr();
        assert_eq!(
            (attr.kind, attr.config),
            (TYPE_SOFTWARE, SW_CONTEXT_SWITCHES)
        );
        assert_ne!(attr.flags & flag::CONTEXT_SWITCH, 0);
        assert_eq!(attr.flags & (flag::MMAP | flag::COMM | flag::TASK), 0);
        assert_ne!(attr.flags & flag::USE_CLOCKID, 0);
        assert_eq!(attr.clockid, libc::CLOCK_MONOTONIC);
        let plain = spec(StackCapture::Callchain).attr();
        assert_eq!(plain.flags & (flag::CONTEXT_SWITCH | flag::USE_CLOCKID), 0);
        assert_ne!(plain.flags & flag::MMAP2, 0);
    }

    #[test]
    fn stack_copies_add_registers_and_round_to_eight() {
        let attr = spec(StackCapture::RegsAndStack { size: 1001 }).attr();
        assert_eq!(attr.sample_stack_user, 1008);
        assert_eq!(attr.sample_regs_user.count_ones(), 17);
        assert_ne!(attr.sample_type & sample::STACK_USER, 0);
        let plain = spec(StackCapture::Callchain).attr();
        assert_eq!((plain.sample_stack_user, plain.sample_regs_user), (0, 0));
        assert_eq!(
            plain.sample_type & (sample::REGS_USER | sample::STACK_USER),
            0
        );
        assert_eq!(plain.kind, TYPE_SOFTWARE);
        assert_eq!(plain.sample_period_or_freq, 999);
        assert_ne!(plain.flags & flag::ENABLE_ON_EXEC, 0);
    }

    #[test]
    fn huge_stack_requests_are_capped() {
        let size = stack_copy_size(StackCapture::RegsAndStack { size: u32::MAX });
        assert_eq!(size, MAX_STACK_COPY);
    }
}
