//! Starting the per-CPU sampler for each kind of target: the machine (with
//! or without a command to run meanwhile), a cgroup, a list of processes,
//! processes by name, and one launched command or attached process.

use std::collections::HashSet;
use std::os::fd::OwnedFd;

use stoke_model::Pid;

use super::filter::Keep;
use super::system::{command_clock, CpuClock, Parts, SystemSampler};
use super::system_open::{open_cgroup, Tasks};
use crate::error::sys_error;
use crate::sys::process;
use crate::target::HeldCommand;
use crate::{Call, Child, CommandSpec, SampleError, SamplerOptions, SystemScope};

/// A pidfd of a process, for its exit.
fn pidfd(pid: Pid) -> Result<OwnedFd, SampleError> {
    process::pidfd_open(pid.0 as libc::pid_t).map_err(|source| match source.raw_os_error() {
        Some(libc::ESRCH) => SampleError::NoSuchProcess(pid),
        _ => SampleError::Sys {
            call: Call::Pidfd,
            what: format!("pidfd_open({pid}) (is it a thread id rather than a process id?)"),
            source,
        },
    })
}

fn processes(pids: &[Pid]) -> Keep {
    Keep::Processes {
        pids: pids.iter().copied().collect::<HashSet<_>>(),
        awaiting_exec: None,
        follow_new: None,
    }
}

fn pid_list(pids: &[Pid]) -> String {
    let list: Vec<String> = pids.iter().map(ToString::to_string).collect();
    list.join(",")
}

/// Starts the sampler for `scope`; with `command`, the command is
/// launched and recording lasts its life.
pub(crate) fn system(
    scope: &SystemScope,
    command: Option<&CommandSpec>,
    options: &SamplerOptions,
) -> Result<(SystemSampler, Option<Child>), SampleError> {
    let (tasks, keep, what, watched) = match scope {
        SystemScope::All { idle } => (
            Tasks::All,
            Keep::All { idle: *idle },
            "every CPU, every process".to_string(),
            Vec::new(),
        ),
        SystemScope::Cgroup(path) => (
            Tasks::Cgroup(open_cgroup(path)?),
            Keep::All { idle: false },
            format!("every CPU, tasks of cgroup {}", path.display()),
            Vec::new(),
        ),
        SystemScope::Pids(pids) => {
            let watched = pids.iter().map(|&p| pidfd(p)).collect::<Result<_, _>>()?;
            (
                Tasks::All,
                processes(pids),
                format!("per-CPU events filtered to pids {}", pid_list(pids)),
                watched,
            )
        }
        SystemScope::Name {
            pattern,
            follow_new,
        } => {
            let pids = pattern.running();
            if pids.is_empty() && !follow_new {
                return Err(SampleError::Unsupported(format!(
                    "--name {}: no running process has that command or executable name \
                     (add --follow-new to wait for one)",
                    pattern.as_str()
                )));
            }
            let keep = Keep::Processes {
                pids: pids.iter().copied().collect(),
                awaiting_exec: None,
                follow_new: follow_new.then(|| pattern.clone()),
            };
            let what = format!(
                "per-CPU events filtered to processes named {} (pids {}{})",
                pattern.as_str(),
                pid_list(&pids),
                if *follow_new { ", and new ones" } else { "" }
            );
            let watched = if *follow_new {
                Vec::new()
            } else {
                pids.iter().filter_map(|&p| pidfd(p).ok()).collect()
            };
            (Tasks::All, keep, what, watched)
        }
    };
    let clock = match scope {
        SystemScope::Pids(pids) => procfs_clock(pids),
        _ => CpuClock::None,
    };
    let Some(command) = command else {
        let parts = Parts {
            target: match scope {
                SystemScope::Pids(pids) => pids.first().copied().unwrap_or_default(),
                _ => Pid(0),
            },
            what,
            keep,
            watched,
            clock,
        };
        return Ok((SystemSampler::open(options, &tasks, parts)?, None));
    };
    let (sampler, child) = launch_with(command, false, |pid, child_fd| {
        let parts = Parts {
            target: pid,
            what,
            keep,
            watched: vec![child_fd],
            clock: CpuClock::None,
        };
        SystemSampler::open(options, &tasks, parts)
    })?;
    Ok((sampler, Some(child)))
}

fn procfs_clock(pids: &[Pid]) -> CpuClock {
    CpuClock::Procfs(
        pids.iter()
            .filter_map(|&p| Some((p, crate::procfs::process_cpu_time(p)?)))
            .collect(),
    )
}

/// Records a launched command with per-CPU events filtered to its process
/// tree, from its exec: its short-lived threads are sampled too.
pub(crate) fn launch_per_cpu(
    command: &CommandSpec,
    options: &SamplerOptions,
) -> Result<(SystemSampler, Child), SampleError> {
    launch_with(command, true, |pid, child_fd| {
        let parts = Parts {
            target: pid,
            what: "per-CPU events filtered to the command's processes".to_string(),
            keep: Keep::Processes {
                pids: HashSet::from([pid]),
                awaiting_exec: Some(pid),
                follow_new: None,
            },
            watched: vec![child_fd],
            clock: CpuClock::None,
        };
        SystemSampler::open(options, &Tasks::All, parts)
    })
}

/// Records running processes with per-CPU events filtered to them and
/// the children they start: their short-lived threads are sampled too.
pub(crate) fn attach_per_cpu(
    pids: &[Pid],
    options: &SamplerOptions,
) -> Result<SystemSampler, SampleError> {
    let (sampler, _) = system(&SystemScope::Pids(pids.to_vec()), None, options)?;
    Ok(sampler)
}

/// Forks `command` held on a pipe, starts the sampler with `open(pid,
/// pidfd)`, then lets the command exec. With `measure`, the command's CPU
/// time is counted from its exec. No process is left behind on error.
fn launch_with(
    command: &CommandSpec,
    measure: bool,
    open: impl FnOnce(Pid, OwnedFd) -> Result<SystemSampler, SampleError>,
) -> Result<(SystemSampler, Child), SampleError> {
    let path = command.resolve()?;
    let plan = command.exec_plan(&path)?;
    let held = HeldCommand::fork(&plan)?;
    let pid = held.pid();
    let sampler_fd = process::pidfd_open(pid).map_err(sys_error(Call::Pidfd, "pidfd_open"))?;
    let child_fd = sampler_fd
        .try_clone()
        .map_err(sys_error(Call::Pidfd, "dup of a pidfd"))?;
    let mut sampler = open(Pid(pid as u32), sampler_fd)?;
    if measure {
        sampler.set_clock(command_clock(pid));
    }
    let (held, failure) = held.go(command)?;
    if let Some(error) = failure {
        held.reap();
        return Err(error);
    }
    let pid = held.release();
    Ok((sampler, Child::new(pid, Some(child_fd))))
}
