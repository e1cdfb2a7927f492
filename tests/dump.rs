//! `stoke dump`: every thread's stack and state, and the target unharmed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{assert_unharmed, c_fixture, run, stoke, Build};
use serde_json::Value;

/// The `dump_threads` fixture with its stdout read line by line; killed on drop.
struct Threads {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Threads {
    fn spawn(build: Build) -> Threads {
        let mut child = Command::new(c_fixture("dump_threads", build))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start dump_threads");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let threads = Threads { child, lines };
        let ready = threads.lines.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(ready, format!("ready {}", threads.pid()));
        threads
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// (burns, errors) from the health line SIGUSR1 asks for.
    fn health(&self) -> (u64, u64) {
        let sent = Command::new("kill")
            .args(["-USR1", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a health line");
        let field = |key: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        };
        (field("burns"), field("errors"))
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dump_json(pid: i32, extra: &[&str]) -> Value {
    let outcome = run(stoke()
        .args(["dump", "-p", &pid.to_string(), "--json"])
        .args(extra));
    outcome.assert_success();
    serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|e| panic!("--json is not JSON ({e}):\n{}", outcome.stdout))
}

fn thread<'a>(dump: &'a Value, name: &str) -> &'a Value {
    dump["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no thread {name} in {dump:#}"))
}

fn frame_names(thread: &Value) -> Vec<String> {
    thread["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn has_frame(thread: &Value, needle: &str) -> bool {
    frame_names(thread).iter().any(|n| n.contains(needle))
}

#[test]
fn every_thread_is_shown_with_its_state_and_frames() {
    for build in [Build::FramePointers, Build::NoFramePointers] {
        let fixture = Threads::spawn(build);
        let dump = dump_json(fixture.pid(), &[]);
        assert_eq!(dump["pid"], fixture.pid());
        assert_eq!(dump["threads"].as_array().unwrap().len(), 4, "{dump:#}");

        let busy = thread(&dump, "busy");
        // A thread on a CPU may be preempted at the moment of the look:
        // runnable or sleeping, it is in `burn`, not in a system call.
        assert!(has_frame(busy, "burn"), "{build:?}: {busy:#}");
        assert!(has_frame(busy, "busy_main"), "{build:?}: {busy:#}");

        let reader = thread(&dump, "reader");
        assert_eq!(reader["state"], "sleeping", "{reader:#}");
        assert_eq!(reader["syscall"], "read", "{reader:#}");
        assert!(has_frame(reader, "wait_for_pipe"), "{build:?}: {reader:#}");
        assert!(has_frame(reader, "reader_main"), "{build:?}: {reader:#}");

        let sleeper = thread(&dump, "sleeper");
        assert_eq!(sleeper["state"], "sleeping", "{sleeper:#}");
        assert!(has_frame(sleeper, "nanosleep"), "{build:?}: {sleeper:#}");
        assert!(has_frame(sleeper, "nap"), "{build:?}: {sleeper:#}");

        // Kernel frames as root, where /proc/PID/task/TID/stack is readable.
        if reader["kernel_stack_readable"] == true {
            let kinds: Vec<&str> = reader["frames"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["kind"].as_str())
                .collect();
            assert_eq!(kinds.first(), Some(&"kernel"), "{reader:#}");
        } else {
            eprintln!("dump: /proc/PID/task/TID/stack unreadable here; kernel frames not checked");
        }
        assert_unharmed(fixture.pid());
    }
}

#[test]
fn text_output_names_threads_states_and_lines() {
    let fixture = Threads::spawn(Build::FramePointers);
    let outcome = run(stoke().args(["dump", "-p", &fixture.pid().to_string(), "--lines"]));
    outcome.assert_success();
    let text = &outcome.stdout;
    assert!(
        text.starts_with(&format!("Process {} (dump_threads)", fixture.pid())),
        "{text}"
    );
    for needle in [
        "(busy):",
        "(reader): sleeping in read",
        "(sleeper): sleeping",
        "wait_for_pipe (dump_threads.c:",
        "nap (dump_threads.c:",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

#[test]
fn the_target_is_unharmed_after_100_dumps() {
    let fixture = Threads::spawn(Build::NoFramePointers);
    let (burns_before, errors_before) = fixture.health();
    assert_eq!(errors_before, 0);
    for _ in 0..100 {
        let outcome = run(stoke().args(["dump", "-p", &fixture.pid().to_string()]));
        outcome.assert_success();
        assert_unharmed(fixture.pid());
    }
    let (burns_after, errors) = fixture.health();
    assert_eq!(errors, 0, "a read or a sleep of the target was cut short");
    assert!(
        burns_after > burns_before,
        "the busy thread stopped working"
    );
    assert_unharmed(fixture.pid());
}

#[test]
fn a_missing_process_is_one_line() {
    let outcome = run(stoke().args(["dump", "-p", "999999999"]));
    assert!(!outcome.status.success());
    outcome.assert_no_panic();
    assert_eq!(outcome.stderr.lines().count(), 1, "{}", outcome.stderr);
}
