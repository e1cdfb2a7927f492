//! Habits users bring from perf, py-spy and cargo-flamegraph: a command
//! without `--`, `-r`, `-g`, `--open`, shell completions and a man page.

mod common;

use std::process::Command;

use common::{c_fixture, find_in_path, run, stoke, stoke_record, Build, Folded};

#[test]
fn a_command_needs_no_double_dash_and_keeps_its_own_options() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let outcome = run(stoke_record(dir.path())
        .args(["-o", "out.folded"])
        .arg(&fixture)
        .arg("0.3"));
    outcome.assert_success();
    let folded = Folded::read(&dir.path().join("out.folded"));
    assert!(folded.of_process("cpu_split").total() > 0, "{outcome}");

    // Options after the program are the program's: `-c` is sh's, and its
    // status comes back as stoke's.
    let outcome = run(stoke_record(dir.path()).args(["-o", "x.folded", "sh", "-c", "exit 3"]));
    outcome.assert_no_panic();
    assert_eq!(outcome.status.code(), Some(3), "{outcome}");
}

#[test]
fn rate_is_an_alias_of_frequency_and_g_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let outcome = run(stoke_record(dir.path())
        .args(["-g", "-r", "499", "-o", "out.folded", "--"])
        .arg(&fixture)
        .arg("0.2"));
    outcome.assert_success();
    assert!(
        outcome.stderr.contains("at 499 Hz"),
        "-r did not set the rate\n{outcome}"
    );
    assert!(
        outcome.stderr.contains("-g is not needed"),
        "no note about -g\n{outcome}"
    );
}

#[test]
fn open_without_a_display_says_where_the_flame_graph_is() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let outcome = run(stoke_record(dir.path())
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .args(["--open", "-o", "flame.svg", "--"])
        .arg(&fixture)
        .arg("0.2"));
    outcome.assert_success();
    let svg = std::fs::canonicalize(dir.path().join("flame.svg")).unwrap();
    assert!(
        outcome
            .stderr
            .contains(&format!("file://{}", svg.display())),
        "{outcome}"
    );
}

#[test]
fn completions_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let outcome = run(stoke().args(["completions", shell]));
        outcome.assert_success();
        for sub in [
            "record", "top", "dump", "report", "convert", "diff", "doctor",
        ] {
            assert!(
                outcome.stdout.contains(sub),
                "{shell} completions lack {sub}\n{outcome}"
            );
        }
    }
}

#[test]
fn the_man_page_renders() {
    let Some(man) = find_in_path("man") else {
        eprintln!("skipped: no `man` to render the page with");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (args, name) in [
        (&["man"][..], "stoke"),
        (&["man", "record"], "stoke record"),
    ] {
        let outcome = run(stoke().args(args));
        outcome.assert_success();
        let page = dir.path().join("page.1");
        std::fs::write(&page, &outcome.stdout).unwrap();
        let rendered = run(Command::new(&man)
            .env("MANWIDTH", "100")
            .arg("-l")
            .arg(&page));
        assert!(rendered.status.success(), "{rendered}");
        // man overstrikes for bold (`X\x08X`): keep what is printed last.
        let mut text = String::new();
        for c in rendered.stdout.chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        assert!(text.contains("SYNOPSIS") && text.contains(name), "{text}");
    }
}
