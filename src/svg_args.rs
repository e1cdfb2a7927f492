//! Flame graph drawing options shared by `record`, `convert` and `diff`.

use clap::Args;
use stoke_profile::{SvgOptions, SvgPalette};

/// How SVG flame graphs are drawn.
#[derive(Clone, Debug, Default, Args)]
pub struct SvgArgs {
    /// Width of the flame graph in pixels.
    #[arg(long, value_name = "PIXELS", default_value_t = 1200,
          value_parser = clap::value_parser!(u32).range(100..=100_000))]
    pub width: u32,

    /// Leave out frames narrower than this many pixels.
    #[arg(long, value_name = "PIXELS", default_value_t = 0.1, value_parser = parse_min_width)]
    pub min_width: f64,

    /// Reversed flame graph: leaf functions at the base, their callers above.
    #[arg(long)]
    pub reverse: bool,

    /// Icicle graph: roots at the top, stacks growing down.
    #[arg(long)]
    pub icicle: bool,

    /// The colours (`--palette` of record and convert; a differential
    /// graph is coloured by the change).
    #[arg(skip)]
    pub palette: SvgPalette,
}

impl SvgArgs {
    /// These options with frames coloured by `palette`.
    pub fn with_palette(self, palette: SvgPalette) -> SvgArgs {
        SvgArgs { palette, ..self }
    }

    /// The writer's options, with this title and per-thread setting.
    pub fn options(&self, title: Option<String>, per_thread: bool) -> SvgOptions {
        SvgOptions {
            title,
            per_thread,
            width: Some(self.width as usize),
            min_width: Some(self.min_width),
            reverse: self.reverse,
            inverted: self.icicle,
            palette: self.palette,
        }
    }
}

fn parse_min_width(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(w) if w >= 0.0 && w.is_finite() => Ok(w),
        _ => Err(format!(
            "expected a number of pixels (0 or more), found {text:?}"
        )),
    }
}
