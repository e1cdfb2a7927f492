//! Signals while addresses are named: the first ends naming and the outputs
//! are written with what is named so far (the rest as `module+0xoffset`);
//! the next exits at once. Naming is slowed deterministically with a test
//! hook (a long pause before each module), so without the fix stoke would
//! sit in naming for minutes; no time is asserted.

mod common;

use common::{c_fixture, stoke_record, Build, Folded, RunningStoke, HZ};
use nix::sys::signal::Signal;

/// Long enough that waiting it out is not what ends the test.
const SLOW_MS: &str = "600000";

fn slow_naming(dir: &std::path::Path) -> RunningStoke {
    let out = dir.join("out.folded");
    let mut cmd = stoke_record(dir);
    cmd.env("STOKE_TEST_SLOW_NAMING_MS", SLOW_MS)
        .args(["-F", HZ, "-d", "1", "-o"])
        .arg(&out)
        .arg("--")
        .arg(c_fixture("cpu_split", Build::FramePointers));
    let mut stoke = RunningStoke::spawn(&mut cmd);
    stoke.wait_for_stderr_line("stoke: naming");
    stoke
}

#[test]
fn a_signal_while_naming_writes_the_profile_with_module_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let stoke = slow_naming(dir.path());
    stoke.signal(Signal::SIGINT);
    let outcome = stoke.finish();
    outcome.assert_success();
    let folded = Folded::read(&dir.path().join("out.folded"));
    assert!(folded.total() > 0, "no samples written\n{outcome}");
    assert!(
        folded.count(|s| s.frames.iter().any(|f| f.starts_with("cpu_split+0x"))) > 0,
        "no frame named by module and offset\n{outcome}"
    );
    assert!(
        outcome.stderr.contains("naming interrupted"),
        "the interruption is not reported\n{outcome}"
    );
}

#[test]
fn a_second_signal_while_naming_exits_at_once_leaving_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let stoke = slow_naming(dir.path());
    stoke.signal(Signal::SIGINT);
    stoke.signal(Signal::SIGTERM);
    let outcome = stoke.finish();
    assert!(!outcome.status.success(), "{outcome}");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".stoke-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}\n{outcome}");
}
