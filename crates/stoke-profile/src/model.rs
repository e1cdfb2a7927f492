//! The profile: frames, stacks, threads and counts.

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
}

/// A profile.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Recording metadata.
    pub meta: Metadata,
    _private: (),
}

impl Profile {
    /// An empty profile with this metadata.
    pub fn new(meta: Metadata) -> Profile {
        Profile { meta, _private: () }
    }

    /// Interns a frame.
    pub fn intern_frame(&mut self, frame: Frame) -> FrameId {
        let _ = frame;
        todo!()
    }

    /// Interns a stack given root first; an empty slice is not a stack.
    pub fn intern_stack(&mut self, frames_root_first: &[FrameId]) -> Option<StackId> {
        let _ = frames_root_first;
        todo!()
    }

    /// Adds (or finds) a thread.
    pub fn intern_thread(&mut self, thread: Thread) -> ThreadId {
        let _ = thread;
        todo!()
    }

    /// Adds `count` samples of `stack` on `thread`.
    pub fn add_sample(&mut self, thread: ThreadId, stack: StackId, count: u64) {
        let _ = (thread, stack, count);
        todo!()
    }

    /// Total samples.
    pub fn total_samples(&self) -> u64 {
        todo!()
    }

    /// A frame by id.
    pub fn frame(&self, id: FrameId) -> &Frame {
        let _ = id;
        todo!()
    }

    /// A thread by id.
    pub fn thread(&self, id: ThreadId) -> &Thread {
        let _ = id;
        todo!()
    }

    /// The frames of a stack, root first.
    pub fn stack_frames(&self, id: StackId) -> Vec<FrameId> {
        let _ = id;
        todo!()
    }

    /// Every (thread, stack, count), with counts summed per (thread, stack).
    pub fn samples(&self) -> impl Iterator<Item = (ThreadId, StackId, u64)> + '_ {
        std::iter::empty()
    }
}
