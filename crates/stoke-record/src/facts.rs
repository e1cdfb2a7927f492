//! What the aggregator may ask about a process beyond its events: the one
//! boundary between counting and the live system.
//!
//! Live recording answers from `/proc` ([`LiveProcfs`]); tests and replayed
//! streams answer from tables ([`ReplayFacts`]), so the aggregator is a pure
//! function of its events and these answers.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use stoke_model::{Mapping, MappingKind, Pid, Tid};
use stoke_unwind::TruncationReason;

/// Why a mapped module's file was not opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleUnavailable {
    /// [`TruncationReason::ModuleUnreadable`] or
    /// [`TruncationReason::ModuleMismatch`].
    pub reason: TruncationReason,
    /// The errno of the failed open, when there was one.
    pub errno: Option<i32>,
}

/// Facts about processes that events do not carry.
pub trait ProcessFacts: Send {
    /// A thread's current name, if the thread still exists.
    fn thread_name(&mut self, pid: Pid, tid: Tid) -> Option<String>;

    /// A process's executable mappings now, if it still exists (used when a
    /// sample falls outside every mapping its events told of).
    fn executable_mappings(&mut self, pid: Pid) -> Option<Vec<Mapping>>;

    /// Opens the file behind a file-backed mapping, as the process sees it,
    /// checked to be the mapped one (the module store's only way in).
    fn open_module(&mut self, pid: Pid, mapping: &Mapping) -> Result<File, ModuleUnavailable>;

    /// The process's root folder as stoke reaches it (`/proc/PID/root`),
    /// where the separate debug files of its binaries are looked up too.
    fn root_of(&mut self, _pid: Pid) -> Option<PathBuf> {
        None
    }

    /// The process's cgroup v2 path (`/system.slice/x.service`), if known.
    fn cgroup(&mut self, _pid: Pid) -> Option<String> {
        None
    }
}

/// Facts read from the live system's `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveProcfs;

impl ProcessFacts for LiveProcfs {
    fn thread_name(&mut self, pid: Pid, tid: Tid) -> Option<String> {
        stoke_sample::procfs::thread_name(pid, tid)
    }

    fn executable_mappings(&mut self, pid: Pid) -> Option<Vec<Mapping>> {
        stoke_sample::procfs::executable_mappings(pid).ok()
    }

    fn open_module(&mut self, pid: Pid, mapping: &Mapping) -> Result<File, ModuleUnavailable> {
        use stoke_sample::procfs::ModuleOpenError;
        stoke_sample::procfs::open_mapped_file(pid, mapping).map_err(|e| ModuleUnavailable {
            reason: match e {
                ModuleOpenError::Mismatch { .. } => TruncationReason::ModuleMismatch,
                _ => TruncationReason::ModuleUnreadable,
            },
            errno: e.errno(),
        })
    }

    fn root_of(&mut self, pid: Pid) -> Option<PathBuf> {
        Some(PathBuf::from(format!("/proc/{pid}/root")))
    }

    fn cgroup(&mut self, pid: Pid) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        cgroup_v2_path(&text)
    }
}

/// The cgroup v2 path in the text of `/proc/PID/cgroup` (its `0::PATH`
/// line); `None` on a v1-only system.
pub(crate) fn cgroup_v2_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_string)
}

/// Facts from tables: what a test or a recorded stream says, and nothing
/// else. Unknown threads have no name, unknown processes no mappings, and a
/// module is opened only from a file given for its path.
#[derive(Debug, Default)]
pub struct ReplayFacts {
    thread_names: HashMap<Tid, String>,
    mappings: HashMap<Pid, Vec<Mapping>>,
    files: HashMap<PathBuf, Result<PathBuf, ModuleUnavailable>>,
}

impl ReplayFacts {
    /// No facts at all.
    pub fn new() -> ReplayFacts {
        ReplayFacts::default()
    }

    /// Answers `thread_name(_, tid)` with `name`.
    pub fn thread(mut self, tid: Tid, name: &str) -> ReplayFacts {
        self.thread_names.insert(tid, name.to_string());
        self
    }

    /// Answers `executable_mappings(pid)` with `mappings`.
    pub fn maps(mut self, pid: Pid, mappings: Vec<Mapping>) -> ReplayFacts {
        self.mappings.insert(pid, mappings);
        self
    }

    /// Opens the module mapped from `path` by opening `file` instead.
    pub fn module_file(
        mut self,
        path: impl Into<PathBuf>,
        file: impl Into<PathBuf>,
    ) -> ReplayFacts {
        self.files.insert(path.into(), Ok(file.into()));
        self
    }

    /// Makes opening the module mapped from `path` fail.
    pub fn module_unavailable(
        mut self,
        path: impl Into<PathBuf>,
        why: ModuleUnavailable,
    ) -> ReplayFacts {
        self.files.insert(path.into(), Err(why));
        self
    }
}

impl ProcessFacts for ReplayFacts {
    fn thread_name(&mut self, _pid: Pid, tid: Tid) -> Option<String> {
        self.thread_names.get(&tid).cloned()
    }

    fn executable_mappings(&mut self, pid: Pid) -> Option<Vec<Mapping>> {
        self.mappings.get(&pid).cloned()
    }

    fn open_module(&mut self, _pid: Pid, mapping: &Mapping) -> Result<File, ModuleUnavailable> {
        let unreadable = ModuleUnavailable {
            reason: TruncationReason::ModuleUnreadable,
            errno: Some(libc::ENOENT),
        };
        let MappingKind::File(path) = &mapping.kind else {
            return Err(unreadable);
        };
        match self.files.get(path) {
            Some(Ok(file)) => File::open(file).map_err(|e| ModuleUnavailable {
                reason: TruncationReason::ModuleUnreadable,
                errno: e.raw_os_error(),
            }),
            Some(Err(why)) => Err(*why),
            None => Err(unreadable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cgroup_v2_path;

    #[test]
    fn the_cgroup_v2_line_gives_the_path() {
        let hybrid = "12:cpuset:/\n1:name=systemd:/user.slice\n0::/user.slice/session-2.scope\n";
        assert_eq!(
            cgroup_v2_path(hybrid).as_deref(),
            Some("/user.slice/session-2.scope")
        );
        assert_eq!(cgroup_v2_path("0::/\n").as_deref(), Some("/"));
        assert_eq!(cgroup_v2_path("3:memory:/docker/abc\n"), None);
    }
}
