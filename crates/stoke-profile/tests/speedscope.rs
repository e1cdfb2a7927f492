//! The speedscope writer.

mod common;

use common::{add, assert_golden, sample_profile};
use stoke_profile::{write_speedscope, FrameKind, Metadata, Profile, SpeedscopeOptions, Thread};

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
