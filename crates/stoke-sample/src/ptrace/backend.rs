//! Choosing between the perf and ptrace samplers.

use stoke_model::Pid;

use crate::{
    Call, Child, CommandSpec, PerfSampler, PtraceSampler, SampleError, Sampler, SamplerOptions,
};

/// Which sampler records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// perf events, falling back to ptrace where perf events are forbidden
    /// (or, in the off-CPU modes, where their context-switch samples are).
    #[default]
    Auto,
    /// perf events only.
    Perf,
    /// ptrace only.
    Ptrace,
}

/// A started sampler, the launched command if any, and why ptrace is used
/// when perf events were wanted.
pub struct Started {
    /// The sampler.
    pub sampler: Box<dyn Sampler>,
    /// The launched command.
    pub child: Option<Child>,
    /// Set when `Auto` fell back to ptrace: why perf events were refused.
    pub fallback: Option<String>,
    /// What the launched command cannot do under ptrace (setuid, its own
    /// ptrace calls), one line each; empty under perf events.
    pub warnings: Vec<String>,
}

/// Whether a perf error means "perf events are forbidden here": a
/// permission refusal, or `ENOSYS` from a seccomp filter.
fn forbids_perf(err: &SampleError) -> bool {
    match err {
        SampleError::PermissionDenied { .. } | SampleError::KernelExcluded { .. } => true,
        SampleError::Sys { call, source, .. } => {
            *call == Call::PerfEventOpen && source.raw_os_error() == Some(libc::ENOSYS)
        }
        _ => false,
    }
}

/// Whether stoke runs under a seccomp filter (`Seccomp: 2` in its status).
fn under_seccomp_filter() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.strip_prefix("Seccomp:").is_some_and(|v| v.trim() == "2"))
    })
}

/// Why perf events are not used, in a few words.
fn reason(err: &SampleError) -> String {
    let source = match err {
        SampleError::Sys { source, .. } | SampleError::PermissionDenied { source, .. } => source,
        other => return other.to_string(),
    };
    if under_seccomp_filter() {
        format!("perf_event_open: {source}, under a seccomp filter (a container?)")
    } else {
        err.to_string()
    }
}

/// Attaches to `pid` with the chosen backend.
pub fn attach(
    backend: Backend,
    pid: Pid,
    options: &SamplerOptions,
) -> Result<Started, SampleError> {
    // Another user's process is refused by ptrace for the same reason as by
    // perf events, which says so; ptrace's own error would blame Yama.
    let keep_perf_error = crate::perf::open::owned_by_another_user(pid);
    start(
        backend,
        options,
        keep_perf_error,
        || {
            if let Some(sampler) = per_cpu(options, || {
                crate::perf::system_targets::attach_per_cpu(&[pid], options)
            })? {
                return Ok((Box::new(sampler), None, Vec::new()));
            }
            Ok((
                Box::new(PerfSampler::attach(pid, options)?),
                None,
                Vec::new(),
            ))
        },
        || {
            Ok((
                Box::new(PtraceSampler::attach(pid, options)?),
                None,
                Vec::new(),
            ))
        },
    )
}

/// Launches `command` with the chosen backend.
pub fn launch(
    backend: Backend,
    command: &CommandSpec,
    options: &SamplerOptions,
) -> Result<Started, SampleError> {
    start(
        backend,
        options,
        false,
        || {
            if let Some((sampler, child)) = per_cpu(options, || {
                crate::perf::system_targets::launch_per_cpu(command, options)
            })? {
                return Ok((Box::new(sampler), Some(child), Vec::new()));
            }
            let (sampler, child) = PerfSampler::launch(command, options)?;
            Ok((Box::new(sampler), Some(child), Vec::new()))
        },
        || {
            let warnings = command
                .resolve()
                .map(|path| super::launch::launch_warnings(&path))
                .unwrap_or_default();
            let (sampler, child) = PtraceSampler::launch(command, options)?;
            Ok((Box::new(sampler), Some(child), warnings))
        },
    )
}

/// Opens the per-CPU sampler when the options ask for it and it is
/// allowed: `Ok(None)` where per-CPU events are refused (the caller uses
/// per-task events), and in the off-CPU modes: a per-CPU context-switch
/// event costs the target no less than per-task ones on a loaded CPU, and
/// its rate is shared by every task of the CPU, so a thread that switches
/// rarely can go without a single stack (see `docs/benchmarks.md`).
fn per_cpu<T>(
    options: &SamplerOptions,
    open: impl FnOnce() -> Result<T, SampleError>,
) -> Result<Option<T>, SampleError> {
    if !options.per_cpu || options.mode.samples_off_cpu() {
        return Ok(None);
    }
    match open() {
        Ok(opened) => Ok(Some(opened)),
        Err(SampleError::PermissionDenied { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// A sampler, the launched command, and what that command cannot do under
/// this sampler.
type Opened = (Box<dyn Sampler>, Option<Child>, Vec<String>);

fn start(
    backend: Backend,
    options: &SamplerOptions,
    keep_perf_error: bool,
    perf: impl FnOnce() -> Result<Opened, SampleError>,
    ptrace: impl FnOnce() -> Result<Opened, SampleError>,
) -> Result<Started, SampleError> {
    let started = |(sampler, child, warnings): Opened, fallback| Started {
        sampler,
        child,
        fallback,
        warnings,
    };
    let _ = options;
    match backend {
        Backend::Perf => Ok(started(perf()?, None)),
        Backend::Ptrace => Ok(started(ptrace()?, None)),
        Backend::Auto => match perf() {
            Ok(opened) => Ok(started(opened, None)),
            Err(err) if forbids_perf(&err) => match ptrace() {
                Ok(opened) => Ok(started(opened, Some(reason(&err)))),
                Err(_) if keep_perf_error => Err(err),
                Err(ptrace_err) => Err(ptrace_err),
            },
            Err(err) => Err(err),
        },
    }
}
