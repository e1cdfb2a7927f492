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

fn module<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["modules"]
        .as_array()
        .expect("a modules array")
        .iter()
        .find(|m| m["path"].as_str().is_some_and(|p| p.ends_with(name)))
        .unwrap_or_else(|| panic!("no module {name} in {report:#}"))
}

#[test]
fn doctor_on_a_command_tells_frame_pointers_and_stripped_binaries_apart() {
    let with_fp = c_fixture("cpu_split", Build::FramePointers);
    let without_fp = c_fixture("cpu_split", Build::NoFramePointers);
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("cpu_split_stripped");
    std::fs::copy(&without_fp, &stripped).unwrap();
    assert!(Command::new("strip")
        .arg(&stripped)
        .status()
        .unwrap()
        .success());

    let report_of = |program: &std::path::Path| {
        let outcome = run(stoke().args(["doctor", "--json", "--"]).arg(program));
        outcome.assert_success();
        serde_json::from_str::<Value>(&outcome.stdout).unwrap()
    };
    let fp = report_of(&with_fp);
    let fp = module(&fp, "fp/cpu_split");
    assert_eq!(fp["frame_pointers"], true, "{fp}");
    assert_eq!(fp["names"], "symtab", "{fp}");
    assert_eq!(fp["cfi"], ".eh_frame", "{fp}");
    assert_eq!(fp["status"], "ok", "{fp}");

    let nofp = report_of(&without_fp);
    assert_eq!(module(&nofp, "nofp/cpu_split")["frame_pointers"], false);

    let report = report_of(&stripped);
    let bare = module(&report, "cpu_split_stripped");
    assert_eq!(bare["names"], "none", "{bare}");
    assert_eq!(bare["status"], "warn", "{bare}");
    assert!(bare["fix"].is_string(), "{bare}");
    // libc comes with it, as the loader would map it.
    assert!(
        report["modules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["path"].as_str().is_some_and(|p| p.contains("libc.so"))),
        "{report:#}"
    );
}

#[test]
fn doctor_on_a_running_process_checks_its_mapped_binaries_and_runtime() {
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let mut child = Command::new(&fixture)
        .arg("30")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The exec is done once /proc shows the fixture as the executable.
    let exe = std::fs::canonicalize(&fixture).unwrap();
    while std::fs::read_link(format!("/proc/{}/exe", child.id())).ok() != Some(exe.clone()) {
        std::thread::yield_now();
    }
    let outcome = run(stoke().args(["doctor", "--json", "-p", &child.id().to_string()]));
    child.kill().unwrap();
    child.wait().unwrap();
    outcome.assert_success();
    let report: Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(module(&report, "cpu_split")["frame_pointers"], true);

    // Debian's python3 is recognised as CPython.
    if std::path::Path::new("/usr/bin/python3.11").exists() {
        let outcome =
            run(stoke().args(["doctor", "--json", "--", "/usr/bin/python3.11", "-c", "1"]));
        outcome.assert_success();
        let report: Value = serde_json::from_str(&outcome.stdout).unwrap();
        let python = report["runtimes"]
            .as_array()
            .and_then(|r| r.iter().find(|h| h["id"] == "python"))
            .unwrap_or_else(|| panic!("no python hint\n{report:#}"));
        assert!(
            python["summary"].as_str().unwrap().contains("CPython 3.11"),
            "{python}"
        );
    } else {
        eprintln!("skipped the python part: no /usr/bin/python3.11");
    }
}
