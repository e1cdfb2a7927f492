//! The folded writer and reader.

mod common;

use common::{add, assert_golden, sample_profile};
use stoke_profile::{
    read_folded, read_folded_with, write_folded, FoldedError, FoldedOptions, FrameKind, Metadata,
    Profile, ReadLimits, Thread,
};

fn folded(profile: &Profile, per_thread: bool) -> String {
    let mut out = Vec::new();
    write_folded(profile, &FoldedOptions { per_thread }, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn read(text: &str) -> Result<Profile, FoldedError> {
    read_folded(&mut text.as_bytes(), "profile.folded")
}

fn malformed(text: &str) -> (usize, String) {
    match read(text) {
        Err(e @ FoldedError::Malformed { .. }) => {
            let FoldedError::Malformed { line, .. } = e else {
                unreachable!()
            };
            (line, e.to_string())
        }
        other => panic!("expected Malformed for {text:?}, got {other:?}"),
    }
}

#[test]
fn golden_folded() {
    assert_golden("sample.folded", folded(&sample_profile(), false).as_bytes());
}

#[test]
fn golden_folded_per_thread() {
    assert_golden(
        "sample.per-thread.folded",
        folded(&sample_profile(), true).as_bytes(),
    );
}

#[test]
fn lines_are_sorted_with_process_root_and_kernel_suffix() {
    let text = folded(&sample_profile(), false);
    let lines: Vec<&str> = text.lines().collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted);
    assert!(lines.iter().all(|l| l.starts_with("fixture;")), "{text}");
    assert!(lines.contains(&"fixture;_start;main;write;entry_SYSCALL_64_[k];do_syscall_64_[k] 20"));
    assert!(
        lines.contains(&"fixture;_start;main;compute;helper 50"),
        "inline frames are plain"
    );
    assert!(lines.contains(&"fixture;start_thread;worker_main;Interpreter.run_[j] 5"));
    assert!(lines.contains(&"fixture;[truncated: stack copy too small];compute 3"));
}

#[test]
fn per_thread_adds_thread_name_and_tid() {
    let text = folded(&sample_profile(), true);
    assert!(
        text.contains("fixture;fixture-100;_start;main;compute 7\n"),
        "{text}"
    );
    assert!(text.contains("fixture;worker-101;start_thread;"), "{text}");

    let mut p = Profile::default();
    let anonymous = p.intern_thread(Thread {
        pid: 5,
        tid: 6,
        process_name: None,
        thread_name: None,
    });
    let unnamed = p.intern_thread(Thread {
        pid: 5,
        tid: 7,
        process_name: Some("proc".into()),
        thread_name: None,
    });
    add(&mut p, anonymous, &[("f", FrameKind::User)], 1);
    add(&mut p, unnamed, &[("f", FrameKind::User)], 2);
    assert_eq!(folded(&p, true), "proc;proc-7;f 2\nthread-6;f 1\n");
    assert_eq!(folded(&p, false), "f 1\nproc;f 2\n");
}

#[test]
fn identical_lines_are_summed() {
    let mut p = Profile::default();
    for tid in [1, 2] {
        let t = p.intern_thread(Thread {
            pid: 1,
            tid,
            process_name: Some("p".into()),
            thread_name: None,
        });
        add(&mut p, t, &[("main", FrameKind::User)], tid.into());
    }
    assert_eq!(folded(&p, false), "p;main 3\n");
    assert_eq!(folded(&p, true), "p;p-1;main 1\np;p-2;main 2\n");
}

#[test]
fn separators_in_names_do_not_break_lines() {
    let mut p = Profile::default();
    let t = p.intern_thread(Thread {
        pid: 1,
        tid: 1,
        process_name: Some("a;b\nc".into()),
        thread_name: None,
    });
    add(
        &mut p,
        t,
        &[
            ("[u8; 8]", FrameKind::User),
            ("two\r\nlines", FrameKind::Kernel),
        ],
        4,
    );
    assert_eq!(folded(&p, false), "a:b c;[u8: 8];two  lines_[k] 4\n");
}

#[test]
fn reads_kinds_spaces_and_sums() {
    let p = read("\nmain;do_sys_open_[k];jitted_[j];helper_[i] 3\r\n  \nmain;operator new(unsigned long) 2\nmain;operator new(unsigned long) 5 \n").unwrap();
    assert_eq!(p.total_samples(), 10);
    let stacks: Vec<Vec<(String, FrameKind)>> = p
        .samples()
        .map(|(_, s, _)| {
            p.stack_frames(s)
                .into_iter()
                .map(|f| (p.frame(f).name.clone(), p.frame(f).kind))
                .collect()
        })
        .collect();
    assert_eq!(
        stacks,
        vec![
            vec![
                ("do_sys_open".into(), FrameKind::Kernel),
                ("jitted".into(), FrameKind::Jit),
                ("helper_[i]".into(), FrameKind::User),
            ],
            vec![("operator new(unsigned long)".into(), FrameKind::User)],
        ]
    );
    let counts: Vec<u64> = p.samples().map(|(_, _, c)| c).collect();
    assert_eq!(counts, vec![3, 7]);
    let threads: Vec<_> = p.threads().map(|(_, t)| t.clone()).collect();
    assert_eq!(
        threads,
        vec![Thread {
            pid: 0,
            tid: 0,
            process_name: Some("main".into()),
            thread_name: None
        }],
        "the root frame is the process"
    );
}

#[test]
fn a_one_frame_line_is_a_frame_and_roots_are_processes() {
    let p = read(
        "a 5
a;b 3
c;b 1
",
    )
    .unwrap();
    let mut rows: Vec<(Option<String>, Vec<String>, u64)> = p
        .samples()
        .map(|(t, s, c)| {
            let names = p
                .stack_frames(s)
                .into_iter()
                .map(|f| p.frame(f).name.clone())
                .collect();
            (p.thread(t).process_name.clone(), names, c)
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (None, vec!["a".to_owned()], 5),
            (Some("a".into()), vec!["b".to_owned()], 3),
            (Some("c".into()), vec!["b".to_owned()], 1),
        ]
    );
    assert_eq!(folded(&p, false), "a 5\na;b 3\nc;b 1\n");
    assert_eq!(folded(&p, true), "a 5\na;b 3\nc;b 1\n");
}

#[test]
fn limits_and_overflowing_counts_are_errors() {
    let limits = ReadLimits {
        max_line_bytes: 64,
        max_stack_depth: 4,
        max_frames: 5,
        max_stacks: 6,
        ..ReadLimits::default()
    };
    let read = |text: &str| read_folded_with(&mut text.as_bytes(), "x.folded", &limits);
    let err = read(&format!("p;{} 1\n", "f".repeat(80)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.folded:1: the line is longer than the limit of 64 bytes"),
        "{err}"
    );
    let err = read("p;a 1\np;a;b;c;d;e 1\n").unwrap_err().to_string();
    assert!(
        err.contains("x.folded:2: a stack of 6 frames is deeper than the limit of 4"),
        "{err}"
    );
    let err = read("p;a;b;c 1\np;d;e;f 1\n").unwrap_err().to_string();
    assert!(
        err.contains("x.folded:2: more than the limit of 5 distinct frames"),
        "{err}"
    );
    let err = read("p;a;b 1\np;b;a 1\np;c;a;b 1\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.folded:3: more than the limit of 6 distinct stacks"),
        "{err}"
    );
    let max = u64::MAX;
    let err = read(&format!("p;a {max}\np;b 1\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.folded:2: the counts add up to more than"),
        "{err}"
    );
    assert!(read(&format!("p;a {max}\n")).is_ok());
}

#[test]
fn round_trip_gives_identical_bytes() {
    let mut p = sample_profile();
    let t = p.intern_thread(Thread {
        pid: 9,
        tid: 9,
        process_name: Some("my app".into()),
        thread_name: None,
    });
    add(
        &mut p,
        t,
        &[
            ("main", FrameKind::User),
            ("<script>alert(\"x\")</script>", FrameKind::User),
        ],
        1,
    );
    add(
        &mut p,
        t,
        &[
            ("main", FrameKind::User),
            ("a & b 'c' \"d\"", FrameKind::Kernel),
        ],
        2,
    );
    add(
        &mut p,
        t,
        &[
            ("main", FrameKind::User),
            ("ends with space ", FrameKind::User),
        ],
        3,
    );
    add(
        &mut p,
        t,
        &[
            (" starts with space", FrameKind::User),
            ("", FrameKind::User),
        ],
        4,
    );
    for per_thread in [false, true] {
        let first = folded(&p, per_thread);
        let again = read(&first).unwrap();
        assert_eq!(again.total_samples(), p.total_samples());
        // Read profiles have threads of which only the process is known:
        // per_thread adds nothing.
        let second = folded(&again, per_thread);
        assert_eq!(first, second, "per_thread: {per_thread}");
        assert_eq!(folded(&again, !per_thread), second);
        assert_eq!(folded(&read(&second).unwrap(), false), second);
    }
}

#[test]
fn malformed_lines_name_the_source_and_line() {
    assert_eq!(
        malformed("a;b 1\n\nabc\n"),
        (
            3,
            r#"profile.folded:3: expected "frame;frame count", found "abc""#.to_owned()
        )
    );
    assert_eq!(malformed("a;b x\n").0, 1);
    assert!(malformed("a;b x\n").1.contains(r#"found "a;b x""#));
    assert_eq!(
        malformed("a 1\na;b \n").0,
        2,
        "a missing count after trailing space"
    );
    assert_eq!(malformed("a 1\na;b -3\n").0, 2);
    assert_eq!(malformed("a 1\na;b 1.5\n").0, 2);
    let (line, message) = malformed("a 1\nb 2\n 5\n");
    assert_eq!(line, 3);
    assert!(message.contains("empty stack"), "{message}");
    let (line, message) = malformed("a 99999999999999999999999\n");
    assert_eq!(line, 1);
    assert!(message.contains("too large"), "{message}");
    let err = read_folded(&mut &b"a 1\n\xff\xfe 2\n"[..], "<stdin>").unwrap_err();
    assert!(err.to_string().starts_with("<stdin>:2: not UTF-8"), "{err}");
    let long = format!("{} x", "f".repeat(500));
    assert!(
        malformed(&long).1.len() < 200,
        "long lines are cut in messages"
    );
}

#[test]
fn empty_input_is_an_empty_profile() {
    for text in ["", "\n\n", "  \r\n"] {
        let p = read(text).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.threads().len(), 0);
        assert_eq!(p.meta, Metadata::default());
        assert_eq!(folded(&p, false), "");
    }
}
