//! Processes: running `stoke`, live fixtures, and the state of a target.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a `stoke` run may take before the harness kills it and fails the
/// test. A guard against hangs, far above any expected run time; nothing is
/// asserted about how long a run takes.
const HANG_GUARD: Duration = Duration::from_secs(180);

/// A finished process: exit status and captured output.
pub struct Outcome {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

impl Outcome {
    /// Asserts stderr has no panic message (Rust's own, or stoke's
    /// `internal error` line).
    pub fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("internal error"),
            "stoke panicked\n{self}"
        );
    }

    /// Asserts a zero exit status and no panic.
    pub fn assert_success(&self) {
        self.assert_no_panic();
        assert!(self.status.success(), "stoke failed\n{self}");
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LIMIT: usize = 4000;
        let cut = |s: &str| -> String {
            if s.len() <= LIMIT {
                s.to_owned()
            } else {
                let mut end = LIMIT;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}… ({} bytes)", &s[..end], s.len())
            }
        };
        writeln!(f, "status: {}", self.status)?;
        writeln!(f, "--- stderr ---\n{}", cut(&self.stderr))?;
        write!(f, "--- stdout ---\n{}", cut(&self.stdout))
    }
}

/// Runs `cmd` to completion with stdin closed, capturing stdout and stderr.
pub fn run(cmd: &mut Command) -> Outcome {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_with_guard(child);
    Outcome {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the capture; what was read is kept.
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child`, killing it (and failing) if it outlives `HANG_GUARD`.
fn wait_with_guard(mut child: Child) -> ExitStatus {
    let pid = child_pid(&child);
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || sender.send(child.wait()));
    match receiver.recv_timeout(HANG_GUARD) {
        Ok(status) => status.expect("wait for child"),
        Err(_) => {
            // Not reaped yet (the waiter has not returned), so the pid is
            // still this child's.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = receiver.recv();
            panic!("process {pid} still running after {HANG_GUARD:?}: killed it");
        }
    }
}

fn child_pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"))
}

/// A fixture process that announced itself with `ready <pid>` on stdout.
/// Killed (SIGKILL) and reaped on drop.
pub struct LiveFixture {
    child: Child,
    // Kept open so the fixture never gets SIGPIPE.
    _stdout: BufReader<ChildStdout>,
}

impl LiveFixture {
    /// Spawns `cmd` and blocks until it prints its ready line.
    pub fn spawn(mut cmd: Command) -> LiveFixture {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read ready line");
        let fixture = LiveFixture {
            child,
            _stdout: stdout,
        };
        let announced = line.trim_end().strip_prefix("ready ");
        assert_eq!(
            announced,
            Some(fixture.pid().to_string().as_str()),
            "{cmd:?} did not print `ready <pid>` (got {line:?})"
        );
        fixture
    }

    /// The fixture's process id.
    pub fn pid(&self) -> i32 {
        child_pid(&self.child).as_raw()
    }
}

impl Drop for LiveFixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `stoke` running in the background, its stderr read line by line (to wait
/// for a message), its stdout captured. Killed and reaped if dropped before
/// `finish`.
pub struct RunningStoke {
    child: Option<Child>,
    stderr: Option<BufReader<ChildStderr>>,
    stderr_so_far: String,
    stdout: Option<JoinHandle<String>>,
}

impl RunningStoke {
    /// Spawns `cmd` with stdin closed and stdout, stderr piped.
    pub fn spawn(cmd: &mut Command) -> RunningStoke {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdout = drain(child.stdout.take().expect("piped stdout"));
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        RunningStoke {
            child: Some(child),
            stderr: Some(stderr),
            stderr_so_far: String::new(),
            stdout: Some(stdout),
        }
    }

    /// Reads stderr until a line starting with `prefix`; panics (showing
    /// stderr) if stderr ends first.
    pub fn wait_for_stderr_line(&mut self, prefix: &str) {
        let stderr = self.stderr.as_mut().expect("stderr still open");
        loop {
            let mut line = String::new();
            let read = stderr.read_line(&mut line).expect("read stoke's stderr");
            self.stderr_so_far.push_str(&line);
            if read == 0 {
                panic!(
                    "stoke's stderr ended before a line starting {prefix:?}:\n{}",
                    self.stderr_so_far
                );
            }
            if line.starts_with(prefix) {
                return;
            }
        }
    }

    /// Sends `signal` to stoke.
    pub fn signal(&self, signal: Signal) {
        let child = self.child.as_ref().expect("still running");
        kill(child_pid(child), signal).expect("send signal to stoke");
    }

    /// Waits for stoke to exit and returns everything it wrote.
    pub fn finish(mut self) -> Outcome {
        let child = self.child.take().expect("not finished yet");
        let rest = drain(self.stderr.take().expect("stderr still open"));
        let status = wait_with_guard(child);
        let stdout = self.stdout.take().expect("stdout reader");
        Outcome {
            status,
            stdout: stdout.join().expect("stdout reader"),
            stderr: std::mem::take(&mut self.stderr_so_far) + &rest.join().expect("stderr reader"),
        }
    }
}

impl Drop for RunningStoke {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Fields of `/proc/PID/task/TID/stat` after the command name: index 0 is
/// the state, 11 utime, 12 stime.
fn stat_fields(path: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

fn tids(pid: i32) -> Vec<i32> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("process {pid} is gone: {e}"));
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The name (`comm`) of each thread of `pid`, by thread id.
pub fn thread_names(pid: i32) -> Vec<(i32, String)> {
    tids(pid)
        .into_iter()
        .filter_map(|tid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
            Some((tid, comm.trim_end().to_owned()))
        })
        .collect()
}

/// Asserts that `pid` is alive and that none of its threads is stopped
/// (state `T`/`t`) or traced (`TracerPid` not 0).
pub fn assert_unharmed(pid: i32) {
    let threads = tids(pid);
    assert!(!threads.is_empty(), "process {pid} has no threads");
    for tid in threads {
        let task = format!("/proc/{pid}/task/{tid}");
        let Some(fields) = stat_fields(&format!("{task}/stat")) else {
            continue; // the thread exited meanwhile
        };
        let state = fields[0].as_str();
        assert!(
            !matches!(state, "T" | "t" | "Z" | "X"),
            "thread {tid} of {pid} is in state {state}"
        );
        let status = std::fs::read_to_string(format!("{task}/status")).unwrap_or_default();
        let tracer = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .map(str::trim);
        assert!(
            matches!(tracer, Some("0") | None),
            "thread {tid} of {pid} is traced by {tracer:?}"
        );
    }
}

/// CPU time (user + system, all threads) `pid` has used so far.
pub fn process_cpu_time(pid: i32) -> Duration {
    let fields = stat_fields(&format!("/proc/{pid}/stat"))
        .unwrap_or_else(|| panic!("process {pid} is gone"));
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).expect("_SC_CLK_TCK");
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Blocks until `pid` has used `amount` more CPU time. Waits on the target's
/// own CPU clock (polled from /proc), not on a guessed wall-clock time: once
/// it returns, that much CPU time was available to be sampled.
pub fn wait_for_cpu_time(pid: i32, amount: Duration) {
    let target = process_cpu_time(pid) + amount;
    while process_cpu_time(pid) < target {
        thread::sleep(Duration::from_millis(10));
    }
}

/// The first executable file called `name` on `PATH` (and in the sbin
/// folders, which a root shell has but a test's PATH may not).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|folder| folder.join(name))
        .find(|file| {
            file.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
