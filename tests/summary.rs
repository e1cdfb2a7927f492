//! The record summary tells the truth about the numbers: samples compared
//! with the CPU time the target used, ptrace misses apart from losses, stack
//! truncation as a share of samples with its fix, why a recording is empty,
//! and when `stoke doctor` can explain what got in the way.

mod common;

use common::{c_fixture, c_fixture_with_flags, record_command, run, stoke_record, Build, HZ};

/// The summary lines (`stoke: …`) of a run's stderr.
fn summary_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("stoke: "))
        .collect()
}

#[test]
fn short_lived_threads_that_escape_sampling_are_reported() {
    // Per-task events (what an unprivileged user gets; root gets per-CPU
    // events, which sample these threads: tests/system.rs).
    let fixture = c_fixture("short_threads", Build::FramePointers);
    let dir = tempfile::tempdir().expect("temporary folder");
    let outcome = run(stoke_record(dir.path())
        .args(["-F", HZ, "--per-task-events", "-o", "out.folded", "--"])
        .arg(&fixture)
        .arg("1"));
    // No sample at all is a possible outcome (nothing is then written): the
    // summary must explain the shortfall either way.
    assert!(outcome.status.success(), "{outcome}");
    let stderr = &outcome.stderr;
    let line = summary_lines(stderr)
        .into_iter()
        .find(|l| l.contains("were expected"))
        .unwrap_or_else(|| panic!("no line compares samples with CPU time\n{stderr}"));
    // Well under half the expected samples arrive: threads of 0.5 ms never
    // reach a 1 ms sample period.
    assert!(line.contains("CPU time at 999 Hz"), "{line}");
    assert!(
        line.contains("threads that run less than a sample period"),
        "{line}"
    );
}

#[test]
fn ptrace_misses_are_reported_apart_from_losses() {
    // Six busy threads on a machine with fewer CPUs: ptrace interrupts one
    // thread at a time and cannot take every sample due.
    let fixture = c_fixture("threads", Build::FramePointers);
    let recording = record_command(
        &["--backend", "ptrace", "-d", "2"],
        &[fixture.to_str().unwrap(), "6"],
    );
    let stderr = &recording.outcome.stderr;
    let line = summary_lines(stderr)
        .into_iter()
        .find(|l| l.contains("were expected"))
        .unwrap_or_else(|| panic!("no line compares samples with CPU time\n{stderr}"));
    assert!(
        line.contains("ptrace interrupts one thread at a time"),
        "{line}"
    );
    assert!(line.contains("--backend perf"), "{line}");
}

#[test]
fn stack_size_messages_only_report_what_changed_the_result() {
    let fixture = c_fixture("recurse", Build::NoFramePointers);
    // 100 frames do not fit in 1 KiB: stacks are truncated.
    let recording = record_command(&["--stack-size", "1024"], &[fixture.to_str().unwrap(), "1"]);
    let stderr = &recording.outcome.stderr;
    assert!(
        !stderr.contains("stack copies hit"),
        "copies at the limit are not a result\n{stderr}"
    );
    let line = summary_lines(stderr)
        .into_iter()
        .find(|l| l.contains("truncated stacks"))
        .unwrap_or_else(|| panic!("no truncation line\n{stderr}"));
    assert!(line.contains("of samples have truncated stacks"), "{line}");
    assert!(line.contains("stack copy too small in"), "{line}");
    assert!(line.contains("try --stack-size 65528"), "{line}");
}

#[test]
fn a_short_recording_says_why_it_is_empty() {
    // Attached to a sleeper for 10 ms: stopped before any sample was due.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pid = sleeper.id().to_string();
    let outcome = run(stoke_record(dir.path()).args(["-p", &pid, "-d", "0.01", "-o", "out.svg"]));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    outcome.assert_success();
    let warning = outcome
        .stderr
        .lines()
        .find(|l| l.starts_with("stoke: warning: no samples were recorded"))
        .unwrap_or_else(|| panic!("no empty-recording warning\n{outcome}"));
    assert!(!warning.contains("not on a CPU"), "{warning}");
    assert!(
        // (A sleeper just started may still be loading: a fraction of a ms.)
        warning.contains(" ms of CPU time, less than one sample period"),
        "{warning}"
    );
}

#[test]
fn a_module_without_symbols_points_at_doctor() {
    // Stripped: the hot loop is an address in the executable, not a name.
    let fixture =
        c_fixture_with_flags("recurse", Build::FramePointers, "recurse_stripped", &["-s"]);
    let recording = record_command(&[], &[fixture.to_str().unwrap(), "1"]);
    let stderr = &recording.outcome.stderr;
    assert!(
        summary_lines(stderr).iter().any(|l| l
            .contains("are in recurse_stripped, which has no symbols")
            && l.ends_with("see `stoke doctor`")),
        "{stderr}"
    );
}

#[test]
fn a_sigint_sent_to_stoke_alone_reaches_the_command_as_sigint() {
    // `kill -INT <stoke>` from a script: no terminal delivered it to the
    // command, so stoke passes it on (the command does not get SIGTERM).
    let dir = tempfile::tempdir().unwrap();
    let mut stoke = common::RunningStoke::spawn(stoke_record(dir.path()).args([
        "-o",
        "out.folded",
        "--",
        "sleep",
        "30",
    ]));
    stoke.wait_for_stderr_line("stoke: recording pid");
    std::thread::sleep(std::time::Duration::from_millis(200));
    stoke.signal(nix::sys::signal::Signal::SIGINT);
    let outcome = stoke.finish();
    outcome.assert_no_panic();
    assert!(
        outcome
            .stderr
            .lines()
            .any(|l| l.starts_with("stoke: on the stop signal") && l.contains("ended by SIGINT")),
        "{outcome}"
    );
}
