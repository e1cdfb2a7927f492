//! The recording loop: start, poll until a stop condition, finish, build.

use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use stoke_model::Pid;
use stoke_profile::{Metadata, Profile};
use stoke_sample::{Child, CommandSpec, Sampler, Started};
use stoke_symbolize::Symbolizer;

use crate::aggregate::{Aggregator, StackStats};
use crate::live::LiveNamer;
use crate::symbols::build_profile;
use crate::{RecordError, RecordOptions, Target, Warning, Warnings};

/// How often the loop wakes at the latest (to check flags and report progress).
const TICK: Duration = Duration::from_millis(200);
/// How long a launched command gets to exit after stoke was asked to stop.
const GRACE: Duration = Duration::from_millis(1000);

/// How the caller steers a running session.
pub struct Control<'a> {
    /// Set (e.g. by a signal handler) to stop recording.
    pub stop: &'a AtomicBool,
    /// The signal that asked to stop (0 if none); passed on to a launched command.
    pub signal: &'a AtomicI32,
    /// Stop signals counted by the caller's handler: one arriving while
    /// addresses are named ends naming (the rest is named by module and
    /// offset); the next asks the handler to exit at once.
    pub interrupts: &'a Interrupts,
    /// Called a few times per second while recording.
    pub progress: Option<&'a mut dyn FnMut(Progress)>,
}

/// A count of stop signals, shared with a signal handler (atomics only).
#[derive(Debug)]
pub struct Interrupts {
    count: AtomicU32,
    exit_at: AtomicU32,
}

impl Interrupts {
    /// No signal yet; none exits at once.
    pub const fn new() -> Interrupts {
        Interrupts {
            count: AtomicU32::new(0),
            exit_at: AtomicU32::new(u32::MAX),
        }
    }

    /// Counts a signal (async-signal-safe). Returns whether the process
    /// should exit at once: the second signal since naming began.
    pub fn arrived(&self) -> bool {
        let n = self.count.fetch_add(1, Ordering::SeqCst).saturating_add(1);
        n >= self.exit_at.load(Ordering::SeqCst)
    }

    fn count(&self) -> u32 {
        self.count.load(Ordering::SeqCst)
    }
}

impl Default for Interrupts {
    fn default() -> Interrupts {
        Interrupts::new()
    }
}

/// Where a running session is.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Time since sampling started.
    pub elapsed: Duration,
    /// Samples so far.
    pub samples: u64,
}

/// Why recording ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The target exited.
    TargetExited,
    /// The duration elapsed.
    Duration,
    /// The caller asked (a signal).
    Requested,
}

/// The result of a session.
pub struct Recording {
    /// The profile, symbolized.
    pub profile: Profile,
    /// What was seen.
    pub stats: StackStats,
    /// Distinct (thread, stack) pairs.
    pub distinct_stacks: usize,
    /// How long sampling lasted.
    pub duration: Duration,
    /// How long symbolization took.
    pub symbolize_time: Duration,
    /// Why recording ended.
    pub stop_reason: StopReason,
    /// A launched command's exit status, if it exited.
    pub exit_status: Option<ExitStatus>,
    /// The launched command's pid (`None` when attached to a process). A
    /// command with no `exit_status` was still running when recording ended.
    pub command_pid: Option<Pid>,
    /// Problems to tell the user once each (e.g. a refused JIT map).
    pub warnings: Warnings,
    /// How completely the sampler covered the target's CPU time.
    pub coverage: stoke_sample::Coverage,
    /// Why perf events were not available, when `--backend auto` fell back
    /// to ptrace.
    pub fallback: Option<String>,
}

/// The profile's title for a system-wide recording: `all CPUs`,
/// `pids 1,2`, `processes named x`, `cgroup P`, with ` (while CMD)`.
fn system_title(scope: &stoke_sample::SystemScope, command: Option<&CommandSpec>) -> String {
    use stoke_sample::SystemScope;
    let what = match scope {
        SystemScope::All { .. } => "all CPUs".to_string(),
        SystemScope::Pids(pids) => {
            let list: Vec<String> = pids.iter().map(ToString::to_string).collect();
            format!("pids {}", list.join(","))
        }
        SystemScope::Name { pattern, .. } => format!("processes named {}", pattern.as_str()),
        SystemScope::Cgroup(path) => format!("cgroup {}", path.display()),
    };
    match command {
        Some(command) => format!("{what} (while {})", command.display()),
        None => what,
    }
}

/// A recording in progress.
pub struct Session {
    sampler: Box<dyn Sampler>,
    child: Option<Child>,
    fallback: Option<String>,
    launch_warnings: Vec<String>,
    options: RecordOptions,
    command: String,
    aggregator: Aggregator,
    symbolizer: Symbolizer,
    /// Whether kernel symbols are being read ahead (or will be read by a
    /// live view's namer): started at the first kernel frame, not before.
    kernel_prefetched: bool,
}

impl Session {
    /// Attaches to or launches the target and starts sampling.
    pub fn start(target: &Target, mut options: RecordOptions) -> Result<Session, RecordError> {
        // The module store the recording will use: an attached process's
        // interpreter is read from it for detection already.
        let mut store = crate::store::ModuleStore::default();
        let python = if options.python == crate::PythonMode::Auto {
            crate::python::looks_like_python(target, &mut store)
        } else {
            crate::python::PythonTarget::default()
        };
        if python.likely {
            options.sampler.wake_each_sample = true;
        }
        let (started, command) = match target {
            Target::Pid(pid) => {
                let started = stoke_sample::attach(options.backend, *pid, &options.sampler)?;
                let name =
                    stoke_sample::procfs::thread_name(*pid, (*pid).into()).unwrap_or_default();
                (started, format!("pid {pid} ({name})"))
            }
            Target::Command(spec) => {
                let started = stoke_sample::launch(options.backend, spec, &options.sampler)?;
                (started, spec.display())
            }
            Target::System { scope, command } => {
                let started = stoke_sample::system(
                    options.backend,
                    scope,
                    command.as_ref(),
                    &options.sampler,
                )?;
                (started, system_title(scope, command.as_ref()))
            }
        };
        let Started {
            mut sampler,
            child,
            fallback,
            warnings: launch_warnings,
        } = started;
        if python.likely {
            // Python frames are read while the target runs on: the sooner
            // after the sample, the fewer are stale. After the launch, so
            // the command keeps its own nice value.
            crate::sys::priority::raise_own(crate::python::READER_NICE);
        }
        let mut aggregator = Aggregator::with_python(options.unwind, options.python);
        aggregator.adopt_store(store);
        if let Some((pid, interpreter)) = python.found {
            aggregator.python.adopt(pid, interpreter);
        }
        if let Some(hook) = aggregator.python.while_stopped() {
            // Under ptrace, Python frames are read before the thread resumes.
            sampler.read_while_stopped(hook);
        }
        if options.per_process {
            aggregator.name_processes_with_pid();
        }
        aggregator.set_mode(options.sampler.mode, options.sampler.frequency);
        if options.merge_threads {
            aggregator.merge_threads();
        }
        let mut symbolizer = Symbolizer::new(options.symbolize.clone());
        // Its perf map may be read after it exited: trust its owner's.
        symbolizer.remember_owner(sampler.target());
        // Kernel symbols are read ahead once a sample has a kernel frame
        // (see `poll`): a target that stays in user space never pays for
        // `/proc/kallsyms` (about half of stoke's fixed cost).
        let kernel_prefetched = !options.sampler.kernel;
        if matches!(target, Target::System { .. }) {
            symbolizer.name_self_by_symbols();
        }
        Ok(Session {
            sampler,
            child,
            fallback,
            launch_warnings,
            options,
            command,
            aggregator,
            symbolizer,
            kernel_prefetched,
        })
    }

    /// What is sampled and how, in one line.
    pub fn description(&self) -> String {
        self.sampler.description()
    }

    /// Why perf events were not available, when `--backend auto` fell back
    /// to ptrace.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// What the launched command cannot do under the chosen sampler (a
    /// setuid program under ptrace…), one line each.
    pub fn launch_warnings(&self) -> &[String] {
        &self.launch_warnings
    }

    /// What is recorded, as the profile's metadata names it (`pid N (name)`,
    /// the command line, `all CPUs`…).
    pub fn title(&self) -> &str {
        &self.command
    }

    /// The target's pid.
    pub fn pid(&self) -> Pid {
        self.sampler.target()
    }

    /// Records until the target exits, the duration elapses or `control.stop`
    /// is set; then stops sampling, symbolizes and builds the profile.
    pub fn run(mut self, control: Control<'_>) -> Result<Recording, RecordError> {
        let Control {
            stop,
            signal,
            interrupts,
            mut progress,
        } = control;
        let started = Instant::now();
        // A duration too long to add never ends recording by itself.
        let deadline = self.options.duration.and_then(|d| started.checked_add(d));
        let mut last_progress = started;
        let mut exited = false;
        let stop_reason = loop {
            if stop.load(Ordering::SeqCst) {
                break StopReason::Requested;
            }
            let now = Instant::now();
            let mut timeout = TICK;
            if let Some(deadline) = deadline {
                if now >= deadline {
                    break StopReason::Duration;
                }
                timeout = timeout.min(deadline - now);
            }
            let outcome = self.poll(Some(timeout))?;
            if let Some(report) = progress.as_mut() {
                if last_progress.elapsed() >= TICK {
                    last_progress = Instant::now();
                    report(Progress {
                        elapsed: started.elapsed(),
                        samples: self.aggregator.samples(),
                    });
                }
            }
            if outcome.target_exited {
                exited = true;
                break StopReason::TargetExited;
            }
        };
        self.conclude(
            started.elapsed(),
            stop_reason,
            exited,
            signal.load(Ordering::SeqCst),
            interrupts,
            true,
        )
    }

    /// Samples for up to `timeout`, handing every event to the aggregator:
    /// the loop of a live view, which reads [`Session::aggregator`] in
    /// between. Returns whether the target exited.
    pub fn poll_for(&mut self, timeout: Duration) -> Result<bool, RecordError> {
        Ok(self.poll(Some(timeout))?.target_exited)
    }

    /// What has been counted so far.
    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    /// How completely the sampler has covered the target's CPU time so far.
    pub fn coverage(&self) -> stoke_sample::Coverage {
        self.sampler.coverage()
    }

    /// The session's options.
    pub fn options(&self) -> &RecordOptions {
        &self.options
    }

    /// Moves the session's symbolizer to a naming thread that names new
    /// addresses as a live view asks ([`LiveNamer`]); give it back to
    /// [`Session::end`], whose final naming then reuses what it parsed.
    pub fn live_namer(&mut self) -> LiveNamer {
        let fresh = Symbolizer::new(self.options.symbolize.clone());
        // The namer reads kernel symbols when it first needs them.
        self.kernel_prefetched = true;
        LiveNamer::new(std::mem::replace(&mut self.symbolizer, fresh))
    }

    /// Ends a session driven with [`Session::poll_for`]: a launched command
    /// gets `signal` (SIGTERM if 0) and then SIGTERM as in [`Session::run`]
    /// unless it exited already; an attached process is left running and
    /// is detached from. With `profile`, every address is named (by
    /// `namer`'s symbolizer when given) and the profile built; without, the
    /// recording's profile is empty.
    pub fn end(
        mut self,
        sampled_for: Duration,
        target_exited: bool,
        signal: i32,
        interrupts: &Interrupts,
        namer: Option<LiveNamer>,
        profile: bool,
    ) -> Result<Recording, RecordError> {
        if let Some(namer) = namer {
            if let Some(symbolizer) = namer.into_symbolizer() {
                self.symbolizer = symbolizer;
            }
        }
        let reason = if target_exited {
            StopReason::TargetExited
        } else {
            StopReason::Requested
        };
        let signal = if signal == 0 { libc::SIGTERM } else { signal };
        self.conclude(
            sampled_for,
            reason,
            target_exited,
            signal,
            interrupts,
            profile,
        )
    }

    fn conclude(
        mut self,
        duration: Duration,
        stop_reason: StopReason,
        mut exited: bool,
        signal: i32,
        interrupts: &Interrupts,
        profile: bool,
    ) -> Result<Recording, RecordError> {
        match stop_reason {
            StopReason::Requested => {
                exited = self.let_command_stop(signal)?;
            }
            // The command was run for the duration asked: stop it, as
            // `timeout` would, rather than leave it running unobserved.
            StopReason::Duration => exited = self.let_command_stop(libc::SIGTERM)?,
            StopReason::TargetExited => {}
        }
        let aggregator = &mut self.aggregator;
        self.sampler.finish(&mut |e| aggregator.handle(e))?;
        let exit_status = match (&mut self.child, exited) {
            (Some(child), true) => Some(child.wait()?),
            _ => None,
        };
        Ok(self.build(duration, stop_reason, exit_status, interrupts, profile))
    }

    fn poll(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<stoke_sample::PollOutcome, RecordError> {
        let aggregator = &mut self.aggregator;
        let outcome = self.sampler.poll(timeout, &mut |e| aggregator.handle(e))?;
        if !self.kernel_prefetched && self.aggregator.kernel_samples() > 0 {
            self.kernel_prefetched = true;
            self.symbolizer.prefetch_kernel();
        }
        Ok(outcome)
    }

    /// After a stop request, a launched command gets the signal stoke got
    /// (a terminal's Ctrl-C reached it already) and a moment to exit; one
    /// that ignores SIGINT gets SIGTERM, as perf does. Returns whether it
    /// exited. An attached process is never signalled.
    fn let_command_stop(&mut self, signal: i32) -> Result<bool, RecordError> {
        let Some(child) = &self.child else {
            return Ok(false);
        };
        if signal != 0 && signal != libc::SIGINT {
            child.signal(signal)?;
        }
        if self.wait_exit(GRACE)? {
            return Ok(true);
        }
        if let Some(child) = &self.child {
            child.signal(libc::SIGTERM)?;
        }
        self.wait_exit(GRACE)
    }

    fn wait_exit(&mut self, grace: Duration) -> Result<bool, RecordError> {
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if self.poll(Some(until - Instant::now()))?.target_exited {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn build(
        mut self,
        duration: Duration,
        stop_reason: StopReason,
        exit_status: Option<ExitStatus>,
        interrupts: &Interrupts,
        named: bool,
    ) -> Recording {
        self.aggregator.settle_off_cpu();
        let stats = self.aggregator.stats();
        let coverage = self.sampler.coverage();
        let meta = Metadata {
            command: self.command,
            frequency: self.options.sampler.frequency,
            duration,
            event: self.sampler.event(),
            lost: stats.lost,
            truncated: stats.truncated.iter().map(|(_, n)| n).sum(),
            sampled: match coverage.kernel {
                stoke_sample::KernelTime::Sampled => stoke_profile::SampledTime::All,
                stoke_sample::KernelTime::NotSampled { .. } => stoke_profile::SampledTime::UserOnly,
            },
            clock: match self.options.sampler.mode {
                stoke_sample::SampleMode::Cpu => stoke_profile::Clock::Cpu,
                stoke_sample::SampleMode::Wall => stoke_profile::Clock::Wall,
                stoke_sample::SampleMode::OffCpu => stoke_profile::Clock::OffCpu,
            },
            cgroups: self.aggregator.cgroups().clone(),
        };
        let symbolize_started = Instant::now();
        let mut warnings = Warnings::default();
        for warning in self.aggregator.unwind_warnings() {
            warnings.push(warning);
        }
        // A signal from now on ends naming; the one after, stoke.
        let base = interrupts.count();
        interrupts
            .exit_at
            .store(base.saturating_add(2), Ordering::SeqCst);
        let profile = if !named {
            Profile::new(meta)
        } else {
            build_profile(
                &self.aggregator.stacks(),
                &self.aggregator.modules,
                &self.aggregator.python.frames,
                self.symbolizer,
                meta,
                &mut warnings,
                &|| interrupts.count() > base,
            )
        };
        Recording {
            profile,
            distinct_stacks: self.aggregator.distinct_stacks(),
            stats,
            duration,
            symbolize_time: symbolize_started.elapsed(),
            stop_reason,
            exit_status,
            command_pid: self.child.as_ref().map(Child::pid),
            warnings: {
                for message in &self.aggregator.python.warnings {
                    warnings.push(Warning::Symbolize(message.clone()));
                }
                warnings
            },
            coverage,
            fallback: self.fallback,
        }
    }
}
