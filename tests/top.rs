//! `stoke top` in a real terminal (tmux: send-keys, capture-pane) and
//! without one (a plain table per interval).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_unharmed, c_fixture, find_in_path, run, stoke, stoke_path, Build};
use tempfile::TempDir;

/// How long a condition on the screen is waited for at most.
const PATIENCE: Duration = Duration::from_secs(120);

/// A tmux server of this test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
    dir: TempDir,
}

impl Tmux {
    /// Starts `stoke top TOP_ARGS` ([`script`]) in a 200x50 pane under
    /// `sh`, or `None` (said on stderr) where tmux is missing.
    fn start(name: &str, top_args: &str) -> Option<Tmux> {
        if find_in_path("tmux").is_none() {
            eprintln!("top: tmux is not installed; the terminal tests are skipped");
            return None;
        }
        let tmux = Tmux {
            socket: format!("stoke-test-{}-{name}", std::process::id()),
            dir: tempfile::tempdir().unwrap(),
        };
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "200", "-y", "50", "-s", "t"])
            .arg(format!("sh -c '{}'", script(tmux.dir.path(), top_args)))
            .env("TERM", "xterm-256color")
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        Some(tmux)
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", "t", keys]);
    }

    fn format(&self, format: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", "t", format])
            .trim()
            .to_string()
    }

    /// Waits until the screen satisfies `ok`; returns it.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if start.elapsed() > PATIENCE {
                panic!("no {what} on the screen after {PATIENCE:?}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The pid of the pane's shell's child (stoke).
    fn stoke_pid(&self) -> i32 {
        let shell = self.format("#{pane_pid}");
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("stoke runs under the pane's shell")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// The script: `stoke top ARGS`, then the terminal's settings and the
/// exit status into files, then a wait so the pane stays.
fn script(dir: &Path, top_args: &str) -> String {
    let d = dir.display();
    format!(
        "{} top {top_args} 2>{d}/stderr; echo $? > {d}/status; stty -a > {d}/stty; sleep 600",
        stoke_path().display()
    )
}

/// Samples since the start, from the state line.
fn since_start(screen: &str) -> u64 {
    screen
        .split("since start: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The ALL-SELF% column of the row of `function`.
fn all_self(screen: &str, function: &str) -> Option<f64> {
    screen.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        (words.last() == Some(&function) && words.len() >= 8)
            .then(|| words[4].parse().ok())
            .flatten()
    })
}

/// The function of the first table row.
fn first_row(screen: &str) -> Option<String> {
    let mut lines = screen
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("SELF%"));
    lines.next()?;
    lines.next()?.split_whitespace().last().map(str::to_string)
}

fn wait_file(path: &Path) -> String {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return text;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{} was not written", path.display());
}

fn assert_terminal_restored(tmux: &Tmux) {
    let stty = wait_file(&tmux.file("stty"));
    let words: Vec<&str> = stty.split_whitespace().collect();
    for setting in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(words.contains(&setting), "{setting} not restored:\n{stty}");
    }
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "still on the alternate screen"
    );
    assert_eq!(tmux.format("#{cursor_flag}"), "1", "the cursor is hidden");
}

/// A target process, killed and reaped if the test ends early.
struct Target(Option<std::process::Child>);

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn attached_top_shows_the_split_sorts_and_quits_leaving_the_target_running() {
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let mut target = Target(Some(
        Command::new(&fixture)
            .arg("6")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let pid = target.0.as_ref().unwrap().id() as i32;
    let Some(tmux) = Tmux::start("attach", &format!("-p {pid}")) else {
        return;
    };
    // Enough samples for a share within 5 points.
    let screen = tmux.wait_for("1,500 samples of hot and cold", |s| {
        since_start(s) >= 1500 && all_self(s, "hot").is_some() && all_self(s, "cold").is_some()
    });
    assert!(
        screen.contains(&format!("pid {pid} (cpu_split)")),
        "{screen}"
    );
    assert!(screen.contains("samples/s"), "{screen}");
    let hot = all_self(&screen, "hot").unwrap();
    let cold = all_self(&screen, "cold").unwrap();
    let shown = hot / (hot + cold);
    assert_eq!(first_row(&screen).as_deref(), Some("hot"), "{screen}");

    tmux.keys("t");
    let by_total = tmux.wait_for("the table sorted by total", |s| {
        s.contains("sorted by total")
    });
    let first = first_row(&by_total).unwrap();
    assert!(
        [
            "main",
            "_start",
            "__libc_start_main",
            "__libc_start_call_main"
        ]
        .contains(&first.as_str()),
        "by total, {first} comes first:\n{by_total}"
    );
    tmux.keys("s");
    tmux.wait_for("the table sorted by self", |s| {
        s.contains("sorted by self") && first_row(s).as_deref() == Some("hot")
    });
    tmux.keys("T");
    tmux.wait_for("a row per thread", |s| {
        s.contains("per thread") && s.contains("THREAD")
    });
    tmux.keys("k");
    tmux.wait_for("kernel frames hidden", |s| {
        s.contains("kernel hidden") && !s.contains("[k]")
    });
    tmux.keys("p");
    tmux.wait_for("the view paused", |s| s.contains("PAUSED"));
    tmux.keys("p");
    tmux.keys("r");
    tmux.wait_for("counts reset", |s| {
        !s.contains("PAUSED") && since_start(s) < 1500
    });
    tmux.keys("q");
    let status = wait_file(&tmux.file("status"));
    assert_eq!(status.trim(), "0");
    let stderr = std::fs::read_to_string(tmux.file("stderr")).unwrap();
    assert!(
        stderr.contains(&format!("detached from pid {pid}")),
        "{stderr}"
    );
    assert_terminal_restored(&tmux);
    assert_unharmed(pid);

    // The target runs to its end and says what it measured.
    let output = target.0.take().unwrap().wait_with_output().unwrap();
    assert!(output.status.success());
    let measured = common::MeasuredSplit::from_output(&String::from_utf8_lossy(&output.stdout));
    assert!(
        (shown - measured.hot).abs() <= 0.05,
        "top showed hot at {shown:.3} of hot+cold, the program measured {:.3}",
        measured.hot
    );
}

#[test]
fn sigterm_restores_the_terminal_and_stops_the_launched_command() {
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let args = format!("-- {} 60", fixture.display());
    let Some(tmux) = Tmux::start("sigterm", &args) else {
        return;
    };
    let screen = tmux.wait_for("hot, named", |s| all_self(s, "hot").is_some());
    let command_pid: i32 = screen
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .expect("the header names the command's pid");
    let stoke = tmux.stoke_pid();
    let killed = Command::new("kill")
        .args(["-TERM", &stoke.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_file(&tmux.file("status"));
    assert_terminal_restored(&tmux);
    let stderr = std::fs::read_to_string(tmux.file("stderr")).unwrap();
    assert!(stderr.contains("stopped the command"), "{stderr}");
    // The command was stoke's child: stopped and reaped.
    assert!(
        !Path::new(&format!("/proc/{command_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{command_pid}/comm"))
                .is_ok_and(|c| c.trim() != "cpu_split"),
        "the command {command_pid} still runs"
    );
}

#[test]
fn without_a_terminal_a_table_is_printed_every_interval() {
    let fixture = c_fixture("cpu_split", Build::NoFramePointers);
    let outcome = run(stoke()
        .args(["top", "--interval", "0.5", "-d", "2.2", "--"])
        .arg(&fixture)
        .arg("30"));
    outcome.assert_success();
    let tables = outcome.stdout.matches("samples/s").count();
    assert!(tables >= 2, "{tables} tables:\n{}", outcome.stdout);
    assert!(
        outcome.stdout.lines().any(|l| l.ends_with(" hot")),
        "hot is not named:\n{}",
        outcome.stdout
    );
    assert!(
        outcome.stderr.contains("stopped the command"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn output_writes_the_accumulated_profile() {
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("top.folded");
    let outcome = run(stoke()
        .args(["top", "--interval", "0.5", "-d", "1.5", "-o"])
        .arg(&folded)
        .arg("--")
        .arg(&fixture)
        .arg("30"));
    outcome.assert_success();
    let profile = common::Folded::read(&folded);
    assert!(profile.total() > 0);
    assert!(profile.share_containing("hot") > 0.3, "{}", outcome.stderr);
}

#[test]
fn all_cpus_shows_a_busy_process_among_the_others() {
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let target = Target(Some(
        Command::new(&fixture)
            .arg("30")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let pid = target.0.as_ref().unwrap().id();
    let outcome = run(stoke().args(["top", "-a", "--interval", "0.5", "-d", "2.2"]));
    if !outcome.status.success() && outcome.stderr.contains("perf_event_paranoid") {
        eprintln!("top: per-CPU perf events not allowed here; -a not checked");
        return;
    }
    outcome.assert_success();
    assert!(outcome.stdout.contains("all CPUs"), "{}", outcome.stdout);
    assert!(
        outcome.stdout.contains(&format!("cpu_split [{pid}]")),
        "cpu_split {pid} not shown:\n{}",
        outcome.stdout
    );
    assert_unharmed(pid as i32);
}
