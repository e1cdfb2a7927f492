//! `stoke record` errors: one `stoke: …` line on stderr, a non-zero exit
//! code, never a panic.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use common::{assert_stoke_error, find_in_path, run, stoke_path, stoke_record};

/// A pid that cannot exist: pids are allocated below `pid_max`.
fn impossible_pid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("read pid_max")
        .trim()
        .to_owned()
}

#[test]
fn unknown_pid_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let pid = impossible_pid();
    let outcome = run(stoke_record(dir.path()).args(["-p", &pid, "-d", "1", "-o", "out.folded"]));
    assert_stoke_error(&outcome, Some(1), &["no process", &pid]);
}

#[test]
fn missing_command_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(stoke_record(dir.path()).args(["-o", "out.folded", "--", "nosuchcmd-stoke"]));
    assert_stoke_error(&outcome, None, &["command not found", "nosuchcmd-stoke"]);
}

#[test]
fn pid_and_command_together_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(stoke_record(dir.path()).args(["-p", "1", "--", "true"]));
    assert_stoke_error(&outcome, Some(2), &["cannot be used with"]);
}

#[test]
fn numbers_out_of_range_are_one_line_errors_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    for bad in [
        &["-d", "1e30"][..],
        &["-d", "1e19"],
        &["-d", "nan"],
        &["-d", "-2"],
        &["-F", "0"],
        &["-F", "1000000"],
        &["--stack-size", "8"],
        &["--width", "5"],
        &["--min-width", "inf"],
    ] {
        let outcome = run(stoke_record(dir.path())
            .args(bad)
            .args(["-o", "out.folded", "--", "touch"])
            .arg(&marker));
        outcome.assert_no_panic();
        assert_eq!(outcome.status.code(), Some(2), "{bad:?}\n{outcome}");
        let lines: Vec<&str> = outcome.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("stoke: "),
            "{bad:?}: not one `stoke:` line\n{outcome}"
        );
        assert!(!marker.exists(), "{bad:?}: the command ran");
    }
}

#[test]
fn missing_output_folder_is_reported_before_the_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let outcome = run(stoke_record(dir.path())
        .args(["-o", "/nonexistent-stoke-folder/out.svg", "--", "touch"])
        .arg(&marker));
    assert_stoke_error(
        &outcome,
        None,
        &["/nonexistent-stoke-folder", "does not exist"],
    );
    assert!(
        !marker.exists(),
        "the command ran although its profile could not be written"
    );
}

#[test]
fn unknown_output_extension_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(stoke_record(dir.path()).args(["-o", "out.xyz", "--", "true"]));
    assert_stoke_error(&outcome, None, &["unknown output format", ".xyz"]);
}

/// How to run a command as `nobody`: empty when already unprivileged, `None`
/// when root lacks both setpriv and runuser.
fn as_nobody() -> Option<Vec<PathBuf>> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some(Vec::new());
    }
    if let Some(setpriv) = find_in_path("setpriv") {
        let args = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];
        return Some(
            std::iter::once(setpriv)
                .chain(args.map(PathBuf::from))
                .collect(),
        );
    }
    let runuser = find_in_path("runuser")?;
    Some(vec![runuser, "-u".into(), "nobody".into(), "--".into()])
}

#[test]
fn unprivileged_attach_to_pid_1_reports_permission() {
    let Some(prefix) = as_nobody() else {
        eprintln!("skipped: running as root without setpriv or runuser to drop privileges");
        return;
    };
    // A copy of stoke that `nobody` can reach and run, whatever the
    // permissions of the target folder.
    let dir = tempfile::Builder::new()
        .prefix("stoke-unprivileged-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let stoke = dir.path().join("stoke");
    // `cp`, not fs::copy: no write descriptor to the binary ever lives in
    // this process, where a concurrent fork could inherit it (ETXTBSY).
    let copied = Command::new("cp")
        .arg(stoke_path())
        .arg(&stoke)
        .status()
        .unwrap();
    assert!(copied.success(), "cannot copy stoke");
    std::fs::set_permissions(&stoke, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(&stoke);
            cmd
        }
        None => Command::new(&stoke),
    };
    cmd.current_dir(dir.path())
        .args(["record", "-p", "1", "-d", "1", "-o", "out.folded"]);
    let outcome = run(&mut cmd);

    outcome.assert_no_panic();
    assert_eq!(outcome.status.code(), Some(1), "{outcome}");
    let message = outcome
        .stderr
        .lines()
        .find(|l| l.starts_with("stoke: "))
        .unwrap_or_else(|| panic!("no `stoke: ` line\n{outcome}"));
    assert!(
        message.contains("perf_event_paranoid") || message.to_lowercase().contains("permi"),
        "the message names neither perf_event_paranoid nor permission: {message}"
    );
}
