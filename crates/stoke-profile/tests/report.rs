//! The function report and the comparison of two profiles.

mod common;

use common::{add, sample_profile};
use stoke_profile::{
    compare_self_shares, function_stats, write_diff_svg, write_report, FrameKind, Metadata,
    Profile, ReportOptions, ReportOrder, SvgError, SvgOptions, Thread,
};

#[test]
fn self_and_total_samples_per_function() {
    let p = sample_profile();
    let rows = function_stats(&p, ReportOrder::SelfSamples);
    let row = |n: &str| rows.iter().find(|r| r.name == n).unwrap().clone();
    assert_eq!(rows[0].name, "helper");
    assert_eq!(
        (row("helper").self_samples, row("helper").total_samples),
        (50, 50)
    );
    // compute: 7 self + 3 under a truncated stack; total adds helper's 50.
    assert_eq!(
        (row("compute").self_samples, row("compute").total_samples),
        (10, 60)
    );
    assert_eq!(
        (row("main").self_samples, row("main").total_samples),
        (0, 77)
    );
    let by_total = function_stats(&p, ReportOrder::TotalSamples);
    assert_eq!(by_total[0].name, "_start");
}

#[test]
fn report_table() {
    let mut out = Vec::new();
    let options = ReportOptions {
        top: 3,
        order: ReportOrder::SelfSamples,
    };
    write_report(&sample_profile(), &options, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "      self   self%    sum%      total  total%  function"
    );
    assert_eq!(
        lines[1],
        "        50  52.63%  52.63%         50  52.63%  helper"
    );
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[4].starts_with("(9 more functions"), "{text}");
}

fn split(hot: u64, cold: u64) -> Profile {
    let mut p = Profile::new(Metadata::default());
    let t = p.intern_thread(Thread {
        pid: 1,
        tid: 1,
        process_name: Some("p".into()),
        thread_name: None,
    });
    add(
        &mut p,
        t,
        &[("main", FrameKind::User), ("hot", FrameKind::User)],
        hot,
    );
    add(
        &mut p,
        t,
        &[("main", FrameKind::User), ("cold", FrameKind::User)],
        cold,
    );
    p
}

#[test]
fn diff_gate_ignores_noise_and_catches_growth() {
    let c = compare_self_shares(&split(1870, 630), &split(1890, 610), 0.999);
    assert!(c.regressions(0.1).is_empty());
    let c = compare_self_shares(&split(1870, 630), &split(2140, 360), 0.999);
    let r = c.regressions(5.0);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].name, "hot");
}

#[test]
fn differential_svg_is_normalised_and_coloured() {
    // After has twice the samples with the same split: no change anywhere.
    let mut out = Vec::new();
    write_diff_svg(
        &split(300, 100),
        &split(600, 200),
        &SvgOptions::default(),
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("<title>hot (600 samples, 75.00%; 0.00%)</title>"),
        "{text}"
    );
    // Hot grew: red; cold shrank: blue.
    let mut out = Vec::new();
    write_diff_svg(
        &split(300, 100),
        &split(350, 50),
        &SvgOptions::default(),
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let fill = |name: &str| {
        let at = text.find(&format!("<title>{name} (")).unwrap();
        let rest = &text[at..];
        let f = rest.find("fill=\"").unwrap() + 6;
        rest[f..f + rest[f..].find('"').unwrap()].to_owned()
    };
    assert!(fill("hot").starts_with("rgb(255,"), "{}", fill("hot"));
    assert!(fill("cold").ends_with(",255)"), "{}", fill("cold"));
    let err = write_diff_svg(
        &Profile::default(),
        &split(1, 1),
        &SvgOptions::default(),
        &mut Vec::new(),
    );
    assert!(matches!(err, Err(SvgError::Empty)));
}
