//! Opening per-CPU events: every task of a CPU (`pid = -1`), or only the
//! tasks of a cgroup (`PERF_FLAG_PID_CGROUP`), one event and ring buffer
//! per online CPU, and the refusals that say what permission is missing.

use std::io;
use std::os::fd::OwnedFd;

use super::attr::{AttrSpec, Counter};
use super::cpus::online_cpus;
use super::open::{base_spec, paranoid_level, Chosen};
use super::sampler::{open_rings, CpuRing};
use super::sizing::ring_size;
use super::switch::SwitchIds;
use crate::sys;
use crate::sys::ring::page_size;
use crate::{Call, EventChoice, SampleError, SampleMode, SamplerOptions};

/// Which tasks per-CPU events count.
#[derive(Debug)]
pub(crate) enum Tasks {
    /// Every task on the CPU.
    All,
    /// The tasks of a cgroup v2 folder, open here.
    Cgroup(OwnedFd),
}

/// The message for a refused per-CPU event.
pub(crate) fn permission_message() -> String {
    let paranoid = paranoid_level().map_or_else(|| "unknown".to_string(), |p| p.to_string());
    format!(
        "per-CPU events (for -a, --cgroup, --name and several pids) need \
         perf_event_paranoid <= 0, CAP_PERFMON or root (perf_event_paranoid is {paranoid}): \
         run as root, grant CAP_PERFMON, or run `sysctl kernel.perf_event_paranoid=0`"
    )
}

fn open_one(attr: &AttrSpec, tasks: &Tasks, cpu: u32) -> io::Result<OwnedFd> {
    match tasks {
        Tasks::All => sys::perf::perf_event_open(&attr.attr(), -1, cpu as i32),
        Tasks::Cgroup(fd) => sys::perf::perf_event_open_cgroup(&attr.attr(), fd, cpu as i32),
    }
}

fn error(err: io::Error, counter: Counter, cpu: u32) -> SampleError {
    match err.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => SampleError::PermissionDenied {
            message: permission_message(),
            source: err,
        },
        _ => SampleError::Sys {
            call: Call::PerfEventOpen,
            what: format!(
                "perf_event_open({} on cpu {cpu}, every task)",
                counter.name()
            ),
            source: err,
        },
    }
}

/// Opens one event per online CPU on `tasks` and maps their ring buffers.
/// The counter is chosen as for per-task events: cycles where the machine
/// has them (under [`EventChoice::Auto`]), else cpu-clock.
pub(crate) fn open_per_cpu(
    options: &SamplerOptions,
    tasks: &Tasks,
) -> Result<(Chosen, Vec<CpuRing>), SampleError> {
    let cpus = online_cpus()?;
    // Every CPU is sampled all the time: buffers for a quarter second at
    // the full rate (three times the per-task size), so that a consumer
    // busy naming or unwinding loses nothing.
    let mut size = ring_size(
        super::switch::records_rate(options).max(options.frequency.saturating_mul(3)),
        options.stack,
        options.ring_pages,
        cpus.len(),
        page_size(),
    );
    super::switch::wake_sooner(&mut size, options, cpus.len());
    if options.wake_each_sample {
        size.watermark = 1;
    }
    let (base, kernel_note) = base_spec(options, false, size.watermark);
    let mut chosen: Option<Chosen> = None;
    let (rings, _) = open_rings(&cpus, size, |cpu, watermark| {
        if let Some(chosen) = &mut chosen {
            chosen.spec.wakeup_watermark = watermark;
            return open_one(&chosen.spec, tasks, cpu)
                .map_err(|e| error(e, chosen.spec.counter, cpu));
        }
        let with = |counter| AttrSpec {
            counter,
            wakeup_watermark: watermark,
            ..base
        };
        let first = match (options.mode, options.event) {
            // Off-CPU only: the context-switch event is the only event.
            (SampleMode::OffCpu, _) => Counter::ContextSwitches,
            // On- and off-CPU time in one unit: the clock, not cycles.
            (SampleMode::Wall, _) | (_, EventChoice::CpuClock) => Counter::CpuClock,
            (_, EventChoice::Cycles | EventChoice::Auto) => Counter::Cycles,
        };
        let (fd, spec, fallback) = match open_one(&with(first), tasks, cpu) {
            Ok(fd) => (fd, with(first), None),
            Err(err)
                if first == Counter::Cycles
                    && options.event == EventChoice::Auto
                    && no_counter(&err) =>
            {
                let spec = with(Counter::CpuClock);
                let fd = open_one(&spec, tasks, cpu).map_err(|e| error(e, spec.counter, cpu))?;
                (
                    fd,
                    spec,
                    Some("no hardware PMU: cycles not supported".to_string()),
                )
            }
            Err(err) if first == Counter::Cycles && no_counter(&err) => {
                return Err(SampleError::EventNotSupported {
                    event: "cycles",
                    source: err,
                })
            }
            Err(err) => return Err(error(err, first, cpu)),
        };
        chosen = Some(Chosen {
            spec,
            fallback,
            kernel_note: kernel_note.clone(),
        });
        Ok(fd)
    })?;
    let chosen = chosen.ok_or_else(|| SampleError::Sys {
        call: Call::PerfEventOpen,
        what: "perf_event_open: no online CPU".to_string(),
        source: io::Error::from_raw_os_error(libc::ENODEV),
    })?;
    Ok((chosen, rings))
}

/// Arms per-CPU off-CPU sampling once the rings are open: in wall-clock
/// mode, a context-switch event per CPU on `tasks` beside the clock event
/// (same stacks, its records into the same ring, no side-band: the clock
/// event reports those); in off-CPU mode the rings' events are the
/// context-switch events. Every switch on the CPU of a task of `tasks`
/// gives a `PERF_RECORD_SWITCH_CPU_WIDE` record. Returns the events' ids.
pub(crate) fn arm_switches(
    options: &SamplerOptions,
    tasks: &Tasks,
    chosen: &Chosen,
    rings: &mut [CpuRing],
) -> Result<SwitchIds, SampleError> {
    let mut ids = SwitchIds::default();
    let id = |fd: &OwnedFd, cpu: u32| {
        sys::perf::event_id(fd).map_err(|source| SampleError::Sys {
            call: Call::PerfIoctl,
            what: format!("PERF_EVENT_IOC_ID on cpu {cpu}"),
            source,
        })
    };
    match options.mode {
        SampleMode::Cpu => {}
        SampleMode::OffCpu => {
            for ring in rings.iter() {
                if let Some(fd) = ring.fds().next() {
                    ids.extend([id(fd, ring.cpu())?]);
                }
            }
        }
        SampleMode::Wall => {
            let spec = AttrSpec {
                counter: Counter::ContextSwitches,
                side_band: false,
                ..chosen.spec
            };
            for ring in rings.iter_mut() {
                let cpu = ring.cpu();
                let fd = open_one(&spec, tasks, cpu).map_err(|e| error(e, spec.counter, cpu))?;
                ids.extend([id(&fd, cpu)?]);
                ring.redirect(fd)?;
            }
        }
    }
    Ok(ids)
}

fn no_counter(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV | libc::EINVAL)
    )
}

/// A counting `task-clock` event on `pid` and its descendants (from its
/// exec when `enable_on_exec`), to measure the CPU time they use.
pub(crate) fn task_clock(pid: i32, enable_on_exec: bool) -> Option<OwnedFd> {
    let attr = super::attr::task_clock_attr(enable_on_exec);
    sys::perf::perf_event_open(&attr, pid, -1).ok()
}

/// Opens a cgroup v2 folder for `--cgroup` (a path under the cgroup2
/// mount, or one relative to it, as perf's `-G` takes it).
pub(crate) fn open_cgroup(path: &std::path::Path) -> Result<OwnedFd, SampleError> {
    use std::os::unix::fs::OpenOptionsExt;
    let candidates = cgroup_candidates(path);
    let mut last = None;
    for candidate in &candidates {
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(candidate)
        {
            Ok(dir) if candidate.join("cgroup.procs").exists() => return Ok(OwnedFd::from(dir)),
            Ok(_) => {}
            Err(e) => last = Some(e),
        }
    }
    Err(SampleError::Unsupported(format!(
        "--cgroup {}: no cgroup v2 folder there{}",
        path.display(),
        last.map(|e| format!(" ({e})")).unwrap_or_default()
    )))
}

/// Where `path` may name a cgroup: as given when absolute, else under
/// every cgroup2 mount.
fn cgroup_candidates(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if path.is_absolute() {
        out.push(path.to_path_buf());
    }
    let relative = path.strip_prefix("/").unwrap_or(path);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_), Some(dir), Some(kind)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if kind == "cgroup2" {
            out.push(std::path::Path::new(dir).join(relative));
        }
    }
    out
}
