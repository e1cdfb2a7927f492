//! Shared harness of the end-to-end tests: fixtures built from source, the
//! `stoke` binary, live fixture processes, folded-stack parsing and checks on
//! the target's state.
//!
//! Each test file uses only part of it.
#![allow(dead_code, unused_imports)]

mod fixtures;
mod folded;
mod left_files;
mod process;

pub use fixtures::{c_fixture, c_fixture_named, c_fixture_with_flags, rust_fixture, Build};
pub use folded::{Folded, MeasuredSplit, Stack};
pub use left_files::LeftFiles;
pub use process::{
    assert_unharmed, find_in_path, process_cpu_time, run, thread_names, wait_for_cpu_time,
    LiveFixture, Outcome, RunningStoke,
};

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// Sampling frequency used by every recording: with the fixtures' 2.5 s of
/// CPU time it gives about 2,500 samples, enough for the share tolerances.
pub const HZ: &str = "999";

/// The `stoke` binary under test.
pub fn stoke_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stoke"))
}

/// `stoke` with stdin closed.
pub fn stoke() -> Command {
    let mut cmd = Command::new(stoke_path());
    cmd.stdin(std::process::Stdio::null());
    cmd
}

/// `stoke record` run in `dir` (so a default output lands there, not in the
/// repository).
pub fn stoke_record(dir: &Path) -> Command {
    let mut cmd = stoke();
    cmd.current_dir(dir).arg("record");
    cmd
}

/// A finished `stoke record` and the folded stacks it wrote.
pub struct Recording {
    /// Exit status and captured output of `stoke`.
    pub outcome: Outcome,
    /// The folded output.
    pub folded: Folded,
    /// The folder holding the output (and the recording's working folder).
    pub dir: TempDir,
}

impl Recording {
    /// The folded output file.
    pub fn folded_path(&self) -> PathBuf {
        self.dir.path().join("out.folded")
    }
}

/// Runs `stoke record -F 999 -o DIR/out.folded EXTRA -- COMMAND…`, asserts it
/// succeeded and reads the folded output.
pub fn record_command<S: AsRef<OsStr>>(extra: &[&str], command: &[S]) -> Recording {
    let dir = tempfile::tempdir().expect("temporary folder");
    let out = dir.path().join("out.folded");
    let mut cmd = stoke_record(dir.path());
    cmd.args(["-F", HZ, "-o"]).arg(&out).args(extra).arg("--");
    cmd.args(command);
    let outcome = run(&mut cmd);
    outcome.assert_success();
    let folded = Folded::read(&out);
    Recording {
        outcome,
        folded,
        dir,
    }
}

/// Asserts `outcome` is a clean stoke error: no panic, a non-zero exit code
/// (`code` when given), and a line on stderr starting `stoke: ` that contains
/// every one of `needles`.
pub fn assert_stoke_error(outcome: &Outcome, code: Option<i32>, needles: &[&str]) {
    outcome.assert_no_panic();
    let actual = outcome.status.code();
    assert!(
        actual.is_some_and(|c| c != 0),
        "expected a non-zero exit code, got {:?}\n{outcome}",
        outcome.status
    );
    if let Some(code) = code {
        assert_eq!(actual, Some(code), "exit code\n{outcome}");
    }
    let found = outcome
        .stderr
        .lines()
        .any(|line| line.starts_with("stoke: ") && needles.iter().all(|n| line.contains(n)));
    assert!(
        found,
        "expected a stderr line starting `stoke: ` containing {needles:?}\n{outcome}"
    );
}
