//! The summary printed on stderr after recording.

use std::time::Duration;

use stoke_profile::top_self;
use stoke_record::{Recording, StopReason};

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

/// Prints samples, lost, distinct stacks, truncation, top functions and outputs.
pub fn print(recording: &Recording, outputs: &[Output], write_time: Duration) {
    let stats = &recording.stats;
    let why = match recording.stop_reason {
        StopReason::TargetExited => "target exited",
        StopReason::Duration => "duration reached",
        StopReason::Requested => "stopped by signal",
    };
    let command = command_fate(recording);
    eprintln!(
        "stoke: {} samples, {} lost, {} distinct stacks in {:.2} s ({why})",
        thousands(stats.samples),
        thousands(stats.lost),
        thousands(recording.distinct_stacks as u64),
        recording.duration.as_secs_f64(),
    );
    if let Some(command) = command {
        eprintln!("stoke: {command}");
    }
    let truncated: u64 = stats.truncated.iter().map(|(_, n)| n).sum();
    if truncated > 0 {
        let causes: Vec<String> = stats
            .truncated
            .iter()
            .take(3)
            .map(|(reason, n)| format!("{reason} ({})", thousands(*n)))
            .collect();
        eprintln!(
            "stoke: {:.1}% of stacks truncated: {}",
            percent(truncated, stats.samples),
            causes.join(", ")
        );
    }
    if stats.stack_limit_hits > 0 {
        eprintln!(
            "stoke: {} stack copies hit the --stack-size limit",
            thousands(stats.stack_limit_hits)
        );
    }
    for warning in recording.warnings.iter() {
        eprintln!("stoke: warning: {warning}");
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
