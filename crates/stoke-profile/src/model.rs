//! The profile: frames, stacks, threads and counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// What kind of code a frame stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrameKind {
    /// A user-space function.
    User,
    /// A user-space function inlined into its caller (the frame before it).
    Inline,
    /// A kernel function (written `name_[k]` in folded stacks).
    Kernel,
    /// A JIT-compiled function (written `name_[j]`).
    Jit,
    /// A Python function an interpreter was running, read from its
    /// frames: `qualname (file.py:line)`.
    Python,
    /// A marker stoke adds: `[truncated: reason]`, `[unknown]`, a process name root.
    Marker,
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame {
    /// The function name, or `module+0xoffset` when unknown.
    pub name: String,
    /// Its kind.
    pub kind: FrameKind,
    /// The module's short name (e.g. `libc.so.6`), when known.
    pub module: Option<String>,
    /// Source file and line, when known.
    pub location: Option<(String, u32)>,
}

impl Frame {
    /// A frame of this name and kind, with no module or location.
    pub fn new(name: impl Into<String>, kind: FrameKind) -> Frame {
        Frame {
            name: name.into(),
            kind,
            module: None,
            location: None,
        }
    }
}

/// A loaded module (executable, shared library, kernel image) that frames
/// name by its short name ([`Frame::module`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Module {
    /// The short name frames carry in [`Frame::module`] (e.g. `libc.so.6`).
    pub name: String,
    /// Its path as the target saw it (e.g. `/usr/lib/x86_64-linux-gnu/libc.so.6`).
    pub path: String,
    /// Its GNU build-id in lower-case hex, when known.
    pub build_id: Option<String>,
}

/// Index of an interned frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameId(pub u32);

/// Index of a stack (a node of the stack trie).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StackId(pub u32);

/// Index of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub u32);

/// A thread that has samples.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Thread {
    /// Process id (0 when unknown, e.g. read from folded text).
    pub pid: u32,
    /// Thread id (0 when unknown).
    pub tid: u32,
    /// The process's name (its `comm` after exec), the root frame of its stacks.
    pub process_name: Option<String>,
    /// The thread's own name.
    pub thread_name: Option<String>,
}

/// What is known about the recording as a whole.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    /// The command line profiled, or `pid N (name)`.
    pub command: String,
    /// Sampling frequency in Hz (0 when unknown).
    pub frequency: u32,
    /// How long recording lasted.
    pub duration: Duration,
    /// The event sampled, e.g. `cpu-clock`.
    pub event: String,
    /// Samples the kernel reported lost.
    pub lost: u64,
    /// Samples whose stacks were truncated.
    pub truncated: u64,
    /// Which CPU time could be sampled.
    pub sampled: SampledTime,
    /// What time the samples stand for.
    pub clock: Clock,
    /// The cgroup (v2 path) of each process, by pid, where known: the
    /// `cgroup` label of its samples in pprof.
    pub cgroups: BTreeMap<u32, String>,
}

/// What time a profile's samples stand for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// Time on a CPU.
    #[default]
    Cpu,
    /// Wall-clock time: on a CPU, and off it under `[off-cpu]`.
    Wall,
    /// Time off the CPU only.
    OffCpu,
}

impl Clock {
    /// Its name as a pprof sample type: `cpu`, `wall`, `off-cpu`.
    pub fn name(self) -> &'static str {
        match self {
            Clock::Cpu => "cpu",
            Clock::Wall => "wall",
            Clock::OffCpu => "off-cpu",
        }
    }

    /// The clock of a pprof sample type's name, if it is one.
    pub fn from_name(name: &str) -> Option<Clock> {
        [Clock::Cpu, Clock::Wall, Clock::OffCpu]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// Which of a thread's CPU time samples were taken in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SampledTime {
    /// User and kernel time (or unknown, e.g. for folded input).
    #[default]
    All,
    /// User time only: no sample was taken while a thread ran in the kernel
    /// (unprivileged perf events at `perf_event_paranoid` 2), so system
    /// calls are missing and the user functions' shares are too high.
    UserOnly,
}

impl SampledTime {
    /// The warning shown beside the numbers, `None` when all time was sampled.
    pub fn note(self) -> Option<&'static str> {
        match self {
            SampledTime::All => None,
            SampledTime::UserOnly => Some("user time only: time in the kernel is not sampled"),
        }
    }
}

impl Metadata {
    /// The nominal time one sample stands for, in nanoseconds
    /// (1e9 / frequency for a clock event), or `None` when the frequency is
    /// unknown.
    pub fn period_ns(&self) -> Option<u64> {
        (self.frequency > 0).then(|| 1_000_000_000 / u64::from(self.frequency))
    }
}

/// A node of the stack trie: a frame called from its parent stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StackNode {
    parent: Option<StackId>,
    frame: FrameId,
}

/// A profile: interned frames, a stack trie, interned threads and sample
/// counts per (thread, stack).
///
/// Memory grows with the number of unique frames, stacks and threads, not
/// with the number of samples: adding the same (thread, stack) again only
/// adds to its count.
///
/// Ids are indexes into this profile; passing an id from another profile
/// gives a wrong answer or a panic.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Recording metadata.
    pub meta: Metadata,
    // Each frame is stored once, shared by the table and the index.
    frames: Vec<Arc<Frame>>,
    frame_ids: HashMap<Arc<Frame>, FrameId>,
    stacks: Vec<StackNode>,
    stack_ids: HashMap<StackNode, StackId>,
    threads: Vec<Thread>,
    thread_ids: HashMap<Thread, ThreadId>,
    counts: HashMap<(ThreadId, StackId), u64>,
    modules: Vec<Module>,
}

/// Converts a table length into the next id, panicking past `u32::MAX`
/// entries (a profile that large does not fit in memory anyway).
fn next_index(len: usize) -> u32 {
    u32::try_from(len).expect("more than u32::MAX interned entries")
}

impl Profile {
    /// An empty profile with this metadata.
    pub fn new(meta: Metadata) -> Profile {
        Profile {
            meta,
            ..Profile::default()
        }
    }

    /// Interns a frame: equal frames get the same id.
    pub fn intern_frame(&mut self, frame: Frame) -> FrameId {
        if let Some(&id) = self.frame_ids.get(&frame) {
            return id;
        }
        let id = FrameId(next_index(self.frames.len()));
        let frame = Arc::new(frame);
        self.frames.push(Arc::clone(&frame));
        self.frame_ids.insert(frame, id);
        id
    }

    /// Interns the stack `parent` + `frame` (`parent` `None` makes `frame`
    /// a root). Lets a caller build stacks one frame at a time, root first,
    /// without allocating.
    pub fn extend_stack(&mut self, parent: Option<StackId>, frame: FrameId) -> StackId {
        let node = StackNode { parent, frame };
        if let Some(&id) = self.stack_ids.get(&node) {
            return id;
        }
        let id = StackId(next_index(self.stacks.len()));
        self.stacks.push(node);
        self.stack_ids.insert(node, id);
        id
    }

    /// Interns a stack given root first; an empty slice is not a stack.
    pub fn intern_stack(&mut self, frames_root_first: &[FrameId]) -> Option<StackId> {
        frames_root_first.iter().fold(None, |parent, &frame| {
            Some(self.extend_stack(parent, frame))
        })
    }

    /// Records a module that frames name by [`Module::name`]. A module of a
    /// name already known is ignored (the first one wins: two different
    /// files with the same short name share one entry).
    pub fn add_module(&mut self, module: Module) {
        if self.module(&module.name).is_none() {
            self.modules.push(module);
        }
    }

    /// The module of this short name, when recorded.
    pub fn module(&self, name: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.name == name)
    }

    /// Every recorded module, in the order added.
    pub fn modules(&self) -> impl ExactSizeIterator<Item = &Module> + '_ {
        self.modules.iter()
    }

    /// Adds (or finds) a thread: equal threads (same pid, tid and names) get
    /// the same id.
    pub fn intern_thread(&mut self, thread: Thread) -> ThreadId {
        if let Some(&id) = self.thread_ids.get(&thread) {
            return id;
        }
        let id = ThreadId(next_index(self.threads.len()));
        self.threads.push(thread.clone());
        self.thread_ids.insert(thread, id);
        id
    }

    /// Adds `count` samples of `stack` on `thread` (summed with earlier
    /// ones). A count of 0 adds nothing.
    pub fn add_sample(&mut self, thread: ThreadId, stack: StackId, count: u64) {
        debug_assert!(
            (thread.0 as usize) < self.threads.len(),
            "unknown {thread:?}"
        );
        debug_assert!((stack.0 as usize) < self.stacks.len(), "unknown {stack:?}");
        if count == 0 {
            return;
        }
        let total = self.counts.entry((thread, stack)).or_insert(0);
        *total = total.saturating_add(count);
    }

    /// Total samples.
    pub fn total_samples(&self) -> u64 {
        self.counts
            .values()
            .fold(0, |sum, &c| sum.saturating_add(c))
    }

    /// Whether the profile has no samples.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// A frame by id.
    ///
    /// # Panics
    /// If the id is not from this profile.
    pub fn frame(&self, id: FrameId) -> &Frame {
        &self.frames[id.0 as usize]
    }

    /// Every interned frame with its id, in id order.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = (FrameId, &Frame)> + '_ {
        self.frames
            .iter()
            .enumerate()
            .map(|(i, f)| (FrameId(i as u32), &**f))
    }

    /// A thread by id.
    ///
    /// # Panics
    /// If the id is not from this profile.
    pub fn thread(&self, id: ThreadId) -> &Thread {
        &self.threads[id.0 as usize]
    }

    /// Every interned thread with its id, in id order.
    pub fn threads(&self) -> impl ExactSizeIterator<Item = (ThreadId, &Thread)> + '_ {
        self.threads
            .iter()
            .enumerate()
            .map(|(i, t)| (ThreadId(i as u32), t))
    }

    /// The number of unique stacks (trie nodes); ids are `0..stack_count()`.
    /// A parent's id is always lower than its children's.
    pub fn stack_count(&self) -> usize {
        self.stacks.len()
    }

    /// The innermost (leaf) frame of a stack.
    ///
    /// # Panics
    /// If the id is not from this profile.
    pub fn stack_frame(&self, id: StackId) -> FrameId {
        self.stacks[id.0 as usize].frame
    }

    /// The stack of the caller: this stack without its leaf frame (`None`
    /// for a root frame).
    ///
    /// # Panics
    /// If the id is not from this profile.
    pub fn stack_parent(&self, id: StackId) -> Option<StackId> {
        self.stacks[id.0 as usize].parent
    }

    /// The frames of a stack, root first.
    ///
    /// # Panics
    /// If the id is not from this profile.
    pub fn stack_frames(&self, id: StackId) -> Vec<FrameId> {
        let mut frames = Vec::new();
        let mut next = Some(id);
        while let Some(stack) = next {
            let node = self.stacks[stack.0 as usize];
            frames.push(node.frame);
            next = node.parent;
        }
        frames.reverse();
        frames
    }

    /// Every (thread, stack, count), with counts summed per (thread, stack),
    /// sorted by thread id then stack id (so the order is deterministic).
    pub fn samples(&self) -> impl Iterator<Item = (ThreadId, StackId, u64)> + '_ {
        let mut samples: Vec<_> = self
            .counts
            .iter()
            .map(|(&(thread, stack), &count)| (thread, stack, count))
            .collect();
        samples.sort_unstable_by_key(|&(thread, stack, _)| (thread, stack));
        samples.into_iter()
    }
}

impl Profile {
    /// The same profile with every inlined frame folded into the function
    /// it was inlined into (like pprof's `-noinlines`): its samples count
    /// for that caller, so self and total samples read as a report of
    /// perf's (which names the outer function of an address) does.
    pub fn without_inlines(&self) -> Profile {
        let mut out = Profile::new(self.meta.clone());
        for module in &self.modules {
            out.add_module(module.clone());
        }
        let mut frames: Vec<Option<FrameId>> = vec![None; self.frames.len()];
        let mut threads: Vec<Option<ThreadId>> = vec![None; self.threads.len()];
        for (thread, stack, count) in self.samples() {
            let mut new_stack = None;
            for frame in self.stack_frames(stack) {
                if self.frame(frame).kind == FrameKind::Inline {
                    continue;
                }
                let id = *frames[frame.0 as usize]
                    .get_or_insert_with(|| out.intern_frame(self.frame(frame).clone()));
                new_stack = Some(out.extend_stack(new_stack, id));
            }
            let new_thread = *threads[thread.0 as usize]
                .get_or_insert_with(|| out.intern_thread(self.thread(thread).clone()));
            if let Some(new_stack) = new_stack {
                out.add_sample(new_thread, new_stack, count);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(profile: &mut Profile, name: &str) -> FrameId {
        profile.intern_frame(Frame::new(name, FrameKind::User))
    }

    fn thread(tid: u32) -> Thread {
        Thread {
            pid: 1,
            tid,
            process_name: Some("p".into()),
            thread_name: None,
        }
    }

    #[test]
    fn interning_shares_frames_prefixes_and_threads() {
        let mut p = Profile::default();
        let (main, a, b) = (user(&mut p, "main"), user(&mut p, "a"), user(&mut p, "b"));
        assert_eq!(user(&mut p, "main"), main);
        assert_ne!(
            p.intern_frame(Frame::new("main", FrameKind::Kernel)),
            main,
            "kind is part of a frame"
        );
        let s1 = p.intern_stack(&[main, a]).unwrap();
        let s2 = p.intern_stack(&[main, b]).unwrap();
        assert_eq!(p.intern_stack(&[main, a]), Some(s1));
        assert_eq!(p.stack_parent(s1), p.stack_parent(s2));
        assert_eq!(p.stack_count(), 3, "main, main;a, main;b");
        assert_eq!(p.stack_frames(s2), vec![main, b]);
        assert_eq!(p.stack_frame(s2), b);
        assert_eq!(p.intern_stack(&[]), None);
        let t = p.intern_thread(thread(7));
        assert_eq!(p.intern_thread(thread(7)), t);
        assert_ne!(p.intern_thread(thread(8)), t);
        assert_eq!(p.threads().len(), 2);
    }

    #[test]
    fn inline_frames_fold_into_their_callers() {
        let mut p = Profile::default();
        let main = user(&mut p, "main");
        let parse = user(&mut p, "parse");
        let next = p.intern_frame(Frame::new("next_token", FrameKind::Inline));
        let t = p.intern_thread(thread(1));
        let deep = p.intern_stack(&[main, parse, next]).unwrap();
        let shallow = p.intern_stack(&[main, parse]).unwrap();
        p.add_sample(t, deep, 3);
        p.add_sample(t, shallow, 2);
        let folded = p.without_inlines();
        let samples: Vec<_> = folded
            .samples()
            .map(|(_, s, c)| {
                let names: Vec<_> = folded
                    .stack_frames(s)
                    .into_iter()
                    .map(|f| folded.frame(f).name.clone())
                    .collect();
                (names, c)
            })
            .collect();
        assert_eq!(
            samples,
            vec![(vec!["main".to_owned(), "parse".to_owned()], 5)]
        );
    }

    #[test]
    fn counts_are_summed_and_ordered() {
        let mut p = Profile::default();
        let main = user(&mut p, "main");
        let a = user(&mut p, "a");
        let s_main = p.intern_stack(&[main]).unwrap();
        let s_a = p.intern_stack(&[main, a]).unwrap();
        let t0 = p.intern_thread(thread(1));
        let t1 = p.intern_thread(thread(2));
        assert!(p.is_empty());
        p.add_sample(t1, s_main, 1);
        p.add_sample(t0, s_a, 2);
        p.add_sample(t0, s_main, 3);
        p.add_sample(t0, s_a, 4);
        p.add_sample(t1, s_a, 0);
        assert_eq!(p.total_samples(), 10);
        let samples: Vec<_> = p.samples().collect();
        assert_eq!(
            samples,
            vec![(t0, s_main, 3), (t0, s_a, 6), (t1, s_main, 1)]
        );
    }
}
