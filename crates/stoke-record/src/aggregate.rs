//! The online consumer: turns each event into state or a counted stack.
//!
//! Pure: events in, counted stacks out. Whatever events do not say is asked
//! of a [`ProcessFacts`] (live `/proc`, or tables in a replay).

use std::collections::HashMap;
use std::path::Path;

use stoke_model::{FrameAddress, Pid, Tid};
use stoke_sample::{Event, Sample, SampleMode, SwitchDirection};
use stoke_unwind::{StackEnd, TruncationReason, UnwindMode};

use crate::facts::{LiveProcfs, ModuleUnavailable, ProcessFacts};
use crate::hash::{FastMap, FastSet};
use crate::modules::ModuleTable;
use crate::offcpu::{Closed, Intervals, OffCpuTime};
use crate::processes::{is_file_backed, Processes};
use crate::python::{PythonFrames, PythonMode};
use crate::stack::{ModuleIndex, RawFrame, StackId, ThreadId, ThreadKey};
use crate::store::ModuleStore;
use crate::unwind::DwarfUnwinder;

/// Counts of what was seen, for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Samples counted.
    pub samples: u64,
    /// Records the kernel reported lost.
    pub lost: u64,
    /// Samples whose stack was truncated, by reason, most first.
    pub truncated: Vec<(TruncationReason, u64)>,
    /// Samples whose stack copy was cut at `--stack-size`.
    pub stack_limit_hits: u64,
}

/// A counted (thread, stack) pair, stable while an aggregator counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CountKey(u32, u32);

/// Consumes events and aggregates samples by (thread, address stack).
///
/// A stack already seen costs no allocation: frames are built in a scratch
/// buffer, looked up by slice, and counted under a pair of small ids.
pub struct Aggregator {
    facts: Box<dyn ProcessFacts>,
    processes: Processes,
    pub(crate) modules: ModuleTable,
    /// Every binary read, shared by the unwinder and the symbolizer.
    store: ModuleStore,
    /// Every unique frame sequence, by id.
    stack_ids: FastMap<Box<[RawFrame]>, StackId>,
    /// Every thread (with the names it had) stacks were counted on, by id.
    threads: Vec<ThreadKey>,
    thread_index: HashMap<ThreadKey, ThreadId>,
    /// The current id of each live thread; dropped when its names change.
    thread_ids: FastMap<Tid, ThreadId>,
    /// Each process's cgroup v2 path, read when its first thread is met.
    cgroups: std::collections::BTreeMap<u32, String>,
    counts: FastMap<(ThreadId, StackId), u64>,
    unwinder: DwarfUnwinder,
    samples: u64,
    /// Samples that carried kernel frames.
    kernel_samples: u64,
    lost: u64,
    truncated: HashMap<TruncationReason, u64>,
    stack_limit_hits: u64,
    scratch: Vec<RawFrame>,
    user_scratch: Vec<FrameAddress>,
    pub(crate) python: PythonFrames,
    python_scratch: Vec<(usize, Vec<RawFrame>)>,
    /// Whether process names carry the pid (`name-PID`, `--per-process`).
    pid_in_process_names: bool,
    intervals: Intervals,
    off_cpu: OffCpuTime<(ThreadId, StackId), ThreadId>,
    off_cpu_only: bool,
    period_ns: u64,
    /// Whether a process's threads are counted together, as its main thread.
    merge_threads: bool,
    /// Threads inside `execve` past its point of no return: until one is
    /// seen running the new program, its user registers may still be the
    /// old program's, whose mappings are gone.
    in_exec: FastSet<Tid>,
}

impl Aggregator {
    /// An aggregator that asks the live `/proc` what events do not say.
    /// With `unwind` other than frame pointers, samples that carry registers
    /// and stack bytes are unwound with DWARF CFI.
    pub fn new(unwind: UnwindMode) -> Aggregator {
        Aggregator::with_facts(unwind, Box::new(LiveProcfs))
    }

    /// A live aggregator that also reads Python frames (with [`PythonMode::Auto`]).
    pub fn with_python(unwind: UnwindMode, python: PythonMode) -> Aggregator {
        let mut aggregator = Aggregator::new(unwind);
        aggregator.python = PythonFrames::new(python);
        aggregator
    }

    /// Takes on the module store that was used before recording started
    /// (an attached process's interpreter read for Python detection), so
    /// those files are not opened again.
    pub(crate) fn adopt_store(&mut self, store: ModuleStore) {
        self.store = store;
    }

    /// An aggregator that asks `facts` what events do not say (a replay).
    pub fn with_facts(unwind: UnwindMode, facts: Box<dyn ProcessFacts>) -> Aggregator {
        Aggregator {
            facts,
            processes: Processes::default(),
            modules: ModuleTable::default(),
            store: ModuleStore::default(),
            stack_ids: FastMap::default(),
            threads: Vec::new(),
            thread_index: HashMap::new(),
            thread_ids: FastMap::default(),
            cgroups: std::collections::BTreeMap::new(),
            counts: FastMap::default(),
            unwinder: DwarfUnwinder::new(unwind),
            user_scratch: Vec::new(),
            samples: 0,
            kernel_samples: 0,
            lost: 0,
            truncated: HashMap::new(),
            stack_limit_hits: 0,
            scratch: Vec::new(),
            python: PythonFrames::new(PythonMode::Off),
            python_scratch: Vec::new(),
            pid_in_process_names: false,
            intervals: Intervals::default(),
            off_cpu: OffCpuTime::default(),
            off_cpu_only: false,
            period_ns: 1_000_000_000 / 999,
            in_exec: FastSet::default(),
            merge_threads: false,
        }
    }

    /// Which threads were sampled, and at what rate: in
    /// [`SampleMode::OffCpu`] samples of running threads are left out, and
    /// time off the CPU is counted in samples of `1 / frequency` seconds.
    pub fn set_mode(&mut self, mode: SampleMode, frequency: u32) {
        self.off_cpu_only = mode == SampleMode::OffCpu;
        self.period_ns = 1_000_000_000 / u64::from(frequency.max(1));
    }

    /// Turns the time off the CPU measured so far into counted stacks
    /// (unsampled intervals shared out, see `docs/how-it-works.md`); call
    /// once recording has ended, before
    /// [`Aggregator::stacks`].
    pub fn settle_off_cpu(&mut self) {
        let threads = std::mem::take(&mut self.off_cpu);
        let settled = threads.settle(|(thread, _)| thread, self.period_ns);
        for (key, n) in settled.counts.into_iter().filter(|(_, n)| *n > 0) {
            *self.counts.entry(key).or_default() += n;
        }
        for ((thread, wait), n) in settled.unattributed.into_iter().filter(|(_, n)| *n > 0) {
            let stack = self.intern_stack(&[wait.marker(), RawFrame::OffCpu]);
            *self.counts.entry((thread, stack)).or_default() += n;
        }
    }

    fn charge(&mut self, thread: ThreadId, closed: Closed) {
        match closed.frames {
            None => {
                *self
                    .off_cpu
                    .unsampled
                    .entry((thread, closed.wait))
                    .or_default() += closed.ns;
            }
            Some(mut frames) => {
                // What it waits for is the leaf; the marker the root-most frame.
                frames.insert(0, closed.wait.marker());
                frames.push(RawFrame::OffCpu);
                let stack = self.intern_stack(&frames);
                let pool = if closed.exact {
                    &mut self.off_cpu.exact
                } else {
                    &mut self.off_cpu.sampled
                };
                *pool.entry(((thread, stack), closed.wait)).or_default() += closed.ns;
            }
        }
    }

    fn intern_stack(&mut self, frames: &[RawFrame]) -> StackId {
        match self.stack_ids.get(frames) {
            Some(&id) => id,
            None => {
                let id = StackId(self.stack_ids.len() as u32);
                self.stack_ids.insert(frames.into(), id);
                id
            }
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Sample(sample) => self.sample(&sample),
            Event::Mmap { pid, mapping, .. } => {
                self.python.mapped(pid, &mapping);
                self.processes.process_mut(pid).add_mapping(mapping);
            }
            Event::Comm {
                pid,
                tid,
                name,
                exec,
            } => {
                if exec {
                    self.python.forget(pid);
                    self.in_exec.insert(tid);
                }
                self.processes.comm(pid, tid, name, exec);
                self.thread_ids.remove(&tid);
                if exec {
                    // Every thread of the process is gone but the one that exec'd.
                    self.forget_threads_of(pid);
                }
            }
            Event::Fork {
                pid,
                ppid,
                tid,
                ptid,
            } => {
                self.processes.fork(pid, ppid, tid, ptid);
                self.thread_ids.remove(&tid);
                self.intervals.born(tid);
            }
            Event::Exit { pid, tid } => {
                self.in_exec.remove(&tid);
                self.processes.exit(pid, tid);
                self.intervals.exited(tid);
                self.thread_ids.remove(&tid);
                if tid.0 == pid.0 {
                    self.forget_threads_of(pid);
                    self.unwinder.forget(pid);
                }
            }
            Event::Switch {
                pid,
                tid,
                time,
                direction,
            } => match direction {
                SwitchDirection::Out { preempted } => {
                    // Named as it was when it left.
                    let thread = self.thread_id(pid, self.counted_tid(pid, tid));
                    self.intervals.out(thread, tid, time, preempted)
                }
                SwitchDirection::In => {
                    if let Some((thread, closed)) = self.intervals.back(tid, time) {
                        self.charge(thread, closed);
                    }
                }
            },
            Event::Stopped { time } => {
                for (thread, _, closed) in self.intervals.stop(time) {
                    self.charge(thread, closed);
                }
            }
            Event::Lost { count } => self.lost += count,
        }
    }

    /// Names each process `name-PID` from now on, so that processes of
    /// the same name stay apart (`--per-process`).
    pub fn name_processes_with_pid(&mut self) {
        self.pid_in_process_names = true;
    }

    /// Counts every thread's samples as its process's main thread's from
    /// now on, so that the tables grow with processes and stacks, not with
    /// threads (recordings of the whole machine, without `--per-thread`).
    pub fn merge_threads(&mut self) {
        self.merge_threads = true;
    }

    /// The thread a sample of `tid` is counted for (its process's main
    /// thread when threads are merged).
    fn counted_tid(&self, pid: Pid, tid: Tid) -> Tid {
        match self.merge_threads {
            true => Tid(pid.0),
            false => tid,
        }
    }

    /// Samples counted so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Samples with kernel frames counted so far.
    pub fn kernel_samples(&self) -> u64 {
        self.kernel_samples
    }

    /// Distinct (thread, stack) pairs so far.
    pub fn distinct_stacks(&self) -> usize {
        self.counts.len()
    }

    /// Every counted (thread, stack, samples), stacks leaf first, in no
    /// particular order.
    pub fn stacks(&self) -> Vec<(&ThreadKey, &[RawFrame], u64)> {
        self.counted()
            .into_iter()
            .map(|(_, thread, frames, n)| (thread, frames, n))
            .collect()
    }

    /// Every counted stack as [`Aggregator::stacks`] gives it, with a key
    /// that stays the same for the same (thread, stack) as counting goes
    /// on: a live view subtracts earlier counts by it.
    pub fn counted(&self) -> Vec<(CountKey, &ThreadKey, &[RawFrame], u64)> {
        let mut frames: Vec<&[RawFrame]> = vec![&[]; self.stack_ids.len()];
        for (stack, id) in &self.stack_ids {
            frames[id.0 as usize] = stack;
        }
        self.counts
            .iter()
            .map(|(&(thread, stack), &n)| {
                (
                    CountKey(thread.0, stack.0),
                    &self.threads[thread.0 as usize],
                    frames[stack.0 as usize],
                    n,
                )
            })
            .collect()
    }

    /// The path of a module frames name, as the target saw it.
    pub fn module_path(&self, module: ModuleIndex) -> Option<&Path> {
        self.modules.path(module)
    }

    /// Why a module's file could not be opened when first sampled.
    pub fn module_unavailable(&self, module: ModuleIndex) -> Option<ModuleUnavailable> {
        self.modules.unavailable(module)
    }

    /// The cgroup v2 path of each process met, by pid, where known.
    pub fn cgroups(&self) -> &std::collections::BTreeMap<u32, String> {
        &self.cgroups
    }

    /// What was seen, for the summary.
    pub fn stats(&self) -> StackStats {
        let mut truncated: Vec<(TruncationReason, u64)> =
            self.truncated.iter().map(|(r, n)| (*r, *n)).collect();
        truncated.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        StackStats {
            samples: self.samples,
            lost: self.lost,
            truncated,
            stack_limit_hits: self.stack_limit_hits,
        }
    }

    /// Modules whose unwind tables could not be loaded, one warning each.
    pub(crate) fn unwind_warnings(&self) -> Vec<crate::warning::Warning> {
        self.unwinder.warnings().collect()
    }

    fn sample(&mut self, sample: &Sample) {
        if self.off_cpu_only && sample.off_cpu.is_none() && !sample.switch_out {
            return;
        }
        self.samples += 1;
        let mut frames = std::mem::take(&mut self.scratch);
        frames.clear();
        if !sample.kernel_stack.is_empty() {
            self.kernel_samples += 1;
        }
        for (i, &addr) in sample.kernel_stack.iter().enumerate() {
            frames.push(RawFrame::Kernel(frame_address(i, addr)));
        }
        let mut user = std::mem::take(&mut self.user_scratch);
        user.clear();
        let mut end = None;
        if let (Some(regs), Some(stack)) = (&sample.user_regs, &sample.user_stack) {
            if self.unwinder.enabled() {
                if stack.hit_limit {
                    self.stack_limit_hits += 1;
                }
                let process = self.processes.process_mut(sample.pid);
                end = Some(self.unwinder.unwind(
                    sample.pid,
                    process,
                    regs,
                    stack,
                    &mut user,
                    &mut self.store,
                    self.facts.as_mut(),
                ));
            }
        }
        if end.is_none() {
            user.extend(
                (sample.user_callchain.iter().enumerate()).map(|(i, &a)| frame_address(i, a)),
            );
        }
        if self.in_exec.contains(&sample.tid) {
            let process = self.processes.process(sample.pid);
            let unmapped = |a: &FrameAddress| {
                process.is_none_or(|p| p.find_index(a.lookup_address()).is_none())
            };
            if !sample.kernel_stack.is_empty() && user.first().is_some_and(unmapped) {
                // Still in execve: the new program has not started, and the
                // user registers are the old one's. The sample is the
                // kernel's work for the new program, its stack complete.
                user.clear();
                end = None;
            } else {
                self.in_exec.remove(&sample.tid);
            }
        }
        let mut python = std::mem::take(&mut self.python_scratch);
        let truncated = matches!(end, Some(StackEnd::Truncated(_)));
        self.python.replacements(
            sample,
            &user,
            truncated,
            &mut python,
            &mut self.store,
            self.facts.as_mut(),
        );
        let mut next = python.iter().peekable();
        for (i, &address) in user.iter().enumerate() {
            if let Some((_, py)) = next.next_if(|(at, _)| *at == i) {
                if py.as_slice() == [RawFrame::PythonStale] {
                    // Unread Python frames: the interpreter's own frame
                    // stays, under a marker saying what it ran is unknown.
                    frames.push(self.normalize(sample.pid, address));
                }
                frames.extend_from_slice(py);
                continue;
            }
            let frame = self.normalize(sample.pid, address);
            frames.push(frame);
        }
        self.python_scratch = python;
        self.user_scratch = user;
        if let Some(StackEnd::Truncated(reason)) = end {
            *self.truncated.entry(reason).or_default() += 1;
            frames.push(RawFrame::Truncated(reason));
        }
        if frames.is_empty() {
            frames.push(RawFrame::Truncated(TruncationReason::NoModule));
        }
        if sample.switch_out {
            // Weighed when the thread comes back, by how long it was away.
            self.intervals
                .sampled(sample.tid, sample.time, &frames, sample.blocked_at_start);
            self.scratch = frames;
            return;
        }
        if let Some(off_cpu) = sample.off_cpu {
            // What it waits in is the leaf; the marker the root-most frame.
            if let Some(syscall) = off_cpu.syscall {
                frames.insert(0, RawFrame::Syscall(syscall));
            }
            frames.push(RawFrame::OffCpu);
        }
        let thread = self.thread_id(sample.pid, self.counted_tid(sample.pid, sample.tid));
        let stack = self.intern_stack(&frames);
        *self.counts.entry((thread, stack)).or_default() += 1;
        self.scratch = frames;
    }

    /// Turns an absolute user address into a module-relative frame.
    fn normalize(&mut self, pid: Pid, address: FrameAddress) -> RawFrame {
        let addr = address.address();
        let mut found = self.processes.process(pid).and_then(|p| p.find_index(addr));
        if found.is_none() {
            self.processes
                .refresh_mappings(pid, self.samples, self.facts.as_mut());
            found = self.processes.process(pid).and_then(|p| p.find_index(addr));
        }
        let (Some(i), Some(process)) = (found, self.processes.get_mut(pid)) else {
            return RawFrame::Unmapped(address);
        };
        let mapping = &process.mappings[i];
        if !is_file_backed(mapping) {
            return RawFrame::Jit(pid, address);
        }
        let offset = mapping.file_offset_of(addr).0;
        let module = match process.module_of(i) {
            Some(module) => module,
            None => {
                let module =
                    self.modules
                        .intern(pid, mapping, &mut self.store, self.facts.as_mut());
                process.set_module_of(i, module);
                module
            }
        };
        RawFrame::Module(module, address.with_address(offset))
    }

    fn thread_id(&mut self, pid: Pid, tid: Tid) -> ThreadId {
        if let Some(&id) = self.thread_ids.get(&tid) {
            if self.threads[id.0 as usize].pid == pid {
                return id;
            }
        }
        let facts = self.facts.as_mut();
        if pid.0 != 0 && !self.cgroups.contains_key(&pid.0) {
            if let Some(cgroup) = facts.cgroup(pid) {
                self.cgroups.insert(pid.0, cgroup);
            }
        }
        let key = ThreadKey {
            pid,
            tid,
            process_name: self.processes.process_name(pid, facts).map(|name| {
                match self.pid_in_process_names && pid.0 != 0 {
                    true => format!("{name}-{pid}"),
                    false => name,
                }
            }),
            thread_name: self.processes.thread_name(pid, tid, facts),
        };
        // The same thread with the same names gets its old id back.
        let id = match self.thread_index.get(&key) {
            Some(&id) => id,
            None => {
                let id = ThreadId(self.threads.len() as u32);
                self.threads.push(key.clone());
                self.thread_index.insert(key, id);
                id
            }
        };
        self.thread_ids.insert(tid, id);
        id
    }

    fn forget_threads_of(&mut self, pid: Pid) {
        let threads = &self.threads;
        self.thread_ids
            .retain(|_, id| threads[id.0 as usize].pid != pid);
    }
}

/// The first address of a chain is where the CPU was; the rest return addresses.
fn frame_address(index: usize, addr: u64) -> FrameAddress {
    if index == 0 {
        FrameAddress::InstructionPointer(addr)
    } else {
        FrameAddress::ReturnAddress(addr)
    }
}
