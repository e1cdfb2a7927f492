//! What stoke adds to inferno's flame graph: the lines laid out exactly as
//! inferno lays them out, the colour of every frame by its kind, a legend,
//! and the whole profile as JSON for a script that searches all samples and
//! draws on zoom what was too narrow to draw at first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use super::palette::{css, Hue, SvgPalette};
use super::SvgOptions;
use crate::folded::{annotated_stacks, frame_text, thread_prefix};
use crate::{FrameKind, Profile};

/// The script, run after inferno's: it replaces `search`, `zoom` and
/// `unzoom` with versions that use the embedded stacks.
const SCRIPT: &str = include_str!("stoke.js");

/// The folded lines inferno draws, in the order it draws them: trimmed,
/// each stack reversed for [`SvgOptions::reverse`], sorted bytewise.
pub(super) fn drawn_lines(profile: &Profile, options: &SvgOptions) -> Vec<String> {
    let mut lines: Vec<String> = annotated_stacks(profile, options.per_thread, true)
        .into_iter()
        .filter_map(|(stack, count)| {
            let stack = if options.reverse {
                stack.rsplit(';').collect::<Vec<_>>().join(";")
            } else {
                stack
            };
            let line = format!("{stack} {count}");
            let line = line.trim();
            (!line.is_empty() && !line.starts_with("# ")).then(|| line.to_owned())
        })
        .collect();
    lines.sort_unstable();
    lines
}

/// The hue of every frame text the lines can hold (as written in them,
/// kind suffixes included): frames by their kind, off-CPU markers blue,
/// process and thread roots as other.
pub(super) fn hues(profile: &Profile, per_thread: bool) -> BTreeMap<String, Hue> {
    // inferno's root frame ("all") is named "".
    let mut hues = BTreeMap::from([(String::new(), Hue::Other)]);
    for (_, frame) in profile.frames() {
        let hue = match frame.kind {
            FrameKind::User => Hue::User,
            FrameKind::Inline => Hue::Inline,
            FrameKind::Kernel => Hue::Kernel,
            FrameKind::Jit => Hue::Jit,
            FrameKind::Python => Hue::Python,
            FrameKind::Marker if super::is_off_cpu_marker(&frame.name) => Hue::OffCpu,
            FrameKind::Marker => Hue::Other,
        };
        hues.entry(frame_text(frame, true)).or_insert(hue);
    }
    for (_, thread) in profile.threads() {
        for root in thread_prefix(thread, per_thread).split(';') {
            if !root.is_empty() {
                hues.entry(root.trim().to_owned()).or_insert(Hue::Other);
            }
        }
    }
    hues
}

/// A name as inferno shows it: without a `_[k]`, `_[w]`, `_[i]` or `_[j]`
/// kind suffix.
fn shown(text: &str) -> &str {
    for suffix in ["_[k]", "_[w]", "_[i]", "_[j]"] {
        if let Some(name) = text.strip_suffix(suffix) {
            return name;
        }
    }
    text
}

/// `stack count` split at the last space.
fn split_line(line: &str) -> (&str, &str) {
    line.rsplit_once(' ').unwrap_or((line, "0"))
}

/// Appends the legend (a swatch and the name of each kind drawn) to the
/// subtitle line.
pub(super) fn add_legend(
    svg: String,
    hues: &BTreeMap<String, Hue>,
    lines: &[String],
    palette: SvgPalette,
) -> String {
    let mut present = BTreeSet::new();
    for line in lines {
        for text in split_line(line).0.split(';') {
            present.insert(hues.get(text).copied().unwrap_or(Hue::User));
        }
    }
    let Some(start) = svg.find("<text id=\"subtitle\"") else {
        return svg;
    };
    let Some(end) = svg[start..].find("</text>").map(|i| start + i) else {
        return svg;
    };
    let mut legend = String::from("<tspan id=\"legend\">   ");
    let entries = palette.legend(Hue::ALL.into_iter().filter(|h| present.contains(h)));
    for (swatch, label) in entries {
        let _ = write!(
            legend,
            "<tspan fill=\"{}\">\u{25a0}</tspan> {label}  ",
            css(swatch)
        );
    }
    legend.push_str("</tspan>");
    let mut out = svg;
    out.insert_str(end, &legend);
    out
}

/// What the script needs: the drawn lines and how inferno drew them.
pub(super) struct Data<'a> {
    /// The lines, in drawing order.
    pub(super) lines: &'a [String],
    /// The hue of each frame text.
    pub(super) hues: &'a BTreeMap<String, Hue>,
    /// inferno's minimum frame width, in percent of the graph's width.
    pub(super) min_width: f64,
    /// inferno's frame height in pixels.
    pub(super) frame_height: usize,
    /// Whether the graph is an icicle.
    pub(super) inverted: bool,
    /// How frames are coloured.
    pub(super) palette: SvgPalette,
}

/// The JSON the script reads: frame names (as shown) with their colours,
/// and each line as `[count, name index, …]`, root first.
fn json(data: &Data<'_>) -> String {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut names = String::new();
    let mut stacks = String::new();
    let mut total: u64 = 0;
    for (i, line) in data.lines.iter().enumerate() {
        let (stack, count) = split_line(line);
        total = total.saturating_add(count.parse().unwrap_or(0));
        if i > 0 {
            stacks.push(',');
        }
        stacks.push('[');
        stacks.push_str(count);
        for text in stack.split(';') {
            let next = index.len();
            let id = *index.entry(text).or_insert_with(|| {
                if next > 0 {
                    names.push(',');
                }
                let hue = data.hues.get(text).copied().unwrap_or(Hue::User);
                names.push('[');
                crate::speedscope::push_json_string(&mut names, shown(text));
                let _ = write!(names, ",\"{}\"]", css(hue.color(data.palette, text)));
                next
            });
            let _ = write!(stacks, ",{id}");
        }
        stacks.push(']');
        stacks.push('\n');
    }
    format!(
        "{{\"total\":{total},\"minWidth\":{},\"frameHeight\":{},\"inverted\":{},\"names\":[{names}],\n\"stacks\":[{stacks}]}}",
        data.min_width, data.frame_height, data.inverted
    )
}

/// Adds the stacks (as JSON) and stoke's script before the end of the SVG.
pub(super) fn add_script(mut svg: String, data: &Data<'_>) -> String {
    let Some(end) = svg.rfind("</svg>") else {
        return svg;
    };
    let mut extra = String::from("<script type=\"application/json\" id=\"stoke-data\">");
    extra.push_str(&json(data));
    extra.push_str("</script><script type=\"text/ecmascript\"><![CDATA[\n");
    extra.push_str(SCRIPT);
    extra.push_str("]]></script>");
    svg.insert_str(end, &extra);
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shown_without_kind_suffixes() {
        assert_eq!(shown("do_sys_open_[k]"), "do_sys_open");
        assert_eq!(shown("helper_[i]"), "helper");
        assert_eq!(shown("a_[x]"), "a_[x]");
    }
}
