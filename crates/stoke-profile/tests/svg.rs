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
    assert!(text.contains(
        ">95 samples at 999 Hz over 3.02 s (cpu-clock), 2 lost, 3 truncated<tspan id=\"legend\">"
    ));
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

/// The red, green and blue of `rgb(r,g,b)`.
fn rgb(fill: &str) -> [u8; 3] {
    let inner = fill
        .strip_prefix("rgb(")
        .unwrap()
        .strip_suffix(')')
        .unwrap();
    let parts: Vec<u8> = inner.split(',').map(|c| c.parse().unwrap()).collect();
    [parts[0], parts[1], parts[2]]
}

#[test]
fn each_kind_has_its_own_hue_and_the_legend_names_them() {
    let text = svg(&sample_profile(), &SvgOptions::default());
    // The `_[k]`/`_[j]`/`_[i]` suffixes colour the frame and are not displayed.
    assert!(!text.contains("_[k]") && !text.contains("_[j]") && !text.contains("_[i]"));
    let [r, g, b] = rgb(&fill_of(&text, "main"));
    assert!(
        r >= 205 && g <= 130 && b <= 100,
        "user code is red: {r},{g},{b}"
    );
    // A name that looks like Java is still user code.
    let [r, g, _] = rgb(&fill_of(
        &text,
        "&lt;alloc::vec::Vec&lt;[u8: 8]&gt;&gt;::push",
    ));
    assert!(
        r >= 205 && g <= 130,
        "a Rust path is red like any user code"
    );
    let [r, g, b] = rgb(&fill_of(&text, "do_syscall_64"));
    assert!(
        r >= 225 && (135..=180).contains(&g) && b <= 30,
        "kernel is orange: {r},{g},{b}"
    );
    let [r, g, b] = rgb(&fill_of(&text, "helper"));
    assert!(
        g > r + 60 && b > r + 60,
        "inlined code is aqua: {r},{g},{b}"
    );
    let [r, g, b] = rgb(&fill_of(&text, "Interpreter.run"));
    assert!(g > r + 60 && g > b + 60, "JIT is green: {r},{g},{b}");
    let [r, g, b] = rgb(&fill_of(&text, "[truncated: stack copy too small]"));
    assert!(r == g && g == b, "markers are grey: {r},{g},{b}");
    let [r, g, b] = rgb(&fill_of(&text, "fixture"));
    assert!(r == g && g == b, "the process root is grey: {r},{g},{b}");
    let legend = &text[text.find("<tspan id=\"legend\">").unwrap()..];
    let legend = &legend[..legend.find("</text>").unwrap()];
    for kind in [
        "user",
        "inlined",
        "kernel",
        "JIT",
        "process, thread, marker",
    ] {
        assert!(
            legend.contains(&format!("</tspan> {kind} ")),
            "{kind} in {legend}"
        );
    }
    assert!(
        !legend.contains("off-CPU"),
        "only the kinds drawn: {legend}"
    );
}

#[test]
fn off_cpu_markers_are_blue() {
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
        &[
            ("main", FrameKind::User),
            ("[off-cpu]", FrameKind::Marker),
            ("[syscall: read]", FrameKind::Marker),
        ],
        4,
    );
    let text = svg(&p, &SvgOptions::default());
    for name in ["[off-cpu]", "[syscall: read]"] {
        let [r, g, b] = rgb(&fill_of(&text, name));
        assert!(b > r + 90 && b > g + 40, "{name} is blue: {r},{g},{b}");
    }
    assert!(text.contains("</tspan> off-CPU "));
}

#[test]
fn every_stack_is_embedded_for_the_search_and_zoom() {
    let text = svg(&sample_profile(), &SvgOptions::default());
    let start = text
        .find("<script type=\"application/json\" id=\"stoke-data\">")
        .unwrap();
    let json = &text[start..];
    let json = &json[json.find('>').unwrap() + 1..json.find("</script>").unwrap()];
    assert!(
        !json.contains('<') && !json.contains('&'),
        "names are escaped: {json}"
    );
    assert!(json.starts_with("{\"total\":95,\"minWidth\":"), "{json}");
    assert_eq!(
        json.matches('\n').count(),
        7,
        "one line per stack (6) after the names: {json}"
    );
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
