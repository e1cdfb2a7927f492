//! The SVG flame graph writer.

mod common;

use common::{add, assert_golden, sample_profile};
use stoke_profile::{write_svg, FrameKind, Metadata, Profile, SvgError, SvgOptions, Thread};

fn svg(profile: &Profile, options: &SvgOptions) -> String {
    let mut out = Vec::new();
    write_svg(profile, options, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The `fill` of the rectangle drawn for the frame whose tooltip starts with
/// `name (`.
fn fill_of(svg: &str, name: &str) -> String {
    let title = svg
        .find(&format!("<title>{name} ("))
        .unwrap_or_else(|| panic!("no frame {name}"));
    let rest = &svg[title..];
    let fill = rest.find("fill=\"").expect("a rect after the title") + 6;
    rest[fill..fill + rest[fill..].find('"').unwrap()].to_owned()
}

#[test]
fn golden_svg() {
    assert_golden(
        "sample.svg",
        svg(&sample_profile(), &SvgOptions::default()).as_bytes(),
    );
}

#[test]
fn golden_svg_per_thread() {
    let options = SvgOptions {
        title: Some("per thread".into()),
        per_thread: true,
        ..SvgOptions::default()
    };
    assert_golden(
        "sample.per-thread.svg",
        svg(&sample_profile(), &options).as_bytes(),
    );
}

#[test]
fn same_profile_same_bytes() {
    let p = sample_profile();
    assert_eq!(
        svg(&p, &SvgOptions::default()),
        svg(&p, &SvgOptions::default())
    );
}

#[test]
fn title_subtitle_and_count_name() {
    let p = sample_profile();
    let text = svg(&p, &SvgOptions::default());
    assert!(
        text.contains(">./fixture --spin</text>"),
        "title is the command"
    );
    assert!(
        text.contains(">95 samples at 999 Hz over 3.02 s (cpu-clock), 2 lost, 3 truncated</text>")
    );
    assert!(text.contains("<title>all (95 samples, 100%)</title>"));
    assert!(
        text.contains("<title>fixture (95 samples, 100.00%)</title>"),
        "process root frame"
    );

    let titled = svg(
        &p,
        &SvgOptions {
            title: Some("mine".into()),
            per_thread: false,
            ..SvgOptions::default()
        },
    );
    assert!(titled.contains(">mine</text>"));
    let mut unnamed = sample_profile();
    unnamed.meta = Metadata::default();
    assert!(svg(&unnamed, &SvgOptions::default()).contains(">stoke</text>"));
}

#[test]
fn per_thread_frames() {
    let text = svg(
        &sample_profile(),
        &SvgOptions {
            title: None,
            per_thread: true,
            ..SvgOptions::default()
        },
    );
    assert!(
        text.contains("<title>fixture-100 (80 samples, "),
        "main thread"
    );
    assert!(
        text.contains("<title>worker-101 (15 samples, "),
        "worker thread"
    );
}

#[test]
fn kernel_and_jit_frames_stand_out() {
    let text = svg(&sample_profile(), &SvgOptions::default());
    // The `_[k]`/`_[j]` suffixes colour the frame and are not displayed.
    assert!(!text.contains("_[k]") && !text.contains("_[j]"));
    let user = fill_of(&text, "main");
    let kernel = fill_of(&text, "do_syscall_64");
    let jit = fill_of(&text, "Interpreter.run");
    assert!(
        kernel.ends_with(",0)"),
        "kernel frames are orange: {kernel}"
    );
    assert_ne!(user, kernel);
    assert_ne!(jit, kernel);
}

#[test]
fn hostile_names_are_escaped() {
    let mut p = Profile::new(Metadata {
        command: "<script>alert('title')</script>".into(),
        ..Metadata::default()
    });
    let t = p.intern_thread(Thread {
        pid: 1,
        tid: 1,
        process_name: Some("<img src=x onerror=alert(1)>".into()),
        thread_name: None,
    });
    add(
        &mut p,
        t,
        &[
            ("<script>alert(\"frame\")</script>", FrameKind::User),
            ("a & b", FrameKind::Kernel),
        ],
        3,
    );
    add(&mut p, t, &[("\"quoted\" 'name'", FrameKind::User)], 1);
    let text = svg(&p, &SvgOptions::default());
    assert!(
        !text.contains("<script>"),
        "inferno's own <script type=...> only"
    );
    assert!(!text.contains("<img"));
    assert!(!text.contains("a & b"));
    assert!(
        text.contains("&lt;script&gt;alert(&apos;title&apos;)&lt;/script&gt;")
            || text.contains("&lt;script&gt;alert('title')&lt;/script&gt;"),
        "title escaped"
    );
    assert!(text.contains("&lt;script&gt;alert("), "frame escaped");
    assert!(text.contains("a &amp; b"));
}

#[test]
fn empty_profile_is_an_error_and_writes_nothing() {
    let mut out = Vec::new();
    let err = write_svg(&Profile::default(), &SvgOptions::default(), &mut out).unwrap_err();
    assert!(matches!(err, SvgError::Empty));
    assert!(out.is_empty());
}
