//! End-to-end tests of `stoke record` on fixtures built with frame pointers.
//!
//! Shares are compared with the truth the fixtures measure themselves. With
//! n ≥ 1,500 samples and a share p ≈ 0.75, the binomial standard deviation is
//! √(p(1−p)/n) ≤ 1.1 points, so a 5-point tolerance is more than 4σ: a
//! failure means a wrong attribution, not bad luck. Nothing asserts on
//! wall-clock time.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::{
    assert_unharmed, c_fixture, c_fixture_named, record_command, run, stoke_record, thread_names,
    wait_for_cpu_time, Build, Folded, LiveFixture, MeasuredSplit, Recording, RunningStoke, HZ,
};
use nix::sys::signal::Signal;

/// Fewest samples a share assertion is made on (see the module doc).
const MIN_SAMPLES: u64 = 1500;

/// `cpu_split` (2.5 s of CPU, 75/25) recorded once and shared by the tests
/// that only read the result.
fn split_recording() -> &'static Recording {
    static RECORDING: OnceLock<Recording> = OnceLock::new();
    RECORDING.get_or_init(|| record_command(&[], &[c_fixture("cpu_split", Build::FramePointers)]))
}

#[test]
fn hot_share_matches_the_split_the_program_measured() {
    let recording = split_recording();
    let truth = MeasuredSplit::from_output(&recording.outcome.stdout);
    let folded = recording.folded.of_process("cpu_split");
    let (hot, samples) = folded.split("hot", "cold");
    assert!(
        samples >= MIN_SAMPLES,
        "only {samples} samples in hot or cold"
    );
    assert!(
        (hot - truth.hot).abs() <= 0.05,
        "hot has {:.1} % of hot+cold samples, the program measured {:.1} % ({samples} samples)",
        hot * 100.0,
        truth.hot * 100.0
    );
}

#[test]
fn samples_of_the_program_reach_main() {
    let folded = split_recording().folded.of_process("cpu_split");
    assert!(
        folded.total() >= MIN_SAMPLES,
        "only {} samples",
        folded.total()
    );
    let share = folded.share_containing("main");
    assert!(
        share >= 0.95,
        "only {:.1} % of samples reach main",
        share * 100.0
    );
}

#[test]
fn folded_lines_are_sorted_and_rooted_at_the_process_name() {
    let folded = &split_recording().folded;
    let keys: Vec<String> = folded.stacks.iter().map(|s| s.frames.join(";")).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "lines not sorted");
    assert_eq!(
        folded.roots().into_iter().collect::<Vec<_>>(),
        ["cpu_split"]
    );
}

#[test]
fn wrapped_command_output_passes_through_and_stoke_prints_only_to_stderr() {
    let outcome = &split_recording().outcome;
    let stdout: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(
        stdout.len(),
        1,
        "stdout is not just the fixture's line\n{outcome}"
    );
    assert!(stdout[0].starts_with("split "), "{outcome}");
}

#[test]
fn summary_on_stderr_counts_samples_and_names_the_hot_function() {
    let stderr = &split_recording().outcome.stderr;
    assert!(stderr.contains("samples"), "no sample count in:\n{stderr}");
    assert!(
        stderr.contains("hot"),
        "hot not among top functions in:\n{stderr}"
    );
}

#[test]
fn folded_output_is_accepted_by_inferno_and_read_folded() {
    let recording = split_recording();
    let text = std::fs::read_to_string(recording.folded_path()).expect("folded output");

    let mut svg = Vec::new();
    let mut options = inferno::flamegraph::Options::default();
    inferno::flamegraph::from_lines(&mut options, text.lines(), &mut svg)
        .expect("inferno renders stoke's folded output");
    assert!(String::from_utf8_lossy(&svg).contains("<svg"));

    let profile = stoke_profile::read_folded(&mut text.as_bytes(), "out.folded")
        .expect("read_folded accepts stoke's folded output");
    assert_eq!(profile.total_samples(), recording.folded.total());
}

#[test]
fn svg_output_has_the_title_and_the_hot_function() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("profile.svg");
    let title = "stoke end-to-end flame";
    let outcome = run(stoke_record(dir.path())
        .args(["-F", HZ, "--title", title, "-o"])
        .arg(&svg)
        .arg("--")
        .arg(c_fixture("cpu_split", Build::FramePointers))
        .arg("0.5"));
    outcome.assert_success();
    let svg = std::fs::read_to_string(&svg).expect("svg written");
    assert!(svg.contains("<svg"), "not an SVG");
    assert!(svg.contains(title), "title missing");
    assert!(svg.contains("hot"), "hot function missing");
}

#[test]
fn several_outputs_are_written_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (folded, svg) = (dir.path().join("a.folded"), dir.path().join("b.svg"));
    let outcome = run(stoke_record(dir.path())
        .args(["-F", HZ, "-o"])
        .arg(&folded)
        .arg("-o")
        .arg(&svg)
        .arg("--")
        .arg(c_fixture("cpu_split", Build::FramePointers))
        .arg("0.5"));
    outcome.assert_success();
    assert!(Folded::read(&folded).share_containing("hot") > 0.0);
    assert!(std::fs::read_to_string(&svg)
        .expect("svg written")
        .contains("<svg"));
}

#[test]
fn dash_output_prints_folded_stacks_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(stoke_record(dir.path())
        .args(["-F", HZ, "-o", "-", "--"])
        .arg(c_fixture("cpu_split", Build::FramePointers))
        .arg("0.5"));
    outcome.assert_success();
    // The fixture's own `split …` line is on the same stdout.
    let folded = Folded::parse(
        &outcome
            .stdout
            .lines()
            .filter(|l| !l.starts_with("split "))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert!(folded.share_containing("hot") > 0.0, "{outcome}");
}

#[test]
fn without_output_option_an_svg_is_written_in_the_current_folder() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(stoke_record(dir.path())
        .args(["-F", HZ, "--"])
        .arg(c_fixture("cpu_split", Build::FramePointers))
        .arg("0.5"));
    outcome.assert_success();
    let written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let [name] = written.as_slice() else {
        panic!("expected one file, found {written:?}");
    };
    assert!(
        name.starts_with("stoke-") && name.ends_with(".svg"),
        "{name}"
    );
    assert!(
        outcome.stderr.contains(name.as_str()),
        "stderr does not say where\n{outcome}"
    );
}

#[test]
fn no_kernel_option_leaves_no_kernel_frames() {
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let recording = record_command(&["--no-kernel"], &[fixture.as_os_str(), "0.5".as_ref()]);
    assert!(recording.folded.total() > 0);
    let kernel = recording
        .folded
        .count(|s| s.frames.iter().any(|f| f.ends_with("_[k]")));
    assert_eq!(kernel, 0, "samples with kernel frames");
}

#[test]
fn each_process_of_a_command_is_a_root_frame_under_its_own_name() {
    let one = c_fixture_named("cpu_split", Build::FramePointers, "split_one");
    let two = c_fixture_named("cpu_split", Build::FramePointers, "split_two");
    let script = format!("{} 0.5; {} 0.5", quoted(&one), quoted(&two));
    let recording = record_command(&[], &["sh", "-c", &script]);
    for name in ["split_one", "split_two"] {
        let process = recording.folded.of_process(name);
        assert!(
            process.share_containing("hot") > 0.0,
            "no samples in hot under root {name}; roots: {:?}",
            recording.folded.roots()
        );
    }
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn wrapped_command_exit_status_becomes_stokes() {
    // CPU work first, so the recording has samples and only the exit status
    // is at stake.
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let script = format!("{} 0.3; exit 3", quoted(&fixture));
    let recording_dir = tempfile::tempdir().unwrap();
    let outcome = run(stoke_record(recording_dir.path()).args([
        "-F",
        HZ,
        "-o",
        "out.folded",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    outcome.assert_no_panic();
    assert!(
        recording_dir.path().join("out.folded").exists(),
        "no output\n{outcome}"
    );
    assert_eq!(outcome.status.code(), Some(3), "{outcome}");
}

/// `threads` with 3 workers, running until dropped.
fn threads_fixture() -> LiveFixture {
    LiveFixture::spawn(std::process::Command::new(c_fixture(
        "threads",
        Build::FramePointers,
    )))
}

const WORKERS: [(&str, &str); 3] = [
    ("worker-1", "spin_a"),
    ("worker-2", "spin_b"),
    ("worker-3", "spin_c"),
];

#[test]
fn attach_samples_every_busy_thread_and_leaves_the_target_running() {
    let target = threads_fixture();
    let pid = target.pid();
    let names = thread_names(pid);
    let recording = record_command(
        &["-p", &pid.to_string(), "-d", "2", "--per-thread"],
        &[] as &[&str],
    );
    let folded = &recording.folded;

    assert_eq!(folded.roots().into_iter().collect::<Vec<_>>(), ["threads"]);
    // `-d 2` is wall-clock time, so the sample count depends on the CPU the
    // target gets: ~4,000 on 2 idle cores, ~750 at load average 10. The 3
    // busy threads share that CPU fairly, ~33 % each; at n ≥ 300 the
    // binomial σ is ≤ 2.7 points, so 15 % is more than 6σ below.
    assert!(folded.total() >= 300, "only {} samples", folded.total());
    for (worker, spin) in WORKERS {
        let tid = names
            .iter()
            .find(|(_, name)| name == worker)
            .map(|(tid, _)| *tid)
            .unwrap_or_else(|| panic!("no thread {worker} in {names:?}"));
        let frame = format!("{worker}-{tid}");
        let of_thread = folded.filter(|s| s.frames.get(1) == Some(&frame));
        let share = of_thread.total() as f64 / folded.total() as f64;
        assert!(
            share >= 0.15,
            "thread {frame} has {:.1} % of samples; thread frames: {:?}",
            share * 100.0,
            folded.frames_at(1)
        );
        let in_spin = folded.share_containing(spin);
        assert!(
            in_spin >= 0.15,
            "{spin} has {:.1} % of samples",
            in_spin * 100.0
        );
        let own = of_thread.share_containing(spin);
        assert!(
            own >= 0.9,
            "only {:.1} % of {frame}'s samples in {spin}",
            own * 100.0
        );
    }
    assert_unharmed(pid);
}

/// Attaches without `-d`, waits until sampling has begun and the target has
/// used CPU time, then stops stoke with `signal`.
fn stop_attached_recording_with(signal: Signal) {
    let target = threads_fixture();
    let pid = target.pid();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.folded");
    let mut stoke = RunningStoke::spawn(
        stoke_record(dir.path())
            .args(["-F", HZ, "-p", &pid.to_string(), "-o"])
            .arg(&out),
    );
    stoke.wait_for_stderr_line("stoke: recording");
    wait_for_cpu_time(pid, std::time::Duration::from_millis(500));
    stoke.signal(signal);
    let outcome = stoke.finish();

    outcome.assert_success();
    assert!(
        Folded::read(&out).total() > 0,
        "no samples written\n{outcome}"
    );
    assert_unharmed(pid);
}

#[test]
fn sigint_stops_recording_writes_output_and_leaves_the_target_running() {
    stop_attached_recording_with(Signal::SIGINT);
}

#[test]
fn sigterm_stops_recording_writes_output_and_leaves_the_target_running() {
    stop_attached_recording_with(Signal::SIGTERM);
}

#[test]
fn a_failing_command_that_barely_ran_keeps_its_status() {
    // With or without a sample of its start-up, the command's status wins.
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(stoke_record(dir.path()).args(["-o", "out.svg", "--", "sh", "-c", "exit 3"]));
    outcome.assert_no_panic();
    assert_eq!(outcome.status.code(), Some(3), "{outcome}");
}

#[test]
fn a_recording_without_samples_warns_and_writes_nothing() {
    // A process asleep for the whole recording is never on a CPU.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pid = sleeper.id().to_string();
    let outcome = run(stoke_record(dir.path()).args(["-p", &pid, "-d", "0.5", "-o", "out.svg"]));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    outcome.assert_success();
    assert!(
        outcome.stderr.lines().any(
            |l| l.starts_with("stoke: warning: no samples were recorded")
                && l.contains("nothing written")
        ),
        "{outcome}"
    );
    assert!(
        !dir.path().join("out.svg").exists(),
        "an empty profile was written"
    );
}

#[test]
fn a_successful_command_without_samples_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(stoke_record(dir.path()).args(["-o", "out.svg", "--", "true"]));
    outcome.assert_success();
    if !dir.path().join("out.svg").exists() {
        assert!(
            outcome.stderr.contains("nothing written"),
            "no output and no warning\n{outcome}"
        );
    }
}

/// The pid in `stoke: recording pid N with …`.
fn recorded_pid(outcome: &common::Outcome) -> i32 {
    outcome
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("stoke: recording pid "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no `recording pid` line\n{outcome}"))
}

#[test]
fn the_end_of_the_duration_stops_a_launched_command_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // Were the loop left running, it would hold stoke's stderr open and this
    // run would never end.
    let outcome = run(stoke_record(dir.path()).args([
        "-d",
        "0.5",
        "-o",
        "out.folded",
        "--",
        "sh",
        "-c",
        "while :; do :; done",
    ]));
    outcome.assert_success();
    let pid = recorded_pid(&outcome);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the command still runs\n{outcome}"
    );
    assert!(
        outcome.stderr.lines().any(|l| l.contains("--duration")
            && l.contains("SIGTERM")
            && l.contains(&pid.to_string())),
        "the summary does not say the command was stopped\n{outcome}"
    );
    assert!(dir.path().join("out.folded").exists(), "{outcome}");
}

#[test]
fn a_command_that_ignores_sigterm_is_left_running_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(stoke_record(dir.path()).args([
        "-d",
        "0.3",
        "-o",
        "out.folded",
        "--",
        "sh",
        "-c",
        "trap '' TERM; exec >/dev/null 2>&1; while :; do :; done",
    ]));
    let pid = recorded_pid(&outcome);
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    outcome.assert_success();
    assert!(
        alive,
        "stoke killed a command that ignores SIGTERM\n{outcome}"
    );
    assert!(
        outcome
            .stderr
            .lines()
            .any(|l| l.contains("still running") && l.contains(&format!("pid {pid}"))),
        "the summary does not say the command runs on\n{outcome}"
    );
    assert!(dir.path().join("out.folded").exists(), "{outcome}");
}
