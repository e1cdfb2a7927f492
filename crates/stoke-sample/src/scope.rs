//! Targets beyond one process: the whole machine, a list of pids,
//! processes by name, a cgroup.

use std::path::PathBuf;

use stoke_model::Pid;

/// What a system-wide recording covers.
#[derive(Clone, Debug)]
pub enum SystemScope {
    /// Every process on every CPU, kernel threads included (`-a`). Samples
    /// of the idle task (pid 0) are kept only with `idle`.
    All {
        /// Whether the idle task's samples are kept.
        idle: bool,
    },
    /// These processes (`-p 1,2,3`), their threads and the children they
    /// start.
    Pids(Vec<Pid>),
    /// Every process whose command name or executable matches, at start;
    /// with `follow_new` also processes that exec into a matching name later.
    Name {
        /// The pattern.
        pattern: NamePattern,
        /// Whether later processes join.
        follow_new: bool,
    },
    /// The tasks of a cgroup v2 folder (perf's `-G`): an absolute path, or
    /// one relative to the cgroup2 mount.
    Cgroup(PathBuf),
}

/// A process-name pattern: `*` matches any run of characters, `?` one
/// character; anything else matches itself. Matched against the whole
/// command name (`comm`, 15 bytes at most) or the executable's file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    /// The pattern `text`.
    pub fn new(text: &str) -> NamePattern {
        NamePattern(text.to_string())
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a process of command name `comm` (and executable file name
    /// `exe`, when known) matches. A command name cut at 15 bytes matches a
    /// pattern it is a cut of.
    pub fn matches(&self, comm: &str, exe: Option<&str>) -> bool {
        let pattern = self.0.as_bytes();
        if glob(pattern, comm.as_bytes()) || exe.is_some_and(|e| glob(pattern, e.as_bytes())) {
            return true;
        }
        // The kernel keeps 15 bytes of a name: `short_threads_x` is what
        // `short_threads_xyz` runs as.
        comm.len() == 15 && !self.0.contains(['*', '?']) && self.0.starts_with(comm)
    }

    /// The live processes that match, in pid order (kernel threads too,
    /// by their command name).
    pub fn running(&self) -> Vec<Pid> {
        let own = std::process::id();
        let mut out: Vec<Pid> = crate::procfs::all_pids()
            .into_iter()
            .filter(|pid| pid.0 != own)
            .filter(|&pid| {
                let comm = crate::procfs::thread_name(pid, pid.into()).unwrap_or_default();
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
                let exe = exe
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned());
                self.matches(&comm, exe.as_deref())
            })
            .collect();
        out.sort_unstable();
        out
    }
}

/// Glob match of the whole `text` by `pattern` (`*`, `?`).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        let p = NamePattern::new("work*");
        assert!(p.matches("worker", None));
        assert!(!p.matches("a-worker", None));
        assert!(NamePattern::new("*work?").matches("a-works", None));
        assert!(NamePattern::new("python3").matches("python3", None));
        assert!(!NamePattern::new("python").matches("python3", None));
        assert!(NamePattern::new("python3.12").matches("x", Some("python3.12")));
        assert!(NamePattern::new("short_threads_xyz").matches("short_threads_x", None));
        assert!(glob(b"*", b""));
        assert!(!glob(b"a", b""));
    }
}
