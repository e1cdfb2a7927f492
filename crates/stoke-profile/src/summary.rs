//! Summaries of a profile for the terminal.

use std::collections::HashMap;

use crate::Profile;

/// A function and its sample count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionCount {
    /// The function (frame) name.
    pub name: String,
    /// Samples.
    pub count: u64,
}

/// The `n` functions with the most self samples (the leaf frame), most first,
/// ties by name.
///
/// Frames are grouped by name only: the same name in two modules, or as a
/// kernel and a user frame, counts as one function. Threads are summed.
pub fn top_self(profile: &Profile, n: usize) -> Vec<FunctionCount> {
    let mut per_name: HashMap<&str, u64> = HashMap::new();
    for (_, stack, count) in profile.samples() {
        let name = profile.frame(profile.stack_frame(stack)).name.as_str();
        let total = per_name.entry(name).or_insert(0);
        *total = total.saturating_add(count);
    }
    let mut top: Vec<(&str, u64)> = per_name.into_iter().collect();
    top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    top.truncate(n);
    top.into_iter()
        .map(|(name, count)| FunctionCount {
            name: name.to_owned(),
            count,
        })
        .collect()
}
