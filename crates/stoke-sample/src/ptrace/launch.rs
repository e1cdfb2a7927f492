//! Starting a command, or attaching to a process, under ptrace.

use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use stoke_model::{Pid, Tid};

use super::sampler::PtraceSampler;
use super::tracer::Tracer;
use crate::error::sys_error;
use crate::perf::sampler::thread_names;
use crate::sys::process;
use crate::sys::ptrace as sys;
use crate::target::HeldCommand;
use crate::{procfs, Call, Child, CommandSpec, SampleError, SamplerOptions};

/// `/proc/sys/kernel/yama/ptrace_scope`, if there is one.
fn ptrace_scope() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok()?;
    Some(text.trim().to_string())
}

/// Why `pid` cannot be traced whatever the permissions, from its
/// `/proc/PID/status`: a zombie, an exiting process, or one another
/// tracer holds. `None` when none of these holds.
fn why_untraceable(pid: Pid) -> Option<String> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Some(format!("process {pid} exited while stoke attached to it"));
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let state = field("State:").unwrap_or("");
    if state.starts_with('Z') {
        return Some(format!(
            "process {pid} is a zombie: it has exited and waits for its parent to reap it; there is nothing left to profile"
        ));
    }
    if state.starts_with('X') {
        return Some(format!(
            "process {pid} is exiting: there is nothing left to profile"
        ));
    }
    let tracer = field("TracerPid:").and_then(|t| t.parse::<u32>().ok())?;
    if tracer == 0 {
        return exiting(pid).then(|| {
            format!(
                "process {pid} is exiting (its threads are gone or going): nothing left to profile"
            )
        });
    }
    let name = procfs::thread_name(Pid(tracer), Tid(tracer))
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    Some(format!(
        "process {pid} is already traced by process {tracer}{name}; a process has one tracer at a time: detach it first, or use --backend perf"
    ))
}

/// Whether the process's main thread is a zombie or dead while others may
/// linger (the process is on its way out).
fn exiting(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(true)
}

/// What a program launched under ptrace will not be able to do, one line
/// each: a setuid, setgid or setcap program runs without its privileges (the
/// kernel ignores them for a traced exec), and a program that calls ptrace
/// itself (a debugger, strace) gets EPERM, as a process has one tracer.
pub(crate) fn launch_warnings(path: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    let shown = path.display();
    let mode = std::fs::metadata(path).map_or(0, |m| m.mode());
    let privileged = if mode & 0o4000 != 0 {
        Some("setuid")
    } else if mode & 0o2000 != 0 {
        Some("setgid")
    } else if process::has_file_capabilities(path) {
        Some("has file capabilities (setcap)")
    } else {
        None
    };
    if let Some(what) = privileged {
        warnings.push(format!(
            "{shown} is {what}: under ptrace it runs without those privileges; \
             use --backend perf, or start it first and attach with -p"
        ));
    }
    if imports_ptrace(path) {
        warnings.push(format!(
            "{shown} calls ptrace itself (a debugger or tracer?): under the ptrace backend \
             those calls fail with EPERM; use --backend perf"
        ));
    }
    warnings
}

/// Whether an executable names `ptrace` among its dynamic symbols (gdb,
/// strace, ltrace do): the exact name between NULs in its first 64 MiB.
/// Only a regular file is read (a FIFO or device named as the program
/// would block or be consumed).
fn imports_ptrace(path: &Path) -> bool {
    const LIMIT: u64 = 64 << 20;
    let mut bytes = Vec::new();
    let opened = stoke_model::file::open_regular(path, stoke_model::file::Follow::Yes)
        .and_then(|f| f.take(LIMIT).read_to_end(&mut bytes));
    opened.is_ok() && bytes.starts_with(b"\x7fELF") && bytes.windows(8).any(|w| w == b"\0ptrace\0")
}

/// The error for a refused `PTRACE_SEIZE` of `pid`.
pub(crate) fn seize_error(pid: Pid, source: io::Error) -> SampleError {
    match source.raw_os_error() {
        Some(libc::ESRCH) => SampleError::NoSuchProcess(pid),
        Some(libc::EPERM | libc::EACCES) => {
            if let Some(message) = why_untraceable(pid) {
                return SampleError::NotTraceable { message, source };
            }
            let scope = ptrace_scope()
                .map(|s| format!(" (kernel.yama.ptrace_scope is {s})"))
                .unwrap_or_default();
            SampleError::PermissionDenied {
                message: format!(
                    "cannot trace pid {pid}: ptrace not permitted{scope}; run stoke as the \
                     process's user with `sysctl kernel.yama.ptrace_scope=0`, as root, or \
                     with CAP_SYS_PTRACE (is another debugger attached?)"
                ),
                source,
            }
        }
        _ => SampleError::Sys {
            call: Call::Ptrace,
            what: format!("PTRACE_SEIZE({pid})"),
            source,
        },
    }
}

/// The nice value the thread that drives ptrace asks for.
const SAMPLER_NICE: i32 = -10;

/// A user-space sampler competes for the CPUs with the threads it samples:
/// at nice 0, one stoke thread against 200 busy threads on 2 CPUs gets a
/// 1/100 share, starts late and takes few samples. Where stoke may (as
/// root), the thread that drives ptrace runs at nice -10; it sleeps between
/// samples, so it takes little from the target.
fn raise_sampler_priority() {
    sys::raise_own_priority(SAMPLER_NICE);
}

/// See [`PtraceSampler::attach`].
pub(crate) fn attach(pid: Pid, options: &SamplerOptions) -> Result<PtraceSampler, SampleError> {
    if pid.0 == 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(SampleError::NoSuchProcess(pid));
    }
    raise_sampler_priority();
    let mut sampler = PtraceSampler::new(Tracer::new(pid, None), pid, options);
    let tracer = sampler.tracer_mut();
    // Threads created after the last listing are found by the sampler's
    // rounds (`Tracer::discover`).
    procfs::for_each_thread_until_stable(pid, |tid, _| match tracer.seize(pid, tid) {
        Ok(()) => Ok(()),
        // The thread exited between the listing and the seize.
        Err(err) if err.raw_os_error() == Some(libc::ESRCH) && tid.0 != pid.0 => Ok(()),
        Err(err) => Err(seize_error(pid, err)),
    })?;
    let tids: Vec<Tid> = tracer.threads.keys().copied().collect();
    tracer.events.extend(thread_names(pid, &tids));
    tracer.push_mappings(pid);
    tracer.started = true;
    Ok(sampler)
}

/// See [`PtraceSampler::launch`].
pub(crate) fn launch(
    command: &CommandSpec,
    options: &SamplerOptions,
) -> Result<(PtraceSampler, Child), SampleError> {
    let path = command.resolve()?;
    let plan = command.exec_plan(&path)?;
    let held = HeldCommand::fork(&plan)?;
    let pid = Pid(held.pid() as u32);
    let reaped = Arc::new(OnceLock::new());
    let mut sampler = PtraceSampler::new(Tracer::new(pid, Some(Arc::clone(&reaped))), pid, options);
    sampler
        .tracer_mut()
        .seize(pid, Tid(pid.0))
        .map_err(|err| seize_error(pid, err))?;
    let child_fd = process::pidfd_open(held.pid()).map_err(sys_error(Call::Pidfd, "pidfd_open"))?;
    // After the fork: the command keeps stoke's nice value as it was.
    raise_sampler_priority();

    let (held, failure) = held.go(command)?;
    if let Some(error) = failure {
        // The child exits at once; the tracer lets go of it first.
        drop(sampler);
        held.reap();
        return Err(error);
    }
    let pid = held.release();
    // The exec stop comes next: handle it now, so that the program runs on
    // at once and its mappings are known before the first sample.
    let tracer = sampler.tracer_mut();
    while !tracer.started && !tracer.root_exited {
        match sys::wait(pid.0 as libc::pid_t, false) {
            Ok(Some((_, status))) => {
                tracer.handle(Tid(pid.0), status);
            }
            Ok(None) => {}
            Err(source) => {
                return Err(SampleError::Sys {
                    call: Call::Wait,
                    what: format!("waiting for {pid} to exec"),
                    source,
                })
            }
        }
    }
    Ok((sampler, Child::new(pid, Some(child_fd)).with_reaped(reaped)))
}
