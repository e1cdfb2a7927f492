//! Summaries of a profile for the terminal.

use std::collections::HashMap;

use crate::{FrameKind, Profile};

/// A function and its sample count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionCount {
    /// The function (frame) name.
    pub name: String,
    /// Whether it is a kernel function.
    pub kernel: bool,
    /// Samples.
    pub count: u64,
}

/// The `n` functions with the most self samples (the leaf frame), most first,
/// ties by name.
///
/// Frames are grouped by name and by whether they are kernel functions: the
/// same name in two modules counts as one function. Threads are summed.
pub fn top_self(profile: &Profile, n: usize) -> Vec<FunctionCount> {
    let mut per_name: HashMap<(&str, bool), u64> = HashMap::new();
    for (_, stack, count) in profile.samples() {
        let frame = profile.frame(profile.stack_frame(stack));
        let key = (frame.name.as_str(), frame.kind == FrameKind::Kernel);
        let total = per_name.entry(key).or_insert(0);
        *total = total.saturating_add(count);
    }
    let mut top: Vec<((&str, bool), u64)> = per_name.into_iter().collect();
    top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(n);
    top.into_iter()
        .map(|((name, kernel), count)| FunctionCount {
            name: name.to_owned(),
            kernel,
            count,
        })
        .collect()
}

impl FunctionCount {
    /// The name as shown: kernel functions marked `[kernel]`.
    pub fn label(&self) -> String {
        crate::report::label(&self.name, self.kernel)
    }
}
