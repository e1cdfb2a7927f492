//! The numbers of `stoke top`: counts per (thread, stack) taken at each
//! refresh, and the hottest functions over the last interval and since the
//! start (or the last reset) computed from them, with today's names.

use std::collections::{HashMap, HashSet};

use stoke_profile::FrameKind;
use stoke_record::{Aggregator, CountKey, LiveNamer, RawFrame, ThreadKey};

/// What rows are sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Samples in the function itself.
    SelfTime,
    /// Samples in the function and what it called.
    Total,
}

/// How the view is set up by keys.
#[derive(Clone, Copy, Debug)]
pub struct ViewOptions {
    pub sort: SortBy,
    /// Kernel frames shown (else a kernel leaf's time goes to its caller).
    pub kernel: bool,
    /// A row per thread rather than per process.
    pub per_thread: bool,
}

/// One function in one process (or thread).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub function: String,
    pub kind: FrameKind,
    /// `name [pid]` or `name [tid]`.
    pub place: String,
    pub self_interval: u64,
    pub total_interval: u64,
    pub self_all: u64,
    pub total_all: u64,
}

/// The rows and their denominators.
#[derive(Debug, Default)]
pub struct Table {
    pub rows: Vec<Row>,
    /// Samples in the last interval.
    pub interval_samples: u64,
    /// Samples since the start (or the last reset).
    pub all_samples: u64,
}

impl Table {
    /// A share in percent (0 with no samples).
    pub fn percent(part: u64, whole: u64) -> f64 {
        if whole == 0 {
            0.0
        } else {
            100.0 * part as f64 / whole as f64
        }
    }
}

/// Counts taken at refreshes.
#[derive(Debug, Default)]
pub struct Counts {
    /// At the start or the last reset.
    base: HashMap<CountKey, u64>,
    /// At the refresh before the last.
    previous: HashMap<CountKey, u64>,
    /// At the last refresh.
    last: HashMap<CountKey, u64>,
}

impl Counts {
    /// Takes the counts now: the last interval ends here.
    pub fn refresh(&mut self, aggregator: &Aggregator) {
        let now = aggregator
            .counted()
            .into_iter()
            .map(|(key, _, _, n)| (key, n))
            .collect();
        self.previous = std::mem::replace(&mut self.last, now);
    }

    /// Starts counting again from now.
    pub fn reset(&mut self, aggregator: &Aggregator) {
        self.refresh(aggregator);
        self.base = self.last.clone();
        self.previous = self.last.clone();
    }

    /// The rows, named with what `namer` knows now, sorted.
    pub fn table(&self, aggregator: &Aggregator, namer: &LiveNamer, view: ViewOptions) -> Table {
        let mut rows: HashMap<(String, String), Row> = HashMap::new();
        let mut table = Table::default();
        let mut names: Vec<(String, FrameKind)> = Vec::new();
        for (key, thread, frames, _) in aggregator.counted() {
            let Some(&last) = self.last.get(&key) else {
                continue;
            };
            let interval = last - self.previous.get(&key).copied().unwrap_or(0);
            let all = last - self.base.get(&key).copied().unwrap_or(0);
            if all == 0 {
                continue;
            }
            table.interval_samples += interval;
            table.all_samples += all;
            names.clear();
            leaf_first_names(frames, aggregator, namer, view.kernel, &mut names);
            let place = place(thread, view.per_thread);
            let mut seen: HashSet<&str> = HashSet::new();
            for (i, (name, kind)) in names.iter().enumerate() {
                if !seen.insert(name.as_str()) {
                    continue;
                }
                let row = rows
                    .entry((name.clone(), place.clone()))
                    .or_insert_with(|| Row {
                        function: name.clone(),
                        kind: *kind,
                        place: place.clone(),
                        self_interval: 0,
                        total_interval: 0,
                        self_all: 0,
                        total_all: 0,
                    });
                row.total_interval += interval;
                row.total_all += all;
                if i == 0 {
                    row.self_interval += interval;
                    row.self_all += all;
                }
            }
        }
        table.rows = rows.into_values().collect();
        sort(&mut table.rows, view.sort);
        table
    }
}

/// The names of a stack's frames, leaf first (inlined callees before the
/// function they were inlined into). Without kernel frames, a stack that
/// was all kernel is `[kernel]`.
fn leaf_first_names(
    frames: &[RawFrame],
    aggregator: &Aggregator,
    namer: &LiveNamer,
    kernel: bool,
    out: &mut Vec<(String, FrameKind)>,
) {
    for raw in frames {
        if !kernel && matches!(raw, RawFrame::Kernel(_)) {
            continue;
        }
        for frame in namer.frames(raw, aggregator).into_iter().rev() {
            out.push((frame.name, frame.kind));
        }
    }
    if out.is_empty() {
        out.push(("[kernel]".into(), FrameKind::Kernel));
    }
}

fn place(thread: &ThreadKey, per_thread: bool) -> String {
    if per_thread {
        let name = thread.thread_name.as_deref().unwrap_or("?");
        format!("{name} [{}]", thread.tid.0)
    } else {
        let name = thread.process_name.as_deref().unwrap_or("?");
        format!("{name} [{}]", thread.pid.0)
    }
}

/// Most first by the chosen column in the last interval, then since the
/// start; then by name, so the order is stable.
pub fn sort(rows: &mut [Row], by: SortBy) {
    let key = |r: &Row| match by {
        SortBy::SelfTime => (r.self_interval, r.self_all, r.total_interval),
        SortBy::Total => (r.total_interval, r.total_all, r.self_interval),
    };
    rows.sort_by(|a, b| {
        key(b)
            .cmp(&key(a))
            .then_with(|| a.function.cmp(&b.function))
            .then_with(|| a.place.cmp(&b.place))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(function: &str, s: u64, t: u64) -> Row {
        Row {
            function: function.into(),
            kind: FrameKind::User,
            place: "p [1]".into(),
            self_interval: s,
            total_interval: t,
            self_all: s,
            total_all: t,
        }
    }

    #[test]
    fn rows_sort_by_self_or_total() {
        let mut rows = vec![row("main", 0, 100), row("hot", 75, 75), row("cold", 25, 25)];
        sort(&mut rows, SortBy::SelfTime);
        let names: Vec<&str> = rows.iter().map(|r| r.function.as_str()).collect();
        assert_eq!(names, ["hot", "cold", "main"]);
        sort(&mut rows, SortBy::Total);
        assert_eq!(rows[0].function, "main");
        assert_eq!(Table::percent(1, 4), 25.0);
        assert_eq!(Table::percent(1, 0), 0.0);
    }
}
