//! Checks of the test harness itself that need no working `stoke`: the
//! fixtures build, print their truth, and the live fixture protocol works.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    assert_unharmed, c_fixture, rust_fixture, thread_names, wait_for_cpu_time, Build, Folded,
    LiveFixture, MeasuredSplit,
};

#[test]
fn cpu_split_measures_about_three_quarters_in_hot() {
    for build in [Build::FramePointers, Build::NoFramePointers] {
        let output = Command::new(c_fixture("cpu_split", build))
            .arg("0.3")
            .output()
            .unwrap();
        assert!(output.status.success());
        let split = MeasuredSplit::from_output(&String::from_utf8_lossy(&output.stdout));
        assert!((0.6..0.9).contains(&split.hot), "{split:?}");
        assert!((split.hot + split.cold - 1.0).abs() < 0.001, "{split:?}");
    }
}

#[test]
fn rust_spin_measures_about_three_quarters_in_hot() {
    let output = Command::new(rust_fixture("rust-spin"))
        .arg("0.3")
        .output()
        .unwrap();
    assert!(output.status.success());
    let split = MeasuredSplit::from_output(&String::from_utf8_lossy(&output.stdout));
    assert!((0.6..0.9).contains(&split.hot), "{split:?}");
}

#[test]
fn batch_fixtures_run_to_completion() {
    for (source, build) in [
        ("recurse", Build::FramePointers),
        ("recurse", Build::NoFramePointers),
        ("qsort_cmp", Build::FramePointers),
        ("qsort_cmp", Build::NoFramePointers),
    ] {
        let status = Command::new(c_fixture(source, build))
            .arg("0.1")
            .status()
            .unwrap();
        assert!(status.success(), "{source} {build:?}");
    }
}

#[test]
fn threads_fixture_names_its_workers_and_keeps_them_busy() {
    let fixture = LiveFixture::spawn(Command::new(c_fixture("threads", Build::FramePointers)));
    let pid = fixture.pid();
    let mut names: Vec<String> = thread_names(pid).into_iter().map(|(_, n)| n).collect();
    names.sort();
    assert_eq!(names, ["threads", "worker-1", "worker-2", "worker-3"]);
    wait_for_cpu_time(pid, Duration::from_millis(100));
    assert_unharmed(pid);
}

#[test]
fn folded_parser_reads_stacks_counts_and_kernel_frames() {
    let folded = Folded::parse("p;main;hot 3\np;main;cold 1\np;main;hot;irq_[k] 1\n");
    assert_eq!(folded.total(), 5);
    assert_eq!(folded.split("hot", "cold"), (0.8, 5));
    assert_eq!(folded.stacks[2].user_leaf(), Some("hot"));
    assert_eq!(folded.roots().into_iter().collect::<Vec<_>>(), ["p"]);
}
