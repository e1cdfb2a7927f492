//! The summary printed on stderr after recording.

use std::collections::HashMap;
use std::time::Duration;

use stoke_profile::{top_self, FrameKind};
use stoke_record::{Backend, Recording, StackStats, StopReason};
use stoke_sample::KernelTime;
use stoke_unwind::TruncationReason;

use crate::output::Output;

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the summary needs to know of the options recorded with.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    /// `--stack-size` when user stacks are copied (`None` for `--unwind fp`).
    pub stack_size: Option<u32>,
    /// Whether blocked threads were sampled too (`--mode wall`), so samples
    /// are not CPU time.
    pub wall: bool,
}

/// The largest `--stack-size` the kernel accepts.
const MAX_STACK_SIZE: u32 = 65528;
/// How far samples may fall short of the target's CPU time before the
/// summary says so.
const COVERAGE_TOLERANCE: f64 = 0.10;
/// The share of samples in a module without symbols that is worth a
/// pointer to `stoke doctor`.
const UNNAMED_MODULE_SHARE: f64 = 0.10;

/// Prints samples, lost, missed, distinct stacks, coverage of the target's
/// CPU time, truncation, hints, top functions and outputs.
pub fn print(recording: &Recording, outputs: &[Output], write_time: Duration, context: Context) {
    let stats = &recording.stats;
    let why = match recording.stop_reason {
        StopReason::TargetExited => "target exited",
        StopReason::Duration => "duration reached",
        StopReason::Requested => "stopped by signal",
    };
    let command = command_fate(recording);
    let missed = match recording.coverage.missed {
        0 => String::new(),
        n => format!(", {} missed", thousands(n)),
    };
    eprintln!(
        "stoke: {} samples, {} lost{missed}, {} distinct stacks in {:.2} s ({why})",
        thousands(stats.samples),
        thousands(stats.lost),
        thousands(recording.distinct_stacks as u64),
        recording.duration.as_secs_f64(),
    );
    if let Some(command) = command {
        eprintln!("stoke: {command}");
    }
    if let KernelTime::NotSampled { paranoid } = recording.coverage.kernel {
        eprintln!(
            "stoke: user time only: time in the kernel is not sampled \
             (perf_event_paranoid={paranoid}; see `stoke doctor`)"
        );
    }
    if let Some(line) = coverage_line(recording, context) {
        eprintln!("stoke: {line}");
    }
    if let Some(line) = truncation_line(stats, context) {
        eprintln!("stoke: {line}");
    }
    for warning in recording.warnings.iter() {
        eprintln!("stoke: warning: {warning}");
    }
    for hint in doctor_hints(recording) {
        eprintln!("stoke: {hint}; see `stoke doctor`");
    }
    if context.wall {
        print_thread_times(recording);
    }
    let total = recording.profile.total_samples();
    let top = top_self(&recording.profile, 5);
    if !top.is_empty() {
        eprintln!("stoke: top functions by self samples:");
        for f in top {
            eprintln!("  {:>5.1}%  {}", percent(f.count, total), f.label());
        }
    }
    if !outputs.is_empty() {
        let names: Vec<String> = outputs.iter().map(Output::display).collect();
        eprintln!(
            "stoke: wrote {} (symbolized in {:.2} s, written in {:.2} s)",
            names.join(", "),
            recording.symbolize_time.as_secs_f64(),
            write_time.as_secs_f64()
        );
    }
}

/// Threads shown in the time-per-thread table, longest first.
const THREAD_TIME_ROWS: usize = 12;

/// Where each thread's time went, in wall-clock and off-CPU modes.
fn print_thread_times(recording: &Recording) {
    let rows = thread_times(&recording.profile);
    if rows.is_empty() {
        return;
    }
    eprintln!("stoke: time per thread:   on-CPU    blocked   runnable");
    for row in rows.iter().take(THREAD_TIME_ROWS) {
        let s = |d: Duration| format!("{:>8.2} s", d.as_secs_f64());
        eprintln!(
            "  {:<22}{}{}{}",
            row.name,
            s(row.on_cpu),
            s(row.blocked),
            s(row.runnable)
        );
    }
    if rows.len() > THREAD_TIME_ROWS {
        eprintln!("  ({} more threads)", rows.len() - THREAD_TIME_ROWS);
    }
}

/// One thread's time on the CPU, blocked and waiting for a CPU.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadTime {
    /// `name-tid`.
    pub name: String,
    /// Samples on a CPU.
    pub on_cpu: Duration,
    /// Time blocked (`[off-cpu]` stacks but `[runnable]` ones).
    pub blocked: Duration,
    /// Time preempted, on the run queue (`[runnable]` leaves).
    pub runnable: Duration,
}

/// Each thread's times from a wall-clock or off-CPU profile, longest first.
pub fn thread_times(profile: &stoke_profile::Profile) -> Vec<ThreadTime> {
    let period = profile.meta.period_ns().unwrap_or(0);
    let mut per_thread: HashMap<stoke_profile::ThreadId, [u64; 3]> = HashMap::new();
    for (thread, stack, count) in profile.samples() {
        let leaf = &profile.frame(profile.stack_frame(stack)).name;
        let mut root = stack;
        while let Some(parent) = profile.stack_parent(root) {
            root = parent;
        }
        let off_cpu = profile.frame(profile.stack_frame(root)).name == stoke_record::OFF_CPU_FRAME;
        let slot = match (off_cpu, leaf == stoke_record::RUNNABLE_FRAME) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        };
        per_thread.entry(thread).or_default()[slot] += count;
    }
    let time = |n: u64| Duration::from_nanos(n.saturating_mul(period));
    let mut rows: Vec<(u64, ThreadTime)> = per_thread
        .into_iter()
        .map(|(id, [on, blocked, runnable])| {
            let t = profile.thread(id);
            let name = t
                .thread_name
                .clone()
                .or_else(|| t.process_name.clone())
                .unwrap_or_default();
            (
                on + blocked + runnable,
                ThreadTime {
                    name: format!("{name}-{}", t.tid),
                    on_cpu: time(on),
                    blocked: time(blocked),
                    runnable: time(runnable),
                },
            )
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    rows.into_iter().map(|(_, row)| row).collect()
}

/// The warning for a recording without samples, saying why there were none.
pub fn print_empty(recording: &Recording) {
    let frequency = recording.profile.meta.frequency.max(1);
    let period = Duration::from_nanos(1_000_000_000 / u64::from(frequency));
    let took = recording.duration.as_secs_f64();
    let stopped_early =
        recording.stop_reason != StopReason::TargetExited && recording.duration < period * 2;
    let why = match recording.coverage.cpu_time {
        _ if stopped_early => {
            format!("recording was stopped after {took:.3} s, before a sample was due")
        }
        Some(cpu) if cpu < period => format!(
            "in {took:.2} s the target used {:.1} ms of CPU time, less than one sample \
             period ({:.1} ms at {frequency} Hz)",
            cpu.as_secs_f64() * 1e3,
            period.as_secs_f64() * 1e3,
        ),
        Some(cpu) => format!(
            "the target used {:.2} s of CPU time in {took:.2} s, but no sample of it was \
             taken (see above)",
            cpu.as_secs_f64()
        ),
        None => format!("in {took:.2} s the target was not on a CPU when a sample was due"),
    };
    eprintln!("stoke: warning: no samples were recorded: {why}; nothing written");
}

/// Samples compared with the CPU time the target used, when they differ by
/// more than 10 %: how many were expected and why they are missing.
fn coverage_line(recording: &Recording, context: Context) -> Option<String> {
    let coverage = &recording.coverage;
    let cpu = coverage.cpu_time?;
    let frequency = recording.profile.meta.frequency;
    if context.wall || frequency == 0 {
        return None;
    }
    let expected = cpu.as_secs_f64() * f64::from(frequency);
    let samples = recording.stats.samples as f64;
    // A handful of samples is within the clock's granularity.
    if expected < 20.0 || (samples - expected).abs() <= expected * COVERAGE_TOLERANCE {
        return None;
    }
    let head = format!(
        "{} samples where {} were expected ({:.2} s of CPU time at {frequency} Hz, {:.0}%)",
        thousands(recording.stats.samples),
        thousands(expected.round() as u64),
        cpu.as_secs_f64(),
        samples * 100.0 / expected,
    );
    let why = if samples > expected {
        match coverage.backend {
            Backend::Ptrace => "ptrace counts a thread that waits for a CPU as running".to_string(),
            _ => "the kernel sampled faster than asked".to_string(),
        }
    } else {
        let mut causes = Vec::new();
        let user_only = matches!(coverage.kernel, KernelTime::NotSampled { .. });
        if user_only {
            causes.push("time in the kernel is not sampled".to_string());
        }
        match coverage.backend {
            Backend::Ptrace => {
                causes.push(format!(
                    "ptrace interrupts one thread at a time, and {} samples were missed \
                     because a thread did not stop in time",
                    thousands(coverage.missed)
                ));
                causes.push(match &recording.fallback {
                    Some(_) => "perf events sample every thread where they are allowed \
                                (see `stoke doctor`)"
                        .to_string(),
                    None => "--backend perf samples every thread".to_string(),
                });
            }
            _ if user_only => {}
            _ => {
                let period_ms = 1e3 / f64::from(frequency);
                causes.push(format!(
                    "threads that run less than a sample period ({period_ms:.1} ms) \
                     before exiting are never sampled"
                ));
                if recording.stats.lost > 0 {
                    causes.push(format!(
                        "{} records were lost",
                        thousands(recording.stats.lost)
                    ));
                }
            }
        }
        causes.join("; ")
    };
    Some(format!("{head}: {why}"))
}

/// Truncated stacks as a share of samples, by cause, with the fix for each
/// cause that has one. Stack copies that hit `--stack-size` but still
/// unwound completely changed nothing and are not mentioned.
fn truncation_line(stats: &StackStats, context: Context) -> Option<String> {
    let truncated: u64 = stats.truncated.iter().map(|(_, n)| n).sum();
    if truncated == 0 {
        return None;
    }
    let causes: Vec<String> = stats
        .truncated
        .iter()
        .take(3)
        .map(|(reason, n)| {
            let frame_pointers = ": try --unwind fp (for code built with frame pointers)";
            let fix = match reason {
                TruncationReason::StackCopyExhausted => match context.stack_size {
                    Some(size) if size < MAX_STACK_SIZE => {
                        format!(": try --stack-size {MAX_STACK_SIZE} or --unwind fp")
                    }
                    _ => frame_pointers.to_string(),
                },
                TruncationReason::NoModule | TruncationReason::NoUnwindInfo => {
                    frame_pointers.to_string()
                }
                _ => String::new(),
            };
            format!(
                "{reason} in {:.1}% of samples{fix}",
                percent(*n, stats.samples)
            )
        })
        .collect();
    Some(format!(
        "{:.1}% of samples have truncated stacks: {}",
        percent(truncated, stats.samples),
        causes.join("; ")
    ))
}

/// What `stoke doctor` would explain: perf events refused in favour of
/// ptrace, and modules without symbols that carry many samples. (Kernel
/// time not sampled has its own line.)
fn doctor_hints(recording: &Recording) -> Vec<String> {
    let mut hints = Vec::new();
    if let Some(reason) = &recording.fallback {
        hints.push(format!(
            "sampled with ptrace because perf events were refused ({reason})"
        ));
    }
    let profile = &recording.profile;
    let total = profile.total_samples();
    let mut unnamed: HashMap<&str, u64> = HashMap::new();
    // Unnamed JIT code, by process name.
    let mut jit: HashMap<&str, u64> = HashMap::new();
    for (thread, stack, count) in profile.samples() {
        let frame = profile.frame(profile.stack_frame(stack));
        if frame.kind == FrameKind::Jit && frame.name == "[unknown]" {
            let process = profile.thread(thread).process_name.as_deref();
            *jit.entry(process.unwrap_or("")).or_default() += count;
        }
        if let Some(module) = frame.module.as_deref() {
            let prefix_len = module.len() + 3;
            if frame.name.len() > prefix_len
                && frame.name.starts_with(module)
                && frame.name[module.len()..].starts_with("+0x")
            {
                *unnamed.entry(module).or_default() += count;
            }
        }
    }
    for (process, n) in worth_a_hint(jit, total) {
        hints.push(format!(
            "{:.1}% of samples are in JIT code{} that has no names (no /tmp/perf-PID.map): {}",
            percent(n, total),
            if process.is_empty() {
                String::new()
            } else {
                format!(" of {process}")
            },
            jit_fix(process)
        ));
    }
    for (module, n) in worth_a_hint(unnamed, total) {
        hints.push(format!(
            "{:.1}% of samples are in {module}, which has no symbols for them",
            percent(n, total)
        ));
    }
    hints
}

/// The entries of `counts` with at least [`UNNAMED_MODULE_SHARE`] of
/// `total` samples, most first (then by name).
fn worth_a_hint(counts: HashMap<&str, u64>, total: u64) -> Vec<(&str, u64)> {
    let mut kept: Vec<(&str, u64)> = counts
        .into_iter()
        .filter(|(_, n)| total > 0 && *n as f64 >= total as f64 * UNNAMED_MODULE_SHARE)
        .collect();
    kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    kept
}

/// How the runtime called `process` (its name, with `-PID` under
/// `--per-process`) is made to write a perf map.
fn jit_fix(process: &str) -> &'static str {
    let is = |runtime: &str| process.starts_with(runtime);
    if is("node") {
        "start node with --perf-basic-prof (and --interpreted-frames-native-stack)"
    } else if is("deno") {
        "start deno with --v8-flags=--perf-basic-prof"
    } else if is("java") {
        "start java with -XX:+PreserveFramePointer and a perf map agent (or -XX:+DumpPerfMapAtExit)"
    } else if is("python") {
        "start Python 3.12+ with -X perf"
    } else if is("dotnet") {
        "set DOTNET_PerfMapEnabled=1"
    } else {
        "have the runtime write a perf map"
    }
}

/// What became of a launched command that had not exited by itself when
/// recording stopped; `None` when it exited by itself or stoke attached.
fn command_fate(recording: &Recording) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let pid = recording.command_pid?;
    if recording.stop_reason == StopReason::TargetExited {
        return None;
    }
    let how = match recording.stop_reason {
        StopReason::Duration => "at the end of --duration, stoke sent the command SIGTERM",
        _ => "on the stop signal, the command was asked to stop",
    };
    Some(match recording.exit_status {
        None => format!("{how}, but it is still running (pid {pid}); it runs on unobserved"),
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("{how}; it exited with status {code} (pid {pid})"),
            (_, Some(signal)) => format!("{how}; it ended by {} (pid {pid})", signal_name(signal)),
            _ => format!("{how}; it ended (pid {pid})"),
        },
    })
}

/// `SIGTERM` for 15; `signal N` for a number nix does not know.
fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string())
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
