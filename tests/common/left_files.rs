//! Files a recording's target leaves in /tmp (its perf maps), removed when
//! the test ends.

use std::path::PathBuf;

/// Removes the files it names on drop.
pub struct LeftFiles(Vec<PathBuf>);

impl LeftFiles {
    /// The `map PATH` lines a JIT fixture printed.
    pub fn from_stdout(stdout: &str) -> LeftFiles {
        LeftFiles(
            stdout
                .lines()
                .filter_map(|l| l.strip_prefix("map "))
                .map(PathBuf::from)
                .collect(),
        )
    }

    /// How many files it names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `/tmp/perf-PID.map` of each pid stoke said it records.
    pub fn perf_maps_from_stderr(stderr: &str) -> LeftFiles {
        LeftFiles(
            stderr
                .lines()
                .filter_map(|l| l.strip_prefix("stoke: recording pid "))
                .filter_map(|rest| rest.split_whitespace().next())
                .filter_map(|pid| pid.parse::<u32>().ok())
                .map(|pid| PathBuf::from(format!("/tmp/perf-{pid}.map")))
                .collect(),
        )
    }
}

impl Drop for LeftFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}
