//! JIT code in the middle of a stack: native code called from code a runtime
//! generated into anonymous memory (no module, no CFI). `--unwind auto`
//! walks those frames by their frame pointers and goes back to CFI after.

mod common;

use common::{c_fixture, find_in_path, record_command, Build, LeftFiles, Recording, Stack};

fn skip(test: &str, why: &str) {
    eprintln!("{test}: skipped: {why}");
}

const JIT_FRAME: &str = "stoke_jit_trampoline_[j]";

#[test]
fn native_code_called_from_jit_code_unwinds_to_main() {
    // Without frame pointers in the native code: its frames need CFI, the
    // JIT frame needs its frame pointer.
    let fixture = c_fixture("jit_call", Build::NoFramePointers);
    let recording = record_command(&[], &[fixture.as_os_str(), "1".as_ref()]);
    let _left = LeftFiles::from_stdout(&recording.outcome.stdout);
    let folded = recording.folded.of_process("jit_call");
    let through = folded.count(|s| {
        let at = |name: &str| s.frames.iter().position(|f| f == name);
        match (at("main"), at(JIT_FRAME), at("hot_callback")) {
            (Some(main), Some(jit), Some(hot)) => main < jit && jit < hot,
            _ => false,
        }
    });
    assert!(
        through * 10 >= folded.total() * 9,
        "main -> {JIT_FRAME} -> hot_callback in {through} of {} samples\n{}",
        folded.total(),
        recording.outcome
    );
    // A sample may still land where no walk can succeed (the loader at
    // start, a JIT function before its frame pointer is set up): a trace.
    let truncated = truncated_share(&recording);
    assert!(
        truncated < 0.02,
        "{:.1} % truncated\n{}",
        truncated * 100.0,
        recording.outcome
    );
}

/// The share of samples whose stack ended truncated.
fn truncated_share(recording: &Recording) -> f64 {
    recording.folded.share(Stack::is_truncated)
}

#[test]
fn node_with_perf_basic_prof_gives_whole_stacks() {
    let Some(node) = find_in_path("node") else {
        return skip("node stacks", "node is not installed");
    };
    let script = "function inner(i) { return (i * i) % 7; }\n\
        function hotLoop(n) { let s = 0; for (let i = 0; i < n; i++) s += inner(i); return s; }\n\
        const end = Date.now() + 1500; let t = 0;\n\
        while (Date.now() < end) t += hotLoop(100000);\n\
        if (t < 0) console.log(t);\n";
    let recording = record_command(
        &[],
        &[
            node.as_os_str(),
            "--perf-basic-prof".as_ref(),
            "-e".as_ref(),
            script.as_ref(),
        ],
    );
    let _left = LeftFiles::perf_maps_from_stderr(&recording.outcome.stderr);
    // Before JIT frames were walked, 80-90 % of node's stacks ended at the
    // first JavaScript frame ("address outside any module").
    let truncated = truncated_share(&recording);
    assert!(
        truncated < 0.2,
        "{:.1} % of node's stacks truncated\n{}",
        truncated * 100.0,
        recording.outcome
    );
    // The hot JavaScript function is named, with native frames under it.
    let js = recording.folded.share(|s| {
        let hot = s.frames.iter().position(|f| f.contains("hotLoop"));
        let start = s
            .frames
            .iter()
            .position(|f| f == "node::Start(int, char**)");
        matches!((start, hot), (Some(start), Some(hot)) if start < hot)
    });
    assert!(
        js > 0.3,
        "hotLoop under node::Start in {:.1} % of samples\n{}",
        js * 100.0,
        recording.outcome
    );
    assert!(
        !recording.outcome.stderr.contains("JIT code"),
        "named JIT code needs no hint\n{}",
        recording.outcome
    );
}

#[test]
fn node_without_a_perf_map_is_told_how_to_name_its_javascript() {
    let Some(node) = find_in_path("node") else {
        return skip("node hint", "node is not installed");
    };
    let script = "const end = Date.now() + 1000; let s = 0;\n\
        while (Date.now() < end) for (let i = 0; i < 100000; i++) s += i % 7;\n\
        if (s < 0) console.log(s);\n";
    let recording = record_command(&[], &[node.as_os_str(), "-e".as_ref(), script.as_ref()]);
    // Most samples are in JavaScript, which has no names without a map.
    let unnamed = recording
        .folded
        .share(|s| s.user_leaf() == Some("[unknown]_[j]"));
    assert!(
        unnamed > 0.3,
        "{:.1} % unnamed JIT samples\n{}",
        unnamed * 100.0,
        recording.outcome
    );
    let hint = recording
        .outcome
        .stderr
        .lines()
        .find(|l| l.contains("JIT code of node that has no names"))
        .unwrap_or_else(|| panic!("no hint for unnamed JIT code\n{}", recording.outcome));
    assert!(hint.contains("--perf-basic-prof"), "{hint}");
    assert!(hint.starts_with("stoke: "), "{hint}");
}
