//! The ptrace backend as a guest: what it must never do to the processes it
//! samples (make their calls fail, slow them down) and what it must say.

mod common;

use std::process::Command;

use common::{assert_unharmed, c_fixture, run, stoke_record, Build, LiveFixture, HZ};

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
