//! The perf-events sampler: per-CPU ring buffers, polling and draining.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use stoke_model::{Pid, Tid};

use super::dedup::Duplicates;
use super::open::Chosen;
use super::record::{self, Layout};
use super::sizing::RingSize;
use super::switch::SwitchIds;
use crate::sys;
use crate::sys::ring::{page_size, RingBuffer};
use crate::{Call, Event, PollOutcome, SampleError, Sampler};

/// One event descriptor, and whether it has hung up (its task exited).
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
    hung_up: bool,
}

/// The ring buffer of one CPU and every event that writes into it.
#[derive(Debug)]
pub(crate) struct CpuRing {
    /// The CPU number.
    cpu: u32,
    /// The buffer, mapped from `events[0]`.
    ring: RingBuffer,
    /// The events; all but the first redirected with SET_OUTPUT.
    events: Vec<EventFd>,
}

impl CpuRing {
    /// The CPU number.
    pub(crate) fn cpu(&self) -> u32 {
        self.cpu
    }

    /// The event descriptors writing into this buffer.
    pub(crate) fn fds(&self) -> impl Iterator<Item = &OwnedFd> {
        self.events.iter().map(|e| &e.fd)
    }

    /// Adds an event of the same CPU, sending its records into this buffer.
    pub(crate) fn redirect(&mut self, fd: OwnedFd) -> Result<(), SampleError> {
        sys::perf::set_output(&fd, &self.events[0].fd).map_err(|source| SampleError::Sys {
            call: Call::PerfIoctl,
            what: format!("PERF_EVENT_IOC_SET_OUTPUT on cpu {}", self.cpu),
            source,
        })?;
        self.events.push(EventFd { fd, hung_up: false });
        Ok(())
    }

    /// Appends the buffer's unread records to `out`; returns the bytes read.
    pub(crate) fn read_into(&mut self, out: &mut Vec<u8>) -> usize {
        self.ring.read_into(out)
    }

    /// Enables or disables every event of this buffer.
    pub(crate) fn set_enabled(&self, on: bool) -> Result<(), SampleError> {
        self.for_each_fd(if on {
            sys::perf::enable
        } else {
            sys::perf::disable
        })
    }

    fn for_each_fd(
        &self,
        mut f: impl FnMut(&OwnedFd) -> io::Result<()>,
    ) -> Result<(), SampleError> {
        let mut first_error = None;
        for e in &self.events {
            if let Err(err) = f(&e.fd) {
                first_error.get_or_insert(err);
            }
        }
        match first_error {
            None => Ok(()),
            Some(source) => Err(SampleError::Sys {
                call: Call::PerfIoctl,
                what: format!("perf event ioctl on cpu {}", self.cpu),
                source,
            }),
        }
    }
}

/// Whether a failed ring-buffer `mmap` means "too much locked memory"
/// (unprivileged users are limited by `perf_event_mlock_kb` and
/// `RLIMIT_MEMLOCK`).
fn over_memlock_limit(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EPERM | libc::ENOMEM))
}

/// Opens the first event of every CPU with `open(cpu, watermark)` and maps
/// its ring buffer. While the kernel refuses the locked memory, everything
/// is closed and tried again with buffers half the size (and the watermark
/// to match). Returns the rings and the size used.
pub(crate) fn open_rings(
    cpus: &[u32],
    mut size: RingSize,
    mut open: impl FnMut(u32, u32) -> Result<OwnedFd, SampleError>,
) -> Result<(Vec<CpuRing>, RingSize), SampleError> {
    'sizes: loop {
        let mut rings = Vec::with_capacity(cpus.len());
        for &cpu in cpus {
            let fd = open(cpu, size.watermark)?;
            match RingBuffer::map(&fd, size.data_pages) {
                Ok(ring) => rings.push(CpuRing {
                    cpu,
                    ring,
                    events: vec![EventFd { fd, hung_up: false }],
                }),
                Err(err) if over_memlock_limit(&err) => match size.halved(page_size()) {
                    Some(half) => {
                        size = half;
                        continue 'sizes;
                    }
                    None => return Err(map_error(cpu, size, err)),
                },
                Err(err) => return Err(map_error(cpu, size, err)),
            }
        }
        return Ok((rings, size));
    }
}

fn map_error(cpu: u32, size: RingSize, source: io::Error) -> SampleError {
    SampleError::Sys {
        call: Call::PerfMmap,
        what: format!(
            "mmap of the perf ring buffer of cpu {cpu} ({} pages)",
            size.data_pages
        ),
        source,
    }
}

/// The perf-events sampler.
///
/// Built by [`PerfSampler::attach`] or [`PerfSampler::launch`]; see
/// [`Sampler`] for how to drive it. One ring buffer per online CPU, sized to
/// hold about half a second of samples at the requested rate (16 MiB per
/// CPU for 16 KiB stack copies at 999 Hz, the caller's `ring_pages` for
/// plain callchains) and halved while the kernel refuses the locked memory.
/// `poll` wakes when a buffer holds about a quarter second of records, or
/// when the target exits; pass a timeout to see a slow target's records
/// sooner. Every poll reads every buffer to its end.
#[derive(Debug)]
pub struct PerfSampler {
    target: Pid,
    chosen: Chosen,
    layout: Layout,
    rings: Vec<CpuRing>,
    target_fd: OwnedFd,
    pending: Vec<Event>,
    duplicates: Duplicates,
    scratch: Vec<u8>,
    batch: Vec<(u64, Event)>,
    lost: u64,
    /// The target's CPU time, read from the events when sampling stopped.
    cpu_time: Option<Duration>,
    /// The context-switch events (off-CPU modes).
    switch_ids: SwitchIds,
}

impl PerfSampler {
    /// Assembles a sampler from opened (still disabled or armed) events.
    pub(crate) fn from_parts(
        target: Pid,
        chosen: Chosen,
        rings: Vec<CpuRing>,
        target_fd: OwnedFd,
        duplicates: Duplicates,
    ) -> PerfSampler {
        let layout = Layout {
            sample_type: chosen.spec.sample_type(),
        };
        PerfSampler {
            target,
            chosen,
            layout,
            rings,
            target_fd,
            pending: Vec::new(),
            duplicates,
            scratch: Vec::new(),
            batch: Vec::new(),
            lost: 0,
            cpu_time: None,
            switch_ids: SwitchIds::default(),
        }
    }

    /// Notes the ids of context-switch events, whose samples are taken as
    /// threads leave the CPU.
    pub(crate) fn with_switch_ids(mut self, ids: SwitchIds) -> PerfSampler {
        self.switch_ids = ids;
        self
    }

    /// Enables every event.
    pub(crate) fn enable(&self) -> Result<(), SampleError> {
        self.rings
            .iter()
            .try_for_each(|r| r.for_each_fd(sys::perf::enable))
    }

    /// Queues events to hand out before any record from the kernel.
    pub(crate) fn with_pending(mut self, pending: Vec<Event>) -> PerfSampler {
        self.pending = pending;
        self
    }

    /// Records the kernel reported lost so far (ring buffers overflowed).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Data bytes of each CPU's ring buffer.
    pub fn ring_bytes(&self) -> usize {
        self.rings.first().map_or(0, |r| r.ring.data_size())
    }

    /// The time the target's tasks were on a CPU while sampled: every
    /// event's running time, summed with its inherited children's (threads
    /// too short-lived to be sampled included). `None` if an event cannot be
    /// read.
    fn running_time(&self) -> Option<Duration> {
        let mut total: u64 = 0;
        for fd in self.rings.iter().flat_map(CpuRing::fds) {
            let (_, running) = sys::perf::read_count_and_running(fd).ok()?;
            total = total.saturating_add(running);
        }
        Some(Duration::from_nanos(total))
    }

    fn emit_pending(&mut self, sink: &mut dyn FnMut(Event)) {
        for event in self.pending.drain(..) {
            sink(event);
        }
    }

    /// Reads every ring buffer to its end and hands the events to `sink`,
    /// merged across CPUs in time order: a thread that exec'd on one CPU and
    /// was sampled on another must be seen renamed and remapped first.
    fn drain(&mut self, sink: &mut dyn FnMut(Event)) {
        self.emit_pending(sink);
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut batch = std::mem::take(&mut self.batch);
        for ring in &mut self.rings {
            scratch.clear();
            if ring.ring.read_into(&mut scratch) == 0 {
                continue;
            }
            let (layout, duplicates, lost) = (&self.layout, &mut self.duplicates, &mut self.lost);
            let switch_ids = &self.switch_ids;
            let mut last_time = 0;
            record::split_records(&scratch, |bytes| {
                let Some(mut event) = record::parse(layout, bytes) else {
                    return;
                };
                match &mut event {
                    Event::Sample(s) => {
                        let id = record::sample_identifier(layout, bytes);
                        if !duplicates.keep(s.tid, id) {
                            return;
                        }
                        s.switch_out = switch_ids.is_switch(id);
                    }
                    Event::Lost { count } => *lost += *count,
                    _ => {}
                }
                // A record without a time keeps its place after the one before.
                last_time = record::record_time(layout, bytes).unwrap_or(last_time);
                batch.push((last_time, event));
            });
        }
        // Stable: records of one CPU with equal times keep their order.
        batch.sort_by_key(|(time, _)| *time);
        for (_, event) in batch.drain(..) {
            sink(event);
        }
        self.scratch = scratch;
        self.batch = batch;
    }
}

/// Milliseconds for poll(2), rounded up so a short timeout does not spin.
fn poll_timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(t) => {
            let ms = t.as_micros().div_ceil(1000);
            ms.min(i32::MAX as u128) as i32
        }
    }
}

impl Sampler for PerfSampler {
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        sink: &mut dyn FnMut(Event),
    ) -> Result<PollOutcome, SampleError> {
        self.emit_pending(sink);
        let mut fds = Vec::new();
        let mut owners = Vec::new();
        for (r, ring) in self.rings.iter().enumerate() {
            for (e, event) in ring.events.iter().enumerate() {
                if !event.hung_up {
                    fds.push(pollfd(&event.fd));
                    owners.push((r, e));
                }
            }
        }
        fds.push(pollfd(&self.target_fd));
        match sys::poll::poll(&mut fds, poll_timeout_ms(timeout)) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                self.drain(sink);
                return Ok(PollOutcome::default());
            }
            Err(source) => {
                return Err(SampleError::Sys {
                    call: Call::Poll,
                    what: "poll on perf events".to_string(),
                    source,
                })
            }
        }
        for (pfd, &(r, e)) in fds.iter().zip(&owners) {
            if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                self.rings[r].events[e].hung_up = true;
            }
        }
        let target_exited = fds.last().is_some_and(|p| p.revents != 0);
        self.drain(sink);
        Ok(PollOutcome { target_exited })
    }

    fn finish(&mut self, sink: &mut dyn FnMut(Event)) -> Result<(), SampleError> {
        let disabled = self
            .rings
            .iter()
            .map(|r| r.for_each_fd(sys::perf::disable))
            .find(Result::is_err)
            .unwrap_or(Ok(()));
        // Threads still off the CPU waited until now (the events' clock).
        let stopped = sys::time::monotonic_ns();
        self.drain(sink);
        if self.switch_ids.any() {
            sink(Event::Stopped { time: stopped });
        }
        self.cpu_time = self.running_time();
        disabled
    }

    fn description(&self) -> String {
        self.chosen.description()
    }

    fn event(&self) -> String {
        self.chosen.spec.counter.name().to_string()
    }

    fn target(&self) -> Pid {
        self.target
    }

    fn coverage(&self) -> crate::Coverage {
        crate::Coverage {
            backend: crate::Backend::Perf,
            cpu_time: self.cpu_time,
            kernel: self.chosen.kernel_time(),
            missed: 0,
        }
    }
}

fn pollfd(fd: &OwnedFd) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Events for the threads of a process at attach: a `Comm` per thread.
pub(crate) fn thread_names(pid: Pid, tids: &[Tid]) -> Vec<Event> {
    tids.iter()
        .filter_map(|&tid| {
            let name = crate::procfs::thread_name(pid, tid)?;
            Some(Event::Comm {
                pid,
                tid,
                name,
                exec: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_milliseconds() {
        assert_eq!(poll_timeout_ms(None), -1);
        assert_eq!(poll_timeout_ms(Some(Duration::from_micros(1))), 1);
        assert_eq!(poll_timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(
            poll_timeout_ms(Some(Duration::from_secs(u64::MAX))),
            i32::MAX
        );
    }
}
