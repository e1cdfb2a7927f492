//! The profile model and its formats: folded stacks (read and write), SVG
//! flame graphs, pprof (read and write), speedscope JSON, a function report
//! and the comparison of two profiles.
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

mod diff;
mod folded;
mod input;
mod model;
pub mod pprof;
mod report;
mod speedscope;
mod stats;
mod summary;
mod svg;

pub use diff::{
    compare_self_shares, write_diff_svg, write_share_table, ShareChange, ShareComparison,
};
pub use folded::{read_folded, read_folded_with, write_folded, FoldedError, FoldedOptions};
pub use input::{
    detect_format, read_profile, read_profile_from, InputFormat, ReadError, ReadLimits,
};
pub use model::{
    Clock, Frame, FrameId, FrameKind, Metadata, Module, Profile, SampledTime, StackId, Thread,
    ThreadId,
};
pub use pprof::{read_pprof, read_pprof_with, write_pprof, PprofError};
pub use report::{function_stats, write_report, FunctionStats, ReportOptions, ReportOrder};
pub use speedscope::{read_speedscope, write_speedscope, SpeedscopeOptions};
pub use summary::{top_self, FunctionCount};
pub use svg::{write_svg, SvgError, SvgOptions, SvgPalette};
