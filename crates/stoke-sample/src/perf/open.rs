//! Choosing the counter, opening events, and turning refusals into errors
//! that say what to do.

use std::io;
use std::os::fd::OwnedFd;

use stoke_model::Pid;

use super::attr::{AttrSpec, Counter};
use crate::sys;
use crate::{Call, EventChoice, SampleError, SampleMode, SamplerOptions, StackCapture};

/// The counter and attribute settled on by the first successful open, with
/// the reasons for what was chosen.
#[derive(Clone, Debug)]
pub(crate) struct Chosen {
    /// The attribute every further event of the sampler uses.
    pub(crate) spec: AttrSpec,
    /// Why the preferred counter was not used, if it was not.
    pub(crate) fallback: Option<String>,
    /// Why kernel samples are excluded, if they are.
    pub(crate) kernel_note: Option<String>,
}

impl Chosen {
    /// Whether kernel time is sampled.
    pub(crate) fn kernel_time(&self) -> crate::KernelTime {
        if self.spec.exclude_kernel {
            crate::KernelTime::NotSampled {
                paranoid: paranoid_level().unwrap_or(2),
            }
        } else {
            crate::KernelTime::Sampled
        }
    }
}

impl Chosen {
    /// A one-line description, e.g.
    /// `cpu-clock at 999 Hz (no hardware PMU: cycles not supported)`.
    pub(crate) fn description(&self) -> String {
        let mut notes = Vec::new();
        notes.extend(self.fallback.clone());
        notes.extend(self.kernel_note.clone());
        if let StackCapture::RegsAndStack { .. } = self.spec.stack {
            let size = super::attr::stack_copy_size(self.spec.stack);
            notes.push(format!("user registers + {size}-byte stack copies"));
        }
        let (counter, hz) = (self.spec.counter.name(), self.spec.frequency);
        let base = match self.spec.counter {
            Counter::ContextSwitches => {
                format!("{counter}, stacks of up to {hz} switch-outs a second per thread")
            }
            _ if self.spec.monotonic => format!("{counter} at {hz} Hz + context-switches"),
            _ => format!("{counter} at {hz} Hz"),
        };
        if notes.is_empty() {
            base
        } else {
            format!("{base} ({})", notes.join("; "))
        }
    }
}

/// `/proc/sys/kernel/perf_event_paranoid`, if readable.
pub(crate) fn paranoid_level() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The attribute before a counter is chosen: kernel exclusion decided from
/// privileges, the rest from the options.
pub(crate) fn base_spec(
    options: &SamplerOptions,
    enable_on_exec: bool,
    watermark: u32,
) -> (AttrSpec, Option<String>) {
    let paranoid = paranoid_level();
    let unprivileged = sys::process::geteuid() != 0 && paranoid.is_some_and(|p| p >= 2);
    let kernel_note = unprivileged.then(|| {
        format!(
            "kernel frames not allowed: perf_event_paranoid is {}",
            paranoid.unwrap_or_default()
        )
    });
    let spec = AttrSpec {
        // Off-CPU only: the context-switch event is the sampler's one event.
        counter: match options.mode {
            SampleMode::OffCpu => Counter::ContextSwitches,
            _ => Counter::CpuClock,
        },
        frequency: options.frequency.max(1),
        exclude_kernel: unprivileged,
        exclude_callchain_kernel: !options.kernel,
        stack: options.stack,
        enable_on_exec,
        wakeup_watermark: watermark,
        side_band: true,
        monotonic: options.mode.samples_off_cpu(),
    };
    (spec, kernel_note)
}

/// Opens the events of one sampler: the first open settles the counter,
/// later ones reuse it.
pub(crate) struct Opener {
    choice: EventChoice,
    base: AttrSpec,
    kernel_note: Option<String>,
    target: Pid,
    chosen: Option<Chosen>,
}

impl Opener {
    /// An opener for a sampler of `target` (launch: `enable_on_exec`).
    pub(crate) fn new(options: &SamplerOptions, enable_on_exec: bool, target: Pid) -> Opener {
        let (base, kernel_note) = base_spec(options, enable_on_exec, 0);
        Opener {
            // On- and off-CPU time in one unit: the clock, not cycles.
            choice: match options.mode {
                SampleMode::Cpu => options.event,
                _ => EventChoice::CpuClock,
            },
            base,
            kernel_note,
            target,
            chosen: None,
        }
    }

    /// Opens an event on task `task` and CPU `cpu`, with a new wake-up
    /// watermark if given.
    pub(crate) fn open(
        &mut self,
        task: i32,
        cpu: u32,
        watermark: Option<u32>,
    ) -> Result<OwnedFd, SampleError> {
        if let Some(watermark) = watermark {
            self.base.wakeup_watermark = watermark;
        }
        match &mut self.chosen {
            Some(chosen) => {
                chosen.spec.wakeup_watermark = self.base.wakeup_watermark;
                sys::perf::perf_event_open(&chosen.spec.attr(), task, cpu as i32)
                    .map_err(|e| open_error(e, chosen.spec.counter, task, cpu, self.target))
            }
            None => {
                let note = self.kernel_note.clone();
                let (fd, chosen) =
                    open_first(self.choice, self.base, note, task, cpu, self.target)?;
                self.chosen = Some(chosen);
                Ok(fd)
            }
        }
    }

    /// What the first successful open settled on.
    pub(crate) fn chosen(&self) -> Option<&Chosen> {
        self.chosen.as_ref()
    }

    /// Opens the context-switch event that goes beside the clock event on
    /// task `task` and CPU `cpu` in wall-clock mode: same stacks, no
    /// side-band records (the clock event reports those).
    pub(crate) fn open_switch(&self, task: i32, cpu: u32) -> Result<OwnedFd, SampleError> {
        let spec = AttrSpec {
            counter: Counter::ContextSwitches,
            side_band: false,
            ..self.chosen.as_ref().map_or(self.base, |c| c.spec)
        };
        sys::perf::perf_event_open(&spec.attr(), task, cpu as i32)
            .map_err(|e| open_error(e, Counter::ContextSwitches, task, cpu, self.target))
    }
}

/// Whether an errno from opening `cycles` means "no such counter here".
fn means_no_counter(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV | libc::EINVAL)
    )
}

fn is_permission(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EACCES | libc::EPERM))
}

/// Opens the first event (on task `pid`, CPU `cpu`) with the counter that
/// `choice` selects, falling back from cycles to cpu-clock under `Auto`.
pub(crate) fn open_first(
    choice: EventChoice,
    base: AttrSpec,
    kernel_note: Option<String>,
    pid: i32,
    cpu: u32,
    target: Pid,
) -> Result<(OwnedFd, Chosen), SampleError> {
    let with = |counter| AttrSpec { counter, ..base };
    let chosen = |spec, fallback| Chosen {
        spec,
        fallback,
        kernel_note: kernel_note.clone(),
    };
    let first = match (base.counter, choice) {
        (Counter::ContextSwitches, _) => Counter::ContextSwitches,
        (_, EventChoice::CpuClock) => Counter::CpuClock,
        (_, EventChoice::Cycles | EventChoice::Auto) => Counter::Cycles,
    };
    let spec = with(first);
    match sys::perf::perf_event_open(&spec.attr(), pid, cpu as i32) {
        Ok(fd) => Ok((fd, chosen(spec, None))),
        Err(err) if choice == EventChoice::Auto && means_no_counter(&err) => {
            let reason = match err.raw_os_error() {
                Some(libc::EINVAL) => format!("cycles rejected: {err}"),
                _ => "no hardware PMU: cycles not supported".to_string(),
            };
            let spec = with(Counter::CpuClock);
            let fd = sys::perf::perf_event_open(&spec.attr(), pid, cpu as i32)
                .map_err(|e| open_error(e, Counter::CpuClock, pid, cpu, target))?;
            Ok((fd, chosen(spec, Some(reason))))
        }
        Err(err) if first == Counter::Cycles && means_no_counter(&err) => {
            Err(SampleError::EventNotSupported {
                event: "cycles",
                source: err,
            })
        }
        Err(err) => Err(open_error(err, first, pid, cpu, target)),
    }
}

/// The error for a failed `perf_event_open` of `counter` on task `pid`.
pub(crate) fn open_error(
    err: io::Error,
    counter: Counter,
    pid: i32,
    cpu: u32,
    target: Pid,
) -> SampleError {
    if is_permission(&err) {
        return SampleError::PermissionDenied {
            message: permission_message(target),
            source: err,
        };
    }
    if err.raw_os_error() == Some(libc::ESRCH) {
        return SampleError::NoSuchProcess(target);
    }
    SampleError::Sys {
        call: Call::PerfEventOpen,
        what: format!(
            "perf_event_open({} on pid {pid}, cpu {cpu})",
            counter.name()
        ),
        source: err,
    }
}

/// Whether `target` belongs to a user other than stoke's (and stoke is not
/// root): then perf events and ptrace are both refused for that reason.
pub(crate) fn owned_by_another_user(target: Pid) -> bool {
    let euid = sys::process::geteuid();
    euid != 0 && process_owner(target).is_some_and(|uid| uid != euid)
}

/// Explains a refused `perf_event_open` and how to get permission.
pub(crate) fn permission_message(target: Pid) -> String {
    let euid = sys::process::geteuid();
    if euid != 0 {
        if let Some(owner) = process_owner(target).filter(|&uid| uid != euid) {
            return format!(
                "cannot profile pid {target}: it belongs to another user (uid {owner}); \
                 run stoke as that user or as root"
            );
        }
    }
    let paranoid = paranoid_level().map_or_else(|| "unknown".to_string(), |p| p.to_string());
    format!(
        "perf events not permitted (perf_event_paranoid is {paranoid}): \
         run `sysctl kernel.perf_event_paranoid=1` or grant CAP_PERFMON"
    )
}

/// The real uid owning a process (the `Uid:` line of `/proc/PID/status`).
fn process_owner(pid: Pid) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_name_the_counter_and_the_reasons() {
        let (spec, _) = base_spec(&SamplerOptions::default(), false, 0);
        let chosen = Chosen {
            spec,
            fallback: Some("no hardware PMU: cycles not supported".into()),
            kernel_note: None,
        };
        assert_eq!(
            chosen.description(),
            "cpu-clock at 999 Hz (no hardware PMU: cycles not supported)"
        );
        let stack = AttrSpec {
            counter: Counter::Cycles,
            stack: StackCapture::RegsAndStack { size: 16384 },
            ..spec
        };
        let chosen = Chosen {
            spec: stack,
            fallback: None,
            kernel_note: Some("kernel frames not allowed: perf_event_paranoid is 2".into()),
        };
        assert_eq!(
            chosen.description(),
            "cycles at 999 Hz (kernel frames not allowed: perf_event_paranoid is 2; \
             user registers + 16384-byte stack copies)"
        );
    }

    #[test]
    fn permission_errors_name_the_remedy() {
        let err = open_error(
            io::Error::from_raw_os_error(libc::EACCES),
            Counter::CpuClock,
            1,
            0,
            Pid(1),
        );
        let text = err.to_string();
        assert!(
            text.contains("perf_event_paranoid") || text.contains("another user"),
            "{text}"
        );
        assert!(matches!(err, SampleError::PermissionDenied { .. }));
    }
}
