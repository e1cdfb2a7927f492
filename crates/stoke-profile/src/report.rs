//! `stoke report`: the top functions by self and total samples, as a
//! terminal table (like `perf report --no-children` and `pprof -top`).

use std::collections::{HashMap, HashSet};
use std::io;

use crate::svg::thousands;
use crate::{FrameKind, Profile};

/// A function's samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionStats {
    /// The function (frame) name.
    pub name: String,
    /// Whether it is a kernel function (shown `name [kernel]`).
    pub kernel: bool,
    /// Samples in which it is the leaf (running itself).
    pub self_samples: u64,
    /// Samples in which it is anywhere on the stack (itself or a callee
    /// running); a recursive function counts once per sample.
    pub total_samples: u64,
}

/// Which column orders the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReportOrder {
    /// Self samples, most first (`perf report --no-children`, `pprof -top`).
    #[default]
    SelfSamples,
    /// Total samples, most first (`pprof -top -cum`).
    TotalSamples,
}

/// Options of the report.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Rows to show.
    pub top: usize,
    /// The ordering column.
    pub order: ReportOrder,
}

impl Default for ReportOptions {
    fn default() -> ReportOptions {
        ReportOptions {
            top: 20,
            order: ReportOrder::SelfSamples,
        }
    }
}

impl FunctionStats {
    /// The name as shown: kernel functions marked `[kernel]`.
    pub fn label(&self) -> String {
        label(&self.name, self.kernel)
    }
}

/// `name`, or `name [kernel]` for a kernel function.
pub(crate) fn label(name: &str, kernel: bool) -> String {
    if kernel {
        format!("{name} [kernel]")
    } else {
        name.to_owned()
    }
}

/// Self and total samples of every function, grouped by name and whether it
/// is a kernel function (threads summed), ordered by `order` then by the
/// other count, then by name.
pub fn function_stats(profile: &Profile, order: ReportOrder) -> Vec<FunctionStats> {
    let key = |frame| {
        let frame = profile.frame(frame);
        (frame.name.as_str(), frame.kind == FrameKind::Kernel)
    };
    let mut stats: HashMap<(&str, bool), (u64, u64)> = HashMap::new();
    let mut seen: HashSet<(&str, bool)> = HashSet::new();
    for (_, stack, count) in profile.samples() {
        let entry = stats.entry(key(profile.stack_frame(stack))).or_default();
        entry.0 = entry.0.saturating_add(count);
        seen.clear();
        for frame in profile.stack_frames(stack) {
            if seen.insert(key(frame)) {
                let entry = stats.entry(key(frame)).or_default();
                entry.1 = entry.1.saturating_add(count);
            }
        }
    }
    let mut rows: Vec<FunctionStats> = stats
        .into_iter()
        .map(
            |((name, kernel), (self_samples, total_samples))| FunctionStats {
                name: name.to_owned(),
                kernel,
                self_samples,
                total_samples,
            },
        )
        .collect();
    rows.sort_by(|a, b| {
        let key = |f: &FunctionStats| match order {
            ReportOrder::SelfSamples => (f.self_samples, f.total_samples),
            ReportOrder::TotalSamples => (f.total_samples, f.self_samples),
        };
        key(b)
            .cmp(&key(a))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.kernel.cmp(&b.kernel))
    });
    rows
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Writes the top [`ReportOptions::top`] functions as a table: self samples
/// and percentage, the running sum of self percentages, total samples and
/// percentage, and the name (kernel functions marked `[kernel]`).
/// Percentages are of all samples.
///
/// ```text
///      self   self%    sum%     total  total%  function
///     2,251  75.33%  75.33%     2,251  75.33%  hot
/// ```
///
/// # Errors
/// When writing to `out` fails.
pub fn write_report(
    profile: &Profile,
    options: &ReportOptions,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    let total = profile.total_samples();
    let rows = function_stats(profile, options.order);
    writeln!(
        out,
        "{:>10} {:>7} {:>7} {:>10} {:>7}  function",
        "self", "self%", "sum%", "total", "total%"
    )?;
    let mut sum = 0;
    for row in rows.iter().take(options.top) {
        sum += row.self_samples;
        writeln!(
            out,
            "{:>10} {:>6.2}% {:>6.2}% {:>10} {:>6.2}%  {}",
            thousands(row.self_samples),
            percent(row.self_samples, total),
            percent(sum, total),
            thousands(row.total_samples),
            percent(row.total_samples, total),
            row.label()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
        )?;
    }
    if rows.len() > options.top {
        writeln!(
            out,
            "({} more functions; --top N shows more)",
            rows.len() - options.top
        )?;
    }
    out.flush()
}
