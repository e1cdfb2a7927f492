//! Interactive SVG flame graphs through inferno.

use std::io;

use crate::Profile;

/// Options of the SVG writer.
#[derive(Clone, Debug, Default)]
pub struct SvgOptions {
    /// The title (default: the profile's command).
    pub title: Option<String>,
    /// Put threads under their process root.
    pub per_thread: bool,
}

/// The SVG could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SvgError {
    /// The profile has no samples.
    #[error("the profile has no samples")]
    Empty,
    /// inferno or the writer failed.
    #[error("{0}")]
    Render(String),
}

/// Writes an interactive flame graph (search, zoom, tooltips), titled with
/// the command and a subtitle with samples, rate, duration and lost samples.
pub fn write_svg(profile: &Profile, options: &SvgOptions, out: &mut dyn io::Write) -> Result<(), SvgError> {
    let _ = (profile, options, out);
    todo!()
}
