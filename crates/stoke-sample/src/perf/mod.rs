//! The perf-events sampler: attribute building, event selection, ring-buffer
//! sizing, record parsing, and the [`PerfSampler`](crate::PerfSampler) itself.

pub(crate) mod attach;
pub(crate) mod attr;
pub(crate) mod cpus;
pub(crate) mod cursor;
pub(crate) mod dedup;
pub(crate) mod filter;
pub(crate) mod launch;
pub(crate) mod multi;
pub(crate) mod open;
pub(crate) mod record;
pub(crate) mod sampler;
pub(crate) mod sizing;
pub(crate) mod switch;
pub(crate) mod system;
pub(crate) mod system_open;
pub(crate) mod system_targets;
