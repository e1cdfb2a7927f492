//! End-to-end tests of the ptrace backend and wall-clock mode.
//!
//! Shares use the tolerance argument of `tests/record.rs`: with n ≥ 1,000
//! samples and p ≈ 0.75 the binomial σ is ≤ 1.4 points, so 5 points is
//! more than 3.5σ (and both backends are compared with the truth the
//! fixture measured in the same run, not with each other's luck).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{
    assert_stoke_error, assert_unharmed, c_fixture, record_command, run, stoke_record, Build,
    MeasuredSplit, RunningStoke, HZ,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid as NixPid;
use stoke_model::Pid;
use stoke_sample::{Event, PtraceSampler, SampleMode, Sampler, SamplerOptions, StackCapture};

/// Fewest samples a share assertion is made on (see the module doc).
const MIN_SAMPLES: u64 = 1000;

/// Records `cpu_split` with `backend` and returns (measured hot share,
/// sampled hot share, samples in hot or cold).
fn split_with(backend: &str) -> (f64, f64, u64) {
    let recording = record_command(
        &["--backend", backend],
        &[c_fixture("cpu_split", Build::FramePointers)],
    );
    let truth = MeasuredSplit::from_output(&recording.outcome.stdout);
    let (hot, samples) = recording
        .folded
        .of_process("cpu_split")
        .split("hot", "cold");
    (truth.hot, hot, samples)
}

#[test]
fn ptrace_and_perf_backends_agree_on_the_cpu_split() {
    let (perf_truth, perf_hot, perf_n) = split_with("perf");
    let (ptrace_truth, ptrace_hot, ptrace_n) = split_with("ptrace");
    for (name, truth, hot, n) in [
        ("perf", perf_truth, perf_hot, perf_n),
        ("ptrace", ptrace_truth, ptrace_hot, ptrace_n),
    ] {
        assert!(n >= MIN_SAMPLES, "{name}: only {n} samples in hot or cold");
        assert!(
            (hot - truth).abs() <= 0.05,
            "{name}: hot has {:.1} % of samples, the program measured {:.1} %",
            hot * 100.0,
            truth * 100.0
        );
    }
    // Each run measured its own truth (it varies with the machine's load):
    // the backends' errors must agree.
    let (perf_error, ptrace_error) = (perf_hot - perf_truth, ptrace_hot - ptrace_truth);
    assert!(
        (perf_error - ptrace_error).abs() <= 0.06,
        "perf is {:+.1} points off, ptrace {:+.1}",
        perf_error * 100.0,
        ptrace_error * 100.0
    );
}

#[test]
fn wall_mode_shows_blocked_threads_with_their_waits_and_cpu_mode_does_not() {
    let waits = c_fixture("waits", Build::FramePointers);
    let wall = record_command(&["--backend", "ptrace", "--mode", "wall"], &[&waits]).folded;
    let reader = wall.filter(|s| s.contains("wait_for_pipe"));
    let sleeper = wall.filter(|s| s.contains("nap_forever"));
    for (name, stacks, syscalls) in [
        ("reader", &reader, &["[syscall: read]"][..]),
        (
            "sleeper",
            &sleeper,
            &["[syscall: clock_nanosleep]", "[syscall: nanosleep]"][..],
        ),
    ] {
        // 1.5 s of the main thread's CPU time at 999 Hz: hundreds of
        // samples of each blocked thread even on a loaded machine.
        assert!(
            stacks.total() >= 100,
            "{name}: only {} samples",
            stacks.total()
        );
        let named = stacks.count(|s| {
            s.frames[1] == "[off-cpu]"
                && syscalls
                    .iter()
                    .any(|c| s.frames.last() == Some(&c.to_string()))
        });
        assert!(
            named as f64 >= 0.95 * stacks.total() as f64,
            "{name}: {named} of {} samples end in {syscalls:?} under [off-cpu]: {:?}",
            stacks.total(),
            stacks.stacks
        );
    }
    // The busy main thread is on the CPU: not under the marker.
    let spin = wall.filter(|s| s.contains("spin"));
    assert!(
        spin.total() >= 100,
        "only {} samples in spin: {:?}",
        spin.total(),
        wall.stacks
    );
    assert_eq!(spin.count(|s| s.contains("[off-cpu]")), 0);

    for backend in ["ptrace", "perf"] {
        let cpu = record_command(&["--backend", backend], &[&waits]).folded;
        assert!(
            cpu.share_containing("spin") >= 0.9,
            "{backend}: {:?}",
            cpu.stacks
        );
        assert_eq!(
            cpu.count(|s| s.contains("[off-cpu]")),
            0,
            "{backend}: CPU mode has off-CPU samples"
        );
        // The blocked threads wake for microseconds (the sleeper once a
        // second) and are then on a CPU or queued for one, so a sample
        // there is CPU time; more than a trace of it would be blocked time
        // counted as CPU.
        for frame in ["wait_for_pipe", "nap_forever"] {
            let blocked = cpu.count(|s| s.contains(frame));
            assert!(
                blocked as f64 <= 0.005 * cpu.total() as f64,
                "{backend}: CPU mode has {blocked} of {} samples in {frame}",
                cpu.total()
            );
        }
    }
}

#[test]
fn auto_falls_back_to_ptrace_where_a_seccomp_filter_forbids_perf_events() {
    let no_perf = c_fixture("no_perf", Build::FramePointers);
    let cpu_split = c_fixture("cpu_split", Build::FramePointers);
    for errno in ["EPERM", "ENOSYS"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.folded");
        let outcome = run(Command::new(&no_perf)
            .current_dir(dir.path())
            .arg(errno)
            .arg(common::stoke_path())
            .args(["record", "-F", HZ, "-o"])
            .arg(&out)
            .arg("--")
            .arg(&cpu_split)
            .arg("0.5"));
        outcome.assert_success();
        let fallback: Vec<&str> = outcome
            .stderr
            .lines()
            .filter(|l| l.starts_with("stoke: perf events not available ("))
            .collect();
        assert_eq!(fallback.len(), 1, "{errno}: one fallback line\n{outcome}");
        assert!(
            fallback[0].ends_with("; sampling with ptrace") && fallback[0].contains("seccomp"),
            "{errno}: {}",
            fallback[0]
        );
        // The filter slows every system call of the target (its clock reads
        // too); the split of hot and cold is what must hold.
        let (hot, samples) = common::Folded::read(&out).split("hot", "cold");
        assert!(samples >= 50 && hot > 0.6, "{errno}: {hot} of {samples}");

        // With --backend perf there is no fallback: a clean error.
        let outcome = run(Command::new(&no_perf)
            .current_dir(dir.path())
            .arg(errno)
            .arg(common::stoke_path())
            .args(["record", "--backend", "perf", "-o"])
            .arg(&out)
            .arg("--")
            .arg(&cpu_split)
            .arg("0.1"));
        assert_stoke_error(&outcome, None, &["perf"]);
    }
}

/// The `heartbeat` fixture with its stdout read line by line.
struct Heartbeat {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Heartbeat {
    fn spawn() -> Heartbeat {
        let mut child = Command::new(c_fixture("heartbeat", Build::FramePointers))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start heartbeat");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let hb = Heartbeat { child, lines };
        let ready = hb.lines.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(ready, format!("ready {}", hb.pid()));
        hb
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGUSR1 and waits for the health line, polling `sampler`
    /// meanwhile if attached (the signal's delivery stop must be resumed).
    fn health(&self, mut sampler: Option<&mut PtraceSampler>) -> Health {
        kill(NixPid::from_raw(self.pid()), Signal::SIGUSR1).unwrap();
        for _ in 0..3000 {
            if let Some(sampler) = sampler.as_deref_mut() {
                sampler
                    .poll(Some(Duration::from_millis(10)), &mut |_| {})
                    .unwrap();
            }
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(10)) {
                return Health::parse(&line);
            }
        }
        panic!("no health line from heartbeat");
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `health signals=S work=W reads=R sleeps=N errors=E`.
#[derive(Debug)]
struct Health {
    signals: u64,
    work: u64,
    reads: u64,
    sleeps: u64,
    errors: u64,
}

impl Health {
    fn parse(line: &str) -> Health {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        };
        Health {
            signals: field("signals"),
            work: field("work"),
            reads: field("reads"),
            sleeps: field("sleeps"),
            errors: field("errors"),
        }
    }
}

#[test]
fn a_hundred_attach_detach_cycles_leave_the_target_healthy_and_untraced() {
    let hb = Heartbeat::spawn();
    let pid = hb.pid();
    let before = hb.health(None);
    let mut signals = 1;
    let mut samples = 0;
    for cycle in 0..100 {
        let options = SamplerOptions {
            stack: StackCapture::RegsAndStack { size: 4096 },
            mode: if cycle % 2 == 0 {
                SampleMode::Wall
            } else {
                SampleMode::Cpu
            },
            ..SamplerOptions::default()
        };
        let mut sampler = PtraceSampler::attach(Pid(pid as u32), &options).expect("attach");
        sampler
            .poll(Some(Duration::from_millis(15)), &mut |e| {
                samples += u64::from(matches!(e, Event::Sample(_)));
            })
            .unwrap();
        if cycle % 10 == 5 {
            // A signal delivered while traced is passed on, not swallowed.
            let health = hb.health(Some(&mut sampler));
            signals += 1;
            assert_eq!(health.signals, signals, "cycle {cycle}: {health:?}");
        }
        if cycle % 3 == 0 {
            sampler.finish(&mut |_| {}).unwrap();
        }
        drop(sampler); // every third cycle detaches through the guard only
        assert_unharmed(pid);
    }
    assert!(samples >= 100, "only {samples} samples in 100 cycles");
    let after = hb.health(None);
    assert_eq!(after.signals, signals + 1, "{after:?}");
    assert_eq!(after.errors, 0, "the fixture saw errors: {after:?}");
    assert!(after.work > before.work, "{before:?} {after:?}");
    assert!(after.reads > before.reads, "{before:?} {after:?}");
    assert!(after.sleeps > before.sleeps, "{before:?} {after:?}");
    // Still running afterwards: its pipe and sleeps go on (each health
    // report is one more signal; the counters move every few ms).
    let going_on = (0..1000).any(|_| {
        let later = hb.health(None);
        assert_eq!(later.errors, 0, "{later:?}");
        later.reads > after.reads && later.sleeps > after.sleeps
    });
    assert!(going_on, "the fixture stopped making progress");
    assert_unharmed(pid);
}

#[test]
fn sigterm_stops_a_ptrace_recording_and_leaves_the_target_running_untraced() {
    let hb = Heartbeat::spawn();
    let pid = hb.pid();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.folded");
    let mut stoke = RunningStoke::spawn(
        stoke_record(dir.path())
            .args(["-F", HZ, "--backend", "ptrace", "--mode", "wall"])
            .args(["-p", &pid.to_string(), "-o"])
            .arg(&out),
    );
    stoke.wait_for_stderr_line("stoke: recording");
    common::wait_for_cpu_time(pid, Duration::from_millis(300));
    stoke.signal(Signal::SIGTERM);
    let outcome = stoke.finish();
    outcome.assert_success();
    let folded = common::Folded::read(&out);
    assert!(
        folded.count(|s| s.contains("[syscall: read]")) > 0,
        "{folded:?}"
    );
    assert_unharmed(pid);
    let health = hb.health(None);
    assert_eq!((health.signals, health.errors), (1, 0), "{health:?}");
}
