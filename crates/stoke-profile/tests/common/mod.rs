//! Shared test helpers: a small hand-built profile and golden files.

#![allow(dead_code)] // each test binary uses a subset

use std::path::PathBuf;
use std::time::Duration;

use stoke_profile::{Frame, FrameKind, Metadata, Profile, Thread};

/// A profile with user, inline, kernel, JIT and marker frames on two threads
/// of one process, plus a frame name containing `;`.
pub fn sample_profile() -> Profile {
    let mut p = Profile::new(Metadata {
        command: "./fixture --spin".into(),
        frequency: 999,
        duration: Duration::from_millis(3020),
        event: "cpu-clock".into(),
        lost: 2,
        truncated: 3,
        ..Metadata::default()
    });
    let main_thread = p.intern_thread(Thread {
        pid: 100,
        tid: 100,
        process_name: Some("fixture".into()),
        thread_name: Some("fixture".into()),
    });
    let worker = p.intern_thread(Thread {
        pid: 100,
        tid: 101,
        process_name: Some("fixture".into()),
        thread_name: Some("worker".into()),
    });
    add(
        &mut p,
        main_thread,
        &[
            ("_start", FrameKind::User),
            ("main", FrameKind::User),
            ("compute", FrameKind::User),
            ("helper", FrameKind::Inline),
        ],
        50,
    );
    add(
        &mut p,
        main_thread,
        &[
            ("_start", FrameKind::User),
            ("main", FrameKind::User),
            ("compute", FrameKind::User),
        ],
        7,
    );
    add(
        &mut p,
        main_thread,
        &[
            ("_start", FrameKind::User),
            ("main", FrameKind::User),
            ("write", FrameKind::User),
            ("entry_SYSCALL_64", FrameKind::Kernel),
            ("do_syscall_64", FrameKind::Kernel),
        ],
        20,
    );
    add(
        &mut p,
        main_thread,
        &[
            ("[truncated: stack copy too small]", FrameKind::Marker),
            ("compute", FrameKind::User),
        ],
        3,
    );
    add(
        &mut p,
        worker,
        &[
            ("start_thread", FrameKind::User),
            ("worker_main", FrameKind::User),
            ("<alloc::vec::Vec<[u8; 8]>>::push", FrameKind::User),
        ],
        10,
    );
    add(
        &mut p,
        worker,
        &[
            ("start_thread", FrameKind::User),
            ("worker_main", FrameKind::User),
            ("Interpreter.run", FrameKind::Jit),
        ],
        5,
    );
    p
}

/// Adds `count` samples of a stack given by (name, kind), root first.
pub fn add(
    p: &mut Profile,
    thread: stoke_profile::ThreadId,
    frames: &[(&str, FrameKind)],
    count: u64,
) {
    let ids: Vec<_> = frames
        .iter()
        .map(|&(name, kind)| p.intern_frame(Frame::new(name, kind)))
        .collect();
    let stack = p.intern_stack(&ids).expect("non-empty stack");
    p.add_sample(thread, stack, count);
}

/// Compares `actual` with `tests/golden/{name}`; with `STOKE_BLESS=1` in the
/// environment, (re)writes the golden file instead.
pub fn assert_golden(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("STOKE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}; run with STOKE_BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let expected = String::from_utf8_lossy(&expected);
        let actual = String::from_utf8_lossy(actual);
        let first_diff = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             (run with STOKE_BLESS=1 to accept the new output)",
            path.display(),
            first_diff + 1,
            expected.lines().nth(first_diff),
            actual.lines().nth(first_diff),
        );
    }
}
