//! Interactive SVG flame graphs through inferno.

use std::io;
use std::time::Duration;

use inferno::flamegraph::color::{parse_hex_color, MultiPalette, Palette, PaletteMap};
use inferno::flamegraph::{self, Options};

use crate::{Metadata, Profile};

mod interactive;
mod palette;

pub use palette::SvgPalette;

/// Options of the SVG writer.
#[derive(Clone, Debug, Default)]
pub struct SvgOptions {
    /// The title (default: the profile's command, or `stoke` when that is
    /// empty).
    pub title: Option<String>,
    /// Put threads under their process root (as [`crate::FoldedOptions::per_thread`]).
    pub per_thread: bool,
    /// Image width in pixels (default: inferno's 1200).
    pub width: Option<usize>,
    /// Leave out frames narrower than this many pixels (default: inferno's 0.1).
    pub min_width: Option<f64>,
    /// Reverse each stack before drawing, so leaves are at the base and
    /// their callers above them (a "reversed" or bottom-up flame graph).
    pub reverse: bool,
    /// Draw an icicle graph: roots at the top, stacks growing down.
    pub inverted: bool,
    /// How frames are coloured (by kind unless told otherwise).
    pub palette: SvgPalette,
}

/// The SVG could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SvgError {
    /// The profile has no samples.
    #[error("the profile has no samples")]
    Empty,
    /// inferno or the writer failed.
    #[error("writing the flame graph failed: {0}")]
    Render(#[source] io::Error),
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    // The first group has 1 to 3 digits, every later group exactly 3.
    let mut end = match digits.len() % 3 {
        0 => 3,
        short => short,
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    out.push_str(&digits[..end]);
    while end < digits.len() {
        out.push(',');
        out.push_str(&digits[end..end + 3]);
        end += 3;
    }
    out
}

/// The subtitle: `1,234 samples at 999 Hz over 3.02 s (cpu-clock), 0 lost`,
/// leaving out the rate, duration and event when unknown (0 or empty), and
/// adding `, N truncated` when stacks were truncated and a note when only
/// user time was sampled.
fn subtitle(total: u64, meta: &Metadata) -> String {
    let mut text = format!("{} samples", thousands(total));
    if meta.frequency > 0 {
        text.push_str(&format!(" at {} Hz", thousands(meta.frequency.into())));
    }
    if meta.duration > Duration::ZERO {
        text.push_str(&format!(" over {:.2} s", meta.duration.as_secs_f64()));
    }
    if !meta.event.is_empty() {
        text.push_str(&format!(" ({})", meta.event));
    }
    text.push_str(&format!(", {} lost", thousands(meta.lost)));
    if meta.truncated > 0 {
        text.push_str(&format!(", {} truncated", thousands(meta.truncated)));
    }
    if let Some(note) = meta.sampled.note() {
        text.push_str(&format!("; {note}"));
    }
    text
}

/// Writes an interactive flame graph (search, zoom, tooltips), titled with
/// the command and a subtitle with samples, rate, duration and lost samples.
///
/// The graph is drawn by inferno from the same lines [`crate::write_folded`]
/// writes (inlined frames marked `_[i]` for it), so the SVG and the folded
/// file always agree. Colours come from what stoke knows of each frame, one
/// hue per kind (user code red, inlined code aqua, kernel orange, JIT green,
/// off-CPU blue, process and thread roots and stoke's markers grey), the
/// shade from a hash of the name: the same profile gives the same bytes. A
/// legend of the kinds present follows the subtitle. [`SvgOptions::palette`]
/// chooses other colours: the classic warm flame-graph colours for every
/// frame, or greys by kind for print.
///
/// Frames narrower than [`SvgOptions::min_width`] are not drawn at first,
/// but every stack is embedded (as JSON) for stoke's script: search
/// (Ctrl-F) counts the share of *all* samples whose stack has a matching
/// frame, drawn or not (and, zoomed, the share of the zoomed frame);
/// zooming draws the frames that become wide enough; Reset Zoom redraws
/// the first view and refreshes the search.
///
/// [`SvgOptions`] also sets the width, and reversed (leaves at the base) or
/// inverted (icicle) drawing. The title is [`SvgOptions::title`], else the
/// profile's command, else `stoke`. The subtitle reads `1,234 samples at 999
/// Hz over 3.02 s (cpu-clock), 0 lost`, without the rate, duration or event
/// when they are unknown (0 or empty), and with `, N truncated` when stacks
/// were truncated.
///
/// Every name, the title and the subtitle are XML-escaped, and names in the
/// embedded JSON have `<`, `>` and `&` escaped. (inferno trims each folded
/// line and skips lines starting with `# `, so a process name with leading
/// spaces is shown trimmed, and one starting with `# ` hides that process's
/// samples from the graph.)
///
/// # Errors
/// [`SvgError::Empty`] when the profile has no samples (nothing is written);
/// [`SvgError::Render`] when writing to `out` fails.
pub fn write_svg(
    profile: &Profile,
    options: &SvgOptions,
    out: &mut dyn io::Write,
) -> Result<(), SvgError> {
    if profile.is_empty() {
        return Err(SvgError::Empty);
    }
    let title = match &options.title {
        Some(title) => title.clone(),
        None if profile.meta.command.is_empty() => "stoke".to_owned(),
        None => profile.meta.command.clone(),
    };
    let lines = interactive::drawn_lines(profile, options);
    let hues = interactive::hues(profile, options.per_thread);
    let mut palette = PaletteMap::default();
    for (text, hue) in &hues {
        palette.insert(text, hue.color(options.palette, text));
    }
    let mut opt = Options::default();
    opt.palette_map = Some(&mut palette);
    opt.title = title;
    opt.subtitle = Some(subtitle(profile.total_samples(), &profile.meta));
    opt.colors = Palette::Multi(MultiPalette::Java);
    opt.deterministic = true;
    opt.count_name = "samples".to_owned();
    opt.image_width = options.width;
    if let Some(min_width) = options.min_width {
        opt.min_width = min_width;
    }
    // The lines are reversed (for `reverse`) and sorted as inferno would,
    // so that the embedded stacks are laid out exactly as it lays them out.
    opt.no_sort = true;
    if options.inverted {
        opt.direction = flamegraph::Direction::Inverted;
    }
    let min_width = opt.min_width;
    let frame_height = opt.frame_height;
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), &mut svg)
        .map_err(SvgError::Render)?;
    let svg = String::from_utf8(svg).map_err(|e| SvgError::Render(io::Error::other(e)))?;
    let svg = interactive::add_legend(svg, &hues, &lines, options.palette);
    let data = interactive::Data {
        lines: &lines,
        hues: &hues,
        min_width,
        frame_height,
        inverted: options.inverted,
        palette: options.palette,
    };
    let svg = interactive::add_script(svg, &data);
    out.write_all(svg.as_bytes())
        .and_then(|()| out.flush())
        .map_err(SvgError::Render)
}

/// Renders folded lines (`stack count`, or `stack before after` for a
/// differential graph, whose colours are the change) with inferno.
pub(crate) fn render(
    lines: &[String],
    title: String,
    subtitle: String,
    options: &SvgOptions,
    out: &mut dyn io::Write,
) -> Result<(), SvgError> {
    let mut off_cpu = off_cpu_palette(lines);
    let mut opt = Options::default();
    opt.palette_map = Some(&mut off_cpu);
    opt.title = title;
    opt.subtitle = Some(subtitle);
    opt.colors = Palette::Multi(MultiPalette::Java);
    opt.deterministic = true;
    opt.count_name = "samples".to_owned();
    opt.image_width = options.width;
    if let Some(min_width) = options.min_width {
        opt.min_width = min_width;
    }
    opt.reverse_stack_order = options.reverse;
    if options.inverted {
        opt.direction = flamegraph::Direction::Inverted;
    }
    let mut out = io::BufWriter::new(out);
    flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), &mut out)
        .and_then(|()| io::Write::flush(&mut out))
        .map_err(SvgError::Render)
}

/// The colour of off-CPU marker frames: a blue no palette of stoke uses.
const OFF_CPU_BLUE: &str = "#5f87d7";

/// Whether a frame name is one of the markers of time off the CPU: the
/// `[off-cpu]` root and the leaves `[blocked: NAME]`, `[runnable]` and
/// (ptrace) `[syscall: NAME]`.
pub(crate) fn is_off_cpu_marker(name: &str) -> bool {
    name == "[off-cpu]"
        || name == "[runnable]"
        || name.starts_with("[blocked: ")
        || name.starts_with("[syscall: ")
}

/// Wall-clock profiles: the `[off-cpu]` marker and the `[blocked: NAME]`,
/// `[runnable]` or `[syscall: NAME]` leaves of off-CPU stacks are drawn blue, so time off the CPU stands out
/// from the red/orange/yellow of code on it. Every other name keeps its
/// palette colour.
fn off_cpu_palette(lines: &[String]) -> PaletteMap {
    let mut map = PaletteMap::default();
    let Some(blue) = parse_hex_color(OFF_CPU_BLUE) else {
        return map;
    };
    for line in lines {
        // `stack count`, or `stack before after`: names may hold spaces.
        let mut stack = line.as_str();
        while let Some((rest, count)) = stack.rsplit_once(' ') {
            if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
                break;
            }
            stack = rest;
        }
        for frame in stack.split(';') {
            if is_off_cpu_marker(frame) {
                map.insert(frame, blue);
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_cpu_markers_are_blue() {
        let lines = [
            "p;[off-cpu];main;read;[syscall: read] 5".to_string(),
            "p;[off-cpu];main;read;[blocked: read] 5".to_string(),
            "p;[off-cpu];main;[runnable] 5".to_string(),
        ];
        let map = off_cpu_palette(&lines);
        let blue = parse_hex_color(OFF_CPU_BLUE);
        for marker in [
            "[off-cpu]",
            "[syscall: read]",
            "[blocked: read]",
            "[runnable]",
        ] {
            assert_eq!(map.get(marker), blue, "{marker}");
        }
        assert_eq!(map.get("main"), None);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn subtitle_names_what_is_known() {
        let mut meta = Metadata::default();
        assert_eq!(subtitle(5, &meta), "5 samples, 0 lost");
        meta.frequency = 999;
        meta.duration = Duration::from_millis(3020);
        meta.event = "cpu-clock".into();
        meta.lost = 2;
        meta.truncated = 1500;
        assert_eq!(
            subtitle(1234, &meta),
            "1,234 samples at 999 Hz over 3.02 s (cpu-clock), 2 lost, 1,500 truncated"
        );
    }
}
