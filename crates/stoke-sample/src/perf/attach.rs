//! Attaching perf events to a running process.
//!
//! Every thread in `/proc/PID/task` gets one event per CPU (with `inherit`,
//! so threads it creates later are followed); all events of a CPU share
//! that CPU's ring buffer. The task list is read again until no new thread
//! shows up, catching threads born during setup. The process is never
//! stopped or traced.

use stoke_model::{Pid, Tid};

use super::cpus::online_cpus;
use super::dedup::Duplicates;
use super::open::Opener;
use super::sampler::{open_rings, thread_names, CpuRing, PerfSampler};
use super::sizing::{ring_size, RingSize};
use super::switch::SwitchIds;
use crate::sys::ring::page_size;
use crate::sys::{perf, process};
use crate::{procfs, Call, Event, SampleError, SampleMode, SamplerOptions};

/// The events being set up, CPU by CPU.
struct Setup {
    cpus: Vec<u32>,
    size: RingSize,
    opener: Opener,
    rings: Vec<CpuRing>,
    duplicates: Duplicates,
    mode: SampleMode,
    switch_ids: SwitchIds,
}

impl Setup {
    /// Opens one event per CPU on `tid` (the first thread's events carry
    /// the ring buffers). `Ok(false)` if the thread is gone.
    fn open_thread(&mut self, tid: Tid, late: bool) -> Result<bool, SampleError> {
        let task = tid.0 as i32;
        let opened = if self.rings.is_empty() {
            let opener = &mut self.opener;
            open_rings(&self.cpus, self.size, |cpu, watermark| {
                opener.open(task, cpu, Some(watermark))
            })
            .map(|(rings, _)| self.rings = rings)
        } else {
            self.open_redirected(task)
        };
        match opened {
            Ok(()) => {}
            Err(SampleError::NoSuchProcess(_)) => return Ok(false),
            Err(err) => return Err(err),
        }
        if late {
            for ring in &self.rings {
                let fd = ring.fds().last().ok_or_else(|| missing_event(tid))?;
                let id = perf::event_id(fd).map_err(|source| SampleError::Sys {
                    call: Call::PerfIoctl,
                    what: format!("PERF_EVENT_IOC_ID for thread {tid}"),
                    source,
                })?;
                self.duplicates.own_event(tid, id);
            }
        }
        let ids = match super::switch::arm(&self.opener, self.mode, &mut self.rings, task) {
            Ok(ids) => ids,
            Err(SampleError::NoSuchProcess(_)) => return Ok(false),
            Err(err) => return Err(err),
        };
        if late && self.mode == SampleMode::Wall {
            for &id in &ids {
                self.duplicates.own_event(tid, id);
            }
        }
        self.switch_ids.extend(ids);
        Ok(true)
    }

    /// Opens `task`'s events and sends them into the existing buffers; a
    /// thread that vanishes half-way leaves nothing behind.
    fn open_redirected(&mut self, task: i32) -> Result<(), SampleError> {
        let fds = self
            .cpus
            .iter()
            .map(|&cpu| self.opener.open(task, cpu, None))
            .collect::<Result<Vec<_>, _>>()?;
        for (ring, fd) in self.rings.iter_mut().zip(fds) {
            ring.redirect(fd)?;
        }
        Ok(())
    }
}

fn missing_event(tid: Tid) -> SampleError {
    SampleError::Sys {
        call: Call::PerfEventOpen,
        what: format!("opening events for thread {tid}"),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    }
}

/// See [`PerfSampler::attach`].
pub(crate) fn attach(pid: Pid, options: &SamplerOptions) -> Result<PerfSampler, SampleError> {
    super::switch::check_allowed(options)?;
    if pid.0 == 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(SampleError::NoSuchProcess(pid));
    }
    let target_fd = process::pidfd_open(pid.0 as libc::pid_t).map_err(|source| {
        match source.raw_os_error() {
            Some(libc::ESRCH) => SampleError::NoSuchProcess(pid),
            _ => SampleError::Sys {
                call: Call::Pidfd,
                what: format!("pidfd_open({pid}) (is it a thread id rather than a process id?)"),
                source,
            },
        }
    })?;
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
    let mut setup = Setup {
        cpus,
        size,
        opener: Opener::new(options, false, pid),
        rings: Vec::new(),
        duplicates: Duplicates::default(),
        mode: options.mode,
        switch_ids: SwitchIds::default(),
    };
    // Threads created after the last listing by instrumented threads are
    // followed through inheritance.
    let mut attached = Vec::new();
    procfs::for_each_thread_until_stable(pid, |tid, scan| {
        if setup.open_thread(tid, scan > 0)? {
            attached.push(tid);
        }
        Ok(())
    })?;
    let Some(chosen) = setup
        .opener
        .chosen()
        .filter(|_| !attached.is_empty())
        .cloned()
    else {
        return Err(SampleError::NoSuchProcess(pid));
    };
    let sampler = PerfSampler::from_parts(pid, chosen, setup.rings, target_fd, setup.duplicates)
        .with_switch_ids(setup.switch_ids);
    // Enable before reading /proc so that no mapping made meanwhile is
    // missed (one made in between is reported twice, which is harmless);
    // the synthesized events are still handed out before any record.
    sampler.enable()?;
    let mut pending = thread_names(pid, &attached);
    pending.extend(
        procfs::executable_mappings(pid)?
            .into_iter()
            .map(|mapping| Event::Mmap {
                pid,
                tid: Tid::from(pid),
                mapping,
            }),
    );
    if options.mode.samples_off_cpu() {
        let now = crate::sys::time::monotonic_ns();
        pending.extend(super::switch::blocked_at_attach(pid, &attached, now));
    }
    Ok(sampler.with_pending(pending))
}
