//! End-to-end tests of unwinding without frame pointers (DWARF CFI): the
//! fixtures' own code built with `-fomit-frame-pointer`, callbacks from
//! libc (built without frame pointers), deep recursion, and a Rust release
//! build. Same tolerances as `record.rs`: n ≥ 1,500, 5 points ≈ 4.5σ.

mod common;

use common::{c_fixture, record_command, rust_fixture, Build, MeasuredSplit, Stack};

const MIN_SAMPLES: u64 = 1500;

#[test]
fn hot_share_matches_the_measured_split_without_frame_pointers() {
    let recording = record_command(&[], &[c_fixture("cpu_split", Build::NoFramePointers)]);
    let truth = MeasuredSplit::from_output(&recording.outcome.stdout);
    let folded = recording.folded.of_process("cpu_split");
    let (hot, samples) = folded.split("hot", "cold");
    assert!(
        samples >= MIN_SAMPLES,
        "only {samples} samples in hot or cold"
    );
    assert!(
        (hot - truth.hot).abs() <= 0.05,
        "hot has {:.1} % of samples, the program measured {:.1} %",
        hot * 100.0,
        truth.hot * 100.0
    );
    let reach = folded.share_containing("main");
    assert!(
        reach >= 0.99,
        "only {:.1} % of samples reach main",
        reach * 100.0
    );
}

#[test]
fn recursion_100_deep_is_unwound_frame_by_frame_to_main() {
    let recording = record_command(&[], &[c_fixture("recurse", Build::NoFramePointers)]);
    let in_leaf = recording
        .folded
        .of_process("recurse")
        .filter(|s| s.contains("leaf"));
    assert!(
        in_leaf.total() >= MIN_SAMPLES,
        "only {} samples in leaf",
        in_leaf.total()
    );
    let complete = in_leaf.share(|s| s.occurrences("level") == 100 && s.contains("main"));
    assert!(
        complete >= 0.99,
        "only {:.1} % of samples in leaf have 100 `level` frames under main",
        complete * 100.0
    );
}

#[test]
fn comparator_called_back_by_libc_qsort_reaches_main() {
    // Built with frame pointers: only libc's own frames need CFI.
    let recording = record_command(&[], &[c_fixture("qsort_cmp", Build::FramePointers)]);
    let in_compare = recording
        .folded
        .of_process("qsort_cmp")
        .filter(|s| s.contains("compare_keys"));
    assert!(
        in_compare.total() >= MIN_SAMPLES,
        "only {} samples in compare_keys",
        in_compare.total()
    );
    let reach = in_compare.share_containing("main");
    assert!(
        reach >= 0.99,
        "only {:.1} % of comparator samples reach main",
        reach * 100.0
    );
}

#[test]
fn rust_release_build_without_frame_pointers_has_the_measured_split() {
    let recording = record_command(&[], &[rust_fixture("rust-spin")]);
    let truth = MeasuredSplit::from_output(&recording.outcome.stdout);
    let folded = recording.folded.of_process("rust_spin");
    // Contains, not leaf: std's inlined helpers (wrapping_mul, …) may be
    // reported as inline frames above `hot`.
    let (hot, samples) = folded.split("rust_spin::hot", "rust_spin::cold");
    assert!(
        samples >= MIN_SAMPLES,
        "only {samples} samples in hot or cold"
    );
    assert!(
        (hot - truth.hot).abs() <= 0.05,
        "hot has {:.1} % of samples, the program measured {:.1} %",
        hot * 100.0,
        truth.hot * 100.0
    );
    let in_ours = folded.filter(|s| s.contains("rust_spin::hot") || s.contains("rust_spin::cold"));
    let reach = in_ours.share_containing("rust_spin::main");
    assert!(
        reach >= 0.99,
        "only {:.1} % reach rust_spin::main",
        reach * 100.0
    );
}

#[test]
fn a_shell_starting_commands_has_whole_stacks_through_vfork_and_execve() {
    // dash runs each command by vfork then execve: glibc's __vfork keeps its
    // return address in a register across the syscall, and a sample inside
    // execve has the old program's registers with the new one's mappings.
    let recording = record_command(
        &[],
        &[
            "/bin/sh",
            "-c",
            "i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done",
        ],
    );
    let folded = &recording.folded;
    let forking = folded.filter(|s| s.contains("__vfork"));
    assert!(
        forking.total() > 0,
        "no sample in vfork\n{}",
        recording.outcome
    );
    assert_eq!(forking.count(Stack::is_truncated), 0, "{forking:#?}");
    let execs = folded.filter(|s| s.root() == "true" && s.contains("__x64_sys_execve_[k]"));
    assert_eq!(execs.count(Stack::is_truncated), 0, "{execs:#?}");
    // What is left: a stack copy cut short by a page not yet faulted in as
    // a program starts, and similar rare cases.
    let share = folded.share(Stack::is_truncated);
    assert!(
        share < 0.05,
        "{:.1} % truncated\n{}",
        share * 100.0,
        recording.outcome
    );
}
