//! Files a target plants in its own namespace never hang stoke: a FIFO
//! bind-mounted over the target's own executable (in a private mount
//! namespace, so only `/proc/PID/root` shows it) is not opened, and the
//! binary is read through `/proc/PID/map_files` instead.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{assert_unharmed, c_fixture, stoke_record, Build, Folded, Outcome, HZ};

/// Longer than any recording here takes; stoke blocked in `open()` never ends.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// The fixture, hidden behind its FIFO, running until dropped.
struct Hidden {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Hidden {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the fixture into `dir` and runs it there; `None` (with the reason
/// on stderr) where this machine does not let it make a mount namespace.
fn spawn_hidden(dir: &Path) -> Option<Hidden> {
    let exe = dir.join("fifo_over_self");
    std::fs::copy(c_fixture("fifo_over_self", Build::FramePointers), &exe).unwrap();
    let fifo = dir.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let mut child = Command::new(&exe)
        .arg(&exe)
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    if let Some(why) = line.trim_end().strip_prefix("unsupported: ") {
        eprintln!("skipped: the fixture cannot hide its binary behind a FIFO here ({why})");
        let _ = child.wait();
        return None;
    }
    assert_eq!(
        line.trim_end(),
        format!("ready {}", child.id()),
        "the fixture's ready line"
    );
    Some(Hidden {
        child,
        _stdout: stdout,
    })
}

/// Runs `cmd`, killing it and failing the test if it is still running after
/// [`HANG_GUARD`].
fn run_guarded(cmd: &mut Command) -> Outcome {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match receiver.recv_timeout(HANG_GUARD) {
        Ok(output) => {
            let output = output.unwrap();
            Outcome {
                status: output.status,
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("stoke hung on the target's FIFO: killed after {HANG_GUARD:?}");
        }
    }
}

fn record_hidden(extra: &[&str]) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: making a mount namespace needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(target) = spawn_hidden(dir.path()) else {
        return;
    };
    let pid = target.child.id().to_string();
    let out = dir.path().join("out.folded");
    let outcome = run_guarded(
        stoke_record(dir.path())
            .args(["-F", HZ, "-p", &pid, "-d", "1", "-o"])
            .arg(&out)
            .args(extra),
    );
    outcome.assert_success();
    let folded = Folded::read(&out);
    assert!(folded.total() > 0, "no samples\n{outcome}");
    let named = folded.share_containing("fifo_hot");
    assert!(
        named > 0.5,
        "the hidden binary's hot function is named in {named:.2} of samples\n{outcome}"
    );
    assert_unharmed(target.child.id() as i32);
}

#[test]
fn a_fifo_over_the_binary_does_not_hang_perf_recording() {
    record_hidden(&[]);
}

#[test]
fn a_fifo_over_the_binary_does_not_hang_ptrace_recording() {
    record_hidden(&["--backend", "ptrace"]);
}

/// Records `replaced COPY CHANGE 1.5` as user `nobody` (who cannot reach
/// `/proc/PID/map_files`), in a folder of its own; `None` where this cannot
/// run (not root, no setpriv).
fn record_changed_binary(change: &str) -> Option<(Outcome, Folded)> {
    use std::os::unix::fs::{chown, PermissionsExt};
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: running stoke as another user needs root");
        return None;
    }
    let Some(setpriv) = common::find_in_path("setpriv") else {
        eprintln!("skipped: no setpriv to run stoke as another user");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = Some(65534);
    chown(dir.path(), nobody, nobody).unwrap();
    let exe = dir.path().join("replaced");
    std::fs::copy(c_fixture("replaced", Build::FramePointers), &exe).unwrap();
    chown(&exe, nobody, nobody).unwrap();
    let other = dir.path().join("other");
    std::fs::copy(c_fixture("spin_work", Build::FramePointers), &other).unwrap();
    chown(&other, nobody, nobody).unwrap();
    let change = if change == "other" {
        other.to_str().unwrap()
    } else {
        change
    };
    let out = dir.path().join("out.folded");
    let mut cmd = Command::new(setpriv);
    cmd.current_dir(dir.path())
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(common::stoke_path())
        .args(["record", "-F", HZ, "-o"])
        .arg(&out)
        .arg("--")
        .arg(&exe)
        .arg(&exe)
        .args([change, "1.5"]);
    let outcome = run_guarded(&mut cmd);
    if !outcome.status.success() && outcome.stderr.contains("perf_event_paranoid") {
        eprintln!("skipped: user nobody may not profile here\n{outcome}");
        return None;
    }
    outcome.assert_success();
    let folded = Folded::read(&out);
    assert!(folded.total() > 0, "no samples\n{outcome}");
    Some((outcome, folded))
}

#[test]
fn a_binary_replaced_while_running_is_reported_as_replaced() {
    let Some((outcome, folded)) = record_changed_binary("other") else {
        return;
    };
    // The other program's names (spin_work's `spin`, `main`) never stand
    // in for the mapped one's.
    let borrowed = folded.count(|s| s.frames.iter().any(|f| f == "spin" || f == "spin_work"));
    assert_eq!(borrowed, 0, "names read from the replacement\n{outcome}");
    assert!(
        outcome
            .stderr
            .contains("is not the file that was mapped (replaced while running?)"),
        "no warning\n{outcome}"
    );
    let outside = folded.share_containing("[truncated: address outside any module]");
    assert!(
        outside < 0.1,
        "{outside:.2} \"outside any module\"\n{outcome}"
    );
    let user = folded.count(|s| s.frames.iter().any(|f| f.starts_with("replaced+0x")));
    let user = user as f64 / folded.total() as f64;
    assert!(
        user > 0.5,
        "{user:.2} of samples at replaced+0x…\n{outcome}"
    );
}

#[test]
fn a_binary_made_unreadable_while_running_is_reported_as_unreadable() {
    let Some((outcome, folded)) = record_changed_binary("-") else {
        return;
    };
    assert!(
        outcome
            .stderr
            .contains("replaced: Permission denied (os error 13); its frames are unnamed"),
        "no warning with the errno\n{outcome}"
    );
    let outside = folded.share_containing("[truncated: address outside any module]");
    assert!(
        outside < 0.1,
        "{outside:.2} \"outside any module\"\n{outcome}"
    );
}

/// A FIFO named as the command to run (executable bits set, so only its
/// kind tells it apart): stoke reads a program's head before running it
/// (a script's `#!` line, ptrace's check for a tracer) and must not block
/// there; the command then fails to start, in one line.
fn record_a_fifo_as_the_command(extra: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("program");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.path().join("out.folded");
    let outcome = run_guarded(
        stoke_record(dir.path())
            .args(extra)
            .arg("-o")
            .arg(&out)
            .arg("--")
            .arg(&fifo),
    );
    assert!(
        !outcome.status.success(),
        "a FIFO ran as a program\n{outcome}"
    );
    outcome.assert_no_panic();
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not a one-line error\n{outcome}");
    assert!(
        lines[0].starts_with("stoke: ") && lines[0].contains("program"),
        "the error does not name the program\n{outcome}"
    );
}

#[test]
fn a_fifo_as_the_command_is_refused_not_waited_on_perf() {
    record_a_fifo_as_the_command(&[]);
}

#[test]
fn a_fifo_as_the_command_is_refused_not_waited_on_ptrace() {
    record_a_fifo_as_the_command(&["--backend", "ptrace"]);
}
