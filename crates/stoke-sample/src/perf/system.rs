//! The per-CPU sampler: one event per CPU for every task (or a cgroup's),
//! records kept by a [`TaskFilter`].
//!
//! Per-CPU events sample whatever runs, so a thread that lives for less
//! than a sample period is caught as often as its share of the CPU says,
//! which per-task events (whose clock starts anew in every thread) miss.
//! It serves `-a`, `--cgroup`, `--name` and pid lists, and, where per-CPU
//! events are allowed, a launched command or attached process (filtered
//! to its process tree; the target is never moved or changed).

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use stoke_model::{Pid, Tid};

use super::filter::{Keep, TaskFilter};
use super::open::Chosen;
use super::record::{self, Layout};
use super::sampler::CpuRing;
use super::switch::SwitchIds;
use super::system_open::{arm_switches, open_per_cpu, task_clock, Tasks};
use crate::sys;
use crate::{Call, Event, PollOutcome, SampleError, Sampler, SamplerOptions};

/// How the target's own CPU time is measured, to compare with samples.
#[derive(Debug)]
pub(crate) enum CpuClock {
    /// Not measured (the whole machine, a cgroup).
    None,
    /// A counting task-clock event on the launched command, inherited.
    Counter(OwnedFd),
    /// `/proc/PID/stat` of attached processes, read at start.
    Procfs(Vec<(Pid, Duration)>),
}

/// A process whose exit ends the recording, once all of them exited.
#[derive(Debug)]
struct Watched {
    fd: OwnedFd,
    gone: bool,
}

/// The per-CPU sampler.
#[derive(Debug)]
pub struct SystemSampler {
    target: Pid,
    what: String,
    chosen: Chosen,
    layout: Layout,
    rings: Vec<CpuRing>,
    filter: TaskFilter,
    watched: Vec<Watched>,
    /// Processes whose mappings are known: read from `/proc`, or exec'd
    /// (or forked from such a process) during the recording.
    seen: HashSet<Pid>,
    pending: Vec<Event>,
    scratch: Vec<u8>,
    batch: Vec<(u64, Event)>,
    clock: CpuClock,
    cpu_time: Option<Duration>,
    /// The context-switch events (off-CPU modes).
    switch_ids: SwitchIds,
    /// Off-CPU intervals of threads blocked when recording started, handed
    /// out with the first records (through the filter, so mappings come
    /// first as for any process's first sample).
    blocked_at_start: Vec<(u64, Event)>,
}

/// How a [`SystemSampler`] is assembled.
pub(crate) struct Parts {
    /// The pid reported as the target (0 for the machine).
    pub(crate) target: Pid,
    /// What is sampled, for the description (`every CPU`, …).
    pub(crate) what: String,
    /// Which records to keep.
    pub(crate) keep: Keep,
    /// Processes whose exit ends recording (all of them).
    pub(crate) watched: Vec<OwnedFd>,
    /// How the target's CPU time is measured.
    pub(crate) clock: CpuClock,
}

impl SystemSampler {
    /// Opens per-CPU events on `tasks` and assembles the sampler; events
    /// start enabled.
    pub(crate) fn open(
        options: &SamplerOptions,
        tasks: &Tasks,
        parts: Parts,
    ) -> Result<SystemSampler, SampleError> {
        super::switch::check_allowed(options)?;
        let (chosen, mut rings) = open_per_cpu(options, tasks)?;
        let switch_ids = arm_switches(options, tasks, &chosen, &mut rings)?;
        let mut pending = Vec::new();
        if let Keep::All { idle: true } = parts.keep {
            pending.push(Event::Comm {
                pid: Pid(0),
                tid: Tid(0),
                name: "[idle]".to_string(),
                exec: false,
            });
        }
        let sampler = SystemSampler {
            target: parts.target,
            what: parts.what,
            layout: Layout {
                sample_type: chosen.spec.sample_type(),
            },
            chosen,
            rings,
            filter: TaskFilter::new(parts.keep.clone()),
            watched: parts
                .watched
                .into_iter()
                .map(|fd| Watched { fd, gone: false })
                .collect(),
            seen: HashSet::new(),
            pending,
            scratch: Vec::new(),
            batch: Vec::new(),
            clock: parts.clock,
            cpu_time: None,
            switch_ids,
            blocked_at_start: Vec::new(),
        };
        let mut sampler = sampler;
        sampler.set_enabled(true)?;
        if options.mode.samples_off_cpu() {
            let now = sys::time::monotonic_ns();
            sampler.blocked_at_start = blocked_now(tasks, &parts.keep, now)
                .into_iter()
                .map(|event| (now, event))
                .collect();
        }
        Ok(sampler)
    }

    /// Measures the target's CPU time with `clock`.
    pub(crate) fn set_clock(&mut self, clock: CpuClock) {
        self.clock = clock;
    }

    fn set_enabled(&self, on: bool) -> Result<(), SampleError> {
        self.rings.iter().try_for_each(|r| r.set_enabled(on))
    }

    /// Reads every ring to its end, merges the records in time order, and
    /// hands on those the filter keeps. A process's first sample is
    /// preceded by its mappings read from `/proc` (it may predate the
    /// recording), while it lives, unless it exec'd while recorded.
    fn drain(&mut self, sink: &mut dyn FnMut(Event)) {
        for event in self.pending.drain(..) {
            sink(event);
        }
        // Every ring's records into one buffer; all but samples parsed now.
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut batch = std::mem::take(&mut self.batch);
        batch.append(&mut self.blocked_at_start);
        scratch.clear();
        let mut samples: Vec<(usize, usize)> = Vec::new();
        for ring in &mut self.rings {
            let start = scratch.len();
            if ring.read_into(&mut scratch) == 0 {
                continue;
            }
            let layout = &self.layout;
            let mut last_time = 0;
            let base = scratch.as_ptr() as usize;
            record::split_records(&scratch[start..], |bytes| {
                if record::header(bytes).is_some_and(|h| h.kind == SAMPLE) {
                    samples.push((bytes.as_ptr() as usize - base, bytes.len()));
                    return;
                }
                let Some(event) = record::parse(layout, bytes) else {
                    return;
                };
                last_time = record::record_time(layout, bytes).unwrap_or(last_time);
                batch.push((last_time, event));
            });
        }
        // Samples of processes that cannot be kept are skipped unparsed
        // (their stack copies are never copied again).
        let candidates = self.filter.candidates(&batch);
        for (offset, len) in samples {
            let bytes = &scratch[offset..offset + len];
            if let Some(candidates) = &candidates {
                if !sample_pid(bytes).is_some_and(|pid| candidates.contains(&pid)) {
                    continue;
                }
            }
            if let Some(mut event) = record::parse(&self.layout, bytes) {
                if let Event::Sample(s) = &mut event {
                    let id = record::sample_identifier(&self.layout, bytes);
                    s.switch_out = self.switch_ids.is_switch(id);
                }
                let time = record::record_time(&self.layout, bytes).unwrap_or(0);
                batch.push((time, event));
            }
        }
        batch.sort_by_key(|(time, _)| *time);
        for (_, event) in batch.drain(..) {
            if !self.filter.keep(&event) {
                continue;
            }
            match &event {
                Event::Sample(s) if s.pid.0 != 0 && self.seen.insert(s.pid) => {
                    let pid = s.pid;
                    for mapping in crate::procfs::executable_mappings(pid).unwrap_or_default() {
                        sink(Event::Mmap {
                            pid,
                            tid: Tid::from(pid),
                            mapping,
                        });
                    }
                }
                Event::Exit { pid, tid } if pid.0 == tid.0 => {
                    self.seen.remove(pid);
                }
                // Its mappings all come in records from now on (with the
                // build-ids the kernel gives, which /proc has not).
                Event::Comm {
                    pid, exec: true, ..
                } => {
                    self.seen.insert(*pid);
                }
                // A child starts with its parent's mappings.
                Event::Fork { pid, ppid, .. } if pid != ppid && self.seen.contains(ppid) => {
                    self.seen.insert(*pid);
                }
                _ => {}
            }
            sink(event);
        }
        self.scratch = scratch;
        self.batch = batch;
    }

    fn measured_cpu_time(&self) -> Option<Duration> {
        match &self.clock {
            CpuClock::None => None,
            CpuClock::Counter(fd) => sys::perf::read_count_and_running(fd)
                .ok()
                .map(|(count, _)| Duration::from_nanos(count)),
            CpuClock::Procfs(start) => start.iter().try_fold(Duration::ZERO, |sum, (pid, at)| {
                let now = crate::procfs::process_cpu_time(*pid)?;
                Some(sum + now.saturating_sub(*at))
            }),
        }
    }
}

impl Sampler for SystemSampler {
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        sink: &mut dyn FnMut(Event),
    ) -> Result<PollOutcome, SampleError> {
        let mut fds: Vec<libc::pollfd> = self
            .rings
            .iter()
            .filter_map(|r| r.fds().next())
            .map(pollfd)
            .collect();
        let rings = fds.len();
        let watched: Vec<usize> = (0..self.watched.len())
            .filter(|&i| !self.watched[i].gone)
            .collect();
        fds.extend(watched.iter().map(|&i| pollfd(&self.watched[i].fd)));
        let ms = match timeout {
            None => -1,
            Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
        };
        match sys::poll::poll(&mut fds, ms) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(SampleError::Sys {
                    call: Call::Poll,
                    what: "poll on perf events".to_string(),
                    source,
                })
            }
        }
        for (pfd, &i) in fds[rings..].iter().zip(&watched) {
            if pfd.revents != 0 {
                self.watched[i].gone = true;
            }
        }
        self.drain(sink);
        let all_gone = !self.watched.is_empty() && self.watched.iter().all(|w| w.gone);
        // Processes followed by name, all gone, with no new ones to wait for.
        let none_left = self.watched.is_empty() && !self.filter.follows_anything();
        Ok(PollOutcome {
            target_exited: all_gone || none_left,
        })
    }

    fn finish(&mut self, sink: &mut dyn FnMut(Event)) -> Result<(), SampleError> {
        let disabled = self.set_enabled(false);
        // Threads still off the CPU waited until now (the events' clock).
        let stopped = sys::time::monotonic_ns();
        self.drain(sink);
        if self.switch_ids.any() {
            sink(Event::Stopped { time: stopped });
        }
        self.cpu_time = self.measured_cpu_time();
        disabled
    }

    fn description(&self) -> String {
        format!("{}, {}", self.chosen.description(), self.what)
    }

    fn event(&self) -> String {
        self.chosen.spec.counter.name().to_string()
    }

    fn target(&self) -> Pid {
        self.target
    }

    fn coverage(&self) -> crate::Coverage {
        crate::Coverage {
            backend: crate::Backend::Perf,
            cpu_time: self.cpu_time,
            kernel: self.chosen.kernel_time(),
            missed: 0,
        }
    }
}

/// `PERF_RECORD_SAMPLE`.
const SAMPLE: u32 = 9;

/// The pid of a sample record: its `TID` field, after the header,
/// `IDENTIFIER` and `IP` (every stoke event samples all three).
fn sample_pid(record: &[u8]) -> Option<Pid> {
    let bytes = record.get(24..28)?;
    Some(Pid(u32::from_ne_bytes(bytes.try_into().ok()?)))
}

fn pollfd(fd: &OwnedFd) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Switch-outs for the threads that are blocked as recording starts (see
/// [`super::switch::blocked_at_attach`]): of the processes the filter
/// keeps, every process on the machine for `-a`, the cgroup's processes
/// for `--cgroup` (a launched command has not started yet).
fn blocked_now(tasks: &Tasks, keep: &Keep, now: u64) -> Vec<Event> {
    let pids: Vec<Pid> = match (keep, tasks) {
        (Keep::Processes { pids, .. }, _) => pids.iter().copied().collect(),
        (Keep::All { .. }, Tasks::All) => crate::procfs::all_pids(),
        (Keep::All { .. }, Tasks::Cgroup(fd)) => {
            let procs = format!("/proc/self/fd/{}/cgroup.procs", fd.as_raw_fd());
            std::fs::read_to_string(procs)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok().map(Pid))
                .collect()
        }
    };
    let mut events = Vec::new();
    for pid in pids.into_iter().filter(|p| p.0 != 0) {
        let tids = crate::procfs::threads(pid).unwrap_or_default();
        events.extend(super::switch::blocked_at_attach(pid, &tids, now));
    }
    events
}

/// A task-clock counter for a launched command, opened while it is held.
pub(crate) fn command_clock(pid: i32) -> CpuClock {
    task_clock(pid, true).map_or(CpuClock::None, CpuClock::Counter)
}
