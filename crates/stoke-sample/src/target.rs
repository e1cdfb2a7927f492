//! Starting a command stopped and releasing it at exec, and the child handle.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, OnceLock};

use stoke_model::Pid;

use crate::error::sys_error;
use crate::sys::process::{self, ExecPlan, HoldPipes, GO_BYTE};
use crate::{Call, SampleError};

/// A command to launch: the program (looked up on PATH unless it has a `/`)
/// and its arguments.
#[derive(Clone, Debug)]
pub struct CommandSpec {
    /// The program.
    pub program: OsString,
    /// Its arguments (not including the program name).
    pub args: Vec<OsString>,
    /// Where the command's standard output goes.
    pub stdout: ChildStdout,
}

/// Where a launched command's standard output goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChildStdout {
    /// Stoke's own standard output, inherited.
    #[default]
    Inherit,
    /// Stoke's standard error, so that stoke's standard output carries
    /// only what stoke writes there (a profile written to `-`).
    Stderr,
}

impl CommandSpec {
    /// A command with its standard output inherited.
    pub fn new(program: impl Into<OsString>, args: Vec<OsString>) -> CommandSpec {
        CommandSpec {
            program: program.into(),
            args,
            stdout: ChildStdout::Inherit,
        }
    }

    /// The command line as text, for messages: arguments quoted as a
    /// POSIX shell needs them ([`stoke_model::shell_quote`]).
    pub fn display(&self) -> String {
        stoke_model::command_line(
            std::iter::once(self.program.as_os_str())
                .chain(self.args.iter().map(OsString::as_os_str)),
        )
    }

    /// Finds the program: a name with a `/` must exist as given; a bare
    /// name is searched for as an executable file on `PATH`.
    pub(crate) fn resolve(&self) -> Result<PathBuf, SampleError> {
        let not_found =
            || SampleError::CommandNotFound(self.program.to_string_lossy().into_owned());
        let program = Path::new(&self.program);
        if self.program.is_empty() {
            return Err(not_found());
        }
        if self.program.as_bytes().contains(&b'/') {
            return program
                .exists()
                .then(|| program.to_path_buf())
                .ok_or_else(not_found);
        }
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable_file(candidate))
            .ok_or_else(not_found)
    }

    /// The `execve` arguments for running `path` with stoke's environment.
    /// Reads a launched child's exec-status pipe (close-on-exec): end of
    /// file means the exec succeeded; four bytes are the errno of a failed
    /// one, returned as the error to report.
    pub(crate) fn exec_failure(&self, status: OwnedFd) -> Result<Option<SampleError>, SampleError> {
        use std::io::Read;
        let mut errno = Vec::new();
        std::fs::File::from(status)
            .read_to_end(&mut errno)
            .map_err(crate::error::sys_error(
                Call::Pipe,
                "reading the exec status pipe",
            ))?;
        let Ok(bytes) = <[u8; 4]>::try_from(errno.as_slice()) else {
            return Ok(None);
        };
        let source = io::Error::from_raw_os_error(i32::from_ne_bytes(bytes));
        Ok(Some(match source.raw_os_error() {
            Some(libc::ENOENT) => {
                SampleError::CommandNotFound(self.program.to_string_lossy().into_owned())
            }
            _ => SampleError::Exec {
                command: self.display(),
                source,
            },
        }))
    }

    pub(crate) fn exec_plan(&self, path: &Path) -> Result<ExecPlan, SampleError> {
        let c_string = |s: &OsStr| {
            CString::new(s.as_bytes()).map_err(|_| SampleError::Exec {
                command: self.display(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"),
            })
        };
        let argv = std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(c_string)
            .collect::<Result<Vec<_>, _>>()?;
        let envp = std::env::vars_os()
            .map(|(k, v)| {
                let mut pair = k;
                pair.push("=");
                pair.push(v);
                c_string(&pair)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExecPlan::new(c_string(path.as_os_str())?, argv, envp)
            .stdout_to_stderr(self.stdout == ChildStdout::Stderr))
    }
}

fn is_executable_file(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A launched command. Dropping it does not kill or wait for the process.
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    pidfd: Option<OwnedFd>,
    status: Option<ExitStatus>,
    /// Where a tracer that reaps the process (waits on it as a traced
    /// thread) leaves its raw wait status.
    reaped: Option<Arc<OnceLock<i32>>>,
}

impl Child {
    /// A handle for a released child.
    pub(crate) fn new(pid: Pid, pidfd: Option<OwnedFd>) -> Child {
        Child {
            pid,
            pidfd,
            status: None,
            reaped: None,
        }
    }

    /// The same handle, told that a tracer may reap the process and leave
    /// its status in `reaped`.
    pub(crate) fn with_reaped(mut self, reaped: Arc<OnceLock<i32>>) -> Child {
        self.reaped = Some(reaped);
        self
    }

    /// The status a tracer reaped, if it did.
    fn reaped_status(&self) -> Option<ExitStatus> {
        let raw = *self.reaped.as_ref()?.get()?;
        Some(ExitStatus::from_raw(raw))
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits for the process to exit and reaps it. Calling it again returns
    /// the same status.
    pub fn wait(&mut self) -> Result<ExitStatus, SampleError> {
        if let Some(status) = self.status.or_else(|| self.reaped_status()) {
            self.status = Some(status);
            self.pidfd = None;
            return Ok(status);
        }
        let raw = process::wait(self.pid.0 as libc::pid_t).map_err(|source| SampleError::Sys {
            call: Call::Wait,
            what: format!("waitpid({})", self.pid),
            source,
        })?;
        let status = ExitStatus::from_raw(raw);
        self.status = Some(status);
        self.pidfd = None;
        Ok(status)
    }

    /// Sends a signal to the process (e.g. to pass on a SIGTERM stoke received).
    pub fn signal(&self, signal: i32) -> Result<(), SampleError> {
        let result = match (&self.pidfd, self.status.or_else(|| self.reaped_status())) {
            (_, Some(_)) => Err(io::Error::from_raw_os_error(libc::ESRCH)),
            (Some(fd), None) => process::pidfd_send_signal(fd, signal),
            (None, None) => process::kill(self.pid.0 as libc::pid_t, signal),
        };
        result.map_err(|source| SampleError::Sys {
            call: Call::Signal,
            what: format!("sending signal {signal} to pid {}", self.pid),
            source,
        })
    }
}

/// A command forked and held before its exec (`sys::process::fork_held`),
/// with the pipe that lets it go and the one its exec failure comes back
/// on. Dropping it kills and reaps the child.
#[derive(Debug)]
pub(crate) struct HeldCommand {
    child: HeldChild,
    go: OwnedFd,
    exec_errors: OwnedFd,
}

impl HeldCommand {
    /// Forks `plan`'s command, held until [`HeldCommand::go`].
    pub(crate) fn fork(plan: &ExecPlan) -> Result<HeldCommand, SampleError> {
        let (go_read, go_write) = process::pipe().map_err(sys_error(Call::Pipe, "pipe"))?;
        let (err_read, err_write) = process::pipe().map_err(sys_error(Call::Pipe, "pipe"))?;
        let pipes = HoldPipes {
            go_read: &go_read,
            go_write: &go_write,
            err_write: &err_write,
        };
        let child = HeldChild::new(
            process::fork_held(plan, &pipes).map_err(sys_error(Call::Fork, "fork"))?,
        );
        Ok(HeldCommand {
            child,
            go: go_write,
            exec_errors: err_read,
        })
    }

    /// The pid.
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.child.pid()
    }

    /// Lets the command exec, and says whether its exec failed. The child
    /// is handed back still guarded: reap it on a failure, release it
    /// otherwise.
    pub(crate) fn go(
        self,
        command: &CommandSpec,
    ) -> Result<(HeldChild, Option<SampleError>), SampleError> {
        use std::io::Write;
        std::fs::File::from(self.go)
            .write_all(&[GO_BYTE])
            .map_err(sys_error(Call::Pipe, "releasing the launched command"))?;
        let failure = command.exec_failure(self.exec_errors)?;
        Ok((self.child, failure))
    }
}

/// A forked child that has not been released to exec yet. Dropping it
/// kills and reaps the child, so an error during setup leaves no process
/// behind.
#[derive(Debug)]
pub(crate) struct HeldChild {
    pid: Option<libc::pid_t>,
}

impl HeldChild {
    /// Guards the held child `pid`.
    pub(crate) fn new(pid: libc::pid_t) -> HeldChild {
        HeldChild { pid: Some(pid) }
    }

    /// The pid.
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid.unwrap_or(0)
    }

    /// Reaps a child that exits on its own (its exec failed).
    pub(crate) fn reap(mut self) {
        if let Some(pid) = self.pid.take() {
            // An error here means it was reaped already; nothing to keep.
            let _ = process::wait(pid);
        }
    }

    /// Disarms the guard: the child runs on.
    pub(crate) fn release(mut self) -> Pid {
        Pid(self.pid.take().unwrap_or(0) as u32)
    }
}

impl Drop for HeldChild {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            // Best effort during error cleanup: the original error is what
            // the caller gets; a child that is already gone needs nothing.
            let _ = process::kill(pid, libc::SIGKILL);
            let _ = process::wait(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(program: &str) -> CommandSpec {
        CommandSpec::new(program, vec!["-c".into(), "true".into()])
    }

    #[test]
    fn programs_resolve_on_path() {
        let sh = spec("sh").resolve().unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert!(matches!(
            spec("no-such-command-xyz").resolve(),
            Err(SampleError::CommandNotFound(name)) if name == "no-such-command-xyz"
        ));
        assert!(matches!(
            spec("/no/such/program").resolve(),
            Err(SampleError::CommandNotFound(_))
        ));
        assert_eq!(spec("sh").display(), "sh -c true");
    }
}
