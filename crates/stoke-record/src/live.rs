//! Naming while recording, for a live view (`stoke top`): each address is
//! named once, on a thread of its own, as soon as it is first seen, and the
//! name is cached. The view never waits: a frame not named yet is shown by
//! module and offset until its name arrives.
//!
//! The batch naming of `record` ([`crate::Session::run`]) is untouched;
//! a live session hands its symbolizer (with every module it parsed) back
//! to [`crate::Session::end`] for the final profile.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::thread::JoinHandle;

use stoke_model::{FrameAddress, Pid};
use stoke_profile::FrameKind;
use stoke_symbolize::{Symbolized, Symbolizer};

use crate::aggregate::Aggregator;
use crate::python::{frame_name, PYTHON_STALE_FRAME};
use crate::stack::{ModuleIndex, RawFrame, OFF_CPU_FRAME, RUNNABLE_FRAME};
use crate::symbols::{run_job, with_lines, Job};

/// One named frame of a live view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LiveFrame {
    /// The function (with ` (file.c:42)` under `--lines`).
    pub name: String,
    /// What kind of code it is.
    pub kind: FrameKind,
}

impl LiveFrame {
    fn new(name: impl Into<String>, kind: FrameKind) -> LiveFrame {
        LiveFrame {
            name: name.into(),
            kind,
        }
    }
}

/// Names addresses as they are first seen, on a naming thread; see the
/// module documentation.
pub struct LiveNamer {
    jobs: Option<mpsc::Sender<Job>>,
    results: mpsc::Receiver<(Job, Vec<Symbolized>)>,
    thread: Option<JoinHandle<Symbolizer>>,
    /// Names of every frame named so far, outermost first.
    names: HashMap<RawFrame, Vec<LiveFrame>>,
    /// Frames sent to the naming thread and not back yet.
    pending: HashSet<RawFrame>,
    lines: bool,
    asked: u64,
}

impl LiveNamer {
    pub(crate) fn new(symbolizer: Symbolizer) -> LiveNamer {
        let lines = symbolizer.options().lines;
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (outbox, results) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("stoke-live-naming".into())
            .spawn(move || {
                let mut symbolizer = symbolizer;
                for job in inbox {
                    let named = run_job(&mut symbolizer, &job);
                    if outbox.send((job, named)).is_err() {
                        break;
                    }
                }
                symbolizer
            })
            .ok();
        LiveNamer {
            jobs: thread.as_ref().map(|_| jobs),
            results,
            thread,
            names: HashMap::new(),
            pending: HashSet::new(),
            lines,
            asked: 0,
        }
    }

    /// Sends every frame of the aggregator's stacks that is neither named
    /// nor on its way to the naming thread, in one job per module (and one
    /// for the kernel, one per JIT process), the module with the most
    /// samples in frames still unnamed first. Cheap when nothing is new.
    pub fn request(&mut self, aggregator: &Aggregator) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        let mut by_module: HashMap<ModuleIndex, (u64, Vec<FrameAddress>)> = HashMap::new();
        let mut kernel = (0, Vec::new());
        let mut jit: HashMap<Pid, (u64, Vec<FrameAddress>)> = HashMap::new();
        for (_, frames, samples) in aggregator.stacks() {
            for raw in frames {
                if self.names.contains_key(raw) {
                    continue;
                }
                // Samples of the unnamed frames of each job, to send the
                // hottest first (the whole machine brings many at once).
                let (heat, addresses) = match *raw {
                    RawFrame::Module(m, _) => by_module.entry(m).or_default(),
                    RawFrame::Kernel(_) => &mut kernel,
                    RawFrame::Jit(pid, _) => jit.entry(pid).or_default(),
                    _ => continue,
                };
                *heat += samples;
                if !self.pending.insert(*raw) {
                    continue;
                }
                if let RawFrame::Module(_, a) | RawFrame::Kernel(a) | RawFrame::Jit(_, a) = *raw {
                    addresses.push(a);
                }
            }
        }
        let mut batch: Vec<(u64, Job)> = by_module
            .into_iter()
            .map(|(m, (heat, a))| {
                let info = aggregator.modules.modules[m.0 as usize].clone();
                (heat, Job::Module(m, info, a))
            })
            .collect();
        batch.push((kernel.0, Job::Kernel(kernel.1)));
        batch.extend(
            jit.into_iter()
                .map(|(pid, (heat, a))| (heat, Job::Jit(pid, a))),
        );
        batch.retain(|(_, job)| job_len(job) > 0);
        batch.sort_by_key(|(heat, _)| std::cmp::Reverse(*heat));
        for (_, job) in batch {
            self.asked += job_len(&job) as u64;
            if jobs.send(job).is_err() {
                self.jobs = None;
                return;
            }
        }
    }

    /// Takes in every name the naming thread has sent back; never waits.
    /// Returns how many frames were named.
    pub fn receive(&mut self) -> usize {
        let mut named = 0;
        while let Ok((job, results)) = self.results.try_recv() {
            named += job_len(&job);
            self.take(&job, results);
        }
        named
    }

    /// Addresses sent for naming whose names have not come back.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Addresses sent for naming so far.
    pub fn asked(&self) -> u64 {
        self.asked
    }

    /// The frames `raw` stands for, outermost first (a function and what
    /// was inlined into it). A frame whose name has not arrived is named by
    /// module and offset for now.
    pub fn frames(&self, raw: &RawFrame, aggregator: &Aggregator) -> Vec<LiveFrame> {
        if let Some(named) = self.names.get(raw) {
            return named.clone();
        }
        let frame = match *raw {
            RawFrame::Module(m, a) => {
                let short = aggregator.modules.modules[m.0 as usize].short_name.as_str();
                LiveFrame::new(format!("{short}+{:#x}", a.address()), FrameKind::User)
            }
            RawFrame::Kernel(a) => LiveFrame::new(format!("{:#x}", a.address()), FrameKind::Kernel),
            RawFrame::Jit(_, a) => LiveFrame::new(format!("{:#x}", a.address()), FrameKind::Jit),
            RawFrame::Unmapped(_) => LiveFrame::new("[unknown]", FrameKind::User),
            RawFrame::Truncated(reason) => {
                LiveFrame::new(format!("[truncated: {reason}]"), FrameKind::Marker)
            }
            RawFrame::Syscall(syscall) => {
                LiveFrame::new(format!("[syscall: {syscall}]"), FrameKind::Marker)
            }
            RawFrame::OffCpu => LiveFrame::new(OFF_CPU_FRAME, FrameKind::Marker),
            RawFrame::Runnable => LiveFrame::new(RUNNABLE_FRAME, FrameKind::Marker),
            // The live view does not name the call a thread waits in.
            RawFrame::Blocked => LiveFrame::new("[blocked]", FrameKind::Marker),
            RawFrame::Python(i) => match aggregator.python.frames.get(i as usize) {
                Some(f) => LiveFrame::new(frame_name(f), FrameKind::Python),
                None => LiveFrame::new("[python]", FrameKind::Python),
            },
            RawFrame::PythonStale => LiveFrame::new(PYTHON_STALE_FRAME, FrameKind::Marker),
        };
        vec![frame]
    }

    /// Stops the naming thread (after the job it is on) and returns its
    /// symbolizer, with every module it parsed.
    pub fn into_symbolizer(mut self) -> Option<Symbolizer> {
        self.jobs = None;
        self.thread.take()?.join().ok()
    }

    fn take(&mut self, job: &Job, results: Vec<Symbolized>) {
        match job {
            Job::Module(m, info, addresses) => {
                for (a, result) in addresses.iter().zip(results) {
                    let fallback = |start: Option<u64>| {
                        format!("{}+{:#x}", info.short_name, start.unwrap_or(a.address()))
                    };
                    let frames =
                        live_frames(with_lines(result, self.lines), FrameKind::User, fallback);
                    self.named(RawFrame::Module(*m, *a), frames);
                }
            }
            Job::Kernel(addresses) => {
                for (a, result) in addresses.iter().zip(results) {
                    let frames = live_frames(result, FrameKind::Kernel, |_| "[unknown]".into());
                    self.named(RawFrame::Kernel(*a), frames);
                }
            }
            Job::Jit(pid, addresses) => {
                for (a, result) in addresses.iter().zip(results) {
                    let frames = live_frames(result, FrameKind::Jit, |_| "[unknown]".into());
                    self.named(RawFrame::Jit(*pid, *a), frames);
                }
            }
        }
    }

    fn named(&mut self, raw: RawFrame, frames: Vec<LiveFrame>) {
        self.pending.remove(&raw);
        self.names.insert(raw, frames);
    }
}

impl Drop for LiveNamer {
    fn drop(&mut self) {
        // The naming thread ends after its current job; nobody waits for it.
        self.jobs = None;
    }
}

fn job_len(job: &Job) -> usize {
    match job {
        Job::Module(_, _, a) | Job::Kernel(a) | Job::Jit(_, a) => a.len(),
    }
}

/// One result as live frames, outermost first (inlined callees marked).
fn live_frames(
    result: Symbolized,
    kind: FrameKind,
    fallback: impl FnOnce(Option<u64>) -> String,
) -> Vec<LiveFrame> {
    match result {
        Symbolized::Found(frames) if !frames.is_empty() => frames
            .into_iter()
            .map(|f| {
                let kind = if f.inlined && kind == FrameKind::User {
                    FrameKind::Inline
                } else {
                    kind
                };
                LiveFrame::new(f.name, kind)
            })
            .collect(),
        Symbolized::Unnamed { function_offset } => {
            vec![LiveFrame::new(fallback(Some(function_offset)), kind)]
        }
        _ => vec![LiveFrame::new(fallback(None), kind)],
    }
}
