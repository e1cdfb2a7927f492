//! The profile model and its formats.
//!
//! Design constraints:
//! - A [`Profile`] holds interned frames, a stack trie (each stack is a
//!   frame plus its parent stack) and counts per (thread, stack). Stacks are
//!   ids inside; folded text is only an output (and input) format.
//! - Writers take an `io::Write` and produce deterministic bytes: the same
//!   profile gives the same output (sorted folded lines, seeded colours).
//! - No I/O of its own and no knowledge of how the profile was recorded.
//! - Names are data, never markup: the folded writer keeps `;` and line
//!   breaks out of names, and every name in an SVG is XML-escaped.

#![forbid(unsafe_code)]

mod folded;
mod model;
mod summary;
mod svg;

pub use folded::{read_folded, write_folded, FoldedError, FoldedOptions};
pub use model::{Frame, FrameId, FrameKind, Metadata, Profile, StackId, Thread, ThreadId};
pub use summary::{top_self, FunctionCount};
pub use svg::{write_svg, SvgError, SvgOptions};
