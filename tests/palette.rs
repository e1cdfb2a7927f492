//! `--palette`: the SVG's colours by frame kind, hot, or grey, with a legend
//! that matches, and the same bytes every time.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{run, stoke};

const FOLDED: &str = "prog;main;work;do_syscall_64_[k] 10\n\
                      prog;main;work 30\n\
                      prog;main;JS:*loop_[j] 7\n";

fn convert(dir: &Path, palette: Option<&str>, name: &str) -> String {
    let input = dir.join("in.folded");
    std::fs::write(&input, FOLDED).unwrap();
    let out = dir.join(name);
    let mut cmd = stoke();
    cmd.arg("convert").arg(&input).arg("-o").arg(&out);
    if let Some(palette) = palette {
        cmd.args(["--palette", palette]);
    }
    run(&mut cmd).assert_success();
    std::fs::read_to_string(&out).unwrap()
}

/// The `rgb(…)` fills of the frame rectangles (inferno's `<rect>`s, not the
/// background gradient).
fn frame_fills(svg: &str) -> BTreeSet<[u8; 3]> {
    svg.split("<rect ")
        .skip(1)
        .filter_map(|rect| {
            let rect = &rect[..rect.find('>')?];
            let fill = rect.split("fill=\"rgb(").nth(1)?;
            let inner = &fill[..fill.find(')')?];
            let rgb: Vec<u8> = inner.split(',').map(|c| c.parse().unwrap()).collect();
            Some([rgb[0], rgb[1], rgb[2]])
        })
        .collect()
}

/// The swatches of the legend.
fn legend(svg: &str) -> Vec<String> {
    let start = svg.find("<tspan id=\"legend\">").expect("a legend");
    let end = start + svg[start..].find("</text>").unwrap();
    svg[start..end]
        .split("<tspan fill=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

#[test]
fn each_palette_colours_frames_its_own_way_and_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let default = convert(dir.path(), None, "default.svg");
    let kind = convert(dir.path(), Some("kind"), "kind.svg");
    assert_eq!(default, kind, "kind is the default");
    let hot = convert(dir.path(), Some("hot"), "hot.svg");
    let mono = convert(dir.path(), Some("mono"), "mono.svg");
    assert_eq!(mono, convert(dir.path(), Some("grey"), "grey.svg"));
    for (palette, svg) in [("kind", &kind), ("hot", &hot), ("mono", &mono)] {
        let again = convert(dir.path(), Some(palette), "again.svg");
        assert_eq!(*svg, again, "{palette}: same input, same bytes");
    }

    let (kind_fills, hot_fills, mono_fills) =
        (frame_fills(&kind), frame_fills(&hot), frame_fills(&mono));
    assert!(kind_fills.len() >= 6, "{kind_fills:?}");
    assert!(
        kind_fills.is_disjoint(&hot_fills),
        "{kind_fills:?} {hot_fills:?}"
    );
    assert!(kind_fills.is_disjoint(&mono_fills));
    assert!(hot_fills.is_disjoint(&mono_fills));
    // Hot: red to yellow whatever the kind (the kernel and JIT frames too).
    assert!(
        hot_fills
            .iter()
            .all(|[r, g, b]| *r >= 205 && *b <= 55 && g >= b),
        "{hot_fills:?}"
    );
    // Mono: greys only.
    assert!(
        mono_fills.iter().all(|[r, g, b]| r == g && g == b),
        "{mono_fills:?}"
    );

    // The legends: one swatch per kind drawn (user, kernel, JIT, roots) for
    // kind and mono, in their colours; one for hot.
    let (kind_legend, hot_legend, mono_legend) = (legend(&kind), legend(&hot), legend(&mono));
    assert_eq!(kind_legend.len(), 4, "{kind_legend:?}");
    assert_eq!(mono_legend.len(), 4, "{mono_legend:?}");
    assert_eq!(hot_legend.len(), 1, "{hot_legend:?}");
    assert!(hot.contains("every frame, shade by name"));
    assert!(mono_legend.iter().all(|c| {
        let v: Vec<&str> = c
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .collect();
        v[0] == v[1] && v[1] == v[2]
    }));
    assert_ne!(kind_legend, mono_legend);
}

#[test]
fn an_unknown_palette_is_a_one_line_error() {
    let outcome = run(stoke().args(["convert", "x.folded", "-o", "x.svg", "--palette", "java"]));
    assert!(!outcome.status.success());
    assert!(outcome.stderr.contains("kind") && outcome.stderr.contains("hot"));
    outcome.assert_no_panic();
}
