//! Reading a process's state from `/proc`: threads, names, mappings.

use std::path::PathBuf;

use stoke_model::{Mapping, Pid, Tid};

use crate::SampleError;

/// The thread ids of a process (`/proc/PID/task`).
pub fn threads(pid: Pid) -> Result<Vec<Tid>, SampleError> {
    let _ = pid;
    todo!()
}

/// A thread's name (`/proc/PID/task/TID/comm`), if it still exists.
pub fn thread_name(pid: Pid, tid: Tid) -> Option<String> {
    let _ = (pid, tid);
    todo!()
}

/// The executable mappings of a process (`/proc/PID/maps`), with device and inode.
pub fn executable_mappings(pid: Pid) -> Result<Vec<Mapping>, SampleError> {
    let _ = pid;
    todo!()
}

/// The path through which stoke can open a file the target names, even
/// inside another mount namespace: `/proc/PID/root/<path>`.
pub fn path_in_root(pid: Pid, path: &std::path::Path) -> PathBuf {
    let _ = (pid, path);
    todo!()
}
