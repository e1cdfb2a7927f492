//! Which records of per-CPU events concern the target.
//!
//! Per-CPU events with no task see every process. A [`TaskFilter`] keeps
//! what the caller asked for: everything (`-a`, idle left out unless
//! asked), or a set of processes kept up to date from the records
//! themselves: a fork by a member adds the child, the exit of a member's
//! main thread removes it, and an exec whose new name matches a pattern
//! adds the process (`--name` with `--follow-new`). Pure: records in,
//! decisions out.

use std::collections::HashSet;

use stoke_model::Pid;

use crate::{Event, NamePattern};

/// What a [`TaskFilter`] keeps.
#[derive(Clone, Debug)]
pub(crate) enum Keep {
    /// Every process (and the idle task when `idle`).
    All {
        /// Whether samples of the idle task (pid 0) are kept.
        idle: bool,
    },
    /// The processes in the set, and the children they start.
    Processes {
        /// The members.
        pids: HashSet<Pid>,
        /// A launched command's pid: nothing of it is kept before its
        /// exec (the moment the per-task sampler would enable at).
        awaiting_exec: Option<Pid>,
        /// Processes that exec into a matching name join the set.
        follow_new: Option<NamePattern>,
    },
}

/// Decides, record by record in time order, which records to keep.
#[derive(Clone, Debug)]
pub(crate) struct TaskFilter {
    keep: Keep,
    /// Processes that exec'd into a name the `follow_new` pattern does not
    /// match: the first file their new image maps is the executable, whose
    /// file name is matched then (a command run through a symlink or a
    /// name cut at 15 bytes).
    awaiting_executable: HashSet<Pid>,
}

/// The file name of a file mapping.
fn mapped_file_name(mapping: &stoke_model::Mapping) -> Option<String> {
    match &mapping.kind {
        stoke_model::MappingKind::File(path) => path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned()),
        _ => None,
    }
}

impl TaskFilter {
    /// A filter keeping `keep`.
    pub(crate) fn new(keep: Keep) -> TaskFilter {
        TaskFilter {
            keep,
            awaiting_executable: HashSet::new(),
        }
    }

    /// Whether any process is still followed (always for [`Keep::All`]).
    pub(crate) fn follows_anything(&self) -> bool {
        match &self.keep {
            Keep::All { .. } => true,
            Keep::Processes {
                pids, follow_new, ..
            } => !pids.is_empty() || follow_new.is_some(),
        }
    }

    /// The processes whose samples may be kept, given the other records
    /// read with them (`side`, any order): the members, and every process a
    /// fork or exec among `side` may add. `None` when every process may be
    /// kept. A superset, so samples outside it can be skipped unparsed.
    pub(crate) fn candidates(&self, side: &[(u64, Event)]) -> Option<HashSet<Pid>> {
        let Keep::Processes {
            pids, follow_new, ..
        } = &self.keep
        else {
            return None;
        };
        let mut out = pids.clone();
        loop {
            let before = out.len();
            for (_, event) in side {
                match event {
                    Event::Fork { pid, ppid, .. } if out.contains(ppid) => {
                        out.insert(*pid);
                    }
                    Event::Comm {
                        pid,
                        name,
                        exec: true,
                        ..
                    } if follow_new.as_ref().is_some_and(|p| p.matches(name, None)) => {
                        out.insert(*pid);
                    }
                    // A superset: any process mapping a matching file.
                    Event::Mmap { pid, mapping, .. }
                        if follow_new.as_ref().is_some_and(|p| {
                            mapped_file_name(mapping).is_some_and(|n| p.matches("", Some(&n)))
                        }) =>
                    {
                        out.insert(*pid);
                    }
                    _ => {}
                }
            }
            if out.len() == before {
                return Some(out);
            }
        }
    }

    /// Whether `event` is kept; updates the set from forks, execs and exits.
    pub(crate) fn keep(&mut self, event: &Event) -> bool {
        let awaiting_executable = &mut self.awaiting_executable;
        let Keep::Processes {
            pids,
            awaiting_exec,
            follow_new,
        } = &mut self.keep
        else {
            let Keep::All { idle } = self.keep else {
                return true;
            };
            // The idle task's switches time nothing a profile shows: its
            // switch-outs are a CPU going busy, not a wait.
            return match event {
                Event::Sample(s) => s.pid.0 != 0 || (idle && !s.switch_out),
                Event::Switch { pid, .. } => pid.0 != 0,
                _ => true,
            };
        };
        match event {
            Event::Lost { .. } => true,
            Event::Fork { pid, ppid, .. } => {
                if pids.contains(ppid) && *awaiting_exec != Some(*ppid) {
                    pids.insert(*pid);
                }
                pids.contains(pid)
            }
            Event::Comm {
                pid, name, exec, ..
            } => {
                if *exec && *awaiting_exec == Some(*pid) {
                    *awaiting_exec = None;
                }
                if let (true, Some(pattern)) = (*exec, follow_new.as_ref()) {
                    if pattern.matches(name, None) {
                        pids.insert(*pid);
                    } else if !pids.contains(pid) {
                        awaiting_executable.insert(*pid);
                    }
                }
                pids.contains(pid) && *awaiting_exec != Some(*pid)
            }
            Event::Exit { pid, tid } => {
                let member = pids.contains(pid);
                if tid.0 == pid.0 {
                    pids.remove(pid);
                    awaiting_executable.remove(pid);
                }
                member
            }
            Event::Mmap { pid, mapping, .. } => {
                if let Some(name) = mapped_file_name(mapping) {
                    if awaiting_executable.remove(pid)
                        && follow_new
                            .as_ref()
                            .is_some_and(|p| p.matches("", Some(&name)))
                    {
                        pids.insert(*pid);
                    }
                }
                pids.contains(pid) && *awaiting_exec != Some(*pid)
            }
            Event::Sample(s) => pids.contains(&s.pid) && *awaiting_exec != Some(s.pid),
            Event::Switch { pid, .. } => pids.contains(pid) && *awaiting_exec != Some(*pid),
            Event::Stopped { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;
    use stoke_model::Tid;

    fn sample(pid: u32) -> Event {
        Event::Sample(Sample {
            pid: Pid(pid),
            tid: Tid(pid),
            ..Sample::default()
        })
    }

    fn fork(pid: u32, ppid: u32) -> Event {
        Event::Fork {
            pid: Pid(pid),
            ppid: Pid(ppid),
            tid: Tid(pid),
            ptid: Tid(ppid),
        }
    }

    fn processes(pids: &[u32], awaiting: Option<u32>) -> TaskFilter {
        TaskFilter::new(Keep::Processes {
            pids: pids.iter().map(|&p| Pid(p)).collect(),
            awaiting_exec: awaiting.map(Pid),
            follow_new: None,
        })
    }

    #[test]
    fn everything_but_idle_unless_asked() {
        let mut all = TaskFilter::new(Keep::All { idle: false });
        assert!(all.keep(&sample(42)));
        assert!(!all.keep(&sample(0)));
        let mut idle = TaskFilter::new(Keep::All { idle: true });
        assert!(idle.keep(&sample(0)));
        // The idle task's switches open no interval, asked for or not.
        let switch = |pid| Event::Switch {
            pid: Pid(pid),
            tid: Tid(pid),
            time: 1,
            direction: crate::SwitchDirection::Out { preempted: false },
        };
        let idle_switch_out = Event::Sample(Sample {
            switch_out: true,
            ..Sample::default()
        });
        for filter in [&mut all, &mut idle] {
            assert!(!filter.keep(&switch(0)));
            assert!(!filter.keep(&idle_switch_out));
            assert!(filter.keep(&switch(42)));
        }
    }

    #[test]
    fn children_of_members_join_and_leave_at_exit() {
        let mut f = processes(&[10], None);
        assert!(!f.keep(&sample(11)));
        assert!(f.keep(&fork(11, 10)));
        assert!(f.keep(&sample(11)));
        // A thread of a member is no new process.
        assert!(f.keep(&Event::Fork {
            pid: Pid(11),
            ppid: Pid(11),
            tid: Tid(12),
            ptid: Tid(11)
        }));
        assert!(f.keep(&Event::Exit {
            pid: Pid(11),
            tid: Tid(12)
        }));
        assert!(f.keep(&sample(11)));
        assert!(f.keep(&Event::Exit {
            pid: Pid(11),
            tid: Tid(11)
        }));
        assert!(!f.keep(&sample(11)), "a reused pid is not followed");
        assert!(!f.keep(&fork(20, 30)));
        assert!(f.follows_anything());
    }

    #[test]
    fn candidates_include_children_forked_in_the_same_batch() {
        let f = processes(&[10], None);
        let side = [(2, fork(12, 11)), (1, fork(11, 10)), (3, fork(30, 20))];
        let c = f.candidates(&side).unwrap();
        assert!(c.contains(&Pid(10)) && c.contains(&Pid(11)) && c.contains(&Pid(12)));
        assert!(!c.contains(&Pid(30)));
        assert!(TaskFilter::new(Keep::All { idle: false })
            .candidates(&side)
            .is_none());
    }

    #[test]
    fn a_launched_command_is_kept_from_its_exec() {
        let mut f = processes(&[7], Some(7));
        assert!(!f.keep(&sample(7)));
        let exec = Event::Comm {
            pid: Pid(7),
            tid: Tid(7),
            name: "prog".into(),
            exec: true,
        };
        assert!(f.keep(&exec));
        assert!(f.keep(&sample(7)));
    }

    #[test]
    fn new_processes_matching_a_name_join() {
        let mut f = TaskFilter::new(Keep::Processes {
            pids: HashSet::new(),
            awaiting_exec: None,
            follow_new: Some(NamePattern::new("work*")),
        });
        assert!(!f.keep(&sample(5)));
        let exec = |name: &str| Event::Comm {
            pid: Pid(5),
            tid: Tid(5),
            name: name.into(),
            exec: true,
        };
        assert!(!f.keep(&exec("other")));
        assert!(f.keep(&exec("worker")));
        assert!(f.keep(&sample(5)));
    }

    fn file_mapping(pid: u32, path: &str) -> Event {
        Event::Mmap {
            pid: Pid(pid),
            tid: Tid(pid),
            mapping: stoke_model::Mapping {
                start: stoke_model::Avma(0x1000),
                end: stoke_model::Avma(0x2000),
                file_offset: 0,
                kind: stoke_model::MappingKind::File(path.into()),
                dev: 0,
                inode: 0,
                build_id: None,
                executable: true,
            },
        }
    }

    #[test]
    fn new_processes_whose_executable_matches_join() {
        let mut f = TaskFilter::new(Keep::Processes {
            pids: HashSet::new(),
            awaiting_exec: None,
            follow_new: Some(NamePattern::new("work*")),
        });
        let exec = |pid: u32, name: &str| Event::Comm {
            pid: Pid(pid),
            tid: Tid(pid),
            name: name.into(),
            exec: true,
        };
        // Run through a symlink `run`: the comm does not match, the file does.
        assert!(!f.keep(&exec(5, "run")));
        assert!(f
            .candidates(&[(1, file_mapping(5, "/opt/worker"))])
            .unwrap()
            .contains(&Pid(5)));
        assert!(f.keep(&file_mapping(5, "/opt/worker")));
        assert!(f.keep(&sample(5)));
        // Only the executable (the first file mapped after exec) counts.
        assert!(!f.keep(&exec(6, "other")));
        assert!(!f.keep(&file_mapping(6, "/usr/bin/other")));
        assert!(!f.keep(&file_mapping(6, "/usr/lib/libworker.so")));
        assert!(!f.keep(&sample(6)));
    }
}
