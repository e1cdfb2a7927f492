//! pprof: the gzipped `profile.proto` protobuf read by `go tool pprof`,
//! Pyroscope, Grafana and most profile viewers.
//!
//! How a [`Profile`](crate::Profile) maps onto pprof:
//! - sample types `samples`/`count` and, when the frequency is known,
//!   `cpu`/`nanoseconds` (samples × [`Metadata::period_ns`](crate::Metadata::period_ns));
//!   the period type is `cpu`/`nanoseconds`, the default sample type `cpu`;
//! - one sample per (thread, stack), with labels `process` and `thread`
//!   (names), `pid` and `tid` (numbers) for what is known of the thread;
//! - a location per run of a function and the functions inlined into it:
//!   its lines list the innermost inlined function first, as pprof expects;
//! - a function per (name, source file); a mapping per module, with its path
//!   and build-id, plus `[kernel.kallsyms]` for kernel frames and `[jit]` for
//!   JIT frames;
//! - comments: the command line, then `stoke:event=…`, `stoke:lost=…`,
//!   `stoke:truncated=…`.

pub mod proto;
mod read;
mod wire;
mod write;

pub(crate) use read::is_gzip;
pub use read::read_pprof_with;
pub use read::{decode, read_pprof, PprofError};
pub(crate) use read::{gunzip_stream, read_message};
pub use write::write_pprof;

/// Mapping file name of kernel frames.
const KERNEL_MAPPING: &str = "[kernel.kallsyms]";
/// Mapping file name of JIT frames.
const JIT_MAPPING: &str = "[jit]";
