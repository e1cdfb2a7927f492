//! Reading a profile whose format is found from its first bytes: pprof
//! (gzipped or not), speedscope JSON or folded stacks, within limits that
//! keep memory bounded on hostile or huge input.

use std::io::{self, BufRead, Read};

use crate::pprof::{read_pprof_with, PprofError};
use crate::{folded::read_folded_with, FoldedError, Profile};

/// The formats [`read_profile`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// Folded stacks.
    Folded,
    /// A pprof protobuf, gzipped or not.
    Pprof,
    /// speedscope's JSON format (its sampled profiles).
    Speedscope,
    /// Binary data: read as a raw pprof protobuf when it decodes as one,
    /// else it is none of the formats.
    Unknown,
}

/// How much a reader may take in, so that hostile or broken input gives an
/// error instead of exhausting memory. The defaults keep a reader under
/// about 200 MB whatever the input, and are far above what stoke, perf,
/// pprof or speedscope write for real programs.
#[derive(Clone, Debug)]
pub struct ReadLimits {
    /// Bytes of one folded line (default 16 MiB).
    pub max_line_bytes: usize,
    /// Frames of one stack (default 65,536; stoke's deepest DWARF stack
    /// copy holds about 4,000 frames).
    pub max_stack_depth: usize,
    /// Distinct frames of a profile (default 250,000).
    pub max_frames: usize,
    /// Distinct stacks (stack trie nodes) of a profile (default 1,500,000;
    /// a recording of 20,000 distinct stacks has about 340,000).
    pub max_stacks: usize,
    /// Bytes a pprof file unpacks to, and bytes of a raw (not gzipped)
    /// pprof or a speedscope file (default 64 MiB).
    pub max_decompressed_bytes: usize,
    /// Memory the tables of a pprof profile (strings, functions,
    /// locations, mappings) may take once decoded (default 64 MiB).
    pub max_pprof_tables: usize,
}

impl Default for ReadLimits {
    fn default() -> ReadLimits {
        ReadLimits {
            max_line_bytes: 16 << 20,
            max_stack_depth: 65_536,
            max_frames: 250_000,
            max_stacks: 1_500_000,
            max_decompressed_bytes: 64 << 20,
            max_pprof_tables: 64 << 20,
        }
    }
}

impl ReadLimits {
    /// An error message when `profile` has more distinct frames or stacks
    /// than allowed.
    pub(crate) fn check_profile(&self, profile: &Profile) -> Result<(), String> {
        if profile.frames().len() > self.max_frames {
            return Err(format!(
                "more than the limit of {} distinct frames",
                crate::svg::thousands(self.max_frames as u64)
            ));
        }
        if profile.stack_count() > self.max_stacks {
            return Err(format!(
                "more than the limit of {} distinct stacks",
                crate::svg::thousands(self.max_stacks as u64)
            ));
        }
        Ok(())
    }
}

/// `16 MiB`, `512 KiB` or `100 bytes`.
pub(crate) fn bytes_text(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// A profile that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Malformed folded stacks (with file name and line) or a read error.
    #[error(transparent)]
    Folded(#[from] FoldedError),
    /// A truncated, damaged or too large pprof file.
    #[error("{source_name}: {error}")]
    Pprof {
        /// File name (or `<stdin>`).
        source_name: String,
        /// What is wrong.
        #[source]
        error: PprofError,
    },
    /// A speedscope file that is not what stoke reads.
    #[error("{source_name}: {message}")]
    Speedscope {
        /// File name (or `<stdin>`).
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// Binary data that is none of the formats.
    #[error("{0}: not a folded, pprof or speedscope profile")]
    NotAProfile(String),
    /// Reading failed.
    #[error("{source_name}: {error}")]
    Io {
        /// File name (or `<stdin>`).
        source_name: String,
        /// The error.
        #[source]
        error: io::Error,
    },
    /// The input holds no samples.
    #[error("{0}: the profile has no samples")]
    Empty(String),
}

/// Whether `head` (the first bytes of the input) reads as text: UTF-8 (a
/// character cut at the end is allowed) without control characters other
/// than tab, line feed and carriage return.
fn is_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    valid
        && head
            .iter()
            .all(|&b| b >= 0x20 || matches!(b, b'\t' | b'\n' | b'\r'))
}

/// The format of input starting with `head` (up to a few KiB): gzip data is
/// pprof; a JSON object naming speedscope is speedscope; a name ending
/// `.pb`, `.pb.gz` or `.pprof` is pprof; text is folded stacks; anything
/// else is [`InputFormat::Unknown`].
pub fn detect_format(head: &[u8], source_name: &str) -> InputFormat {
    let pprof_name = [".pb", ".pb.gz", ".pprof"]
        .iter()
        .any(|ext| source_name.ends_with(ext));
    let json =
        head.trim_ascii_start().starts_with(b"{") && head.windows(10).any(|w| w == b"speedscope");
    if crate::pprof::is_gzip(head) || pprof_name {
        InputFormat::Pprof
    } else if json {
        InputFormat::Speedscope
    } else if is_text(head) {
        InputFormat::Folded
    } else {
        InputFormat::Unknown
    }
}

/// Reads a whole profile of any format (see [`detect_format`]) from bytes;
/// `source_name` names it in errors. Default [`ReadLimits`].
///
/// # Errors
/// As [`read_profile_from`].
pub fn read_profile(bytes: &[u8], source_name: &str) -> Result<Profile, ReadError> {
    read_profile_from(&mut &bytes[..], source_name, &ReadLimits::default())
}

/// Reads a profile of any format from a stream: folded stacks a line at a
/// time, pprof and speedscope within `limits.max_decompressed_bytes`.
///
/// # Errors
/// [`ReadError::Folded`] for a malformed folded line (file and line number),
/// [`ReadError::Pprof`] for truncated, damaged or too large pprof data,
/// [`ReadError::Speedscope`] for a speedscope file stoke cannot read,
/// [`ReadError::NotAProfile`] for binary data of no known format,
/// [`ReadError::Io`] when reading fails, [`ReadError::Empty`] when there
/// are no samples.
pub fn read_profile_from(
    input: &mut dyn BufRead,
    source_name: &str,
    limits: &ReadLimits,
) -> Result<Profile, ReadError> {
    let io_error = |error| ReadError::Io {
        source_name: source_name.to_owned(),
        error,
    };
    let pprof_error = |error| ReadError::Pprof {
        source_name: source_name.to_owned(),
        error,
    };
    let head = input.fill_buf().map_err(io_error)?;
    let format = detect_format(head, source_name);
    let gzip = crate::pprof::is_gzip(head);
    let profile = match format {
        InputFormat::Folded => read_folded_with(input, source_name, limits)?,
        InputFormat::Pprof if gzip => {
            let raw = crate::pprof::gunzip_stream(input, limits).map_err(pprof_error)?;
            crate::pprof::read_message(&raw, limits).map_err(pprof_error)?
        }
        InputFormat::Pprof | InputFormat::Unknown => {
            let raw = read_limited(input, limits.max_decompressed_bytes).map_err(|e| match e {
                Limited::Io(e) => io_error(e),
                Limited::TooLarge(message) => pprof_error(PprofError::TooLarge(message)),
            })?;
            match (read_pprof_with(&raw, limits), format) {
                (Ok(profile), InputFormat::Unknown) if profile.is_empty() => {
                    return Err(ReadError::NotAProfile(source_name.to_owned()))
                }
                (Ok(profile), _) => profile,
                (
                    Err(PprofError::Decode(_) | PprofError::Wire(_) | PprofError::Invalid(_)),
                    InputFormat::Unknown,
                ) => return Err(ReadError::NotAProfile(source_name.to_owned())),
                (Err(error), _) => return Err(pprof_error(error)),
            }
        }
        InputFormat::Speedscope => {
            crate::speedscope::read_speedscope(input, limits).map_err(|message| {
                ReadError::Speedscope {
                    source_name: source_name.to_owned(),
                    message,
                }
            })?
        }
    };
    if profile.is_empty() {
        return Err(ReadError::Empty(source_name.to_owned()));
    }
    Ok(profile)
}

enum Limited {
    Io(io::Error),
    TooLarge(String),
}

/// All of `input`, if it is at most `max` bytes.
fn read_limited(input: &mut dyn BufRead, max: usize) -> Result<Vec<u8>, Limited> {
    let mut bytes = Vec::new();
    input
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(Limited::Io)?;
    if bytes.len() > max {
        return Err(Limited::TooLarge(format!(
            "it is larger than the limit of {}",
            bytes_text(max)
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_their_first_bytes() {
        assert_eq!(detect_format(b"a;b 1\n", "x"), InputFormat::Folded);
        assert_eq!(detect_format(b"\x1f\x8b\x08", "x"), InputFormat::Pprof);
        assert_eq!(detect_format(b"a;b 1\n", "x.pb"), InputFormat::Pprof);
        assert_eq!(
            detect_format(b"{\"$schema\":\"https://www.speedscope.app/", "x"),
            InputFormat::Speedscope
        );
        assert_eq!(
            detect_format(b"\x7fELF\x02\x01\x01\0", "x"),
            InputFormat::Unknown
        );
        assert_eq!(
            detect_format("caf\u{e9}".as_bytes(), "x"),
            InputFormat::Folded
        );
        assert_eq!(
            detect_format(&"é".as_bytes()[..1], "x"),
            InputFormat::Folded
        );
        assert_eq!(bytes_text(16 << 20), "16 MiB");
        assert_eq!(bytes_text(100), "100 bytes");
    }
}
