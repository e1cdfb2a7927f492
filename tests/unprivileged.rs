//! stoke run as an unprivileged user (nobody, through `setpriv`): what it
//! cannot sample is said where the numbers are read, and refusals name
//! their real cause.
//!
//! Needs root (to drop to nobody) and `setpriv`; the kernel-time test also
//! needs `perf_event_paranoid` 2 or more. Each test says on stderr why it
//! skips.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{c_fixture, run, stoke_path, Build};

const NOBODY: &str = "65534";

/// Why these tests cannot run here, if they cannot.
fn cannot_drop_privileges() -> Option<String> {
    if nix::unistd::geteuid().as_raw() != 0 {
        return Some("not root: cannot run stoke as another user".into());
    }
    let probe = Command::new("setpriv").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return Some("setpriv is not installed".into());
    }
    None
}

/// A folder nobody can read and enter, holding a copy of stoke and of the
/// given fixtures (mode 0755), with `out/` writable by everyone.
fn staging(fixtures: &[&Path]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let stoke = dir.path().join("stoke");
    for (from, to) in std::iter::once((stoke_path(), stoke.clone())).chain(
        fixtures
            .iter()
            .map(|f| (f.to_path_buf(), dir.path().join(f.file_name().unwrap()))),
    ) {
        std::fs::copy(&from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    (dir, stoke)
}

/// `setpriv` running `program` as nobody, in `dir`.
fn as_nobody(dir: &Path, program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(program)
        .current_dir(dir);
    cmd
}

fn paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn user_time_only_is_said_in_the_summary_svg_and_pprof() {
    if let Some(why) = cannot_drop_privileges() {
        eprintln!("skipped: {why}");
        return;
    }
    let Some(level @ 2..) = paranoid() else {
        eprintln!("skipped: perf_event_paranoid is below 2, so nobody samples the kernel too");
        return;
    };
    let fixture = c_fixture("syscalls", Build::FramePointers);
    let (dir, stoke) = staging(&[&fixture]);
    let outcome = run(as_nobody(dir.path(), &stoke).args([
        "record",
        "-o",
        "out/x.svg",
        "-o",
        "out/x.pb.gz",
        "--",
        "./syscalls",
        "1",
    ]));
    outcome.assert_success();
    let expected = format!(
        "stoke: user time only: time in the kernel is not sampled \
         (perf_event_paranoid={level}; see `stoke doctor`)"
    );
    assert!(
        outcome.stderr.lines().any(|l| l == expected),
        "{expected}\n{outcome}"
    );
    // Nearly all of the fixture's time is in read(2): most samples due are
    // missing, and the summary says why.
    assert!(
        outcome.stderr.lines().any(
            |l| l.contains("were expected") && l.ends_with("time in the kernel is not sampled")
        ),
        "{outcome}"
    );
    let svg = std::fs::read_to_string(dir.path().join("out/x.svg")).unwrap();
    assert!(
        svg.contains("; user time only: time in the kernel is not sampled"),
        "the SVG subtitle does not say it"
    );
    let gz = std::fs::read(dir.path().join("out/x.pb.gz")).unwrap();
    let mut pb = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut pb)
        .unwrap();
    let text = String::from_utf8_lossy(&pb);
    assert!(
        text.contains("stoke:sampled=user (user time only"),
        "the pprof comments do not say it"
    );
}

#[test]
fn another_users_process_is_refused_for_that_reason() {
    if let Some(why) = cannot_drop_privileges() {
        eprintln!("skipped: {why}");
        return;
    }
    let (dir, stoke) = staging(&[]);
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let outcome = run(as_nobody(dir.path(), &stoke).args([
        "record",
        "-p",
        &pid,
        "-d",
        "1",
        "-o",
        "out/x.svg",
    ]));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    common::assert_stoke_error(
        &outcome,
        Some(1),
        &[
            "it belongs to another user (uid 0)",
            "run stoke as that user or as root",
        ],
    );
    assert!(
        !outcome.stderr.contains("ptrace_scope"),
        "the ptrace fallback's advice replaced the real cause\n{outcome}"
    );
}

#[test]
fn all_cpus_is_refused_with_what_it_needs() {
    if let Some(why) = cannot_drop_privileges() {
        eprintln!("skipped: {why}");
        return;
    }
    let Some(level @ 1..) = paranoid() else {
        eprintln!("skipped: perf_event_paranoid is 0 or below, so nobody may record every CPU");
        return;
    };
    let (dir, stoke) = staging(&[]);
    let outcome =
        run(as_nobody(dir.path(), &stoke).args(["record", "-a", "-d", "1", "-o", "out/x.folded"]));
    common::assert_stoke_error(
        &outcome,
        Some(1),
        &[
            "perf_event_paranoid <= 0, CAP_PERFMON or root",
            &format!("perf_event_paranoid is {level}"),
        ],
    );
}

#[test]
fn several_of_ones_own_pids_are_recorded_with_per_task_events() {
    if let Some(why) = cannot_drop_privileges() {
        eprintln!("skipped: {why}");
        return;
    }
    let Some(1..) = paranoid() else {
        eprintln!("skipped: perf_event_paranoid is 0 or below, so nobody gets per-CPU events");
        return;
    };
    let one = common::c_fixture_named("threads", Build::FramePointers, "own_one");
    let two = common::c_fixture_named("threads", Build::FramePointers, "own_two");
    let (dir, stoke) = staging(&[&one, &two]);
    let spawn = |name: &str| {
        let mut cmd = as_nobody(dir.path(), &dir.path().join(name));
        cmd.arg("1");
        common::LiveFixture::spawn(cmd)
    };
    let (a, b) = (spawn("own_one"), spawn("own_two"));
    let pids = format!("{},{}", a.pid(), b.pid());
    let outcome = run(as_nobody(dir.path(), &stoke).args([
        "record",
        "-p",
        &pids,
        "-d",
        "1.5",
        "-o",
        "out/x.folded",
    ]));
    outcome.assert_success();
    let folded = common::Folded::read(&dir.path().join("out/x.folded"));
    let roots: Vec<&str> = folded.roots().into_iter().collect();
    assert_eq!(roots, ["own_one", "own_two"], "{outcome}");
    assert!(
        outcome.stderr.contains("per-task events on each process"),
        "{outcome}"
    );
}
