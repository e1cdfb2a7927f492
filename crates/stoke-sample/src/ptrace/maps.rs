//! Noticing mapping changes of traced processes (`dlopen`, `dlclose`, JIT
//! code), which ptrace reports no event for.
//!
//! Each process's executable mappings are re-read from `/proc/PID/maps`
//! often: at every sampling round, but using at most 5 % of a CPU (a read
//! that cost 40 µs of CPU time waits at least 0.8 ms for the next). A mapping that
//! is new, or whose file (device, inode) or offset changed at the same
//! address, is reported as an [`Event::Mmap`] before the samples taken
//! after the read, so a library loaded where an unloaded one was is named
//! for itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use stoke_model::{Mapping, Pid, Tid};

use crate::sys::time;
use crate::{procfs, Event};

/// A re-read waits this many times its own cost before the next one.
const COST_FACTOR: u32 = 20;

/// One process's mappings as last read.
#[derive(Debug, Default)]
struct Known {
    mappings: Vec<Mapping>,
    next_read: Option<Instant>,
}

/// The mappings of every traced process.
#[derive(Debug, Default)]
pub(crate) struct MapsWatch {
    processes: HashMap<Pid, Known>,
}

/// Whether two mappings are the same view of the same file.
fn same(a: &Mapping, b: &Mapping) -> bool {
    (a.start, a.end, a.file_offset, a.dev, a.inode)
        == (b.start, b.end, b.file_offset, b.dev, b.inode)
}

impl MapsWatch {
    /// Records mappings already reported for `pid` (at attach or exec).
    pub(crate) fn reported(&mut self, pid: Pid, mappings: Vec<Mapping>) {
        let known = self.processes.entry(pid).or_default();
        known.mappings = mappings;
    }

    /// Forgets processes that are no longer traced.
    pub(crate) fn retain(&mut self, live: impl Fn(Pid) -> bool) {
        self.processes.retain(|&pid, _| live(pid));
    }

    /// Re-reads the mappings of `pid` if due, pushing an event for each
    /// changed one.
    pub(crate) fn check(&mut self, pid: Pid, now: Instant, events: &mut Vec<Event>) {
        let known = self.processes.entry(pid).or_default();
        if known.next_read.is_some_and(|at| now < at) {
            return;
        }
        let cpu_before = time::thread_cpu_ns();
        let Ok(current) = procfs::executable_mappings(pid) else {
            known.next_read = Some(now + Duration::from_millis(10));
            return;
        };
        // CPU time, not elapsed time: on a busy machine waiting for a CPU
        // would otherwise space the reads out, as changes go unnoticed.
        let cost = Duration::from_nanos(time::thread_cpu_ns().saturating_sub(cpu_before));
        known.next_read = Some(now + cost * COST_FACTOR);
        for mapping in &current {
            if !known.mappings.iter().any(|old| same(old, mapping)) {
                events.push(Event::Mmap {
                    pid,
                    tid: Tid(pid.0),
                    mapping: mapping.clone(),
                });
            }
        }
        known.mappings = current;
    }
}
