//! Reading a profile whose format is found from its bytes: pprof (gzipped
//! or not) or folded stacks.

use crate::pprof::{read_pprof, PprofError};
use crate::{read_folded, FoldedError, Profile};

/// The formats [`read_profile`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// Folded stacks.
    Folded,
    /// A pprof protobuf, gzipped or not.
    Pprof,
}

/// A profile that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Malformed folded stacks (with file name and line) or a read error.
    #[error(transparent)]
    Folded(#[from] FoldedError),
    /// A truncated or damaged pprof file.
    #[error("{source_name}: {error}")]
    Pprof {
        /// File name (or `<stdin>`).
        source_name: String,
        /// What is wrong.
        #[source]
        error: PprofError,
    },
    /// The input holds no samples.
    #[error("{0}: the profile has no samples")]
    Empty(String),
}

/// The format of `bytes`: gzip data, or a name ending `.pb`, `.pb.gz` or
/// `.pprof`, is pprof; UTF-8 text is folded stacks; anything else is tried
/// as a raw pprof protobuf.
pub fn detect_format(bytes: &[u8], source_name: &str) -> InputFormat {
    let pprof_name = [".pb", ".pb.gz", ".pprof"]
        .iter()
        .any(|ext| source_name.ends_with(ext));
    if crate::pprof::is_gzip(bytes) || pprof_name {
        InputFormat::Pprof
    } else if std::str::from_utf8(bytes).is_ok() {
        InputFormat::Folded
    } else if crate::pprof::decode(bytes).is_ok() {
        InputFormat::Pprof
    } else {
        InputFormat::Folded
    }
}

/// Reads a whole profile file of either format (see [`detect_format`]);
/// `source_name` names it in errors.
///
/// # Errors
/// [`ReadError::Folded`] for a malformed folded line (file and line number),
/// [`ReadError::Pprof`] for truncated gzip or protobuf data,
/// [`ReadError::Empty`] when there are no samples.
pub fn read_profile(bytes: &[u8], source_name: &str) -> Result<Profile, ReadError> {
    let profile = match detect_format(bytes, source_name) {
        InputFormat::Folded => read_folded(&mut &bytes[..], source_name)?,
        InputFormat::Pprof => read_pprof(bytes).map_err(|error| ReadError::Pprof {
            source_name: source_name.to_owned(),
            error,
        })?,
    };
    if profile.is_empty() {
        return Err(ReadError::Empty(source_name.to_owned()));
    }
    Ok(profile)
}
