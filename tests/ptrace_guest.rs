//! The ptrace backend as a guest: what it must never do to the processes it
//! samples (make their calls fail, slow them down) and what it must say.

mod common;

use std::process::Command;

use common::{
    assert_unharmed, c_fixture, c_fixture_with_flags, record_command, run, stoke_record, Build,
    LiveFixture, HZ,
};

/// Records the running process `pid` for `seconds` with the ptrace backend.
fn record_pid(pid: i32, seconds: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let out = dir.path().join("out.folded");
    let mut cmd = stoke_record(dir.path());
    cmd.args(["--backend", "ptrace", "-F", HZ, "-d", seconds, "-o"])
        .arg(&out)
        .args(extra)
        .args(["-p", &pid.to_string()]);
    run(&mut cmd).assert_success();
}

#[test]
fn epoll_wait_never_fails_with_eintr_because_of_stoke() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let eintr = dir.path().join("eintr");
    let mut cmd = Command::new(c_fixture("epoll_wait", Build::FramePointers));
    cmd.arg(&eintr);
    let fixture = LiveFixture::spawn(cmd);
    let pid = fixture.pid();
    let failures = || std::fs::metadata(&eintr).map_or(0, |m| m.len());
    record_pid(pid, "1.5", &["--mode", "wall"]);
    let wall = failures();
    // CPU mode: each detach stops every thread once.
    for _ in 0..3 {
        record_pid(pid, "0.3", &[]);
    }
    let cpu = failures() - wall;
    assert_unharmed(pid);
    assert_eq!(
        (wall, cpu),
        (0, 0),
        "epoll_wait failed with EINTR {wall} times in wall mode, {cpu} times \
         over 3 CPU-mode attach/detach cycles (the process has no signal handler)"
    );
}

/// Of the samples in a library of `dlopen_loop`, how many are named for the
/// library loaded when they were taken (`caller_NN;so_work_NN`), and how
/// many for another.
fn library_names(folded: &common::Folded) -> (u64, u64) {
    let number = |frames: &[String], prefix: &str| {
        frames
            .iter()
            .find_map(|f| f.strip_prefix(prefix))
            .map(str::to_string)
    };
    let (mut right, mut wrong) = (0, 0);
    for stack in &folded.stacks {
        let (Some(caller), Some(library)) = (
            number(&stack.frames, "caller_"),
            number(&stack.frames, "so_work_"),
        ) else {
            continue;
        };
        if caller == library {
            right += stack.count;
        } else {
            wrong += stack.count;
        }
    }
    (right, wrong)
}

#[test]
fn libraries_loaded_in_turn_at_one_address_are_each_named_for_themselves() {
    let mut dir = None;
    for i in 0..40 {
        let name = format!("so_work_{i:02}.so");
        let define = format!("-DINDEX={i:02}");
        let lib = c_fixture_with_flags(
            "so_work",
            Build::FramePointers,
            &name,
            &["-shared", "-fPIC", &define],
        );
        dir = lib.parent().map(|d| d.to_path_buf());
    }
    let dir = dir.expect("a folder of libraries");
    let program = c_fixture("dlopen_loop", Build::FramePointers);
    let recording = record_command(
        &["--backend", "ptrace"],
        &[program.as_os_str(), dir.as_os_str()],
    );
    let (right, wrong) = library_names(&recording.folded);
    assert!(
        right + wrong >= 1000,
        "only {} samples in the libraries",
        right + wrong
    );
    let share = right as f64 / (right + wrong) as f64;
    assert!(
        share >= 0.95,
        "{right} library samples named for the library loaded then, {wrong} for another \
         ({:.1} % right)",
        share * 100.0
    );
}

/// `stoke record --backend ptrace -- PROGRAM`'s standard error.
fn launch_stderr(program: &std::path::Path) -> String {
    let dir = tempfile::tempdir().expect("temporary folder");
    let out = dir.path().join("out.folded");
    let mut cmd = stoke_record(dir.path());
    cmd.args(["--backend", "ptrace", "-o"])
        .arg(&out)
        .arg("--")
        .arg(program);
    let outcome = run(&mut cmd);
    outcome.assert_no_panic();
    outcome.stderr
}

#[test]
fn launching_a_setuid_program_or_one_that_calls_ptrace_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temporary folder");
    let setuid = dir.path().join("setuid_split");
    std::fs::copy(c_fixture("cpu_split", Build::FramePointers), &setuid).expect("copy");
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let stderr = launch_stderr(&setuid);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("stoke: warning: ") && l.contains("is setuid")),
        "{stderr}"
    );

    let tracer = c_fixture("calls_ptrace", Build::FramePointers);
    let stderr = launch_stderr(&tracer);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("stoke: warning: ") && l.contains("calls ptrace itself")),
        "{stderr}"
    );
    // A plain program gets no such warning.
    let plain = launch_stderr(&c_fixture("cpu_split", Build::FramePointers));
    assert!(
        !plain.contains("setuid") && !plain.contains("calls ptrace"),
        "{plain}"
    );
}

/// A wrapped program starting 200 threads runs on while they start (no
/// stop in each clone waiting for stoke), and every one of them is traced
/// and sampled: they all live at once for 2 s, blocked, and wall mode
/// samples every thread.
#[test]
fn a_program_starting_200_threads_has_each_sampled_and_exits_normally() {
    let program = c_fixture("many_threads", Build::FramePointers);
    let recording = record_command(
        &["--backend", "ptrace", "--mode", "wall", "--per-thread"],
        &[
            program.as_os_str(),
            "200".as_ref(),
            "5".as_ref(),
            "2000".as_ref(),
        ],
    );
    let stdout = &recording.outcome.stdout;
    assert!(
        stdout.contains("joined 200 threads"),
        "the program did not finish normally: {stdout}"
    );
    if let Some(line) = stdout.lines().find(|l| l.starts_with("started")) {
        eprintln!("under ptrace: {line}");
    }
    let threads: std::collections::BTreeSet<&str> = recording
        .folded
        .stacks
        .iter()
        .filter_map(|s| s.frames.get(1))
        .filter_map(|t| t.strip_prefix("t-"))
        .filter_map(|t| t.split('-').next())
        .collect();
    assert_eq!(
        threads.len(),
        200,
        "only {} of the 200 threads were sampled",
        threads.len()
    );
}
