//! Folded stacks as the tests see them, and the truth the fixtures print.

use std::collections::BTreeSet;
use std::path::Path;

/// One line of folded output: frames root first, and a sample count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack {
    /// Frames, root (the process name) first.
    pub frames: Vec<String>,
    /// Samples with this stack.
    pub count: u64,
}

impl Stack {
    /// The root frame: the process name.
    pub fn root(&self) -> &str {
        &self.frames[0]
    }

    /// Whether a frame of the stack is exactly `frame`.
    pub fn contains(&self, frame: &str) -> bool {
        self.frames.iter().any(|f| f == frame)
    }

    /// How many frames of the stack are exactly `frame`.
    pub fn occurrences(&self, frame: &str) -> usize {
        self.frames.iter().filter(|f| *f == frame).count()
    }

    /// Whether the stack stopped short of its root (a `[truncated: …]` frame).
    pub fn is_truncated(&self) -> bool {
        self.frames.iter().any(|f| f.starts_with("[truncated"))
    }

    /// The innermost user-space frame (kernel frames, `_[k]`, skipped).
    pub fn user_leaf(&self) -> Option<&str> {
        self.frames
            .iter()
            .rev()
            .find(|f| !f.ends_with("_[k]"))
            .map(String::as_str)
    }
}

/// Parsed folded output.
#[derive(Clone, Debug, Default)]
pub struct Folded {
    /// The lines, in file order.
    pub stacks: Vec<Stack>,
}

impl Folded {
    /// Parses folded text; panics, naming the line, on a malformed one.
    pub fn parse(text: &str) -> Folded {
        let stacks = text
            .lines()
            .enumerate()
            .map(|(index, line)| {
                Self::parse_line(line)
                    .unwrap_or_else(|| panic!("line {} is not folded: {line:?}", index + 1))
            })
            .collect();
        Folded { stacks }
    }

    /// Parses the lines of `text` that are folded stacks, skipping the others
    /// (e.g. a fixture's own output mixed into stoke's stdout).
    pub fn parse_lenient(text: &str) -> Folded {
        let stacks = text.lines().filter_map(Self::parse_line).collect();
        Folded { stacks }
    }

    fn parse_line(line: &str) -> Option<Stack> {
        let (stack, count) = line.rsplit_once(' ')?;
        let count = count.parse().ok()?;
        let frames: Vec<String> = stack.split(';').map(str::to_owned).collect();
        if stack.is_empty() || frames.iter().any(String::is_empty) {
            return None;
        }
        Some(Stack { frames, count })
    }

    /// Reads and parses a folded file.
    pub fn read(path: &Path) -> Folded {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Folded::parse(&text)
    }

    /// All samples.
    pub fn total(&self) -> u64 {
        self.count(|_| true)
    }

    /// Samples whose stack satisfies `predicate`.
    pub fn count(&self, predicate: impl Fn(&Stack) -> bool) -> u64 {
        self.stacks
            .iter()
            .filter(|s| predicate(s))
            .map(|s| s.count)
            .sum()
    }

    /// Fraction of all samples whose stack satisfies `predicate` (0 when
    /// there are no samples).
    pub fn share(&self, predicate: impl Fn(&Stack) -> bool) -> f64 {
        ratio(self.count(predicate), self.total())
    }

    /// Fraction of samples whose stack contains `frame`.
    pub fn share_containing(&self, frame: &str) -> f64 {
        self.share(|s| s.contains(frame))
    }

    /// Among samples containing `a` or `b`, the fraction containing `a`, and
    /// how many samples that fraction is taken over.
    pub fn split(&self, a: &str, b: &str) -> (f64, u64) {
        let of_a = self.count(|s| s.contains(a));
        let of_either = self.count(|s| s.contains(a) || s.contains(b));
        (ratio(of_a, of_either), of_either)
    }

    /// The stacks satisfying `predicate`.
    pub fn filter(&self, predicate: impl Fn(&Stack) -> bool) -> Folded {
        let stacks = self
            .stacks
            .iter()
            .filter(|s| predicate(s))
            .cloned()
            .collect();
        Folded { stacks }
    }

    /// The stacks of the process called `name` (their root frame).
    pub fn of_process(&self, name: &str) -> Folded {
        self.filter(|s| s.root() == name)
    }

    /// The distinct root frames (process names).
    pub fn roots(&self) -> BTreeSet<&str> {
        self.stacks.iter().map(Stack::root).collect()
    }

    /// The `index`-th frames (0 is the root) of all stacks long enough.
    pub fn frames_at(&self, index: usize) -> BTreeSet<&str> {
        self.stacks
            .iter()
            .filter_map(|s| s.frames.get(index).map(String::as_str))
            .collect()
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The CPU split a fixture measured itself and printed as
/// `split hot=0.7512 cold=0.2488`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeasuredSplit {
    /// Fraction of the measured CPU time spent in `hot`.
    pub hot: f64,
    /// Fraction spent in `cold`.
    pub cold: f64,
}

impl MeasuredSplit {
    /// Finds the `split …` line in a fixture's output.
    pub fn from_output(output: &str) -> MeasuredSplit {
        let line = output
            .lines()
            .find(|l| l.starts_with("split "))
            .unwrap_or_else(|| panic!("no `split` line in the fixture's output:\n{output}"));
        let field = |key: &str| -> f64 {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(key))
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no {key}<number> in {line:?}"))
        };
        MeasuredSplit {
            hot: field("hot="),
            cold: field("cold="),
        }
    }
}
