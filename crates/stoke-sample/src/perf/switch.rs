//! Off-CPU time on perf events: the context-switch event.
//!
//! In wall-clock and off-CPU modes every task gets, on every CPU, a
//! `context-switches` software event that samples a thread's stack as it
//! leaves the CPU (same user registers and stack copy as clock samples, and
//! the kernel stack of the switch) and asks for `PERF_RECORD_SWITCH`
//! records, which time every switch out and in and say whether a thread
//! left preempted (still runnable) or blocked. In wall-clock mode it sits
//! beside the clock event in the same ring buffer; in off-CPU mode it is the
//! sampler's only event.
//!
//! The event runs in frequency mode at the sampling rate: a thread that
//! switches less often than that has every switch-out sampled; one that
//! switches more often has a share of them sampled, while the records still
//! time every interval (see `docs/how-it-works.md`).
//!
//! The samples are taken in the kernel, so `exclude_kernel` (forced on
//! unprivileged users at `perf_event_paranoid` 2) drops every one of them:
//! the event opens, the records come, but no stack ever does. That case is
//! refused up front with [`SampleError::KernelExcluded`].

use std::collections::HashSet;
use std::os::fd::OwnedFd;

use super::open::{paranoid_level, Opener};
use super::record::{self, Layout};
use super::sampler::CpuRing;
use super::sizing::{RingSize, TOTAL_BUDGET_BYTES};
use crate::sys::ring::page_size;
use stoke_model::{Pid, Tid};

use crate::ptrace::stat;
use crate::sys::{perf, process};
use crate::{Call, Event, Sample, SampleError, SampleMode, SamplerOptions, SwitchDirection};

/// `PERF_RECORD_MISC_SWITCH_OUT`.
const MISC_SWITCH_OUT: u16 = 1 << 13;
/// `PERF_RECORD_MISC_SWITCH_OUT_PREEMPT`: the task was still runnable.
const MISC_SWITCH_OUT_PREEMPT: u16 = 1 << 14;

/// How many stack samples a second a CPU's ring buffer is sized for: the
/// sampling rate, plus in the off-CPU modes up to as many switch-out
/// samples per thread again, and the switch records (two per switch, small
/// but, at 100,000 switches a second, as many bytes as another rate's
/// worth of samples).
pub(crate) fn records_rate(options: &SamplerOptions) -> u32 {
    match options.mode {
        SampleMode::Cpu => options.frequency,
        _ => options.frequency.saturating_mul(4),
    }
}

/// Bytes a CPU's ring buffer holds at least in the off-CPU modes: switch
/// records do not shrink with the stack capture, and without stack copies
/// (`--unwind fp`) a buffer sized for the samples alone is a few hundred
/// KiB, which a ping-pong's ~800,000 records a second (~40 MB) fill in
/// milliseconds. 4 MiB still lost 174,380 of a ping-pong's records at
/// `-F 99` (a buffer sized for few samples) when stoke was held up for a
/// few tenths of a second: 16 MiB holds about a second of them.
const OFF_CPU_MIN_RING_BYTES: u64 = 16 << 20;

/// In the off-CPU modes, gives each of `cpus` buffers at least
/// [`OFF_CPU_MIN_RING_BYTES`] (within the memory budget) and wakes the
/// reader four times as often, at a sixteenth of the buffer: switch records
/// come in bursts (a ping-pong fills a buffer in milliseconds) and a record
/// lost is an interval lost.
pub(crate) fn wake_sooner(size: &mut RingSize, options: &SamplerOptions, cpus: usize) {
    if !options.mode.samples_off_cpu() {
        return;
    }
    let page = page_size().max(1) as u64;
    let budget = TOTAL_BUDGET_BYTES / (cpus.max(1) as u64);
    let floor = (OFF_CPU_MIN_RING_BYTES.min(budget) / page).max(1);
    let floor = if floor.is_power_of_two() {
        floor
    } else {
        floor.next_power_of_two() / 2
    };
    size.data_pages = size.data_pages.max(floor as usize);
    let bytes = size.data_pages as u64 * page;
    let watermark = u64::from(size.watermark / 4)
        .max(bytes / 16)
        .min(bytes / 4)
        .max(page)
        .min(u64::from(u32::MAX));
    size.watermark = watermark as u32;
}

/// Refuses the off-CPU modes where the kernel would drop every
/// context-switch sample (an unprivileged user at `perf_event_paranoid` 2
/// or more gets `exclude_kernel`).
pub(crate) fn check_allowed(options: &SamplerOptions) -> Result<(), SampleError> {
    if !options.mode.samples_off_cpu() || process::geteuid() == 0 {
        return Ok(());
    }
    match paranoid_level() {
        Some(paranoid) if paranoid >= 2 => Err(SampleError::KernelExcluded { paranoid }),
        _ => Ok(()),
    }
}

/// Arms task `task` for off-CPU sampling once its clock events are open in
/// `rings` (the last event of each): in wall-clock mode, opens a
/// context-switch event per CPU beside them; in off-CPU mode the last
/// events are the context-switch events. Returns the ids of the
/// context-switch events, which the samples they take carry.
pub(crate) fn arm(
    opener: &Opener,
    mode: SampleMode,
    rings: &mut [CpuRing],
    task: i32,
) -> Result<Vec<u64>, SampleError> {
    let mut ids = Vec::new();
    match mode {
        SampleMode::Cpu => {}
        SampleMode::OffCpu => {
            for ring in rings.iter() {
                if let Some(fd) = ring.fds().last() {
                    ids.push(event_id(fd, task)?);
                }
            }
        }
        SampleMode::Wall => {
            let fds = rings
                .iter()
                .map(|ring| opener.open_switch(task, ring.cpu()))
                .collect::<Result<Vec<_>, _>>()?;
            for (ring, fd) in rings.iter_mut().zip(fds) {
                ids.push(event_id(&fd, task)?);
                ring.redirect(fd)?;
            }
        }
    }
    Ok(ids)
}

fn event_id(fd: &OwnedFd, task: i32) -> Result<u64, SampleError> {
    perf::event_id(fd).map_err(|source| SampleError::Sys {
        call: Call::PerfIoctl,
        what: format!("PERF_EVENT_IOC_ID for thread {task}"),
        source,
    })
}

/// Off-CPU intervals of the threads that are blocked when stoke attaches:
/// they left the CPU before the events existed, so no sample or record
/// says so. Each gets a switch-out at `time` whose stack is where
/// `/proc/PID/task/TID/syscall` says it waits (the system call's wrapper,
/// without its callers: the kernel cannot be asked for more without
/// stopping the thread); its next switch-in, or the end of recording, ends
/// the interval.
pub(crate) fn blocked_at_attach(pid: Pid, tids: &[Tid], time: u64) -> Vec<Event> {
    let mut events = Vec::new();
    for &tid in tids {
        let state = std::fs::read(format!("/proc/{pid}/task/{tid}/stat"))
            .ok()
            .and_then(|text| stat::parse(&text));
        if !state.is_some_and(|s| matches!(s.state, b'S' | b'D')) {
            continue;
        }
        let Some(blocked) = stat::blocked_in(pid, tid) else {
            continue;
        };
        events.push(Event::Sample(Sample {
            pid,
            tid,
            time,
            user_callchain: vec![blocked.pc],
            switch_out: true,
            blocked_at_start: true,
            ..Sample::default()
        }));
        events.push(Event::Switch {
            pid,
            tid,
            time,
            direction: SwitchDirection::Out { preempted: false },
        });
    }
    events
}

/// The ids of a sampler's context-switch events.
#[derive(Debug, Default)]
pub(crate) struct SwitchIds(HashSet<u64>);

impl SwitchIds {
    /// Adds ids.
    pub(crate) fn extend(&mut self, ids: impl IntoIterator<Item = u64>) {
        self.0.extend(ids);
    }

    /// Whether a sample of event `id` was taken at a switch-out.
    pub(crate) fn is_switch(&self, id: Option<u64>) -> bool {
        id.is_some_and(|id| self.0.contains(&id))
    }

    /// Whether the sampler samples context switches at all.
    pub(crate) fn any(&self) -> bool {
        !self.0.is_empty()
    }
}

/// Parses a `PERF_RECORD_SWITCH` record (header, then the `sample_id`
/// trailer).
pub(crate) fn parse_switch(layout: &Layout, misc: u16, bytes: &[u8]) -> Option<Event> {
    let (pid, tid) = record::trailer_task(layout, bytes)?;
    let time = record::record_time(layout, bytes)?;
    let direction = if misc & MISC_SWITCH_OUT != 0 {
        SwitchDirection::Out {
            preempted: misc & MISC_SWITCH_OUT_PREEMPT != 0,
        }
    } else {
        SwitchDirection::In
    };
    Some(Event::Switch {
        pid,
        tid,
        time,
        direction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::attr::sample;

    fn switch_record(misc: u16) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&14u32.to_ne_bytes());
        r.extend_from_slice(&misc.to_ne_bytes());
        r.extend_from_slice(&40u16.to_ne_bytes());
        trailer(&mut r);
        r
    }

    /// A per-CPU event's record: the other task after the header.
    fn cpu_wide_record(misc: u16) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&15u32.to_ne_bytes());
        r.extend_from_slice(&misc.to_ne_bytes());
        r.extend_from_slice(&48u16.to_ne_bytes());
        r.extend_from_slice(&3u32.to_ne_bytes()); // next_prev_pid
        r.extend_from_slice(&4u32.to_ne_bytes()); // next_prev_tid
        trailer(&mut r);
        r
    }

    fn trailer(r: &mut Vec<u8>) {
        r.extend_from_slice(&7u32.to_ne_bytes()); // pid
        r.extend_from_slice(&9u32.to_ne_bytes()); // tid
        r.extend_from_slice(&1234u64.to_ne_bytes()); // time
        r.extend_from_slice(&1u64.to_ne_bytes()); // cpu, reserved
        r.extend_from_slice(&55u64.to_ne_bytes()); // identifier
    }

    #[test]
    fn switch_records_say_which_way_and_whether_preempted() {
        let layout = Layout {
            sample_type: sample::IDENTIFIER
                | sample::IP
                | sample::TID
                | sample::TIME
                | sample::CPU
                | sample::PERIOD
                | sample::CALLCHAIN,
        };
        let cases = [
            (0, SwitchDirection::In),
            (MISC_SWITCH_OUT, SwitchDirection::Out { preempted: false }),
            (
                MISC_SWITCH_OUT | MISC_SWITCH_OUT_PREEMPT,
                SwitchDirection::Out { preempted: true },
            ),
        ];
        let records = cases
            .iter()
            .flat_map(|&(misc, want)| [(switch_record(misc), want), (cpu_wide_record(misc), want)]);
        for (record, want) in records {
            let event = record::parse(&layout, &record);
            match event {
                Some(Event::Switch {
                    pid,
                    tid,
                    time,
                    direction,
                }) => {
                    assert_eq!((pid, tid, time, direction), (Pid(7), Tid(9), 1234, want));
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(record::parse(&layout, &switch_record(0)[..20]).is_none());
        assert!(record::parse(&layout, &cpu_wide_record(0)[..20]).is_none());
    }

    #[test]
    fn off_cpu_buffers_hold_switch_records_without_stack_copies() {
        let page = page_size();
        let small = RingSize {
            data_pages: 64,
            watermark: 14 << 10,
        };
        let mut cpu = small;
        wake_sooner(&mut cpu, &SamplerOptions::default(), 2);
        assert_eq!(cpu, small, "CPU mode keeps its buffers");
        let wall = SamplerOptions {
            mode: SampleMode::Wall,
            ..SamplerOptions::default()
        };
        let mut size = small;
        wake_sooner(&mut size, &wall, 2);
        let bytes = (size.data_pages * page) as u64;
        assert!(bytes >= OFF_CPU_MIN_RING_BYTES, "{size:?}");
        assert!(size.data_pages.is_power_of_two());
        assert_eq!(u64::from(size.watermark), bytes / 16);
        // Within the memory budget however many CPUs.
        let mut many = RingSize {
            data_pages: 1,
            watermark: page as u32,
        };
        wake_sooner(&mut many, &wall, 1 << 20);
        assert!((many.data_pages * page) as u64 <= (TOTAL_BUDGET_BYTES >> 20).max(page as u64));
    }
}
