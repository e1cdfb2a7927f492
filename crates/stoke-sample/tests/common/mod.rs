//! Helpers of the live tests: recording until exit, and a multi-threaded
//! fixture process (this test binary re-executed in fixture mode).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use stoke_model::{Pid, Tid};
use stoke_sample::{Event, Sampler};

/// Polls until the target exits, then finishes; returns every event.
pub fn record_until_exit(sampler: &mut dyn Sampler) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let outcome = sampler
            .poll(Some(Duration::from_millis(200)), &mut |e| events.push(e))
            .expect("poll");
        if outcome.target_exited {
            break;
        }
    }
    sampler.finish(&mut |e| events.push(e)).expect("finish");
    events
}

/// The environment variable that turns the test binary into the fixture.
const FIXTURE_ENV: &str = "STOKE_SAMPLE_FIXTURE";

/// Runs the fixture if this process was started as one: three named busy
/// threads, a `ready PID TID TID TID` line, then on each `spawn` line on
/// stdin one more busy thread and a `spawned TID` line; exits at EOF.
/// Call first thing in a `#[test]` of each test binary that uses [`Fixture`].
pub fn run_fixture_if_requested() {
    if std::env::var_os(FIXTURE_ENV).is_none() {
        return;
    }
    let spawn = |i: usize| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("busy-{i}"))
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                tx.send(unsafe { libc::gettid() }).unwrap();
                let mut x = 1u64;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
            .unwrap();
        rx.recv().unwrap()
    };
    let tids: Vec<String> = (0..3).map(|i| spawn(i).to_string()).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {} {}", std::process::id(), tids.join(" ")).unwrap();
    out.flush().unwrap();
    let mut n = 3;
    for line in std::io::stdin().lines() {
        if line.unwrap().trim() == "spawn" {
            writeln!(out, "spawned {}", spawn(n)).unwrap();
            out.flush().unwrap();
            n += 1;
        }
    }
    std::process::exit(0);
}

/// A running fixture process; killed and reaped on drop.
pub struct Fixture {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The fixture's pid.
    pub pid: Pid,
    /// Its busy threads.
    pub busy: Vec<Tid>,
}

impl Fixture {
    /// Starts the fixture through test `entry` and waits for its ready line.
    pub fn start(entry: &str) -> Fixture {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([entry, "--exact", "--nocapture", "--test-threads=1"])
            .env(FIXTURE_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fixture");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let words = read_line(&mut stdout);
        assert_eq!(
            words.first().map(String::as_str),
            Some("ready"),
            "{words:?}"
        );
        let pid = Pid(words[1].parse().unwrap());
        assert_eq!(pid.0, child.id());
        let busy = words[2..].iter().map(|w| Tid(w.parse().unwrap())).collect();
        Fixture {
            child,
            stdin,
            stdout,
            pid,
            busy,
        }
    }

    /// Asks the fixture for one more busy thread; returns its tid.
    pub fn spawn_thread(&mut self) -> Tid {
        writeln!(self.stdin, "spawn").unwrap();
        self.stdin.flush().unwrap();
        let words = read_line(&mut self.stdout);
        assert_eq!(
            words.first().map(String::as_str),
            Some("spawned"),
            "{words:?}"
        );
        Tid(words[1].parse().unwrap())
    }
}

/// The next line of the fixture's own protocol (the test harness prints its
/// own lines around it).
fn read_line(reader: &mut impl BufRead) -> Vec<String> {
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("fixture output") == 0 {
            return Vec::new();
        }
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if let Some(start) = words.iter().position(|w| w == "ready" || w == "spawned") {
            return words[start..].to_vec();
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The state letter of `/proc/PID/stat` and the `TracerPid` of its status.
pub fn state_and_tracer(pid: Pid) -> (char, u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let tracer = status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (state, tracer)
}
