//! stoke's pprof output read by the reference reader, `go tool pprof`, where
//! Go is installed (Debian: golang-go). Skipped, saying so, where it is not.

mod common;

use std::process::Command;

use common::{c_fixture, find_in_path, run, stoke_record, Build, MeasuredSplit};

#[test]
fn go_tool_pprof_reads_the_profile_and_finds_the_hot_function() {
    let Some(go) = find_in_path("go") else {
        eprintln!("skipped: go is not installed (apt-get install golang-go)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let outcome = run(stoke_record(dir.path())
        .args(["-F", "999", "-o", "p.pb.gz", "--"])
        .arg(&fixture)
        .arg("1.5"));
    outcome.assert_success();
    let truth = MeasuredSplit::from_output(&outcome.stdout);
    let top = Command::new(go)
        .args(["tool", "pprof", "-top", "-nodecount=5"])
        .arg(dir.path().join("p.pb.gz"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "go tool pprof failed:\n{text}\n{}",
        String::from_utf8_lossy(&top.stderr)
    );
    assert!(text.contains("Type: cpu"), "{text}");
    // "  745.75ms 74.50% 74.50%   747.75ms 74.70%  hot"
    let hot_flat = text
        .lines()
        .find(|l| l.trim_end().ends_with(" hot"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.trim_end_matches('%').parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no `hot` row in:\n{text}"));
    assert!(
        (hot_flat / 100.0 - truth.hot).abs() <= 0.05,
        "pprof gives hot {hot_flat} %, the program measured {:.1} %\n{text}",
        truth.hot * 100.0
    );
}
