//! Programs nobody here wrote, as Debian ships them: stripped, without frame
//! pointers. Their stacks must still reach libc's start function (their own
//! `main` has no symbol). perf's DWARF mode reaches it in 98.7–99.8 % of
//! samples on these programs; stoke must do at least as well.

mod common;

use std::path::PathBuf;

use common::{find_in_path, record_command, Folded};

/// A whole stack of a dynamically linked program starts in libc's start
/// function, or, while the program is being loaded, in the loader's.
const ROOTS: [&str; 2] = ["__libc_start_call_main", "_dl_start"];

fn system_program(name: &str) -> Option<PathBuf> {
    let path = find_in_path(name);
    if path.is_none() {
        eprintln!("skipped: {name} is not installed");
    }
    path
}

fn assert_whole_stacks(folded: &Folded, program: &str, min_samples: u64) {
    let total = folded.total();
    assert!(total >= min_samples, "only {total} samples of {program}");
    let whole = |s: &common::Stack| ROOTS.iter().any(|root| s.contains(root)) && !s.is_truncated();
    let reach = folded.share(whole);
    let mut broken: Vec<_> = folded.stacks.iter().filter(|s| !whole(s)).collect();
    broken.sort_by_key(|s| std::cmp::Reverse(s.count));
    let examples: Vec<String> = broken
        .iter()
        .take(8)
        .map(|s| format!("{} {}", s.frames.join(";"), s.count))
        .collect();
    assert!(
        reach >= 0.99,
        "only {:.2} % of {program}'s samples reach {ROOTS:?}; the others:\n{}",
        reach * 100.0,
        examples.join("\n")
    );
}

#[test]
fn python3_pure_python_loop_stacks_reach_libc_start() {
    let Some(python) = system_program("python3") else {
        return;
    };
    // Resolve a shim (pyenv) to the real interpreter's process name.
    let script = "import sys; sum(i * i for i in range(12_000_000)); print(sys.executable)";
    let recording = record_command(&[], &[python.as_os_str(), "-c".as_ref(), script.as_ref()]);
    let exe = recording.outcome.stdout.trim().to_string();
    let name: String = std::path::Path::new(&exe)
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(15).collect())
        .unwrap_or_default();
    let folded = recording.folded.of_process(&name);
    assert_whole_stacks(&folded, &name, 500);
}

#[test]
fn xz_compressing_generated_data_stacks_reach_libc_start() {
    let Some(xz) = system_program("xz") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    // Compressible but not trivial: lines of counters and a small LCG's words.
    let mut text = String::new();
    let mut x: u32 = 12345;
    for i in 0..120_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        text.push_str(&format!(
            "{i:08} event={} level={} value={}\n",
            x % 97,
            x % 5,
            x >> 8
        ));
    }
    std::fs::write(&input, text).unwrap();
    let recording = record_command(
        &[],
        &[
            xz.as_os_str(),
            "-9".as_ref(),
            "-T1".as_ref(),
            "-k".as_ref(),
            "-f".as_ref(),
            input.as_os_str(),
        ],
    );
    let folded = recording.folded.of_process("xz");
    assert_whole_stacks(&folded, "xz", 500);
}
