//! Launching a command under perf events.
//!
//! The child is forked and held on a pipe; the events are opened on it with
//! `enable_on_exec` and `inherit`; then it is released and execs. Its first
//! instruction after exec is sampled, and its threads, forks and execs are
//! followed by inheritance.

use stoke_model::Pid;

use super::cpus::online_cpus;
use super::dedup::Duplicates;
use super::open::Opener;
use super::sampler::{open_rings, PerfSampler};
use super::sizing::ring_size;
use super::switch::SwitchIds;
use crate::error::sys_error;
use crate::sys::process;
use crate::sys::ring::page_size;
use crate::target::HeldCommand;
use crate::{Call, Child, CommandSpec, SampleError, SamplerOptions};

/// See [`PerfSampler::launch`].
pub(crate) fn launch(
    command: &CommandSpec,
    options: &SamplerOptions,
) -> Result<(PerfSampler, Child), SampleError> {
    super::switch::check_allowed(options)?;
    let path = command.resolve()?;
    let plan = command.exec_plan(&path)?;
    let cpus = online_cpus()?;
    let mut size = ring_size(
        super::switch::records_rate(options),
        options.stack,
        options.ring_pages,
        cpus.len(),
        page_size(),
    );
    super::switch::wake_sooner(&mut size, options, cpus.len());
    if options.wake_each_sample {
        size.watermark = 1;
    }

    let held = HeldCommand::fork(&plan)?;
    let pid = held.pid();

    let mut opener = Opener::new(options, true, Pid(pid as u32));
    let (mut rings, _) = open_rings(&cpus, size, |cpu, watermark| {
        opener.open(pid, cpu, Some(watermark))
    })?;
    let mut switch_ids = SwitchIds::default();
    switch_ids.extend(super::switch::arm(&opener, options.mode, &mut rings, pid)?);
    let chosen = opener.chosen().cloned().ok_or_else(|| SampleError::Sys {
        call: Call::PerfEventOpen,
        what: "perf_event_open: no online CPU".to_string(),
        source: std::io::Error::from_raw_os_error(libc::ENODEV),
    })?;
    let sampler_fd = process::pidfd_open(pid).map_err(sys_error(Call::Pidfd, "pidfd_open"))?;
    let child_fd = sampler_fd
        .try_clone()
        .map_err(sys_error(Call::Pidfd, "dup of a pidfd"))?;

    let (held, failure) = held.go(command)?;
    if let Some(error) = failure {
        held.reap();
        return Err(error);
    }
    let pid = held.release();
    let sampler = PerfSampler::from_parts(pid, chosen, rings, sampler_fd, Duplicates::default())
        .with_switch_ids(switch_ids);
    Ok((sampler, Child::new(pid, Some(child_fd))))
}
