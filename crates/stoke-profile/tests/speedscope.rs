//! The speedscope writer.

mod common;

use common::{add, assert_golden, sample_profile};
use stoke_profile::{
    read_profile, write_folded, write_speedscope, FoldedOptions, FrameKind, Metadata, Profile,
    SpeedscopeOptions, Thread,
};

fn speedscope(p: &Profile) -> String {
    let mut out = Vec::new();
    write_speedscope(p, &SpeedscopeOptions::default(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn golden_speedscope() {
    assert_golden(
        "sample.speedscope.json",
        speedscope(&sample_profile()).as_bytes(),
    );
}

#[test]
fn one_sampled_profile_per_thread_in_nanoseconds() {
    let text = speedscope(&sample_profile());
    assert_eq!(text.matches("\"type\":\"sampled\"").count(), 2);
    assert!(text.contains("\"name\":\"fixture (fixture-100)\""));
    assert!(text.contains("\"name\":\"fixture (worker-101)\""));
    assert!(text.contains("\"unit\":\"nanoseconds\""));
    // 80 samples on the main thread at 999 Hz.
    assert!(text.contains(&format!("\"endValue\":{}", 80 * (1_000_000_000u64 / 999))));
}

#[test]
fn hostile_names_are_escaped_json() {
    let mut p = Profile::new(Metadata::default());
    let t = p.intern_thread(Thread {
        pid: 0,
        tid: 0,
        process_name: None,
        thread_name: None,
    });
    add(
        &mut p,
        t,
        &[
            ("<script>", FrameKind::User),
            ("a \"&\" b;c\\", FrameKind::User),
        ],
        3,
    );
    let text = speedscope(&p);
    assert!(text.contains(r#""name":"\u003cscript\u003e""#), "{text}");
    assert!(text.contains(r#""name":"a \"\u0026\" b;c\\""#), "{text}");
    assert!(text.contains("\"unit\":\"none\""));
    assert!(text.contains("\"name\":\"all samples\""));
}

#[test]
fn the_heaviest_thread_comes_first_and_kernel_frames_carry_no_marker() {
    let mut p = Profile::new(Metadata {
        frequency: 1000,
        ..Metadata::default()
    });
    let driver = p.intern_thread(Thread {
        pid: 10,
        tid: 10,
        process_name: Some("gcc".into()),
        thread_name: Some("gcc".into()),
    });
    let cc1 = p.intern_thread(Thread {
        pid: 11,
        tid: 11,
        process_name: Some("cc1".into()),
        thread_name: Some("cc1".into()),
    });
    add(&mut p, driver, &[("main", FrameKind::User)], 1);
    add(
        &mut p,
        cc1,
        &[
            ("main", FrameKind::User),
            ("do_syscall_64", FrameKind::Kernel),
        ],
        700,
    );
    // The same function, inlined once and called once: one speedscope frame.
    add(
        &mut p,
        cc1,
        &[("main", FrameKind::User), ("parse", FrameKind::User)],
        5,
    );
    add(
        &mut p,
        cc1,
        &[("main", FrameKind::User), ("parse", FrameKind::Inline)],
        6,
    );
    let text = speedscope(&p);
    let first = text.find("\"name\":\"cc1 (cc1-11)\"").unwrap();
    let second = text.find("\"name\":\"gcc (gcc-10)\"").unwrap();
    assert!(first < second, "heaviest profile first: {text}");
    assert!(text.contains("\"activeProfileIndex\":0"));
    assert!(!text.contains("_[k]"), "{text}");
    assert!(
        text.contains(r#"{"name":"do_syscall_64","file":"[kernel.kallsyms]"}"#),
        "{text}"
    );
    assert_eq!(text.matches(r#"{"name":"parse"}"#).count(), 1, "{text}");
    assert_eq!(text.matches(r#"{"name":"main"}"#).count(), 1, "{text}");
}

#[test]
fn stokes_speedscope_reads_back() {
    let p = sample_profile();
    let text = speedscope(&p);
    let back = read_profile(text.as_bytes(), "x.speedscope.json").unwrap();
    assert_eq!(back.total_samples(), p.total_samples());
    assert_eq!(back.meta.frequency, 999);
    assert_eq!(back.meta.command, p.meta.command);
    let mut options = FoldedOptions { per_thread: true };
    let folded = |p: &Profile, options: &FoldedOptions| {
        let mut out = Vec::new();
        write_folded(p, options, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    assert_eq!(folded(&back, &options), folded(&p, &options));
    options.per_thread = false;
    assert_eq!(folded(&back, &options), folded(&p, &options));
    let kernel = back
        .frames()
        .find(|(_, f)| f.name == "do_syscall_64")
        .unwrap()
        .1;
    assert_eq!(kernel.kind, FrameKind::Kernel);
    let err = read_profile(br#"{"$schema":"https://www.speedscope.app/x","shared":{"frames":[]},"profiles":[{"type":"evented","name":"e"}]}"#, "e.json").unwrap_err();
    assert!(
        err.to_string()
            .contains("stoke reads sampled profiles only"),
        "{err}"
    );
}
