//! Starting a command stopped and releasing it at exec, and the child handle.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::process::ExitStatus;

use stoke_model::Pid;

use crate::SampleError;

/// A command to launch: the program (looked up on PATH unless it has a `/`)
/// and its arguments.
#[derive(Clone, Debug)]
pub struct CommandSpec {
    /// The program.
    pub program: OsString,
    /// Its arguments (not including the program name).
    pub args: Vec<OsString>,
}

/// A launched command. Dropping it does not kill or wait for the process.
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    pidfd: Option<OwnedFd>,
}

impl Child {
    /// The process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits for the process to exit and reaps it.
    pub fn wait(&mut self) -> Result<ExitStatus, SampleError> {
        let _ = &self.pidfd;
        todo!()
    }

    /// Sends a signal to the process (e.g. to pass on a SIGTERM stoke received).
    pub fn signal(&self, signal: i32) -> Result<(), SampleError> {
        let _ = signal;
        todo!()
    }
}
