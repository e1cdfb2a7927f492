//! Off-CPU and wall-clock profiles on perf events.
//!
//! The `offcpu` fixture runs three threads for the whole run: its main
//! thread (`offcpu`, called busy below) spins,
//! `reader` blocks in read(2) on a pipe (woken every 100 ms), `sleeper`
//! sleeps in 20 ms naps. In wall-clock mode each thread's share of the
//! profile is its share of the threads' wall time, a third each: asserted
//! within 5 points. The machine may be loaded, so where the busy thread's
//! time goes (on a CPU or waiting for one) is not asserted, only that it
//! is on-CPU or `[runnable]`, never blocked.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{
    c_fixture, c_fixture_named, record_command, run, stoke_path, stoke_record, Build, Folded,
    LiveFixture, HZ,
};

/// Time per thread, by the `name-tid` frame under the process root.
fn share_of_thread(folded: &Folded, thread: &str) -> f64 {
    folded.share(|s| s.frames.get(1).is_some_and(|f| f.starts_with(thread)))
}

fn of_thread(folded: &Folded, thread: &str) -> Folded {
    folded.filter(|s| {
        s.frames
            .get(1)
            .is_some_and(|f| f.starts_with(&format!("{thread}-")))
    })
}

fn fixture() -> std::path::PathBuf {
    c_fixture("offcpu", Build::FramePointers)
}

fn assert_perf_backend(stderr: &str) {
    assert!(
        stderr.contains("+ context-switches") || stderr.contains("with context-switches"),
        "the recording line does not say perf's context-switch events are used:\n{stderr}"
    );
    assert!(!stderr.contains("sampling with ptrace"), "{stderr}");
}

#[test]
fn wall_mode_gives_each_thread_its_wall_time_and_names_the_waits() {
    let fixture = fixture();
    let recording = record_command(&["--mode", "wall", "--per-thread"], &[&fixture]);
    let fixture_arg = recording.outcome.stderr.clone();
    assert_perf_backend(&fixture_arg);
    let folded = recording.folded;
    assert!(folded.total() >= 1000, "only {} samples", folded.total());
    for thread in ["offcpu-", "reader-", "sleeper-"] {
        let share = share_of_thread(&folded, thread);
        assert!(
            (share - 1.0 / 3.0).abs() <= 0.05,
            "{thread} has {:.1} % of the wall-clock profile, not a third\n{folded:?}",
            share * 100.0
        );
    }
    // With kernel stacks (root here) the kernel function that blocked is
    // named after the system call: `[blocked: read in pipe_read]`.
    let kernel = folded.count(|s| s.frames.iter().any(|f| f.ends_with("_[k]"))) > 0;
    if !kernel {
        eprintln!("no kernel frames in the profile: blocking kernel functions not checked");
    }
    let reader = of_thread(&folded, "reader");
    let read = reader.share(|s| {
        s.contains("wait_for_pipe")
            && if kernel {
                // anon_pipe_read on 6.x kernels that split pipe_read.
                s.frames
                    .iter()
                    .any(|f| f.starts_with("[blocked: read in ") && f.ends_with("pipe_read]"))
            } else {
                s.contains("[blocked: read]")
            }
    });
    assert!(
        read >= 0.9,
        "reader: {:.1} % in read (in pipe_read with kernel frames) under wait_for_pipe\n{reader:?}",
        read * 100.0
    );
    let sleeper = of_thread(&folded, "sleeper");
    let slept = sleeper.share(|s| {
        s.contains("nap")
            && if kernel {
                s.frames.iter().any(|f| {
                    f.starts_with("[blocked: ") && f.ends_with("nanosleep in do_nanosleep]")
                })
            } else {
                s.contains("[blocked: clock_nanosleep]") || s.contains("[blocked: nanosleep]")
            }
    });
    assert!(
        slept >= 0.9,
        "sleeper: {:.1} % in nanosleep (in do_nanosleep with kernel frames)\n{sleeper:?}",
        slept * 100.0
    );
    let busy = of_thread(&folded, "offcpu");
    let blocked = busy.share(|s| s.contains("[off-cpu]") && !s.contains("[runnable]"));
    assert!(
        blocked <= 0.05,
        "busy blocked {:.1} %\n{busy:?}",
        blocked * 100.0
    );
    // The summary splits each thread's time.
    assert!(
        recording
            .outcome
            .stderr
            .contains("time per thread:   on-CPU    blocked   runnable"),
        "{}",
        recording.outcome.stderr
    );
}

#[test]
fn off_cpu_mode_leaves_running_time_out() {
    let fixture = fixture();
    let pprof_dir = tempfile::tempdir().unwrap();
    let pprof = pprof_dir.path().join("x.pb.gz");
    let recording = record_command(
        &[
            "--mode",
            "off-cpu",
            "--per-thread",
            "-o",
            pprof.to_str().unwrap(),
        ],
        &[&fixture],
    );
    assert_perf_backend(&recording.outcome.stderr);
    // pprof: the time is an `off-cpu` sample type in nanoseconds.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&pprof).unwrap()),
        &mut bytes,
    )
    .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("off-cpu") && text.contains("nanoseconds"),
        "{text:?}"
    );
    let folded = recording.folded;
    let on_cpu = folded.share(|s| !s.contains("[off-cpu]"));
    assert_eq!(
        on_cpu, 0.0,
        "on-CPU stacks in an off-CPU profile\n{folded:?}"
    );
    // What is left of the busy thread is time it waited for a CPU.
    let busy = of_thread(&folded, "offcpu");
    let busy_blocked = busy.count(|s| !s.contains("[runnable]"));
    assert!(
        busy_blocked as f64 <= folded.total() as f64 * 0.02,
        "busy blocked for {busy_blocked} of {} samples\n{busy:?}",
        folded.total()
    );
    for thread in ["reader", "sleeper"] {
        let t = of_thread(&folded, thread);
        assert!(t.total() > 0, "{thread} is missing\n{folded:?}");
    }
}

#[test]
fn threads_outnumbering_the_cpus_wait_runnable() {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners = (2 * cpus).to_string();
    let recording = record_command(
        &["--mode", "wall", "--per-thread"],
        &[fixture().to_str().unwrap(), "1", &spinners],
    );
    let spinners = of_thread(&recording.folded, "spinner");
    let runnable = spinners.share(|s| s.contains("[runnable]"));
    // 2×CPUs spinners and a busy thread on CPUs threads: at least half
    // of their time is spent waiting for one, charged to the code they
    // were preempted in (`burn`, the leaf; its callers may be cut short on
    // a loaded machine, if the fixture exits before stoke opens it).
    assert!(
        runnable >= 0.4,
        "spinners waited {:.1} % runnable\n{spinners:?}",
        runnable * 100.0
    );
    assert!(
        spinners.count(|s| s.contains("burn") && s.contains("[runnable]")) > 0,
        "{spinners:?}"
    );
}

#[test]
fn attaching_shows_threads_blocked_since_before_the_attach() {
    let mut cmd = Command::new(fixture());
    cmd.arg("60");
    let live = LiveFixture::spawn(cmd);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.folded");
    let outcome = run(stoke_record(dir.path())
        .args([
            "-F",
            HZ,
            "--mode",
            "wall",
            "--per-thread",
            "-d",
            "1.5",
            "-o",
        ])
        .arg(&out)
        .args(["-p", &live.pid().to_string()]));
    outcome.assert_success();
    assert_perf_backend(&outcome.stderr);
    let folded = Folded::read(&out);
    for thread in ["offcpu-", "reader-", "sleeper-"] {
        let share = share_of_thread(&folded, thread);
        assert!(
            (share - 1.0 / 3.0).abs() <= 0.05,
            "{thread} has {:.1} % of the wall-clock profile\n{folded:?}",
            share * 100.0
        );
    }
    let reader = of_thread(&folded, "reader");
    assert!(
        reader.count(|s| s.frames.iter().any(|f| f.starts_with("[blocked: read"))) > 0,
        "{reader:?}"
    );
    common::assert_unharmed(live.pid());
}

#[test]
fn unprivileged_wall_mode_falls_back_to_ptrace_and_says_why() {
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("skipped: not root: cannot run stoke as nobody");
        return;
    }
    let paranoid: Option<i32> = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    if paranoid.is_none_or(|p| p < 2) {
        eprintln!("skipped: perf_event_paranoid is below 2: nobody gets context-switch samples");
        return;
    }
    if !Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: setpriv is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path, m| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(dir.path(), 0o777);
    let (stoke, fixture_copy) = (dir.path().join("stoke"), dir.path().join("offcpu"));
    std::fs::copy(stoke_path(), &stoke).unwrap();
    std::fs::copy(fixture(), &fixture_copy).unwrap();
    mode(&stoke, 0o755);
    mode(&fixture_copy, 0o755);
    let outcome = run(Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&stoke)
        .args([
            "record",
            "--mode",
            "wall",
            "-o",
            "out.folded",
            "--",
            "./offcpu",
            "0.5",
        ])
        .current_dir(dir.path()));
    outcome.assert_success();
    let why: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.contains("sampling with ptrace"))
        .collect();
    assert_eq!(why.len(), 1, "{outcome}");
    assert!(why[0].contains("perf_event_paranoid"), "{outcome}");
    let folded = Folded::read(&dir.path().join("out.folded"));
    assert!(folded.count(|s| s.contains("[off-cpu]")) > 0, "{folded:?}");
}

/// Why per-CPU events (`-a`) cannot be used here, if they cannot.
fn per_cpu_refused() -> Option<&'static str> {
    let root = nix::unistd::geteuid().as_raw() == 0;
    let paranoid: Option<i32> = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    match (root, paranoid) {
        (true, _) | (_, Some(..=0)) => None,
        _ => Some("per-CPU events need root or perf_event_paranoid <= 0"),
    }
}

/// `stoke record -a --mode MODE -d 2 --per-thread` (DWARF unwinding, so
/// that the caller of a libc wrapper without a frame pointer is seen)
/// while the `offcpu` fixture, built as `name`, runs; its stacks.
fn record_all_cpus(mode: &str, name: &str) -> Folded {
    let mut cmd = Command::new(c_fixture_named("offcpu", Build::FramePointers, name));
    cmd.arg("60");
    let live = LiveFixture::spawn(cmd);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.folded");
    let outcome = run(stoke_record(dir.path())
        .args(["-F", HZ, "-a", "--mode", mode, "--unwind", "auto"])
        .args(["--per-thread", "-d", "2", "-o"])
        .arg(&out));
    outcome.assert_success();
    assert_perf_backend(&outcome.stderr);
    common::assert_unharmed(live.pid());
    Folded::read(&out).of_process(name)
}

#[test]
fn all_cpus_wall_mode_names_each_threads_waits() {
    if let Some(why) = per_cpu_refused() {
        eprintln!("skipped: {why}");
        return;
    }
    let folded = record_all_cpus("wall", "offcpu_a_wall");
    assert!(
        folded.total() >= 1000,
        "only {} samples\n{folded:?}",
        folded.total()
    );
    // Whatever a wait's stack, each thread's time is its wall time.
    for thread in ["offcpu_a_wall-", "reader-", "sleeper-"] {
        let share = share_of_thread(&folded, thread);
        assert!(
            (share - 1.0 / 3.0).abs() <= 0.05,
            "{thread} has {:.1} % of the process's wall-clock profile\n{folded:?}",
            share * 100.0
        );
    }
    // Per CPU, the kernel samples every Nth switch-out of all the CPU's
    // tasks: on a loaded machine the reader's ten switch-outs a second can
    // all fall between samples, and its time is then timed but stackless
    // (`[blocked: unknown]`). Its time is blocked either way; where a
    // stack was sampled, the wait is named under `wait_for_pipe`.
    for (thread, caller, call) in [
        ("reader", "wait_for_pipe", "read"),
        ("sleeper", "nap", "nanosleep"),
    ] {
        let t = of_thread(&folded, thread);
        let blocked = t.share(|s| s.frames.iter().any(|f| f.starts_with("[blocked: ")));
        assert!(
            blocked >= 0.95,
            "{thread}: {:.1} % blocked\n{t:?}",
            blocked * 100.0
        );
        let sampled = t.filter(|s| s.contains(caller));
        if sampled.total() == 0 {
            eprintln!(
                "{thread}: no switch-out sampled (every Nth per CPU): its waits' names not checked"
            );
            continue;
        }
        let named = t.share(|s| {
            s.contains(caller)
                && s.frames
                    .iter()
                    .any(|f| f.starts_with("[blocked: ") && f.contains(call))
        });
        assert!(
            named >= 0.8,
            "{thread}: {:.1} % named under {caller}\n{t:?}",
            named * 100.0
        );
    }
    let busy = of_thread(&folded, "offcpu_a_wall");
    let blocked = busy.share(|s| s.contains("[off-cpu]") && !s.contains("[runnable]"));
    assert!(
        blocked <= 0.05,
        "busy blocked {:.1} %\n{busy:?}",
        blocked * 100.0
    );
}

#[test]
fn all_cpus_off_cpu_mode_has_no_running_stacks() {
    if let Some(why) = per_cpu_refused() {
        eprintln!("skipped: {why}");
        return;
    }
    let folded = record_all_cpus("off-cpu", "offcpu_a_off");
    let on_cpu = folded.share(|s| !s.contains("[off-cpu]"));
    assert_eq!(
        on_cpu, 0.0,
        "on-CPU stacks in an off-CPU profile\n{folded:?}"
    );
    for thread in ["reader", "sleeper"] {
        let t = of_thread(&folded, thread);
        assert!(t.total() > 0, "{thread} is missing\n{folded:?}");
    }
    let busy = of_thread(&folded, "offcpu_a_off");
    let busy_blocked = busy.count(|s| !s.contains("[runnable]"));
    assert!(
        busy_blocked as f64 <= folded.total() as f64 * 0.02,
        "busy blocked for {busy_blocked} of {} samples\n{busy:?}",
        folded.total()
    );
}
