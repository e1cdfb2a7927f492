//! Summaries of a profile for the terminal.

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
pub fn top_self(profile: &Profile, n: usize) -> Vec<FunctionCount> {
    let _ = (profile, n);
    todo!()
}
