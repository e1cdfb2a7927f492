//! The ptrace sampler: rounds of one-thread-at-a-time interrupts.
//!
//! Sampling goes in rounds of `1/F` seconds. At the start of a round the
//! traced threads' states are read from `/proc/PID/task/TID/stat` (through a
//! descriptor kept open): every thread's in wall mode, in CPU mode in turn
//! until as many running ones as there are CPUs are found; the eligible
//! ones (running, in CPU mode; all but stopped ones, in wall mode) are then
//! sampled one after the other, spread evenly over the round. So `-F` means samples per second *per thread*
//! (on a CPU, in CPU mode), as with perf: a process with 4 busy threads at
//! 999 Hz gets about 4,000 samples a second in either backend. `R` in `stat`
//! also means "waiting for a CPU", so in CPU mode a round samples at most as
//! many runnable threads as there are CPUs, taking them in turn: 16 busy
//! threads on 2 CPUs get 2 × F samples a second, as from perf.
//!
//! Between ticks the sampler sleeps at most [`MAX_NAP`], looking at the
//! threads' pending stops (new threads, execs, signals to deliver) each
//! time it wakes, so a signal-delivery stop lasts at most that long; for
//! [`BIRTH_WINDOW`] after a new thread, fork or exec it looks every
//! [`PENDING_NAP`], since a process that forks is stopped in each fork
//! event until stoke looks.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use stoke_model::{Pid, Tid};

use super::capture::{capture_with, restartable, Capture, SavedRegs};
use super::stat::{blocked_in, BlockedIn};
use super::tracer::{Interrupt, Tracer};
use crate::sys::ptrace as sys;
use crate::sys::time;
use crate::{
    Call, Event, PollOutcome, Sample, SampleError, SampleMode, Sampler, SamplerOptions,
    WhileStopped,
};

/// The longest sleep between looks at pending stops.
pub(crate) const MAX_NAP: Duration = Duration::from_millis(2);
/// The longest sleep while an interrupted thread has yet to stop.
const PENDING_NAP: Duration = Duration::from_micros(100);
/// How long after a thread or process was born stoke keeps looking at
/// pending stops every [`PENDING_NAP`].
const BIRTH_WINDOW: Duration = Duration::from_millis(20);
/// How long a `poll` without timeout runs.
const DEFAULT_POLL: Duration = Duration::from_millis(200);

/// The ptrace sampler.
///
/// Built by [`PtraceSampler::attach`] or [`PtraceSampler::launch`]; see
/// [`Sampler`] for how to drive it. Samples are taken inside
/// [`Sampler::poll`], so poll it continuously while recording.
#[derive(Debug)]
pub struct PtraceSampler {
    tracer: Tracer,
    target: Pid,
    mode: SampleMode,
    frequency: u32,
    capture: Capture,
    /// Threads still to sample in this round.
    round: VecDeque<Tid>,
    round_start: Option<Instant>,
    /// This round's length (the period, jittered).
    round_length: Duration,
    /// The jitter generator's state (never 0).
    jitter: u64,
    next_tick: Instant,
    interval: Duration,
    finished: bool,
    /// Interrupts that got no stop in time (the thread stayed in the kernel).
    missed: u64,
    /// CPUs stoke and the target may use: the most threads on a CPU at once.
    cpus: usize,
    /// Where the next CPU-mode round starts in the list of runnable threads.
    rotation: usize,
    /// The target's CPU time when sampling started, and what it used by the
    /// end (for [`Sampler::coverage`]).
    cpu_at_start: Option<Duration>,
    cpu_used: Option<Duration>,
    /// The tracer's births last seen, and when they last changed.
    births_seen: u64,
    last_birth: Option<Instant>,
    /// Run on each sample before its thread is resumed.
    while_stopped: Option<Hook>,
}

/// A [`WhileStopped`] hook (with a `Debug` for the sampler's).
struct Hook(WhileStopped);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WhileStopped")
    }
}

impl PtraceSampler {
    /// A sampler over a tracer whose threads are seized.
    pub(crate) fn new(tracer: Tracer, target: Pid, options: &SamplerOptions) -> PtraceSampler {
        let frequency = options.frequency.max(1);
        PtraceSampler {
            tracer,
            target,
            mode: options.mode,
            frequency,
            capture: Capture {
                stack: options.stack,
                period: 1_000_000_000 / u64::from(frequency),
            },
            round: VecDeque::new(),
            round_start: None,
            round_length: Duration::from_nanos(1_000_000_000 / u64::from(frequency)),
            jitter: time::monotonic_ns() | 1,
            next_tick: Instant::now(),
            interval: Duration::ZERO,
            finished: false,
            missed: 0,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            rotation: 0,
            cpu_at_start: crate::procfs::process_cpu_time(target),
            cpu_used: None,
            births_seen: 0,
            last_birth: None,
            while_stopped: None,
        }
    }

    /// The tracer (for setup).
    pub(crate) fn tracer_mut(&mut self) -> &mut Tracer {
        &mut self.tracer
    }

    /// Samples lost: interrupts that got no stop within the timeout.
    pub fn lost(&self) -> u64 {
        self.missed
    }

    /// Updates the CPU time the target used since sampling started, while
    /// its `/proc` entry can be read.
    fn note_cpu_time(&mut self) {
        if self.finished && self.cpu_used.is_some() {
            return;
        }
        if let Some(used) = crate::procfs::process_cpu_time(self.target)
            .zip(self.cpu_at_start)
            .map(|(end, start)| end.saturating_sub(start))
        {
            self.cpu_used = Some(used);
        }
    }

    fn period(&self) -> Duration {
        Duration::from_nanos(self.capture.period)
    }

    /// A round's length: the period, jittered uniformly by ±50 % so that
    /// sampling never locks into step with a program that does something
    /// every period (perf's CPU-time clock has no such fixed phase either).
    fn jittered_period(&mut self) -> Duration {
        // xorshift64: cheap, and its quality is plenty for jitter.
        let mut x = self.jitter;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter = x;
        let fraction = (x >> 11) as f64 / (1u64 << 53) as f64;
        self.period().mul_f64(0.5 + fraction)
    }

    fn emit(&mut self, sink: &mut dyn FnMut(Event)) {
        for event in self.tracer.events.drain(..) {
            sink(event);
        }
    }

    /// Starts a round: reads every thread's state and queues the eligible.
    fn start_round(&mut self, now: Instant) {
        self.round_start = Some(now);
        let wall = self.mode.samples_off_cpu();
        // Mapping changes first, so that this round's samples are named
        // for what is mapped now.
        let pids: BTreeSet<Pid> = self.tracer.threads.values().map(|t| t.pid).collect();
        self.tracer.maps.retain(|pid| pids.contains(&pid));
        for &pid in &pids {
            self.tracer.maps.check(pid, now, &mut self.tracer.events);
        }
        self.tracer.discover(now);
        // In CPU mode at most `cpus` runnable threads are on a CPU at any
        // moment, so a round samples at most that many, taken in turn: the
        // threads are looked at from where the last round stopped until
        // that many are found (a process with hundreds of busy threads
        // costs a few `stat` reads per round, not hundreds).
        let tids: Vec<Tid> = self.tracer.threads.keys().copied().collect();
        let (first, wanted) = if wall {
            (0, usize::MAX)
        } else {
            (self.rotation % tids.len().max(1), self.cpus)
        };
        let mut looked = 0;
        for k in 0..tids.len() {
            looked = k + 1;
            let tid = tids[(first + k) % tids.len()];
            let Some(thread) = self.tracer.threads.get_mut(&tid) else {
                continue;
            };
            let Some(stat) = thread.stat.read() else {
                continue;
            };
            if thread.comm.as_deref() != Some(stat.comm.as_str()) {
                thread.comm = Some(stat.comm.clone());
                self.tracer.events.push(Event::Comm {
                    pid: thread.pid,
                    tid,
                    name: stat.comm.clone(),
                    exec: false,
                });
            }
            let eligible = if wall {
                !stat.stopped_or_dead() && !thread.group_stopped
            } else {
                stat.running()
            };
            if eligible {
                self.round.push_back(tid);
                if self.round.len() >= wanted {
                    break;
                }
            }
        }
        if !wall {
            self.rotation = first + looked;
        }
        let n = self.round.len().max(1) as u32;
        self.round_length = self.jittered_period();
        self.interval = self.round_length / n;
        self.next_tick = now;
    }

    /// One tick: starts a round if one is due, else samples the next thread.
    fn tick(&mut self, now: Instant) {
        if self.round.is_empty() {
            let due = self.round_start.map_or(now, |s| s + self.round_length);
            if now < due {
                self.next_tick = due;
                return;
            }
            self.start_round(now);
            if self.round.is_empty() {
                self.next_tick = now + self.round_length;
                return;
            }
        }
        if let Some(tid) = self.round.pop_front() {
            self.sample(tid);
        }
        // Late ticks are not caught up in a burst.
        self.next_tick = (self.next_tick + self.interval).max(now);
        if self.round.is_empty() {
            if let Some(start) = self.round_start {
                self.next_tick = self.next_tick.max(start + self.round_length);
            }
        }
    }

    /// Interrupts one thread; once it is stopped, [`Self::take`] samples it.
    fn sample(&mut self, tid: Tid) {
        let wall = self.mode.samples_off_cpu();
        let Some(thread) = self.tracer.threads.get_mut(&tid) else {
            return;
        };
        if thread.request.is_some() {
            // Still waiting for the stop of an earlier interrupt.
            self.missed += 1;
            return;
        }
        // Looked at again: the round started up to 1/F ago.
        let Some(stat) = thread.stat.read() else {
            return;
        };
        let eligible = if wall {
            !stat.stopped_or_dead() && !thread.group_stopped
        } else {
            stat.running()
        };
        if !eligible {
            return;
        }
        let blocked = wall && !stat.running();
        if blocked {
            // Still blocked where it was last stopped: its registers are
            // those seen then, and its stack can be read without a stop
            // (which would wake it, and cut short a call with a timeout).
            if let (Some(now), Some((site, regs))) =
                (blocked_in(thread.pid, tid), thread.blocked_site)
            {
                if now == site {
                    let pid = thread.pid;
                    let mut sample = capture_with(
                        pid,
                        tid,
                        &regs.0,
                        stat.cpu,
                        Some(true),
                        &mut thread.last_syscall,
                        &self.capture,
                    );
                    // Its user state cannot change while it stays blocked.
                    run_hook(&mut self.while_stopped, &mut sample);
                    self.tracer.events.push(Event::Sample(sample));
                    return;
                }
            }
        }
        thread.request = Some((stat.cpu, wall.then_some(blocked)));
        match self.tracer.interrupt(tid) {
            Interrupt::Stopped => self.take(tid),
            Interrupt::Pending => {}
            Interrupt::Failed => {
                if let Some(thread) = self.tracer.threads.get_mut(&tid) {
                    thread.request = None;
                }
            }
        }
    }

    /// Copies the registers and stack of a thread stopped for stoke, and
    /// resumes it.
    fn take(&mut self, tid: Tid) {
        let Some(thread) = self.tracer.threads.get_mut(&tid) else {
            return;
        };
        let pid = thread.pid;
        let (cpu, blocked) = thread.request.take().unwrap_or((0, None));
        let raw = tid.0 as libc::pid_t;
        let Ok(regs) = sys::registers(raw) else {
            self.tracer.resume(tid);
            return;
        };
        let mut sample = capture_with(
            pid,
            tid,
            &regs,
            cpu,
            blocked,
            &mut thread.last_syscall,
            &self.capture,
        );
        // Still stopped: what the hook reads is as at the sample.
        run_hook(&mut self.while_stopped, &mut sample);
        // A blocked thread's site, as /proc will show it once it is back
        // in its call (the call restarts from the same place).
        thread.blocked_site = (blocked == Some(true) && (regs.orig_rax as i64) >= 0).then(|| {
            let site = BlockedIn {
                nr: regs.orig_rax as i64,
                sp: regs.rsp,
                pc: regs.rip,
            };
            (site, SavedRegs(regs))
        });
        if let Some(fixed) = restartable(&regs) {
            let _ = sys::set_registers(raw, &fixed);
        }
        self.tracer.resume(tid);
        self.tracer.events.push(Event::Sample(sample));
    }

    /// Handles pending stops, sampling threads whose interrupt came late.
    fn handle_pending(&mut self) {
        for tid in self.tracer.handle_pending() {
            self.take(tid);
        }
    }
}

/// Runs the sampler's [`WhileStopped`] hook, if any, on `sample`.
fn run_hook(hook: &mut Option<Hook>, sample: &mut Sample) {
    if let Some(Hook(hook)) = hook {
        hook(sample);
    }
}

impl Sampler for PtraceSampler {
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        sink: &mut dyn FnMut(Event),
    ) -> Result<PollOutcome, SampleError> {
        let deadline = Instant::now() + timeout.unwrap_or(DEFAULT_POLL);
        // Read on every poll: a launched command is gone once reaped.
        self.note_cpu_time();
        loop {
            self.handle_pending();
            self.emit(sink);
            if self.tracer.root_exited || self.tracer.threads.is_empty() {
                return Ok(PollOutcome {
                    target_exited: true,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(PollOutcome::default());
            }
            if self.tracer.started && !self.finished && now >= self.next_tick {
                self.tick(now);
                self.emit(sink);
                continue;
            }
            // A thread stopped late for an interrupt waits for stoke's
            // next look: look often while one is due.
            // So do births: a process that just forked is likely to fork
            // again, stopped in each fork event until stoke looks.
            if self.tracer.births != self.births_seen {
                self.births_seen = self.tracer.births;
                self.last_birth = Some(now);
            }
            let cloning = self
                .last_birth
                .is_some_and(|at| now.duration_since(at) < BIRTH_WINDOW);
            let nap_limit = if cloning || self.tracer.interrupts_pending() {
                PENDING_NAP
            } else {
                MAX_NAP
            };
            let wake = self.next_tick.min(deadline).min(now + nap_limit);
            let nap = wake.saturating_duration_since(now);
            let interrupted = time::nap(nap).map_err(|source| SampleError::Sys {
                call: Call::Sleep,
                what: "nanosleep".to_string(),
                source,
            })?;
            if interrupted {
                return Ok(PollOutcome::default());
            }
        }
    }

    fn finish(&mut self, sink: &mut dyn FnMut(Event)) -> Result<(), SampleError> {
        self.finished = true;
        self.note_cpu_time();
        self.handle_pending();
        self.tracer.detach_all();
        self.emit(sink);
        Ok(())
    }

    fn event(&self) -> String {
        match self.mode {
            SampleMode::Cpu => "ptrace (cpu)",
            SampleMode::Wall => "ptrace (wall)",
            SampleMode::OffCpu => "ptrace (off-cpu)",
        }
        .to_string()
    }

    fn description(&self) -> String {
        let (mode, whom) = match self.mode {
            SampleMode::Cpu => ("cpu", "per running thread"),
            SampleMode::Wall => ("wall", "per thread, running or blocked"),
            SampleMode::OffCpu => ("off-cpu", "per blocked thread"),
        };
        format!(
            "ptrace ({mode}) at {} Hz {whom} (one thread interrupted at a time)",
            self.frequency
        )
    }

    fn target(&self) -> Pid {
        self.target
    }

    fn read_while_stopped(&mut self, hook: WhileStopped) -> bool {
        self.while_stopped = Some(Hook(hook));
        true
    }

    fn coverage(&self) -> crate::Coverage {
        crate::Coverage {
            backend: crate::Backend::Ptrace,
            cpu_time: self.cpu_used,
            kernel: crate::KernelTime::Sampled,
            missed: self.missed,
        }
    }
}
