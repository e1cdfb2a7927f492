//! `stoke doctor`: the machine's real settings, the fallback under a seccomp
//! filter, JSON for scripts.

mod common;

use std::process::Command;

use common::{c_fixture, run, stoke, stoke_path, Build};
use serde_json::Value;

fn doctor_json(prefix: &[&std::ffi::OsStr]) -> (Value, common::Outcome) {
    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(stoke_path());
            cmd
        }
        None => stoke(),
    };
    let outcome = run(cmd.args(["doctor", "--json"]));
    outcome.assert_no_panic();
    let json: Value = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON: {e}\n{outcome}"));
    (json, outcome)
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("a checks array")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

#[test]
fn doctor_reports_this_machines_settings_and_exits_zero() {
    let outcome = run(stoke().arg("doctor"));
    outcome.assert_success();
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .unwrap()
        .trim()
        .to_string();
    let line = outcome
        .stdout
        .lines()
        .find(|l| l.contains("perf_event_paranoid "))
        .unwrap_or_else(|| panic!("no perf_event_paranoid line\n{outcome}"));
    assert!(
        line.contains(&format!(" {paranoid}")),
        "the line does not give the level {paranoid}: {line}"
    );

    let (report, outcome) = doctor_json(&[]);
    assert_eq!(
        check(&report, "perf_event_paranoid")["value"].to_string(),
        paranoid,
        "{outcome}"
    );
    assert_eq!(report["can_sample"], true, "{report:#}");
    // This machine's PMU, as the kernel lists it, is what doctor reports.
    let pmu = ["cpu", "cpu_core", "cpu_atom"].iter().any(|d| {
        std::path::Path::new("/sys/bus/event_source/devices")
            .join(d)
            .exists()
    });
    let summary = check(&report, "hardware_pmu")["summary"]
        .as_str()
        .unwrap()
        .to_string();
    if !pmu {
        assert!(
            summary.contains("no hardware PMU") && summary.contains("cpu-clock"),
            "{summary}"
        );
    }
    for c in report["checks"].as_array().unwrap() {
        assert!(
            ["ok", "warn", "fail"].contains(&c["status"].as_str().unwrap_or("")),
            "{c}"
        );
    }
}

#[test]
fn under_a_seccomp_filter_doctor_names_it_and_the_ptrace_fallback() {
    let no_perf = c_fixture("no_perf", Build::FramePointers);
    for errno in ["EPERM", "ENOSYS"] {
        let (report, outcome) = doctor_json(&[no_perf.as_os_str(), errno.as_ref()]);
        assert_eq!(outcome.status.code(), Some(0), "{outcome}");
        let perf = check(&report, "perf_event_open");
        assert_eq!(perf["status"], "fail", "{perf}");
        let summary = perf["summary"].as_str().unwrap();
        assert!(
            summary.contains(errno) && summary.contains("seccomp") && summary.contains("ptrace"),
            "{summary}"
        );
        assert!(perf["fix"].is_string(), "{perf}");
        assert_eq!(report["backend"], "ptrace", "{report:#}");
    }
}

#[test]
fn as_a_plain_user_at_paranoid_2_doctor_says_kernel_time_is_not_sampled() {
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let Some(setpriv) = common::find_in_path("setpriv").filter(|_| root && paranoid == 2) else {
        eprintln!("skipped: needs root with setpriv and perf_event_paranoid=2 (it is {paranoid})");
        return;
    };
    // A copy nobody can run.
    let dir = tempfile::Builder::new()
        .prefix("stoke-doctor-")
        .tempdir_in("/tmp")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("stoke");
    assert!(Command::new("cp")
        .arg(stoke_path())
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let outcome = run(Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .args(["doctor", "--json"]));
    outcome.assert_success();
    let report: Value = serde_json::from_str(&outcome.stdout).unwrap();
    let kernel = check(&report, "kernel_frames");
    assert_eq!(kernel["status"], "warn", "{kernel}");
    assert!(
        kernel["summary"].as_str().unwrap().contains("not sampled"),
        "{kernel}"
    );
    assert_eq!(check(&report, "whole_machine")["status"], "warn");
    assert_eq!(check(&report, "perf_event_paranoid")["status"], "warn");
}
