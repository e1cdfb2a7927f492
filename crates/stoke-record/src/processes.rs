//! What is known of the target's processes: names and executable mappings,
//! kept up to date from Comm, Mmap, Fork and Exit events. A process's state
//! lives from its first event to its exit: a pid the kernel hands out again
//! starts with nothing of the dead process.

use std::collections::HashMap;

use stoke_model::{Mapping, MappingKind, Pid, Tid};

use crate::facts::ProcessFacts;
use crate::stack::ModuleIndex;

/// One process's mappings, sorted by start address.
#[derive(Clone, Debug, Default)]
pub(crate) struct Process {
    /// The name of its main thread (its `comm` after exec).
    pub name: Option<String>,
    /// Executable mappings, sorted by start, non-overlapping.
    pub mappings: Vec<Mapping>,
    /// Bumped whenever `mappings` changes, so derived tables know to rebuild.
    pub generation: u64,
    /// The module of each mapping once interned, by the mapping's index
    /// (so a frame costs no key built or hashed); emptied when `mappings`
    /// changes.
    module_of: Vec<Option<ModuleIndex>>,
    /// Samples seen when its maps were last re-read from /proc (rate limit).
    refreshed_at: Option<u64>,
}

impl Process {
    /// Adds a mapping, replacing whatever it overlaps.
    pub fn add_mapping(&mut self, mapping: Mapping) {
        self.mappings
            .retain(|m| m.end.0 <= mapping.start.0 || m.start.0 >= mapping.end.0);
        let at = self
            .mappings
            .partition_point(|m| m.start.0 < mapping.start.0);
        self.mappings.insert(at, mapping);
        self.generation += 1;
        self.module_of.clear();
    }

    /// The index in `mappings` of the mapping containing `addr`.
    pub fn find_index(&self, addr: u64) -> Option<usize> {
        let i = self.mappings.partition_point(|m| m.start.0 <= addr);
        let i = i.checked_sub(1)?;
        self.mappings[i].contains(addr).then_some(i)
    }

    /// The module interned for mapping `i`, if it was.
    pub fn module_of(&self, i: usize) -> Option<ModuleIndex> {
        self.module_of.get(i).copied().flatten()
    }

    /// Remembers the module interned for mapping `i`.
    pub fn set_module_of(&mut self, i: usize, module: ModuleIndex) {
        if self.module_of.len() != self.mappings.len() {
            self.module_of = vec![None; self.mappings.len()];
        }
        if let Some(slot) = self.module_of.get_mut(i) {
            *slot = Some(module);
        }
    }

    /// The mapping containing `addr`.
    #[cfg(test)]
    pub fn find(&self, addr: u64) -> Option<&Mapping> {
        self.find_index(addr).map(|i| &self.mappings[i])
    }
}

/// All processes and threads seen.
#[derive(Debug, Default)]
pub(crate) struct Processes {
    processes: HashMap<Pid, Process>,
    thread_names: HashMap<Tid, ThreadName>,
}

/// A thread's name and the process it belongs to (freed with it).
#[derive(Clone, Debug)]
struct ThreadName {
    pid: Pid,
    name: String,
}

/// How many samples must pass before a process's maps may be re-read again.
const REFRESH_INTERVAL: u64 = 64;

impl Processes {
    pub fn process_mut(&mut self, pid: Pid) -> &mut Process {
        self.processes.entry(pid).or_default()
    }

    pub fn process(&self, pid: Pid) -> Option<&Process> {
        self.processes.get(&pid)
    }

    /// A process's state, if it has any.
    pub fn get_mut(&mut self, pid: Pid) -> Option<&mut Process> {
        self.processes.get_mut(&pid)
    }

    /// A thread or process was named. At exec, the old mappings are gone.
    pub fn comm(&mut self, pid: Pid, tid: Tid, name: String, exec: bool) {
        let process = self.process_mut(pid);
        if exec {
            process.mappings.clear();
            process.module_of.clear();
            process.generation += 1;
        }
        if tid.0 == pid.0 {
            process.name = Some(name.clone());
        }
        self.thread_names.insert(tid, ThreadName { pid, name });
    }

    /// A thread ended; when it is the process's main thread, the process is
    /// gone and everything known of it (mappings, names) is forgotten.
    pub fn exit(&mut self, pid: Pid, tid: Tid) {
        self.thread_names.remove(&tid);
        if tid.0 == pid.0 {
            self.processes.remove(&pid);
            self.thread_names.retain(|_, t| t.pid != pid);
        }
    }

    /// How many processes have state (for tests of the lifetime rules).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.processes.len()
    }

    /// A new process inherits its parent's mappings and name; a new thread
    /// its creator's name.
    pub fn fork(&mut self, pid: Pid, ppid: Pid, tid: Tid, ptid: Tid) {
        if pid != ppid && !self.processes.contains_key(&pid) {
            if let Some(parent) = self.processes.get(&ppid) {
                let child = Process {
                    name: parent.name.clone(),
                    mappings: parent.mappings.clone(),
                    module_of: parent.module_of.clone(),
                    generation: 0,
                    refreshed_at: None,
                };
                self.processes.insert(pid, child);
            }
        }
        if let Some(name) = self.thread_names.get(&ptid).map(|t| t.name.clone()) {
            self.thread_names
                .entry(tid)
                .or_insert(ThreadName { pid, name });
        }
    }

    /// The name of a thread, asking `facts` (`/proc`) while it still lives.
    pub fn thread_name(
        &mut self,
        pid: Pid,
        tid: Tid,
        facts: &mut dyn ProcessFacts,
    ) -> Option<String> {
        if let Some(t) = self.thread_names.get(&tid) {
            return Some(t.name.clone());
        }
        let name = facts.thread_name(pid, tid)?;
        self.thread_names.insert(
            tid,
            ThreadName {
                pid,
                name: name.clone(),
            },
        );
        if tid.0 == pid.0 {
            self.process_mut(pid).name.get_or_insert(name.clone());
        }
        Some(name)
    }

    /// The name of a process: its main thread's name.
    pub fn process_name(&mut self, pid: Pid, facts: &mut dyn ProcessFacts) -> Option<String> {
        if let Some(name) = self.processes.get(&pid).and_then(|p| p.name.clone()) {
            return Some(name);
        }
        self.thread_name(pid, Tid(pid.0), facts)
    }

    /// Re-reads a process's mappings (from /proc) after an address fell in
    /// no known mapping (events can be missed, e.g. before attaching). Rate
    /// limited by sample count; returns whether anything was read.
    pub fn refresh_mappings(
        &mut self,
        pid: Pid,
        samples_seen: u64,
        facts: &mut dyn ProcessFacts,
    ) -> bool {
        let process = self.process_mut(pid);
        if let Some(at) = process.refreshed_at {
            if samples_seen < at + REFRESH_INTERVAL {
                return false;
            }
        }
        process.refreshed_at = Some(samples_seen);
        let Some(mappings) = facts.executable_mappings(pid) else {
            return false;
        };
        for mapping in mappings {
            process.add_mapping(mapping);
        }
        true
    }
}

/// Whether a mapping holds code of a file (as opposed to JIT or pseudo).
pub(crate) fn is_file_backed(mapping: &Mapping) -> bool {
    matches!(mapping.kind, MappingKind::File(_) | MappingKind::Vdso)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoke_model::Avma;

    fn map(start: u64, end: u64, name: &str) -> Mapping {
        Mapping {
            start: Avma(start),
            end: Avma(end),
            file_offset: 0,
            kind: MappingKind::File(name.into()),
            dev: 0,
            inode: 1,
            build_id: None,
            executable: true,
        }
    }

    #[test]
    fn mappings_replace_what_they_overlap_and_are_found_by_address() {
        let mut p = Process::default();
        p.add_mapping(map(0x1000, 0x2000, "/a"));
        p.add_mapping(map(0x3000, 0x4000, "/b"));
        p.add_mapping(map(0x1800, 0x2800, "/c"));
        assert_eq!(p.mappings.len(), 2);
        assert_eq!(p.find(0x1900).unwrap().short_name(), "c");
        assert!(p.find(0x1000).is_none());
        assert_eq!(p.find(0x3fff).unwrap().short_name(), "b");
        assert!(p.find(0x4000).is_none());
    }

    #[test]
    fn exec_forgets_mappings_and_renames_the_process() {
        let mut ps = Processes::default();
        ps.process_mut(Pid(5))
            .add_mapping(map(0x1000, 0x2000, "/bin/sh"));
        ps.fork(Pid(6), Pid(5), Tid(6), Tid(5));
        assert_eq!(ps.process(Pid(6)).unwrap().mappings.len(), 1);
        ps.comm(Pid(6), Tid(6), "split_one".into(), true);
        assert!(ps.process(Pid(6)).unwrap().mappings.is_empty());
        let mut facts = crate::facts::ReplayFacts::new();
        assert_eq!(
            ps.process_name(Pid(6), &mut facts).as_deref(),
            Some("split_one")
        );
    }

    #[test]
    fn exit_of_the_main_thread_frees_the_process() {
        let mut ps = Processes::default();
        ps.process_mut(Pid(7))
            .add_mapping(map(0x1000, 0x2000, "/old"));
        ps.comm(Pid(7), Tid(7), "old".into(), false);
        ps.comm(Pid(7), Tid(8), "old-worker".into(), false);
        ps.exit(Pid(7), Tid(8));
        assert_eq!(ps.process(Pid(7)).unwrap().mappings.len(), 1);
        ps.exit(Pid(7), Tid(7));
        assert_eq!(ps.len(), 0);
        assert!(ps.thread_names.is_empty());
    }
}
