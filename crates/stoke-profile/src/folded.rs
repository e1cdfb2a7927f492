//! Folded stacks: `root;caller;leaf count`, one line per unique stack.

use std::io;

use crate::Profile;

/// Options of the folded writer.
#[derive(Clone, Debug, Default)]
pub struct FoldedOptions {
    /// Put `thread-name-tid` under the process root frame.
    pub per_thread: bool,
}

/// A folded file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FoldedError {
    /// A line is not `frames count`.
    #[error("{source_name}:{line}: {message}")]
    Malformed {
        /// File name (or `<stdin>`).
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Writes a profile as folded stacks: the process name as the root frame,
/// kernel frames suffixed `_[k]`, lines sorted, counts summed.
pub fn write_folded(profile: &Profile, options: &FoldedOptions, out: &mut dyn io::Write) -> io::Result<()> {
    let _ = (profile, options, out);
    todo!()
}

/// Reads folded stacks (`_[k]` frames become kernel frames).
pub fn read_folded(input: &mut dyn io::BufRead, source_name: &str) -> Result<Profile, FoldedError> {
    let _ = (input, source_name);
    todo!()
}
