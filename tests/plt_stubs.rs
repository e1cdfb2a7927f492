//! End-to-end tests of PLT stubs: samples on a stub read `TARGET@plt`,
//! never `_init` (the size-0 symbol before `.plt`, which used to be
//! stretched over it).

mod common;

use std::process::Command;

use common::{c_fixture_with_flags, find_in_path, record_command, Build, Folded};

fn skip(test: &str, why: &str) {
    eprintln!("{test}: skipped: {why}");
}

/// Samples whose user leaf is `name`.
fn leaf_count(folded: &Folded, name: &str) -> u64 {
    folded.count(|s| s.user_leaf() == Some(name))
}

/// `_init` (the size-0 symbol at the end of `.init`, just before `.plt`)
/// appears only where it really runs: called by the dynamic linker's
/// `call_init` while a program starts (`.init` has no call frame
/// information, so a sample in it may also end its stack as truncated).
/// Under any other caller it is a PLT stub misnamed.
fn assert_no_init_stretched_over_the_plt(folded: &Folded) {
    for stack in &folded.stacks {
        for (i, frame) in stack.frames.iter().enumerate() {
            let caller = i.checked_sub(1).map(|c| stack.frames[c].as_str());
            let runs = caller.is_some_and(|c| {
                matches!(c, "call_init" | "_dl_init") || c.starts_with("[truncated")
            });
            assert!(frame != "_init" || runs, "{stack:?}");
        }
    }
}

/// Names of every frame of `folded`, with their sample counts.
fn frame_counts(folded: &Folded) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for stack in &folded.stacks {
        for frame in &stack.frames {
            *counts.entry(frame.clone()).or_default() += stack.count;
        }
    }
    counts
}

#[test]
fn samples_on_plt_stubs_are_named_for_the_called_function() {
    // -fno-builtin keeps the calls to labs(); plain lazy binding (.plt).
    let fixture = c_fixture_with_flags(
        "plt_calls",
        Build::FramePointers,
        "plt_calls",
        &["-fno-builtin"],
    );
    let recording = record_command(&[], &[fixture.as_os_str(), "0.5".as_ref()]);
    let folded = recording.folded.of_process("plt_calls");
    let counts = frame_counts(&folded);
    assert_no_init_stretched_over_the_plt(&folded);
    // The stub's share depends on the CPU (a few per cent here: 4.0 % to
    // 8 % over runs); unnamed or misnamed it would be none.
    let stub = leaf_count(&folded, "labs@plt");
    assert!(
        stub * 100 >= folded.total(),
        "labs@plt is the leaf of {stub} of {} samples\n{}",
        folded.total(),
        recording.outcome
    );
    assert!(
        counts.keys().all(|f| !f.starts_with("plt_calls+0x")),
        "{counts:?}"
    );
}

/// The README's first example: CPython calls much of its own API through
/// its PLT (a shared libpython), and those samples read `…@plt`, never
/// `_init`.
#[test]
fn the_readmes_python_example_names_plt_stubs() {
    let Some(python) = find_in_path("python3") else {
        return skip("python3", "python3 is not installed");
    };
    let recording = record_command(
        &[],
        &[
            python.as_os_str(),
            "-c".as_ref(),
            "sum(i * i for i in range(20_000_000))".as_ref(),
        ],
    );
    let counts = frame_counts(&recording.folded);
    assert_no_init_stretched_over_the_plt(&recording.folded);
    let shared = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('Py_ENABLE_SHARED'))",
        ])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "1");
    if !shared {
        return skip(
            "python @plt frames",
            "this python3 links libpython statically: its calls need no PLT",
        );
    }
    assert!(counts.keys().any(|f| f.ends_with("@plt")), "{counts:?}");
}
