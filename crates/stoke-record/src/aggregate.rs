//! The online consumer: turns each event into state or a counted stack.

use std::collections::HashMap;

use stoke_model::{FrameAddress, Pid, Tid};
use stoke_sample::{Event, Sample};
use stoke_unwind::{StackEnd, TruncationReason, UnwindMode};

use crate::processes::{is_file_backed, Processes};
use crate::stack::{ModuleIndex, RawFrame};
use crate::symbols::ModuleTable;
use crate::unwind::DwarfUnwinder;

/// The thread a stack was sampled on, with the names it had then.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ThreadKey {
    pub pid: Pid,
    pub tid: Tid,
    pub process_name: Option<String>,
    pub thread_name: Option<String>,
}

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

/// Consumes events and aggregates samples by (thread, address stack).
pub struct Aggregator {
    pub(crate) processes: Processes,
    pub(crate) modules: ModuleTable,
    pub(crate) stacks: HashMap<(ThreadKey, Box<[RawFrame]>), u64>,
    thread_keys: HashMap<Tid, ThreadKey>,
    unwinder: DwarfUnwinder,
    samples: u64,
    lost: u64,
    truncated: HashMap<TruncationReason, u64>,
    stack_limit_hits: u64,
    scratch: Vec<RawFrame>,
    user_scratch: Vec<FrameAddress>,
}

impl Aggregator {
    /// An aggregator. With `unwind` other than frame pointers, samples that
    /// carry registers and stack bytes are unwound with DWARF CFI.
    pub fn new(unwind: UnwindMode) -> Aggregator {
        Aggregator {
            processes: Processes::default(),
            modules: ModuleTable::default(),
            stacks: HashMap::new(),
            thread_keys: HashMap::new(),
            unwinder: DwarfUnwinder::new(unwind),
            user_scratch: Vec::new(),
            samples: 0,
            lost: 0,
            truncated: HashMap::new(),
            stack_limit_hits: 0,
            scratch: Vec::new(),
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Sample(sample) => self.sample(&sample),
            Event::Mmap { pid, mapping, .. } => {
                self.processes.process_mut(pid).add_mapping(mapping);
            }
            Event::Comm {
                pid,
                tid,
                name,
                exec,
            } => {
                self.processes.comm(pid, tid, name, exec);
                self.thread_keys.remove(&tid);
                if exec {
                    // Every thread of the process is gone but the one that exec'd.
                    self.thread_keys.retain(|_, k| k.pid != pid);
                }
            }
            Event::Fork {
                pid,
                ppid,
                tid,
                ptid,
            } => {
                self.processes.fork(pid, ppid, tid, ptid);
                self.thread_keys.remove(&tid);
            }
            Event::Exit { pid, tid } => {
                self.processes.exit(pid, tid);
                self.thread_keys.remove(&tid);
                if tid.0 == pid.0 {
                    self.thread_keys.retain(|_, k| k.pid != pid);
                    self.unwinder.forget(pid);
                }
            }
            Event::Lost { count } => self.lost += count,
        }
    }

    /// Samples counted so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Distinct (thread, stack) pairs so far.
    pub fn distinct_stacks(&self) -> usize {
        self.stacks.len()
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

    fn sample(&mut self, sample: &Sample) {
        self.samples += 1;
        let mut frames = std::mem::take(&mut self.scratch);
        frames.clear();
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
                end = Some(
                    self.unwinder
                        .unwind(sample.pid, process, regs, stack, &mut user),
                );
            }
        }
        if end.is_none() {
            user.extend(
                (sample.user_callchain.iter().enumerate()).map(|(i, &a)| frame_address(i, a)),
            );
        }
        for &address in &user {
            let frame = self.normalize(sample.pid, address);
            frames.push(frame);
        }
        self.user_scratch = user;
        if let Some(StackEnd::Truncated(reason)) = end {
            *self.truncated.entry(reason).or_default() += 1;
            frames.push(RawFrame::Truncated(reason));
        }
        if frames.is_empty() {
            frames.push(RawFrame::Truncated(TruncationReason::NoModule));
        }
        if let Some(off_cpu) = sample.off_cpu {
            // What it waits in is the leaf; the marker the root-most frame.
            if let Some(syscall) = off_cpu.syscall {
                frames.insert(0, RawFrame::Syscall(syscall));
            }
            frames.push(RawFrame::OffCpu);
        }
        let thread = self.thread_key(sample.pid, sample.tid);
        let key = (thread, frames.clone().into_boxed_slice());
        *self.stacks.entry(key).or_default() += 1;
        self.scratch = frames;
    }

    /// Turns an absolute user address into a module-relative frame.
    fn normalize(&mut self, pid: Pid, address: FrameAddress) -> RawFrame {
        let addr = address.address();
        let found = self
            .processes
            .process(pid)
            .and_then(|p| p.find(addr))
            .is_some();
        if !found {
            self.processes.refresh_mappings(pid, self.samples);
        }
        let Some(mapping) = self.processes.process(pid).and_then(|p| p.find(addr)) else {
            return RawFrame::Unmapped(address);
        };
        if !is_file_backed(mapping) {
            return RawFrame::Jit(pid, address);
        }
        let offset = mapping.file_offset_of(addr).0;
        let module: ModuleIndex = self.modules.intern(pid, mapping);
        RawFrame::Module(module, address.with_address(offset))
    }

    fn thread_key(&mut self, pid: Pid, tid: Tid) -> ThreadKey {
        if let Some(key) = self.thread_keys.get(&tid) {
            if key.pid == pid {
                return key.clone();
            }
        }
        let key = ThreadKey {
            pid,
            tid,
            process_name: self.processes.process_name(pid),
            thread_name: self.processes.thread_name(pid, tid),
        };
        self.thread_keys.insert(tid, key.clone());
        key
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
